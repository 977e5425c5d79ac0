//! `harness serve -c envoy.yaml` on real sockets: an Envoy static
//! bootstrap with two listeners, chained wasm filters, routes to two
//! python3 clusters and a direct_response, an http_call to a cluster
//! from the file; and files serve refuses before it listens.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::serve::{Served, curl, module, python_server, spawn_serve};
use crate::support::workspace_root;

/// A bootstrap file of this test process, removed when dropped.
pub(crate) struct TempFile(PathBuf);

impl TempFile {
    pub(crate) fn new(extension: &str, text: &str) -> TempFile {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "harness-serve-bootstrap-{}-{n}.{extension}",
            std::process::id()
        ));
        std::fs::write(&path, text).expect("the temp dir is writable");
        TempFile(path)
    }

    pub(crate) fn path(&self) -> &std::path::Path {
        &self.0
    }

    fn arg(&self) -> String {
        self.0.to_string_lossy().into_owned()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `harness serve -c file` until its `count` listeners are up.
pub(crate) fn serve_file(file: &TempFile, count: usize) -> Served {
    spawn_serve(&["-c", &file.arg(), "--concurrency", "2"], count)
}

impl Served {
    fn url(&self, listener: &str, path: &str) -> String {
        format!("http://{}{path}", self.listeners[listener])
    }
}

/// `harness serve --config-path file` (Envoy's long flag), expected to
/// fail; its stderr.
fn refused(file: &TempFile) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["serve", "--config-path", &file.arg()])
        .current_dir(workspace_root())
        .output()
        .expect("harness serve runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "serve should refuse the file:\n{stderr}"
    );
    stderr
}

pub(crate) fn cluster(name: &str, port: u16) -> String {
    format!(
        "
  - name: {name}
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{ address: 127.0.0.1, port_value: {port} }}"
    )
}

/// A wasm http filter entry (indented for `http_filters`).
fn wasm_filter(name: &str, file: &str, vm_id: &str, configuration: &str) -> String {
    let configuration = serde_json::to_string(configuration).unwrap();
    format!(
        r#"
          - name: {name}
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: {name}
                vm_config:
                  vm_id: {vm_id}
                  runtime: envoy.wasm.runtime.v8
                  code: {{ local: {{ filename: {file} }} }}
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: {configuration}"#
    )
}

/// A listener on a free port: `filters` then the router, `routes` as
/// the one virtual host's route list.
fn listener(name: &str, port: u16, filters: &str, routes: &str) -> String {
    format!(
        r#"
  - name: {name}
    address:
      socket_address: {{ address: 127.0.0.1, port_value: {port} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {name}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:{routes}
          http_filters:{filters}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"#
    )
}

pub(crate) fn bootstrap(listeners: &[String], clusters: &[String]) -> String {
    format!(
        "admin:\n  address:\n    socket_address: {{ address: 127.0.0.1, port_value: 0 }}\n\
         static_resources:\n  listeners:{}\n  clusters:{}\n",
        listeners.concat(),
        clusters.concat()
    )
}

const FRONT_ROUTES: &str = r#"
              - match: { path: /hello }
                direct_response: { status: 200, body: { inline_string: "hi from envoy.yaml" } }
              - match:
                  prefix: /
                  headers: [{ name: x-pick, string_match: { exact: web } }]
                route: { cluster: web }
              - match: { safe_regex: { regex: "/v[0-9]+/.*" } }
                route: { cluster: web }
              - match: { prefix: /api }
                route: { cluster: api, timeout: 5s }
              - match: { prefix: /web }
                route: { cluster: web }
              - match: { prefix: /slow }
                route: { cluster: slow, timeout: 0.3s }"#;

#[test]
fn an_envoy_yaml_serves_two_listeners_chains_routes_and_a_callout_to_its_cluster() {
    let (_api, api) = python_server(0.0, "from api");
    let (_web, web) = python_server(0.0, "from web");
    let (_auth, auth) = python_server(0.0, "auth says yes");
    let (_slow, slow) = python_server(3.0, "too late");
    let header = module("response_header.wasm");
    let probe = module("test_filter_probe.wasm");
    // Two filters with the same code and vm_id: one VM, two root contexts.
    let front_filters = [
        wasm_filter(
            "first",
            &header,
            "headers",
            r#"{"name": "x-first", "value": "one"}"#,
        ),
        wasm_filter(
            "second",
            &header,
            "headers",
            r#"{"name": "x-second", "value": "two"}"#,
        ),
    ]
    .concat();
    let calling = json!({"http": {
        "request_headers": {"action": "pause", "steps": [{
            "op": "http_call", "cluster": "auth", "timeout_ms": 5000,
            "headers": [[":method", "GET"], [":path", "/check"], [":authority", "auth"]]
        }]},
        "callouts": {"http_call_response": [
            {"op": "get_buffer", "buffer": "http_call_response_body"},
            {"op": "continue_stream", "stream": "request"}
        ]}
    }})
    .to_string();
    let calls_routes =
        "\n              - match: { prefix: / }\n                route: { cluster: api }";
    let file = TempFile::new(
        "yaml",
        &bootstrap(
            &[
                listener("front", 0, &front_filters, FRONT_ROUTES),
                listener(
                    "calls",
                    0,
                    &wasm_filter("caller", &probe, "probe", &calling),
                    calls_routes,
                ),
            ],
            &[
                cluster("api", api),
                cluster("web", web),
                cluster("auth", auth),
                cluster("slow", slow),
            ],
        ),
    );
    let served = serve_file(&file, 2);

    for (path, extra, want) in [
        ("/api/users", &[][..], "from api"),
        ("/web/index.html", &[][..], "from web"),
        ("/v2/users", &[][..], "from web"),
        ("/api/users", &["-H", "x-pick: web"][..], "from web"),
        ("/hello", &[][..], "hi from envoy.yaml"),
    ] {
        let (status, head, body) = curl(extra, &served.url("front", path));
        assert_eq!(
            (status, body.as_str()),
            (200, want),
            "{path} {extra:?}\n{head}"
        );
        // Both filters of the chain ran on the way out, upstream answer or not.
        assert!(head.contains("x-first: one"), "{path}\n{head}");
        assert!(head.contains("x-second: two"), "{path}\n{head}");
    }
    let (status, head, _) = curl(&[], &served.url("front", "/elsewhere"));
    assert_eq!(status, 404, "no route matches: the router's 404\n{head}");
    // The router's own replies are local replies: no upstream service time.
    let (_, direct_head, _) = curl(&[], &served.url("front", "/hello"));
    for head in [&head, &direct_head] {
        assert!(!head.contains("x-envoy-upstream-service-time"), "{head}");
    }
    let started = Instant::now();
    let (status, head, body) = curl(&[], &served.url("front", "/slow"));
    assert_eq!((status, body.as_str()), (504, "upstream request timeout"));
    assert!(!head.contains("x-envoy-upstream-service-time"), "{head}");
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "the route's 0.3 s timeout, not the 3 s answer: {took:?}"
    );

    let (status, _, body) = curl(&[], &served.url("calls", "/"));
    assert_eq!((status, body.as_str()), (200, "from api"));
    let line = served.log_line_with("auth says yes");
    assert!(
        line.is_some(),
        "the probe read the auth cluster's answer:\n{:#?}",
        served.log.lock().unwrap()
    );
    let admin = served
        .admin
        .as_deref()
        .expect("the bootstrap's admin listens");
    assert_eq!(curl(&[], &format!("http://{admin}/ready")).0, 200);
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap().port()
}

#[test]
fn a_lua_filter_is_refused_with_its_place_in_the_file() {
    let header = module("response_header.wasm");
    let port = free_port();
    let wasm = json!({"name": "headers", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {"vm_config": {"code": {"local": {"filename": header}}},
                   "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                     "value": "{\"name\": \"x-a\", \"value\": \"b\"}"}}}});
    let lua = json!({"name": "envoy.filters.http.lua", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
        "default_source_code": {"inline_string": "function envoy_on_request(h) end"}}});
    let router = json!({"name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}});
    let file = json!({"static_resources": {"listeners": [{
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "in",
                "route_config": {"virtual_hosts": [{"name": "a", "domains": ["*"], "routes": []}]},
                "http_filters": [wasm, lua, router]}}]}]}]}});
    let file = TempFile::new("json", &file.to_string());
    let stderr = refused(&file);
    assert!(
        stderr.contains(
            "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[1]: \
             (envoy.filters.http.lua) is not served"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was started"), "{stderr}");
    assert!(!stderr.contains("listening on"), "{stderr}");
}

#[test]
fn a_broken_file_is_refused_before_any_listener_binds() {
    let header = module("response_header.wasm");
    let (first, second) = (free_port(), free_port());
    let filters = wasm_filter("h", &header, "h", r#"{"name": "x-a", "value": "b"}"#);
    let good = "\n              - match: { prefix: / }\n                route: { cluster: api }";
    let unknown =
        "\n              - match: { prefix: / }\n                route: { cluster: nowhere }";
    let cases = [
        (
            bootstrap(
                &[
                    listener("one", first, &filters, good),
                    listener("two", second, &filters, unknown),
                ],
                &[cluster("api", 9)],
            ),
            "static_resources.listeners[1].filter_chains[0].filters[0].typed_config.route_config\
             .virtual_hosts[0].routes[0].route.cluster: no cluster named 'nowhere'",
        ),
        (
            format!(
                "{}\n  - name: [unclosed",
                bootstrap(
                    &[listener("one", first, &filters, good)],
                    &[cluster("api", 9)]
                )
            ),
            "is not valid YAML or JSON",
        ),
        (
            // A plugin that does not configure (response-header needs a
            // header name) on the second listener: the first never binds.
            bootstrap(
                &[
                    listener("one", first, &filters, good),
                    listener(
                        "two",
                        second,
                        &wasm_filter("bad", &header, "bad", "{}"),
                        good,
                    ),
                ],
                &[cluster("api", 9)],
            ),
            "the plugin did not start (listener two)",
        ),
    ];
    for (text, error) in cases {
        let file = TempFile::new("yaml", &text);
        let stderr = refused(&file);
        assert!(stderr.contains(error), "{stderr}");
        assert!(!stderr.contains("listening on"), "{stderr}");
        for port in [first, second] {
            assert!(
                std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
                "port {port} stayed free"
            );
        }
    }
}

#[test]
fn the_connection_managers_stream_idle_timeout_answers_a_stream_nothing_moves() {
    // A filter paused on a 10 s callout to a cluster that answers after 5 s:
    // nothing moves the stream, so the 0.5 s stream_idle_timeout fires
    // first (ActiveStream::onIdleTimeout): 504 "stream timeout", since the
    // whole request had arrived.
    let (_api, api) = python_server(0.0, "from api");
    let (_auth, auth) = python_server(5.0, "late");
    let probe = module("test_filter_probe.wasm");
    let calling = json!({"http": {
        "request_headers": {"action": "pause", "steps": [{
            "op": "http_call", "cluster": "auth", "timeout_ms": 10_000,
            "headers": [[":method", "GET"], [":path", "/check"], [":authority", "auth"]]
        }]},
        "callouts": {"http_call_response": [{"op": "continue_stream", "stream": "request"}]}
    }})
    .to_string();
    let routes = "\n              - match: { prefix: / }\n                route: { cluster: api }";
    let idle = listener(
        "idle",
        0,
        &wasm_filter("caller", &probe, "probe", &calling),
        routes,
    )
    .replace(
        "stat_prefix: idle",
        "stat_prefix: idle\n          stream_idle_timeout: 0.5s",
    );
    let file = TempFile::new(
        "yaml",
        &bootstrap(&[idle], &[cluster("api", api), cluster("auth", auth)]),
    );
    let served = serve_file(&file, 1);
    let started = Instant::now();
    let (status, _, body) = curl(&[], &served.url("idle", "/"));
    assert_eq!((status, body.as_str()), (504, "stream timeout"));
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "the 0.5 s idle timeout, not the 5 s answer: {took:?}"
    );
}
