//! Bytes that may not be UTF-8: [`ByteString`], header lists, bodies.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------
// Bytes and headers
// ---------------------------------------------------------------------------

/// Bytes that print as a string when they are UTF-8.
///
/// Deserializes from a string (its UTF-8 bytes) or a list of integers 0..=255.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteString(pub Vec<u8>);

impl ByteString {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    /// Lossy UTF-8 text, for display.
    pub fn to_text(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// True when there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for ByteString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(&self.0) {
            Ok(s) => write!(f, "{s:?}"),
            Err(_) => write!(f, "{:?}", self.0),
        }
    }
}

impl From<&str> for ByteString {
    fn from(s: &str) -> Self {
        ByteString(s.as_bytes().to_vec())
    }
}
impl From<String> for ByteString {
    fn from(s: String) -> Self {
        ByteString(s.into_bytes())
    }
}
impl From<Vec<u8>> for ByteString {
    fn from(v: Vec<u8>) -> Self {
        ByteString(v)
    }
}
impl From<&[u8]> for ByteString {
    fn from(v: &[u8]) -> Self {
        ByteString(v.to_vec())
    }
}

impl Serialize for ByteString {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(s) => serializer.serialize_str(s),
            Err(_) => {
                let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
                for b in &self.0 {
                    seq.serialize_element(b)?;
                }
                seq.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for ByteString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ByteString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of byte values")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteString, E> {
                Ok(ByteString(v.as_bytes().to_vec()))
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<ByteString, E> {
                Ok(ByteString(v.to_vec()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ByteString, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(ByteString(out))
            }
            // Numbers and booleans in YAML are taken as their text, so
            // `value: 42` means the two bytes "42".
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteString, E> {
                Ok(ByteString(v.to_string().into_bytes()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteString, E> {
                Ok(ByteString(v.to_string().into_bytes()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ByteString, E> {
                Ok(ByteString(v.to_string().into_bytes()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<ByteString, E> {
                Ok(ByteString(v.to_string().into_bytes()))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A `:status` value as a number (0 when missing or malformed).
pub(crate) fn parse_status(value: Option<&[u8]>) -> u16 {
    value
        .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
        .unwrap_or(0)
}

/// An ordered list of header (or metadata, or trailer) pairs, bytes exact.
///
/// Order and duplicates are preserved. Serializes as a list of `[name, value]`
/// pairs. Deserializes from any of:
/// - a map `{name: value, ...}` (file order kept),
/// - a list of `[name, value]` pairs,
/// - a list of `"name: value"` strings (split at the first `:` after position 0,
///   so `":path: /x"` works; the value is trimmed of leading spaces).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(ByteString, ByteString)>);

impl Headers {
    /// The `:status` of a response header list (0 when missing or malformed).
    pub fn status(&self) -> u16 {
        parse_status(self.get(":status").map(ByteString::as_bytes))
    }

    /// An empty list.
    pub fn new() -> Self {
        Headers(Vec::new())
    }
    /// Builds from string pairs.
    pub fn from_pairs<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Headers(
            pairs
                .into_iter()
                .map(|(k, v)| {
                    (
                        ByteString(k.as_ref().to_vec()),
                        ByteString(v.as_ref().to_vec()),
                    )
                })
                .collect(),
        )
    }
    /// Appends a pair.
    pub fn push(&mut self, name: impl Into<ByteString>, value: impl Into<ByteString>) {
        self.0.push((name.into(), value.into()));
    }
    /// First value whose name equals `name` (ASCII case-insensitive).
    pub fn get(&self, name: &str) -> Option<&ByteString> {
        self.0
            .iter()
            .find(|(k, _)| k.0.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }
    /// First value as lossy text.
    pub fn get_text(&self, name: &str) -> Option<String> {
        self.get(name).map(ByteString::to_text)
    }
    /// Every value whose name equals `name` (ASCII case-insensitive), in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a ByteString> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k.0.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }
    /// True when a header with this name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// True when there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Iterates over the pairs as byte slices.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.0.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes()))
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter()).finish()
    }
}

impl Serialize for Headers {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for pair in &self.0 {
            seq.serialize_element(pair)?;
        }
        seq.end()
    }
}

/// One element of a header list in a file: a pair or a `"name: value"` line.
#[derive(Deserialize)]
#[serde(untagged)]
enum HeaderItem {
    Pair(ByteString, ByteString),
    Line(String),
}

fn split_header_line(line: &str) -> Option<(&str, &str)> {
    // Skip a leading ':' so pseudo-headers (":path: /x") split correctly.
    let start = usize::from(line.starts_with(':'));
    let idx = line.get(start..)?.find(':')? + start;
    Some((&line[..idx], line[idx + 1..].trim_start()))
}

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Headers;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of name: value, a list of [name, value] pairs or a list of \"name: value\" strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Headers, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<ByteString, ByteString>()? {
                    out.push((k, v));
                }
                Ok(Headers(out))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Headers, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<HeaderItem>()? {
                    match item {
                        HeaderItem::Pair(k, v) => out.push((k, v)),
                        HeaderItem::Line(line) => {
                            let (k, v) = split_header_line(&line).ok_or_else(|| {
                                de::Error::custom(format!(
                                    "header line {line:?} has no ':' (expected \"name: value\")"
                                ))
                            })?;
                            out.push((k.into(), v.into()));
                        }
                    }
                }
                Ok(Headers(out))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Headers, E> {
                Ok(Headers::new())
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A message body delivered in chunks (each chunk is one body callback).
///
/// Deserializes from a string (one chunk), or a list of strings (one chunk
/// each), or `null` (no body). Serializes as the list of chunks.
#[derive(Clone, Default, PartialEq, Eq, Debug)]
pub struct Body(pub Vec<ByteString>);

impl Body {
    /// No body.
    pub fn empty() -> Self {
        Body(Vec::new())
    }
    /// One chunk.
    pub fn single(bytes: impl Into<ByteString>) -> Self {
        let b: ByteString = bytes.into();
        if b.is_empty() {
            Body(Vec::new())
        } else {
            Body(vec![b])
        }
    }
    /// All chunks joined.
    pub fn concat(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.total_len());
        for c in &self.0 {
            out.extend_from_slice(&c.0);
        }
        out
    }
    /// Sum of the chunk lengths.
    pub fn total_len(&self) -> usize {
        self.0.iter().map(ByteString::len).sum()
    }
    /// True when there is no byte to send.
    pub fn is_empty(&self) -> bool {
        self.total_len() == 0
    }
}

impl Serialize for Body {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Body {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Chunks(Vec<ByteString>),
            One(ByteString),
            None(()),
        }
        Ok(match Form::deserialize(deserializer)? {
            Form::Chunks(c) => Body(c),
            Form::One(b) => Body::single(b),
            Form::None(()) => Body::empty(),
        })
    }
}
