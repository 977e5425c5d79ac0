//! `request.*` and `response.*`: what Envoy's request and response wrappers
//! (`source/extensions/filters/common/expr/context.cc`, `RequestWrapper`,
//! `ResponseWrapper`, `HeadersWrapper`) compute from the live stream.

use crate::abi::encode_map_into;
use crate::host::headers::HeaderMap;

/// Envoy's router records this as the response code details when the
/// upstream answers (`StreamInfo::ResponseCodeDetails::ViaUpstream`).
pub(crate) const VIA_UPSTREAM: &str = "via_upstream";

/// What Envoy derives from the live stream (request.*, response.*).
/// The header maps are the ones the filter can reach now (Envoy's
/// `Context::findValue` hands the phase-scoped pointers to its request and
/// response wrappers); the rest comes from the stream info.
#[derive(Default)]
pub struct StreamFacts<'a> {
    /// Request headers in reach.
    pub request_headers: Option<&'a HeaderMap>,
    /// Response headers in reach.
    pub response_headers: Option<&'a HeaderMap>,
    /// Response trailers in reach.
    pub response_trailers: Option<&'a HeaderMap>,
    /// The response status, once the response has started.
    pub response_code: Option<i64>,
    /// Stream start, ns since the epoch.
    pub start_unix_ns: u64,
    /// Now, ns since the epoch.
    pub now_unix_ns: u64,
    /// Request body bytes received.
    pub request_body_bytes: u64,
    /// Response body bytes sent.
    pub response_body_bytes: u64,
    /// Response code details set by a local reply; an upstream answer has
    /// none here and reads as [`VIA_UPSTREAM`].
    pub response_code_details: Option<&'a str>,
    /// `HTTP/1.1` or `HTTP/2`.
    pub protocol: &'a str,
}

fn header_total(h: Option<&HeaderMap>) -> u64 {
    h.map(|h| h.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum())
        .unwrap_or(0)
}

/// Every value of `name`, joined with `,` as Envoy's
/// `HeaderUtility::getAllOfHeaderAsString` does; false when absent or when
/// the name is not a valid header string (Envoy's `HeadersWrapper` rejects it).
fn joined_header(h: Option<&HeaderMap>, name: &[u8], out: &mut Vec<u8>) -> bool {
    let Some(h) = h else { return false };
    if name.iter().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        return false;
    }
    let lower = name.to_ascii_lowercase();
    let mut found = false;
    for (_, value) in h.iter().filter(|(k, _)| *k == lower.as_slice()) {
        if found {
            out.push(b',');
        }
        out.extend_from_slice(value);
        found = true;
    }
    found
}

/// The whole map as Envoy serializes a `HeadersWrapper`: one pair per
/// distinct name (first-seen order), repeated values joined with `,`.
/// Out of reach it is an empty map.
fn joined_map(h: Option<&HeaderMap>, out: &mut Vec<u8>) {
    let mut names: Vec<&[u8]> = Vec::new();
    for (k, _) in h.into_iter().flat_map(HeaderMap::iter) {
        if !names.contains(&k) {
            names.push(k);
        }
    }
    let values: Vec<Vec<u8>> = names
        .iter()
        .map(|name| {
            let mut v = Vec::new();
            joined_header(h, name, &mut v);
            v
        })
        .collect();
    encode_map_into(
        names.iter().copied().zip(values.iter().map(Vec::as_slice)),
        out,
    );
}

/// Computes a stream-derived property; false when the path is not one of them
/// (or not available yet).
pub fn derived(path: &[u8], f: &StreamFacts<'_>, out: &mut Vec<u8>) -> bool {
    let mut segs = path.split(|b| *b == 0);
    let root = segs.next().unwrap_or_default();
    let leaf = segs.next();
    let sub = segs.next();
    if segs.next().is_some() {
        return false;
    }
    out.clear();
    let put_str = |out: &mut Vec<u8>, v: &[u8]| {
        out.extend_from_slice(v);
        true
    };
    let put_int = |out: &mut Vec<u8>, v: i64| {
        out.extend_from_slice(&v.to_le_bytes());
        true
    };
    let req = |name: &str| f.request_headers.and_then(|h| h.get(name.as_bytes()));
    match (root, leaf) {
        (b"request", Some(leaf)) => {
            let headers = f.request_headers;
            match (leaf, sub) {
                (b"headers", None) => {
                    joined_map(headers, out);
                    true
                }
                (b"headers", Some(name)) => joined_header(headers, name, out),
                (_, Some(_)) => false,
                (b"path", None) => req(":path").is_some_and(|v| put_str(out, v)),
                (b"url_path", None) => req(":path").is_some_and(|v| {
                    let end = v.iter().position(|b| *b == b'?').unwrap_or(v.len());
                    put_str(out, &v[..end])
                }),
                (b"query", None) => req(":path").is_some_and(|v| {
                    let q = v
                        .iter()
                        .position(|b| *b == b'?')
                        .map(|i| &v[i + 1..])
                        .unwrap_or_default();
                    let end = q.iter().position(|b| *b == b'#').unwrap_or(q.len());
                    put_str(out, &q[..end])
                }),
                (b"host", None) => req(":authority").is_some_and(|v| put_str(out, v)),
                (b"scheme", None) => req(":scheme").is_some_and(|v| put_str(out, v)),
                (b"method", None) => req(":method").is_some_and(|v| put_str(out, v)),
                (b"referer", None) => req("referer").is_some_and(|v| put_str(out, v)),
                (b"useragent", None) => req("user-agent").is_some_and(|v| put_str(out, v)),
                (b"id", None) => req("x-request-id").is_some_and(|v| put_str(out, v)),
                (b"protocol", None) => put_str(out, f.protocol.as_bytes()),
                (b"time", None) => put_int(out, f.start_unix_ns as i64),
                (b"duration", None) => {
                    put_int(out, f.now_unix_ns.saturating_sub(f.start_unix_ns) as i64)
                }
                (b"size", None) => put_int(out, f.request_body_bytes as i64),
                (b"total_size", None) => put_int(
                    out,
                    (f.request_body_bytes + header_total(f.request_headers)) as i64,
                ),
                _ => false,
            }
        }
        (b"response", Some(leaf)) => {
            let headers = f.response_headers;
            let started = f.response_code.is_some();
            match (leaf, sub) {
                (b"headers", None) => {
                    started && {
                        joined_map(headers, out);
                        true
                    }
                }
                (b"headers", Some(name)) => joined_header(headers, name, out),
                (b"trailers", None) => f.response_trailers.is_some_and(|h| {
                    joined_map(Some(h), out);
                    true
                }),
                (b"trailers", Some(name)) => joined_header(f.response_trailers, name, out),
                (_, Some(_)) => false,
                (b"code", None) => f.response_code.is_some_and(|code| put_int(out, code)),
                (b"code_details", None) => f
                    .response_code_details
                    .or(started.then_some(VIA_UPSTREAM))
                    .is_some_and(|d| put_str(out, d.as_bytes())),
                (b"flags", None) => started && put_int(out, 0),
                (b"grpc_status", None) => headers
                    .and_then(|h| h.get(b"grpc-status"))
                    .and_then(|v| std::str::from_utf8(v).ok()?.parse::<i64>().ok())
                    .is_some_and(|code| put_int(out, code)),
                (b"size", None) => started && put_int(out, f.response_body_bytes as i64),
                (b"total_size", None) => {
                    started && put_int(out, (f.response_body_bytes + header_total(headers)) as i64)
                }
                _ => false,
            }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(request: Option<&HeaderMap>) -> StreamFacts<'_> {
        StreamFacts {
            request_headers: request,
            start_unix_ns: 5,
            now_unix_ns: 15,
            request_body_bytes: 3,
            protocol: "HTTP/1.1",
            ..StreamFacts::default()
        }
    }

    #[test]
    fn derived_request_properties() {
        let mut h = HeaderMap::default();
        h.add(b":path", b"/a/b?x=1#frag");
        h.add(b":method", b"GET");
        h.add(b":authority", b"svc");
        let facts = facts(Some(&h));
        let mut out = Vec::new();
        assert!(derived(b"request\0url_path", &facts, &mut out));
        assert_eq!(out, b"/a/b");
        assert!(derived(b"request\0query", &facts, &mut out));
        assert_eq!(out, b"x=1", "the fragment is not part of the query");
        assert!(derived(b"request\0duration", &facts, &mut out));
        assert_eq!(out, 10i64.to_le_bytes());
        assert!(derived(b"request\0headers\0:method", &facts, &mut out));
        assert_eq!(out, b"GET");
        assert!(!derived(b"response\0code", &facts, &mut out));
    }

    #[test]
    fn repeated_headers_are_joined_with_commas() {
        let mut h = HeaderMap::default();
        h.add(b"x-a", b"1");
        h.add(b"x-b", b"only");
        h.add(b"X-A", b"2");
        let facts = facts(Some(&h));
        let mut out = Vec::new();
        assert!(derived(b"request\0headers\0X-A", &facts, &mut out));
        assert_eq!(out, b"1,2");
        assert!(!derived(b"request\0headers\0x\ra", &facts, &mut out));
        assert!(derived(b"request\0headers", &facts, &mut out));
        assert_eq!(
            crate::abi::decode_map(&out).unwrap(),
            vec![(&b"x-a"[..], &b"1,2"[..]), (&b"x-b"[..], &b"only"[..])]
        );
    }

    #[test]
    fn an_upstream_answer_reads_as_via_upstream() {
        let mut f = facts(None);
        let mut out = Vec::new();
        assert!(!derived(b"response\0code_details", &f, &mut out));
        f.response_code = Some(200);
        assert!(derived(b"response\0code_details", &f, &mut out));
        assert_eq!(out, b"via_upstream");
        f.response_code_details = Some("wasm_local_reply");
        assert!(derived(b"response\0code_details", &f, &mut out));
        assert_eq!(out, b"wasm_local_reply");
    }
}
