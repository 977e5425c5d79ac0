//! The data model of the harness: what a caller (CLI, scenario runner,
//! benchmark) describes and what one exchange produces.
//!
//! Everything here is plain data. Input types (`PluginConfig`,
//! `DownstreamRequest`, `UpstreamResponse`, `ClusterSpec`, ...) implement
//! `Deserialize` so scenario files can write them; every type implements
//! `Serialize` so `harness run --json` can print an [`Outcome`].
//!
//! Bytes that may not be UTF-8 (header values, bodies, configuration) use
//! [`ByteString`]: it reads and writes as a plain string when the bytes are
//! UTF-8, otherwise as a list of byte values.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------
// Bytes and headers
// ---------------------------------------------------------------------------

/// Bytes that print as a string when they are UTF-8.
///
/// Deserializes from a string (its UTF-8 bytes) or a list of integers 0..=255.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteString(pub Vec<u8>);

impl ByteString {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    /// Lossy UTF-8 text, for display.
    pub fn to_text(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// True when there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for ByteString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(&self.0) {
            Ok(s) => write!(f, "{s:?}"),
            Err(_) => write!(f, "{:?}", self.0),
        }
    }
}

impl From<&str> for ByteString {
    fn from(s: &str) -> Self {
        ByteString(s.as_bytes().to_vec())
    }
}
impl From<String> for ByteString {
    fn from(s: String) -> Self {
        ByteString(s.into_bytes())
    }
}
impl From<Vec<u8>> for ByteString {
    fn from(v: Vec<u8>) -> Self {
        ByteString(v)
    }
}
impl From<&[u8]> for ByteString {
    fn from(v: &[u8]) -> Self {
        ByteString(v.to_vec())
    }
}

impl Serialize for ByteString {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(s) => serializer.serialize_str(s),
            Err(_) => {
                let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
                for b in &self.0 {
                    seq.serialize_element(b)?;
                }
                seq.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for ByteString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ByteString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of byte values")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteString, E> {
                Ok(ByteString(v.as_bytes().to_vec()))
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<ByteString, E> {
                Ok(ByteString(v.to_vec()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ByteString, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(ByteString(out))
            }
            // Numbers and booleans in YAML are taken as their text, so
            // `value: 42` means the two bytes "42".
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteString, E> {
                Ok(ByteString(v.to_string().into_bytes()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteString, E> {
                Ok(ByteString(v.to_string().into_bytes()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ByteString, E> {
                Ok(ByteString(v.to_string().into_bytes()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<ByteString, E> {
                Ok(ByteString(v.to_string().into_bytes()))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// An ordered list of header (or metadata, or trailer) pairs, bytes exact.
///
/// Order and duplicates are preserved. Serializes as a list of `[name, value]`
/// pairs. Deserializes from any of:
/// - a map `{name: value, ...}` (file order kept),
/// - a list of `[name, value]` pairs,
/// - a list of `"name: value"` strings (split at the first `:` after position 0,
///   so `":path: /x"` works; the value is trimmed of leading spaces).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(ByteString, ByteString)>);

impl Headers {
    /// An empty list.
    pub fn new() -> Self {
        Headers(Vec::new())
    }
    /// Builds from string pairs.
    pub fn from_pairs<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Headers(
            pairs
                .into_iter()
                .map(|(k, v)| {
                    (
                        ByteString(k.as_ref().to_vec()),
                        ByteString(v.as_ref().to_vec()),
                    )
                })
                .collect(),
        )
    }
    /// Appends a pair.
    pub fn push(&mut self, name: impl Into<ByteString>, value: impl Into<ByteString>) {
        self.0.push((name.into(), value.into()));
    }
    /// First value whose name equals `name` (ASCII case-insensitive).
    pub fn get(&self, name: &str) -> Option<&ByteString> {
        self.0
            .iter()
            .find(|(k, _)| k.0.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }
    /// First value as lossy text.
    pub fn get_text(&self, name: &str) -> Option<String> {
        self.get(name).map(ByteString::to_text)
    }
    /// Every value whose name equals `name` (ASCII case-insensitive), in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a ByteString> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k.0.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }
    /// True when a header with this name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// True when there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Iterates over the pairs as byte slices.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.0.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes()))
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter()).finish()
    }
}

impl Serialize for Headers {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for pair in &self.0 {
            seq.serialize_element(pair)?;
        }
        seq.end()
    }
}

/// One element of a header list in a file: a pair or a `"name: value"` line.
#[derive(Deserialize)]
#[serde(untagged)]
enum HeaderItem {
    Pair(ByteString, ByteString),
    Line(String),
}

fn split_header_line(line: &str) -> Option<(&str, &str)> {
    // Skip a leading ':' so pseudo-headers (":path: /x") split correctly.
    let start = usize::from(line.starts_with(':'));
    let idx = line.get(start..)?.find(':')? + start;
    Some((&line[..idx], line[idx + 1..].trim_start()))
}

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Headers;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of name: value, a list of [name, value] pairs or a list of \"name: value\" strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Headers, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<ByteString, ByteString>()? {
                    out.push((k, v));
                }
                Ok(Headers(out))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Headers, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<HeaderItem>()? {
                    match item {
                        HeaderItem::Pair(k, v) => out.push((k, v)),
                        HeaderItem::Line(line) => {
                            let (k, v) = split_header_line(&line).ok_or_else(|| {
                                de::Error::custom(format!(
                                    "header line {line:?} has no ':' (expected \"name: value\")"
                                ))
                            })?;
                            out.push((k.into(), v.into()));
                        }
                    }
                }
                Ok(Headers(out))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Headers, E> {
                Ok(Headers::new())
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A message body delivered in chunks (each chunk is one body callback).
///
/// Deserializes from a string (one chunk), or a list of strings (one chunk
/// each), or `null` (no body). Serializes as the list of chunks.
#[derive(Clone, Default, PartialEq, Eq, Debug)]
pub struct Body(pub Vec<ByteString>);

impl Body {
    /// No body.
    pub fn empty() -> Self {
        Body(Vec::new())
    }
    /// One chunk.
    pub fn single(bytes: impl Into<ByteString>) -> Self {
        let b: ByteString = bytes.into();
        if b.is_empty() {
            Body(Vec::new())
        } else {
            Body(vec![b])
        }
    }
    /// All chunks joined.
    pub fn concat(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.total_len());
        for c in &self.0 {
            out.extend_from_slice(&c.0);
        }
        out
    }
    /// Sum of the chunk lengths.
    pub fn total_len(&self) -> usize {
        self.0.iter().map(ByteString::len).sum()
    }
    /// True when there is no byte to send.
    pub fn is_empty(&self) -> bool {
        self.total_len() == 0
    }
}

impl Serialize for Body {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Body {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Chunks(Vec<ByteString>),
            One(ByteString),
            None(()),
        }
        Ok(match Form::deserialize(deserializer)? {
            Form::Chunks(c) => Body(c),
            Form::One(b) => Body::single(b),
            Form::None(()) => Body::empty(),
        })
    }
}

// ---------------------------------------------------------------------------
// Inputs: plugin, host environment, traffic
// ---------------------------------------------------------------------------

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
            log_level: LogLevel::Trace,
        }
    }
}

/// A property value set by the caller; encoded the way Envoy encodes it for
/// `proxy_get_property` (strings raw, integers 8-byte LE, bools 1 byte,
/// maps pair-serialized).
///
/// In files: a string, integer, boolean, a map of strings, or `{bytes: [..]}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PropertyValue {
    /// 1 byte, 0 or 1.
    Bool(bool),
    /// 8 bytes little-endian.
    Int(i64),
    /// Raw UTF-8.
    String(String),
    /// Pair-serialized like a header map.
    Map(BTreeMap<String, String>),
    /// Exactly these bytes.
    Bytes {
        /// The raw bytes.
        bytes: ByteString,
    },
}

/// Properties the caller sets, by dotted path (`"node.metadata.CLUSTER_ID"`,
/// `"xds.route_name"`, `"source.port"`). A dotted path is split at `.` into
/// the NUL-separated segments the ABI uses; a key that already holds NULs
/// is taken as those segments (so one may contain a dot, as in
/// `"metadata\0filter_metadata\0envoy.lb\0k"`). These override the values the
/// harness derives from the request (`request.*`, `response.*`, ...).
pub type Properties = BTreeMap<String, PropertyValue>;

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
    /// No answer ever: the call fails when its own timeout expires (or after
    /// `delay_ms` when the filter passed timeout 0). gRPC: status 4 DEADLINE_EXCEEDED.
    Timeout,
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
        if parts.next().is_some() {
            return Err(format!(
                "request line {line:?} has more than a method and a path"
            ));
        }
        if !path.starts_with('/') {
            return Err(format!("request path {path:?} must start with '/'"));
        }
        Ok(DownstreamRequest {
            method,
            path,
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
    pub properties: Properties,
    /// Virtual wall-clock time at start, in milliseconds since the Unix epoch.
    pub start_time_unix_ms: u64,
    /// Seed for WASI `random_get` (deterministic runs).
    pub random_seed: u64,
    /// What to record in [`Outcome::trace`].
    pub trace: TraceLevel,
    /// Per-stream buffer limit in bytes (Envoy's per-connection buffer limit):
    /// a paused body growing past it gets 413 (request) / 500 (response).
    pub buffer_limit_bytes: u64,
    /// A stream paused with only timer ticks pending is declared stalled
    /// after this many virtual milliseconds.
    pub stall_timeout_ms: u64,
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
        }
    }
}

// ---------------------------------------------------------------------------
// Outputs
// ---------------------------------------------------------------------------

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
    /// Cancelled by the filter or because its stream ended first.
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
    },
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
    /// How many times each host function was called during this exchange.
    pub hostcalls: BTreeMap<String, u64>,
    /// Callback (and, with [`TraceLevel::Hostcalls`], hostcall) trace.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_deserialize_from_every_form() {
        let map: Headers = serde_yaml_ng::from_str("{b: '2', a: x}").unwrap();
        assert_eq!(map, Headers::from_pairs([("b", "2"), ("a", "x")]));
        let pairs: Headers = serde_json::from_str(r#"[["x-a","1"],["x-a","2"]]"#).unwrap();
        assert_eq!(pairs.get_all("X-A").count(), 2);
        let lines: Headers = serde_json::from_str(r#"["host: a:80", ":path: /x"]"#).unwrap();
        assert_eq!(
            lines,
            Headers::from_pairs([("host", "a:80"), (":path", "/x")])
        );
        assert!(serde_json::from_str::<Headers>(r#"["nocolon"]"#).is_err());
    }

    #[test]
    fn byte_string_round_trips_non_utf8() {
        let b = ByteString(vec![0xff, 0x00, b'a']);
        let json = serde_json::to_string(&b).unwrap();
        assert_eq!(json, "[255,0,97]");
        assert_eq!(serde_json::from_str::<ByteString>(&json).unwrap(), b);
        assert_eq!(
            serde_json::to_string(&ByteString::from("hé")).unwrap(),
            "\"hé\""
        );
    }

    #[test]
    fn body_forms() {
        let one: Body = serde_json::from_str(r#""abc""#).unwrap();
        assert_eq!(one.0.len(), 1);
        let many: Body = serde_json::from_str(r#"["a","bc"]"#).unwrap();
        assert_eq!(many.concat(), b"abc");
        let none: Body = serde_json::from_str("null").unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn request_line_parses() {
        let r = DownstreamRequest::from_request_line("post /a?b=1").unwrap();
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/a?b=1"));
        assert_eq!(
            DownstreamRequest::from_request_line("/x").unwrap().method,
            "GET"
        );
        assert!(DownstreamRequest::from_request_line("GET x").is_err());
        assert!(DownstreamRequest::from_request_line("").is_err());
    }
}
