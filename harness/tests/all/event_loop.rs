//! The event loop's bounds: a guest that never traps and keeps each
//! callback short, but answers every event with another, ends within the
//! bound with a message naming it and the callback, and the next VM works.

use harness::{ClusterSpec, Harness, HarnessConfig, HttpCalloutAnswer, StreamEnd};

use crate::hostile::{assert_process_serves_traffic, compile, config, filter, get, post};

/// Registers queue "q" at configure; a request with a body enqueues and
/// pauses; every `on_queue_ready` enqueues again, at the same virtual time,
/// forever. Requests without a body pass.
fn queue_ping_pong() -> harness::CompiledModule {
    let imports = r#"
      (import "env" "proxy_register_shared_queue" (func $reg (param i32 i32 i32) (result i32)))
      (import "env" "proxy_enqueue_shared_queue" (func $enq (param i32 i32 i32) (result i32)))"#;
    let funcs = r#"
      (func (export "proxy_on_configure") (param i32 i32) (result i32)
        (drop (call $reg (i32.const 0) (i32.const 1) (i32.const 16)))
        i32.const 1)
      (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
        (if (result i32) (local.get 2)
          (then i32.const 0)
          (else
            (drop (call $enq (i32.load (i32.const 16)) (i32.const 0) (i32.const 1)))
            i32.const 1)))
      (func (export "proxy_on_queue_ready") (param i32 i32)
        (drop (call $enq (local.get 1) (i32.const 0) (i32.const 1))))"#;
    compile(
        "ping-pong.wat",
        &filter(imports, r#"(data (i32.const 0) "q")"#, funcs),
    )
}

fn bounded(max_events: u64, wall_ms: u64) -> HarnessConfig {
    let mut c = config();
    c.max_events_per_step = max_events;
    c.step_wall_budget_ms = wall_ms;
    c.plugin.reload_on_failure = true;
    c
}

#[test]
fn a_queue_answered_by_another_enqueue_fails_the_vm_at_the_event_bound() {
    let module = queue_ping_pong();
    let mut h = Harness::new(&module, bounded(1_000, 60_000)).expect("start-up");
    let o = h.exchange(&post("x")).expect("exchange");
    let trap = o.trap.as_ref().expect("the bound fails the VM like a trap");
    assert_eq!(trap.callback, "proxy_on_queue_ready");
    assert!(
        trap.trap
            .contains("bound of 1000 events in one step (max_events_per_step)"),
        "{}",
        trap.trap
    );
    // The stream waiting on the queue is not failed: Envoy drops events
    // for a failed VM, so it waits (until Envoy's stream idle timeout).
    assert_waits_after_its_vm_failed(&o);
    // FAIL_RELOAD: the next stream gets a fresh VM and passes.
    let next = h.exchange(&get()).expect("next exchange");
    assert!(next.trap.is_none());
    assert_eq!(next.response.map(|r| r.status), Some(200));
    assert_process_serves_traffic();
}

#[test]
fn the_same_loop_ends_at_the_wall_clock_budget() {
    let module = queue_ping_pong();
    let mut h = Harness::new(&module, bounded(u64::MAX, 50)).expect("start-up");
    let started = std::time::Instant::now();
    let o = h.exchange(&post("x")).expect("exchange");
    let trap = o.trap.expect("the budget fails the VM like a trap");
    assert!(
        trap.trap.contains("wall-clock budget of 50 ms")
            && trap.trap.contains("proxy_on_queue_ready"),
        "{}",
        trap.trap
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

#[test]
fn a_callout_answered_by_another_callout_fails_the_vm_at_the_event_bound() {
    let imports = r#"
      (import "env" "proxy_http_call" (func $call
        (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))"#;
    // The header map for GET /x to authority c, in Envoy's wire format.
    let mut map = Vec::new();
    let pairs: [(&[u8], &[u8]); 3] = [
        (b":method", b"GET"),
        (b":path", b"/x"),
        (b":authority", b"c"),
    ];
    map.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        map.extend_from_slice(&(k.len() as u32).to_le_bytes());
        map.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        map.extend_from_slice(k);
        map.push(0);
        map.extend_from_slice(v);
        map.push(0);
    }
    let data = format!(
        r#"(data (i32.const 0) "c") (data (i32.const 64) "{}")"#,
        crate::hostile::wat_bytes(&map)
    );
    let size = map.len();
    let call = format!(
        "(drop (call $call (i32.const 0) (i32.const 1) (i32.const 64) (i32.const {size}) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 32)))"
    );
    let funcs = format!(
        r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
             {call} i32.const 1)
           (func (export "proxy_on_http_call_response") (param i32 i32 i32 i32 i32)
             {call})"#
    );
    let module = compile("callout-chain.wat", &filter(imports, &data, &funcs));
    let mut c = bounded(500, 60_000);
    c.clusters = vec![ClusterSpec {
        name: "c".to_string(),
        http: vec![HttpCalloutAnswer::default()],
        grpc: Vec::new(),
        refuse_connections: false,
    }];
    let mut h = Harness::new(&module, c).expect("start-up");
    let o = h.exchange(&get()).expect("exchange");
    let trap = o.trap.as_ref().expect("the bound fails the VM");
    assert_eq!(trap.callback, "proxy_on_http_call_response");
    assert!(trap.trap.contains("max_events_per_step"), "{}", trap.trap);
    assert_waits_after_its_vm_failed(&o);
}

/// A stream paused on an event its failed VM never gets ends stalled,
/// and the reason says what Envoy would do.
fn assert_waits_after_its_vm_failed(o: &harness::Outcome) {
    assert!(o.response.is_none(), "no reply: {:?}", o.response);
    match &o.end {
        StreamEnd::Stalled { reason } => {
            assert!(reason.contains("a VM of this chain failed"), "{reason}");
            assert!(reason.contains("408"), "{reason}");
        }
        other => panic!("the stream must wait, got {other:?}"),
    }
}
