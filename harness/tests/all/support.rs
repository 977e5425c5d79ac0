//! Shared helpers: build the guest filters once per test process, compile
//! each module once, and build probe configurations.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use harness::{
    ClusterSpec, CompiledModule, DownstreamRequest, Exchange, Harness, HarnessConfig, LogLevel,
    Outcome, PluginConfig, UpstreamResponse,
};
use serde_json::Value;

/// Packages the tests load, built together by one cargo invocation.
const PACKAGES: [&str; 3] = ["test-filter-probe", "response-header", "tcp-guard"];

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("harness/ has a parent")
        .to_path_buf()
}

/// Where cargo puts the wasm builds (honours CARGO_TARGET_DIR like cargo does;
/// scenario files name `target/...`, the default).
pub fn wasm_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    workspace_root().join(target).join("wasm32-wasip1/release")
}

/// Runs `cargo build --target wasm32-wasip1 --release -p ...` once per
/// process (a no-op when `make build` already did it). The wasm build uses
/// target/wasm32-wasip1 and target/release, so it does not wait on the lock
/// of the running test build (target/debug).
fn build_filters() {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let result = BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let mut command = Command::new(cargo);
        command
            .current_dir(workspace_root())
            .args(["build", "--target", "wasm32-wasip1", "--release", "--quiet"]);
        for package in PACKAGES {
            command.args(["-p", package]);
        }
        let output = command
            .output()
            .map_err(|e| format!("cannot run cargo to build the test filters: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "building the test filters failed (is the wasm32-wasip1 target installed? `make setup-wasm` \
                 or `rustup target add wasm32-wasip1`):\n{}",
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    });
    if let Err(message) = result {
        panic!("{message}");
    }
}

/// The probe built in the dev profile (DWARF kept, for backtraces with
/// source lines), once per process; its own target directory keeps the
/// build off the lock of the running test build.
pub fn debug_probe_wasm() -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let target = workspace_root().join("target/debug-filters");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let output = Command::new(cargo)
            .current_dir(workspace_root())
            .args(["build", "--quiet", "--target", "wasm32-wasip1"])
            .args(["-p", "test-filter-probe", "--target-dir"])
            .arg(&target)
            .output()
            .map_err(|e| format!("cannot run cargo to build the debug probe: {e}"))?;
        if output.status.success() {
            Ok(target.join("wasm32-wasip1/debug/test_filter_probe.wasm"))
        } else {
            Err(format!(
                "building the probe in the dev profile failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    });
    match built {
        Ok(path) => path.clone(),
        Err(message) => panic!("{message}"),
    }
}

/// A built filter, compiled once per process. `file` is e.g. `test_filter_probe.wasm`.
pub fn module(file: &str) -> CompiledModule {
    static MODULES: OnceLock<Mutex<HashMap<String, CompiledModule>>> = OnceLock::new();
    build_filters();
    let modules = MODULES.get_or_init(|| Mutex::new(HashMap::new()));
    let mut modules = modules.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(module) = modules.get(file) {
        return module.clone();
    }
    let path = wasm_dir().join(file);
    let module = CompiledModule::from_file(&path)
        .unwrap_or_else(|e| panic!("cannot compile {}: {e}", path.display()));
    modules.insert(file.to_string(), module.clone());
    module
}

pub fn probe_module() -> CompiledModule {
    module("test_filter_probe.wasm")
}

/// A harness configuration running the probe with this script.
pub fn probe_config(script: Value) -> HarnessConfig {
    HarnessConfig {
        plugin: PluginConfig {
            name: "probe".into(),
            configuration: script.to_string().into(),
            ..PluginConfig::default()
        },
        ..HarnessConfig::default()
    }
}

/// Starts the probe with this script; panics with the error if start-up fails.
pub fn probe(script: Value) -> Harness {
    start(probe_config(script))
}

pub fn start(config: HarnessConfig) -> Harness {
    Harness::new(probe_module(), config).unwrap_or_else(|e| panic!("start-up failed: {e}"))
}

pub fn probe_with_clusters(script: Value, clusters: Vec<ClusterSpec>) -> Harness {
    let mut config = probe_config(script);
    config.clusters = clusters;
    start(config)
}

/// A request from a `"METHOD /path"` line plus headers.
pub fn request(line: &str, headers: &[(&str, &str)]) -> DownstreamRequest {
    let mut request = DownstreamRequest::from_request_line(line).expect("valid request line");
    for (k, v) in headers {
        request.headers.push(*k, *v);
    }
    request
}

pub fn get(path: &str) -> DownstreamRequest {
    request(&format!("GET {path}"), &[("host", "example.com")])
}

pub fn ok_upstream() -> UpstreamResponse {
    UpstreamResponse::default()
}

pub fn exchange(
    harness: &mut Harness,
    request: DownstreamRequest,
    upstream: UpstreamResponse,
) -> Outcome {
    harness
        .exchange(&Exchange {
            request,
            upstream,
            properties: Default::default(),
        })
        .unwrap_or_else(|e| panic!("exchange failed: {e}"))
}

/// Info-level lines (the probe's results and traces), in order.
pub fn info(outcome: &Outcome) -> Vec<String> {
    outcome
        .logs_at(LogLevel::Info)
        .into_iter()
        .map(str::to_string)
        .collect()
}

/// Probe result lines starting with `label: `, in order.
pub fn results(outcome: &Outcome, label: &str) -> Vec<String> {
    let prefix = format!("{label}: ");
    info(outcome)
        .into_iter()
        .filter(|l| l.starts_with(&prefix))
        .collect()
}

/// The single result line of `label`; panics (showing all logs) unless exactly one.
pub fn result(outcome: &Outcome, label: &str) -> String {
    let found = results(outcome, label);
    assert_eq!(
        found.len(),
        1,
        "expected one `{label}:` line; logs: {:#?}",
        outcome.logs
    );
    found[0].clone()
}

/// Callback trace lines (`cb ...`) with the `cb ` prefix removed.
pub fn callbacks(outcome: &Outcome) -> Vec<String> {
    info(outcome)
        .into_iter()
        .filter_map(|l| l.strip_prefix("cb ").map(str::to_string))
        .collect()
}

/// Asserts `expected` lines appear in `lines` in this order (others may interleave).
pub fn assert_in_order(lines: &[String], expected: &[&str]) {
    let mut at = 0;
    for want in expected {
        match lines[at..].iter().position(|l| l == want) {
            Some(i) => at += i + 1,
            None => panic!("expected {want:?} (in order) in {lines:#?}"),
        }
    }
}

/// Builds `package` for the host (its native twin, a cdylib) once per
/// process and returns the directory holding `lib<name>.so`. A separate
/// target directory keeps this build off the lock of the running test build.
pub fn native_twin_dir(package: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, Result<(), String>>>> = OnceLock::new();
    let target = workspace_root().join("target/native-twins");
    let built = BUILT.get_or_init(|| Mutex::new(HashMap::new()));
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    let result = built.entry(package.to_string()).or_insert_with(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let output = Command::new(cargo)
            .current_dir(workspace_root())
            .args(["build", "--quiet", "-p", package, "--target-dir"])
            .arg(&target)
            .output()
            .map_err(|e| format!("cannot run cargo to build {package} natively: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "building {package} for the host failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    });
    if let Err(message) = result {
        panic!("{message}");
    }
    target.join("debug")
}

/// A chain of probe filters, one VM each: `vm_of(i, plugin)` sets each
/// plugin's VM key (vm_id, vm_config); then one `GET /` through it.
pub fn probe_chain_get(
    scripts: Vec<Value>,
    vm_of: impl Fn(usize, &mut PluginConfig),
) -> harness::EnvoyOutcome {
    let plugins: Vec<_> = scripts
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let mut config = probe_config(s);
            vm_of(i, &mut config.plugin);
            (harness::FilterModule::from(probe_module()), config)
        })
        .collect();
    let mut chain = harness::Envoy::builder()
        .plugins(&plugins)
        .build()
        .expect("start-up");
    chain
        .exchange(&Exchange {
            request: get("/"),
            upstream: ok_upstream(),
            properties: Default::default(),
        })
        .expect("exchange")
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes of lower- or upper-case hex text (test data only).
pub fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}
