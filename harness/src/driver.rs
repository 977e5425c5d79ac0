//! Start-up and the HTTP lifecycle, driven the way Envoy drives one filter:
//! backend-agnostic, it only talks to a [`Vm`].
//!
//! The request flows client -> filter -> upstream, the response upstream ->
//! filter -> client. Each direction is a queue of frames (headers, body
//! chunks, trailers) and Envoy's iteration state: a headers Pause is
//! StopAllIteration (nothing more reaches the filter until it continues), a
//! body Pause is StopIterationAndBuffer (the next chunk is appended and the
//! filter sees the whole buffer). Stream actions the filter asks for are
//! applied after the running callback returns. While the stream waits,
//! virtual time jumps to the next event (callout answer, tick).

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};

use crate::abi::{Action, StreamType};
use crate::backend::wasm::CompiledModule;
use crate::backend::{Callback, Vm};
use crate::error::HarnessError;
use crate::host::{
    Deferred, Event, GrpcPlan, HeaderMap, Host, HttpPlan, LocalReplySpec, Phase, Scheduled,
    SharedHost, StreamState,
};
use crate::hostcalls::hostcall_name;
use crate::model::{
    ByteString, CalloutResult, ClusterSpec, DownstreamRequest, DownstreamResponse, Exchange,
    FailurePolicyApplied, HarnessConfig, HttpMessage, LocalReply, LogEntry, LogLevel,
    MetricSnapshot, Outcome, Properties, PropertyValue, StreamEnd, TraceEvent, TraceLevel,
    TrapReport, UpstreamResponse,
};

/// Which filter build to run.
#[derive(Clone)]
pub enum FilterModule {
    /// A compiled wasm module (shared, cheap to clone).
    Wasm(CompiledModule),
    /// The native twin: the same filter built as a host `cdylib`
    /// (no sandbox; the VM must stay on the thread that created it).
    #[cfg(unix)]
    Native(crate::backend::native::NativeLibrary),
}

impl FilterModule {
    /// Loads a filter by file type: an ELF shared library is the native
    /// twin, anything else is compiled as a wasm module.
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<FilterModule, HarnessError> {
        let path = path.as_ref();
        #[cfg(unix)]
        {
            let mut magic = [0u8; 4];
            let is_elf = std::fs::File::open(path)
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
                .is_ok()
                && &magic == b"\x7fELF";
            if is_elf && CompiledModule::is_precompiled(&std::fs::read(path).unwrap_or_default()) {
                return Ok(FilterModule::Wasm(CompiledModule::from_precompiled_file(
                    path,
                )?));
            }
            if is_elf {
                return Ok(FilterModule::Native(
                    crate::backend::native::NativeLibrary::from_file(path)?,
                ));
            }
        }
        Ok(FilterModule::Wasm(CompiledModule::from_file(path)?))
    }

    /// `"wasm"` or `"native"`.
    pub fn backend_name(&self) -> &'static str {
        match self {
            FilterModule::Wasm(_) => "wasm",
            #[cfg(unix)]
            FilterModule::Native(_) => "native",
        }
    }
}

#[cfg(unix)]
impl From<crate::backend::native::NativeLibrary> for FilterModule {
    fn from(m: crate::backend::native::NativeLibrary) -> Self {
        FilterModule::Native(m)
    }
}
#[cfg(unix)]
impl From<&crate::backend::native::NativeLibrary> for FilterModule {
    fn from(m: &crate::backend::native::NativeLibrary) -> Self {
        FilterModule::Native(m.clone())
    }
}

impl From<CompiledModule> for FilterModule {
    fn from(m: CompiledModule) -> Self {
        FilterModule::Wasm(m)
    }
}
impl From<&CompiledModule> for FilterModule {
    fn from(m: &CompiledModule) -> Self {
        FilterModule::Wasm(m.clone())
    }
}

/// One simulated Envoy worker running one plugin: a VM, its root context
/// (id 1) and the streams it creates (ids 2, 3, ...).
///
/// Independent instances share nothing unless created with
/// [`Harness::with_shared`] (then they share shared data, queues and
/// metrics, like two workers of one Envoy).
pub struct Harness {
    vm: Box<dyn Vm>,
    failure: Option<TrapReport>,
    /// The trap of the current exchange (reported once).
    new_trap: Option<TrapReport>,
    startup: Outcome,
    http_mark: usize,
    grpc_mark: usize,
    startup_durations: Vec<(&'static str, std::time::Duration)>,
    /// What a FAIL_RELOAD needs to start a fresh VM (set when the plugin asks for it).
    reload: Option<ReloadSource>,
    /// The failure policy applied in the current exchange.
    policy_applied: Option<FailurePolicyApplied>,
}

/// The module and configuration a failed VM is rebuilt from.
struct ReloadSource {
    module: FilterModule,
    config: HarnessConfig,
    shared: SharedHost,
}

/// One direction of the stream (request or response).
#[derive(Default)]
struct Flow<'a> {
    input: VecDeque<Frame<'a>>,
    /// Headers returned Pause: StopAllIteration until continued.
    stopped_all: bool,
    headers_eos: bool,
    /// Body returned Pause: StopIterationAndBuffer.
    body_paused: bool,
    /// Body paused on the last chunk: only a continue can end it.
    waiting_at_end: bool,
    trailers_paused: bool,
    /// End of stream passed the filter.
    ended: bool,
}

impl Flow<'_> {
    fn can_process(&self) -> bool {
        !self.stopped_all && !self.waiting_at_end && !self.trailers_paused && !self.ended
    }
}

enum Frame<'a> {
    Headers {
        map: HeaderMap,
        eos: bool,
    },
    /// Client and upstream bodies are borrowed from the exchange.
    Data {
        chunk: Cow<'a, [u8]>,
        eos: bool,
    },
    Trailers {
        map: HeaderMap,
    },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    Request,
    Response,
}

/// What one stream produced; driver-side state.
struct Run<'a> {
    id: u32,
    req: Flow<'a>,
    resp: Flow<'a>,
    upstream_answer: Option<&'a UpstreamResponse>,
    /// The upstream has been asked (the request reached it completely).
    response_started: bool,
    /// A local reply is running through the filter's response path.
    local_in_filter: bool,
    upstream: Option<HttpMessage>,
    /// The whole request (to end of stream) reached the upstream.
    upstream_complete: bool,
    client: Option<HttpMessage>,
    local_reply: Option<LocalReply>,
    end: Option<StreamEnd>,
    is_grpc: bool,
    /// The filter is bypassed (fail_open after a trap).
    bypass: bool,
    /// The chain's filters after this one (empty: the upstream is next).
    next: &'a mut [Harness],
    properties: &'a Properties,
    /// Streams the later filters ran, in chain order.
    inner: Vec<StreamDone>,
}

/// A stream one filter has run but not yet torn down.
pub(crate) struct StreamDone {
    id: u32,
    start_ms: u64,
    bypass: bool,
    end: Option<StreamEnd>,
    client: Option<HttpMessage>,
    upstream: Option<HttpMessage>,
    local_reply: Option<LocalReply>,
    pub(crate) inner: Vec<StreamDone>,
}

impl<'a> Run<'a> {
    fn flow(&mut self, dir: Dir) -> &mut Flow<'a> {
        match dir {
            Dir::Request => &mut self.req,
            Dir::Response => &mut self.resp,
        }
    }
}

fn request_header_map(req: &DownstreamRequest, request_id: &str) -> HeaderMap {
    let mut m = HeaderMap::default();
    let user_has = |name: &str| req.headers.contains(name);
    let authority = req
        .authority
        .clone()
        .or_else(|| req.headers.get_text("host"))
        .unwrap_or_else(|| "localhost".to_string());
    let defaults: [(&str, &str); 4] = [
        (":method", &req.method),
        (":path", &req.path),
        (":authority", &authority),
        (":scheme", &req.scheme),
    ];
    for (k, v) in defaults {
        match req.headers.get(k) {
            Some(user) => m.add(k.as_bytes(), user.as_bytes()),
            None => m.add(k.as_bytes(), v.as_bytes()),
        }
    }
    for (k, v) in req.headers.iter() {
        // HTTP/1 Host becomes :authority; pseudo-headers were placed first.
        if k.eq_ignore_ascii_case(b"host")
            || [&b":method"[..], b":path", b":authority", b":scheme"].contains(&k)
        {
            continue;
        }
        m.add(k, v);
    }
    if !user_has("x-forwarded-proto") {
        m.add(b"x-forwarded-proto", req.scheme.as_bytes());
    }
    if !user_has("x-request-id") {
        m.add(b"x-request-id", request_id.as_bytes());
    }
    m
}

fn body_frames<'a>(
    chunks: &'a [ByteString],
    trailers: Option<&crate::model::Headers>,
    out: &mut VecDeque<Frame<'a>>,
) {
    let data: Vec<&ByteString> = chunks.iter().filter(|c| !c.is_empty()).collect();
    let n = data.len();
    for (i, c) in data.into_iter().enumerate() {
        out.push_back(Frame::Data {
            chunk: Cow::Borrowed(c.as_bytes()),
            eos: i + 1 == n && trailers.is_none(),
        });
    }
    if let Some(t) = trailers {
        out.push_back(Frame::Trailers {
            map: HeaderMap::from_headers(t),
        });
    }
}

/// The request a chain filter forwarded, as the next filter's downstream
/// request (its pseudo-headers carry method, path, authority and scheme).
fn downstream_request_of(message: HttpMessage) -> DownstreamRequest {
    let pseudo = |name: &str| message.headers.get_text(name);
    DownstreamRequest {
        method: pseudo(":method").unwrap_or_else(|| "GET".to_string()),
        path: pseudo(":path").unwrap_or_else(|| "/".to_string()),
        authority: pseudo(":authority"),
        scheme: pseudo(":scheme").unwrap_or_else(|| "http".to_string()),
        body: crate::model::Body::single(message.body),
        headers: message.headers,
        trailers: message.trailers,
    }
}

fn is_grpc_request(h: &HeaderMap) -> bool {
    h.get(b"content-type")
        .is_some_and(|v| v.starts_with(b"application/grpc"))
}

impl Harness {
    /// Loads the module into a fresh VM and starts it the way Envoy does:
    /// `_initialize` (then `main`) or `_start`, `proxy_on_context_create(1, 0)`,
    /// `proxy_on_vm_start(1, vm_config_size)`, `proxy_on_configure(1, plugin_config_size)`.
    ///
    /// Errors: a trap during start-up, or the filter rejecting its
    /// configuration ([`HarnessError::ConfigurationRejected`] with its log lines).
    pub fn new(
        module: impl Into<FilterModule>,
        config: HarnessConfig,
    ) -> Result<Harness, HarnessError> {
        Self::with_shared(module, config, SharedHost::new())
    }

    /// Like [`Harness::new`], sharing process-wide state (shared data, queues,
    /// metrics) with other harnesses: one VM per worker.
    pub fn with_shared(
        module: impl Into<FilterModule>,
        config: HarnessConfig,
        shared: SharedHost,
    ) -> Result<Harness, HarnessError> {
        let module = module.into();
        let vm = Self::new_vm(&module, &config, &shared)?;
        let mut harness = Self::start(vm)?;
        if config.plugin.reload_on_failure {
            harness.reload = Some(ReloadSource {
                module,
                config,
                shared,
            });
        }
        Ok(harness)
    }

    fn new_vm(
        module: &FilterModule,
        config: &HarnessConfig,
        shared: &SharedHost,
    ) -> Result<Box<dyn Vm>, HarnessError> {
        let host = Host::new(config, shared.clone());
        Ok(match module {
            FilterModule::Wasm(m) => Box::new(m.instantiate(host)?),
            #[cfg(unix)]
            FilterModule::Native(lib) => Box::new(lib.instantiate(host)?),
        })
    }

    /// FAIL_RELOAD: replaces a failed VM with a fresh one (start-up run
    /// again, virtual time kept). On a start-up failure the VM stays failed.
    fn reload_failed_vm(&mut self) {
        let Some(source) = &self.reload else {
            return;
        };
        let now_ms = self.vm.host_ref().now_ms;
        let fresh = Self::new_vm(&source.module, &source.config, &source.shared).and_then(|vm| {
            let mut h = Self::start(vm)?;
            h.vm.host().now_ms = now_ms;
            Ok(h)
        });
        match fresh {
            Ok(h) => {
                self.vm = h.vm;
                self.failure = None;
                self.startup = h.startup;
                self.startup_durations = h.startup_durations;
                self.policy_applied = Some(FailurePolicyApplied::Reloaded);
                self.vm.host().harness_log(
                    LogLevel::Warn,
                    "VM reloaded after a failure (reload_on_failure)".to_string(),
                );
            }
            Err(e) => self.vm.host().harness_log(
                LogLevel::Critical,
                format!("VM reload after a failure failed: {e}"),
            ),
        }
    }

    /// Starts an already-instantiated VM (any backend).
    pub fn start(vm: Box<dyn Vm>) -> Result<Harness, HarnessError> {
        let mut h = Harness {
            vm,
            failure: None,
            new_trap: None,
            startup: Outcome::default(),
            http_mark: 0,
            grpc_mark: 0,
            startup_durations: Vec::new(),
            reload: None,
            policy_applied: None,
        };
        h.begin_capture();
        let se = h.vm.start_exports();
        h.vm.host().phase = Phase::Startup;
        if se.initialize {
            h.startup_invoke(Callback::Initialize);
            if se.main && h.failure.is_none() {
                h.startup_invoke(Callback::Main);
            }
        } else if se.start {
            h.startup_invoke(Callback::Start);
        }
        let root = h.vm.host_ref().root_context_id;
        if h.failure.is_none() {
            h.startup_invoke(Callback::ContextCreate {
                context_id: root,
                parent_id: 0,
            });
        }
        let vm_config_size = h.vm.host_ref().plugin().vm_config.len() as u64;
        let plugin_config_size = h.vm.host_ref().plugin().configuration.len() as u64;
        for callback in [
            Callback::VmStart {
                context_id: root,
                size: vm_config_size,
            },
            Callback::Configure {
                context_id: root,
                size: plugin_config_size,
            },
        ] {
            if h.failure.is_some() {
                break;
            }
            if h.startup_invoke(callback) == Some(0) {
                let logs = std::mem::take(&mut h.vm.host().logs);
                return Err(HarnessError::ConfigurationRejected {
                    callback: callback.name().to_string(),
                    logs,
                });
            }
        }
        h.vm.host().deferred.clear();
        if let Some(t) = h.failure.clone() {
            return Err(HarnessError::Trap {
                callback: t.callback,
                context_id: t.context_id,
                trap: t.trap,
                panic_message: t.panic_message,
            });
        }
        h.startup = h.finish_capture(0, None, 0);
        Ok(h)
    }

    /// Runs one request/response exchange through the filter until the
    /// stream completes, is reset, or stalls. Virtual time advances only
    /// while the stream waits for callouts or timers.
    ///
    /// A trap is not an `Err`: it is reported in [`Outcome::trap`] and the
    /// stream gets Envoy's fail-closed 503 (or passes through with `fail_open`).
    pub fn exchange(&mut self, exchange: &Exchange) -> Result<Outcome, HarnessError> {
        self.begin_exchange();
        let done = self.run_stream(exchange, &mut []);
        Ok(self.close_stream(done))
    }

    /// Prepares this worker for an exchange: the failure policy's reload,
    /// then a fresh capture of logs, trace and counts.
    pub(crate) fn begin_exchange(&mut self) {
        if self.failure.is_some() {
            self.reload_failed_vm();
        }
        let reloaded = self.policy_applied.take();
        self.begin_capture();
        self.policy_applied = reloaded;
    }

    /// Runs one stream through this filter until it completes, is reset or
    /// stalls, and leaves it open (see [`Harness::close_stream`]). What the
    /// filter lets through goes to `next`, the rest of a filter chain, or,
    /// when `next` is empty, to the exchange's scripted upstream.
    pub(crate) fn run_stream(&mut self, exchange: &Exchange, next: &mut [Harness]) -> StreamDone {
        let start_ms = self.vm.host_ref().now_ms;
        self.vm
            .host()
            .begin_exchange_properties(&exchange.properties);
        let host = self.vm.host();
        let id = host.next_context_id;
        host.next_context_id += 1;
        let mut request_id = [0u8; 16];
        host.fill_random(&mut request_id);
        let request_id = format_uuid(&request_id);
        let headers = request_header_map(&exchange.request, &request_id);
        let req = &exchange.request;
        let headers_eos = req.body.is_empty() && req.trailers.is_none();
        let mut run = Run {
            id,
            req: Flow::default(),
            resp: Flow::default(),
            upstream_answer: Some(&exchange.upstream),
            response_started: false,
            local_in_filter: false,
            upstream: None,
            upstream_complete: false,
            client: None,
            local_reply: None,
            end: None,
            is_grpc: is_grpc_request(&headers),
            bypass: false,
            next,
            properties: &exchange.properties,
            inner: Vec::new(),
        };
        run.req.input.push_back(Frame::Headers {
            map: headers,
            eos: headers_eos,
        });
        body_frames(&req.body.0, req.trailers.as_ref(), &mut run.req.input);

        let now_ns = host.now_unix_ns();
        host.stream = Some(StreamState {
            id,
            start_unix_ns: now_ns,
            ..Default::default()
        });
        if self.failure.is_some() {
            self.vm_already_failed(&mut run);
        } else {
            let root = self.vm.host_ref().root_context_id;
            if self
                .invoke(Callback::ContextCreate {
                    context_id: id,
                    parent_id: root,
                })
                .is_none()
            {
                self.after_trap(&mut run);
            }
        }
        self.event_loop(&mut run);
        StreamDone {
            id,
            start_ms,
            bypass: run.bypass,
            end: run.end.take(),
            client: run.client.take(),
            // A request cut short (local reply, reset, stall) never completed upstream.
            upstream: if run.upstream_complete {
                run.upstream.take()
            } else {
                None
            },
            local_reply: run.local_reply.take(),
            inner: std::mem::take(&mut run.inner),
        }
    }

    /// Ends a stream [`Harness::run_stream`] ran: on_log, on_done,
    /// on_delete, what became due for the root context, and the outcome.
    /// (`done.inner`, the chain's later filters, are closed by their owners.)
    pub(crate) fn close_stream(&mut self, done: StreamDone) -> Outcome {
        self.teardown(done.id, done.bypass);
        self.deliver_due_root_events();
        let elapsed = self.vm.host_ref().now_ms - done.start_ms;
        let response = match done.end {
            Some(StreamEnd::Stalled { .. }) => None,
            _ => done.client.map(|m| DownstreamResponse {
                status: status_of(&m.headers),
                message: m,
                reset: matches!(done.end, Some(StreamEnd::Reset)),
            }),
        };
        let mut outcome = self.finish_capture(done.id, done.end, elapsed);
        outcome.upstream_request = done.upstream;
        outcome.response = response;
        outcome.local_reply = done.local_reply;
        outcome
    }

    /// A chain filter the request never reached (an earlier filter
    /// answered it): like Envoy's Wasm filter, whose stream context is
    /// created at access-log time, it gets on_context_create, then on_log,
    /// on_done and on_delete, and no request or response callback.
    pub(crate) fn log_only_stream(&mut self) -> Outcome {
        let start_ms = self.vm.host_ref().now_ms;
        let host = self.vm.host();
        let id = host.next_context_id;
        host.next_context_id += 1;
        let start_unix_ns = host.now_unix_ns();
        host.stream = Some(StreamState {
            id,
            start_unix_ns,
            ..Default::default()
        });
        let root = host.root_context_id;
        if self.failure.is_none() {
            self.invoke(Callback::ContextCreate {
                context_id: id,
                parent_id: root,
            });
        }
        self.close_stream(StreamDone {
            id,
            start_ms,
            bypass: false,
            end: None,
            client: None,
            upstream: None,
            local_reply: None,
            inner: Vec::new(),
        })
    }

    /// Moves this worker's virtual clock forward to `now_ms` (a chain's
    /// filters share the stream's time). Timers that fell due meanwhile
    /// fire at the next chance.
    pub(crate) fn sync_clock(&mut self, now_ms: u64) {
        let host = self.vm.host();
        host.now_ms = host.now_ms.max(now_ms);
    }

    /// When the next timer, callout answer or queue event is due.
    pub(crate) fn next_event_at(&self) -> Option<u64> {
        self.vm.host_ref().next_event_at()
    }

    /// Shorthand for [`Harness::exchange`] without per-exchange properties.
    pub fn send(
        &mut self,
        request: &DownstreamRequest,
        upstream: &UpstreamResponse,
    ) -> Result<Outcome, HarnessError> {
        self.exchange(&Exchange {
            request: request.clone(),
            upstream: upstream.clone(),
            properties: Properties::new(),
        })
    }

    /// Advances virtual time by `ms` with no stream: fires `on_tick`s, delivers
    /// callout answers and queue notifications due in that window.
    pub fn advance(&mut self, ms: u64) -> Result<Outcome, HarnessError> {
        self.begin_capture();
        let start = self.vm.host_ref().now_ms;
        let target = start.saturating_add(ms);
        loop {
            self.deliver_queue_notifications(None);
            let host = self.vm.host_ref();
            match host.next_event_at() {
                Some(at) if at <= target => {
                    let Some(ev) = self.vm.host().pop_event() else {
                        break;
                    };
                    let host = self.vm.host();
                    host.now_ms = host.now_ms.max(ev.at_ms);
                    self.deliver(ev, None);
                }
                _ => break,
            }
        }
        self.vm.host().now_ms = target;
        Ok(self.finish_capture(0, Some(StreamEnd::NoStream), ms))
    }

    /// What happened during start-up (logs, trace, hostcalls, metrics).
    pub fn startup(&self) -> &Outcome {
        &self.startup
    }

    /// Log lines from start-up.
    pub fn startup_logs(&self) -> &[LogEntry] {
        &self.startup.logs
    }

    /// Replaces the cluster definitions (scripted callout answers).
    pub fn set_clusters(&mut self, clusters: Vec<ClusterSpec>) {
        self.vm.host().set_clusters(&clusters);
    }

    /// Sets a harness-level property (dotted path) for later exchanges.
    pub fn set_property(&mut self, path: &str, value: PropertyValue) {
        let mut p = Properties::new();
        p.insert(path.to_string(), value);
        self.vm.host().set_base_property(&p);
    }

    /// Current metric values.
    pub fn metrics(&self) -> Vec<MetricSnapshot> {
        self.vm.host_ref().shared().metrics()
    }

    /// The trap that failed this VM, if any.
    pub fn vm_failure(&self) -> Option<&TrapReport> {
        self.failure.as_ref()
    }

    /// The state shared with other workers.
    pub fn shared(&self) -> SharedHost {
        self.vm.host_ref().shared().clone()
    }

    /// Virtual milliseconds since this harness started.
    pub fn now_ms(&self) -> u64 {
        self.vm.host_ref().now_ms
    }

    /// What crossed the guest boundary since the VM started (cumulative).
    pub fn guest_traffic(&self) -> crate::host::GuestTraffic {
        self.vm.host_ref().traffic
    }

    /// Wall-clock time of each start-up callback, in call order.
    pub fn startup_durations(&self) -> &[(&'static str, std::time::Duration)] {
        &self.startup_durations
    }

    // ---- capture ----------------------------------------------------------

    fn begin_capture(&mut self) {
        self.new_trap = None;
        self.policy_applied = None;
        let host = self.vm.host();
        host.logs.clear();
        host.trace.clear();
        host.hostcall_counts.iter_mut().for_each(|c| *c = 0);
        host.http_calls
            .retain(|r| r.result == CalloutResult::Pending);
        host.grpc_calls
            .retain(|r| r.result == CalloutResult::Pending);
        self.http_mark = host.http_calls.len();
        self.grpc_mark = host.grpc_calls.len();
    }

    fn finish_capture(
        &mut self,
        context_id: u32,
        end: Option<StreamEnd>,
        elapsed_ms: u64,
    ) -> Outcome {
        let host = self.vm.host();
        let hostcalls: BTreeMap<String, u64> = host
            .hostcall_counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| (hostcall_name(i).to_string(), *c))
            .collect();
        Outcome {
            context_id,
            upstream_request: None,
            response: None,
            local_reply: None,
            end: end.unwrap_or_default(),
            logs: std::mem::take(&mut host.logs),
            metrics: host.shared().metrics(),
            http_calls: host
                .http_calls
                .get(self.http_mark..)
                .map(<[_]>::to_vec)
                .unwrap_or_default(),
            grpc_calls: host
                .grpc_calls
                .get(self.grpc_mark..)
                .map(<[_]>::to_vec)
                .unwrap_or_default(),
            hostcalls,
            trace: std::mem::take(&mut host.trace),
            trap: self.new_trap.take(),
            failure_policy: self.policy_applied.take(),
            elapsed_ms,
        }
    }

    // ---- calling the guest ------------------------------------------------

    /// [`Harness::invoke`] for a start-up callback, timed.
    fn startup_invoke(&mut self, cb: Callback) -> Option<u64> {
        let started = std::time::Instant::now();
        let result = self.invoke(cb);
        self.startup_durations.push((cb.name(), started.elapsed()));
        result
    }

    /// Calls a guest export in its context; `None` if it trapped (the VM is
    /// then failed) or the VM had already failed.
    fn invoke(&mut self, cb: Callback) -> Option<u64> {
        if self.failure.is_some() {
            return None;
        }
        let host = self.vm.host();
        let ctx = cb.context_id();
        host.active_context = ctx;
        host.effective_context = ctx;
        host.phase = match cb {
            Callback::Initialize | Callback::Main | Callback::Start => Phase::Startup,
            _ => Phase::Callback,
        };
        // Envoy's temp_plugin_: the plugin configuration exists while the
        // root context is created and configured (proxy-wasm-cpp-host
        // ContextBase::onStart / onConfigure), in no other callback.
        host.configuring = matches!(
            cb,
            Callback::Configure { .. } | Callback::ContextCreate { parent_id: 0, .. }
        );
        host.access_log = matches!(cb, Callback::Log { .. });
        host.trailers_on_demand = match cb {
            Callback::RequestBody {
                end_of_stream: true,
                ..
            } => Some(crate::abi::MapType::HttpRequestTrailers),
            Callback::ResponseBody {
                end_of_stream: true,
                ..
            } => Some(crate::abi::MapType::HttpResponseTrailers),
            _ => None,
        };
        let log_mark = host.logs.len();
        // The callback is traced before its hostcalls; its result is filled in after.
        let trace_slot = (host.trace_level != TraceLevel::Off).then(|| {
            let at_ms = host.now_ms;
            let mut args = cb.args();
            // ABI 0.1.0 header callbacks have no end_of_stream argument.
            if host.abi == crate::abi::AbiVersion::V0_1_0
                && matches!(
                    cb,
                    Callback::RequestHeaders { .. } | Callback::ResponseHeaders { .. }
                )
            {
                args.truncate(2);
            }
            host.trace.push(TraceEvent::Callback {
                name: cb.name().to_string(),
                args,
                result: None,
                at_ms,
            });
            host.trace.len() - 1
        });
        host.traffic.callbacks += 1;
        let result = self.vm.call(cb);
        let host = self.vm.host();
        host.phase = Phase::Callback;
        let result = match (result, host.pending_fault.take()) {
            (Ok(_), Some(fault)) => Err(fault),
            (r, _) => r,
        };
        if let Some(TraceEvent::Callback { result: slot, .. }) =
            trace_slot.and_then(|i| host.trace.get_mut(i))
        {
            *slot = result.as_ref().ok().copied();
        }
        match result {
            Ok(v) => Some(v),
            Err(trap) => {
                let panic_message = host.logs[log_mark..]
                    .iter()
                    .rev()
                    .find(|l| l.level >= LogLevel::Error)
                    .map(|l| l.message.clone());
                let report = TrapReport {
                    callback: cb.name().to_string(),
                    context_id: ctx,
                    trap,
                    panic_message,
                };
                host.harness_log(
                    LogLevel::Critical,
                    format!(
                        "VM failed: trap in {} (context {}): {}",
                        report.callback, report.context_id, report.trap
                    ),
                );
                host.deferred.clear();
                self.failure = Some(report.clone());
                self.new_trap = Some(report);
                None
            }
        }
    }

    fn fail_open(&self) -> bool {
        self.vm.host_ref().plugin().fail_open
    }

    /// Calls a stream callback; `None` when the stream must not go on
    /// (trap without fail_open: the 503 is already applied).
    fn stream_callback(&mut self, run: &mut Run<'_>, cb: Callback) -> Option<Action> {
        if run.bypass {
            return Some(Action::Continue);
        }
        match self.invoke(cb) {
            Some(v) => {
                let forced_stop = self
                    .vm
                    .host_ref()
                    .deferred
                    .iter()
                    .any(|d| matches!(d, Deferred::LocalReply { .. }));
                Some(if forced_stop {
                    Action::Pause
                } else {
                    Action::from_raw(v)
                })
            }
            None => {
                self.after_trap(run);
                if run.bypass {
                    Some(Action::Continue)
                } else {
                    None
                }
            }
        }
    }

    /// Envoy's failure policy for the stream in flight.
    fn after_trap(&mut self, run: &mut Run<'_>) {
        self.policy_applied = Some(if self.fail_open() {
            FailurePolicyApplied::FailOpen
        } else {
            FailurePolicyApplied::FailClosed
        });
        if self.fail_open() {
            // The filter is gone: whatever it held back flows on.
            run.bypass = true;
            self.resume(run, Dir::Request);
            self.resume(run, Dir::Response);
        } else {
            self.local_reply(run, fail_closed_reply(), "harness", true);
        }
    }

    fn vm_already_failed(&mut self, run: &mut Run<'_>) {
        self.policy_applied = Some(if self.fail_open() {
            FailurePolicyApplied::FailOpen
        } else {
            FailurePolicyApplied::FailClosed
        });
        if self.fail_open() {
            run.bypass = true;
        } else {
            self.local_reply(run, fail_closed_reply(), "harness", true);
        }
    }

    // ---- the stream ---------------------------------------------------------

    fn event_loop(&mut self, run: &mut Run<'_>) {
        let mut blocked_since = self.vm.host_ref().now_ms;
        loop {
            self.drive(run);
            if run.end.is_some() {
                return;
            }
            if self.deliver_queue_notifications(Some(run)) {
                continue;
            }
            self.skip_stale_events();
            let host = self.vm.host_ref();
            let Some(at) = host.next_event_at() else {
                run.end = Some(StreamEnd::Stalled {
                    reason: stall_reason(run, "no callout, timer or queue event is pending"),
                });
                return;
            };
            if !host.has_non_tick_event()
                && at.saturating_sub(blocked_since) > host.stall_timeout_ms
            {
                let reason = format!(
                    "only timer ticks were pending for {} virtual ms (stall_timeout_ms)",
                    host.stall_timeout_ms
                );
                run.end = Some(StreamEnd::Stalled {
                    reason: stall_reason(run, &reason),
                });
                return;
            }
            let Some(ev) = self.vm.host().pop_event() else {
                continue;
            };
            let host = self.vm.host();
            host.now_ms = host.now_ms.max(ev.at_ms);
            if !matches!(ev.event, Event::Tick { .. }) {
                blocked_since = host.now_ms;
            }
            self.deliver(ev, Some(run));
        }
    }

    /// Runs both directions until the stream ends or waits.
    fn drive(&mut self, run: &mut Run<'_>) {
        loop {
            if run.end.is_some() {
                return;
            }
            if run.req.can_process()
                && let Some(frame) = run.req.input.pop_front()
            {
                self.process(run, Dir::Request, frame);
                continue;
            }
            if run.req.ended && !run.response_started {
                run.response_started = true;
                if !run.next.is_empty() {
                    self.pass_to_next_filter(run);
                    continue;
                }
                if run.upstream_answer.is_some_and(|a| a.unreachable) {
                    // The request never reached a live upstream.
                    run.upstream_complete = false;
                    run.upstream = None;
                    self.local_reply(run, upstream_unreachable_reply(), "harness", false);
                    continue;
                }
                if let Some(answer) = run.upstream_answer.take() {
                    let mut h = HeaderMap::default();
                    h.add(b":status", answer.status.to_string().as_bytes());
                    for (k, v) in answer.headers.iter() {
                        h.add(k, v);
                    }
                    let eos = answer.body.is_empty() && answer.trailers.is_none();
                    run.resp.input.push_back(Frame::Headers { map: h, eos });
                    body_frames(
                        &answer.body.0,
                        answer.trailers.as_ref(),
                        &mut run.resp.input,
                    );
                }
                continue;
            }
            if run.resp.can_process()
                && let Some(frame) = run.resp.input.pop_front()
            {
                self.process(run, Dir::Response, frame);
                continue;
            }
            if run.resp.ended {
                run.end = Some(StreamEnd::Completed);
            }
            return;
        }
    }

    /// Filter chain: the request as this filter let it through is the next
    /// filter's downstream request, and what the client of the next filter
    /// received (the upstream's answer or a local reply) is this filter's
    /// upstream response, delivered in reverse chain order.
    fn pass_to_next_filter(&mut self, run: &mut Run<'_>) {
        let next = std::mem::take(&mut run.next);
        let (Some((filter, rest)), Some(upstream)) =
            (next.split_first_mut(), run.upstream_answer.take())
        else {
            return;
        };
        let exchange = Exchange {
            request: downstream_request_of(run.upstream.clone().unwrap_or_default()),
            upstream: upstream.clone(),
            properties: run.properties.clone(),
        };
        filter.sync_clock(self.now_ms());
        let mut done = filter.run_stream(&exchange, rest);
        self.sync_clock(filter.now_ms());
        match &done.end {
            Some(StreamEnd::Completed) | None => {
                if let Some(client) = &done.client {
                    let trailers = client.trailers.as_ref().map(HeaderMap::from_headers);
                    let body_eos = trailers.is_none();
                    let eos = client.body.is_empty() && body_eos;
                    run.resp.input.push_back(Frame::Headers {
                        map: HeaderMap::from_headers(&client.headers),
                        eos,
                    });
                    if !client.body.is_empty() {
                        run.resp.input.push_back(Frame::Data {
                            chunk: Cow::Owned(client.body.0.clone()),
                            eos: body_eos,
                        });
                    }
                    if let Some(map) = trailers {
                        run.resp.input.push_back(Frame::Trailers { map });
                    }
                }
            }
            Some(end) => run.end = Some(end.clone()),
        }
        let later = std::mem::take(&mut done.inner);
        run.inner.push(done);
        run.inner.extend(later);
    }

    fn process(&mut self, run: &mut Run<'_>, dir: Dir, frame: Frame) {
        let id = run.id;
        match frame {
            Frame::Headers { map, eos } => {
                let n = map.len() as u64;
                if let Some(s) = self.vm.host().stream.as_mut() {
                    match dir {
                        Dir::Request => s.request_headers = Some(map),
                        Dir::Response => s.response_headers = Some(map),
                    }
                }
                let cb = match dir {
                    Dir::Request => Callback::RequestHeaders {
                        context_id: id,
                        headers: n,
                        end_of_stream: eos,
                    },
                    Dir::Response => Callback::ResponseHeaders {
                        context_id: id,
                        headers: n,
                        end_of_stream: eos,
                    },
                };
                let Some(action) = self.stream_callback(run, cb) else {
                    return;
                };
                let flow = run.flow(dir);
                flow.headers_eos = eos;
                match action {
                    Action::Continue => self.forward_headers(run, dir, eos),
                    Action::Pause => flow.stopped_all = true,
                }
            }
            Frame::Data { chunk, eos } => {
                let size = {
                    let Some(s) = self.vm.host().stream.as_mut() else {
                        return;
                    };
                    let (buf, count) = match dir {
                        Dir::Request => (&mut s.request_body, &mut s.request_body_bytes),
                        Dir::Response => (&mut s.response_body, &mut s.response_body_bytes),
                    };
                    *count += chunk.len() as u64;
                    buf.extend_from_slice(&chunk);
                    buf.len() as u64
                };
                let cb = match dir {
                    Dir::Request => Callback::RequestBody {
                        context_id: id,
                        size,
                        end_of_stream: eos,
                    },
                    Dir::Response => Callback::ResponseBody {
                        context_id: id,
                        size,
                        end_of_stream: eos,
                    },
                };
                let was_buffering = run.flow(dir).body_paused;
                let Some(action) = self.stream_callback(run, cb) else {
                    return;
                };
                // Envoy moves a chunk into the filter's buffer when the filter
                // buffers it, or continues after buffering: that buffer is
                // limited.
                let buffered = action == Action::Pause || was_buffering;
                let limit = self.vm.host_ref().buffer_limit;
                if buffered
                    && !run.bypass
                    && self.current_buffer_len(dir) > limit
                    && !self.has_pending_local_reply()
                {
                    self.buffer_overflow(run, dir);
                } else {
                    match action {
                        Action::Continue => {
                            run.flow(dir).body_paused = false;
                            self.forward_body(run, dir, eos);
                        }
                        Action::Pause => {
                            let flow = run.flow(dir);
                            flow.body_paused = true;
                            flow.waiting_at_end = eos;
                        }
                    }
                }
            }
            Frame::Trailers { map } => {
                let n = map.len() as u64;
                if let Some(s) = self.vm.host().stream.as_mut() {
                    match dir {
                        Dir::Request => s.request_trailers = Some(map),
                        Dir::Response => s.response_trailers = Some(map),
                    }
                }
                let cb = match dir {
                    Dir::Request => Callback::RequestTrailers {
                        context_id: id,
                        trailers: n,
                    },
                    Dir::Response => Callback::ResponseTrailers {
                        context_id: id,
                        trailers: n,
                    },
                };
                let Some(action) = self.stream_callback(run, cb) else {
                    return;
                };
                match action {
                    Action::Continue => self.forward_trailers(run, dir),
                    Action::Pause => run.flow(dir).trailers_paused = true,
                }
            }
        }
        self.apply_deferred(run);
    }

    fn has_pending_local_reply(&self) -> bool {
        self.vm
            .host_ref()
            .deferred
            .iter()
            .any(|d| matches!(d, Deferred::LocalReply { .. }))
    }

    fn current_buffer_len(&self, dir: Dir) -> u64 {
        self.vm.host_ref().stream.as_ref().map_or(0, |s| match dir {
            Dir::Request => s.request_body.len() as u64,
            Dir::Response => s.response_body.len() as u64,
        })
    }

    fn buffer_overflow(&mut self, run: &mut Run<'_>, dir: Dir) {
        let (status, body, details) = match dir {
            Dir::Request => (413, "Payload Too Large", "request_payload_too_large"),
            Dir::Response => (500, "Internal Server Error", "response_payload_too_large"),
        };
        let limit = self.vm.host_ref().buffer_limit;
        self.vm.host().harness_log(
            LogLevel::Warn,
            format!(
                "buffered {dir} body exceeds the {limit}-byte buffer limit",
                dir = match dir {
                    Dir::Request => "request",
                    Dir::Response => "response",
                }
            ),
        );
        let spec = LocalReplySpec {
            status,
            details: details.to_string(),
            body: body.as_bytes().to_vec(),
            headers: HeaderMap::default(),
            grpc_status: -1,
        };
        self.local_reply(run, spec, "harness", false);
    }

    fn target<'r>(run: &'r mut Run<'_>, dir: Dir) -> &'r mut HttpMessage {
        let slot = match dir {
            Dir::Request => &mut run.upstream,
            Dir::Response => &mut run.client,
        };
        slot.get_or_insert_with(HttpMessage::default)
    }

    fn forward_headers(&mut self, run: &mut Run<'_>, dir: Dir, eos: bool) {
        let headers = self.vm.host_ref().stream.as_ref().and_then(|s| match dir {
            Dir::Request => s.request_headers.as_ref(),
            Dir::Response => s.response_headers.as_ref(),
        });
        let headers = headers.map(HeaderMap::to_headers).unwrap_or_default();
        Self::target(run, dir).headers = headers;
        let flow = run.flow(dir);
        flow.stopped_all = false;
        if eos {
            flow.ended = true;
            run.upstream_complete |= dir == Dir::Request;
        }
    }

    fn forward_body(&mut self, run: &mut Run<'_>, dir: Dir, eos: bool) {
        let data = self.vm.host().stream.as_mut().map(|s| match dir {
            Dir::Request => std::mem::take(&mut s.request_body),
            Dir::Response => std::mem::take(&mut s.response_body),
        });
        if let Some(data) = data {
            let body = &mut Self::target(run, dir).body.0;
            if body.is_empty() {
                *body = data;
            } else {
                body.extend_from_slice(&data);
            }
        }
        if eos {
            // Trailers the filter created in its last body callback.
            let created = self.vm.host_ref().stream.as_ref().and_then(|s| match dir {
                Dir::Request => s.request_trailers.as_ref(),
                Dir::Response => s.response_trailers.as_ref(),
            });
            if let Some(trailers) = created.map(HeaderMap::to_headers) {
                Self::target(run, dir).trailers = Some(trailers);
            }
        }
        let flow = run.flow(dir);
        flow.body_paused = false;
        flow.waiting_at_end = false;
        if eos {
            flow.ended = true;
            run.upstream_complete |= dir == Dir::Request;
        }
    }

    fn forward_trailers(&mut self, run: &mut Run<'_>, dir: Dir) {
        self.forward_body(run, dir, false);
        let trailers = self.vm.host_ref().stream.as_ref().and_then(|s| match dir {
            Dir::Request => s.request_trailers.as_ref(),
            Dir::Response => s.response_trailers.as_ref(),
        });
        let trailers = trailers.map(HeaderMap::to_headers);
        Self::target(run, dir).trailers = trailers;
        let flow = run.flow(dir);
        flow.trailers_paused = false;
        flow.ended = true;
        run.upstream_complete |= dir == Dir::Request;
    }

    /// `proxy_continue_stream` applied: resume where the direction stopped.
    fn resume(&mut self, run: &mut Run<'_>, dir: Dir) {
        let flow = run.flow(dir);
        if flow.ended {
            return;
        }
        if flow.stopped_all {
            let eos = flow.headers_eos;
            // Everything that arrived while stopped is delivered as one chunk.
            let mut merged: Vec<u8> = Vec::new();
            let mut merged_eos = false;
            let mut any = false;
            while let Some(Frame::Data { .. }) = flow.input.front() {
                if let Some(Frame::Data { chunk, eos }) = flow.input.pop_front() {
                    merged.extend_from_slice(&chunk);
                    merged_eos = eos;
                    any = true;
                }
            }
            if any {
                flow.input.push_front(Frame::Data {
                    chunk: Cow::Owned(merged),
                    eos: merged_eos,
                });
            }
            self.forward_headers(run, dir, eos);
        } else if flow.trailers_paused {
            self.forward_trailers(run, dir);
        } else if flow.waiting_at_end {
            self.forward_body(run, dir, true);
        } else if flow.body_paused {
            self.forward_body(run, dir, false);
        }
    }

    /// Applies the stream actions the last callback asked for.
    fn apply_deferred(&mut self, run: &mut Run<'_>) {
        let actions = std::mem::take(&mut self.vm.host().deferred);
        for action in actions {
            if run.end.is_some() {
                break;
            }
            match action {
                Deferred::Continue { context_id, stream } if context_id == run.id => match stream {
                    StreamType::HttpRequest => self.resume(run, Dir::Request),
                    StreamType::HttpResponse => self.resume(run, Dir::Response),
                    _ => {}
                },
                Deferred::Close { context_id, .. } if context_id == run.id => {
                    run.end = Some(StreamEnd::Reset);
                }
                Deferred::LocalReply { context_id, reply } if context_id == run.id => {
                    self.local_reply(run, reply, "filter", false);
                }
                _ => {}
            }
        }
    }

    /// Envoy's sendLocalReply: through the filter's response path if the
    /// response has not started, directly if upstream headers exist but were
    /// not sent, a reset if the client already has headers.
    fn local_reply(
        &mut self,
        run: &mut Run<'_>,
        spec: LocalReplySpec,
        source: &str,
        vm_failed: bool,
    ) {
        let status = u16::try_from(spec.status).unwrap_or(500);
        let mut headers = HeaderMap::default();
        let mut body = spec.body.clone();
        headers.add(b":status", status.to_string().as_bytes());
        let grpc = spec.grpc_status >= 0 && run.is_grpc;
        if grpc {
            headers.replace(b":status", b"200");
            headers.add(b"content-type", b"application/grpc");
            headers.add(b"grpc-status", spec.grpc_status.to_string().as_bytes());
            if !body.is_empty() {
                headers.add(b"grpc-message", &body);
            }
            body.clear();
        }
        for (k, v) in spec.headers.iter() {
            headers.add(k, v);
        }
        if !grpc {
            headers.replace(b"content-length", body.len().to_string().as_bytes());
            if !body.is_empty() && headers.get(b"content-type").is_none() {
                headers.add(b"content-type", b"text/plain");
            }
        }
        run.local_reply = Some(LocalReply {
            status,
            body: ByteString(spec.body.clone()),
            headers: spec.headers.to_headers(),
            details: spec.details.clone(),
            grpc_status: (spec.grpc_status >= 0).then_some(spec.grpc_status),
            source: source.to_string(),
        });
        if let Some(s) = self.vm.host().stream.as_mut() {
            s.response_code_details = Some(spec.details.clone());
        }
        let client_has_headers = run.client.as_ref().is_some_and(|c| !c.headers.is_empty());
        if client_has_headers {
            run.end = Some(StreamEnd::Reset);
            return;
        }
        // The request side stops here.
        run.req.input.clear();
        run.req.stopped_all = false;
        run.req.body_paused = false;
        run.req.waiting_at_end = false;
        run.req.trailers_paused = false;
        run.req.ended = true;
        run.response_started = true;
        run.upstream_answer = None;
        let through_filter =
            !vm_failed && !run.bypass && !run.local_in_filter && !self.response_headers_seen();
        if through_filter {
            run.local_in_filter = true;
            run.resp = Flow::default();
            let eos = body.is_empty();
            run.resp
                .input
                .push_back(Frame::Headers { map: headers, eos });
            if !eos {
                run.resp.input.push_back(Frame::Data {
                    chunk: Cow::Owned(body),
                    eos: true,
                });
            }
            if let Some(s) = self.vm.host().stream.as_mut() {
                s.response_body.clear();
            }
        } else {
            run.client = Some(HttpMessage {
                headers: headers.to_headers(),
                body: ByteString(body),
                trailers: None,
            });
            run.end = Some(StreamEnd::Completed);
        }
    }

    fn response_headers_seen(&self) -> bool {
        self.vm
            .host_ref()
            .stream
            .as_ref()
            .is_some_and(|s| s.response_headers.is_some())
    }

    /// on_log, on_done, on_delete; cancels what the stream left in flight.
    fn teardown(&mut self, id: u32, bypass: bool) {
        if !bypass && self.failure.is_none() {
            for cb in [
                Callback::Log { context_id: id },
                Callback::Done { context_id: id },
                Callback::Delete { context_id: id },
            ] {
                if self.invoke(cb).is_none() {
                    break;
                }
            }
        }
        let host = self.vm.host();
        host.deferred.clear();
        host.cancel_callouts_of(id);
        host.stream = None;
    }

    // ---- events -------------------------------------------------------------

    fn skip_stale_events(&mut self) {
        loop {
            let host = self.vm.host_ref();
            let stale = match host.peek_event() {
                Some(Scheduled {
                    event: Event::HttpAnswer { token },
                    ..
                }) => !host.http_pending.contains_key(&token),
                Some(Scheduled {
                    event: Event::GrpcAnswer { token },
                    ..
                }) => !host.grpc_pending.contains_key(&token),
                Some(Scheduled {
                    event: Event::Tick { generation },
                    ..
                }) => generation != host.tick_generation || host.tick_period_ms == 0,
                None => false,
            };
            if !stale {
                return;
            }
            self.vm.host().pop_event();
        }
    }

    /// Delivers everything already due (queue notifications, zero-delay
    /// answers to the root context) after a stream ends.
    fn deliver_due_root_events(&mut self) {
        loop {
            self.deliver_queue_notifications(None);
            self.skip_stale_events();
            let host = self.vm.host_ref();
            match host.next_event_at() {
                Some(at) if at <= host.now_ms => {
                    if let Some(ev) = self.vm.host().pop_event() {
                        self.deliver(ev, None);
                    }
                }
                _ => return,
            }
        }
    }

    fn deliver_queue_notifications(&mut self, mut run: Option<&mut Run<'_>>) -> bool {
        let ready = self.vm.host_ref().take_queue_notifications();
        let any = !ready.is_empty();
        for q in ready {
            self.invoke(Callback::QueueReady {
                context_id: q.root_context_id,
                queue_id: q.queue_id,
            });
            self.after_root_callback(run.as_deref_mut());
        }
        any
    }

    fn after_root_callback(&mut self, run: Option<&mut Run<'_>>) {
        match run {
            Some(run) => {
                if self.new_trap.is_some()
                    && run.end.is_none()
                    && !run.bypass
                    && self.failure.is_some()
                {
                    self.after_trap(run);
                }
                self.apply_deferred(run);
            }
            None => self.vm.host().deferred.clear(),
        }
    }

    fn deliver(&mut self, ev: Scheduled, mut run: Option<&mut Run<'_>>) {
        let root = self.vm.host_ref().root_context_id;
        match ev.event {
            Event::Tick { generation } => {
                let host = self.vm.host();
                if generation != host.tick_generation || host.tick_period_ms == 0 {
                    return;
                }
                let next = ev.at_ms + u64::from(host.tick_period_ms);
                host.schedule(next, Event::Tick { generation });
                self.invoke(Callback::Tick { context_id: root });
                self.after_root_callback(run);
            }
            Event::HttpAnswer { token } => {
                let Some(pending) = self.vm.host().http_pending.remove(&token) else {
                    return;
                };
                let host = self.vm.host();
                let cb = match pending.plan {
                    HttpPlan::Respond {
                        headers,
                        body,
                        trailers,
                    } => {
                        let status = status_of(&headers.to_headers());
                        let cb = Callback::HttpCallResponse {
                            context_id: root,
                            token,
                            headers: headers.len() as u64,
                            body_size: body.len() as u64,
                            trailers: trailers.len() as u64,
                        };
                        host.status_code = 0;
                        host.status_message.clear();
                        host.delivery.http_headers = Some(headers);
                        host.delivery.http_body = Some(body);
                        host.delivery.http_trailers = Some(trailers);
                        host.set_http_result(
                            token,
                            CalloutResult::Answered {
                                status: u32::from(status),
                            },
                        );
                        cb
                    }
                    HttpPlan::Fail { code, reason } => {
                        host.status_code = code;
                        host.status_message = reason.as_bytes().to_vec();
                        host.set_http_result(
                            token,
                            CalloutResult::Failed {
                                reason: reason.to_string(),
                            },
                        );
                        Callback::HttpCallResponse {
                            context_id: root,
                            token,
                            headers: 0,
                            body_size: 0,
                            trailers: 0,
                        }
                    }
                };
                self.invoke(cb);
                self.vm.host().delivery = Default::default();
                self.after_root_callback(run);
            }
            Event::GrpcAnswer { token } => {
                let Some(pending) = self.vm.host_ref().grpc_pending.get(&token).cloned() else {
                    return;
                };
                let steps = grpc_steps(pending.streaming, &pending.plan);
                for step in steps {
                    if !self.vm.host_ref().grpc_pending.contains_key(&token)
                        || self.failure.is_some()
                    {
                        break;
                    }
                    let host = self.vm.host();
                    let cb = match step {
                        GrpcStep::Initial(map) => {
                            let n = map.len() as u64;
                            host.delivery.grpc_initial_metadata = Some(map);
                            Callback::GrpcReceiveInitialMetadata {
                                context_id: root,
                                token,
                                headers: n,
                            }
                        }
                        GrpcStep::Message(m) => {
                            let n = m.len() as u64;
                            host.status_code = 0;
                            host.status_message.clear();
                            host.delivery.grpc_message = Some(m);
                            Callback::GrpcReceive {
                                context_id: root,
                                token,
                                size: n,
                            }
                        }
                        GrpcStep::Trailing(map) => {
                            let n = map.len() as u64;
                            host.delivery.grpc_trailing_metadata = Some(map);
                            Callback::GrpcReceiveTrailingMetadata {
                                context_id: root,
                                token,
                                trailers: n,
                            }
                        }
                        GrpcStep::Close {
                            status,
                            message,
                            failed,
                        } => {
                            host.status_code = status;
                            host.status_message = message.clone().into_bytes();
                            host.grpc_pending.remove(&token);
                            host.set_grpc_result(
                                token,
                                if failed {
                                    CalloutResult::Failed { reason: message }
                                } else {
                                    CalloutResult::Answered { status }
                                },
                            );
                            Callback::GrpcClose {
                                context_id: root,
                                token,
                                status,
                            }
                        }
                        GrpcStep::UnaryMessage(m) => {
                            let n = m.len() as u64;
                            host.status_code = 0;
                            host.status_message.clear();
                            host.delivery.grpc_message = Some(m);
                            host.grpc_pending.remove(&token);
                            host.set_grpc_result(token, CalloutResult::Answered { status: 0 });
                            Callback::GrpcReceive {
                                context_id: root,
                                token,
                                size: n,
                            }
                        }
                    };
                    self.invoke(cb);
                    self.vm.host().delivery = Default::default();
                    self.after_root_callback(run.as_deref_mut());
                }
            }
        }
    }
}

enum GrpcStep {
    Initial(HeaderMap),
    Message(Vec<u8>),
    Trailing(HeaderMap),
    Close {
        status: u32,
        message: String,
        failed: bool,
    },
    /// A unary success: `on_grpc_receive` and nothing after it.
    UnaryMessage(Vec<u8>),
}

fn grpc_steps(streaming: bool, plan: &GrpcPlan) -> Vec<GrpcStep> {
    match plan {
        GrpcPlan::Fail { code, reason } => {
            vec![GrpcStep::Close {
                status: *code,
                message: reason.to_string(),
                failed: true,
            }]
        }
        GrpcPlan::Answer(a) if !streaming => {
            if a.status == 0 {
                let first = a.messages.first().map(|m| m.0.clone()).unwrap_or_default();
                vec![GrpcStep::UnaryMessage(first)]
            } else {
                vec![GrpcStep::Close {
                    status: a.status,
                    message: a.message.clone(),
                    failed: false,
                }]
            }
        }
        GrpcPlan::Answer(a) => {
            let mut steps = Vec::new();
            if !a.initial_metadata.is_empty() {
                steps.push(GrpcStep::Initial(HeaderMap::from_headers(
                    &a.initial_metadata,
                )));
            }
            for m in &a.messages {
                steps.push(GrpcStep::Message(m.0.clone()));
            }
            if !a.trailing_metadata.is_empty() {
                steps.push(GrpcStep::Trailing(HeaderMap::from_headers(
                    &a.trailing_metadata,
                )));
            }
            steps.push(GrpcStep::Close {
                status: a.status,
                message: a.message.clone(),
                failed: false,
            });
            steps
        }
    }
}

fn fail_closed_reply() -> LocalReplySpec {
    LocalReplySpec {
        status: 503,
        details: "wasm_fail_stream".to_string(),
        body: Vec::new(),
        headers: HeaderMap::default(),
        grpc_status: 14,
    }
}

/// Envoy's router reply when the upstream connection fails before the
/// response started.
fn upstream_unreachable_reply() -> LocalReplySpec {
    LocalReplySpec {
        status: 503,
        details: "upstream_reset_before_response_started{connection_failure}".to_string(),
        body: b"upstream connect error or disconnect/reset before headers. reset reason: connection failure".to_vec(),
        headers: HeaderMap::default(),
        grpc_status: 14,
    }
}

fn status_of(headers: &crate::model::Headers) -> u16 {
    headers
        .get(":status")
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok()?.parse().ok())
        .unwrap_or(0)
}

fn stall_reason(run: &Run, why: &str) -> String {
    let (dir, flow) = if !run.req.ended {
        ("request", &run.req)
    } else {
        ("response", &run.resp)
    };
    let at = if flow.stopped_all {
        "headers (the headers callback returned Pause)"
    } else if flow.trailers_paused {
        "trailers (the trailers callback returned Pause)"
    } else if flow.body_paused {
        "body (the body callback returned Pause at end of stream)"
    } else {
        "an unknown point"
    };
    format!(
        "the {dir} stopped at {at} and {why}; nothing could resume it with proxy_continue_stream"
    )
}

/// A version-4-shaped UUID from 16 random bytes, built in one allocation.
fn format_uuid(b: &[u8; 16]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hex = [0u8; 32];
    for (i, byte) in b.iter().enumerate() {
        hex[2 * i] = HEX[usize::from(byte >> 4)];
        hex[2 * i + 1] = HEX[usize::from(byte & 0xf)];
    }
    hex[12] = b'4';
    hex[16] = b'a';
    let mut out = String::with_capacity(36);
    for (i, c) in hex.iter().enumerate() {
        if matches!(i, 8 | 12 | 16 | 20) {
            out.push('-');
        }
        out.push(char::from(*c));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PluginConfig;

    /// A minimal filter in WAT: `request_headers` logs "boom" then traps,
    /// or returns `$action` when `trap` is false.
    fn module(trap: bool, action: i32) -> CompiledModule {
        let body = if trap {
            "(drop (call $log (i32.const 4) (i32.const 0) (i32.const 4))) unreachable".to_string()
        } else {
            format!("(i32.const {action})")
        };
        let wat = format!(
            r#"(module
              (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
              (memory (export "memory") 1)
              (global $heap (mut i32) (i32.const 1024))
              (func (export "malloc") (param i32) (result i32) (local i32)
                global.get $heap local.set 1
                global.get $heap local.get 0 i32.add global.set $heap
                local.get 1)
              (func (export "proxy_abi_version_0_2_1"))
              (func (export "proxy_on_context_create") (param i32 i32))
              (data (i32.const 0) "boom")
              (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) {body}))"#
        );
        CompiledModule::from_bytes("test.wat", wat.as_bytes()).unwrap()
    }

    fn config(fail_open: bool) -> HarnessConfig {
        HarnessConfig {
            plugin: PluginConfig {
                fail_open,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn a_trap_fails_closed_with_503_for_this_and_later_streams() {
        let mut h = Harness::new(module(true, 0), config(false)).unwrap();
        let first = h.exchange(&Exchange::default()).unwrap();
        let trap = first.trap.expect("trap reported");
        assert_eq!(trap.callback, "proxy_on_request_headers");
        assert_eq!(trap.panic_message.as_deref(), Some("boom"));
        assert_eq!(first.response.unwrap().status, 503);
        assert!(first.upstream_request.is_none());
        let second = h.exchange(&Exchange::default()).unwrap();
        assert!(second.trap.is_none(), "the trap is reported once");
        assert_eq!(second.local_reply.unwrap().details, "wasm_fail_stream");
        assert!(h.vm_failure().is_some());
    }

    #[test]
    fn fail_open_lets_traffic_through_after_a_trap() {
        let mut h = Harness::new(module(true, 0), config(true)).unwrap();
        for _ in 0..2 {
            let o = h.exchange(&Exchange::default()).unwrap();
            assert_eq!(o.response.unwrap().status, 200);
            assert!(o.upstream_request.is_some());
        }
    }

    #[test]
    fn a_pause_nothing_can_resume_is_a_stall_not_a_hang() {
        let mut h = Harness::new(module(false, 1), config(false)).unwrap();
        let o = h.exchange(&Exchange::default()).unwrap();
        match o.end {
            StreamEnd::Stalled { reason } => {
                assert!(reason.contains("request stopped at headers"), "{reason}")
            }
            other => panic!("expected a stall, got {other:?}"),
        }
        assert!(o.response.is_none());
        assert!(o.upstream_request.is_none());
    }

    #[test]
    fn harnesses_share_nothing_unless_asked() {
        let m = module(false, 0);
        let a = Harness::new(&m, config(false)).unwrap();
        let b = Harness::new(&m, config(false)).unwrap();
        a.shared().set_data("", b"k", b"v", 0);
        let mut out = Vec::new();
        assert!(b.shared().get_data("", b"k", &mut out).is_err());
        let c = Harness::with_shared(&m, config(false), a.shared()).unwrap();
        assert!(c.shared().get_data("", b"k", &mut out).is_ok());
    }

    #[test]
    fn an_unreachable_upstream_gets_the_routers_503_through_the_filter() {
        // on_response_headers adds "x-f: 1" to the response map.
        let wat = r#"(module
          (import "env" "proxy_add_header_map_value"
            (func $add (param i32 i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 0) "x-f1")
          (func (export "malloc") (param i32) (result i32) i32.const 1024)
          (func (export "proxy_abi_version_0_2_1"))
          (func (export "proxy_on_context_create") (param i32 i32))
          (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
            (drop (call $add (i32.const 2) (i32.const 0) (i32.const 3) (i32.const 3) (i32.const 1)))
            i32.const 0))"#;
        let m = CompiledModule::from_bytes("unreachable.wat", wat.as_bytes()).unwrap();
        let mut h = Harness::new(&m, config(false)).unwrap();
        let exchange = Exchange {
            upstream: UpstreamResponse {
                unreachable: true,
                ..UpstreamResponse::default()
            },
            ..Exchange::default()
        };
        let o = h.exchange(&exchange).unwrap();
        let response = o.response.unwrap();
        assert_eq!(response.status, 503);
        assert_eq!(
            response.message.headers.get_text("x-f").as_deref(),
            Some("1")
        );
        assert_eq!(
            response.message.body.to_text(),
            "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
        );
        let reply = o.local_reply.unwrap();
        assert_eq!(
            reply.details,
            "upstream_reset_before_response_started{connection_failure}"
        );
        assert_eq!(reply.source, "harness");
        assert!(o.upstream_request.is_none());
        assert!(o.trap.is_none());
    }

    #[test]
    fn request_ids_look_like_uuids() {
        let id = format_uuid(&[0xab; 16]);
        assert_eq!(id, "abababab-abab-4bab-abab-abababababab");
    }

    #[test]
    fn request_map_follows_envoy() {
        let mut req = DownstreamRequest::from_request_line("POST /x").unwrap();
        req.headers.push("Host", "svc:80");
        req.headers.push("X-A", "1");
        let m = request_header_map(&req, "id");
        let keys: Vec<&[u8]> = m.iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            vec![
                &b":method"[..],
                b":path",
                b":authority",
                b":scheme",
                b"x-a",
                b"x-forwarded-proto",
                b"x-request-id"
            ]
        );
        assert_eq!(m.get(b":authority"), Some(&b"svc:80"[..]));
    }
}
