//! TCP (network) filters: write one as a [`NetworkFilter`] and let
//! [`crate::network_filter!`] generate the root/stream context plumbing.
//! Envoy runs such a module as `envoy.filters.network.wasm` (Istio:
//! WasmPlugin `type: NETWORK`), before `envoy.filters.network.tcp_proxy`.
//!
//! ```text
//! use sdk_ext::network::{Connection, NetworkFilter, Side};
//! use sdk_ext::{Action, ConfigError};
//!
//! struct RouteRedis;
//!
//! impl NetworkFilter for RouteRedis {
//!     const NAME: &'static str = "route-redis";
//!     type Config = ();
//!     fn configure(_: &[u8]) -> Result<(), ConfigError> { Ok(()) }
//!     fn create(_: &Connection<Self>) -> Self { RouteRedis }
//!     // Hold the connection back from tcp_proxy until the cluster is chosen.
//!     fn on_new_connection(&mut self, _: &mut Connection<Self>) -> Action { Action::Pause }
//!     fn on_downstream_data(&mut self, c: &mut Connection<Self>, _size: usize, _eos: bool) -> Action {
//!         let cluster = if c.data(Side::Downstream).starts_with(b"*") { "redis" } else { "default" };
//!         if let Err(error) = c.set_tcp_proxy_cluster(cluster) {
//!             log::warn!("{}: {error}", c.log_prefix());
//!         }
//!         Action::Continue
//!     }
//! }
//!
//! sdk_ext::network_filter!(RouteRedis);
//! ```
//!
//! The host calls go through [`ConnectionHost`] ([`EnvoyHost`] on the
//! host); see [`Connection`] for which data buffer is in reach in which
//! callback.

pub mod address;
mod connection;
mod filter;
pub mod filter_state;
mod host;
#[doc(hidden)]
pub mod runtime;

#[cfg(test)]
mod tests;

pub use connection::{Connection, RouteError};
pub use filter::NetworkFilter;
pub use filter_state::{LifeSpan, TCP_PROXY_CLUSTER};
pub use host::{ConnectionHost, EnvoyHost, Side};
pub use runtime::NetworkRoot;
