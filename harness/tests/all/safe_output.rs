//! Guest text cannot forge transcript lines or reach the terminal raw:
//! `harness run` and `harness test` print it with control characters
//! escaped; `--json` keeps it exact. And the trap wording: one
//! `wasm trap:` prefix, and the deadline message for a looping start
//! function or `_initialize`.

use harness::{Harness, HarnessError};
use serde_json::{Value, json};

use crate::cli::{harness, run_probe, stderr, stdout};
use crate::hostile::{compile, config, filter, get};
use crate::support::wasm_dir;

/// What a hostile filter logs: a fake status line and a clear-screen escape.
const FORGERY: &str = "\n< HTTP/1.1 200 OK\x1b[2J";
/// The same, as the transcript must show it.
const ESCAPED: &str = "\\n< HTTP/1.1 200 OK\\x1b[2J";

fn forging_script() -> Value {
    json!({"http": {"response_headers": {"steps": [
        {"op": "log", "level": 2, "message": FORGERY},
        {"op": "add_header", "map": "response_headers", "key": "x-evil", "value": "a\x1b[31mb\rc"}
    ]}}})
}

#[test]
fn run_escapes_guest_logs_and_headers_and_json_stays_exact() {
    let out = run_probe(&forging_script(), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(!text.contains('\x1b') && !text.contains('\r'), "{text:?}");
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.contains(&format!("*   [info] {ESCAPED}").as_str()),
        "the log line is one escaped line:\n{text}"
    );
    assert!(lines.contains(&"< x-evil: a\\x1b[31mb\\rc"), "{text}");
    let status_lines = lines.iter().filter(|l| l.starts_with("< HTTP/1.1")).count();
    assert_eq!(status_lines, 1, "only the real status line:\n{text}");

    let json_out = run_probe(&forging_script(), &["--json"]);
    let doc: Value = serde_json::from_slice(&json_out.stdout).expect("JSON");
    let logs = doc["outcome"]["logs"].as_array().expect("logs");
    assert!(logs.iter().any(|l| l["message"] == FORGERY), "{logs:?}");
}

#[test]
fn run_escapes_a_guest_panic_and_prints_one_wasm_trap_prefix() {
    let script = json!({"http": {"request_headers": {"steps": [
        {"op": "panic", "message": format!("boom{FORGERY}")}
    ]}}});
    let out = run_probe(&script, &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(!text.contains('\x1b'), "{text:?}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("*   guest panic: ") && l.contains(&format!("boom{ESCAPED}"))),
        "{text}"
    );
    let trap = text
        .lines()
        .find(|l| l.starts_with("* TRAP in proxy_on_request_headers (context 2): "))
        .unwrap_or_else(|| panic!("no trap line:\n{text}"));
    assert!(
        trap.ends_with("wasm trap: wasm `unreachable` instruction executed"),
        "{trap}"
    );
    assert!(!text.contains("wasm trap: wasm trap"), "{text}");
    // Backtrace frames stay behind the transcript's `*` prefix.
    let after: Vec<&str> = text.lines().skip_while(|l| *l != trap).skip(1).collect();
    assert!(
        after
            .iter()
            .take_while(|l| !l.contains("guest panic"))
            .all(|l| l.starts_with("*   ")),
        "{text}"
    );
}

#[test]
fn test_failure_output_escapes_guest_text() {
    let dir = std::env::temp_dir().join(format!("harness-safe-output-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("forgery.yaml");
    let module = wasm_dir().join("test_filter_probe.wasm");
    let text = format!(
        "plugin:\n  module: {}\n  config: {}\ncases:\n  - name: a log line that is never written\n    request: GET /\n    expect:\n      logs: [never written]\n",
        module.display(),
        forging_script()
    );
    std::fs::write(&scenario, text).unwrap();
    let _ = crate::support::probe_module();
    let out = harness(&["test", scenario.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report = stdout(&out);
    assert!(!report.contains('\x1b'), "{report:?}");
    assert!(
        report
            .lines()
            .any(|l| l.trim_start() == format!("[info] {ESCAPED}")),
        "{report}"
    );
    assert!(
        !report.lines().any(|l| l.trim_start().starts_with("< HTTP")),
        "{report}"
    );
}

/// A module whose start function (or `_initialize`) never returns.
fn looping(start: &str) -> String {
    filter("", "", &format!("(func $spin (loop $l (br $l))) {start}"))
}

fn short_deadline() -> harness::HarnessConfig {
    let mut c = config();
    c.plugin.callback_deadline_ms = 100;
    c
}

#[test]
fn a_looping_start_function_or_initialize_gets_the_deadline_message() {
    let deadline = "filter hostile: {} exceeded its 100 ms CPU deadline (callback_deadline_ms); the VM is failed";
    let start = compile("start-loops.wat", &looping("(start $spin)"));
    let err = Harness::new(&start, short_deadline())
        .err()
        .expect("refused");
    assert_eq!(
        err.to_string(),
        format!(
            "cannot instantiate start-loops.wat: {}",
            deadline.replace("{}", "the start function")
        )
    );

    let init = compile(
        "init-loops.wat",
        &looping("(export \"_initialize\" (func $spin))"),
    );
    match Harness::new(&init, short_deadline()) {
        Err(HarnessError::Trap { callback, trap, .. }) => {
            assert_eq!(callback, "_initialize");
            assert_eq!(trap, deadline.replace("{}", "_initialize"));
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("start-up must fail"),
    }
}

#[test]
fn a_trap_reads_wasm_trap_once() {
    let traps = filter(
        "",
        "",
        r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) unreachable)"#,
    );
    let m = compile("traps.wat", &traps);
    let mut h = Harness::new(&m, config()).expect("starts");
    let outcome = h.exchange(&get()).expect("runs");
    let trap = outcome.trap.expect("trapped").trap;
    assert!(
        trap.starts_with("wasm trap: wasm `unreachable` instruction executed"),
        "{trap}"
    );
    assert_eq!(trap.matches("wasm trap:").count(), 1, "{trap}");
}
