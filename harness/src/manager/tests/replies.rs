//! Local replies and the failure policy.

use super::*;
use crate::model::StreamEnd;

#[test]
fn a_local_reply_is_applied_after_the_callback_and_forces_a_stop() {
    let log = CallLog::default();
    let script: fn(&mut ScriptedVm) = |vm| {
        // The callback returns Continue, yet the request must stop here.
        vm.on("request_headers")
            .then(Act::LocalReply {
                status: 403,
                body: "denied",
                headers: &[("X-Why", "policy")],
            })
            .then(Act::GetHeader(REQUEST, ":path"))
            .returns(0);
        vm.on("response_headers")
            .then(Act::GetHeader(RESPONSE, ":status"))
            .then(Act::GetHeader(RESPONSE, "x-why"))
            .then(Act::GetHeader(RESPONSE, "content-type"));
    };
    let mut chain = chain(&log, vec![("f", script)]);
    let out = chain.exchange(&get("/x")).expect("exchange").outcome;
    assert_eq!(
        log.calls("f"),
        [
            "context_create(2,1)",
            "request_headers(2,6,1)",
            // The reply runs through the same filter's response path:
            // :status, x-why, content-length, content-type; then its body.
            "response_headers(2,4,0)",
            "response_body(2,6,1)",
            "log(2)",
            "done(2)",
            "delete(2)",
        ]
    );
    assert_eq!(
        log.reads("f"),
        [
            // Still inside on_request_headers: nothing was applied yet.
            "HTTP_REQUEST_HEADERS :path -> /x",
            "HTTP_RESPONSE_HEADERS :status -> 403",
            "HTTP_RESPONSE_HEADERS x-why -> policy",
            "HTTP_RESPONSE_HEADERS content-type -> text/plain",
        ]
    );
    assert_eq!(status(&out), 403);
    assert!(out.upstream_request.is_none(), "the request never left");
    let reply = out.response.as_ref().map(|r| r.message.body.to_text());
    assert_eq!(reply.as_deref(), Some("denied"));
}

#[test]
fn a_local_reply_from_filter_two_of_three_goes_back_through_two_then_one() {
    let log = CallLog::default();
    let nothing: fn(&mut ScriptedVm) = |_| {};
    let replies: fn(&mut ScriptedVm) = |vm| {
        vm.on("request_headers").then(Act::LocalReply {
            status: 401,
            body: "",
            headers: &[],
        });
    };
    let mut chain = chain(
        &log,
        vec![("f1", nothing), ("f2", replies), ("f3", nothing)],
    );
    let out = chain.exchange(&get("/")).expect("exchange");
    assert_eq!(
        log.all_calls(),
        [
            "f1 context_create(2,1)",
            "f1 request_headers(2,6,1)",
            "f2 context_create(2,1)",
            "f2 request_headers(2,6,1)",
            // An empty reply is headers only, end of stream on them.
            "f2 response_headers(2,1,1)",
            "f1 response_headers(2,1,1)",
            // Every filter logs first; f3 gets its context only now
            // (Envoy's Context::log creates it), then done/delete in order.
            "f1 log(2)",
            "f2 log(2)",
            "f3 context_create(2,1)",
            "f3 log(2)",
            "f1 done(2)",
            "f1 delete(2)",
            "f2 done(2)",
            "f2 delete(2)",
            "f3 done(2)",
            "f3 delete(2)",
        ]
    );
    assert_eq!(status(&out.outcome), 401);
    // f1 let the request through (to f2); nothing went past f2.
    let passed: Vec<bool> = out
        .filters
        .iter()
        .map(|o| o.upstream_request.is_some())
        .collect();
    assert_eq!(passed, [true, false, false]);
    assert!(
        out.outcome.upstream_request.is_none(),
        "the upstream got nothing"
    );
    let source = out.filters[1]
        .local_reply
        .as_ref()
        .map(|r| r.source.clone());
    assert_eq!(source.as_deref(), Some("filter"));
}

#[test]
fn a_local_reply_before_the_response_runs_through_every_encoder_filter() {
    // Envoy's FilterManager::sendLocalReply, response not started:
    // prepareLocalReplyViaFilterChain / sendLocalReplyViaFilterChain call
    // encodeHeaders(nullptr, ...), which (commonEncodePrefix with no filter)
    // starts at the first encoder filter: the last of the chain. A Wasm
    // filter whose context exists (f3 saw the request headers) gets
    // on_response_headers (context.cc Context::encodeHeaders skips only
    // filters without a VM context).
    let log = CallLog::default();
    let nothing: fn(&mut ScriptedVm) = |_| {};
    let replies: fn(&mut ScriptedVm) = |vm| {
        vm.on("request_body").then(Act::LocalReply {
            status: 413,
            body: "",
            headers: &[],
        });
    };
    let mut chain = chain(
        &log,
        vec![("f1", nothing), ("f2", replies), ("f3", nothing)],
    );
    let post = request("POST", "/p", &["ab"], HttpProtocol::Http11);
    let out = chain.exchange(&post).expect("exchange");
    assert_eq!(status(&out.outcome), 413);
    assert_eq!(
        log.all_calls()[..11],
        [
            "f1 context_create(2,1)",
            "f1 request_headers(2,6,0)",
            "f2 context_create(2,1)",
            "f2 request_headers(2,6,0)",
            "f3 context_create(2,1)",
            "f3 request_headers(2,6,0)",
            "f1 request_body(2,2,0)",
            "f2 request_body(2,2,0)",
            "f3 response_headers(2,1,1)",
            "f2 response_headers(2,1,1)",
            "f1 response_headers(2,1,1)",
        ]
    );
}

#[test]
fn a_local_reply_after_the_response_started_bypasses_every_filter() {
    // Envoy's FilterManager::sendLocalReply once the response headers
    // exist but have not reached the client: sendDirectLocalReply encodes
    // straight to the codec ("bypass the filter chain"), so no filter,
    // before or after the one that sent it, sees the reply.
    let log = CallLog::default();
    let nothing: fn(&mut ScriptedVm) = |_| {};
    let replies: fn(&mut ScriptedVm) = |vm| {
        vm.on("response_headers").then(Act::LocalReply {
            status: 502,
            body: "bad upstream",
            headers: &[],
        });
    };
    let mut chain = chain(&log, vec![("f1", nothing), ("f2", replies)]);
    let out = chain.exchange(&get("/")).expect("exchange");
    assert_eq!(status(&out.outcome), 502);
    let body = out
        .outcome
        .response
        .as_ref()
        .map(|r| r.message.body.to_text());
    assert_eq!(body.as_deref(), Some("bad upstream"));
    assert_eq!(
        log.all_calls()[4..],
        [
            "f2 response_headers(2,2,1)",
            "f1 log(2)",
            "f2 log(2)",
            "f1 done(2)",
            "f1 delete(2)",
            "f2 done(2)",
            "f2 delete(2)",
        ]
    );
}

#[test]
fn a_trap_fails_closed_with_503_for_this_and_later_streams() {
    let log = CallLog::default();
    let nothing: fn(&mut ScriptedVm) = |_| {};
    let traps: fn(&mut ScriptedVm) = |vm| {
        vm.on("request_headers").traps("unreachable");
    };
    let mut chain = chain(&log, vec![("f1", nothing), ("f2", traps)]);
    let first = chain.exchange(&get("/")).expect("exchange");
    assert_eq!(
        log.all_calls(),
        [
            "f1 context_create(2,1)",
            "f1 request_headers(2,6,1)",
            "f2 context_create(2,1)",
            "f2 request_headers(2,6,1)",
            // Envoy's failStream: a 503 local reply, seen by the filters before.
            "f1 response_headers(2,1,1)",
            "f1 log(2)",
            "f1 done(2)",
            "f1 delete(2)",
        ]
    );
    assert_eq!(status(&first.outcome), 503);
    let trap = first.outcome.trap.as_ref().map(|t| t.trap.clone());
    assert_eq!(trap.as_deref(), Some("unreachable"));
    let details = first
        .outcome
        .local_reply
        .as_ref()
        .map(|r| r.details.clone());
    assert_eq!(details.as_deref(), Some("wasm_fail_stream"));
    assert!(first.outcome.upstream_request.is_none());
    log.clear();
    // The failed VM is never called again; later streams get the 503 too.
    let second = chain.exchange(&get("/")).expect("exchange");
    assert_eq!(status(&second.outcome), 503);
    assert!(log.calls("f2").is_empty());
    assert_eq!(
        log.calls("f1")[..3],
        [
            "context_create(3,1)",
            "request_headers(3,6,1)",
            "response_headers(3,1,1)"
        ]
    );
}

#[test]
fn fail_open_lets_traffic_pass_a_failed_filter() {
    let log = CallLog::default();
    let traps: fn(&mut ScriptedVm) = |vm| {
        vm.on("request_headers").traps("unreachable");
    };
    let mut chain = chain_with(&log, &config(true), vec![("f", traps)]);
    for round in 0..2 {
        let out = chain.exchange(&get("/open")).expect("exchange").outcome;
        assert_eq!(status(&out), 200, "round {round}");
        let path = out
            .upstream_request
            .as_ref()
            .and_then(|m| m.headers.get_text(":path"));
        assert_eq!(path.as_deref(), Some("/open"), "round {round}");
    }
    // Only the first stream reached the VM, up to the trap.
    assert_eq!(
        log.calls("f"),
        ["context_create(2,1)", "request_headers(2,6,1)"]
    );
}

#[test]
fn a_buffered_body_over_the_limit_gets_413_through_the_filter() {
    // ActiveStreamDecoderFilter::requestDataTooLarge: sendLocalReply with
    // 413 "Payload Too Large", details request_payload_too_large; the
    // response has not started, so the filter sees it.
    let log = CallLog::default();
    let script: fn(&mut ScriptedVm) = |vm| {
        vm.on("request_body").pause();
        vm.on("response_headers")
            .then(Act::GetHeader(RESPONSE, ":status"));
    };
    let small = HarnessConfig {
        buffer_limit_bytes: 3,
        ..config(false)
    };
    let mut chain = chain_with(&log, &small, vec![("f", script)]);
    let post = request("POST", "/p", &["ab", "cd"], HttpProtocol::Http11);
    let out = chain.exchange(&post).expect("exchange").outcome;
    assert_eq!(status(&out), 413);
    let body = out.response.as_ref().map(|r| r.message.body.to_text());
    assert_eq!(body.as_deref(), Some("Payload Too Large"));
    let details = out.local_reply.as_ref().map(|r| r.details.clone());
    assert_eq!(details.as_deref(), Some("request_payload_too_large"));
    assert!(out.upstream_request.is_none());
    assert_eq!(log.reads("f"), ["HTTP_RESPONSE_HEADERS :status -> 413"]);
}

#[test]
fn a_local_reply_after_the_client_got_headers_resets_the_stream() {
    // FilterManager::sendLocalReply, last branch: headers already went
    // downstream, so all Envoy can do is reset the stream.
    let log = CallLog::default();
    let script: fn(&mut ScriptedVm) = |vm| {
        vm.on("response_body").then(Act::LocalReply {
            status: 500,
            body: "late",
            headers: &[],
        });
    };
    let mut chain = chain(&log, vec![("f", script)]);
    let mut ex = get("/");
    ex.upstream = answer(&["xyz"]);
    let out = chain.exchange(&ex).expect("exchange").outcome;
    assert_eq!(out.end, StreamEnd::Reset);
    let response = out.response.as_ref();
    assert_eq!(response.map(|r| (r.status, r.reset)), Some((200, true)));
    assert_eq!(
        log.calls("f")[2..],
        [
            "response_headers(2,2,0)",
            "response_body(2,3,0)",
            "log(2)",
            "done(2)",
            "delete(2)",
        ]
    );
}

#[test]
fn a_trap_leaves_other_paused_streams_waiting_as_envoy_does() {
    // proxy-wasm-cpp-host checks the failure when it calls into a context
    // (CHECK_FAIL_HTTP in ContextBase::onRequestHeaders and the other
    // stream callbacks); nothing fails the streams already in flight. A
    // stream paused on a callout is not resumed: its answer is dropped
    // (ContextBase::onHttpCallResponse returns when isFailed()), and it
    // waits for Envoy's stream timeouts.
    let log = CallLog::default();
    let script: fn(&mut ScriptedVm) = |vm| {
        vm.on("request_headers").ctx(3).traps("unreachable");
        calls_out(vm);
    };
    let mut chain = chain_with(&log, &auth_cluster(&[50]), vec![("f", script)]);
    let (a, _) = chain.open(&get("/a"), Some(answer(&[])));
    let b = chain.exchange(&get("/b")).expect("exchange").outcome;
    assert_eq!(status(&b), 503);
    log.clear();
    let a = chain.finish(a).expect("finish").outcome;
    assert!(log.calls("f").is_empty(), "the answer is dropped");
    assert!(
        matches!(a.end, StreamEnd::Stalled { .. }),
        "stream a still waits"
    );
}
