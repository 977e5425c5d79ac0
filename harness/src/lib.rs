//! harness: a simulated Envoy that runs Proxy-Wasm filters the way Envoy
//! runs them, for tests, scenario runs and benchmarks.
//!
//! ```no_run
//! use harness::{CompiledModule, Exchange, Harness, HarnessConfig, PluginConfig};
//! let module = CompiledModule::from_file("target/wasm32-wasip1/release/response_header.wasm")?;
//! let config = HarnessConfig {
//!     plugin: PluginConfig { configuration: r#"{"name":"x","value":"y"}"#.into(), ..Default::default() },
//!     ..Default::default()
//! };
//! let mut envoy = Harness::new(&module, config)?;
//! let outcome = envoy.exchange(&Exchange::default())?;
//! assert_eq!(outcome.response.unwrap().message.headers.get_text("x").as_deref(), Some("y"));
//! # Ok::<(), harness::HarnessError>(())
//! ```
//!
//! Layout: [`model`] (plain data in and out), [`abi`] (enums and the
//! header-map wire format), [`host`] (the simulated Envoy state, no
//! wasmtime), [`hostcalls`] (each `proxy_*` function once, over a
//! guest-memory trait), [`backend`] (wasmtime; later the native twin), and
//! [`Harness`] (start-up and the HTTP lifecycle, backend-agnostic).

pub mod abi;
pub mod backend;
pub mod bench;
mod chain;
mod driver;
pub mod envoy;
pub mod error;
pub mod host;
pub mod hostcalls;
pub mod limits;
mod manager;
pub mod model;
pub mod preflight;
pub mod printable;
pub mod scenario;
mod single;
pub mod symbols;

#[cfg(unix)]
pub use backend::native::NativeLibrary;
pub use backend::wasm::{CompiledModule, WasmEngine};
pub use chain::{EnvoyOutcome, HeldCallout};
pub use driver::{FilterModule, Harness};
pub use envoy::{Envoy, EnvoyBuilder};
pub use error::HarnessError;
pub use host::SharedHost;
pub use manager::{
    DEFAULT_ROUTE_TIMEOUT_MS, DEFAULT_STREAM_IDLE_TIMEOUT_MS, Forwarded, Leaving, QueuedBytes,
    StreamHandle, StreamInput,
};
pub use model::*;
