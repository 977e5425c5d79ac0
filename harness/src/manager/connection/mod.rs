//! Envoy's network filter chain for TCP connections: a listener whose
//! filters are `envoy.filters.network.wasm` instances followed by
//! tcp_proxy, on the same worker VMs as the HTTP streams.
//!
//! What the harness follows, by source:
//! - source/common/network/filter_manager_impl.cc: at accept,
//!   `initializeReadFilters` calls each filter's onNewConnection in order
//!   until one stops; every read (new bytes or the client's FIN) iterates
//!   from the first filter with the whole read buffer
//!   (`onContinueReading(nullptr)`), giving a filter not reached yet its
//!   onNewConnection first; `continueReading` from filter k goes on from
//!   k+1. Write filters run in reverse order on each write.
//! - source/extensions/common/wasm/context.cc: `Context::onNewConnection`
//!   creates the context and calls on_new_connection; `onData` / `onWrite`
//!   lend the buffer (DOWNSTREAM_DATA / UPSTREAM_DATA) for the callback and
//!   keep it lent while the filter stops on it; `onWrite` with end_stream
//!   then calls on_upstream_connection_close(UNKNOWN); `onEvent`
//!   (LocalClose / RemoteClose) calls on_downstream_connection_close and
//!   `onCloseTCP`: on_done, on_log, on_delete, per filter in the order the
//!   filters registered. `continueStream(DOWNSTREAM)` continues reading,
//!   UPSTREAM is UNIMPLEMENTED; `closeStream` of either closes the
//!   downstream connection (FlushWrite); a failed VM closes it too
//!   (`failStream`).
//! - tcp_proxy chooses its cluster when iteration first reaches it (its
//!   onNewConnection), honouring `envoy.tcp_proxy.cluster` filter state; a
//!   refused connection or an unknown cluster closes the downstream
//!   connection (LocalClose). Bytes it takes go to the upstream, the
//!   client's FIN with them (half-close).
//! - source/common/network/connection_impl.cc: the downstream connection
//!   closes when both halves are done; `onReadReady` reports RemoteClose
//!   when the client's FIN completes it. When Envoy's own FIN completes it
//!   the harness reports LocalClose (`onWriteReady`, as we read it).
//!
//! A filter that pauses upstream data holds it until the upstream sends
//! more (Envoy re-delivers the accumulated bytes with the next write;
//! there is no continue for that direction).

mod flow;

use std::collections::VecDeque;

use crate::abi::{PeerType, StreamType};
use crate::driver::Harness;
use crate::host::Deferred;
use crate::host::filter_state::SharedFilterState;
use crate::host::properties::PropertyStore;
use crate::model::{
    ConnectionClose, ConnectionRecord, ConnectionSpec, FailurePolicyApplied, LogEntry, LogLevel,
    Properties, StreamEnd,
};

use super::{Slot, StreamHandle, Streams, now};

pub(crate) use flow::drive;

/// One network filter's part of a connection.
#[derive(Default)]
pub(crate) struct NetHop {
    /// The filter's context id in its VM; 0 until it is initialized.
    pub(crate) context_id: u32,
    /// The filter's root context (its plugin).
    pub(crate) root: u32,
    /// on_new_connection ran (Envoy's `ActiveReadFilter::initialized_`).
    initialized: bool,
    /// fail_open after its VM failed: data passes it without callbacks.
    bypass: bool,
    /// Its VM failed while this connection used it (policy applied).
    failed: bool,
    /// Log lines of this context so far.
    pub(crate) logs: Vec<LogEntry>,
}

/// What tcp_proxy has done.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Proxy {
    /// Iteration has not reached it yet.
    NotReached,
    /// Connected to this cluster.
    Connected,
    /// It could not connect (refused, unknown cluster).
    Failed,
}

/// One TCP connection through the worker's network filter chain.
pub(crate) struct Connection {
    pub(crate) key: StreamHandle,
    pub(crate) hops: Vec<NetHop>,
    spec: ConnectionSpec,
    properties: Properties,
    /// The connection's filter state: its network filters and tcp_proxy share it.
    filter_state: SharedFilterState,
    /// initializeReadFilters ran.
    opened: bool,
    /// Envoy's read buffer: client bytes tcp_proxy has not taken yet.
    read_buffer: Vec<u8>,
    /// The client's FIN was read (every later read iteration passes it).
    read_end: bool,
    /// A read iteration to run, from this filter on.
    read_from: Option<usize>,
    /// The filter holding the read buffer (it paused on it).
    read_lent: Option<usize>,
    /// Upstream bytes waiting for the write filters, oldest first.
    write_input: VecDeque<(Vec<u8>, bool)>,
    /// Upstream bytes a write filter held back (re-delivered with the next).
    write_held: Vec<u8>,
    write_held_end: bool,
    /// The filter holding the write bytes (it paused on them).
    write_lent: Option<usize>,
    proxy: Proxy,
    /// Which half-close came last (decides the close event's type).
    last_half_close: PeerType,
    /// A close decided and not yet delivered: who, and why.
    closing: Option<(PeerType, String)>,
    /// Why the connection could not go on, when it stalled.
    stalled: Option<String>,
    pub(crate) record: ConnectionRecord,
    pub(crate) end: Option<StreamEnd>,
    start_ms: u64,
    pub(crate) elapsed_ms: u64,
}

impl Connection {
    /// Nothing can move the connection: Envoy's tcp_proxy would close it
    /// at its idle timeout.
    pub(crate) fn stall(&mut self, why: &str) {
        if self.end.is_some() || self.closing.is_some() {
            return;
        }
        let waiting = if self.read_lent.is_some() {
            "a filter paused the client's data and nothing continued it (proxy_continue_stream(DOWNSTREAM))"
        } else if self.write_lent.is_some() {
            "a filter paused the upstream's data (Envoy re-delivers it only with more upstream data)"
        } else {
            "the connection is still open: neither side closed it (a `send` or `upstream_send` step with `end_stream: true`, or a `reset`, ends it)"
        };
        self.stalled = Some(format!("{waiting}, and {why}"));
        self.closing = Some((PeerType::Local, "tcp_proxy idle timeout".to_string()));
    }
}

/// Something the client or the upstream does on an open connection.
pub(crate) enum ConnectionInput {
    /// The client sends bytes; `end_stream`: then its FIN.
    Client { data: Vec<u8>, end_stream: bool },
    /// The upstream sends bytes; `end_stream`: then its FIN.
    Upstream { data: Vec<u8>, end_stream: bool },
    /// The client resets the connection.
    ClientReset,
    /// The upstream resets its connection (tcp_proxy closes the client's).
    UpstreamReset,
}

/// Opens a connection; nothing runs until the worker's loop drives it.
pub(crate) fn open(
    filters: &[Harness],
    slots: &[Slot],
    streams: &mut Streams,
    spec: &ConnectionSpec,
    properties: &Properties,
) -> StreamHandle {
    let key = streams.new_key();
    let mut all = spec.properties(key.id + 1);
    all.extend(properties.iter().map(|(k, v)| (k.clone(), v.clone())));
    let hops = slots
        .iter()
        .map(|slot| NetHop {
            root: slot.root,
            ..NetHop::default()
        })
        .collect();
    streams.live.tcp.push(Connection {
        key,
        hops,
        spec: spec.clone(),
        properties: all,
        filter_state: SharedFilterState::default(),
        opened: false,
        read_buffer: Vec::new(),
        read_end: false,
        read_from: None,
        read_lent: None,
        write_input: VecDeque::new(),
        write_held: Vec::new(),
        write_held_end: false,
        write_lent: None,
        proxy: Proxy::NotReached,
        last_half_close: PeerType::Unknown,
        closing: None,
        stalled: None,
        record: ConnectionRecord::default(),
        end: None,
        start_ms: now(filters),
        elapsed_ms: 0,
    });
    key
}

/// Applies `input` to the live connection `key`.
pub(crate) fn apply(
    streams: &mut Streams,
    key: StreamHandle,
    input: ConnectionInput,
) -> Result<(), String> {
    let Some(conn) = streams
        .live_connection(key)
        .filter(|c| c.end.is_none() && c.closing.is_none())
    else {
        return Err(format!(
            "connection {} on worker {} is closed (or was never opened): nothing more can be sent on it",
            key.id, key.worker
        ));
    };
    match input {
        ConnectionInput::Client { data, end_stream } => {
            if conn.read_end {
                return Err(
                    "the client already closed its side of this connection (end_stream)"
                        .to_string(),
                );
            }
            conn.read_buffer.extend_from_slice(&data);
            conn.read_end = end_stream;
            if end_stream {
                conn.last_half_close = PeerType::Remote;
            }
            if !data.is_empty() || end_stream {
                conn.read_from = Some(0);
            }
        }
        ConnectionInput::Upstream { data, end_stream } => {
            if conn.proxy != Proxy::Connected {
                return Err(
                    "the upstream is not connected (tcp_proxy has not connected yet, or could not)"
                        .to_string(),
                );
            }
            if conn.write_held_end || conn.write_input.iter().any(|(_, end)| *end) {
                return Err(
                    "the upstream already closed its side of this connection (end_stream)"
                        .to_string(),
                );
            }
            conn.write_input.push_back((data, end_stream));
        }
        ConnectionInput::ClientReset => {
            conn.closing = Some((PeerType::Remote, "client reset".to_string()));
        }
        ConnectionInput::UpstreamReset => {
            conn.closing = Some((PeerType::Local, "upstream reset".to_string()));
        }
    }
    Ok(())
}

/// Applies a deferred action to the connection whose context it names on
/// VM `v` (served by positions `on_vm`); false when it names no connection.
pub(crate) fn apply_deferred(
    filter: &mut Harness,
    on_vm: &dyn Fn(&usize) -> bool,
    live: &mut [Connection],
    action: &Deferred,
) -> bool {
    let ctx = action.context_id();
    let found = live.iter_mut().filter(|c| c.end.is_none()).find_map(|c| {
        let i = (0..c.hops.len())
            .filter(on_vm)
            .find(|&i| c.hops[i].context_id == ctx)?;
        Some((c, i))
    });
    let Some((conn, i)) = found else {
        return false;
    };
    match action {
        Deferred::Continue {
            stream: StreamType::Downstream,
            ..
        } => {
            if conn.read_lent == Some(i) {
                flow::reclaim_read(filter, conn);
            }
            conn.read_from = Some(i + 1);
        }
        Deferred::Close { stream, .. } => {
            let why = match stream {
                StreamType::Upstream => "wasm_upstream_close",
                _ => "wasm_downstream_close",
            };
            conn.closing
                .get_or_insert((PeerType::Local, why.to_string()));
        }
        Deferred::LocalReply { .. } => filter.vm.host().harness_log(
            LogLevel::Warn,
            "proxy_send_local_response on a TCP connection does nothing in Envoy (there is no \
             HTTP stream to answer): close the connection with proxy_close_stream instead"
                .to_string(),
        ),
        Deferred::Continue { .. } => {}
    }
    true
}

/// Envoy's policy for filter `i` on a failed VM (`CHECK_FAIL_NET` in
/// proxy-wasm-cpp-host src/context.cc): fail_open lets data pass it;
/// otherwise `failStream` closes the connection.
fn fail(filter: &mut Harness, conn: &mut Connection, i: usize) {
    conn.hops[i].failed = true;
    let fail_open = filter.fail_open(conn.hops[i].root);
    filter.policy_applied = Some(if fail_open {
        FailurePolicyApplied::FailOpen
    } else {
        FailurePolicyApplied::FailClosed
    });
    if fail_open {
        conn.hops[i].bypass = true;
        if conn.read_lent == Some(i) {
            flow::reclaim_read(filter, conn);
            conn.read_from = Some(i + 1);
        }
    } else {
        conn.closing
            .get_or_insert((PeerType::Local, "wasm_fail_stream".to_string()));
    }
}

/// Moves closed connections to the finished list.
pub(crate) fn collect_closed(streams: &mut Streams) {
    while let Some(at) = streams.live.tcp.iter().position(|c| c.end.is_some()) {
        let conn = streams.live.tcp.remove(at);
        streams.finished_tcp.push(conn);
    }
}

/// The host-side state of a new connection context in `filter`'s VM.
fn new_connection_context(filter: &mut Harness, root: u32, conn: &Connection) -> u32 {
    let host = filter.vm.host();
    let id = host.next_context_id;
    host.next_context_id += 1;
    host.open_stream(id, root, Some(conn.filter_state.clone()));
    if let Some(s) = host.stream_mut(id) {
        s.is_connection = true;
        s.properties = PropertyStore::from_properties(&conn.properties);
    }
    id
}

/// Records the close on the connection once its callbacks ran.
fn closed(conn: &mut Connection, peer: PeerType, why: String, at_ms: u64) {
    conn.record.closed_by = Some(match peer {
        PeerType::Remote => ConnectionClose::Client,
        _ => ConnectionClose::Envoy,
    });
    conn.record.close_reason = Some(why);
    conn.elapsed_ms = at_ms.saturating_sub(conn.start_ms);
    conn.end = Some(match conn.stalled.take() {
        Some(reason) => StreamEnd::Stalled { reason },
        None => StreamEnd::Completed,
    });
}

/// Each chain position's outcome of a closed connection: its share of the
/// capture since the step began, with what each side received.
pub(crate) fn outcomes(
    filters: &mut [Harness],
    slots: &[Slot],
    streams: &Streams,
    conn: &mut Connection,
) -> Vec<crate::model::Outcome> {
    let end = conn.end.clone().unwrap_or_default();
    let mut outs: Vec<crate::model::Outcome> = conn
        .hops
        .iter()
        .map(|hop| crate::model::Outcome {
            context_id: hop.context_id,
            ..Default::default()
        })
        .collect();
    let ids = conn.hops.iter().map(|h| h.context_id);
    let owners = super::capture::Owners::new(slots, streams, ids);
    super::capture::capture_into(filters, &owners, &mut outs, &end, conn.elapsed_ms);
    for outcome in &mut outs {
        outcome.connection = Some(conn.record.clone());
    }
    outs
}

/// Runs one whole connection to its close (see [`crate::model::ConnectionExchange`]);
/// each chain position's outcome, in order. Bytes a filter refuses to
/// take (it closed the connection) are not sent.
pub(crate) fn exchange(
    filters: &mut [Harness],
    slots: &[Slot],
    streams: &mut Streams,
    ex: &crate::model::ConnectionExchange,
) -> Vec<crate::model::Outcome> {
    for f in filters.iter_mut() {
        f.begin_exchange();
    }
    let key = open(filters, slots, streams, &ex.connection, &Properties::new());
    let settle = |filters: &mut [Harness], streams: &mut Streams| {
        let at = now(filters);
        super::run(filters, slots, streams, super::Goal::Until(at));
    };
    settle(filters, streams);
    let client = ex.client.iter().map(|c| ConnectionInput::Client {
        data: c.0.clone(),
        end_stream: false,
    });
    let upstream = ex.upstream.iter().map(|c| ConnectionInput::Upstream {
        data: c.0.clone(),
        end_stream: false,
    });
    let ends = [
        ConnectionInput::Client {
            data: Vec::new(),
            end_stream: true,
        },
        ConnectionInput::Upstream {
            data: Vec::new(),
            end_stream: true,
        },
    ];
    for input in client.chain(upstream).chain(ends) {
        if apply(streams, key, input).is_ok() {
            settle(filters, streams);
        }
    }
    super::run(filters, slots, streams, super::Goal::Ends(key));
    match streams.take_finished_connection(key) {
        Some(mut conn) => outcomes(filters, slots, streams, &mut conn),
        None => Vec::new(),
    }
}
