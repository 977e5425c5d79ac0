//! Properties as current Envoy serves them (`Context::findValue` /
//! `getProperty` / `setProperty` in source/extensions/common/wasm/context.cc,
//! the CEL wrappers in source/extensions/filters/common/expr/context.cc):
//! `xds.*` names, the plugin tokens, what a root context cannot see, filter
//! state that never shadows an attribute, joined repeated headers,
//! `response.code_details`, and paths whose segments hold dots.

use harness::{Headers, Outcome, PropertyValue, UpstreamResponse, property_key, scenario};
use serde_json::{Value, json};

use crate::support::{exchange, get, ok_upstream, probe, probe_config, request, result, start};

fn get_prop(label: &str, path: &[&str], decode: &str) -> Value {
    json!({"op": "get_property", "label": label, "path": path, "decode": decode})
}

fn set_prop(label: &str, path: &[&str], value: &str) -> Value {
    json!({"op": "set_property", "label": label, "path": path, "value": value})
}

fn warnings(outcome: &Outcome, about: &str) -> Vec<String> {
    outcome
        .logs
        .iter()
        .filter(|l| l.message.starts_with("[harness]") && l.message.contains(about))
        .map(|l| l.message.clone())
        .collect()
}

fn text(v: &str) -> PropertyValue {
    PropertyValue::String(v.into())
}

#[test]
fn xds_names_are_served_and_the_old_top_level_names_are_gone() {
    let mut config = probe_config(json!({"http": {"request_headers": {"steps": [
        get_prop("xds route", &["xds", "route_name"], "str"),
        get_prop("xds cluster", &["xds", "cluster_name"], "str"),
        get_prop("xds node id", &["xds", "node", "id"], "str"),
        get_prop("xds direction", &["xds", "listener_direction"], "i64"),
        get_prop("xds chain", &["xds", "filter_chain_name"], "str"),
        get_prop("xds unknown", &["xds", "no_such_field"], "str"),
        get_prop("old route", &["route_name"], "str"),
        get_prop("old route again", &["route_name"], "str"),
        get_prop("old node", &["node", "id"], "str"),
        get_prop("old direction", &["listener_direction"], "i64")
    ]}}}));
    config
        .properties
        .insert("xds.route_name".into(), text("r1"));
    config
        .properties
        .insert("xds.cluster_name".into(), text("backend"));
    config
        .properties
        .insert("xds.node.id".into(), text("sidecar~10.0.0.1"));
    config
        .properties
        .insert("xds.no_such_field".into(), text("x"));
    // A configuration still using an old name: Envoy would not serve it.
    config.properties.insert("route_name".into(), text("r1"));
    let mut envoy = start(config);
    let outcome = exchange(&mut envoy, get("/"), ok_upstream());
    assert_eq!(result(&outcome, "xds route"), r#"xds route: OK value="r1""#);
    assert_eq!(
        result(&outcome, "xds cluster"),
        r#"xds cluster: OK value="backend""#
    );
    assert_eq!(
        result(&outcome, "xds node id"),
        r#"xds node id: OK value="sidecar~10.0.0.1""#
    );
    assert_eq!(
        result(&outcome, "xds direction"),
        "xds direction: OK value=1"
    );
    assert_eq!(result(&outcome, "xds chain"), r#"xds chain: OK value="""#);
    assert_eq!(result(&outcome, "xds unknown"), "xds unknown: NOT_FOUND");
    assert_eq!(result(&outcome, "old route"), "old route: NOT_FOUND");
    assert_eq!(
        result(&outcome, "old route again"),
        "old route again: NOT_FOUND"
    );
    assert_eq!(result(&outcome, "old node"), "old node: NOT_FOUND");
    assert_eq!(
        result(&outcome, "old direction"),
        "old direction: NOT_FOUND"
    );
    let route = warnings(&outcome, "property `route_name`");
    assert_eq!(route.len(), 1, "one warning per name: {route:?}");
    assert!(route[0].contains("`xds.route_name`"), "{}", route[0]);
    assert_eq!(warnings(&outcome, "property `node`").len(), 1);
    assert_eq!(warnings(&outcome, "`xds.listener_direction`").len(), 1);
}

#[test]
fn plugin_tokens_and_connection_id_have_envoys_types() {
    let plugin = |label: &str| {
        vec![
            get_prop(&format!("{label} name"), &["plugin_name"], "str"),
            get_prop(&format!("{label} root"), &["plugin_root_id"], "str"),
            get_prop(&format!("{label} vm"), &["plugin_vm_id"], "str"),
            get_prop(&format!("{label} connection"), &["connection_id"], "u64"),
        ]
    };
    let mut config = probe_config(json!({
        "configure": plugin("root"),
        "http": {"request_headers": {"steps": plugin("stream")}}
    }));
    config.plugin.root_id = "r-id".into();
    config.plugin.vm_id = "vm-id".into();
    config
        .properties
        .insert("connection.id".into(), PropertyValue::Int(42));
    let mut envoy = start(config);
    let startup = envoy.startup().clone();
    let outcome = exchange(&mut envoy, get("/"), ok_upstream());
    for (label, run) in [("root", &startup), ("stream", &outcome)] {
        assert_eq!(
            result(run, &format!("{label} name")),
            format!(r#"{label} name: OK value="probe""#)
        );
        assert_eq!(
            result(run, &format!("{label} root")),
            format!(r#"{label} root: OK value="r-id""#)
        );
        assert_eq!(
            result(run, &format!("{label} vm")),
            format!(r#"{label} vm: OK value="vm-id""#)
        );
    }
    // Envoy's connection_id needs a connection: none in a root context.
    assert_eq!(
        result(&startup, "root connection"),
        "root connection: NOT_FOUND"
    );
    assert_eq!(
        result(&outcome, "stream connection"),
        "stream connection: OK value=42",
        "a uint64, 8 bytes little-endian"
    );
}

#[test]
fn a_root_context_has_no_stream_attributes() {
    let reads = |label: &str| {
        vec![
            get_prop(&format!("{label} path"), &["request", "path"], "str"),
            get_prop(&format!("{label} source"), &["source", "address"], "str"),
            get_prop(&format!("{label} mtls"), &["connection", "mtls"], "bool"),
            get_prop(&format!("{label} route"), &["xds", "route_name"], "str"),
            get_prop(
                &format!("{label} meta"),
                &["metadata", "filter_metadata", "lb", "k"],
                "str",
            ),
            get_prop(&format!("{label} node"), &["xds", "node", "id"], "str"),
            get_prop(&format!("{label} plugin"), &["plugin_name"], "str"),
        ]
    };
    let mut configure = reads("configure");
    configure.push(json!({"op": "set_tick_period", "ms": 1000}));
    let mut config = probe_config(json!({
        "configure": configure,
        "tick": reads("tick"),
        "http": {"request_headers": {"steps": reads("stream")}}
    }));
    config
        .properties
        .insert("xds.route_name".into(), text("r1"));
    config.properties.insert("xds.node.id".into(), text("n1"));
    config
        .properties
        .insert("metadata.filter_metadata.lb.k".into(), text("m"));
    let mut envoy = start(config);
    let startup = envoy.startup().clone();
    let ticked = envoy.advance(1000).expect("advance");
    let outcome = exchange(&mut envoy, get("/p"), ok_upstream());
    for (label, run) in [("configure", &startup), ("tick", &ticked)] {
        for what in ["path", "source", "mtls", "route", "meta"] {
            assert_eq!(
                result(run, &format!("{label} {what}")),
                format!("{label} {what}: NOT_FOUND"),
                "no stream info in a root context"
            );
        }
        assert_eq!(
            result(run, &format!("{label} node")),
            format!(r#"{label} node: OK value="n1""#)
        );
        assert_eq!(
            result(run, &format!("{label} plugin")),
            format!(r#"{label} plugin: OK value="probe""#)
        );
    }
    assert_eq!(
        result(&outcome, "stream path"),
        r#"stream path: OK value="/p""#
    );
    assert_eq!(
        result(&outcome, "stream source"),
        r#"stream source: OK value="10.0.0.1:54321""#
    );
    assert_eq!(
        result(&outcome, "stream mtls"),
        "stream mtls: OK value=false"
    );
    assert_eq!(
        result(&outcome, "stream route"),
        r#"stream route: OK value="r1""#
    );
    assert_eq!(
        result(&outcome, "stream meta"),
        r#"stream meta: OK value="m""#
    );
}

#[test]
fn filter_state_round_trips_by_its_top_level_name_and_never_shadows_attributes() {
    let mut envoy = probe(json!({"http": {
        "request_headers": {"steps": [
            set_prop("shadow", &["request", "path"], "/shadow"),
            get_prop("path", &["request", "path"], "str"),
            set_prop("set key", &["my_key"], "v1"),
            set_prop("set key again", &["my_key"], "v2"),
            get_prop("key", &["my_key"], "str"),
            get_prop("key below", &["my_key", "sub"], "str"),
            get_prop("as filter state", &["filter_state", "wasm.my_key"], "str"),
            set_prop("set deep", &["a", "b"], "deep"),
            get_prop("deep", &["a", "b"], "str")
        ]},
        "response_headers": {"steps": [get_prop("key later", &["my_key"], "str")]},
        "log": [get_prop("key in log", &["my_key"], "str")]
    }}));
    let outcome = exchange(&mut envoy, get("/real"), ok_upstream());
    assert_eq!(result(&outcome, "shadow"), "shadow: OK");
    assert_eq!(result(&outcome, "path"), r#"path: OK value="/real""#);
    assert_eq!(result(&outcome, "set key again"), "set key again: OK");
    assert_eq!(result(&outcome, "key"), r#"key: OK value="v2""#);
    assert_eq!(result(&outcome, "key below"), "key below: NOT_FOUND");
    assert_eq!(
        result(&outcome, "as filter state"),
        r#"as filter state: OK value="v2""#
    );
    assert_eq!(result(&outcome, "set deep"), "set deep: OK");
    assert_eq!(result(&outcome, "deep"), "deep: NOT_FOUND");
    assert_eq!(result(&outcome, "key later"), r#"key later: OK value="v2""#);
    assert_eq!(
        result(&outcome, "key in log"),
        r#"key in log: OK value="v2""#
    );
    let deep = warnings(&outcome, "cannot be read back");
    assert_eq!(deep.len(), 2, "the request.path and a.b sets: {deep:?}");
    assert!(deep.iter().any(|w| w.contains("`a.b`")), "{deep:?}");
}

#[test]
fn repeated_headers_read_as_one_comma_joined_value() {
    let mut envoy = probe(json!({"http": {
        "request_headers": {"steps": [
            get_prop("request x-a", &["request", "headers", "x-a"], "str"),
            get_prop("request map", &["request", "headers"], "pairs")
        ]},
        "response_headers": {"steps": [
            get_prop("response set-cookie", &["response", "headers", "set-cookie"], "str")
        ]}
    }}));
    let upstream = UpstreamResponse {
        status: 200,
        headers: Headers::from_pairs([("set-cookie", "a=1"), ("set-cookie", "b=2")]),
        ..UpstreamResponse::default()
    };
    let outcome = exchange(
        &mut envoy,
        request("GET /", &[("host", "h"), ("x-a", "1"), ("X-A", "2")]),
        upstream,
    );
    assert_eq!(
        result(&outcome, "request x-a"),
        r#"request x-a: OK value="1,2""#
    );
    assert!(
        result(&outcome, "request map").contains(r#""x-a"="1,2""#),
        "{}",
        result(&outcome, "request map")
    );
    assert_eq!(
        result(&outcome, "response set-cookie"),
        r#"response set-cookie: OK value="a=1,b=2""#
    );
}

#[test]
fn code_details_are_via_upstream_for_upstream_answers_and_the_reply_details_otherwise() {
    let details = [get_prop("details", &["response", "code_details"], "str")];
    let mut upstream = probe(json!({"http": {
        "request_headers": {"steps": details},
        "response_headers": {"steps": details},
        "log": details
    }}));
    let outcome = exchange(&mut upstream, get("/"), ok_upstream());
    let lines = crate::support::results(&outcome, "details");
    assert_eq!(
        lines,
        [
            "details: NOT_FOUND",
            r#"details: OK value="via_upstream""#,
            r#"details: OK value="via_upstream""#
        ],
        "nothing before the response; the router's via_upstream after"
    );

    let mut local = probe(json!({"http": {
        "request_headers": {"steps": [
            {"op": "send_local_response", "status": 403, "details": "denied_by_probe"}
        ]},
        "log": details
    }}));
    let outcome = exchange(&mut local, get("/"), ok_upstream());
    assert_eq!(
        result(&outcome, "details"),
        r#"details: OK value="denied_by_probe""#
    );
}

#[test]
fn paths_with_dotted_segments_come_from_the_list_form_and_the_library() {
    let file = "\
plugin: {module: probe.wasm}
properties:
  - {path: [metadata, filter_metadata, envoy.filters.http.lua, key], value: from-list}
  - {path: xds.route_name, value: dotted-in-list}
cases: [{name: a, request: GET /}]
";
    let parsed = scenario::parse(file, "list.yaml").expect("list form parses");
    let mut config = probe_config(json!({"http": {"request_headers": {"steps": [
        get_prop("lua", &["metadata", "filter_metadata", "envoy.filters.http.lua", "key"], "str"),
        get_prop("split", &["metadata", "filter_metadata", "envoy", "filters", "http", "lua", "key"], "str"),
        get_prop("route", &["xds", "route_name"], "str"),
        get_prop("lib", &["metadata", "filter_metadata", "envoy.lb", "canary"], "bool")
    ]}}}));
    config.properties = parsed.properties;
    let key =
        property_key(&["metadata", "filter_metadata", "envoy.lb", "canary"][..]).expect("key");
    config.properties.insert(key, PropertyValue::Bool(true));
    let mut envoy = start(config);
    let outcome = exchange(&mut envoy, get("/"), ok_upstream());
    assert_eq!(result(&outcome, "lua"), r#"lua: OK value="from-list""#);
    assert_eq!(result(&outcome, "split"), "split: NOT_FOUND");
    assert_eq!(
        result(&outcome, "route"),
        r#"route: OK value="dotted-in-list""#
    );
    assert_eq!(result(&outcome, "lib"), "lib: OK value=true");

    let bad = scenario::parse(
        &file.replace(
            "[metadata, filter_metadata, envoy.filters.http.lua, key]",
            "[lua.key]",
        ),
        "bad.yaml",
    )
    .expect_err("a one-segment path with a dot is ambiguous");
    assert!(
        bad.contains("bad.yaml") && bad.contains("cannot be told"),
        "{bad}"
    );
}
