//! One filter's part of an HTTP stream: the frames waiting for it in each
//! direction, Envoy's iteration state, and what it let through.
//!
//! A headers Pause is StopAllIteration (nothing more reaches the filter
//! until it continues), a body Pause is StopIterationAndBuffer (the next
//! chunk is appended and the filter sees the whole buffer). What the filter
//! forwards goes on as frames to the next filter in that direction (the one
//! after it for the request, before it for the response), or to the
//! upstream / the client at the ends of the chain.

use std::collections::VecDeque;

use crate::abi::Action;
use crate::backend::Callback;
use crate::driver::Harness;
use crate::host::{Deferred, Field, Gone, HeaderMap};
use crate::model::{ByteString, HttpMessage, LocalReply, LogEntry};

use super::reply::{after_trap, buffer_overflow, vm_already_failed};
use super::{Stream, downstream};

/// One frame of a message, in one direction.
pub(crate) enum Frame {
    Headers { map: HeaderMap, eos: bool },
    Data { chunk: Vec<u8>, eos: bool },
    Trailers { map: HeaderMap },
}

/// The request (decoder) or response (encoder) direction.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Dir {
    Request,
    Response,
}

impl Dir {
    /// The direction's headers, body and trailers fields.
    fn fields(self) -> [Field; 3] {
        Field::of_direction(self == Dir::Request)
    }
}

/// The filter's access to `field` of context `ctx` (see host/fields.rs):
/// granted while its callback runs, kept while the filter pauses on it,
/// withdrawn when the callback returns Continue.
fn reach(filter: &mut Harness, ctx: u32, field: Field, granted: bool) {
    if let Some(s) = filter.vm.host().stream_mut(ctx) {
        if granted {
            s.reach.grant(field);
        } else {
            s.reach.withdraw(field, Gone::Continued);
        }
    }
}

/// One direction of one filter's part of the stream.
#[derive(Default)]
pub(crate) struct Flow {
    pub(crate) input: VecDeque<Frame>,
    /// Headers returned Pause: StopAllIteration until continued.
    pub(crate) stopped_all: bool,
    pub(crate) headers_eos: bool,
    /// Body returned Pause: StopIterationAndBuffer.
    pub(crate) body_paused: bool,
    /// Body paused on the last chunk: only a continue can end it.
    pub(crate) waiting_at_end: bool,
    pub(crate) trailers_paused: bool,
    /// End of stream passed the filter.
    pub(crate) ended: bool,
}

impl Flow {
    fn can_process(&self) -> bool {
        !self.stopped_all && !self.waiting_at_end && !self.trailers_paused && !self.ended
    }

    /// A frame is waiting and the filter may take it now.
    pub(crate) fn has_work(&self) -> bool {
        self.can_process() && !self.input.is_empty()
    }

    /// Stops this direction for good (a local reply or reset ended it).
    pub(crate) fn stop(&mut self) {
        *self = Flow {
            ended: true,
            ..Flow::default()
        };
    }
}

/// One filter's part of one stream.
#[derive(Default)]
pub(crate) struct Hop {
    /// The stream context id in this filter's VM; 0 until the first frame
    /// reaches the filter (Envoy creates the Wasm context lazily).
    pub(crate) context_id: u32,
    /// The filter's root context (its plugin) in that VM.
    pub(crate) root: u32,
    pub(crate) req: Flow,
    pub(crate) resp: Flow,
    /// The filter is bypassed (fail_open after a trap).
    pub(crate) bypass: bool,
    /// The VM failed while this stream used it (policy already applied).
    pub(crate) failed: bool,
    /// What this filter let through towards the upstream.
    pub(crate) sent_request: Option<Sent>,
    /// The request's end of stream passed this filter.
    pub(crate) request_done: bool,
    /// What this filter let through towards the client.
    pub(crate) sent_response: Option<Sent>,
    /// The local reply this filter sent (or the harness sent for it).
    pub(crate) local_reply: Option<LocalReply>,
    /// Log lines of this context so far (for streams that keep them).
    pub(crate) logs: Vec<LogEntry>,
}

impl Hop {
    pub(crate) fn flow(&mut self, dir: Dir) -> &mut Flow {
        match dir {
            Dir::Request => &mut self.req,
            Dir::Response => &mut self.resp,
        }
    }

    fn sent(&mut self, dir: Dir) -> &mut Sent {
        let slot = match dir {
            Dir::Request => &mut self.sent_request,
            Dir::Response => &mut self.sent_response,
        };
        slot.get_or_insert_with(Sent::default)
    }
}

/// What a filter let through in one direction, kept in the host's form: a
/// header map copies as two buffers whatever it holds, where the model's
/// headers cost two allocations a pair. It becomes an [`HttpMessage`] only
/// when something reads it (an outcome, a hand-out to serve).
#[derive(Clone, Default)]
pub(crate) struct Sent {
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
    pub(crate) trailers: Option<HeaderMap>,
}

impl Sent {
    /// The `:status` it carries (0 when missing or malformed).
    pub(crate) fn status(&self) -> u16 {
        crate::model::parse_status(self.headers.get(b":status"))
    }

    /// A copy in the model's form.
    pub(crate) fn to_message(&self) -> HttpMessage {
        self.message_with(self.body.clone())
    }

    /// The same, taking the body rather than copying it.
    pub(crate) fn into_message(mut self) -> HttpMessage {
        let body = std::mem::take(&mut self.body);
        self.message_with(body)
    }

    fn message_with(&self, body: Vec<u8>) -> HttpMessage {
        HttpMessage {
            headers: self.headers.to_headers(),
            body: ByteString(body),
            trailers: self.trailers.as_ref().map(HeaderMap::to_headers),
        }
    }
}

/// The filter a frame forwarded by filter `i` goes to next, if any.
pub(crate) fn next_hop(stream: &Stream, i: usize, dir: Dir) -> Option<usize> {
    match dir {
        Dir::Request => (i + 1 < stream.hops.len()).then_some(i + 1),
        Dir::Response => i.checked_sub(1),
    }
}

/// Calls a stream callback; `None` when the stream must not go on
/// (trap without fail_open: the 503 is already applied).
fn stream_callback(
    filter: &mut Harness,
    stream: &mut Stream,
    i: usize,
    cb: Callback,
) -> Option<Action> {
    // A bypassed filter (fail_open) or one whose fail-closed reply is in
    // flight lets frames pass without calling into its failed VM.
    if stream.hops[i].bypass || stream.hops[i].failed {
        return Some(Action::Continue);
    }
    // The VM failed since this stream last called into it: the stream
    // meets the failure now, before any call (CHECK_FAIL_HTTP at the top of
    // proxy-wasm-cpp-host's ContextBase::onRequestHeaders and the other
    // stream callbacks, src/context.cc).
    if filter.failure.is_some() {
        vm_already_failed(filter, stream, i);
        return stream.hops[i].bypass.then_some(Action::Continue);
    }
    let ctx = stream.hops[i].context_id;
    match filter.invoke(cb) {
        Some(v) => {
            // send_local_response forces the running callback to stop.
            let forced_stop = filter.vm.host_ref().deferred.iter().any(
                |d| matches!(d, Deferred::LocalReply { context_id, .. } if *context_id == ctx),
            );
            let headers = matches!(
                cb,
                Callback::RequestHeaders { .. } | Callback::ResponseHeaders { .. }
            );
            Some(if forced_stop {
                Action::Pause
            } else if headers {
                Action::from_headers_raw(v)
            } else {
                Action::from_raw(v)
            })
        }
        None => {
            after_trap(filter, stream, i);
            stream.hops[i].bypass.then_some(Action::Continue)
        }
    }
}

/// Filter `i` takes one frame of direction `dir`.
pub(crate) fn process(filter: &mut Harness, stream: &mut Stream, i: usize, dir: Dir, frame: Frame) {
    let id = stream.hops[i].context_id;
    match frame {
        Frame::Headers { map, eos } => {
            let n = map.len() as u64;
            if let Some(s) = filter.vm.host().stream_mut(id) {
                match dir {
                    Dir::Request => s.request_headers = Some(map),
                    Dir::Response => s.response_headers = Some(map),
                }
            }
            let [headers_field, _, _] = dir.fields();
            reach(filter, id, headers_field, true);
            let cb = match dir {
                Dir::Request => Callback::RequestHeaders {
                    context_id: id,
                    headers: n,
                    end_of_stream: eos,
                },
                Dir::Response => Callback::ResponseHeaders {
                    context_id: id,
                    headers: n,
                    end_of_stream: eos,
                },
            };
            let Some(action) = stream_callback(filter, stream, i, cb) else {
                return;
            };
            let flow = stream.hops[i].flow(dir);
            flow.headers_eos = eos;
            match action {
                Action::Continue => {
                    reach(filter, id, headers_field, false);
                    forward_headers(filter, stream, i, dir, eos);
                }
                Action::Pause => flow.stopped_all = true,
            }
        }
        Frame::Data { chunk, eos } => {
            let size = {
                let Some(s) = filter.vm.host().stream_mut(id) else {
                    return;
                };
                let (buf, count) = match dir {
                    Dir::Request => (&mut s.request_body, &mut s.request_body_bytes),
                    Dir::Response => (&mut s.response_body, &mut s.response_body_bytes),
                };
                *count += chunk.len() as u64;
                if buf.is_empty() {
                    *buf = chunk;
                } else {
                    buf.extend_from_slice(&chunk);
                }
                buf.len() as u64
            };
            let [_, body_field, trailers_field] = dir.fields();
            reach(filter, id, body_field, true);
            let cb = match dir {
                Dir::Request => Callback::RequestBody {
                    context_id: id,
                    size,
                    end_of_stream: eos,
                },
                Dir::Response => Callback::ResponseBody {
                    context_id: id,
                    size,
                    end_of_stream: eos,
                },
            };
            let was_buffering = stream.hops[i].flow(dir).body_paused;
            let Some(action) = stream_callback(filter, stream, i, cb) else {
                return;
            };
            // Envoy moves a chunk into the filter's buffer when the filter
            // buffers it, or continues after buffering: that buffer is limited.
            let buffered = action == Action::Pause || was_buffering;
            let limit = filter.vm.host_ref().buffer_limit;
            if buffered
                && !stream.hops[i].bypass
                && buffer_len(filter, id, dir) > limit
                && !has_pending_local_reply(filter, id)
            {
                buffer_overflow(filter, stream, i, dir);
            } else {
                match action {
                    Action::Continue => {
                        // Trailers created on demand in this callback go with the body.
                        reach(filter, id, body_field, false);
                        reach(filter, id, trailers_field, false);
                        stream.hops[i].flow(dir).body_paused = false;
                        forward_body(filter, stream, i, dir, eos);
                    }
                    Action::Pause => {
                        let flow = stream.hops[i].flow(dir);
                        flow.body_paused = true;
                        flow.waiting_at_end = eos;
                    }
                }
            }
        }
        Frame::Trailers { map } => {
            let n = map.len() as u64;
            if let Some(s) = filter.vm.host().stream_mut(id) {
                match dir {
                    Dir::Request => s.request_trailers = Some(map),
                    Dir::Response => s.response_trailers = Some(map),
                }
            }
            let [_, _, trailers_field] = dir.fields();
            reach(filter, id, trailers_field, true);
            let cb = match dir {
                Dir::Request => Callback::RequestTrailers {
                    context_id: id,
                    trailers: n,
                },
                Dir::Response => Callback::ResponseTrailers {
                    context_id: id,
                    trailers: n,
                },
            };
            let Some(action) = stream_callback(filter, stream, i, cb) else {
                return;
            };
            match action {
                Action::Continue => {
                    reach(filter, id, trailers_field, false);
                    forward_trailers(filter, stream, i, dir);
                }
                Action::Pause => stream.hops[i].flow(dir).trailers_paused = true,
            }
        }
    }
}

fn has_pending_local_reply(filter: &Harness, ctx: u32) -> bool {
    filter
        .vm
        .host_ref()
        .deferred
        .iter()
        .any(|d| matches!(d, Deferred::LocalReply { context_id, .. } if *context_id == ctx))
}

fn buffer_len(filter: &Harness, ctx: u32, dir: Dir) -> u64 {
    filter
        .vm
        .host_ref()
        .stream_ref(ctx)
        .map_or(0, |s| match dir {
            Dir::Request => s.request_body.len() as u64,
            Dir::Response => s.response_body.len() as u64,
        })
}

/// Marks the end of stream passing filter `i` in `dir`; the request's end
/// passing the last filter is the moment the router has it all.
fn end_passed(filter: &Harness, stream: &mut Stream, i: usize, dir: Dir) {
    if dir == Dir::Request && i + 1 == stream.hops.len() {
        stream.request_complete_ms = Some(filter.now_ms());
    }
    let hop = &mut stream.hops[i];
    hop.flow(dir).ended = true;
    if dir == Dir::Request {
        hop.request_done = true;
    }
}

/// Response frames leaving the first filter go to the client: the codec
/// moved the stream, so its idle timer starts again.
fn to_client(filter: &Harness, stream: &mut Stream, i: usize, dir: Dir) {
    if i == 0 && dir == Dir::Response {
        stream.touch(filter.now_ms());
    }
}

fn forward_headers(filter: &mut Harness, stream: &mut Stream, i: usize, dir: Dir, eos: bool) {
    to_client(filter, stream, i, dir);
    let ctx = stream.hops[i].context_id;
    let next = next_hop(stream, i, dir);
    let host = filter.vm.host();
    let now_unix_ns = host.now_unix_ns();
    let map = host.stream_mut(ctx).and_then(|s| match dir {
        Dir::Request => s.request_headers.as_mut(),
        Dir::Response => s.response_headers.as_mut(),
    });
    let headers = match (map, next) {
        (Some(map), Some(next)) => {
            let sent = map.clone();
            stream.hops[next].flow(dir).input.push_back(Frame::Headers {
                map: map.clone(),
                eos,
            });
            sent
        }
        (None, Some(next)) => {
            stream.hops[next].flow(dir).input.push_back(Frame::Headers {
                map: HeaderMap::default(),
                eos,
            });
            HeaderMap::default()
        }
        // Past the last filter. Envoy's filters share one map per message,
        // so what the router or the connection manager adds is in the map
        // the access log (on_log) reads too.
        (Some(map), None) => {
            match dir {
                Dir::Request => downstream::router_adds_to_request(map, stream.route_timeout_ms),
                Dir::Response => downstream::connection_manager_adds_to_response(map, now_unix_ns),
            }
            map.clone()
        }
        (None, None) => HeaderMap::default(),
    };
    let hop = &mut stream.hops[i];
    hop.sent(dir).headers = headers;
    hop.flow(dir).stopped_all = false;
    if eos {
        end_passed(filter, stream, i, dir);
    }
}

fn forward_body(filter: &mut Harness, stream: &mut Stream, i: usize, dir: Dir, eos: bool) {
    to_client(filter, stream, i, dir);
    let ctx = stream.hops[i].context_id;
    let host = filter.vm.host();
    let data = host.stream_mut(ctx).map(|s| match dir {
        Dir::Request => std::mem::take(&mut s.request_body),
        Dir::Response => std::mem::take(&mut s.response_body),
    });
    // Trailers the filter created in its last body callback travel on with it.
    let created = if eos {
        host.stream_ref(ctx).and_then(|s| match dir {
            Dir::Request => s.request_trailers.clone(),
            Dir::Response => s.response_trailers.clone(),
        })
    } else {
        None
    };
    let data = data.unwrap_or_default();
    if let Some(next) = next_hop(stream, i, dir) {
        let input = &mut stream.hops[next].flow(dir).input;
        if !data.is_empty() || (eos && created.is_none()) {
            input.push_back(Frame::Data {
                chunk: data.clone(),
                eos: eos && created.is_none(),
            });
        }
        if let Some(map) = &created {
            input.push_back(Frame::Trailers { map: map.clone() });
        }
    }
    // A carried stream's body is kept only where it leaves the chain,
    // until the caller takes it (see `handout`).
    let keep = stream.handout.is_none() || next_hop(stream, i, dir).is_none();
    let hop = &mut stream.hops[i];
    let sent = hop.sent(dir);
    if keep && sent.body.is_empty() {
        sent.body = data;
    } else if keep {
        sent.body.extend_from_slice(&data);
    }
    if let Some(map) = created {
        sent.trailers = Some(map);
    }
    let flow = hop.flow(dir);
    flow.body_paused = false;
    flow.waiting_at_end = false;
    if eos {
        end_passed(filter, stream, i, dir);
    }
}

fn forward_trailers(filter: &mut Harness, stream: &mut Stream, i: usize, dir: Dir) {
    forward_body(filter, stream, i, dir, false);
    let ctx = stream.hops[i].context_id;
    let map = filter
        .vm
        .host_ref()
        .stream_ref(ctx)
        .and_then(|s| match dir {
            Dir::Request => s.request_trailers.clone(),
            Dir::Response => s.response_trailers.clone(),
        })
        .unwrap_or_default();
    if let Some(next) = next_hop(stream, i, dir) {
        stream.hops[next]
            .flow(dir)
            .input
            .push_back(Frame::Trailers { map: map.clone() });
    }
    let hop = &mut stream.hops[i];
    hop.sent(dir).trailers = Some(map);
    hop.flow(dir).trailers_paused = false;
    end_passed(filter, stream, i, dir);
}

/// `proxy_continue_stream` applied: resume where the direction stopped.
pub(crate) fn resume(filter: &mut Harness, stream: &mut Stream, i: usize, dir: Dir) {
    let flow = stream.hops[i].flow(dir);
    if flow.ended {
        return;
    }
    if flow.stopped_all {
        let eos = flow.headers_eos;
        // Everything that arrived while stopped is delivered as one chunk.
        let mut merged: Vec<u8> = Vec::new();
        let mut merged_eos = false;
        let mut any = false;
        while let Some(Frame::Data { .. }) = flow.input.front() {
            if let Some(Frame::Data { chunk, eos }) = flow.input.pop_front() {
                merged.extend_from_slice(&chunk);
                merged_eos = eos;
                any = true;
            }
        }
        if any {
            flow.input.push_front(Frame::Data {
                chunk: merged,
                eos: merged_eos,
            });
        }
        forward_headers(filter, stream, i, dir, eos);
    } else if flow.trailers_paused {
        forward_trailers(filter, stream, i, dir);
    } else if flow.waiting_at_end {
        forward_body(filter, stream, i, dir, true);
    } else if flow.body_paused {
        forward_body(filter, stream, i, dir, false);
    }
}
