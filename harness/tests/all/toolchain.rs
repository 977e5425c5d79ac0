//! The host is not tuned to the Rust SDK: a filter written by hand in
//! WebAssembly text (harness/wat-filters/response-header), compiled by the
//! harness from its `.wat`, runs through scenario files, alone, in a chain
//! with the Rust filter, and with several workers; plus the other chain
//! scenarios in harness/scenarios.

use std::path::{Path, PathBuf};

use harness::scenario::{Runner, Summary};

use crate::chain::build_chain_filters;
use crate::support::{module, wasm_dir};

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

fn run(files: &[&str]) -> (Summary, String) {
    let mut runner = Runner::new();
    runner.preload(
        &wasm_dir().join("response_header.wasm"),
        module("response_header.wasm").into(),
    );
    let paths: Vec<PathBuf> = files.iter().map(|f| scenarios_dir().join(f)).collect();
    let mut out = Vec::new();
    let summary = runner.run_paths(&paths, &mut out);
    (summary, String::from_utf8(out).expect("utf-8 report"))
}

#[test]
fn a_hand_written_wat_filter_runs_through_scenario_files() {
    let (summary, out) = run(&["wat-response-header.yaml"]);
    assert!(summary.ok(), "{out}");
    assert_eq!((summary.passed, summary.failed), (5, 0), "{out}");
}

#[test]
fn the_wat_filter_and_the_rust_filter_share_a_chain_on_two_workers() {
    let (summary, out) = run(&["chain-wat-and-rust.yaml"]);
    assert!(summary.ok(), "{out}");
    assert_eq!(summary.passed, 1, "{out}");
}

#[test]
fn chain_scenarios_with_two_real_filters_pass() {
    build_chain_filters();
    let (summary, out) = run(&[
        "chain-block-first.yaml",
        "chain-block-last.yaml",
        "chain-cors.yaml",
    ]);
    assert!(summary.ok(), "{out}");
    assert_eq!(summary.passed, 6, "{out}");
}

#[test]
fn a_wrong_expectation_in_a_chain_scenario_fails() {
    build_chain_filters();
    // The blocked request in block-first order must not carry the header:
    // expecting it there is reported as a failure.
    let text = std::fs::read_to_string(scenarios_dir().join("chain-block-first.yaml"))
        .expect("scenario")
        .replace(
            "response: {status: 403, headers_absent: [resp-header-demo]}",
            "response: {status: 403, headers_present: [resp-header-demo]}",
        );
    let scenario = harness::scenario::parse(&text, "mutated").expect("parses");
    let mut runner = Runner::new();
    let report = runner.run_scenario(&scenario, &scenarios_dir(), "mutated");
    let failed: Vec<&str> = report
        .cases
        .iter()
        .filter(|c| !c.passed())
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        failed,
        vec!["a blocked request never reaches response-header"]
    );
}

#[test]
fn worker_and_chain_keys_are_checked_when_the_file_is_read() {
    let base = "cases: [{name: c, steps: [STEP]}]\n";
    let cases = [
        (
            "plugin: {module: a.wasm}\nplugins: [{module: b.wasm}]\n",
            "request: GET /",
            "either `plugin` or a `plugins` chain",
        ),
        (
            "plugins: [{name: x}]\n",
            "request: GET /",
            "plugins[0].module is required",
        ),
        (
            "plugin: {module: a.wasm}\nworkers: 0\n",
            "request: GET /",
            "at least 1",
        ),
        (
            "plugin: {module: a.wasm}\nworkers: 2\n",
            "{worker: 2, request: GET /}",
            "worker 2 does not exist (2 worker(s)",
        ),
        (
            "plugin: {module: a.wasm}\nworkers: 2\n",
            "{worker: 1, advance_ms: 5}",
            "`advance_ms` moves every worker",
        ),
    ];
    for (head, step, message) in cases {
        let text = format!("{head}{}", base.replace("STEP", step));
        let error = harness::scenario::parse(&text, "f.yaml").expect_err(message);
        assert!(error.contains(message), "{text}\n=> {error}");
    }
    let fine = "plugins: [{module: a.wasm}, {module: b.wasm}]\nworkers: 3\ncases: [{name: c, steps: [{worker: 2, request: GET /}]}]\n";
    let scenario = harness::scenario::parse(fine, "f.yaml").expect("valid");
    assert_eq!((scenario.plugins.len(), scenario.workers), (2, Some(3)));
}
