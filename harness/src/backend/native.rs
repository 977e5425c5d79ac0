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

use crate::abi::AbiVersion;
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
    /// SHA-256 of `bytes`: part of the VM key.
    code_hash: crate::backend::CodeHash,
    /// The `proxy_*` symbols the library leaves undefined: its host imports.
    proxy_imports: Vec<String>,
}

impl NativeLibrary {
    /// True when both hold the same code (equal bytes, loaded once or
    /// twice): one half of Envoy's VM key.
    pub fn same_module(&self, other: &NativeLibrary) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner) || self.inner.code_hash == other.inner.code_hash
    }

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
        let proxy_imports = crate::backend::elf::undefined_dynamic_symbols(&bytes)
            .map_err(|detail| HarnessError::NativeLoad {
                path: path.to_path_buf(),
                detail,
            })?
            .into_iter()
            .filter(|name| name.starts_with("proxy_"))
            .map(str::to_string)
            .collect();
        // Keep the exported host functions linked into this executable.
        keep_exported_hostcalls();
        Ok(NativeLibrary {
            inner: Arc::new(NativeInner {
                path: path.to_path_buf(),
                code_hash: crate::backend::CodeHash::of(&bytes),
                bytes,
                proxy_imports,
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
        let (exports, abi) = NativeExports::resolve(&lib).map_err(err)?;
        // The import policy a wasm module gets, applied to the host functions
        // the library links against.
        let imports = self.inner.proxy_imports.iter().map(|n| ("env", n.as_str()));
        if let Some((module, field)) = crate::backend::refused_import(abi, imports) {
            return Err(HarnessError::UnknownImport {
                name: self.inner.path.display().to_string(),
                module: module.to_string(),
                field: field.to_string(),
            });
        }
        let mut host = host;
        host.abi = abi;
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
                        hostcalls::answer(hostcalls::$name(g, $(from_native!($kind, $arg)),*))
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

/// The native type of a callback argument kind, as the SDK declares it.
macro_rules! native_arg_ty {
    (u32) => {
        u32
    };
    (size) => {
        usize
    };
    (bool) => {
        bool
    };
}

/// The native return type of a callback result kind.
macro_rules! native_result_ty {
    (none) => {
        ()
    };
    (bool) => {
        bool
    };
    (action) => {
        u32
    };
}

macro_rules! to_native {
    (u32, $v:expr) => {
        $v
    };
    (size, $v:expr) => {
        usize::try_from($v).unwrap_or(usize::MAX)
    };
    (bool, $v:expr) => {
        $v
    };
}

macro_rules! result_word {
    (none, $call:expr) => {{
        $call;
        0
    }};
    (bool, $call:expr) => {
        u64::from($call)
    };
    (action, $call:expr) => {
        u64::from($call)
    };
}

macro_rules! native_callbacks {
    ($( $variant:ident = $export:ident ( $($arg:ident : $kind:ident),* ) -> $result:ident,
        arity [$($abi:ident : $n:literal),*]; )*) => {
        /// The table's callback exports, typed as the SDK declares them,
        /// resolved once per loaded copy.
        #[allow(non_snake_case)]
        struct NativeCallbacks {
            $( $variant: Option<unsafe extern "C" fn($(native_arg_ty!($kind)),*) -> native_result_ty!($result)>, )*
        }

        impl NativeCallbacks {
            fn resolve(lib: &Library) -> NativeCallbacks {
                NativeCallbacks { $( $variant: sym(lib, stringify!($export)), )* }
            }

            fn exports_context_create(&self) -> bool {
                self.ContextCreate.is_some()
            }

            /// Calls a table callback; `None` when the library does not
            /// export it (and for the start-up entry points).
            ///
            /// # Safety
            /// The library must be a filter built against the SDK's
            /// declarations of these exports, and the thread's current VM
            /// must be set (see [`NativeVm::call`]).
            unsafe fn call(&self, cb: Callback) -> Option<u64> {
                match cb {
                    Callback::Initialize | Callback::Main | Callback::Start => None,
                    $( Callback::$variant { $($arg),* } => self.$variant.map(|f| {
                        // SAFETY: the signature is the SDK's (the caller's contract).
                        result_word!($result, unsafe { f($(to_native!($kind, $arg)),*) })
                    }), )*
                }
            }
        }
    };
}
proxy_abi::for_each_callback!(native_callbacks);

/// Exports resolved once per loaded copy.
struct NativeExports {
    alloc: AllocFn,
    initialize: Option<unsafe extern "C" fn()>,
    callbacks: NativeCallbacks,
}

fn sym<T: Copy>(lib: &Library, name: &str) -> Option<T> {
    // SAFETY: the type is the SDK's declared signature of this export.
    unsafe { lib.get::<T>(name).ok().map(|s| *s) }
}

impl NativeExports {
    /// The exports and the declared ABI version, checked like a wasm
    /// module's: a version marker, the allocator, `proxy_on_context_create`,
    /// and arities the native calls can honour.
    fn resolve(lib: &Library) -> Result<(NativeExports, AbiVersion), String> {
        let Some(abi) = AbiVersion::ALL
            .iter()
            .find(|(_, marker)| sym::<unsafe extern "C" fn()>(lib, marker).is_some())
            .map(|(version, _)| *version)
        else {
            return Err(
                "exports no proxy_abi_version_* function: not a Proxy-Wasm filter".to_string(),
            );
        };
        // Native calls pass every argument of the table entry; a version
        // that drops some (0.1.0 header callbacks) has no native twin.
        if let Some(spec) = proxy_abi::CALLBACKS
            .iter()
            .find(|spec| spec.arity_in(abi) != spec.args.len())
        {
            return Err(format!(
                "declares ABI {}, whose `{}` takes {} arguments; native twins support ABI 0.2.x only \
                 (build the filter with the current proxy-wasm SDK)",
                abi.as_str(),
                spec.export,
                spec.arity_in(abi)
            ));
        }
        let required =
            |name: &str| format!("does not export `{name}`, which a Proxy-Wasm host requires");
        let callbacks = NativeCallbacks::resolve(lib);
        if !callbacks.exports_context_create() {
            return Err(required("proxy_on_context_create"));
        }
        let exports = NativeExports {
            alloc: sym(lib, "proxy_on_memory_allocate")
                .ok_or_else(|| required("proxy_on_memory_allocate"))?,
            initialize: sym(lib, "_initialize"),
            callbacks,
        };
        Ok((exports, abi))
    }
}

/// One native VM: a private copy of the library and its host state.
pub struct NativeVm {
    state: Box<NativeState>,
    exports: NativeExports,
    // Dropped last: the exports point into it.
    _lib: Library,
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
        let result = match cb {
            Callback::Initialize => e.initialize.map(|f| {
                // SAFETY: `_initialize` takes and returns nothing.
                unsafe { f() };
                0
            }),
            // SAFETY: the library is a filter cdylib (trusted native code,
            // see the module docs) and CURRENT points at this VM's state.
            _ => unsafe { e.callbacks.call(cb) },
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
