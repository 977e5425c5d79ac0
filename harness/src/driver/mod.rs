//! One plugin's VM on one worker, driven the way Envoy drives it:
//! start-up, calling guest exports in their context, the failure policy
//! (fail closed, fail open, reload), and the capture of what the guest did
//! (logs, trace, hostcall counts) into an [`Outcome`]. Backend-agnostic: it
//! only talks to a [`Vm`]. Streams are run by the filter manager
//! ([`crate::manager`], which drives this type; the one-plugin traffic
//! methods are in `single`); root-context events by [`events`].

mod budget;
mod events;

pub(crate) use budget::{Budget, EventKind};
pub use budget::{DEFAULT_MAX_EVENTS_PER_STEP, DEFAULT_STEP_WALL_BUDGET_MS};

use std::borrow::Cow;

use crate::backend::wasm::CompiledModule;
use crate::backend::{Callback, Vm};
use crate::error::HarnessError;
use crate::host::counters::hostcall_name;
use crate::host::{Host, Phase, SharedHost};
use crate::model::{
    CalloutResult, ClusterSpec, FailurePolicyApplied, HarnessConfig, LogEntry, LogLevel,
    MetricSnapshot, Outcome, Properties, PropertyValue, StreamEnd, TraceEvent, TraceLevel,
    TrapReport,
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
    /// No filter: a chain position that continues every stream, for a
    /// listener whose connection manager has only the router (see
    /// `backend::passthrough`).
    PassThrough,
}

impl FilterModule {
    /// Loads a filter by file type: an ELF shared library is the native
    /// twin, anything else is compiled as a wasm module.
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<FilterModule, HarnessError> {
        Self::from_file_with(&crate::backend::wasm::WasmEngine::shared()?, path)
    }

    /// [`FilterModule::from_file`] with a given engine (and its module limits).
    pub fn from_file_with(
        engine: &crate::backend::wasm::WasmEngine,
        path: impl AsRef<std::path::Path>,
    ) -> Result<FilterModule, HarnessError> {
        let path = path.as_ref();
        #[cfg(unix)]
        {
            let mut magic = [0u8; 4];
            let is_elf = std::fs::File::open(path)
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
                .is_ok()
                && &magic == b"\x7fELF";
            if is_elf && CompiledModule::is_precompiled(&std::fs::read(path).unwrap_or_default()) {
                return Ok(FilterModule::Wasm(
                    CompiledModule::from_precompiled_file_with(engine, path)?,
                ));
            }
            if is_elf {
                return Ok(FilterModule::Native(
                    crate::backend::native::NativeLibrary::from_file(path)?,
                ));
            }
        }
        Ok(FilterModule::Wasm(CompiledModule::from_file_with(
            engine, path,
        )?))
    }

    /// True when both are the same loaded module (Envoy's VM key compares
    /// the code; a module loaded once and shared is the same code).
    pub fn same_module(&self, other: &FilterModule) -> bool {
        match (self, other) {
            (FilterModule::Wasm(a), FilterModule::Wasm(b)) => a.same_module(b),
            #[cfg(unix)]
            (FilterModule::Native(a), FilterModule::Native(b)) => a.same_module(b),
            (FilterModule::PassThrough, FilterModule::PassThrough) => true,
            _ => false,
        }
    }

    /// `"wasm"`, `"native"` or `"none"` (pass-through).
    pub fn backend_name(&self) -> &'static str {
        match self {
            FilterModule::Wasm(_) => "wasm",
            #[cfg(unix)]
            FilterModule::Native(_) => "native",
            FilterModule::PassThrough => "none",
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
    pub(crate) vm: Box<dyn Vm>,
    pub(crate) failure: Option<TrapReport>,
    /// The trap of the current exchange (reported once).
    new_trap: Option<TrapReport>,
    pub(crate) startup: Outcome,
    http_mark: usize,
    grpc_mark: usize,
    startup_durations: Vec<(&'static str, std::time::Duration)>,
    /// What a FAIL_RELOAD needs to start a fresh VM (set when the plugin asks for it).
    reload: Option<ReloadSource>,
    /// The failure policy applied in the current exchange.
    pub(crate) policy_applied: Option<FailurePolicyApplied>,
    /// Step outcomes without metric snapshots, hostcall counts, callout
    /// records or message copies (see [`crate::EnvoyBuilder::lean`]).
    pub(crate) lean: bool,
    /// What this VM's one-off exchanges ([`Harness::exchange`]) leave for
    /// the next: each runs on streams of its own.
    pub(crate) spare: crate::manager::Spare,
}

/// The module and configuration a failed VM is rebuilt from.
struct ReloadSource {
    module: FilterModule,
    config: HarnessConfig,
    shared: SharedHost,
    /// Further plugins started in this VM ([`Harness::add_plugin`]).
    more: Vec<HarnessConfig>,
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
    /// metrics) with other harnesses: one VM per worker. Start-up runs on a
    /// canary VM first, as in Envoy (see [`Harness::canary`]).
    pub fn with_shared(
        module: impl Into<FilterModule>,
        config: HarnessConfig,
        shared: SharedHost,
    ) -> Result<Harness, HarnessError> {
        let module = module.into();
        let canary = Self::canary(&module, &config, &shared)?;
        let mut harness = Self::without_canary(module, config, shared)?;
        harness.startup.logs.splice(0..0, canary);
        Ok(harness)
    }

    /// Envoy's canary: before any worker gets the plugin, start-up runs on
    /// a throwaway copy of the VM to check that the plugin configures
    /// (proxy-wasm-cpp-host `PluginHandle`/`canary`, Envoy's
    /// `createWasm`): its log lines and shared-data writes happen once
    /// more, and a plugin that fails there never reaches a worker. Returns
    /// its start-up log lines, marked `[canary]`.
    pub(crate) fn canary(
        module: &FilterModule,
        config: &HarnessConfig,
        shared: &SharedHost,
    ) -> Result<Vec<LogEntry>, HarnessError> {
        let vm = Self::new_vm(module, config, shared)?;
        let canary = Self::start(vm)?;
        Ok(canary
            .startup
            .logs
            .into_iter()
            .map(|mut entry| {
                entry.message.insert_str(0, "[canary] ");
                entry
            })
            .collect())
    }

    /// A worker's VM for a plugin whose canary already ran.
    pub(crate) fn without_canary(
        module: FilterModule,
        config: HarnessConfig,
        shared: SharedHost,
    ) -> Result<Harness, HarnessError> {
        let vm = Self::new_vm(&module, &config, &shared)?;
        let mut harness = Self::start(vm)?;
        if config.plugin.reload_on_failure {
            harness.reload = Some(ReloadSource {
                module,
                config,
                shared,
                more: Vec::new(),
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
            FilterModule::PassThrough => {
                Box::new(crate::backend::passthrough::PassThroughVm::new(host))
            }
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
            for more in &source.more {
                h.add_plugin(more)?;
            }
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
            lean: false,
            spare: crate::manager::Spare::default(),
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
        h.start_root(root)?;
        h.startup = h.finish_capture(0, None, 0);
        Ok(h)
    }

    /// Starts one more plugin in this VM, as Envoy does for a plugin whose
    /// vm_id, VM configuration and code equal this VM's: a new root context
    /// (its id from the VM's one counter), then on_context_create,
    /// on_vm_start and on_configure on it. Returns the root context id.
    pub fn add_plugin(&mut self, config: &HarnessConfig) -> Result<u32, HarnessError> {
        self.begin_capture();
        let root = self.vm.host().add_root(&config.plugin, &config.properties);
        let started = self.start_root(root);
        let more = self.finish_capture(0, None, 0);
        self.startup.absorb(more);
        if let Some(source) = &mut self.reload {
            source.more.push(config.clone());
        }
        started.map(|()| root)
    }

    /// on_context_create, on_vm_start and on_configure for root `root`.
    fn start_root(&mut self, root: u32) -> Result<(), HarnessError> {
        if self.failure.is_none() {
            self.startup_invoke(Callback::ContextCreate {
                context_id: root,
                parent_id: 0,
            });
        }
        let plugin = self.vm.host_ref().plugin_of(root);
        let vm_config_size = plugin.vm_config.len() as u64;
        let plugin_config_size = plugin.configuration.len() as u64;
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
            if self.failure.is_some() {
                break;
            }
            if self.startup_invoke(callback) == Some(0) {
                let logs = self.vm.host().take_logs();
                return Err(HarnessError::ConfigurationRejected {
                    callback: callback.name().to_string(),
                    logs,
                });
            }
        }
        self.vm.host().deferred.clear();
        if let Some(t) = self.failure.clone() {
            return Err(HarnessError::Trap {
                callback: t.callback,
                context_id: t.context_id,
                trap: t.trap,
                panic_message: t.panic_message,
            });
        }
        Ok(())
    }

    /// Prepares this worker for a step: the failure policy's reload (when
    /// no stream is live on the failed VM), then a fresh capture of logs,
    /// trace and counts.
    pub(crate) fn begin_exchange(&mut self) {
        if self.failure.is_some() && self.vm.host_ref().streams.is_empty() {
            self.reload_failed_vm();
        }
        let reloaded = self.policy_applied.take();
        self.begin_capture();
        self.policy_applied = reloaded;
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

    pub(crate) fn begin_capture(&mut self) {
        self.new_trap = None;
        self.policy_applied = None;
        let host = self.vm.host();
        host.take_logs();
        host.trace.clear();
        host.hostcall_counts.iter_mut().for_each(|c| *c = 0);
        host.http_calls
            .retain(|r| r.result == CalloutResult::Pending);
        host.grpc_calls
            .retain(|r| r.result == CalloutResult::Pending);
        self.http_mark = host.http_calls.len();
        self.grpc_mark = host.grpc_calls.len();
    }

    pub(crate) fn finish_capture(
        &mut self,
        context_id: u32,
        end: Option<StreamEnd>,
        elapsed_ms: u64,
    ) -> Outcome {
        let host = self.vm.host();
        let mut outcome = Outcome {
            context_id,
            end: end.unwrap_or_default(),
            logs: host.take_logs(),
            trace: std::mem::take(&mut host.trace),
            trap: self.new_trap.take(),
            failure_policy: self.policy_applied.take(),
            elapsed_ms,
            ..Outcome::default()
        };
        // A lean capture keeps only the above (metrics stay readable from
        // SharedHost::metrics; the trace is off for a lean caller).
        if !self.lean {
            let host = self.vm.host();
            outcome.metrics = host.shared().metrics();
            outcome.http_calls = host
                .http_calls
                .get(self.http_mark..)
                .map(<[_]>::to_vec)
                .unwrap_or_default();
            outcome.grpc_calls = host
                .grpc_calls
                .get(self.grpc_mark..)
                .map(<[_]>::to_vec)
                .unwrap_or_default();
            outcome.hostcalls = host
                .hostcall_counts
                .iter()
                .enumerate()
                .filter(|(_, c)| **c > 0)
                .map(|(i, c)| (Cow::Borrowed(hostcall_name(i)), *c))
                .collect();
        }
        outcome
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
    pub(crate) fn invoke(&mut self, cb: Callback) -> Option<u64> {
        if self.failure.is_some() {
            return None;
        }
        let host = self.vm.host();
        let ctx = cb.context_id();
        host.enter_root(host.root_of(ctx));
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
        host.callback = cb.name();
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
                if let Some(hint) = listener_mismatch(cb, panic_message.as_deref()) {
                    self.vm
                        .host()
                        .harness_log(LogLevel::Error, hint.to_string());
                }
                self.fail_vm(TrapReport {
                    callback: cb.name().to_string(),
                    context_id: ctx,
                    trap,
                    panic_message,
                });
                None
            }
        }
    }

    /// Fails the VM as a trap does: nothing more runs in it, the failure
    /// policy applies to its streams, and the report is this step's trap.
    pub(crate) fn fail_vm(&mut self, report: TrapReport) {
        let host = self.vm.host();
        // The cause only: the backtrace is in the trap report, which every
        // output prints (a second copy here was printed twice).
        let cause = report.trap.lines().next().unwrap_or_default();
        host.harness_log(
            LogLevel::Critical,
            format!(
                "VM failed: trap in {} (context {}): {cause}",
                report.callback, report.context_id
            ),
        );
        host.deferred.clear();
        self.failure = Some(report.clone());
        self.new_trap = Some(report);
    }

    /// The fail_open setting of the plugin whose root context is `root`.
    pub(crate) fn fail_open(&self, root: u32) -> bool {
        self.vm.host_ref().plugin_of(root).fail_open
    }
}

/// What to tell a user whose filter trapped because it runs on the wrong
/// kind of listener: the Rust SDK panics with `invalid context_id` when a
/// network callback reaches an HTTP context, or the reverse.
fn listener_mismatch(cb: Callback, panic_message: Option<&str>) -> Option<&'static str> {
    if !panic_message?.contains("invalid context_id") {
        return None;
    }
    match cb {
        Callback::NewConnection { .. }
        | Callback::DownstreamData { .. }
        | Callback::UpstreamData { .. }
        | Callback::DownstreamConnectionClose { .. }
        | Callback::UpstreamConnectionClose { .. } => Some(
            "this looks like an HTTP filter on a TCP listener: its SDK made an HTTP context for \
             the connection and has no network callbacks for it. Load it as an HTTP filter \
             (envoy.filters.http.wasm, WasmPlugin type HTTP), or write it as a network filter",
        ),
        Callback::RequestHeaders { .. }
        | Callback::RequestBody { .. }
        | Callback::RequestTrailers { .. }
        | Callback::ResponseHeaders { .. }
        | Callback::ResponseBody { .. }
        | Callback::ResponseTrailers { .. } => Some(
            "this looks like a network (TCP) filter on an HTTP listener: its SDK made a TCP \
             context for the stream and has no HTTP callbacks for it. Load it as a network \
             filter (envoy.filters.network.wasm, WasmPlugin type NETWORK; `connect` steps in \
             scenarios, `harness run --tcp`), or write it as an HTTP filter",
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
