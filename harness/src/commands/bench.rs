//! `harness bench`: a filter's wasm module against its native twin.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use harness::bench::{BenchCase, BenchOptions, BenchReport, Suite, Sweep};
use harness::{HarnessError, UpstreamResponse};

use super::TrafficArgs;

/// `harness bench`.
#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["module", "suite"])))]
pub struct BenchArgs {
    /// The filter module (.wasm) to measure against its native twin.
    module: Option<PathBuf>,
    /// The native twin: the same filter built for the host with the same
    /// optimisation profile (`cargo build --release -p <filter>` ->
    /// target/release/lib<name>.so).
    #[arg(long, value_name = "LIB.so")]
    native: Option<PathBuf>,
    /// A suite file (YAML, `cases: [...]`) instead of one module.
    #[arg(long, conflicts_with_all = ["module", "native"])]
    suite: Option<PathBuf>,
    /// Only these cases of the suite (repeatable).
    #[arg(long = "only", value_name = "NAME")]
    only: Vec<String>,
    #[command(flatten)]
    traffic: TrafficArgs,
    /// Sweep: none, headers (1/10/50), response-body or request-body
    /// (0 B, 1 KiB, 64 KiB, 1 MiB whole and in 16 KiB chunks).
    #[arg(long, default_value = "none")]
    sweep: Sweep,
    /// Per-stream buffer limit in bytes.
    #[arg(long)]
    buffer_limit: Option<u64>,
    /// Milliseconds per latency run and per throughput run.
    #[arg(long, default_value_t = 1000)]
    run_ms: u64,
    /// Requests through each extra VM before the second memory reading.
    #[arg(long, default_value_t = 10_000)]
    rss_requests: u64,
    /// Print the whole report as JSON instead of tables.
    #[arg(long)]
    json: bool,
    /// Also write the JSON report to this file.
    #[arg(long, value_name = "FILE")]
    json_out: Option<PathBuf>,
}

/// Runs `harness bench`.
pub fn command(args: &BenchArgs) -> ExitCode {
    match bench(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => super::failed("harness bench", &e),
    }
}

/// The suite to run: the `--suite` file, or one case from the flags.
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
    let upstream = UpstreamResponse {
        headers: args.traffic.upstream_headers()?,
        body: args.traffic.upstream_body()?,
        ..UpstreamResponse::default()
    };
    let config = String::from_utf8(args.traffic.config()?)
        .map_err(|_| HarnessError::Usage("--config must be UTF-8 text".to_string()))?;
    let name = module.file_stem().map_or_else(
        || "filter".to_string(),
        |s| s.to_string_lossy().into_owned(),
    );
    Ok(Suite {
        cases: vec![BenchCase {
            name,
            module,
            native,
            config,
            request: args.traffic.request()?,
            upstream,
            sweep: args.sweep,
            buffer_limit_bytes: args.buffer_limit,
            connection: None,
            clusters: Vec::new(),
        }],
    })
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
