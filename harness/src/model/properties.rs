//! Caller-set properties: values, keys and the two forms files use.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::ByteString;

/// A property value set by the caller; encoded the way Envoy encodes it for
/// `proxy_get_property` (strings raw, integers 8-byte LE, bools 1 byte,
/// maps pair-serialized).
///
/// In files: a string, integer, boolean, a map of strings, or `{bytes: [..]}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PropertyValue {
    /// 1 byte, 0 or 1.
    Bool(bool),
    /// 8 bytes little-endian.
    Int(i64),
    /// Raw UTF-8.
    String(String),
    /// Pair-serialized like a header map.
    Map(BTreeMap<String, String>),
    /// Exactly these bytes.
    Bytes {
        /// The raw bytes.
        bytes: ByteString,
    },
}

/// Properties the caller sets, by key: a dotted path (`"xds.route_name"`,
/// `"xds.node.metadata.CLUSTER_ID"`, `"source.port"`) is split at `.` into
/// the NUL-separated segments the ABI uses; a key that already holds NULs
/// is taken as those segments, so one may contain a dot. Build such a key
/// with [`property_key`] (`["metadata", "filter_metadata", "envoy.lb", "k"]`).
/// These override the values the harness derives from the request
/// (`request.*`, `response.*`, ...). Files take a map of dotted keys or a
/// list of `{path: [segments], value}` (see [`deserialize_properties`]).
pub type Properties = BTreeMap<String, PropertyValue>;

/// The [`Properties`] key for a path given as segments, any of which may
/// contain dots: the segments joined by NUL. A single segment is the key
/// itself, so it may not contain a dot (Envoy's top-level names have none,
/// and it would read as a dotted path).
pub fn property_key<S: AsRef<str>>(segments: &[S]) -> Result<String, String> {
    if segments.is_empty() || segments.iter().any(|s| s.as_ref().is_empty()) {
        return Err("every property path segment must be non-empty".into());
    }
    if segments.iter().any(|s| s.as_ref().contains('\0')) {
        return Err("a property path segment may not contain NUL".into());
    }
    if let [only] = segments
        && only.as_ref().contains('.')
    {
        return Err(format!(
            "the one-segment path [{}] cannot be told from a dotted path; Envoy's \
             top-level names have no dots",
            only.as_ref()
        ));
    }
    let parts: Vec<&str> = segments.iter().map(AsRef::as_ref).collect();
    Ok(parts.join("\0"))
}

/// A path in a file's property list: dotted text or a list of segments.
#[derive(Deserialize)]
#[serde(untagged)]
enum PathForm {
    Dotted(String),
    Segments(Vec<String>),
}

/// One entry of a file's property list.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PropertyEntry {
    path: PathForm,
    value: PropertyValue,
}

struct PropertiesVisitor;

impl<'de> Visitor<'de> for PropertiesVisitor {
    type Value = Properties;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(
            "properties: a map from dotted path to value, or a list of \
             {path: [segment, ...], value: ...}",
        )
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Properties, A::Error> {
        Properties::deserialize(de::value::MapAccessDeserializer::new(map))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Properties, A::Error> {
        let entries =
            Vec::<PropertyEntry>::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        let mut props = Properties::new();
        let mut seen = std::collections::BTreeSet::new();
        for entry in entries {
            let key = match entry.path {
                PathForm::Dotted(dotted) => dotted,
                PathForm::Segments(segments) => {
                    property_key(&segments).map_err(de::Error::custom)?
                }
            };
            let shown = key.replace('\0', ".");
            let path = if key.contains('\0') {
                key.clone()
            } else {
                key.replace('.', "\0")
            };
            if !seen.insert(path) {
                return Err(de::Error::custom(format!(
                    "property path {shown} is given twice"
                )));
            }
            props.insert(key, entry.value);
        }
        Ok(props)
    }
}

/// Reads [`Properties`] from either file form: a map of dotted paths
/// (`{xds.route_name: r1}`) or a list of entries whose path is a list of
/// segments (`[{path: [metadata, filter_metadata, envoy.lb, canary], value: true}]`).
pub fn deserialize_properties<'de, D: Deserializer<'de>>(d: D) -> Result<Properties, D::Error> {
    d.deserialize_any(PropertiesVisitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct File {
        #[serde(deserialize_with = "deserialize_properties")]
        properties: Properties,
    }

    fn read(yaml: &str) -> Result<Properties, String> {
        serde_yaml_ng::from_str::<File>(yaml)
            .map(|f| f.properties)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn both_file_forms_give_the_same_keys() {
        let map = read("properties: {xds.route_name: r1, source.port: 8080}").unwrap();
        let list = read(
            "properties:\n  - {path: xds.route_name, value: r1}\n  - {path: [source, port], value: 8080}",
        )
        .unwrap();
        assert_eq!(map.get("xds.route_name"), list.get("xds.route_name"));
        assert_eq!(map.get("source.port"), list.get("source\0port"));
        let dotted = read(
            "properties: [{path: [metadata, filter_metadata, envoy.filters.http.lua, key], value: v}]",
        )
        .unwrap();
        assert_eq!(
            dotted.keys().collect::<Vec<_>>(),
            ["metadata\0filter_metadata\0envoy.filters.http.lua\0key"]
        );
    }

    #[test]
    fn bad_list_entries_are_refused_with_the_reason() {
        let twice = read("properties: [{path: [a, b], value: 1}, {path: a.b, value: 2}]");
        assert!(twice.unwrap_err().contains("given twice"));
        let dotted_top = read("properties: [{path: [a.b], value: 1}]");
        assert!(dotted_top.unwrap_err().contains("cannot be told"));
        let empty = read("properties: [{path: [a, ''], value: 1}]");
        assert!(empty.unwrap_err().contains("non-empty"));
        assert!(read("properties: [{path: [a], value: 1, extra: 2}]").is_err());
    }
}
