//! The wasmtime backend: Cranelift engine, a module compiled once and
//! pre-linked ([`CompiledModule`], cheap to clone and share across VMs and
//! threads), and [`WasmVm`], one instance with cached typed exports and its
//! memory handle. Hostcall glue is generated from the shared table in
//! [`crate::hostcalls`]; only memory access and export calls live here.

pub mod wasi;

use std::path::Path;
use std::sync::{Arc, OnceLock};

use wasmtime::{
    Caller, Config, Engine, ExternType, Instance, InstancePre, Linker, Memory, Module, Store,
    TypedFunc, Val, ValType, WasmParams, WasmResults,
};

use crate::abi::WASI_MODULES;
use crate::backend::{Callback, StartExports, Vm};
use crate::error::HarnessError;
use crate::host::{Host, Phase};
use crate::hostcalls::{self, Fault, Guest, GuestMemory, Hostcall};

/// A wasmtime engine configured for filters (Cranelift, optimised for speed).
/// Cheap to clone.
#[derive(Clone)]
pub struct WasmEngine {
    engine: Engine,
}

impl WasmEngine {
    /// A new engine.
    pub fn new() -> Result<WasmEngine, HarnessError> {
        let mut config = Config::new();
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        // Callback deadlines: compiled code checks the epoch at loop heads
        // and function entries; a thread advances it (crate::limits).
        config.epoch_interruption(true);
        // Instances come from pre-reserved slots whose memories are reset
        // copy-on-write images: instantiation drops from ~9 µs (mmap per
        // instance) to ~6 µs, and freed slots are reused (harness bench).
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(
            wasmtime::PoolingAllocationConfig::default(),
        ));
        // `HARNESS_PERF_MAP=1`: name JIT-compiled guest functions for `perf`
        // (/tmp/perf-<pid>.map), to profile where a filter spends its time.
        if std::env::var_os("HARNESS_PERF_MAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config)
            .map_err(|e| HarnessError::Usage(format!("cannot create the wasmtime engine: {e}")))?;
        crate::limits::start_epoch_ticker(&engine).map_err(|e| {
            HarnessError::Usage(format!("cannot start the callback-deadline thread: {e}"))
        })?;
        Ok(WasmEngine { engine })
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
}

impl CompiledModule {
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
        let bytes = std::fs::read(path).map_err(|source| HarnessError::ModuleNotFound {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes_with(engine, &path.display().to_string(), &bytes)
    }

    /// Compiles module bytes (binary, or WAT text) with the shared engine.
    /// `name` labels errors.
    pub fn from_bytes(name: &str, bytes: &[u8]) -> Result<CompiledModule, HarnessError> {
        Self::from_bytes_with(&WasmEngine::shared()?, name, bytes)
    }

    /// Compiles module bytes with a given engine.
    pub fn from_bytes_with(
        engine: &WasmEngine,
        name: &str,
        bytes: &[u8],
    ) -> Result<CompiledModule, HarnessError> {
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
        let module = Module::new(&engine.engine, bytes).map_err(|e| HarnessError::Compile {
            name: name.to_string(),
            detail: format!("{e:#}"),
        })?;
        Self::from_module(engine, name, module)
    }

    /// Compiles module bytes (binary or WAT) into a precompiled artifact
    /// (`.cwasm`) that [`CompiledModule::from_precompiled_file_with`] loads
    /// without compiling. Only an engine with the same configuration and
    /// wasmtime version can load it.
    pub fn precompile(
        engine: &WasmEngine,
        name: &str,
        bytes: &[u8],
    ) -> Result<Vec<u8>, HarnessError> {
        engine
            .engine
            .precompile_module(bytes)
            .map_err(|e| HarnessError::Compile {
                name: name.to_string(),
                detail: format!("{e:#}"),
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
        Self::from_module(engine, &name, module)
    }

    fn from_module(
        engine: &WasmEngine,
        name: &str,
        module: Module,
    ) -> Result<CompiledModule, HarnessError> {
        let exports: Vec<String> = module.exports().map(|e| e.name().to_string()).collect();
        let has = |n: &str| exports.iter().any(|e| e == n);
        let Some(abi) = AbiVersion::detect(exports.iter().map(String::as_str)) else {
            return Err(HarnessError::NoAbiVersion {
                name: name.to_string(),
            });
        };
        for required in ["memory", "proxy_on_context_create"] {
            if !has(required) {
                return Err(HarnessError::MissingExport {
                    name: name.to_string(),
                    export: required.to_string(),
                });
            }
        }
        if !has("malloc") && !has("proxy_on_memory_allocate") {
            return Err(HarnessError::MissingExport {
                name: name.to_string(),
                export: "malloc or proxy_on_memory_allocate".to_string(),
            });
        }
        for import in module.imports() {
            let known = match import.module() {
                "env" => abi.offers(import.name()),
                m => WASI_MODULES.contains(&m),
            };
            if !known {
                return Err(HarnessError::UnknownImport {
                    name: name.to_string(),
                    module: import.module().to_string(),
                    field: import.name().to_string(),
                });
            }
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
            context_create: typed.get("proxy_on_context_create")?,
            vm_start: typed.get("proxy_on_vm_start")?,
            configure: typed.get("proxy_on_configure")?,
            tick: typed.get("proxy_on_tick")?,
            queue_ready: typed.get("proxy_on_queue_ready")?,
            request_headers: headers_export(&mut typed, abi, "proxy_on_request_headers")?,
            request_body: typed.get("proxy_on_request_body")?,
            request_trailers: typed.get("proxy_on_request_trailers")?,
            response_headers: headers_export(&mut typed, abi, "proxy_on_response_headers")?,
            response_body: typed.get("proxy_on_response_body")?,
            response_trailers: typed.get("proxy_on_response_trailers")?,
            log: typed.get("proxy_on_log")?,
            done: typed.get("proxy_on_done")?,
            delete: typed.get("proxy_on_delete")?,
            http_call_response: typed.get("proxy_on_http_call_response")?,
            grpc_initial_metadata: typed.get("proxy_on_grpc_receive_initial_metadata")?,
            grpc_receive: typed.get("proxy_on_grpc_receive")?,
            grpc_trailing_metadata: typed.get("proxy_on_grpc_receive_trailing_metadata")?,
            grpc_close: typed.get("proxy_on_grpc_close")?,
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

/// Store data: the host plus what hostcalls need to reach the guest.
pub struct WasmState {
    host: Host,
    memory: Option<Memory>,
    alloc: Option<TypedFunc<i32, i32>>,
    memory_cap: crate::limits::MemoryCap,
}

/// Guest linear memory: 32-bit pointers, every access bounds-checked.
pub struct LinearMemory<'a>(&'a mut [u8]);

impl GuestMemory for LinearMemory<'_> {
    const POINTER_SIZE: usize = 4;
    #[inline]
    fn slice(&self, addr: u64, len: u64) -> Option<&[u8]> {
        let end = addr.checked_add(len)?;
        if end > self.0.len() as u64 {
            return None;
        }
        self.0.get(addr as usize..end as usize)
    }
    #[inline]
    fn slice_mut(&mut self, addr: u64, len: u64) -> Option<&mut [u8]> {
        let end = addr.checked_add(len)?;
        if end > self.0.len() as u64 {
            return None;
        }
        self.0.get_mut(addr as usize..end as usize)
    }
}

/// The [`Guest`] view of a wasm instance inside a hostcall.
pub struct WasmGuest<'a, 'b> {
    caller: &'a mut Caller<'b, WasmState>,
}

impl Guest for WasmGuest<'_, '_> {
    type Memory<'m>
        = LinearMemory<'m>
    where
        Self: 'm;

    #[inline]
    fn host(&mut self) -> &mut Host {
        &mut self.caller.data_mut().host
    }

    #[inline]
    fn with_memory<R>(&mut self, f: impl FnOnce(&mut Host, &mut LinearMemory<'_>) -> R) -> R {
        match self.caller.data().memory {
            Some(memory) => {
                // Re-borrowed on every call: the guest may have grown memory.
                let (bytes, state) = memory.data_and_store_mut(&mut *self.caller);
                f(&mut state.host, &mut LinearMemory(bytes))
            }
            None => f(&mut self.caller.data_mut().host, &mut LinearMemory(&mut [])),
        }
    }

    fn allocate(&mut self, size: u64) -> Result<u64, Fault> {
        let Some(alloc) = self.caller.data().alloc.clone() else {
            return Err(Fault("the module exports no allocator".to_string()));
        };
        let size = i32::try_from(size)
            .map_err(|_| Fault(format!("cannot allocate {size} bytes in wasm32")))?;
        let previous = std::mem::replace(&mut self.caller.data_mut().host.phase, Phase::Allocator);
        let result = alloc.call(&mut *self.caller, size);
        self.caller.data_mut().host.phase = previous;
        match result {
            Ok(ptr) => Ok(u64::from(ptr as u32)),
            Err(e) => Err(Fault(format!(
                "the guest allocator trapped: {}",
                trap_text(&e)
            ))),
        }
    }
}

/// Raw bits of a wasm argument, for traces.
trait RawArg {
    fn raw(self) -> u64;
}
impl RawArg for i32 {
    #[inline]
    fn raw(self) -> u64 {
        u64::from(self as u32)
    }
}
impl RawArg for i64 {
    #[inline]
    fn raw(self) -> u64 {
        self as u64
    }
}

macro_rules! wasm_ty {
    (u32) => {
        i32
    };
    (ptr) => {
        i32
    };
    (size) => {
        i32
    };
    (i32) => {
        i32
    };
    (i64) => {
        i64
    };
    (u64) => {
        i64
    };
    (bool) => {
        i32
    };
}

macro_rules! from_wasm {
    (u32, $v:expr) => {
        $v as u32
    };
    (ptr, $v:expr) => {
        u64::from($v as u32)
    };
    (size, $v:expr) => {
        u64::from($v as u32)
    };
    (i32, $v:expr) => {
        $v
    };
    (i64, $v:expr) => {
        $v
    };
    (u64, $v:expr) => {
        $v as u64
    };
    (bool, $v:expr) => {
        $v != 0
    };
}

macro_rules! link_proxy_hostcalls {
    ($( $name:ident ( $($arg:ident : $kind:ident),* ) in [$($abi:ident),*]; )*) => {
        fn link_proxy(linker: &mut Linker<WasmState>) -> wasmtime::Result<()> {
            $(
                linker.func_wrap(
                    "env",
                    stringify!($name),
                    |mut caller: Caller<'_, WasmState>, $($arg: wasm_ty!($kind)),*| -> wasmtime::Result<i32> {
                        let args: &[u64] = &[$(RawArg::raw($arg)),*];
                        let mut guest = WasmGuest { caller: &mut caller };
                        hostcalls::dispatch(&mut guest, Hostcall::$name as usize, args, |g| {
                            hostcalls::$name(g, $(from_wasm!($kind, $arg)),*).map(|s| s as u32)
                        })
                        .map(|status| status as i32)
                        .map_err(|fault| wasmtime::format_err!("{}", fault.0))
                    },
                )?;
            )*
            Ok(())
        }
    };
}
proxy_abi::for_each_hostcall!(link_proxy_hostcalls);

fn wasi_result(r: Result<u32, Fault>) -> wasmtime::Result<i32> {
    r.map(|e| e as i32)
        .map_err(|f| wasmtime::format_err!("{}", f.0))
}

fn wasi_call<F>(
    caller: &mut Caller<'_, WasmState>,
    name: &str,
    args: &[u64],
    f: F,
) -> wasmtime::Result<i32>
where
    F: FnOnce(&mut WasmGuest<'_, '_>) -> Result<u32, Fault>,
{
    let mut guest = WasmGuest { caller };
    wasi_result(hostcalls::dispatch(
        &mut guest,
        hostcalls::wasi_index(name),
        args,
        f,
    ))
}

fn u(v: i32) -> u64 {
    u64::from(v as u32)
}

/// The WASI functions [`link_wasi`] defines.
const WASI_IMPLEMENTED: [&str; 12] = [
    "fd_write",
    "fd_fdstat_get",
    "fd_prestat_get",
    "environ_sizes_get",
    "environ_get",
    "args_sizes_get",
    "args_get",
    "clock_time_get",
    "random_get",
    "poll_oneoff",
    "proc_exit",
    "sched_yield",
];

/// Defines the WASI subset under one module name.
fn link_wasi(linker: &mut Linker<WasmState>, m: &str) -> wasmtime::Result<()> {
    linker.func_wrap(
        m,
        "fd_write",
        |mut c: Caller<'_, WasmState>, fd: i32, iovs: i32, n: i32, out: i32| {
            wasi_call(&mut c, "fd_write", &[u(fd), u(iovs), u(n), u(out)], |g| {
                wasi::fd_write(g, fd as u32, u(iovs), u(n), u(out))
            })
        },
    )?;
    linker.func_wrap(
        m,
        "fd_fdstat_get",
        |mut c: Caller<'_, WasmState>, fd: i32, stat: i32| {
            wasi_call(&mut c, "fd_fdstat_get", &[u(fd), u(stat)], |g| {
                wasi::fd_fdstat_get(g, fd as u32, u(stat))
            })
        },
    )?;
    linker.func_wrap(
        m,
        "fd_prestat_get",
        |mut c: Caller<'_, WasmState>, fd: i32, p: i32| {
            wasi_call(&mut c, "fd_prestat_get", &[u(fd), u(p)], |g| {
                wasi::fd_prestat_get(g, fd as u32, u(p))
            })
        },
    )?;
    linker.func_wrap(
        m,
        "environ_sizes_get",
        |mut c: Caller<'_, WasmState>, count: i32, size: i32| {
            wasi_call(&mut c, "environ_sizes_get", &[u(count), u(size)], |g| {
                wasi::environ_sizes_get(g, u(count), u(size))
            })
        },
    )?;
    linker.func_wrap(
        m,
        "environ_get",
        |mut c: Caller<'_, WasmState>, env: i32, buf: i32| {
            wasi_call(&mut c, "environ_get", &[u(env), u(buf)], |g| {
                wasi::environ_get(g, u(env), u(buf))
            })
        },
    )?;
    linker.func_wrap(
        m,
        "args_sizes_get",
        |mut c: Caller<'_, WasmState>, count: i32, size: i32| {
            wasi_call(&mut c, "args_sizes_get", &[u(count), u(size)], |g| {
                wasi::args_sizes_get(g, u(count), u(size))
            })
        },
    )?;
    linker.func_wrap(
        m,
        "args_get",
        |mut c: Caller<'_, WasmState>, argv: i32, buf: i32| {
            wasi_call(&mut c, "args_get", &[u(argv), u(buf)], |g| {
                wasi::args_get(g, u(argv), u(buf))
            })
        },
    )?;
    linker.func_wrap(
        m,
        "clock_time_get",
        |mut c: Caller<'_, WasmState>, id: i32, precision: i64, out: i32| {
            wasi_call(
                &mut c,
                "clock_time_get",
                &[u(id), precision as u64, u(out)],
                |g| wasi::clock_time_get(g, id as u32, precision as u64, u(out)),
            )
        },
    )?;
    linker.func_wrap(
        m,
        "random_get",
        |mut c: Caller<'_, WasmState>, buf: i32, len: i32| {
            wasi_call(&mut c, "random_get", &[u(buf), u(len)], |g| {
                wasi::random_get(g, u(buf), u(len))
            })
        },
    )?;
    linker.func_wrap(
        m,
        "poll_oneoff",
        |mut c: Caller<'_, WasmState>, input: i32, output: i32, nsubs: i32, nevents: i32| {
            wasi_call(
                &mut c,
                "poll_oneoff",
                &[u(input), u(output), u(nsubs), u(nevents)],
                |g| wasi::poll_oneoff(g, u(input), u(output), u(nsubs), u(nevents)),
            )
        },
    )?;
    linker.func_wrap(
        m,
        "proc_exit",
        |mut c: Caller<'_, WasmState>, code: i32| -> wasmtime::Result<()> {
            wasi_call(&mut c, "proc_exit", &[u(code)], |g| {
                wasi::proc_exit(g, code as u32)
            })
            .map(|_| ())
        },
    )?;
    linker.func_wrap(m, "sched_yield", |mut c: Caller<'_, WasmState>| {
        wasi_call(&mut c, "sched_yield", &[], |g| wasi::sched_yield(g))
    })?;
    Ok(())
}

/// Links the Proxy-Wasm functions and the WASI subset; any other WASI
/// function the module imports answers ENOSYS (or traps if it returns nothing).
fn build_linker(engine: &Engine, module: &Module) -> wasmtime::Result<Linker<WasmState>> {
    let mut linker = Linker::new(engine);
    link_proxy(&mut linker)?;
    for m in WASI_MODULES {
        link_wasi(&mut linker, m)?;
    }
    for import in module.imports() {
        if !WASI_MODULES.contains(&import.module()) || WASI_IMPLEMENTED.contains(&import.name()) {
            continue;
        }
        let ExternType::Func(ty) = import.ty() else {
            continue;
        };
        let name = import.name().to_string();
        let returns_errno =
            ty.results().len() == 1 && matches!(ty.results().next(), Some(ValType::I32));
        linker.func_new(
            import.module(),
            import.name(),
            ty.clone(),
            move |mut caller, _args, results| {
                let mut guest = WasmGuest {
                    caller: &mut caller,
                };
                let r = hostcalls::dispatch(
                    &mut guest,
                    hostcalls::wasi_index("wasi:other"),
                    &[],
                    |_| {
                        if returns_errno {
                            Ok(wasi::errno::NOSYS)
                        } else {
                            Err(Fault(format!(
                                "WASI function {name} is not available in Envoy's WASI subset"
                            )))
                        }
                    },
                );
                let errno = r.map_err(|f| wasmtime::format_err!("{}", f.0))?;
                if let Some(slot) = results.first_mut() {
                    *slot = Val::I32(errno as i32);
                }
                Ok(())
            },
        )?;
    }
    Ok(linker)
}

/// A headers callback: (context, headers, end_of_stream) since ABI 0.2.0,
/// (context, headers) in 0.1.0.
enum HeadersExport {
    WithEndOfStream(TypedFunc<(i32, i32, i32), i32>),
    V0_1_0(TypedFunc<(i32, i32), i32>),
}

impl HeadersExport {
    fn call(
        &self,
        store: &mut Store<WasmState>,
        context_id: u32,
        headers: u64,
        end_of_stream: bool,
    ) -> wasmtime::Result<i32> {
        match self {
            HeadersExport::WithEndOfStream(f) => f.call(
                store,
                (i(context_id), sz(headers), i32::from(end_of_stream)),
            ),
            HeadersExport::V0_1_0(f) => f.call(store, (i(context_id), sz(headers))),
        }
    }
}

fn headers_export(
    typed: &mut TypedExports<'_>,
    abi: AbiVersion,
    export: &str,
) -> Result<Option<HeadersExport>, HarnessError> {
    Ok(match abi {
        AbiVersion::V0_1_0 => typed.get(export)?.map(HeadersExport::V0_1_0),
        AbiVersion::V0_2_0 | AbiVersion::V0_2_1 => {
            typed.get(export)?.map(HeadersExport::WithEndOfStream)
        }
    })
}

/// Five i32 parameters (`proxy_on_http_call_response`).
type Params5 = (i32, i32, i32, i32, i32);

/// Typed exports, looked up once per instance.
struct Exports {
    initialize: Option<TypedFunc<(), ()>>,
    main: Option<TypedFunc<(i32, i32), i32>>,
    main_void: Option<TypedFunc<(), i32>>,
    start: Option<TypedFunc<(), ()>>,
    context_create: Option<TypedFunc<(i32, i32), ()>>,
    vm_start: Option<TypedFunc<(i32, i32), i32>>,
    configure: Option<TypedFunc<(i32, i32), i32>>,
    tick: Option<TypedFunc<i32, ()>>,
    queue_ready: Option<TypedFunc<(i32, i32), ()>>,
    request_headers: Option<HeadersExport>,
    request_body: Option<TypedFunc<(i32, i32, i32), i32>>,
    request_trailers: Option<TypedFunc<(i32, i32), i32>>,
    response_headers: Option<HeadersExport>,
    response_body: Option<TypedFunc<(i32, i32, i32), i32>>,
    response_trailers: Option<TypedFunc<(i32, i32), i32>>,
    log: Option<TypedFunc<i32, ()>>,
    done: Option<TypedFunc<i32, i32>>,
    delete: Option<TypedFunc<i32, ()>>,
    http_call_response: Option<TypedFunc<Params5, ()>>,
    grpc_initial_metadata: Option<TypedFunc<(i32, i32, i32), ()>>,
    grpc_receive: Option<TypedFunc<(i32, i32, i32), ()>>,
    grpc_trailing_metadata: Option<TypedFunc<(i32, i32, i32), ()>>,
    grpc_close: Option<TypedFunc<(i32, i32, i32), ()>>,
}

/// One wasm VM: a store owning the [`Host`], an instance, cached exports.
pub struct WasmVm {
    store: Store<WasmState>,
    exports: Exports,
    start: StartExports,
}

/// Text of a wasmtime error: the cause first (the trap kind, or the host
/// fault's message), then the wasm backtrace when there is one.
fn trap_text(e: &wasmtime::Error) -> String {
    let cause = match e.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => format!("wasm trap: {trap}"),
        None => e.root_cause().to_string(),
    };
    match e.downcast_ref::<wasmtime::WasmBacktrace>() {
        Some(backtrace) => format!("{cause}\n{backtrace}"),
        None => cause,
    }
}

fn i(v: u32) -> i32 {
    v as i32
}

fn sz(v: u64) -> i32 {
    v as u32 as i32
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
        let result: Option<wasmtime::Result<u64>> = match cb {
            Callback::Initialize => unit(call_opt(&e.initialize, s, ())),
            Callback::Main => match &e.main {
                Some(_) => word(call_opt(&e.main, s, (0, 0))),
                None => word(call_opt(&e.main_void, s, ())),
            },
            Callback::Start => unit(call_opt(&e.start, s, ())),
            Callback::ContextCreate {
                context_id,
                parent_id,
            } => unit(call_opt(
                &e.context_create,
                s,
                (i(context_id), i(parent_id)),
            )),
            Callback::VmStart { context_id, size } => {
                word(call_opt(&e.vm_start, s, (i(context_id), sz(size))))
            }
            Callback::Configure { context_id, size } => {
                word(call_opt(&e.configure, s, (i(context_id), sz(size))))
            }
            Callback::Tick { context_id } => unit(call_opt(&e.tick, s, i(context_id))),
            Callback::QueueReady {
                context_id,
                queue_id,
            } => unit(call_opt(&e.queue_ready, s, (i(context_id), i(queue_id)))),
            Callback::RequestHeaders {
                context_id,
                headers,
                end_of_stream,
            } => word(
                e.request_headers
                    .as_ref()
                    .map(|f| f.call(s, context_id, headers, end_of_stream)),
            ),
            Callback::RequestBody {
                context_id,
                size,
                end_of_stream,
            } => word(call_opt(
                &e.request_body,
                s,
                (i(context_id), sz(size), i32::from(end_of_stream)),
            )),
            Callback::RequestTrailers {
                context_id,
                trailers,
            } => word(call_opt(
                &e.request_trailers,
                s,
                (i(context_id), sz(trailers)),
            )),
            Callback::ResponseHeaders {
                context_id,
                headers,
                end_of_stream,
            } => word(
                e.response_headers
                    .as_ref()
                    .map(|f| f.call(s, context_id, headers, end_of_stream)),
            ),
            Callback::ResponseBody {
                context_id,
                size,
                end_of_stream,
            } => word(call_opt(
                &e.response_body,
                s,
                (i(context_id), sz(size), i32::from(end_of_stream)),
            )),
            Callback::ResponseTrailers {
                context_id,
                trailers,
            } => word(call_opt(
                &e.response_trailers,
                s,
                (i(context_id), sz(trailers)),
            )),
            Callback::Log { context_id } => unit(call_opt(&e.log, s, i(context_id))),
            Callback::Done { context_id } => word(call_opt(&e.done, s, i(context_id))),
            Callback::Delete { context_id } => unit(call_opt(&e.delete, s, i(context_id))),
            Callback::HttpCallResponse {
                context_id,
                token,
                headers,
                body_size,
                trailers,
            } => unit(call_opt(
                &e.http_call_response,
                s,
                (
                    i(context_id),
                    i(token),
                    sz(headers),
                    sz(body_size),
                    sz(trailers),
                ),
            )),
            Callback::GrpcReceiveInitialMetadata {
                context_id,
                token,
                headers,
            } => unit(call_opt(
                &e.grpc_initial_metadata,
                s,
                (i(context_id), i(token), sz(headers)),
            )),
            Callback::GrpcReceive {
                context_id,
                token,
                size,
            } => unit(call_opt(
                &e.grpc_receive,
                s,
                (i(context_id), i(token), sz(size)),
            )),
            Callback::GrpcReceiveTrailingMetadata {
                context_id,
                token,
                trailers,
            } => unit(call_opt(
                &e.grpc_trailing_metadata,
                s,
                (i(context_id), i(token), sz(trailers)),
            )),
            Callback::GrpcClose {
                context_id,
                token,
                status,
            } => unit(call_opt(
                &e.grpc_close,
                s,
                (i(context_id), i(token), i(status)),
            )),
        };
        match result {
            None => Ok(cb.default_result()),
            Some(Ok(v)) => Ok(v),
            Some(Err(err)) => Err(self.explain_trap(cb, &err, deadline_ms)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_modules_and_shared_state_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<CompiledModule>();
        send_sync::<WasmEngine>();
        send_sync::<crate::host::SharedHost>();
        fn send<T: Send>() {}
        send::<WasmVm>();
    }

    #[test]
    fn load_errors_name_the_problem() {
        let err = |bytes: &[u8]| {
            CompiledModule::from_bytes("m", bytes)
                .err()
                .map(|e| e.to_string())
        };
        assert!(
            err(b"ELF")
                .unwrap_or_default()
                .contains("not a WebAssembly module")
        );
        assert!(
            err(b"(module)")
                .unwrap_or_default()
                .contains("proxy_abi_version")
        );
        let no_alloc = r#"(module (memory (export "memory") 1)
            (func (export "proxy_abi_version_0_2_1")) (func (export "proxy_on_context_create") (param i32 i32)))"#;
        assert!(
            err(no_alloc.as_bytes())
                .unwrap_or_default()
                .contains("malloc or proxy_on_memory_allocate")
        );
        let foreign_import = r#"(module (import "env" "not_a_hostcall" (func))
            (memory (export "memory") 1) (func (export "malloc") (param i32) (result i32) i32.const 0)
            (func (export "proxy_abi_version_0_2_1")) (func (export "proxy_on_context_create") (param i32 i32)))"#;
        assert!(
            err(foreign_import.as_bytes())
                .unwrap_or_default()
                .contains("env::not_a_hostcall")
        );
        let old_abi = r#"(module (memory (export "memory") 1)
            (func (export "malloc") (param i32) (result i32) i32.const 0)
            (func (export "proxy_abi_version_0_1_0")) (func (export "proxy_on_context_create") (param i32 i32))
            (func (export "proxy_on_request_headers") (param i32 i32) (result i32) i32.const 0))"#;
        let loaded = CompiledModule::from_bytes("m", old_abi.as_bytes()).map(|m| m.abi_version());
        assert_eq!(loaded.ok(), Some(AbiVersion::V0_1_0));
    }
}
