//! Rust tests of a filter crate: its .wasm and its native twin, each in
//! the harness's simulated Envoy, driven and checked in the filter
//! author's terms (statuses, headers, log lines, metrics).
//!
//! ```no_run
//! use filter_test::FilterUnderTest;
//! use serde_json::json;
//!
//! // in filters/<crate>/tests/<name>.rs
//! for filter in FilterUnderTest::both(env!("CARGO_MANIFEST_DIR")) {
//!     let mut envoy = filter.config(json!({"name": "x-demo", "value": "on"})).start();
//!     envoy
//!         .request("GET /details/1")
//!         .header("host", "details:9080")
//!         .send()
//!         .assert_status(200)
//!         .assert_header("x-demo", "on")
//!         .assert_no_local_reply();
//! }
//! ```
//!
//! The .wasm is built once per test process (`cargo build --target
//! wasm32-wasip1 --release` of the crate); the native twin is the
//! `lib<crate>.so` that `cargo test` builds next to the test executable.
//! The twin's `proxy_*` imports resolve against the test executable, so its
//! tests link with `--export-dynamic`: a filter crate's `build.rs` says so
//! (see filters/README.md, "Testing a filter in Rust").

mod locate;
mod reply;

use std::path::Path;

use harness::{
    ClusterSpec, CompiledModule, DownstreamRequest, Envoy, Exchange, FilterModule, HarnessConfig,
    HarnessError, LogLevel, NativeLibrary, Outcome, PluginConfig, PropertyValue, UpstreamResponse,
};
use serde_json::Value;

pub use harness;
pub use reply::Reply;

/// One build of a filter crate, loaded and ready to start with a configuration.
#[derive(Clone)]
pub struct FilterUnderTest {
    module: FilterModule,
    /// `response-header (wasm)`: how failure messages name this build.
    label: String,
    package: String,
}

/// Panics with `message` at the caller's test line.
#[track_caller]
fn fail(message: String) -> ! {
    panic!("{message}")
}

impl FilterUnderTest {
    /// The crate at `manifest_dir` (pass `env!("CARGO_MANIFEST_DIR")`)
    /// built for wasm32-wasip1 and compiled, once per test process.
    #[track_caller]
    pub fn wasm(manifest_dir: impl AsRef<Path>) -> FilterUnderTest {
        let krate = locate::Crate::at(manifest_dir.as_ref()).unwrap_or_else(|e| fail(e));
        let path = krate.wasm().unwrap_or_else(|e| fail(e));
        let module = compiled(&path).unwrap_or_else(|e| fail(e));
        FilterUnderTest {
            module: module.into(),
            label: format!("{} (wasm)", krate.package),
            package: krate.package,
        }
    }

    /// The same crate built for the host (its native twin). Needs the
    /// test executable to export the harness's host functions (see the
    /// crate docs); says how to fix it when it does not.
    #[track_caller]
    pub fn native(manifest_dir: impl AsRef<Path>) -> FilterUnderTest {
        if let Err(e) = host_functions_exported() {
            fail(e)
        }
        let krate = locate::Crate::at(manifest_dir.as_ref()).unwrap_or_else(|e| fail(e));
        let path = krate.native().unwrap_or_else(|e| fail(e));
        let library = NativeLibrary::from_file(&path).unwrap_or_else(|e| fail(e.to_string()));
        FilterUnderTest {
            module: library.into(),
            label: format!("{} (native)", krate.package),
            package: krate.package,
        }
    }

    /// Both builds, wasm first: run the same assertions on each.
    #[track_caller]
    pub fn both(manifest_dir: impl AsRef<Path>) -> [FilterUnderTest; 2] {
        let dir = manifest_dir.as_ref();
        [Self::wasm(dir), Self::native(dir)]
    }

    /// `"wasm"` or `"native"`.
    pub fn backend(&self) -> &'static str {
        self.module.backend_name()
    }

    /// The plugin with this configuration (JSON, as a WasmPlugin's
    /// `pluginConfig`; a string is passed as it is).
    pub fn config(&self, configuration: Value) -> Setup {
        let bytes = match configuration {
            Value::String(text) => text.into_bytes(),
            other => other.to_string().into_bytes(),
        };
        let plugin = PluginConfig {
            name: self.package.clone(),
            configuration: bytes.into(),
            ..PluginConfig::default()
        };
        Setup {
            filter: self.clone(),
            config: HarnessConfig {
                plugin,
                ..HarnessConfig::default()
            },
        }
    }
}

/// Compiles a module once per process (tests of one crate share it).
fn compiled(path: &Path) -> Result<CompiledModule, String> {
    use std::collections::HashMap;
    use std::path::PathBuf;
    use std::sync::{Mutex, OnceLock};
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, CompiledModule>>> = OnceLock::new();
    let modules = MODULES.get_or_init(|| Mutex::new(HashMap::new()));
    let mut modules = modules.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(module) = modules.get(path) {
        return Ok(module.clone());
    }
    let module = CompiledModule::from_file(path).map_err(|e| e.to_string())?;
    modules.insert(path.to_path_buf(), module.clone());
    Ok(module)
}

/// Whether this executable exports the host functions a native twin links
/// against (`--export-dynamic`): checked up front, because the loader's own
/// error does not say which symbol was missing or why.
fn host_functions_exported() -> Result<(), String> {
    let this = libloading::os::unix::Library::this();
    // SAFETY: only looks the symbol up; nothing is called through it.
    let found = unsafe { this.get::<*const ()>(b"proxy_log\0") }.is_ok();
    if found {
        Ok(())
    } else {
        Err(
            "this test executable does not export the harness's host functions, so a native \
             twin cannot link against them. Add a build.rs to the filter crate with\n    \
             println!(\"cargo:rustc-link-arg-tests=-Wl,--export-dynamic\");\n\
             (see filters/README.md, \"Testing a filter in Rust\")"
                .to_string(),
        )
    }
}

/// A plugin being configured: clusters, properties, plugin settings.
pub struct Setup {
    filter: FilterUnderTest,
    config: HarnessConfig,
}

impl Setup {
    /// A cluster the filter may call out to (scripted answers).
    pub fn cluster(mut self, cluster: ClusterSpec) -> Setup {
        self.config.clusters.push(cluster);
        self
    }

    /// A property every request sees (dotted path, e.g. `"xds.route_name"`).
    pub fn property(mut self, path: &str, value: PropertyValue) -> Setup {
        self.config.properties.insert(path.to_string(), value);
        self
    }

    /// Changes anything else of the simulated Envoy (log level, vm_id...).
    pub fn with(mut self, change: impl FnOnce(&mut HarnessConfig)) -> Setup {
        change(&mut self.config);
        self
    }

    /// Starts the plugin; a start-up failure fails the test with the
    /// filter's own log lines.
    #[track_caller]
    pub fn start(self) -> Running {
        let label = self.filter.label.clone();
        match Envoy::builder()
            .plugin(self.filter.module.clone(), self.config)
            .build()
        {
            Ok(envoy) => Running { envoy, label },
            Err(e) => fail(format!("{label}: the plugin did not start: {e}")),
        }
    }

    /// Starts the plugin expecting its configuration to be rejected, and
    /// checks that a start-up log line contains `needle`.
    #[track_caller]
    pub fn assert_rejected(self, needle: &str) {
        let label = self.filter.label.clone();
        match Envoy::builder()
            .plugin(self.filter.module.clone(), self.config)
            .build()
        {
            Ok(_) => fail(format!(
                "{label}: expected the configuration to be rejected, but the plugin started"
            )),
            Err(HarnessError::ConfigurationRejected { logs, .. }) => {
                let lines: Vec<String> = logs.into_iter().map(|l| l.message).collect();
                if !lines.iter().any(|l| l.contains(needle)) {
                    fail(format!(
                        "{label}: the configuration was rejected, but no start-up log line contains {}\n{}",
                        reply::quoted(needle),
                        reply::listing("start-up logs", &lines)
                    ))
                }
            }
            Err(other) => fail(format!(
                "{label}: expected the configuration to be rejected, but start-up failed otherwise: {other}"
            )),
        }
    }
}

/// A started plugin in its simulated Envoy.
pub struct Running {
    envoy: Envoy,
    label: String,
}

impl Running {
    /// A request from `"METHOD /path"` (a lone path means GET).
    #[track_caller]
    pub fn request(&mut self, line: &str) -> RequestBuilder<'_> {
        let request = DownstreamRequest::from_request_line(line)
            .unwrap_or_else(|e| fail(format!("{}: {e}", self.label)));
        RequestBuilder {
            running: self,
            exchange: Exchange {
                request,
                ..Exchange::default()
            },
        }
    }

    /// Advances virtual time (timers fire) and returns what happened meanwhile.
    #[track_caller]
    pub fn advance(&mut self, ms: u64) -> Reply {
        let outcome = self
            .envoy
            .advance(ms)
            .unwrap_or_else(|e| fail(format!("{}: advancing time failed: {e}", self.label)));
        Reply::new(self.label.clone(), outcome)
    }

    /// Start-up's log lines at info level or above.
    pub fn startup_logs(&self) -> Vec<String> {
        reply::lines_at_least(&self.envoy.startup(), LogLevel::Info)
    }

    /// The Envoy underneath, for what this API does not cover.
    pub fn envoy(&mut self) -> &mut Envoy {
        &mut self.envoy
    }
}

/// A request being written; [`RequestBuilder::send`] runs it.
pub struct RequestBuilder<'a> {
    running: &'a mut Running,
    exchange: Exchange,
}

impl RequestBuilder<'_> {
    /// A request header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.exchange.request.headers.push(name, value);
        self
    }

    /// The request body (one chunk).
    pub fn body(mut self, body: &str) -> Self {
        self.exchange.request.body = harness::Body::single(body);
        self
    }

    /// A property for this request only.
    pub fn property(mut self, path: &str, value: PropertyValue) -> Self {
        self.exchange.properties.insert(path.to_string(), value);
        self
    }

    /// What the upstream answers (default: 200, no headers, no body).
    pub fn upstream(mut self, upstream: UpstreamResponse) -> Self {
        self.exchange.upstream = upstream;
        self
    }

    /// An upstream response header.
    pub fn upstream_header(mut self, name: &str, value: &str) -> Self {
        self.exchange.upstream.headers.push(name, value);
        self
    }

    /// Runs the exchange to its end.
    #[track_caller]
    pub fn send(self) -> Reply {
        let label = self.running.label.clone();
        let outcome: Outcome = self
            .running
            .envoy
            .exchange(&self.exchange)
            .unwrap_or_else(|e| fail(format!("{label}: the request could not run: {e}")))
            .outcome;
        Reply::new(label, outcome)
    }
}
