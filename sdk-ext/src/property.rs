//! Host properties (`request.path`, `source.address`, `xds.route_name`, ...) in
//! Envoy's binary encoding: strings raw, integers 8-byte little-endian, bools
//! one byte, timestamps and durations as i64 nanoseconds.

use crate::types::Bytes;
use proxy_wasm::hostcalls;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Raw bytes of a property; `None` when absent or unreadable.
pub fn get(path: &[&str]) -> Option<Bytes> {
    match hostcalls::get_property(path.to_vec()) {
        Ok(value) => value,
        Err(status) => {
            log::debug!(
                "reading property {} failed: {}",
                path.join("."),
                crate::status_name(status)
            );
            None
        }
    }
}

pub fn get_string(path: &[&str]) -> Option<String> {
    get(path).and_then(|raw| decode_string(&raw))
}

pub fn get_int(path: &[&str]) -> Option<i64> {
    get(path).and_then(|raw| decode_int(&raw))
}

pub fn get_bool(path: &[&str]) -> Option<bool> {
    get(path).and_then(|raw| decode_bool(&raw))
}

/// A string property; `None` if it is not UTF-8.
pub fn decode_string(raw: &[u8]) -> Option<String> {
    String::from_utf8(raw.to_vec()).ok()
}

/// An integer property: exactly 8 bytes, little-endian.
pub fn decode_int(raw: &[u8]) -> Option<i64> {
    Some(i64::from_le_bytes(raw.try_into().ok()?))
}

/// A bool property: exactly one byte, 0 or 1.
pub fn decode_bool(raw: &[u8]) -> Option<bool> {
    match raw {
        [0] => Some(false),
        [1] => Some(true),
        _ => None,
    }
}

/// A duration property (i64 nanoseconds); negative values are rejected.
pub fn decode_duration(raw: &[u8]) -> Option<Duration> {
    let nanos = u64::try_from(decode_int(raw)?).ok()?;
    Some(Duration::from_nanos(nanos))
}

/// A timestamp property (i64 nanoseconds since the Unix epoch).
pub fn decode_timestamp(raw: &[u8]) -> Option<SystemTime> {
    let nanos = decode_int(raw)?;
    if nanos >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_nanos(nanos.unsigned_abs()))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_nanos(nanos.unsigned_abs()))
    }
}

/// A map property (e.g. `request.headers`), pair-serialized like a header
/// map; `None` unless the bytes are exactly one map within the ABI's caps.
pub fn decode_map(raw: &[u8]) -> Option<Vec<(Bytes, Bytes)>> {
    let pairs = proxy_abi::decode_map(raw).ok()?;
    Some(
        pairs
            .into_iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_eight_bytes_little_endian() {
        assert_eq!(decode_int(&200i64.to_le_bytes()), Some(200));
        assert_eq!(decode_int(&(-5i64).to_le_bytes()), Some(-5));
        assert_eq!(decode_int(b"200"), None);
        assert_eq!(decode_int(&[0; 9]), None);
    }

    #[test]
    fn bools_are_one_byte() {
        assert_eq!(decode_bool(&[1]), Some(true));
        assert_eq!(decode_bool(&[0]), Some(false));
        assert_eq!(decode_bool(&[2]), None);
        assert_eq!(decode_bool(b"true"), None);
    }

    #[test]
    fn strings_are_raw_and_must_be_utf8() {
        assert_eq!(
            decode_string(b"/details/123").as_deref(),
            Some("/details/123")
        );
        assert_eq!(decode_string(&[0xff]), None);
    }

    #[test]
    fn durations_and_timestamps_are_nanoseconds() {
        let raw = 1_500_000_000i64.to_le_bytes();
        assert_eq!(decode_duration(&raw), Some(Duration::from_millis(1500)));
        assert_eq!(decode_duration(&(-1i64).to_le_bytes()), None);
        assert_eq!(
            decode_timestamp(&raw),
            Some(UNIX_EPOCH + Duration::from_millis(1500))
        );
    }

    #[test]
    fn maps_use_the_header_map_encoding() {
        let raw = proxy_abi::encode_map(&[(b"k", &[0xff, 0][..])]);
        assert_eq!(decode_map(&raw), Some(vec![(b"k".to_vec(), vec![0xff, 0])]));
        assert_eq!(decode_map(&raw[..raw.len() - 1]), None);
        assert_eq!(decode_map(&[]), Some(vec![]));
    }
}
