//! Inputs: the plugin, the host environment and the traffic.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Body, ByteString, Headers, Properties, deserialize_properties};

/// Proxy-Wasm log levels (TRACE 0 .. CRITICAL 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// 0
    Trace,
    /// 1
    Debug,
    /// 2
    Info,
    /// 3
    Warn,
    /// 4
    Error,
    /// 5
    Critical,
}

impl LogLevel {
    /// All levels, lowest first.
    pub const ALL: [LogLevel; 6] = [
        LogLevel::Trace,
        LogLevel::Debug,
        LogLevel::Info,
        LogLevel::Warn,
        LogLevel::Error,
        LogLevel::Critical,
    ];
    /// From the ABI number; out of range is `None`.
    pub fn from_u32(v: u32) -> Option<LogLevel> {
        Self::ALL.get(v as usize).copied()
    }
    /// The ABI number.
    pub fn as_u32(self) -> u32 {
        self as u32
    }
    /// Lower-case name, as Envoy prints it.
    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
            LogLevel::Critical => "critical",
        }
    }
}

/// How one plugin is configured, as in Envoy's `envoy.extensions.wasm.v3.PluginConfig`
/// (or Istio's WasmPlugin). The module itself is given separately
/// (see [`crate::CompiledModule`]) so one compiled module serves many configs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginConfig {
    /// `plugin_name` property and log prefix.
    pub name: String,
    /// Root id passed to the filter (`proxy_on_context_create(1, 0)` creates
    /// the root context for it; `plugin_root_id` property).
    pub root_id: String,
    /// VM id: shared data and queues are scoped by it (`plugin_vm_id`).
    pub vm_id: String,
    /// Bytes returned for buffer VM_CONFIGURATION; its size is passed to `proxy_on_vm_start`.
    pub vm_config: ByteString,
    /// Bytes returned for buffer PLUGIN_CONFIGURATION; its size is passed to `proxy_on_configure`.
    /// In JSON/YAML a string is taken as-is; to give a JSON object write it as a string.
    pub configuration: ByteString,
    /// On a VM failure (trap), let traffic pass instead of answering 503.
    pub fail_open: bool,
    /// Istio's FAIL_RELOAD: after a trap, the next stream starts a fresh VM
    /// (the stream that trapped still follows `fail_open`).
    pub reload_on_failure: bool,
    /// Cap on the VM's linear memory in bytes (0 = wasm32's 4 GiB): a
    /// `memory.grow` past it fails, like an out-of-memory host.
    pub max_memory_bytes: u64,
    /// Wall-clock deadline for one guest callback in milliseconds (0 =
    /// none): an endless loop traps and fails the VM.
    pub callback_deadline_ms: u64,
    /// Environment variables the WASI `environ_*` calls expose (Envoy's `env.key_values`).
    pub env: BTreeMap<String, String>,
    /// What `proxy_get_log_level` reports; lower levels are dropped like Envoy does.
    pub log_level: LogLevel,
}

impl Default for PluginConfig {
    fn default() -> Self {
        PluginConfig {
            name: "plugin".to_string(),
            root_id: String::new(),
            vm_id: String::new(),
            vm_config: ByteString::default(),
            configuration: ByteString::default(),
            fail_open: false,
            reload_on_failure: false,
            max_memory_bytes: crate::limits::DEFAULT_MAX_MEMORY_BYTES,
            callback_deadline_ms: crate::limits::DEFAULT_CALLBACK_DEADLINE_MS,
            env: BTreeMap::new(),
            log_level: LogLevel::Info,
        }
    }
}

/// The scripted answer for one `proxy_http_call` to a cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpCalloutAnswer {
    /// `:status` of the response (placed first in the response headers).
    pub status: u16,
    /// Further response headers.
    pub headers: Headers,
    /// Response body (chunks are joined: the filter sees the whole body at once).
    pub body: Body,
    /// Response trailers.
    pub trailers: Headers,
    /// Virtual milliseconds between the call and its answer.
    pub delay_ms: u64,
    /// Fail instead of answering.
    pub failure: Option<CalloutFailure>,
    /// Wait for a scenario `answer` step (or [`crate::Envoy::answer_callout`])
    /// instead of answering after `delay_ms`; the filter's timeout still fires.
    pub hold: bool,
}

impl Default for HttpCalloutAnswer {
    fn default() -> Self {
        HttpCalloutAnswer {
            status: 200,
            headers: Headers::new(),
            body: Body::empty(),
            trailers: Headers::new(),
            delay_ms: 0,
            failure: None,
            hold: false,
        }
    }
}

/// How a scripted callout fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CalloutFailure {
    /// The connection is reset after `delay_ms`: the filter gets
    /// `on_http_call_response(root, token, 0, 0, 0)` (gRPC: `on_grpc_close`
    /// with status 14 UNAVAILABLE).
    Reset,
    /// No answer in time: when the call's own timeout expires (or after
    /// `delay_ms` when the filter passed timeout 0) Envoy's router answers
    /// 504 `upstream request timeout`, delivered as an ordinary
    /// `on_http_call_response` with headers and body. gRPC: status 4
    /// DEADLINE_EXCEEDED.
    Timeout,
    /// No healthy upstream or a refused connection, after `delay_ms`: the
    /// router answers 503 `no healthy upstream` (gRPC: status 14 UNAVAILABLE).
    Unreachable,
}

/// The scripted answer for one gRPC call or stream to a cluster.
///
/// Unary calls get `on_grpc_receive` with the first message (status 0) or
/// `on_grpc_close` with `status` (non-zero). Streams get initial metadata,
/// each message, trailing metadata, then `on_grpc_close(status)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcCalloutAnswer {
    /// gRPC status code (0 OK).
    pub status: u32,
    /// gRPC status message, returned by `proxy_get_status`.
    pub message: String,
    /// Initial metadata (streams only).
    pub initial_metadata: Headers,
    /// Response messages (serialized protobuf bytes).
    pub messages: Vec<ByteString>,
    /// Trailing metadata (streams only).
    pub trailing_metadata: Headers,
    /// Virtual milliseconds between the call and its answer.
    pub delay_ms: u64,
    /// Fail instead of answering.
    pub failure: Option<CalloutFailure>,
}

impl Default for GrpcCalloutAnswer {
    fn default() -> Self {
        GrpcCalloutAnswer {
            status: 0,
            message: String::new(),
            initial_metadata: Headers::new(),
            messages: Vec::new(),
            trailing_metadata: Headers::new(),
            delay_ms: 0,
            failure: None,
        }
    }
}

/// A cluster the filter can call out to, with scripted answers.
///
/// Answers are used in order, one per call; the last one repeats. A cluster
/// with no scripted answer resets every call (like an upstream with no
/// healthy host). Calls to a cluster that is not defined are rejected
/// synchronously the way Envoy rejects them (http: BAD_ARGUMENT, gRPC: PARSE_FAILURE).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSpec {
    /// Cluster name as the filter passes it.
    pub name: String,
    /// Answers to `proxy_http_call`.
    pub http: Vec<HttpCalloutAnswer>,
    /// Answers to `proxy_grpc_call` / `proxy_grpc_stream`.
    pub grpc: Vec<GrpcCalloutAnswer>,
    /// tcp_proxy's connections to this cluster are refused.
    pub refuse_connections: bool,
}

/// The request a downstream client sends.
///
/// The harness turns it into the request header map Envoy builds:
/// `:method`, `:path`, `:authority` (from `authority`, else the `host`
/// header, which is then removed as HTTP/1 codecs do, else `localhost`),
/// `:scheme`, then the headers lower-cased, then `x-forwarded-proto` and
/// `x-request-id` (unless given).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DownstreamRequest {
    /// `:method`.
    pub method: String,
    /// `:path` (with query).
    pub path: String,
    /// `:authority`; default from the `host` header.
    pub authority: Option<String>,
    /// `:scheme` and `x-forwarded-proto`.
    pub scheme: String,
    /// Request headers in order.
    pub headers: Headers,
    /// Request body chunks.
    pub body: Body,
    /// Request trailers (when present, the last body chunk is not end-of-stream).
    pub trailers: Option<Headers>,
    /// How the client (and the upstream) frame the message: `HTTP/1.1`
    /// (default) or `HTTP/2`.
    pub protocol: HttpProtocol,
}

/// The HTTP version on the wire, which decides how body frames end.
///
/// Envoy's HTTP/1 codec delivers body data with end_of_stream false and,
/// when the message completes, one more empty data frame with
/// end_of_stream true (`ConnectionImpl::onMessageComplete`); HTTP/2 sets
/// end_stream on the last DATA frame itself. `request.protocol` reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum HttpProtocol {
    /// HTTP/1.1.
    #[default]
    #[serde(rename = "HTTP/1.1")]
    Http11,
    /// HTTP/2.
    #[serde(rename = "HTTP/2")]
    Http2,
}

impl HttpProtocol {
    /// As Envoy names it (`request.protocol`).
    pub fn as_str(self) -> &'static str {
        match self {
            HttpProtocol::Http11 => "HTTP/1.1",
            HttpProtocol::Http2 => "HTTP/2",
        }
    }

    /// Parses `HTTP/1.1` or `HTTP/2` (also `HTTP/2.0`, any case).
    pub fn parse(text: &str) -> Option<HttpProtocol> {
        match text.to_ascii_uppercase().as_str() {
            "HTTP/1.1" => Some(HttpProtocol::Http11),
            "HTTP/2" | "HTTP/2.0" => Some(HttpProtocol::Http2),
            _ => None,
        }
    }
}

impl Default for DownstreamRequest {
    fn default() -> Self {
        DownstreamRequest {
            method: "GET".to_string(),
            path: "/".to_string(),
            authority: None,
            scheme: "http".to_string(),
            headers: Headers::new(),
            body: Body::empty(),
            trailers: None,
            protocol: HttpProtocol::default(),
        }
    }
}

impl DownstreamRequest {
    /// Parses `"GET /path"` (method then path; a lone path means GET).
    pub fn from_request_line(line: &str) -> Result<DownstreamRequest, String> {
        let mut parts = line.split_whitespace();
        let first = parts
            .next()
            .ok_or_else(|| "empty request line (expected e.g. 'GET /path')".to_string())?;
        let (method, path) = if first.starts_with('/') {
            ("GET".to_string(), first.to_string())
        } else {
            let path = parts.next().unwrap_or("/");
            (first.to_ascii_uppercase(), path.to_string())
        };
        let protocol = match parts.next() {
            None => HttpProtocol::default(),
            Some(version) => HttpProtocol::parse(version).ok_or_else(|| {
                format!("request line {line:?}: {version:?} is not HTTP/1.1 or HTTP/2")
            })?,
        };
        if parts.next().is_some() {
            return Err(format!(
                "request line {line:?} has more than a method, a path and a protocol"
            ));
        }
        if !path.starts_with('/') {
            return Err(format!("request path {path:?} must start with '/'"));
        }
        Ok(DownstreamRequest {
            method,
            path,
            protocol,
            ..DownstreamRequest::default()
        })
    }
}

/// What the upstream (the service behind Envoy) answers once the request
/// has fully reached it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamResponse {
    /// `:status`.
    pub status: u16,
    /// Response headers in order (`:status` is added first by the harness).
    pub headers: Headers,
    /// Response body chunks.
    pub body: Body,
    /// Response trailers.
    pub trailers: Option<Headers>,
    /// The upstream cannot be reached (connection failure before the
    /// response started): the router answers the stream itself with
    /// Envoy's 503 local reply, through the filter's response path, and
    /// `status`, `headers`, `body`, `trailers` are not used.
    pub unreachable: bool,
}

impl Default for UpstreamResponse {
    fn default() -> Self {
        UpstreamResponse {
            status: 200,
            headers: Headers::new(),
            body: Body::empty(),
            trailers: None,
            unreachable: false,
        }
    }
}

/// One request/response exchange to run through the filter.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Exchange {
    /// What the client sends.
    pub request: DownstreamRequest,
    /// What the upstream answers.
    pub upstream: UpstreamResponse,
    /// Properties for this exchange only (override the harness-level ones).
    #[serde(deserialize_with = "deserialize_properties")]
    pub properties: Properties,
}

/// How much of the callback/hostcall trace an exchange records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceLevel {
    /// Nothing (fastest; hostcall counts are still kept).
    Off,
    /// Every guest callback with its arguments and result.
    #[default]
    Callbacks,
    /// Callbacks and every hostcall with its arguments and status.
    Hostcalls,
}

/// Everything about the simulated Envoy around one plugin.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HarnessConfig {
    /// The plugin.
    pub plugin: PluginConfig,
    /// Clusters reachable by `proxy_http_call` / `proxy_grpc_*`.
    pub clusters: Vec<ClusterSpec>,
    /// Properties for every exchange (see [`Properties`]).
    #[serde(deserialize_with = "deserialize_properties")]
    pub properties: Properties,
    /// Virtual wall-clock time at start, in milliseconds since the Unix epoch.
    pub start_time_unix_ms: u64,
    /// Seed for WASI `random_get` (deterministic runs).
    pub random_seed: u64,
    /// What to record in [`Outcome::trace`](super::Outcome::trace).
    pub trace: TraceLevel,
    /// Per-stream buffer limit in bytes (Envoy's per-connection buffer limit):
    /// a paused body growing past it gets 413 (request) / 500 (response).
    pub buffer_limit_bytes: u64,
    /// A stream paused with only timer ticks pending is declared stalled
    /// after this many virtual milliseconds.
    pub stall_timeout_ms: u64,
    /// The route's timeout (Envoy's `route.timeout`, 15 s unless the route
    /// sets one; 0: none): from the moment the router has the whole
    /// request until the upstream's response ends.
    pub route_timeout_ms: u64,
    /// The connection manager's stream idle timeout (Envoy's
    /// `stream_idle_timeout`, 5 min unless set; 0: none): a stream the
    /// client and the response leave still this long gets 408 (504 once
    /// the whole request arrived), or a reset once its response started.
    pub stream_idle_timeout_ms: u64,
    /// Events (ticks, callout answers, queue notifications) one step may
    /// deliver before the VM that keeps the loop busy fails.
    pub max_events_per_step: u64,
    /// Real milliseconds one step may take before the VM that keeps the
    /// loop busy fails.
    pub step_wall_budget_ms: u64,
}

impl Default for HarnessConfig {
    fn default() -> Self {
        HarnessConfig {
            plugin: PluginConfig::default(),
            clusters: Vec::new(),
            properties: Properties::new(),
            // 2024-01-01T00:00:00Z: fixed so runs are reproducible.
            start_time_unix_ms: 1_704_067_200_000,
            random_seed: 0x5eed,
            trace: TraceLevel::Callbacks,
            buffer_limit_bytes: 1024 * 1024,
            stall_timeout_ms: 300_000,
            route_timeout_ms: crate::manager::DEFAULT_ROUTE_TIMEOUT_MS,
            stream_idle_timeout_ms: crate::manager::DEFAULT_STREAM_IDLE_TIMEOUT_MS,
            max_events_per_step: crate::driver::DEFAULT_MAX_EVENTS_PER_STEP,
            step_wall_budget_ms: crate::driver::DEFAULT_STEP_WALL_BUDGET_MS,
        }
    }
}
