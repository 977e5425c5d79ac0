//! The `harness` subcommands, one module each, and the flags and argument
//! parsing they share. Binary-side only: the library never sees clap.

pub mod bench;
pub mod check;
pub mod compile;
pub(crate) mod coverage;
pub mod docs;
pub mod new;
pub mod run;
pub mod serve;
mod stale;
pub mod tcp;
pub mod test;
mod transcript;
mod world;

use std::io::Read;
use std::process::ExitCode;

use clap::Args;

use harness::limits::{
    DEFAULT_COMPILE_TIMEOUT_MS, DEFAULT_MAX_FUNCTION_BODY_BYTES, DEFAULT_MAX_FUNCTIONS,
    DEFAULT_MAX_MODULE_BYTES, ModuleLimits,
};
use harness::{Body, DownstreamRequest, HarnessError, Headers, WasmEngine};

/// Exit status for errors in how the command was called (clap uses it too).
pub const EXIT_USAGE: u8 = 2;

/// The traffic flags `run` and `bench` both take.
#[derive(Args, Debug)]
pub struct TrafficArgs {
    /// Plugin configuration: inline text (usually JSON) or @file.
    #[arg(long)]
    pub config: Option<String>,
    /// The request line: 'METHOD /path [HTTP/1.1|HTTP/2]' [default: GET /].
    #[arg(long)]
    pub request: Option<String>,
    /// Frame the request and response as HTTP/2 (end of stream on the last
    /// data frame) instead of HTTP/1.1 (an empty end-of-stream frame).
    #[arg(long)]
    pub http2: bool,
    /// Request header 'name: value' (repeatable). `host` becomes :authority.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Upstream response header 'name: value' (repeatable).
    #[arg(long = "upstream-header", value_name = "NAME: VALUE")]
    pub upstream_headers: Vec<String>,
    /// Upstream response body (inline text or @file).
    #[arg(long)]
    pub upstream_body: Option<String>,
}

impl TrafficArgs {
    /// `--config` as bytes (empty when not given).
    pub fn config(&self) -> Result<Vec<u8>, HarnessError> {
        match &self.config {
            Some(config) => text_or_file(config, "--config"),
            None => Ok(Vec::new()),
        }
    }

    /// `--request` (default `GET /`) and `-H`.
    pub fn request(&self) -> Result<DownstreamRequest, HarnessError> {
        let line = self.request.as_deref().unwrap_or("GET /");
        let mut request =
            DownstreamRequest::from_request_line(line).map_err(HarnessError::Usage)?;
        request.headers = parse_headers(&self.headers, "-H")?;
        if self.http2 {
            request.protocol = harness::HttpProtocol::Http2;
        }
        Ok(request)
    }

    /// `--upstream-header`.
    pub fn upstream_headers(&self) -> Result<Headers, HarnessError> {
        parse_headers(&self.upstream_headers, "--upstream-header")
    }

    /// `--upstream-body` (empty when not given).
    pub fn upstream_body(&self) -> Result<Body, HarnessError> {
        match &self.upstream_body {
            Some(b) => Ok(Body::single(text_or_file(b, "--upstream-body")?)),
            None => Ok(Body::empty()),
        }
    }
}

/// The compilation limits `run` and `compile` take (see harness::limits::ModuleLimits).
#[derive(Args, Debug)]
pub struct ModuleLimitArgs {
    /// Refuse a module larger than this, in MiB (0 = no limit).
    #[arg(long, value_name = "MIB", default_value_t = DEFAULT_MAX_MODULE_BYTES / (1024 * 1024))]
    pub max_module_mb: u64,
    /// Refuse a module defining more functions than this (0 = no limit).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_FUNCTIONS)]
    pub max_functions: u32,
    /// Refuse a module with a function body larger than this, in KiB (0 = no limit).
    #[arg(long, value_name = "KIB", default_value_t = DEFAULT_MAX_FUNCTION_BODY_BYTES / 1024)]
    pub max_function_body_kb: u32,
    /// Give up compiling a module after this many ms (0 = no limit).
    #[arg(long, value_name = "MS", default_value_t = DEFAULT_COMPILE_TIMEOUT_MS)]
    pub compile_timeout_ms: u64,
}

impl ModuleLimitArgs {
    /// The shared engine under these limits.
    pub fn engine(&self) -> Result<WasmEngine, HarnessError> {
        Ok(WasmEngine::shared()?.with_module_limits(ModuleLimits {
            max_module_bytes: self.max_module_mb.saturating_mul(1024 * 1024),
            max_functions: self.max_functions,
            max_function_body_bytes: self.max_function_body_kb.saturating_mul(1024),
            compile_timeout_ms: self.compile_timeout_ms,
        }))
    }
}

/// Inline text, or the contents of a file when written `@path`, or of
/// standard input when written `@-` (once per run: it cannot be read twice).
pub fn text_or_file(value: &str, what: &str) -> Result<Vec<u8>, HarnessError> {
    match value.strip_prefix('@') {
        Some("-") => read_stdin(what),
        Some(path) => std::fs::read(path)
            .map_err(|e| HarnessError::Usage(format!("cannot read {what} file {path}: {e}"))),
        None => Ok(value.as_bytes().to_vec()),
    }
}

/// Standard input, for the one flag written `@-`.
fn read_stdin(what: &str) -> Result<Vec<u8>, HarnessError> {
    static TAKEN_BY: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
    let mut taken = TAKEN_BY.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(first) = taken.as_ref() {
        return Err(HarnessError::Usage(format!(
            "{what} @-: standard input was already read for {first}; give one of them @file"
        )));
    }
    *taken = Some(what.to_string());
    let mut bytes = Vec::new();
    std::io::stdin()
        .read_to_end(&mut bytes)
        .map_err(|e| HarnessError::Usage(format!("cannot read {what} from standard input: {e}")))?;
    log::debug!("{what}: {} bytes from standard input", bytes.len());
    Ok(bytes)
}

/// The result of writing to stdout, where a closed pipe (`harness ... |
/// head -1`) is not an error: the reader has all it wanted.
pub fn written(result: std::io::Result<()>) -> Result<(), HarnessError> {
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            log::debug!("stdout closed by its reader; output stopped");
            Ok(())
        }
        other => other.map_err(|e| HarnessError::Usage(format!("cannot write output: {e}"))),
    }
}

/// `name: value` lines; a leading `:` belongs to the name (`:authority: x`).
pub fn parse_headers(lines: &[String], what: &str) -> Result<Headers, HarnessError> {
    let mut h = Headers::new();
    for line in lines {
        let start = usize::from(line.starts_with(':'));
        let idx = line
            .get(start..)
            .and_then(|rest| rest.find(':'))
            .map(|i| i + start)
            .ok_or_else(|| {
                HarnessError::Usage(format!("{what} '{line}' must look like 'name: value'"))
            })?;
        h.push(line[..idx].trim(), line[idx + 1..].trim_start());
    }
    Ok(h)
}

/// Prints `harness <command>: <error>` and returns exit status 1.
pub fn failed(command: &str, error: &HarnessError) -> ExitCode {
    eprintln!("{command}: {error}");
    ExitCode::FAILURE
}

/// Prints a usage error and returns exit status 2.
pub fn usage_error(command: &str, message: &str) -> ExitCode {
    eprintln!("{command}: {message}");
    ExitCode::from(EXIT_USAGE)
}
