//! Between hyper's messages and the harness's: the client's request in,
//! the response the filter chain let through out, and the real upstream
//! and clusters the router and http_calls reach.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use harness::{
    Body, ByteString, CalloutFailure, DownstreamRequest, DownstreamResponse, HarnessError, Headers,
    HttpCallRecord, HttpCalloutAnswer, HttpMessage, HttpProtocol, UpstreamResponse,
};

/// The most of a request or response body read into memory.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// A plain-HTTP upstream or cluster: `http://host:port`.
#[derive(Clone, Debug)]
pub struct Upstream {
    authority: String,
}

impl Upstream {
    pub fn parse(url: &str, flag: &str) -> Result<Upstream, HarnessError> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            HarnessError::Usage(format!(
                "{flag} '{url}' must be an http:// URL (TLS upstreams are not served yet)"
            ))
        })?;
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            return Err(HarnessError::Usage(format!(
                "{flag} '{url}' must be http://host:port, without a path"
            )));
        }
        Ok(Upstream::at(authority.to_string()))
    }

    /// The upstream at `host:port`.
    pub fn at(authority: String) -> Upstream {
        Upstream { authority }
    }

    /// `host:port`.
    pub fn authority(&self) -> &str {
        &self.authority
    }
}

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn read_body(body: Incoming, what: &str) -> Result<Vec<u8>, String> {
    let limited = http_body_util::Limited::new(body, MAX_BODY_BYTES);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes().to_vec()),
        Err(e) => Err(format!("reading the {what} body failed: {e}")),
    }
}

fn headers_of(map: &hyper::HeaderMap) -> Headers {
    let mut headers = Headers::new();
    for (name, value) in map {
        headers.push(name.as_str(), ByteString(value.as_bytes().to_vec()));
    }
    headers
}

/// The client's request as the harness describes it (`host` becomes
/// `:authority` as Envoy's HTTP/1 codec does; HTTP/2's authority too).
pub async fn downstream_request(
    request: hyper::Request<Incoming>,
) -> Result<DownstreamRequest, String> {
    let (parts, body) = request.into_parts();
    let body = read_body(body, "request").await?;
    let protocol = if parts.version == hyper::Version::HTTP_2 {
        HttpProtocol::Http2
    } else {
        HttpProtocol::default()
    };
    let req = DownstreamRequest {
        method: parts.method.as_str().to_string(),
        path: parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string(),
        authority: parts.uri.authority().map(|a| a.as_str().to_string()),
        headers: headers_of(&parts.headers),
        protocol,
        body: if body.is_empty() {
            Body::empty()
        } else {
            Body::single(body)
        },
        ..DownstreamRequest::default()
    };
    Ok(req)
}

/// A request the filters let through (pseudo-headers included) as hyper's,
/// sent to `to`.
fn outgoing(message: &HttpMessage, to: &Upstream) -> Result<hyper::Request<Full<Bytes>>, String> {
    let pseudo = |name: &str| message.headers.get(name).map(|v| v.to_text());
    let method = pseudo(":method").unwrap_or_else(|| "GET".to_string());
    let path = pseudo(":path").unwrap_or_else(|| "/".to_string());
    let mut builder = hyper::Request::builder()
        .method(method.as_str())
        .uri(format!("http://{}{path}", to.authority));
    if let Some(authority) = pseudo(":authority") {
        builder = builder.header(hyper::header::HOST, authority);
    }
    for (name, value) in message.headers.iter() {
        if name.starts_with(b":") || name.eq_ignore_ascii_case(b"host") {
            continue;
        }
        builder = builder.header(name, value);
    }
    builder
        .body(Full::new(Bytes::from(message.body.0.clone())))
        .map_err(|e| format!("the request cannot be sent as HTTP: {e}"))
}

/// Sends the router's request to the upstream; an upstream that cannot be
/// reached is the router's 503 (`unreachable`). `bound`: how long to wait
/// at most (`None`: no limit); past it nothing is answered, because the
/// simulated router has answered the stream on its route timeout already.
pub async fn forward(
    client: HttpClient,
    to: Upstream,
    message: HttpMessage,
    bound: Option<Duration>,
) -> Option<UpstreamResponse> {
    let exchange = exchange(client, to, message);
    match bound {
        None => Some(exchange.await),
        Some(bound) => tokio::time::timeout(bound, exchange).await.ok(),
    }
}

async fn exchange(client: HttpClient, to: Upstream, message: HttpMessage) -> UpstreamResponse {
    let unreachable = UpstreamResponse {
        unreachable: true,
        ..UpstreamResponse::default()
    };
    let Ok(request) = outgoing(&message, &to) else {
        return unreachable;
    };
    let Ok(response) = client.request(request).await else {
        return unreachable;
    };
    let (parts, body) = response.into_parts();
    let Ok(body) = read_body(body, "upstream response").await else {
        return unreachable;
    };
    UpstreamResponse {
        status: parts.status.as_u16(),
        headers: headers_of(&parts.headers),
        body: if body.is_empty() {
            Body::empty()
        } else {
            Body::single(body)
        },
        trailers: None,
        unreachable: false,
    }
}

/// An http_call to a real cluster; a refused connection is `unreachable`
/// (Envoy's async client answers 503), a broken one a reset.
pub async fn callout(
    client: HttpClient,
    to: Upstream,
    record: HttpCallRecord,
) -> HttpCalloutAnswer {
    let message = HttpMessage {
        headers: record.headers.clone(),
        body: record.body.clone(),
        trailers: None,
    };
    let failed = |failure| HttpCalloutAnswer {
        failure: Some(failure),
        ..HttpCalloutAnswer::default()
    };
    let Ok(request) = outgoing(&message, &to) else {
        return failed(CalloutFailure::Reset);
    };
    let response = match client.request(request).await {
        Ok(r) => r,
        Err(e) if e.is_connect() => return failed(CalloutFailure::Unreachable),
        Err(_) => return failed(CalloutFailure::Reset),
    };
    let (parts, body) = response.into_parts();
    let Ok(body) = read_body(body, "callout response").await else {
        return failed(CalloutFailure::Reset);
    };
    HttpCalloutAnswer {
        status: parts.status.as_u16(),
        headers: headers_of(&parts.headers),
        body: Body::single(body),
        ..HttpCalloutAnswer::default()
    }
}

/// A short text response from the harness itself.
pub fn plain(status: u16, text: &str) -> hyper::Response<Full<Bytes>> {
    let mut response = hyper::Response::new(Full::new(Bytes::from(format!("{text}\n"))));
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    response
}

/// What the client receives: the response the first filter let through.
pub fn client_response(response: Option<DownstreamResponse>) -> hyper::Response<Full<Bytes>> {
    let Some(response) = response else {
        return plain(503, "harness serve: the stream ended without a response");
    };
    let body = Full::new(Bytes::from(response.message.body.0));
    let mut out = hyper::Response::new(body);
    *out.status_mut() = hyper::StatusCode::from_u16(response.status)
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in response.message.headers.iter() {
        // hyper frames the body itself.
        if name.starts_with(b":")
            || name.eq_ignore_ascii_case(b"content-length")
            || name.eq_ignore_ascii_case(b"transfer-encoding")
        {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(name),
            hyper::header::HeaderValue::from_bytes(value),
        ) {
            out.headers_mut().append(name, value);
        }
    }
    out
}
