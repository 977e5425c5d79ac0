//! Phase-scoped HTTP fields, as Envoy's Wasm `Context` keeps them
//! (source/extensions/common/wasm/context.cc, `decodeHeaders` ...
//! `encodeTrailers`, `continueStream`, `getMap`/`getConstMap`, `log`): a
//! filter reaches a header map or body only in the callback that delivered
//! it, or while it keeps that direction paused from there.

use harness::{Body, ClusterSpec, Headers, HttpCalloutAnswer};
use serde_json::{Value, json};

use crate::support::*;

fn step(op: &str, label: &str, mut fields: Value) -> Value {
    fields["op"] = json!(op);
    fields["label"] = json!(label);
    fields
}

fn harness_warnings(outcome: &harness::Outcome) -> Vec<String> {
    outcome
        .logs
        .iter()
        .filter(|l| l.message.starts_with("[harness]") && l.message.contains("out of reach"))
        .map(|l| l.message.clone())
        .collect()
}

#[test]
fn request_headers_leave_reach_when_their_callback_continues() {
    let mut envoy = probe(json!({"http": {
        "request_headers": {"steps": [
            step("get_header", "in phase", json!({"map": "request_headers", "key": ":path"}))]},
        "response_headers": {"steps": [
            step("get_header", "read", json!({"map": "request_headers", "key": ":path"})),
            step("get_headers", "pairs", json!({"map": "request_headers"})),
            step("add_header", "add", json!({"map": "request_headers", "key": "x", "value": "1"})),
            step("replace_header", "replace", json!({"map": "request_headers", "key": "x", "value": "1"})),
            step("remove_header", "remove", json!({"map": "request_headers", "key": "x"})),
            step("get_header_map_size", "size", json!({"map": "request_headers"})),
            step("set_headers", "set", json!({"map": "request_headers", "pairs": [["a", "b"]]})),
            step("get_header", "own map", json!({"map": "response_headers", "key": ":status"}))]}
    }}));
    let outcome = exchange(&mut envoy, get("/p"), ok_upstream());
    assert_eq!(result(&outcome, "in phase"), r#"in phase: OK value="/p""#);
    for label in ["read", "add", "replace", "remove", "set"] {
        assert_eq!(result(&outcome, label), format!("{label}: BAD_ARGUMENT"));
    }
    assert!(result(&outcome, "size").starts_with("size: BAD_ARGUMENT"));
    assert_eq!(result(&outcome, "pairs"), "pairs: OK pairs=[]");
    assert_eq!(result(&outcome, "own map"), r#"own map: OK value="200""#);
    let warnings = harness_warnings(&outcome);
    assert_eq!(warnings.len(), 1, "one warning per field: {warnings:#?}");
    assert!(
        warnings[0].contains(
            "request headers out of reach in on_response_headers: on_request_headers returned Continue"
        ),
        "{}",
        warnings[0]
    );
    // The rejected writes changed nothing the upstream saw.
    let upstream = outcome.upstream_request.as_ref().expect("forwarded");
    assert!(upstream.headers.get_text("a").is_none());
}

#[test]
fn paused_headers_stay_in_reach_until_continue_stream() {
    let auth = ClusterSpec {
        name: "auth".into(),
        http: vec![HttpCalloutAnswer {
            delay_ms: 5,
            ..HttpCalloutAnswer::default()
        }],
        ..ClusterSpec::default()
    };
    let script = json!({"http": {
        "request_headers": {"action": "pause", "steps": [
            step("http_call", "call", json!({"cluster": "auth", "timeout_ms": 0,
                "headers": [[":method", "GET"], [":path", "/"], [":authority", "auth"]]}))]},
        "callouts": {"http_call_response": [
            step("add_header", "while paused", json!({"map": "request_headers", "key": "x-checked", "value": "yes"})),
            {"op": "continue_stream", "stream": "request"},
            step("get_header", "after continue", json!({"map": "request_headers", "key": ":path"}))]}
    }});
    let mut envoy = probe_with_clusters(script, vec![auth]);
    let outcome = exchange(&mut envoy, get("/p"), ok_upstream());
    assert_eq!(result(&outcome, "while paused"), "while paused: OK");
    assert_eq!(
        result(&outcome, "after continue"),
        "after continue: BAD_ARGUMENT",
        "continue_stream ends access at once, before the callback returns"
    );
    let upstream = outcome.upstream_request.as_ref().expect("resumed");
    assert_eq!(
        upstream.headers.get_text("x-checked").as_deref(),
        Some("yes")
    );
}

#[test]
fn bodies_read_empty_and_refuse_writes_outside_their_callback() {
    let mut envoy = probe(json!({"http": {
        "request_body": {"steps": [
            step("get_buffer", "in phase", json!({"buffer": "request_body"}))]},
        "response_headers": {"steps": [
            step("get_buffer", "read", json!({"buffer": "request_body"})),
            step("get_buffer_status", "status", json!({"buffer": "request_body"})),
            step("set_buffer", "write", json!({"buffer": "request_body", "start": 0, "size": 0, "data": "x"}))]}
    }}));
    let mut post = request("POST /b HTTP/2", &[("host", "h")]);
    post.body = Body::single("hello");
    let outcome = exchange(&mut envoy, post, ok_upstream());
    assert_eq!(
        result(&outcome, "in phase"),
        r#"in phase: OK bytes="hello""#
    );
    assert_eq!(result(&outcome, "read"), r#"read: OK bytes="""#);
    assert!(
        result(&outcome, "status").starts_with("status: OK length=0"),
        "{}",
        result(&outcome, "status")
    );
    assert_eq!(result(&outcome, "write"), "write: BAD_ARGUMENT");
    assert_eq!(harness_warnings(&outcome).len(), 1);
}

#[test]
fn request_properties_follow_the_request_headers_reach() {
    let path = json!({"path": ["request", "path"]});
    let mut envoy = probe(json!({"http": {
        "request_headers": {"steps": [
            step("replace_header", "rewrite", json!({"map": "request_headers", "key": ":path", "value": "/rewritten"})),
            step("get_property", "early", path.clone())]},
        "response_headers": {"steps": [
            step("get_property", "late", path.clone()),
            step("get_property", "time", json!({"path": ["request", "time"], "decode": "i64"}))]},
        "log": [step("get_property", "log", path)]
    }}));
    let outcome = exchange(&mut envoy, get("/p"), ok_upstream());
    assert!(result(&outcome, "early").starts_with("early: OK"));
    // Envoy's findValue hands the request wrapper the phase-scoped pointer.
    assert_eq!(result(&outcome, "late"), "late: NOT_FOUND");
    assert!(result(&outcome, "time").starts_with("time: OK"));
    // on_log reads the access-log copy: the request as sent upstream.
    assert_eq!(result(&outcome, "log"), r#"log: OK value="/rewritten""#);
}

#[test]
fn on_log_reads_what_was_sent_through_the_whole_chain() {
    // The first filter logs; the second changes the request after it and
    // the response before it: Envoy's filters share one map per message.
    let first = json!({"http": {"log": [
        step("get_header", "request", json!({"map": "request_headers", "key": "x-second"})),
        step("get_header", "response", json!({"map": "response_headers", "key": "x-resp"})),
        step("add_header", "write", json!({"map": "response_headers", "key": "y", "value": "1"}))]}});
    let second = json!({"http": {
        "request_headers": {"steps": [
            step("add_header", "add", json!({"map": "request_headers", "key": "x-second", "value": "2"}))]},
        "response_headers": {"steps": [
            step("add_header", "add", json!({"map": "response_headers", "key": "x-resp", "value": "3"}))]}
    }});
    let out = probe_chain_get(vec![first, second], |i, plugin| {
        plugin.vm_id = format!("vm-{i}");
    });
    let logger = &out.filters[0];
    assert_eq!(result(logger, "request"), r#"request: OK value="2""#);
    assert_eq!(result(logger, "response"), r#"response: OK value="3""#);
    assert_eq!(
        result(logger, "write"),
        "write: BAD_ARGUMENT",
        "on_log reads copies"
    );
    let sent = out.outcome.response.as_ref().expect("response");
    assert!(sent.message.headers.get_text("y").is_none());
}

#[test]
fn trailers_made_on_demand_are_writable_only_in_the_last_body_callback() {
    let mut envoy = probe(json!({"http": {
        "request_body": {"steps": [
            step("get_header", "read first", json!({"map": "request_trailers", "key": "x-t"})),
            step("add_header", "create", json!({"map": "request_trailers", "key": "x-t", "value": "1"})),
            step("get_header", "read created", json!({"map": "request_trailers", "key": "x-t"}))]},
        "response_headers": {"steps": [
            step("add_header", "late", json!({"map": "request_trailers", "key": "x-u", "value": "1"}))]}
    }}));
    let mut post = request("POST /t HTTP/2", &[("host", "h")]);
    post.body = Body::single("b");
    let outcome = exchange(&mut envoy, post, ok_upstream());
    // Envoy's getConstMap has no trailers until getMap creates them.
    assert_eq!(result(&outcome, "read first"), "read first: BAD_ARGUMENT");
    assert_eq!(result(&outcome, "create"), "create: OK");
    assert_eq!(
        result(&outcome, "read created"),
        r#"read created: OK value="1""#
    );
    assert_eq!(result(&outcome, "late"), "late: BAD_ARGUMENT");
    let upstream = outcome.upstream_request.as_ref().expect("forwarded");
    let trailers = upstream.trailers.as_ref().expect("trailers created");
    assert_eq!(
        trailers,
        &Headers::from_pairs([("x-t", "1")]),
        "only the in-phase trailer"
    );
}
