//! The `harness` binary's habits: the plugin named after its module,
//! `-v`/`RUST_LOG`, `@-` for standard input, a closed stdout pipe, shell
//! completions and man pages.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::json;

use crate::cli::{harness, run_probe, stderr, stdout};
use crate::cli_world::tempdir;
use crate::support::{probe_module, wasm_dir, workspace_root};

fn plugin_name_script() -> serde_json::Value {
    json!({"configure": [{"op": "get_property", "label": "plugin name",
                          "path": ["plugin_name"], "decode": "str"}]})
}

#[test]
fn the_plugin_is_named_after_its_module_unless_named() {
    let out = run_probe(&plugin_name_script(), &[]);
    assert!(
        stdout(&out).contains(r#"plugin name: OK value="test_filter_probe""#),
        "{}",
        stdout(&out)
    );
    let out = run_probe(&plugin_name_script(), &["--name", "mine"]);
    assert!(
        stdout(&out).contains(r#"plugin name: OK value="mine""#),
        "{}",
        stdout(&out)
    );

    // Scenario files too: no `plugin.name`, the module's name.
    let _ = probe_module();
    let dir = tempdir();
    let file = dir.join("named.yaml");
    let scenario = format!(
        "plugin:\n  module: {}\n  config: '{}'\ncases:\n  - name: named\n    startup:\n      logs: ['plugin name: OK value=\"test_filter_probe\"']\n",
        wasm_dir().join("test_filter_probe.wasm").display(),
        plugin_name_script()
    );
    std::fs::write(&file, scenario).expect("write");
    let out = harness(&["test", file.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", stdout(&out));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn verbose_and_rust_log_turn_on_the_harness_logging() {
    let quiet = run_probe(&json!({}), &[]);
    assert!(!stderr(&quiet).contains("harness"), "{}", stderr(&quiet));
    let verbose = run_probe(&json!({}), &["-v"]);
    let text = stderr(&verbose);
    assert!(
        text.contains("INFO") && text.contains("as plugin 'test_filter_probe'"),
        "{text}"
    );
    let _ = probe_module();
    let module = wasm_dir().join("test_filter_probe.wasm");
    let from_env = Command::new(env!("CARGO_BIN_EXE_harness"))
        .current_dir(workspace_root())
        .env("RUST_LOG", "harness=info")
        .args(["run", module.to_str().expect("utf-8"), "--config", "{}"])
        .output()
        .expect("run");
    assert!(
        stderr(&from_env).contains("as plugin 'test_filter_probe'"),
        "{}",
        stderr(&from_env)
    );
}

/// `harness run` with `stdin` piped in.
fn run_with_stdin(args: &[&str], input: &str) -> std::process::Output {
    let _ = probe_module();
    let module = wasm_dir().join("test_filter_probe.wasm");
    let mut child = Command::new(env!("CARGO_BIN_EXE_harness"))
        .current_dir(workspace_root())
        .arg("run")
        .arg(&module)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input.as_bytes()).expect("write stdin");
    drop(stdin);
    child.wait_with_output().expect("wait")
}

#[test]
fn at_dash_reads_standard_input_once() {
    let out = run_with_stdin(&["--config", "@-"], &plugin_name_script().to_string());
    assert!(
        stdout(&out).contains("plugin name: OK"),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let out = run_with_stdin(
        &["--config", "{}", "--cluster", "auth=@-"],
        "{http: [{status: 201}]}",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run_with_stdin(&["--config", "@-", "--body", "@-"], "{}");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("standard input was already read for --config"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_closed_stdout_pipe_ends_quietly() {
    let _ = probe_module();
    let module = wasm_dir().join("test_filter_probe.wasm");
    // More than a pipe's buffer, so the writer meets the closed end.
    let dir = tempdir();
    let body = dir.join("body.txt");
    std::fs::write(&body, "x".repeat(1 << 20)).expect("write body");
    let mut child = Command::new(env!("CARGO_BIN_EXE_harness"))
        .current_dir(workspace_root())
        .args([
            "run",
            module.to_str().expect("utf-8"),
            "--config",
            "{}",
            "-vv",
        ])
        .arg("--upstream-body")
        .arg(format!("@{}", body.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let _ = std::fs::remove_dir_all(&dir);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("stdout closed by its reader"), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("cannot write"),
        "{err}"
    );
}

#[test]
fn completions_and_man_pages_come_from_the_flags() {
    let bash = harness(&["completions", "bash"]);
    assert!(bash.status.success());
    let bash = stdout(&bash);
    assert!(
        bash.contains("_harness()") && bash.contains("--cluster"),
        "{bash}"
    );
    let zsh = stdout(&harness(&["completions", "zsh"]));
    assert!(zsh.starts_with("#compdef harness"), "{zsh}");
    let fish = stdout(&harness(&["completions", "fish"]));
    assert!(
        fish.contains("complete -c harness") && fish.contains("advance"),
        "{fish}"
    );
    assert_eq!(harness(&["completions", "tcsh"]).status.code(), Some(2));

    let man = stdout(&harness(&["man"]));
    assert!(man.contains(".TH harness 1"), "{man}");
    assert!(man.contains("completions") && man.contains("test"), "{man}");
    let run = stdout(&harness(&["man", "run"]));
    assert!(run.contains(".TH harness-run 1"), "{run}");
    assert!(run.contains("cluster") && run.contains("advance"), "{run}");
    let missing = harness(&["man", "nope"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing).contains("one of: run"),
        "{}",
        stderr(&missing)
    );
}
