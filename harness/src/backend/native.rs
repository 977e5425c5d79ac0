//! The native twin: the same filter crate built for the host as a `cdylib`,
//! driven through the same host code as the wasm module.
//!
//! The library's `proxy_*` imports are undefined symbols resolved at load
//! time against this executable, which exports every host function below as
//! a C symbol (the harness binary and its tests link with
//! `--export-dynamic`, see `build.rs`). Those symbols route to the [`Host`] of
//! the VM currently being called on this thread. Guest "memory" is the
//! process: pointers are 64-bit addresses and out-parameters are
//! `usize`-wide.
//!
//! There is no sandbox: a native filter that panics (unwinding out of an
//! `extern "C"` function aborts), crashes or writes through a bad pointer
//! takes the whole process down. That is part of the answer to "why Wasm".
//!
//! The SDK keeps its contexts in thread-local and static storage of the
//! library, so each VM loads its own private copy of the library file and
//! must be driven from the thread that created it (a `NativeVm` is not `Send`).

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use libloading::Library;

use crate::backend::{Callback, StartExports, Vm};
use crate::error::HarnessError;
use crate::host::{Host, Phase};
use crate::hostcalls::{self, Fault, Guest, GuestMemory, Hostcall};

/// A native filter library on disk, checked once; each VM loads a private copy.
#[derive(Clone)]
pub struct NativeLibrary {
    inner: Arc<NativeInner>,
}

struct NativeInner {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl NativeLibrary {
    /// Reads a filter `cdylib` (`lib<name>.so`) built for the host.
    pub fn from_file(path: impl AsRef<Path>) -> Result<NativeLibrary, HarnessError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| HarnessError::ModuleNotFound {
            path: path.to_path_buf(),
            source,
        })?;
        if !bytes.starts_with(b"\x7fELF") {
            return Err(HarnessError::NativeLoad {
                path: path.to_path_buf(),
                detail: "not an ELF shared library (build the filter for the host: \
                         `cargo build -p <filter> --profile host-release`)"
                    .to_string(),
            });
        }
        // Keep the exported host functions linked into this executable.
        keep_exported_hostcalls();
        Ok(NativeLibrary {
            inner: Arc::new(NativeInner {
                path: path.to_path_buf(),
                bytes,
            }),
        })
    }

    /// Where the native twin of a wasm build lives by this workspace's
    /// conventions: `target/wasm32-wasip1/release/<name>.wasm` ->
    /// `target/host-release/lib<name>.so` (built with
    /// `cargo build -p <filter> --profile host-release`).
    pub fn twin_path_of(wasm: &Path) -> Option<PathBuf> {
        let stem = wasm.file_stem()?.to_str()?;
        let release = wasm.parent()?;
        let target = release.parent()?.parent()?;
        Some(target.join("host-release").join(format!("lib{stem}.so")))
    }

    /// The path given at load time.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Loads a private copy of the library and resolves its exports.
    pub fn instantiate(&self, host: Host) -> Result<NativeVm, HarnessError> {
        static COPIES: AtomicU64 = AtomicU64::new(0);
        let err = |detail: String| HarnessError::NativeLoad {
            path: self.inner.path.clone(),
            detail,
        };
        let copy = std::env::temp_dir().join(format!(
            "harness-native-{}-{}.so",
            std::process::id(),
            COPIES.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&copy, &self.inner.bytes).map_err(|e| {
            err(format!(
                "cannot write a private copy at {}: {e}",
                copy.display()
            ))
        })?;
        // SAFETY: loading runs the library's initialisers; a filter cdylib
        // built from this workspace has none beyond Rust's own. Loading is
        // the point of the native twin and the docs say it is unsandboxed.
        let loaded = unsafe { Library::new(&copy) };
        // The mapping stays valid after the file is removed.
        let _ = std::fs::remove_file(&copy);
        let lib = loaded.map_err(|e| {
            err(format!(
                "{e} (a `proxy_*` symbol the filter needs is missing from this executable if the error names one; \
                 the harness binary must be linked with --export-dynamic)"
            ))
        })?;
        let exports = NativeExports::resolve(&lib).map_err(err)?;
        Ok(NativeVm {
            state: Box::new(NativeState {
                host,
                alloc: exports.alloc,
            }),
            exports,
            _lib: lib,
        })
    }
}

type AllocFn = unsafe extern "C" fn(usize) -> *mut u8;

/// What the exported host functions reach through the thread-local pointer.
struct NativeState {
    host: Host,
    alloc: AllocFn,
}

thread_local! {
    static CURRENT: Cell<*mut NativeState> = const { Cell::new(std::ptr::null_mut()) };
}

/// Process memory: 64-bit addresses; there is nothing to bounds-check against.
pub struct ProcessMemory;

impl GuestMemory for ProcessMemory {
    const POINTER_SIZE: usize = std::mem::size_of::<usize>();

    fn slice(&self, addr: u64, len: u64) -> Option<&[u8]> {
        if len == 0 {
            return Some(&[]);
        }
        if addr == 0 {
            return None;
        }
        let len = usize::try_from(len).ok()?;
        // SAFETY: the native filter passed this (pointer, length) pair for
        // the duration of the host call; a native filter is trusted (no sandbox).
        Some(unsafe { std::slice::from_raw_parts(addr as usize as *const u8, len) })
    }

    fn slice_mut(&mut self, addr: u64, len: u64) -> Option<&mut [u8]> {
        if len == 0 {
            return Some(&mut []);
        }
        if addr == 0 {
            return None;
        }
        let len = usize::try_from(len).ok()?;
        // SAFETY: as above; out-parameters and freshly allocated buffers
        // belong to the filter and are writable for this call.
        Some(unsafe { std::slice::from_raw_parts_mut(addr as usize as *mut u8, len) })
    }
}

/// The [`Guest`] view of a native VM inside a hostcall.
pub struct NativeGuest<'a> {
    state: &'a mut NativeState,
}

impl Guest for NativeGuest<'_> {
    type Memory<'m>
        = ProcessMemory
    where
        Self: 'm;

    #[inline]
    fn host(&mut self) -> &mut Host {
        &mut self.state.host
    }

    #[inline]
    fn with_memory<R>(&mut self, f: impl FnOnce(&mut Host, &mut ProcessMemory) -> R) -> R {
        f(&mut self.state.host, &mut ProcessMemory)
    }

    fn allocate(&mut self, size: u64) -> Result<u64, Fault> {
        let size =
            usize::try_from(size).map_err(|_| Fault(format!("cannot allocate {size} bytes")))?;
        let previous = std::mem::replace(&mut self.state.host.phase, Phase::Allocator);
        // SAFETY: `proxy_on_memory_allocate` is the SDK's allocator export.
        let ptr = unsafe { (self.state.alloc)(size) };
        self.state.host.phase = previous;
        Ok(ptr as usize as u64)
    }
}

/// Runs a hostcall for the VM being called on this thread.
fn with_current(
    index: usize,
    args: &[u64],
    f: impl FnOnce(&mut NativeGuest<'_>) -> Result<u32, Fault>,
) -> u32 {
    let ptr = CURRENT.with(Cell::get);
    if ptr.is_null() {
        // Called outside any callback (e.g. from a thread the filter spawned).
        return crate::abi::Status::InternalFailure as u32;
    }
    // SAFETY: `NativeVm::call` set the pointer to its boxed state for the
    // duration of the guest call on this thread and does not touch the
    // state until the call returns.
    let state = unsafe { &mut *ptr };
    let mut guest = NativeGuest { state };
    match hostcalls::dispatch(&mut guest, index, args, f) {
        Ok(status) => status,
        Err(fault) => {
            // No trap to raise natively: remember it, fail the call; the
            // driver reports it as a trap when the callback returns.
            guest.state.host.pending_fault.get_or_insert(fault.0);
            crate::abi::Status::InternalFailure as u32
        }
    }
}

macro_rules! native_ty {
    (u32) => {
        u32
    };
    (ptr) => {
        usize
    };
    (size) => {
        usize
    };
    (i32) => {
        i32
    };
    (i64) => {
        i64
    };
    (u64) => {
        u64
    };
    (bool) => {
        bool
    };
}

macro_rules! from_native {
    (u32, $v:expr) => {
        $v
    };
    (ptr, $v:expr) => {
        $v as u64
    };
    (size, $v:expr) => {
        $v as u64
    };
    (i32, $v:expr) => {
        $v
    };
    (i64, $v:expr) => {
        $v
    };
    (u64, $v:expr) => {
        $v
    };
    (bool, $v:expr) => {
        $v
    };
}

macro_rules! trace_native {
    (u32, $v:expr) => {
        u64::from($v)
    };
    (ptr, $v:expr) => {
        $v as u64
    };
    (size, $v:expr) => {
        $v as u64
    };
    (i32, $v:expr) => {
        $v as u32 as u64
    };
    (i64, $v:expr) => {
        $v as u64
    };
    (u64, $v:expr) => {
        $v
    };
    (bool, $v:expr) => {
        u64::from($v)
    };
}

macro_rules! export_native_hostcalls {
    ($( $name:ident ( $($arg:ident : $kind:ident),* ) in [$($abi:ident),*]; )*) => {
        /// The Proxy-Wasm host functions as C symbols for native filters.
        pub mod exports {
            use super::*;
            $(
                #[doc = concat!("`", stringify!($name), "` for native filters.")]
                #[unsafe(no_mangle)]
                pub extern "C" fn $name($($arg: native_ty!($kind)),*) -> u32 {
                    let args: &[u64] = &[$(trace_native!($kind, $arg)),*];
                    with_current(Hostcall::$name as usize, args, |g| {
                        hostcalls::$name(g, $(from_native!($kind, $arg)),*).map(|s| s as u32)
                    })
                }
            )*
        }
        /// Takes the address of every exported host function, so the
        /// linker keeps them in any executable that can load a native filter.
        fn keep_exported_hostcalls() -> usize {
            std::hint::black_box([$(exports::$name as *const () as usize),*]).len()
        }
    };
}
proxy_abi::for_each_hostcall!(export_native_hostcalls);

type Ctx2 = unsafe extern "C" fn(u32, u32);
type Ctx1 = unsafe extern "C" fn(u32);
type SizeBool = unsafe extern "C" fn(u32, usize) -> bool;
type Headers3 = unsafe extern "C" fn(u32, usize, bool) -> u32;
type Trailers2 = unsafe extern "C" fn(u32, usize) -> u32;
type Token3 = unsafe extern "C" fn(u32, u32, usize);
type HttpResp = unsafe extern "C" fn(u32, u32, usize, usize, usize);

/// Exports resolved once per loaded copy.
struct NativeExports {
    alloc: AllocFn,
    initialize: Option<unsafe extern "C" fn()>,
    context_create: Ctx2,
    vm_start: Option<SizeBool>,
    configure: Option<SizeBool>,
    tick: Option<Ctx1>,
    queue_ready: Option<Ctx2>,
    request_headers: Option<Headers3>,
    request_body: Option<Headers3>,
    request_trailers: Option<Trailers2>,
    response_headers: Option<Headers3>,
    response_body: Option<Headers3>,
    response_trailers: Option<Trailers2>,
    log: Option<Ctx1>,
    done: Option<unsafe extern "C" fn(u32) -> bool>,
    delete: Option<Ctx1>,
    http_call_response: Option<HttpResp>,
    grpc_initial_metadata: Option<Token3>,
    grpc_receive: Option<Token3>,
    grpc_trailing_metadata: Option<Token3>,
    grpc_close: Option<unsafe extern "C" fn(u32, u32, u32)>,
}

fn sym<T: Copy>(lib: &Library, name: &str) -> Option<T> {
    // SAFETY: the type is the SDK's declared signature of this export.
    unsafe { lib.get::<T>(name).ok().map(|s| *s) }
}

impl NativeExports {
    fn resolve(lib: &Library) -> Result<NativeExports, String> {
        if sym::<unsafe extern "C" fn()>(lib, "proxy_abi_version_0_2_1").is_none()
            && sym::<unsafe extern "C" fn()>(lib, "proxy_abi_version_0_2_0").is_none()
        {
            return Err(
                "exports no proxy_abi_version_0_2_x function: not a Proxy-Wasm filter".to_string(),
            );
        }
        let required =
            |name: &str| format!("does not export `{name}`, which a Proxy-Wasm host requires");
        Ok(NativeExports {
            alloc: sym(lib, "proxy_on_memory_allocate")
                .ok_or_else(|| required("proxy_on_memory_allocate"))?,
            initialize: sym(lib, "_initialize"),
            context_create: sym(lib, "proxy_on_context_create")
                .ok_or_else(|| required("proxy_on_context_create"))?,
            vm_start: sym(lib, "proxy_on_vm_start"),
            configure: sym(lib, "proxy_on_configure"),
            tick: sym(lib, "proxy_on_tick"),
            queue_ready: sym(lib, "proxy_on_queue_ready"),
            request_headers: sym(lib, "proxy_on_request_headers"),
            request_body: sym(lib, "proxy_on_request_body"),
            request_trailers: sym(lib, "proxy_on_request_trailers"),
            response_headers: sym(lib, "proxy_on_response_headers"),
            response_body: sym(lib, "proxy_on_response_body"),
            response_trailers: sym(lib, "proxy_on_response_trailers"),
            log: sym(lib, "proxy_on_log"),
            done: sym(lib, "proxy_on_done"),
            delete: sym(lib, "proxy_on_delete"),
            http_call_response: sym(lib, "proxy_on_http_call_response"),
            grpc_initial_metadata: sym(lib, "proxy_on_grpc_receive_initial_metadata"),
            grpc_receive: sym(lib, "proxy_on_grpc_receive"),
            grpc_trailing_metadata: sym(lib, "proxy_on_grpc_receive_trailing_metadata"),
            grpc_close: sym(lib, "proxy_on_grpc_close"),
        })
    }
}

/// One native VM: a private copy of the library and its host state.
pub struct NativeVm {
    state: Box<NativeState>,
    exports: NativeExports,
    // Dropped last: the exports point into it.
    _lib: Library,
}

fn us(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

impl Vm for NativeVm {
    fn host(&mut self) -> &mut Host {
        &mut self.state.host
    }

    fn host_ref(&self) -> &Host {
        &self.state.host
    }

    fn start_exports(&self) -> StartExports {
        StartExports {
            initialize: self.exports.initialize.is_some(),
            main: false,
            start: false,
        }
    }

    fn call(&mut self, cb: Callback) -> Result<u64, String> {
        let e = &self.exports;
        let state: *mut NativeState = &mut *self.state;
        let previous = CURRENT.with(|c| c.replace(state));
        let b = |v: bool| u64::from(v);
        let w = u64::from;
        // SAFETY: each export is called with the signature the SDK declares;
        // the filter is trusted native code (see the module docs).
        let result: Option<u64> = unsafe {
            match cb {
                Callback::Initialize => e.initialize.map(|f| {
                    f();
                    0
                }),
                Callback::Main | Callback::Start => None,
                Callback::ContextCreate {
                    context_id,
                    parent_id,
                } => {
                    (e.context_create)(context_id, parent_id);
                    Some(0)
                }
                Callback::VmStart { context_id, size } => {
                    e.vm_start.map(|f| b(f(context_id, us(size))))
                }
                Callback::Configure { context_id, size } => {
                    e.configure.map(|f| b(f(context_id, us(size))))
                }
                Callback::Tick { context_id } => e.tick.map(|f| {
                    f(context_id);
                    0
                }),
                Callback::QueueReady {
                    context_id,
                    queue_id,
                } => e.queue_ready.map(|f| {
                    f(context_id, queue_id);
                    0
                }),
                Callback::RequestHeaders {
                    context_id,
                    headers,
                    end_of_stream,
                } => e
                    .request_headers
                    .map(|f| w(f(context_id, us(headers), end_of_stream))),
                Callback::RequestBody {
                    context_id,
                    size,
                    end_of_stream,
                } => e
                    .request_body
                    .map(|f| w(f(context_id, us(size), end_of_stream))),
                Callback::RequestTrailers {
                    context_id,
                    trailers,
                } => e.request_trailers.map(|f| w(f(context_id, us(trailers)))),
                Callback::ResponseHeaders {
                    context_id,
                    headers,
                    end_of_stream,
                } => e
                    .response_headers
                    .map(|f| w(f(context_id, us(headers), end_of_stream))),
                Callback::ResponseBody {
                    context_id,
                    size,
                    end_of_stream,
                } => e
                    .response_body
                    .map(|f| w(f(context_id, us(size), end_of_stream))),
                Callback::ResponseTrailers {
                    context_id,
                    trailers,
                } => e.response_trailers.map(|f| w(f(context_id, us(trailers)))),
                Callback::Log { context_id } => e.log.map(|f| {
                    f(context_id);
                    0
                }),
                Callback::Done { context_id } => e.done.map(|f| b(f(context_id))),
                Callback::Delete { context_id } => e.delete.map(|f| {
                    f(context_id);
                    0
                }),
                Callback::HttpCallResponse {
                    context_id,
                    token,
                    headers,
                    body_size,
                    trailers,
                } => e.http_call_response.map(|f| {
                    f(context_id, token, us(headers), us(body_size), us(trailers));
                    0
                }),
                Callback::GrpcReceiveInitialMetadata {
                    context_id,
                    token,
                    headers,
                } => e.grpc_initial_metadata.map(|f| {
                    f(context_id, token, us(headers));
                    0
                }),
                Callback::GrpcReceive {
                    context_id,
                    token,
                    size,
                } => e.grpc_receive.map(|f| {
                    f(context_id, token, us(size));
                    0
                }),
                Callback::GrpcReceiveTrailingMetadata {
                    context_id,
                    token,
                    trailers,
                } => e.grpc_trailing_metadata.map(|f| {
                    f(context_id, token, us(trailers));
                    0
                }),
                Callback::GrpcClose {
                    context_id,
                    token,
                    status,
                } => e.grpc_close.map(|f| {
                    f(context_id, token, status);
                    0
                }),
            }
        };
        CURRENT.with(|c| c.set(previous));
        Ok(result.unwrap_or_else(|| cb.default_result()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twin_path_follows_the_workspace_layout() {
        let wasm = Path::new("target/wasm32-wasip1/release/response_header.wasm");
        assert_eq!(
            NativeLibrary::twin_path_of(wasm),
            Some(PathBuf::from("target/host-release/libresponse_header.so"))
        );
    }

    #[test]
    fn a_file_that_is_not_elf_is_refused_with_the_build_command() {
        let path = std::env::temp_dir().join(format!("harness-not-elf-{}.so", std::process::id()));
        std::fs::write(&path, b"\0asm\x01\0\0\0").unwrap();
        let err = NativeLibrary::from_file(&path)
            .err()
            .expect("refused")
            .to_string();
        std::fs::remove_file(&path).unwrap();
        assert!(err.contains("host-release"), "{err}");
        assert!(NativeLibrary::from_file("/nonexistent/lib.so").is_err());
    }
}
