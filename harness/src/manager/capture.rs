//! Each chain position's share of what its VM observed. A VM serving one
//! position gives it the whole capture; a VM shared by several positions
//! (one VM key) splits it by context: a log line, callout record or
//! callback trace (with the hostcalls it made) goes to the position whose
//! root or stream context it belongs to, anything without one to the VM's
//! first position. Hostcall counts stay with the first position (they are
//! counted per VM); metrics are process-wide, so each position gets them.

use crate::driver::Harness;
use crate::model::{DownstreamResponse, HttpMessage, Outcome, StreamEnd, TraceEvent};

use super::flow::Sent;
use super::{Slot, Stream, Streams};

/// Which position a context of a VM belongs to.
pub(crate) struct Owners<'a> {
    slots: &'a [Slot],
    /// The context ids, by position, of every stream and connection whose
    /// contexts may appear in the capture.
    streams: Vec<Vec<u32>>,
}

impl<'a> Owners<'a> {
    /// The owners of the contexts of `streams` (and of `also`, the context
    /// ids of a stream just taken out); no stream is looked at when every
    /// VM serves one position (nothing to split).
    pub(crate) fn new(
        slots: &'a [Slot],
        streams: &Streams,
        also: impl IntoIterator<Item = u32>,
    ) -> Self {
        let shared = (1..slots.len()).any(|i| slots[..i].iter().any(|s| s.vm == slots[i].vm));
        let streams = if shared {
            streams.context_lists(also.into_iter().collect())
        } else {
            Vec::new()
        };
        Owners { slots, streams }
    }

    fn of(&self, vm: usize, ctx: u32) -> Option<usize> {
        let on_vm = |p: &usize| self.slots[*p].vm == vm;
        if let Some(p) = (0..self.slots.len())
            .filter(on_vm)
            .find(|&p| self.slots[p].root == ctx)
        {
            return Some(p);
        }
        self.streams.iter().find_map(|ids| {
            (0..ids.len().min(self.slots.len()))
                .filter(on_vm)
                .find(|&p| ids[p] == ctx)
        })
    }
}

/// Fills each position's outcome (`outs`, one per slot, with its context
/// id set) with its share of its VM's capture since the step began.
pub(crate) fn capture_into(
    filters: &mut [Harness],
    owners: &Owners<'_>,
    outs: &mut [Outcome],
    end: &StreamEnd,
    elapsed_ms: u64,
) {
    let slots = owners.slots;
    for (vm, filter) in filters.iter_mut().enumerate() {
        let on_vm = |p: &usize| slots[*p].vm == vm;
        let Some(first) = (0..slots.len()).find(on_vm) else {
            continue;
        };
        let capture = filter.finish_capture(outs[first].context_id, Some(end.clone()), elapsed_ms);
        // The common case, one position per VM, allocates nothing here.
        if !(first + 1..slots.len()).any(|p| on_vm(&p)) {
            outs[first] = capture;
            continue;
        }
        let positions: Vec<usize> = (first..slots.len()).filter(on_vm).collect();
        let owner = |ctx: u32| owners.of(vm, ctx).unwrap_or(first);
        split(capture, first, &positions, owner, outs);
    }
}

/// Each chain position's outcome of an ended stream: what the position's
/// filter let through, and its share of the capture since the step began
/// (see `capture`). The hops' messages move into the outcomes (the stream
/// is done with them), in `outs` (empty; a kept list's room is reused).
pub(crate) fn outcomes(
    filters: &mut [Harness],
    slots: &[Slot],
    streams: &Streams,
    stream: &mut Stream,
    mut outs: Vec<Outcome>,
) -> Vec<Outcome> {
    let end = stream.end.clone().unwrap_or_default();
    outs.extend(stream.hops.iter().map(|hop| Outcome {
        context_id: hop.context_id,
        ..Outcome::default()
    }));
    let ids = stream.hops.iter().map(|h| h.context_id);
    let owners = Owners::new(slots, streams, ids);
    capture_into(filters, &owners, &mut outs, &end, stream.elapsed_ms);
    let last = stream.hops.len().saturating_sub(1);
    let reset = matches!(end, StreamEnd::Reset);
    for (i, (outcome, hop)) in outs.iter_mut().zip(stream.hops.iter_mut()).enumerate() {
        // A lean caller reads what left the chain as it left (serve's
        // hand-out), so its outcome keeps only the status: no copy of the
        // messages in the model's form.
        let lean = slots.get(i).is_some_and(|s| filters[s.vm].lean);
        outcome.response = match (&end, hop.sent_response.as_ref()) {
            (StreamEnd::Stalled { .. }, _) | (_, None) => None,
            (_, Some(sent)) => Some(DownstreamResponse {
                status: sent.status(),
                // A lean caller gets the status alone; the response stays
                // in the hop, whose maps the next stream reuses
                // (`Streams::recycle`).
                message: if lean {
                    HttpMessage::default()
                } else {
                    hop.sent_response
                        .take()
                        .map(Sent::into_message)
                        .unwrap_or_default()
                },
                reset,
            }),
        };
        // A request cut short (local reply, reset, stall) never completed upstream.
        let refused = stream.upstream_refused && i == last;
        outcome.upstream_request = if hop.request_done && !refused && !lean {
            hop.sent_request.take().map(Sent::into_message)
        } else {
            None
        };
        outcome.local_reply = hop.local_reply.take();
    }
    outs
}

/// Each position's share of the capture for a step with no stream of its own.
pub(crate) fn step_outcomes(
    filters: &mut [Harness],
    slots: &[Slot],
    streams: &Streams,
    end: StreamEnd,
    elapsed_ms: u64,
) -> Vec<Outcome> {
    let mut outs = vec![Outcome::default(); slots.len()];
    let owners = Owners::new(slots, streams, std::iter::empty());
    capture_into(filters, &owners, &mut outs, &end, elapsed_ms);
    outs
}

fn split(
    mut capture: Outcome,
    first: usize,
    positions: &[usize],
    owner: impl Fn(u32) -> usize,
    outs: &mut [Outcome],
) {
    for &p in positions {
        let base = &mut outs[p];
        base.end = capture.end.clone();
        base.elapsed_ms = capture.elapsed_ms;
        base.metrics = capture.metrics.clone();
    }
    for line in std::mem::take(&mut capture.logs) {
        outs[owner(line.context_id)].logs.push(line);
    }
    for call in std::mem::take(&mut capture.http_calls) {
        outs[owner(call.context_id)].http_calls.push(call);
    }
    for call in std::mem::take(&mut capture.grpc_calls) {
        outs[owner(call.context_id)].grpc_calls.push(call);
    }
    // Hostcalls follow the callback that made them.
    let mut current = first;
    for event in std::mem::take(&mut capture.trace) {
        if let TraceEvent::Callback { args, .. } = &event {
            current = args
                .first()
                .and_then(|a| u32::try_from(*a).ok())
                .map_or(first, &owner);
        }
        outs[current].trace.push(event);
    }
    if let Some(trap) = capture.trap.take() {
        let at = owner(trap.context_id);
        outs[at].trap = Some(trap);
    }
    let base = &mut outs[first];
    base.hostcalls = std::mem::take(&mut capture.hostcalls);
    base.failure_policy = capture.failure_policy.take();
}
