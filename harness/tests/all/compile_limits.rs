//! Bounded compilation: a module over the engine's [`ModuleLimits`] (size,
//! functions defined, largest function body, compile time) is refused
//! before or while Cranelift runs, with a message naming the limit, the
//! module's figure and the override; real filters load under the defaults
//! and under limits just above their own figures.

use harness::limits::{ModuleLimit, ModuleLimits};
use harness::{CompiledModule, Harness, HarnessError, WasmEngine};

use crate::cli::{harness, stderr};
use crate::hostile::{assert_process_serves_traffic, config, filter, get};
use crate::support::{module, wasm_dir};

fn engine(limits: ModuleLimits) -> WasmEngine {
    WasmEngine::shared().unwrap().with_module_limits(limits)
}

/// The refusal for `bytes` under `limits`, as (limit, message).
fn refusal(limits: ModuleLimits, name: &str, bytes: &[u8]) -> (ModuleLimit, String) {
    match CompiledModule::from_bytes_with(&engine(limits), name, bytes) {
        Err(e @ HarnessError::ModuleLimit { limit, .. }) => (limit, e.to_string()),
        Err(other) => panic!("{name}: refused for another reason: {other}"),
        Ok(_) => panic!("{name}: loaded"),
    }
}

/// A filter defining `extra` more functions, each `(drop (i32.const 1))`
/// repeated `ops` times: a body of 1 (no locals) + 3 × ops + 1 (end) bytes.
fn filter_with(extra: usize, ops: usize) -> String {
    let body = "(drop (i32.const 1))".repeat(ops);
    filter("", "", &format!("(func {body})").repeat(extra))
}

/// `filter()` defines malloc, the ABI marker and proxy_on_context_create.
const BASE_FUNCTIONS: usize = 3;

fn how_to_raise(field: &str, flag: &str) -> String {
    format!(
        "({field}); if the module is trusted, raise it with `harness run {flag}` / `harness compile \
         {flag}`, or ModuleLimits::{field} on the WasmEngine in the library (0 = no limit)"
    )
}

#[test]
fn a_module_over_the_size_limit_is_refused_before_it_is_read() {
    let limits = ModuleLimits {
        max_module_bytes: 1000,
        ..ModuleLimits::default()
    };
    let text = filter_with(1, 400);
    let (limit, message) = refusal(limits, "big.wat", text.as_bytes());
    assert_eq!(limit, ModuleLimit::ModuleBytes);
    assert_eq!(
        message,
        format!(
            "refusing to compile big.wat: the module is {} bytes, over the limit of 1000 bytes {}",
            text.len(),
            how_to_raise("max_module_bytes", "--max-module-mb MIB")
        )
    );

    // The default (64 MiB) on a sparse file: refused from its length alone.
    let path = std::env::temp_dir().join(format!("harness-huge-{}.wasm", std::process::id()));
    let file = std::fs::File::create(&path).unwrap();
    std::io::Write::write_all(&mut &file, b"\0asm\x01\0\0\0").unwrap();
    file.set_len(64 * 1024 * 1024 + 1).unwrap();
    let err = CompiledModule::from_file(&path).err().expect("refused");
    std::fs::remove_file(&path).unwrap();
    assert!(
        matches!(&err, HarnessError::ModuleLimit { limit: ModuleLimit::ModuleBytes, detail, .. }
            if detail.starts_with("the module is 67108865 bytes, over the limit of 67108864 bytes")),
        "{err}"
    );
}

#[test]
fn a_module_defining_too_many_functions_is_refused() {
    let limits = ModuleLimits {
        max_functions: 10,
        ..ModuleLimits::default()
    };
    let (limit, message) = refusal(limits, "many.wat", filter_with(8, 1).as_bytes());
    assert_eq!(limit, ModuleLimit::Functions);
    assert_eq!(
        message,
        format!(
            "refusing to compile many.wat: the module defines {} functions, over the limit of 10 {}",
            BASE_FUNCTIONS + 8,
            how_to_raise("max_functions", "--max-functions N")
        )
    );
    // At the limit it loads.
    let at_limit = filter_with(7, 1);
    assert!(
        CompiledModule::from_bytes_with(&engine(limits), "ten.wat", at_limit.as_bytes()).is_ok()
    );
}

#[test]
fn a_function_body_over_the_limit_is_refused_and_the_default_is_1_mib() {
    let limits = ModuleLimits {
        max_function_body_bytes: 150,
        ..ModuleLimits::default()
    };
    let (limit, message) = refusal(limits, "long.wat", filter_with(1, 50).as_bytes());
    assert_eq!(limit, ModuleLimit::FunctionBodyBytes);
    assert_eq!(
        message,
        format!(
            "refusing to compile long.wat: the body of defined function {BASE_FUNCTIONS} is 152 \
             bytes, over the limit of 150 bytes {}",
            how_to_raise("max_function_body_bytes", "--max-function-body-kb KIB")
        )
    );
    // 1 MiB + 1 byte of body under the default limits.
    let ops = (1024 * 1024 - 2) / 3 + 1;
    let (limit, message) = refusal(
        ModuleLimits::default(),
        "huge-body.wat",
        filter_with(1, ops).as_bytes(),
    );
    assert_eq!(limit, ModuleLimit::FunctionBodyBytes);
    assert!(
        message.contains(&format!(
            "is {} bytes, over the limit of 1048576 bytes",
            3 * ops + 2
        )),
        "{message}"
    );
}

/// One function of `n` conditional updates of a local: Cranelift's time
/// grows faster than linearly in it (about 0.4 s for 5,000 and 1.7 s for 10,000 on a 2-core machine).
fn slow_to_compile(n: usize) -> String {
    let ifs: String = (0..n)
        .map(|i| {
            format!(
                "(if (local.get 0) (then (local.set 0 (i32.add (local.get 0) (i32.const {i})))))"
            )
        })
        .collect();
    filter(
        "",
        "",
        &format!("(func (param i32) (result i32) {ifs} (local.get 0))"),
    )
}

#[test]
fn a_module_compiling_past_the_timeout_is_refused_in_time() {
    let limits = ModuleLimits {
        compile_timeout_ms: 20,
        ..ModuleLimits::default()
    };
    let started = std::time::Instant::now();
    let (limit, message) = refusal(limits, "slow.wat", slow_to_compile(8_000).as_bytes());
    let waited = started.elapsed();
    assert_eq!(limit, ModuleLimit::CompileTimeout);
    assert_eq!(
        message,
        format!(
            "refusing to compile slow.wat: compiling did not finish within the limit of 20 ms {}",
            how_to_raise("compile_timeout_ms", "--compile-timeout-ms MS")
        )
    );
    // The caller waited for the budget, not for the compiler (the WAT
    // conversion and measuring come first, a few ms).
    assert!(waited < std::time::Duration::from_millis(600), "{waited:?}");
    assert_process_serves_traffic();
}

#[test]
fn real_filters_load_under_the_defaults_and_under_limits_just_above_their_figures() {
    // response_header.wasm: about 258 KB, 768 functions, largest body 7.3 KB.
    let _ = module("response_header.wasm");
    let path = wasm_dir().join("response_header.wasm");
    let tight = ModuleLimits {
        max_module_bytes: 1024 * 1024,
        max_functions: 1000,
        max_function_body_bytes: 16 * 1024,
        compile_timeout_ms: 30_000,
    };
    let m = CompiledModule::from_file_with(&engine(tight), &path)
        .unwrap_or_else(|e| panic!("refused: {e}"));
    let mut config = config();
    config.plugin.configuration = r#"{"name":"x-limits","value":"ok"}"#.into();
    let outcome = Harness::new(&m, config).unwrap().exchange(&get()).unwrap();
    let response = outcome.response.expect("a response");
    assert_eq!(
        response.message.headers.get_text("x-limits").as_deref(),
        Some("ok")
    );
    // Tighter than its own figures, each limit refuses it.
    for (limits, expected) in [
        (
            ModuleLimits {
                max_functions: 100,
                ..tight
            },
            ModuleLimit::Functions,
        ),
        (
            ModuleLimits {
                max_function_body_bytes: 1024,
                ..tight
            },
            ModuleLimit::FunctionBodyBytes,
        ),
    ] {
        match CompiledModule::from_file_with(&engine(limits), &path) {
            Err(HarnessError::ModuleLimit { limit, .. }) => assert_eq!(limit, expected),
            Err(other) => panic!("refused for another reason: {other}"),
            Ok(_) => panic!("loaded under {limits:?}"),
        }
    }
}

#[test]
fn run_and_compile_take_the_limits_as_flags() {
    let _ = module("response_header.wasm");
    let path = wasm_dir().join("response_header.wasm");
    let path = path.to_str().unwrap();
    let out = harness(&["run", path, "--max-functions", "100"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with(&format!(
            "harness: refusing to compile {path}: the module defines "
        )),
        "{}",
        stderr(&out)
    );
    let cwasm = std::env::temp_dir().join(format!("harness-limits-{}.cwasm", std::process::id()));
    let cwasm = cwasm.to_str().unwrap();
    let out = harness(&["compile", path, "-o", cwasm, "--max-function-body-kb", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("(max_function_body_bytes)"),
        "{}",
        stderr(&out)
    );
    let out = harness(&[
        "run",
        path,
        "--config",
        r#"{"name":"x","value":"y"}"#,
        "--max-functions",
        "1000",
        "--max-function-body-kb",
        "16",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}
