//! Filter chains: several plugins on one stream, request callbacks in
//! chain order, response callbacks in reverse, and Envoy's local-reply
//! rules (later filters never see the request; the reply passes through
//! the response path of the filters that saw it).

use std::process::Command;
use std::sync::OnceLock;

use harness::{
    CompiledModule, Envoy, EnvoyOutcome, Exchange, FilterModule, HarnessConfig, PluginConfig,
    TraceEvent,
};
use serde_json::{Value, json};

use crate::support::{
    callbacks, get, info, module, ok_upstream, probe_config, probe_module, wasm_dir, workspace_root,
};

/// One VM per filter: each plugin has its own vm_id (the same module with
/// the same vm_id would share one VM, see `plugins_with_one_vm_key_share_a_vm`).
fn chain(scripts: &[Value]) -> Envoy {
    let plugins: Vec<_> = scripts
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut config = probe_config(s.clone());
            config.plugin.vm_id = format!("vm-{i}");
            (FilterModule::from(probe_module()), config)
        })
        .collect();
    Envoy::builder()
        .plugins(&plugins)
        .build()
        .unwrap_or_else(|e| panic!("start-up failed: {e}"))
}

fn send(chain: &mut Envoy, path: &str) -> EnvoyOutcome {
    chain
        .exchange(&Exchange {
            request: get(path),
            upstream: ok_upstream(),
            properties: Default::default(),
        })
        .expect("exchange")
}

fn line(outcome: &harness::Outcome, prefix: &str) -> String {
    info(outcome)
        .into_iter()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` line in {:?}", info(outcome)))
}

fn step(op: &str, label: &str, mut fields: Value) -> Value {
    fields["op"] = json!(op);
    fields["label"] = json!(label);
    fields
}

#[test]
fn requests_flow_in_chain_order_and_responses_in_reverse() {
    // Each filter writes a header the other one then reads: what a filter
    // sees proves who ran before it, in each direction.
    let first = json!({"trace": true, "http": {
        "request_headers": {"steps": [
            step("add_header", "add", json!({"map": "request_headers", "key": "x-first", "value": "1"})),
            step("get_header", "sees second", json!({"map": "request_headers", "key": "x-second"}))]},
        "response_headers": {"steps": [
            step("get_header", "sees second", json!({"map": "response_headers", "key": "x-second-resp"}))]}
    }});
    let second = json!({"trace": true, "http": {
        "request_headers": {"steps": [
            step("get_header", "sees first", json!({"map": "request_headers", "key": "x-first"})),
            step("add_header", "add", json!({"map": "request_headers", "key": "x-second", "value": "2"}))]},
        "response_headers": {"steps": [
            step("add_header", "add", json!({"map": "response_headers", "key": "x-second-resp", "value": "2"})),
            step("get_header", "sees first", json!({"map": "response_headers", "key": "x-second-resp"}))]}
    }});
    let mut chain = chain(&[first, second]);
    let out = send(&mut chain, "/");
    let [a, b] = [&out.filters[0], &out.filters[1]];
    assert_eq!(
        line(a, "sees second"),
        "sees second: NOT_FOUND",
        "first runs before second on requests"
    );
    assert!(
        line(b, "sees first").starts_with("sees first: OK"),
        "{:?}",
        info(b)
    );
    let a_response_lines: Vec<String> = info(a)
        .into_iter()
        .filter(|l| l.starts_with("sees second"))
        .collect();
    assert_eq!(a_response_lines.len(), 2);
    assert!(
        a_response_lines[1].starts_with("sees second: OK"),
        "second runs before first on responses: {a_response_lines:?}"
    );
    let upstream = out
        .outcome
        .upstream_request
        .as_ref()
        .expect("reached the upstream");
    assert_eq!(upstream.headers.get_text("x-first").as_deref(), Some("1"));
    assert_eq!(upstream.headers.get_text("x-second").as_deref(), Some("2"));
    let response = out.outcome.response.as_ref().expect("response");
    assert_eq!(
        response
            .message
            .headers
            .get_text("x-second-resp")
            .as_deref(),
        Some("2")
    );
    // Each VM numbers its own contexts; both logged in chain order.
    for filter in &out.filters {
        let cbs = callbacks(filter);
        assert_eq!(
            cbs.first().map(String::as_str),
            Some("create_http_context ctx=2 root=1"),
            "{cbs:?}"
        );
        assert!(cbs.iter().any(|c| c.starts_with("log ctx=2")), "{cbs:?}");
    }
}

#[test]
fn a_local_reply_skips_later_filters_and_passes_back_through_earlier_ones() {
    let observer = |name: &str| {
        json!({"trace": true, "http": {"response_headers": {"steps": [
            step("get_header", &format!("{name} status"), json!({"map": "response_headers", "key": ":status"}))]}}})
    };
    let replier = json!({"trace": true, "http": {
        "request_headers": {"steps": [
            step("send_local_response", "reply", json!({"status": 403, "body": "no", "details": "blocked"}))]},
        "response_headers": {"steps": [
            step("get_header", "replier status", json!({"map": "response_headers", "key": ":status"}))]}
    }});
    let mut chain = chain(&[observer("first"), replier, observer("third")]);
    let out = send(&mut chain, "/");
    assert!(out.outcome.upstream_request.is_none());
    let reply = out.outcome.local_reply.as_ref().expect("local reply");
    assert_eq!((reply.status, reply.details.as_str()), (403, "blocked"));
    assert_eq!(out.outcome.response.as_ref().map(|r| r.status), Some(403));
    // The replier and the filter before it see the reply on their response path.
    assert!(line(&out.filters[1], "replier status").contains("403"));
    assert!(line(&out.filters[0], "first status").contains("403"));
    // The filter after it never sees the request nor the reply, but its
    // stream context is created for the access log.
    let third = callbacks(&out.filters[2]);
    assert!(
        !third
            .iter()
            .any(|c| c.starts_with("request_headers") || c.starts_with("response_headers")),
        "{third:?}"
    );
    assert_eq!(
        third
            .iter()
            .map(|c| c.split(' ').next().unwrap_or(""))
            .collect::<Vec<_>>(),
        vec!["create_http_context", "log", "done"],
        "{third:?}"
    );
}

#[test]
fn a_paused_filter_holds_the_rest_of_the_chain_until_it_continues() {
    // The first filter pauses request headers; its timer resumes the stream
    // 100 virtual ms later.
    let first = json!({"trace": true,
        "configure": [{"op": "set_tick_period", "ms": 100}],
        "http": {"request_headers": {"action": "pause", "steps": []}},
        "tick": [
            {"op": "set_effective_context", "id": 2},
            {"op": "continue_stream", "stream": "request"}
        ]
    });
    let second = json!({"trace": true, "http": {"request_headers": {"steps": [
        step("get_current_time", "second sees", json!({}))]}}});
    let mut chain = chain(&[first, second]);
    let out = send(&mut chain, "/");
    assert_eq!(out.outcome.end, harness::StreamEnd::Completed);
    assert!(out.outcome.upstream_request.is_some());
    assert_eq!(
        out.outcome.elapsed_ms, 100,
        "the stream waited for the tick"
    );
    let first_cbs = callbacks(&out.filters[0]);
    let tick = first_cbs
        .iter()
        .position(|c| c.starts_with("tick"))
        .expect("tick");
    let response = first_cbs
        .iter()
        .position(|c| c.starts_with("response_headers"))
        .expect("response");
    assert!(tick < response, "{first_cbs:?}");
    // The second filter saw the request only after the resume, at the same virtual time.
    assert!(
        callbacks(&out.filters[1])
            .iter()
            .any(|c| c.starts_with("request_headers"))
    );
    assert_eq!(chain.vms(0)[1].now_ms(), 100);
}

#[test]
fn a_pause_nothing_resumes_stalls_the_chain_before_the_next_filter() {
    let first = json!({"http": {"request_headers": {"action": "pause", "steps": []}}});
    let second = json!({"trace": true});
    let mut chain = chain(&[first, second]);
    let out = send(&mut chain, "/");
    assert!(
        matches!(out.outcome.end, harness::StreamEnd::Stalled { .. }),
        "{:?}",
        out.outcome.end
    );
    assert!(out.outcome.response.is_none());
    let second_cbs = callbacks(&out.filters[1]);
    assert!(
        !second_cbs.iter().any(|c| c.starts_with("request_headers")),
        "{second_cbs:?}"
    );
}

/// The example filters the chain tests and scenarios use besides
/// response-header (which support.rs builds), built once per process.
pub fn build_chain_filters() {
    static BUILT: OnceLock<bool> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        Command::new(cargo)
            .current_dir(workspace_root())
            .args(["build", "--target", "wasm32-wasip1", "--release", "--quiet"])
            .args(["-p", "request-block", "-p", "cors"])
            .status()
            .is_ok_and(|s| s.success())
    });
    assert!(
        built,
        "building request-block and cors for wasm32-wasip1 failed"
    );
}

fn example(file: &str, configuration: &str) -> (FilterModule, HarnessConfig) {
    let compiled = if file == "response_header.wasm" {
        module(file)
    } else {
        build_chain_filters();
        static COMPILED: OnceLock<CompiledModule> = OnceLock::new();
        COMPILED
            .get_or_init(|| CompiledModule::from_file(wasm_dir().join(file)).unwrap())
            .clone()
    };
    let config = HarnessConfig {
        plugin: PluginConfig {
            configuration: configuration.into(),
            ..PluginConfig::default()
        },
        ..HarnessConfig::default()
    };
    (compiled.into(), config)
}

fn guest_callbacks(outcome: &harness::Outcome) -> Vec<String> {
    outcome
        .trace
        .iter()
        .filter_map(|event| match event {
            TraceEvent::Callback { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn real_filters_request_block_then_response_header() {
    let plugins = [
        example(
            "request_block.wasm",
            r#"{"paths":[{"exact":"/secret"}],"status":403,"body":"blocked\n"}"#,
        ),
        example(
            "response_header.wasm",
            r#"{"name":"resp-header-demo","value":"added by our filter"}"#,
        ),
    ];
    let mut chain = Envoy::builder()
        .plugins(&plugins)
        .build()
        .expect("start-up");
    let blocked = send(&mut chain, "/secret");
    let reply = blocked.outcome.local_reply.as_ref().expect("local reply");
    assert_eq!(reply.status, 403);
    let response = blocked.outcome.response.as_ref().expect("response");
    assert!(
        response
            .message
            .headers
            .get_text("resp-header-demo")
            .is_none()
    );
    // request-block saw its own reply (headers, body) on its response path; response-header
    // only got the stream context the access log needs.
    assert_eq!(
        guest_callbacks(&blocked.filters[0]),
        [
            "proxy_on_context_create",
            "proxy_on_request_headers",
            "proxy_on_response_headers",
            "proxy_on_response_body",
            "proxy_on_log",
            "proxy_on_done",
            "proxy_on_delete"
        ]
    );
    assert_eq!(
        guest_callbacks(&blocked.filters[1]),
        [
            "proxy_on_context_create",
            "proxy_on_log",
            "proxy_on_done",
            "proxy_on_delete"
        ]
    );
    let allowed = send(&mut chain, "/details/1");
    let response = allowed.outcome.response.as_ref().expect("response");
    assert_eq!(
        response
            .message
            .headers
            .get_text("resp-header-demo")
            .as_deref(),
        Some("added by our filter")
    );
    assert!(allowed.outcome.upstream_request.is_some());
}
