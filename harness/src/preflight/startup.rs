//! Start-up, run for real: the module is compiled, instantiated and
//! started in the harness the way Envoy starts a plugin (`_initialize`
//! or `_start`, then `proxy_on_context_create`, `proxy_on_vm_start` and
//! `proxy_on_configure`, on a canary VM first), with a deadline on every
//! callback so a module that never returns fails the check instead of
//! hanging it.

use serde::Serialize;

use super::{Finding, Severity};
use crate::{CompiledModule, Harness, HarnessConfig, HarnessError, LogEntry, PluginConfig};

/// Deadline for each start-up callback in a check, in ms: start-up that
/// takes longer than this is worth knowing about anyway.
pub const STARTUP_DEADLINE_MS: u64 = 2_000;

/// What to start the plugin with.
#[derive(Clone, Debug, Default)]
pub struct StartupInput {
    /// The plugin configuration (`proxy_on_configure` reads it); None when
    /// the user gave none, which makes configuration failures warnings.
    pub configuration: Option<Vec<u8>>,
    /// The VM configuration (`proxy_on_vm_start` reads it).
    pub vm_config: Vec<u8>,
    /// The plugin's name (the `plugin_name` property, and log labels).
    pub plugin_name: String,
    /// The root id (SDKs such as AssemblyScript's find the root context by it).
    pub root_id: String,
}

/// How start-up went.
#[derive(Clone, Debug, Serialize)]
pub struct StartupReport {
    /// Whether the plugin started and accepted its configuration.
    pub configured: bool,
    /// Whether a configuration was given (`--config`).
    pub config_given: bool,
    /// One line: what happened.
    pub summary: String,
    /// What the filter logged while starting (the worker VM's lines; the
    /// canary logs the same).
    pub logs: Vec<LogEntry>,
    /// A host function start-up called that Envoy refuses during
    /// `_initialize`/`_start` (only logging and WASI are allowed there).
    pub refused_call: Option<String>,
}

/// The code of a start-up failure without a configuration given, which
/// may be the filter rightly refusing to start unconfigured (a warning).
pub const WITHOUT_CONFIG: &str = "startup-without-config";

/// How a trap at the callback deadline reads (`limits::deadline_message`).
const DEADLINE_TEXT: &str = "ms CPU deadline (callback_deadline_ms)";

/// Callbacks whose failure may just mean the configuration was missing.
const CONFIG_CALLBACKS: [&str; 2] = ["proxy_on_vm_start", "proxy_on_configure"];

/// Starts the module; the report, and the findings it gives.
pub(crate) fn run(name: &str, bytes: &[u8], input: &StartupInput) -> (StartupReport, Vec<Finding>) {
    let config_given = input.configuration.is_some();
    let mut report = StartupReport {
        configured: false,
        config_given,
        summary: String::new(),
        logs: Vec::new(),
        refused_call: None,
    };
    let mut findings = Vec::new();
    // Without a configuration, a filter refusing to start may be right to.
    let config_severity = if config_given {
        Severity::Error
    } else {
        Severity::Warning
    };
    // One code for every failure a missing configuration may explain, so
    // callers that never have one (publish push) can tell them apart.
    let config_code = |given_code: &'static str| {
        if config_given {
            given_code
        } else {
            WITHOUT_CONFIG
        }
    };
    let no_config_hint = if config_given {
        "fix the filter or the configuration given with --config"
    } else {
        "no configuration was given: check again with --config @your-config.json"
    };
    // Through the compiled-module cache: a module `harness test` already
    // ran is not compiled again (publish push runs this before each push).
    let compiled = crate::WasmEngine::shared()
        .and_then(|engine| CompiledModule::from_bytes_cached_with(&engine, name, bytes));
    let started = compiled.and_then(|module| {
        let plugin = PluginConfig {
            name: input.plugin_name.clone(),
            root_id: input.root_id.clone(),
            configuration: input.configuration.clone().unwrap_or_default().into(),
            vm_config: input.vm_config.clone().into(),
            callback_deadline_ms: STARTUP_DEADLINE_MS,
            ..PluginConfig::default()
        };
        Harness::new(
            module,
            HarnessConfig {
                plugin,
                ..HarnessConfig::default()
            },
        )
    });
    match started {
        Ok(harness) => {
            report.configured = true;
            report.summary = "started and accepted its configuration".to_string();
            report.logs = worker_logs(harness.startup_logs());
        }
        Err(HarnessError::ConfigurationRejected { callback, logs }) => {
            report.summary = format!("{callback} returned false: the plugin refused to start");
            report.logs = worker_logs(&logs);
            findings.push(Finding::new(
                config_severity,
                config_code("configuration-rejected"),
                format!(
                    "start-up: {callback} returned false, so Envoy would not start the plugin{}",
                    last_words(&report.logs)
                ),
                no_config_hint,
            ));
        }
        Err(HarnessError::Trap {
            callback,
            trap,
            panic_message,
            ..
        }) => {
            let first_line = trap.lines().next().unwrap_or_default().to_string();
            report.summary = format!("trapped in {callback}: {first_line}");
            report.refused_call = refused_call(&trap);
            let said = panic_message
                .map(|m| format!(" (the filter said: {m})"))
                .unwrap_or_default();
            let (severity, code, fix) = if let Some(call) = &report.refused_call {
                (
                    Severity::Error,
                    "startup-refused-call",
                    format!(
                        "move the {call} call out of start-up code (static initialisers, main) into \
                         proxy_on_vm_start or proxy_on_configure"
                    ),
                )
            } else if trap.contains(DEADLINE_TEXT) {
                // A hang is not explained by a missing configuration.
                (
                    Severity::Error,
                    "startup-deadline",
                    format!(
                        "make start-up return within {STARTUP_DEADLINE_MS} ms: Envoy's main \
                         thread waits for it"
                    ),
                )
            } else if CONFIG_CALLBACKS.contains(&callback.as_str()) {
                (
                    config_severity,
                    config_code("startup-trap"),
                    no_config_hint.to_string(),
                )
            } else if callback == "proxy_on_context_create" && input.root_id.is_empty() {
                (
                    Severity::Error,
                    "startup-trap",
                    "if the filter registers its root context under a root id, give it with \
                     --root-id; else run it with `harness run` to see the backtrace"
                        .to_string(),
                )
            } else {
                (
                    Severity::Error,
                    "startup-trap",
                    "run it with `harness run` to see the trap's backtrace".to_string(),
                )
            };
            findings.push(Finding::new(
                severity,
                code,
                format!("start-up trapped in {callback}: {first_line}{said}"),
                fix,
            ));
        }
        Err(other) => {
            report.summary = format!("did not start: {other}");
            findings.push(Finding::new(
                Severity::Error,
                "startup-failed",
                format!("start-up failed: {other}"),
                "run it with `harness run` for details",
            ));
        }
    }
    (report, findings)
}

/// The worker VM's lines (the canary's, marked `[canary]`, repeat them).
fn worker_logs(logs: &[LogEntry]) -> Vec<LogEntry> {
    logs.iter()
        .filter(|entry| !entry.message.starts_with("[canary] "))
        .cloned()
        .collect()
}

/// `; it logged: ...` with the last line logged, if any.
fn last_words(logs: &[LogEntry]) -> String {
    logs.last()
        .map(|entry| format!("; its last log line: {}", entry.message))
        .unwrap_or_default()
}

/// The host function named in the harness's start-up refusal
/// (`<name> called during VM start-up ...`, from the hostcall dispatcher
/// and the Emscripten imports), if that is why start-up trapped.
fn refused_call(trap: &str) -> Option<String> {
    let at = trap.find(" called during VM start-up")?;
    trap[..at].split_whitespace().last().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::{DEADLINE_TEXT, refused_call};

    #[test]
    fn the_deadline_text_is_the_one_the_harness_writes() {
        assert!(
            crate::limits::deadline_message("f", "proxy_on_vm_start", 5).contains(DEADLINE_TEXT)
        );
    }

    #[test]
    fn the_refused_function_is_named() {
        assert_eq!(
            refused_call("error: proxy_set_tick_period_milliseconds called during VM start-up (_initialize/main); only ...")
                .as_deref(),
            Some("proxy_set_tick_period_milliseconds")
        );
        assert_eq!(refused_call("wasm trap: unreachable"), None);
    }
}
