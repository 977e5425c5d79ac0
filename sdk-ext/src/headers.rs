//! Header maps on bytes. Values are `Vec<u8>`: a non-UTF-8 value is data, not a
//! reason to panic. Host errors are logged and turned into "absent"/no-op.

use crate::types::{Bytes, MapType};
use proxy_wasm::hostcalls;

/// True if `name` is a valid HTTP field name (RFC 9110 token) or an
/// HTTP/2 pseudo-header (`:path`).
pub fn is_valid_name(name: &str) -> bool {
    let body = name.strip_prefix(':').unwrap_or(name);
    !body.is_empty() && body.bytes().all(is_token_byte)
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// True if `value` can be sent as a header value (no CR, LF or NUL).
pub fn is_valid_value(value: &[u8]) -> bool {
    !value.iter().any(|b| matches!(b, b'\r' | b'\n' | 0))
}

/// Checks a configured header name and value; the error says what is wrong.
pub fn check_header(name: &str, value: &[u8]) -> Result<(), (&'static str, String)> {
    if name.is_empty() {
        return Err(("name", "must not be empty".to_string()));
    }
    if name.starts_with(':') {
        return Err((
            "name",
            format!("`{name}` is a pseudo-header; it cannot be set this way"),
        ));
    }
    if !is_valid_name(name) {
        return Err((
            "name",
            format!(
                "`{name}` is not a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~ only)"
            ),
        ));
    }
    if !is_valid_value(value) {
        return Err(("value", "must not contain CR, LF or NUL".to_string()));
    }
    Ok(())
}

/// Case-insensitive lookup of the first value of `name` in a list of pairs.
pub fn find<'a>(pairs: &'a [(String, Bytes)], name: &str) -> Option<&'a [u8]> {
    pairs
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_slice())
}

/// Splits a comma-separated header value into trimmed, non-empty items.
pub fn split_list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|b| *b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|item| !item.is_empty())
}

/// One of the host's header maps (request/response headers or trailers, or the
/// headers of an http_call answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headers {
    map: MapType,
}

impl Headers {
    pub const REQUEST: Headers = Headers {
        map: MapType::HttpRequestHeaders,
    };
    pub const REQUEST_TRAILERS: Headers = Headers {
        map: MapType::HttpRequestTrailers,
    };
    pub const RESPONSE: Headers = Headers {
        map: MapType::HttpResponseHeaders,
    };
    pub const RESPONSE_TRAILERS: Headers = Headers {
        map: MapType::HttpResponseTrailers,
    };
    pub const CALL_RESPONSE: Headers = Headers {
        map: MapType::HttpCallResponseHeaders,
    };

    /// First value of `name`, as bytes.
    pub fn get(self, name: &str) -> Option<Bytes> {
        match hostcalls::get_map_value_bytes(self.map, name) {
            Ok(value) => value,
            Err(status) => {
                log::debug!("reading header `{name}` failed: {status:?}");
                None
            }
        }
    }

    /// First value of `name` if it is valid UTF-8; a non-UTF-8 value counts as absent.
    pub fn get_str(self, name: &str) -> Option<String> {
        self.get(name).and_then(|v| String::from_utf8(v).ok())
    }

    /// All pairs in order; values as bytes.
    pub fn pairs(self) -> Vec<(String, Bytes)> {
        match hostcalls::get_map_bytes(self.map) {
            Ok(pairs) => pairs,
            Err(status) => {
                log::debug!("reading header map {:?} failed: {status:?}", self.map);
                Vec::new()
            }
        }
    }

    /// Replaces every value of `name` with `value`.
    pub fn set(self, name: &str, value: impl AsRef<[u8]>) {
        if let Err(status) = hostcalls::set_map_value_bytes(self.map, name, Some(value.as_ref())) {
            log::warn!("setting header `{name}` failed: {status:?}");
        }
    }

    /// Appends a value for `name`, keeping existing ones.
    pub fn add(self, name: &str, value: impl AsRef<[u8]>) {
        if let Err(status) = hostcalls::add_map_value_bytes(self.map, name, value.as_ref()) {
            log::warn!("adding header `{name}` failed: {status:?}");
        }
    }

    /// Removes every value of `name`.
    pub fn remove(self, name: &str) {
        if let Err(status) = hostcalls::remove_map_value(self.map, name) {
            log::warn!("removing header `{name}` failed: {status:?}");
        }
    }

    /// Replaces the whole map.
    pub fn replace_all(self, pairs: &[(String, Bytes)]) {
        let pairs: Vec<(&str, &[u8])> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        if let Err(status) = hostcalls::set_map_bytes(self.map, pairs) {
            log::warn!("replacing header map {:?} failed: {status:?}", self.map);
        }
    }
}

/// Serializes pairs in the Proxy-Wasm header map wire format: u32 LE count,
/// (u32 key len, u32 value len) per pair, then each key and value NUL-terminated.
pub fn serialize_pairs<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(K, V)]) -> Bytes {
    let size = 4 + pairs
        .iter()
        .map(|(k, v)| 10 + k.as_ref().len() + v.as_ref().len())
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&wire_len(pairs.len()).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&wire_len(k.as_ref().len()).to_le_bytes());
        out.extend_from_slice(&wire_len(v.as_ref().len()).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_ref());
        out.push(0);
        out.extend_from_slice(v.as_ref());
        out.push(0);
    }
    out
}

/// Decodes the header map wire format; `None` if the bytes are not exactly one map.
pub fn deserialize_pairs(bytes: &[u8]) -> Option<Vec<(Bytes, Bytes)>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let read_u32 = |at: usize| -> Option<usize> {
        let raw: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(raw)).ok()
    };
    let count = read_u32(0)?;
    let mut data = 4usize.checked_add(count.checked_mul(8)?)?;
    let mut pairs = Vec::with_capacity(count.min(1024));
    for index in 0..count {
        let key_len = read_u32(4 + index * 8)?;
        let value_len = read_u32(8 + index * 8)?;
        let key = bytes.get(data..data.checked_add(key_len)?)?.to_vec();
        data += key_len;
        if bytes.get(data) != Some(&0) {
            return None;
        }
        data += 1;
        let value = bytes.get(data..data.checked_add(value_len)?)?.to_vec();
        data += value_len;
        if bytes.get(data) != Some(&0) {
            return None;
        }
        data += 1;
        pairs.push((key, value));
    }
    (data == bytes.len()).then_some(pairs)
}

fn wire_len(len: usize) -> u32 {
    // Header maps are capped far below 4 GiB by every host.
    u32::try_from(len).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_token_grammar() {
        assert!(is_valid_name("x-request-id"));
        assert!(is_valid_name("Hello"));
        assert!(is_valid_name(":authority"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name(":"));
        assert!(!is_valid_name("bad name"));
        assert!(!is_valid_name("bad:name"));
        assert!(!is_valid_name("naïve"));
    }

    #[test]
    fn values_reject_line_breaks_and_nul() {
        assert!(is_valid_value(b"hello details"));
        assert!(is_valid_value(&[0xff, 0xfe]));
        assert!(!is_valid_value(b"a\r\nb"));
        assert!(!is_valid_value(b"a\0b"));
    }

    #[test]
    fn check_header_names_the_failing_part() {
        assert_eq!(check_header("", b"x").unwrap_err().0, "name");
        assert!(
            check_header(":path", b"/")
                .unwrap_err()
                .1
                .contains("pseudo-header")
        );
        assert_eq!(check_header("ok", b"a\nb").unwrap_err().0, "value");
        assert!(check_header("hello", b"hello details").is_ok());
    }

    #[test]
    fn find_is_case_insensitive_and_returns_the_first_value() {
        let pairs = vec![
            ("Accept".to_string(), b"a".to_vec()),
            ("accept".to_string(), b"b".to_vec()),
        ];
        assert_eq!(find(&pairs, "ACCEPT"), Some(&b"a"[..]));
        assert_eq!(find(&pairs, "missing"), None);
    }

    #[test]
    fn split_list_trims_and_skips_empty_items() {
        let items: Vec<&[u8]> = split_list(b" GET, POST ,,x-a").collect();
        assert_eq!(items, vec![&b"GET"[..], b"POST", b"x-a"]);
    }

    #[test]
    fn wire_format_round_trips_including_non_utf8_values() {
        let pairs = vec![
            (b"a".to_vec(), b"1".to_vec()),
            (b"bin".to_vec(), vec![0xff, 0x00, 0x80]),
            (b"empty".to_vec(), Vec::new()),
        ];
        let wire = serialize_pairs(&pairs);
        assert_eq!(&wire[..4], &3u32.to_le_bytes());
        assert_eq!(deserialize_pairs(&wire).unwrap(), pairs);
    }

    #[test]
    fn wire_format_rejects_truncated_or_padded_input() {
        let wire = serialize_pairs(&[("k", "v")]);
        assert!(deserialize_pairs(&wire[..wire.len() - 1]).is_none());
        let mut padded = wire.clone();
        padded.push(0);
        assert!(deserialize_pairs(&padded).is_none());
        assert!(deserialize_pairs(&[0xff, 0xff, 0xff, 0x7f]).is_none());
        assert_eq!(
            deserialize_pairs(&[]).unwrap(),
            Vec::<(Bytes, Bytes)>::new()
        );
    }
}
