//! Header maps on bytes. Values are `Vec<u8>`: a non-UTF-8 value is data, not a
//! reason to panic. Host errors are logged and turned into "absent"/no-op.

use crate::reach::{Field, Reach};
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
/// headers of an http_call answer). A stream's maps come from
/// [`crate::Http`] and know when Envoy lets the filter touch them: out of
/// reach, reads give nothing and writes do nothing, with one warning per
/// stream and map (see [`crate::Plugin`]'s notes on which hook sees what).
#[derive(Clone)]
pub struct Headers {
    map: MapType,
    scope: Option<Scope>,
}

#[derive(Clone)]
struct Scope {
    reach: Reach,
    field: Field,
    plugin: &'static str,
}

impl Headers {
    /// The headers of an http_call answer (read them in its callback).
    pub const CALL_RESPONSE: Headers = Headers {
        map: MapType::HttpCallResponseHeaders,
        scope: None,
    };

    pub(crate) fn of_stream(
        map: MapType,
        field: Field,
        reach: Reach,
        plugin: &'static str,
    ) -> Self {
        Headers {
            map,
            scope: Some(Scope {
                reach,
                field,
                plugin,
            }),
        }
    }

    /// True when the map may be read now (warns once when it may not).
    fn readable(&self) -> bool {
        match &self.scope {
            Some(s) if !s.reach.can_read(s.field) => {
                s.reach.warn_out_of_reach(s.field, s.plugin);
                false
            }
            _ => true,
        }
    }

    /// True when the map may be changed now (warns once when it may not).
    fn writable(&self) -> bool {
        match &self.scope {
            Some(s) if !s.reach.can_write(s.field) => {
                s.reach.warn_out_of_reach(s.field, s.plugin);
                false
            }
            Some(s) => {
                // A write creates trailers offered on demand: now they exist.
                s.reach.created(s.field);
                true
            }
            None => true,
        }
    }

    /// First value of `name`, as bytes.
    pub fn get(&self, name: &str) -> Option<Bytes> {
        if !self.readable() {
            return None;
        }
        match hostcalls::get_map_value_bytes(self.map, name) {
            Ok(value) => value,
            Err(status) => {
                log::debug!(
                    "reading header `{name}` failed: {}",
                    crate::status_name(status)
                );
                None
            }
        }
    }

    /// First value of `name` if it is valid UTF-8; a non-UTF-8 value counts as absent.
    pub fn get_str(&self, name: &str) -> Option<String> {
        self.get(name).and_then(|v| String::from_utf8(v).ok())
    }

    /// All pairs in order; values as bytes.
    pub fn pairs(&self) -> Vec<(String, Bytes)> {
        if !self.readable() {
            return Vec::new();
        }
        match hostcalls::get_map_bytes(self.map) {
            Ok(pairs) => pairs,
            Err(status) => {
                log::debug!(
                    "reading header map {:?} failed: {}",
                    self.map,
                    crate::status_name(status)
                );
                Vec::new()
            }
        }
    }

    /// Replaces every value of `name` with `value`.
    pub fn set(&self, name: &str, value: impl AsRef<[u8]>) {
        if !self.writable() {
            return;
        }
        if let Err(status) = hostcalls::set_map_value_bytes(self.map, name, Some(value.as_ref())) {
            log::warn!(
                "setting header `{name}` failed: {}",
                crate::status_name(status)
            );
        }
    }

    /// Appends a value for `name`, keeping existing ones.
    pub fn add(&self, name: &str, value: impl AsRef<[u8]>) {
        if !self.writable() {
            return;
        }
        if let Err(status) = hostcalls::add_map_value_bytes(self.map, name, value.as_ref()) {
            log::warn!(
                "adding header `{name}` failed: {}",
                crate::status_name(status)
            );
        }
    }

    /// Removes every value of `name`.
    pub fn remove(&self, name: &str) {
        if !self.writable() {
            return;
        }
        if let Err(status) = hostcalls::remove_map_value(self.map, name) {
            log::warn!(
                "removing header `{name}` failed: {}",
                crate::status_name(status)
            );
        }
    }

    /// Replaces the whole map.
    pub fn replace_all(&self, pairs: &[(String, Bytes)]) {
        if !self.writable() {
            return;
        }
        let pairs: Vec<(&str, &[u8])> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        if let Err(status) = hostcalls::set_map_bytes(self.map, pairs) {
            log::warn!(
                "replacing header map {:?} failed: {}",
                self.map,
                crate::status_name(status)
            );
        }
    }
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
}
