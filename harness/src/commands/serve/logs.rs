//! What serve prints: Envoy's default access-log line per request on
//! stdout, the filters' log lines in Envoy's wasm log format on stderr.

use std::io::Write;
use std::time::Instant;

use harness::{DownstreamRequest, Headers, LogEntry, Outcome};

/// A request in flight, for its access-log line.
pub(crate) struct InFlight {
    pub started: Instant,
    /// `"GET /path HTTP/1.1"`.
    pub line: String,
    /// x-forwarded-for, user-agent, x-request-id and :authority: from the
    /// request as it left the chain (the filters' and the connection
    /// manager's changes in, as Envoy's `%REQ()%` reads them at log time),
    /// or as the client sent it when it never left.
    pub request: [Option<String>; 4],
    /// Where the router sent the request (`%UPSTREAM_HOST%`).
    pub upstream_host: Option<String>,
    /// Request body bytes from the client, response body bytes to it.
    pub bytes_received: u64,
    pub bytes_sent: u64,
}

const LOGGED_REQUEST_HEADERS: [&str; 4] = [
    "x-forwarded-for",
    "user-agent",
    "x-request-id",
    ":authority",
];

impl InFlight {
    pub fn new(request: &DownstreamRequest) -> InFlight {
        let protocol = match request.protocol {
            harness::HttpProtocol::Http2 => "HTTP/2",
            _ => "HTTP/1.1",
        };
        let mut fields = LOGGED_REQUEST_HEADERS.map(|name| request.headers.get_text(name));
        fields[3] = fields[3].take().or_else(|| request.authority.clone());
        InFlight {
            started: Instant::now(),
            line: format!("\"{} {} {protocol}\"", request.method, request.path),
            request: fields,
            upstream_host: None,
            bytes_received: 0,
            bytes_sent: 0,
        }
    }

    /// The request as it left the chain for the router.
    pub fn left_chain(&mut self, headers: &Headers) {
        self.request = LOGGED_REQUEST_HEADERS.map(|name| headers.get_text(name));
    }
}

/// Envoy's default access-log line (the "Default format string" of its
/// access-log docs: `[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%
/// %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT%
/// %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%"
/// "%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"`),
/// a missing value as `-`.
pub(crate) fn access_log(flight: &InFlight, outcome: &Outcome) {
    let response = outcome.response.as_ref();
    let status = response.map_or(0, |r| r.message.headers.status());
    let service_time = response
        .and_then(|r| r.message.headers.get_text("x-envoy-upstream-service-time"))
        .unwrap_or_else(|| "-".to_string());
    let flags = response_flags(outcome);
    let ms = flight.started.elapsed().as_millis();
    let [forwarded_for, user_agent, request_id, authority] = flight
        .request
        .each_ref()
        .map(|v| v.as_deref().unwrap_or("-"));
    let upstream = flight.upstream_host.as_deref().unwrap_or("-");
    ACCESS_LOG.with_borrow_mut(|buffer| {
        // Writing to a Vec cannot fail.
        let _ = writeln!(
            buffer,
            "[{}] {} {status} {flags} {} {} {ms} {service_time} \"{forwarded_for}\" \"{user_agent}\" \
             \"{request_id}\" \"{authority}\" \"{upstream}\"",
            Rfc3339Millis(utc_now()),
            flight.line,
            flight.bytes_received,
            flight.bytes_sent
        );
        if buffer.len() >= ACCESS_LOG_BUFFER_BYTES {
            write_out(buffer);
        }
    });
}

/// How much of the access log a worker keeps before writing it out.
const ACCESS_LOG_BUFFER_BYTES: usize = 64 * 1024;

thread_local! {
    // Each worker buffers its own lines (as Envoy's access log file buffers
    // and flushes them), so a busy worker writes many per system call.
    static ACCESS_LOG: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Writes out this thread's buffered access-log lines (a worker calls it
/// whenever it has nothing queued, and when it stops).
pub(crate) fn flush_access_log() {
    ACCESS_LOG.with_borrow_mut(write_out);
}

fn write_out(buffer: &mut Vec<u8>) {
    if buffer.is_empty() {
        return;
    }
    let mut out = std::io::stdout().lock();
    // A closed stdout (serve | head) loses the lines, as println would.
    let _ = out.write_all(buffer).and_then(|()| out.flush());
    buffer.clear();
}

/// `%START_TIME%`'s default form, 2024-01-01T00:00:00.000Z, without
/// parsing a strftime pattern per line.
struct Rfc3339Millis(chrono::DateTime<chrono::Utc>);

impl std::fmt::Display for Rfc3339Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use chrono::{Datelike, Timelike};
        let t = &self.0;
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.timestamp_subsec_millis()
        )
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

#[cfg(test)]
mod tests {
    #[test]
    fn start_time_is_written_as_envoys_default() {
        let t = chrono::DateTime::from_timestamp_millis(1_704_067_200_007).unwrap_or_default();
        assert_eq!(
            super::Rfc3339Millis(t).to_string(),
            t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
        );
        assert_eq!(
            super::Rfc3339Millis(t).to_string(),
            "2024-01-01T00:00:00.007Z"
        );
    }
}
