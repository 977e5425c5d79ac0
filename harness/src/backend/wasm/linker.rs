//! The linker: guest memory and the allocator as the hostcalls see them
//! ([`WasmGuest`]), and the registrations of every host function and the
//! WASI subset, generated from the `proxy-abi` tables.

use super::*;

/// Store data: the host plus what hostcalls need to reach the guest.
pub struct WasmState {
    pub(super) host: Host,
    pub(super) memory: Option<Memory>,
    pub(super) alloc: Option<TypedFunc<i32, i32>>,
    pub(super) memory_cap: crate::limits::MemoryCap,
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
                            hostcalls::answer(hostcalls::$name(g, $(from_wasm!($kind, $arg)),*))
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

/// The wasm result type of a WASI result kind.
macro_rules! wasi_result_ty {
    (errno) => {
        i32
    };
    (never) => {
        ()
    };
}

/// Turns a WASI function's outcome into its wasm result (a fault traps).
macro_rules! wasi_result {
    (errno, $r:expr) => {
        $r.map(|errno| errno as i32)
            .map_err(|fault| wasmtime::format_err!("{}", fault.0))
    };
    (never, $r:expr) => {
        $r.map(|_| ())
            .map_err(|fault| wasmtime::format_err!("{}", fault.0))
    };
}

macro_rules! link_wasi_functions {
    ($( $name:ident ( $($arg:ident : $kind:ident),* ) -> $result:ident; )*) => {
        /// Defines the WASI subset of the table under one module name.
        fn link_wasi(linker: &mut Linker<WasmState>, module: &str) -> wasmtime::Result<()> {
            $(
                linker.func_wrap(
                    module,
                    stringify!($name),
                    |mut caller: Caller<'_, WasmState>, $($arg: wasm_ty!($kind)),*| -> wasmtime::Result<wasi_result_ty!($result)> {
                        let args: &[u64] = &[$(RawArg::raw($arg)),*];
                        let mut guest = WasmGuest { caller: &mut caller };
                        let index = hostcalls::wasi_counter(hostcalls::WasiCall::$name);
                        wasi_result!($result, hostcalls::dispatch(&mut guest, index, args, |g| {
                            wasi::$name(g, $(from_wasm!($kind, $arg)),*)
                        }))
                    },
                )?;
            )*
            Ok(())
        }
    };
}
proxy_abi::for_each_wasi_function!(link_wasi_functions);

/// Emscripten's runtime imports, as proxy-wasm-cpp-host defines them
/// (`src/exports.cc`): `emscripten_notify_memory_growth` does nothing and is
/// allowed during start-up (it is on `WasmBase::startVm`'s list of
/// restricted callbacks); `pthread_equal` compares its two thread ids and,
/// like every function off that list, traps when called during start-up
/// (the V8 runtime's `restricted_callback` trap).
fn link_emscripten(linker: &mut Linker<WasmState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "emscripten_notify_memory_growth",
        |_memory_index: i32| {},
    )?;
    linker.func_wrap(
        "env",
        "pthread_equal",
        |caller: Caller<'_, WasmState>, left: i32, right: i32| -> wasmtime::Result<i32> {
            if caller.data().host.phase == Phase::Startup {
                return Err(wasmtime::format_err!(
                    "pthread_equal called during VM start-up (_initialize/main); \
                     Envoy allows only proxy_log, WASI and emscripten_notify_memory_growth there"
                ));
            }
            Ok(i32::from(left == right))
        },
    )?;
    Ok(())
}

/// Links the Proxy-Wasm functions and the WASI subset; any other WASI
/// function the module imports answers ENOSYS (or traps if it returns nothing).
pub(super) fn build_linker(
    engine: &Engine,
    module: &Module,
) -> wasmtime::Result<Linker<WasmState>> {
    let mut linker = Linker::new(engine);
    link_proxy(&mut linker)?;
    link_emscripten(&mut linker)?;
    for m in WASI_MODULES {
        link_wasi(&mut linker, m)?;
    }
    for import in module.imports() {
        if !WASI_MODULES.contains(&import.module())
            || proxy_abi::WASI_FUNCTIONS
                .iter()
                .any(|f| f.name == import.name())
        {
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
                    |g| {
                        if g.host().phase == Phase::Startup
                            && proxy_abi::WASI_REFUSED_AT_STARTUP.contains(&name.as_str())
                        {
                            return Err(Fault(format!(
                                "{name} called during VM start-up (_initialize/main); Envoy \
                                 refuses it there (restricted_callback)"
                            )));
                        }
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
