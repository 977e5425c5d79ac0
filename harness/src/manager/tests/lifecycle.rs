//! One stream on one filter: callback order, pauses, buffering, close.

use super::*;
use crate::model::StreamEnd;

#[test]
fn one_stream_gets_envoys_callbacks_in_order() {
    let log = CallLog::default();
    let shared = SharedHost::new();
    let f = filter("f", &log, &config(false), &shared, |_| {});
    // Start-up: root context 1.
    assert_eq!(
        log.calls("f"),
        ["context_create(1,0)", "vm_start(1,0)", "configure(1,0)"]
    );
    log.clear();
    let mut chain = Chain::from_filters(vec![f]).expect("chain");
    // HTTP/1: body chunks with end_of_stream false, then one empty frame
    // that ends the message (ConnectionImpl::onMessageComplete).
    let mut post = request("POST", "/up", &["ab", "cd"], HttpProtocol::Http11);
    post.upstream = answer(&["xyz"]);
    let out = chain.exchange(&post).expect("exchange").outcome;
    assert_eq!(
        log.calls("f"),
        [
            "context_create(2,1)",
            "request_headers(2,6,0)",
            "request_body(2,2,0)",
            "request_body(2,2,0)",
            "request_body(2,0,1)",
            // :status and the router's x-envoy-upstream-service-time.
            "response_headers(2,2,0)",
            "response_body(2,3,0)",
            "response_body(2,0,1)",
            // HTTP: on_log before on_done.
            "log(2)",
            "done(2)",
            "delete(2)",
        ]
    );
    assert_eq!(status(&out), 200);
    assert_eq!(upstream_body(&out).as_deref(), Some("abcd"));
    log.clear();
    // HTTP/2 ends on the last data frame; the next stream is context 3.
    let mut h2 = request("POST", "/up", &["ab", "cd"], HttpProtocol::Http2);
    h2.upstream = answer(&["xyz"]);
    chain.exchange(&h2).expect("exchange");
    assert_eq!(
        log.calls("f"),
        [
            "context_create(3,1)",
            "request_headers(3,6,0)",
            "request_body(3,2,0)",
            "request_body(3,2,1)",
            "response_headers(3,2,0)",
            "response_body(3,3,1)",
            "log(3)",
            "done(3)",
            "delete(3)",
        ]
    );
    log.clear();
    // A GET without body ends on its headers, and so does an empty answer.
    chain.exchange(&get("/")).expect("exchange");
    assert_eq!(
        log.calls("f")[1..3],
        ["request_headers(4,6,1)", "response_headers(4,2,1)"]
    );
}

#[test]
fn a_headers_pause_holds_the_body_until_continue_stream() {
    let log = CallLog::default();
    let mut chain = chain(
        &log,
        vec![("f", |vm| {
            resume_stream_2_on_tick(vm);
            vm.on("request_headers").pause();
        })],
    );
    let post = request("POST", "/p", &["ab", "cd"], HttpProtocol::Http11);
    let (key, _) = chain.open(&post, Some(answer(&[])));
    // StopAllIteration: the body frames that arrived wait.
    assert_eq!(
        log.calls("f"),
        ["context_create(2,1)", "request_headers(2,6,0)"]
    );
    let out = chain.finish(key).expect("finish").outcome;
    assert_eq!(
        log.calls("f")[2..],
        [
            "tick(1)",
            // Everything buffered meanwhile arrives as one body callback.
            "request_body(2,4,1)",
            "response_headers(2,2,1)",
            "log(2)",
            "done(2)",
            "delete(2)",
        ]
    );
    // The paused headers stay reachable; continue_stream withdraws them at
    // once (Envoy's Context::continueStream clears request_headers_), even
    // though the continue itself waits for on_tick to return.
    assert_eq!(
        log.reads("f"),
        [
            "HTTP_REQUEST_HEADERS :path -> /p",
            "HTTP_REQUEST_HEADERS :path -> BAD_ARGUMENT",
        ]
    );
    assert_eq!(upstream_body(&out).as_deref(), Some("abcd"));
}

#[test]
fn a_body_pause_buffers_and_the_filter_sees_the_whole_buffer() {
    let log = CallLog::default();
    let script: fn(&mut ScriptedVm) = |vm| {
        vm.on("request_body")
            .nth(4)
            .then(Act::GetBody(BufferType::HttpRequestBody));
        vm.on("request_body")
            .then(Act::GetBody(BufferType::HttpRequestBody))
            .pause();
    };
    let mut chain = chain(&log, vec![("f", script)]);
    let post = request("POST", "/p", &["ab", "cd", "ef"], HttpProtocol::Http11);
    let out = chain.exchange(&post).expect("exchange").outcome;
    // StopIterationAndBuffer: body_size is everything buffered so far.
    let bodies: Vec<String> = log
        .calls("f")
        .into_iter()
        .filter(|c| c.starts_with("request_body"))
        .collect();
    assert_eq!(
        bodies,
        [
            "request_body(2,2,0)",
            "request_body(2,4,0)",
            "request_body(2,6,0)",
            "request_body(2,6,1)",
        ]
    );
    assert_eq!(
        log.reads("f"),
        [
            "HTTP_REQUEST_BODY -> ab",
            "HTTP_REQUEST_BODY -> abcd",
            "HTTP_REQUEST_BODY -> abcdef",
            "HTTP_REQUEST_BODY -> abcdef",
        ]
    );
    assert_eq!(upstream_body(&out).as_deref(), Some("abcdef"));
}

#[test]
fn an_http2_body_paused_until_its_last_frame_includes_that_frame() {
    // Envoy >= 1.32 moves the arriving chunk into the buffer before the
    // callback (context.cc Context::decodeData, addDecodedData; envoy PR
    // 36411): the end_of_stream frame's data is part of what the filter sees.
    let log = CallLog::default();
    let script: fn(&mut ScriptedVm) = |vm| {
        vm.on("request_body")
            .nth(2)
            .then(Act::GetBody(BufferType::HttpRequestBody));
        vm.on("request_body").pause();
    };
    let mut chain = chain(&log, vec![("f", script)]);
    let post = request("POST", "/p", &["ab", "cd"], HttpProtocol::Http2);
    let out = chain.exchange(&post).expect("exchange").outcome;
    assert_eq!(
        log.calls("f")[2..4],
        ["request_body(2,2,0)", "request_body(2,4,1)"]
    );
    assert_eq!(log.reads("f"), ["HTTP_REQUEST_BODY -> abcd"]);
    assert_eq!(upstream_body(&out).as_deref(), Some("abcd"));
}

#[test]
fn close_stream_resets_the_stream_after_the_callback() {
    // Envoy's Context::closeStream defers resetStream until the VM call
    // returns; the stream is logged and destroyed, and the response code
    // details say why (CloseStreamResponseDetails, when none were set).
    let log = CallLog::default();
    let script: fn(&mut ScriptedVm) = |vm| {
        vm.on("request_headers")
            .then(Act::Close(StreamType::HttpRequest))
            .returns(0);
        vm.on("log").then(Act::GetProperty("response.code_details"));
    };
    let mut chain = chain(&log, vec![("f", script)]);
    let out = chain.exchange(&get("/")).expect("exchange").outcome;
    assert_eq!(
        log.calls("f"),
        [
            "context_create(2,1)",
            "request_headers(2,6,1)",
            "log(2)",
            "done(2)",
            "delete(2)",
        ]
    );
    assert_eq!(out.end, StreamEnd::Reset);
    assert_eq!(
        log.reads("f"),
        ["response.code_details -> wasm_close_stream"]
    );
}

#[test]
fn trailers_end_the_message_and_a_trailers_pause_holds_them() {
    let log = CallLog::default();
    let script: fn(&mut ScriptedVm) = |vm| {
        resume_stream_2_on_tick(vm);
        vm.on("request_trailers").pause();
    };
    let mut chain = chain(&log, vec![("f", script)]);
    let mut post = request("POST", "/p", &["ab"], HttpProtocol::Http11);
    post.request.trailers = Some(Headers::from_pairs([("x-sum", "1")]));
    let (key, _) = chain.open(&post, Some(answer(&[])));
    // With trailers the last data frame does not end the stream (no
    // empty HTTP/1 frame either): the trailers do.
    assert_eq!(
        log.calls("f"),
        [
            "context_create(2,1)",
            "request_headers(2,6,0)",
            "request_body(2,2,0)",
            "request_trailers(2,1)",
        ]
    );
    let out = chain.finish(key).expect("finish").outcome;
    assert_eq!(log.calls("f")[4..6], ["tick(1)", "response_headers(2,2,1)"]);
    let sent = out.upstream_request.as_ref();
    let trailer = sent.and_then(|m| m.trailers.as_ref()?.get_text("x-sum"));
    assert_eq!(trailer.as_deref(), Some("1"));
    assert_eq!(upstream_body(&out).as_deref(), Some("ab"));
}
