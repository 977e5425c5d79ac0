//! Local replies: answer the client from the filter instead of the upstream.

use crate::ffi;
use crate::types::Bytes;

/// A local reply, built in plain Rust so filter logic can return one and tests
/// can inspect it; [`crate::Http::send_local_response`] sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    status: u32,
    headers: Vec<(String, Bytes)>,
    body: Bytes,
    details: String,
}

impl LocalResponse {
    pub fn new(status: u32) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            details: String::new(),
        }
    }

    /// Adds a header (names are lower-cased, as Envoy does on every write).
    #[must_use]
    pub fn header(mut self, name: &str, value: impl Into<Bytes>) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    #[must_use]
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Response code details (Envoy's `%RESPONSE_CODE_DETAILS%`); whitespace
    /// becomes `_` because Envoy rejects details with spaces.
    #[must_use]
    pub fn details(mut self, details: &str) -> Self {
        self.details = details
            .chars()
            .map(|c| if c.is_whitespace() { '_' } else { c })
            .collect();
        self
    }

    pub fn status(&self) -> u32 {
        self.status
    }

    pub fn headers(&self) -> &[(String, Bytes)] {
        &self.headers
    }

    /// First value of a header, if set.
    pub fn header_value(&self, name: &str) -> Option<&[u8]> {
        crate::headers::find(&self.headers, name)
    }

    pub fn body_bytes(&self) -> &[u8] {
        &self.body
    }

    pub fn details_text(&self) -> &str {
        &self.details
    }

    /// Sends the reply; the host applies it when the current callback returns.
    pub(crate) fn send(&self) -> Result<(), ffi::HostStatus> {
        let mut headers = Vec::new();
        proxy_abi::encode_map_into(
            self.headers
                .iter()
                .map(|(k, v)| (k.as_bytes(), v.as_slice())),
            &mut headers,
        );
        // SAFETY: every pointer/length pair comes from a live slice that outlives the call.
        let status = unsafe {
            ffi::proxy_send_local_response(
                self.status,
                self.details.as_ptr(),
                self.details.len(),
                self.body.as_ptr(),
                self.body.len(),
                headers.as_ptr(),
                headers.len(),
                -1,
            )
        };
        ffi::check(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_collects_status_headers_body_and_details() {
        let reply = LocalResponse::new(401)
            .header("WWW-Authenticate", "Basic realm=\"api\"")
            .body("unauthorized\n")
            .details("basic auth denied");
        assert_eq!(reply.status(), 401);
        assert_eq!(
            reply.header_value("www-authenticate"),
            Some(&b"Basic realm=\"api\""[..])
        );
        assert_eq!(reply.headers()[0].0, "www-authenticate");
        assert_eq!(reply.body_bytes(), b"unauthorized\n");
        assert_eq!(reply.details_text(), "basic_auth_denied");
    }
}
