//! What serve prints: Envoy's default access-log line per request on
//! stdout, the filters' log lines in Envoy's wasm log format on stderr.

use std::time::Instant;

use harness::{DownstreamRequest, LogEntry};

/// A request in flight, for its access-log line.
pub(crate) struct InFlight {
    pub started: Instant,
    pub line: String,
    /// Request body bytes from the client, response body bytes to it.
    pub bytes_received: u64,
    pub bytes_sent: u64,
}

/// `"GET /path HTTP/1.1"` as Envoy's access log writes it.
pub(crate) fn request_line(request: &DownstreamRequest) -> String {
    let protocol = match request.protocol {
        harness::HttpProtocol::Http2 => "HTTP/2",
        _ => "HTTP/1.1",
    };
    format!("\"{} {} {protocol}\"", request.method, request.path)
}

/// Envoy's default access-log line, the fields the harness knows
/// (`status` 0: no response).
pub(crate) fn access_log(flight: &InFlight, status: u16) {
    let sent = flight.bytes_sent;
    let ms = flight.started.elapsed().as_millis();
    let time = utc_now().format("%Y-%m-%dT%H:%M:%S%.3fZ");
    println!(
        "[{time}] {} {status} - {} {sent} {ms}",
        flight.line, flight.bytes_received
    );
}

/// Filter log lines the way Envoy's wasm logger prints them.
pub(crate) fn print_logs(worker: usize, plugin: &str, logs: &[LogEntry]) {
    // Lines below the process's wasm log level were never captured.
    for entry in logs {
        let time = utc_now().format("%Y-%m-%d %H:%M:%S%.3f");
        eprintln!(
            "[{time}][{worker}][{}][wasm] wasm log {plugin}: {}",
            entry.level.name().to_ascii_lowercase(),
            harness::printable::escape_controls(&entry.message)
        );
    }
}

/// The wall clock (chrono is built without its clock feature here).
pub(crate) fn utc_now() -> chrono::DateTime<chrono::Utc> {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let ms = i64::try_from(since.as_millis()).unwrap_or(i64::MAX);
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}
