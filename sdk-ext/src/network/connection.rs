//! The per-connection handle a network filter's callbacks receive.
//!
//! Which data is in reach where (Envoy's context.cc points its
//! DOWNSTREAM_DATA / UPSTREAM_DATA buffers at the connection's buffer only
//! while `onData` / `onWrite` call the filter, and answers NOT_FOUND
//! otherwise):
//!
//! | callback | downstream data | upstream data |
//! |---|---|---|
//! | on_new_connection | — | — |
//! | on_downstream_data | read, edit | — |
//! | on_upstream_data | — | read, edit |
//! | on_*_close, on_log, on_tick, callout answers | — | — |
//!
//! Out of reach, [`Connection::data`] gives nothing and the edits change
//! nothing (answering NOT_FOUND as Envoy would), each logging one warning
//! per side and connection: a filter that needs earlier bytes keeps them in
//! its own state, or returns `Pause` so Envoy delivers them again.

use super::filter::NetworkFilter;
use super::filter_state::{self, LifeSpan};
use super::host::{ConnectionHost, Side};
use super::runtime::NetworkShared;
use crate::ffi::HostStatus;
use crate::types::{Action, Bytes};
use std::cell::{Cell, OnceCell};
use std::net::IpAddr;
use std::rc::Rc;
use std::time::SystemTime;

/// NOT_FOUND: what Envoy answers for a data buffer outside its callback.
const NO_BUFFER: HostStatus = HostStatus(1);

/// How an edit maps onto `proxy_set_buffer_bytes(start, size)` under
/// Envoy's `Buffer::copyFrom`: start 0 drains `size` bytes and prepends,
/// start at or past the end appends, any other start is BAD_ARGUMENT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Edit {
    Replace,
    Prepend,
    Append,
}

impl Edit {
    /// `(start, size)` for a buffer now holding `length` bytes.
    fn range(self, length: usize) -> (usize, usize) {
        match self {
            Edit::Replace => (0, length),
            Edit::Prepend => (0, 0),
            Edit::Append => (length, 0),
        }
    }

    fn length_after(self, length: usize, written: usize) -> usize {
        match self {
            Edit::Replace => written,
            Edit::Prepend | Edit::Append => length.saturating_add(written),
        }
    }
}

/// The data callback running now: its side and the buffer's length.
#[derive(Debug, Clone, Copy)]
struct InData {
    side: Side,
    length: usize,
}

/// Why [`Connection::set_tcp_proxy_cluster`] did not take effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// Filter iteration already went past this filter, so tcp_proxy chose its
    /// cluster before this call (the filter state was still written).
    TooLate,
    /// The host refused the filter state (Envoy: NOT_FOUND when no factory
    /// knows the key, BAD_ARGUMENT for a value it rejects).
    Host(HostStatus),
}

impl std::fmt::Display for RouteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouteError::TooLate => write!(
                f,
                "tcp_proxy had already chosen its cluster: return Action::Pause from \
                 on_new_connection and choose the cluster before on_downstream_data returns Continue"
            ),
            RouteError::Host(status) => write!(f, "the host refused the filter state: {status}"),
        }
    }
}

/// One downstream connection as seen by network filter `F`.
pub struct Connection<F: NetworkFilter> {
    context_id: u32,
    shared: Rc<NetworkShared<F>>,
    host: Rc<dyn ConnectionHost>,
    in_data: Cell<Option<InData>>,
    /// Filter iteration has gone past this filter on the read side, so the
    /// filters after it (tcp_proxy) have seen the connection.
    released: Cell<bool>,
    warned: Cell<[bool; 2]>,
    log_prefix: OnceCell<String>,
}

impl<F: NetworkFilter> Connection<F> {
    pub(crate) fn new(
        context_id: u32,
        shared: Rc<NetworkShared<F>>,
        host: Rc<dyn ConnectionHost>,
    ) -> Self {
        Self {
            context_id,
            shared,
            host,
            in_data: Cell::new(None),
            released: Cell::new(false),
            warned: Cell::new([false; 2]),
            log_prefix: OnceCell::new(),
        }
    }

    /// The validated configuration of this worker's root context.
    pub fn config(&self) -> &F::Config {
        &self.shared.config
    }

    pub fn context_id(&self) -> u32 {
        self.context_id
    }

    /// Host time (virtual time in the harness).
    pub fn now(&self) -> SystemTime {
        crate::clock::now()
    }

    // ---- phases, driven by the adapter ----

    pub(crate) fn finished_new_connection(&self, action: Action) {
        if action == Action::Continue {
            self.released.set(true);
        }
    }

    pub(crate) fn enter_data(&self, side: Side, length: usize) {
        self.in_data.set(Some(InData { side, length }));
    }

    pub(crate) fn leave_data(&self, side: Side, action: Action) {
        self.in_data.set(None);
        if side == Side::Downstream && action == Action::Continue {
            self.released.set(true);
        }
        if side == Side::Upstream && action == Action::Pause {
            log::debug!(
                "{}: upstream data paused; Envoy cannot resume this direction \
                 (continue_stream(UPSTREAM) is UNIMPLEMENTED), the bytes go on \
                 with the next upstream chunk let through",
                self.log_prefix()
            );
        }
    }

    /// True once the filters after this one (tcp_proxy) have seen the
    /// connection: on_new_connection or on_downstream_data returned
    /// `Continue`, or [`Connection::continue_downstream`] was called.
    pub fn downstream_released(&self) -> bool {
        self.released.get()
    }

    // ---- data ----

    fn current(&self, side: Side) -> Option<InData> {
        self.in_data.get().filter(|now| now.side == side)
    }

    fn warn_out_of_reach(&self, side: Side) {
        let index = side as usize;
        let mut warned = self.warned.get();
        if warned[index] {
            return;
        }
        warned[index] = true;
        self.warned.set(warned);
        log::warn!(
            "{}: the {what} is out of reach here: Envoy gives a network filter the {what} \
             only during {callback} and answers NOT_FOUND elsewhere. Nothing was read or \
             changed. Keep the bytes you need in the filter's state, or return Action::Pause \
             from {callback} so Envoy delivers them again with the next chunk.",
            self.log_prefix(),
            what = side.describe(),
            callback = side.callback(),
        );
    }

    /// The whole data buffer of `side`: during that side's data callback; empty elsewhere.
    pub fn data(&self, side: Side) -> Bytes {
        if self.current(side).is_none() {
            self.warn_out_of_reach(side);
            return Vec::new();
        }
        match self.host.read(side) {
            Ok(bytes) => bytes,
            Err(status) => {
                log::warn!(
                    "{}: reading the {} failed: {status}",
                    self.log_prefix(),
                    side.describe()
                );
                Vec::new()
            }
        }
    }

    /// Replaces the whole buffer of `side` (in its data callback).
    pub fn replace_data(&self, side: Side, bytes: &[u8]) -> Result<(), HostStatus> {
        self.edit(side, Edit::Replace, bytes)
    }

    /// Puts `bytes` before the buffer of `side` (in its data callback).
    pub fn prepend_data(&self, side: Side, bytes: &[u8]) -> Result<(), HostStatus> {
        self.edit(side, Edit::Prepend, bytes)
    }

    /// Puts `bytes` after the buffer of `side` (in its data callback).
    pub fn append_data(&self, side: Side, bytes: &[u8]) -> Result<(), HostStatus> {
        self.edit(side, Edit::Append, bytes)
    }

    fn edit(&self, side: Side, edit: Edit, bytes: &[u8]) -> Result<(), HostStatus> {
        let Some(now) = self.current(side) else {
            self.warn_out_of_reach(side);
            return Err(NO_BUFFER);
        };
        let (start, size) = edit.range(now.length);
        self.host.write(side, start, size, bytes)?;
        self.in_data.set(Some(InData {
            side,
            length: edit.length_after(now.length, bytes.len()),
        }));
        Ok(())
    }

    // ---- the connection ----

    /// Resumes the downstream direction after `Pause` (from on_new_connection
    /// or on_downstream_data), from a later callback: the filters after this
    /// one see the connection and the held bytes.
    pub fn continue_downstream(&self) -> Result<(), HostStatus> {
        self.host.continue_downstream()?;
        self.released.set(true);
        Ok(())
    }

    /// Closes the client connection (Envoy flushes what is already written,
    /// then calls on_downstream_close with [`crate::types::PeerType::Local`]).
    /// Envoy closes the same downstream connection for
    /// `proxy_close_stream(UPSTREAM)`, so there is one close. Return
    /// `Action::Pause` from the current callback.
    pub fn close(&self) -> Result<(), HostStatus> {
        self.host.close()
    }

    /// Sets Envoy filter state `path` to `value` (the `set_envoy_filter_state`
    /// foreign function).
    pub fn set_filter_state(
        &self,
        path: &str,
        value: &str,
        span: LifeSpan,
    ) -> Result<(), HostStatus> {
        let arguments = filter_state::encode_arguments(path, value, span);
        self.host
            .call_foreign(filter_state::SET_ENVOY_FILTER_STATE, &arguments)
            .map(drop)
    }

    /// Chooses the cluster tcp_proxy connects to (filter state
    /// `envoy.tcp_proxy.cluster` for the connection's lifetime). Takes
    /// effect only before filter iteration first passes this filter (see
    /// [`NetworkFilter`]): called later it still writes the state but
    /// answers [`RouteError::TooLate`].
    pub fn set_tcp_proxy_cluster(&self, cluster: &str) -> Result<(), RouteError> {
        self.set_filter_state(
            filter_state::TCP_PROXY_CLUSTER,
            cluster,
            LifeSpan::DownstreamConnection,
        )
        .map_err(RouteError::Host)?;
        if self.released.get() {
            return Err(RouteError::TooLate);
        }
        Ok(())
    }

    // ---- properties ----

    fn string_property(&self, path: &[&str]) -> Option<String> {
        self.host
            .property(path)
            .and_then(|raw| crate::property::decode_string(&raw))
    }

    fn int_property(&self, path: &[&str]) -> Option<i64> {
        self.host
            .property(path)
            .and_then(|raw| crate::property::decode_int(&raw))
    }

    /// The client's address (`source.address`, `ip:port`).
    pub fn source_address(&self) -> Option<String> {
        self.string_property(&["source", "address"])
    }

    /// The client's IP, from `source.address`.
    pub fn source_ip(&self) -> Option<IpAddr> {
        super::address::ip_of(&self.source_address()?)
    }

    pub fn source_port(&self) -> Option<u16> {
        u16::try_from(self.int_property(&["source", "port"])?).ok()
    }

    /// The address the client connected to (`destination.address`).
    pub fn destination_address(&self) -> Option<String> {
        self.string_property(&["destination", "address"])
    }

    pub fn destination_port(&self) -> Option<u16> {
        u16::try_from(self.int_property(&["destination", "port"])?).ok()
    }

    /// Envoy's connection id (`connection.id`).
    pub fn connection_id(&self) -> Option<u64> {
        u64::try_from(self.int_property(&["connection", "id"])?).ok()
    }

    /// The TLS SNI the client asked for (`connection.requested_server_name`).
    pub fn requested_server_name(&self) -> Option<String> {
        self.string_property(&["connection", "requested_server_name"])
            .filter(|name| !name.is_empty())
    }

    /// Whether the client presented a verified certificate (`connection.mtls`).
    pub fn mtls(&self) -> Option<bool> {
        self.host
            .property(&["connection", "mtls"])
            .and_then(|raw| crate::property::decode_bool(&raw))
    }

    /// The upstream host's address (`upstream.address`), once tcp_proxy has
    /// connected (from on_upstream_data on; absent in on_new_connection).
    pub fn upstream_address(&self) -> Option<String> {
        self.string_property(&["upstream", "address"])
    }

    /// `"<plugin name> [conn <id>]"`, for log lines about this connection.
    pub fn log_prefix(&self) -> &str {
        self.log_prefix.get_or_init(|| {
            let name = self
                .string_property(&["plugin_name"])
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| F::NAME.to_string());
            match self.connection_id() {
                Some(id) => format!("{name} [conn {id}]"),
                None => format!("{name} [conn -]"),
            }
        })
    }
}
