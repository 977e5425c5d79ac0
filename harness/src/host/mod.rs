//! The simulated Envoy state, with no wasmtime in it: streams and their
//! header maps and buffers, clusters and callouts, a virtual clock and
//! timers, logs, properties; plus [`SharedHost`] for what Envoy shares
//! across workers. One [`Host`] serves one VM (one worker).

mod callouts;
pub mod caps;
pub mod counters;
mod fields;
pub(crate) mod filter_state;
pub(crate) mod foreign;
pub mod headers;
pub mod properties;
mod roots;
mod shared;
mod traffic;

pub use traffic::GuestTraffic;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

pub(crate) use callouts::{
    GRPC_MESSAGE_ENCODING, GrpcPlan, HttpPlan, PendingGrpc, PendingHttp, grpc_stream_metadata,
    resolve_timing,
};
pub use fields::Reach;
pub(crate) use fields::{Field, Gone};
pub use headers::HeaderMap;
pub use shared::SharedHost;
pub(crate) use shared::{Inbox, QueueReady};

use crate::abi::{AbiVersion, MapType, StreamType};
use crate::model::{
    ByteString, CalloutResult, ClusterSpec, GrpcCallRecord, GrpcCalloutAnswer, HarnessConfig,
    HttpCallRecord, HttpProtocol, LogEntry, LogLevel, PluginConfig, Properties, TraceEvent,
    TraceLevel,
};
use properties::PropertyStore;

/// What the guest may call right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// `_initialize` / `main` / `_start`: only `proxy_log` and WASI.
    Startup,
    /// A `proxy_on_*` callback: everything.
    Callback,
    /// Inside the guest allocator: only log, fd_write, clock, poll_oneoff.
    Allocator,
}

/// A stream action the filter asked for; Envoy applies it after the running
/// callback returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Deferred {
    /// `proxy_continue_stream`.
    Continue {
        /// Stream context.
        context_id: u32,
        /// Direction.
        stream: StreamType,
    },
    /// `proxy_close_stream`.
    Close {
        /// Stream context.
        context_id: u32,
        /// Direction.
        stream: StreamType,
    },
    /// `proxy_send_local_response`.
    LocalReply {
        /// Stream context.
        context_id: u32,
        /// The reply.
        reply: LocalReplySpec,
    },
}

impl Deferred {
    /// The stream context the action is for.
    pub fn context_id(&self) -> u32 {
        match self {
            Deferred::Continue { context_id, .. }
            | Deferred::Close { context_id, .. }
            | Deferred::LocalReply { context_id, .. } => *context_id,
        }
    }
}

/// A local reply as the filter asked for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalReplySpec {
    /// HTTP status.
    pub status: u32,
    /// Response code details.
    pub details: String,
    /// Body.
    pub body: Vec<u8>,
    /// Extra headers (keys lower-cased).
    pub headers: HeaderMap,
    /// gRPC status, -1 for none.
    pub grpc_status: i32,
}

/// The host-visible data of the HTTP stream in flight.
#[derive(Clone, Debug, Default)]
pub struct StreamState {
    /// Context id.
    pub id: u32,
    /// The root context (plugin) that created it.
    pub root_id: u32,
    /// Request headers (once delivered to the filter).
    pub request_headers: Option<HeaderMap>,
    /// Request body buffer the filter currently sees.
    pub request_body: Vec<u8>,
    /// Request trailers (once delivered).
    pub request_trailers: Option<HeaderMap>,
    /// Response headers (once delivered).
    pub response_headers: Option<HeaderMap>,
    /// Response body buffer the filter currently sees.
    pub response_body: Vec<u8>,
    /// Response trailers (once delivered).
    pub response_trailers: Option<HeaderMap>,
    /// The stream's filter state (`proxy_set_property`,
    /// `set_envoy_filter_state`), shared by every filter of the stream.
    pub filter_state: Option<filter_state::SharedFilterState>,
    /// Properties given for this stream's exchange (they override the
    /// harness-level ones).
    pub properties: PropertyStore,
    /// Stream start, ns since the epoch.
    pub start_unix_ns: u64,
    /// Request body bytes received from the client so far.
    pub request_body_bytes: u64,
    /// Response body bytes received so far.
    pub response_body_bytes: u64,
    /// `response.code_details`.
    pub response_code_details: Option<String>,
    /// Which of the fields above the filter can reach now.
    pub reach: Reach,
    /// The stream's HTTP version (`request.protocol`).
    pub protocol: HttpProtocol,
    /// A TCP connection's context (a network filter's), not an HTTP stream's.
    pub is_connection: bool,
    /// DOWNSTREAM_DATA: the connection's read buffer while this filter has
    /// it (its on_downstream_data runs, or it paused there); `None` otherwise.
    pub downstream_data: Option<Vec<u8>>,
    /// UPSTREAM_DATA: the bytes being written to the client while this
    /// filter has them (its on_upstream_data runs, or it paused there).
    pub upstream_data: Option<Vec<u8>>,
}

/// Something due at a virtual time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Event {
    Tick { generation: u64 },
    HttpAnswer { token: u32 },
    GrpcAnswer { token: u32 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Scheduled {
    pub at_ms: u64,
    pub seq: u64,
    pub event: Event,
    /// The root context it is for (the one active when it was scheduled).
    pub root: u32,
}

/// Callout data being delivered to the guest right now.
#[derive(Clone, Debug, Default)]
pub struct Delivery {
    /// HTTP_CALL_RESPONSE_HEADERS.
    pub http_headers: Option<HeaderMap>,
    /// HTTP_CALL_RESPONSE_BODY.
    pub http_body: Option<Vec<u8>>,
    /// HTTP_CALL_RESPONSE_TRAILERS.
    pub http_trailers: Option<HeaderMap>,
    /// GRPC_RECEIVE_INITIAL_METADATA.
    pub grpc_initial_metadata: Option<HeaderMap>,
    /// GRPC_RECEIVE_TRAILING_METADATA.
    pub grpc_trailing_metadata: Option<HeaderMap>,
    /// GRPC_RECEIVE_BUFFER.
    pub grpc_message: Option<Vec<u8>>,
}

struct ClusterState {
    spec: ClusterSpec,
    http_used: usize,
    grpc_used: usize,
}

/// The state behind every hostcall of one VM.
pub struct Host {
    pub(crate) plugin: PluginConfig,
    clusters: HashMap<String, ClusterState>,
    pub(crate) properties: PropertyStore,
    pub(crate) trace_level: TraceLevel,
    pub(crate) buffer_limit: u64,
    pub(crate) stall_timeout_ms: u64,
    pub(crate) route_timeout_ms: u64,
    pub(crate) stream_idle_timeout_ms: u64,
    /// Bytes of filter log text in `logs`, against `caps::MAX_LOG_BYTES_PER_STEP`.
    log_bytes: usize,
    /// The log cap was reached in this capture (warned once).
    logs_full: bool,
    /// The event loop's bounds for one step (see `driver::budget`).
    pub(crate) max_events_per_step: u64,
    pub(crate) step_wall_budget_ms: u64,
    pub(crate) shared: SharedHost,
    pub(crate) inbox: Arc<Inbox>,

    start_unix_ns: u64,
    pub(crate) now_ms: u64,
    rng_state: u64,

    /// The ABI the module declared (set when the VM is created).
    pub(crate) abi: AbiVersion,
    /// `proxy_on_configure` is running: `proxy_get_configuration` (ABI
    /// 0.1.0) returns the plugin configuration, else the VM configuration.
    pub(crate) configuring: bool,
    /// `proxy_on_log` is running: Envoy's access-log phase, where a map
    /// that is not there reads as NOT_FOUND and request trailers are gone.
    pub(crate) access_log: bool,
    /// The export running now (`proxy_on_request_headers`, ...), for messages.
    pub(crate) callback: &'static str,
    /// The trailers map Envoy creates on demand right now: the last body
    /// callback (end_of_stream) of a direction that had no trailers.
    pub(crate) trailers_on_demand: Option<MapType>,
    /// The active root context; `plugin`, `properties` and the tick timer
    /// are its own. Other plugins sharing this VM wait in `other_roots`.
    pub(crate) root_context_id: u32,
    pub(crate) other_roots: Vec<roots::RootSlot>,
    pub(crate) next_context_id: u32,
    /// The live stream contexts of this VM (Envoy interleaves many).
    pub(crate) streams: Vec<StreamState>,
    pub(crate) active_context: u32,
    pub(crate) effective_context: u32,
    pub(crate) phase: Phase,
    pub(crate) deferred: Vec<Deferred>,
    pub(crate) done_called: bool,

    pub(crate) next_token: u32,
    pub(crate) http_pending: HashMap<u32, PendingHttp>,
    pub(crate) grpc_pending: HashMap<u32, PendingGrpc>,
    pub(crate) http_calls: Vec<HttpCallRecord>,
    pub(crate) grpc_calls: Vec<GrpcCallRecord>,
    events: BinaryHeap<Reverse<Scheduled>>,
    event_seq: u64,
    pub(crate) delivery: Delivery,
    pub(crate) status_code: u32,
    pub(crate) status_message: Vec<u8>,
    pub(crate) tick_period_ms: u32,
    pub(crate) tick_generation: u64,

    pub(crate) logs: Vec<LogEntry>,
    pub(crate) hostcall_counts: Vec<u64>,
    pub(crate) trace: Vec<TraceEvent>,
    /// Reused buffer for values returned to the guest (no per-call allocation).
    pub(crate) scratch: Vec<u8>,
    pub(crate) metric_ids: Vec<usize>,
    /// Properties declared through the `declare_property` foreign function.
    pub(crate) declared_properties: foreign::Declarations,
    /// A host-side fault the native backend cannot raise as a trap at once.
    pub(crate) pending_fault: Option<String>,
    /// Guest-boundary counters since the VM started (benchmarks read them).
    pub(crate) traffic: GuestTraffic,
}

impl Host {
    /// A host for one VM configured by `config`, sharing `shared`.
    pub fn new(config: &HarnessConfig, shared: SharedHost) -> Host {
        let plugin = config.plugin.clone();
        let mut base = PropertyStore::from_properties(&properties::defaults(
            &plugin.name,
            &plugin.root_id,
            &plugin.vm_id,
        ));
        base.extend(&config.properties);
        Host {
            clusters: config
                .clusters
                .iter()
                .map(|c| {
                    (
                        c.name.clone(),
                        ClusterState {
                            spec: c.clone(),
                            http_used: 0,
                            grpc_used: 0,
                        },
                    )
                })
                .collect(),
            properties: base,
            plugin,
            trace_level: config.trace,
            buffer_limit: config.buffer_limit_bytes,
            stall_timeout_ms: config.stall_timeout_ms,
            route_timeout_ms: config.route_timeout_ms,
            stream_idle_timeout_ms: config.stream_idle_timeout_ms,
            log_bytes: 0,
            logs_full: false,
            max_events_per_step: config.max_events_per_step,
            step_wall_budget_ms: config.step_wall_budget_ms,
            shared,
            inbox: Arc::new(Inbox::default()),
            start_unix_ns: config.start_time_unix_ms.saturating_mul(1_000_000),
            now_ms: 0,
            rng_state: config.random_seed ^ 0x9e37_79b9_7f4a_7c15,
            abi: AbiVersion::default(),
            configuring: false,
            access_log: false,
            callback: "",
            trailers_on_demand: None,
            root_context_id: 1,
            other_roots: Vec::new(),
            next_context_id: 2,
            streams: Vec::new(),
            active_context: 0,
            effective_context: 0,
            phase: Phase::Startup,
            deferred: Vec::new(),
            done_called: false,
            next_token: 0,
            http_pending: HashMap::new(),
            grpc_pending: HashMap::new(),
            http_calls: Vec::new(),
            grpc_calls: Vec::new(),
            events: BinaryHeap::new(),
            event_seq: 0,
            delivery: Delivery::default(),
            status_code: 0,
            status_message: Vec::new(),
            tick_period_ms: 0,
            tick_generation: 0,
            logs: Vec::new(),
            hostcall_counts: vec![0; counters::HOSTCALL_COUNT],
            trace: Vec::new(),
            scratch: Vec::new(),
            metric_ids: Vec::new(),
            declared_properties: foreign::Declarations::default(),
            pending_fault: None,
            traffic: GuestTraffic::default(),
        }
    }

    /// The shared (process-wide) state.
    pub fn shared(&self) -> &SharedHost {
        &self.shared
    }

    /// Plugin configuration.
    pub fn plugin(&self) -> &PluginConfig {
        &self.plugin
    }

    // ---- clock and randomness -------------------------------------------

    /// Virtual wall-clock time in ns since the epoch.
    pub fn now_unix_ns(&self) -> u64 {
        self.start_unix_ns
            .saturating_add(self.now_ms.saturating_mul(1_000_000))
    }

    /// Virtual monotonic time in ns since the harness started.
    pub fn monotonic_ns(&self) -> u64 {
        self.now_ms.saturating_mul(1_000_000)
    }

    /// Fills `out` from the seeded generator (rand_xoshiro's SplitMix64, the one
    /// sdk-ext's SeededRandom uses; `rng_state` is its state).
    pub fn fill_random(&mut self, out: &mut [u8]) {
        use rand_xoshiro::rand_core::{Rng as _, SeedableRng as _};
        let mut generator = rand_xoshiro::SplitMix64::from_seed(self.rng_state.to_le_bytes());
        generator.fill_bytes(out);
        self.rng_state = u64::from_le_bytes(generator.state());
    }

    // ---- logs -----------------------------------------------------------

    /// The plugin's log level: the process's once set at run time
    /// ([`SharedHost::set_log_level`]), else the configured one.
    pub(crate) fn log_level(&self) -> LogLevel {
        self.shared().log_level().unwrap_or(self.plugin.log_level)
    }

    /// Captures a log line unless below the plugin's log level.
    pub fn log(&mut self, level: LogLevel, message: &[u8]) {
        if level < self.log_level() {
            return;
        }
        self.log_bytes += message.len();
        if self.log_bytes > caps::MAX_LOG_BYTES_PER_STEP {
            if !self.logs_full {
                self.logs_full = true;
                self.harness_log(
                    LogLevel::Warn,
                    format!(
                        "log capture full: this step's filter log lines passed the host's {}-byte cap; later lines are dropped",
                        caps::MAX_LOG_BYTES_PER_STEP
                    ),
                );
            }
            return;
        }
        self.logs.push(LogEntry {
            level,
            message: String::from_utf8_lossy(message).into_owned(),
            context_id: self.effective_context,
        });
    }

    /// The log lines captured since the last take, and a fresh capture.
    pub(crate) fn take_logs(&mut self) -> Vec<LogEntry> {
        self.log_bytes = 0;
        self.logs_full = false;
        std::mem::take(&mut self.logs)
    }

    /// A line from the harness itself (not the filter).
    pub(crate) fn harness_log(&mut self, level: LogLevel, message: String) {
        self.logs.push(LogEntry {
            level,
            message: format!("[harness] {message}"),
            context_id: 0,
        });
    }

    // ---- properties -----------------------------------------------------

    /// Adds a harness-level property.
    pub(crate) fn set_base_property(&mut self, props: &Properties) {
        self.properties.extend(props);
    }

    /// `proxy_get_property` lookup into `self.scratch`; a likely mistake
    /// (a name Envoy moved under `xds.`, ...) is warned about once.
    pub(crate) fn lookup_property(&mut self, path: &[u8]) -> bool {
        let mut out = std::mem::take(&mut self.scratch);
        let found = self.lookup_property_into(path, &mut out);
        self.scratch = out;
        match found {
            properties::Found::Value => true,
            properties::Found::Missing => false,
            properties::Found::Hint { key, message } => {
                properties::warn_once(self, key, message);
                false
            }
        }
    }

    fn lookup_property_into(&self, path: &[u8], out: &mut Vec<u8>) -> properties::Found {
        let state = self
            .effective_stream_ref()
            .and_then(StreamState::filter_state);
        // Objects set through set_envoy_filter_state (host/foreign.rs).
        if let Some(state) = &state
            && foreign::lookup_filter_state(&state.objects, path, out)
        {
            return properties::Found::Value;
        }
        // Envoy's findValue reads request.* and response.* headers through
        // the same phase-scoped pointers as the header-map calls.
        let stream = self
            .effective_stream_ref()
            .map(|s| properties::StreamSources {
                exchange: &s.properties,
                filter_state: state.as_ref().map(|state| &state.properties),
                facts: properties::StreamFacts {
                    request_headers: s.readable_map(Field::RequestHeaders, self.access_log),
                    response_headers: s.readable_map(Field::ResponseHeaders, self.access_log),
                    response_trailers: s.readable_map(Field::ResponseTrailers, self.access_log),
                    response_code: s
                        .response_headers
                        .as_ref()
                        .and_then(|h| h.get(b":status"))
                        .and_then(|v| std::str::from_utf8(v).ok()?.parse::<i64>().ok()),
                    start_unix_ns: s.start_unix_ns,
                    now_unix_ns: self.now_unix_ns(),
                    request_body_bytes: s.request_body_bytes,
                    response_body_bytes: s.response_body_bytes,
                    response_code_details: s.response_code_details.as_deref(),
                    protocol: s.protocol.as_str(),
                },
            });
        let sources = properties::Sources {
            plugin: &self.properties,
            stream,
        };
        properties::find(path, &sources, out)
    }

    // ---- streams, maps, buffers ----------------------------------------

    /// The live stream context `id`, if any.
    pub fn stream_ref(&self, id: u32) -> Option<&StreamState> {
        self.streams.iter().find(|s| s.id == id)
    }

    /// Mutable [`Host::stream_ref`].
    pub fn stream_mut(&mut self, id: u32) -> Option<&mut StreamState> {
        self.streams.iter_mut().find(|s| s.id == id)
    }

    /// Creates the host side of a new stream context.
    /// `filter_state`: the stream's, shared with its other contexts.
    pub(crate) fn open_stream(
        &mut self,
        id: u32,
        root_id: u32,
        filter_state: Option<filter_state::SharedFilterState>,
    ) {
        let start_unix_ns = self.now_unix_ns();
        self.streams.push(StreamState {
            id,
            root_id,
            start_unix_ns,
            filter_state,
            ..Default::default()
        });
    }

    /// Drops the host side of a stream context (after on_delete).
    pub(crate) fn drop_stream(&mut self, id: u32) {
        self.streams.retain(|s| s.id != id);
    }

    /// The stream the effective context refers to, if it is a stream.
    pub fn effective_stream_ref(&self) -> Option<&StreamState> {
        self.stream_ref(self.effective_context)
    }

    /// Mutable [`Host::effective_stream_ref`].
    pub fn effective_stream(&mut self) -> Option<&mut StreamState> {
        self.stream_mut(self.effective_context)
    }

    /// True when `id` names a live context (the root or a live stream).
    pub fn context_exists(&self, id: u32) -> bool {
        self.is_root(id) || self.stream_ref(id).is_some()
    }

    // ---- callouts and events ---------------------------------------------

    pub(crate) fn schedule(&mut self, at_ms: u64, event: Event) {
        self.event_seq += 1;
        self.events.push(Reverse(Scheduled {
            at_ms,
            seq: self.event_seq,
            event,
            root: self.root_context_id,
        }));
    }

    pub(crate) fn next_event_at(&self) -> Option<u64> {
        self.events.peek().map(|Reverse(s)| s.at_ms)
    }

    pub(crate) fn peek_event(&self) -> Option<Scheduled> {
        self.events.peek().map(|Reverse(s)| *s)
    }

    pub(crate) fn pop_event(&mut self) -> Option<Scheduled> {
        self.events.pop().map(|Reverse(s)| s)
    }

    /// True when an event other than a tick is scheduled.
    pub(crate) fn has_non_tick_event(&self) -> bool {
        self.events.iter().any(|Reverse(s)| match s.event {
            Event::Tick { .. } => false,
            Event::HttpAnswer { token } => self.http_pending.contains_key(&token),
            Event::GrpcAnswer { token } => self.grpc_pending.contains_key(&token),
        })
    }

    pub(crate) fn new_token(&mut self) -> u32 {
        self.next_token = self.next_token.wrapping_add(1).max(1);
        self.next_token
    }

    /// Picks the scripted http answer for a cluster; `None` if the cluster is unknown.
    pub(crate) fn next_http_answer(
        &mut self,
        cluster: &[u8],
    ) -> Option<Option<crate::model::HttpCalloutAnswer>> {
        let c = self.clusters.get_mut(std::str::from_utf8(cluster).ok()?)?;
        Some(next_answer(&c.spec.http, &mut c.http_used))
    }

    /// Picks the scripted gRPC answer for a cluster; `None` if the cluster is unknown.
    pub(crate) fn next_grpc_answer(&mut self, cluster: &[u8]) -> Option<Option<GrpcCalloutAnswer>> {
        let c = self.clusters.get_mut(std::str::from_utf8(cluster).ok()?)?;
        Some(next_answer(&c.spec.grpc, &mut c.grpc_used))
    }

    /// Whether tcp_proxy can connect to cluster `name`: `None` when no
    /// such cluster is defined, `Some(false)` when it refuses connections.
    pub(crate) fn tcp_cluster_accepts(&self, name: &str) -> Option<bool> {
        self.clusters.get(name).map(|c| !c.spec.refuse_connections)
    }

    /// Replaces the cluster definitions (answer counters restart).
    pub(crate) fn set_clusters(&mut self, clusters: &[ClusterSpec]) {
        self.clusters = clusters
            .iter()
            .map(|c| {
                (
                    c.name.clone(),
                    ClusterState {
                        spec: c.clone(),
                        http_used: 0,
                        grpc_used: 0,
                    },
                )
            })
            .collect();
    }

    pub(crate) fn set_http_result(&mut self, token: u32, result: CalloutResult) {
        if let Some(r) = self.http_calls.iter_mut().rev().find(|r| r.token == token) {
            r.result = result;
        }
    }

    pub(crate) fn set_grpc_result(&mut self, token: u32, result: CalloutResult) {
        if let Some(r) = self.grpc_calls.iter_mut().rev().find(|r| r.token == token) {
            r.result = result;
        }
    }

    pub(crate) fn push_grpc_message(&mut self, token: u32, message: &[u8]) {
        if let Some(r) = self.grpc_calls.iter_mut().rev().find(|r| r.token == token) {
            r.messages.push(ByteString(message.to_vec()));
        }
    }

    /// Takes queue notifications posted to this worker.
    /// True when a queue notification waits for this VM's next run.
    pub(crate) fn has_queue_notifications(&self) -> bool {
        !self
            .inbox
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    pub(crate) fn take_queue_notifications(&self) -> Vec<QueueReady> {
        let mut inbox = self.inbox.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *inbox)
    }

    /// Starts (or stops, with 0) the root context's tick timer.
    pub(crate) fn set_tick_period(&mut self, period_ms: u32) {
        self.tick_period_ms = period_ms;
        self.tick_generation += 1;
        if period_ms > 0 {
            let at = self.now_ms + u64::from(period_ms);
            let generation = self.tick_generation;
            self.schedule(at, Event::Tick { generation });
        }
    }
}

/// A cluster's answers are used in order, one per call; the last repeats
/// (`None` when the cluster has none: the call is reset).
fn next_answer<T: Clone>(answers: &[T], used: &mut usize) -> Option<T> {
    let answer = answers
        .get((*used).min(answers.len().saturating_sub(1)))
        .cloned();
    *used += 1;
    answer
}
