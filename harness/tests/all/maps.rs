//! Every header-map operation on every map, and the maps that exist only
//! in some of Envoy's phases, as the probe filter sees them.

use harness::{Body, ClusterSpec, GrpcCalloutAnswer, Headers, HttpCalloutAnswer, UpstreamResponse};
use serde_json::{Value, json};

use crate::hostcalls::step;
use crate::support::*;

// ---------------------------------------------------------------- every op on every map

/// The seven header-map operations on `map`, labelled `<prefix> <n>`, with
/// the result lines a writable map in its phase must produce.
fn all_map_ops(map: &str, prefix: &str, pairs: &[(&str, &str)]) -> (Vec<Value>, Vec<String>) {
    let pairs_json: Vec<Value> = pairs.iter().map(|(k, v)| json!([k, v])).collect();
    let shown = |extra: &[(&str, &str)]| {
        let all: Vec<String> = pairs
            .iter()
            .chain(extra)
            .map(|(k, v)| format!("{k:?}={v:?}"))
            .collect();
        format!("[{}]", all.join(", "))
    };
    let size: usize = pairs.iter().map(|(k, v)| k.len() + v.len()).sum();
    let l = |n: u32| format!("{prefix} {n}");
    let steps = vec![
        step(
            "set_headers",
            &l(1),
            json!({"map": map, "pairs": pairs_json}),
        ),
        step("get_headers", &l(2), json!({"map": map})),
        step("get_header_map_size", &l(3), json!({"map": map})),
        step("get_header", &l(4), json!({"map": map, "key": "x-matrix"})),
        step(
            "add_header",
            &l(5),
            json!({"map": map, "key": "X-Matrix", "value": "a"}),
        ),
        step(
            "add_header",
            &l(6),
            json!({"map": map, "key": "x-matrix", "value": "b"}),
        ),
        step("get_header", &l(7), json!({"map": map, "key": "X-MATRIX"})),
        step("get_headers", &l(8), json!({"map": map})),
        step(
            "replace_header",
            &l(9),
            json!({"map": map, "key": "x-matrix", "value": "c"}),
        ),
        step("get_headers", &l(10), json!({"map": map})),
        step(
            "remove_header",
            &l(11),
            json!({"map": map, "key": "x-matrix"}),
        ),
        step("get_header", &l(12), json!({"map": map, "key": "x-matrix"})),
        step("get_header_map_size", &l(13), json!({"map": map})),
    ];
    let expected = vec![
        format!("{} 1: OK", prefix),
        format!("{} 2: OK pairs={}", prefix, shown(&[])),
        format!("{} 3: OK size={size}", prefix),
        format!("{} 4: NOT_FOUND", prefix),
        format!("{} 5: OK", prefix),
        format!("{} 6: OK", prefix),
        format!("{} 7: OK value=\"a\"", prefix),
        format!(
            "{} 8: OK pairs={}",
            prefix,
            shown(&[("x-matrix", "a"), ("x-matrix", "b")])
        ),
        format!("{} 9: OK", prefix),
        format!("{} 10: OK pairs={}", prefix, shown(&[("x-matrix", "c")])),
        format!("{} 11: OK", prefix),
        format!("{} 12: NOT_FOUND", prefix),
        format!("{} 13: OK size={size}", prefix),
    ];
    (steps, expected)
}

/// Reads and writes on a map that exists but is read-only (callout answers).
fn read_only_map_ops(map: &str, prefix: &str, key: &str, value: &str) -> (Vec<Value>, Vec<String>) {
    let steps = vec![
        step(
            "get_header",
            &format!("{prefix} get"),
            json!({"map": map, "key": key}),
        ),
        step(
            "get_header",
            &format!("{prefix} get missing"),
            json!({"map": map, "key": "x-none"}),
        ),
        step(
            "get_header_map_size",
            &format!("{prefix} size"),
            json!({"map": map}),
        ),
        step(
            "set_headers",
            &format!("{prefix} set"),
            json!({"map": map, "pairs": [["a", "b"]]}),
        ),
        step(
            "add_header",
            &format!("{prefix} add"),
            json!({"map": map, "key": "a", "value": "b"}),
        ),
        step(
            "replace_header",
            &format!("{prefix} replace"),
            json!({"map": map, "key": key, "value": "b"}),
        ),
        step(
            "remove_header",
            &format!("{prefix} remove"),
            json!({"map": map, "key": key}),
        ),
        step(
            "get_headers",
            &format!("{prefix} pairs"),
            json!({"map": map}),
        ),
    ];
    let expected = vec![
        format!("{prefix} get: OK value={value:?}"),
        format!("{prefix} get missing: NOT_FOUND"),
        // Envoy sizes a map through its writable lookup, which knows only
        // the four stream maps (context.cc getHeaderMapSize -> getMap).
        format!("{prefix} size: BAD_ARGUMENT size=0"),
        format!("{prefix} set: BAD_ARGUMENT"),
        format!("{prefix} add: BAD_ARGUMENT"),
        format!("{prefix} replace: BAD_ARGUMENT"),
        format!("{prefix} remove: BAD_ARGUMENT"),
        format!("{prefix} pairs: OK pairs=[{key:?}={value:?}]"),
    ];
    (steps, expected)
}

/// Operations on a map that does not exist in this phase.
fn unavailable_map_ops(map: &str, prefix: &str) -> (Vec<Value>, Vec<String>) {
    let steps = vec![
        step(
            "get_headers",
            &format!("{prefix} pairs"),
            json!({"map": map}),
        ),
        step(
            "get_header",
            &format!("{prefix} get"),
            json!({"map": map, "key": "a"}),
        ),
        step(
            "get_header_map_size",
            &format!("{prefix} size"),
            json!({"map": map}),
        ),
        step(
            "add_header",
            &format!("{prefix} add"),
            json!({"map": map, "key": "a", "value": "b"}),
        ),
        step(
            "set_headers",
            &format!("{prefix} set"),
            json!({"map": map, "pairs": [["a", "b"]]}),
        ),
    ];
    let expected = vec![
        format!("{prefix} pairs: OK pairs=[]"),
        format!("{prefix} get: BAD_ARGUMENT"),
        format!("{prefix} size: BAD_ARGUMENT size=0"),
        format!("{prefix} add: BAD_ARGUMENT"),
        format!("{prefix} set: BAD_ARGUMENT"),
    ];
    (steps, expected)
}

fn lines_with_prefix(lines: &[String], prefix: &str) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l.starts_with(&format!("{prefix} ")))
        .cloned()
        .collect()
}

#[test]
fn every_header_map_op_on_every_map() {
    let request_pairs = [
        (":method", "GET"),
        (":path", "/m"),
        (":authority", "h"),
        (":scheme", "http"),
        ("x-set", "1"),
    ];
    let (req_h, req_h_want) = all_map_ops("request_headers", "reqh", &request_pairs);
    let (req_t, req_t_want) = all_map_ops("request_trailers", "reqt", &[("x-set", "t")]);
    let (resp_h, resp_h_want) = all_map_ops(
        "response_headers",
        "resph",
        &[(":status", "200"), ("x-set", "2")],
    );
    let (resp_t, resp_t_want) = all_map_ops("response_trailers", "respt", &[("x-set", "rt")]);
    let (call_h, mut call_h_want) =
        read_only_map_ops("http_call_response_headers", "callh", ":status", "200");
    // The async client's router adds the service time (onUpstreamHeaders).
    if let Some(h) = call_h_want.last_mut() {
        *h = r#"callh pairs: OK pairs=[":status"="200", "x-envoy-upstream-service-time"="0"]"#
            .into();
    }
    let (call_t, call_t_want) =
        read_only_map_ops("http_call_response_trailers", "callt", "x-ct", "v");
    let (grpc_i, mut grpc_i_want) =
        read_only_map_ops("grpc_initial_metadata", "grpci", "x-gi", "i");
    let (grpc_t, mut grpc_t_want) =
        read_only_map_ops("grpc_trailing_metadata", "grpct", "x-gt", "t");
    // The server's own headers and trailers come first, as Envoy's async
    // gRPC client passes them on (async_client_impl.cc onHeaders/onTrailers).
    if let (Some(i), Some(t)) = (grpc_i_want.last_mut(), grpc_t_want.last_mut()) {
        *i = r#"grpci pairs: OK pairs=[":status"="200", "content-type"="application/grpc", "x-gi"="i", "x-envoy-upstream-service-time"="0"]"#.into();
        *t = r#"grpct pairs: OK pairs=["grpc-status"="0", "x-gt"="t"]"#.into();
    }
    let mut outside = Vec::new();
    let mut outside_want = Vec::new();
    for map in [
        "request_trailers",
        "response_headers",
        "response_trailers",
        "http_call_response_headers",
        "http_call_response_trailers",
        "grpc_initial_metadata",
        "grpc_trailing_metadata",
    ] {
        let (steps, want) = unavailable_map_ops(map, &format!("outside {map}"));
        outside.extend(steps);
        outside_want.push((format!("outside {map}"), want));
    }
    let mut request_header_steps = outside;
    request_header_steps.extend(req_h);
    request_header_steps.push(step(
        "http_call",
        "call",
        json!({"cluster": "auth", "timeout_ms": 0,
        "headers": [[":method", "GET"], [":path", "/"], [":authority", "auth"]]}),
    ));
    let clusters = vec![
        ClusterSpec {
            name: "auth".into(),
            http: vec![HttpCalloutAnswer {
                trailers: Headers::from_pairs([("x-ct", "v")]),
                ..HttpCalloutAnswer::default()
            }],
            grpc: vec![],
            refuse_connections: false,
        },
        ClusterSpec {
            name: "grpc-svc".into(),
            http: vec![],
            grpc: vec![GrpcCalloutAnswer {
                initial_metadata: Headers::from_pairs([("x-gi", "i")]),
                trailing_metadata: Headers::from_pairs([("x-gt", "t")]),
                ..GrpcCalloutAnswer::default()
            }],
            refuse_connections: false,
        },
    ];
    let mut envoy = probe_with_clusters(
        json!({
            "configure": [{"op": "grpc_stream", "cluster": "grpc-svc", "service": "s", "method": "m"}],
            "root_callouts": {
                "grpc_stream_initial_metadata": grpc_i,
                "grpc_stream_trailing_metadata": grpc_t
            },
            "http": {
                "request_headers": {"action": "pause", "steps": request_header_steps},
                "callouts": {"http_call_response": call_h.into_iter().chain(call_t).chain([
                    json!({"op": "continue_stream", "stream": "request"})]).collect::<Vec<_>>()},
                "request_trailers": {"steps": req_t},
                "response_headers": {"steps": resp_h},
                "response_trailers": {"steps": resp_t}
            }
        }),
        clusters,
    );
    let startup = envoy.startup().clone();
    let later = envoy.advance(1).expect("advance");
    let mut root_lines = info(&startup);
    root_lines.extend(info(&later));
    assert_eq!(lines_with_prefix(&root_lines, "grpci"), grpc_i_want);
    assert_eq!(lines_with_prefix(&root_lines, "grpct"), grpc_t_want);

    let mut request = request("POST /x", &[("host", "h")]);
    request.body = Body::single("b");
    request.trailers = Some(Headers::from_pairs([("x-orig", "t")]));
    let upstream = UpstreamResponse {
        body: Body::single("r"),
        trailers: Some(Headers::from_pairs([("x-orig", "rt")])),
        ..UpstreamResponse::default()
    };
    let outcome = exchange(&mut envoy, request, upstream);
    let lines = info(&outcome);
    for (prefix, want) in outside_want {
        assert_eq!(lines_with_prefix(&lines, &prefix), want, "{prefix}");
    }
    assert_eq!(lines_with_prefix(&lines, "reqh"), req_h_want);
    assert_eq!(lines_with_prefix(&lines, "callh"), call_h_want);
    assert_eq!(lines_with_prefix(&lines, "callt"), call_t_want);
    assert_eq!(lines_with_prefix(&lines, "reqt"), req_t_want);
    assert_eq!(lines_with_prefix(&lines, "resph"), resp_h_want);
    assert_eq!(lines_with_prefix(&lines, "respt"), resp_t_want);

    let forwarded = outcome.upstream_request.clone().expect("forwarded");
    // What the filter set, then what the router adds after it.
    let mut upstream_pairs = request_pairs.to_vec();
    upstream_pairs.push(("x-envoy-expected-rq-timeout-ms", "15000"));
    assert_eq!(forwarded.headers, Headers::from_pairs(upstream_pairs));
    assert_eq!(
        forwarded.trailers,
        Some(Headers::from_pairs([("x-set", "t")]))
    );
    let response = outcome.response.clone().expect("response");
    // What the filter set, then the connection manager's date (the virtual
    // clock's start) and server.
    assert_eq!(
        response.message.headers,
        Headers::from_pairs([
            (":status", "200"),
            ("x-set", "2"),
            ("date", "Mon, 01 Jan 2024 00:00:00 GMT"),
            ("server", "envoy"),
        ])
    );
    assert_eq!(
        response.message.trailers,
        Some(Headers::from_pairs([("x-set", "rt")]))
    );
}

// ------------------------------------------- Envoy's phase-dependent maps

#[test]
fn trailers_are_created_on_demand_in_the_last_body_callback() {
    // Envoy's getMap creates the trailers of a direction that has none in
    // its last body callback (addDecodedTrailers / addEncodedTrailers); they
    // reach the upstream / the client. Outside that callback: BAD_ARGUMENT.
    let mut envoy = probe(json!({"http": {
        "request_headers": {"steps": [
            step("add_header", "early", json!({"map": "request_trailers", "key": "x-early", "value": "1"}))]},
        "request_body": {"steps": [
            step("get_header_map_size", "req size", json!({"map": "request_trailers"})),
            step("add_header", "req add", json!({"map": "request_trailers", "key": "X-Req-Trailer", "value": "a"}))]},
        "response_body": {"steps": [
            step("replace_header", "resp replace", json!({"map": "response_trailers", "key": "x-resp-trailer", "value": "b"}))]}
    }}));
    let mut post = request("POST /upload", &[("host", "h")]);
    post.body = Body::single("payload");
    let upstream = UpstreamResponse {
        body: Body::single("answer"),
        ..UpstreamResponse::default()
    };
    let outcome = exchange(&mut envoy, post, upstream);
    assert_eq!(result(&outcome, "early"), "early: BAD_ARGUMENT");
    // HTTP/1: the data frame, then the empty end-of-stream frame, which is
    // the last body callback and the only one that may create trailers.
    assert_eq!(
        results(&outcome, "req size"),
        vec!["req size: BAD_ARGUMENT size=0", "req size: OK size=0"]
    );
    assert_eq!(
        results(&outcome, "req add"),
        vec!["req add: BAD_ARGUMENT", "req add: OK"]
    );
    assert_eq!(
        results(&outcome, "resp replace"),
        vec!["resp replace: BAD_ARGUMENT", "resp replace: OK"]
    );
    let seen = callbacks(&outcome);
    let sent = outcome.upstream_request.expect("upstream request");
    assert_eq!(sent.body.as_bytes(), b"payload");
    let trailers = sent.trailers.expect("request trailers reach the upstream");
    assert_eq!(trailers.get_text("x-req-trailer"), Some("a".into()));
    assert_eq!(trailers.get_text("x-early"), None);
    let response = outcome.response.expect("response");
    let trailers = response
        .message
        .trailers
        .expect("response trailers reach the client");
    assert_eq!(trailers.get_text("x-resp-trailer"), Some("b".into()));
    assert!(
        !seen
            .iter()
            .any(|c| c.starts_with("request_trailers") || c.starts_with("response_trailers")),
        "trailers created by the filter are not delivered back to it: {seen:?}"
    );
}

#[test]
fn on_log_reads_a_missing_map_as_not_found() {
    // Envoy's access-log phase: a map that is not there reads as NOT_FOUND
    // (elsewhere BAD_ARGUMENT), and request trailers are never there.
    let mut envoy = probe(json!({"http": {
        "request_headers": {"steps": [
            step("get_header", "early", json!({"map": "response_headers", "key": "x"}))]},
        "log": [
            step("get_header", "log req trailer", json!({"map": "request_trailers", "key": "x-orig"})),
            step("get_headers", "log req trailers", json!({"map": "request_trailers"})),
            step("get_header", "log resp trailer", json!({"map": "response_trailers", "key": "x"})),
            step("get_header", "log call", json!({"map": "http_call_response_headers", "key": ":status"})),
            step("get_header", "log header", json!({"map": "request_headers", "key": ":path"}))
        ]
    }}));
    let mut post = request("POST /x", &[("host", "h")]);
    post.body = Body::single("b");
    post.trailers = Some(Headers::from_pairs([("x-orig", "t")]));
    let outcome = exchange(&mut envoy, post, ok_upstream());
    assert_eq!(result(&outcome, "early"), "early: BAD_ARGUMENT");
    assert_eq!(
        result(&outcome, "log req trailer"),
        "log req trailer: NOT_FOUND"
    );
    assert_eq!(
        result(&outcome, "log req trailers"),
        "log req trailers: OK pairs=[]"
    );
    assert_eq!(
        result(&outcome, "log resp trailer"),
        "log resp trailer: NOT_FOUND"
    );
    assert_eq!(result(&outcome, "log call"), "log call: NOT_FOUND");
    assert_eq!(
        result(&outcome, "log header"),
        r#"log header: OK value="/x""#
    );
}

#[test]
fn plugin_configuration_buffer_exists_only_while_configuring() {
    // Envoy's getBuffer(PluginConfiguration) is non-null only while
    // temp_plugin_ is set (root on_context_create and on_configure).
    let script = json!({
        "configure": [
            step("get_buffer_status", "cfg status", json!({"buffer": "plugin_configuration"}))],
        "http": {"request_headers": {"steps": [
            step("get_buffer", "req cfg", json!({"buffer": "plugin_configuration"})),
            step("get_buffer_status", "req cfg status", json!({"buffer": "plugin_configuration"})),
            step("get_buffer_status", "req vm cfg", json!({"buffer": "vm_configuration"}))]}}
    });
    let mut envoy = probe(script);
    let startup = envoy.startup().clone();
    let status = result(&startup, "cfg status");
    assert!(status.starts_with("cfg status: OK "), "{status}");
    let outcome = exchange(&mut envoy, get("/"), ok_upstream());
    for label in ["req cfg", "req cfg status"] {
        let line = result(&outcome, label);
        assert!(line.starts_with(&format!("{label}: NOT_FOUND")), "{line}");
    }
    let vm = result(&outcome, "req vm cfg");
    assert!(vm.starts_with("req vm cfg: OK "), "{vm}");
}
