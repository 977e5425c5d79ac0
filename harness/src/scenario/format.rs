//! The scenario file format (YAML; JSON is valid YAML). See `harness/SCENARIOS.md`.
//!
//! Inputs reuse the harness data model (`DownstreamRequest`, `UpstreamResponse`,
//! `ClusterSpec`, `Properties`, `Headers`, `Body`) so a scenario describes
//! traffic exactly the way the library API does.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use crate::model::{
    Body, ByteString, ClusterSpec, DownstreamRequest, Headers, LogLevel, Properties,
    UpstreamResponse,
};

/// One scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// What the file is about (shown in reports).
    #[serde(default)]
    pub description: Option<String>,
    /// The plugin under test (or use `plugins`).
    #[serde(default)]
    pub plugin: PluginSpec,
    /// A filter chain instead of one plugin: several plugins on each
    /// stream, request callbacks in this order, response callbacks in
    /// reverse. Each entry is a full plugin (`module` required).
    #[serde(default)]
    pub plugins: Vec<PluginSpec>,
    /// Number of Envoy workers (default 1), each with its own VM per
    /// plugin; requests go round robin unless a step names a `worker`.
    #[serde(default)]
    pub workers: Option<usize>,
    /// Properties for every case: dotted paths (`xds.route_name`) or a
    /// list of `{path: [segments], value}`.
    #[serde(default, deserialize_with = "crate::model::deserialize_properties")]
    pub properties: Properties,
    /// Clusters reachable by http_call/gRPC, with scripted answers.
    #[serde(default)]
    pub clusters: Vec<ClusterSpec>,
    /// Host settings (virtual clock start, buffer limit).
    #[serde(default)]
    pub host: HostSpec,
    /// The cases; each runs on a fresh VM.
    pub cases: Vec<Case>,
}

/// The plugin: module and Envoy-style plugin settings. In a case, every
/// field is optional and overrides the file's value.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSpec {
    /// Path to the `.wasm`, relative to the scenario file's directory or,
    /// failing that, to the workspace root.
    #[serde(default)]
    pub module: Option<String>,
    /// Plugin name (`plugin_name` property).
    #[serde(default)]
    pub name: Option<String>,
    /// `root_id`.
    #[serde(default)]
    pub root_id: Option<String>,
    /// `vm_id` (scopes shared data and queues).
    #[serde(default)]
    pub vm_id: Option<String>,
    /// Plugin configuration: a YAML/JSON object or list (passed to the filter
    /// as JSON) or a string (passed as-is).
    #[serde(default, deserialize_with = "config_bytes")]
    pub config: Option<ByteString>,
    /// VM configuration, same forms as `config`.
    #[serde(default, deserialize_with = "config_bytes")]
    pub vm_config: Option<ByteString>,
    /// Let traffic through when the VM has failed (trap) instead of 503.
    #[serde(default)]
    pub fail_open: Option<bool>,
    /// Environment variables visible through WASI.
    #[serde(default)]
    pub env: Option<BTreeMap<String, String>>,
    /// What `proxy_get_log_level` reports; lower levels are dropped.
    #[serde(default)]
    pub log_level: Option<LogLevel>,
}

impl PluginSpec {
    /// `self` with every field `over` sets replaced.
    pub fn merged(&self, over: &PluginSpec) -> PluginSpec {
        PluginSpec {
            module: over.module.clone().or_else(|| self.module.clone()),
            name: over.name.clone().or_else(|| self.name.clone()),
            root_id: over.root_id.clone().or_else(|| self.root_id.clone()),
            vm_id: over.vm_id.clone().or_else(|| self.vm_id.clone()),
            config: over.config.clone().or_else(|| self.config.clone()),
            vm_config: over.vm_config.clone().or_else(|| self.vm_config.clone()),
            fail_open: over.fail_open.or(self.fail_open),
            env: over.env.clone().or_else(|| self.env.clone()),
            log_level: over.log_level.or(self.log_level),
        }
    }
}

/// Takes a config given as an object/list (serialized to JSON) or a string.
fn config_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ByteString>, D::Error> {
    let value = serde_yaml_ng::Value::deserialize(d)?;
    match value {
        serde_yaml_ng::Value::Null => Ok(None),
        serde_yaml_ng::Value::String(text) => Ok(Some(ByteString::from(text))),
        other => {
            let json: serde_json::Value = serde_yaml_ng::from_value(other).map_err(|e| {
                de::Error::custom(format!("config cannot be turned into JSON: {e}"))
            })?;
            Ok(Some(ByteString::from(json.to_string())))
        }
    }
}

/// Settings of the simulated Envoy itself.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    /// Virtual wall clock at start (ms since the Unix epoch).
    #[serde(default)]
    pub start_time_unix_ms: Option<u64>,
    /// Per-stream buffer limit (bytes); a paused body past it gets 413/500.
    #[serde(default)]
    pub buffer_limit_bytes: Option<u64>,
    /// The route's timeout (ms; 0: none; Envoy's default 15 s).
    #[serde(default)]
    pub route_timeout_ms: Option<u64>,
    /// The stream idle timeout (ms; 0: none; Envoy's default 5 min).
    #[serde(default)]
    pub stream_idle_timeout_ms: Option<u64>,
    /// Events one step may deliver before the VM keeping the loop busy fails.
    #[serde(default)]
    pub max_events_per_step: Option<u64>,
    /// Real milliseconds one step may take before that VM fails.
    #[serde(default)]
    pub step_wall_budget_ms: Option<u64>,
}

/// One case: a fresh VM, then its steps in order. The short form puts one
/// exchange (`request`, `upstream`, `expect`) directly in the case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Shown in reports; unique within the file.
    pub name: String,
    /// Overrides of the file's plugin settings for this case.
    #[serde(default)]
    pub plugin: PluginSpec,
    /// Extra properties for this case (merged over the file's).
    #[serde(default, deserialize_with = "crate::model::deserialize_properties")]
    pub properties: Properties,
    /// Replaces the file's clusters for this case.
    #[serde(default)]
    pub clusters: Option<Vec<ClusterSpec>>,
    /// Overrides the file's worker count for this case.
    #[serde(default)]
    pub workers: Option<usize>,
    /// Start-up is expected to fail: the error (including the filter's log
    /// lines) must contain this text. The case has no steps then.
    #[serde(default)]
    pub configure_fails: Option<String>,
    /// Expectations on what start-up (vm_start, configure) logged and defined.
    #[serde(default)]
    pub startup: Option<Expect>,
    /// Short form: the request of a single exchange.
    #[serde(default)]
    pub request: Option<RequestSpec>,
    /// Short form: the upstream's answer.
    #[serde(default)]
    pub upstream: Option<UpstreamResponse>,
    /// Short form: expectations on the single exchange.
    #[serde(default)]
    pub expect: Option<Expect>,
    /// Long form: exchanges and time advances on the same VM, in order.
    #[serde(default)]
    pub steps: Vec<Step>,
}

/// One step of a case: an exchange (`request`), a pause (`advance_ms`),
/// an action on a named stream (`open`, `send`, `respond`,
/// `upstream_send`, `reset`, `finish`) or a held callout's `answer`; see
/// [`super::steps::Action`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Label in reports (default: `step N`).
    #[serde(default)]
    pub name: Option<String>,
    /// Send this request (with `open`: the named stream's request).
    #[serde(default)]
    pub request: Option<RequestSpec>,
    /// Open a stream with this name and run it until it waits; later steps
    /// act on it while other streams come and go on the same VM.
    #[serde(default)]
    pub open: Option<String>,
    /// With `open`: the upstream does not answer until a `respond` step.
    #[serde(default)]
    pub hold_upstream: bool,
    /// Give the named stream (opened with `hold_upstream`) its `upstream` answer.
    #[serde(default)]
    pub respond: Option<String>,
    /// Run until the named stream ends; `expect` is checked on that stream.
    #[serde(default)]
    pub finish: Option<String>,
    /// The client sends more of the named stream's request: `body`
    /// chunks, `trailers` (which end it), `end_stream`.
    #[serde(default)]
    pub send: Option<String>,
    /// The upstream sends more of the named stream's response (after a
    /// `respond` with `end_stream: false`): `body`, `trailers`, `end_stream`.
    #[serde(default)]
    pub upstream_send: Option<String>,
    /// The client resets the named stream (or connection).
    #[serde(default)]
    pub reset: Option<String>,
    /// Open a TCP connection with this name through the plugins as
    /// network filters; `connection` describes it.
    #[serde(default)]
    pub connect: Option<String>,
    /// With `connect`: the client's and listener's addresses, SNI, mTLS,
    /// tcp_proxy's cluster.
    #[serde(default)]
    pub connection: Option<crate::model::ConnectionSpec>,
    /// With `send` / `upstream_send` on a connection: the bytes sent.
    #[serde(default)]
    pub data: Option<ByteString>,
    /// The upstream resets the named connection.
    #[serde(default)]
    pub upstream_reset: Option<String>,
    /// Answer a held callout (its cluster answer has `hold: true`).
    #[serde(default)]
    pub answer: Option<AnswerSpec>,
    /// With `open` / `respond` / `send` / `upstream_send`: false when more
    /// of that message follows in later steps (default true). On a
    /// connection: true sends that side's FIN after the data (default false).
    #[serde(default)]
    pub end_stream: Option<bool>,
    /// With `send` / `upstream_send`: body chunks.
    #[serde(default)]
    pub body: Option<Body>,
    /// With `send` / `upstream_send`: trailers, which end the message.
    #[serde(default)]
    pub trailers: Option<Headers>,
    /// The upstream's answer to it (default: 200, no headers, no body).
    #[serde(default)]
    pub upstream: Option<UpstreamResponse>,
    /// Properties for this exchange only.
    #[serde(default, deserialize_with = "crate::model::deserialize_properties")]
    pub properties: Properties,
    /// The worker (from 0) that takes this request; default round robin.
    #[serde(default)]
    pub worker: Option<usize>,
    /// Advance virtual time by this many ms with no stream: ticks fire,
    /// delayed callout answers and queue notifications are delivered.
    #[serde(default)]
    pub advance_ms: Option<u64>,
    /// Expectations on what this step produced.
    #[serde(default)]
    pub expect: Expect,
}

/// Which held callout an `answer` step answers, and with what.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerSpec {
    /// The cluster the callout went to.
    pub cluster: String,
    /// Which of the callouts to it still waiting, oldest first, from 1.
    #[serde(default = "first")]
    pub nth: usize,
    /// The answer; default: the cluster's scripted answer.
    #[serde(default)]
    pub response: Option<crate::model::HttpCalloutAnswer>,
}

fn first() -> usize {
    1
}

/// A request: `"GET /path"` or the full form.
#[derive(Debug, Clone)]
pub struct RequestSpec(pub DownstreamRequest);

impl<'de> Deserialize<'de> for RequestSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_yaml_ng::Value::deserialize(d)?;
        match value {
            serde_yaml_ng::Value::String(line) => DownstreamRequest::from_request_line(&line)
                .map(RequestSpec)
                .map_err(de::Error::custom),
            other => serde_yaml_ng::from_value(other)
                .map(RequestSpec)
                .map_err(|e| de::Error::custom(format!("request: {e}"))),
        }
    }
}

/// `none` (must not happen) or the checks to make on it.
#[derive(Debug, Clone)]
pub enum Presence<T> {
    /// Written `none`: the thing must not exist.
    Absent,
    /// It must exist and pass these checks.
    Present(T),
}

impl<'de, T: de::DeserializeOwned> Deserialize<'de> for Presence<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_yaml_ng::Value::deserialize(d)?;
        match &value {
            serde_yaml_ng::Value::String(s) if s == "none" => Ok(Presence::Absent),
            _ => serde_yaml_ng::from_value(value)
                .map(Presence::Present)
                .map_err(de::Error::custom),
        }
    }
}

/// Expectations on one step (or on start-up). Every field is optional; only
/// what is written is checked.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The request as the upstream received it, or `none` (never forwarded).
    #[serde(default)]
    pub upstream_request: Option<Presence<MessageExpect>>,
    /// The response the client received, or `none`.
    #[serde(default)]
    pub response: Option<Presence<MessageExpect>>,
    /// The local reply (filter's or harness's), or `none`.
    #[serde(default)]
    pub local_reply: Option<Presence<LocalReplyExpect>>,
    /// Log lines that must appear (each: text, or `{contains|equals, level}`).
    #[serde(default)]
    pub logs: Vec<LogExpect>,
    /// Log lines that must appear in this relative order.
    #[serde(default)]
    pub logs_in_order: Vec<LogExpect>,
    /// Text that no log line may contain.
    #[serde(default)]
    pub logs_absent: Vec<String>,
    /// Metric values after the step (`name: value`; histograms: sample count).
    #[serde(default)]
    pub metrics: BTreeMap<String, i64>,
    /// The http_calls made during the step: exactly these, in order.
    #[serde(default)]
    pub http_calls: Option<Vec<HttpCallExpect>>,
    /// The gRPC calls/streams opened during the step: exactly these, in order.
    #[serde(default)]
    pub grpc_calls: Option<Vec<GrpcCallExpect>>,
    /// A trap: `none`, or text its panic message / trap text must contain.
    /// Without this, any trap fails the case.
    #[serde(default)]
    pub trap: Option<Presence<String>>,
    /// How the stream ended: `completed`, `reset`, `stalled`.
    #[serde(default)]
    pub end: Option<EndExpect>,
    /// Host functions that must have been called exactly this many times.
    #[serde(default)]
    pub hostcalls: BTreeMap<String, u64>,
    /// The TCP connection the step acted on: bytes each side received,
    /// ends, cluster, who closed it.
    #[serde(default)]
    pub connection: Option<super::tcp::ConnectionExpect>,
}

/// Checks on an HTTP message (request or response).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageExpect {
    /// `:status` (responses only).
    #[serde(default)]
    pub status: Option<u16>,
    /// Headers whose first value must equal the given one.
    #[serde(default)]
    pub headers: Headers,
    /// Headers that must be present (any value).
    #[serde(default)]
    pub headers_present: Vec<String>,
    /// Headers that must be absent.
    #[serde(default)]
    pub headers_absent: Vec<String>,
    /// The whole body.
    #[serde(default)]
    pub body: Option<Body>,
    /// Text the body must contain.
    #[serde(default)]
    pub body_contains: Option<String>,
    /// Trailers whose first value must equal the given one.
    #[serde(default)]
    pub trailers: Headers,
}

/// Checks on a local reply.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalReplyExpect {
    /// HTTP status.
    #[serde(default)]
    pub status: Option<u16>,
    /// Exact body.
    #[serde(default)]
    pub body: Option<Body>,
    /// Text the body must contain.
    #[serde(default)]
    pub body_contains: Option<String>,
    /// Extra headers the filter passed (first value must equal).
    #[serde(default)]
    pub headers: Headers,
    /// `response.code_details`.
    #[serde(default)]
    pub details: Option<String>,
    /// gRPC status.
    #[serde(default)]
    pub grpc_status: Option<i32>,
    /// `filter` or `harness`.
    #[serde(default)]
    pub source: Option<String>,
}

/// One expected log line.
#[derive(Debug, Clone)]
pub struct LogExpect {
    /// Text to find.
    pub text: String,
    /// Whole message must equal `text` (else: contain it).
    pub exact: bool,
    /// Level the line must have (any when `None`).
    pub level: Option<LogLevel>,
}

impl fmt::Display for LogExpect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = if self.exact { "equal to" } else { "containing" };
        match self.level {
            Some(level) => {
                let article = if level == LogLevel::Info || level == LogLevel::Error {
                    "an"
                } else {
                    "a"
                };
                write!(f, "{article} {} line {how} {:?}", level.name(), self.text)
            }
            None => write!(f, "a line {how} {:?}", self.text),
        }
    }
}

impl<'de> Deserialize<'de> for LogExpect {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            #[serde(default)]
            contains: Option<String>,
            #[serde(default)]
            equals: Option<String>,
            #[serde(default)]
            level: Option<LogLevel>,
        }
        let value = serde_yaml_ng::Value::deserialize(d)?;
        if let serde_yaml_ng::Value::String(text) = value {
            return Ok(LogExpect {
                text,
                exact: false,
                level: None,
            });
        }
        let full: Full = serde_yaml_ng::from_value(value)
            .map_err(|e| de::Error::custom(format!("log expectation: {e}")))?;
        match (full.contains, full.equals) {
            (Some(text), None) => Ok(LogExpect {
                text,
                exact: false,
                level: full.level,
            }),
            (None, Some(text)) => Ok(LogExpect {
                text,
                exact: true,
                level: full.level,
            }),
            _ => Err(de::Error::custom(
                "a log expectation needs exactly one of `contains` or `equals`",
            )),
        }
    }
}

/// One expected `proxy_http_call`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCallExpect {
    /// Cluster name.
    pub cluster: String,
    /// Request headers whose first value must equal.
    #[serde(default)]
    pub headers: Headers,
    /// Request headers that must be absent.
    #[serde(default)]
    pub headers_absent: Vec<String>,
    /// Exact request body.
    #[serde(default)]
    pub body: Option<Body>,
    /// Timeout the filter passed, in ms.
    #[serde(default)]
    pub timeout_ms: Option<u32>,
    /// How it ended: `answered`, `failed`, `cancelled`, `pending`.
    #[serde(default)]
    pub result: Option<String>,
}

/// One expected gRPC call or stream.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcCallExpect {
    /// Cluster name.
    pub cluster: String,
    /// Service name.
    #[serde(default)]
    pub service: Option<String>,
    /// Method name.
    #[serde(default)]
    pub method: Option<String>,
    /// Initial metadata whose first value must equal.
    #[serde(default)]
    pub metadata: Headers,
    /// Messages sent, in order.
    #[serde(default)]
    pub messages: Option<Vec<ByteString>>,
    /// A stream rather than a unary call.
    #[serde(default)]
    pub streaming: Option<bool>,
    /// How it ended: `answered`, `failed`, `cancelled`, `pending`.
    #[serde(default)]
    pub result: Option<String>,
}

/// How a stream must end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndExpect {
    /// The response reached the client.
    Completed,
    /// The stream was reset.
    Reset,
    /// The filter paused and nothing could resume it.
    Stalled,
}

/// Parses a scenario from YAML text; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<Scenario, String> {
    let scenario: Scenario =
        serde_yaml_ng::from_str(text).map_err(|e| format!("{origin}: invalid scenario: {e}"))?;
    scenario.validate().map_err(|e| format!("{origin}: {e}"))?;
    Ok(scenario)
}

impl Scenario {
    fn validate(&self) -> Result<(), String> {
        match (self.plugin.module.is_some(), self.plugins.is_empty()) {
            (false, true) => {
                return Err("plugin.module is required (path to the .wasm file)".into());
            }
            (true, false) => {
                return Err("use either `plugin` or a `plugins` chain, not both".into());
            }
            _ => {}
        }
        if let Some(i) = self.plugins.iter().position(|p| p.module.is_none()) {
            return Err(format!("plugins[{i}].module is required"));
        }
        if self.workers == Some(0) || self.cases.iter().any(|c| c.workers == Some(0)) {
            return Err("`workers` must be at least 1".into());
        }
        if self.cases.is_empty() {
            return Err("no cases: add at least one entry under `cases`".into());
        }
        let mut seen = std::collections::BTreeSet::new();
        for case in &self.cases {
            if !seen.insert(case.name.as_str()) {
                return Err(format!("case name {:?} is used twice", case.name));
            }
            case.validate()
                .map_err(|e| format!("case {:?}: {e}", case.name))?;
            if !self.plugins.is_empty() && case.plugin.module.is_some() {
                return Err(format!(
                    "case {:?}: a `plugins` chain cannot be overridden by a case `plugin.module`",
                    case.name
                ));
            }
            let workers = case.workers.or(self.workers).unwrap_or(1);
            for (i, step) in case.steps.iter().enumerate() {
                if step.worker.is_some_and(|w| w >= workers) {
                    return Err(format!(
                        "case {:?}: step {}: worker {} does not exist ({workers} worker(s), numbered from 0)",
                        case.name,
                        i + 1,
                        step.worker.unwrap_or_default()
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Case {
    fn validate(&self) -> Result<(), String> {
        let short = self.request.is_some() || self.upstream.is_some() || self.expect.is_some();
        if short && !self.steps.is_empty() {
            return Err(
                "use either the short form (request/upstream/expect) or `steps`, not both".into(),
            );
        }
        if (self.upstream.is_some() || self.expect.is_some()) && self.request.is_none() {
            return Err("`upstream`/`expect` need a `request` (or use `steps`)".into());
        }
        if self.configure_fails.is_some() && (short || !self.steps.is_empty()) {
            return Err("a case with `configure_fails` has no traffic: drop request/steps".into());
        }
        if self.configure_fails.is_some() && self.startup.is_some() {
            return Err("`startup` expectations need a start-up that succeeds".into());
        }
        if self.configure_fails.is_none()
            && !short
            && self.steps.is_empty()
            && self.startup.is_none()
        {
            return Err(
                "nothing to run: add `request`, `steps`, `startup` or `configure_fails`".into(),
            );
        }
        super::steps::validate(&self.steps)?;
        Ok(())
    }

    /// The steps to run, the short form turned into one step.
    pub fn effective_steps(&self) -> Vec<Step> {
        match &self.request {
            Some(request) => vec![Step {
                request: Some(request.clone()),
                upstream: self.upstream.clone(),
                expect: self.expect.clone().unwrap_or_default(),
                ..Step::default()
            }],
            None => self.steps.clone(),
        }
    }
}
