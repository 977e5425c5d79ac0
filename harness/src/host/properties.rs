//! Properties with Envoy's binary encoding: strings raw, integers 8-byte
//! little-endian, bools 1 byte, timestamps and durations i64 nanoseconds,
//! maps pair-serialized. Paths are segments joined by NUL.

use std::collections::BTreeMap;

use crate::abi::encode_map_into;
use crate::host::headers::HeaderMap;
use crate::model::{Properties, PropertyValue};

/// Encodes a caller-supplied value the way Envoy would return it.
pub fn encode_value(value: &PropertyValue) -> Vec<u8> {
    match value {
        PropertyValue::Bool(b) => vec![u8::from(*b)],
        PropertyValue::Int(i) => i.to_le_bytes().to_vec(),
        PropertyValue::String(s) => s.as_bytes().to_vec(),
        PropertyValue::Map(m) => {
            let mut out = Vec::new();
            encode_map_into(
                m.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())),
                &mut out,
            );
            out
        }
        PropertyValue::Bytes { bytes } => bytes.0.clone(),
    }
}

/// Turns `"a.b.c"` into the ABI path `a\0b\0c`. A key already holding
/// NULs is an ABI path as it is, so its segments may contain dots
/// (`metadata\0filter_metadata\0envoy.lb\0k`).
pub fn dotted_to_path(dotted: &str) -> Vec<u8> {
    if dotted.contains('\0') {
        return dotted.as_bytes().to_vec();
    }
    dotted.replace('.', "\0").into_bytes()
}

/// Properties stored by ABI path, already encoded.
#[derive(Clone, Debug, Default)]
pub struct PropertyStore {
    values: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl PropertyStore {
    /// From caller properties (dotted paths).
    pub fn from_properties(props: &Properties) -> Self {
        let mut s = PropertyStore::default();
        s.extend(props);
        s
    }
    /// Adds or overrides caller properties.
    pub fn extend(&mut self, props: &Properties) {
        for (k, v) in props {
            self.values.insert(dotted_to_path(k), encode_value(v));
        }
    }
    /// Sets one encoded value at an ABI path.
    pub fn set_raw(&mut self, path: &[u8], value: &[u8]) {
        self.values.insert(path.to_vec(), value.to_vec());
    }
    /// Looks a path up: an exact entry, else a map built from the entries
    /// directly below it (so `node.metadata` returns every `node.metadata.*`).
    pub fn lookup(&self, path: &[u8], out: &mut Vec<u8>) -> bool {
        if let Some(v) = self.values.get(path) {
            out.clear();
            out.extend_from_slice(v);
            return true;
        }
        let mut prefix = path.to_vec();
        prefix.push(0);
        let children: Vec<(&[u8], &[u8])> = self
            .values
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| !k[prefix.len()..].contains(&0))
            .map(|(k, v)| (&k[prefix.len()..], v.as_slice()))
            .collect();
        if children.is_empty() {
            return false;
        }
        encode_map_into(children.into_iter(), out);
        true
    }
}

/// What Envoy derives from the live stream (request.*, response.*).
/// The header maps are the ones the filter can reach now (Envoy's
/// `Context::findValue` hands the phase-scoped pointers to its request and
/// response wrappers); the rest comes from the stream info.
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
    /// Response code details.
    pub response_code_details: Option<&'a str>,
    /// `HTTP/1.1` or `HTTP/2`.
    pub protocol: &'a str,
}

fn header_total(h: Option<&HeaderMap>) -> u64 {
    h.map(|h| h.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum())
        .unwrap_or(0)
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
                // Out of reach, Envoy's headers wrapper is an empty map.
                (b"headers", None) => {
                    encode_map_into(headers.into_iter().flat_map(HeaderMap::iter), out);
                    true
                }
                (b"headers", Some(name)) => headers
                    .and_then(|h| h.get(name))
                    .is_some_and(|v| put_str(out, v)),
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
                    put_str(out, q)
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
                        encode_map_into(headers.into_iter().flat_map(HeaderMap::iter), out);
                        true
                    }
                }
                (b"headers", Some(name)) => headers
                    .and_then(|h| h.get(name))
                    .is_some_and(|v| put_str(out, v)),
                (b"trailers", None) => f.response_trailers.is_some_and(|h| {
                    encode_map_into(h.iter(), out);
                    true
                }),
                (b"trailers", Some(name)) => f
                    .response_trailers
                    .and_then(|h| h.get(name))
                    .is_some_and(|v| put_str(out, v)),
                (_, Some(_)) => false,
                (b"code", None) => f.response_code.is_some_and(|code| put_int(out, code)),
                (b"code_details", None) => f
                    .response_code_details
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

/// Properties every exchange has unless the caller overrides them.
pub fn defaults(plugin_name: &str, root_id: &str, vm_id: &str) -> Properties {
    let s = |v: &str| PropertyValue::String(v.to_string());
    let mut p = Properties::new();
    p.insert("plugin_name".into(), s(plugin_name));
    p.insert("plugin_root_id".into(), s(root_id));
    p.insert("plugin_vm_id".into(), s(vm_id));
    p.insert("source.address".into(), s("10.0.0.1:54321"));
    p.insert("source.port".into(), PropertyValue::Int(54321));
    p.insert("destination.address".into(), s("10.0.0.2:8080"));
    p.insert("destination.port".into(), PropertyValue::Int(8080));
    p.insert("connection.mtls".into(), PropertyValue::Bool(false));
    p.insert("connection.id".into(), PropertyValue::Int(1));
    p.insert("xds.listener_direction".into(), PropertyValue::Int(1));
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        assert_eq!(
            encode_value(&PropertyValue::Int(8080)),
            8080i64.to_le_bytes().to_vec()
        );
        assert_eq!(encode_value(&PropertyValue::Bool(true)), vec![1]);
        assert_eq!(
            encode_value(&PropertyValue::String("x".into())),
            b"x".to_vec()
        );
        let m = encode_value(&PropertyValue::Map(
            [("a".to_string(), "b".to_string())].into(),
        ));
        assert_eq!(
            crate::abi::decode_map(&m).unwrap(),
            vec![(&b"a"[..], &b"b"[..])]
        );
    }

    #[test]
    fn store_lookup_exact_and_prefix_map() {
        let mut props = Properties::new();
        props.insert(
            "node.metadata.CLUSTER_ID".into(),
            PropertyValue::String("c1".into()),
        );
        props.insert(
            "node.metadata.MESH_ID".into(),
            PropertyValue::String("m1".into()),
        );
        props.insert(
            "node.metadata.LABELS.app".into(),
            PropertyValue::String("x".into()),
        );
        let store = PropertyStore::from_properties(&props);
        let mut out = Vec::new();
        assert!(store.lookup(b"node\0metadata\0MESH_ID", &mut out));
        assert_eq!(out, b"m1");
        assert!(store.lookup(b"node\0metadata", &mut out));
        let pairs = crate::abi::decode_map(&out).unwrap();
        assert_eq!(
            pairs,
            vec![
                (&b"CLUSTER_ID"[..], &b"c1"[..]),
                (&b"MESH_ID"[..], &b"m1"[..])
            ]
        );
        assert!(!store.lookup(b"node\0missing", &mut out));
    }

    #[test]
    fn derived_request_properties() {
        let mut h = HeaderMap::default();
        h.add(b":path", b"/a/b?x=1");
        h.add(b":method", b"GET");
        h.add(b":authority", b"svc");
        let facts = StreamFacts {
            request_headers: Some(&h),
            response_headers: None,
            response_trailers: None,
            response_code: None,
            start_unix_ns: 5,
            now_unix_ns: 15,
            request_body_bytes: 3,
            response_body_bytes: 0,
            response_code_details: None,
            protocol: "HTTP/1.1",
        };
        let mut out = Vec::new();
        assert!(derived(b"request\0url_path", &facts, &mut out));
        assert_eq!(out, b"/a/b");
        assert!(derived(b"request\0query", &facts, &mut out));
        assert_eq!(out, b"x=1");
        assert!(derived(b"request\0duration", &facts, &mut out));
        assert_eq!(out, 10i64.to_le_bytes());
        assert!(derived(b"request\0headers\0:method", &facts, &mut out));
        assert_eq!(out, b"GET");
        assert!(!derived(b"response\0code", &facts, &mut out));
    }
}
