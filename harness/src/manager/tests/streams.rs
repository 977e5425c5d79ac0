//! Frames through a chain, and many streams on one VM.

use super::*;
use crate::manager::{Slot, Streams, exchange};

#[test]
fn a_chain_moves_each_frame_through_every_filter_before_the_next() {
    let log = CallLog::default();
    let nothing: fn(&mut ScriptedVm) = |_| {};
    let mut chain = chain(&log, vec![("f1", nothing), ("f2", nothing)]);
    let mut post = request("POST", "/p", &["ab"], HttpProtocol::Http11);
    post.upstream = answer(&["z"]);
    chain.exchange(&post).expect("exchange");
    assert_eq!(
        log.all_calls()[..12],
        [
            "f1 context_create(2,1)",
            "f1 request_headers(2,6,0)",
            "f2 context_create(2,1)",
            "f2 request_headers(2,6,0)",
            "f1 request_body(2,2,0)",
            "f2 request_body(2,2,0)",
            "f1 request_body(2,0,1)",
            "f2 request_body(2,0,1)",
            // The response path runs in reverse.
            "f2 response_headers(2,2,0)",
            "f1 response_headers(2,2,0)",
            "f2 response_body(2,1,0)",
            "f1 response_body(2,1,0)",
        ]
    );
}

#[test]
fn a_pause_in_filter_two_holds_only_the_filters_after_it() {
    let log = CallLog::default();
    let nothing: fn(&mut ScriptedVm) = |_| {};
    let pauses: fn(&mut ScriptedVm) = |vm| {
        resume_stream_2_on_tick(vm);
        vm.on("request_headers").pause();
    };
    let mut chain = chain(&log, vec![("f1", nothing), ("f2", pauses)]);
    let post = request("POST", "/p", &["ab"], HttpProtocol::Http11);
    let (key, _) = chain.open(&post, Some(answer(&[])));
    // f1 continued: its body frames reach it while f2 holds the request.
    assert_eq!(
        log.all_calls(),
        [
            "f1 context_create(2,1)",
            "f1 request_headers(2,6,0)",
            "f2 context_create(2,1)",
            "f2 request_headers(2,6,0)",
            "f1 request_body(2,2,0)",
            "f1 request_body(2,0,1)",
        ]
    );
    let out = chain.finish(key).expect("finish").outcome;
    assert_eq!(
        log.all_calls()[6..9],
        [
            "f2 tick(1)",
            "f2 request_body(2,2,1)",
            "f2 response_headers(2,2,1)"
        ]
    );
    assert_eq!(upstream_body(&out).as_deref(), Some("ab"));
}

#[test]
fn a_stream_paused_on_a_callout_waits_while_another_runs_to_its_end() {
    let log = CallLog::default();
    let script: fn(&mut ScriptedVm) = |vm| {
        // Stream context 3 passes without a callout.
        vm.on("request_headers").ctx(3);
        calls_out(vm);
    };
    let mut chain = chain_with(&log, &auth_cluster(&[50]), vec![("f", script)]);
    let (a, _) = chain.open(&get("/a"), Some(answer(&[])));
    // Stream B (context 3, the VM's one counter) starts, runs and ends.
    let b = chain.exchange(&get("/b")).expect("exchange").outcome;
    assert_eq!(status(&b), 200);
    assert_eq!(upstream_header(&b, "x-answer"), None);
    assert_eq!(
        log.calls("f"),
        [
            "context_create(2,1)",
            "request_headers(2,6,1)",
            "context_create(3,1)",
            "request_headers(3,6,1)",
            "response_headers(3,2,1)",
            "log(3)",
            "done(3)",
            "delete(3)",
        ]
    );
    log.clear();
    let a = chain.finish(a).expect("finish").outcome;
    assert_eq!(
        log.calls("f"),
        [
            // The answer goes to the root context (1), token 1.
            "http_call_response(1,1,2,8,0)",
            "response_headers(2,2,1)",
            "log(2)",
            "done(2)",
            "delete(2)",
        ]
    );
    assert_eq!(upstream_header(&a, "x-answer").as_deref(), Some("answer-1"));
    assert_eq!(a.elapsed_ms, 50);
}

#[test]
fn callout_answers_in_reverse_order_reach_their_own_streams() {
    let log = CallLog::default();
    // The first call is answered after 30 ms, the second after 10 ms.
    let mut chain = chain_with(&log, &auth_cluster(&[30, 10]), vec![("f", calls_out)]);
    let (a, _) = chain.open(&get("/x"), Some(answer(&[])));
    let (b, _) = chain.open(&get("/x"), Some(answer(&[])));
    log.clear();
    let b = chain.finish(b).expect("finish b").outcome;
    assert_eq!(
        log.calls("f"),
        [
            "http_call_response(1,2,2,8,0)",
            "response_headers(3,2,1)",
            "log(3)",
            "done(3)",
            "delete(3)",
        ]
    );
    assert_eq!(upstream_header(&b, "x-answer").as_deref(), Some("answer-2"));
    log.clear();
    let a = chain.finish(a).expect("finish a").outcome;
    assert_eq!(
        log.calls("f")[..2],
        ["http_call_response(1,1,2,8,0)", "response_headers(2,2,1)"]
    );
    assert_eq!(upstream_header(&a, "x-answer").as_deref(), Some("answer-1"));
}

#[test]
fn two_plugins_sharing_one_vm_get_roots_1_and_2_and_one_stream_counter() {
    let log = CallLog::default();
    let shared = SharedHost::new();
    let mut vm = filter("vm", &log, &config(false), &shared, |_| {});
    let root = vm.add_plugin(&config(false)).expect("a second plugin");
    assert_eq!(root, 2);
    assert_eq!(
        log.calls("vm"),
        [
            "context_create(1,0)",
            "vm_start(1,0)",
            "configure(1,0)",
            "context_create(2,0)",
            "vm_start(2,0)",
            "configure(2,0)",
        ]
    );
    log.clear();
    // Both chain positions run in the one VM, each under its own root.
    let slots = [Slot { vm: 0, root: 1 }, Slot { vm: 0, root: 2 }];
    let mut filters = vec![vm];
    let mut streams = Streams::default();
    for _ in 0..2 {
        let out = exchange(&mut filters, &slots, &mut streams, &get("/"));
        assert_eq!(out.len(), 2);
    }
    assert_eq!(
        log.calls("vm"),
        [
            "context_create(3,1)",
            "request_headers(3,6,1)",
            "context_create(4,2)",
            "request_headers(4,6,1)",
            "response_headers(4,2,1)",
            "response_headers(3,2,1)",
            "log(3)",
            "log(4)",
            "done(3)",
            "delete(3)",
            "done(4)",
            "delete(4)",
            "context_create(5,1)",
            "request_headers(5,6,1)",
            "context_create(6,2)",
            "request_headers(6,6,1)",
            "response_headers(6,2,1)",
            "response_headers(5,2,1)",
            "log(5)",
            "log(6)",
            "done(5)",
            "delete(5)",
            "done(6)",
            "delete(6)",
        ]
    );
}

#[test]
fn a_stream_paused_on_a_timer_waits_while_another_completes() {
    let log = CallLog::default();
    let script: fn(&mut ScriptedVm) = |vm| {
        resume_stream_2_on_tick(vm);
        vm.on("request_headers").ctx(2).pause();
    };
    let mut chain = chain(&log, vec![("f", script)]);
    let (a, _) = chain.open(&get("/a"), Some(answer(&[])));
    let b = chain.exchange(&get("/b")).expect("exchange").outcome;
    assert_eq!(status(&b), 200);
    assert_eq!(b.elapsed_ms, 0, "b never waited for a's timer");
    assert_eq!(
        log.calls("f")[2..],
        [
            "context_create(3,1)",
            "request_headers(3,6,1)",
            "response_headers(3,2,1)",
            "log(3)",
            "done(3)",
            "delete(3)",
        ]
    );
    log.clear();
    let a = chain.finish(a).expect("finish").outcome;
    assert_eq!(log.calls("f")[..2], ["tick(1)", "response_headers(2,2,1)"]);
    assert_eq!(a.elapsed_ms, 10);
    let path = a
        .upstream_request
        .as_ref()
        .and_then(|m| m.headers.get_text(":path"));
    assert_eq!(path.as_deref(), Some("/a"));
}

#[test]
fn a_callout_outlives_the_stream_that_made_it() {
    // Callouts belong to the root context (proxy-wasm-cpp-host exports.cc
    // http_call uses root_context()): the stream ending does not cancel it,
    // and the answer reaches the root after the stream is gone.
    let log = CallLog::default();
    let script: fn(&mut ScriptedVm) = |vm| {
        vm.on("request_headers")
            .then(Act::HttpCall { cluster: "auth" });
        vm.on("http_call_response")
            .then(Act::GetBody(BufferType::HttpCallResponseBody));
    };
    let mut chain = chain_with(&log, &auth_cluster(&[40]), vec![("f", script)]);
    let out = chain.exchange(&get("/")).expect("exchange").outcome;
    assert_eq!(out.elapsed_ms, 0);
    chain.advance(100).expect("advance");
    assert_eq!(
        log.calls("f")[3..],
        [
            "log(2)",
            "done(2)",
            "delete(2)",
            "http_call_response(1,1,2,8,0)"
        ]
    );
    assert_eq!(log.reads("f"), ["HTTP_CALL_RESPONSE_BODY -> answer-1"]);
}
