//! Failures you can read. `harness run --trace` says what each hostcall
//! meant: property paths as segments, header names and values, enums and
//! statuses by name, and what the call handed back, rather than the guest's
//! raw pointers. A trap in a debug build shows its backtrace once, with
//! Rust names and the source lines from the module's DWARF.

use serde_json::{Value, json};

use crate::cli::{harness, run_probe, stderr, stdout};
use crate::support::{debug_probe_wasm, workspace_root};

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

/// `path:LINE` of the probe's `panic` op, read from its source so the test
/// follows edits.
fn panic_site() -> String {
    let file = "harness/test-filters/probe/src/exec.rs";
    let source = std::fs::read_to_string(workspace_root().join(file)).expect("probe source");
    let line = source
        .lines()
        .position(|l| l.contains("Op::Panic { message } => panic!"))
        .expect("the probe's panic op");
    format!("{file}:{}", line + 1)
}

/// The frame line naming `function` at `site`, asserting it comes once.
fn frame_once<'a>(text: &'a str, function: &str, site: &str) -> &'a str {
    let frames: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(&format!(" {function} at ")) && l.contains(site))
        .collect();
    assert_eq!(
        frames.len(),
        1,
        "one {function} frame at {site} in:\n{text}"
    );
    frames[0]
}

#[test]
fn a_debug_build_trap_names_rust_functions_and_source_lines_once() {
    let module = debug_probe_wasm();
    let site = panic_site();
    let script = json!({"http": {"request_headers": {"steps": [
        {"op": "panic", "message": "boom in a debug build"}
    ]}}});
    let config = script.to_string();
    let module_arg = module.to_str().expect("utf-8 path");
    let out = harness(&["run", module_arg, "--config", &config]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.matches("* TRAP in ").count(), 1, "{text}");
    assert_eq!(text.matches("wasm backtrace").count(), 1, "{text}");
    assert_eq!(text.matches("boom in a debug build").count(), 1, "{text}");
    let frame = frame_once(&text, "test_filter_probe::exec::run_one", &site);
    assert!(frame.starts_with("*     #"), "{frame}");
    // The SDK's entry point, inlined or not, is named too; hashes and
    // crate disambiguators are gone.
    assert!(
        text.contains("<test_filter_probe::ProbeStream as proxy_wasm::traits::HttpContext>::on_http_request_headers at "),
        "{text}"
    );
    assert!(!text.contains("::h") && !text.contains("std["), "{text}");
    assert!(!text.contains("WASMTIME_BACKTRACE_DETAILS"), "{text}");

    // `harness test` reports the same trap once in the failed case.
    let dir = std::env::temp_dir().join(format!("harness-debug-trap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let scenario = dir.join("debug-trap.yaml");
    let yaml = format!(
        "plugin:\n  module: {module_arg}\n  config: {config}\ncases:\n  - name: panics\n    request: GET /\n"
    );
    std::fs::write(&scenario, yaml).expect("write the scenario");
    let out = harness(&["test", scenario.to_str().expect("utf-8 path")]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report = stdout(&out);
    assert_eq!(report.matches("wasm backtrace").count(), 1, "{report}");
    frame_once(&report, "test_filter_probe::exec::run_one", &site);
}
