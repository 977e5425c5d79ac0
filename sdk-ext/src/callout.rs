//! Outgoing HTTP calls (`proxy_http_call`) with a closure run on the answer.

use crate::ffi;
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

    /// Dispatches the call; returns the host's token.
    pub(crate) fn dispatch(&self) -> Result<u32, ffi::HostStatus> {
        let headers = crate::headers::serialize_pairs(&self.headers);
        let trailers = crate::headers::serialize_pairs::<&str, &str>(&[]);
        let body = self.body.as_deref().unwrap_or_default();
        let timeout = u32::try_from(self.timeout.as_millis()).unwrap_or(u32::MAX);
        let mut token = 0u32;
        // SAFETY: every pointer/length pair comes from a live slice; `token` outlives the call.
        let status = unsafe {
            ffi::proxy_http_call(
                self.cluster.as_ptr(),
                self.cluster.len(),
                headers.as_ptr(),
                headers.len(),
                body.as_ptr(),
                body.len(),
                trailers.as_ptr(),
                trailers.len(),
                timeout,
                &mut token,
            )
        };
        ffi::check(status).map(|()| token)
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
