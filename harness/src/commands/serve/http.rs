//! Between hyper's messages and the harness's: the client's request
//! headers in, the response headers the filter chain let through out, and
//! the real upstream and clusters the router and http_calls reach (bodies
//! travel frame by frame, see [`super::carry`]).

use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};

use harness::{
    Body, CalloutFailure, DownstreamRequest, HarnessError, Headers, HttpCallRecord,
    HttpCalloutAnswer, HttpProtocol, UpstreamResponse,
};

use super::carry::{OutBody, header_map, headers_of};
use super::pool::{Pool, SendError};

/// The most of an http_call's answer read into memory (Envoy's async
/// client buffers the whole answer for the filter too).
const MAX_CALLOUT_BODY_BYTES: usize = 64 * 1024 * 1024;

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

/// A worker's connections to upstreams and clusters, shared by the tasks
/// it spawns.
pub type HttpClient = Arc<Pool>;

pub fn client() -> HttpClient {
    Arc::new(Pool::default())
}

/// The client's request head as the harness describes it (`host` becomes
/// `:authority` as Envoy's HTTP/1 codec does; HTTP/2's authority too); its
/// body follows frame by frame.
pub fn downstream_request(parts: &hyper::http::request::Parts) -> DownstreamRequest {
    let protocol = if parts.version == hyper::Version::HTTP_2 {
        HttpProtocol::Http2
    } else {
        HttpProtocol::default()
    };
    DownstreamRequest {
        method: parts.method.as_str().to_string(),
        path: parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string(),
        authority: parts.uri.authority().map(|a| a.as_str().to_string()),
        headers: headers_of(&parts.headers),
        protocol,
        ..DownstreamRequest::default()
    }
}

/// A request the filters let through (pseudo-headers included) as hyper's,
/// sent to `to`: origin-form (`/path?query`) with `host` from
/// `:authority` (else `to`'s), as Envoy's HTTP/1 codec writes it.
fn outgoing(
    headers: &Headers,
    body: OutBody,
    to: &Upstream,
) -> Result<hyper::Request<OutBody>, String> {
    let pseudo = |name: &str| headers.get(name).map(|v| v.to_text());
    let method = pseudo(":method").unwrap_or_else(|| "GET".to_string());
    let path = pseudo(":path").unwrap_or_else(|| "/".to_string());
    let authority = pseudo(":authority").unwrap_or_else(|| to.authority.clone());
    let mut builder = hyper::Request::builder()
        .method(method.as_str())
        .uri(path)
        .header(hyper::header::HOST, authority);
    // hyper frames the body: by its size when whole, else by the
    // content-length the chain let through (as Envoy's codec does), else chunked.
    let whole = matches!(body, OutBody::Whole(_));
    for (name, value) in headers.iter() {
        if name.starts_with(b":")
            || name.eq_ignore_ascii_case(b"host")
            || (whole && name.eq_ignore_ascii_case(b"content-length"))
            || name.eq_ignore_ascii_case(b"transfer-encoding")
        {
            continue;
        }
        builder = builder.header(name, value);
    }
    builder
        .body(body)
        .map_err(|e| format!("the request cannot be sent as HTTP: {e}"))
}

/// The upstream's answer: its head with the first body bytes that were
/// there already (one step for a short response), and the rest of the
/// body to read (`None`: it ended).
pub struct Answer {
    pub answer: UpstreamResponse,
    pub end_stream: bool,
    pub rest: Option<Incoming>,
}

/// Sends the router's request (its head; `body` carries the rest) to the
/// upstream; an upstream that cannot be reached is the router's 503
/// (`unreachable`). `bound`: how long to wait for the response head at
/// most (`None`: no limit); past it nothing is answered, because the
/// simulated router has answered the stream on its route timeout already.
pub async fn forward(
    client: HttpClient,
    to: Upstream,
    headers: Headers,
    body: OutBody,
    bound: Option<Duration>,
) -> Option<Answer> {
    let exchange = exchange(client, to, headers, body);
    match bound {
        None => Some(exchange.await),
        Some(bound) => tokio::time::timeout(bound, exchange).await.ok(),
    }
}

async fn exchange(client: HttpClient, to: Upstream, headers: Headers, body: OutBody) -> Answer {
    let unreachable = Answer {
        answer: UpstreamResponse {
            unreachable: true,
            ..UpstreamResponse::default()
        },
        end_stream: true,
        rest: None,
    };
    let Ok(request) = outgoing(&headers, body, &to) else {
        return unreachable;
    };
    let Ok(response) = client.send(&to, request).await else {
        return unreachable;
    };
    let (parts, mut body) = response.into_parts();
    let mut answer = UpstreamResponse {
        status: parts.status.as_u16(),
        headers: headers_of(&parts.headers),
        ..UpstreamResponse::default()
    };
    if body.is_end_stream() {
        return Answer {
            answer,
            end_stream: true,
            rest: None,
        };
    }
    // Only what is there already: a slow body must not hold the head back.
    let first = tokio::time::timeout(Duration::ZERO, body.frame()).await;
    let end_stream = match first {
        Err(_pending) => false,
        Ok(None) => true,
        // Broken off before its first byte: as if it never answered.
        Ok(Some(Err(_))) => return unreachable,
        Ok(Some(Ok(frame))) => match frame.into_data() {
            Ok(data) => {
                answer.body = Body::single(data.to_vec());
                body.is_end_stream()
            }
            Err(frame) => {
                answer.trailers = frame.into_trailers().ok().map(|t| headers_of(&t));
                true
            }
        },
    };
    Answer {
        answer,
        end_stream,
        rest: (!end_stream).then_some(body),
    }
}

/// An http_call to a real cluster; a refused connection is `unreachable`
/// (Envoy's async client answers 503), a broken one a reset.
pub async fn callout(
    client: HttpClient,
    to: Upstream,
    record: HttpCallRecord,
) -> HttpCalloutAnswer {
    let failed = |failure| HttpCalloutAnswer {
        failure: Some(failure),
        ..HttpCalloutAnswer::default()
    };
    let body = OutBody::whole(record.body.0.clone());
    let Ok(request) = outgoing(&record.headers, body, &to) else {
        return failed(CalloutFailure::Reset);
    };
    let response = match client.send(&to, request).await {
        Ok(r) => r,
        Err(SendError::Connect) => return failed(CalloutFailure::Unreachable),
        Err(SendError::Broken) => return failed(CalloutFailure::Reset),
    };
    let (parts, body) = response.into_parts();
    let limited = http_body_util::Limited::new(body, MAX_CALLOUT_BODY_BYTES);
    let Ok(body) = limited.collect().await.map(|c| c.to_bytes().to_vec()) else {
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
pub fn plain(status: u16, text: &str) -> hyper::Response<OutBody> {
    let mut response = hyper::Response::new(OutBody::whole(format!("{text}\n")));
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    response
}

/// What the client receives: the response head the first filter let
/// through (`:status` and headers), with `body`.
pub fn client_response(headers: &Headers, body: OutBody) -> hyper::Response<OutBody> {
    // hyper frames the body as in [`outgoing`].
    let whole = matches!(body, OutBody::Whole(_));
    let mut out = hyper::Response::new(body);
    *out.status_mut() = hyper::StatusCode::from_u16(headers.status())
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in header_map(headers).iter() {
        if (whole && name == hyper::header::CONTENT_LENGTH)
            || name == hyper::header::TRANSFER_ENCODING
        {
            continue;
        }
        out.headers_mut().append(name.clone(), value.clone());
    }
    out
}
