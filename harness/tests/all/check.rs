//! `harness check`, the preflight: small WAT modules that Envoy would
//! refuse for one reason each, a WAT module and a built example filter
//! that it would load, through the library and through the binary.

use std::path::PathBuf;

use harness::preflight::{self, CheckOptions, Report, Severity, feature_named, target_named};
use serde_json::Value;

use crate::cli::{harness, stderr, stdout};
use crate::support::{module, wasm_dir};

/// A Proxy-Wasm module of ABI `abi` (e.g. `0_2_1`) with `imports` first
/// and `more` after the exports every host requires.
fn wat_module(abi: &str, imports: &str, more: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
            {imports}
            (memory (export "memory") 2)
            (func (export "proxy_abi_version_{abi}"))
            (func (export "proxy_on_context_create") (param i32 i32))
            (func (export "malloc") (param i32) (result i32) i32.const 1024)
            {more})"#
    ))
    .unwrap()
}

fn check(bytes: &[u8]) -> Report {
    preflight::check("test.wasm", bytes, &CheckOptions::default())
}

/// The codes of the findings of `severity`.
fn codes(report: &Report, severity: Severity) -> Vec<&'static str> {
    report
        .findings
        .iter()
        .filter(|f| f.severity == severity)
        .map(|f| f.code)
        .collect()
}

/// The one error's message, asserting there is exactly one with `code`.
fn only_error(report: &Report, code: &str) -> String {
    assert!(!report.loads(), "{}", report.to_text());
    let errors: Vec<_> = report.errors().collect();
    assert_eq!(errors.len(), 1, "{}", report.to_text());
    assert_eq!(errors[0].code, code, "{}", report.to_text());
    errors[0].message.clone()
}

/// Writes `bytes` to a file of this process for the binary to check.
fn file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = std::env::temp_dir().join(format!("harness-check-{}-{name}", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn a_proxy_wasm_module_with_what_envoy_provides_passes_and_starts() {
    let bytes = wat_module(
        "0_2_1",
        r#"(import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
           (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))"#,
        r#"(data (i32.const 0) "starting")
           (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
             (drop (call $log (i32.const 2) (i32.const 0) (i32.const 8)))
             i32.const 1)
           (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) i32.const 0)"#,
    );
    let report = check(&bytes);
    assert!(report.loads(), "{}", report.to_text());
    assert!(report.findings.is_empty(), "{}", report.to_text());
    assert_eq!(report.abi_version, Some("0.2.1"));
    assert_eq!(report.target, "envoy-1.36");
    assert_eq!(report.size_bytes, bytes.len() as u64);
    assert_eq!(report.initial_memory_bytes, 2 * 65536);
    let startup = report.startup.as_ref().unwrap();
    assert!(startup.configured);
    let logged: Vec<&str> = startup.logs.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(logged, ["starting"]);
}

#[test]
fn an_unknown_import_is_refused_by_name() {
    let bytes = wat_module(
        "0_2_1",
        r#"(import "env" "proxy_send_smoke_signal" (func (param i32) (result i32)))"#,
        "",
    );
    let message = only_error(&check(&bytes), "unknown-import");
    assert!(message.contains("env.proxy_send_smoke_signal"), "{message}");
    // Start-up is not attempted for a module that would not load.
    let report = check(&bytes);
    assert!(report.startup.is_none());
    assert_eq!(codes(&report, Severity::Info), ["startup-skipped"]);

    let other_module = wat_module(
        "0_2_1",
        r#"(import "wasi:http/types" "new-fields" (func (result i32)))"#,
        "",
    );
    let message = only_error(&check(&other_module), "unknown-import");
    assert!(message.contains("wasi:http/types.new-fields"), "{message}");
}

#[test]
fn features_v8_lacks_are_refused_and_named() {
    let memory64 = wat::parse_str(
        r#"(module
            (memory (export "memory") i64 1)
            (func (export "proxy_abi_version_0_2_1"))
            (func (export "proxy_on_context_create") (param i32 i32))
            (func (export "malloc") (param i32) (result i32) i32.const 0))"#,
    )
    .unwrap();
    let message = only_error(&check(&memory64), "unsupported-feature");
    assert!(
        message.ends_with(")") && message.contains(": memory64 (first use"),
        "{message}"
    );

    let threads = wat::parse_str(
        r#"(module
            (memory (export "memory") 1 1 shared)
            (func (export "proxy_abi_version_0_2_1"))
            (func (export "proxy_on_context_create") (param i32 i32))
            (func (export "malloc") (param i32) (result i32)
              (i32.atomic.rmw.add (i32.const 0) (local.get 0))))"#,
    )
    .unwrap();
    assert!(only_error(&check(&threads), "unsupported-feature").contains(": threads (first use"));

    let wide = wat_module(
        "0_2_1",
        "",
        r#"(func (export "mul") (param i64 i64) (result i64 i64)
             local.get 0 local.get 1 i64.mul_wide_u)"#,
    );
    let report = check(&wide);
    let message = only_error(&report, "unsupported-feature");
    assert!(
        message.contains(": wide-arithmetic (first use"),
        "{message}"
    );
    // The export is reported too, as a warning.
    assert_eq!(codes(&report, Severity::Warning), ["never-called-export"]);

    // A feature allowed explicitly is no longer an error.
    let allowed = CheckOptions {
        allow_features: vec![feature_named("memory64").unwrap()],
        startup: None,
        ..CheckOptions::default()
    };
    let report = preflight::check("m.wasm", &memory64, &allowed);
    assert!(report.loads(), "{}", report.to_text());
}

#[test]
fn a_module_without_an_abi_marker_is_refused() {
    let bytes = wat::parse_str(
        r#"(module
            (memory (export "memory") 1)
            (func (export "proxy_on_context_create") (param i32 i32))
            (func (export "malloc") (param i32) (result i32) i32.const 0))"#,
    )
    .unwrap();
    let report = check(&bytes);
    assert_eq!(report.abi_version, None);
    only_error(&report, "no-abi-version");
}

#[test]
fn an_import_only_abi_0_1_0_offers_is_refused_in_a_0_2_1_module() {
    let imports = r#"(import "env" "proxy_continue_request" (func (result i32)))"#;
    let message = only_error(
        &check(&wat_module("0_2_1", imports, "")),
        "import-not-in-abi",
    );
    assert!(message.contains("env.proxy_continue_request"), "{message}");
    assert!(message.contains("only 0.1.0"), "{message}");
    // The same import is fine in the version that has it.
    let report = check(&wat_module("0_1_0", imports, ""));
    assert!(report.loads(), "{}", report.to_text());
}

#[test]
fn signatures_that_differ_from_the_hosts_are_refused() {
    let wrong_import = wat_module(
        "0_2_1",
        r#"(import "env" "proxy_log" (func (param i32 i32) (result i32)))"#,
        "",
    );
    let message = only_error(&check(&wrong_import), "import-signature");
    assert!(message.contains("(i32, i32) -> (i32)"), "{message}");
    // 0.1.0 header callbacks take two arguments; a 0.2.1 host passes three.
    let wrong_export = wat_module(
        "0_2_1",
        "",
        r#"(func (export "proxy_on_request_headers") (param i32 i32) (result i32) i32.const 0)"#,
    );
    let message = only_error(&check(&wrong_export), "export-signature");
    assert!(message.contains("(i32, i32, i32) -> (i32)"), "{message}");
}

#[test]
fn an_export_envoy_never_calls_is_a_warning_not_a_failure() {
    let bytes = wat_module(
        "0_2_1",
        "",
        r#"(func (export "proxy_on_reqeust_headers") (param i32 i32 i32) (result i32) i32.const 0)
           (func (export "proxy_on_foreign_function") (param i32 i32 i32) (result i32) i32.const 0)"#,
    );
    let report = check(&bytes);
    assert!(report.loads(), "{}", report.to_text());
    assert_eq!(codes(&report, Severity::Warning), ["never-called-export"]);
    assert!(
        report.findings[0]
            .message
            .contains("proxy_on_reqeust_headers")
    );
    assert!(report.findings[0].fix.contains("name"));

    // Names are the module's: printed with control characters escaped.
    let hostile = wat_module("0_2_1", "", r#"(func (export "clear\1b[2J"))"#);
    let report = check(&hostile);
    assert_eq!(
        report.findings[0].message,
        "it exports clear\u{1b}[2J, which Envoy never calls"
    );
    let text = report.to_text();
    assert!(
        !text.contains('\u{1b}') && text.contains("clear\\x1b[2J"),
        "{text}"
    );
}

#[test]
fn a_hostcall_during_initialize_is_refused_at_start_up() {
    let bytes = wat_module(
        "0_2_1",
        r#"(import "env" "proxy_set_tick_period_milliseconds" (func $tick (param i32) (result i32)))"#,
        r#"(func (export "_initialize") (drop (call $tick (i32.const 100))))"#,
    );
    let report = check(&bytes);
    only_error(&report, "startup-refused-call");
    let startup = report.startup.as_ref().unwrap();
    assert!(!startup.configured);
    assert_eq!(
        startup.refused_call.as_deref(),
        Some("proxy_set_tick_period_milliseconds")
    );
}

#[test]
fn start_up_that_never_returns_fails_the_check_at_its_deadline() {
    let bytes = wat_module(
        "0_2_1",
        "",
        r#"(func (export "proxy_on_vm_start") (param i32 i32) (result i32) (loop (br 0)) i32.const 1)"#,
    );
    let started = std::time::Instant::now();
    let report = check(&bytes);
    let message = only_error(&report, "startup-deadline");
    assert!(message.contains("proxy_on_vm_start"), "{message}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

#[test]
fn a_refused_configuration_is_an_error_only_when_one_was_given() {
    let bytes = wat_module(
        "0_2_1",
        "",
        r#"(func (export "proxy_on_configure") (param i32 i32) (result i32) i32.const 0)"#,
    );
    let report = check(&bytes);
    assert!(report.loads(), "{}", report.to_text());
    assert_eq!(
        codes(&report, Severity::Warning),
        [preflight::WITHOUT_CONFIG]
    );
    let configured = CheckOptions {
        startup: Some(preflight::StartupInput {
            configuration: Some(b"{}".to_vec()),
            ..Default::default()
        }),
        ..CheckOptions::default()
    };
    let report = preflight::check("c.wasm", &bytes, &configured);
    only_error(&report, "configuration-rejected");
}

#[test]
fn istio_targets_name_their_envoy_and_unknown_ones_list_the_known() {
    let istio = target_named("istio-1.28").unwrap();
    assert_eq!(istio.envoy, "envoy-1.36");
    let error = target_named("envoy-9.99").unwrap_err();
    assert!(
        error.contains("envoy-1.33") && error.contains("istio-1.25"),
        "{error}"
    );
}

#[test]
fn the_binary_exits_1_with_reasons_and_json_parses_back() {
    let bytes = wat_module(
        "0_2_1",
        r#"(import "env" "proxy_send_smoke_signal" (func (param i32) (result i32)))"#,
        "",
    );
    let file = file("bad.wasm", &bytes);
    let path = file.to_str().unwrap();
    let text = harness(&["check", path, "--target", "istio-1.27"]);
    assert_eq!(text.status.code(), Some(1), "{}", stderr(&text));
    let out = stdout(&text);
    assert!(
        out.contains("would NOT load on istio-1.27 (built on envoy-1.35)"),
        "{out}"
    );
    assert!(
        out.contains("error: it imports env.proxy_send_smoke_signal"),
        "{out}"
    );
    assert!(out.contains("  fix: "), "{out}");

    let json = harness(&["check", path, "--json", "--target", "istio-1.27"]);
    assert_eq!(json.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["target"], "istio-1.27");
    assert_eq!(report["envoy"], "envoy-1.35");
    assert_eq!(report["abi_version"], "0.2.1");
    assert_eq!(report["findings"][0]["severity"], "error");
    assert_eq!(report["findings"][0]["code"], "unknown-import");

    let usage = harness(&["check", path, "--target", "envoy-0.1"]);
    assert_eq!(usage.status.code(), Some(2));
    assert!(
        stderr(&usage).contains("known targets"),
        "{}",
        stderr(&usage)
    );
    let missing = harness(&["check", "no/such/filter.wasm"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("no/such/filter.wasm"));
    let _ = std::fs::remove_file(&file);
}

#[test]
fn a_built_example_filter_passes_and_starts_with_its_configuration() {
    let _ = module("response_header.wasm");
    let path = wasm_dir().join("response_header.wasm");
    let path = path.to_str().unwrap();
    let config = r#"{"name":"x-checked","value":"yes"}"#;
    let output = harness(&["check", path, "--config", config, "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["abi_version"], "0.2.1");
    assert_eq!(report["findings"], Value::Array(vec![]));
    assert_eq!(report["startup"]["configured"], true);
    assert_eq!(report["startup"]["config_given"], true);

    // Without a configuration it refuses to start: said, but not a failure.
    let unconfigured = harness(&["check", path]);
    assert_eq!(unconfigured.status.code(), Some(0));
    let out = stdout(&unconfigured);
    assert!(out.contains("would load on envoy-1.36"), "{out}");
    assert!(
        out.contains("warning: start-up: proxy_on_configure returned false"),
        "{out}"
    );
    assert!(out.contains("--config"), "{out}");
}
