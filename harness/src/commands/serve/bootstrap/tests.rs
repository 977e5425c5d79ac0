//! The bootstrap reader on its own: what each shape becomes, which
//! fields warn, and what is refused with which path.

use super::node::Notes;
use super::parse;
use crate::commands::serve::plan::{ListenerKind, Plan};
use crate::commands::serve::routes::Action;

/// A module small enough to compile in a unit test (WAT, inline): what
/// the loader checks for a Proxy-Wasm filter, and nothing more.
const CODE: &str = "code: { local: { inline_string: '(module (memory (export \"memory\") 1) \
    (func (export \"proxy_abi_version_0_2_1\")) \
    (func (export \"proxy_on_context_create\") (param i32 i32)) \
    (func (export \"proxy_on_memory_allocate\") (param i32) (result i32) i32.const 0))' } }";

/// One listener with these HTTP filters (YAML list items, 6 spaces in),
/// routes to cluster `api` and extra top-level text.
fn file(filters: &str, extra: &str) -> String {
    format!(
        r#"
static_resources:
  listeners:
  - name: in
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 10000 }} }}
    filter_chains:
    - filters:
      - name: hcm
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: in
          route_config:
            virtual_hosts:
            - domains: ["*"]
              routes:
              - match: {{ prefix: / }}
                route: {{ cluster: api, timeout: 0.25s }}
          http_filters:
{filters}
          - name: envoy.filters.http.router
  clusters:
  - name: api
    type: STRICT_DNS
    load_assignment:
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: localhost, port_value: 8080 }} }} }}
        - endpoint: {{ address: {{ socket_address: {{ address: localhost, port_value: 8081 }} }} }}
{extra}"#
    )
}

fn wasm(name: &str, config: &str) -> String {
    format!(
        r#"          - name: {name}
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config: {config}"#
    )
}

fn parsed(text: &str) -> (Result<Plan, String>, Vec<String>) {
    let mut notes = Notes::default();
    let plan = parse(text, &mut notes);
    (plan, notes.warnings)
}

fn error_of(text: &str) -> String {
    match parsed(text).0 {
        Ok(_) => panic!("the file should be refused"),
        Err(e) => e,
    }
}

#[test]
fn a_wasm_filter_becomes_a_plugin_with_its_settings() {
    let config = format!(
        r#"{{ name: auth, root_id: r1, failure_policy: FAIL_OPEN,
              vm_config: {{ vm_id: v1, runtime: envoy.wasm.runtime.wasmtime, {CODE},
                           environment_variables: {{ key_values: {{ MODE: strict }} }} }},
              configuration: {{ "@type": type.googleapis.com/google.protobuf.Struct,
                               value: {{ limit: 3 }} }} }}"#
    );
    let (plan, warnings) = parsed(&file(&wasm("w", &config), ""));
    let plan = plan.unwrap();
    let (_, harness) = &plan.listeners[0].chain[0];
    let p = &harness.plugin;
    assert_eq!(
        (p.name.as_str(), p.root_id.as_str(), p.vm_id.as_str()),
        ("auth", "r1", "v1")
    );
    assert!(p.fail_open);
    assert_eq!(p.env.get("MODE").map(String::as_str), Some("strict"));
    assert_eq!(p.configuration.0, br#"{"limit":3}"#);
    // The route's cluster, its timeout; the first of two endpoints, said so.
    let ListenerKind::Http(routes) = &plan.listeners[0].kind else {
        panic!("an HTTP listener");
    };
    let Action::Forward(forward) = &routes.virtual_hosts[0].routes[0].action else {
        panic!("a forwarding route");
    };
    assert_eq!(forward.timeout_ms, 250);
    assert!(
        warnings.iter().any(|w| w.contains("has 2 endpoints")
            && w.contains("static_resources.clusters[0].load_assignment")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("Struct reaches the plugin as JSON"))
    );
    assert_eq!(plan.clusters[0].0, "api");
    assert_eq!(
        harness.stream_idle_timeout_ms,
        harness::DEFAULT_STREAM_IDLE_TIMEOUT_MS,
        "Envoy's 5 min when the connection manager sets none"
    );
}

#[test]
fn the_connection_managers_stream_idle_timeout_reaches_every_filter() {
    let filters = format!(
        "{}\n{}",
        wasm("a", &format!("{{ vm_config: {{ {CODE} }} }}")),
        wasm("b", &format!("{{ vm_config: {{ {CODE} }} }}"))
    );
    let text = file(&filters, "").replace(
        "stat_prefix: in",
        "stat_prefix: in\n          stream_idle_timeout: 2.5s",
    );
    let plan = parsed(&text).0.unwrap();
    let idle: Vec<u64> = plan.listeners[0]
        .chain
        .iter()
        .map(|(_, c)| c.stream_idle_timeout_ms)
        .collect();
    assert_eq!(idle, [2_500, 2_500]);
}

#[test]
fn typed_struct_wrapped_filters_share_code_and_string_values_pass_as_is() {
    let wrapped = |name: &str, value: &str| {
        format!(
            r#"          - name: {name}
            typed_config:
              "@type": type.googleapis.com/udpa.type.v1.TypedStruct
              type_url: type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              value:
                config:
                  vm_config: {{ {CODE} }}
                  configuration:
                    "@type": type.googleapis.com/google.protobuf.StringValue
                    value: '{value}'"#
        )
    };
    let filters = [wrapped("a", "{\"x\": 1}"), wrapped("b", "plain text")].join("\n");
    let plan = parsed(&file(&filters, "")).0.unwrap();
    let chain = &plan.listeners[0].chain;
    assert_eq!(chain[0].1.plugin.configuration.0, b"{\"x\": 1}");
    assert_eq!(chain[1].1.plugin.configuration.0, b"plain text");
    // No config.name: the filter's own name labels its log lines.
    assert_eq!(chain[1].1.plugin.name, "b");
    assert!(
        chain[0].0.same_module(&chain[1].0),
        "one code, compiled once"
    );
}

#[test]
fn unknown_fields_warn_with_their_path() {
    let config = format!("{{ vm_config: {{ {CODE}, colour: blue }} }}");
    let (plan, warnings) = parsed(&file(&wasm("w", &config), "  surprise: 1\n"));
    assert!(plan.is_ok());
    let expected = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config\
                    .http_filters[0].typed_config.config.vm_config.colour: unknown field";
    assert!(
        warnings.iter().any(|w| w.starts_with(expected)),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("static_resources.surprise: unknown field")),
        "{warnings:?}"
    );
}

#[test]
fn what_serve_cannot_run_is_refused_with_its_path() {
    let ok = wasm("w", &format!("{{ vm_config: {{ {CODE} }} }}"));
    let filters0 = "static_resources.listeners[0].filter_chains[0].filters[0]";
    let http = format!("{filters0}.typed_config.http_filters");
    let cases = [
        (
            file(&format!("{ok}\n          - name: envoy.filters.http.cors\n            typed_config: {{ \"@type\": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors }}"), ""),
            format!("{http}[1]: (envoy.filters.http.cors) is not served"),
        ),
        (
            file(&format!("          - name: envoy.filters.http.router\n{ok}"), ""),
            format!("{http}[0]: (envoy.filters.http.router) must be the last HTTP filter"),
        ),
        (
            file(&wasm("w", "{ vm_config: { code: { remote: { http_uri: { uri: x } } } } }"), ""),
            "code.remote downloads the module".to_string(),
        ),
        (
            file(&ok, "dynamic_resources: { lds_config: {} }\n"),
            "the top level: dynamic_resources (xDS) needs a control plane".to_string(),
        ),
        (
            file(&ok.replace("- name: w", "- name: w\n            disabled: true"), ""),
            format!("{http}[0]: (w) is disabled"),
        ),
        (
            file(&ok, "").replace("route: { cluster: api", "route: { cluster: other"),
            "route.cluster: no cluster named 'other'".to_string(),
        ),
        (
            file(&ok, "").replace("match: { prefix: / }", "match: { safe_regex: { regex: '(' } }"),
            "match.safe_regex.regex: '(' is not a regular expression".to_string(),
        ),
        (
            file(&ok, "").replace("match: { prefix: / }", "match: { grpc: {} }"),
            "match.grpc is not served yet".to_string(),
        ),
        (
            file(&ok, "").replace("STRICT_DNS", "STATIC"),
            "a STATIC cluster's address must be an IP address, not 'localhost'".to_string(),
        ),
        (
            file(&ok, "").replace("STRICT_DNS", "EDS"),
            "cluster 'api' has type EDS".to_string(),
        ),
        (
            file(&ok, "").replace(
                "typed_config:\n          \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "typed_config:\n          \"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
            ),
            format!("{filters0}.typed_config: give tcp_proxy a cluster"),
        ),
        (
            file(&wasm("w", "{ vm_config: { code: { local: { inline_string: 'not wasm' } } } }"), ""),
            "the module does not load".to_string(),
        ),
    ];
    for (text, expected) in cases {
        let error = error_of(&text);
        assert!(
            error.contains(&expected),
            "expected {expected:?} in:\n{error}"
        );
        assert!(
            !error.contains("Some(") && !error.contains("{ "),
            "Debug text: {error}"
        );
    }
}

#[test]
fn durations_take_protobuf_forms() {
    let value = |text: &str| serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text).unwrap();
    let ms = |text: &str| super::node::Node::root(&value(text)).duration_ms();
    assert_eq!(ms("15s"), Ok(15_000));
    assert_eq!(ms("0.25s"), Ok(250));
    assert_eq!(ms("{seconds: 2, nanos: 500000000}"), Ok(2_500));
    assert!(ms("15").is_err());
    assert!(ms("-1s").is_err());
}

#[test]
fn a_connection_manager_with_the_router_alone_serves_through_a_pass_through_position() {
    let (plan, _) = parsed(&file("", ""));
    let plan = plan.unwrap();
    let listener = &plan.listeners[0];
    assert!(listener.plugin_names().is_empty());
    assert_eq!(listener.chain.len(), 1);
    assert_eq!(listener.chain[0].0.backend_name(), "none");
    // Serve's own settings (held callouts for every cluster) reach it too.
    assert_eq!(listener.chain[0].1.clusters.len(), 1);
}

#[test]
fn the_committed_example_reads_cleanly() {
    let example = include_str!("../../../../examples/envoy.yaml").replace(
        "code: { local: { filename: target/wasm32-wasip1/release/response_header.wasm } }",
        CODE,
    );
    let (plan, warnings) = parsed(&example);
    let plan = plan.unwrap();
    let listener = &plan.listeners[0];
    assert_eq!(listener.plugin_names(), ["served-by", "demo-header"]);
    assert!(listener.chain[0].0.same_module(&listener.chain[1].0));
    assert_eq!(
        listener.chain[1].1.plugin.configuration.0,
        br#"{"name":"x-demo","value":"chained"}"#
    );
    assert_eq!(plan.admin.map(|a| a.port()), Some(9901));
    // Only the two notes the example means to show.
    assert_eq!(warnings.len(), 2, "{warnings:?}");
}
