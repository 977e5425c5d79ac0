//! Start-up and the HTTP lifecycle, driven the way Envoy drives a filter.

use crate::backend::wasm::CompiledModule;
use crate::error::HarnessError;
use crate::host::SharedHost;
use crate::model::{
    ClusterSpec, DownstreamRequest, Exchange, HarnessConfig, LogEntry, MetricSnapshot, Outcome,
    PropertyValue, TrapReport, UpstreamResponse,
};

/// Which filter build to run.
#[derive(Clone)]
pub enum FilterModule {
    /// A compiled wasm module (shared, cheap to clone).
    Wasm(CompiledModule),
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
    _private: (),
}

impl Harness {
    /// Loads the module into a fresh VM and starts it the way Envoy does:
    /// `_initialize`/`main`, `proxy_on_context_create(1, 0)`,
    /// `proxy_on_vm_start(1, vm_config_size)`, `proxy_on_configure(1, plugin_config_size)`.
    ///
    /// Errors: missing exports, a trap during start-up, or the filter rejecting
    /// its configuration ([`HarnessError::ConfigurationRejected`] with its log lines).
    pub fn new(
        module: impl Into<FilterModule>,
        config: HarnessConfig,
    ) -> Result<Harness, HarnessError> {
        Self::with_shared(module, config, SharedHost::new())
    }

    /// Like [`Harness::new`], sharing process-wide state (shared data, queues,
    /// metrics) with other harnesses: one VM per worker.
    pub fn with_shared(
        _module: impl Into<FilterModule>,
        _config: HarnessConfig,
        _shared: SharedHost,
    ) -> Result<Harness, HarnessError> {
        Err(HarnessError::Usage("not implemented yet".into()))
    }

    /// Runs one request/response exchange through the filter until the
    /// stream completes, is reset, or stalls. Virtual time advances only
    /// while the stream waits for callouts or timers.
    ///
    /// A trap is not an `Err`: it is reported in [`Outcome::trap`] and the
    /// stream gets Envoy's fail-closed 503 (or passes through with `fail_open`).
    pub fn exchange(&mut self, _exchange: &Exchange) -> Result<Outcome, HarnessError> {
        Err(HarnessError::Usage("not implemented yet".into()))
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
            properties: Default::default(),
        })
    }

    /// Advances virtual time by `ms` with no stream: fires `on_tick`s, delivers
    /// callout answers and queue notifications due in that window.
    pub fn advance(&mut self, _ms: u64) -> Result<Outcome, HarnessError> {
        Err(HarnessError::Usage("not implemented yet".into()))
    }

    /// What happened during start-up (logs, trace, hostcalls, metrics).
    pub fn startup(&self) -> &Outcome {
        unimplemented_outcome()
    }

    /// Log lines from start-up.
    pub fn startup_logs(&self) -> &[LogEntry] {
        &self.startup().logs
    }

    /// Replaces the cluster definitions (scripted callout answers).
    pub fn set_clusters(&mut self, _clusters: Vec<ClusterSpec>) {}

    /// Sets a harness-level property (dotted path) for later exchanges.
    pub fn set_property(&mut self, _path: &str, _value: PropertyValue) {}

    /// Current metric values.
    pub fn metrics(&self) -> Vec<MetricSnapshot> {
        Vec::new()
    }

    /// The trap that failed this VM, if any.
    pub fn vm_failure(&self) -> Option<&TrapReport> {
        None
    }

    /// The state shared with other workers.
    pub fn shared(&self) -> SharedHost {
        SharedHost::new()
    }

    /// Virtual milliseconds since this harness started.
    pub fn now_ms(&self) -> u64 {
        0
    }
}

fn unimplemented_outcome() -> &'static Outcome {
    static EMPTY: std::sync::OnceLock<Outcome> = std::sync::OnceLock::new();
    EMPTY.get_or_init(Outcome::default)
}
