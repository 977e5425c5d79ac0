//! The connection manager's access log: each logger (stdout, stderr or a
//! file) writes one line per stream in its format when the stream ends.
//! No logger, no line (Envoy logs nothing without an `access_log`); quick
//! mode has one stdout logger with Envoy's default format. Formats are
//! parsed once; a stream captures only the request headers they name.

mod format;
mod json;
mod render;
#[cfg(test)]
mod tests;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use harness::{DownstreamRequest, Headers, Outcome};

pub(crate) use format::{Captured, DEFAULT_FORMAT, Format, parse};
pub(crate) use json::parse_object;

/// Where a logger writes.
pub(crate) enum Sink {
    Stdout,
    Stderr,
    File(Mutex<std::fs::File>),
}

pub(crate) struct Logger {
    pub sink: Arc<Sink>,
    pub format: Format,
}

/// A listener's access loggers and the request headers their formats read.
#[derive(Default)]
pub(crate) struct AccessLogs {
    pub loggers: Vec<Logger>,
    pub captured: Captured,
}

impl AccessLogs {
    /// Quick mode's: Envoy's default line on stdout.
    pub fn default_stdout() -> AccessLogs {
        let mut captured = Captured::default();
        // The default format is a constant known to parse.
        let pieces = parse(DEFAULT_FORMAT, &mut captured).unwrap_or_default();
        AccessLogs {
            loggers: vec![Logger {
                sink: Arc::new(Sink::Stdout),
                format: Format::Text(pieces),
            }],
            captured,
        }
    }
}

/// A stream in flight, for its access-log lines.
pub(crate) struct InFlight {
    logs: Arc<AccessLogs>,
    started: Instant,
    start: chrono::DateTime<chrono::Utc>,
    protocol: &'static str,
    /// The captured request headers: as the client sent them, then as the
    /// router sent them on (the filters', the connection manager's and the
    /// router's changes in, as Envoy's `%REQ()%` reads them at log time).
    request: Vec<Option<String>>,
    /// The captured response headers, as the response left the chain for
    /// the client (unset until it does).
    response: Vec<Option<String>>,
    /// Where the router sent the request.
    pub upstream_host: Option<String>,
    pub upstream_cluster: Option<String>,
    pub route_name: Option<String>,
    /// Request body bytes from the client, response body bytes to it.
    pub bytes_received: u64,
    pub bytes_sent: u64,
}

impl InFlight {
    pub fn new(request: &DownstreamRequest, logs: &Arc<AccessLogs>) -> InFlight {
        let protocol = match request.protocol {
            harness::HttpProtocol::Http2 => "HTTP/2",
            _ => "HTTP/1.1",
        };
        let request_values = logs
            .captured
            .names
            .iter()
            .map(|name| match name.as_str() {
                ":method" => Some(request.method.clone()),
                ":path" => Some(request.path.clone()),
                ":authority" => request
                    .headers
                    .get_text(name)
                    .or_else(|| request.authority.clone()),
                _ => request.headers.get_text(name),
            })
            .collect();
        InFlight {
            logs: Arc::clone(logs),
            started: Instant::now(),
            start: crate::commands::serve::logs::utc_now(),
            protocol,
            request: request_values,
            response: vec![None; logs.captured.response_names.len()],
            upstream_host: None,
            upstream_cluster: None,
            route_name: None,
            bytes_received: 0,
            bytes_sent: 0,
        }
    }

    /// The request as it left the chain, with the router's own changes
    /// (a prefix_rewrite, x-envoy-original-path).
    pub fn left_chain(&mut self, headers: &Headers) {
        capture(&mut self.request, &self.logs.captured.names, headers);
    }

    /// The response as it left the chain for the client.
    pub fn responded(&mut self, headers: &Headers) {
        capture(
            &mut self.response,
            &self.logs.captured.response_names,
            headers,
        );
    }

    /// The stream ended: each logger's line.
    pub fn log(&self, outcome: &Outcome) {
        if self.logs.loggers.is_empty() {
            return;
        }
        let response = outcome.response.as_ref();
        let details = outcome
            .local_reply
            .as_ref()
            .map(|r| r.details.as_str())
            .or(response.map(|_| "via_upstream"));
        let record = render::Record {
            start: self.start,
            duration_ms: self.started.elapsed().as_millis(),
            request: &self.request,
            response: &self.response,
            protocol: self.protocol,
            status: response.map_or(0, |r| r.status),
            flags: response_flags(outcome),
            details,
            bytes_received: self.bytes_received,
            bytes_sent: self.bytes_sent,
            upstream_host: self.upstream_host.as_deref(),
            upstream_cluster: self.upstream_cluster.as_deref(),
            route_name: self.route_name.as_deref(),
            hostname: hostname(),
        };
        for logger in &self.logs.loggers {
            LINE.with_borrow_mut(|line| {
                line.clear();
                render::render(&logger.format, &record, line);
                buffer(&logger.sink, line.as_bytes());
            });
        }
    }
}

/// Each captured value from `headers`, by the names a format reads.
fn capture(values: &mut [Option<String>], names: &[String], headers: &Headers) {
    for (value, name) in values.iter_mut().zip(names) {
        *value = headers.get_text(name);
    }
}

/// `%RESPONSE_FLAGS%` for what the harness can tell from the outcome, by
/// the reply's response code details (Envoy's short flag names,
/// `StreamInfo::ResponseFlagUtils`): UF, UT, SI, NR; `-` otherwise.
fn response_flags(outcome: &Outcome) -> &'static str {
    let details = outcome.local_reply.as_ref().map(|r| r.details.as_str());
    match details {
        Some(d) if d.starts_with("upstream_reset_before_response_started{connection_failure") => {
            "UF"
        }
        Some("response_timeout") => "UT",
        Some("stream_idle_timeout") => "SI",
        Some("route_not_found") => "NR",
        _ => "-",
    }
}

fn hostname() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default()
    })
}

/// How much a worker keeps per logger before writing it out.
const BUFFER_BYTES: usize = 64 * 1024;

thread_local! {
    // Each worker buffers its own lines per logger (as Envoy's access-log
    // files buffer and flush them), so a busy worker writes many per
    // system call.
    static BUFFERS: std::cell::RefCell<Vec<(Arc<Sink>, Vec<u8>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
    static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

fn buffer(sink: &Arc<Sink>, line: &[u8]) {
    BUFFERS.with_borrow_mut(|buffers| {
        let at = match buffers.iter().position(|(s, _)| Arc::ptr_eq(s, sink)) {
            Some(at) => at,
            None => {
                buffers.push((Arc::clone(sink), Vec::new()));
                buffers.len() - 1
            }
        };
        let (sink, bytes) = &mut buffers[at];
        bytes.extend_from_slice(line);
        if bytes.len() >= BUFFER_BYTES {
            write_out(sink, bytes);
        }
    });
}

/// Writes out this thread's buffered lines (a worker calls it whenever it
/// has nothing queued, and when it stops).
pub(crate) fn flush() {
    BUFFERS.with_borrow_mut(|buffers| {
        for (sink, bytes) in buffers.iter_mut() {
            write_out(sink, bytes);
        }
        // A reload may have dropped loggers: forget their sinks.
        buffers.retain(|(sink, _)| Arc::strong_count(sink) > 1);
    });
}

fn write_out(sink: &Sink, bytes: &mut Vec<u8>) {
    if bytes.is_empty() {
        return;
    }
    // A closed stdout (serve | head) or a full disk loses the lines, as
    // println would; serve goes on.
    let _ = match sink {
        Sink::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(bytes).and_then(|()| out.flush())
        }
        Sink::Stderr => std::io::stderr().lock().write_all(bytes),
        Sink::File(file) => match file.lock() {
            Ok(mut f) => f.write_all(bytes),
            Err(_) => Ok(()),
        },
    };
    bytes.clear();
}
