//! The end of a stream: each filter's on_log, on_done and on_delete in
//! chain order (a filter the request never reached gets its context at
//! access-log time, as Envoy's Wasm filter creates it in `Context::log`),
//! then whatever became due for the root context.

use crate::backend::Callback;
use crate::driver::Harness;
use crate::host::properties::PropertyStore;
use crate::model::Properties;

use super::{Slot, Stream, Streams, after_callback, now};

/// A new stream context id in `filter`'s VM, with its host-side state.
pub(crate) fn new_stream_context(filter: &mut Harness, root: u32, properties: &Properties) -> u32 {
    let host = filter.vm.host();
    let id = host.next_context_id;
    host.next_context_id += 1;
    host.open_stream(id, root);
    if !properties.is_empty()
        && let Some(s) = host.stream_mut(id)
    {
        s.properties = PropertyStore::from_properties(properties);
    }
    id
}

/// Tears down every live stream that has ended and keeps its record.
pub(crate) fn close_ended(filters: &mut [Harness], slots: &[Slot], streams: &mut Streams) {
    while let Some(at) = streams.live.iter().position(|s| s.end.is_some()) {
        let mut stream = streams.live.remove(at);
        stream.elapsed_ms = now(filters).saturating_sub(stream.start_ms);
        for (i, slot) in slots.iter().enumerate() {
            close_hop(
                &mut filters[slot.vm],
                slot.vm,
                slots,
                &mut stream,
                i,
                &mut streams.live,
            );
        }
        streams.finished.push(stream);
    }
}

fn close_hop(
    filter: &mut Harness,
    v: usize,
    slots: &[Slot],
    stream: &mut Stream,
    i: usize,
    live: &mut [Stream],
) {
    if stream.hops[i].context_id == 0 {
        let root = stream.hops[i].root;
        let id = new_stream_context(filter, root, &stream.properties);
        stream.hops[i].context_id = id;
        if filter.failure.is_none() {
            filter.invoke(Callback::ContextCreate {
                context_id: id,
                parent_id: root,
            });
        }
    }
    let id = stream.hops[i].context_id;
    if !stream.hops[i].bypass && filter.failure.is_none() {
        for cb in [
            Callback::Log { context_id: id },
            Callback::Done { context_id: id },
            Callback::Delete { context_id: id },
        ] {
            if filter.invoke(cb).is_none() {
                break;
            }
        }
    }
    let host = filter.vm.host();
    // What the ended stream still asked for has nothing left to act on.
    host.deferred.retain(|d| d.context_id() != id);
    host.cancel_callouts_of(id);
    host.drop_stream(id);
    after_callback(filter, v, slots, live);
    filter.deliver_due_root_events(&mut |f| after_callback(f, v, slots, live));
}
