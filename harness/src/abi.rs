//! The Proxy-Wasm ABI (versions, enums, status codes, the header-map wire
//! format and the hostcall/callback/WASI tables), from the dependency-free
//! `proxy-abi` crate that the filters' side shares. Re-exported here so
//! `harness::abi::*` stays the harness's path to it.

pub use proxy_abi::*;
