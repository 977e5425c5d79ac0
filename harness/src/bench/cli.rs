//! The `harness bench` and `harness compile` subcommands.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::backend::wasm::{CompiledModule, WasmEngine};
use crate::bench::{BenchCase, BenchOptions, BenchReport, Suite, Sweep};
use crate::error::HarnessError;
use crate::model::{Body, DownstreamRequest, Headers, UpstreamResponse};

/// `harness bench`.
#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["module", "suite"])))]
pub struct BenchArgs {
    /// The filter module (.wasm) to measure against its native twin.
    pub module: Option<PathBuf>,
    /// The native twin: the same filter built for the host with the same
    /// optimisation profile (`cargo build --release -p <filter>` ->
    /// target/release/lib<name>.so).
    #[arg(long, value_name = "LIB.so")]
    pub native: Option<PathBuf>,
    /// A suite file (YAML, `cases: [...]`) instead of one module.
    #[arg(long, conflicts_with_all = ["module", "native"])]
    pub suite: Option<PathBuf>,
    /// Only these cases of the suite (repeatable).
    #[arg(long = "only", value_name = "NAME")]
    pub only: Vec<String>,
    /// Plugin configuration: inline text (usually JSON) or @file.
    #[arg(long, default_value = "")]
    pub config: String,
    /// The request line: 'METHOD /path'.
    #[arg(long, default_value = "GET /")]
    pub request: String,
    /// Request header 'name: value' (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Upstream response header 'name: value' (repeatable).
    #[arg(long = "upstream-header", value_name = "NAME: VALUE")]
    pub upstream_headers: Vec<String>,
    /// Upstream response body (inline text or @file).
    #[arg(long)]
    pub upstream_body: Option<String>,
    /// Sweep: none, headers (1/10/50), response-body or request-body
    /// (0 B, 1 KiB, 64 KiB, 1 MiB whole and in 16 KiB chunks).
    #[arg(long, default_value = "none", value_parser = parse_sweep)]
    pub sweep: Sweep,
    /// Per-stream buffer limit in bytes.
    #[arg(long)]
    pub buffer_limit: Option<u64>,
    /// Milliseconds per latency run and per throughput run.
    #[arg(long, default_value_t = 1000)]
    pub run_ms: u64,
    /// Requests through each extra VM before the second memory reading.
    #[arg(long, default_value_t = 10_000)]
    pub rss_requests: u64,
    /// Print the whole report as JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON report to this file.
    #[arg(long, value_name = "FILE")]
    pub json_out: Option<PathBuf>,
}

fn parse_sweep(s: &str) -> Result<Sweep, String> {
    match s {
        "none" => Ok(Sweep::None),
        "headers" => Ok(Sweep::Headers),
        "response-body" => Ok(Sweep::ResponseBody),
        "request-body" => Ok(Sweep::RequestBody),
        _ => Err(format!(
            "unknown sweep {s:?} (none, headers, response-body, request-body)"
        )),
    }
}

fn text_or_file(value: &str, what: &str) -> Result<String, HarnessError> {
    match value.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| HarnessError::Usage(format!("cannot read {what} file {path}: {e}"))),
        None => Ok(value.to_string()),
    }
}

fn parse_headers(lines: &[String], what: &str) -> Result<Headers, HarnessError> {
    let mut h = Headers::new();
    for line in lines {
        let (k, v) = line.split_once(':').ok_or_else(|| {
            HarnessError::Usage(format!("{what} {line:?} must look like 'name: value'"))
        })?;
        h.push(k.trim(), v.trim_start());
    }
    Ok(h)
}

fn suite_of(args: &BenchArgs) -> Result<Suite, HarnessError> {
    if let Some(path) = &args.suite {
        return Suite::from_file(path);
    }
    let module = args
        .module
        .clone()
        .ok_or_else(|| HarnessError::Usage("give a module.wasm or --suite".to_string()))?;
    let native = args.native.clone().ok_or_else(|| {
        HarnessError::Usage(
            "give the native twin with --native <lib.so> (build it with \
             `cargo build --release -p <filter>`)"
                .to_string(),
        )
    })?;
    let mut request =
        DownstreamRequest::from_request_line(&args.request).map_err(HarnessError::Usage)?;
    request.headers = parse_headers(&args.headers, "-H")?;
    let upstream = UpstreamResponse {
        headers: parse_headers(&args.upstream_headers, "--upstream-header")?,
        body: match &args.upstream_body {
            Some(b) => Body::single(text_or_file(b, "--upstream-body")?.into_bytes()),
            None => Body::empty(),
        },
        ..UpstreamResponse::default()
    };
    let name = module.file_stem().map_or_else(
        || "filter".to_string(),
        |s| s.to_string_lossy().into_owned(),
    );
    Ok(Suite {
        cases: vec![BenchCase {
            name,
            module,
            native,
            config: text_or_file(&args.config, "--config")?,
            request,
            upstream,
            sweep: args.sweep,
            buffer_limit_bytes: args.buffer_limit,
        }],
    })
}

/// Runs `harness bench`.
pub fn bench_command(args: &BenchArgs) -> ExitCode {
    match bench(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("harness bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bench(args: &BenchArgs) -> Result<(), HarnessError> {
    let suite = suite_of(args)?;
    let options = BenchOptions {
        run_time: Duration::from_millis(args.run_ms.max(10)),
        rss_requests: args.rss_requests,
        ..BenchOptions::default()
    };
    let mut progress = |step: &str| eprintln!("harness bench: {step}");
    let report = BenchReport::run(&suite, &options, &args.only, &mut progress)?;
    let json = serde_json::to_string_pretty(&report)
        .map_err(|e| HarnessError::Usage(format!("cannot encode the report: {e}")))?;
    if let Some(path) = &args.json_out {
        std::fs::write(path, format!("{json}\n"))
            .map_err(|e| HarnessError::Usage(format!("cannot write {}: {e}", path.display())))?;
    }
    let mut out = std::io::stdout().lock();
    let written = if args.json {
        writeln!(out, "{json}")
    } else {
        write!(out, "{}", report.render())
    };
    written.map_err(|e| HarnessError::Usage(format!("cannot write output: {e}")))
}

/// `harness compile`.
#[derive(Args, Debug)]
pub struct CompileArgs {
    /// The filter module (.wasm or .wat).
    pub module: PathBuf,
    /// Where to write the precompiled module (default: the module path with `.cwasm`).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

/// Runs `harness compile`: a precompiled artifact `harness run`, `test`
/// and `bench` load without compiling (same wasmtime version and settings only).
pub fn compile_command(args: &CompileArgs) -> ExitCode {
    let result = (|| -> Result<PathBuf, HarnessError> {
        let bytes = std::fs::read(&args.module).map_err(|source| HarnessError::ModuleNotFound {
            path: args.module.clone(),
            source,
        })?;
        let name = args.module.display().to_string();
        let artifact = CompiledModule::precompile(&WasmEngine::shared()?, &name, &bytes)?;
        // Check it is a filter the harness accepts before writing it.
        CompiledModule::from_bytes(&name, &bytes)?;
        let out = args
            .output
            .clone()
            .unwrap_or_else(|| args.module.with_extension("cwasm"));
        std::fs::write(&out, artifact)
            .map_err(|e| HarnessError::Usage(format!("cannot write {}: {e}", out.display())))?;
        Ok(out)
    })();
    match result {
        Ok(out) => {
            println!("{}", out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("harness compile: {e}");
            ExitCode::FAILURE
        }
    }
}
