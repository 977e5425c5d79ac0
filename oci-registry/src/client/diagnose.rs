//! Why a registry request failed, in words that say what to do: connection
//! refused, DNS and TLS failures named as such, 401/403 as credential problems,
//! "not found" for unknown names, and which failures are worth retrying.

use oci_client::errors::{OciDistributionError, OciErrorCode};

use super::{CappedBuffer, RegistryClient};
use crate::auth::Credentials;
use crate::errors::Error;

impl RegistryClient {
    /// Turns an oci-client error into one that says what failed and what to do.
    pub(super) fn explain(&self, what: &str, error: OciDistributionError, retries: u32) -> Error {
        if let OciDistributionError::DigestError(
            oci_client::errors::DigestError::VerificationError { expected, actual },
        ) = &error
        {
            return Error::Digest {
                what: what.to_string(),
                expected: expected.clone(),
                actual: actual.clone(),
            };
        }
        let status = http_status(&error);
        if matches!(error, OciDistributionError::AuthenticationFailure(_))
            || matches!(status, Some(401) | Some(403))
        {
            let detail = match (&self.credentials, status) {
                (Credentials::Anonymous, _) => format!(
                    "{what}: the registry requires credentials and none are configured for {}",
                    self.registry
                ),
                (_, Some(403)) => format!(
                    "{what}: access denied {} (the account lacks permission for this repository)",
                    self.credentials.describe()
                ),
                _ => format!(
                    "{what}: the registry refused the credentials {}",
                    self.credentials.describe()
                ),
            };
            return Error::Auth {
                registry: self.registry.clone(),
                detail,
                anonymous: matches!(self.credentials, Credentials::Anonymous),
            };
        }
        let mut detail = short(&error);
        if let OciDistributionError::RegistryError { envelope, .. } = &error {
            let missing = envelope.errors.iter().any(|e| {
                matches!(
                    e.code,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::BlobUnknown
                )
            });
            let messages: Vec<String> = envelope.errors.iter().map(|e| e.message.clone()).collect();
            detail = if missing {
                format!(
                    "not found ({}); check the repository and tag",
                    messages.join("; ")
                )
            } else {
                format!("the registry answered: {}", messages.join("; "))
            };
        }
        if retries > 0 {
            detail.push_str(&format!(" (after {retries} retries)"));
        }
        if let Some(kind) = connect_failure(&error) {
            let mut detail = match kind {
                ConnectFailure::Refused => format!(
                    "connection refused: nothing accepts connections at {}; is the registry running there?",
                    self.registry
                ),
                ConnectFailure::Dns => format!(
                    "the host name does not resolve ({}); check the registry name",
                    innermost_cause(&error)
                ),
                ConnectFailure::Tls => format!(
                    "the TLS handshake failed ({}); use --plain-http if the registry speaks plain HTTP, \
                     --ca-file for a private CA",
                    short(&error)
                ),
            };
            if retries > 0 {
                detail.push_str(&format!(" (after {retries} retries)"));
            }
            return Error::Connection {
                what: what.to_string(),
                registry: self.registry.clone(),
                detail,
            };
        }
        if let OciDistributionError::RequestError(e) = &error {
            if e.is_connect() && connection_failed(e) {
                detail.push_str(&format!("; is the registry running at {}?", self.registry));
            } else if e.is_connect() {
                detail.push_str(
                    "; the TLS handshake failed: use --plain-http if the registry speaks plain HTTP, \
                     --ca-file for a private CA",
                );
            }
        }
        Error::Registry {
            what: what.to_string(),
            registry: self.registry.clone(),
            detail,
        }
    }
}

pub(super) fn http_status(error: &OciDistributionError) -> Option<u16> {
    match error {
        OciDistributionError::RequestError(e) => e.status().map(|s| s.as_u16()),
        OciDistributionError::ServerError { code, .. } => Some(*code),
        OciDistributionError::UnauthorizedError { .. } => Some(401),
        OciDistributionError::RegistryError { envelope, .. } => {
            envelope.errors.iter().find_map(|e| match e.code {
                OciErrorCode::Unauthorized => Some(401),
                OciErrorCode::Denied => Some(403),
                OciErrorCode::Toomanyrequests => Some(429),
                _ => None,
            })
        }
        _ => None,
    }
}

/// 5xx, 429 and transport failures (refused or dropped connections, timeouts).
pub(super) fn is_transient(error: &OciDistributionError) -> bool {
    if let Some(status) = http_status(error) {
        return status >= 500 || status == 429;
    }
    match error {
        // A TLS failure is a connect error too, but retrying cannot fix it.
        OciDistributionError::RequestError(e) if e.is_connect() => {
            connection_failed(e) || connect_failure(error) == Some(ConnectFailure::Dns)
        }
        OciDistributionError::RequestError(e) => {
            e.is_timeout() || e.is_request() || e.is_body() || e.is_decode()
        }
        OciDistributionError::IoError(e) => !e.to_string().contains(CappedBuffer::OVERFLOW),
        _ => false,
    }
}

/// Why a connection could not be made at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ConnectFailure {
    Refused,
    Dns,
    Tls,
}

impl ConnectFailure {
    pub(super) fn describe(self) -> &'static str {
        match self {
            ConnectFailure::Refused => "connection refused",
            ConnectFailure::Dns => "DNS lookup failed",
            ConnectFailure::Tls => "TLS handshake failed",
        }
    }
}

pub(super) fn connect_failure(error: &OciDistributionError) -> Option<ConnectFailure> {
    let OciDistributionError::RequestError(e) = error else {
        return None;
    };
    if !e.is_connect() {
        return None;
    }
    let mut source = std::error::Error::source(e);
    let mut texts = String::new();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return Some(ConnectFailure::Refused);
        }
        texts.push_str(&cause.to_string().to_lowercase());
        texts.push(' ');
        source = cause.source();
    }
    if texts.contains("dns error") || texts.contains("failed to lookup address") {
        Some(ConnectFailure::Dns)
    } else if connection_failed(e) {
        None
    } else {
        Some(ConnectFailure::Tls)
    }
}

/// The last error in the chain: the resolver's or the TLS library's own words.
fn innermost_cause(error: &OciDistributionError) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text = cause.to_string();
        source = cause.source();
    }
    text
}

/// The connection was refused, reset or timed out (not a TLS or protocol failure).
fn connection_failed(error: &reqwest::Error) -> bool {
    use std::io::ErrorKind as K;
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                K::ConnectionRefused
                    | K::ConnectionReset
                    | K::ConnectionAborted
                    | K::TimedOut
                    | K::BrokenPipe
                    | K::NotConnected
                    | K::UnexpectedEof
                    | K::AddrNotAvailable
            );
        }
        source = cause.source();
    }
    error.is_timeout()
}

/// One line, without the HTML bodies some proxies return.
pub(super) fn short(error: &OciDistributionError) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    let line: String = text.lines().take(3).collect::<Vec<_>>().join(" ");
    if line.len() > 400 {
        format!("{}...", line.chars().take(400).collect::<String>())
    } else {
        line
    }
}
