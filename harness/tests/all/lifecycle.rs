//! Envoy's start-up order, context ids, the HTTP lifecycle, Pause/Continue,
//! buffering, deferred stream actions, local replies and traps.

use harness::{
    Body, DownstreamRequest, HarnessConfig, HarnessError, Headers, PluginConfig, StreamEnd,
    UpstreamResponse,
};
use serde_json::json;

use crate::support::*;

fn upload() -> DownstreamRequest {
    let mut request = request(
        "POST /upload",
        &[("host", "example.com"), ("content-type", "text/plain")],
    );
    request.body = Body(vec!["ab".into(), "cd".into()]);
    request.trailers = Some(Headers::from_pairs([("x-req-trailer", "1")]));
    request
}

fn upstream_with_trailers() -> UpstreamResponse {
    UpstreamResponse {
        status: 200,
        headers: Headers::from_pairs([("content-type", "text/plain")]),
        body: Body(vec!["xy".into()]),
        trailers: Some(Headers::from_pairs([("x-resp-trailer", "2")])),
        unreachable: false,
    }
}

#[test]
fn start_up_runs_in_envoy_order_with_root_context_1() {
    let mut config = probe_config(json!({"trace": true}));
    config.plugin.vm_config = json!({"trace": true}).to_string().into();
    let vm_config_len = config.plugin.vm_config.len();
    let plugin_config_len = config.plugin.configuration.len();
    let harness = start(config);
    let startup = harness.startup();
    assert_eq!(
        callbacks(startup),
        vec![
            format!("vm_start ctx=1 size={vm_config_len}"),
            format!("configure ctx=1 size={plugin_config_len}")
        ]
    );
    let names = startup.callback_names();
    let position = |name: &str| {
        names
            .iter()
            .position(|n| *n == name)
            .unwrap_or_else(|| panic!("{name} not called: {names:?}"))
    };
    assert!(position("_initialize") < position("proxy_on_context_create"));
    assert!(position("proxy_on_context_create") < position("proxy_on_vm_start"));
    assert!(position("proxy_on_vm_start") < position("proxy_on_configure"));
    let create_args = startup.trace.iter().find_map(|e| match e {
        harness::TraceEvent::Callback { name, args, .. } if name == "proxy_on_context_create" => {
            Some(args.clone())
        }
        _ => None,
    });
    assert_eq!(create_args, Some(vec![1, 0]), "root context is 1, parent 0");
}

#[test]
fn http_stream_callbacks_come_in_envoy_order() {
    let mut envoy = probe(json!({"trace": true}));
    let outcome = exchange(&mut envoy, upload(), upstream_with_trailers());
    let cbs = callbacks(&outcome);
    let without_counts: Vec<String> = cbs
        .iter()
        .map(|l| l.split(" headers=").next().unwrap_or(l).to_string())
        .collect();
    assert_eq!(
        without_counts,
        vec![
            "create_http_context ctx=2 root=1",
            "request_headers ctx=2",
            "request_body ctx=2 size=2 eos=false",
            "request_body ctx=2 size=2 eos=false",
            "request_trailers ctx=2 trailers=1",
            "response_headers ctx=2",
            "response_body ctx=2 size=2 eos=false",
            "response_trailers ctx=2 trailers=1",
            "log ctx=2",
            "done ctx=2",
        ],
        "full trace: {cbs:#?}"
    );
    assert!(
        cbs[1].ends_with("eos=false"),
        "headers before a body are not end_of_stream: {}",
        cbs[1]
    );
    let names = outcome.callback_names();
    let tail: Vec<&str> = names.iter().rev().take(3).rev().copied().collect();
    assert_eq!(
        tail,
        vec!["proxy_on_log", "proxy_on_done", "proxy_on_delete"]
    );

    let upstream = outcome
        .upstream_request
        .expect("request reached the upstream");
    assert_eq!(upstream.body.as_bytes(), b"abcd");
    assert_eq!(
        upstream.trailers.and_then(|t| t.get_text("x-req-trailer")),
        Some("1".into())
    );
    let response = outcome.response.expect("response reached the client");
    assert_eq!(response.status, 200);
    assert_eq!(response.message.body.as_bytes(), b"xy");
    assert_eq!(
        response
            .message
            .trailers
            .and_then(|t| t.get_text("x-resp-trailer")),
        Some("2".into())
    );
    assert_eq!(outcome.end, StreamEnd::Completed);

    // The next stream gets the next context id.
    let second = exchange(&mut envoy, get("/again"), ok_upstream());
    assert_eq!(callbacks(&second)[0], "create_http_context ctx=3 root=1");
    assert_eq!(second.context_id, 3);
}

#[test]
fn headers_only_request_is_end_of_stream() {
    let mut envoy = probe(json!({"trace": true}));
    let outcome = exchange(&mut envoy, get("/"), ok_upstream());
    let cbs = callbacks(&outcome);
    let request_headers = cbs
        .iter()
        .find(|l| l.starts_with("request_headers"))
        .expect("request_headers called");
    assert!(request_headers.ends_with("eos=true"), "{request_headers}");
    assert!(
        !cbs.iter().any(|l| l.starts_with("request_body")),
        "no body callback without a body: {cbs:#?}"
    );
}

#[test]
fn pause_on_headers_holds_the_body_and_stalls_without_resume() {
    let mut envoy = probe(json!({"trace": true, "http": {"request_headers": {"action": "pause"}}}));
    let outcome = exchange(&mut envoy, upload(), ok_upstream());
    assert!(
        matches!(outcome.end, StreamEnd::Stalled { .. }),
        "end: {:?}",
        outcome.end
    );
    assert!(outcome.upstream_request.is_none());
    let cbs = callbacks(&outcome);
    assert!(
        !cbs.iter().any(|l| l.starts_with("request_body")),
        "body delivered while paused: {cbs:#?}"
    );
}

#[test]
fn pausing_body_buffers_chunks_and_reports_the_accumulated_size() {
    let mut envoy = probe(json!({
        "trace": true,
        "http": {"request_body": {"action": "pause_until_eos", "steps": [
            {"op": "get_buffer", "buffer": "request_body"},
            {"op": "get_buffer_status", "buffer": "request_body"}
        ]}}
    }));
    let mut request = request("POST /b", &[("host", "h")]);
    request.body = Body(vec!["ab".into(), "cd".into(), "ef".into()]);
    let outcome = exchange(&mut envoy, request, ok_upstream());
    let bodies = request_body_callbacks(&outcome);
    // HTTP/1: the codec ends the message with an empty end-of-stream frame.
    assert_eq!(
        bodies,
        vec![
            "request_body ctx=2 size=2 eos=false",
            "request_body ctx=2 size=4 eos=false",
            "request_body ctx=2 size=6 eos=false",
            "request_body ctx=2 size=6 eos=true"
        ]
    );
    assert_eq!(
        results(&outcome, "get_buffer"),
        vec![
            r#"get_buffer: OK bytes="ab""#,
            r#"get_buffer: OK bytes="abcd""#,
            r#"get_buffer: OK bytes="abcdef""#,
            r#"get_buffer: OK bytes="abcdef""#,
        ]
    );
    assert_eq!(
        results(&outcome, "get_buffer_status")[2],
        "get_buffer_status: OK length=6 flags=0"
    );
    assert_eq!(
        outcome.upstream_request.expect("forwarded").body.as_bytes(),
        b"abcdef"
    );
}

#[test]
fn buffering_past_the_limit_answers_413_for_requests_and_500_for_responses() {
    let script = json!({"http": {
        "request_body": {"action": "pause_until_eos"},
        "response_body": {"action": "pause_until_eos"}
    }});
    let mut config = probe_config(script);
    config.buffer_limit_bytes = 4;
    let mut envoy = start(config);

    let mut big = request("POST /big", &[("host", "h")]);
    big.body = Body(vec!["abc".into(), "def".into()]);
    let outcome = exchange(&mut envoy, big, ok_upstream());
    let reply = outcome.local_reply.expect("413 local reply");
    assert_eq!((reply.status, reply.source.as_str()), (413, "harness"));
    assert!(outcome.upstream_request.is_none());

    let upstream = UpstreamResponse {
        body: Body(vec!["abc".into(), "def".into()]),
        ..UpstreamResponse::default()
    };
    let outcome = exchange(&mut envoy, get("/"), upstream);
    let reply = outcome.local_reply.expect("500 local reply");
    assert_eq!((reply.status, reply.source.as_str()), (500, "harness"));
}

#[test]
fn trailers_are_readable_and_writable_in_their_callbacks() {
    let mut envoy = probe(json!({"http": {
        "request_trailers": {"steps": [
            {"op": "get_header", "map": "request_trailers", "key": "x-req-trailer"},
            {"op": "add_header", "map": "request_trailers", "key": "X-Added", "value": "t"}
        ]},
        "response_trailers": {"steps": [
            {"op": "get_headers", "map": "response_trailers"},
            {"op": "replace_header", "map": "response_trailers", "key": "x-resp-trailer", "value": "changed"}
        ]}
    }}));
    let outcome = exchange(&mut envoy, upload(), upstream_with_trailers());
    assert_eq!(
        result(&outcome, "get_header"),
        r#"get_header: OK value="1""#
    );
    assert_eq!(
        result(&outcome, "get_headers"),
        r#"get_headers: OK pairs=["x-resp-trailer"="2"]"#
    );
    let upstream_trailers = outcome
        .upstream_request
        .and_then(|r| r.trailers)
        .expect("request trailers");
    assert_eq!(
        upstream_trailers.get_text("x-added"),
        Some("t".into()),
        "keys are lower-cased"
    );
    let response_trailers = outcome
        .response
        .and_then(|r| r.message.trailers)
        .expect("response trailers");
    assert_eq!(
        response_trailers.get_text("x-resp-trailer"),
        Some("changed".into())
    );
}

fn local_reply_script(phase: &str) -> serde_json::Value {
    json!({"trace": true, "http": {
        phase: {"action": "continue", "steps": [
            {"op": "send_local_response", "status": 403, "body": "denied", "details": "probe_denied",
             "headers": [["X-Why", "policy"]]},
            {"op": "log", "level": 2, "message": "still running after send_local_response"}
        ]},
        "response_headers": {"steps": [
            {"op": "get_header", "map": "response_headers", "key": ":status", "label": "status seen by filter"},
            {"op": "get_header", "map": "response_headers", "key": "content-type", "label": "content-type seen by filter"}
        ]}
    }})
}

#[test]
fn send_local_response_from_each_request_phase_replaces_the_upstream() {
    for phase in ["request_headers", "request_body", "request_trailers"] {
        let mut envoy = probe(local_reply_script(phase));
        let outcome = exchange(&mut envoy, upload(), upstream_with_trailers());
        assert!(
            outcome.upstream_request.is_none(),
            "{phase}: the request must not reach the upstream"
        );
        let reply = outcome
            .local_reply
            .clone()
            .unwrap_or_else(|| panic!("{phase}: no local reply"));
        assert_eq!(
            (reply.status, reply.source.as_str(), reply.details.as_str()),
            (403, "filter", "probe_denied")
        );
        assert_eq!(reply.body.as_bytes(), b"denied");
        let response = outcome
            .response
            .clone()
            .expect("client got the local reply");
        assert_eq!(response.status, 403, "{phase}");
        assert_eq!(response.message.body.as_bytes(), b"denied");
        assert_eq!(
            response.message.headers.get_text("x-why"),
            Some("policy".into()),
            "{phase}: lower-cased extra header"
        );
        // Deferred: the callback ran to its end, and the reply then passed
        // through this filter's response path with :status and text/plain.
        assert_in_order(
            &info(&outcome),
            &[
                "send_local_response: OK",
                "still running after send_local_response",
                r#"status seen by filter: OK value="403""#,
                r#"content-type seen by filter: OK value="text/plain""#,
            ],
        );
        let cbs = callbacks(&outcome);
        let at = |prefix: &str| cbs.iter().position(|l| l.starts_with(prefix));
        assert!(
            at("log").is_some() && at("response_headers") < at("log"),
            "{phase}: {cbs:#?}"
        );
        if phase == "request_headers" {
            assert!(
                at("request_body").is_none(),
                "the local reply stops the request path: {cbs:#?}"
            );
        }
    }
}

#[test]
fn send_local_response_from_response_headers_replaces_the_upstream_response() {
    let mut envoy = probe(json!({"http": {"response_headers": {"steps": [
        {"op": "send_local_response", "status": 502, "body": "replaced"}
    ]}}}));
    let outcome = exchange(&mut envoy, get("/"), upstream_with_trailers());
    assert!(
        outcome.upstream_request.is_some(),
        "the request had been forwarded"
    );
    let response = outcome.response.expect("client response");
    assert_eq!(response.status, 502);
    assert_eq!(response.message.body.as_bytes(), b"replaced");
    assert_eq!(outcome.local_reply.map(|r| r.status), Some(502));
}

#[test]
fn resume_from_http_call_response_is_deferred_until_the_callback_returns() {
    let clusters = vec![harness::ClusterSpec {
        name: "auth".into(),
        http: vec![harness::HttpCalloutAnswer {
            status: 200,
            headers: Headers::from_pairs([("x-user", "alice")]),
            body: Body::single("granted"),
            delay_ms: 25,
            ..Default::default()
        }],
        grpc: vec![],
        refuse_connections: false,
    }];
    let mut envoy = probe_with_clusters(
        json!({"trace": true, "http": {
            "request_headers": {"action": "pause", "steps": [
                {"op": "http_call", "cluster": "auth", "timeout_ms": 1000,
                 "headers": [[":method", "GET"], [":path", "/check"], [":authority", "auth"]]}
            ]},
            "callouts": {"http_call_response": [
                {"op": "get_header", "map": "http_call_response_headers", "key": "x-user"},
                {"op": "add_header", "map": "request_headers", "key": "x-user", "value": "alice"},
                {"op": "continue_stream", "stream": "request"},
                {"op": "log", "level": 2, "message": "after continue_stream"}
            ]}
        }}),
        clusters,
    );
    let mut request = upload();
    request.trailers = None;
    let outcome = exchange(&mut envoy, request, ok_upstream());
    assert_eq!(result(&outcome, "http_call"), "http_call: OK token=1");
    assert_eq!(
        result(&outcome, "get_header"),
        r#"get_header: OK value="alice""#
    );
    assert_in_order(
        &info(&outcome),
        &[
            "cb request_headers ctx=2 headers=7 eos=false",
            "cb http_call_response ctx=2 token=1 headers=3 body=7 trailers=0",
            "continue_stream: OK",
            "after continue_stream",
            // The chunks that arrived while paused come as one buffered callback.
            "cb request_body ctx=2 size=4 eos=true",
        ],
    );
    let upstream = outcome
        .upstream_request
        .expect("resumed request reached the upstream");
    assert_eq!(upstream.headers.get_text("x-user"), Some("alice".into()));
    assert_eq!(
        upstream.body.as_bytes(),
        b"abcd",
        "body held while paused is delivered after resume"
    );
    assert!(
        outcome.elapsed_ms >= 25,
        "the answer came after its virtual delay: {}",
        outcome.elapsed_ms
    );
    assert_eq!(outcome.http_calls.len(), 1);
    assert!(matches!(
        outcome.http_calls[0].result,
        harness::CalloutResult::Answered { status: 200 }
    ));
    // Envoy delivers the answer to the root context (1); the SDK then makes
    // the stream (2) the effective context.
    let delivered_to = outcome.trace.iter().find_map(|e| match e {
        harness::TraceEvent::Callback { name, args, .. }
            if name == "proxy_on_http_call_response" =>
        {
            args.first().copied()
        }
        _ => None,
    });
    assert_eq!(delivered_to, Some(1));
    assert!(
        outcome
            .hostcalls
            .get("proxy_set_effective_context")
            .is_some_and(|n| *n >= 1)
    );
}

#[test]
fn close_stream_resets_after_the_callback_returns() {
    let mut envoy = probe(json!({"http": {"response_headers": {"steps": [
        {"op": "close_stream", "stream": "response"},
        {"op": "log", "level": 2, "message": "after close_stream"}
    ]}}}));
    let outcome = exchange(&mut envoy, get("/"), ok_upstream());
    assert_in_order(&info(&outcome), &["close_stream: OK", "after close_stream"]);
    assert_eq!(outcome.end, StreamEnd::Reset);
    assert!(outcome.response.map(|r| r.reset).unwrap_or(true));
}

#[test]
fn a_panic_traps_fails_the_vm_and_answers_503() {
    let script = json!({"http": {"request_headers": {"steps": [{"op": "panic", "message": "probe exploded"}]}}});
    let mut envoy = probe(script.clone());
    let outcome = exchange(&mut envoy, get("/"), ok_upstream());
    let trap = outcome.trap.clone().expect("trap reported");
    assert_eq!(trap.callback, "proxy_on_request_headers");
    assert_eq!(trap.context_id, 2);
    assert!(
        trap.panic_message
            .as_deref()
            .is_some_and(|m| m.contains("probe exploded")),
        "panic message from the guest's logs: {trap:?}"
    );
    assert!(outcome.logs.iter().any(|l| l.level == harness::LogLevel::Critical && l.message.contains("probe exploded")));
    assert!(outcome.upstream_request.is_none());
    let reply = outcome.local_reply.expect("fail-closed local reply");
    assert_eq!((reply.status, reply.source.as_str()), (503, "harness"));
    assert!(envoy.vm_failure().is_some());

    // The VM stays failed: later streams get 503 without entering the guest.
    let again = exchange(&mut envoy, get("/"), ok_upstream());
    assert_eq!(again.response.as_ref().map(|r| r.status), Some(503));
    assert!(!again.callback_names().contains(&"proxy_on_request_headers"));

    // fail_open lets traffic through instead.
    let mut config = probe_config(script);
    config.plugin.fail_open = true;
    let mut open = start(config);
    let outcome = exchange(&mut open, get("/"), ok_upstream());
    assert!(outcome.trap.is_some());
    assert!(outcome.upstream_request.is_some());
    assert_eq!(outcome.response.map(|r| r.status), Some(200));
}

#[test]
fn a_panic_in_on_configure_is_a_start_up_error_with_the_message() {
    let config = probe_config(json!({"configure": [{"op": "panic", "message": "bad start"}]}));
    match harness::Harness::new(probe_module(), config) {
        Err(HarnessError::Trap {
            callback,
            panic_message,
            ..
        }) => {
            assert_eq!(callback, "proxy_on_configure");
            assert!(panic_message.is_some_and(|m| m.contains("bad start")));
        }
        Err(other) => panic!("expected a trap, got {other}"),
        Ok(_) => panic!("start-up should fail"),
    }
}

#[test]
fn on_configure_returning_false_is_reported_with_the_filter_logs() {
    let config = probe_config(json!({"configure_result": false}));
    let error = harness::Harness::new(probe_module(), config)
        .err()
        .expect("start-up fails");
    let text = error.to_string();
    match error {
        HarnessError::ConfigurationRejected { callback, logs } => {
            assert_eq!(callback, "proxy_on_configure");
            assert!(
                logs.iter()
                    .any(|l| l.message.contains("configure_result is false")),
                "{logs:?}"
            );
        }
        other => panic!("expected ConfigurationRejected, got {other}"),
    }
    assert!(
        text.contains("configure_result is false"),
        "the error shows what the filter logged: {text}"
    );

    // Invalid JSON: the probe logs the parse error and returns false.
    let config = HarnessConfig {
        plugin: PluginConfig {
            configuration: "{not json".into(),
            ..PluginConfig::default()
        },
        ..HarnessConfig::default()
    };
    let error = harness::Harness::new(probe_module(), config)
        .err()
        .expect("start-up fails");
    assert!(
        error.to_string().contains("invalid plugin configuration"),
        "{error}"
    );
}

#[test]
fn send_local_response_after_the_response_started_resets_the_stream() {
    // Envoy cannot replace a response whose headers already went to the
    // client: the stream is reset instead.
    let mut envoy = probe(json!({"http": {"response_body": {"steps": [
        {"op": "send_local_response", "status": 500, "body": "too late"}
    ]}}}));
    let upstream = UpstreamResponse {
        body: Body(vec!["part-1".into(), "part-2".into()]),
        ..UpstreamResponse::default()
    };
    let outcome = exchange(&mut envoy, get("/"), upstream);
    assert_eq!(outcome.end, StreamEnd::Reset, "{:#?}", outcome.response);
    let response = outcome.response.expect("what reached the client");
    assert!(response.reset);
    assert_eq!(response.status, 200, "the upstream's headers had been sent");
    assert!(!response.message.body.to_text().contains("too late"));
}

#[test]
fn pause_on_response_headers_then_resume_from_an_http_call_response() {
    let clusters = vec![harness::ClusterSpec {
        name: "enrich".into(),
        http: vec![harness::HttpCalloutAnswer {
            body: Body::single("extra"),
            ..Default::default()
        }],
        grpc: vec![],
        refuse_connections: false,
    }];
    let mut envoy = probe_with_clusters(
        json!({"trace": true, "http": {
            "response_headers": {"action": "pause", "steps": [
                {"op": "http_call", "cluster": "enrich", "timeout_ms": 100,
                 "headers": [[":method", "GET"], [":path", "/e"], [":authority", "enrich"]]}
            ]},
            "callouts": {"http_call_response": [
                {"op": "add_header", "map": "response_headers", "key": "x-enriched", "value": "yes"},
                {"op": "continue_stream", "stream": "response"}
            ]}
        }}),
        clusters,
    );
    let upstream = UpstreamResponse {
        body: Body(vec!["r1".into(), "r2".into()]),
        ..UpstreamResponse::default()
    };
    let outcome = exchange(&mut envoy, get("/"), upstream);
    let response = outcome
        .response
        .clone()
        .expect("resumed response reached the client");
    assert_eq!(
        response.message.headers.get_text("x-enriched"),
        Some("yes".into())
    );
    assert_eq!(
        response.message.body.as_bytes(),
        b"r1r2",
        "body held while paused is delivered"
    );
    let cbs = callbacks(&outcome);
    let at = |prefix: &str| {
        cbs.iter()
            .position(|l| l.starts_with(prefix))
            .unwrap_or(usize::MAX)
    };
    assert!(
        at("http_call_response") < at("response_body"),
        "no body callback before the resume: {cbs:#?}"
    );
}

#[test]
fn many_harnesses_run_in_parallel_without_sharing_state() {
    let workers: Vec<_> = (0..4)
        .map(|n| {
            std::thread::spawn(move || {
                let mut envoy = probe(json!({"http": {"request_headers": {"steps": [
                    {"op": "get_shared_data", "key": "owner", "label": "before"},
                    {"op": "set_shared_data", "key": "owner", "value": format!("worker {n}")},
                    {"op": "get_shared_data", "key": "owner", "label": "after"}
                ]}}}));
                let first = exchange(&mut envoy, get("/"), ok_upstream());
                let second = exchange(&mut envoy, get("/"), ok_upstream());
                (
                    n,
                    result(&first, "before"),
                    result(&second, "before"),
                    result(&second, "after"),
                )
            })
        })
        .collect();
    for worker in workers {
        let (n, first_before, second_before, second_after) = worker.join().expect("worker thread");
        assert_eq!(
            first_before, "before: NOT_FOUND",
            "worker {n} saw another harness's data"
        );
        assert!(
            second_before.starts_with(&format!("before: OK value=\"worker {n}\"")),
            "{second_before}"
        );
        assert!(
            second_after.starts_with(&format!("after: OK value=\"worker {n}\"")),
            "{second_after}"
        );
    }
}

#[test]
fn an_unreachable_upstream_answers_503_through_the_filter_response_path() {
    let mut envoy = probe(
        json!({"trace": true, "http": {"response_headers": {"steps": [
            {"op": "get_header", "map": "response_headers", "key": ":status", "label": "status seen"},
            {"op": "add_header", "map": "response_headers", "key": "x-filter", "value": "saw it"}
        ]}}}),
    );
    let upstream = UpstreamResponse {
        unreachable: true,
        ..UpstreamResponse::default()
    };
    let outcome = exchange(&mut envoy, get("/"), upstream);
    assert!(outcome.upstream_request.is_none());
    let reply = outcome.local_reply.clone().expect("router local reply");
    assert_eq!((reply.status, reply.source.as_str()), (503, "harness"));
    assert_eq!(
        result(&outcome, "status seen"),
        r#"status seen: OK value="503""#
    );
    let response = outcome.response.clone().expect("client response");
    assert_eq!(response.status, 503);
    assert_eq!(
        response.message.headers.get_text("x-filter"),
        Some("saw it".into())
    );
    let cbs = callbacks(&outcome);
    let at = |prefix: &str| cbs.iter().position(|l| l.starts_with(prefix));
    assert!(
        at("response_headers") < at("log") && at("log") < at("done"),
        "{cbs:#?}"
    );
}

#[test]
fn http2_ends_the_body_on_its_last_frame_and_request_protocol_says_which() {
    let script = json!({
        "trace": true,
        "http": {"request_headers": {"steps": [
            {"op": "get_property", "path": ["request", "protocol"], "label": "protocol"}]}}
    });
    for (line, last_frame, protocol) in [
        ("POST /b", "request_body ctx=2 size=0 eos=true", "HTTP/1.1"),
        (
            "POST /b HTTP/2",
            "request_body ctx=2 size=2 eos=true",
            "HTTP/2",
        ),
    ] {
        let mut envoy = probe(script.clone());
        let mut request = request(line, &[("host", "h")]);
        request.body = Body(vec!["ab".into(), "cd".into()]);
        let outcome = exchange(&mut envoy, request, ok_upstream());
        let bodies = request_body_callbacks(&outcome);
        assert_eq!(
            bodies.last().map(String::as_str),
            Some(last_frame),
            "{line}"
        );
        assert_eq!(
            result(&outcome, "protocol"),
            format!(r#"protocol: OK value="{protocol}""#)
        );
        // Either way the upstream gets the whole body.
        assert_eq!(
            outcome.upstream_request.expect("forwarded").body.as_bytes(),
            b"abcd"
        );
    }
}

#[test]
fn start_up_runs_on_a_canary_vm_first_once_per_envoy() {
    // The canary's configure writes shared data before any worker's VM
    // starts: each worker then sees the canary's write, and the canary's
    // own lines come first, marked. With two workers the canary still runs
    // once.
    let script = json!({"configure": [
        {"op": "get_shared_data", "key": "configured", "label": "before me"},
        {"op": "set_shared_data", "key": "configured", "value": "yes"}]});
    let plugins = vec![(
        harness::FilterModule::from(probe_module()),
        probe_config(script),
    )];
    let workers = harness::Envoy::builder()
        .plugins(&plugins)
        .workers(2)
        .build()
        .expect("start-up");
    let startup = |w: usize| workers.vms(w)[0].startup().logs.clone();
    let first: Vec<String> = startup(0).into_iter().map(|l| l.message).collect();
    assert!(
        first[0].starts_with("[canary] before me: NOT_FOUND"),
        "the canary runs first and sees nothing: {first:#?}"
    );
    assert!(
        first
            .iter()
            .any(|l| l.starts_with("before me: OK") && l.contains("yes")),
        "the worker's VM sees the canary's write: {first:#?}"
    );
    let canaries = (0..2)
        .flat_map(startup)
        .filter(|l| l.message.starts_with("[canary] before me"))
        .count();
    assert_eq!(canaries, 1, "one canary per Envoy, not per worker");
}

/// The `request_body ...` callback trace lines, in order.
fn request_body_callbacks(outcome: &harness::Outcome) -> Vec<String> {
    callbacks(outcome)
        .into_iter()
        .filter(|l| l.starts_with("request_body"))
        .collect()
}
