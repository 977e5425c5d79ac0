//! Outgoing HTTP calls (`proxy_http_call`) with a closure run on the answer.

use crate::ffi::HostStatus;
use crate::types::Bytes;
use std::time::Duration;

/// A request to a cluster the host knows by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCall {
    cluster: String,
    headers: Vec<(String, Bytes)>,
    body: Option<Bytes>,
    timeout: Duration,
}

impl HttpCall {
    /// `authority` is the `:authority` (Host) sent to the cluster.
    pub fn new(cluster: &str, method: &str, path: &str, authority: &str) -> Self {
        Self {
            cluster: cluster.to_string(),
            headers: vec![
                (":method".to_string(), method.as_bytes().to_vec()),
                (":path".to_string(), path.as_bytes().to_vec()),
                (":authority".to_string(), authority.as_bytes().to_vec()),
            ],
            body: None,
            timeout: Duration::from_secs(5),
        }
    }

    #[must_use]
    pub fn header(mut self, name: &str, value: impl Into<Bytes>) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    #[must_use]
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Zero means no timeout (the host's default applies).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    pub fn headers(&self) -> &[(String, Bytes)] {
        &self.headers
    }

    pub fn timeout_value(&self) -> Duration {
        self.timeout
    }

    /// Dispatches the call through the SDK (which must know the token to route
    /// the answer back to this stream); returns the host's token. The SDK takes
    /// header values as text: a value that is not UTF-8 is left out, with a warning.
    pub(crate) fn dispatch(&self) -> Result<u32, HostStatus> {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .filter_map(|(name, value)| match std::str::from_utf8(value) {
                Ok(text) => Some((name.as_str(), text)),
                Err(_) => {
                    log::warn!(
                        "http call to {}: header `{name}` is not UTF-8; left out",
                        self.cluster
                    );
                    None
                }
            })
            .collect();
        proxy_wasm::hostcalls::dispatch_http_call(
            &self.cluster,
            headers,
            self.body.as_deref(),
            Vec::new(),
            self.timeout,
        )
        .map_err(|status| HostStatus(status as u32))
    }
}

/// The outcome of an [`HttpCall`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    /// The cluster answered (any status, including 5xx).
    Response(CallResponse),
    /// No answer: connection failure, reset or timeout.
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallResponse {
    pub status: u32,
    pub headers: Vec<(String, Bytes)>,
    pub body: Bytes,
}

impl CallResponse {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        crate::headers::find(&self.headers, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_carries_pseudo_headers_then_extra_headers() {
        let call = HttpCall::new("authz", "POST", "/check", "authz.local")
            .header("X-Forwarded-For", "10.0.0.1")
            .timeout(Duration::from_millis(250));
        let names: Vec<&str> = call.headers().iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            vec![":method", ":path", ":authority", "x-forwarded-for"]
        );
        assert_eq!(call.timeout_value(), Duration::from_millis(250));
        assert_eq!(call.cluster(), "authz");
    }

    #[test]
    fn response_header_lookup_ignores_case() {
        let response = CallResponse {
            status: 200,
            headers: vec![("x-user".into(), b"alice".to_vec())],
            body: Vec::new(),
        };
        assert_eq!(response.header("X-User"), Some(&b"alice"[..]));
    }
}
