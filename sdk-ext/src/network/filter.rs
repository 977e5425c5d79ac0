//! The network-filter trait: what a TCP filter implements instead of the raw
//! SDK's root and stream context traits. [`crate::network_filter!`] wires it
//! to the host.

use super::connection::Connection;
use super::runtime::NetworkRoot;
use crate::config::ConfigError;
use crate::types::{Action, PeerType};
use std::time::Duration;

/// A network (TCP) filter, run by Envoy's `envoy.filters.network.wasm`. One
/// value is created per downstream connection; the validated configuration
/// is shared by every connection of a worker (read it with
/// [`Connection::config`]).
///
/// The callbacks in Envoy's order: [`NetworkFilter::create`] and
/// [`NetworkFilter::on_new_connection`] when the client connects; then
/// [`NetworkFilter::on_downstream_data`] for bytes from the client and
/// [`NetworkFilter::on_upstream_data`] for bytes from the upstream, as they
/// arrive; [`NetworkFilter::on_upstream_close`] once the upstream is done
/// (Envoy reports it with [`PeerType::Unknown`] after the upstream's last
/// data); [`NetworkFilter::on_downstream_close`] when the connection closes;
/// last [`NetworkFilter::on_log`].
///
/// **Choosing the upstream cluster.** tcp_proxy picks its cluster (and
/// connects) when filter iteration first reaches it. A filter that returns
/// `Continue` from on_new_connection lets iteration through before any byte
/// has arrived, so a cluster chosen later from the data is ignored. To route
/// by the first bytes, return [`Action::Pause`] from on_new_connection, then
/// in on_downstream_data call [`Connection::set_tcp_proxy_cluster`] and
/// return `Continue` (or return `Pause` until enough bytes are in: Envoy then
/// delivers the whole buffer again with the next chunk).
pub trait NetworkFilter: Sized + 'static {
    /// Used in log lines and configuration errors.
    const NAME: &'static str;

    /// The validated, ready-to-use configuration.
    type Config: 'static;

    /// Parses and validates the plugin configuration bytes. Runs in the root
    /// context, so it may also define metrics. Usually
    /// `sdk_ext::config::from_json(raw)`.
    fn configure(raw: &[u8]) -> Result<Self::Config, ConfigError>;

    /// Creates the per-connection state when the client connects.
    fn create(connection: &Connection<Self>) -> Self;

    /// The client connected. The connection properties (source, destination,
    /// requested server name, mTLS) are readable; no data has arrived.
    /// `Pause` keeps the filters after this one (tcp_proxy) from seeing the
    /// connection until on_downstream_data returns `Continue` or
    /// [`Connection::continue_downstream`] is called.
    fn on_new_connection(&mut self, _connection: &mut Connection<Self>) -> Action {
        Action::Continue
    }

    /// Bytes from the client: `size` is the whole buffer, which
    /// [`Connection::data`] reads and the edit helpers change during this
    /// callback only. `Pause` holds the bytes (and delivers them again, with
    /// what arrives next, in the next call); `end_of_stream` is the client's
    /// half-close.
    fn on_downstream_data(
        &mut self,
        _connection: &mut Connection<Self>,
        _size: usize,
        _end_of_stream: bool,
    ) -> Action {
        Action::Continue
    }

    /// Bytes from the upstream server, readable and editable during this
    /// callback only. Envoy has no way to resume this direction
    /// (continue_stream(UPSTREAM) is UNIMPLEMENTED): after `Pause` the held
    /// bytes go on only when a later upstream chunk is let through.
    fn on_upstream_data(
        &mut self,
        _connection: &mut Connection<Self>,
        _size: usize,
        _end_of_stream: bool,
    ) -> Action {
        Action::Continue
    }

    /// The client connection closed: [`PeerType::Local`] when Envoy (or a
    /// filter) closed it, [`PeerType::Remote`] when the client did.
    fn on_downstream_close(&mut self, _connection: &mut Connection<Self>, _peer: PeerType) {}

    /// The upstream side is done ([`PeerType::Unknown`] in Envoy, which does
    /// not tell who closed it).
    fn on_upstream_close(&mut self, _connection: &mut Connection<Self>, _peer: PeerType) {}

    /// The connection is over (Envoy calls on_done, then this, then deletes
    /// the context); the data buffers are gone, properties remain.
    fn on_log(&mut self, _connection: &mut Connection<Self>) {}

    /// How often [`NetworkFilter::on_tick`] runs on each worker, if at all.
    fn tick_period(_config: &Self::Config) -> Option<Duration> {
        None
    }

    /// Periodic work on each worker's root context.
    fn on_tick(_root: &NetworkRoot<Self>) {}
}
