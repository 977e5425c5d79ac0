//! Envoy's smaller habits, each one a test: the chain's teardown order,
//! headers return values, local replies from a root context, queues
//! resolved without a vm_id, the headers Envoy adds itself. (Ticks after a
//! clock jump: the unit test in src/driver/events.rs.)

use serde_json::{Value, json};

use crate::hostile::{compile, filter};
use crate::support::*;

fn step(op: &str, label: &str, mut fields: Value) -> Value {
    fields["op"] = json!(op);
    fields["label"] = json!(label);
    fields
}

#[test]
fn a_chain_logs_every_filter_before_any_is_destroyed() {
    // Two VMs sharing a vm_id (so shared data) but not a VM (other
    // vm_config). The second filter's on_log writes a key; the first
    // filter's on_done reads it: it is there only if every on_log ran
    // before any on_done, as Envoy's filter manager orders them.
    let scripts = [
        json!({"http": {"done": [
            step("get_shared_data", "done sees log", json!({"key": "logged"}))]}}),
        json!({"http": {"log": [
            step("set_shared_data", "log", json!({"key": "logged", "value": "yes"}))]}}),
    ];
    let out = probe_chain_get(scripts.to_vec(), |i, plugin| {
        plugin.vm_id = "shared".into();
        plugin.vm_config = format!("{{\"trace\": {}}}", i == 0).into();
    });
    let seen = result(&out.filters[0], "done sees log");
    assert!(
        seen.starts_with(r#"done sees log: OK value="yes""#),
        "{seen}"
    );
}

/// A WAT filter whose on_request_headers returns `value`.
fn returning(value: u32) -> harness::CompiledModule {
    let wat = filter(
        "",
        "",
        &format!(
            r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
                 i32.const {value})"#
        ),
    );
    compile(&format!("headers-returns-{value}.wat"), &wat)
}

#[test]
fn headers_callbacks_returning_2_continue_and_other_values_stop() {
    for (value, forwarded) in [(0, true), (1, false), (2, true), (3, false), (7, false)] {
        let module = returning(value);
        let mut envoy = harness::Harness::new(&module, crate::hostile::config()).unwrap();
        let outcome = envoy.exchange(&crate::hostile::get()).unwrap();
        assert_eq!(
            outcome.upstream_request.is_some(),
            forwarded,
            "on_request_headers returned {value}: {:?}",
            outcome.end
        );
    }
}

#[test]
fn a_local_reply_from_a_root_context_is_ok_and_does_nothing() {
    let mut config = probe_config(json!({"configure": [
        step("send_local_response", "root reply", json!({"status": 403}))]}));
    config.plugin.log_level = harness::LogLevel::Info;
    let envoy = start(config);
    let startup = envoy.startup();
    assert_eq!(result(startup, "root reply"), "root reply: OK");
    assert!(
        startup
            .logs
            .iter()
            .any(|l| l.message.contains("from a root context does nothing")),
        "{:#?}",
        startup.logs
    );
}

#[test]
fn an_empty_vm_id_resolves_a_queue_of_the_callers_own_vm() {
    let mut config = probe_config(json!({"configure": [
        {"op": "register_queue", "name": "jobs"},
        step("resolve_queue", "own", json!({"vm_id": "", "name": "jobs"})),
        step("resolve_queue", "other vm", json!({"vm_id": "elsewhere", "name": "jobs"}))]}));
    config.plugin.vm_id = "mine".into();
    let envoy = start(config);
    assert_eq!(result(envoy.startup(), "own"), "own: OK id=1");
    assert_eq!(
        result(envoy.startup(), "other vm"),
        "other vm: NOT_FOUND id=0"
    );
}

fn get_header(label: &str, map: &str, key: &str) -> Value {
    step("get_header", label, json!({"map": map, "key": key}))
}

#[test]
fn envoy_adds_its_own_headers_where_envoy_does() {
    // The router adds x-envoy-expected-rq-timeout-ms after the filters and
    // x-envoy-upstream-service-time before them (router.cc setTimeoutHeaders,
    // onUpstreamHeaders); the connection manager adds date and server after
    // every filter (conn_manager_impl.cc ActiveStream::encodeHeaders). The
    // filters share the maps with the access log, so on_log sees them all.
    let script = json!({"http": {
        "request_headers": {"steps": [
            get_header("rq timeout", "request_headers", "x-envoy-expected-rq-timeout-ms")]},
        "response_headers": {"steps": [
            get_header("service time", "response_headers", "x-envoy-upstream-service-time"),
            get_header("date", "response_headers", "date"),
            get_header("server", "response_headers", "server")]},
        "log": [
            get_header("log rq timeout", "request_headers", "x-envoy-expected-rq-timeout-ms"),
            get_header("log date", "response_headers", "date"),
            get_header("log server", "response_headers", "server")]
    }});
    let plugins = [(
        harness::FilterModule::from(probe_module()),
        probe_config(script),
    )];
    let mut envoy = harness::Envoy::builder().plugins(&plugins).build().unwrap();
    let exchange = harness::Exchange {
        request: get("/timed"),
        upstream: ok_upstream(),
        properties: Default::default(),
    };
    // The upstream answers 250 ms after the whole request reached it.
    let (key, _) = envoy.open(&exchange, None).unwrap();
    envoy.advance(250).unwrap();
    envoy.respond(key, ok_upstream()).unwrap();
    let out = envoy.finish(key).unwrap().outcome;

    assert_eq!(result(&out, "rq timeout"), "rq timeout: NOT_FOUND");
    let upstream = out.upstream_request.as_ref().expect("forwarded");
    assert_eq!(
        upstream
            .headers
            .get_text("x-envoy-expected-rq-timeout-ms")
            .as_deref(),
        Some("15000")
    );
    assert!(
        result(&out, "service time").starts_with(r#"service time: OK value="250""#),
        "{}",
        result(&out, "service time")
    );
    assert_eq!(result(&out, "date"), "date: NOT_FOUND");
    assert_eq!(result(&out, "server"), "server: NOT_FOUND");
    let received = &out.response.as_ref().expect("response").message.headers;
    assert_eq!(
        received.get_text("date").as_deref(),
        Some("Mon, 01 Jan 2024 00:00:00 GMT"),
        "the virtual clock at the answer, to the second"
    );
    assert_eq!(received.get_text("server").as_deref(), Some("envoy"));
    for label in ["log rq timeout", "log date", "log server"] {
        assert!(
            result(&out, label).starts_with(&format!("{label}: OK")),
            "{}",
            result(&out, label)
        );
    }
}

/// A stream held at the upstream, through one probe filter that reads the
/// response status, on a route with `route_timeout_ms`.
fn held_at_upstream(route_timeout_ms: u64) -> (harness::Envoy, harness::StreamHandle) {
    status_probe_stream(
        route_timeout_ms,
        harness::DEFAULT_STREAM_IDLE_TIMEOUT_MS,
        true,
    )
}

/// A stream through one probe filter that reads the response status, with
/// these timeouts, waiting for its upstream answer; `request_ends` false:
/// the client still has body to send.
fn status_probe_stream(
    route_timeout_ms: u64,
    idle_ms: u64,
    request_ends: bool,
) -> (harness::Envoy, harness::StreamHandle) {
    let script = json!({"http": {"response_headers": {"steps": [
        get_header("status", "response_headers", ":status")]}}});
    let mut config = probe_config(script);
    config.route_timeout_ms = route_timeout_ms;
    config.stream_idle_timeout_ms = idle_ms;
    let plugins = [(harness::FilterModule::from(probe_module()), config)];
    let mut envoy = harness::Envoy::builder().plugins(&plugins).build().unwrap();
    let exchange = harness::Exchange {
        request: get("/slow"),
        upstream: ok_upstream(),
        properties: Default::default(),
    };
    let (key, _) = envoy
        .open_stream(None, &exchange, None, request_ends)
        .unwrap();
    (envoy, key)
}

#[test]
fn the_route_timeout_answers_504_through_the_filters_and_resets_a_started_response() {
    // Router::Filter::onRequestComplete arms the route's timeout; when it
    // fires (onResponseTimeout -> onUpstreamAbort) the client gets the
    // router's 504 if no response started, a reset otherwise.
    let (mut envoy, key) = held_at_upstream(1_000);
    envoy.advance(999).unwrap();
    envoy.respond(key, ok_upstream()).unwrap();
    let on_time = envoy.finish(key).unwrap().outcome;
    assert_eq!(on_time.response.as_ref().map(|r| r.status), Some(200));

    let (mut envoy, key) = held_at_upstream(1_000);
    envoy.advance(1_000).unwrap();
    let late = envoy.respond(key, ok_upstream());
    assert!(late.is_err(), "the stream ended at the timeout");
    let out = envoy.finish(key).unwrap_or_else(|e| panic!("{e}")).outcome;
    let response = out.response.as_ref().expect("the router's reply");
    assert_eq!(response.status, 504);
    assert_eq!(
        response.message.body.0,
        b"upstream request timeout".to_vec()
    );
    assert_eq!(result(&out, "status"), r#"status: OK value="504""#);
    let reply = out.local_reply.as_ref().expect("a local reply");
    assert_eq!(reply.details, "response_timeout");

    let (mut envoy, key) = held_at_upstream(1_000);
    envoy
        .send(
            key,
            harness::StreamInput::Respond {
                answer: ok_upstream(),
                end_stream: false,
            },
        )
        .unwrap();
    envoy.advance(5_000).unwrap();
    let reset = envoy.finish(key).unwrap().outcome;
    assert_eq!(
        reset.end,
        harness::StreamEnd::Reset,
        "the response had started"
    );
    assert!(
        reset.response.as_ref().is_some_and(|r| r.reset),
        "{:?}",
        reset.response
    );
}

#[test]
fn an_upstream_answer_while_the_request_streams_reaches_the_client_at_once() {
    // Router::Filter::onUpstreamHeaders passes the upstream's headers on
    // whenever the codec has them, not only after the request ended
    // (source/common/router/router.cc); the stream ends with the response.
    let (mut envoy, key) = status_probe_stream(0, harness::DEFAULT_STREAM_IDLE_TIMEOUT_MS, false);
    let answer = harness::StreamInput::Respond {
        answer: ok_upstream(),
        end_stream: true,
    };
    envoy.send(key, answer).unwrap();
    let out = envoy
        .poll(key)
        .unwrap()
        .expect("the stream ended with its response");
    assert_eq!(out.outcome.response.as_ref().map(|r| r.status), Some(200));
    assert_eq!(result(&out.outcome, "status"), r#"status: OK value="200""#);
    let rest = harness::StreamInput::Request {
        body: harness::Body::single("late"),
        trailers: None,
        end_stream: true,
    };
    assert!(
        envoy.send(key, rest).is_err(),
        "the rest of the request has no stream to go to"
    );
}

/// A stream through the status probe with no route timeout and this idle
/// timeout; `request_ends` false: the client still has body to send.
fn idle_stream(idle_ms: u64, request_ends: bool) -> (harness::Envoy, harness::StreamHandle) {
    status_probe_stream(0, idle_ms, request_ends)
}

#[test]
fn the_stream_idle_timeout_answers_through_the_filters_and_activity_rearms_it() {
    // ActiveStream::onIdleTimeout: "stream timeout", details
    // stream_idle_timeout, 504 once the whole request arrived
    // (Utility::maybeRequestTimeoutCode), 408 before; resetIdleTimer on
    // every codec event.
    let (mut envoy, key) = idle_stream(1_000, true);
    envoy.advance(999).unwrap();
    assert!(
        envoy.poll(key).unwrap().is_none(),
        "still waiting at 999 ms"
    );
    envoy.advance(1).unwrap();
    let out = envoy.finish(key).unwrap().outcome;
    let response = out
        .response
        .as_ref()
        .expect("the connection manager's reply");
    assert_eq!(response.status, 504);
    assert_eq!(response.message.body.0, b"stream timeout".to_vec());
    assert_eq!(result(&out, "status"), r#"status: OK value="504""#);
    assert_eq!(
        out.local_reply.as_ref().map(|r| r.details.as_str()),
        Some("stream_idle_timeout")
    );

    let (mut envoy, key) = idle_stream(1_000, false);
    envoy.advance(600).unwrap();
    let more = harness::StreamInput::Request {
        body: harness::Body::single("part"),
        trailers: None,
        end_stream: false,
    };
    envoy.send(key, more).unwrap();
    envoy.advance(999).unwrap();
    assert!(envoy.poll(key).unwrap().is_none(), "the body re-armed it");
    envoy.advance(1).unwrap();
    let out = envoy.finish(key).unwrap().outcome;
    assert_eq!(out.response.as_ref().map(|r| r.status), Some(408));

    let (mut envoy, key) = idle_stream(1_000, true);
    envoy.advance(500).unwrap();
    let started = harness::StreamInput::Respond {
        answer: ok_upstream(),
        end_stream: false,
    };
    envoy.send(key, started).unwrap();
    envoy.advance(999).unwrap();
    assert!(
        envoy.poll(key).unwrap().is_none(),
        "the response re-armed it"
    );
    envoy.advance(1).unwrap();
    let out = envoy.finish(key).unwrap().outcome;
    assert_eq!(
        out.end,
        harness::StreamEnd::Reset,
        "the response had started"
    );
}

#[test]
fn a_stream_with_nothing_pending_is_reported_stalled_before_the_idle_timeout() {
    // Envoy would answer it with the idle timeout's 408 after 5 minutes;
    // the harness says why it waits instead (a stall fails a test at once).
    let (mut envoy, key) = idle_stream(harness::DEFAULT_STREAM_IDLE_TIMEOUT_MS, false);
    let out = envoy.finish(key).unwrap().outcome;
    assert!(
        matches!(out.end, harness::StreamEnd::Stalled { .. }),
        "{:?}",
        out.end
    );
}

#[test]
fn a_caller_routing_the_request_sets_its_timeout_or_has_the_router_answer() {
    // What `harness serve` does from an envoy.yaml route.
    let (mut envoy, key) = held_at_upstream(15_000);
    envoy
        .send(key, harness::StreamInput::Route { timeout_ms: 100 })
        .unwrap();
    envoy.advance(100).unwrap();
    let out = envoy.finish(key).unwrap().outcome;
    assert_eq!(out.response.as_ref().map(|r| r.status), Some(504));

    let (mut envoy, key) = held_at_upstream(15_000);
    let direct = harness::StreamInput::RouterReply {
        status: 200,
        body: b"direct".to_vec(),
        details: "direct_response".into(),
    };
    envoy.send(key, direct).unwrap();
    let out = envoy.finish(key).unwrap().outcome;
    assert_eq!(
        result(&out, "status"),
        r#"status: OK value="200""#,
        "through the filter"
    );
    let reply = out.local_reply.as_ref().expect("a local reply");
    assert_eq!(reply.details, "direct_response");
    let response = out.response.as_ref().expect("response");
    assert_eq!(response.message.body.0, b"direct".to_vec());
    assert!(
        response
            .message
            .headers
            .get_text("x-envoy-upstream-service-time")
            .is_none()
    );
    assert!(
        envoy.respond(key, ok_upstream()).is_err(),
        "answered already"
    );
}

#[test]
fn a_route_without_a_timeout_waits_and_sets_no_timeout_header() {
    let (mut envoy, key) = held_at_upstream(0);
    envoy.advance(60_000).unwrap();
    envoy.respond(key, ok_upstream()).unwrap();
    let out = envoy.finish(key).unwrap().outcome;
    assert_eq!(out.response.as_ref().map(|r| r.status), Some(200));
    let upstream = out.upstream_request.as_ref().expect("forwarded");
    assert!(
        upstream
            .headers
            .get_text("x-envoy-expected-rq-timeout-ms")
            .is_none(),
        "{:?}",
        upstream.headers
    );
}

#[test]
fn local_replies_get_date_and_server_too() {
    let script = json!({"http": {"request_headers": {"steps": [
        step("send_local_response", "deny", json!({"status": 403}))]}}});
    let mut envoy = start(probe_config(script));
    let out = exchange(&mut envoy, get("/denied"), ok_upstream());
    let response = out.response.expect("local reply");
    assert_eq!(response.status, 403);
    let headers = &response.message.headers;
    assert!(headers.contains("date"), "{headers:?}");
    assert_eq!(headers.get_text("server").as_deref(), Some("envoy"));
    assert!(
        !headers.contains("x-envoy-upstream-service-time"),
        "no upstream answered"
    );
}
