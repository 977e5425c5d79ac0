//! Outputs: what one exchange (or step) produced.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ByteString, Headers, LogLevel};

/// A complete HTTP message as one side saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpMessage {
    /// Headers including pseudo-headers (`:method`... for requests, `:status` for responses).
    pub headers: Headers,
    /// The body, all chunks joined.
    pub body: ByteString,
    /// Trailers, if any were sent.
    pub trailers: Option<Headers>,
}

/// The response the downstream client received.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownstreamResponse {
    /// `:status` as a number (0 if the stream was reset before headers).
    pub status: u16,
    /// Headers (with `:status`), body and trailers.
    #[serde(flatten)]
    pub message: HttpMessage,
    /// The stream was reset (by `proxy_close_stream` or a failure after the
    /// response started); the message is what arrived before the reset.
    pub reset: bool,
}

/// A local reply (Envoy `sendLocalReply`) sent instead of, or replacing, the upstream response.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalReply {
    /// HTTP status.
    pub status: u16,
    /// Body as passed by the filter (or the harness for 503/413/500).
    pub body: ByteString,
    /// Extra headers as passed by the filter (keys lower-cased).
    pub headers: Headers,
    /// Response code details (`response.code_details`).
    pub details: String,
    /// gRPC status, when the filter sent a gRPC local reply.
    pub grpc_status: Option<i32>,
    /// Who sent it: `"filter"` or `"harness"` (fail-closed 503, buffer overflow).
    pub source: String,
}

/// One captured log line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Level.
    pub level: LogLevel,
    /// The message (WASI stdout/stderr lines have their newline stripped).
    pub message: String,
    /// Context active when it was logged (0 during VM start-up).
    pub context_id: u32,
}

/// Metric kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricKind {
    /// Monotonic.
    Counter,
    /// Up and down.
    Gauge,
    /// Sampled values.
    Histogram,
}

/// A metric as Envoy's stats would show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricSnapshot {
    /// Name as defined by the filter (Envoy exposes it as `wasmcustom.<name>`).
    pub name: String,
    /// Kind.
    pub kind: MetricKind,
    /// Counter or gauge value; for histograms, the number of samples.
    pub value: i64,
    /// Histogram samples in recording order (empty for counters and gauges).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub samples: Vec<u64>,
}

/// How a callout ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum CalloutResult {
    /// Not answered yet (still in flight when the outcome was taken).
    Pending,
    /// Answered with this HTTP status (http_call) or gRPC status (gRPC).
    Answered {
        /// HTTP status or gRPC status code.
        status: u32,
    },
    /// Failed (reset / no answer).
    Failed {
        /// Why.
        reason: String,
    },
    /// Cancelled by the filter (`proxy_grpc_cancel` / `proxy_grpc_close`).
    Cancelled,
}

/// One `proxy_http_call` the filter made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpCallRecord {
    /// Token returned to the filter.
    pub token: u32,
    /// Context that made the call.
    pub context_id: u32,
    /// Cluster name.
    pub cluster: String,
    /// Request headers as sent (with pseudo-headers).
    pub headers: Headers,
    /// Request body.
    pub body: ByteString,
    /// Request trailers.
    pub trailers: Headers,
    /// Timeout in milliseconds (0 = none).
    pub timeout_ms: u32,
    /// How it ended.
    pub result: CalloutResult,
}

/// One `proxy_grpc_call` or `proxy_grpc_stream` the filter made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrpcCallRecord {
    /// Token returned to the filter.
    pub token: u32,
    /// Context that made the call.
    pub context_id: u32,
    /// Cluster name.
    pub cluster: String,
    /// Service name.
    pub service: String,
    /// Method name.
    pub method: String,
    /// Initial metadata sent.
    pub initial_metadata: Headers,
    /// Messages sent (the unary request, or each `proxy_grpc_send`).
    pub messages: Vec<ByteString>,
    /// Timeout in milliseconds (0 = none; streams have none).
    pub timeout_ms: u32,
    /// A stream (`proxy_grpc_stream`) rather than a unary call.
    pub streaming: bool,
    /// How it ended.
    pub result: CalloutResult,
}

/// One entry of the trace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum TraceEvent {
    /// The host called a guest export.
    Callback {
        /// Export name, e.g. `proxy_on_request_headers`.
        name: String,
        /// Arguments as passed.
        args: Vec<u64>,
        /// Return value (`None` for void callbacks and traps).
        result: Option<u64>,
        /// Virtual time in ms since the harness started.
        at_ms: u64,
    },
    /// The guest called a host function.
    Hostcall {
        /// Import name, e.g. `proxy_get_header_map_value`.
        name: String,
        /// Arguments as passed (pointers are guest addresses).
        args: Vec<u64>,
        /// Status returned (WASI errno for WASI calls).
        status: u32,
        /// `status` by name (`NOT_FOUND`), or `errno N` for WASI calls.
        #[serde(default)]
        status_name: String,
        /// The arguments as the call meant them: texts and property paths
        /// read from guest memory, ABI enums by name.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        decoded: Vec<TraceArg>,
        /// What the call handed back through its out-parameters (a value
        /// cut short past 80 bytes), when it answered OK.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        returned: Vec<TraceArg>,
    },
}

/// One argument or result of a traced hostcall, as text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceArg {
    /// The ABI's name for it (`key`, `path`, `map_type`...).
    pub name: String,
    /// Its meaning: a double-quoted text (escaped; bytes that are not
    /// UTF-8 as `\xNN`), a segment list, an enum name or a number.
    pub value: String,
}

/// How the stream of an exchange ended.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum StreamEnd {
    /// The response reached the client.
    #[default]
    Completed,
    /// The stream was reset (`proxy_close_stream`, or a failure after the response started).
    Reset,
    /// The filter paused and nothing pending could ever resume it.
    Stalled {
        /// Where it stopped and what was (not) pending.
        reason: String,
    },
    /// No stream ran (outcome of [`crate::Harness::advance`]).
    NoStream,
}

/// A trap in guest code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrapReport {
    /// The export that trapped, e.g. `proxy_on_request_headers`.
    pub callback: String,
    /// Its context id.
    pub context_id: u32,
    /// The trap text from the runtime.
    pub trap: String,
    /// The guest's panic message, taken from its last critical/error log line.
    pub panic_message: Option<String>,
}

/// What the harness did about a failed VM (Envoy's / Istio's failure policy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicyApplied {
    /// The stream got a 503 local reply (`wasm_fail_stream`), the default.
    FailClosed,
    /// The stream passed through without the filter (`fail_open`).
    FailOpen,
    /// A fresh VM was started for this stream (`reload_on_failure`, Istio's FAIL_RELOAD).
    Reloaded,
}

/// Everything one exchange (or one [`crate::Harness::advance`]) produced.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The stream's context id (0 when no stream ran).
    pub context_id: u32,
    /// The request as the upstream received it (headers as they were when
    /// the filter let them through); `None` unless the whole request, to its
    /// end of stream, reached the upstream (a local reply, reset or stall
    /// cut it short).
    pub upstream_request: Option<HttpMessage>,
    /// The response as the client received it; `None` when no stream ran or it stalled.
    pub response: Option<DownstreamResponse>,
    /// The local reply, if one was sent (by the filter or by the harness).
    pub local_reply: Option<LocalReply>,
    /// A TCP connection's bytes and close (`None` for HTTP streams).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<super::ConnectionRecord>,
    /// How the stream ended.
    pub end: StreamEnd,
    /// Log lines emitted during this exchange, in order.
    pub logs: Vec<LogEntry>,
    /// Every metric after this exchange.
    pub metrics: Vec<MetricSnapshot>,
    /// HTTP callouts made during this exchange.
    pub http_calls: Vec<HttpCallRecord>,
    /// gRPC callouts made during this exchange.
    pub grpc_calls: Vec<GrpcCallRecord>,
    /// How many times each host function was called during this exchange
    /// (names borrowed from the host's table: counting allocates no name).
    pub hostcalls: BTreeMap<Cow<'static, str>, u64>,
    /// Callback (and, with [`TraceLevel::Hostcalls`](super::TraceLevel::Hostcalls), hostcall) trace.
    pub trace: Vec<TraceEvent>,
    /// A trap in this exchange: the VM is failed from now on.
    pub trap: Option<TrapReport>,
    /// The failure policy applied in this exchange, if the VM failed (now or earlier).
    pub failure_policy: Option<FailurePolicyApplied>,
    /// Virtual time spent by this exchange, in ms.
    pub elapsed_ms: u64,
}

impl Outcome {
    /// Log messages at exactly `level`, in order.
    pub fn logs_at(&self, level: LogLevel) -> Vec<&str> {
        self.logs
            .iter()
            .filter(|l| l.level == level)
            .map(|l| l.message.as_str())
            .collect()
    }
    /// Log lines grouped by level (only levels that have lines).
    pub fn logs_by_level(&self) -> BTreeMap<LogLevel, Vec<String>> {
        let mut out: BTreeMap<LogLevel, Vec<String>> = BTreeMap::new();
        for l in &self.logs {
            out.entry(l.level).or_default().push(l.message.clone());
        }
        out
    }
    /// A metric by name.
    pub fn metric(&self, name: &str) -> Option<&MetricSnapshot> {
        self.metrics.iter().find(|m| m.name == name)
    }
    /// Names of the callbacks in the trace, in order.
    pub fn callback_names(&self) -> Vec<&str> {
        self.trace
            .iter()
            .filter_map(|e| match e {
                TraceEvent::Callback { name, .. } => Some(name.as_str()),
                TraceEvent::Hostcall { .. } => None,
            })
            .collect()
    }
}

impl Outcome {
    /// Adds what `more` observed (logs, trace, callouts, hostcall counts, a
    /// trap, the failure policy) after what this outcome has.
    pub(crate) fn absorb(&mut self, more: Outcome) {
        let into = self;
        into.logs.extend(more.logs);
        into.trace.extend(more.trace);
        into.http_calls.extend(more.http_calls);
        into.grpc_calls.extend(more.grpc_calls);
        for (name, count) in more.hostcalls {
            *into.hostcalls.entry(name).or_insert(0) += count;
        }
        if into.trap.is_none() {
            into.trap = more.trap;
        }
        if into.failure_policy.is_none() {
            into.failure_policy = more.failure_policy;
        }
        // Metrics are process-wide: the latest snapshot is the complete one.
        into.metrics = more.metrics;
    }

    /// Puts what `earlier` observed before what this outcome observed,
    /// keeping this one's exchange (response, end, context id...).
    pub(crate) fn absorb_before(&mut self, earlier: Outcome) {
        let into = self;
        let mut observed = earlier;
        let later = Outcome {
            logs: std::mem::take(&mut into.logs),
            trace: std::mem::take(&mut into.trace),
            http_calls: std::mem::take(&mut into.http_calls),
            grpc_calls: std::mem::take(&mut into.grpc_calls),
            hostcalls: std::mem::take(&mut into.hostcalls),
            trap: into.trap.take(),
            failure_policy: into.failure_policy.take(),
            metrics: std::mem::take(&mut into.metrics),
            ..Outcome::default()
        };
        observed.absorb(later);
        into.logs = observed.logs;
        into.trace = observed.trace;
        into.http_calls = observed.http_calls;
        into.grpc_calls = observed.grpc_calls;
        into.hostcalls = observed.hostcalls;
        into.trap = observed.trap;
        into.failure_policy = observed.failure_policy;
        into.metrics = observed.metrics;
    }
}
