//! Unit tests of the format and the checks on hand-made outcomes (no VM).

use super::expect::check;
use super::format::{Expect, parse};
use super::report::{Detail, Failure};
use crate::model::{
    ByteString, CalloutResult, DownstreamResponse, Headers, HttpCallRecord, HttpMessage, LogEntry,
    LogLevel, MetricKind, MetricSnapshot, Outcome, StreamEnd, TrapReport,
};

fn outcome() -> Outcome {
    Outcome {
        context_id: 2,
        upstream_request: Some(HttpMessage {
            headers: Headers::from_pairs([(":path", "/a"), ("x-req", "1")]),
            body: ByteString::from("req-body"),
            trailers: None,
        }),
        response: Some(DownstreamResponse {
            status: 200,
            message: HttpMessage {
                headers: Headers::from_pairs([(":status", "200"), ("x-resp", "r")]),
                body: ByteString::from("hello world"),
                trailers: Some(Headers::from_pairs([("x-t", "t")])),
            },
            reset: false,
        }),
        logs: vec![
            LogEntry {
                level: LogLevel::Info,
                message: "first line".into(),
                context_id: 2,
            },
            LogEntry {
                level: LogLevel::Warn,
                message: "second line".into(),
                context_id: 2,
            },
        ],
        metrics: vec![MetricSnapshot {
            name: "requests".into(),
            kind: MetricKind::Counter,
            value: 3,
            samples: vec![],
        }],
        http_calls: vec![HttpCallRecord {
            token: 1,
            context_id: 2,
            cluster: "auth".into(),
            headers: Headers::from_pairs([(":path", "/check")]),
            body: ByteString::default(),
            trailers: Headers::new(),
            timeout_ms: 100,
            result: CalloutResult::Answered { status: 200 },
        }],
        hostcalls: [("proxy_log".into(), 2u64)].into_iter().collect(),
        ..Outcome::default()
    }
}

fn failures(expect_yaml: &str, outcome: &Outcome) -> Vec<Failure> {
    let expect: Expect = serde_yaml_ng::from_str(expect_yaml).expect("valid expectations");
    let mut found = Vec::new();
    check("step 1", &expect, outcome, &mut found);
    found
}

fn whats(found: &[Failure]) -> Vec<String> {
    found.iter().map(|f| f.what.clone()).collect()
}

#[test]
fn matching_expectations_pass() {
    let found = failures(
        r#"
upstream_request: {headers: {":path": /a, X-Req: "1"}, headers_absent: [x-no], body: req-body}
response:
  status: 200
  headers: {x-resp: r}
  headers_present: [":status"]
  body: [hello, " world"]
  body_contains: world
  trailers: {x-t: t}
local_reply: none
logs: [first, {equals: second line, level: warn}]
logs_in_order: [first, second]
logs_absent: [third]
metrics: {requests: 3, wasmcustom.requests: 3}
http_calls: [{cluster: auth, headers: {":path": /check}, timeout_ms: 100, result: answered}]
grpc_calls: []
trap: none
end: completed
hostcalls: {proxy_log: 2, proxy_http_call: 0}
"#,
        &outcome(),
    );
    assert_eq!(found, vec![]);
}

#[test]
fn every_kind_of_mismatch_is_reported_with_both_sides() {
    let found = failures(
        r#"
upstream_request: none
response: {status: 201, headers: {x-resp: other, x-missing: m}, headers_absent: [x-resp], body: nope}
local_reply: {status: 403}
logs: [{contains: first, level: error}]
logs_in_order: [second, first]
logs_absent: [first]
metrics: {requests: 4, absent_metric: 1}
http_calls: [{cluster: other, result: failed}]
trap: boom
end: reset
hostcalls: {proxy_log: 3}
"#,
        &outcome(),
    );
    assert_eq!(
        whats(&found),
        vec![
            "upstream request",
            "response status",
            "response header x-resp",
            "response header x-missing",
            "response header x-resp",
            "response body",
            "local reply",
            "log",
            "logs in order, item 2",
            "log absent",
            "metric absent_metric",
            "metric requests",
            "http_call 1 cluster",
            "http_call 1 result",
            "trap",
            "stream end",
            "calls of proxy_log",
        ]
    );
    assert_eq!(
        found[1].detail,
        Detail::Mismatch {
            expected: "201".into(),
            actual: "200".into()
        }
    );
    assert_eq!(
        found[2].detail,
        Detail::Mismatch {
            expected: r#""other""#.into(),
            actual: r#""r""#.into()
        }
    );
    let printed = found[2].to_string();
    assert_eq!(
        printed,
        "step 1: response header x-resp\n  expected: \"other\"\n  actual:   \"r\""
    );
    assert!(
        matches!(&found[3].detail, Detail::Mismatch { actual, .. } if actual.starts_with("absent (have: :status, x-resp"))
    );
}

#[test]
fn an_unexpected_trap_fails_and_an_expected_one_must_match() {
    let mut trapped = outcome();
    trapped.trap = Some(TrapReport {
        callback: "proxy_on_request_headers".into(),
        context_id: 2,
        trap: "wasm trap: unreachable".into(),
        panic_message: Some("panicked at src/lib.rs: boom".into()),
    });
    let found = failures("{}", &trapped);
    assert_eq!(whats(&found), vec!["trap"]);
    assert!(
        matches!(&found[0].detail, Detail::Mismatch { actual, .. } if actual.contains("boom") && actual.contains("proxy_on_request_headers"))
    );
    assert_eq!(failures("trap: boom", &trapped), vec![]);
    assert_eq!(failures("trap: unreachable", &trapped), vec![]);
    assert_eq!(whats(&failures("trap: other", &trapped)), vec!["trap"]);
    let stalled = Outcome {
        end: StreamEnd::Stalled {
            reason: "paused".into(),
        },
        ..outcome()
    };
    assert_eq!(failures("end: stalled", &stalled), vec![]);
}

#[test]
fn http_call_count_mismatch_is_reported() {
    let found = failures("http_calls: []", &outcome());
    assert_eq!(whats(&found), vec!["number of http_calls"]);
}

#[test]
fn the_scenario_format_parses_both_forms() {
    let scenario = parse(
        r#"
plugin:
  module: m.wasm
  config: {name: x}
  env: {A: b}
properties: {source.port: 80, xds.route_name: r, connection.mtls: true}
clusters: [{name: auth, http: [{status: 503, delay_ms: 5}, {failure: timeout}]}]
host: {buffer_limit_bytes: 10, route_timeout_ms: 250}
cases:
  - name: short
    request: POST /x
    upstream: {status: 500, body: [a, b]}
    expect: {response: {status: 500}}
  - name: long
    plugin: {config: "raw text", fail_open: true}
    steps:
      - advance_ms: 10
      - {name: req, request: {method: GET, path: /y, headers: [[a, "1"], [a, "2"]], trailers: {t: v}}}
  - name: fails
    configure_fails: bad
"#,
        "s.yaml",
    )
    .expect("valid");
    assert_eq!(scenario.cases.len(), 3);
    let short = scenario.cases[0].effective_steps();
    assert_eq!(short.len(), 1);
    let request = &short[0].request.as_ref().expect("request").0;
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/x")
    );
    let long = &scenario.cases[1];
    let merged = scenario.plugin.merged(&long.plugin);
    assert_eq!(merged.module.as_deref(), Some("m.wasm"));
    assert_eq!(merged.config.map(|c| c.to_text()), Some("raw text".into()));
    assert_eq!(merged.fail_open, Some(true));
    let config = super::harness_config(&scenario, long, &scenario.plugin.merged(&long.plugin));
    assert_eq!(config.buffer_limit_bytes, 10);
    assert_eq!(config.route_timeout_ms, 250);
    assert_eq!(config.plugin.env.get("A").map(String::as_str), Some("b"));
    assert_eq!(config.clusters[0].http.len(), 2);
    let steps = long.effective_steps();
    assert_eq!(steps[0].advance_ms, Some(10));
    let headers = &steps[1].request.as_ref().expect("request").0.headers;
    assert_eq!(headers.get_all("a").count(), 2);
}

#[test]
fn invalid_cases_are_explained() {
    let err = |text: &str| parse(text, "f.yaml").unwrap_err();
    assert!(err("plugin: {module: m}\ncases: []\n").contains("no cases"));
    assert!(err("plugin: {module: m}\ncases: [{name: a}]\n").contains("nothing to run"));
    assert!(
        err("plugin: {module: m}\ncases: [{name: a, expect: {}}]\n").contains("need a `request`")
    );
    assert!(
        err("plugin: {module: m}\ncases: [{name: a, steps: [{}]}]\n")
            .contains("needs one of `request`, `advance_ms`, `open`, `connect`, `send`, `respond`")
    );
    assert!(
        err("plugin: {module: m}\ncases: [{name: a, steps: [{request: /, advance_ms: 1}]}]\n")
            .contains("not both")
    );
    assert!(
        err("plugin: {module: m}\ncases: [{name: a, configure_fails: x, request: /}]\n")
            .contains("no traffic")
    );
    assert!(
        err(
            "plugin: {module: m}\ncases: [{name: a, request: /, expect: {logs: [{level: info}]}}]\n"
        )
        .contains("exactly one of")
    );
    assert!(
        err("plugin: {module: m}\ncases: [{name: a, request: /, expect: {end: finished}}]\n")
            .contains("finished")
    );
}

#[test]
fn module_paths_resolve_against_the_file_then_the_workspace() {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let found = super::resolve_module("Cargo.toml", &here.join("src")).expect("workspace root");
    assert_eq!(
        std::fs::canonicalize(found).ok(),
        std::fs::canonicalize(here.join("../Cargo.toml")).ok()
    );
    let local = super::resolve_module("lib.rs", &here.join("src")).expect("next to the file");
    assert_eq!(local, here.join("src/lib.rs"));
    let missing = super::resolve_module("target/x/none.wasm", here).unwrap_err();
    assert!(
        missing.contains("not found") && missing.contains("cargo build --target wasm32-wasip1"),
        "{missing}"
    );
}

#[test]
fn the_documented_example_parses() {
    let doc = include_str!("../../SCENARIOS.md");
    let start = doc
        .find("```yaml\n")
        .expect("SCENARIOS.md has a yaml example")
        + "```yaml\n".len();
    let end = start + doc[start..].find("```").expect("closed block");
    let scenario =
        parse(&doc[start..end], "SCENARIOS.md").expect("the documented example is valid");
    assert_eq!(scenario.cases.len(), 5);
}

#[test]
fn the_remaining_checks_fail_too() {
    use crate::model::{GrpcCallRecord, LocalReply};
    let mut o = outcome();
    o.local_reply = Some(LocalReply {
        status: 403,
        body: ByteString::from("denied"),
        headers: Headers::from_pairs([("x-why", "policy")]),
        details: "probe_denied".into(),
        grpc_status: None,
        source: "filter".into(),
    });
    o.grpc_calls = vec![GrpcCallRecord {
        token: 1,
        context_id: 1,
        cluster: "g".into(),
        service: "s".into(),
        method: "m".into(),
        initial_metadata: Headers::from_pairs([("x-md", "1")]),
        messages: vec![ByteString::from("hi")],
        timeout_ms: 0,
        streaming: true,
        result: CalloutResult::Cancelled,
    }];
    let found = failures(
        r#"
response: {headers_present: [x-nope], body_contains: absent-text, trailers: {x-t: other}}
upstream_request: {status: 200}
local_reply: {body: other, body_contains: zzz, headers: {x-why: other}, details: d, grpc_status: 3, source: harness}
grpc_calls: [{cluster: h, service: t, method: n, metadata: {x-md: "2"}, messages: [bye], streaming: false, result: answered}]
"#,
        &o,
    );
    assert_eq!(
        whats(&found),
        vec![
            "upstream request status",
            "response header x-nope",
            "response body",
            "response trailer x-t",
            "local reply body",
            "local reply body",
            "local reply header x-why",
            "local reply details",
            "local reply grpc_status",
            "local reply source",
            "grpc_call 1 cluster",
            "grpc_call 1 service",
            "grpc_call 1 method",
            "grpc_call 1 metadata x-md",
            "grpc_call 1 messages",
            "grpc_call 1 streaming",
            "grpc_call 1 result",
        ]
    );
    let passing = failures(
        r#"
local_reply: {status: 403, body: denied, body_contains: deni, headers: {x-why: policy}, details: probe_denied, source: filter}
grpc_calls: [{cluster: g, service: s, method: m, metadata: {x-md: "1"}, messages: [hi], streaming: true, result: cancelled}]
"#,
        &o,
    );
    assert_eq!(passing, vec![]);
}
