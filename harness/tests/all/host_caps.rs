//! What the host holds on a guest's behalf is capped: a small guest that
//! keeps appending to a body, logging, filling shared data or a queue, or
//! defining metrics is refused at the cap (BAD_ARGUMENT and one warning)
//! instead of making the harness hold gigabytes.

use harness::{Harness, Outcome};

use crate::hostile::{compile, config, filter, post, statuses};

const MIB: u32 = 1024 * 1024;

/// A module whose first `on_request_body` (the one with the request's
/// byte) grows memory to 2 MiB + 64 KiB and runs `body` `times` times
/// (local 3 is the loop index; offset 16 holds it as two ASCII bytes, a
/// name or key); the 1 MiB at 65536 is the payload.
fn looping(name: &str, imports: &str, times: u32, body: &str) -> harness::CompiledModule {
    looping_in("proxy_on_request_body", name, imports, times, body)
}

/// [`looping`] in another callback with the same (context, size, eos) form.
fn looping_in(
    callback: &str,
    name: &str,
    imports: &str,
    times: u32,
    body: &str,
) -> harness::CompiledModule {
    let funcs = format!(
        r#"(func (export "{callback}") (param i32 i32 i32) (result i32) (local i32)
             (if (i32.eqz (local.get 1)) (then (return (i32.const 0))))
             (drop (memory.grow (i32.const 32)))
             (block $done
               (loop $next
                 (br_if $done (i32.ge_u (local.get 3) (i32.const {times})))
                 (i32.store16 (i32.const 16)
                   (i32.or (i32.and (local.get 3) (i32.const 127))
                           (i32.shl (i32.shr_u (local.get 3) (i32.const 7)) (i32.const 8))))
                 {body}
                 (local.set 3 (i32.add (local.get 3) (i32.const 1)))
                 (br $next)))
             i32.const 0)"#
    );
    compile(name, &filter(imports, "", &funcs))
}

fn run(module: &harness::CompiledModule) -> Outcome {
    let mut h = Harness::new(module, config()).expect("start-up");
    h.exchange(&post("x")).expect("exchange")
}

fn ok_then_refused(o: &Outcome, hostcall: &str) -> (usize, usize) {
    let all = statuses(o, hostcall);
    let ok = all.iter().take_while(|s| **s == 0).count();
    assert!(all[ok..].iter().all(|s| *s == 2), "{hostcall}: {all:?}");
    (ok, all.len() - ok)
}

fn warned(o: &Outcome, text: &str) -> usize {
    o.logs.iter().filter(|l| l.message.contains(text)).count()
}

#[test]
fn a_body_grown_past_64_mib_is_refused() {
    let import = r#"(import "env" "proxy_set_buffer_bytes" (func $set (param i32 i32 i32 i32 i32) (result i32)))"#;
    let call = format!(
        "(drop (call $set (i32.const 0) (i32.const -1) (i32.const 0) (i32.const 65536) (i32.const {MIB})))"
    );
    let o = run(&looping("body.wat", import, 66, &call));
    // The one-byte body plus 63 MiB fits; the 64th MiB would pass the cap.
    assert_eq!(ok_then_refused(&o, "proxy_set_buffer_bytes"), (63, 3));
    assert!(warned(&o, "past the host's 67108864-byte cap") >= 1);
    let sent = o.upstream_request.expect("forwarded").body;
    assert_eq!(sent.len(), 1 + 63 * MIB as usize);
}

#[test]
fn log_lines_past_16_mib_in_a_step_are_dropped_with_one_warning() {
    let import = r#"(import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))"#;
    let call = format!("(drop (call $log (i32.const 2) (i32.const 65536) (i32.const {MIB})))");
    let o = run(&looping("logs.wat", import, 40, &call));
    let big = o
        .logs
        .iter()
        .filter(|l| l.message.len() == MIB as usize)
        .count();
    assert_eq!(big, 16);
    assert_eq!(warned(&o, "log capture full"), 1);
}

#[test]
fn shared_data_past_128_mib_is_refused() {
    let import = r#"(import "env" "proxy_set_shared_data" (func $set (param i32 i32 i32 i32 i32) (result i32)))"#;
    let call = format!(
        "(drop (call $set (i32.const 16) (i32.const 2) (i32.const 65536) (i32.const {MIB}) (i32.const 0)))"
    );
    let o = run(&looping("shared.wat", import, 130, &call));
    // Each entry is a 2-byte key and a 1 MiB value.
    assert_eq!(ok_then_refused(&o, "proxy_set_shared_data"), (127, 3));
    assert!(warned(&o, "shared data would pass the host's 134217728-byte cap") >= 1);
}

#[test]
fn queued_items_past_64_mib_are_refused() {
    let imports = r#"
      (import "env" "proxy_register_shared_queue" (func $reg (param i32 i32 i32) (result i32)))
      (import "env" "proxy_enqueue_shared_queue" (func $enq (param i32 i32 i32) (result i32)))"#;
    let call = format!(
        "(if (i32.eqz (local.get 3)) (then (drop (call $reg (i32.const 16) (i32.const 1) (i32.const 32)))))
         (drop (call $enq (i32.load (i32.const 32)) (i32.const 65536) (i32.const {MIB})))"
    );
    let o = run(&looping("queue.wat", imports, 66, &call));
    assert_eq!(ok_then_refused(&o, "proxy_enqueue_shared_queue"), (64, 2));
    assert!(warned(&o, "queued items would pass the host's 67108864-byte cap") >= 1);
}

#[test]
fn metrics_past_10000_are_refused() {
    let import =
        r#"(import "env" "proxy_define_metric" (func $def (param i32 i32 i32 i32) (result i32)))"#;
    let call = "(drop (call $def (i32.const 0) (i32.const 16) (i32.const 2) (i32.const 32)))";
    let o = run(&looping("metrics.wat", import, 10_002, call));
    assert_eq!(ok_then_refused(&o, "proxy_define_metric"), (10_000, 2));
    assert!(warned(&o, "cap of 10000 metrics per process") >= 1);
}

#[test]
fn a_header_map_past_1024_pairs_is_refused() {
    let import = r#"(import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))"#;
    let call = "(drop (call $add (i32.const 0) (i32.const 16) (i32.const 2) (i32.const 65536) (i32.const 10)))";
    let module = looping_in(
        "proxy_on_request_headers",
        "headers.wat",
        import,
        1100,
        call,
    );
    let o = run(&module);
    // The request arrives with 6 pairs (pseudo-headers, x-forwarded-proto, x-request-id).
    assert_eq!(
        ok_then_refused(&o, "proxy_add_header_map_value"),
        (1018, 82)
    );
    assert!(warned(&o, "cap of 1024 pairs or 1048576 bytes") >= 1);
}
