//! Backends: how guest memory is reached and guest exports are called.
//! Everything else (hostcall semantics, the lifecycle) is shared, and the
//! callback ABI (names, arguments, arities per ABI version, results) comes
//! from the table in [`proxy_abi::for_each_callback!`].

#[cfg(unix)]
mod elf;
#[cfg(unix)]
pub mod native;
pub(crate) mod passthrough;
#[cfg(test)]
pub(crate) mod scripted;
pub mod wasm;

use crate::abi::{AbiVersion, WASI_MODULES};
use crate::host::Host;

/// The most arguments any callback takes (`proxy_on_http_call_response`).
pub const MAX_CALLBACK_ARGS: usize = 5;

/// A callback's arguments as raw words (u32 ids, sizes, 0/1 flags), without
/// allocating: what both backends convert to their own types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArgWords {
    words: [u64; MAX_CALLBACK_ARGS],
    len: usize,
}

impl ArgWords {
    fn new(args: &[u64]) -> ArgWords {
        let mut words = [0; MAX_CALLBACK_ARGS];
        let len = args.len().min(MAX_CALLBACK_ARGS);
        words[..len].copy_from_slice(&args[..len]);
        ArgWords { words, len }
    }

    /// The words in order.
    pub fn as_slice(&self) -> &[u64] {
        &self.words[..self.len]
    }

    /// Word `i`, 0 past the end.
    #[inline]
    pub fn get(&self, i: usize) -> u64 {
        self.words.get(i).copied().unwrap_or(0)
    }
}

/// The Rust type of a callback field for an argument kind of the table.
macro_rules! field_ty {
    (u32) => {
        u32
    };
    (size) => {
        u64
    };
    (bool) => {
        bool
    };
}

/// A callback field as a raw word.
macro_rules! field_word {
    (u32, $v:expr) => {
        u64::from($v)
    };
    (size, $v:expr) => {
        $v
    };
    (bool, $v:expr) => {
        u64::from($v)
    };
}

/// What a callback the module does not export returns (Envoy: true for
/// the bool callbacks, Continue for stream callbacks, nothing otherwise).
macro_rules! missing_result {
    (none) => {
        0
    };
    (bool) => {
        1
    };
    (action) => {
        0
    };
}

macro_rules! define_callbacks {
    ($( $variant:ident = $export:ident ( $($arg:ident : $kind:ident),* ) -> $result:ident,
        arity [$($abi:ident : $n:literal),*]; )*) => {
        /// A guest export the host calls, with its arguments: the WASI
        /// start-up entry points, then one variant per entry of the
        /// callback table.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Callback {
            /// WASI reactor initialisation (`_initialize`).
            Initialize,
            /// `main(0, 0)` / `__main_void` after `_initialize`.
            Main,
            /// WASI command entry point (`_start`), when there is no `_initialize`.
            Start,
            $(
                #[doc = concat!("`", stringify!($export), "(", $(stringify!($arg), ", ",)* ")`.")]
                #[allow(missing_docs)]
                $variant { $($arg: field_ty!($kind)),* },
            )*
        }

        /// Position of each table callback (for the backends' export arrays).
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(usize)]
        pub(crate) enum CallbackId { $($variant),* }

        impl Callback {
            /// The export's name.
            pub fn name(&self) -> &'static str {
                match self {
                    Callback::Initialize => "_initialize",
                    Callback::Main => "main",
                    Callback::Start => "_start",
                    $( Callback::$variant { .. } => stringify!($export), )*
                }
            }

            /// Its row in the callback table; `None` for the start-up entry points.
            pub(crate) fn id(&self) -> Option<CallbackId> {
                match self {
                    Callback::Initialize | Callback::Main | Callback::Start => None,
                    $( Callback::$variant { .. } => Some(CallbackId::$variant), )*
                }
            }

            /// The context the callback runs in (0 for start-up).
            pub fn context_id(&self) -> u32 {
                match *self {
                    Callback::Initialize | Callback::Main | Callback::Start => 0,
                    $( Callback::$variant { context_id, .. } => context_id, )*
                }
            }

            /// Every argument of the table entry, as raw words.
            pub fn words(&self) -> ArgWords {
                match *self {
                    Callback::Initialize | Callback::Start => ArgWords::new(&[]),
                    Callback::Main => ArgWords::new(&[0, 0]),
                    $( Callback::$variant { $($arg),* } => ArgWords::new(&[$(field_word!($kind, $arg)),*]), )*
                }
            }

            /// How many arguments a module of ABI `abi` takes (a prefix of [`Callback::words`]).
            pub fn arity(&self, abi: AbiVersion) -> usize {
                match self {
                    Callback::Initialize | Callback::Start => 0,
                    Callback::Main => 2,
                    $( Callback::$variant { .. } => match abi {
                        $( AbiVersion::$abi => $n, )*
                    }, )*
                }
            }

            /// What Envoy assumes when the module does not export this
            /// callback: true for vm_start/configure/done, Continue (0) for
            /// stream callbacks.
            pub fn default_result(&self) -> u64 {
                match self {
                    Callback::Initialize | Callback::Main | Callback::Start => 0,
                    $( Callback::$variant { .. } => missing_result!($result), )*
                }
            }
        }
    };
}
proxy_abi::for_each_callback!(define_callbacks);

impl Callback {
    /// Arguments as passed to a module of the newest ABI, for traces.
    pub fn args(&self) -> Vec<u64> {
        self.words().as_slice().to_vec()
    }

    /// Arguments as passed to a module of ABI `abi` (0.1.0 header
    /// callbacks have no end_of_stream), for traces.
    pub fn args_in(&self, abi: AbiVersion) -> Vec<u64> {
        let words = self.words();
        let args = words.as_slice();
        args[..self.arity(abi).min(args.len())].to_vec()
    }
}

/// The two Emscripten runtime imports proxy-wasm-cpp-host registers under
/// `env` for every ABI version (`WasmBase::registerCallbacks` in
/// `src/wasm.cc`, bodies in `src/exports.cc`).
pub(crate) const EMSCRIPTEN_IMPORTS: [&str; 2] =
    ["emscripten_notify_memory_growth", "pthread_equal"];

/// Envoy's import policy, for every engine: an `env` import must be a host
/// function the module's ABI version offers (or one of Emscripten's two),
/// anything else must be a WASI function proxy-wasm-cpp-host registers
/// (served, or a stub answering an error). Returns the first import
/// refused, as (module, field).
pub(crate) fn refused_import<'a>(
    abi: AbiVersion,
    imports: impl Iterator<Item = (&'a str, &'a str)>,
) -> Option<(&'a str, &'a str)> {
    refused_imports(abi, imports).next()
}

/// Every import [`refused_import`]'s policy refuses, in import order
/// (`harness check` reports them all).
pub(crate) fn refused_imports<'a>(
    abi: AbiVersion,
    imports: impl Iterator<Item = (&'a str, &'a str)>,
) -> impl Iterator<Item = (&'a str, &'a str)> {
    imports.filter(move |(module, field)| match *module {
        "env" => !abi.offers(field) && !EMSCRIPTEN_IMPORTS.contains(field),
        other => !WASI_MODULES.contains(&other) || !proxy_abi::HOST_WASI_FUNCTIONS.contains(field),
    })
}

/// The first export a Proxy-Wasm host requires that `has` says is missing
/// (`memory`, `proxy_on_context_create`, an allocator), named as the error
/// says it; `has` answers whether the module exports a name.
pub(crate) fn missing_required_export(has: impl Fn(&str) -> bool) -> Option<&'static str> {
    ["memory", "proxy_on_context_create"]
        .into_iter()
        .find(|required| !has(required))
        .or_else(|| {
            (!has("malloc") && !has("proxy_on_memory_allocate"))
                .then_some("malloc or proxy_on_memory_allocate")
        })
}

/// The start-up entry points a module exports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StartExports {
    /// `_initialize`.
    pub initialize: bool,
    /// `main` or `__main_void`.
    pub main: bool,
    /// `_start`.
    pub start: bool,
}

/// SHA-256 of a module's bytes. proxy-wasm-cpp-host keys VMs by a hash
/// of vm_id, VM configuration and code (`makeVmKey` in
/// `src/wasm.cc`): two loads of the same bytes share a VM.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CodeHash([u8; 32]);

impl CodeHash {
    /// Lower-case hex, for file names.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The hash of `bytes`.
    pub fn of(bytes: &[u8]) -> CodeHash {
        use sha2::Digest;
        CodeHash(sha2::Sha256::digest(bytes).into())
    }

    /// The hash of a file's contents, read in pieces.
    pub fn of_file(path: &std::path::Path) -> std::io::Result<CodeHash> {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        std::io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
        Ok(CodeHash(hasher.finalize().into()))
    }
}

/// A loaded filter instance: one VM. The lifecycle driver only talks to this.
pub trait Vm {
    /// The host state behind this VM's hostcalls.
    fn host(&mut self) -> &mut Host;
    /// Read-only host state.
    fn host_ref(&self) -> &Host;
    /// Which start-up entry points exist.
    fn start_exports(&self) -> StartExports;
    /// Calls a guest export; a missing optional export returns
    /// [`Callback::default_result`]. `Err` carries the trap text.
    fn call(&mut self, callback: Callback) -> Result<u64, String>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_gives_names_arguments_and_arities() {
        let cb = Callback::RequestHeaders {
            context_id: 2,
            headers: 3,
            end_of_stream: true,
        };
        assert_eq!(cb.name(), "proxy_on_request_headers");
        assert_eq!(cb.context_id(), 2);
        assert_eq!(cb.args(), vec![2, 3, 1]);
        assert_eq!(cb.args_in(AbiVersion::V0_1_0), vec![2, 3]);
        assert_eq!(cb.args_in(AbiVersion::V0_2_0), vec![2, 3, 1]);
        assert_eq!(cb.default_result(), 0);
        let call = Callback::HttpCallResponse {
            context_id: 1,
            token: 7,
            headers: 2,
            body_size: 10,
            trailers: 0,
        };
        assert_eq!(call.args(), vec![1, 7, 2, 10, 0]);
        assert_eq!(Callback::Main.args(), vec![0, 0]);
        assert!(Callback::Start.args().is_empty());
        assert_eq!(Callback::Done { context_id: 1 }.default_result(), 1);
        assert_eq!(
            Callback::VmStart {
                context_id: 1,
                size: 0
            }
            .default_result(),
            1
        );
        // The backends index proxy_abi::CALLBACKS by CallbackId.
        let log = Callback::Log { context_id: 1 };
        let close = Callback::GrpcClose {
            context_id: 1,
            token: 2,
            status: 0,
        };
        for cb in [cb, call, log, close] {
            let spec = cb.id().map(|id| proxy_abi::CALLBACKS[id as usize]);
            assert_eq!(spec.map(|s| s.export), Some(cb.name()));
            assert_eq!(spec.map(|s| s.args.len()), Some(cb.args().len()));
        }
        assert_eq!(Callback::Main.id(), None);
    }

    #[test]
    fn imports_follow_the_abi_version() {
        let imports = [("env", "proxy_log"), ("wasi_unstable", "fd_read")];
        assert_eq!(
            refused_import(AbiVersion::V0_2_0, imports.into_iter()),
            None
        );
        let log_level = [("env", "proxy_log"), ("env", "proxy_get_log_level")];
        assert_eq!(
            refused_import(AbiVersion::V0_2_0, log_level.into_iter()),
            Some(("env", "proxy_get_log_level"))
        );
        assert_eq!(
            refused_import(AbiVersion::V0_2_1, log_level.into_iter()),
            None
        );
        let foreign = [("other", "f")];
        assert_eq!(
            refused_import(AbiVersion::V0_2_1, foreign.into_iter()),
            Some(("other", "f"))
        );
    }
}
