//! Loading modules: the errors a user can act on, and the restricted WASI
//! subset seen from a hand-written (WAT) guest.

use harness::{CompiledModule, Harness, HarnessConfig, HarnessError, LogLevel};

/// A minimal Proxy-Wasm module: `abi` export name, extra imports and body.
fn module(abi: Option<&str>, imports: &str, body: &str, allocator: bool) -> String {
    let abi = abi
        .map(|a| format!(r#"(func (export "{a}"))"#))
        .unwrap_or_default();
    let allocator = if allocator {
        r#"(func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 4096))"#
    } else {
        ""
    };
    format!(
        r#"(module
  {imports}
  (memory (export "memory") 1)
  {abi}
  {allocator}
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  {body}
)"#
    )
}

fn compile(text: &str) -> Result<CompiledModule, HarnessError> {
    CompiledModule::from_bytes("test.wat", text.as_bytes())
}

#[test]
fn a_missing_file_names_the_path() {
    let error = CompiledModule::from_file("/no/such/filter.wasm")
        .err()
        .expect("fails");
    assert!(
        matches!(error, HarnessError::ModuleNotFound { .. }),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(
        text.contains("/no/such/filter.wasm")
            && text.contains("cargo build --target wasm32-wasip1"),
        "{text}"
    );
}

#[test]
fn bytes_that_are_not_wasm_are_refused() {
    let error = CompiledModule::from_bytes("notes.txt", b"hello world")
        .err()
        .expect("fails");
    assert!(matches!(error, HarnessError::NotWasm { .. }), "{error:?}");
    assert!(error.to_string().contains("notes.txt"));
}

#[test]
fn a_module_without_an_abi_version_export_is_refused() {
    let error = compile(&module(None, "", "", true)).err().expect("fails");
    assert!(
        matches!(error, HarnessError::NoAbiVersion { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("proxy_abi_version"), "{error}");
}

#[test]
fn a_module_without_an_allocator_is_refused() {
    let error = compile(&module(Some("proxy_abi_version_0_2_1"), "", "", false))
        .err()
        .expect("fails");
    match error {
        HarnessError::MissingExport { export, .. } => {
            assert!(export.contains("proxy_on_memory_allocate"), "{export}")
        }
        other => panic!("expected MissingExport, got {other:?}"),
    }
}

#[test]
fn unknown_imports_are_refused_and_abi_0_2_0_has_no_get_log_level() {
    let bogus = r#"(import "env" "proxy_does_not_exist" (func (param i32) (result i32)))"#;
    let error = compile(&module(Some("proxy_abi_version_0_2_1"), bogus, "", true))
        .err()
        .expect("fails");
    assert!(
        matches!(&error, HarnessError::UnknownImport { field, .. } if field == "proxy_does_not_exist"),
        "{error:?}"
    );

    let log_level = r#"(import "env" "proxy_get_log_level" (func (param i32) (result i32)))"#;
    assert!(
        compile(&module(
            Some("proxy_abi_version_0_2_1"),
            log_level,
            "",
            true
        ))
        .is_ok()
    );
    let error = compile(&module(
        Some("proxy_abi_version_0_2_0"),
        log_level,
        "",
        true,
    ))
    .err()
    .expect("fails");
    assert!(
        matches!(&error, HarnessError::UnknownImport { field, .. } if field == "proxy_get_log_level"),
        "{error:?}"
    );
    assert!(
        compile(&module(Some("proxy_abi_version_0_2_0"), "", "", true)).is_ok(),
        "0.2.0 is supported"
    );
}

#[test]
fn the_wasi_subset_answers_like_envoy() {
    let imports = r#"
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_unstable" "fd_write" (func $fd_write_unstable (param i32 i32 i32 i32) (result i32)))
  (data (i32.const 100) "fd 3 is EBADF")
  (data (i32.const 120) "fd 3 is not EBADF")
  (data (i32.const 140) "hello from fd 1\n")
  (data (i32.const 160) "hi from wasi_unstable on fd 2\n")
  (data (i32.const 200) "args are empty")
  (data (i32.const 220) "args are not empty")"#;
    let body = r#"
  (func (export "_initialize")
    (i32.store (i32.const 0) (i32.const 140))
    (i32.store (i32.const 4) (i32.const 16))
    (if (i32.eq (call $fd_write (i32.const 3) (i32.const 0) (i32.const 1) (i32.const 8)) (i32.const 8))
      (then (drop (call $log (i32.const 2) (i32.const 100) (i32.const 13))))
      (else (drop (call $log (i32.const 2) (i32.const 120) (i32.const 17)))))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (i32.store (i32.const 0) (i32.const 160))
    (i32.store (i32.const 4) (i32.const 30))
    (drop (call $fd_write_unstable (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
    (i32.store (i32.const 16) (i32.const 99))
    (i32.store (i32.const 20) (i32.const 99))
    (drop (call $args_sizes_get (i32.const 16) (i32.const 20)))
    (if (i32.or (i32.load (i32.const 16)) (i32.load (i32.const 20)))
      (then (drop (call $log (i32.const 2) (i32.const 220) (i32.const 18))))
      (else (drop (call $log (i32.const 2) (i32.const 200) (i32.const 14))))))"#;
    let compiled = compile(&module(
        Some("proxy_abi_version_0_2_1"),
        imports,
        body,
        true,
    ))
    .expect("compiles");
    let envoy = Harness::new(&compiled, HarnessConfig::default()).expect("starts");
    // The canary's start-up comes first, marked (see lifecycle's canary test).
    let logs: Vec<(LogLevel, String)> = envoy
        .startup()
        .logs
        .iter()
        .filter(|l| !l.message.starts_with("[canary] "))
        .map(|l| (l.level, l.message.clone()))
        .collect();
    assert_eq!(
        logs,
        vec![
            (LogLevel::Info, "fd 3 is EBADF".to_string()),
            (LogLevel::Info, "hello from fd 1".to_string()),
            (LogLevel::Error, "hi from wasi_unstable on fd 2".to_string()),
            (LogLevel::Info, "args are empty".to_string()),
        ]
    );
    assert!(
        envoy.startup().logs.iter().all(|l| l.context_id == 0),
        "start-up logs come from the VM (context 0)"
    );
}

#[test]
fn out_of_bounds_pointers_get_invalid_memory_access_not_a_host_crash() {
    let imports = r#"
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (data (i32.const 100) "log past the end: INVALID_MEMORY_ACCESS")
  (data (i32.const 140) "log past the end: other status")
  (data (i32.const 180) "key past the end: INVALID_MEMORY_ACCESS")
  (data (i32.const 220) "key past the end: other status")"#;
    let body = r#"
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (i32.eq (call $log (i32.const 2) (i32.const 65530) (i32.const 100)) (i32.const 6))
      (then (drop (call $log (i32.const 2) (i32.const 100) (i32.const 39))))
      (else (drop (call $log (i32.const 2) (i32.const 140) (i32.const 30)))))
    (if (i32.eq (call $get (i32.const 0) (i32.const -16) (i32.const 64) (i32.const 0) (i32.const 4)) (i32.const 6))
      (then (drop (call $log (i32.const 2) (i32.const 180) (i32.const 39))))
      (else (drop (call $log (i32.const 2) (i32.const 220) (i32.const 30)))))
    (i32.const 0))"#;
    let compiled = compile(&module(
        Some("proxy_abi_version_0_2_1"),
        imports,
        body,
        true,
    ))
    .expect("compiles");
    let mut envoy = Harness::new(&compiled, HarnessConfig::default()).expect("starts");
    let outcome = envoy
        .exchange(&harness::Exchange::default())
        .expect("the exchange runs");
    let lines: Vec<&str> = outcome.logs.iter().map(|l| l.message.as_str()).collect();
    assert!(
        lines.contains(&"log past the end: INVALID_MEMORY_ACCESS"),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"key past the end: INVALID_MEMORY_ACCESS"),
        "{lines:?}"
    );
    assert!(outcome.trap.is_none());
    assert_eq!(outcome.response.map(|r| r.status), Some(200));
}

/// A fresh compiled-module cache directory for one test, and the harness
/// binary run with it; removed when dropped.
struct CacheDir(std::path::PathBuf);

impl CacheDir {
    fn fresh(name: &str) -> CacheDir {
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        crate::support::module("response_header.wasm");
        CacheDir(dir)
    }

    fn harness(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_harness"))
            .env("HARNESS_CACHE_DIR", &self.0)
            .args(args)
            .output()
            .expect("harness runs")
    }

    fn entries(&self) -> Vec<std::path::PathBuf> {
        std::fs::read_dir(&self.0)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default()
    }
}

impl Drop for CacheDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn modified(path: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

const CACHED_CONFIG: &str = r#"{"name":"x-cached","value":"1"}"#;

/// The on-disk cache of compiled modules: a second run loads the entry
/// the first wrote; a damaged entry is compiled again and replaced.
#[test]
fn a_second_run_loads_the_compiled_module_from_the_cache() {
    let cache = CacheDir::fresh("harness-cache-test");
    let wasm = crate::support::wasm_dir().join("response_header.wasm");
    let wasm = wasm.to_string_lossy();
    let run = || cache.harness(&["run", &wasm, "--config", CACHED_CONFIG]);
    let first = run();
    assert!(first.status.success());
    let written = cache.entries();
    assert_eq!(written.len(), 1, "one entry: {written:?}");
    assert!(written[0].to_string_lossy().ends_with(".cwasm"));
    let before = modified(&written[0]);
    let second = run();
    assert_eq!(
        second.stdout, first.stdout,
        "same transcript from the cached module"
    );
    assert_eq!(
        before,
        modified(&written[0]),
        "a hit does not rewrite the entry"
    );
    std::fs::write(&written[0], b"not an artifact").expect("damage the entry");
    let third = run();
    assert!(
        third.status.success(),
        "{}",
        String::from_utf8_lossy(&third.stderr)
    );
    let bytes = std::fs::read(&written[0]).expect("replaced entry");
    assert!(
        harness::CompiledModule::is_precompiled(&bytes),
        "the entry was rewritten"
    );
}

/// `harness check`'s start-up (and so `publish push`'s preflight) compiles
/// through the same cache: after a check, a run of the same module loads
/// the entry the check wrote.
#[test]
fn a_check_fills_the_cache_that_a_run_then_loads() {
    let cache = CacheDir::fresh("harness-cache-check");
    let wasm = crate::support::wasm_dir().join("response_header.wasm");
    let wasm = wasm.to_string_lossy();
    let check = cache.harness(&["check", &wasm, "--config", CACHED_CONFIG]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let entries = cache.entries();
    assert_eq!(entries.len(), 1, "the check wrote one entry: {entries:?}");
    let written = modified(&entries[0]);
    let run = cache.harness(&["run", &wasm, "--config", CACHED_CONFIG]);
    assert!(run.status.success());
    assert_eq!(
        written,
        modified(&entries[0]),
        "the run loaded the check's entry"
    );
}
