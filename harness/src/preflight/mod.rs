//! Preflight: will this module load in a given Envoy or Istio? Reads the
//! module without running it (ABI version, imports against what the host
//! provides, wasm features against what the target's V8 enables, exports
//! the host calls or never will, size and memory), then optionally starts
//! it in the harness. `harness check` prints the [`Report`];
//! `publish push` refuses a module whose report has errors.
//!
//! ```no_run
//! use harness::preflight::{CheckOptions, check};
//! let bytes = std::fs::read("target/wasm32-wasip1/release/response_header.wasm")?;
//! let report = check("response_header.wasm", &bytes, &CheckOptions::default());
//! assert!(report.loads(), "{}", report.to_text());
//! # Ok::<(), std::io::Error>(())
//! ```

mod features;
mod interface;
mod module_info;
mod render;
mod startup;
mod targets;

pub use features::{Feature, all_features, feature_named};
pub use startup::{STARTUP_DEADLINE_MS, StartupInput, StartupReport, WITHOUT_CONFIG};
pub use targets::{TARGETS, Target, default_target, target_named};

use serde::Serialize;

use features::FeatureVerdict;
use module_info::ModuleInfo;

/// proxy-wasm-cpp-host's cap on a VM's memory (`include/proxy-wasm/limits.h`,
/// `PROXY_WASM_HOST_MAX_WASM_MEMORY_SIZE_BYTES`, 1 GiB unless Envoy is
/// built with another): V8 refuses a module whose initial memory exceeds it.
pub const HOST_MAX_MEMORY_BYTES: u64 = 1024 * 1024 * 1024;

const WASM_PAGE_BYTES: u64 = 65_536;

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The module would not load (or not start) on the target.
    Error,
    /// It loads, but something will not work as its author likely expects.
    Warning,
    /// Worth knowing.
    Info,
}

impl Severity {
    /// `error`, `warning`, `info`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// One thing the check found: how bad, a stable code, what, what to do.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    /// How bad.
    pub severity: Severity,
    /// A stable kebab-case identifier (e.g. `unknown-import`), for scripts.
    pub code: &'static str,
    /// What was found, naming the import, export, feature or callback.
    pub message: String,
    /// What to do about it.
    pub fix: String,
}

impl Finding {
    pub(crate) fn new(
        severity: Severity,
        code: &'static str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            severity,
            code,
            message: message.into(),
            fix: fix.into(),
        }
    }
}

/// What to check for.
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// The host (default: the newest Envoy in [`TARGETS`]).
    pub target: &'static Target,
    /// Features to treat as enabled beyond the target's (for a V8 you know
    /// enables them).
    pub allow_features: Vec<&'static Feature>,
    /// Start the module in the harness after the static checks pass
    /// (None: static checks only).
    pub startup: Option<StartupInput>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            target: default_target(),
            allow_features: Vec::new(),
            startup: Some(StartupInput::default()),
        }
    }
}

/// The outcome of a check.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The module's label (usually its path).
    pub module: String,
    /// The target checked for.
    pub target: &'static str,
    /// The Envoy line the target runs.
    pub envoy: &'static str,
    /// Size of the module file, in bytes.
    pub size_bytes: u64,
    /// The declared ABI version (`0.2.1`), when the module declares one.
    pub abi_version: Option<&'static str>,
    /// Functions the module defines.
    pub functions: u32,
    /// Initial linear memory, in bytes (the sum over its memories).
    pub initial_memory_bytes: u64,
    /// Every finding, errors first.
    pub findings: Vec<Finding>,
    /// How start-up went, when it ran.
    pub startup: Option<StartupReport>,
}

impl Report {
    /// Whether the module would load (and start) on the target: no errors.
    pub fn loads(&self) -> bool {
        !self.findings.iter().any(|f| f.severity == Severity::Error)
    }

    /// The error findings.
    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
    }
}

/// Checks module `bytes` (labelled `name` in messages) for `options.target`.
pub fn check(name: &str, bytes: &[u8], options: &CheckOptions) -> Report {
    let target = options.target;
    let mut report = Report {
        module: name.to_string(),
        target: target.name,
        envoy: target.envoy,
        size_bytes: bytes.len() as u64,
        abi_version: None,
        functions: 0,
        initial_memory_bytes: 0,
        findings: Vec::new(),
        startup: None,
    };
    let findings = &mut report.findings;
    if !bytes.starts_with(b"\0asm") {
        findings.push(Finding::new(
            Severity::Error,
            "not-wasm",
            "not a binary WebAssembly module (no \\0asm magic); Envoy loads binary modules only",
            "check the path; for WAT text, build the binary with `wasm-tools parse` or `wat2wasm`",
        ));
        return report;
    }
    let info = match ModuleInfo::parse(bytes) {
        Ok(info) => info,
        Err(e) => {
            findings.push(Finding::new(
                Severity::Error,
                "invalid-wasm",
                format!("cannot read the module: {e}"),
                "rebuild it; the file may be truncated or not a wasm module",
            ));
            return report;
        }
    };
    report.functions = info.defined_functions;
    report.initial_memory_bytes = info
        .memory_pages
        .iter()
        .map(|pages| pages.saturating_mul(WASM_PAGE_BYTES))
        .sum();
    check_features(bytes, options, findings);
    let abi = interface::check(&info, target, findings);
    report.abi_version = abi.map(|v| v.as_str());
    if report.initial_memory_bytes > HOST_MAX_MEMORY_BYTES {
        findings.push(Finding::new(
            Severity::Error,
            "memory-too-large",
            format!(
                "its initial memory is {} bytes, over the {HOST_MAX_MEMORY_BYTES}-byte cap Envoy's \
                 Proxy-Wasm host puts on a VM",
                report.initial_memory_bytes
            ),
            "lower the initial memory (e.g. -C link-arg=--initial-memory=...) or the static data",
        ));
    }
    let static_ok = !findings.iter().any(|f| f.severity == Severity::Error);
    if let Some(input) = &options.startup {
        if static_ok {
            let (startup, found) = startup::run(name, bytes, input);
            report.startup = Some(startup);
            report.findings.extend(found);
        } else {
            report.findings.push(Finding::new(
                Severity::Info,
                "startup-skipped",
                "start-up was not run: the module would not load",
                "fix the errors above, then check again",
            ));
        }
    }
    report.findings.sort_by_key(|f| f.severity);
    report
}

/// Findings for the features the module needs beyond the target's.
fn check_features(bytes: &[u8], options: &CheckOptions, findings: &mut Vec<Finding>) {
    let target = options.target;
    match features::needed_features(bytes, target.feature_set(&options.allow_features)) {
        FeatureVerdict::Fits => {}
        FeatureVerdict::Invalid(e) => findings.push(Finding::new(
            Severity::Error,
            "invalid-wasm",
            format!("the module is not valid WebAssembly: {e}"),
            "rebuild it; a tool that rewrote the module may have broken it",
        )),
        FeatureVerdict::Needs {
            features,
            first_error,
        } => {
            let list = features.join(", ");
            findings.push(Finding::new(
                Severity::Error,
                "unsupported-feature",
                format!(
                    "it uses wasm features {} ({}) does not enable by default: {list} (first use: {first_error})",
                    target.name, target.envoy
                ),
                format!(
                    "build without them (for Rust, drop -C target-feature flags such as +{first} and \
                     atomics/shared memory); if you know your Envoy's V8 enables one, pass \
                     --allow-feature {first}",
                    first = features.first().copied().unwrap_or("NAME")
                ),
            ));
        }
    }
}
