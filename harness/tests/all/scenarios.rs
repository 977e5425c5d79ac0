//! Scenario files through the runner: the passing probe scenario, the
//! must-fail scenario (every case must be reported failed, expected against
//! actual), format errors, the demo filter's scenarios, and the CLI.

use std::path::{Path, PathBuf};
use std::process::Command;

use harness::scenario::{Detail, FileReport, Runner, Summary, parse};

use crate::support::{module, native_twin_dir, probe_module, wasm_dir, workspace_root};

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios")
}

fn run(paths: &[PathBuf]) -> (Summary, String) {
    // The runner uses the modules this process already built and compiled.
    let mut runner = Runner::new();
    for file in ["test_filter_probe.wasm", "response_header.wasm"] {
        runner.preload(&wasm_dir().join(file), module(file).into());
    }
    let mut out = Vec::new();
    let summary = runner.run_paths(paths, &mut out);
    (summary, String::from_utf8(out).expect("utf-8 report"))
}

fn case<'a>(file: &'a FileReport, name: &str) -> &'a harness::scenario::CaseReport {
    file.cases
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no case {name}"))
}

#[test]
fn the_probe_scenario_passes() {
    let (summary, out) = run(&[scenarios_dir().join("passing")]);
    assert!(summary.ok(), "{out}");
    assert_eq!(summary.passed, 7, "{out}");
    assert_eq!(out.lines().last(), Some("7 passed, 0 failed"));
}

#[test]
fn the_must_fail_scenario_is_reported_failed_with_expected_and_actual() {
    let (summary, out) = run(&[scenarios_dir().join("failing/must-fail.yaml")]);
    assert_eq!((summary.passed, summary.failed), (0, 5), "{out}");
    assert_eq!(out.lines().last(), Some("0 passed, 5 failed"));
    let file = &summary.files[0];

    let wrong_header = case(file, "wrong response header value");
    assert_eq!(wrong_header.failures.len(), 1, "{out}");
    assert_eq!(wrong_header.failures[0].what, "response header x-probe");
    assert_eq!(
        wrong_header.failures[0].detail,
        Detail::Mismatch {
            expected: r#""expected-but-wrong""#.into(),
            actual: r#""real""#.into()
        }
    );

    let status = case(file, "wrong status and missing log");
    let whats: Vec<&str> = status.failures.iter().map(|f| f.what.as_str()).collect();
    assert_eq!(whats, vec!["response status", "log"], "{out}");
    assert_eq!(
        status.failures[0].detail,
        Detail::Mismatch {
            expected: "200".into(),
            actual: "404".into()
        }
    );

    let configure = case(file, "configure was expected to fail but succeeds");
    assert!(
        matches!(&configure.failures[0].detail, Detail::Mismatch { actual, .. } if actual == "start-up succeeded")
    );

    let metric = case(file, "wrong metric and unexpected callout list");
    let whats: Vec<&str> = metric.failures.iter().map(|f| f.what.as_str()).collect();
    assert_eq!(
        whats,
        vec!["metric never_defined", "number of http_calls"],
        "{out}"
    );

    let missing = case(file, "module that does not exist");
    assert!(
        matches!(&missing.failures[0].detail, Detail::Error(m) if m.contains("no_such_filter.wasm") && m.contains("not found")),
        "{out}"
    );

    // The printed report names the file and case and shows both sides.
    assert!(out.contains("FAIL "), "{out}");
    assert!(
        out.contains("must-fail.yaml :: wrong response header value"),
        "{out}"
    );
    assert!(out.contains(r#"expected: "expected-but-wrong""#), "{out}");
    assert!(out.contains(r#"actual:   "real""#), "{out}");
}

#[test]
fn format_errors_are_reported_with_the_file_and_reason() {
    let no_module =
        parse("cases: [{name: a, request: GET /}]\nplugin: {}\n", "x.yaml").unwrap_err();
    assert!(
        no_module.contains("x.yaml") && no_module.contains("plugin.module"),
        "{no_module}"
    );
    let typo = parse(
        "plugin: {module: m.wasm}\ncases: [{name: a, requets: GET /}]\n",
        "t.yaml",
    )
    .unwrap_err();
    assert!(
        typo.contains("requets"),
        "unknown keys are rejected: {typo}"
    );
    let both = parse(
        "plugin: {module: m.wasm}\ncases: [{name: a, request: GET /, steps: [{advance_ms: 1}]}]\n",
        "b.yaml",
    )
    .unwrap_err();
    assert!(both.contains("either the short form"), "{both}");
    let duplicate = parse(
        "plugin: {module: m.wasm}\ncases: [{name: a, request: /}, {name: a, request: /}]\n",
        "d.yaml",
    )
    .unwrap_err();
    assert!(duplicate.contains("used twice"), "{duplicate}");
    let bad_request = parse(
        "plugin: {module: m.wasm}\ncases: [{name: a, request: GET nopath}]\n",
        "r.yaml",
    )
    .unwrap_err();
    assert!(bad_request.contains("must start with '/'"), "{bad_request}");
    let scenario = parse(
        "plugin: {module: m.wasm, config: {name: x, list: [1, 2]}}\ncases: [{name: a, request: /}]\n",
        "ok.yaml",
    )
    .expect("valid");
    assert_eq!(
        scenario.plugin.config.map(|c| c.to_text()),
        Some(r#"{"list":[1,2],"name":"x"}"#.to_string()),
        "an object config is passed as JSON"
    );

    // Unreadable paths and empty directories count as failures.
    let empty = std::env::temp_dir().join(format!("harness-empty-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let (summary, out) = run(&[empty.clone(), PathBuf::from("/no/such/scenario.yaml")]);
    std::fs::remove_dir_all(&empty).unwrap();
    assert_eq!((summary.passed, summary.failed), (0, 2), "{out}");
    assert!(out.contains("no scenario files"), "{out}");
}

#[test]
fn the_demo_filter_scenarios_pass() {
    let dir = workspace_root().join("filters/response-header/tests");
    let (summary, out) = run(&[dir]);
    assert!(summary.ok(), "{out}");
    assert!(summary.passed >= 4, "{out}");
}

#[test]
fn the_cli_prints_the_totals_line_and_fails_on_failure() {
    let _ = probe_module();
    let binary = env!("CARGO_BIN_EXE_harness");
    let failing = Command::new(binary)
        .current_dir(workspace_root())
        .arg("test")
        .arg(scenarios_dir().join("failing"))
        .output()
        .expect("run harness test");
    let stdout = String::from_utf8_lossy(&failing.stdout);
    assert!(!failing.status.success(), "{stdout}");
    assert_eq!(
        stdout.lines().last(),
        Some("0 passed, 5 failed"),
        "{stdout}"
    );

    let passing = Command::new(binary)
        .current_dir(workspace_root())
        .arg("test")
        .arg(scenarios_dir().join("passing"))
        .output()
        .expect("run harness test");
    let stdout = String::from_utf8_lossy(&passing.stdout);
    assert!(
        passing.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&passing.stderr)
    );
    assert_eq!(stdout.lines().last(), Some("7 passed, 0 failed"));
}

#[test]
fn the_demo_scenarios_pass_unchanged_on_the_native_twin() {
    let dir = native_twin_dir("response-header");
    let mut out = Vec::new();
    let summary = Runner::native(&dir).run_paths(
        &[workspace_root().join("filters/response-header/tests")],
        &mut out,
    );
    let out = String::from_utf8(out).expect("utf-8 report");
    assert!(summary.ok(), "{out}");
    assert!(summary.passed >= 4, "{out}");

    // A missing twin is a clear failure, not a silent fallback to wasm.
    let mut out = Vec::new();
    let summary = Runner::native("/no/such/dir").run_paths(
        &[workspace_root().join("filters/response-header/tests/single.yaml")],
        &mut out,
    );
    let out = String::from_utf8(out).expect("utf-8 report");
    assert_eq!(summary.passed, 0, "{out}");
    assert!(
        out.contains("native twin /no/such/dir/libresponse_header.so"),
        "{out}"
    );
}
