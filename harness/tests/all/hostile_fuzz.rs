//! Fuzzing the host through a guest: a WAT module that imports every
//! Proxy-Wasm hostcall and the WASI subset and runs a "script" it reads
//! from the request body: records of (function index, 12 argument words),
//! run in three phases (request body, response headers, log).
//! Scripts are random (a seeded xorshift generator, reproducible): small
//! numbers, pointers into memory, pointers at its end, huge lengths, any
//! word. The host must answer every call with a status, never trap or
//! panic; the process keeps serving.
//!
//! `cargo test -p harness --test all hostile_fuzz` runs 300 exchanges;
//! `HARNESS_FUZZ_ITERATIONS=100000 HARNESS_FUZZ_SEED=7 cargo test ... -- --nocapture`
//! runs longer and prints how many calls ran.

use std::collections::BTreeMap;

use harness::{CompiledModule, Harness};

use super::hostile::{
    HOSTCALLS, WASI, assert_process_serves_traffic, compile, config, import, post,
};

const ARGS: usize = 12;
const RECORD: usize = 4 + 4 * ARGS;
const CALLS_PER_SCRIPT: usize = 24;
/// Guest memory: 2 pages.
const MEMORY: u32 = 2 * 65536;

/// Every function the fuzzer calls: (import module, name, argument kinds).
fn targets() -> Vec<(&'static str, &'static str, &'static [&'static str])> {
    let mut out: Vec<_> = HOSTCALLS.iter().map(|(n, k)| ("env", *n, *k)).collect();
    out.extend(WASI.iter().map(|(n, k)| ("wasi_snapshot_preview1", *n, *k)));
    out
}

/// The interpreter guest, compiled once.
fn fuzz_module() -> &'static CompiledModule {
    static MODULE: std::sync::OnceLock<CompiledModule> = std::sync::OnceLock::new();
    MODULE.get_or_init(|| {
        let targets = targets();
        let imports: String = targets
            .iter()
            .map(|(m, n, k)| import(m, n, k) + "\n")
            .collect();
        // Case k calls target k with arguments loaded from the record.
        let mut cases = String::new();
        let n = targets.len();
        let labels: Vec<String> = (0..n).map(|k| format!("$c{k}")).collect();
        let mut dispatch = format!(
            "(br_table {} $done (i32.load (local.get $p)))",
            labels.join(" ")
        );
        for (k, (_, name, kinds)) in targets.iter().enumerate() {
            let args: Vec<String> = kinds
                .iter()
                .enumerate()
                .map(|(i, kind)| {
                    let load = format!("(i32.load offset={} (local.get $p))", 4 + 4 * i);
                    match super::hostile::wasm_type(kind) {
                        "i64" => format!("(i64.extend_i32_u {load})"),
                        _ => load,
                    }
                })
                .collect();
            let call = format!("(call ${name} {})", args.join(" "));
            dispatch = format!("(block $c{k} {dispatch})\n(drop {call}) (br $done)");
        }
        cases.push_str(&format!("(block $done {dispatch})"));
        // The script runs in the request body callback, then again (as
        // the calls left it) in on_response_headers and on_log: three phases.
        let funcs = format!(
            r#"(global $script (mut i32) (i32.const 0))
               (global $script_end (mut i32) (i32.const 0))
               (func $run (param $p i32)
                 {cases})
               (func $run_script (local $p i32)
                 (local.set $p (global.get $script))
                 (block $out
                   (loop $next
                     (br_if $out (i32.gt_u (i32.add (local.get $p) (i32.const {RECORD})) (global.get $script_end)))
                     (call $run (local.get $p))
                     (local.set $p (i32.add (local.get $p) (i32.const {RECORD})))
                     (br $next))))
               (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32)
                 (drop (call $proxy_get_buffer_bytes (i32.const 0) (i32.const 0) (local.get 1)
                   (i32.const 256) (i32.const 260)))
                 (global.set $script (i32.load (i32.const 256)))
                 (global.set $script_end (i32.add (global.get $script) (i32.load (i32.const 260))))
                 (call $run_script)
                 i32.const 0)
               (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
                 (call $run_script)
                 i32.const 0)
               (func (export "proxy_on_log") (param i32) (call $run_script))"#
        );
        let wat = super::hostile::filter(&imports, "", &funcs).replace("(memory (export \"memory\") 1)", "(memory (export \"memory\") 2 2)");
        compile("fuzz-interpreter.wat", &wat)
    })
}

/// xorshift64*: small, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// An argument word biased towards the interesting edges.
    fn word(&mut self) -> u32 {
        match self.below(10) {
            0..=3 => self.below(16) as u32,
            4 | 5 => (self.below(u64::from(MEMORY)) as u32) & !3,
            6 => MEMORY - self.below(16) as u32,
            7 => u32::MAX - self.below(16) as u32,
            _ => self.next() as u32,
        }
    }
}

fn script(rng: &mut Rng, functions: usize) -> (Vec<u8>, Vec<usize>) {
    let mut bytes = Vec::with_capacity(CALLS_PER_SCRIPT * RECORD);
    let mut called = Vec::new();
    for _ in 0..CALLS_PER_SCRIPT {
        let f = rng.below(functions as u64) as usize;
        called.push(f);
        bytes.extend_from_slice(&(f as u32).to_le_bytes());
        for _ in 0..ARGS {
            bytes.extend_from_slice(&rng.word().to_le_bytes());
        }
    }
    (bytes, called)
}

#[test]
fn random_hostcall_arguments_never_crash_the_host() {
    let iterations: u64 = std::env::var("HARNESS_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let seed: u64 = std::env::var("HARNESS_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_f022);
    let functions = targets();
    let module = fuzz_module();
    // Spread the seed (xorshift needs a non-zero state; nearby seeds must differ).
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut harness = Harness::new(module, config()).unwrap();
    let mut calls: BTreeMap<&str, u64> = BTreeMap::new();
    let mut findings = Vec::new();
    let mut reached = 0u64;
    let mut slowest = (std::time::Duration::ZERO, 0u64);
    for iteration in 0..iterations {
        let (bytes, called) = script(&mut rng, functions.len());
        let mut exchange = post("");
        exchange.request.body = harness::Body::single(bytes);
        // HTTP/2: the script runs in the one body callback that ends the
        // stream (HTTP/1 would end it with a second, empty one).
        exchange.request.protocol = harness::HttpProtocol::Http2;
        let started = std::time::Instant::now();
        let outcome = harness.exchange(&exchange).unwrap_or_else(|e| {
            panic!("iteration {iteration} (seed {seed}): the exchange failed: {e}")
        });
        // Reported, not asserted: a slow hostcall would show up here.
        slowest = slowest.max((started.elapsed(), iteration));
        // A call may overwrite the rest of its own script (random output
        // pointers): those records are skipped, so count what was reached.
        reached += outcome.hostcalls.values().sum::<u64>();
        for f in called {
            *calls.entry(functions[f].1).or_default() += 1;
        }
        // No random call may trap: each answers with a status.
        if let Some(trap) = &outcome.trap {
            let last = outcome.trace.iter().rev().find_map(|e| match e {
                harness::TraceEvent::Hostcall {
                    name, args, status, ..
                } => Some(format!("{name}{args:?} -> {status}")),
                _ => None,
            });
            findings.push(format!(
                "iteration {iteration}: {} (last hostcall: {})",
                trap.trap,
                last.unwrap_or_default()
            ));
        }
        if harness.vm_failure().is_some() || outcome.response.is_none() {
            harness = Harness::new(module, config()).unwrap();
        }
    }
    let total: u64 = calls.values().sum();
    assert!(
        reached >= total * 9 / 10,
        "only {reached} hostcalls reached the host for {total} scripted"
    );
    println!(
        "hostile_fuzz: seed {seed}, {iterations} exchanges, {total} calls scripted over {} functions, {reached} hostcalls reached the host; slowest exchange {:?} (iteration {})",
        calls.len(),
        slowest.0,
        slowest.1
    );
    assert!(findings.is_empty(), "{}", findings.join("\n"));
    assert_process_serves_traffic();
}
