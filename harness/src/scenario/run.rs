//! Runs scenario files: finds them, compiles each module once, runs every
//! case on a fresh VM and checks its steps.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::driver::FilterModule;
use crate::envoy::Envoy;
use crate::error::HarnessError;
use crate::manager::StreamHandle;
use crate::model::{Exchange, HarnessConfig, Outcome, PluginConfig};

use super::expect::check;
use super::format::{self, Case, PluginSpec, Scenario, Step};
use super::report::{CaseReport, Failure, FileReport, Summary, print_file};
use super::steps::Action;
use crate::manager::StreamInput;

/// Runs scenario files and remembers compiled modules between them.
#[derive(Default)]
pub struct Runner {
    modules: HashMap<PathBuf, Result<FilterModule, String>>,
    native_dir: Option<PathBuf>,
    /// Which cases to run, by name (`harness test --case`); all when unset.
    select: Option<CaseFilter>,
    /// The module every plugin runs instead of its own (`harness test --module`).
    module_override: Option<PathBuf>,
}

/// Accepts or refuses a case by its name.
type CaseFilter = Box<dyn Fn(&str) -> bool>;

impl Runner {
    /// A runner with no module compiled yet.
    pub fn new() -> Runner {
        Runner::default()
    }

    /// A runner that replaces every `<name>.wasm` module with its native twin
    /// `<dir>/lib<name>.so` (the same filter crate built for the host), so
    /// the same scenario files check both backends.
    pub fn native(dir: impl Into<PathBuf>) -> Runner {
        Runner {
            native_dir: Some(dir.into()),
            ..Runner::default()
        }
    }

    /// Runs only the cases whose name `select` accepts.
    pub fn select_cases(&mut self, select: impl Fn(&str) -> bool + 'static) {
        self.select = Some(Box::new(select));
    }

    /// Runs `module` wherever a scenario names a module of its own.
    pub fn override_module(&mut self, module: impl Into<PathBuf>) {
        self.module_override = Some(module.into());
    }

    /// Runs every file and directory in `paths`, printing each file's
    /// results to `out` as it finishes and the totals line last.
    pub fn run_paths(&mut self, paths: &[PathBuf], out: &mut dyn Write) -> Summary {
        let mut summary = Summary::default();
        for path in paths {
            match find_scenarios(path) {
                Ok(files) => {
                    for file in files {
                        let report = self.run_file(&file);
                        let _ = print_file(out, &report);
                        summary.add(report);
                    }
                }
                Err(message) => {
                    let report = load_error(&path.display().to_string(), message);
                    let _ = print_file(out, &report);
                    summary.add(report);
                }
            }
        }
        let _ = writeln!(out, "{}", summary.totals_line());
        summary
    }

    /// Loads and runs one scenario file.
    pub fn run_file(&mut self, path: &Path) -> FileReport {
        let label = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => return load_error(&label, format!("cannot read {label}: {e}")),
        };
        let scenario = match format::parse(&text, &label) {
            Ok(scenario) => scenario,
            Err(message) => return load_error(&label, message),
        };
        let base = path.parent().unwrap_or(Path::new("."));
        self.run_scenario(&scenario, base, &label)
    }

    /// Runs an already parsed scenario; module paths resolve against `base`.
    pub fn run_scenario(&mut self, scenario: &Scenario, base: &Path, label: &str) -> FileReport {
        let selected: Vec<&Case> = (scenario.cases.iter())
            .filter(|case| self.select.as_ref().is_none_or(|select| select(&case.name)))
            .collect();
        let cases = selected
            .into_iter()
            .map(|case| self.run_case(scenario, case, base))
            .collect();
        FileReport {
            file: label.to_string(),
            cases,
        }
    }

    /// Uses `module` for every scenario naming the file at `path` (for
    /// callers that already compiled it, e.g. tests sharing one per process).
    pub fn preload(&mut self, path: &Path, module: FilterModule) {
        self.modules.insert(cache_key(path), Ok(module));
    }

    /// The module at `spec`, loaded once per runner: a `.wasm` file, or a
    /// native twin (an ELF shared library), by file type.
    fn module(&mut self, spec: &str, base: &Path) -> Result<FilterModule, String> {
        let mut path = match &self.module_override {
            Some(module) => module.clone(),
            None => resolve_module(spec, base)?,
        };
        if let Some(dir) = &self.native_dir {
            path = native_twin(&path, dir)?;
        }
        self.modules
            .entry(cache_key(&path))
            .or_insert_with(|| FilterModule::from_file(&path).map_err(|e| e.to_string()))
            .clone()
    }

    fn run_case(&mut self, scenario: &Scenario, case: &Case, base: &Path) -> CaseReport {
        let mut report = CaseReport {
            name: case.name.clone(),
            failures: Vec::new(),
            logs: Vec::new(),
        };
        let specs = if scenario.plugins.is_empty() {
            vec![scenario.plugin.merged(&case.plugin)]
        } else {
            scenario.plugins.clone()
        };
        let mut plugins = Vec::with_capacity(specs.len());
        for plugin in &specs {
            let module = match plugin.module.as_deref() {
                Some(spec) => self.module(spec, base),
                None => Err("plugin.module is not set".to_string()),
            };
            match module {
                Ok(module) => plugins.push((module, harness_config(scenario, case, plugin))),
                Err(message) => {
                    report
                        .failures
                        .push(Failure::error("start-up", "loading the module", message));
                    return report;
                }
            }
        }
        let workers = case.workers.or(scenario.workers).unwrap_or(1);
        let harness = CaseEnvoy::start(&plugins, workers);
        let mut harness = match (harness, &case.configure_fails) {
            (Ok(_), Some(text)) => {
                report.failures.push(Failure::mismatch(
                    "start-up",
                    "configuration",
                    format!("start-up to fail with a message containing {text:?}"),
                    "start-up succeeded",
                ));
                return report;
            }
            (Err(error), Some(text)) => {
                let message = error.to_string();
                let is_startup_failure = matches!(
                    error,
                    HarnessError::ConfigurationRejected { .. } | HarnessError::Trap { .. }
                );
                if !is_startup_failure || !message.contains(text.as_str()) {
                    report.failures.push(Failure::mismatch(
                        "start-up",
                        "configuration",
                        format!("the filter to reject its configuration with a message containing {text:?}"),
                        message,
                    ));
                }
                return report;
            }
            (Err(error), None) => {
                report.failures.push(Failure::error(
                    "start-up",
                    "starting the plugin",
                    error.to_string(),
                ));
                return report;
            }
            (Ok(harness), None) => harness,
        };
        if let Some(expect) = &case.startup {
            let before = report.failures.len();
            let startup = harness.envoy.startup();
            check("start-up", expect, &startup, &mut report.failures);
            if report.failures.len() > before {
                report.logs = log_lines(&startup);
            }
        }
        for (index, step) in case.effective_steps().iter().enumerate() {
            let label = step_label(index, step);
            let outcome = match harness.run_step(step) {
                Ok(outcome) => outcome,
                Err(error) => {
                    report.failures.push(Failure::error(
                        &label,
                        "running the step",
                        error.to_string(),
                    ));
                    return report;
                }
            };
            let before = report.failures.len();
            check(&label, &step.expect, &outcome, &mut report.failures);
            if report.failures.len() > before && report.logs.is_empty() {
                report.logs = log_lines(&outcome);
            }
        }
        report
    }
}

/// The native twin of a `.wasm` module: `<dir>/lib<stem>.so`.
fn native_twin(wasm: &Path, dir: &Path) -> Result<PathBuf, String> {
    if wasm.extension().and_then(|e| e.to_str()) != Some("wasm") {
        return Ok(wasm.to_path_buf());
    }
    let stem = wasm
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or_else(|| format!("module {} has no file name", wasm.display()))?;
    let twin = dir.join(format!("lib{stem}.so"));
    if twin.is_file() {
        Ok(twin)
    } else {
        Err(format!(
            "native twin {} of {} not found; build the filter crate for the host \
             (`cargo build -p <crate>` puts it in target/debug)",
            twin.display(),
            wasm.display()
        ))
    }
}

/// One entry per file, however the path to it was spelled.
fn cache_key(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// What a case runs on: its Envoy, and the streams and connections its
/// steps named (the names of connections also in `connections`).
struct CaseEnvoy {
    envoy: Envoy,
    streams: HashMap<String, StreamHandle>,
    connections: std::collections::HashSet<String>,
}

impl CaseEnvoy {
    fn start(
        plugins: &[(FilterModule, HarnessConfig)],
        workers: usize,
    ) -> Result<CaseEnvoy, HarnessError> {
        let envoy = Envoy::builder().plugins(plugins).workers(workers).build()?;
        Ok(CaseEnvoy {
            envoy,
            streams: HashMap::new(),
            connections: Default::default(),
        })
    }

    fn run_step(&mut self, step: &Step) -> Result<Outcome, HarnessError> {
        let exchange = |request: &format::RequestSpec| Exchange {
            request: request.0.clone(),
            upstream: step.upstream.clone().unwrap_or_default(),
            properties: step.properties.clone(),
        };
        let action = step.action().map_err(HarnessError::Usage)?;
        let envoy = &mut self.envoy;
        match action {
            Action::Exchange(request) => {
                let ran = match step.worker {
                    Some(worker) => envoy.exchange_on(worker, &exchange(request)),
                    None => envoy.exchange(&exchange(request)),
                };
                ran.map(|o| o.outcome)
            }
            Action::Advance(ms) => envoy.advance(ms),
            Action::Open {
                name,
                request,
                hold_upstream,
                end_stream,
            } => {
                let exchange = exchange(request);
                let upstream = (!hold_upstream).then(|| exchange.upstream.clone());
                let (key, outcome) =
                    envoy.open_stream(step.worker, &exchange, upstream, end_stream)?;
                self.streams.insert(name.to_string(), key);
                Ok(outcome.outcome)
            }
            Action::Connect { name, connection } => {
                let spec = connection.cloned().unwrap_or_default();
                let (key, outcome) = envoy.connect(step.worker, &spec, &step.properties)?;
                self.streams.insert(name.to_string(), key);
                self.connections.insert(name.to_string());
                Ok(outcome.outcome)
            }
            Action::UpstreamReset { name } => self.send(name, StreamInput::UpstreamReset),
            Action::Send { name, part } if self.connections.contains(name) => {
                self.send(name, part.client_bytes())
            }
            Action::UpstreamSend { name, part } if self.connections.contains(name) => {
                self.send(name, part.upstream_bytes())
            }
            Action::Send { name, part } => self.send(name, part.request()),
            Action::Respond { name, end_stream } => {
                let answer = step.upstream.clone().unwrap_or_default();
                self.send(name, StreamInput::Respond { answer, end_stream })
            }
            Action::UpstreamSend { name, part } => self.send(name, part.response()),
            Action::Reset { name } => self.send(name, StreamInput::Reset),
            Action::Answer(answer) => {
                let worker = step.worker.unwrap_or(0);
                let (cluster, nth) = (&answer.cluster, answer.nth);
                let response = answer.response.as_ref();
                let out = envoy.answer_callout(worker, cluster, nth, response);
                out.map(|o| o.outcome)
            }
            Action::Finish { name } => {
                let key = self.named(name)?;
                self.envoy.finish(key).map(|o| o.outcome)
            }
        }
    }

    fn send(&mut self, name: &str, input: StreamInput) -> Result<Outcome, HarnessError> {
        let key = self.named(name)?;
        self.envoy.send(key, input).map(|o| o.outcome)
    }

    fn named(&self, name: &str) -> Result<StreamHandle, HarnessError> {
        self.streams.get(name).copied().ok_or_else(|| {
            HarnessError::Usage(format!("stream {name:?} was not opened by an earlier step"))
        })
    }
}

fn step_label(index: usize, step: &Step) -> String {
    match &step.name {
        Some(name) => format!("step {} ({name})", index + 1),
        None => format!("step {}", index + 1),
    }
}

fn log_lines(outcome: &Outcome) -> Vec<String> {
    outcome
        .logs
        .iter()
        .map(|e| format!("[{}] {}", e.level.name(), e.message))
        .collect()
}

fn load_error(label: &str, message: String) -> FileReport {
    FileReport {
        file: label.to_string(),
        cases: vec![CaseReport {
            name: "(file)".to_string(),
            failures: vec![Failure::error("loading", "the scenario file", message)],
            logs: Vec::new(),
        }],
    }
}

/// The harness configuration one case runs with.
pub fn harness_config(scenario: &Scenario, case: &Case, plugin: &PluginSpec) -> HarnessConfig {
    let defaults = PluginConfig::default();
    let mut properties = scenario.properties.clone();
    properties.extend(case.properties.clone());
    let mut config = HarnessConfig {
        plugin: PluginConfig {
            name: (plugin.name.clone())
                .or_else(|| plugin.module.as_deref().and_then(plugin_name_of))
                .unwrap_or(defaults.name),
            root_id: plugin.root_id.clone().unwrap_or(defaults.root_id),
            vm_id: plugin.vm_id.clone().unwrap_or(defaults.vm_id),
            vm_config: plugin.vm_config.clone().unwrap_or(defaults.vm_config),
            configuration: plugin.config.clone().unwrap_or(defaults.configuration),
            fail_open: plugin.fail_open.unwrap_or(defaults.fail_open),
            env: plugin.env.clone().unwrap_or(defaults.env),
            log_level: plugin.log_level.unwrap_or(defaults.log_level),
            reload_on_failure: defaults.reload_on_failure,
            max_memory_bytes: defaults.max_memory_bytes,
            callback_deadline_ms: defaults.callback_deadline_ms,
        },
        clusters: case
            .clusters
            .clone()
            .unwrap_or_else(|| scenario.clusters.clone()),
        properties,
        ..HarnessConfig::default()
    };
    if let Some(ms) = scenario.host.start_time_unix_ms {
        config.start_time_unix_ms = ms;
    }
    if let Some(n) = scenario.host.max_events_per_step {
        config.max_events_per_step = n;
    }
    if let Some(ms) = scenario.host.step_wall_budget_ms {
        config.step_wall_budget_ms = ms;
    }
    if let Some(bytes) = scenario.host.buffer_limit_bytes {
        config.buffer_limit_bytes = bytes;
    }
    if let Some(ms) = scenario.host.stream_idle_timeout_ms {
        config.stream_idle_timeout_ms = ms;
    }
    if let Some(ms) = scenario.host.route_timeout_ms {
        config.route_timeout_ms = ms;
    }
    config
}

/// The plugin name a module file implies when none is set, so logs and
/// deadline messages name the filter: its file stem, without a native
/// twin's `lib` prefix (`response_header.wasm`, `libresponse_header.so`).
pub fn plugin_name_of(module: &str) -> Option<String> {
    let path = Path::new(module);
    let stem = path.file_stem()?.to_str()?;
    let native = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("so" | "dylib")
    );
    let name = if native {
        stem.strip_prefix("lib").unwrap_or(stem)
    } else {
        stem
    };
    Some(name.to_string())
}

/// Every scenario file `path` names: the file itself, or every `*.yaml` /
/// `*.yml` below a directory (sorted).
pub fn find_scenarios(path: &Path) -> Result<Vec<PathBuf>, String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut found = Vec::new();
    let mut pending = vec![path.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries =
            std::fs::read_dir(&dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
            let child = entry.path();
            if child.is_dir() {
                pending.push(child);
            } else if matches!(
                child.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            ) {
                found.push(child);
            }
        }
    }
    if found.is_empty() {
        return Err(format!(
            "no scenario files (*.yaml, *.yml) in {}",
            path.display()
        ));
    }
    found.sort();
    Ok(found)
}

/// Finds a module path: relative to the scenario's directory, then (for
/// `target/...`) under CARGO_TARGET_DIR when set, then relative to the
/// workspace root above it, then to the current directory.
pub fn resolve_module(spec: &str, base: &Path) -> Result<PathBuf, String> {
    let given = Path::new(spec);
    if given.is_absolute() {
        return if given.is_file() {
            Ok(given.to_path_buf())
        } else {
            Err(format!("module {spec} does not exist"))
        };
    }
    let mut candidates = vec![base.join(given)];
    let root = workspace_root(base);
    // `target/...` follows CARGO_TARGET_DIR when the build put artifacts elsewhere.
    if let (Ok(rest), Some(target_dir)) = (
        given.strip_prefix("target"),
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from),
    ) {
        let target_dir = match &root {
            Some(root) if target_dir.is_relative() => root.join(target_dir),
            _ => target_dir,
        };
        candidates.push(target_dir.join(rest));
    }
    if let Some(root) = root {
        candidates.push(root.join(given));
    }
    candidates.push(given.to_path_buf());
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    let tried: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    Err(format!(
        "module {spec} not found (tried {}); build the filters first: `cargo build --target wasm32-wasip1 --release` (or `make build`)",
        tried.join(", ")
    ))
}

/// The nearest ancestor of `from` whose Cargo.toml declares `[workspace]`.
fn workspace_root(from: &Path) -> Option<PathBuf> {
    let start = std::fs::canonicalize(from).ok()?;
    start
        .ancestors()
        .find(|dir| {
            std::fs::read_to_string(dir.join("Cargo.toml"))
                .map(|text| text.lines().any(|l| l.trim() == "[workspace]"))
                .unwrap_or(false)
        })
        .map(Path::to_path_buf)
}
