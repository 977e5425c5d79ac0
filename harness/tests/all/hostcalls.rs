//! Every host function, with Envoy's status codes, as the guest sees them
//! (through test-filter-probe's result lines `<label>: <STATUS> ...`).

use harness::{Body, Headers, LogLevel, PropertyValue, UpstreamResponse};
use serde_json::{Value, json};

use crate::support::*;

pub(crate) fn step(op: &str, label: &str, mut fields: Value) -> Value {
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
