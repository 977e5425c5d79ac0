//! The probe's configuration: which hostcalls to make in which callback, and
//! what each callback returns. Every step logs one line `<label>: <STATUS> ...`
//! at info level, so tests assert on exact status codes and data via the logs.

use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    /// Log `cb <callback> ctx=<id> ...` on entry to every callback.
    #[serde(default)]
    pub trace: bool,
    /// What on_configure returns after running `configure`.
    #[serde(default = "yes")]
    pub configure_result: bool,
    /// Run in on_vm_start; only read from the VM configuration.
    #[serde(default)]
    pub vm_start: Vec<Step>,
    #[serde(default)]
    pub configure: Vec<Step>,
    #[serde(default)]
    pub tick: Vec<Step>,
    #[serde(default)]
    pub queue_ready: Vec<Step>,
    /// Callout callbacks delivered to the root context.
    #[serde(default)]
    pub root_callouts: Callouts,
    /// What every HTTP stream does, unless a `routes` entry matches its :path.
    #[serde(default)]
    pub http: HttpScript,
    /// Per-:path scripts (exact match), chosen in on_request_headers.
    #[serde(default)]
    pub routes: BTreeMap<String, HttpScript>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct HttpScript {
    #[serde(default)]
    pub request_headers: Phase,
    #[serde(default)]
    pub request_body: Phase,
    #[serde(default)]
    pub request_trailers: Phase,
    #[serde(default)]
    pub response_headers: Phase,
    #[serde(default)]
    pub response_body: Phase,
    #[serde(default)]
    pub response_trailers: Phase,
    #[serde(default)]
    pub log: Vec<Step>,
    #[serde(default)]
    pub done: Vec<Step>,
    /// Callout callbacks delivered (through the SDK) to this stream.
    #[serde(default)]
    pub callouts: Callouts,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct Callouts {
    #[serde(default)]
    pub http_call_response: Vec<Step>,
    #[serde(default)]
    pub grpc_call_response: Vec<Step>,
    #[serde(default)]
    pub grpc_stream_initial_metadata: Vec<Step>,
    #[serde(default)]
    pub grpc_stream_message: Vec<Step>,
    #[serde(default)]
    pub grpc_stream_trailing_metadata: Vec<Step>,
    #[serde(default)]
    pub grpc_stream_close: Vec<Step>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    #[serde(default)]
    pub steps: Vec<Step>,
    #[serde(default)]
    pub action: ActionRule,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum ActionRule {
    #[default]
    Continue,
    Pause,
    /// Pause while end_of_stream is false (buffer the whole body).
    PauseUntilEos,
}

#[derive(Deserialize, Clone)]
pub struct Step {
    /// Prefix of the result line; defaults to the op name.
    #[serde(default)]
    pub label: Option<String>,
    /// Variable receiving the step's numeric result (token, id, cas, value).
    #[serde(default)]
    pub save: Option<String>,
    #[serde(flatten)]
    pub op: Op,
}

#[derive(Deserialize, Clone)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    Log {
        level: u32,
        message: String,
    },
    GetLogLevel,
    GetCurrentTime,
    SetTickPeriod {
        ms: u32,
    },
    GetHeader {
        #[serde(deserialize_with = "map_type")]
        map: u32,
        key: String,
    },
    GetHeaders {
        #[serde(deserialize_with = "map_type")]
        map: u32,
    },
    SetHeaders {
        #[serde(deserialize_with = "map_type")]
        map: u32,
        pairs: Vec<(String, String)>,
    },
    AddHeader {
        #[serde(deserialize_with = "map_type")]
        map: u32,
        key: String,
        value: String,
    },
    ReplaceHeader {
        #[serde(deserialize_with = "map_type")]
        map: u32,
        key: String,
        value: String,
    },
    RemoveHeader {
        #[serde(deserialize_with = "map_type")]
        map: u32,
        key: String,
    },
    GetHeaderMapSize {
        #[serde(deserialize_with = "map_type")]
        map: u32,
    },
    GetBuffer {
        #[serde(deserialize_with = "buffer_type")]
        buffer: u32,
        #[serde(default)]
        start: usize,
        #[serde(default = "max_len")]
        max: usize,
    },
    SetBuffer {
        #[serde(deserialize_with = "buffer_type")]
        buffer: u32,
        start: usize,
        size: usize,
        data: String,
    },
    GetBufferStatus {
        #[serde(deserialize_with = "buffer_type")]
        buffer: u32,
    },
    GetProperty {
        path: Vec<String>,
        #[serde(default)]
        decode: Decode,
    },
    SetProperty {
        path: Vec<String>,
        value: String,
    },
    GetSharedData {
        key: String,
    },
    SetSharedData {
        key: String,
        value: String,
        #[serde(default)]
        cas: Num,
    },
    RegisterQueue {
        name: String,
    },
    ResolveQueue {
        vm_id: String,
        name: String,
    },
    Enqueue {
        queue: Num,
        data: String,
    },
    Dequeue {
        queue: Num,
    },
    DefineMetric {
        #[serde(deserialize_with = "metric_type")]
        kind: u32,
        name: String,
    },
    IncrementMetric {
        id: Num,
        offset: i64,
    },
    RecordMetric {
        id: Num,
        value: u64,
    },
    GetMetric {
        id: Num,
    },
    HttpCall {
        cluster: String,
        headers: Vec<(String, String)>,
        #[serde(default)]
        body: Option<String>,
        #[serde(default)]
        trailers: Vec<(String, String)>,
        #[serde(default)]
        timeout_ms: u64,
    },
    GrpcCall {
        cluster: String,
        service: String,
        method: String,
        #[serde(default)]
        metadata: Vec<(String, String)>,
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        timeout_ms: u64,
    },
    GrpcStream {
        cluster: String,
        service: String,
        method: String,
        #[serde(default)]
        metadata: Vec<(String, String)>,
    },
    GrpcSend {
        token: Num,
        message: String,
        #[serde(default)]
        end_stream: bool,
    },
    GrpcCancel {
        token: Num,
    },
    GrpcClose {
        token: Num,
    },
    GetStatus,
    ContinueStream {
        #[serde(deserialize_with = "stream_type")]
        stream: u32,
    },
    CloseStream {
        #[serde(deserialize_with = "stream_type")]
        stream: u32,
    },
    SendLocalResponse {
        status: u32,
        #[serde(default)]
        details: String,
        #[serde(default)]
        body: String,
        #[serde(default)]
        headers: Vec<(String, String)>,
        #[serde(default = "no_grpc_status")]
        grpc_status: i32,
    },
    CallForeign {
        name: String,
        #[serde(default)]
        args: String,
        /// Raw argument bytes as hex (protobuf messages, zlib streams);
        /// replaces `args` when given.
        #[serde(default)]
        args_hex: Option<String>,
        /// How to print the result bytes.
        #[serde(default)]
        decode: Decode,
    },
    SetEffectiveContext {
        id: Num,
    },
    Done,
    /// Panics with this message (the SDK's hook logs it at critical, then the
    /// module traps).
    Panic {
        message: String,
    },
    /// WASI fd_write to fd 1 (println!).
    Stdout {
        text: String,
    },
    /// WASI fd_write to fd 2 (eprintln!).
    Stderr {
        text: String,
    },
    /// WASI environ_get through std::env::var.
    EnvVar {
        name: String,
    },
    /// WASI random_get of `len` bytes; logs the errno and the length.
    Random {
        len: usize,
    },
    /// WASI clock_time_get(realtime) through std::time::SystemTime.
    WasiTime,
}

fn max_len() -> usize {
    usize::MAX
}

fn no_grpc_status() -> i32 {
    -1
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum Decode {
    /// UTF-8 (lossy), printed quoted and escaped.
    #[default]
    Str,
    /// 8-byte little-endian signed integer.
    I64,
    /// 8-byte little-endian unsigned integer.
    U64,
    /// 8-byte little-endian float.
    F64,
    /// 1 byte, 0 or 1.
    Bool,
    /// Lower-case hex.
    Hex,
    /// A serialized pair list (header maps, node metadata maps).
    Pairs,
}

/// A literal number, or `"$name"`: a value saved by an earlier step.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
pub enum Num {
    Literal(i64),
    Var(String),
}

impl Default for Num {
    fn default() -> Self {
        Num::Literal(0)
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum CodeOrName {
    Code(u32),
    Name(String),
}

fn code_or_name<'de, D: Deserializer<'de>>(
    d: D,
    what: &str,
    names: &[&str],
) -> Result<u32, D::Error> {
    match CodeOrName::deserialize(d)? {
        CodeOrName::Code(code) => Ok(code),
        CodeOrName::Name(name) => names
            .iter()
            .position(|n| *n == name)
            .map(|i| i as u32)
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "unknown {what} `{name}`; expected a number or one of {names:?}"
                ))
            }),
    }
}

pub const MAP_NAMES: [&str; 8] = [
    "request_headers",
    "request_trailers",
    "response_headers",
    "response_trailers",
    "grpc_initial_metadata",
    "grpc_trailing_metadata",
    "http_call_response_headers",
    "http_call_response_trailers",
];

fn map_type<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    code_or_name(d, "map", &MAP_NAMES)
}

fn buffer_type<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    code_or_name(
        d,
        "buffer",
        &[
            "request_body",
            "response_body",
            "downstream_data",
            "upstream_data",
            "http_call_response_body",
            "grpc_receive_buffer",
            "vm_configuration",
            "plugin_configuration",
            "call_data",
        ],
    )
}

fn stream_type<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    code_or_name(
        d,
        "stream",
        &["request", "response", "downstream", "upstream"],
    )
}

fn metric_type<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    code_or_name(d, "metric kind", &["counter", "gauge", "histogram"])
}
