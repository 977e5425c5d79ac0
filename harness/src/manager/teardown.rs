//! The end of a stream: every filter's on_log in chain order, then each
//! filter's on_done and on_delete (a filter the request never reached gets its context at
//! access-log time, as Envoy's Wasm filter creates it in `Context::log`),
//! then whatever became due for the root context.

use crate::backend::Callback;
use crate::driver::Harness;
use crate::host::properties::PropertyStore;
use crate::host::{Field, HeaderMap};

use super::{Live, Slot, Stream, Streams, after_callback, connection, now};

/// A new stream context id in `filter`'s VM, with its host-side state.
pub(crate) fn new_stream_context(filter: &mut Harness, root: u32, stream: &Stream) -> u32 {
    let host = filter.vm.host();
    let id = host.next_context_id;
    host.next_context_id += 1;
    host.open_stream(id, root, stream.filter_state.clone());
    if let Some(s) = host.stream_mut(id) {
        s.protocol = stream.protocol;
        if !stream.properties.is_empty() {
            s.properties = PropertyStore::from_properties(&stream.properties);
        }
    }
    id
}

/// Tears down every live stream that has ended and keeps its record.
pub(crate) fn close_ended(filters: &mut [Harness], slots: &[Slot], streams: &mut Streams) {
    connection::collect_closed(streams);
    while let Some(at) = streams.live.http.iter().position(|s| s.end.is_some()) {
        let mut stream = streams.live.http.remove(at);
        stream.elapsed_ms = now(filters).saturating_sub(stream.start_ms);
        // Every hop's copies first: closing a hop drops its maps.
        let sources = LogSources::of(filters, slots, &stream);
        // Inline for chains of up to four filters: no allocation per stream.
        let copies: smallvec::SmallVec<[_; 4]> = (0..slots.len())
            .map(|i| sources.copies_for(filters, slots, &stream, i))
            .collect();
        // Envoy logs the whole chain first (every filter is an access
        // logger of the stream), then destroys each filter (on_done, on_delete).
        for ((i, slot), copies) in slots.iter().enumerate().zip(copies) {
            log_hop(&mut filters[slot.vm], &mut stream, i, copies);
        }
        for (i, slot) in slots.iter().enumerate() {
            destroy_hop(
                &mut filters[slot.vm],
                slot.vm,
                slots,
                &stream,
                i,
                &mut streams.live,
            );
        }
        streams.mark_moved(stream.key);
        streams.finished.push(stream);
    }
}

/// on_log for filter `i`, reading the access-log copies (a filter the
/// request never reached gets its context now).
fn log_hop(
    filter: &mut Harness,
    stream: &mut Stream,
    i: usize,
    copies: Vec<(Field, Option<HeaderMap>)>,
) {
    if stream.hops[i].context_id == 0 {
        let root = stream.hops[i].root;
        let id = new_stream_context(filter, root, stream);
        stream.hops[i].context_id = id;
        if filter.failure.is_none() {
            filter.invoke(Callback::ContextCreate {
                context_id: id,
                parent_id: root,
            });
        }
    }
    let id = stream.hops[i].context_id;
    if let Some(s) = filter.vm.host().stream_mut(id) {
        s.reach.end();
        for (field, map) in copies {
            match field {
                Field::RequestHeaders => s.request_headers = map,
                Field::ResponseHeaders => s.response_headers = map,
                _ => s.response_trailers = map,
            }
        }
    }
    if !stream.hops[i].bypass && filter.failure.is_none() {
        filter.invoke(Callback::Log { context_id: id });
    }
}

/// on_done and on_delete for filter `i`, then its context is gone.
fn destroy_hop(
    filter: &mut Harness,
    v: usize,
    slots: &[Slot],
    stream: &Stream,
    i: usize,
    live: &mut Live,
) {
    let id = stream.hops[i].context_id;
    if !stream.hops[i].bypass
        && filter.failure.is_none()
        && filter.invoke(Callback::Done { context_id: id }).is_some()
    {
        filter.invoke(Callback::Delete { context_id: id });
    }
    let host = filter.vm.host();
    // What the ended stream still asked for has nothing left to act on.
    // Its callouts stay: they belong to the root context (proxy-wasm-cpp-host
    // src/exports.cc http_call/grpc_call use `root_context()`), and their
    // answers reach it after the stream is gone.
    host.deferred.retain(|d| d.context_id() != id);
    host.drop_stream(id);
    after_callback(filter, v, slots, live);
    filter.deliver_due_root_events(&mut |f| after_callback(f, v, slots, live));
}

/// Where Envoy's access-log copies of a stream's maps come from. Envoy's
/// filters share one header map per message, so on_log sees the request
/// headers as the last filter they reached left them, and the response
/// headers and trailers as the filter nearest the client left them (what
/// was sent). Hop indices; `None` when no filter got that map.
struct LogSources {
    request_headers: Option<usize>,
    response_headers: Option<usize>,
    response_trailers: Option<usize>,
}

impl LogSources {
    fn of(filters: &[Harness], slots: &[Slot], stream: &Stream) -> LogSources {
        let has = |i: usize, pick: fn(&crate::host::StreamState) -> bool| {
            let ctx = stream.hops[i].context_id;
            ctx != 0
                && filters[slots[i].vm]
                    .vm
                    .host_ref()
                    .stream_ref(ctx)
                    .is_some_and(pick)
        };
        let n = stream.hops.len();
        LogSources {
            request_headers: (0..n)
                .rev()
                .find(|&i| has(i, |s| s.request_headers.is_some())),
            response_headers: (0..n).find(|&i| has(i, |s| s.response_headers.is_some())),
            response_trailers: (0..n).find(|&i| has(i, |s| s.response_trailers.is_some())),
        }
    }

    /// The maps hop `i` must take from other hops (its own are already in
    /// place when it is the source).
    fn copies_for(
        &self,
        filters: &[Harness],
        slots: &[Slot],
        stream: &Stream,
        i: usize,
    ) -> Vec<(Field, Option<HeaderMap>)> {
        let mut copies = Vec::new();
        for (field, source) in [
            (Field::RequestHeaders, self.request_headers),
            (Field::ResponseHeaders, self.response_headers),
            (Field::ResponseTrailers, self.response_trailers),
        ] {
            // No source: no hop has the map, this one included, so there
            // is nothing to set (and a one-filter chain copies nothing).
            let Some(src) = source.filter(|src| *src != i) else {
                continue;
            };
            let ctx = stream.hops[src].context_id;
            let state = filters[slots[src].vm].vm.host_ref().stream_ref(ctx);
            let map = state.and_then(|s| match field {
                Field::RequestHeaders => s.request_headers.clone(),
                Field::ResponseHeaders => s.response_headers.clone(),
                _ => s.response_trailers.clone(),
            });
            copies.push((field, map));
        }
        copies
    }
}
