//! What a filter costs before its first request: cold start (compile,
//! instantiate, start-up), from a precompiled artifact, natively, and the
//! memory one VM holds.

use super::*;
use crate::backend::Vm;

/// Start-up durations recorded by the driver, grouped.
fn startup_split(h: &Harness) -> (u64, u64, u64) {
    let mut init = 0u64;
    let mut vm_start = 0u64;
    let mut configure = 0u64;
    for (name, d) in h.startup_durations() {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        match *name {
            "proxy_on_vm_start" => vm_start += ns,
            "proxy_on_configure" => configure += ns,
            _ => init += ns,
        }
    }
    (init, vm_start, configure)
}

pub(super) fn cold_start_wasm(
    case: &BenchCase,
    config: &HarnessConfig,
    options: &BenchOptions,
) -> Result<ColdStart, HarnessError> {
    let engine = WasmEngine::shared()?;
    let name = case.module.display().to_string();
    let bytes = std::fs::read(&case.module).map_err(|source| HarnessError::ModuleNotFound {
        path: case.module.clone(),
        source,
    })?;
    let mut compile = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let m = CompiledModule::from_bytes_with(&engine, &name, &bytes)?;
        compile.push(elapsed_ns(t));
        drop(m);
    }
    let artifact = CompiledModule::precompile(&engine, &name, &bytes)?;
    let path = std::env::temp_dir().join(format!(
        "harness-bench-{}-{}.cwasm",
        std::process::id(),
        case.name.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    ));
    std::fs::write(&path, &artifact)
        .map_err(|e| HarnessError::Usage(format!("cannot write {}: {e}", path.display())))?;
    let result = cold_start_from_artifact(&engine, &path, config, options);
    let _ = std::fs::remove_file(&path);
    let mut cold = result?;
    cold.compile_ns = median(&mut compile);
    Ok(cold)
}

fn cold_start_from_artifact(
    engine: &WasmEngine,
    path: &Path,
    config: &HarnessConfig,
    options: &BenchOptions,
) -> Result<ColdStart, HarnessError> {
    let runs = options.cold_runs.max(1);
    let mut samples = Samples::default();
    let mut module = None;
    for _ in 0..runs {
        let load = || CompiledModule::from_precompiled_file_with(engine, path);
        let instantiate =
            |m: &CompiledModule, host| m.instantiate(host).map(|vm| Box::new(vm) as Box<dyn Vm>);
        let (m, _) = samples.cold_run(config, load, instantiate)?;
        module = Some(m);
    }
    // Instantiation alone, many times, for an already-loaded module.
    if let Some(m) = module {
        for _ in 0..runs * 10 {
            let host = Host::new(config, SharedHost::new());
            let t = Instant::now();
            let vm = m.instantiate(host)?;
            samples.inst.push(elapsed_ns(t));
            drop(vm);
        }
    }
    Ok(samples.medians())
}

#[cfg(unix)]
pub(super) fn cold_start_native(
    case: &BenchCase,
    config: &HarnessConfig,
    options: &BenchOptions,
) -> Result<ColdStart, HarnessError> {
    use crate::backend::native::NativeLibrary;
    let runs = options.cold_runs.max(1);
    let mut samples = Samples::default();
    for _ in 0..runs {
        let load = || NativeLibrary::from_file(&case.native);
        let instantiate =
            |l: &NativeLibrary, host| l.instantiate(host).map(|vm| Box::new(vm) as Box<dyn Vm>);
        let (_, instantiated) = samples.cold_run(config, load, instantiate)?;
        samples.inst.push(instantiated);
    }
    Ok(samples.medians())
}

/// Nanoseconds of each part of repeated cold starts.
#[derive(Default)]
struct Samples {
    load: Vec<u64>,
    inst: Vec<u64>,
    init: Vec<u64>,
    vm_start: Vec<u64>,
    configure: Vec<u64>,
    total: Vec<u64>,
}

impl Samples {
    /// One cold start: load the module, instantiate a VM of it, start it.
    /// Records all but the instantiation, which it returns (callers decide
    /// how instantiation is sampled); the loaded module is returned too.
    fn cold_run<M>(
        &mut self,
        config: &HarnessConfig,
        load: impl FnOnce() -> Result<M, HarnessError>,
        instantiate: impl FnOnce(&M, Host) -> Result<Box<dyn Vm>, HarnessError>,
    ) -> Result<(M, u64), HarnessError> {
        let t = Instant::now();
        let module = load()?;
        let loaded = elapsed_ns(t);
        let host = Host::new(config, SharedHost::new());
        let t2 = Instant::now();
        let vm = instantiate(&module, host)?;
        let instantiated = elapsed_ns(t2);
        let t3 = Instant::now();
        let h = Harness::start(vm)?;
        let started = elapsed_ns(t3);
        let (i, v, c) = startup_split(&h);
        self.load.push(loaded);
        self.total.push(loaded + instantiated + started);
        self.init.push(i);
        self.vm_start.push(v);
        self.configure.push(c);
        Ok((module, instantiated))
    }

    fn medians(mut self) -> ColdStart {
        ColdStart {
            compile_ns: 0,
            load_ns: median(&mut self.load),
            instantiate_ns: median(&mut self.inst),
            initialize_ns: median(&mut self.init),
            vm_start_ns: median(&mut self.vm_start),
            configure_ns: median(&mut self.configure),
            total_ns: median(&mut self.total),
        }
    }
}

/// RSS added per extra VM. A first VM is made before the baseline, so code
/// and the allocator's first growth are counted once, not per VM.
pub(super) fn vm_memory(
    module: &FilterModule,
    config: &HarnessConfig,
    ex: &Work,
    options: &BenchOptions,
) -> Result<VmMemory, HarnessError> {
    let mut first = new_harness(module, config)?;
    for _ in 0..options.warmup {
        ex.run_on(&mut first)?;
    }
    let read = || rss::current().unwrap_or_default();
    let base: Memory = read();
    let vms = options.rss_vms.max(1);
    let mut harnesses = Vec::with_capacity(vms);
    for _ in 0..vms {
        harnesses.push(new_harness(module, config)?);
    }
    let idle = read();
    // Requests through each VM, capped in time so slow filters still finish.
    let mut requests = options.rss_requests;
    for h in &mut harnesses {
        let started = Instant::now();
        let mut n = 0;
        while n < requests {
            ex.run_on(h)?;
            n += 1;
            if started.elapsed() > options.run_time * 3 {
                break;
            }
        }
        requests = requests.min(n);
    }
    let after = read();
    let per_vm = |m: Memory, f: fn(&Memory) -> u64| (f(&m) as f64 - f(&base) as f64) / vms as f64;
    drop(harnesses);
    drop(first);
    Ok(VmMemory {
        vms,
        idle_bytes: per_vm(idle, |m| m.resident),
        after_requests_bytes: per_vm(after, |m| m.resident),
        after_requests_anon_bytes: per_vm(after, Memory::anonymous),
        requests,
    })
}
