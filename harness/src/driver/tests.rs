//! The VM's failure policy and isolation, on tiny WAT filters.
use super::*;
use crate::model::PluginConfig;
use crate::model::{Exchange, UpstreamResponse};

/// A minimal filter in WAT: `request_headers` logs "boom" then traps,
/// or returns `$action` when `trap` is false.
fn module(trap: bool, action: i32) -> CompiledModule {
    let body = if trap {
        "(drop (call $log (i32.const 4) (i32.const 0) (i32.const 4))) unreachable".to_string()
    } else {
        format!("(i32.const {action})")
    };
    let wat = format!(
        r#"(module
          (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (global $heap (mut i32) (i32.const 1024))
          (func (export "malloc") (param i32) (result i32) (local i32)
            global.get $heap local.set 1
            global.get $heap local.get 0 i32.add global.set $heap
            local.get 1)
          (func (export "proxy_abi_version_0_2_1"))
          (func (export "proxy_on_context_create") (param i32 i32))
          (data (i32.const 0) "boom")
          (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) {body}))"#
    );
    CompiledModule::from_bytes("test.wat", wat.as_bytes()).unwrap()
}

fn config(fail_open: bool) -> HarnessConfig {
    HarnessConfig {
        plugin: PluginConfig {
            fail_open,
            ..Default::default()
        },
        ..Default::default()
    }
}

#[test]
fn a_trap_fails_closed_with_503_for_this_and_later_streams() {
    let mut h = Harness::new(module(true, 0), config(false)).unwrap();
    let first = h.exchange(&Exchange::default()).unwrap();
    let trap = first.trap.expect("trap reported");
    assert_eq!(trap.callback, "proxy_on_request_headers");
    assert_eq!(trap.panic_message.as_deref(), Some("boom"));
    assert_eq!(first.response.unwrap().status, 503);
    assert!(first.upstream_request.is_none());
    let second = h.exchange(&Exchange::default()).unwrap();
    assert!(second.trap.is_none(), "the trap is reported once");
    assert_eq!(second.local_reply.unwrap().details, "wasm_fail_stream");
    assert!(h.vm_failure().is_some());
}

#[test]
fn fail_open_lets_traffic_through_after_a_trap() {
    let mut h = Harness::new(module(true, 0), config(true)).unwrap();
    for _ in 0..2 {
        let o = h.exchange(&Exchange::default()).unwrap();
        assert_eq!(o.response.unwrap().status, 200);
        assert!(o.upstream_request.is_some());
    }
}

#[test]
fn a_pause_nothing_can_resume_is_a_stall_not_a_hang() {
    let mut h = Harness::new(module(false, 1), config(false)).unwrap();
    let o = h.exchange(&Exchange::default()).unwrap();
    match o.end {
        StreamEnd::Stalled { reason } => {
            assert!(reason.contains("request stopped at headers"), "{reason}")
        }
        other => panic!("expected a stall, got {other:?}"),
    }
    assert!(o.response.is_none());
    assert!(o.upstream_request.is_none());
}

#[test]
fn harnesses_share_nothing_unless_asked() {
    let m = module(false, 0);
    let a = Harness::new(&m, config(false)).unwrap();
    let b = Harness::new(&m, config(false)).unwrap();
    a.shared().set_data("", b"k", b"v", 0);
    let mut out = Vec::new();
    assert!(b.shared().get_data("", b"k", &mut out).is_err());
    let c = Harness::with_shared(&m, config(false), a.shared()).unwrap();
    assert!(c.shared().get_data("", b"k", &mut out).is_ok());
}

#[test]
fn an_unreachable_upstream_gets_the_routers_503_through_the_filter() {
    // on_response_headers adds "x-f: 1" to the response map.
    let wat = r#"(module
      (import "env" "proxy_add_header_map_value"
        (func $add (param i32 i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 0) "x-f1")
      (func (export "malloc") (param i32) (result i32) i32.const 1024)
      (func (export "proxy_abi_version_0_2_1"))
      (func (export "proxy_on_context_create") (param i32 i32))
      (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
        (drop (call $add (i32.const 2) (i32.const 0) (i32.const 3) (i32.const 3) (i32.const 1)))
        i32.const 0))"#;
    let m = CompiledModule::from_bytes("unreachable.wat", wat.as_bytes()).unwrap();
    let mut h = Harness::new(&m, config(false)).unwrap();
    let exchange = Exchange {
        upstream: UpstreamResponse {
            unreachable: true,
            ..UpstreamResponse::default()
        },
        ..Exchange::default()
    };
    let o = h.exchange(&exchange).unwrap();
    let response = o.response.unwrap();
    assert_eq!(response.status, 503);
    assert_eq!(
        response.message.headers.get_text("x-f").as_deref(),
        Some("1")
    );
    assert_eq!(
        response.message.body.to_text(),
        "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
    );
    let reply = o.local_reply.unwrap();
    assert_eq!(
        reply.details,
        "upstream_reset_before_response_started{connection_failure}"
    );
    assert_eq!(reply.source, "harness");
    assert!(o.upstream_request.is_none());
    assert!(o.trap.is_none());
}
