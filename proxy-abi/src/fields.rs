//! The six HTTP fields of a stream that Envoy scopes to a phase: a filter
//! reaches each only in the callback that delivers it (or while it stays
//! paused from there). The harness enforces the rule; sdk-ext follows it.

use crate::enums::{BufferType, MapType};

/// One phase-scoped HTTP field of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpField {
    RequestHeaders,
    RequestBody,
    RequestTrailers,
    ResponseHeaders,
    ResponseBody,
    ResponseTrailers,
}

impl HttpField {
    /// Every field, request side first.
    pub const ALL: [HttpField; 6] = [
        HttpField::RequestHeaders,
        HttpField::RequestBody,
        HttpField::RequestTrailers,
        HttpField::ResponseHeaders,
        HttpField::ResponseBody,
        HttpField::ResponseTrailers,
    ];

    /// A distinct bit per field, for sets kept as a `u8`.
    pub fn bit(self) -> u8 {
        1 << self as u8
    }

    /// The field a header map type names, if it is a stream's.
    pub fn of_map(map: MapType) -> Option<HttpField> {
        Some(match map {
            MapType::HttpRequestHeaders => HttpField::RequestHeaders,
            MapType::HttpRequestTrailers => HttpField::RequestTrailers,
            MapType::HttpResponseHeaders => HttpField::ResponseHeaders,
            MapType::HttpResponseTrailers => HttpField::ResponseTrailers,
            _ => return None,
        })
    }

    /// The field a buffer type names, if it is a stream's body.
    pub fn of_buffer(buffer: BufferType) -> Option<HttpField> {
        match buffer {
            BufferType::HttpRequestBody => Some(HttpField::RequestBody),
            BufferType::HttpResponseBody => Some(HttpField::ResponseBody),
            _ => None,
        }
    }

    /// The headers, body and trailers of one direction.
    pub fn of_direction(request: bool) -> [HttpField; 3] {
        let all = HttpField::ALL;
        if request {
            [all[0], all[1], all[2]]
        } else {
            [all[3], all[4], all[5]]
        }
    }

    /// The fields a `proxy_continue_stream` for one direction takes out of
    /// reach: Envoy's `Context::continueStream` drops the request side's
    /// whichever direction is resumed; the response side's go too when the
    /// response is resumed (the strict reading, which the harness enforces).
    pub fn withdrawn_by_continue(request: bool) -> impl Iterator<Item = HttpField> {
        let all = HttpField::ALL;
        let n = if request { 3 } else { 6 };
        all.into_iter().take(n)
    }

    /// For messages: `request headers`, `response body`, ...
    pub fn describe(self) -> &'static str {
        match self {
            HttpField::RequestHeaders => "request headers",
            HttpField::RequestBody => "request body",
            HttpField::RequestTrailers => "request trailers",
            HttpField::ResponseHeaders => "response headers",
            HttpField::ResponseBody => "response body",
            HttpField::ResponseTrailers => "response trailers",
        }
    }

    /// The callback that delivers the field (without the `proxy_` prefix).
    pub fn callback(self) -> &'static str {
        match self {
            HttpField::RequestHeaders => "on_request_headers",
            HttpField::RequestBody => "on_request_body",
            HttpField::RequestTrailers => "on_request_trailers",
            HttpField::ResponseHeaders => "on_response_headers",
            HttpField::ResponseBody => "on_response_body",
            HttpField::ResponseTrailers => "on_response_trailers",
        }
    }
}
