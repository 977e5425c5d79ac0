//! Streams whose caller carries the bodies itself (`harness serve` on real
//! sockets): what leaves the chain at either end is handed out as it
//! passes ([`take_forwarded`]) and no hop keeps a copy, so a body of any
//! size flows through in chunks. What the chain still holds of a body is
//! then bounded by the filters' own buffers (their limit gives the 413 /
//! 500) and by what waits between filters, which the caller keeps under
//! Envoy's watermark by reading its peers no faster ([`queued_bytes`]).

use crate::model::Headers;

use super::flow::{Flow, Frame, Sent};
use super::{StreamHandle, Streams};

/// What left one end of the chain since the caller last asked.
#[derive(Clone, Debug, Default)]
pub struct Leaving {
    /// The headers, once, when they passed the chain's last filter in this
    /// direction (the response's with `:status`).
    pub headers: Option<Headers>,
    /// Body bytes that passed since, in order.
    pub body: Vec<u8>,
    /// The trailers, once.
    pub trailers: Option<Headers>,
    /// The end of the message passed (reported once).
    pub ended: bool,
}

/// What left a carried stream's chain: towards the upstream (the router
/// has it) and towards the client.
#[derive(Clone, Debug, Default)]
pub struct Forwarded {
    pub upstream: Leaving,
    pub client: Leaving,
}

/// Body bytes of a carried stream the chain holds outside the filters'
/// own buffers: frames waiting for a filter that stopped iteration, and
/// bytes that left the chain but the caller has not taken yet. These are
/// what Envoy's watermark buffers count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueuedBytes {
    pub request: u64,
    pub response: u64,
}

/// What a carried stream has handed out already, per direction.
#[derive(Default)]
pub(crate) struct HandedOut {
    request: Handed,
    response: Handed,
}

#[derive(Default)]
struct Handed {
    headers: bool,
    trailers: bool,
    ended: bool,
}

impl Handed {
    /// What of `sent` leaves now: its headers and trailers once each, the
    /// body bytes since the last call, and the end once (`ended`; with
    /// `after_headers`, only once the headers went: a response's end means
    /// nothing to the client before its status).
    fn take(&mut self, sent: &mut Sent, ended: bool, after_headers: bool) -> Leaving {
        let mut leaving = Leaving::default();
        if !sent.headers.is_empty() && !std::mem::replace(&mut self.headers, true) {
            leaving.headers = Some(sent.headers.to_headers());
        }
        leaving.body = std::mem::take(&mut sent.body);
        if let Some(trailers) = &sent.trailers
            && !std::mem::replace(&mut self.trailers, true)
        {
            leaving.trailers = Some(trailers.to_headers());
        }
        let ended = ended && (self.headers || !after_headers);
        leaving.ended = ended && !std::mem::replace(&mut self.ended, true);
        leaving
    }
}

/// What left the chain of stream `key` (live, or ended and not collected
/// yet) since the last call; `None` when it is not a carried stream.
pub(crate) fn take_forwarded(streams: &mut Streams, key: StreamHandle) -> Option<Forwarded> {
    let stream = streams.any_mut(key)?;
    let handed = stream.handout.as_mut()?;
    let mut out = Forwarded::default();
    if let Some(last) = stream.hops.last_mut()
        && let Some(sent) = last.sent_request.as_mut()
    {
        out.upstream = handed.request.take(sent, last.request_done, false);
    }
    if let Some(first) = stream.hops.first_mut()
        && let Some(sent) = first.sent_response.as_mut()
    {
        out.client = handed.response.take(sent, first.resp.ended, true);
    }
    Some(out)
}

/// See [`QueuedBytes`]; zero for a stream that is not live.
pub(crate) fn queued_bytes(streams: &mut Streams, key: StreamHandle) -> QueuedBytes {
    let Some(stream) = streams.any_mut(key) else {
        return QueuedBytes::default();
    };
    let waiting = |flows: &mut dyn Iterator<Item = &Flow>| -> u64 {
        flows.map(|f| frames_len(f.input.iter())).sum()
    };
    let untaken = |m: &Option<Sent>| m.as_ref().map_or(0, |m| m.body.len());
    let request = waiting(&mut stream.hops.iter().map(|h| &h.req))
        + stream.hops.last().map_or(0, |h| untaken(&h.sent_request)) as u64;
    let response = waiting(&mut stream.hops.iter().map(|h| &h.resp))
        + frames_len(stream.upstream_later.iter())
        + stream.hops.first().map_or(0, |h| untaken(&h.sent_response)) as u64;
    QueuedBytes { request, response }
}

fn frames_len<'a>(frames: impl Iterator<Item = &'a Frame>) -> u64 {
    frames
        .map(|f| match f {
            Frame::Data { chunk, .. } => chunk.len() as u64,
            _ => 0,
        })
        .sum()
}
