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
