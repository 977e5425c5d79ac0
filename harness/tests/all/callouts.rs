//! Callouts (http_call, gRPC calls and streams) with Envoy's statuses and
//! the answers' shapes, as the probe filter sees them.

use harness::{Body, CalloutFailure, ClusterSpec, GrpcCalloutAnswer, Headers, HttpCalloutAnswer};
use serde_json::{Value, json};

use crate::hostcalls::step;
use crate::support::*;

// ---------------------------------------------------------------- callouts

fn auth_cluster(answers: Vec<HttpCalloutAnswer>) -> ClusterSpec {
    ClusterSpec {
        name: "auth".into(),
        http: answers,
        grpc: vec![],
        refuse_connections: false,
    }
}

/// The `grpc-svc` cluster answering with `answers` in turn.
fn grpc_svc(answers: Vec<GrpcCalloutAnswer>) -> Vec<ClusterSpec> {
    vec![ClusterSpec {
        name: "grpc-svc".into(),
        http: vec![],
        grpc: answers,
        refuse_connections: false,
    }]
}

fn call(label: &str, cluster: &str, headers: Value) -> Value {
    step(
        "http_call",
        label,
        json!({"cluster": cluster, "headers": headers, "timeout_ms": 500}),
    )
}

#[test]
fn http_call_rejects_unknown_clusters_and_missing_pseudo_headers() {
    let full = json!([[":method", "GET"], [":path", "/"], [":authority", "auth"]]);
    let mut envoy = probe_with_clusters(
        json!({"http": {"request_headers": {"steps": [
            call("unknown cluster", "nowhere", full.clone()),
            call("no method", "auth", json!([[":path", "/"], [":authority", "auth"]])),
            call("no path", "auth", json!([[":method", "GET"], [":authority", "auth"]])),
            call("no authority", "auth", json!([[":method", "GET"], [":path", "/"]]))
        ]}}}),
        vec![auth_cluster(vec![HttpCalloutAnswer::default()])],
    );
    let outcome = exchange(&mut envoy, get("/"), ok_upstream());
    for label in ["unknown cluster", "no method", "no path", "no authority"] {
        assert_eq!(
            result(&outcome, label),
            format!("{label}: BAD_ARGUMENT token=0")
        );
    }
    assert!(
        outcome.http_calls.is_empty(),
        "rejected calls are not made: {:?}",
        outcome.http_calls
    );
}

#[test]
fn http_call_response_reaches_the_root_with_headers_body_trailers() {
    let answer = HttpCalloutAnswer {
        status: 201,
        headers: Headers::from_pairs([("x-answer", "a")]),
        body: Body::single("answer-body"),
        trailers: Headers::from_pairs([("x-trailer", "t")]),
        delay_ms: 7,
        ..HttpCalloutAnswer::default()
    };
    let mut envoy = probe_with_clusters(
        json!({
            "trace": true,
            "configure": [
                step("http_call", "first", json!({"cluster": "auth", "body": "ping", "timeout_ms": 500,
                    "headers": [[":method", "POST"], [":path", "/a"], [":authority", "auth"], ["X-Custom", "c"]]})),
                step("http_call", "second", json!({"cluster": "auth", "timeout_ms": 0,
                    "headers": [[":method", "GET"], [":path", "/b"], [":authority", "auth"]]}))
            ],
            "root_callouts": {"http_call_response": [
                step("get_headers", "headers", json!({"map": "http_call_response_headers"})),
                step("get_buffer", "body", json!({"buffer": "http_call_response_body"})),
                step("get_headers", "trailers", json!({"map": "http_call_response_trailers"})),
                step("get_header_map_size", "size", json!({"map": "http_call_response_headers"}))
            ]}
        }),
        vec![auth_cluster(vec![answer])],
    );
    let startup = envoy.startup().clone();
    assert_eq!(result(&startup, "first"), "first: OK token=1");
    let second = result(&startup, "second");
    let token2: u32 = second
        .trim_start_matches("second: OK token=")
        .parse()
        .expect("token");
    assert!(token2 > 1, "tokens increase: {second}");
    assert_eq!(startup.http_calls.len(), 2);
    let first = &startup.http_calls[0];
    assert_eq!(first.cluster, "auth");
    assert_eq!(first.context_id, 1);
    assert_eq!(first.body.as_bytes(), b"ping");
    assert_eq!(first.headers.get_text("x-custom"), Some("c".into()));
    assert_eq!(
        first.headers.get_text("content-length"),
        Some("4".into()),
        "a body sets content-length"
    );
    // The async client's router sets the timeout header (none without a timeout).
    let timeout = |i: usize| {
        startup.http_calls[i]
            .headers
            .get_text("x-envoy-expected-rq-timeout-ms")
    };
    assert_eq!((timeout(0), timeout(1)), (Some("500".into()), None));

    // Answers arrive when time moves (they may already have, with delay 0).
    let later = envoy.advance(10).expect("advance");
    let mut all = startup.logs.clone();
    all.extend(later.logs.clone());
    let lines: Vec<String> = all.iter().map(|l| l.message.clone()).collect();
    assert_in_order(
        &lines,
        &[
            "cb http_call_response ctx=1 token=1 headers=3 body=11 trailers=1",
            r#"headers: OK pairs=[":status"="201", "x-answer"="a", "x-envoy-upstream-service-time"="7"]"#,
            r#"body: OK bytes="answer-body""#,
            r#"trailers: OK pairs=["x-trailer"="t"]"#,
            // Envoy: the callout maps are read-only, and sizing one is BAD_ARGUMENT.
            "size: BAD_ARGUMENT size=0",
        ],
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("cb http_call_response ctx=1 token={token2} ")))
    );
}

/// A stream paused on an http_call (timeout 200 ms) whose answer runs
/// `steps` and then resumes the request.
fn paused_on_a_call(mut steps: Vec<Value>) -> Value {
    steps.push(json!({"op": "continue_stream", "stream": "request"}));
    json!({"trace": true,
        "http": {
            "request_headers": {"action": "pause", "steps": [
                step("http_call", "call", json!({"cluster": "auth", "timeout_ms": 200,
                    "headers": [[":method", "GET"], [":path", "/"], [":authority", "auth"]]}))]},
            "callouts": {"http_call_response": steps}
        }
    })
}

#[test]
fn http_call_reset_gives_an_empty_response_and_a_status() {
    let script = paused_on_a_call(vec![
        json!({"op": "get_status"}),
        step(
            "get_headers",
            "headers",
            json!({"map": "http_call_response_headers"}),
        ),
    ]);
    let answer = HttpCalloutAnswer {
        failure: Some(CalloutFailure::Reset),
        delay_ms: 50,
        ..HttpCalloutAnswer::default()
    };
    let mut envoy = probe_with_clusters(script, vec![auth_cluster(vec![answer])]);
    let outcome = exchange(&mut envoy, get("/"), ok_upstream());
    assert!(
        callbacks(&outcome)
            .contains(&"http_call_response ctx=2 token=1 headers=0 body=0 trailers=0".to_string()),
        "{:#?}",
        outcome.logs
    );
    // Envoy's onHttpCallFailure: WasmResult::BrokenConnection, "reset".
    assert_eq!(
        result(&outcome, "get_status"),
        r#"get_status: OK code=11 message="reset""#
    );
    assert_eq!(result(&outcome, "headers"), "headers: OK pairs=[]");
    assert!(
        outcome.upstream_request.is_some(),
        "resumed after the failure"
    );
    assert!(
        matches!(
            outcome.http_calls[0].result,
            harness::CalloutResult::Failed { .. }
        ),
        "{:?}",
        outcome.http_calls
    );
    assert!(
        outcome.elapsed_ms >= 50,
        "virtual wait {}",
        outcome.elapsed_ms
    );
}

#[test]
fn http_call_timeout_and_unreachable_arrive_as_the_routers_reply() {
    // Envoy's async client gets the router's local reply as an ordinary
    // response (Router::Filter::onUpstreamTimeout / onNoHealthyHost), not
    // the failure callback.
    let script = paused_on_a_call(vec![
        json!({"op": "get_status"}),
        step(
            "get_header",
            "status",
            json!({"map": "http_call_response_headers", "key": ":status"}),
        ),
        step(
            "get_buffer",
            "body",
            json!({"buffer": "http_call_response_body"}),
        ),
    ]);
    for (failure, code, body, wait) in [
        (
            CalloutFailure::Timeout,
            "504",
            "upstream request timeout",
            200,
        ),
        (
            CalloutFailure::Unreachable,
            "503",
            "no healthy upstream",
            50,
        ),
    ] {
        let answer = HttpCalloutAnswer {
            failure: Some(failure),
            delay_ms: 50,
            ..HttpCalloutAnswer::default()
        };
        let mut envoy = probe_with_clusters(script.clone(), vec![auth_cluster(vec![answer])]);
        let outcome = exchange(&mut envoy, get("/"), ok_upstream());
        assert!(
            callbacks(&outcome).contains(&format!(
                "http_call_response ctx=2 token=1 headers=3 body={} trailers=0",
                body.len()
            )),
            "{failure:?}: {:#?}",
            outcome.logs
        );
        assert_eq!(
            result(&outcome, "get_status"),
            r#"get_status: OK code=0 message="""#
        );
        assert_eq!(
            result(&outcome, "status"),
            format!(r#"status: OK value="{code}""#)
        );
        assert_eq!(
            result(&outcome, "body"),
            format!(r#"body: OK bytes="{body}""#)
        );
        assert!(
            matches!(outcome.http_calls[0].result, harness::CalloutResult::Answered { status } if status.to_string() == code),
            "{:?}",
            outcome.http_calls
        );
        assert!(
            outcome.elapsed_ms >= wait,
            "{failure:?}: virtual wait {} < {wait}",
            outcome.elapsed_ms
        );
    }
}

#[test]
fn callouts_outlive_their_stream_and_answer_the_root_context() {
    // http_call belongs to the root context (proxy-wasm-cpp-host
    // src/exports.cc http_call: contextOrEffectiveContext()->root_context()):
    // a stream that ends does not cancel it.
    let script = json!({"trace": true, "http": {"request_headers": {"steps": [
        step("http_call", "call", json!({"cluster": "auth", "timeout_ms": 0,
            "headers": [[":method", "GET"], [":path", "/"], [":authority", "auth"]]}))]}}});
    let answer = HttpCalloutAnswer {
        delay_ms: 100,
        ..HttpCalloutAnswer::default()
    };
    let mut envoy = probe_with_clusters(script, vec![auth_cluster(vec![answer])]);
    let outcome = exchange(&mut envoy, get("/"), ok_upstream());
    assert!(outcome.response.is_some(), "the stream did not wait");
    assert_eq!(
        outcome.http_calls[0].result,
        harness::CalloutResult::Pending,
        "still in flight when the stream ended"
    );
    let later = envoy.advance(200).expect("advance");
    // The SDK finds no stream for the token any more and drops the answer,
    // as it does in Envoy; the host did deliver it to the root context.
    let delivered = later.trace.iter().any(|e| {
        matches!(e, harness::TraceEvent::Callback { name, args, .. }
            if name == "proxy_on_http_call_response" && args.first() == Some(&1))
    });
    assert!(
        delivered,
        "the answer reaches the root context: {:#?}",
        later.trace
    );
}

#[test]
fn grpc_unary_call_answers_and_errors() {
    let clusters = grpc_svc(vec![
        GrpcCalloutAnswer {
            status: 0,
            messages: vec!["reply-bytes".into()],
            ..GrpcCalloutAnswer::default()
        },
        GrpcCalloutAnswer {
            status: 7,
            message: "denied".into(),
            ..GrpcCalloutAnswer::default()
        },
        GrpcCalloutAnswer {
            failure: Some(CalloutFailure::Reset),
            ..GrpcCalloutAnswer::default()
        },
    ]);
    let grpc_call = |label: &str, cluster: &str| {
        step(
            "grpc_call",
            label,
            json!({"cluster": cluster, "service": "pkg.Svc", "method": "Check",
            "metadata": [["x-md", "m"]], "message": "request-bytes", "timeout_ms": 100}),
        )
    };
    let mut envoy = probe_with_clusters(
        json!({"trace": true,
            "configure": [grpc_call("ok call", "grpc-svc"), grpc_call("denied call", "grpc-svc"),
                grpc_call("reset call", "grpc-svc"), grpc_call("unknown", "nope")],
            "root_callouts": {"grpc_call_response": [
                step("get_buffer", "message", json!({"buffer": "grpc_receive_buffer"})),
                {"op": "get_status"}
            ]}
        }),
        clusters,
    );
    let startup = envoy.startup().clone();
    assert_eq!(result(&startup, "ok call"), "ok call: OK token=1");
    assert!(result(&startup, "denied call").starts_with("denied call: OK token="));
    assert_eq!(
        result(&startup, "unknown"),
        "unknown: PARSE_FAILURE token=0"
    );
    let later = envoy.advance(10).expect("advance");
    let mut lines: Vec<String> = startup.logs.iter().map(|l| l.message.clone()).collect();
    lines.extend(later.logs.iter().map(|l| l.message.clone()));
    assert!(
        lines.contains(&"cb grpc_call_response ctx=1 token=1 status=0 size=11".to_string()),
        "{lines:#?}"
    );
    assert!(
        lines.contains(&r#"message: OK bytes="reply-bytes""#.to_string()),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("cb grpc_call_response ctx=1 token=")
                && l.ends_with("status=7 size=0")),
        "{lines:#?}"
    );
    assert!(
        lines.contains(&r#"get_status: OK code=7 message="denied""#.to_string()),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("cb grpc_call_response ctx=1 token=")
                && l.ends_with("status=13 size=0")),
        "a reset call closes with INTERNAL (AsyncStreamImpl::onReset): {lines:#?}"
    );
    let record = &startup.grpc_calls[0];
    assert_eq!(
        (
            record.cluster.as_str(),
            record.service.as_str(),
            record.method.as_str()
        ),
        ("grpc-svc", "pkg.Svc", "Check")
    );
    assert_eq!(record.initial_metadata.get_text("x-md"), Some("m".into()));
    assert_eq!(
        record.messages,
        vec![harness::ByteString::from("request-bytes")]
    );
    assert!(!record.streaming);
}

#[test]
fn grpc_stream_delivers_metadata_messages_trailers_and_close() {
    let clusters = grpc_svc(vec![GrpcCalloutAnswer {
        status: 0,
        initial_metadata: Headers::from_pairs([("x-initial", "i")]),
        messages: vec!["m1".into(), "m22".into()],
        trailing_metadata: Headers::from_pairs([("x-trailing", "t")]),
        ..GrpcCalloutAnswer::default()
    }]);
    let mut envoy = probe_with_clusters(
        json!({"trace": true,
            "configure": [
                {"op": "grpc_stream", "cluster": "grpc-svc", "service": "pkg.Svc", "method": "Watch", "save": "stream"},
                {"op": "grpc_send", "token": "$stream", "message": "hello"},
                step("grpc_send", "send unknown", json!({"token": 9999, "message": "x"})),
                step("grpc_cancel", "cancel unknown", json!({"token": 9999})),
                step("grpc_close", "close unknown", json!({"token": 9999}))
            ],
            "root_callouts": {
                "grpc_stream_initial_metadata": [step("get_headers", "initial", json!({"map": "grpc_initial_metadata"}))],
                "grpc_stream_message": [step("get_buffer", "message", json!({"buffer": "grpc_receive_buffer"}))],
                "grpc_stream_trailing_metadata": [step("get_headers", "trailing", json!({"map": "grpc_trailing_metadata"}))],
                "grpc_stream_close": [{"op": "get_status"}]
            }
        }),
        clusters,
    );
    let startup = envoy.startup().clone();
    assert_eq!(result(&startup, "grpc_stream"), "grpc_stream: OK token=1");
    assert_eq!(result(&startup, "grpc_send"), "grpc_send: OK");
    assert_eq!(result(&startup, "send unknown"), "send unknown: NOT_FOUND");
    assert_eq!(
        result(&startup, "cancel unknown"),
        "cancel unknown: NOT_FOUND"
    );
    assert_eq!(
        result(&startup, "close unknown"),
        "close unknown: NOT_FOUND"
    );
    let later = envoy.advance(10).expect("advance");
    let mut lines: Vec<String> = startup.logs.iter().map(|l| l.message.clone()).collect();
    lines.extend(later.logs.iter().map(|l| l.message.clone()));
    assert_in_order(
        &lines,
        &[
            // The server's response headers, then the scripted metadata.
            "cb grpc_stream_initial_metadata ctx=1 token=1 count=4",
            r#"initial: OK pairs=[":status"="200", "content-type"="application/grpc", "x-initial"="i", "x-envoy-upstream-service-time"="0"]"#,
            "cb grpc_stream_message ctx=1 token=1 size=2",
            r#"message: OK bytes="m1""#,
            "cb grpc_stream_message ctx=1 token=1 size=3",
            r#"message: OK bytes="m22""#,
            "cb grpc_stream_trailing_metadata ctx=1 token=1 count=2",
            r#"trailing: OK pairs=["grpc-status"="0", "x-trailing"="t"]"#,
            "cb grpc_stream_close ctx=1 token=1 status=0",
        ],
    );
    let record = &startup.grpc_calls[0];
    assert!(record.streaming);
    assert_eq!(record.messages, vec![harness::ByteString::from("hello")]);
}

#[test]
fn a_grpc_stream_answer_without_metadata_gets_envoys_defaults() {
    // No scripted metadata and no message: a trailers-only answer. Envoy's
    // async client still calls on_grpc_receive_initial_metadata (with an
    // empty map), then hands the whole header block on as trailing metadata.
    let clusters = grpc_svc(vec![GrpcCalloutAnswer {
        status: 5,
        message: "not found".into(),
        ..GrpcCalloutAnswer::default()
    }]);
    let mut envoy = probe_with_clusters(
        json!({"trace": true,
            "configure": [
                {"op": "grpc_stream", "cluster": "grpc-svc", "service": "pkg.Svc", "method": "Watch"}],
            "root_callouts": {
                "grpc_stream_initial_metadata": [step("get_headers", "initial", json!({"map": "grpc_initial_metadata"}))],
                "grpc_stream_trailing_metadata": [step("get_headers", "trailing", json!({"map": "grpc_trailing_metadata"}))],
                "grpc_stream_close": [{"op": "get_status"}]
            }
        }),
        clusters,
    );
    let later = envoy.advance(10).expect("advance");
    let lines: Vec<String> = later.logs.iter().map(|l| l.message.clone()).collect();
    assert_in_order(
        &lines,
        &[
            "cb grpc_stream_initial_metadata ctx=1 token=1 count=0",
            "initial: OK pairs=[]",
            "cb grpc_stream_trailing_metadata ctx=1 token=1 count=5",
            r#"trailing: OK pairs=[":status"="200", "content-type"="application/grpc", "grpc-status"="5", "grpc-message"="not found", "x-envoy-upstream-service-time"="0"]"#,
            "cb grpc_stream_close ctx=1 token=1 status=5",
        ],
    );
}

#[test]
fn grpc_stream_failures_reach_the_metadata_callbacks_as_envoys_async_client_delivers_them() {
    // The async gRPC client is an HTTP stream through a router: an
    // unreachable cluster or a timeout is the router's local reply in gRPC
    // form (trailers-only, grpc-status 14); a reset is streamError(Internal):
    // empty trailing metadata, then the close (async_client_impl.cc).
    for (failure, expected) in [
        (
            CalloutFailure::Unreachable,
            vec![
                "cb grpc_stream_initial_metadata ctx=1 token=1 count=0",
                r#"trailing: OK pairs=[":status"="200", "content-type"="application/grpc", "grpc-status"="14", "grpc-message"="no healthy upstream"]"#,
                "cb grpc_stream_close ctx=1 token=1 status=14",
                r#"get_status: OK code=14 message="no healthy upstream""#,
            ],
        ),
        (
            CalloutFailure::Timeout,
            vec![
                "cb grpc_stream_initial_metadata ctx=1 token=1 count=0",
                r#"trailing: OK pairs=[":status"="200", "content-type"="application/grpc", "grpc-status"="14", "grpc-message"="upstream request timeout"]"#,
                "cb grpc_stream_close ctx=1 token=1 status=14",
            ],
        ),
        (
            CalloutFailure::Reset,
            vec![
                "cb grpc_stream_trailing_metadata ctx=1 token=1 count=0",
                "cb grpc_stream_close ctx=1 token=1 status=13",
                r#"get_status: OK code=13 message="""#,
            ],
        ),
    ] {
        let clusters = grpc_svc(vec![GrpcCalloutAnswer {
            failure: Some(failure),
            delay_ms: 5,
            ..GrpcCalloutAnswer::default()
        }]);
        let mut envoy = probe_with_clusters(
            json!({"trace": true,
                "configure": [
                    {"op": "grpc_stream", "cluster": "grpc-svc", "service": "pkg.Svc", "method": "Watch"}],
                "root_callouts": {
                    "grpc_stream_trailing_metadata": [step("get_headers", "trailing", json!({"map": "grpc_trailing_metadata"}))],
                    "grpc_stream_close": [{"op": "get_status"}]
                }
            }),
            clusters,
        );
        let later = envoy.advance(60_000).expect("advance");
        let lines: Vec<String> = later.logs.iter().map(|l| l.message.clone()).collect();
        assert_in_order(&lines, &expected);
        if failure == CalloutFailure::Reset {
            assert!(
                !lines.iter().any(|l| l.contains("initial_metadata")),
                "{lines:#?}"
            );
        }
    }
}

#[test]
fn grpc_cancel_ends_a_pending_call() {
    let clusters = grpc_svc(vec![GrpcCalloutAnswer {
        delay_ms: 1000,
        messages: vec!["late".into()],
        ..GrpcCalloutAnswer::default()
    }]);
    let mut envoy = probe_with_clusters(
        json!({"trace": true, "configure": [
            {"op": "grpc_call", "cluster": "grpc-svc", "service": "s", "method": "m", "message": "x", "timeout_ms": 5000, "save": "call"},
            {"op": "grpc_cancel", "token": "$call"}
        ]}),
        clusters,
    );
    let startup = envoy.startup().clone();
    assert_eq!(result(&startup, "grpc_cancel"), "grpc_cancel: OK");
    let later = envoy.advance(2000).expect("advance");
    assert!(
        !callbacks(&later)
            .iter()
            .any(|l| l.starts_with("grpc_call_response")),
        "no answer after cancel: {:#?}",
        later.logs
    );
}

#[test]
fn grpc_close_and_cancel_on_a_live_stream() {
    let clusters = grpc_svc(vec![GrpcCalloutAnswer {
        delay_ms: 1000,
        messages: vec!["m".into()],
        ..GrpcCalloutAnswer::default()
    }]);
    let mut envoy = probe_with_clusters(
        json!({"trace": true, "configure": [
            {"op": "grpc_stream", "cluster": "grpc-svc", "service": "s", "method": "m", "save": "closing"},
            {"op": "grpc_close", "token": "$closing"},
            {"op": "grpc_stream", "cluster": "grpc-svc", "service": "s", "method": "m", "save": "cancelled", "label": "second"},
            {"op": "grpc_cancel", "token": "$cancelled"},
            {"op": "grpc_cancel", "token": "$cancelled", "label": "cancel twice"}
        ]}),
        clusters,
    );
    let startup = envoy.startup().clone();
    assert_eq!(result(&startup, "grpc_close"), "grpc_close: OK");
    assert_eq!(result(&startup, "grpc_cancel"), "grpc_cancel: OK");
    assert_eq!(result(&startup, "cancel twice"), "cancel twice: NOT_FOUND");
    let later = envoy.advance(2000).expect("advance");
    let second_token = result(&startup, "second")
        .trim_start_matches("second: OK token=")
        .to_string();
    assert!(
        !callbacks(&later)
            .iter()
            .any(|l| l.contains(&format!("token={second_token} "))),
        "a cancelled stream gets no callback: {:#?}",
        later.logs
    );
    assert!(
        matches!(
            startup.grpc_calls[1].result,
            harness::CalloutResult::Cancelled
        ),
        "{:?}",
        startup.grpc_calls
    );
}
