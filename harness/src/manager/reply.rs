//! Local replies (Envoy's sendLocalReply) and the failure policy for a
//! stream whose filter's VM failed.

use crate::driver::Harness;
use crate::host::{HeaderMap, LocalReplySpec};
use crate::model::{ByteString, FailurePolicyApplied, LocalReply, LogLevel, StreamEnd};

use super::Stream;
use super::flow::{Dir, Frame, Sent, resume};

/// Envoy's failure policy for the stream in flight on a failed VM: the
/// filter is bypassed (fail_open; whatever it held back flows on) or the
/// stream gets the fail-closed 503.
pub(crate) fn after_trap(filter: &mut Harness, stream: &mut Stream, i: usize) {
    if apply_policy(filter, stream, i) {
        resume(filter, stream, i, Dir::Request);
        resume(filter, stream, i, Dir::Response);
    }
}

/// A stream reaching a filter whose VM had already failed.
pub(crate) fn vm_already_failed(filter: &mut Harness, stream: &mut Stream, i: usize) {
    apply_policy(filter, stream, i);
}

/// Records and applies the policy; true when the filter is bypassed.
fn apply_policy(filter: &mut Harness, stream: &mut Stream, i: usize) -> bool {
    stream.hops[i].failed = true;
    let fail_open = filter.fail_open(stream.hops[i].root);
    filter.policy_applied = Some(if fail_open {
        FailurePolicyApplied::FailOpen
    } else {
        FailurePolicyApplied::FailClosed
    });
    if fail_open {
        stream.hops[i].bypass = true;
    } else {
        local_reply(filter, stream, i, fail_closed_reply(), "harness", true);
    }
    fail_open
}

/// A buffered body over the limit: 413 for requests, 500 for responses.
pub(crate) fn buffer_overflow(filter: &mut Harness, stream: &mut Stream, i: usize, dir: Dir) {
    let (status, body, details, name) = match dir {
        Dir::Request => (
            413,
            "Payload Too Large",
            "request_payload_too_large",
            "request",
        ),
        Dir::Response => (
            500,
            "Internal Server Error",
            "response_payload_too_large",
            "response",
        ),
    };
    let limit = filter.vm.host_ref().buffer_limit;
    filter.vm.host().harness_log(
        LogLevel::Warn,
        format!("buffered {name} body exceeds the {limit}-byte buffer limit"),
    );
    let spec = LocalReplySpec {
        status,
        details: details.to_string(),
        body: body.as_bytes().to_vec(),
        headers: HeaderMap::default(),
        grpc_status: -1,
    };
    local_reply(filter, stream, i, spec, "harness", false);
}

/// Envoy's sendLocalReply from filter `i` (`FilterManager::sendLocalReply`
/// in source/common/http/filter_manager.cc), by how far the response got:
/// - not started: through the filter chain from its far end
///   (`sendLocalReplyViaFilterChain` encodes from the first encoder
///   filter): every filter whose Wasm context exists sees it on its
///   response path, the sender and those after it that saw the request
///   included; filters that never saw the request have no context and
///   pass it on without callbacks;
/// - started but not at the client: straight to the client, no filter
///   sees it (`sendDirectLocalReply`);
/// - the client has headers: the stream is reset.
pub(crate) fn local_reply(
    filter: &mut Harness,
    stream: &mut Stream,
    i: usize,
    spec: LocalReplySpec,
    source: &str,
    vm_failed: bool,
) {
    let status = u16::try_from(spec.status).unwrap_or(500);
    let (headers, body) = frame(&spec, status, stream.is_grpc, stream.is_head);
    // Envoy keeps response-code details free of spaces.
    let details: String = spec
        .details
        .chars()
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .collect();
    let ctx = stream.hops[i].context_id;
    stream.hops[i].local_reply = Some(LocalReply {
        status,
        body: ByteString(spec.body.clone()),
        headers: spec.headers.to_headers(),
        details: details.clone(),
        grpc_status: (spec.grpc_status >= 0).then_some(spec.grpc_status),
        source: source.to_string(),
    });
    if let Some(s) = filter.vm.host().stream_mut(ctx) {
        s.response_code_details = Some(details);
    }
    let client_has_headers = stream.hops[0]
        .sent_response
        .as_ref()
        .is_some_and(|c| !c.headers.is_empty());
    if client_has_headers {
        stream.end = Some(StreamEnd::Reset);
        return;
    }
    // The request side stops here, for this filter and every other one.
    for hop in &mut stream.hops {
        hop.req.stop();
    }
    stream.upstream_answer = None;
    stream.upstream_open = false;
    if std::mem::replace(&mut stream.response_started, true) {
        for hop in &mut stream.hops {
            hop.resp.stop();
        }
        let mut headers = headers;
        super::downstream::connection_manager_adds_to_response(
            &mut headers,
            filter.vm.host_ref().now_unix_ns(),
        );
        stream.hops[0].sent_response = Some(Sent {
            headers,
            body,
            trailers: None,
        });
        stream.end = Some(StreamEnd::Completed);
        return;
    }
    if vm_failed {
        stream.hops[i].failed = true;
    }
    let far_end = (i..stream.hops.len())
        .rev()
        .find(|&j| stream.hops[j].context_id != 0)
        .unwrap_or(i);
    if let Some(s) = filter.vm.host().stream_mut(ctx) {
        s.response_body.clear();
    }
    push_reply(&mut stream.hops[far_end].resp.input, headers, body);
}

/// The reply's headers and body as Envoy's local-reply utility frames them
/// (source/common/http/utility.cc, `Utility::sendLocalReply`): a gRPC
/// request always gets the gRPC form (HTTP 200, `grpc-status` from the
/// argument or mapped from the HTTP code, the body as a percent-encoded
/// `grpc-message`, trailers-only); otherwise a body gets `content-length`
/// and `content-type: text/plain`, an empty body neither, and a HEAD
/// request gets the headers without the body.
fn frame(spec: &LocalReplySpec, status: u16, grpc: bool, head: bool) -> (HeaderMap, Vec<u8>) {
    let mut headers = HeaderMap::default();
    let mut body = spec.body.clone();
    if grpc {
        let grpc_status = if spec.grpc_status >= 0 {
            spec.grpc_status
        } else {
            grpc_status_of_http(status)
        };
        headers.add(b":status", b"200");
        headers.add(b"content-type", b"application/grpc");
        headers.add(b"grpc-status", grpc_status.to_string().as_bytes());
        if !body.is_empty() {
            let message =
                percent_encoding::percent_encode(&body, crate::host::GRPC_MESSAGE_ENCODING)
                    .to_string();
            headers.add(b"grpc-message", message.as_bytes());
        }
        body.clear();
    } else {
        headers.add(b":status", status.to_string().as_bytes());
    }
    for (k, v) in spec.headers.iter() {
        headers.add(k, v);
    }
    if !grpc && !body.is_empty() {
        headers.replace(b"content-length", body.len().to_string().as_bytes());
        if headers.get(b"content-type").is_none() {
            headers.add(b"content-type", b"text/plain");
        }
    }
    if head {
        body.clear();
    }
    (headers, body)
}

/// Envoy's `Grpc::Utility::httpToGrpcStatus` (gRPC's HTTP-to-status table).
fn grpc_status_of_http(status: u16) -> i32 {
    match status {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502..=504 => 14,
        _ => 2,
    }
}

fn push_reply(input: &mut std::collections::VecDeque<Frame>, headers: HeaderMap, body: Vec<u8>) {
    let eos = body.is_empty();
    input.push_back(Frame::Headers { map: headers, eos });
    if !eos {
        input.push_back(Frame::Data {
            chunk: body,
            eos: true,
        });
    }
}

pub(crate) fn fail_closed_reply() -> LocalReplySpec {
    LocalReplySpec {
        status: 503,
        details: "wasm_fail_stream".to_string(),
        body: Vec::new(),
        headers: HeaderMap::default(),
        grpc_status: 14,
    }
}

/// Envoy's router reply when the upstream connection fails before the
/// response started.
pub(crate) fn upstream_unreachable_reply() -> LocalReplySpec {
    LocalReplySpec {
        status: 503,
        details: "upstream_reset_before_response_started{connection_failure}".to_string(),
        body: b"upstream connect error or disconnect/reset before headers. reset reason: connection failure".to_vec(),
        headers: HeaderMap::default(),
        grpc_status: 14,
    }
}

/// The router's reply when the route's timeout fires before the response
/// started (`Router::Filter::onResponseTimeout`, details `response_timeout`).
pub(crate) fn upstream_timeout_reply() -> LocalReplySpec {
    LocalReplySpec {
        status: 504,
        details: "response_timeout".to_string(),
        body: b"upstream request timeout".to_vec(),
        headers: HeaderMap::default(),
        grpc_status: 14,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(status: u32, body: &str, grpc_status: i32) -> LocalReplySpec {
        LocalReplySpec {
            status,
            details: "d".into(),
            body: body.as_bytes().to_vec(),
            headers: HeaderMap::default(),
            grpc_status,
        }
    }

    fn pairs(h: &HeaderMap) -> Vec<(String, String)> {
        h.iter()
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn empty_and_non_empty_bodies_are_framed_as_envoy_does() {
        let (h, body) = frame(&spec(403, "", -1), 403, false, false);
        assert_eq!(pairs(&h), vec![(":status".into(), "403".into())]);
        assert!(body.is_empty());
        let (h, body) = frame(&spec(403, "no", -1), 403, false, false);
        assert_eq!(h.get(b"content-length"), Some(&b"2"[..]));
        assert_eq!(h.get(b"content-type"), Some(&b"text/plain"[..]));
        assert_eq!(body, b"no");
        // HEAD: the headers of the body, not the body.
        let (h, body) = frame(&spec(403, "no", -1), 403, false, true);
        assert_eq!(h.get(b"content-length"), Some(&b"2"[..]));
        assert!(body.is_empty());
    }

    #[test]
    fn grpc_requests_always_get_the_grpc_form() {
        // No gRPC status given: mapped from the HTTP code.
        let (h, body) = frame(&spec(401, "bad token 100%", -1), 401, true, false);
        assert_eq!(h.get(b":status"), Some(&b"200"[..]));
        assert_eq!(h.get(b"content-type"), Some(&b"application/grpc"[..]));
        assert_eq!(h.get(b"grpc-status"), Some(&b"16"[..]));
        assert_eq!(h.get(b"grpc-message"), Some(&b"bad token 100%25"[..]));
        assert!(h.get(b"content-length").is_none());
        assert!(body.is_empty(), "trailers-only");
        let (h, _) = frame(&spec(503, "", 9), 503, true, false);
        assert_eq!(h.get(b"grpc-status"), Some(&b"9"[..]));
        assert!(h.get(b"grpc-message").is_none());
        assert_eq!(grpc_status_of_http(418), 2);
        assert_eq!(grpc_status_of_http(504), 14);
    }
}
