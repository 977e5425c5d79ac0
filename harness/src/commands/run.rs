//! `harness run`: one request through a filter, printed like `curl -v`
//! (see `transcript.rs`), in a world given by flags or a scenario file
//! (see `world.rs`); `--advance` moves the virtual clock after it, or
//! alone for a filter that only works on timers. `--json` is exact.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use harness::{
    Body, ByteString, Exchange, FilterModule, Harness, HarnessConfig, HarnessError, LogLevel,
    NativeLibrary, Outcome, StreamEnd, TraceLevel, UpstreamResponse,
};

use harness::scenario::plugin_name_of;

use super::transcript::{self, Transcript};
use super::world::{World, WorldArgs, load_world};
use super::{ModuleLimitArgs, TrafficArgs, text_or_file};

/// Exit status when the filter trapped or the stream stalled.
pub const EXIT_FILTER_FAILED: u8 = 3;

/// `harness run`.
#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("filter").required(true).multiple(true).args(["module", "native", "world"])))]
pub struct RunArgs {
    /// The filter module (.wasm); optional with a --world file naming one.
    module: Option<PathBuf>,
    /// Run the native twin instead: the filter built for the host as a
    /// cdylib (`cargo build -p <filter> --profile host-release`). No sandbox.
    #[arg(long, value_name = "LIB.so", conflicts_with = "module")]
    native: Option<PathBuf>,
    /// VM configuration: inline text or @file.
    #[arg(long)]
    vm_config: Option<String>,
    /// Root id of the plugin.
    #[arg(long)]
    root_id: Option<String>,
    /// VM id (scopes shared data and queues).
    #[arg(long)]
    vm_id: Option<String>,
    /// Plugin name (the `plugin_name` property) [default: the module's file
    /// name without extension, e.g. response_header].
    #[arg(long)]
    name: Option<String>,
    /// Environment variable exposed to the filter through WASI (K=V, repeatable).
    #[arg(long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// The filter's log level (what proxy_get_log_level reports; lower
    /// lines are dropped): trace, debug, info, warn, error, critical
    /// [default: info, as Envoy's `wasm` logger; Envoy:
    /// --component-log-level wasm:debug].
    #[arg(long, value_name = "LEVEL", value_parser = parse_log_level)]
    log_level: Option<LogLevel>,
    /// Let traffic through when the filter traps (Envoy's fail_open).
    #[arg(long)]
    fail_open: bool,
    /// After a trap, start a fresh VM for the next request (Istio's FAIL_RELOAD).
    #[arg(long)]
    fail_reload: bool,
    /// Cap on the filter's linear memory, in MiB (0 = wasm32's 4 GiB).
    #[arg(long, value_name = "MIB", default_value_t = harness::limits::DEFAULT_MAX_MEMORY_BYTES / (1024 * 1024))]
    max_memory_mb: u64,
    /// Deadline for each guest callback, in ms (0 = none); past it the VM fails.
    #[arg(long, value_name = "MS", default_value_t = harness::limits::DEFAULT_CALLBACK_DEADLINE_MS)]
    callback_deadline_ms: u64,
    /// Events (ticks, callout answers, queue notifications) one step may
    /// deliver; past it the VM keeping the loop busy fails.
    #[arg(long, value_name = "N", default_value_t = harness::envoy::DEFAULT_MAX_EVENTS_PER_STEP)]
    max_events_per_step: u64,
    /// Real time one step may take, in ms; past it that VM fails.
    #[arg(long, value_name = "MS", default_value_t = harness::envoy::DEFAULT_STEP_WALL_BUDGET_MS)]
    step_wall_budget_ms: u64,
    #[command(flatten)]
    module_limits: ModuleLimitArgs,
    #[command(flatten)]
    traffic: TrafficArgs,
    /// Request body (inline text or @file).
    #[arg(long)]
    body: Option<String>,
    /// Status the upstream answers with.
    #[arg(long, default_value_t = 200)]
    upstream_status: u16,
    #[command(flatten)]
    world: WorldArgs,
    #[command(flatten)]
    tcp: super::tcp::TcpArgs,
    /// Print the full outcome as one JSON document.
    #[arg(long)]
    json: bool,
    /// Print every callback and hostcall with arguments and results.
    #[arg(long)]
    trace: bool,
}

/// Runs `harness run`: 0 when the exchange ran, 1 for an error, 3 when the
/// filter trapped or the stream stalled.
pub fn command(args: &RunArgs) -> ExitCode {
    match run(args) {
        Ok(code) => code,
        Err(e) => super::failed("harness", &e),
    }
}

/// The module to run: the command line's, else the world file's.
fn load(args: &RunArgs, world: Option<&World>) -> Result<(FilterModule, PathBuf), HarnessError> {
    if let Some(lib) = &args.native {
        return Ok((NativeLibrary::from_file(lib)?.into(), lib.clone()));
    }
    match args
        .module
        .as_ref()
        .or(world.and_then(|w| w.module.as_ref()))
    {
        Some(module) => Ok((
            FilterModule::from_file_with(&args.module_limits.engine()?, module)?,
            module.clone(),
        )),
        None => Err(HarnessError::Usage(
            "give a module.wasm, --native lib.so, or a --world file whose plugin names a module"
                .to_string(),
        )),
    }
}

/// The world file's configuration (or the defaults) with every flag given
/// laid over it; the plugin is named by `--name`, the world file, or else
/// after its module.
fn config(
    args: &RunArgs,
    world: Option<World>,
    module: &Path,
) -> Result<HarnessConfig, HarnessError> {
    let (mut config, named) = match world {
        Some(world) => (world.config, world.named),
        None => (HarnessConfig::default(), false),
    };
    let plugin = &mut config.plugin;
    if !named && let Some(name) = module.to_str().and_then(plugin_name_of) {
        plugin.name = name;
    }
    for kv in &args.env {
        let (k, v) = kv.split_once('=').ok_or_else(|| {
            HarnessError::Usage(format!("--env '{kv}' must look like NAME=value"))
        })?;
        plugin.env.insert(k.to_string(), v.to_string());
    }
    if let Some(name) = &args.name {
        plugin.name.clone_from(name);
    }
    if let Some(root_id) = &args.root_id {
        plugin.root_id.clone_from(root_id);
    }
    if let Some(vm_id) = &args.vm_id {
        plugin.vm_id.clone_from(vm_id);
    }
    if let Some(vm_config) = &args.vm_config {
        plugin.vm_config = ByteString(text_or_file(vm_config, "--vm-config")?);
    }
    if args.traffic.config.is_some() {
        plugin.configuration = ByteString(args.traffic.config()?);
    }
    if let Some(level) = args.log_level {
        plugin.log_level = level;
    }
    plugin.fail_open |= args.fail_open;
    plugin.reload_on_failure |= args.fail_reload;
    plugin.max_memory_bytes = args.max_memory_mb.saturating_mul(1024 * 1024);
    plugin.callback_deadline_ms = args.callback_deadline_ms;
    config.max_events_per_step = args.max_events_per_step;
    config.step_wall_budget_ms = args.step_wall_budget_ms;
    config.trace = if args.trace {
        TraceLevel::Hostcalls
    } else {
        TraceLevel::Callbacks
    };
    args.world.apply(&mut config)?;
    Ok(config)
}

/// The exchange to run, or none for a timer-only run (`--advance` without
/// `--request`); request-shaping flags without a request are refused.
fn exchange(args: &RunArgs, advance: Option<u64>) -> Result<Option<Exchange>, HarnessError> {
    let traffic = &args.traffic;
    if traffic.request.is_none() && advance.is_some() {
        let shaped = !traffic.headers.is_empty()
            || !traffic.upstream_headers.is_empty()
            || traffic.upstream_body.is_some()
            || args.body.is_some();
        if shaped {
            return Err(HarnessError::Usage(
                "-H, --body and --upstream-* describe a request, but with --advance and no \
                 --request none is sent: add --request 'GET /'"
                    .to_string(),
            ));
        }
        return Ok(None);
    }
    let mut request = traffic.request()?;
    if let Some(body) = &args.body {
        request.body = Body::single(text_or_file(body, "--body")?);
    }
    let upstream = UpstreamResponse {
        status: args.upstream_status,
        headers: traffic.upstream_headers()?,
        body: traffic.upstream_body()?,
        trailers: None,
        unreachable: false,
    };
    Ok(Some(Exchange {
        request,
        upstream,
        properties: Default::default(),
    }))
}

fn run(args: &RunArgs) -> Result<ExitCode, HarnessError> {
    let cli_module = args.module.as_deref().or(args.native.as_deref());
    let world = (args.world.world.as_deref())
        .map(|path| load_world(path, cli_module))
        .transpose()?;
    let (module, module_path) = load(args, world.as_ref())?;
    super::stale::warn_if_stale(&module_path);
    let config = config(args, world, &module_path)?;
    log::info!(
        "{} ({} backend) as plugin '{}': {} cluster(s), {} propert(ies)",
        module_path.display(),
        module.backend_name(),
        config.plugin.name,
        config.clusters.len(),
        config.properties.len()
    );
    let advance = args.world.advance_ms()?;
    if args.tcp.tcp {
        let http_only = args.traffic.request.is_some()
            || args.body.is_some()
            || !args.traffic.headers.is_empty()
            || advance.is_some()
            || args.json;
        if http_only {
            return Err(HarnessError::Usage(
                "--tcp runs a connection: --request, --body, -H, --advance and --json are for \
                 HTTP runs (use --send and --upstream-send for the bytes)"
                    .to_string(),
            ));
        }
        let mut out = std::io::stdout().lock();
        let trapped = super::tcp::run(&args.tcp, module, config, &module_path, &mut out)?;
        return Ok(if trapped {
            ExitCode::from(EXIT_FILTER_FAILED)
        } else {
            ExitCode::SUCCESS
        });
    }
    let exchange = exchange(args, advance)?;
    let mut envoy = Harness::new(module.clone(), config)?;
    let startup = envoy.startup().clone();
    let outcome = exchange.map(|e| envoy.exchange(&e)).transpose()?;
    let advanced = advance
        .map(|ms| envoy.advance(ms).map(|o| (ms, o)))
        .transpose()?;
    let mut out = std::io::stdout().lock();
    let written = if args.json {
        let doc = RunReport {
            module: module_path.display().to_string(),
            backend: module.backend_name(),
            startup: &startup,
            outcome: outcome.as_ref(),
            advance: advanced.as_ref().map(|(ms, o)| Advance {
                ms: *ms,
                outcome: o,
            }),
        };
        serde_json::to_writer_pretty(&mut out, &doc)
            .map_err(std::io::Error::other)
            .and_then(|()| writeln!(out))
    } else {
        let transcript = Transcript {
            module: &module_path,
            startup: &startup,
            exchange: outcome.as_ref(),
            advance: advanced.as_ref().map(|(ms, o)| (*ms, o)),
            trace: args.trace,
        };
        transcript::print(&mut out, &transcript)
    };
    super::written(written)?;
    let failed = |o: &Outcome| o.trap.is_some() || matches!(o.end, StreamEnd::Stalled { .. });
    let any_failed = outcome
        .iter()
        .chain(advanced.iter().map(|(_, o)| o))
        .any(failed);
    Ok(if any_failed {
        ExitCode::from(EXIT_FILTER_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

/// `harness run --json`: one document, fields in this order; `outcome` is
/// absent for a timer-only run, `advance` without `--advance`.
#[derive(serde::Serialize)]
struct RunReport<'a> {
    module: String,
    backend: &'static str,
    startup: &'a Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<&'a Outcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    advance: Option<Advance<'a>>,
}

/// `--advance` in the JSON document.
#[derive(serde::Serialize)]
struct Advance<'a> {
    ms: u64,
    outcome: &'a Outcome,
}

pub(crate) fn parse_log_level(text: &str) -> Result<LogLevel, String> {
    LogLevel::ALL
        .into_iter()
        .find(|level| level.name().eq_ignore_ascii_case(text))
        .ok_or_else(|| {
            format!("'{text}' is not a log level (trace, debug, info, warn, error, critical)")
        })
}
