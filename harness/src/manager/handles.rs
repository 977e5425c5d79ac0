//! What a caller does to a named stream between runs: the client sends
//! more of its request or resets the stream, the upstream answers and
//! sends more of its response. Each only queues frames or marks the
//! stream; [`super::run`] moves them through the chain.

use crate::host::{HeaderMap, LocalReplySpec};
use crate::model::{Body, Headers, StreamEnd, UpstreamResponse};

use super::connection::{self, ConnectionInput};
use super::{StreamHandle, Streams, downstream};

/// Something the client or the upstream does on an open stream.
#[derive(Clone, Debug)]
pub enum StreamInput {
    /// More of the request: body chunks, then trailers (which end it);
    /// `end_stream` ends it without trailers.
    Request {
        body: Body,
        trailers: Option<Headers>,
        end_stream: bool,
    },
    /// The upstream's answer to a stream opened without one; `end_stream`
    /// false: more of the response follows.
    Respond {
        answer: UpstreamResponse,
        end_stream: bool,
    },
    /// More of the upstream's response.
    Response {
        body: Body,
        trailers: Option<Headers>,
        end_stream: bool,
    },
    /// The router picked the request's route (a caller routing it, as
    /// `harness serve` does from an envoy.yaml): its timeout (0: none)
    /// replaces the default route timeout of the stream.
    Route { timeout_ms: u64 },
    /// The router answers the request itself, as Envoy's router does for
    /// a `direct_response` (details `direct_response`) or a request no
    /// route takes (404, `route_not_found`): a local reply through every
    /// filter's response path.
    RouterReply {
        status: u16,
        body: Vec<u8>,
        details: String,
    },
    /// The client resets the stream (or the TCP connection).
    Reset,
    /// The client sends bytes on a TCP connection; `end_stream`: then it
    /// closes its side (FIN).
    Downstream { data: Vec<u8>, end_stream: bool },
    /// The upstream sends bytes on a TCP connection; `end_stream`: then it
    /// closes its side (FIN).
    Upstream { data: Vec<u8>, end_stream: bool },
    /// The upstream resets its TCP connection (tcp_proxy then closes the
    /// client's).
    UpstreamReset,
}

/// Applies `input` to the stream; `Ok(true)`: upstream data was dropped
/// because a local reply replaced the response.
pub(crate) fn apply(
    streams: &mut Streams,
    key: StreamHandle,
    input: StreamInput,
) -> Result<bool, String> {
    streams.mark_moved(key);
    if streams.live_connection(key).is_some() {
        let input = match input {
            StreamInput::Downstream { data, end_stream } => {
                ConnectionInput::Client { data, end_stream }
            }
            StreamInput::Upstream { data, end_stream } => {
                ConnectionInput::Upstream { data, end_stream }
            }
            StreamInput::Reset => ConnectionInput::ClientReset,
            StreamInput::UpstreamReset => ConnectionInput::UpstreamReset,
            _ => {
                return Err(
                    "this is a TCP connection: it takes bytes from the client or the upstream \
                     (`data`), not HTTP request or response parts"
                        .to_string(),
                );
            }
        };
        return connection::apply(streams, key, input).map(|()| false);
    }
    match input {
        StreamInput::Request {
            body,
            trailers,
            end_stream,
        } => send_request(streams, key, &body, trailers.as_ref(), end_stream).map(|()| false),
        StreamInput::Respond { answer, end_stream } => {
            respond(streams, key, answer, end_stream).map(|()| false)
        }
        StreamInput::Response {
            body,
            trailers,
            end_stream,
        } => send_response(streams, key, &body, trailers.as_ref(), end_stream),
        StreamInput::Reset => reset(streams, key).map(|()| false),
        StreamInput::Route { timeout_ms } => {
            let stream = streams.live_mut(key).ok_or_else(|| not_live(key))?;
            stream.route_timeout_ms = timeout_ms;
            Ok(false)
        }
        StreamInput::RouterReply {
            status,
            body,
            details,
        } => router_reply(streams, key, status, body, details).map(|()| false),
        StreamInput::Downstream { .. } | StreamInput::Upstream { .. } | StreamInput::UpstreamReset => {
            Err("this is an HTTP stream: bytes (`data`) and upstream resets are for TCP connections (open one with `connect`)".to_string())
        }
    }
}

/// Why a step cannot act on a stream, in the caller's terms.
fn not_live(key: StreamHandle) -> String {
    format!(
        "stream {} on worker {} has ended (or was never opened): nothing more can be sent on it",
        key.id, key.worker
    )
}

/// More of the request from the client: body chunks, trailers (which end
/// it), or the end of the request (`ends`).
fn send_request(
    streams: &mut Streams,
    key: StreamHandle,
    body: &Body,
    trailers: Option<&Headers>,
    ends: bool,
) -> Result<(), String> {
    let stream = streams.live_mut(key).ok_or_else(|| not_live(key))?;
    if !stream.request_open {
        return Err(
            "the client already ended this request (open it with `end_stream: false` to send it in parts)"
                .to_string(),
        );
    }
    let input = &mut stream.hops[0].req.input;
    downstream::body_frames(body, trailers, ends, stream.protocol, input);
    stream.request_open = !ends && trailers.is_none();
    Ok(())
}

/// The upstream's answer to a stream opened without one; `ends` false:
/// more of the response follows ([`send_response`]).
fn respond(
    streams: &mut Streams,
    key: StreamHandle,
    answer: UpstreamResponse,
    ends: bool,
) -> Result<(), String> {
    let stream = streams.live_mut(key).ok_or_else(|| not_live(key))?;
    if stream.response_started || stream.upstream_answer.is_some() || stream.router_reply.is_some()
    {
        return Err("the upstream already answered this stream".to_string());
    }
    stream.upstream_open = !ends && answer.trailers.is_none();
    let framed = downstream::UpstreamAnswer::new(&answer, !stream.upstream_open, stream.protocol);
    stream.upstream_answer = Some(framed);
    // An upstream that answers while the request still streams to it: the
    // router sends the response on at once (`Router::Filter::onUpstreamHeaders`
    // runs whenever the codec has the headers, source/common/router/router.cc).
    // An answer given before the request reached the upstream is its answer
    // to the whole request, given once that has arrived.
    let last = stream.hops.last();
    let reached = last
        .and_then(|h| h.sent_request.as_ref())
        .is_some_and(|sent| !sent.headers.is_empty());
    stream.answered_early = reached && last.is_some_and(|h| !h.request_done);
    Ok(())
}

/// More of the upstream's response. Dropped (true returned) when a local
/// reply or a reset replaced it: Envoy resets the upstream request then,
/// and its data never reaches the filters.
fn send_response(
    streams: &mut Streams,
    key: StreamHandle,
    body: &Body,
    trailers: Option<&Headers>,
    ends: bool,
) -> Result<bool, String> {
    let stream = streams.live_mut(key).ok_or_else(|| not_live(key))?;
    if !stream.upstream_open {
        return Err(
            "the upstream's response is not open (answer with `respond` and `end_stream: false` first, once)"
                .to_string(),
        );
    }
    stream.upstream_open = !ends && trailers.is_none();
    if stream.upstream_refused || stream.hops.iter().any(|h| h.local_reply.is_some()) {
        return Ok(true);
    }
    let protocol = stream.protocol;
    let n = stream.hops.len();
    let input = if stream.response_started {
        &mut stream.hops[n - 1].resp.input
    } else {
        &mut stream.upstream_later
    };
    downstream::body_frames(body, trailers, ends, protocol, input);
    Ok(false)
}

/// The router's own answer, given before the upstream answered.
fn router_reply(
    streams: &mut Streams,
    key: StreamHandle,
    status: u16,
    body: Vec<u8>,
    details: String,
) -> Result<(), String> {
    let stream = streams.live_mut(key).ok_or_else(|| not_live(key))?;
    if stream.response_started || stream.upstream_answer.is_some() {
        return Err("the upstream already answered this stream".to_string());
    }
    stream.router_reply = Some(LocalReplySpec {
        status: u32::from(status),
        details,
        body,
        headers: HeaderMap::default(),
        grpc_status: -1,
    });
    Ok(())
}

/// The client resets the stream (it goes away mid-request or
/// mid-response): no more callbacks but the stream's teardown, as
/// Envoy's filter manager resets the stream.
fn reset(streams: &mut Streams, key: StreamHandle) -> Result<(), String> {
    let stream = streams.live_mut(key).ok_or_else(|| not_live(key))?;
    stream.end = Some(StreamEnd::Reset);
    Ok(())
}
