//! `harness run`: one request through a filter, printed like `curl -v`.
//! Everything the guest controls (log lines, header names and values,
//! bodies, local reply details, metric and cluster names, trap and panic
//! texts) is printed with its control characters escaped, so a filter
//! cannot forge transcript lines or drive the terminal; `--json` is exact.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use harness::printable::{callout_result, escape_bytes, escape_controls, metric_kind};
use harness::{
    Body, ByteString, Exchange, FilterModule, Harness, HarnessConfig, HarnessError, LogLevel,
    NativeLibrary, Outcome, PluginConfig, StreamEnd, TraceEvent, TraceLevel, UpstreamResponse,
};

use super::{TrafficArgs, text_or_file};

/// Exit status when the filter trapped or the stream stalled.
pub const EXIT_FILTER_FAILED: u8 = 3;

/// `harness run`.
#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("filter").required(true).args(["module", "native"])))]
pub struct RunArgs {
    /// The filter module (.wasm).
    module: Option<PathBuf>,
    /// Run the native twin instead: the filter built for the host as a
    /// cdylib (`cargo build -p <filter> --profile host-release`). No sandbox.
    #[arg(long, value_name = "LIB.so")]
    native: Option<PathBuf>,
    /// VM configuration: inline text or @file.
    #[arg(long, default_value = "")]
    vm_config: String,
    /// Root id of the plugin.
    #[arg(long, default_value = "")]
    root_id: String,
    /// VM id (scopes shared data and queues).
    #[arg(long, default_value = "")]
    vm_id: String,
    /// Plugin name (the `plugin_name` property).
    #[arg(long, default_value = "harness")]
    name: String,
    /// Environment variable exposed to the filter through WASI (K=V, repeatable).
    #[arg(long = "env", value_name = "K=V")]
    env: Vec<String>,
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
    #[command(flatten)]
    traffic: TrafficArgs,
    /// Request body (inline text or @file).
    #[arg(long)]
    body: Option<String>,
    /// Status the upstream answers with.
    #[arg(long, default_value_t = 200)]
    upstream_status: u16,
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

fn load(args: &RunArgs) -> Result<(FilterModule, PathBuf), HarnessError> {
    match (&args.module, &args.native) {
        (_, Some(lib)) => Ok((NativeLibrary::from_file(lib)?.into(), lib.clone())),
        (Some(module), None) => Ok((FilterModule::from_file(module)?, module.clone())),
        (None, None) => Err(HarnessError::Usage(
            "give a module.wasm or --native lib.so".to_string(),
        )),
    }
}

fn config(args: &RunArgs) -> Result<HarnessConfig, HarnessError> {
    let mut env = BTreeMap::new();
    for kv in &args.env {
        let (k, v) = kv.split_once('=').ok_or_else(|| {
            HarnessError::Usage(format!("--env '{kv}' must look like NAME=value"))
        })?;
        env.insert(k.to_string(), v.to_string());
    }
    Ok(HarnessConfig {
        plugin: PluginConfig {
            name: args.name.clone(),
            root_id: args.root_id.clone(),
            vm_id: args.vm_id.clone(),
            vm_config: ByteString(text_or_file(&args.vm_config, "--vm-config")?),
            configuration: ByteString(args.traffic.config()?),
            fail_open: args.fail_open,
            reload_on_failure: args.fail_reload,
            max_memory_bytes: args.max_memory_mb.saturating_mul(1024 * 1024),
            callback_deadline_ms: args.callback_deadline_ms,
            env,
            log_level: LogLevel::Trace,
        },
        trace: if args.trace {
            TraceLevel::Hostcalls
        } else {
            TraceLevel::Callbacks
        },
        ..HarnessConfig::default()
    })
}

fn run(args: &RunArgs) -> Result<ExitCode, HarnessError> {
    let (module, module_path) = load(args)?;
    let config = config(args)?;
    let mut request = args.traffic.request()?;
    if let Some(body) = &args.body {
        request.body = Body::single(text_or_file(body, "--body")?);
    }
    let upstream = UpstreamResponse {
        status: args.upstream_status,
        headers: args.traffic.upstream_headers()?,
        body: args.traffic.upstream_body()?,
        trailers: None,
        unreachable: false,
    };
    let mut envoy = Harness::new(module.clone(), config)?;
    let startup = envoy.startup().clone();
    let outcome = envoy.exchange(&Exchange {
        request,
        upstream,
        properties: Default::default(),
    })?;
    let mut out = std::io::stdout().lock();
    let written = if args.json {
        let doc = RunReport {
            module: module_path.display().to_string(),
            backend: module.backend_name(),
            startup: &startup,
            outcome: &outcome,
        };
        serde_json::to_writer_pretty(&mut out, &doc)
            .map_err(std::io::Error::other)
            .and_then(|()| writeln!(out))
    } else {
        print_human(&mut out, &module_path, &startup, &outcome, args.trace)
    };
    written.map_err(|e| HarnessError::Usage(format!("cannot write output: {e}")))?;
    Ok(match (&outcome.trap, &outcome.end) {
        (Some(_), _) | (_, StreamEnd::Stalled { .. }) => ExitCode::from(EXIT_FILTER_FAILED),
        _ => ExitCode::SUCCESS,
    })
}
/// `harness run --json`: one document, fields in this order.
#[derive(serde::Serialize)]
struct RunReport<'a> {
    module: String,
    backend: &'static str,
    startup: &'a Outcome,
    outcome: &'a Outcome,
}

/// The reason phrase curl would show after the status code.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

/// Guest bytes as one transcript line's worth of text.
fn text(b: &[u8]) -> String {
    escape_bytes(b)
}

fn print_logs(out: &mut dyn Write, title: &str, outcome: &Outcome) -> std::io::Result<()> {
    if outcome.logs.is_empty() {
        return Ok(());
    }
    writeln!(out, "* {title}:")?;
    for l in &outcome.logs {
        writeln!(
            out,
            "*   [{}] {}",
            l.level.name(),
            escape_controls(&l.message)
        )?;
    }
    Ok(())
}

fn print_trace(out: &mut dyn Write, outcome: &Outcome) -> std::io::Result<()> {
    for e in &outcome.trace {
        match e {
            TraceEvent::Callback {
                name,
                args,
                result,
                at_ms,
            } => {
                let r = result.map_or("trap".to_string(), |v| v.to_string());
                writeln!(out, "# {at_ms:>6}ms {name}({}) -> {r}", join(args))?;
            }
            TraceEvent::Hostcall { name, args, status } => {
                let meaning = match harness::abi::Status::from_u32(*status) {
                    Some(s) if name.starts_with("proxy_") => s.name().to_string(),
                    _ => format!("errno {status}"),
                };
                writeln!(out, "#            {name}({}) = {meaning}", join(args))?;
            }
        }
    }
    Ok(())
}

fn join(args: &[u64]) -> String {
    args.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_human(
    out: &mut dyn Write,
    module: &Path,
    startup: &Outcome,
    outcome: &Outcome,
    trace: bool,
) -> std::io::Result<()> {
    writeln!(
        out,
        "* filter {} started (root context 1)",
        module.display()
    )?;
    print_logs(out, "start-up logs", startup)?;
    if trace {
        print_trace(out, startup)?;
        print_trace(out, outcome)?;
    }
    match &outcome.upstream_request {
        Some(req) => {
            let h = &req.headers;
            let method = h
                .get(":method")
                .map(|v| text(v.as_bytes()))
                .unwrap_or_default();
            let path = h
                .get(":path")
                .map(|v| text(v.as_bytes()))
                .unwrap_or_default();
            writeln!(out, "* request as the upstream received it:")?;
            writeln!(out, "> {method} {path} HTTP/1.1")?;
            if let Some(a) = h.get(":authority") {
                writeln!(out, "> host: {}", text(a.as_bytes()))?;
            }
            for (k, v) in h.iter().filter(|(k, _)| !k.starts_with(b":")) {
                writeln!(out, "> {}: {}", text(k), text(v))?;
            }
            writeln!(out, ">")?;
            if !req.body.is_empty() {
                writeln!(out, "{}", text(req.body.as_bytes()))?;
            }
        }
        None => writeln!(out, "* the request never reached the upstream")?,
    }
    if let Some(reply) = &outcome.local_reply {
        writeln!(
            out,
            "* local reply {} from the {} (details \"{}\")",
            reply.status,
            reply.source,
            escape_controls(&reply.details)
        )?;
    }
    match &outcome.response {
        Some(resp) => {
            writeln!(out, "* response as the client received it:")?;
            writeln!(out, "< HTTP/1.1 {} {}", resp.status, reason(resp.status))?;
            for (k, v) in resp
                .message
                .headers
                .iter()
                .filter(|(k, _)| !k.starts_with(b":"))
            {
                writeln!(out, "< {}: {}", text(k), text(v))?;
            }
            writeln!(out, "<")?;
            if !resp.message.body.is_empty() {
                writeln!(out, "{}", text(resp.message.body.as_bytes()))?;
            }
            if resp.reset {
                writeln!(out, "* the stream was reset")?;
            }
        }
        None => writeln!(out, "* no response reached the client")?,
    }
    match &outcome.end {
        StreamEnd::Stalled { reason } => {
            writeln!(out, "* STREAM STALLED: {}", escape_controls(reason))?;
        }
        StreamEnd::Reset => writeln!(out, "* stream reset")?,
        _ => {}
    }
    print_logs(out, "filter logs", outcome)?;
    if let Some(t) = &outcome.trap {
        // The trap text's own lines (cause, then backtrace frames) stay
        // lines, each behind the transcript's `*` prefix.
        let mut lines = t.trap.lines();
        writeln!(
            out,
            "* TRAP in {} (context {}): {}",
            t.callback,
            t.context_id,
            escape_controls(lines.next().unwrap_or_default())
        )?;
        for line in lines {
            writeln!(out, "*   {}", escape_controls(line))?;
        }
        if let Some(p) = &t.panic_message {
            writeln!(out, "*   guest panic: {}", escape_controls(p))?;
        }
    }
    for m in &outcome.metrics {
        writeln!(
            out,
            "* metric {} ({}) = {}",
            escape_controls(&m.name),
            metric_kind(m.kind),
            m.value
        )?;
    }
    for c in &outcome.http_calls {
        writeln!(
            out,
            "* http_call #{} to {} -> {}",
            c.token,
            escape_controls(&c.cluster),
            callout_result(&c.result)
        )?;
    }
    Ok(())
}
