//! Moving one connection: the read path (client to upstream, filters in
//! chain order, then tcp_proxy), the write path (upstream to client,
//! filters in reverse order), and the close with each filter's teardown.

use crate::abi::{Action, PeerType};
use crate::backend::Callback;
use crate::driver::Harness;

use super::super::{Live, Slot, after_callback};
use super::{Connection, Proxy, closed, fail, new_connection_context};

/// Moves connection `k` as far as it goes without time passing; true if
/// anything ran.
pub(crate) fn drive(filters: &mut [Harness], slots: &[Slot], live: &mut Live, k: usize) -> bool {
    let mut progressed = false;
    loop {
        let conn = &mut live.tcp[k];
        if conn.end.is_some() {
            return progressed;
        }
        if let Some((peer, why)) = conn.closing.take() {
            close(filters, slots, live, k, peer, why);
            return true;
        }
        progressed = true;
        if !conn.opened {
            conn.opened = true;
            read_iteration(filters, slots, live, k, 0, true);
        } else if let Some(from) = conn.read_from.take() {
            read_iteration(filters, slots, live, k, from, false);
        } else if let Some((data, end)) = conn.write_input.pop_front() {
            write_iteration(filters, slots, live, k, data, end);
        } else if conn.read_end && conn.record.downstream_end {
            // Both halves are done: the socket closes.
            let peer = conn.last_half_close;
            conn.closing = Some((peer, "both sides closed".to_string()));
        } else {
            return false;
        }
    }
}

/// Runs one callback of filter `i`; `None` when iteration must stop
/// there without an answer (the VM failed and the connection closes).
fn callback(
    filters: &mut [Harness],
    slots: &[Slot],
    live: &mut Live,
    k: usize,
    i: usize,
    cb: Callback,
) -> Option<Action> {
    let v = slots[i].vm;
    let filter = &mut filters[v];
    let conn = &mut live.tcp[k];
    if conn.hops[i].bypass {
        return Some(Action::Continue);
    }
    if conn.hops[i].failed {
        return None;
    }
    // A VM that failed since: CHECK_FAIL_NET before the call.
    if filter.failure.is_some() {
        fail(filter, conn, i);
        return conn.hops[i].bypass.then_some(Action::Continue);
    }
    let result = filter.invoke(cb);
    if result.is_none() {
        fail(filter, conn, i);
    }
    after_callback(filter, v, slots, live);
    let conn = &live.tcp[k];
    if conn.hops[i].bypass {
        return Some(Action::Continue);
    }
    result.map(Action::from_raw)
}

/// Creates filter `i`'s context and calls on_new_connection; true when
/// iteration may go on past it.
fn initialize(
    filters: &mut [Harness],
    slots: &[Slot],
    live: &mut Live,
    k: usize,
    i: usize,
) -> bool {
    let filter = &mut filters[slots[i].vm];
    let conn = &mut live.tcp[k];
    conn.hops[i].initialized = true;
    let root = conn.hops[i].root;
    let id = new_connection_context(filter, root, conn);
    conn.hops[i].context_id = id;
    if filter.failure.is_some() {
        fail(filter, conn, i);
        return conn.hops[i].bypass;
    }
    let create = Callback::ContextCreate {
        context_id: id,
        parent_id: root,
    };
    if callback(filters, slots, live, k, i, create).is_none() {
        return live.tcp[k].hops[i].bypass;
    }
    let action = callback(
        filters,
        slots,
        live,
        k,
        i,
        Callback::NewConnection { context_id: id },
    );
    action == Some(Action::Continue) && still_open(&live.tcp[k])
}

fn still_open(conn: &Connection) -> bool {
    conn.closing.is_none() && conn.end.is_none()
}

/// Envoy's `onContinueReading` from filter `from`: each filter gets its
/// on_new_connection when first reached, then the whole read buffer
/// (when it has bytes or the client's FIN was read); tcp_proxy last.
/// `accept`: the iteration at accept time (`initializeReadFilters`),
/// which only initializes.
fn read_iteration(
    filters: &mut [Harness],
    slots: &[Slot],
    live: &mut Live,
    k: usize,
    from: usize,
    accept: bool,
) {
    reclaim_read_from(filters, slots, &mut live.tcp[k]);
    for i in from..live.tcp[k].hops.len() {
        if !live.tcp[k].hops[i].initialized && !initialize(filters, slots, live, k, i) {
            return;
        }
        let conn = &mut live.tcp[k];
        if accept || (conn.read_buffer.is_empty() && !conn.read_end) {
            continue;
        }
        let id = conn.hops[i].context_id;
        let size = conn.read_buffer.len() as u64;
        let end_of_stream = conn.read_end;
        lend(
            &mut filters[slots[i].vm],
            id,
            std::mem::take(&mut conn.read_buffer),
            true,
        );
        conn.read_lent = Some(i);
        let cb = Callback::DownstreamData {
            context_id: id,
            size,
            end_of_stream,
        };
        let action = callback(filters, slots, live, k, i, cb);
        let conn = &mut live.tcp[k];
        if conn.read_lent == Some(i) && (action == Some(Action::Continue) || !still_open(conn)) {
            reclaim_read(&mut filters[slots[i].vm], conn);
        }
        if action != Some(Action::Continue) || !still_open(conn) {
            return;
        }
    }
    tcp_proxy(filters, slots, &mut live.tcp[k], accept);
}

/// tcp_proxy at the end of the read path: connects when first reached
/// (to the cluster a filter chose through `envoy.tcp_proxy.cluster`, else
/// its configured one), then takes everything read so far to the upstream.
fn tcp_proxy(filters: &mut [Harness], slots: &[Slot], conn: &mut Connection, accept: bool) {
    if conn.proxy == Proxy::NotReached {
        let chosen = chosen_cluster(conn);
        let cluster = chosen.unwrap_or_else(|| conn.spec.cluster.clone());
        let host = filters.last().map(|f| f.vm.host_ref());
        let accepts = match host.and_then(|h| h.tcp_cluster_accepts(&cluster)) {
            Some(accepts) => Some(accepts),
            // tcp_proxy's own configured cluster always exists.
            None => (cluster == conn.spec.cluster).then_some(true),
        };
        conn.record.cluster = Some(cluster.clone());
        match accepts {
            Some(true) => {
                conn.proxy = Proxy::Connected;
                set_upstream_address(filters, slots, conn);
            }
            Some(false) => {
                conn.proxy = Proxy::Failed;
                conn.record.upstream_failed = true;
                conn.closing = Some((
                    PeerType::Local,
                    format!("upstream connection to cluster {cluster} refused"),
                ));
                return;
            }
            None => {
                conn.proxy = Proxy::Failed;
                conn.record.upstream_failed = true;
                conn.closing = Some((
                    PeerType::Local,
                    format!("tcp_proxy: no cluster named {cluster}"),
                ));
                return;
            }
        }
    }
    if accept || conn.proxy != Proxy::Connected {
        return;
    }
    let data = std::mem::take(&mut conn.read_buffer);
    conn.record.upstream_received.0.extend_from_slice(&data);
    if conn.read_end {
        conn.record.upstream_end = true;
    }
}

/// The `envoy.tcp_proxy.cluster` filter state any filter of the connection set.
fn chosen_cluster(conn: &Connection) -> Option<String> {
    let state = conn.filter_state.lock();
    let name = state.objects.get("envoy.tcp_proxy.cluster")?;
    Some(String::from_utf8_lossy(name).into_owned())
}

/// `upstream.address` becomes readable once tcp_proxy connected.
fn set_upstream_address(filters: &mut [Harness], slots: &[Slot], conn: &mut Connection) {
    let address = conn.spec.upstream_address.clone();
    let value = crate::model::PropertyValue::String(address);
    let mut one = crate::model::Properties::new();
    one.insert("upstream.address".to_string(), value);
    conn.properties.extend(one.clone());
    for (hop, slot) in conn.hops.iter().zip(slots) {
        if let Some(s) = filters[slot.vm].vm.host().stream_mut(hop.context_id) {
            s.properties.extend(&one);
        }
    }
}

/// The write path for one chunk from the upstream: every filter from the
/// last to the first gets the bytes held so far plus this chunk; a pause
/// holds them; what passes reaches the client.
fn write_iteration(
    filters: &mut [Harness],
    slots: &[Slot],
    live: &mut Live,
    k: usize,
    data: Vec<u8>,
    end: bool,
) {
    let conn = &mut live.tcp[k];
    if let Some(i) = conn.write_lent.take() {
        let id = conn.hops[i].context_id;
        let back = take_lent(&mut filters[slots[i].vm], id, false);
        conn.write_held = back;
    }
    conn.write_held.extend_from_slice(&data);
    conn.write_held_end |= end;
    let end_of_stream = conn.write_held_end;
    for i in (0..conn_len(live, k)).rev() {
        let conn = &mut live.tcp[k];
        if !conn.hops[i].initialized {
            continue;
        }
        let id = conn.hops[i].context_id;
        let size = conn.write_held.len() as u64;
        lend(
            &mut filters[slots[i].vm],
            id,
            std::mem::take(&mut conn.write_held),
            false,
        );
        conn.write_lent = Some(i);
        let cb = Callback::UpstreamData {
            context_id: id,
            size,
            end_of_stream,
        };
        let action = callback(filters, slots, live, k, i, cb);
        if end_of_stream {
            let cb = Callback::UpstreamConnectionClose {
                context_id: id,
                peer_type: PeerType::Unknown as u32,
            };
            let _ = callback(filters, slots, live, k, i, cb);
        }
        let conn = &mut live.tcp[k];
        if action == Some(Action::Continue) || !still_open(conn) {
            conn.write_lent = None;
            conn.write_held = take_lent(&mut filters[slots[i].vm], id, false);
        }
        if action != Some(Action::Continue) || !still_open(conn) {
            return;
        }
    }
    let conn = &mut live.tcp[k];
    let bytes = std::mem::take(&mut conn.write_held);
    conn.record.downstream_received.0.extend_from_slice(&bytes);
    if conn.write_held_end {
        conn.record.downstream_end = true;
        conn.last_half_close = PeerType::Local;
    }
}

fn conn_len(live: &Live, k: usize) -> usize {
    live.tcp[k].hops.len()
}

/// The downstream connection closes: each filter with a context, in
/// chain order, gets on_downstream_connection_close and then on_done,
/// on_log, on_delete (Envoy's `onCloseTCP`); a failed VM gets none.
fn close(
    filters: &mut [Harness],
    slots: &[Slot],
    live: &mut Live,
    k: usize,
    peer: PeerType,
    why: String,
) {
    for i in 0..conn_len(live, k) {
        let conn = &live.tcp[k];
        if !conn.hops[i].initialized || conn.hops[i].context_id == 0 {
            continue;
        }
        let id = conn.hops[i].context_id;
        let bypass = conn.hops[i].bypass;
        let v = slots[i].vm;
        if !bypass && filters[v].failure.is_none() {
            let cbs = [
                Callback::DownstreamConnectionClose {
                    context_id: id,
                    peer_type: peer as u32,
                },
                Callback::Done { context_id: id },
                Callback::Log { context_id: id },
                Callback::Delete { context_id: id },
            ];
            for cb in cbs {
                if filters[v].invoke(cb).is_none() {
                    break;
                }
            }
        }
        let filter = &mut filters[v];
        let host = filter.vm.host();
        host.deferred.retain(|d| d.context_id() != id);
        host.drop_stream(id);
        after_callback(filter, v, slots, live);
        filter.deliver_due_root_events(&mut |f| after_callback(f, v, slots, live));
    }
    let at = filters.iter().map(Harness::now_ms).max().unwrap_or(0);
    closed(&mut live.tcp[k], peer, why, at);
}

/// Puts bytes in reach of context `id` as DOWNSTREAM_DATA (`read`) or
/// UPSTREAM_DATA.
fn lend(filter: &mut Harness, id: u32, bytes: Vec<u8>, read: bool) {
    if let Some(s) = filter.vm.host().stream_mut(id) {
        if read {
            s.downstream_data = Some(bytes);
        } else {
            s.upstream_data = Some(bytes);
        }
    }
}

/// Takes lent bytes back out of context `id`'s reach.
fn take_lent(filter: &mut Harness, id: u32, read: bool) -> Vec<u8> {
    let Some(s) = filter.vm.host().stream_mut(id) else {
        return Vec::new();
    };
    let slot = if read {
        &mut s.downstream_data
    } else {
        &mut s.upstream_data
    };
    slot.take().unwrap_or_default()
}

/// The read buffer back from the filter that held it (it continued).
pub(super) fn reclaim_read(filter: &mut Harness, conn: &mut Connection) {
    if let Some(i) = conn.read_lent.take() {
        let id = conn.hops[i].context_id;
        let mut back = take_lent(filter, id, true);
        // Bytes that arrived meanwhile follow what the filter left.
        back.append(&mut conn.read_buffer);
        conn.read_buffer = back;
    }
}

/// [`reclaim_read`] from whichever filter holds it, before a new iteration.
fn reclaim_read_from(filters: &mut [Harness], slots: &[Slot], conn: &mut Connection) {
    if let Some(i) = conn.read_lent {
        reclaim_read(&mut filters[slots[i].vm], conn);
    }
}
