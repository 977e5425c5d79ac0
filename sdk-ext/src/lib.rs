//! sdk-ext: write a Proxy-Wasm HTTP filter as a [`Plugin`] and let
//! [`plugin!`] generate the root/http context plumbing of the raw SDK.
//!
//! ```text
//! use sdk_ext::{Action, Http, Plugin, config::{self, ConfigError}};
//!
//! struct AddHeader;
//!
//! impl Plugin for AddHeader {
//!     const NAME: &'static str = "add-header";
//!     type Config = MyConfig; // serde::Deserialize + config::Validate
//!     fn configure(raw: &[u8]) -> Result<MyConfig, ConfigError> { config::from_json(raw) }
//!     fn create(_: &Http<Self>) -> Self { AddHeader }
//!     fn on_response_headers(&mut self, http: &mut Http<Self>, _eos: bool) -> Action {
//!         http.response_headers().add("x-hello", "world");
//!         Action::Continue
//!     }
//! }
//!
//! sdk_ext::plugin!(AddHeader);
//! ```
//!
//! TCP filters implement [`network::NetworkFilter`] and use
//! [`network_filter!`] instead; see [`network`].
//!
//! Filter logic stays plain Rust (testable with `cargo test` on the host); the
//! hooks only move data between the host and that logic.

pub mod callout;
pub mod clock;
pub mod config;
pub mod credentials;
mod ffi;
pub mod headers;
mod http;
pub mod metrics;
pub mod network;
mod plugin;
pub mod property;
pub mod query;
pub mod random;
mod reach;
mod response;
pub mod rules;
#[doc(hidden)]
pub mod runtime;
pub mod shared;

pub use callout::{CallOutcome, CallResponse, HttpCall};
pub use config::{ConfigError, Validate};
pub use ffi::HostStatus;
pub use headers::Headers;
pub use http::Http;
pub use plugin::Plugin;
pub use response::LocalResponse;
pub use runtime::Root;

/// The raw SDK, for what sdk-ext does not wrap.
pub use proxy_wasm;
/// Proxy-Wasm enums and aliases (`Action`, `MapType`, `Bytes`, ...).
pub use proxy_wasm::types;
pub use proxy_wasm::types::Action;

/// Makes `$plugin` (a [`Plugin`]) the module's filter: emits the module's
/// `_initialize` entry point, which registers a root context that parses and
/// validates the configuration in `on_configure` (a bad one is rejected with
/// one log line naming the field) and creates one http context per stream
/// sharing that configuration.
#[macro_export]
macro_rules! plugin {
    ($plugin:ty) => {
        $crate::proxy_wasm::main! {{
            $crate::runtime::install::<$plugin>();
        }}
    };
}

/// Makes `$filter` (a [`network::NetworkFilter`]) the module's TCP filter:
/// emits `_initialize`, which registers a root context that parses and
/// validates the configuration in `on_configure` and creates one stream
/// context per downstream connection sharing that configuration.
#[macro_export]
macro_rules! network_filter {
    ($filter:ty) => {
        $crate::proxy_wasm::main! {{
            $crate::network::runtime::install::<$filter>();
        }}
    };
}

/// The ABI's name for a status the host answered (`BAD_ARGUMENT`), for
/// log messages.
pub(crate) fn status_name(status: proxy_wasm::types::Status) -> &'static str {
    proxy_abi::Status::from_u32(status as u32).map_or("an unknown status", proxy_abi::Status::name)
}
