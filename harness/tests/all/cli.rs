//! The `harness` binary from the outside: each subcommand's help, exit
//! statuses, and the `harness run` transcript.

use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::support::{probe_module, wasm_dir, workspace_root};

/// Runs the binary from the workspace root.
pub fn harness(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_harness"))
        .current_dir(workspace_root())
        .args(args)
        .output()
        .expect("run the harness binary")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `harness run` on the probe with this script.
pub fn run_probe(script: &Value, extra: &[&str]) -> Output {
    let _ = probe_module();
    let module = wasm_dir().join("test_filter_probe.wasm");
    let config = script.to_string();
    let mut args = vec![
        "run",
        module.to_str().expect("utf-8 path"),
        "--config",
        &config,
    ];
    args.extend_from_slice(extra);
    harness(&args)
}

#[test]
fn each_subcommand_help_lists_only_its_own_flags() {
    let cases: [(&str, &[&str], &[&str]); 4] = [
        (
            "run",
            &[
                "--trace",
                "--upstream-status",
                "--fail-open",
                "--config",
                "--header",
            ],
            &["--sweep", "--junit", "--output", "--suite"],
        ),
        (
            "bench",
            &[
                "--sweep",
                "--suite",
                "--only",
                "--config",
                "--upstream-body",
            ],
            &["--trace", "--fail-open", "--junit", "--output"],
        ),
        (
            "compile",
            &["--output"],
            &["--config", "--trace", "--sweep"],
        ),
        (
            "test",
            &["--native <DIR>"],
            &["--config", "--trace", "--sweep", "--upstream-body"],
        ),
    ];
    for (command, present, absent) in cases {
        let help = harness(&[command, "--help"]);
        assert!(help.status.success(), "{command}: {}", stderr(&help));
        let text = stdout(&help);
        for flag in present {
            assert!(
                text.contains(flag),
                "{command} --help lacks {flag}:\n{text}"
            );
        }
        for flag in absent {
            assert!(
                !text.contains(flag),
                "{command} --help shows {flag}:\n{text}"
            );
        }
    }
}

#[test]
fn usage_errors_exit_2_and_filter_errors_1() {
    let no_paths = harness(&["test"]);
    assert_eq!(no_paths.status.code(), Some(2), "{}", stderr(&no_paths));
    assert!(stderr(&no_paths).contains("give scenario files"));

    let bad_sweep = harness(&["bench", "x.wasm", "--native", "x.so", "--sweep", "sideways"]);
    assert_eq!(bad_sweep.status.code(), Some(2));
    assert!(
        stderr(&bad_sweep).contains("unknown sweep 'sideways'"),
        "{}",
        stderr(&bad_sweep)
    );

    let missing = harness(&["run", "no/such/filter.wasm"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).starts_with("harness: cannot read filter module no/such/filter.wasm"),
        "{}",
        stderr(&missing)
    );

    let bad_header = run_probe(&json!({}), &["-H", "no colon here"]);
    assert_eq!(bad_header.status.code(), Some(1));
    assert!(
        stderr(&bad_header).contains("-H 'no colon here' must look like 'name: value'"),
        "{}",
        stderr(&bad_header)
    );

    let not_compiled = harness(&["compile", "no/such/filter.wasm"]);
    assert_eq!(not_compiled.status.code(), Some(1));
    assert!(stderr(&not_compiled).starts_with("harness compile: cannot read filter module"));
}

#[test]
fn run_prints_the_exchange_like_curl() {
    let script = json!({"http": {"response_headers": {"steps": [
        {"op": "add_header", "map": "response_headers", "key": "x-probe", "value": "added"},
        {"op": "log", "level": 2, "message": "hello from the probe"}
    ]}}});
    let out = run_probe(
        &script,
        &[
            "--request",
            "POST /items",
            "-H",
            "host: example.com",
            "-H",
            "x-a: 1",
            "--body",
            "payload",
            "--upstream-status",
            "201",
            "--upstream-header",
            "x-up: yes",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    for expected in [
        "* request as the upstream received it:",
        "> POST /items HTTP/1.1",
        "> host: example.com",
        "> x-a: 1",
        "payload",
        "* response as the client received it:",
        "< HTTP/1.1 201 Created",
        "< x-up: yes",
        "< x-probe: added",
        "* filter logs:",
        "*   [info] hello from the probe",
    ] {
        assert!(
            lines.contains(&expected),
            "no line {expected:?} in:\n{text}"
        );
    }
    assert!(lines[0].starts_with("* filter ") && lines[0].ends_with(" started (root context 1)"));

    // --json is one document with the outcome.
    let json_out = run_probe(&script, &["--json"]);
    assert!(json_out.status.success(), "{}", stderr(&json_out));
    let doc: Value = serde_json::from_slice(&json_out.stdout).expect("one JSON document");
    assert_eq!(doc["backend"], "wasm");
    assert_eq!(doc["outcome"]["response"]["status"], 200);
}

#[test]
fn a_limited_address_space_runs_wasm_without_the_instance_pool() {
    // The pooling allocator reserves terabytes of address space up front;
    // under `ulimit -v` (or valgrind) that fails, and the engine falls back
    // to mapping each instance's memory on its own.
    let _ = probe_module();
    let module = wasm_dir().join("test_filter_probe.wasm");
    let script = json!({"http": {"response_headers": {"steps": [
        {"op": "add_header", "map": "response_headers", "key": "x-probe", "value": "added"}
    ]}}})
    .to_string();
    let out = Command::new("sh")
        .current_dir(workspace_root())
        .arg("-c")
        .arg("ulimit -v 16777216 && exec \"$0\" run \"$1\" --config \"$2\"")
        .arg(env!("CARGO_BIN_EXE_harness"))
        .arg(&module)
        .arg(&script)
        .output()
        .expect("run the harness binary under sh");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("< x-probe: added"),
        "{}",
        stdout(&out)
    );
}
