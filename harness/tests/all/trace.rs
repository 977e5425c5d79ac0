//! `harness run --trace` says what each hostcall meant: property paths as
//! segments, header names and values, enums and statuses by name, and what
//! the call handed back, rather than the guest's raw pointers.

use serde_json::{Value, json};

use crate::cli::{run_probe, stderr, stdout};

fn lookups() -> Value {
    json!({"http": {"request_headers": {"steps": [
        {"op": "get_property", "path": ["request", "path"]},
        {"op": "get_header", "map": "request_headers", "key": "x-user"},
        {"op": "get_header", "map": "request_headers", "key": "x-missing"},
        {"op": "get_header", "map": 9, "key": "x-user"},
        {"op": "define_metric", "kind": "histogram", "name": "lookups"}
    ]}}})
}

const REQUEST: [&str; 4] = ["--request", "GET /trace-me", "-H", "x-user: al\u{1b}ice"];

#[test]
fn trace_lines_show_what_each_hostcall_meant() {
    let mut extra = REQUEST.to_vec();
    extra.push("--trace");
    let out = run_probe(&lookups(), &extra);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let calls: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("#            "))
        .collect();
    // Whole lines: nothing but the decoded form (no raw guest addresses).
    for expected in [
        r#"proxy_get_property(path: ["request", "path"]) = OK -> value: "/trace-me""#,
        r#"proxy_get_header_map_value(map_type: HTTP_REQUEST_HEADERS, key: "x-user") = OK -> value: "al\x1bice""#,
        r#"proxy_get_header_map_value(map_type: HTTP_REQUEST_HEADERS, key: "x-missing") = NOT_FOUND"#,
        r#"proxy_get_header_map_value(map_type: unknown (9), key: "x-user") = BAD_ARGUMENT"#,
        r#"proxy_define_metric(metric_type: HISTOGRAM, name: "lookups") = OK -> metric_id: "#,
        r#"proxy_log(level: INFO, message: "get_header: NOT_FOUND") = OK"#,
    ] {
        assert!(
            calls
                .iter()
                .any(|l| l.starts_with(expected) && (expected.ends_with(": ") || *l == expected)),
            "no trace line {expected:?} in:\n{text}"
        );
    }
    // The escape byte the guest read back is shown escaped, never raw.
    assert!(!text.contains('\u{1b}'), "{text}");
}

#[test]
fn json_trace_carries_the_decoded_arguments() {
    let mut extra = REQUEST.to_vec();
    extra.extend(["--trace", "--json"]);
    let out = run_probe(&lookups(), &extra);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let trace = doc["outcome"]["trace"].as_array().expect("a trace");
    let property = trace
        .iter()
        .find(|e| e["name"] == "proxy_get_property")
        .expect("a get_property call");
    assert_eq!(property["kind"], "hostcall");
    assert_eq!(property["status_name"], "OK");
    assert_eq!(
        property["decoded"],
        json!([{"name": "path", "value": "[\"request\", \"path\"]"}])
    );
    assert_eq!(
        property["returned"],
        json!([{"name": "value", "value": "\"/trace-me\""}])
    );
    // The raw arguments stay, for whoever wants the addresses.
    assert_eq!(property["args"].as_array().map(Vec::len), Some(4));
    let missing = trace
        .iter()
        .find(|e| e["name"] == "proxy_get_header_map_value" && e["status_name"] == "NOT_FOUND")
        .expect("the missing header's lookup");
    assert_eq!(missing["decoded"][1]["value"], "\"x-missing\"");
    assert!(missing.get("returned").is_none(), "{missing}");
}
