//! Local replies (Envoy's sendLocalReply) and the failure policy for a
//! stream whose filter's VM failed.

use crate::driver::Harness;
use crate::host::{HeaderMap, LocalReplySpec};
use crate::model::{
    ByteString, FailurePolicyApplied, HttpMessage, LocalReply, LogLevel, StreamEnd,
};

use super::Stream;
use super::flow::{Dir, Frame, resume};

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

/// Envoy's sendLocalReply from filter `i`: through that filter's response
/// path if the response has not started there, on to the filters before it
/// (then the client) otherwise; a reset if the client already has headers.
pub(crate) fn local_reply(
    filter: &mut Harness,
    stream: &mut Stream,
    i: usize,
    spec: LocalReplySpec,
    source: &str,
    vm_failed: bool,
) {
    let status = u16::try_from(spec.status).unwrap_or(500);
    let mut headers = HeaderMap::default();
    let mut body = spec.body.clone();
    headers.add(b":status", status.to_string().as_bytes());
    let grpc = spec.grpc_status >= 0 && stream.is_grpc;
    if grpc {
        headers.replace(b":status", b"200");
        headers.add(b"content-type", b"application/grpc");
        headers.add(b"grpc-status", spec.grpc_status.to_string().as_bytes());
        if !body.is_empty() {
            headers.add(b"grpc-message", &body);
        }
        body.clear();
    }
    for (k, v) in spec.headers.iter() {
        headers.add(k, v);
    }
    if !grpc {
        headers.replace(b"content-length", body.len().to_string().as_bytes());
        if !body.is_empty() && headers.get(b"content-type").is_none() {
            headers.add(b"content-type", b"text/plain");
        }
    }
    let ctx = stream.hops[i].context_id;
    stream.hops[i].local_reply = Some(LocalReply {
        status,
        body: ByteString(spec.body.clone()),
        headers: spec.headers.to_headers(),
        details: spec.details.clone(),
        grpc_status: (spec.grpc_status >= 0).then_some(spec.grpc_status),
        source: source.to_string(),
    });
    let host = filter.vm.host();
    let headers_seen = host
        .stream_ref(ctx)
        .is_some_and(|s| s.response_headers.is_some());
    if let Some(s) = host.stream_mut(ctx) {
        s.response_code_details = Some(spec.details.clone());
    }
    let client_has_headers = stream.hops[i]
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
    stream.response_started = true;
    stream.upstream_answer = None;
    let hop = &mut stream.hops[i];
    let through_filter = !vm_failed && !hop.bypass && !hop.local_in_filter && !headers_seen;
    if through_filter {
        hop.local_in_filter = true;
        hop.resp = super::flow::Flow::default();
        push_reply(&mut hop.resp.input, headers, body);
        if let Some(s) = filter.vm.host().stream_mut(ctx) {
            s.response_body.clear();
        }
        return;
    }
    hop.resp.stop();
    hop.sent_response = Some(HttpMessage {
        headers: headers.to_headers(),
        body: ByteString(body.clone()),
        trailers: None,
    });
    match i.checked_sub(1) {
        // The filters before this one see the reply as their response.
        Some(before) => push_reply(&mut stream.hops[before].resp.input, headers, body),
        None => stream.end = Some(StreamEnd::Completed),
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
