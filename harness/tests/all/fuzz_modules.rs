//! Fuzzing the host with generated modules: `wasm-smith` builds modules
//! that import the Proxy-Wasm host functions and the WASI subset and export
//! the callbacks, all with the names and signatures of the proxy-abi
//! tables, and arbitrary code in between (loops, traps, memory growth,
//! hostcalls with any arguments, start functions). Each module is loaded
//! and run with small limits through start-up and one request/response
//! exchange. The host must never panic or crash, every run must end
//! within its budget, and the process's memory must stay bounded.
//!
//! `cargo test -p harness --test all fuzz_modules` runs 60 modules;
//! `HARNESS_FUZZ_ITERATIONS=3000 HARNESS_FUZZ_SEED=7 cargo test -p harness
//! --test all fuzz_modules -- --nocapture` runs more and prints figures.
//! Module `i` of a run is generated from seed `HARNESS_FUZZ_SEED + i`, so
//! `HARNESS_FUZZ_SEED=<that> HARNESS_FUZZ_ITERATIONS=1` reproduces it.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use arbitrary::Unstructured;
use harness::limits::ModuleLimits;
use harness::{
    CompiledModule, Exchange, Harness, HarnessConfig, HarnessError, PluginConfig, TraceEvent,
    TraceLevel, WasmEngine,
};
use proxy_abi::{AbiVersion, ArgKind, CallbackResult};

use super::hostile::post;

/// Each callback's CPU deadline.
const DEADLINE_MS: u64 = 20;
/// The guest's linear memory cap.
const MEMORY_CAP: u64 = 4 * 1024 * 1024;
/// Compile budget for one module.
const COMPILE_TIMEOUT_MS: u64 = 10_000;
/// Random bytes wasm-smith draws one module from.
const ENTROPY: usize = 16 * 1024;
/// Slack on every wall-clock bound: a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(3);
/// Bound on the process's resident memory, whatever else runs in it.
const MAX_RSS_KB: u64 = 3 * 1024 * 1024;

fn wasm_type(kind: ArgKind) -> &'static str {
    match kind {
        ArgKind::I64 | ArgKind::U64 => "i64",
        _ => "i32",
    }
}

fn params(kinds: impl Iterator<Item = ArgKind>) -> String {
    let types: Vec<&str> = kinds.map(wasm_type).collect();
    if types.is_empty() {
        String::new()
    } else {
        format!("(param {})", types.join(" "))
    }
}

/// What a generated module may import: every host function of ABI 0.2.1
/// (from the hostcall table) and the WASI functions (from the WASI table).
fn available_imports() -> Vec<u8> {
    let mut wat = String::from("(module\n");
    for spec in proxy_abi::HOSTCALLS {
        if spec.versions.contains(&AbiVersion::V0_2_1) {
            let p = params(spec.args.iter().copied());
            wat.push_str(&format!(
                "(import \"env\" \"{}\" (func {p} (result i32)))\n",
                spec.name
            ));
        }
    }
    for spec in proxy_abi::WASI_FUNCTIONS {
        let p = params(spec.args.iter().copied());
        let result = if spec.returns_errno {
            "(result i32)"
        } else {
            ""
        };
        wat.push_str(&format!(
            "(import \"wasi_snapshot_preview1\" \"{}\" (func {p} {result}))\n",
            spec.name
        ));
    }
    wat.push(')');
    wat::parse_str(&wat).expect("the import description is valid WAT")
}

/// What a generated module exports: the memory, an allocator, the ABI
/// marker, `proxy_on_context_create`, and each other callback of the
/// table (typed by its 0.2.1 arity and result) when `include` says so.
fn exports(mut include: impl FnMut(&str) -> bool) -> Vec<u8> {
    let mut wat = String::from(
        "(module (memory (export \"memory\") 1)\n\
         (func (export \"malloc\") (param i32) (result i32) unreachable)\n\
         (func (export \"proxy_abi_version_0_2_1\"))\n",
    );
    if include("_initialize") {
        wat.push_str("(func (export \"_initialize\"))\n");
    }
    for spec in proxy_abi::CALLBACKS {
        if spec.export != "proxy_on_context_create" && !include(spec.export) {
            continue;
        }
        let arity = spec.arity_in(AbiVersion::V0_2_1);
        let p = params(spec.args.iter().take(arity).map(|(_, kind)| *kind));
        let result = match spec.result {
            CallbackResult::None => "",
            CallbackResult::Bool | CallbackResult::Action => "(result i32)",
        };
        wat.push_str(&format!(
            "(func (export \"{}\") {p} {result} unreachable)\n",
            spec.export
        ));
    }
    wat.push(')');
    wat::parse_str(&wat).expect("the export description is valid WAT")
}

/// xorshift64*: small, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn seeded(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// The module of `seed`; `None` when wasm-smith ran out of entropy.
fn generate(seed: u64, imports: &[u8]) -> Option<Vec<u8>> {
    let mut rng = Rng::seeded(seed);
    let bytes: Vec<u8> = (0..ENTROPY).map(|_| rng.next() as u8).collect();
    // A module exports 3 callbacks in 4, but start-up ones 1 in 4: random
    // code there mostly traps, loops or answers false, and the run ends
    // before the exchange.
    let config = wasm_smith::Config {
        available_imports: Some(imports.to_vec()),
        exports: Some(exports(|name| {
            let startup = ["_initialize", "proxy_on_vm_start", "proxy_on_configure"];
            rng.next().is_multiple_of(4) == startup.contains(&name)
        })),
        max_funcs: 30,
        max_instructions: 200,
        max_memory32_bytes: 2 * MEMORY_CAP,
        max_data_segments: 10,
        // The exported memory is the one (wasmtime allows one per instance here).
        max_memories: 0,
        max_imports: 40,
        // Half the modules avoid trapping instructions (not loops or deep
        // recursion), so that more of them get past start-up.
        disallow_traps: seed.is_multiple_of(2),
        // Proposals wasmtime is not built with here (or filters never use).
        gc_enabled: false,
        exceptions_enabled: false,
        threads_enabled: false,
        memory64_enabled: false,
        // externref needs wasmtime's gc feature.
        reference_types_enabled: false,
        ..wasm_smith::Config::default()
    };
    wasm_smith::Module::new(config, &mut Unstructured::new(&bytes))
        .ok()
        .map(|m| m.to_bytes())
}

fn plugin_config() -> HarnessConfig {
    HarnessConfig {
        plugin: PluginConfig {
            name: "generated".to_string(),
            callback_deadline_ms: DEADLINE_MS,
            max_memory_bytes: MEMORY_CAP,
            ..PluginConfig::default()
        },
        trace: TraceLevel::Callbacks,
        ..HarnessConfig::default()
    }
}

fn exchange() -> Exchange {
    let mut exchange = post("a request body");
    exchange.upstream.body = harness::Body::single("a response body");
    exchange
}

/// Whether a trap or error text is a deadline or a memory limit.
fn limit_kind(text: &str) -> &'static str {
    if text.contains("CPU deadline") {
        "deadline"
    } else if text.contains("memory limit") {
        "memory limit"
    } else {
        "trap"
    }
}

/// The outcome class of a load or start-up error.
fn error_class(err: &HarnessError) -> String {
    match err {
        HarnessError::ModuleLimit { limit, .. } => format!("refused at load: {}", limit.field()),
        HarnessError::Compile { detail, .. } => {
            // The reason without the function index and offset.
            let first = detail.lines().next().unwrap_or_default();
            let reason = first.rsplit(": ").next().unwrap_or(first);
            let reason = reason.split(" (at offset").next().unwrap_or(reason);
            // Figures as N: one class per kind of reason.
            let mut shape = String::new();
            for c in reason.chars() {
                match (c.is_ascii_digit(), shape.ends_with('N')) {
                    (true, true) => {}
                    (true, false) => shape.push('N'),
                    (false, _) => shape.push(c),
                }
            }
            format!("refused at load: does not compile ({shape})")
        }
        HarnessError::MissingExport { .. } | HarnessError::NoAbiVersion { .. } => {
            "refused at load: exports".to_string()
        }
        HarnessError::UnknownImport { .. } => "refused at load: imports".to_string(),
        HarnessError::Instantiate { detail, .. } => {
            format!("start-up: instantiate ({})", limit_kind(detail))
        }
        HarnessError::Trap { trap, .. } => format!("start-up: {}", limit_kind(trap)),
        HarnessError::ConfigurationRejected { .. } => {
            "start-up: configuration rejected".to_string()
        }
        other => format!("other error: {other}"),
    }
}

/// One run's class and the guest callbacks it made.
struct Run {
    class: String,
    callbacks: u64,
    /// Hostcalls the exchange made (start-up ones are not reported).
    hostcalls: u64,
    compile: Duration,
    run: Duration,
}

fn run_one(engine: &WasmEngine, seed: u64, wasm: &[u8]) -> Run {
    let started = Instant::now();
    let module = CompiledModule::from_bytes_with(engine, &format!("seed-{seed}.wasm"), wasm);
    let compile = started.elapsed();
    let started = Instant::now();
    let done = |class: String, callbacks: u64, hostcalls: u64| Run {
        class,
        callbacks,
        hostcalls,
        compile,
        run: started.elapsed(),
    };
    let module = match module {
        Ok(m) => m,
        Err(e) => return done(error_class(&e), 0, 0),
    };
    let mut harness = match Harness::new(&module, plugin_config()) {
        Ok(h) => h,
        // Start-up runs at most the start function, _initialize and three root callbacks.
        Err(e) => return done(error_class(&e), 5, 0),
    };
    let outcome = match harness.exchange(&exchange()) {
        Ok(o) => o,
        Err(e) => return done(format!("exchange error: {e}"), 5, 0),
    };
    let callbacks = 5 + outcome
        .trace
        .iter()
        .filter(|e| matches!(e, TraceEvent::Callback { .. }))
        .count() as u64;
    let class = match &outcome.trap {
        Some(trap) => format!("exchange: {}", limit_kind(&trap.trap)),
        None => "loaded and ran".to_string(),
    };
    done(class, callbacks, outcome.hostcalls.values().sum())
}

/// `VmRSS` and `VmHWM` of this process, in kB.
fn rss_kb() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn generated_modules_never_crash_hang_or_exhaust_the_host() {
    let iterations = env_u64("HARNESS_FUZZ_ITERATIONS", 60);
    let first_seed = env_u64("HARNESS_FUZZ_SEED", 0x5eed_a5a5);
    let imports = available_imports();
    let engine = WasmEngine::shared()
        .unwrap()
        .with_module_limits(ModuleLimits {
            compile_timeout_ms: COMPILE_TIMEOUT_MS,
            ..ModuleLimits::default()
        });
    let started = Instant::now();
    let mut classes: BTreeMap<String, u64> = BTreeMap::new();
    let mut findings = Vec::new();
    let (mut generated, mut hostcalls) = (0u64, 0u64);
    let (mut slowest, mut max_rss) = ((Duration::ZERO, 0u64), 0u64);
    for seed in first_seed..first_seed.saturating_add(iterations) {
        let Some(wasm) = generate(seed, &imports) else {
            continue;
        };
        let run = match std::panic::catch_unwind(AssertUnwindSafe(|| run_one(&engine, seed, &wasm)))
        {
            Ok(run) => run,
            Err(_) => {
                findings.push(format!("seed {seed}: the host panicked"));
                continue;
            }
        };
        generated += 1;
        hostcalls += run.hostcalls;
        *classes.entry(run.class.clone()).or_default() += 1;
        let compile_budget = Duration::from_millis(COMPILE_TIMEOUT_MS) + SLACK;
        let run_budget = Duration::from_millis(DEADLINE_MS * run.callbacks) + SLACK;
        if run.compile > compile_budget || run.run > run_budget {
            findings.push(format!(
                "seed {seed}: over budget ({}): compile {:?}, run {:?} for {} callbacks",
                run.class, run.compile, run.run, run.callbacks
            ));
        }
        slowest = slowest.max((run.compile + run.run, seed));
        let (rss, _) = rss_kb();
        max_rss = max_rss.max(rss);
        if rss > MAX_RSS_KB {
            findings.push(format!("seed {seed}: resident memory {rss} kB"));
        }
    }
    let (_, peak) = rss_kb();
    println!(
        "fuzz_modules: seeds {first_seed}..{}, {generated} modules run in {:?}, {hostcalls} \
         hostcalls in exchanges; slowest {:?} (seed {}); largest VmRSS {max_rss} kB, VmHWM {peak} kB",
        first_seed.saturating_add(iterations),
        started.elapsed(),
        slowest.0,
        slowest.1
    );
    for (class, count) in &classes {
        println!("  {count:>6}  {class}");
    }
    assert!(findings.is_empty(), "{}", findings.join("\n"));
    assert!(
        generated >= iterations * 9 / 10,
        "only {generated} of {iterations} seeds made a module"
    );
    // The generator must reach the exchange, not only fail at start-up.
    let ran = classes
        .iter()
        .filter(|(c, _)| c.starts_with("loaded") || c.starts_with("exchange"))
        .map(|(_, n)| n)
        .sum::<u64>();
    assert!(
        ran > 0 || iterations < 20,
        "no module reached the exchange: {classes:?}"
    );
}
