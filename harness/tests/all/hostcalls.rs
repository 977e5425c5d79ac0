//! Every host function, with Envoy's status codes, as the guest sees them
//! (through test-filter-probe's result lines `<label>: <STATUS> ...`).

use harness::{
    Body, CalloutFailure, ClusterSpec, GrpcCalloutAnswer, Harness, Headers, HttpCalloutAnswer,
    LogLevel, MetricKind, PropertyValue, SharedHost, UpstreamResponse,
};
use serde_json::{Value, json};

use crate::support::*;

fn step(op: &str, label: &str, mut fields: Value) -> Value {
    fields["op"] = json!(op);
    fields["label"] = json!(label);
    fields
}

// ---------------------------------------------------------------- logging

#[test]
fn logs_at_every_level_and_reports_the_configured_level() {
    let steps: Vec<Value> = (0..6)
        .map(|level| json!({"op": "log", "level": level, "message": format!("at level {level}")}))
        .chain([json!({"op": "get_log_level"})])
        .collect();
    let mut config = probe_config(json!({"http": {"request_headers": {"steps": steps.clone()}}}));
    config.plugin.log_level = LogLevel::Trace;
    let mut envoy = start(config);
    let outcome = exchange(&mut envoy, get("/"), ok_upstream());
    for level in LogLevel::ALL {
        let line = format!("at level {}", level.as_u32());
        assert!(
            outcome
                .logs
                .iter()
                .any(|l| l.level == level && l.message == line && l.context_id == 2),
            "{line} at {level:?} from context 2: {:#?}",
            outcome.logs
        );
    }
    assert_eq!(
        result(&outcome, "get_log_level"),
        "get_log_level: OK level=0"
    );

    // By default the level is info, as Envoy's `wasm` logger: debug and
    // trace lines are dropped.
    let mut envoy = probe(json!({"http": {"request_headers": {"steps": steps}}}));
    let outcome = exchange(&mut envoy, get("/"), ok_upstream());
    assert_eq!(
        result(&outcome, "get_log_level"),
        "get_log_level: OK level=2"
    );
    assert!(!outcome.logs.iter().any(|l| l.message == "at level 1"));
    assert!(outcome.logs.iter().any(|l| l.message == "at level 2"));

    // A higher configured level is reported and lower lines are dropped.
    let mut config = probe_config(json!({"http": {"request_headers": {"steps": [
        {"op": "log", "level": 2, "message": "info line"},
        {"op": "log", "level": 3, "message": "warn line"},
        {"op": "get_log_level", "label": "level"}
    ]}}}));
    config.plugin.log_level = LogLevel::Info;
    let mut envoy = start(config);
    let outcome = exchange(&mut envoy, get("/"), ok_upstream());
    assert!(outcome.logs.iter().any(|l| l.message == "warn line"));
    assert!(outcome.logs.iter().any(|l| l.message == "info line"));
    assert_eq!(result(&outcome, "level"), "level: OK level=2");

    let mut config = probe_config(json!({"http": {"request_headers": {"steps": [
        {"op": "log", "level": 1, "message": "debug line"},
        {"op": "log", "level": 3, "message": "warn line"}
    ]}}}));
    config.plugin.log_level = LogLevel::Warn;
    let mut envoy = start(config);
    let outcome = exchange(&mut envoy, get("/"), ok_upstream());
    assert!(outcome.logs.iter().any(|l| l.message == "warn line"));
    assert!(
        !outcome.logs.iter().any(|l| l.message == "debug line"),
        "below the level: dropped"
    );
}

// ---------------------------------------------------------------- header maps

#[test]
fn request_header_map_get_add_replace_remove_size() {
    let mut envoy = probe(json!({"http": {"request_headers": {"steps": [
        step("get_header", "method", json!({"map": "request_headers", "key": ":method"})),
        step("get_header", "path", json!({"map": "request_headers", "key": ":path"})),
        step("get_header", "authority", json!({"map": "request_headers", "key": ":authority"})),
        step("get_header", "scheme", json!({"map": "request_headers", "key": ":scheme"})),
        step("get_header", "host", json!({"map": "request_headers", "key": "host"})),
        step("get_header", "missing", json!({"map": "request_headers", "key": "x-missing"})),
        step("get_header", "mixed case key", json!({"map": "request_headers", "key": "X-Tag"})),
        step("add_header", "add", json!({"map": "request_headers", "key": "X-Multi", "value": "one"})),
        step("add_header", "add again", json!({"map": "request_headers", "key": "x-multi", "value": "two"})),
        step("get_header", "first value", json!({"map": "request_headers", "key": "x-multi"})),
        step("replace_header", "replace", json!({"map": "request_headers", "key": "x-tag", "value": "replaced"})),
        step("replace_header", "replace creates", json!({"map": "request_headers", "key": "X-New", "value": "n"})),
        step("remove_header", "remove", json!({"map": "request_headers", "key": "x-remove-me"})),
        step("remove_header", "remove missing", json!({"map": "request_headers", "key": "x-never-there"})),
        step("get_header", "after remove", json!({"map": "request_headers", "key": "x-remove-me"})),
        step("get_header_map_size", "size", json!({"map": "request_headers"})),
        step("get_headers", "pairs", json!({"map": "request_headers"}))
    ]}}}));
    let request = request(
        "GET /items?id=7",
        &[
            ("Host", "shop.local:8080"),
            ("x-tag", "original"),
            ("x-remove-me", "a"),
            ("x-remove-me", "b"),
        ],
    );
    let outcome = exchange(&mut envoy, request, ok_upstream());
    assert_eq!(result(&outcome, "method"), r#"method: OK value="GET""#);
    assert_eq!(result(&outcome, "path"), r#"path: OK value="/items?id=7""#);
    assert_eq!(
        result(&outcome, "authority"),
        r#"authority: OK value="shop.local:8080""#,
        "HTTP/1 Host becomes :authority"
    );
    assert_eq!(result(&outcome, "scheme"), r#"scheme: OK value="http""#);
    assert_eq!(
        result(&outcome, "host"),
        "host: NOT_FOUND",
        "host moved to :authority"
    );
    assert_eq!(result(&outcome, "missing"), "missing: NOT_FOUND");
    assert_eq!(
        result(&outcome, "mixed case key"),
        r#"mixed case key: OK value="original""#
    );
    assert_eq!(result(&outcome, "add"), "add: OK");
    assert_eq!(result(&outcome, "add again"), "add again: OK");
    assert_eq!(
        result(&outcome, "first value"),
        r#"first value: OK value="one""#
    );
    assert_eq!(result(&outcome, "replace"), "replace: OK");
    assert_eq!(result(&outcome, "replace creates"), "replace creates: OK");
    assert_eq!(result(&outcome, "remove"), "remove: OK");
    assert_eq!(result(&outcome, "remove missing"), "remove missing: OK");
    assert_eq!(
        result(&outcome, "after remove"),
        "after remove: NOT_FOUND",
        "remove drops every value"
    );

    let upstream = outcome.upstream_request.clone().expect("forwarded");
    let multi: Vec<String> = upstream
        .headers
        .get_all("x-multi")
        .map(|v| v.to_text())
        .collect();
    assert_eq!(multi, vec!["one", "two"]);
    assert_eq!(upstream.headers.get_text("x-tag"), Some("replaced".into()));
    assert_eq!(upstream.headers.get_text("x-new"), Some("n".into()));
    assert!(!upstream.headers.contains("x-remove-me"));
    assert!(
        upstream
            .headers
            .iter()
            .all(|(k, _)| !k.iter().any(u8::is_ascii_uppercase)),
        "keys lower-cased"
    );
    for (name, _) in [
        (":method", ""),
        (":path", ""),
        (":authority", ""),
        (":scheme", ""),
        ("x-forwarded-proto", ""),
        ("x-request-id", ""),
    ] {
        assert!(
            upstream.headers.contains(name),
            "{name} in {:?}",
            upstream.headers
        );
    }
    // The router adds its timeout header after the filters (Envoy's
    // FilterUtility::setTimeoutHeaders), so the filter never counted it.
    assert_eq!(
        upstream
            .headers
            .get_text("x-envoy-expected-rq-timeout-ms")
            .as_deref(),
        Some("15000")
    );
    // Envoy's byteSize: the sum of key and value lengths.
    let byte_size: usize = upstream
        .headers
        .iter()
        .filter(|(k, _)| *k != b"x-envoy-expected-rq-timeout-ms")
        .map(|(k, v)| k.len() + v.len())
        .sum();
    assert_eq!(
        result(&outcome, "size"),
        format!("size: OK size={byte_size}")
    );
    let pairs = result(&outcome, "pairs");
    // Envoy's HTTP/1 pseudo-header order: :authority (from Host), :path, :method, :scheme.
    assert!(pairs.starts_with(r#"pairs: OK pairs=[":authority"="shop.local:8080", ":path"="/items?id=7", ":method"="GET", ":scheme"="http""#), "{pairs}");
}

#[test]
fn set_header_map_pairs_replaces_the_whole_map() {
    let mut envoy = probe(json!({"http": {
        "request_headers": {"steps": [
            step("set_headers", "set", json!({"map": "request_headers", "pairs": [
                [":method", "POST"], [":path", "/rewritten"], [":authority", "other"], [":scheme", "https"], ["X-Only", "1"]]}))
        ]},
        "response_headers": {"steps": [
            step("set_headers", "set response", json!({"map": "response_headers", "pairs": [[":status", "201"], ["x-resp", "r"]]})),
            step("get_header_map_size", "response size", json!({"map": "response_headers"}))
        ]}
    }}));
    let upstream = UpstreamResponse {
        headers: Headers::from_pairs([("x-drop", "d")]),
        ..UpstreamResponse::default()
    };
    let outcome = exchange(&mut envoy, get("/orig"), upstream);
    assert_eq!(result(&outcome, "set"), "set: OK");
    let forwarded = outcome.upstream_request.clone().expect("forwarded");
    assert_eq!(
        forwarded.headers.get_text(":path"),
        Some("/rewritten".into())
    );
    assert_eq!(forwarded.headers.get_text(":method"), Some("POST".into()));
    assert_eq!(forwarded.headers.get_text("x-only"), Some("1".into()));
    assert!(
        !forwarded.headers.contains("x-request-id"),
        "set_pairs replaced everything"
    );
    let response = outcome.response.clone().expect("response");
    assert_eq!(response.status, 201);
    assert_eq!(
        response.message.headers.get_text("x-resp"),
        Some("r".into())
    );
    assert!(!response.message.headers.contains("x-drop"));
    assert_eq!(
        result(&outcome, "response size"),
        format!(
            "response size: OK size={}",
            ":status".len() + 3 + "x-resp".len() + 1
        )
    );
}

#[test]
fn response_header_map_ops_and_maps_outside_their_phase() {
    let mut envoy = probe(json!({"http": {
        "request_headers": {"steps": [
            step("get_headers", "response map during request", json!({"map": "response_headers"})),
            step("get_headers", "request trailers during headers", json!({"map": "request_trailers"})),
            step("get_headers", "call response outside a callout", json!({"map": "http_call_response_headers"}))
        ]},
        "response_headers": {"steps": [
            step("get_header", "status", json!({"map": "response_headers", "key": ":status"})),
            step("add_header", "add", json!({"map": "response_headers", "key": "X-Added", "value": "yes"})),
            step("replace_header", "replace", json!({"map": "response_headers", "key": "server", "value": "probe"})),
            step("remove_header", "remove", json!({"map": "response_headers", "key": "x-secret"}))
        ]}
    }}));
    let upstream = UpstreamResponse {
        status: 404,
        headers: Headers::from_pairs([("server", "upstream"), ("x-secret", "s")]),
        ..UpstreamResponse::default()
    };
    let outcome = exchange(&mut envoy, get("/"), upstream);
    assert_eq!(
        result(&outcome, "response map during request"),
        "response map during request: OK pairs=[]"
    );
    assert_eq!(
        result(&outcome, "request trailers during headers"),
        "request trailers during headers: OK pairs=[]"
    );
    assert_eq!(
        result(&outcome, "call response outside a callout"),
        "call response outside a callout: OK pairs=[]"
    );
    assert_eq!(result(&outcome, "status"), r#"status: OK value="404""#);
    let response = outcome.response.expect("response");
    assert_eq!(response.status, 404);
    assert_eq!(
        response.message.headers.get_text("x-added"),
        Some("yes".into())
    );
    // The filter's `server: probe` is overwritten after every filter, as
    // Envoy's connection manager does by default (OVERWRITE).
    assert_eq!(
        response.message.headers.get_text("server"),
        Some("envoy".into())
    );
    assert!(!response.message.headers.contains("x-secret"));
}

// ---------------------------------------------------------------- buffers

#[test]
fn set_buffer_bytes_follows_envoy_copy_from() {
    let mut envoy = probe(json!({"http": {
        "request_body": {"action": "pause_until_eos", "steps": []},
        "response_body": {"action": "pause_until_eos", "steps": []}
    }, "routes": {
        "/prepend": {"request_body": {"action": "pause_until_eos", "steps": [
            step("set_buffer", "prepend", json!({"buffer": "request_body", "start": 0, "size": 0, "data": "pre-"}))]}},
        "/append": {"request_body": {"action": "pause_until_eos", "steps": [
            step("set_buffer", "append", json!({"buffer": "request_body", "start": 99, "size": 0, "data": "-post"}))]}},
        "/replace": {"request_body": {"action": "pause_until_eos", "steps": [
            step("set_buffer", "replace", json!({"buffer": "request_body", "start": 0, "size": 999, "data": "new"}))]}},
        "/middle": {"request_body": {"action": "pause_until_eos", "steps": [
            step("set_buffer", "middle", json!({"buffer": "request_body", "start": 1, "size": 1, "data": "X"})),
            step("set_buffer", "partial replace", json!({"buffer": "request_body", "start": 0, "size": 2, "data": "X"}))]}},
        "/slice": {"request_body": {"action": "pause_until_eos", "steps": [
            step("get_buffer", "slice", json!({"buffer": "request_body", "start": 2, "max": 3})),
            step("get_buffer", "past end", json!({"buffer": "request_body", "start": 100, "max": 3})),
            step("get_buffer_status", "status", json!({"buffer": "request_body"}))]},
            "response_body": {"action": "pause_until_eos", "steps": [
            step("get_buffer", "response", json!({"buffer": "response_body"})),
            step("set_buffer", "response replace", json!({"buffer": "response_body", "start": 0, "size": 100, "data": "rewritten"}))]}}
    }}));
    // HTTP/2 framing: one body callback per chunk, the last one ends it.
    let post = |path: &str| {
        let mut r = request(&format!("POST {path} HTTP/2"), &[("host", "h")]);
        r.body = Body(vec!["abc".into(), "def".into()]);
        r
    };
    let body_of = |outcome: &harness::Outcome| {
        outcome
            .upstream_request
            .as_ref()
            .expect("forwarded")
            .body
            .to_text()
    };

    let outcome = exchange(&mut envoy, post("/prepend"), ok_upstream());
    assert_eq!(results(&outcome, "prepend"), vec!["prepend: OK"; 2]);
    assert_eq!(
        body_of(&outcome),
        "pre-pre-abcdef",
        "prepended once per body callback"
    );

    let outcome = exchange(&mut envoy, post("/append"), ok_upstream());
    assert_eq!(body_of(&outcome), "abc-postdef-post");

    let outcome = exchange(&mut envoy, post("/replace"), ok_upstream());
    assert_eq!(body_of(&outcome), "new");

    let outcome = exchange(&mut envoy, post("/middle"), ok_upstream());
    assert_eq!(results(&outcome, "middle"), vec!["middle: BAD_ARGUMENT"; 2]);
    // Start 0 drains `size` bytes, then prepends (Envoy's Buffer::copyFrom):
    // "abc" -> "Xc", then "Xc" + "def" -> "Xdef".
    assert_eq!(
        results(&outcome, "partial replace"),
        vec!["partial replace: OK"; 2]
    );
    assert_eq!(
        body_of(&outcome),
        "Xdef",
        "the rejected middle edit changes nothing"
    );

    let upstream = UpstreamResponse {
        body: Body::single("upstream-body"),
        ..UpstreamResponse::default()
    };
    let outcome = exchange(&mut envoy, post("/slice"), upstream);
    assert_eq!(
        results(&outcome, "slice"),
        vec![r#"slice: OK bytes="c""#, r#"slice: OK bytes="cde""#]
    );
    assert_eq!(results(&outcome, "past end")[1], r#"past end: OK bytes="""#);
    assert_eq!(
        results(&outcome, "status")[1],
        "status: OK length=6 flags=0"
    );
    assert_eq!(
        result(&outcome, "response"),
        r#"response: OK bytes="upstream-body""#
    );
    let response = outcome.response.expect("response");
    assert_eq!(response.message.body.as_bytes(), b"rewritten");
}

#[test]
fn configuration_buffers_hold_the_vm_and_plugin_configuration() {
    let script = json!({"configure": [
        step("get_buffer", "plugin config", json!({"buffer": "plugin_configuration", "start": 0, "max": 12})),
        step("get_buffer_status", "plugin config status", json!({"buffer": "plugin_configuration"}))
    ]});
    let mut config = probe_config(script.clone());
    config.plugin.vm_config = json!({"vm_start": [
        step("get_buffer", "vm config", json!({"buffer": "vm_configuration", "start": 0, "max": 11}))
    ]}).to_string().into();
    let expected_vm = config.plugin.vm_config.to_text();
    let expected_plugin = config.plugin.configuration.to_text();
    let envoy = start(config);
    let startup = envoy.startup();
    assert_eq!(
        result(startup, "vm config"),
        format!("vm config: OK bytes={:?}", &expected_vm[..11])
    );
    assert_eq!(
        result(startup, "plugin config"),
        format!("plugin config: OK bytes={:?}", &expected_plugin[..12])
    );
    assert!(
        result(startup, "plugin config status").starts_with(&format!(
            "plugin config status: OK length={}",
            expected_plugin.len()
        ))
    );
}

// ---------------------------------------------------------------- properties

#[test]
fn properties_are_binary_encoded_and_settable_only_from_streams() {
    let get_prop = |label: &str, path: &[&str], decode: &str| {
        step(
            "get_property",
            label,
            json!({"path": path, "decode": decode}),
        )
    };
    let mut config = probe_config(json!({
        "configure": [
            step("set_property", "set from root", json!({"path": ["my", "prop"], "value": "v"})),
            get_prop("plugin name", &["plugin_name"], "str"),
            get_prop("root id", &["plugin_root_id"], "str"),
            get_prop("vm id", &["plugin_vm_id"], "str")
        ],
        "http": {
            "request_headers": {"steps": [
                get_prop("request.path", &["request", "path"], "str"),
                get_prop("request.method", &["request", "method"], "str"),
                get_prop("request.host", &["request", "host"], "str"),
                get_prop("route", &["xds", "route_name"], "str"),
                get_prop("cluster id", &["xds", "node", "metadata", "CLUSTER_ID"], "str"),
                get_prop("source.port", &["source", "port"], "i64"),
                get_prop("mtls", &["connection", "mtls"], "bool"),
                get_prop("missing", &["no", "such", "property"], "str"),
                step("set_property", "set from stream", json!({"path": ["my_prop"], "value": "stream value"})),
                get_prop("read back", &["my_prop"], "str"),
                get_prop("url_path", &["request", "url_path"], "str"),
                get_prop("query", &["request", "query"], "str"),
                get_prop("one header", &["request", "headers", "x-h"], "str"),
                get_prop("useragent", &["request", "useragent"], "str"),
                get_prop("request.time", &["request", "time"], "i64"),
                get_prop("node.metadata", &["xds", "node", "metadata"], "pairs")
            ]},
            "response_headers": {"steps": [
                get_prop("response.code", &["response", "code"], "i64"),
                get_prop("response header", &["response", "headers", "server"], "str")
            ]}
        }
    }));
    config.plugin.root_id = "probe-root".into();
    config.plugin.vm_id = "probe-vm".into();
    config.properties.insert(
        "xds.route_name".into(),
        PropertyValue::String("details-route".into()),
    );
    config.properties.insert(
        "xds.node.metadata.CLUSTER_ID".into(),
        PropertyValue::String("c1".into()),
    );
    config
        .properties
        .insert("source.port".into(), PropertyValue::Int(45000));
    config
        .properties
        .insert("connection.mtls".into(), PropertyValue::Bool(true));
    let mut envoy = start(config);
    let startup = envoy.startup();
    assert_eq!(result(startup, "set from root"), "set from root: NOT_FOUND");
    assert_eq!(
        result(startup, "plugin name"),
        r#"plugin name: OK value="probe""#
    );
    assert_eq!(
        result(startup, "root id"),
        r#"root id: OK value="probe-root""#
    );
    assert_eq!(result(startup, "vm id"), r#"vm id: OK value="probe-vm""#);

    let upstream = UpstreamResponse {
        status: 418,
        headers: Headers::from_pairs([("server", "upstream")]),
        ..UpstreamResponse::default()
    };
    let outcome = exchange(
        &mut envoy,
        request(
            "PUT /p/1?q=2",
            &[("host", "svc"), ("x-h", "hv"), ("user-agent", "curl/8")],
        ),
        upstream,
    );
    assert_eq!(
        result(&outcome, "request.path"),
        r#"request.path: OK value="/p/1?q=2""#
    );
    assert_eq!(
        result(&outcome, "request.method"),
        r#"request.method: OK value="PUT""#
    );
    assert_eq!(
        result(&outcome, "request.host"),
        r#"request.host: OK value="svc""#
    );
    assert_eq!(
        result(&outcome, "route"),
        r#"route: OK value="details-route""#
    );
    assert_eq!(
        result(&outcome, "cluster id"),
        r#"cluster id: OK value="c1""#
    );
    assert_eq!(
        result(&outcome, "source.port"),
        "source.port: OK value=45000"
    );
    assert_eq!(result(&outcome, "mtls"), "mtls: OK value=true");
    assert_eq!(result(&outcome, "missing"), "missing: NOT_FOUND");
    assert_eq!(result(&outcome, "set from stream"), "set from stream: OK");
    assert_eq!(
        result(&outcome, "read back"),
        r#"read back: OK value="stream value""#
    );
    assert_eq!(
        result(&outcome, "response.code"),
        "response.code: OK value=418"
    );
    assert_eq!(result(&outcome, "url_path"), r#"url_path: OK value="/p/1""#);
    assert_eq!(result(&outcome, "query"), r#"query: OK value="q=2""#);
    assert_eq!(
        result(&outcome, "one header"),
        r#"one header: OK value="hv""#
    );
    assert_eq!(
        result(&outcome, "useragent"),
        r#"useragent: OK value="curl/8""#
    );
    assert_eq!(
        result(&outcome, "request.time"),
        "request.time: OK value=1704067200000000000",
        "a timestamp in ns on the virtual clock"
    );
    assert_eq!(
        result(&outcome, "node.metadata"),
        r#"node.metadata: OK value=["CLUSTER_ID"="c1"]"#,
        "a map property is pair-serialized"
    );
    assert_eq!(
        result(&outcome, "response header"),
        r#"response header: OK value="upstream""#
    );
}

// ---------------------------------------------------------------- callouts

fn auth_cluster(answers: Vec<HttpCalloutAnswer>) -> ClusterSpec {
    ClusterSpec {
        name: "auth".into(),
        http: answers,
        grpc: vec![],
        refuse_connections: false,
    }
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
    let clusters = vec![ClusterSpec {
        name: "grpc-svc".into(),
        http: vec![],
        grpc: vec![
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
        ],
        refuse_connections: false,
    }];
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
    let clusters = vec![ClusterSpec {
        name: "grpc-svc".into(),
        http: vec![],
        grpc: vec![GrpcCalloutAnswer {
            status: 0,
            initial_metadata: Headers::from_pairs([("x-initial", "i")]),
            messages: vec!["m1".into(), "m22".into()],
            trailing_metadata: Headers::from_pairs([("x-trailing", "t")]),
            ..GrpcCalloutAnswer::default()
        }],
        refuse_connections: false,
    }];
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
    let clusters = vec![ClusterSpec {
        name: "grpc-svc".into(),
        http: vec![],
        grpc: vec![GrpcCalloutAnswer {
            status: 5,
            message: "not found".into(),
            ..GrpcCalloutAnswer::default()
        }],
        refuse_connections: false,
    }];
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
        let clusters = vec![ClusterSpec {
            name: "grpc-svc".into(),
            http: vec![],
            grpc: vec![GrpcCalloutAnswer {
                failure: Some(failure),
                delay_ms: 5,
                ..GrpcCalloutAnswer::default()
            }],
            refuse_connections: false,
        }];
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
    let clusters = vec![ClusterSpec {
        name: "grpc-svc".into(),
        http: vec![],
        grpc: vec![GrpcCalloutAnswer {
            delay_ms: 1000,
            messages: vec!["late".into()],
            ..GrpcCalloutAnswer::default()
        }],
        refuse_connections: false,
    }];
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

// ---------------------------------------------------------------- timers and time

#[test]
fn tick_period_fires_on_tick_on_the_virtual_clock() {
    let mut config = probe_config(json!({"trace": true,
        "configure": [{"op": "set_tick_period", "ms": 1000}, {"op": "get_current_time", "label": "time at start"}],
        "tick": [{"op": "get_current_time", "label": "time at tick"}]
    }));
    config.start_time_unix_ms = 1_700_000_000_000;
    let mut envoy = start(config);
    let startup = envoy.startup().clone();
    assert_eq!(result(&startup, "set_tick_period"), "set_tick_period: OK");
    assert_eq!(
        result(&startup, "time at start"),
        "time at start: OK ns=1700000000000000000"
    );
    let outcome = envoy.advance(3500).expect("advance");
    let ticks: Vec<String> = callbacks(&outcome)
        .into_iter()
        .filter(|l| l.starts_with("tick"))
        .collect();
    assert_eq!(ticks, vec!["tick ctx=1"; 3]);
    assert_eq!(
        results(&outcome, "time at tick"),
        vec![
            "time at tick: OK ns=1700000001000000000",
            "time at tick: OK ns=1700000002000000000",
            "time at tick: OK ns=1700000003000000000",
        ]
    );
    assert_eq!(envoy.now_ms(), 3500);
}

// ---------------------------------------------------------------- shared data and queues

#[test]
fn shared_data_cas_rules() {
    let mut envoy = probe(json!({"http": {"request_headers": {"steps": [
        step("get_shared_data", "missing", json!({"key": "k"})),
        step("set_shared_data", "first set", json!({"key": "k", "value": "v1", "cas": 0})),
        {"op": "get_shared_data", "key": "k", "label": "read", "save": "cas"},
        step("set_shared_data", "set with current cas", json!({"key": "k", "value": "v2", "cas": "$cas"})),
        step("set_shared_data", "set with stale cas", json!({"key": "k", "value": "v3", "cas": "$cas"})),
        step("get_shared_data", "after", json!({"key": "k"})),
        step("set_shared_data", "unconditional", json!({"key": "k", "value": "v4", "cas": 0})),
        step("get_shared_data", "final", json!({"key": "k"}))
    ]}}}));
    let outcome = exchange(&mut envoy, get("/"), ok_upstream());
    assert_eq!(result(&outcome, "missing"), "missing: NOT_FOUND");
    assert_eq!(result(&outcome, "first set"), "first set: OK");
    let read = result(&outcome, "read");
    assert!(read.starts_with(r#"read: OK value="v1" cas="#), "{read}");
    assert!(
        !read.ends_with(" cas=0"),
        "the CAS counter is never 0: {read}"
    );
    assert_eq!(
        result(&outcome, "set with current cas"),
        "set with current cas: OK"
    );
    assert_eq!(
        result(&outcome, "set with stale cas"),
        "set with stale cas: CAS_MISMATCH"
    );
    assert!(result(&outcome, "after").starts_with(r#"after: OK value="v2" cas="#));
    assert_eq!(result(&outcome, "unconditional"), "unconditional: OK");
    assert!(result(&outcome, "final").starts_with(r#"final: OK value="v4" cas="#));
}

#[test]
fn shared_data_is_shared_by_workers_of_the_same_vm_id_only() {
    let writer = json!({"configure": [step("set_shared_data", "write", json!({"key": "shared-key", "value": "from worker 1"}))]});
    let reader =
        json!({"configure": [step("get_shared_data", "read", json!({"key": "shared-key"}))]});
    let shared = SharedHost::new();
    let with_vm = |script: Value, vm: &str| {
        let mut config = probe_config(script);
        config.plugin.vm_id = vm.into();
        config
    };
    let first = Harness::with_shared(probe_module(), with_vm(writer, "vm-a"), shared.clone())
        .expect("worker 1");
    assert_eq!(result(first.startup(), "write"), "write: OK");
    let second = Harness::with_shared(
        probe_module(),
        with_vm(reader.clone(), "vm-a"),
        shared.clone(),
    )
    .expect("worker 2");
    assert!(result(second.startup(), "read").starts_with(r#"read: OK value="from worker 1""#));
    let other_vm = Harness::with_shared(probe_module(), with_vm(reader.clone(), "vm-b"), shared)
        .expect("other vm");
    assert_eq!(result(other_vm.startup(), "read"), "read: NOT_FOUND");
    let unshared = start(with_vm(reader, "vm-a"));
    assert_eq!(
        result(unshared.startup(), "read"),
        "read: NOT_FOUND",
        "separate harnesses share nothing"
    );
}

#[test]
fn queues_register_resolve_enqueue_dequeue_and_notify_the_root() {
    let mut config = probe_config(json!({"trace": true,
        "configure": [
            {"op": "register_queue", "name": "jobs", "save": "queue"},
            step("resolve_queue", "resolve", json!({"vm_id": "probe-vm", "name": "jobs"})),
            step("resolve_queue", "resolve unknown", json!({"vm_id": "probe-vm", "name": "nope"})),
            step("enqueue", "enqueue unknown", json!({"queue": 777, "data": "x"})),
            step("dequeue", "dequeue unknown", json!({"queue": 777})),
            step("dequeue", "dequeue empty", json!({"queue": "$queue"}))
        ],
        "http": {"request_headers": {"steps": [
            step("enqueue", "enqueue", json!({"queue": "$queue", "data": "job-1"}))
        ]}},
        "queue_ready": [
            step("dequeue", "dequeue", json!({"queue": "$queue"})),
            step("dequeue", "dequeue again", json!({"queue": "$queue"}))
        ]
    }));
    config.plugin.vm_id = "probe-vm".into();
    let mut envoy = start(config);
    let startup = envoy.startup().clone();
    assert_eq!(
        result(&startup, "register_queue"),
        "register_queue: OK id=1"
    );
    assert_eq!(result(&startup, "resolve"), "resolve: OK id=1");
    assert_eq!(
        result(&startup, "resolve unknown"),
        "resolve unknown: NOT_FOUND id=0"
    );
    assert_eq!(
        result(&startup, "enqueue unknown"),
        "enqueue unknown: NOT_FOUND"
    );
    assert_eq!(
        result(&startup, "dequeue unknown"),
        "dequeue unknown: NOT_FOUND"
    );
    assert_eq!(result(&startup, "dequeue empty"), "dequeue empty: EMPTY");

    let outcome = exchange(&mut envoy, get("/"), ok_upstream());
    assert_eq!(result(&outcome, "enqueue"), "enqueue: OK");
    let later = envoy.advance(1).expect("advance");
    let mut lines: Vec<String> = outcome.logs.iter().map(|l| l.message.clone()).collect();
    lines.extend(later.logs.iter().map(|l| l.message.clone()));
    assert_in_order(
        &lines,
        &[
            "enqueue: OK",
            "cb queue_ready ctx=1 queue=1",
            r#"dequeue: OK data="job-1""#,
            "dequeue again: EMPTY",
        ],
    );
    let ready_at = lines
        .iter()
        .position(|l| l == "cb queue_ready ctx=1 queue=1");
    let enqueue_at = lines.iter().position(|l| l == "enqueue: OK");
    assert!(
        ready_at > enqueue_at,
        "on_queue_ready is posted, not called inside enqueue"
    );
}

// ---------------------------------------------------------------- metrics

#[test]
fn metrics_follow_envoys_rules() {
    let mut envoy = probe(json!({"http": {"request_headers": {"steps": [
        {"op": "define_metric", "kind": "counter", "name": "requests", "save": "counter"},
        {"op": "define_metric", "kind": "gauge", "name": "in_flight", "save": "gauge"},
        {"op": "define_metric", "kind": "histogram", "name": "latency", "save": "histogram"},
        {"op": "define_metric", "kind": "counter", "name": "requests", "label": "define again", "save": "again"},
        step("increment_metric", "increment via second id", json!({"id": "$again", "offset": 1})),
        step("increment_metric", "histogram increment", json!({"id": "$histogram", "offset": 1})),
        step("increment_metric", "counter +1", json!({"id": "$counter", "offset": 1})),
        step("increment_metric", "counter +0", json!({"id": "$counter", "offset": 0})),
        step("increment_metric", "counter -1", json!({"id": "$counter", "offset": -1})),
        step("record_metric", "counter record 5", json!({"id": "$counter", "value": 5})),
        step("get_metric", "counter value", json!({"id": "$counter"})),
        step("increment_metric", "gauge +10", json!({"id": "$gauge", "offset": 10})),
        step("increment_metric", "gauge -3", json!({"id": "$gauge", "offset": -3})),
        step("get_metric", "gauge value", json!({"id": "$gauge"})),
        step("record_metric", "gauge set 42", json!({"id": "$gauge", "value": 42})),
        step("get_metric", "gauge after set", json!({"id": "$gauge"})),
        step("record_metric", "histogram sample", json!({"id": "$histogram", "value": 12})),
        step("record_metric", "histogram sample 2", json!({"id": "$histogram", "value": 30})),
        step("get_metric", "histogram value", json!({"id": "$histogram"})),
        // An id no define returned, with a counter's kind bits (Envoy keeps
        // the kind in the low 2 bits of an id).
        step("get_metric", "unknown metric", json!({"id": 99996})),
        step("increment_metric", "unknown increment", json!({"id": 99996, "offset": 1})),
        step("record_metric", "unknown record", json!({"id": 99996, "value": 1}))
    ]}}}));
    let outcome = exchange(&mut envoy, get("/"), ok_upstream());
    let ids = results(&outcome, "define_metric");
    assert_eq!(ids.len(), 3);
    assert!(
        ids.iter().all(|l| l.starts_with("define_metric: OK id=")),
        "{ids:?}"
    );
    // Defining a name again gives a new id for the same stat, as Envoy's
    // Context::defineMetric does (a filter must not compare ids).
    let again = result(&outcome, "define again");
    assert!(again.starts_with("define again: OK id="), "{again}");
    let first_id = ids[0].trim_start_matches("define_metric: OK id=");
    assert_ne!(again.trim_start_matches("define again: OK id="), first_id);
    assert_eq!(
        result(&outcome, "increment via second id"),
        "increment via second id: OK"
    );
    assert_eq!(
        result(&outcome, "histogram increment"),
        "histogram increment: BAD_ARGUMENT",
        "histograms are recorded, not incremented"
    );
    assert_eq!(result(&outcome, "counter +1"), "counter +1: OK");
    assert_eq!(result(&outcome, "counter +0"), "counter +0: BAD_ARGUMENT");
    assert_eq!(result(&outcome, "counter -1"), "counter -1: BAD_ARGUMENT");
    assert_eq!(result(&outcome, "counter record 5"), "counter record 5: OK");
    assert_eq!(
        result(&outcome, "counter value"),
        "counter value: OK value=7",
        "both ids and record add to the one counter"
    );
    assert_eq!(result(&outcome, "gauge +10"), "gauge +10: OK");
    assert_eq!(result(&outcome, "gauge -3"), "gauge -3: OK");
    assert_eq!(result(&outcome, "gauge value"), "gauge value: OK value=7");
    assert_eq!(
        result(&outcome, "gauge after set"),
        "gauge after set: OK value=42",
        "record sets a gauge"
    );
    assert_eq!(result(&outcome, "histogram sample"), "histogram sample: OK");
    assert_eq!(
        result(&outcome, "histogram value"),
        "histogram value: BAD_ARGUMENT value=0"
    );
    assert_eq!(
        result(&outcome, "unknown metric"),
        "unknown metric: NOT_FOUND value=0"
    );
    assert_eq!(
        result(&outcome, "unknown increment"),
        "unknown increment: NOT_FOUND"
    );
    assert_eq!(
        result(&outcome, "unknown record"),
        "unknown record: NOT_FOUND"
    );

    let counter = outcome.metric("requests").expect("counter snapshot");
    assert_eq!((counter.kind, counter.value), (MetricKind::Counter, 7));
    let gauge = outcome.metric("in_flight").expect("gauge snapshot");
    assert_eq!((gauge.kind, gauge.value), (MetricKind::Gauge, 42));
    let histogram = outcome.metric("latency").expect("histogram snapshot");
    assert_eq!(
        (histogram.kind, histogram.value, histogram.samples.clone()),
        (MetricKind::Histogram, 2, vec![12, 30])
    );
}

// ---------------------------------------------------------------- misc

#[test]
fn foreign_functions_effective_context_and_done() {
    let mut envoy = probe(json!({"http": {"request_headers": {"steps": [
        step("call_foreign", "unknown foreign", json!({"name": "no_such_function", "args": "x"})),
        step("set_effective_context", "unknown context", json!({"id": 4242})),
        step("set_effective_context", "root context", json!({"id": 1})),
        step("done", "done outside on_done", json!({}))
    ]}}}));
    let outcome = exchange(&mut envoy, get("/"), ok_upstream());
    assert_eq!(
        result(&outcome, "unknown foreign"),
        r#"unknown foreign: NOT_FOUND result="""#
    );
    assert_eq!(
        result(&outcome, "unknown context"),
        "unknown context: BAD_ARGUMENT"
    );
    assert_eq!(result(&outcome, "root context"), "root context: OK");
    assert_eq!(
        result(&outcome, "done outside on_done"),
        "done outside on_done: NOT_FOUND"
    );
}

#[test]
fn wasi_subset_stdout_stderr_env_random_clock() {
    let mut config = probe_config(json!({"configure": [
        {"op": "stdout", "text": "to stdout"},
        {"op": "stderr", "text": "to stderr"},
        step("env_var", "region", json!({"name": "REGION"})),
        step("env_var", "home", json!({"name": "HOME"})),
        step("random", "random", json!({"len": 32})),
        {"op": "wasi_time"}
    ]}));
    config
        .plugin
        .env
        .insert("REGION".into(), "cn-hangzhou".into());
    config.start_time_unix_ms = 1_700_000_000_000;
    let envoy = start(config);
    let startup = envoy.startup();
    assert!(
        startup
            .logs
            .iter()
            .any(|l| l.level == LogLevel::Info && l.message == "to stdout"),
        "{:#?}",
        startup.logs
    );
    assert!(
        startup
            .logs
            .iter()
            .any(|l| l.level == LogLevel::Error && l.message == "to stderr"),
        "{:#?}",
        startup.logs
    );
    assert_eq!(result(startup, "region"), r#"region: value="cn-hangzhou""#);
    assert_eq!(
        result(startup, "home"),
        "home: missing",
        "only the configured variables"
    );
    assert_eq!(
        result(startup, "random"),
        "random: errno=0 len=32 nonzero=true"
    );
    assert_eq!(
        result(startup, "wasi_time"),
        "wasi_time: ns=1700000000000000000"
    );
}

#[test]
fn hostcall_counts_are_reported_per_exchange() {
    let mut envoy = probe(json!({"http": {"request_headers": {"steps": [
        {"op": "get_header", "map": "request_headers", "key": ":path"},
        {"op": "get_header", "map": "request_headers", "key": ":method"}
    ]}}}));
    let outcome = exchange(&mut envoy, get("/"), ok_upstream());
    assert_eq!(
        outcome.hostcalls.get("proxy_get_header_map_value"),
        Some(&2)
    );
    assert!(outcome.hostcalls.get("proxy_log").is_some_and(|n| *n >= 2));
}

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

#[test]
fn grpc_close_and_cancel_on_a_live_stream() {
    let clusters = vec![ClusterSpec {
        name: "grpc-svc".into(),
        http: vec![],
        grpc: vec![GrpcCalloutAnswer {
            delay_ms: 1000,
            messages: vec!["m".into()],
            ..GrpcCalloutAnswer::default()
        }],
        refuse_connections: false,
    }];
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
