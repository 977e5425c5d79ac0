//! The measurements: one filter, wasm against its native twin, through the
//! same host code.

mod cold;
use cold::{cold_start_native, cold_start_wasm, vm_memory};

use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::backend::wasm::{CompiledModule, WasmEngine};
use crate::bench::allocations;
use crate::bench::rss::{self, Memory};
use crate::bench::stats::{Latency, LatencyRecorder, median, ratio};
use crate::bench::{BenchCase, Sweep};
use crate::driver::{FilterModule, Harness};
use crate::error::HarnessError;
use crate::host::{GuestTraffic, Host, SharedHost};
use crate::model::{Body, ByteString, Exchange, HarnessConfig, LogLevel, TraceLevel};

use super::work::Work;

/// How long and how much to measure.
#[derive(Clone, Debug, Serialize)]
pub struct BenchOptions {
    /// Requests before any measurement (per VM).
    pub warmup: u64,
    /// Most latency samples per variant and backend.
    pub max_samples: u64,
    /// Wall-clock budget of each latency run and each throughput run.
    pub run_time: Duration,
    /// Extra VMs created for the memory measurement.
    pub rss_vms: usize,
    /// Requests through each of them before the second reading.
    pub rss_requests: u64,
    /// Repetitions of each cold-start step (medians are reported).
    pub cold_runs: usize,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            warmup: 200,
            max_samples: 50_000,
            run_time: Duration::from_millis(1000),
            rss_vms: 4,
            rss_requests: 10_000,
            cold_runs: 20,
        }
    }
}

/// Which build runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// The filter built for the host, called directly.
    Native,
    /// The wasm module under wasmtime.
    Wasm,
}

/// Guest-boundary traffic per request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct PerRequest {
    /// Guest entries: callbacks plus allocator calls.
    pub guest_entries: f64,
    /// Host functions called by the guest.
    pub hostcalls: f64,
    /// Payload bytes copied out of and into guest memory.
    pub bytes_copied: f64,
    /// Heap allocations per request on the measuring thread: the host's,
    /// plus a native twin's own (a wasm guest allocates in its linear
    /// memory). `None` when the allocator does not count (library use).
    pub host_allocations: Option<f64>,
}

impl PerRequest {
    fn from_traffic(before: GuestTraffic, after: GuestTraffic, requests: u64) -> PerRequest {
        let per = |a: u64, b: u64| (b - a) as f64 / requests.max(1) as f64;
        PerRequest {
            host_allocations: None,
            guest_entries: per(
                before.callbacks + before.allocations,
                after.callbacks + after.allocations,
            ),
            hostcalls: per(before.hostcalls, after.hostcalls),
            bytes_copied: per(
                before.bytes_from_guest + before.bytes_to_guest,
                after.bytes_from_guest + after.bytes_to_guest,
            ),
        }
    }
}

/// One backend on one variant.
#[derive(Clone, Debug, Serialize)]
pub struct BackendRun {
    /// Full-lifecycle time per request.
    pub latency: Latency,
    /// Requests per second on one worker (one core).
    pub per_core_rps: f64,
    /// Requests per second with two workers (one VM each).
    pub two_worker_rps: f64,
    /// Guest-boundary traffic per request.
    pub per_request: PerRequest,
}

/// One request shape (a sweep point), both backends.
#[derive(Clone, Debug, Serialize)]
pub struct VariantReport {
    /// `base`, `10 headers`, `64 KiB body`...
    pub label: String,
    /// The status the client received (checked equal on both backends).
    pub status: u16,
    /// The native twin.
    pub native: BackendRun,
    /// The wasm module.
    pub wasm: BackendRun,
    /// wasm median / native median.
    pub latency_ratio: f64,
    /// wasm median - native median, ns.
    pub added_ns: f64,
    /// wasm / native requests per second, one worker.
    pub throughput_ratio: f64,
    /// wasm / native requests per second, two workers.
    pub two_worker_ratio: f64,
}

/// Start-up costs of one backend, medians in ns (0 = not applicable).
#[derive(Clone, Debug, Default, Serialize)]
pub struct ColdStart {
    /// Compiling the module (wasm: Cranelift, from bytes to a linked module).
    pub compile_ns: u64,
    /// Loading a precompiled artifact (wasm: `harness compile` output,
    /// memory-mapped; native: reading the library file).
    pub load_ns: u64,
    /// Creating a VM for a loaded module (wasm: instantiation; native: a
    /// private copy of the library, `dlopen`, symbol lookup).
    pub instantiate_ns: u64,
    /// `_initialize` (+ `main`) and `proxy_on_context_create` of the root.
    pub initialize_ns: u64,
    /// `proxy_on_vm_start`.
    pub vm_start_ns: u64,
    /// `proxy_on_configure`.
    pub configure_ns: u64,
    /// From the artifact on disk to a configured root context, end to end.
    pub total_ns: u64,
}

/// Resident memory added per extra VM.
#[derive(Clone, Debug, Default, Serialize)]
pub struct VmMemory {
    /// VMs measured.
    pub vms: usize,
    /// Per VM, right after start-up.
    pub idle_bytes: f64,
    /// Per VM, after `requests` requests through each.
    pub after_requests_bytes: f64,
    /// Of which anonymous (heap, linear memory), after the requests.
    pub after_requests_anon_bytes: f64,
    /// Requests through each VM.
    pub requests: u64,
}

/// Everything measured for one filter.
#[derive(Clone, Debug, Serialize)]
pub struct CaseReport {
    /// The case name.
    pub name: String,
    /// The wasm module.
    pub module: PathBuf,
    /// The native twin.
    pub native: PathBuf,
    /// Sweep points.
    pub variants: Vec<VariantReport>,
    /// Native start-up.
    pub cold_start_native: ColdStart,
    /// Wasm start-up.
    pub cold_start_wasm: ColdStart,
    /// Native memory per VM (each native VM maps a private copy of the library).
    pub memory_native: VmMemory,
    /// Wasm memory per VM (compiled code shared, counted once).
    pub memory_wasm: VmMemory,
}

fn harness_config(case: &BenchCase) -> HarnessConfig {
    let mut config = HarnessConfig::default();
    config.plugin.name = case.name.clone();
    config.plugin.configuration = ByteString(case.config.clone().into_bytes());
    config.clusters.clone_from(&case.clusters);
    // What Envoy logs by default; debug lines would be dropped by the host anyway.
    config.plugin.log_level = LogLevel::Info;
    config.trace = TraceLevel::Off;
    if let Some(limit) = case.buffer_limit_bytes {
        config.buffer_limit_bytes = limit;
    }
    config
}

/// What a case runs: its connection, or its base request and then the
/// sweep points.
pub fn variants(case: &BenchCase) -> Vec<(String, Work)> {
    if let Some(connection) = &case.connection {
        return vec![("connection".to_string(), Work::Tcp(connection.clone()))];
    }
    http_variants(case)
        .into_iter()
        .map(|(label, ex)| (label, Work::Http(ex)))
        .collect()
}

/// The exchanges of an HTTP case: its base request, then the sweep points.
fn http_variants(case: &BenchCase) -> Vec<(String, Exchange)> {
    let base = Exchange {
        request: case.request.clone(),
        upstream: case.upstream.clone(),
        properties: Default::default(),
    };
    match case.sweep {
        Sweep::None => vec![("base".to_string(), base)],
        Sweep::Headers => [1usize, 10, 50]
            .iter()
            .map(|&n| {
                let mut ex = base.clone();
                pad_headers(&mut ex.request.headers, n);
                pad_headers(&mut ex.upstream.headers, n);
                (format!("{n} headers"), ex)
            })
            .collect(),
        Sweep::ResponseBody | Sweep::RequestBody => {
            let sizes: [(usize, Option<usize>); 6] = [
                (0, None),
                (1024, None),
                (64 * 1024, None),
                (1024 * 1024, None),
                (64 * 1024, Some(16 * 1024)),
                (1024 * 1024, Some(16 * 1024)),
            ];
            sizes
                .iter()
                .map(|&(size, chunk)| {
                    let mut ex = base.clone();
                    let body = sample_body(size);
                    let body = match chunk {
                        Some(c) => Body(body.chunks(c).map(|b| ByteString(b.to_vec())).collect()),
                        None => Body::single(body),
                    };
                    let label = match chunk {
                        Some(c) => format!("{} body in {} chunks", size_label(size), size_label(c)),
                        None => format!("{} body", size_label(size)),
                    };
                    if case.sweep == Sweep::ResponseBody {
                        ex.upstream.body = body;
                    } else {
                        ex.request.body = body;
                    }
                    (label, ex)
                })
                .collect()
        }
    }
}

fn size_label(size: usize) -> String {
    match size {
        0 => "0 B".to_string(),
        s if s % (1024 * 1024) == 0 => format!("{} MiB", s / (1024 * 1024)),
        s if s % 1024 == 0 => format!("{} KiB", s / 1024),
        s => format!("{s} B"),
    }
}

/// Adds `x-bench-N` headers until there are `n`.
fn pad_headers(headers: &mut crate::model::Headers, n: usize) {
    let mut i = 0;
    while headers.len() < n {
        headers.push(format!("x-bench-{i}"), format!("value-{i}-abcdefghij"));
        i += 1;
    }
}

/// A JSON-lines body of `size` bytes: customer records, every fourth with
/// a card number (what a redaction filter looks for).
pub fn sample_body(size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + 128);
    let mut i = 0u64;
    while out.len() < size {
        let record = if i.is_multiple_of(4) {
            format!(
                "{{\"id\":{i},\"name\":\"customer {i}\",\"card\":\"4111-1111-1111-{:04}\",\"city\":\"Hangzhou\"}}\n",
                i % 10_000
            )
        } else {
            format!(
                "{{\"id\":{i},\"name\":\"customer {i}\",\"plan\":\"standard\",\"city\":\"Hangzhou\"}}\n"
            )
        };
        out.extend_from_slice(record.as_bytes());
        i += 1;
    }
    out.truncate(size);
    out
}

/// Loads both builds of a case.
fn load(case: &BenchCase) -> Result<(CompiledModule, FilterModule), HarnessError> {
    let wasm = match FilterModule::from_file(&case.module)? {
        FilterModule::Wasm(m) => m,
        _ => {
            return Err(HarnessError::Usage(format!(
                "{} is a native library; give the .wasm module first and the native twin with --native",
                case.module.display()
            )));
        }
    };
    let native = FilterModule::from_file(&case.native)?;
    if native.backend_name() != "native" {
        return Err(HarnessError::Usage(format!(
            "{} is not a native library (build the twin with `cargo build --release -p <filter>`)",
            case.native.display()
        )));
    }
    Ok((wasm, native))
}

fn new_harness(module: &FilterModule, config: &HarnessConfig) -> Result<Harness, HarnessError> {
    Harness::with_shared(module.clone(), config.clone(), SharedHost::new())
}

/// A harness for the timed loops: lean, as serve runs the library (no metric
/// snapshots, hostcall counts, callout records or messages copied into each
/// outcome; the loops read only the trap and the status, and the guest-boundary
/// counts come from the host's own counters).
fn measured_harness(
    module: &FilterModule,
    config: &HarnessConfig,
    shared: SharedHost,
) -> Result<Harness, HarnessError> {
    let mut h = Harness::with_shared(module.clone(), config.clone(), shared)?;
    h.lean = true;
    Ok(h)
}

/// One iteration, checked: no trap, it ran to its end.
fn exchange_checked(h: &mut Harness, work: &Work, what: &str) -> Result<u16, HarnessError> {
    let outcome = work.run_on(h)?;
    if let Some(trap) = &outcome.trap {
        return Err(HarnessError::Usage(format!(
            "{what}: the filter trapped in {}: {}",
            trap.callback, trap.trap
        )));
    }
    if !work.completed(&outcome) {
        return Err(HarnessError::Usage(format!(
            "{what}: the stream did not complete ({})",
            crate::printable::stream_end(&outcome.end)
        )));
    }
    Ok(Work::status(&outcome))
}

/// The wasm and native outcomes of one iteration must be the same: the twin
/// is only a baseline if it does the same work.
fn check_faithful(
    wasm: &FilterModule,
    native: &FilterModule,
    config: &HarnessConfig,
    work: &Work,
    label: &str,
) -> Result<u16, HarnessError> {
    let mut observed = Vec::new();
    let mut status = 0;
    for module in [wasm, native] {
        let mut h = new_harness(module, config)?;
        let o = work.run_on(&mut h)?;
        if let Some(trap) = &o.trap {
            return Err(HarnessError::Usage(format!(
                "{label}: the {} filter trapped in {}: {}",
                module.backend_name(),
                trap.callback,
                trap.trap
            )));
        }
        status = Work::status(&o);
        observed.push(work.observed(&o));
    }
    let differs = observed[0]
        .iter()
        .zip(&observed[1])
        .find(|((_, a), (_, b))| a != b);
    if let Some(((what, a), (_, b))) = differs {
        return Err(HarnessError::Usage(format!(
            "{label}: the wasm module and the native twin answered differently ({what}: \
             wasm {a}, native {b}); they are not builds of the same filter (or the twin \
             is stale: rebuild both)"
        )));
    }
    Ok(status)
}

fn elapsed_ns(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Rounds each measurement is split into, alternating the backends, so a
/// change in the machine's other load hits both alike.
const ROUNDS: u32 = 10;

/// Measures both backends on one exchange, interleaved round by round.
fn measure_pair(
    native: &FilterModule,
    wasm: &FilterModule,
    config: &HarnessConfig,
    ex: &Work,
    options: &BenchOptions,
) -> Result<(BackendRun, BackendRun), HarnessError> {
    let modules = [native, wasm];
    let mut harnesses = Vec::new();
    for m in modules {
        let mut h = measured_harness(m, config, SharedHost::new())?;
        for _ in 0..options.warmup {
            exchange_checked(&mut h, ex, m.backend_name())?;
        }
        harnesses.push(h);
    }
    // Latency: every request timed on its own.
    let mut recorders = [
        LatencyRecorder::new().map_err(HarnessError::Usage)?,
        LatencyRecorder::new().map_err(HarnessError::Usage)?,
    ];
    let before: Vec<GuestTraffic> = harnesses.iter().map(Harness::guest_traffic).collect();
    let mut counts = [0u64; 2];
    let mut allocated = [Some(0u64); 2];
    let slice = options.run_time / ROUNDS;
    let per_round = (options.max_samples / u64::from(ROUNDS)).max(10);
    for round in 0..ROUNDS {
        for k in order(round) {
            let h = &mut harnesses[k];
            let started = Instant::now();
            let mut n = 0u64;
            let allocs_before = allocations::on_this_thread();
            while n < per_round && (n < 10 || started.elapsed() < slice) {
                let t = Instant::now();
                let outcome = ex.run_on(h)?;
                recorders[k].record(elapsed_ns(t));
                if let Some(trap) = outcome.trap {
                    return Err(HarnessError::Usage(format!(
                        "{}: the filter trapped in {}: {}",
                        modules[k].backend_name(),
                        trap.callback,
                        trap.trap
                    )));
                }
                n += 1;
            }
            // Counted over the latency runs only: the recorder's own
            // bookkeeping is preallocated, the clock reads allocate nothing.
            allocated[k] = match (allocated[k], allocs_before, allocations::on_this_thread()) {
                (Some(sum), Some(a), Some(b)) => Some(sum + (b - a)),
                _ => None,
            };
            counts[k] += n;
        }
    }
    // Throughput on one worker: back to back, no per-request clock.
    let mut done = [(0u64, 0f64); 2];
    for round in 0..ROUNDS {
        for k in order(round) {
            let (n, secs) = throughput(&mut harnesses[k], ex, slice)?;
            done[k].0 += n;
            done[k].1 += secs;
        }
    }
    let traffic: Vec<GuestTraffic> = harnesses.iter().map(Harness::guest_traffic).collect();
    drop(harnesses);
    // Two workers: fewer, longer rounds (each makes two VMs per backend).
    let mut two = [(0u64, 0f64); 2];
    for round in 0..2 {
        for k in order(round) {
            let (n, secs) = two_workers(modules[k], config, ex, options, options.run_time / 2)?;
            two[k].0 += n;
            two[k].1 += secs;
        }
    }
    let run = |k: usize| BackendRun {
        latency: recorders[k].summary(),
        per_core_rps: ratio(done[k].0 as f64, done[k].1),
        two_worker_rps: ratio(two[k].0 as f64, two[k].1),
        per_request: PerRequest {
            host_allocations: allocated[k].map(|n| n as f64 / counts[k].max(1) as f64),
            ..PerRequest::from_traffic(before[k], traffic[k], counts[k] + done[k].0)
        },
    };
    Ok((run(0), run(1)))
}

/// Native first in even rounds, wasm first in odd ones.
fn order(round: u32) -> [usize; 2] {
    if round.is_multiple_of(2) {
        [0, 1]
    } else {
        [1, 0]
    }
}

fn throughput(h: &mut Harness, ex: &Work, run_time: Duration) -> Result<(u64, f64), HarnessError> {
    let started = Instant::now();
    let mut n = 0u64;
    loop {
        for _ in 0..16 {
            ex.run_on(h)?;
        }
        n += 16;
        let t = started.elapsed();
        if t >= run_time {
            return Ok((n, t.as_secs_f64()));
        }
    }
}

/// Two worker threads, one VM each (sharing shared data like Envoy workers).
fn two_workers(
    module: &FilterModule,
    config: &HarnessConfig,
    ex: &Work,
    options: &BenchOptions,
    run_time: Duration,
) -> Result<(u64, f64), HarnessError> {
    let shared = SharedHost::new();
    let barrier = Arc::new(Barrier::new(2));
    let results: Vec<Result<(u64, Duration), HarnessError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let (module, config, shared, barrier) = (
                    module.clone(),
                    config.clone(),
                    shared.clone(),
                    barrier.clone(),
                );
                s.spawn(move || -> Result<(u64, Duration), HarnessError> {
                    // The VM is made on the thread that drives it (native VMs must be).
                    let built = measured_harness(&module, &config, shared);
                    barrier.wait();
                    let mut h = built?;
                    for _ in 0..options.warmup.min(50) {
                        ex.run_on(&mut h)?;
                    }
                    let started = Instant::now();
                    let mut n = 0u64;
                    while started.elapsed() < run_time {
                        for _ in 0..16 {
                            ex.run_on(&mut h)?;
                        }
                        n += 16;
                    }
                    Ok((n, started.elapsed()))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(HarnessError::Usage(
                        "a benchmark worker panicked".to_string(),
                    ))
                })
            })
            .collect()
    });
    // Requests of both workers over the longer of their two run times.
    let mut total = 0u64;
    let mut longest = 0f64;
    for r in results {
        let (n, t) = r?;
        total += n;
        longest = longest.max(t.as_secs_f64());
    }
    Ok((total, longest))
}

/// Runs every measurement of one case.
pub fn run_case(
    case: &BenchCase,
    options: &BenchOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<CaseReport, HarnessError> {
    let (wasm_module, native) = load(case)?;
    let wasm = FilterModule::Wasm(wasm_module);
    let config = harness_config(case);
    let mut variants_out = Vec::new();
    let all = variants(case);
    for (label, ex) in &all {
        progress(&format!("{}: {label}", case.name));
        let status = check_faithful(
            &wasm,
            &native,
            &config,
            ex,
            &format!("{} {label}", case.name),
        )?;
        let (native_run, wasm_run) = measure_pair(&native, &wasm, &config, ex, options)?;
        variants_out.push(VariantReport {
            label: label.clone(),
            status,
            latency_ratio: ratio(
                wasm_run.latency.median_ns as f64,
                native_run.latency.median_ns as f64,
            ),
            added_ns: wasm_run.latency.median_ns as f64 - native_run.latency.median_ns as f64,
            throughput_ratio: ratio(wasm_run.per_core_rps, native_run.per_core_rps),
            two_worker_ratio: ratio(wasm_run.two_worker_rps, native_run.two_worker_rps),
            native: native_run,
            wasm: wasm_run,
        });
    }
    progress(&format!("{}: cold start", case.name));
    let cold_start_wasm = cold_start_wasm(case, &config, options)?;
    #[cfg(unix)]
    let cold_start_native = cold_start_native(case, &config, options)?;
    #[cfg(not(unix))]
    let cold_start_native = ColdStart::default();
    progress(&format!("{}: memory per VM", case.name));
    let (_, base) = all
        .first()
        .ok_or_else(|| HarnessError::Usage("no request to measure".to_string()))?;
    let memory_wasm = vm_memory(&wasm, &config, base, options)?;
    let memory_native = vm_memory(&native, &config, base, options)?;
    Ok(CaseReport {
        name: case.name.clone(),
        module: case.module.clone(),
        native: case.native.clone(),
        variants: variants_out,
        cold_start_native,
        cold_start_wasm,
        memory_native,
        memory_wasm,
    })
}
