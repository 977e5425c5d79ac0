use super::*;

#[test]
fn compiled_modules_and_shared_state_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<CompiledModule>();
    send_sync::<WasmEngine>();
    send_sync::<crate::host::SharedHost>();
    fn send<T: Send>() {}
    send::<WasmVm>();
}

#[test]
fn load_errors_name_the_problem() {
    let err = |bytes: &[u8]| {
        CompiledModule::from_bytes("m", bytes)
            .err()
            .map(|e| e.to_string())
    };
    assert!(
        err(b"ELF")
            .unwrap_or_default()
            .contains("not a WebAssembly module")
    );
    assert!(
        err(b"(module)")
            .unwrap_or_default()
            .contains("proxy_abi_version")
    );
    let no_alloc = r#"(module (memory (export "memory") 1)
        (func (export "proxy_abi_version_0_2_1")) (func (export "proxy_on_context_create") (param i32 i32)))"#;
    assert!(
        err(no_alloc.as_bytes())
            .unwrap_or_default()
            .contains("malloc or proxy_on_memory_allocate")
    );
    let foreign_import = r#"(module (import "env" "not_a_hostcall" (func))
        (memory (export "memory") 1) (func (export "malloc") (param i32) (result i32) i32.const 0)
        (func (export "proxy_abi_version_0_2_1")) (func (export "proxy_on_context_create") (param i32 i32)))"#;
    assert!(
        err(foreign_import.as_bytes())
            .unwrap_or_default()
            .contains("env::not_a_hostcall")
    );
    let old_abi = r#"(module (memory (export "memory") 1)
        (func (export "malloc") (param i32) (result i32) i32.const 0)
        (func (export "proxy_abi_version_0_1_0")) (func (export "proxy_on_context_create") (param i32 i32))
        (func (export "proxy_on_request_headers") (param i32 i32) (result i32) i32.const 0))"#;
    let loaded = CompiledModule::from_bytes("m", old_abi.as_bytes()).map(|m| m.abi_version());
    assert_eq!(loaded.ok(), Some(AbiVersion::V0_1_0));
}

#[test]
fn measuring_leaves_broken_modules_to_wasmtime_and_zero_means_no_limit() {
    let engine = WasmEngine::shared()
        .unwrap()
        .with_module_limits(ModuleLimits {
            max_module_bytes: 0,
            max_functions: 0,
            max_function_body_bytes: 0,
            compile_timeout_ms: 0,
        });
    // A truncated section: wasmtime's own message, not a limit.
    let truncated = b"\0asm\x01\0\0\0\x01\x05\x01";
    match CompiledModule::from_bytes_with(&engine, "cut.wasm", truncated) {
        Err(HarnessError::Compile { detail, .. }) => assert!(!detail.is_empty()),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("loaded"),
    }
    // WAT syntax errors come from the text parser.
    let err = CompiledModule::from_bytes_with(&engine, "bad.wat", b"(module (func (oops)))")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.starts_with("cannot compile bad.wat: "), "{err}");
    // No limit at all, compiled on the calling thread: a filter loads.
    let ok = r#"(module (memory (export "memory") 1)
        (func (export "malloc") (param i32) (result i32) i32.const 0)
        (func (export "proxy_abi_version_0_2_1")) (func (export "proxy_on_context_create") (param i32 i32)))"#;
    assert!(CompiledModule::from_bytes_with(&engine, "ok.wat", ok.as_bytes()).is_ok());
}
