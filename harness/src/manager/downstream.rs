//! What the client and the upstream put on the wire, as frames: the
//! request header map Envoy's HTTP/1 codec and connection manager build,
//! body chunks, trailers, and the request id.

use std::collections::VecDeque;

use crate::host::HeaderMap;
use crate::model::{Body, DownstreamRequest, Headers, HttpProtocol, UpstreamResponse};

use super::flow::Frame;

/// The request headers as Envoy's codec and connection manager hand them
/// to the filter chain, written into `m` (empty; a recycled map's room is
/// reused).
pub(crate) fn request_header_map(
    req: &DownstreamRequest,
    request_id: &[u8],
    mut m: HeaderMap,
) -> HeaderMap {
    // Sized once for what is added below (the defaults, x-forwarded-proto,
    // x-request-id), with room for a header or two more: no regrowth.
    let user_bytes: usize = req.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
    let mut a = m.appender(user_bytes + req.path.len() + 192, req.headers.len() + 8);
    let user_has = |name: &str| req.headers.contains(name);
    let authority: &[u8] = req
        .authority
        .as_deref()
        .map(str::as_bytes)
        .or_else(|| req.headers.get("host").map(|v| v.as_bytes()))
        .unwrap_or(b"localhost");
    // Pseudo-headers in the order Envoy creates them for an HTTP/1 request
    // (pseudo-headers stay ahead of the others in its header map): the
    // codec turns Host into :authority while parsing the header block
    // (`ConnectionImpl::completeLastHeader`), then adds :path and :method
    // (`ServerConnectionImpl::onHeadersComplete`); the connection manager
    // adds :scheme last.
    let defaults: [(&str, &[u8]); 4] = [
        (":authority", authority),
        (":path", req.path.as_bytes()),
        (":method", req.method.as_bytes()),
        (":scheme", req.scheme.as_bytes()),
    ];
    for (k, v) in defaults {
        match req.headers.get(k) {
            Some(user) => a.add(k.as_bytes(), user.as_bytes()),
            None => a.add(k.as_bytes(), v),
        }
    }
    for (k, v) in req.headers.iter() {
        // HTTP/1 Host becomes :authority; pseudo-headers were placed first.
        if k.eq_ignore_ascii_case(b"host")
            || [&b":method"[..], b":path", b":authority", b":scheme"].contains(&k)
        {
            continue;
        }
        a.add(k, v);
    }
    if !user_has("x-forwarded-proto") {
        a.add(b"x-forwarded-proto", req.scheme.as_bytes());
    }
    if !user_has("x-request-id") {
        a.add(b"x-request-id", request_id);
    }
    m
}

/// The frames after headers that did not end the message: body chunks
/// (empty ones skipped), then the trailers. Trailers end the
/// message; without them, when `ends`, the message ends as its protocol
/// ends it: HTTP/2 on the last chunk (an empty frame when there is none),
/// HTTP/1 with one more empty frame (Envoy's HTTP/1 codec completes the
/// message with an empty end_of_stream data frame). Not `ends`: more
/// frames follow later.
pub(crate) fn body_frames(
    body: &Body,
    trailers: Option<&Headers>,
    ends: bool,
    protocol: HttpProtocol,
    out: &mut VecDeque<Frame>,
) {
    let data: Vec<&[u8]> = body
        .0
        .iter()
        .map(|c| c.as_bytes())
        .filter(|c| !c.is_empty())
        .collect();
    let n = data.len();
    let ends_here = ends && trailers.is_none();
    let ends_on_last = ends_here && protocol == HttpProtocol::Http2;
    for (i, c) in data.into_iter().enumerate() {
        out.push_back(Frame::Data {
            chunk: c.to_vec(),
            eos: i + 1 == n && ends_on_last,
        });
    }
    if ends_here && !(ends_on_last && n > 0) {
        out.push_back(Frame::Data {
            chunk: Vec::new(),
            eos: true,
        });
    }
    if let Some(t) = trailers {
        out.push_back(Frame::Trailers {
            map: HeaderMap::from_headers(t),
        });
    }
}

/// Envoy's route timeout when the route sets none (`RouteEntry` timeout
/// default, 15 s).
pub const DEFAULT_ROUTE_TIMEOUT_MS: u64 = 15_000;

/// What the router adds to the request after the last filter: the timeout
/// the upstream can expect (`FilterUtility::setTimeoutHeaders` in
/// source/common/router/router.cc, called from `finalTimeout` with 0 ms
/// elapsed: the global timeout starts when the router gets the request).
/// A route without a timeout (0) sets no header.
pub(crate) fn router_adds_to_request(map: &mut HeaderMap, route_timeout_ms: u64) {
    if route_timeout_ms > 0 {
        let mut digits = itoa::Buffer::new();
        map.replace(
            b"x-envoy-expected-rq-timeout-ms",
            digits.format(route_timeout_ms).as_bytes(),
        );
    }
}

/// What the connection manager adds to the response headers after every
/// filter (`ConnectionManagerImpl::ActiveStream::encodeHeaders` in
/// source/common/http/conn_manager_impl.cc): `date` when the response has
/// none, and `server: envoy` over any upstream value (the default
/// OVERWRITE server header transformation). Local replies pass there too.
pub(crate) fn connection_manager_adds_to_response(map: &mut HeaderMap, now_unix_ns: u64) {
    if map.get(b"date").is_none() {
        let secs = now_unix_ns / 1_000_000_000;
        // Formatted once per second, as Envoy's caching date provider does
        // (TlsCachingDateProviderImpl); a pure memo, the same for any caller.
        thread_local! {
            static LAST: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
        }
        LAST.with_borrow_mut(|(at, text)| {
            if *at != secs {
                *at = secs;
                *text = http_date(now_unix_ns);
            }
            map.add(b"date", text.as_bytes());
        });
    }
    map.replace(b"server", b"envoy");
}

/// An HTTP-date (RFC 9110 IMF-fixdate) of a Unix time in nanoseconds.
pub(crate) fn http_date(unix_ns: u64) -> String {
    let secs = i64::try_from(unix_ns / 1_000_000_000).unwrap_or(i64::MAX);
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// The upstream's answer, framed when it is given and sent when the
/// request has reached the upstream.
pub(crate) enum UpstreamAnswer {
    /// The connection failed before any response: the router answers.
    Unreachable,
    /// The response frames, `:status` first.
    Frames(VecDeque<Frame>),
}

impl UpstreamAnswer {
    /// `answer` as response frames, framed as `protocol` frames it (the
    /// upstream speaks the client's protocol); `ends` false: more frames
    /// follow later.
    pub(crate) fn new(answer: &UpstreamResponse, ends: bool, protocol: HttpProtocol) -> Self {
        Self::framed_into(
            answer,
            ends,
            protocol,
            VecDeque::new(),
            HeaderMap::default(),
        )
    }

    /// The same, framed into `frames` (empty; a spare queue keeps its room).
    pub(crate) fn framed_into(
        answer: &UpstreamResponse,
        ends: bool,
        protocol: HttpProtocol,
        mut frames: VecDeque<Frame>,
        mut h: HeaderMap,
    ) -> Self {
        if answer.unreachable {
            return UpstreamAnswer::Unreachable;
        }
        // Sized once for :status, the service time and what the connection
        // manager adds later (date, server), as the request map is.
        let user_bytes: usize = answer.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
        let mut a = h.appender(user_bytes + 128, answer.headers.len() + 6);
        a.add(
            b":status",
            itoa::Buffer::new().format(answer.status).as_bytes(),
        );
        for (k, v) in answer.headers.iter() {
            a.add(k, v);
        }
        let eos = ends && answer.body.is_empty() && answer.trailers.is_none();
        frames.push_back(Frame::Headers { map: h, eos });
        if !eos {
            body_frames(
                &answer.body,
                answer.trailers.as_ref(),
                ends,
                protocol,
                &mut frames,
            );
        }
        UpstreamAnswer::Frames(frames)
    }
}

/// The router adds `x-envoy-upstream-service-time` to the upstream's
/// response headers before any filter sees them (`Filter::onUpstreamHeaders`
/// in source/common/router/router.cc): `service_ms` after the whole request
/// reached it.
pub(crate) fn add_service_time(frames: &mut VecDeque<Frame>, service_ms: u64) {
    if let Some(Frame::Headers { map, .. }) = frames.front_mut() {
        let mut digits = itoa::Buffer::new();
        map.replace(
            b"x-envoy-upstream-service-time",
            digits.format(service_ms).as_bytes(),
        );
    }
}

pub(crate) fn is_grpc_request(h: &HeaderMap) -> bool {
    h.get(b"content-type")
        .is_some_and(|v| v.starts_with(b"application/grpc"))
}

/// A version-4-shaped UUID from 16 random bytes, built on the stack.
pub(crate) fn format_uuid(b: &[u8; 16]) -> [u8; 36] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hex = [0u8; 32];
    for (i, byte) in b.iter().enumerate() {
        hex[2 * i] = HEX[usize::from(byte >> 4)];
        hex[2 * i + 1] = HEX[usize::from(byte & 0xf)];
    }
    hex[12] = b'4';
    hex[16] = b'a';
    let mut out = [b'-'; 36];
    let mut at = 0;
    for (i, c) in hex.iter().enumerate() {
        if matches!(i, 8 | 12 | 16 | 20) {
            at += 1;
        }
        out[at] = *c;
        at += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(
        body: &[&str],
        trailers: Option<&Headers>,
        end: bool,
        protocol: HttpProtocol,
    ) -> Vec<(usize, bool)> {
        let mut out = VecDeque::new();
        let body = Body(body.iter().map(|c| (*c).into()).collect());
        body_frames(&body, trailers, end, protocol, &mut out);
        out.iter()
            .filter_map(|f| match f {
                Frame::Data { chunk, eos } => Some((chunk.len(), *eos)),
                _ => None,
            })
            .collect()
    }

    fn ends(protocol: HttpProtocol, trailers: Option<&Headers>) -> Vec<(usize, bool)> {
        frames(&["ab", "c"], trailers, true, protocol)
    }

    #[test]
    fn a_message_sent_in_parts_ends_with_its_last_part() {
        for protocol in [HttpProtocol::Http11, HttpProtocol::Http2] {
            // More to come: nothing ends.
            assert_eq!(frames(&["ab"], None, false, protocol), vec![(2, false)]);
            // The end given later without data: one empty end_of_stream frame.
            assert_eq!(frames(&[], None, true, protocol), vec![(0, true)]);
        }
        assert_eq!(
            frames(&["c"], None, true, HttpProtocol::Http2),
            vec![(1, true)]
        );
        assert_eq!(
            frames(&["c"], None, true, HttpProtocol::Http11),
            vec![(1, false), (0, true)]
        );
    }

    #[test]
    fn http1_ends_a_body_with_an_empty_frame_and_http2_on_the_last_chunk() {
        assert_eq!(
            ends(HttpProtocol::Http11, None),
            vec![(2, false), (1, false), (0, true)]
        );
        assert_eq!(ends(HttpProtocol::Http2, None), vec![(2, false), (1, true)]);
        // Trailers end the message in both.
        let t = Headers::from_pairs([("x", "1")]);
        assert_eq!(
            ends(HttpProtocol::Http11, Some(&t)),
            vec![(2, false), (1, false)]
        );
    }

    #[test]
    fn dates_are_imf_fixdates() {
        // 2026-12-01 16:10:34 UTC was a Tuesday.
        assert_eq!(
            http_date(1_796_141_434_000_000_000),
            "Tue, 01 Dec 2026 16:10:34 GMT"
        );
    }

    #[test]
    fn the_connection_manager_keeps_a_date_and_overwrites_server() {
        let mut m = HeaderMap::default();
        m.add(b":status", b"200");
        m.add(b"server", b"upstream");
        m.add(b"date", b"Mon, 01 Jan 2024 00:00:00 GMT");
        connection_manager_adds_to_response(&mut m, 0);
        assert_eq!(m.get(b"server"), Some(&b"envoy"[..]));
        assert_eq!(m.get(b"date"), Some(&b"Mon, 01 Jan 2024 00:00:00 GMT"[..]));
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn request_ids_look_like_uuids() {
        let id = format_uuid(&[0xab; 16]);
        assert_eq!(&id[..], b"abababab-abab-4bab-abab-abababababab");
    }

    #[test]
    fn the_router_writes_its_timeout_and_service_time_as_decimals() {
        let mut m = HeaderMap::default();
        router_adds_to_request(&mut m, 15_000);
        assert_eq!(
            m.get(b"x-envoy-expected-rq-timeout-ms"),
            Some(&b"15000"[..])
        );
        let mut frames = VecDeque::new();
        frames.push_back(Frame::Headers {
            map: HeaderMap::default(),
            eos: true,
        });
        for ms in [0, u64::MAX] {
            add_service_time(&mut frames, ms);
            let Some(Frame::Headers { map, .. }) = frames.front() else {
                unreachable!()
            };
            let value = map.get(b"x-envoy-upstream-service-time");
            assert_eq!(value, Some(ms.to_string().as_bytes()));
        }
    }

    #[test]
    fn request_map_follows_envoy() {
        let mut req = DownstreamRequest::from_request_line("POST /x").unwrap();
        req.headers.push("Host", "svc:80");
        req.headers.push("X-A", "1");
        let m = request_header_map(&req, b"id", HeaderMap::default());
        let keys: Vec<&[u8]> = m.iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            vec![
                &b":authority"[..],
                b":path",
                b":method",
                b":scheme",
                b"x-a",
                b"x-forwarded-proto",
                b"x-request-id"
            ]
        );
        assert_eq!(m.get(b":authority"), Some(&b"svc:80"[..]));
    }
}
