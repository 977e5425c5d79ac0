//! The counters every host function call is counted under (and named by
//! in traces): the Proxy-Wasm functions, then the WASI ones, generated
//! from proxy-abi's tables.

macro_rules! define_hostcall_ids {
    ($( $name:ident ( $($arg:ident : $kind:ident),* ) in [$($abi:ident),*]; )*) => {
        /// Index of each host function (for counts and traces).
        #[allow(non_camel_case_types, missing_docs)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Hostcall { $($name),* }
        /// Names of the Proxy-Wasm host functions, by [`Hostcall`] index.
        pub const PROXY_HOSTCALL_NAMES: &[&str] = &[$(stringify!($name)),*];
    };
}
proxy_abi::for_each_hostcall!(define_hostcall_ids);

macro_rules! define_wasi_names {
    ($( $name:ident ( $($arg:ident : $kind:ident),* ) -> $result:ident; )*) => {
        /// The WASI functions the harness implements, in table order.
        #[allow(non_camel_case_types, missing_docs)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum WasiCall { $($name),* }
        /// WASI functions the harness implements (wasm backend only), then
        /// `wasi:other`, the counter of every other WASI import (they answer
        /// ENOSYS). Their counters follow the Proxy-Wasm ones.
        pub const WASI_NAMES: &[&str] = &[$(stringify!($name),)* "wasi:other"];
    };
}
proxy_abi::for_each_wasi_function!(define_wasi_names);

/// Number of counters: Proxy-Wasm functions then WASI ones.
pub const HOSTCALL_COUNT: usize = PROXY_HOSTCALL_NAMES.len() + WASI_NAMES.len();

/// Counter index of an implemented WASI function.
pub fn wasi_counter(call: WasiCall) -> usize {
    PROXY_HOSTCALL_NAMES.len() + call as usize
}

/// Counter index of a WASI function name (`wasi:other` for unknown ones).
pub fn wasi_index(name: &str) -> usize {
    let i = WASI_NAMES
        .iter()
        .position(|n| *n == name)
        .unwrap_or(WASI_NAMES.len() - 1);
    PROXY_HOSTCALL_NAMES.len() + i
}

/// Name of a counter index.
pub fn hostcall_name(index: usize) -> &'static str {
    if index < PROXY_HOSTCALL_NAMES.len() {
        PROXY_HOSTCALL_NAMES[index]
    } else {
        WASI_NAMES
            .get(index - PROXY_HOSTCALL_NAMES.len())
            .copied()
            .unwrap_or("?")
    }
}
