//! Envoy's filter manager for one worker: many HTTP streams live at once
//! on the worker's filter chain, each moving frame by frame.
//!
//! - Each stream has one [`Hop`] per filter; a filter's stream context is
//!   created when the first frame reaches it. Stream context ids come from
//!   the filter VM's one counter, so streams interleave their ids.
//! - Frames move the way Envoy iterates a chain: a frame a filter lets
//!   through goes on to the next filter before that filter takes its own
//!   next frame (request headers pass every filter before any body frame);
//!   a filter that pauses holds the filters after it, and only them.
//! - Nothing runs to completion: a stream paused on a callout or timer
//!   waits while others start, run and end; events (ticks, callout
//!   answers, queue notifications) are delivered in virtual-time order to
//!   the root context, and what the guest asks there (continue, local
//!   reply, close) is applied to the stream it names.
//! - A local reply from filter k stops the request everywhere; before the
//!   response started it runs the response path from the chain's far end
//!   (filters without a context pass it on), after that straight to the
//!   client (`reply::local_reply`).

mod capture;
mod connection;
mod downstream;
mod flow;
pub(crate) mod handles;
mod handout;
mod idle;
mod reply;
mod route;
mod spare;
mod stall;
mod streams;
mod teardown;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;

use crate::abi::StreamType;
use crate::backend::Callback;
use crate::driver::{Budget, EventKind, Harness};
use crate::host::filter_state::SharedFilterState;
use crate::host::{Deferred, Event, LocalReplySpec};
use crate::model::{Exchange, HttpProtocol, Outcome, Properties, StreamEnd, UpstreamResponse};

pub(crate) use capture::{outcomes, step_outcomes};
pub(crate) use connection::{
    Connection, exchange as connection_exchange, open as connect, outcomes as connection_outcomes,
};
pub use downstream::DEFAULT_ROUTE_TIMEOUT_MS;
use downstream::{UpstreamAnswer, format_uuid, is_grpc_request, request_header_map};
pub(crate) use flow::Hop;
use flow::{Dir, Frame, Sent, process, resume};
pub use handles::StreamInput;
pub use handout::{Forwarded, Leaving, QueuedBytes};
pub(crate) use handout::{queued_bytes, take_forwarded};
pub use idle::DEFAULT_STREAM_IDLE_TIMEOUT_MS;
use reply::{after_trap, local_reply, upstream_unreachable_reply, vm_already_failed};
pub(crate) use spare::Spare;
use stall::stall;
pub(crate) use streams::{Live, Streams};

/// A live stream, named by the caller (see [`crate::Envoy::open`]): the
/// worker it runs on and its number there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StreamHandle {
    worker: usize,
    id: u64,
}

impl StreamHandle {
    /// The worker (from 0) the stream runs on.
    pub fn worker(&self) -> usize {
        self.worker
    }
}

/// Where one position of a chain runs: which of the worker's VMs, and the
/// plugin's root context in it (plugins with equal VM keys share a VM).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slot {
    pub(crate) vm: usize,
    pub(crate) root: u32,
}

/// Each VM's own slot when no VM is shared (one plugin per VM, root 1).
#[cfg(test)]
pub(crate) fn own_slots(vms: &[Harness]) -> Vec<Slot> {
    vms.iter()
        .enumerate()
        .map(|(vm, h)| Slot {
            vm,
            root: h.vm.host_ref().root_context_id,
        })
        .collect()
}

/// One HTTP stream through the chain.
pub(crate) struct Stream {
    key: StreamHandle,
    pub(crate) hops: Vec<Hop>,
    /// The upstream's answer, sent when the whole request has reached it
    /// (`None`: not given yet, or already sent).
    pub(crate) upstream_answer: Option<UpstreamAnswer>,
    /// The upstream answered while the request was still reaching it: the
    /// response starts without waiting for the request's end.
    pub(crate) answered_early: bool,
    /// The client has more of the request to send ([`handles::send_request`]).
    pub(crate) request_open: bool,
    /// The upstream has more of its response to send ([`handles::send_response`]).
    pub(crate) upstream_open: bool,
    /// Upstream frames given before the response could start.
    upstream_later: VecDeque<Frame>,
    /// The upstream could not be reached: no request arrived there.
    upstream_refused: bool,
    pub(crate) response_started: bool,
    pub(crate) end: Option<StreamEnd>,
    pub(crate) is_grpc: bool,
    /// A HEAD request: local replies carry no body.
    pub(crate) is_head: bool,
    pub(crate) protocol: HttpProtocol,
    properties: Properties,
    /// The filter state every hop's context shares (only with two or
    /// more filters; a lone filter's context keeps its own).
    filter_state: Option<SharedFilterState>,
    start_ms: u64,
    pub(crate) elapsed_ms: u64,
    /// When the end of the request passed the last filter (reached the router).
    pub(crate) request_complete_ms: Option<u64>,
    /// Each hop keeps the log lines of its own context (streams a caller named).
    pub(crate) keep_logs: bool,
    /// The request was handed to a real upstream ([`take_upstream_requests`]).
    upstream_taken: bool,
    /// The route's timeout (0: none), and whether it fired.
    route_timeout_ms: u64,
    /// The stream idle timeout (0: none, or fired) and when the codec last
    /// moved the stream (see `idle`).
    idle_timeout_ms: u64,
    last_activity_ms: u64,
    upstream_timed_out: bool,
    /// The router's own answer ([`StreamInput::RouterReply`]), sent when
    /// the request has reached it.
    router_reply: Option<LocalReplySpec>,
    /// The caller carries the bodies (see `handout`): `Some` with what it
    /// took already.
    handout: Option<handout::HandedOut>,
}

/// What a stream runs until.
#[derive(Clone, Copy)]
pub(crate) enum Goal {
    /// The stream ends (virtual time jumps to each next event meanwhile).
    Ends(StreamHandle),
    /// Virtual time reaches this instant (everything due by then is delivered).
    Until(u64),
}

fn now(filters: &[Harness]) -> u64 {
    filters.iter().map(Harness::now_ms).max().unwrap_or(0)
}

fn sync(filters: &mut [Harness], at: u64) {
    for f in filters {
        f.sync_clock(at);
    }
}

/// How a stream opens.
pub(crate) struct Opening<'a> {
    /// The request (headers, and any body and trailers) and properties.
    pub(crate) exchange: &'a Exchange,
    /// The answer the upstream gives once the request has reached it, or
    /// `None` to wait for [`handles::respond`].
    pub(crate) upstream: Option<&'a UpstreamResponse>,
    /// False: the client sends more later ([`handles::send_request`]).
    pub(crate) request_ends: bool,
    /// Each hop keeps its own context's log lines (a stream a caller named).
    pub(crate) keep_logs: bool,
    /// The caller carries the bodies: it takes what leaves the chain as it
    /// passes, and no hop keeps a copy (see `handout`).
    pub(crate) carried: bool,
}

/// Opens a stream with the request queued for the first filter. Nothing
/// runs until [`run`].
pub(crate) fn open(
    filters: &mut [Harness],
    slots: &[Slot],
    streams: &mut Streams,
    opening: Opening<'_>,
) -> StreamHandle {
    let Opening {
        exchange,
        upstream,
        request_ends,
        keep_logs,
        carried,
    } = opening;
    let key = streams.new_key();
    let mut random = [0u8; 16];
    if let Some(first) = filters.first_mut() {
        first.vm.host().fill_random(&mut random);
    }
    let map = streams.spare.header_map();
    let headers = request_header_map(&exchange.request, &format_uuid(&random), map);
    // Framed now (the stream opens with the upstream closed), so the
    // answer is never copied whole.
    let upstream = upstream.map(|a| {
        let (frames, map) = (streams.spare.queue(), streams.spare.header_map());
        UpstreamAnswer::framed_into(a, true, exchange.request.protocol, frames, map)
    });
    let req = &exchange.request;
    let mut hops = streams.spare.hop_list();
    hops.extend(slots.iter().map(|slot| {
        let mut hop = Hop {
            root: slot.root,
            ..Hop::default()
        };
        hop.req.input = streams.spare.queue();
        hop
    }));
    let is_grpc = is_grpc_request(&headers);
    let is_head = headers.get(b":method") == Some(&b"HEAD"[..]);
    if let Some(first) = hops.first_mut() {
        let eos = request_ends && req.body.is_empty() && req.trailers.is_none();
        first
            .req
            .input
            .push_back(Frame::Headers { map: headers, eos });
        if !eos {
            let input = &mut first.req.input;
            downstream::body_frames(
                &req.body,
                req.trailers.as_ref(),
                request_ends,
                req.protocol,
                input,
            );
        }
    }
    streams.carrying |= carried;
    streams.live.http.push(Stream {
        key,
        hops,
        upstream_answer: upstream,
        answered_early: false,
        request_open: !request_ends && req.trailers.is_none(),
        upstream_open: false,
        upstream_later: VecDeque::new(),
        upstream_refused: false,
        response_started: false,
        end: None,
        is_grpc,
        is_head,
        protocol: req.protocol,
        properties: exchange.properties.clone(),
        filter_state: (slots.len() > 1).then(SharedFilterState::default),
        start_ms: now(filters),
        elapsed_ms: 0,
        request_complete_ms: None,
        keep_logs,
        upstream_taken: false,
        idle_timeout_ms: filters
            .first()
            .map_or(0, |f| f.vm.host_ref().stream_idle_timeout_ms),
        last_activity_ms: now(filters),
        route_timeout_ms: filters.first().map_or(DEFAULT_ROUTE_TIMEOUT_MS, |f| {
            f.vm.host_ref().route_timeout_ms
        }),
        upstream_timed_out: false,
        router_reply: None,
        handout: carried.then(handout::HandedOut::default),
    });
    key
}

/// Runs the worker until `goal` is met: streams move, events are delivered
/// in time order, ended streams are torn down.
pub(crate) fn run(filters: &mut [Harness], slots: &[Slot], streams: &mut Streams, goal: Goal) {
    let mut blocked_since = now(filters);
    let mut budget = budget_of(filters);
    loop {
        drive_all(filters, slots, streams);
        teardown::close_ended(filters, slots, streams);
        if let Goal::Ends(key) = goal
            && !streams.is_live(key)
        {
            return;
        }
        if deliver_queue_notifications(filters, slots, streams, &mut budget) {
            streams.mark_carried_moved();
            continue;
        }
        for f in filters.iter_mut() {
            f.skip_stale_events();
        }
        let next = filters
            .iter()
            .enumerate()
            .filter_map(|(i, f)| f.next_event_at().map(|at| (at, i)))
            .min();
        // Route and idle timeouts are the worker's own events. An idle
        // timeout with nothing else pending is left to the stall report
        // below, which says why the stream waits (Envoy would answer it
        // with the idle timeout's 408).
        let stalling = next.is_none() && matches!(goal, Goal::Ends(_));
        if let Some((at, k, which)) = streams.next_deadline()
            && next.is_none_or(|(vm_at, _)| at <= vm_at)
            && !(stalling && which == idle::Timeout::Idle)
        {
            if let Goal::Until(t) = goal
                && at > t
            {
                sync(filters, t);
                return;
            }
            sync(filters, now(filters).max(at));
            match which {
                idle::Timeout::Route => route::time_out(filters, slots, streams, k),
                idle::Timeout::Idle => idle::time_out(filters, slots, streams, k),
            }
            streams.mark_carried_moved();
            continue;
        }
        let Some((at, i)) = next else {
            match goal {
                Goal::Ends(key) => {
                    let held = filters.iter().any(|f| f.vm.host_ref().has_held_http());
                    let why = if held {
                        "only held callouts are pending (an `answer` step answers them)"
                    } else if filters.iter().any(|f| f.failure.is_some()) {
                        "no event is pending: a VM of this chain failed, and Envoy drops the \
                         callout answers, ticks and queue notifications of a failed VM (in \
                         Envoy this stream waits for the stream idle timeout, 5 min by default, \
                         and gets 408)"
                    } else {
                        "no callout, timer or queue event is pending"
                    };
                    stall(streams, key, why);
                    continue;
                }
                Goal::Until(t) => {
                    sync(filters, t);
                    return;
                }
            }
        };
        match goal {
            Goal::Until(t) if at > t => {
                sync(filters, t);
                return;
            }
            Goal::Ends(key) => {
                let ticks_only = !filters.iter().any(|f| f.vm.host_ref().has_non_tick_event());
                let timeout = filters[i].vm.host_ref().stall_timeout_ms;
                if ticks_only && at.saturating_sub(blocked_since) > timeout {
                    let why = format!(
                        "only timer ticks were pending for {timeout} virtual ms (stall_timeout_ms)"
                    );
                    stall(streams, key, &why);
                    continue;
                }
            }
            Goal::Until(_) => {}
        }
        let Some(ev) = filters[i].vm.host().pop_event() else {
            continue;
        };
        if let Some(report) = budget.spend(EventKind::of(&ev.event), ev.root) {
            filters[i].fail_vm(report);
            after_callback(&mut filters[i], i, slots, &mut streams.live);
            streams.mark_carried_moved();
            continue;
        }
        let t = now(filters).max(ev.at_ms);
        sync(filters, t);
        if !matches!(ev.event, Event::Tick { .. }) {
            blocked_since = t;
        }
        let live = &mut streams.live;
        filters[i].deliver(ev, &mut |f| after_callback(f, i, slots, live));
        // A callback outside a stream's own frames (a callout answer, a
        // tick) can move any stream of the VM without a frame running.
        streams.mark_carried_moved();
    }
}

fn deliver_queue_notifications(
    filters: &mut [Harness],
    slots: &[Slot],
    streams: &mut Streams,
    budget: &mut Budget,
) -> bool {
    let mut any = false;
    for (v, f) in filters.iter_mut().enumerate() {
        let live = &mut streams.live;
        any |= f.deliver_queue_notifications(&mut |f| after_callback(f, v, slots, live), budget);
    }
    any
}

/// One step's event-loop budget: the tightest bounds among the worker's VMs.
fn budget_of(filters: &[Harness]) -> Budget {
    let bound = |f: fn(&Harness) -> u64| filters.iter().map(f).min().unwrap_or(u64::MAX);
    Budget::new(
        bound(|h| h.vm.host_ref().max_events_per_step),
        bound(|h| h.vm.host_ref().step_wall_budget_ms),
    )
}

/// Moves every live stream as far as it can go without time passing.
fn drive_all(filters: &mut [Harness], slots: &[Slot], streams: &mut Streams) {
    loop {
        let mut progressed = false;
        for k in 0..streams.live.http.len() {
            progressed |= drive(filters, slots, streams, k);
        }
        for k in 0..streams.live.tcp.len() {
            progressed |= connection::drive(filters, slots, &mut streams.live, k);
        }
        if !progressed {
            return;
        }
    }
}

/// Moves stream `k` frame by frame until it ends or waits; true if
/// anything ran (the stream is then marked as moved).
fn drive(filters: &mut [Harness], slots: &[Slot], streams: &mut Streams, k: usize) -> bool {
    let key = streams.live.http[k].key;
    let progressed = drive_frames(filters, slots, streams, k);
    if progressed {
        streams.mark_moved(key);
    }
    progressed
}

fn drive_frames(filters: &mut [Harness], slots: &[Slot], streams: &mut Streams, k: usize) -> bool {
    let mut progressed = false;
    loop {
        let stream = &mut streams.live.http[k];
        if stream.end.is_some() {
            return progressed;
        }
        let n = stream.hops.len();
        // The request frame furthest along the chain goes first.
        let next = match (0..n).rev().find(|&i| stream.hops[i].req.has_work()) {
            Some(i) => Some((i, Dir::Request)),
            None if !stream.response_started
                && (stream.hops[n - 1].request_done || stream.answered_early) =>
            {
                if !start_response(&mut filters[slots[n - 1].vm], stream) {
                    return progressed;
                }
                progressed = true;
                continue;
            }
            None => (0..n)
                .find(|&i| stream.hops[i].resp.has_work())
                .map(|i| (i, Dir::Response)),
        };
        let Some((i, dir)) = next else {
            if stream.hops[0].resp.ended {
                stream.end = Some(StreamEnd::Completed);
                continue;
            }
            return progressed;
        };
        progressed = true;
        let v = slots[i].vm;
        if stream.hops[i].context_id == 0 {
            create_context(&mut filters[v], stream, i);
            after_callback(&mut filters[v], v, slots, &mut streams.live);
            continue;
        }
        let Some(frame) = stream.hops[i].flow(dir).input.pop_front() else {
            continue;
        };
        process(&mut filters[v], stream, i, dir, frame);
        after_callback(&mut filters[v], v, slots, &mut streams.live);
    }
}

/// The upstream answers the request that reached it; false while no answer is given.
fn start_response(last: &mut Harness, stream: &mut Stream) -> bool {
    let n = stream.hops.len();
    if let Some(reply) = stream.router_reply.take() {
        local_reply(last, stream, n - 1, reply, "harness", false);
        return true;
    }
    let Some(answer) = stream.upstream_answer.take() else {
        return false;
    };
    match answer {
        UpstreamAnswer::Unreachable => {
            // The request never reached a live upstream: the router (after
            // the last filter) answers, before any response started.
            stream.upstream_refused = true;
            local_reply(
                last,
                stream,
                n - 1,
                upstream_unreachable_reply(),
                "harness",
                false,
            );
        }
        UpstreamAnswer::Frames(mut frames) => {
            stream.response_started = true;
            // A response before the request was complete gets no service time.
            if let Some(at) = stream.request_complete_ms {
                downstream::add_service_time(&mut frames, last.now_ms().saturating_sub(at));
            }
            let input = &mut stream.hops[n - 1].resp.input;
            if input.is_empty() {
                std::mem::swap(input, &mut frames);
            } else {
                input.append(&mut frames);
            }
            input.append(&mut stream.upstream_later);
        }
    }
    true
}

/// Creates filter `i`'s stream context (on_context_create), or applies the
/// failure policy when its VM has already failed.
fn create_context(filter: &mut Harness, stream: &mut Stream, i: usize) {
    let root = stream.hops[i].root;
    let id = teardown::new_stream_context(filter, root, stream);
    stream.hops[i].context_id = id;
    if filter.failure.is_some() {
        vm_already_failed(filter, stream, i);
        return;
    }
    let created = filter.invoke(Callback::ContextCreate {
        context_id: id,
        parent_id: root,
    });
    if created.is_none() {
        after_trap(filter, stream, i);
    }
}

/// After any callback into VM `v`: the stream actions it asked for,
/// applied to the stream hop whose context they name (any position the VM
/// serves), and the failure policy for every stream on a VM that just failed.
fn after_callback(filter: &mut Harness, v: usize, slots: &[Slot], live: &mut Live) {
    let on_vm = |i: &usize| slots.get(*i).is_some_and(|s| s.vm == v);
    let actions = std::mem::take(&mut filter.vm.host().deferred);
    for action in actions {
        let ctx = action.context_id();
        if connection::apply_deferred(filter, &on_vm, &mut live.tcp, &action) {
            continue;
        }
        let found = live
            .http
            .iter_mut()
            .filter(|s| s.end.is_none())
            .find_map(|s| {
                let i = (0..s.hops.len())
                    .filter(on_vm)
                    .find(|&i| s.hops[i].context_id == ctx)?;
                Some((s, i))
            });
        let Some((stream, i)) = found else {
            continue;
        };
        match action {
            Deferred::Continue { stream: dir, .. } => match dir {
                StreamType::HttpRequest => resume(filter, stream, i, Dir::Request),
                StreamType::HttpResponse => resume(filter, stream, i, Dir::Response),
                _ => {}
            },
            Deferred::Close { .. } => stream.end = Some(StreamEnd::Reset),
            Deferred::LocalReply { reply, .. } => {
                local_reply(filter, stream, i, reply, "filter", false);
            }
        }
    }
    // Other streams and connections on a VM that just failed meet the
    // failure when they next call into it (flow::stream_callback,
    // connection::flow::callback); until then they wait.
}

/// Requests that passed the whole chain on streams opened without an
/// upstream answer, each handed out once: what the router would send to
/// the upstream (for a caller with a real one). Carried streams hand
/// their request out as it passes instead ([`take_forwarded`]).
pub(crate) fn take_upstream_requests(
    streams: &mut Streams,
) -> Vec<(StreamHandle, crate::model::HttpMessage)> {
    let mut ready = Vec::new();
    for s in &mut streams.live.http {
        let Some(last) = s.hops.last() else { continue };
        let waiting = last.request_done && !s.response_started && s.upstream_answer.is_none();
        let handed = s.upstream_taken || s.handout.is_some();
        if waiting && !handed && !s.upstream_refused && s.end.is_none() {
            s.upstream_taken = true;
            ready.push((
                s.key,
                last.sent_request
                    .as_ref()
                    .map(Sent::to_message)
                    .unwrap_or_default(),
            ));
        }
    }
    ready
}

/// Runs one exchange to its end; each chain position's outcome, in order.
pub(crate) fn exchange(
    filters: &mut [Harness],
    slots: &[Slot],
    streams: &mut Streams,
    exchange: &Exchange,
) -> Vec<Outcome> {
    for f in filters.iter_mut() {
        f.begin_exchange();
    }
    sync(filters, now(filters));
    let opening = Opening {
        exchange,
        upstream: Some(&exchange.upstream),
        request_ends: true,
        keep_logs: false,
        carried: false,
    };
    let key = open(filters, slots, streams, opening);
    run(filters, slots, streams, Goal::Ends(key));
    match streams.take_finished(key) {
        Some(mut stream) => {
            let list = streams.take_outcome_list();
            let outs = outcomes(filters, slots, streams, &mut stream, list);
            streams.recycle(stream);
            outs
        }
        None => Vec::new(),
    }
}

/// Advances virtual time by `ms`: ticks, callout answers and queue
/// notifications due in that window, and whatever streams they move.
pub(crate) fn advance(
    filters: &mut [Harness],
    slots: &[Slot],
    streams: &mut Streams,
    ms: u64,
) -> Vec<Outcome> {
    for f in filters.iter_mut() {
        f.begin_capture();
    }
    let target = now(filters).saturating_add(ms);
    run(filters, slots, streams, Goal::Until(target));
    step_outcomes(filters, slots, streams, StreamEnd::NoStream, ms)
}
