//! ABI 0.1.0 and 0.2.0 modules (hand-written WAT in harness/wat-filters/abi)
//! load and run with their own semantics, detected from the version export.

use std::sync::OnceLock;

use harness::abi::AbiVersion;
use harness::{
    Body, CompiledModule, DownstreamRequest, Harness, HarnessConfig, HarnessError, PluginConfig,
    TraceEvent, UpstreamResponse,
};

fn source(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("wat-filters/abi")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn abi_0_1_0() -> &'static CompiledModule {
    static M: OnceLock<CompiledModule> = OnceLock::new();
    M.get_or_init(|| {
        CompiledModule::from_bytes("abi_0_1_0.wat", source("abi_0_1_0.wat").as_bytes()).unwrap()
    })
}

fn abi_0_2_0() -> &'static CompiledModule {
    static M: OnceLock<CompiledModule> = OnceLock::new();
    M.get_or_init(|| {
        CompiledModule::from_bytes("abi_0_2_0.wat", source("abi_0_2_0.wat").as_bytes()).unwrap()
    })
}

fn config(vm_config: &str, configuration: &str) -> HarnessConfig {
    HarnessConfig {
        plugin: PluginConfig {
            vm_config: vm_config.into(),
            configuration: configuration.into(),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn get() -> DownstreamRequest {
    DownstreamRequest::from_request_line("GET /abi").unwrap()
}

#[test]
fn the_version_export_decides_the_abi() {
    assert_eq!(abi_0_1_0().abi_version(), AbiVersion::V0_1_0);
    assert_eq!(abi_0_2_0().abi_version(), AbiVersion::V0_2_0);
}

#[test]
fn abi_0_1_0_header_callbacks_missing_headers_continue_request_and_route_cache() {
    let mut envoy = Harness::new(abi_0_1_0(), config("vm", "plugin-config")).unwrap();
    let outcome = envoy.send(&get(), &UpstreamResponse::default()).unwrap();
    // on_request_headers(ctx, headers) returned Pause and resumed the stream
    // with proxy_continue_request: the request reached the upstream.
    let upstream = outcome.upstream_request.as_ref().expect("request resumed");
    assert_eq!(
        upstream
            .headers
            .get_text("x-missing-header-status")
            .as_deref(),
        Some("0"),
        "0.1.0: a missing header reads as OK"
    );
    assert_eq!(outcome.hostcalls.get("proxy_continue_request"), Some(&1));
    let header_callbacks: Vec<(String, usize)> = outcome
        .trace
        .iter()
        .filter_map(|event| match event {
            TraceEvent::Callback { name, args, .. } if name.ends_with("_headers") => {
                Some((name.clone(), args.len()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        header_callbacks,
        vec![
            ("proxy_on_request_headers".to_string(), 2),
            ("proxy_on_response_headers".to_string(), 2)
        ],
        "0.1.0 header callbacks are called with (context, headers)"
    );
    let response = outcome.response.expect("response").message;
    assert_eq!(
        response.headers.get_text("x-clear-route-cache").as_deref(),
        Some("0")
    );
    assert_eq!(
        response.headers.get_text("x-abi").as_deref(),
        Some("plugin-config")
    );
}

#[test]
fn abi_0_1_0_get_configuration_is_the_vm_configuration_at_vm_start_and_the_plugins_at_configure() {
    // Each callback rejects a configuration whose size is not the one it was
    // given: different sizes tell the two configurations apart.
    Harness::new(abi_0_1_0(), config("", "plugin-config")).unwrap();
    Harness::new(abi_0_1_0(), config("a-longer-vm-configuration", "p")).unwrap();
    let envoy = Harness::new(abi_0_1_0(), config("vm-config", "plugin"));
    assert!(envoy.is_ok(), "{:?}", envoy.err());
    let startup = envoy.unwrap().startup().clone();
    assert_eq!(startup.hostcalls.get("proxy_get_configuration"), Some(&2));
}

#[test]
fn abi_0_2_0_has_end_of_stream_and_not_found() {
    let mut envoy = Harness::new(abi_0_2_0(), config("", "cfg-020")).unwrap();
    let outcome = envoy.send(&get(), &UpstreamResponse::default()).unwrap();
    let upstream = outcome.upstream_request.expect("request forwarded");
    assert_eq!(
        upstream
            .headers
            .get_text("x-missing-header-status")
            .as_deref(),
        Some("1"),
        "0.2.x: a missing header is NOT_FOUND"
    );
    assert_eq!(
        upstream.headers.get_text("x-end-of-stream").as_deref(),
        Some("1")
    );
    let mut post = DownstreamRequest::from_request_line("POST /abi").unwrap();
    post.body = Body::single("data");
    let outcome = envoy.send(&post, &UpstreamResponse::default()).unwrap();
    let upstream = outcome.upstream_request.expect("request forwarded");
    assert_eq!(
        upstream.headers.get_text("x-end-of-stream").as_deref(),
        Some("0")
    );
    let response = outcome.response.expect("response").message;
    assert_eq!(
        response.headers.get_text("x-abi").as_deref(),
        Some("cfg-020")
    );
}

#[test]
fn proxy_get_log_level_exists_only_in_0_2_1() {
    let import = r#"(import "env" "proxy_get_log_level" (func (param i32) (result i32)))"#;
    for (file, version) in [("abi_0_1_0.wat", "0.1.0"), ("abi_0_2_0.wat", "0.2.0")] {
        let text = source(file).replacen("(memory", &format!("{import}\n  (memory"), 1);
        let err = CompiledModule::from_bytes(file, text.as_bytes()).err();
        assert!(
            matches!(&err, Some(HarnessError::UnknownImport { field, .. }) if field == "proxy_get_log_level"),
            "ABI {version}: {err:?}"
        );
    }
}

#[test]
fn imports_follow_the_abi_version_as_cpp_host_registers_them() {
    // proxy-wasm-cpp-host WasmBase::registerCallbacks: the 0.1.0 stream
    // functions are not there for 0.2.x modules, and continue_stream /
    // close_stream are not there for 0.1.0 ones.
    let cases = [
        ("abi_0_2_0.wat", "proxy_continue_request", ""),
        ("abi_0_2_0.wat", "proxy_clear_route_cache", ""),
        ("abi_0_1_0.wat", "proxy_continue_stream", "(param i32)"),
        ("abi_0_1_0.wat", "proxy_close_stream", "(param i32)"),
    ];
    for (file, function, params) in cases {
        let import = format!(r#"(import "env" "{function}" (func {params} (result i32)))"#);
        let text = source(file).replacen("(memory", &format!("{import}\n  (memory"), 1);
        let err = CompiledModule::from_bytes(file, text.as_bytes()).err();
        assert!(
            matches!(&err, Some(HarnessError::UnknownImport { field, .. }) if field == function),
            "{file} importing {function}: {err:?}"
        );
    }
}

#[test]
fn emscripten_runtime_imports_are_provided_as_cpp_host_defines_them() {
    // proxy-wasm-cpp-host registers env.emscripten_notify_memory_growth (a
    // no-op, allowed during start-up) and env.pthread_equal (left == right)
    // for every module (WasmBase::registerCallbacks, src/exports.cc).
    let text = source("emscripten.wat");
    let module = CompiledModule::from_bytes("emscripten.wat", text.as_bytes())
        .unwrap_or_else(|e| panic!("a module importing Emscripten's runtime loads: {e}"));
    let mut envoy = Harness::new(&module, config("", "")).unwrap();
    let outcome = envoy.send(&get(), &UpstreamResponse::default()).unwrap();
    let upstream = outcome.upstream_request.expect("request forwarded");
    assert_eq!(
        upstream.headers.get_text("x-pthread-equal").as_deref(),
        Some("10"),
        "pthread_equal(3, 3) is 1 and pthread_equal(3, 4) is 0"
    );
}

#[test]
fn pthread_equal_during_start_up_traps_as_a_restricted_callback() {
    // Off WasmBase::startVm's list of functions allowed before the VM
    // starts, so the runtime traps ("restricted_callback").
    let text = source("emscripten.wat").replace(
        ";; start-up calls",
        "(drop (call $pthread_equal (i32.const 1) (i32.const 1)))",
    );
    let module = CompiledModule::from_bytes("emscripten.wat", text.as_bytes()).unwrap();
    let error = Harness::new(&module, config("", ""))
        .err()
        .expect("start-up fails");
    assert!(
        error
            .to_string()
            .contains("pthread_equal called during VM start-up"),
        "{error}"
    );
}
