//! `harness test` for CI: JUnit XML (read back with a real XML parser),
//! `--json`, `--case` selection, exit statuses; and failures written in
//! the scenario file's own YAML terms, never Rust `Debug` text.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::cli::{harness, stderr, stdout};
use crate::support::{probe_module, wasm_dir};

fn must_fail() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/failing/must-fail.yaml")
}

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("harness-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The indented lines of one failed case in the human report.
fn case_block<'a>(report: &'a str, case: &str) -> Vec<&'a str> {
    report
        .lines()
        .skip_while(|l| !(l.starts_with("FAIL ") && l.ends_with(&format!(" :: {case}"))))
        .skip(1)
        .take_while(|l| l.starts_with("     "))
        .collect()
}

#[test]
fn the_must_fail_scenario_shows_expected_and_actual_in_yaml_terms() {
    let _ = probe_module();
    let out = harness(&["test", must_fail().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report = stdout(&out);
    assert_eq!(
        case_block(&report, "wrong status and missing log"),
        [
            "     step 1: response status",
            "       expected: 200",
            "       actual:   404",
            "     step 1: log",
            "       expected: {contains: \"this line is never logged\"}",
            "       actual:   1 log line(s):",
            "                 [info] add_header: OK",
            "     logs of the failing step:",
            "       [info] add_header: OK",
        ],
        "{report}"
    );
    assert_eq!(
        case_block(&report, "wrong metric and unexpected callout list")[..6],
        [
            "     step 1: metric never_defined",
            "       expected: 1",
            "       actual:   no such metric (defined: [])",
            "     step 1: number of http_calls",
            "       expected: 1",
            "       actual:   0 (clusters: [])",
        ],
        "{report}"
    );
}

/// Expectations whose actual side used to be Rust Debug text.
fn debug_prone_scenario(dir: &Path) -> PathBuf {
    let module = wasm_dir().join("test_filter_probe.wasm");
    let text = format!(
        r#"plugin:
  module: {module}
clusters:
  - name: auth
    http:
      - failure: reset
cases:
  - name: a callout that was reset
    plugin:
      config:
        http:
          request_headers:
            action: pause
            steps:
              - {{op: http_call, cluster: auth, timeout_ms: 100, headers: [[":method", GET], [":path", /], [":authority", auth]]}}
          callouts:
            http_call_response:
              - {{op: continue_stream, stream: request}}
    request: GET /
    expect:
      http_calls:
        - cluster: auth
          result: answered
  - name: a local reply that is not gRPC
    plugin:
      config:
        http:
          request_headers:
            action: pause
            steps:
              - {{op: send_local_response, status: 403, details: probe_denied}}
    request: GET /
    expect:
      local_reply: {{grpc_status: 11, details: other}}
  - name: a stream that stalls
    plugin:
      config: {{http: {{request_headers: {{action: pause}}}}}}
    request: GET /
    expect:
      end: completed
  - name: 'bytes that are not text <&> "quoted"'
    plugin:
      config: {{}}
    request: GET /
    upstream: {{body: [[255, 0, 104]]}}
    expect:
      response: {{body: "h"}}
"#,
        module = module.display()
    );
    let path = dir.join("debug-prone.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn failures_never_show_rust_debug_text() {
    let _ = probe_module();
    let scratch = Scratch::new("debug-prone");
    let file = debug_prone_scenario(&scratch.0);
    let out = harness(&["test", file.to_str().unwrap()]);
    let report = stdout(&out);
    assert_eq!(
        report.lines().last(),
        Some("0 passed, 4 failed"),
        "{report}"
    );
    for debug in [
        "Some(",
        "None",
        "Failed {",
        "Stalled {",
        "Answered {",
        "[255, 0, 104]\"",
    ] {
        assert!(!report.contains(debug), "{debug} in:\n{report}");
    }
    let callout = case_block(&report, "a callout that was reset");
    assert_eq!(
        callout[..3],
        [
            "     step 1: http_call 1 result",
            "       expected: answered",
            "       actual:   failed (reset)",
        ],
        "{report}"
    );
    let reply = case_block(&report, "a local reply that is not gRPC");
    assert_eq!(
        reply[..6],
        [
            "     step 1: local reply details",
            "       expected: \"other\"",
            "       actual:   \"probe_denied\"",
            "     step 1: local reply grpc_status",
            "       expected: 11",
            "       actual:   none (not a gRPC reply)",
        ],
        "{report}"
    );
    let stalled = case_block(&report, "a stream that stalls");
    assert_eq!(
        stalled[..2],
        ["     step 1: stream end", "       expected: completed"],
        "{report}"
    );
    assert!(
        stalled[2].starts_with("       actual:   stalled ("),
        "{report}"
    );
    let bytes = case_block(&report, r#"bytes that are not text <&> "quoted""#);
    assert_eq!(
        bytes[..3],
        [
            "     step 1: response body",
            "       expected: \"h\"",
            "       actual:   [255, 0, 104]",
        ],
        "{report}"
    );
}

#[test]
fn junit_and_json_reports_describe_every_case() {
    let _ = probe_module();
    let scratch = Scratch::new("junit");
    let extra = debug_prone_scenario(&scratch.0);
    let junit = scratch.0.join("report.xml");
    let out = harness(&[
        "test",
        must_fail().to_str().unwrap(),
        extra.to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));

    // --json: one document on stdout, nothing else.
    let doc: Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    assert_eq!(
        (doc["passed"].as_u64(), doc["failed"].as_u64()),
        (Some(0), Some(9))
    );
    let first = &doc["files"][0]["cases"][0];
    assert_eq!(first["name"], "wrong response header value");
    assert_eq!(first["passed"], false);
    assert_eq!(first["failures"][0]["kind"], "mismatch");
    assert_eq!(first["failures"][0]["what"], "response header x-probe");
    assert_eq!(first["failures"][0]["expected"], "\"expected-but-wrong\"");
    assert_eq!(first["failures"][0]["actual"], "\"real\"");
    let missing = &doc["files"][0]["cases"][4];
    assert_eq!(missing["failures"][0]["kind"], "error");
    assert!(
        missing["failures"][0]["message"]
            .as_str()
            .unwrap()
            .contains("no_such_filter.wasm")
    );

    // --junit: parsed back by an XML parser.
    let xml = std::fs::read_to_string(&junit).expect("JUnit file written");
    let parsed = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    let root = parsed.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    assert_eq!(
        (
            root.attribute("tests"),
            root.attribute("failures"),
            root.attribute("errors")
        ),
        (Some("9"), Some("8"), Some("1"))
    );
    let suites: Vec<_> = root
        .children()
        .filter(|n| n.has_tag_name("testsuite"))
        .collect();
    assert_eq!(suites.len(), 2);
    assert!(
        suites[0]
            .attribute("name")
            .unwrap()
            .ends_with("must-fail.yaml")
    );
    let names: Vec<&str> = suites[0]
        .children()
        .filter(|n| n.has_tag_name("testcase"))
        .filter_map(|n| n.attribute("name"))
        .collect();
    assert_eq!(
        names,
        [
            "wrong response header value",
            "wrong status and missing log",
            "configure was expected to fail but succeeds",
            "wrong metric and unexpected callout list",
            "module that does not exist",
        ]
    );
    let header = testcase(suites[0], "wrong response header value");
    let failure = header
        .children()
        .find(|n| n.has_tag_name("failure"))
        .expect("<failure>");
    assert_eq!(
        failure.attribute("message"),
        Some(r#"step 1: response header x-probe: expected "expected-but-wrong", actual "real""#)
    );
    assert_eq!(
        failure.text(),
        Some(
            "step 1: response header x-probe\n  expected: \"expected-but-wrong\"\n  actual:   \"real\""
        )
    );
    let missing = testcase(suites[0], "module that does not exist");
    assert!(missing.children().any(|n| n.has_tag_name("error")));
    // Markup in names and values survives escaping.
    let odd = testcase(suites[1], r#"bytes that are not text <&> "quoted""#);
    assert_eq!(odd.attribute("classname"), suites[1].attribute("name"));
}

fn testcase<'a, 'i>(suite: roxmltree::Node<'a, 'i>, name: &str) -> roxmltree::Node<'a, 'i> {
    suite
        .children()
        .find(|n| n.attribute("name") == Some(name))
        .unwrap_or_else(|| panic!("no testcase {name}"))
}

#[test]
fn case_selects_by_substring_or_glob_and_no_match_is_a_usage_error() {
    let _ = probe_module();
    let file = must_fail();
    let file = file.to_str().unwrap();
    let substring = harness(&["test", file, "--case", "status"]);
    let report = stdout(&substring);
    assert_eq!(
        report.lines().last(),
        Some("0 passed, 1 failed"),
        "{report}"
    );
    assert!(
        report.contains(":: wrong status and missing log"),
        "{report}"
    );

    let glob = harness(&["test", file, "--case", "wrong*", "--case", "module*"]);
    let report = stdout(&glob);
    assert_eq!(
        report.lines().last(),
        Some("0 passed, 4 failed"),
        "{report}"
    );
    assert!(!report.contains("configure was expected"), "{report}");

    let none = harness(&["test", file, "--case", "no such case*"]);
    assert_eq!(none.status.code(), Some(2));
    assert!(stdout(&none).is_empty(), "nothing runs: {}", stdout(&none));
    assert!(
        stderr(&none).contains("no case matches --case 'no such case*' among the 5 case(s) found"),
        "{}",
        stderr(&none)
    );

    let unwritable = harness(&["test", file, "--junit", "/no/such/dir/report.xml"]);
    assert_eq!(unwritable.status.code(), Some(2));
    assert!(stderr(&unwritable).contains("cannot write the JUnit report /no/such/dir/report.xml"));
}
