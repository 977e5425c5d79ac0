//! HTTP streams on a worker, carried between the sockets frame by frame:
//! the client's request head opens the stream and its body follows as it
//! is read; what the chain lets through goes to the router and on to the
//! upstream as a streamed body; the upstream's head and body come back
//! into the chain, and what leaves it goes to the client as a streamed
//! response. No body is kept whole anywhere: each side is read only while
//! what waits for the other side is under the listener's buffer limit
//! (see [`crate::commands::serve::carry`]).

use hyper::body::Incoming;
use tokio::sync::{mpsc, oneshot, watch};

use harness::{Body, DownstreamRequest, Exchange, Forwarded, StreamInput, UpstreamResponse};

use super::{Event, Key, Worker};
use crate::commands::serve::access_log::InFlight;
use crate::commands::serve::carry::{self, BodyPart, OutBody, Outbound};
use crate::commands::serve::http;

/// What the client receives: the response head, its body carried.
pub type ClientReply = hyper::Response<OutBody>;

/// One HTTP stream in flight on a worker.
pub(super) struct Carried {
    flight: InFlight,
    /// Where the response head goes, until it is sent.
    reply: Option<oneshot::Sender<ClientReply>>,
    /// The response body to the client, once its head went out.
    to_client: Option<Outbound>,
    /// The request body to the upstream, once the router sent the head.
    to_upstream: Option<Outbound>,
    /// Open while the client's / the upstream's body may be read; `None`
    /// when there is none (left) to read.
    read_client: Option<watch::Sender<bool>>,
    read_upstream: Option<watch::Sender<bool>>,
    /// The listener's buffer limit (Envoy's per-connection buffer limit).
    limit: u64,
}

impl Worker {
    /// A client's request head on `listener`: a stream opens, and its body
    /// (if any) is read as the chain takes it.
    pub(super) fn take_request(
        &mut self,
        listener: usize,
        request: DownstreamRequest,
        body: Option<Incoming>,
        reply: oneshot::Sender<ClientReply>,
        events: &mpsc::UnboundedSender<Event>,
    ) {
        let slot = self.current.get(listener).copied().unwrap_or(usize::MAX);
        let exchange = Exchange {
            request,
            upstream: UpstreamResponse::default(),
            properties: Default::default(),
        };
        let Some(served) = self.slot_mut(slot) else {
            let _ = reply.send(http::plain(503, "harness serve: the listener is gone"));
            return;
        };
        let plan = &served.plans[served.plan_index];
        let flight = InFlight::new(&exchange.request, &plan.access_log);
        let limit = plan
            .chain
            .first()
            .map_or(harness::HarnessConfig::default().buffer_limit_bytes, |c| {
                c.1.buffer_limit_bytes
            });
        let opened = served
            .envoy
            .open_carried(Some(0), &exchange, body.is_none());
        let stream = match opened {
            Ok((stream, outcome)) => {
                self.show_step(slot, &outcome);
                stream
            }
            Err(e) => {
                log::warn!("worker {}: {e}", self.index);
                let _ = reply.send(http::plain(503, "harness serve: the stream did not open"));
                return;
            }
        };
        let key = (slot, stream);
        let read_client = body.map(|body| read(body, key, true, events));
        let carried = Carried {
            flight,
            reply: Some(reply),
            to_client: None,
            to_upstream: None,
            read_client,
            read_upstream: None,
            limit,
        };
        self.http.insert(key, carried);
    }

    /// The upstream's head (and the first bytes of its body) for `key`.
    pub(super) fn take_upstream_answer(
        &mut self,
        key: Key,
        answer: http::Answer,
        events: &mpsc::UnboundedSender<Event>,
    ) {
        let http::Answer {
            answer,
            end_stream,
            rest,
        } = answer;
        // A stream that ended meanwhile (a local reply) drops it.
        if !self.send_input(key, StreamInput::Respond { answer, end_stream }) {
            return;
        }
        if let (Some(body), Some(carried)) = (rest, self.http.get_mut(&key)) {
            carried.read_upstream = Some(read(body, key, false, events));
        }
    }

    /// A part of the client's (`from_client`) or the upstream's body.
    pub(super) fn take_body_part(&mut self, key: Key, from_client: bool, part: BodyPart) {
        let Some(carried) = self.http.get_mut(&key) else {
            return;
        };
        let (body, trailers, end_stream) = match part {
            BodyPart::Data { bytes, end } => {
                if from_client {
                    carried.flight.bytes_received += bytes.len() as u64;
                }
                let body = if bytes.is_empty() {
                    Body::empty()
                } else {
                    Body::single(bytes)
                };
                (body, None, end)
            }
            BodyPart::Trailers(trailers) => (Body::empty(), Some(trailers), true),
            // Envoy resets the stream when either peer breaks its body off.
            BodyPart::Failed => {
                self.send_input(key, StreamInput::Reset);
                return;
            }
        };
        if end_stream || trailers.is_some() {
            let gate = if from_client {
                &mut carried.read_client
            } else {
                &mut carried.read_upstream
            };
            *gate = None;
        }
        let input = if from_client {
            StreamInput::Request {
                body,
                trailers,
                end_stream,
            }
        } else {
            StreamInput::Response {
                body,
                trailers,
                end_stream,
            }
        };
        self.send_input(key, input);
    }

    /// Sends `input` into stream `key`'s chain; false when it no longer
    /// takes any (it ended).
    pub(super) fn send_input(&mut self, key: Key, input: StreamInput) -> bool {
        let (slot, stream) = key;
        let Some(served) = self.slot_mut(slot) else {
            return false;
        };
        match served.envoy.send(stream, input) {
            Ok(outcome) => {
                self.show_step(slot, &outcome);
                true
            }
            Err(_) => false,
        }
    }

    /// Moves what left every stream's chain out to its peers, opens or
    /// closes the readers by the watermark, and answers the streams that ended.
    /// Only the streams that moved are looked at (all of them after a peer
    /// drained, which changes every watermark); carrying one can move it
    /// again (the router's decision), so this repeats until none moved.
    pub(super) fn carry_streams(&mut self, events: &mpsc::UnboundedSender<Event>) {
        let mut everything = std::mem::take(&mut self.drained);
        loop {
            // Each Envoy names a stream once, and slots differ: no repeats.
            let mut keys: Vec<Key> = Vec::new();
            for slot in 0..self.served.len() {
                if let Some(served) = self.slot_mut(slot) {
                    keys.extend(served.envoy.take_moved().into_iter().map(|h| (slot, h)));
                }
            }
            if std::mem::take(&mut everything) {
                keys = self.http.keys().copied().collect();
            }
            if keys.is_empty() {
                return;
            }
            for key in keys {
                let Some(mut carried) = self.http.remove(&key) else {
                    continue;
                };
                if self.carry_one(key, &mut carried, events) {
                    self.http.insert(key, carried);
                }
            }
        }
    }

    /// [`Worker::carry_streams`] for one stream; false when it ended.
    fn carry_one(
        &mut self,
        key: Key,
        carried: &mut Carried,
        events: &mpsc::UnboundedSender<Event>,
    ) -> bool {
        let (slot, stream) = key;
        while let Some(forwarded) = self
            .slot_mut(slot)
            .and_then(|s| s.envoy.take_forwarded(stream))
        {
            // The router's decision may answer at once: take what that sent.
            let routed = forwarded.upstream.headers.is_some();
            self.move_out(key, carried, forwarded, events);
            if !routed {
                break;
            }
        }
        let Some(served) = self.slot_mut(slot) else {
            return false;
        };
        let queued = served.envoy.queued_bytes(stream);
        let limit = carried.limit;
        gate(
            &carried.read_client,
            carried.to_upstream.as_ref(),
            queued.request,
            limit,
        );
        gate(
            &carried.read_upstream,
            carried.to_client.as_ref(),
            queued.response,
            limit,
        );
        let Ok(Some(done)) = served.envoy.poll(stream) else {
            return true;
        };
        let response = done.outcome.response.as_ref();
        let reset = response.is_none_or(|r| r.reset);
        if let Some(reply) = carried.reply.take() {
            let why = "harness serve: the stream ended without a response";
            let _ = reply.send(http::plain(503, why));
        }
        if reset {
            let why = "the stream was reset";
            let outs = [carried.to_client.take(), carried.to_upstream.take()];
            for out in outs.into_iter().flatten() {
                out.abort(why);
            }
        }
        carried.flight.log(&done.outcome);
        false
    }

    /// What left the chain goes out: the request to the router and the
    /// upstream, the response to the client.
    fn move_out(
        &mut self,
        key: Key,
        carried: &mut Carried,
        forwarded: Forwarded,
        events: &mpsc::UnboundedSender<Event>,
    ) {
        let Forwarded {
            mut upstream,
            client,
        } = forwarded;
        if let Some(headers) = upstream.headers {
            // A request that left the chain whole in this step goes out whole.
            let whole = (upstream.ended && upstream.trailers.is_none())
                .then(|| OutBody::whole(std::mem::take(&mut upstream.body)));
            carried.to_upstream = self.route(key, headers, whole, &mut carried.flight, events);
        }
        if let Some(out) = &carried.to_upstream {
            out.data(upstream.body);
            if let Some(trailers) = &upstream.trailers {
                out.trailers(trailers);
            }
        }
        if upstream.ended {
            carried.to_upstream = None;
        }
        let mut body = client.body;
        carried.flight.bytes_sent += body.len() as u64;
        if let Some(headers) = client.headers {
            carried.flight.responded(&headers);
            // A response that ended in this step goes out whole.
            let out = if client.ended && client.trailers.is_none() {
                OutBody::whole(std::mem::take(&mut body))
            } else {
                let (outbound, out) = Worker::outbound(events);
                carried.to_client = Some(outbound);
                out
            };
            if let Some(reply) = carried.reply.take() {
                let _ = reply.send(http::client_response(&headers, out));
            }
        }
        if let Some(out) = &carried.to_client {
            out.data(body);
            if let Some(trailers) = &client.trailers {
                out.trailers(trailers);
            }
        }
        if client.ended {
            carried.to_client = None;
        }
    }
}

/// Opens or closes a reader: closed while what waits for the other side
/// (`queued` in the chain, and on `out`) reaches `limit`.
fn gate(reader: &Option<watch::Sender<bool>>, out: Option<&Outbound>, queued: u64, limit: u64) {
    let Some(reader) = reader else {
        return;
    };
    let over = match out {
        Some(out) => out.over(queued, limit),
        None => queued >= limit,
    };
    reader.send_if_modified(|open| {
        let changed = *open == over;
        *open = !over;
        changed
    });
}

/// Starts reading `body` for stream `key` (the client's, or the
/// upstream's); the returned gate opens and closes the reading.
fn read(
    body: Incoming,
    key: Key,
    from_client: bool,
    events: &mpsc::UnboundedSender<Event>,
) -> watch::Sender<bool> {
    let (gate, open) = watch::channel(true);
    let events = events.clone();
    tokio::spawn(carry::read_gated(body, open, move |part| {
        let event = Event::Body {
            key,
            from_client,
            part,
        };
        events.send(event).is_ok()
    }));
    gate
}
