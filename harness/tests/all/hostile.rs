//! Hostile guests: modules written to attack the host (bad pointers and
//! huge lengths in every hostcall, lying allocators, endless loops in every
//! callback kind, unbounded memory, deep recursion, panics, broken
//! modules). Each case asserts the exact error and that the process then
//! serves the next request normally.

use harness::{
    ClusterSpec, CompiledModule, DownstreamRequest, Exchange, FailurePolicyApplied, Harness,
    HarnessConfig, HarnessError, HttpCalloutAnswer, Outcome, PluginConfig, StreamEnd, TraceEvent,
    TraceLevel, UpstreamResponse,
};

/// Every Proxy-Wasm hostcall with its argument kinds and ABI versions,
/// from the harness's own table.
macro_rules! hostcall_table {
    ($( $name:ident ( $($arg:ident : $kind:ident),* ) in [$($abi:ident),*]; )*) => {
        const ALL_HOSTCALLS: &[(&str, &[&str], &[&str])] =
            &[$((stringify!($name), &[$(stringify!($kind)),*], &[$(stringify!($abi)),*])),*];
    };
}
harness::for_each_hostcall!(hostcall_table);

/// The hostcalls a 0.2.1 module may import (the attack modules declare
/// 0.2.1; the four 0.1.0-only functions are not attacked here).
pub static HOSTCALLS: std::sync::LazyLock<Vec<(&str, &[&str])>> = std::sync::LazyLock::new(|| {
    ALL_HOSTCALLS
        .iter()
        .filter(|(_, _, versions)| versions.contains(&"V0_2_1"))
        .map(|(name, kinds, _)| (*name, *kinds))
        .collect()
});

/// The WASI functions the harness implements, with wasm parameter kinds
/// (`ptr`, `size`, `u32`, `i64`) and whether they return an errno.
pub const WASI: &[(&str, &[&str])] = &[
    ("fd_write", &["fd", "ptr", "size", "ptr"]),
    ("fd_fdstat_get", &["fd", "ptr"]),
    ("fd_prestat_get", &["fd", "ptr"]),
    ("environ_sizes_get", &["ptr", "ptr"]),
    ("environ_get", &["ptr", "ptr"]),
    ("args_sizes_get", &["ptr", "ptr"]),
    ("args_get", &["ptr", "ptr"]),
    ("clock_time_get", &["u32", "i64", "ptr"]),
    ("clock_res_get", &["u32", "ptr"]),
    ("fd_seek", &["fd", "i64", "u32", "ptr"]),
    ("fd_close", &["fd"]),
    ("random_get", &["ptr", "size"]),
    ("poll_oneoff", &["ptr", "ptr", "size", "ptr"]),
];

pub const INVALID_MEMORY_ACCESS: u32 = 6;
/// WASI EFAULT.
pub const EFAULT: u32 = 21;
/// An address past the end of any 1-page memory.
pub const BAD_PTR: u32 = 0xffff_fff0;
pub const HUGE_LEN: u32 = 0xffff_ffff;

/// The wasm type of an argument kind.
pub fn wasm_type(kind: &str) -> &'static str {
    match kind {
        "i64" | "u64" => "i64",
        _ => "i32",
    }
}

/// A `(call $f ...)` with constant arguments.
pub fn call_expr(func: &str, kinds: &[&str], args: &[u32]) -> String {
    let mut s = format!("(call ${func}");
    for (kind, v) in kinds.iter().zip(args) {
        match wasm_type(kind) {
            "i64" => s.push_str(&format!(" (i64.const {v})")),
            _ => s.push_str(&format!(" (i32.const {})", *v as i32)),
        }
    }
    s.push(')');
    s
}

/// An import line for a hostcall (`env`) or WASI function.
pub fn import(module: &str, name: &str, kinds: &[&str]) -> String {
    let params: Vec<&str> = kinds.iter().map(|k| wasm_type(k)).collect();
    format!(
        "(import \"{module}\" \"{name}\" (func ${name} (param {}) (result i32)))",
        params.join(" ")
    )
}

/// Bytes as a WAT string literal.
pub fn wat_bytes(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\{b:02x}")).collect()
}

/// A filter module: one page of memory (unless `funcs` declares growth),
/// a bump `malloc` unless `funcs` defines one, the ABI marker, and
/// `proxy_on_context_create` unless `funcs` defines it.
pub fn filter(imports: &str, data: &str, funcs: &str) -> String {
    let malloc = if funcs.contains("\"malloc\"") {
        ""
    } else {
        r#"(global $heap (mut i32) (i32.const 8192))
           (func (export "malloc") (param i32) (result i32) (local i32)
             global.get $heap local.set 1
             global.get $heap local.get 0 i32.add global.set $heap
             local.get 1)"#
    };
    let create = if funcs.contains("\"proxy_on_context_create\"") {
        ""
    } else {
        r#"(func (export "proxy_on_context_create") (param i32 i32))"#
    };
    format!(
        r#"(module
          (import "env" "proxy_log" (func $proxy_log_ (param i32 i32 i32) (result i32)))
          {imports}
          (memory (export "memory") 1)
          {data}
          {malloc}
          (func (export "proxy_abi_version_0_2_1"))
          {create}
          {funcs})"#
    )
}

pub fn compile(name: &str, wat: &str) -> CompiledModule {
    CompiledModule::from_bytes(name, wat.as_bytes())
        .unwrap_or_else(|e| panic!("{name} does not compile: {e}\n{wat}"))
}

pub fn config() -> HarnessConfig {
    HarnessConfig {
        plugin: PluginConfig {
            name: "hostile".to_string(),
            // Generous: a loaded machine must not fail well-behaved calls.
            callback_deadline_ms: 5_000,
            max_memory_bytes: 4 * 1024 * 1024,
            ..PluginConfig::default()
        },
        trace: TraceLevel::Hostcalls,
        clusters: vec![ClusterSpec {
            name: "c".to_string(),
            http: vec![HttpCalloutAnswer::default()],
            ..ClusterSpec::default()
        }],
        ..HarnessConfig::default()
    }
}

/// [`config`] with a 100 ms callback deadline, for the endless loops.
fn spin_config() -> HarnessConfig {
    let mut c = config();
    c.plugin.callback_deadline_ms = 100;
    c
}

pub fn get() -> Exchange {
    Exchange::default()
}

pub fn post(body: &str) -> Exchange {
    let mut request = DownstreamRequest::from_request_line("POST /upload").unwrap();
    request.body = harness::Body::single(body);
    Exchange {
        request,
        upstream: UpstreamResponse::default(),
        ..Exchange::default()
    }
}

/// A well-behaved filter: this process still serves traffic.
pub fn assert_process_serves_traffic() {
    static GOOD: std::sync::OnceLock<CompiledModule> = std::sync::OnceLock::new();
    let good = GOOD.get_or_init(|| {
        compile(
            "good.wat",
            &filter(
                "",
                "",
                r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) i32.const 0)"#,
            ),
        )
    });
    let mut h = Harness::new(good, config()).unwrap();
    let o = h.exchange(&get()).unwrap();
    assert_eq!(o.response.unwrap().status, 200);
    assert!(o.trap.is_none());
    assert!(o.upstream_request.is_some());
}

pub fn statuses(o: &Outcome, name: &str) -> Vec<u32> {
    o.trace
        .iter()
        .filter_map(|e| match e {
            TraceEvent::Hostcall {
                name: n, status, ..
            } if n == name => Some(*status),
            _ => None,
        })
        .collect()
}

/// Valid arguments for a hostcall: enums 0, pointers into a scratch area
/// holding ":path", sizes 5 (the length of ":path").
fn valid_args(kinds: &[&str]) -> Vec<u32> {
    kinds
        .iter()
        .enumerate()
        .map(|(i, k)| match *k {
            "ptr" => 1024 + 64 * i as u32,
            "size" => 5,
            // stdout
            "fd" => 1,
            _ => 0,
        })
        .collect()
}

/// The attacks on one function: each pointer argument out of range, and
/// each size argument huge (its pointer valid).
fn attacks(kinds: &[&str]) -> Vec<(String, Vec<u32>)> {
    let mut out = Vec::new();
    for (i, k) in kinds.iter().enumerate() {
        let mut args = valid_args(kinds);
        match *k {
            "ptr" => {
                args[i] = BAD_PTR;
                out.push((format!("arg {i} (pointer) out of range"), args));
            }
            "size" => {
                args[i] = HUGE_LEN;
                out.push((format!("arg {i} (size) 4 GiB"), args));
            }
            _ => {}
        }
    }
    out
}

/// Runs every attack on `name` from `proxy_on_request_headers` and returns
/// each attack's status.
fn attack(module: &str, name: &str, kinds: &[&str]) -> Vec<(String, u32)> {
    let attacks = attacks(kinds);
    let scratch: String = (0..16)
        .map(|i| format!("(data (i32.const {}) \":path\")", 1024 + 64 * i))
        .collect();
    let calls: String = attacks
        .iter()
        .map(|(_, args)| format!("(drop {})\n", call_expr(name, kinds, args)))
        .collect();
    let wat = filter(
        &import(module, name, kinds),
        &scratch,
        &format!(
            r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
                 {calls} i32.const 0)"#
        ),
    );
    let m = compile(&format!("bad-args-{name}.wat"), &wat);
    let mut h = Harness::new(&m, config()).unwrap();
    let o = h.exchange(&get()).unwrap();
    assert!(
        o.trap.is_none(),
        "{name}: a bad argument must be a status, not a trap: {:?}",
        o.trap
    );
    let got = statuses(&o, name);
    assert_eq!(got.len(), attacks.len(), "{name}: every call returned");
    // The same VM serves the next request.
    let next = h.exchange(&get()).unwrap();
    assert!(next.trap.is_none() && next.response.is_some(), "{name}");
    attacks.into_iter().map(|(what, _)| what).zip(got).collect()
}

const OK: u32 = 0;
const NOT_FOUND: u32 = 1;
const BAD_ARGUMENT: u32 = 2;

/// The status each attack gets. INVALID_MEMORY_ACCESS unless the call
/// answers before it touches the bad memory (then the status Envoy gives).
fn expected_status(name: &str, what: &str) -> u32 {
    let arg: usize = what
        .split(' ')
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX);
    match (name, arg) {
        // start and max_size are offsets into the host's buffer, not guest
        // memory. In on_request_headers the request body is out of reach:
        // it reads as empty and refuses writes.
        ("proxy_get_buffer_bytes", 1 | 2) => OK,
        ("proxy_set_buffer_bytes", 1 | 2) => BAD_ARGUMENT,
        // The lookup (property ":path", shared key ":path", queue 0, foreign
        // function ":path", metric 0) fails before any output is written.
        ("proxy_get_property", 2 | 3)
        | ("proxy_get_shared_data", 2..=4)
        | ("proxy_resolve_shared_queue", 4)
        | ("proxy_dequeue_shared_queue", 1 | 2)
        | ("proxy_call_foreign_function", 4 | 5)
        | ("proxy_get_metric", 1) => NOT_FOUND,
        // The headers (":path" is no header map) or the cluster are refused
        // before the body, trailers, message or token are touched.
        ("proxy_http_call", 4..=9) | ("proxy_grpc_call", 8..=11) | ("proxy_grpc_stream", 8) => {
            BAD_ARGUMENT
        }
        _ => INVALID_MEMORY_ACCESS,
    }
}

/// WASI errno for each attack: EFAULT unless the function never touches that memory.
fn expected_errno(name: &str, what: &str) -> u32 {
    let arg: usize = what
        .split(' ')
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX);
    match (name, arg) {
        // No pre-opened directories: EBADF before the output.
        ("fd_prestat_get", _) => 8,
        // No arguments and no environment variables: nothing is written.
        ("environ_get" | "args_get", _) => 0,
        // Envoy's poll_oneoff does not read subscriptions; it reports 0 events.
        ("poll_oneoff", 0..=2) => 0,
        // Envoy's fd_seek writes no new offset; fd_close has no pointer.
        ("fd_seek" | "fd_close", _) => 0,
        // random_get is capped at 64 KiB: EINVAL.
        ("random_get", 1) => 28,
        _ => EFAULT,
    }
}

#[test]
fn bad_pointers_and_huge_lengths_in_every_hostcall_are_invalid_memory_access() {
    let mut cases = 0;
    let mut unexpected = Vec::new();
    for (name, kinds) in HOSTCALLS.iter() {
        for (what, status) in attack("env", name, kinds) {
            cases += 1;
            let want = expected_status(name, &what);
            if status != want {
                unexpected.push(format!("{name} {what}: status {status}, expected {want}"));
            }
        }
    }
    assert!(cases > 60, "{cases} attacks");
    assert!(unexpected.is_empty(), "{}", unexpected.join("\n"));
    assert_process_serves_traffic();
}

#[test]
fn bad_pointers_and_huge_lengths_in_every_wasi_function_are_efault() {
    let mut unexpected = Vec::new();
    for (name, kinds) in WASI {
        for (what, status) in attack("wasi_snapshot_preview1", name, kinds) {
            let want = expected_errno(name, &what);
            if status != want {
                unexpected.push(format!("{name} {what}: errno {status}, expected {want}"));
            }
        }
    }
    assert!(unexpected.is_empty(), "{}", unexpected.join("\n"));
    assert_process_serves_traffic();
}

// ---------------------------------------------------------------------------
// Endless loops: every callback kind hits its deadline
// ---------------------------------------------------------------------------

const SPIN: &str = "(loop $spin (br $spin))";

/// Callbacks of a filter that makes an HTTP callout and sets a tick, with
/// `SPIN` inserted into the one named `target`.
fn spinning_filter(target: &str) -> String {
    let headers = harness::abi::encode_map(&[
        (b":method", b"GET"),
        (b":path", b"/"),
        (b":authority", b"c"),
    ]);
    let spin = |name: &str| if name == target { SPIN } else { "" };
    let data = format!(
        "(data (i32.const 0) \"c\") (data (i32.const 16) \"{}\")",
        wat_bytes(&headers)
    );
    let imports = format!(
        "{}\n{}",
        import(
            "env",
            "proxy_http_call",
            &[
                "ptr", "size", "ptr", "size", "ptr", "size", "ptr", "size", "u32", "ptr"
            ]
        ),
        import("env", "proxy_set_tick_period_milliseconds", &["u32"]),
    );
    let funcs = format!(
        r#"(func (export "proxy_on_context_create") (param i32 i32)
             (if (i32.eqz (local.get 1)) (then {root}) (else {stream})))
           (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
             {vm_start} (drop (call $proxy_set_tick_period_milliseconds (i32.const 10))) i32.const 1)
           (func (export "proxy_on_configure") (param i32 i32) (result i32) {configure} i32.const 1)
           (func (export "proxy_on_tick") (param i32) {tick})
           (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
             {request_headers}
             {callout})
           (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32) {request_body} i32.const 0)
           (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) {response_headers} i32.const 0)
           (func (export "proxy_on_http_call_response") (param i32 i32 i32 i32 i32) {http_call_response})
           (func (export "proxy_on_log") (param i32) {log})
           (func (export "proxy_on_done") (param i32) (result i32) {done} i32.const 1)"#,
        root = spin("context_create_root"),
        stream = spin("context_create"),
        vm_start = spin("vm_start"),
        configure = spin("configure"),
        tick = spin("tick"),
        request_headers = spin("request_headers"),
        request_body = spin("request_body"),
        response_headers = spin("response_headers"),
        http_call_response = spin("http_call_response"),
        log = spin("log"),
        done = spin("done"),
        callout = if target == "http_call_response" {
            format!(
                "(drop (call $proxy_http_call (i32.const 0) (i32.const 1) (i32.const 16) (i32.const {})
                   (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 1000) (i32.const 512)))
                 i32.const 1",
                headers.len()
            )
        } else {
            "i32.const 0".to_string()
        },
    );
    filter(&imports, &data, &funcs)
}

fn assert_deadline(trap: &str, callback: &str) {
    assert_eq!(
        trap,
        format!(
            "filter hostile: {callback} exceeded its 100 ms CPU deadline (callback_deadline_ms); the VM is failed"
        )
    );
}

#[test]
fn an_endless_loop_at_start_up_fails_the_vm_with_the_deadline_error() {
    for (target, callback) in [
        ("context_create_root", "proxy_on_context_create"),
        ("vm_start", "proxy_on_vm_start"),
        ("configure", "proxy_on_configure"),
    ] {
        let m = compile(target, &spinning_filter(target));
        match Harness::new(&m, spin_config()) {
            Err(HarnessError::Trap {
                callback: cb,
                context_id,
                trap,
                ..
            }) => {
                assert_eq!((cb.as_str(), context_id), (callback, 1));
                assert_deadline(&trap, callback);
            }
            Err(e) => panic!("{target}: unexpected error {e}"),
            Ok(_) => panic!("{target}: start-up must fail"),
        }
    }
    assert_process_serves_traffic();
}

#[test]
fn an_endless_loop_in_a_stream_callback_gets_503_and_the_next_request_too() {
    for (target, callback, exchange) in [
        ("context_create", "proxy_on_context_create", get()),
        ("request_headers", "proxy_on_request_headers", get()),
        ("request_body", "proxy_on_request_body", post("x")),
        ("response_headers", "proxy_on_response_headers", get()),
        ("http_call_response", "proxy_on_http_call_response", get()),
    ] {
        let m = compile(target, &spinning_filter(target));
        let mut h = Harness::new(&m, spin_config()).unwrap();
        let o = h.exchange(&exchange).unwrap();
        let trap = o.trap.unwrap_or_else(|| panic!("{target}: no trap"));
        assert_eq!(trap.callback, callback);
        assert_deadline(&trap.trap, callback);
        if target == "http_call_response" {
            // The answer runs in the root context: nothing fails the
            // stream that waits for it (proxy-wasm-cpp-host checks the
            // failure only when it calls into the stream's own context).
            assert!(matches!(o.end, StreamEnd::Stalled { .. }), "{:?}", o.end);
        } else {
            assert_eq!(o.response.unwrap().status, 503, "{target}");
            assert_eq!(o.failure_policy, Some(FailurePolicyApplied::FailClosed));
        }
        let next = h.exchange(&get()).unwrap();
        assert_eq!(next.response.unwrap().status, 503, "{target}: fail closed");
        assert_eq!(next.local_reply.unwrap().details, "wasm_fail_stream");
        // A fresh VM of the same compiled module starts and serves.
        let fresh = Harness::new(&m, spin_config());
        assert!(fresh.is_ok(), "{target}");
    }
    assert_process_serves_traffic();
}

#[test]
fn an_endless_loop_after_the_response_fails_the_vm_for_later_requests() {
    for (target, callback) in [("log", "proxy_on_log"), ("done", "proxy_on_done")] {
        let m = compile(target, &spinning_filter(target));
        let mut h = Harness::new(&m, spin_config()).unwrap();
        let o = h.exchange(&get()).unwrap();
        // The client already had its response.
        assert_eq!(o.response.unwrap().status, 200, "{target}");
        let trap = o.trap.unwrap_or_else(|| panic!("{target}: no trap"));
        assert_deadline(&trap.trap, callback);
        assert_eq!(h.exchange(&get()).unwrap().response.unwrap().status, 503);
    }
    assert_process_serves_traffic();
}

#[test]
fn an_endless_loop_in_on_tick_fails_the_vm_between_requests() {
    let m = compile("tick", &spinning_filter("tick"));
    let mut h = Harness::new(&m, spin_config()).unwrap();
    let o = h.advance(20).unwrap();
    let trap = o.trap.expect("tick trapped");
    assert_deadline(&trap.trap, "proxy_on_tick");
    let next = h.exchange(&get()).unwrap();
    assert_eq!(next.response.unwrap().status, 503);
    assert_eq!(next.failure_policy, Some(FailurePolicyApplied::FailClosed));
    assert_process_serves_traffic();
}

// ---------------------------------------------------------------------------
// Memory, stack, panics
// ---------------------------------------------------------------------------

/// `proxy_on_request_headers` grows memory 16 pages at a time until
/// refused, then traps (`abort_on_oom`) or carries on.
fn growing_filter(abort_on_oom: bool) -> String {
    let after = if abort_on_oom {
        "unreachable"
    } else {
        "i32.const 0"
    };
    filter(
        "",
        "",
        &format!(
            r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
                 (loop $grow (br_if $grow (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
                 {after})"#
        ),
    )
}

#[test]
fn unbounded_memory_growth_stops_at_the_cap_with_a_clear_error() {
    let m = compile("grow.wat", &growing_filter(true));
    let mut h = Harness::new(&m, config()).unwrap();
    let o = h.exchange(&get()).unwrap();
    let trap = o.trap.expect("the guest aborts when memory runs out");
    assert_eq!(trap.callback, "proxy_on_request_headers");
    assert!(
        trap.trap.starts_with(
            "filter hostile: proxy_on_request_headers exceeded its 4194304-byte memory limit \
             (max_memory_bytes; memory.grow to 4259840 bytes refused), then trapped"
        ),
        "{}",
        trap.trap
    );
    assert_eq!(o.response.unwrap().status, 503);
    assert_process_serves_traffic();
}

#[test]
fn a_guest_that_survives_a_refused_growth_keeps_serving() {
    let m = compile("grow-survive.wat", &growing_filter(false));
    let mut h = Harness::new(&m, config()).unwrap();
    for _ in 0..2 {
        let o = h.exchange(&get()).unwrap();
        assert!(o.trap.is_none());
        assert_eq!(o.response.unwrap().status, 200);
    }
}

#[test]
fn an_initial_memory_over_the_cap_is_refused_at_load() {
    let wat = filter("", "", "").replace(
        "(memory (export \"memory\") 1)",
        "(memory (export \"memory\") 128)",
    );
    let m = compile("big-memory.wat", &wat);
    let mut cfg = config();
    cfg.plugin.max_memory_bytes = 64 * 65536;
    let err = Harness::new(&m, cfg).err().expect("refused").to_string();
    assert!(
        err.contains("its initial memory (8388608 bytes) exceeds the 4194304-byte memory limit"),
        "{err}"
    );
    assert_process_serves_traffic();
}

#[test]
fn deep_recursion_is_a_stack_overflow_trap() {
    let m = compile(
        "recurse.wat",
        &filter(
            "",
            "",
            r#"(func $down (param i32) (result i32) (call $down (i32.add (local.get 0) (i32.const 1))))
               (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
                 (call $down (i32.const 0)))"#,
        ),
    );
    let mut h = Harness::new(&m, config()).unwrap();
    let o = h.exchange(&get()).unwrap();
    let trap = o.trap.expect("stack overflow");
    assert!(trap.trap.contains("call stack exhausted"), "{}", trap.trap);
    assert_eq!(o.response.unwrap().status, 503);
    assert_process_serves_traffic();
}

#[test]
fn a_panic_in_a_callback_reports_the_message_and_fails_closed() {
    let m = compile(
        "panic.wat",
        &filter(
            "",
            r#"(data (i32.const 0) "panicked at src/lib.rs:1:1: boom")"#,
            r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
                 (drop (call $proxy_log_ (i32.const 5) (i32.const 0) (i32.const 32)))
                 unreachable)"#,
        ),
    );
    let mut h = Harness::new(&m, config()).unwrap();
    let o = h.exchange(&get()).unwrap();
    let trap = o.trap.expect("trap");
    assert_eq!(
        trap.panic_message.as_deref(),
        Some("panicked at src/lib.rs:1:1: boom")
    );
    assert!(trap.trap.contains("unreachable"), "{}", trap.trap);
    assert_eq!(o.response.unwrap().status, 503);
    assert_eq!(h.exchange(&get()).unwrap().response.unwrap().status, 503);
    assert_process_serves_traffic();
}

// ---------------------------------------------------------------------------
// Failure policy
// ---------------------------------------------------------------------------

/// Traps in `proxy_on_request_body`: requests with a body trap, others pass.
fn body_trap_filter() -> CompiledModule {
    compile(
        "body-trap.wat",
        &filter(
            "",
            "",
            r#"(func (export "proxy_on_request_body") (param i32 i32 i32) (result i32) unreachable)"#,
        ),
    )
}

#[test]
fn fail_open_passes_later_requests_through_untouched() {
    let m = body_trap_filter();
    let mut cfg = config();
    cfg.plugin.fail_open = true;
    let mut h = Harness::new(&m, cfg).unwrap();
    let o = h.exchange(&post("payload")).unwrap();
    assert!(o.trap.is_some());
    assert_eq!(o.failure_policy, Some(FailurePolicyApplied::FailOpen));
    assert_eq!(o.response.unwrap().status, 200);
    assert_eq!(o.upstream_request.unwrap().body.to_text(), "payload");
    let next = h.exchange(&post("again")).unwrap();
    assert_eq!(next.failure_policy, Some(FailurePolicyApplied::FailOpen));
    assert!(next.callback_names().is_empty(), "the filter is bypassed");
    assert_eq!(next.upstream_request.unwrap().body.to_text(), "again");
}

#[test]
fn fail_reload_starts_a_fresh_vm_for_the_next_request() {
    let m = body_trap_filter();
    let mut cfg = config();
    cfg.plugin.reload_on_failure = true;
    let mut h = Harness::new(&m, cfg).unwrap();
    let o = h.exchange(&post("payload")).unwrap();
    assert!(o.trap.is_some());
    assert_eq!(o.failure_policy, Some(FailurePolicyApplied::FailClosed));
    assert_eq!(o.response.unwrap().status, 503);
    let next = h.exchange(&get()).unwrap();
    assert_eq!(next.failure_policy, Some(FailurePolicyApplied::Reloaded));
    assert!(next.trap.is_none());
    assert_eq!(next.response.as_ref().unwrap().status, 200);
    assert!(h.vm_failure().is_none());
    assert_eq!(
        next.callback_names().first().copied(),
        Some("proxy_on_context_create")
    );
    // Healthy VMs are not reloaded.
    let third = h.exchange(&get()).unwrap();
    assert_eq!(third.failure_policy, None);
}

// ---------------------------------------------------------------------------
// Lying allocators and forbidden phases
// ---------------------------------------------------------------------------

/// A filter whose `malloc` body is `malloc`, reading `:authority` (`localhost`) from the
/// request headers into out-parameters at 256/260.
fn reading_filter(malloc: &str) -> CompiledModule {
    compile(
        "lying-malloc.wat",
        &filter(
            &import(
                "env",
                "proxy_get_header_map_value",
                &["u32", "ptr", "size", "ptr", "ptr"],
            ),
            r#"(data (i32.const 0) ":authority")"#,
            &format!(
                r#"(func (export "malloc") (param i32) (result i32) {malloc})
                   (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
                     (drop (call $proxy_get_header_map_value (i32.const 0) (i32.const 0) (i32.const 10)
                       (i32.const 256) (i32.const 260)))
                     i32.const 0)"#
            ),
        ),
    )
}

fn header_value_status(m: &CompiledModule) -> (Outcome, Vec<u32>) {
    let mut h = Harness::new(m, config()).unwrap();
    let o = h.exchange(&get()).unwrap();
    let s = statuses(&o, "proxy_get_header_map_value");
    (o, s)
}

#[test]
fn an_allocator_returning_0_or_out_of_range_or_too_little_is_invalid_memory_access() {
    for (what, malloc) in [
        ("null", "i32.const 0"),
        ("out of range", "i32.const 0x7ffffff0"),
        // 2 bytes before the end of the 64 KiB page: too little room for 9.
        ("too little", "i32.const 65534"),
    ] {
        let (o, s) = header_value_status(&reading_filter(malloc));
        assert!(o.trap.is_none(), "{what}");
        assert_eq!(s, vec![INVALID_MEMORY_ACCESS], "{what}");
        assert_eq!(o.response.unwrap().status, 200, "{what}");
    }
    assert_process_serves_traffic();
}

#[test]
fn an_allocator_returning_overlapping_memory_only_hurts_the_guest() {
    // Always the out-parameters' own address: the value is copied there,
    // then overwritten by the pointer and size.
    let (o, s) = header_value_status(&reading_filter("i32.const 256"));
    assert_eq!(s, vec![0]);
    assert!(o.trap.is_none());
    assert_eq!(o.response.unwrap().status, 200);
    assert_process_serves_traffic();
}

#[test]
fn an_allocator_that_traps_or_calls_forbidden_hostcalls_fails_the_vm() {
    let (o, _) = header_value_status(&reading_filter("unreachable"));
    let trap = o.trap.expect("trap");
    assert!(
        trap.trap.starts_with("the guest allocator trapped"),
        "{}",
        trap.trap
    );
    let forbidden = reading_filter(
        "(drop (call $proxy_get_header_map_value (i32.const 0) (i32.const 0) (i32.const 5) (i32.const 300) (i32.const 304))) i32.const 4096",
    );
    let (o, _) = header_value_status(&forbidden);
    let trap = o.trap.expect("trap");
    assert!(
        trap.trap.starts_with(
            "the guest allocator trapped: proxy_get_header_map_value called from inside the guest allocator; \
             only logging and clocks are allowed there"
        ),
        "{}",
        trap.trap
    );
    assert_eq!(o.response.unwrap().status, 503);
    assert_process_serves_traffic();
}

#[test]
fn a_hostcall_during_start_up_other_than_logging_fails_start_up() {
    let m = compile(
        "init-hostcall.wat",
        &filter(
            &import("env", "proxy_set_tick_period_milliseconds", &["u32"]),
            "",
            r#"(func (export "_initialize") (drop (call $proxy_set_tick_period_milliseconds (i32.const 5))))"#,
        ),
    );
    match Harness::new(&m, config()) {
        Err(HarnessError::Trap { callback, trap, .. }) => {
            assert_eq!(callback, "_initialize");
            assert!(
                trap.starts_with("proxy_set_tick_period_milliseconds called during VM start-up"),
                "{trap}"
            );
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("start-up must fail"),
    }
    assert_process_serves_traffic();
}

#[test]
fn wasi_calls_envoy_restricts_at_start_up_fail_start_up() {
    // WasmBase::startVm (proxy-wasm-cpp-host src/wasm.cc) allows every
    // registered WASI function during start-up but these.
    for (name, kinds) in [
        ("fd_read", &["u32", "u32", "u32", "u32"][..]),
        ("fd_seek", &["u32", "u64", "u32", "u32"][..]),
        ("sched_yield", &[][..]),
    ] {
        let args: String = kinds
            .iter()
            .map(|k| {
                if *k == "u64" {
                    " (i64.const 0)"
                } else {
                    " (i32.const 0)"
                }
            })
            .collect();
        let call = format!("(drop (call ${name}{args}))");
        let funcs = format!(r#"(func (export "_initialize") {call})"#);
        let imports = import("wasi_snapshot_preview1", name, kinds);
        let module = compile(&format!("init-{name}.wat"), &filter(&imports, "", &funcs));
        match Harness::new(&module, config()) {
            Err(HarnessError::Trap { callback, trap, .. }) => {
                assert_eq!(callback, "_initialize", "{name}");
                assert!(
                    trap.starts_with(&format!("{name} called during VM start-up")),
                    "{trap}"
                );
            }
            Err(e) => panic!("{name}: unexpected error {e}"),
            Ok(_) => panic!("{name}: start-up must fail"),
        }
    }
    // clock_time_get is on Envoy's start-up list.
    let clock = compile(
        "init-clock.wat",
        &filter(
            &import(
                "wasi_snapshot_preview1",
                "clock_time_get",
                &["u32", "u64", "u32"],
            ),
            "",
            r#"(func (export "_initialize") (drop (call $clock_time_get (i32.const 0) (i64.const 1) (i32.const 0))))"#,
        ),
    );
    assert!(Harness::new(&clock, config()).is_ok());
    assert_process_serves_traffic();
}

#[test]
fn a_wasi_function_envoy_does_not_register_is_refused_at_load() {
    // Only FOR_ALL_WASI_FUNCTIONS (include/proxy-wasm/exports.h) link.
    let m = filter(
        &import(
            "wasi_snapshot_preview1",
            "sock_open",
            &["u32", "u32", "u32"],
        ),
        "",
        "",
    );
    let err = CompiledModule::from_bytes("sock-open.wat", m.as_bytes())
        .err()
        .expect("refused");
    match &err {
        HarnessError::UnknownImport { module, field, .. } => assert_eq!(
            (module.as_str(), field.as_str()),
            ("wasi_snapshot_preview1", "sock_open")
        ),
        other => panic!("unexpected error {other}"),
    }
    // A registered stub links and answers an error.
    let m = filter(
        &import("wasi_snapshot_preview1", "path_open", &["u32"; 9]),
        "",
        "",
    );
    assert!(CompiledModule::from_bytes("path-open.wat", m.as_bytes()).is_ok());
}

// ---------------------------------------------------------------------------
// Broken modules
// ---------------------------------------------------------------------------

#[test]
fn broken_modules_are_refused_with_the_reason() {
    let no_abi = filter("", "", "").replace("(func (export \"proxy_abi_version_0_2_1\"))", "");
    let err = CompiledModule::from_bytes("no-abi.wat", no_abi.as_bytes())
        .err()
        .expect("refused");
    assert!(matches!(err, HarnessError::NoAbiVersion { .. }), "{err}");

    let foreign = filter(
        "(import \"env\" \"proxy_open_socket\" (func (param i32) (result i32)))",
        "",
        "",
    );
    let err = CompiledModule::from_bytes("foreign.wat", foreign.as_bytes())
        .err()
        .expect("refused");
    match &err {
        HarnessError::UnknownImport { module, field, .. } => {
            assert_eq!(
                (module.as_str(), field.as_str()),
                ("env", "proxy_open_socket")
            );
        }
        other => panic!("unexpected error {other}"),
    }

    let start_traps = filter("", "", "(func $boom unreachable) (start $boom)");
    let m = compile("start-traps.wat", &start_traps);
    let err = Harness::new(&m, config())
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("start-traps.wat"), "{err}");
    assert!(err.contains("unreachable"), "{err}");
    assert_process_serves_traffic();
}

/// What a callback deadline costs: the same calls on an engine with and
/// without epoch interruption (run by hand:
/// `cargo test -p harness --test all epoch_deadline_cost -- --ignored --nocapture`).
#[test]
#[ignore = "a measurement, not a check"]
fn epoch_deadline_cost() {
    use wasmtime::{Config, Engine, Instance, Module, Store};
    let wat = r#"(module
      (func (export "short") (param i32) (result i32) (i32.add (local.get 0) (i32.const 1)))
      (func (export "loop") (param i32) (result i32) (local i32)
        (loop $l (local.set 1 (i32.add (local.get 1) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get 1) (local.get 0))))
        local.get 1))"#;
    for epoch in [false, true] {
        let mut config = Config::new();
        config.epoch_interruption(epoch);
        let engine = Engine::new(&config).unwrap();
        let module = Module::new(&engine, wat).unwrap();
        let mut store = Store::new(&engine, ());
        store.set_epoch_deadline(u64::MAX / 2);
        let instance = Instance::new(&mut store, &module, &[]).unwrap();
        let short = instance
            .get_typed_func::<i32, i32>(&mut store, "short")
            .unwrap();
        let looping = instance
            .get_typed_func::<i32, i32>(&mut store, "loop")
            .unwrap();
        let calls = 1_000_000;
        let started = std::time::Instant::now();
        for i in 0..calls {
            if epoch {
                store.set_epoch_deadline(1_000);
            }
            short.call(&mut store, i).unwrap();
        }
        let per_call = started.elapsed().as_nanos() / calls as u128;
        let started = std::time::Instant::now();
        looping.call(&mut store, 100_000_000).unwrap();
        let loop_ps = started.elapsed().as_nanos() * 1000 / 100_000_000;
        println!(
            "epoch_interruption={epoch}: {per_call} ns per call (with set_epoch_deadline), \
             {loop_ps} ps per iteration of an empty loop"
        );
    }
}
