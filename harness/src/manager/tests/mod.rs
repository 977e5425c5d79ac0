//! The filter manager driven by scripted VMs (no module compiled): the
//! order of callbacks Envoy makes, pauses and resumes, deferred actions,
//! local replies through a chain, interleaved streams on one VM, and the
//! failure policy. Every expected sequence is Envoy's (the harness README,
//! "Envoy behaviour reproduced", cites the sources): upstream answers
//! reach the filters with `:status` and the router's
//! x-envoy-upstream-service-time, so they count 2 headers. Tests Envoy
//! disagrees with are `#[ignore]`d with the reason.

mod lifecycle;
mod replies;
mod streams;

use crate::abi::{BufferType, MapType, StreamType};
use crate::backend::scripted::{Act, CallLog, ScriptedVm};
use crate::chain::Chain;
use crate::driver::Harness;
use crate::host::SharedHost;
use crate::model::{
    Body, ClusterSpec, DownstreamRequest, Exchange, HarnessConfig, Headers, HttpCalloutAnswer,
    HttpProtocol, Outcome, PluginConfig, UpstreamResponse,
};

const REQUEST: MapType = MapType::HttpRequestHeaders;
const RESPONSE: MapType = MapType::HttpResponseHeaders;

/// A filter's name in the call log, and its script.
type Script = (&'static str, fn(&mut ScriptedVm));

fn config(fail_open: bool) -> HarnessConfig {
    HarnessConfig {
        plugin: PluginConfig {
            fail_open,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A started VM named `name` in `log`, scripted by `script`.
fn filter(
    name: &'static str,
    log: &CallLog,
    config: &HarnessConfig,
    shared: &SharedHost,
    script: impl FnOnce(&mut ScriptedVm),
) -> Harness {
    let mut vm = ScriptedVm::new(name, config, shared, log);
    script(&mut vm);
    Harness::start(Box::new(vm)).expect("a scripted VM starts")
}

/// A chain of scripted filters (one VM each, one shared host), the start-up
/// calls already forgotten.
fn chain(log: &CallLog, filters: Vec<Script>) -> Chain {
    chain_with(log, &config(false), filters)
}

fn chain_with(log: &CallLog, config: &HarnessConfig, filters: Vec<Script>) -> Chain {
    let shared = SharedHost::new();
    let vms = filters
        .into_iter()
        .map(|(name, script)| filter(name, log, config, &shared, script))
        .collect();
    let chain = Chain::from_filters(vms).expect("a chain of scripted filters");
    log.clear();
    chain
}

fn request(method: &str, path: &str, chunks: &[&str], protocol: HttpProtocol) -> Exchange {
    Exchange {
        request: DownstreamRequest {
            method: method.to_string(),
            path: path.to_string(),
            body: Body(chunks.iter().map(|c| (*c).into()).collect()),
            protocol,
            ..Default::default()
        },
        upstream: answer(&[]),
        ..Default::default()
    }
}

fn get(path: &str) -> Exchange {
    request("GET", path, &[], HttpProtocol::Http11)
}

fn answer(chunks: &[&str]) -> UpstreamResponse {
    UpstreamResponse {
        body: Body(chunks.iter().map(|c| (*c).into()).collect()),
        ..Default::default()
    }
}

fn status(o: &Outcome) -> u16 {
    o.response.as_ref().map_or(0, |r| r.status)
}

fn upstream_body(o: &Outcome) -> Option<String> {
    o.upstream_request.as_ref().map(|m| m.body.to_text())
}

fn upstream_header(o: &Outcome, name: &str) -> Option<String> {
    o.upstream_request.as_ref()?.headers.get_text(name)
}

/// on_tick resumes stream context 2 (paused in its request headers).
fn resume_stream_2_on_tick(vm: &mut ScriptedVm) {
    vm.on("configure").then(Act::SetTick(10));
    vm.on("tick")
        .then(Act::SetEffectiveContext(2))
        .then(Act::GetHeader(REQUEST, ":path"))
        .then(Act::Continue(StreamType::HttpRequest))
        .then(Act::GetHeader(REQUEST, ":path"))
        .then(Act::SetTick(0));
}

/// Callouts to `auth` answered after `delays` ms, with bodies answer-1, answer-2, ...
fn auth_cluster(delays: &[u64]) -> HarnessConfig {
    let http = delays
        .iter()
        .enumerate()
        .map(|(i, &delay_ms)| HttpCalloutAnswer {
            status: 200,
            body: Body::single(format!("answer-{}", i + 1)),
            delay_ms,
            ..Default::default()
        })
        .collect();
    HarnessConfig {
        clusters: vec![ClusterSpec {
            name: "auth".to_string(),
            http,
            ..ClusterSpec::default()
        }],
        ..config(false)
    }
}

/// Every stream pauses its request headers on a callout; the answer,
/// delivered to the root context, is copied into the caller's `x-answer`
/// request header (still reachable: the headers are paused), and the
/// caller continues.
fn calls_out(vm: &mut ScriptedVm) {
    vm.on("request_headers")
        .then(Act::HttpCall { cluster: "auth" })
        .pause();
    vm.on("http_call_response")
        .then(Act::ToCaller)
        .then(Act::BodyToHeader(
            BufferType::HttpCallResponseBody,
            REQUEST,
            "x-answer",
        ))
        .then(Act::Continue(StreamType::HttpRequest));
}
