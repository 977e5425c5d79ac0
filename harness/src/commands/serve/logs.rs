//! What serve prints on stderr: the filters' log lines in Envoy's wasm
//! log format. (The access log is in [`super::access_log`].)

use harness::LogEntry;

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
