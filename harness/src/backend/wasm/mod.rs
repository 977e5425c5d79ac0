//! The wasmtime backend: Cranelift engine, a module compiled once and
//! pre-linked ([`CompiledModule`], cheap to clone and share across VMs and
//! threads), and [`WasmVm`], one instance with cached typed exports and its
//! memory handle. The glue is generated from the `proxy-abi` tables: the
//! linker registrations of the host functions and of the WASI subset, and
//! the callback exports, looked up with the arity of the module's ABI
//! version. Only memory access and export calls are written here.

mod backtrace;
mod bounds;
mod cache;
mod linker;
pub mod wasi;

use linker::build_linker;
pub use linker::{LinearMemory, WasmGuest, WasmState};

use std::path::Path;
use std::sync::{Arc, OnceLock};

use wasmtime::{
    Caller, Config, Engine, ExternType, Instance, InstancePre, Linker, Memory, Module, Store,
    TypedFunc, Val, ValType, WasmParams, WasmResults,
};

use crate::abi::WASI_MODULES;
use crate::abi::{CallbackResult, CallbackSpec};
use crate::backend::{ArgWords, Callback, CodeHash, MAX_CALLBACK_ARGS, StartExports, Vm};
use crate::error::HarnessError;
use crate::host::{Host, Phase};
use crate::hostcalls::{self, Fault, Guest, GuestMemory, Hostcall};
use crate::limits::ModuleLimits;

/// A wasmtime engine configured for filters (Cranelift, optimised for speed)
/// and the limits every module it compiles must keep ([`ModuleLimits`]).
/// Cheap to clone.
#[derive(Clone)]
pub struct WasmEngine {
    engine: Engine,
    limits: ModuleLimits,
}

impl WasmEngine {
    /// A new engine.
    pub fn new() -> Result<WasmEngine, HarnessError> {
        let mut config = Config::new();
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        // Callback deadlines: compiled code checks the epoch at loop heads
        // and function entries; a thread advances it (crate::limits).
        config.epoch_interruption(true);
        // Trap backtraces name source lines when the module has DWARF (a
        // debug build), whatever WASMTIME_BACKTRACE_DETAILS says. Modules
        // without it (release filters are stripped) compile as fast and to
        // the same size either way; a debug build of the probe filter takes
        // about 9% more compile CPU and keeps its DWARF in the artifact.
        config.wasm_backtrace_details(wasmtime::WasmBacktraceDetails::Enable);
        // Instances come from pre-reserved slots whose memories are reset
        // copy-on-write images: instantiation drops from ~9 µs (mmap per
        // instance) to ~6 µs, and freed slots are reused (harness bench).
        // Where the address space cannot be reserved (`ulimit -v`, valgrind)
        // each instance maps its own memory instead.
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(
            wasmtime::PoolingAllocationConfig::default(),
        ));
        // `HARNESS_PERF_MAP=1`: name JIT-compiled guest functions for `perf`
        // (/tmp/perf-<pid>.map), to profile where a filter spends its time.
        if std::env::var_os("HARNESS_PERF_MAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config)
            .or_else(|pooled| {
                config.allocation_strategy(wasmtime::InstanceAllocationStrategy::OnDemand);
                Engine::new(&config).map_err(|_| pooled)
            })
            .map_err(|e| HarnessError::Usage(format!("cannot create the wasmtime engine: {e}")))?;
        crate::limits::start_epoch_ticker(&engine).map_err(|e| {
            HarnessError::Usage(format!("cannot start the callback-deadline thread: {e}"))
        })?;
        Ok(WasmEngine {
            engine,
            limits: ModuleLimits::default(),
        })
    }

    /// The engine shared by every module compiled without an explicit one.
    /// An engine holds configuration and compiled code only, no harness
    /// state, so sharing it keeps harnesses independent.
    pub fn shared() -> Result<WasmEngine, HarnessError> {
        static SHARED: OnceLock<Result<WasmEngine, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| WasmEngine::new().map_err(|e| e.to_string()))
            .clone()
            .map_err(HarnessError::Usage)
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The same engine (same compiled-code settings, same deadline thread)
    /// compiling under other limits.
    pub fn with_module_limits(&self, limits: ModuleLimits) -> WasmEngine {
        WasmEngine {
            engine: self.engine.clone(),
            limits,
        }
    }

    /// The limits modules compiled with this engine must keep.
    pub fn module_limits(&self) -> &ModuleLimits {
        &self.limits
    }
}

pub use crate::abi::AbiVersion;

/// A module compiled and linked once, shared by any number of VMs.
#[derive(Clone)]
pub struct CompiledModule {
    inner: Arc<ModuleInner>,
}

struct ModuleInner {
    name: String,
    engine: WasmEngine,
    pre: InstancePre<WasmState>,
    abi: AbiVersion,
    start: StartExports,
    /// SHA-256 of the bytes loaded: part of the VM key.
    code_hash: CodeHash,
}

impl CompiledModule {
    /// True when both hold the same code (equal bytes, loaded once or
    /// twice): one half of Envoy's VM key.
    pub fn same_module(&self, other: &CompiledModule) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner) || self.inner.code_hash == other.inner.code_hash
    }

    /// SHA-256 of the bytes loaded, lower-case hex.
    pub fn sha256(&self) -> String {
        self.inner.code_hash.hex()
    }

    /// Reads and compiles a `.wasm` (or `.wat`) file with the shared engine.
    pub fn from_file(path: impl AsRef<Path>) -> Result<CompiledModule, HarnessError> {
        Self::from_file_with(&WasmEngine::shared()?, path)
    }

    /// Reads and compiles a file with a given engine.
    pub fn from_file_with(
        engine: &WasmEngine,
        path: impl AsRef<Path>,
    ) -> Result<CompiledModule, HarnessError> {
        let path = path.as_ref();
        let not_found = |source| HarnessError::ModuleNotFound {
            path: path.to_path_buf(),
            source,
        };
        let name = path.display().to_string();
        // A huge file is refused before it is read.
        let len = std::fs::metadata(path).map_err(not_found)?.len();
        bounds::check_size(&name, len, &engine.limits)?;
        let bytes = std::fs::read(path).map_err(not_found)?;
        Self::from_bytes_cached_with(engine, &name, &bytes)
    }

    /// Module bytes compiled with a given engine, or taken from the
    /// compiled-module cache when these bytes were compiled with the same
    /// engine settings before (and stored there for next time).
    pub fn from_bytes_cached_with(
        engine: &WasmEngine,
        name: &str,
        bytes: &[u8],
    ) -> Result<CompiledModule, HarnessError> {
        let code = CodeHash::of(bytes);
        let Some(entry) = cache::entry(engine, &code) else {
            return Self::from_bytes_with(engine, name, bytes);
        };
        if let Some(module) = cache::load(engine, &entry) {
            return Self::from_module(engine, name, module, code);
        }
        let module = Self::compile(engine, name, bytes)?;
        let compiled = Self::from_module(engine, name, module, code)?;
        cache::store(compiled.inner.pre.module(), &entry);
        Ok(compiled)
    }

    /// Compiles module bytes (binary, or WAT text) with the shared engine.
    /// `name` labels errors.
    pub fn from_bytes(name: &str, bytes: &[u8]) -> Result<CompiledModule, HarnessError> {
        Self::from_bytes_with(&WasmEngine::shared()?, name, bytes)
    }

    /// Compiles module bytes with a given engine, within its [`ModuleLimits`].
    pub fn from_bytes_with(
        engine: &WasmEngine,
        name: &str,
        bytes: &[u8],
    ) -> Result<CompiledModule, HarnessError> {
        let module = Self::compile(engine, name, bytes)?;
        Self::from_module(engine, name, module, CodeHash::of(bytes))
    }

    /// Checks and compiles module bytes (binary or WAT) within the engine's limits.
    fn compile(engine: &WasmEngine, name: &str, bytes: &[u8]) -> Result<Module, HarnessError> {
        let is_binary = bytes.starts_with(b"\0asm");
        // WAT text starts with `(module` or a `;;` comment.
        let looks_like_text = matches!(
            bytes.iter().find(|b| !b.is_ascii_whitespace()),
            Some(b'(' | b';')
        );
        if !is_binary && !looks_like_text {
            let detail = if bytes.len() < 4 {
                format!("only {} bytes long", bytes.len())
            } else {
                format!("starts with {:02x?}, not the \\0asm magic", &bytes[..4])
            };
            return Err(HarnessError::NotWasm {
                name: name.to_string(),
                detail,
            });
        }
        let binary = bounds::checked_binary(name, bytes, &engine.limits)?;
        let wasmtime_engine = engine.engine.clone();
        bounds::compile_bounded(name, binary, &engine.limits, move |binary| {
            Module::from_binary(&wasmtime_engine, binary)
        })
    }

    /// Compiles module bytes (binary or WAT) into a precompiled artifact
    /// (`.cwasm`) that [`CompiledModule::from_precompiled_file_with`] loads
    /// without compiling. Only an engine with the same configuration and
    /// wasmtime version can load it. The engine's [`ModuleLimits`] apply.
    pub fn precompile(
        engine: &WasmEngine,
        name: &str,
        bytes: &[u8],
    ) -> Result<Vec<u8>, HarnessError> {
        let binary = bounds::checked_binary(name, bytes, &engine.limits)?;
        let wasmtime_engine = engine.engine.clone();
        bounds::compile_bounded(name, binary, &engine.limits, move |binary| {
            wasmtime_engine.precompile_module(binary)
        })
    }

    /// Whether `bytes` are a wasmtime precompiled module (`harness compile`).
    pub fn is_precompiled(bytes: &[u8]) -> bool {
        matches!(
            Engine::detect_precompiled(bytes),
            Some(wasmtime::Precompiled::Module)
        )
    }

    /// Loads a precompiled artifact with the shared engine (memory-mapped, not compiled).
    pub fn from_precompiled_file(path: impl AsRef<Path>) -> Result<CompiledModule, HarnessError> {
        Self::from_precompiled_file_with(&WasmEngine::shared()?, path)
    }

    /// Loads a precompiled artifact made by [`CompiledModule::precompile`].
    pub fn from_precompiled_file_with(
        engine: &WasmEngine,
        path: impl AsRef<Path>,
    ) -> Result<CompiledModule, HarnessError> {
        let path = path.as_ref();
        let name = path.display().to_string();
        if let Err(source) = std::fs::metadata(path) {
            return Err(HarnessError::ModuleNotFound {
                path: path.to_path_buf(),
                source,
            });
        }
        let code_hash = CodeHash::of_file(path).map_err(|source| HarnessError::ModuleNotFound {
            path: path.to_path_buf(),
            source,
        })?;
        // SAFETY: wasmtime checks the artifact's header, engine configuration
        // and version before using it; the file is trusted like any native
        // code the user runs (made by `harness compile`). It must not be
        // modified while mapped.
        let module = unsafe { Module::deserialize_file(&engine.engine, path) }.map_err(|e| {
            HarnessError::Compile {
                name: name.clone(),
                detail: format!(
                    "cannot load the precompiled module: {e:#} (recreate it with `harness compile`)"
                ),
            }
        })?;
        Self::from_module(engine, &name, module, code_hash)
    }

    fn from_module(
        engine: &WasmEngine,
        name: &str,
        module: Module,
        code_hash: CodeHash,
    ) -> Result<CompiledModule, HarnessError> {
        let exports: Vec<String> = module.exports().map(|e| e.name().to_string()).collect();
        let has = |n: &str| exports.iter().any(|e| e == n);
        let Some(abi) = AbiVersion::detect(exports.iter().map(String::as_str)) else {
            return Err(HarnessError::NoAbiVersion {
                name: name.to_string(),
            });
        };
        if let Some(export) = crate::backend::missing_required_export(has) {
            return Err(HarnessError::MissingExport {
                name: name.to_string(),
                export: export.to_string(),
            });
        }
        if let Some((module_name, field)) = crate::backend::refused_import(
            abi,
            module
                .imports()
                .map(|import| (import.module(), import.name())),
        ) {
            return Err(HarnessError::UnknownImport {
                name: name.to_string(),
                module: module_name.to_string(),
                field: field.to_string(),
            });
        }
        let linker = build_linker(&engine.engine, &module).map_err(|e| HarnessError::Compile {
            name: name.to_string(),
            detail: format!("linking: {e:#}"),
        })?;
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| HarnessError::Instantiate {
                name: name.to_string(),
                detail: format!("{e:#}"),
            })?;
        let start = StartExports {
            initialize: has("_initialize"),
            main: has("main") || has("__main_void"),
            start: has("_start"),
        };
        Ok(CompiledModule {
            inner: Arc::new(ModuleInner {
                name: name.to_string(),
                engine: engine.clone(),
                pre,
                abi,
                start,
                code_hash,
            }),
        })
    }

    /// The label given at load time (usually the file path).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The declared ABI version.
    pub fn abi_version(&self) -> AbiVersion {
        self.inner.abi
    }

    /// The engine it was compiled with.
    pub fn engine(&self) -> &WasmEngine {
        &self.inner.engine
    }

    /// Creates a VM: instantiates the module with a fresh store owning `host`.
    /// Start-up callbacks are not run here (the driver runs them).
    pub fn instantiate(&self, host: Host) -> Result<WasmVm, HarnessError> {
        let name = &self.inner.name;
        let abi = self.inner.abi;
        let mut host = host;
        host.abi = abi;
        let inst_err = |detail: String| HarnessError::Instantiate {
            name: name.clone(),
            detail,
        };
        let mut store = Store::new(
            &self.inner.engine.engine,
            WasmState {
                memory_cap: crate::limits::MemoryCap::new(host.plugin().max_memory_bytes),
                host,
                memory: None,
                alloc: None,
            },
        );
        store.limiter(|state| &mut state.memory_cap);
        // Start-up code (data segments, a start function) has a deadline too.
        store.set_epoch_deadline(crate::limits::deadline_ticks(
            store.data().host.plugin().callback_deadline_ms,
        ));
        let instance = self
            .inner
            .pre
            .instantiate(&mut store)
            .map_err(|e| match store.data().memory_cap.refused {
                // A start function past its deadline reads like any callback's.
                None if e.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) => {
                    let plugin = store.data().host.plugin();
                    inst_err(crate::limits::deadline_message(
                        &plugin.name,
                        "the start function",
                        plugin.callback_deadline_ms,
                    ))
                }
                Some(wanted) => inst_err(format!(
                    "its initial memory ({wanted} bytes) exceeds the {}-byte memory limit (max_memory_bytes): {e:#}",
                    store.data().memory_cap.max_bytes
                )),
                None => inst_err(format!("{e:#}")),
            })?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| inst_err("export `memory` is not a memory".to_string()))?;
        let mut typed = TypedExports {
            store: &mut store,
            instance,
            name,
        };
        let alloc: Option<TypedFunc<i32, i32>> = match typed.get("malloc")? {
            Some(f) => Some(f),
            None => typed.get("proxy_on_memory_allocate")?,
        };
        let exports = Exports {
            initialize: typed.get("_initialize")?,
            main: typed.get("main")?,
            main_void: typed.get("__main_void")?,
            start: typed.get("_start")?,
            callbacks: proxy_abi::CALLBACKS
                .iter()
                .map(|spec| WasmCallback::lookup(&mut typed, spec, abi))
                .collect::<Result<_, _>>()?,
        };
        let data = store.data_mut();
        data.memory = Some(memory);
        data.alloc = alloc;
        Ok(WasmVm {
            store,
            exports,
            start: self.inner.start,
        })
    }
}

struct TypedExports<'a> {
    store: &'a mut Store<WasmState>,
    instance: Instance,
    name: &'a str,
}

impl TypedExports<'_> {
    /// An optional export with the expected signature; a wrong signature is an error.
    fn get<P: WasmParams, R: WasmResults>(
        &mut self,
        export: &str,
    ) -> Result<Option<TypedFunc<P, R>>, HarnessError> {
        let Some(func) = self.instance.get_func(&mut *self.store, export) else {
            return Ok(None);
        };
        func.typed::<P, R>(&*self.store)
            .map(Some)
            .map_err(|e| HarnessError::Instantiate {
                name: self.name.to_string(),
                detail: format!("export `{export}` has the wrong signature: {e}"),
            })
    }
}

/// A callback export typed by its arity in the module's ABI version (every
/// argument is an i32 in wasm32) and its result (none, or an i32).
enum WasmCallback {
    Unit(ByArity<()>),
    Word(ByArity<i32>),
}

/// A typed export with 0 to [`MAX_CALLBACK_ARGS`] i32 parameters.
enum ByArity<R> {
    A0(TypedFunc<(), R>),
    A1(TypedFunc<(i32,), R>),
    A2(TypedFunc<(i32, i32), R>),
    A3(TypedFunc<(i32, i32, i32), R>),
    A4(TypedFunc<(i32, i32, i32, i32), R>),
    A5(TypedFunc<(i32, i32, i32, i32, i32), R>),
}

impl<R: WasmResults> ByArity<R> {
    fn lookup(
        typed: &mut TypedExports<'_>,
        export: &str,
        arity: usize,
    ) -> Result<Option<ByArity<R>>, HarnessError> {
        Ok(match arity {
            0 => typed.get(export)?.map(ByArity::A0),
            1 => typed.get(export)?.map(ByArity::A1),
            2 => typed.get(export)?.map(ByArity::A2),
            3 => typed.get(export)?.map(ByArity::A3),
            4 => typed.get(export)?.map(ByArity::A4),
            5 => typed.get(export)?.map(ByArity::A5),
            _ => {
                return Err(HarnessError::Instantiate {
                    name: typed.name.to_string(),
                    detail: format!(
                        "callback `{export}` takes {arity} arguments, more than any the harness can pass"
                    ),
                });
            }
        })
    }

    #[inline]
    fn call(
        &self,
        store: &mut Store<WasmState>,
        a: [i32; MAX_CALLBACK_ARGS],
    ) -> wasmtime::Result<R> {
        match self {
            ByArity::A0(f) => f.call(store, ()),
            ByArity::A1(f) => f.call(store, (a[0],)),
            ByArity::A2(f) => f.call(store, (a[0], a[1])),
            ByArity::A3(f) => f.call(store, (a[0], a[1], a[2])),
            ByArity::A4(f) => f.call(store, (a[0], a[1], a[2], a[3])),
            ByArity::A5(f) => f.call(store, (a[0], a[1], a[2], a[3], a[4])),
        }
    }
}

impl WasmCallback {
    /// The export for a table entry with the arity of the module's ABI
    /// version; absent is fine, a wrong signature is an error.
    fn lookup(
        typed: &mut TypedExports<'_>,
        spec: &CallbackSpec,
        abi: AbiVersion,
    ) -> Result<Option<WasmCallback>, HarnessError> {
        let arity = spec.arity_in(abi);
        Ok(match spec.result {
            CallbackResult::None => {
                ByArity::lookup(typed, spec.export, arity)?.map(WasmCallback::Unit)
            }
            CallbackResult::Bool | CallbackResult::Action => {
                ByArity::lookup(typed, spec.export, arity)?.map(WasmCallback::Word)
            }
        })
    }

    /// Calls with the first arity words of `words` (ids, sizes and flags
    /// as wasm32 i32s); the result as a u32 word (0 for none).
    #[inline]
    fn call(&self, store: &mut Store<WasmState>, words: ArgWords) -> wasmtime::Result<u64> {
        let args: [i32; MAX_CALLBACK_ARGS] = std::array::from_fn(|i| words.get(i) as u32 as i32);
        match self {
            WasmCallback::Unit(f) => f.call(store, args).map(|()| 0),
            WasmCallback::Word(f) => f.call(store, args).map(|v| u64::from(v as u32)),
        }
    }
}

/// Typed exports, looked up once per instance.
struct Exports {
    initialize: Option<TypedFunc<(), ()>>,
    main: Option<TypedFunc<(i32, i32), i32>>,
    main_void: Option<TypedFunc<(), i32>>,
    start: Option<TypedFunc<(), ()>>,
    /// By [`crate::backend::CallbackId`] (the callback table's order).
    callbacks: Box<[Option<WasmCallback>]>,
}

/// One wasm VM: a store owning the [`Host`], an instance, cached exports.
pub struct WasmVm {
    store: Store<WasmState>,
    exports: Exports,
    start: StartExports,
}

/// Text of a wasmtime error: the cause first (the trap kind, or the host
/// fault's message), then the wasm backtrace when there is one (with
/// source lines when the module carries DWARF).
fn trap_text(e: &wasmtime::Error) -> String {
    let cause = match e.downcast_ref::<wasmtime::Trap>() {
        // wasmtime's Display already starts with "wasm trap: ".
        Some(trap) => trap.to_string(),
        None => e.root_cause().to_string(),
    };
    match e
        .downcast_ref::<wasmtime::WasmBacktrace>()
        .and_then(backtrace::text)
    {
        Some(backtrace) => format!("{cause}\n{backtrace}"),
        None => cause,
    }
}

fn call_opt<P: WasmParams, R: WasmResults>(
    f: &Option<TypedFunc<P, R>>,
    store: &mut Store<WasmState>,
    params: P,
) -> Option<wasmtime::Result<R>> {
    f.as_ref().map(|f| f.call(&mut *store, params))
}

impl WasmVm {
    /// The trap text, naming the filter, the callback and the limit when a
    /// limit caused it.
    fn explain_trap(&self, cb: Callback, err: &wasmtime::Error, deadline_ms: u64) -> String {
        let state = self.store.data();
        let filter = &state.host.plugin().name;
        if err.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) {
            return crate::limits::deadline_message(filter, cb.name(), deadline_ms);
        }
        match state.memory_cap.refused {
            Some(wanted) => crate::limits::memory_message(
                filter,
                cb.name(),
                state.memory_cap.max_bytes,
                wanted,
                &trap_text(err),
            ),
            None => trap_text(err),
        }
    }
}

impl Vm for WasmVm {
    fn host(&mut self) -> &mut Host {
        &mut self.store.data_mut().host
    }

    fn host_ref(&self) -> &Host {
        &self.store.data().host
    }

    fn start_exports(&self) -> StartExports {
        self.start
    }

    fn call(&mut self, cb: Callback) -> Result<u64, String> {
        let deadline_ms = self.store.data().host.plugin().callback_deadline_ms;
        self.store
            .set_epoch_deadline(crate::limits::deadline_ticks(deadline_ms));
        self.store.data_mut().memory_cap.refused = None;
        let e = &self.exports;
        let s = &mut self.store;
        let unit = |r: Option<wasmtime::Result<()>>| r.map(|r| r.map(|()| 0u64));
        let word = |r: Option<wasmtime::Result<i32>>| r.map(|r| r.map(|v| u64::from(v as u32)));
        let result: Option<wasmtime::Result<u64>> = match cb.id() {
            Some(id) => e
                .callbacks
                .get(id as usize)
                .and_then(Option::as_ref)
                .map(|f| f.call(s, cb.words())),
            None => match cb {
                Callback::Main => match &e.main {
                    Some(_) => word(call_opt(&e.main, s, (0, 0))),
                    None => word(call_opt(&e.main_void, s, ())),
                },
                Callback::Start => unit(call_opt(&e.start, s, ())),
                _ => unit(call_opt(&e.initialize, s, ())),
            },
        };
        match result {
            None => Ok(cb.default_result()),
            Some(Ok(v)) => Ok(v),
            Some(Err(err)) => Err(self.explain_trap(cb, &err, deadline_ms)),
        }
    }
}

#[cfg(test)]
mod tests;
