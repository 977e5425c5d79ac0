//! `-v` and `RUST_LOG`: the registry conversation through tracing, on stderr,
//! with every password and token the process knows about (and any
//! Authorization-style credential) replaced by `<redacted>`.

use std::io::Write;
use std::sync::{Mutex, OnceLock};

use tracing_subscriber::EnvFilter;

fn secrets() -> &'static Mutex<Vec<String>> {
    static SECRETS: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    SECRETS.get_or_init(|| Mutex::new(Vec::new()))
}

/// Keeps `secret` out of every log line written from now on.
pub fn redact(secret: &str) {
    if secret.is_empty() {
        return;
    }
    if let Ok(mut list) = secrets().lock()
        && !list.iter().any(|s| s == secret)
    {
        list.push(secret.to_string());
    }
}

fn credential_pattern() -> Option<&'static regex::Regex> {
    static PATTERN: OnceLock<Option<regex::Regex>> = OnceLock::new();
    PATTERN
        .get_or_init(|| {
            regex::Regex::new(
                r"(?i)\b(basic|bearer)\s+[A-Za-z0-9+/=._~-]{8,}|(?i)(password|token)([=:]\s*)\S+",
            )
            .ok()
        })
        .as_ref()
}

/// `text` with known secrets and credential-looking values removed.
pub fn scrub(text: &str) -> String {
    let mut clean = text.to_string();
    if let Ok(list) = secrets().lock() {
        for secret in list.iter() {
            clean = clean.replace(secret.as_str(), "<redacted>");
        }
    }
    if let Some(pattern) = credential_pattern() {
        clean = pattern
            .replace_all(&clean, |caps: &regex::Captures<'_>| {
                match (caps.get(1), caps.get(2)) {
                    (Some(scheme), _) => format!("{} <redacted>", scheme.as_str()),
                    (None, Some(name)) => format!(
                        "{}{}<redacted>",
                        name.as_str(),
                        caps.get(3).map(|m| m.as_str()).unwrap_or("=")
                    ),
                    (None, None) => "<redacted>".to_string(),
                }
            })
            .into_owned();
    }
    clean
}

/// A stderr writer that scrubs each formatted event before it is written.
struct ScrubbedStderr;

impl Write for ScrubbedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().write_all(scrub(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Installs the subscriber: `-v` shows publish's and oci-client's requests,
/// `-vv` adds the HTTP stack; otherwise `RUST_LOG` decides (nothing when unset).
pub fn init(verbosity: u8) {
    let filter = match verbosity {
        0 => match std::env::var("RUST_LOG") {
            Ok(value) if !value.trim().is_empty() => EnvFilter::new(value),
            _ => return,
        },
        1 => EnvFilter::new("warn,publish=debug,oci_registry=debug,oci_client=debug"),
        _ => EnvFilter::new("debug,publish=trace,oci_registry=trace,oci_client=trace"),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| ScrubbedStderr)
        .with_ansi(false)
        .without_time()
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_secrets_and_credential_headers_are_scrubbed() {
        redact("s3cr3t-pass");
        let line =
            "GET /v2/ user=u password=s3cr3t-pass Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.x.y";
        let clean = scrub(line);
        assert!(!clean.contains("s3cr3t-pass"), "{clean}");
        assert!(!clean.contains("eyJhbGci"), "{clean}");
        assert!(clean.contains("GET /v2/"), "{clean}");
    }
}
