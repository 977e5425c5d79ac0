//! Properties with Envoy's binary encoding: strings raw, integers 8-byte
//! little-endian, bools 1 byte, timestamps and durations i64 nanoseconds,
//! maps pair-serialized. Paths are segments joined by NUL. [`resolve`]
//! decides which source answers a path, [`derived`] computes `request.*`
//! and `response.*` from the live stream.

mod derived;
mod resolve;

use std::collections::{BTreeMap, BTreeSet};

use crate::abi::encode_map_into;
use crate::model::{LogLevel, Properties, PropertyValue};

pub use derived::{StreamFacts, derived};
pub(crate) use resolve::{Found, Sources, StreamSources, filter_state_key, find, unreachable_set};

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
    /// Keys of the property warnings already logged for this plugin.
    warned: BTreeSet<String>,
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
    /// The value stored at exactly `path`.
    pub fn exact(&self, path: &[u8]) -> Option<&[u8]> {
        self.values.get(path).map(Vec::as_slice)
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

/// Logs `message` as a harness warning unless one with `key` was logged
/// before for this plugin.
pub(crate) fn warn_once(host: &mut super::Host, key: String, message: String) {
    if host.properties.warned.insert(key) {
        host.harness_log(LogLevel::Warn, message);
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
    // Envoy's XDSWrapper answers an empty name when no filter chain is named.
    p.insert("xds.filter_chain_name".into(), s(""));
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
}
