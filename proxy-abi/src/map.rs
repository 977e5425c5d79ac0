//! The header-map wire format every map crosses the ABI in: a u32 LE pair
//! count, then a (u32 LE key length, u32 LE value length) per pair, then each
//! key and each value followed by a NUL byte. An empty map is zero bytes.
//! Decoding is exact and capped like proxy-wasm-cpp-host's
//! `PairsUtil::toPairs` with the limits of `include/proxy-wasm/limits.h`.

use alloc::vec::Vec;
use core::fmt;

/// Largest serialized map a decoder accepts.
pub const MAX_MAP_BYTES: usize = 1024 * 1024;
/// Most pairs a serialized map may declare.
pub const MAX_MAP_PAIRS: usize = 1024;

/// One decoded (key, value) pair borrowing the serialized bytes.
pub type Pair<'a> = (&'a [u8], &'a [u8]);

/// Size of the serialized form of these pairs (0 for an empty map).
pub fn encoded_map_size<'a>(pairs: impl Iterator<Item = Pair<'a>>) -> usize {
    let (count, size) = pairs.fold((0usize, 4usize), |(n, size), (k, v)| {
        (n + 1, size + 8 + k.len() + 1 + v.len() + 1)
    });
    if count == 0 { 0 } else { size }
}

/// Serializes pairs into `out` (cleared first, so a caller can reuse one
/// buffer). An empty map serializes to zero bytes.
pub fn encode_map_into<'a, I>(pairs: I, out: &mut Vec<u8>)
where
    I: Iterator<Item = Pair<'a>> + Clone,
{
    out.clear();
    let size = encoded_map_size(pairs.clone());
    if size == 0 {
        return;
    }
    out.reserve(size);
    out.extend_from_slice(&wire_len(pairs.clone().count()).to_le_bytes());
    for (k, v) in pairs.clone() {
        out.extend_from_slice(&wire_len(k.len()).to_le_bytes());
        out.extend_from_slice(&wire_len(v.len()).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
}

/// Serializes pairs into a fresh vector.
pub fn encode_map(pairs: &[Pair<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_map_into(pairs.iter().copied(), &mut out);
    out
}

fn wire_len(len: usize) -> u32 {
    // A length over 4 GiB cannot be decoded by any host; saturate rather
    // than wrap so the map is rejected instead of misread.
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// Why a serialized map was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapDecodeError {
    /// More than [`MAX_MAP_BYTES`] bytes.
    TooLarge(usize),
    /// More than [`MAX_MAP_PAIRS`] pairs declared.
    TooManyPairs(usize),
    /// The sizes do not add up or a NUL terminator is missing.
    Malformed(&'static str),
}

impl fmt::Display for MapDecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapDecodeError::TooLarge(n) => {
                write!(f, "serialized map of {n} bytes exceeds the 1 MiB limit")
            }
            MapDecodeError::TooManyPairs(n) => {
                write!(f, "serialized map declares {n} pairs, over the 1024 limit")
            }
            MapDecodeError::Malformed(why) => write!(f, "malformed serialized map: {why}"),
        }
    }
}

impl core::error::Error for MapDecodeError {}

/// Parses a serialized map exactly: every size must match, every key and
/// value must be NUL-terminated, no byte may be left over. Zero bytes (or a
/// lone zero count) is the empty map.
pub fn decode_map(data: &[u8]) -> Result<Vec<Pair<'_>>, MapDecodeError> {
    if data.is_empty() {
        return Ok(Vec::new());
    }
    if data.len() > MAX_MAP_BYTES {
        return Err(MapDecodeError::TooLarge(data.len()));
    }
    let read_u32 = |at: usize| -> Result<usize, MapDecodeError> {
        data.get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .and_then(|b| usize::try_from(u32::from_le_bytes(b)).ok())
            .ok_or(MapDecodeError::Malformed("truncated size field"))
    };
    let count = read_u32(0)?;
    if count > MAX_MAP_PAIRS {
        return Err(MapDecodeError::TooManyPairs(count));
    }
    let sizes_end = 4 + count * 8;
    if data.len() < sizes_end {
        return Err(MapDecodeError::Malformed("truncated size table"));
    }
    let mut pairs = Vec::with_capacity(count);
    let mut at = sizes_end;
    // `take` reads `len` bytes then a NUL; lengths are checked before any
    // addition so a 4 GiB length cannot overflow a 32-bit usize.
    let mut take = |len: usize, past_end: &'static str, no_nul: &'static str| {
        let end = at
            .checked_add(len)
            .filter(|end| *end <= data.len())
            .ok_or(MapDecodeError::Malformed(past_end))?;
        let bytes = &data[at..end];
        if data.get(end) != Some(&0) {
            return Err(MapDecodeError::Malformed(no_nul));
        }
        at = end + 1;
        Ok(bytes)
    };
    for i in 0..count {
        let key_len = read_u32(4 + i * 8)?;
        let value_len = read_u32(8 + i * 8)?;
        let key = take(
            key_len,
            "key runs past the end",
            "key is not NUL-terminated",
        )?;
        let value = take(
            value_len,
            "value runs past the end",
            "value is not NUL-terminated",
        )?;
        pairs.push((key, value));
    }
    if at != data.len() {
        return Err(MapDecodeError::Malformed(
            "trailing bytes after the last pair",
        ));
    }
    Ok(pairs)
}

/// Property path segments: the ABI joins them with NUL.
pub fn split_property_path(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.split(|b| *b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn malformed(data: &[u8]) -> &'static str {
        match decode_map(data) {
            Err(MapDecodeError::Malformed(why)) => why,
            other => panic!("expected a malformed-map error, got {other:?}"),
        }
    }

    #[test]
    fn round_trip_with_the_exact_layout() {
        let pairs: Vec<Pair<'_>> = vec![(b"a", b"bc"), (b"", b""), (b"bin", &[0xff, 0, 0x80])];
        let enc = encode_map(&pairs);
        let mut expected = vec![3, 0, 0, 0];
        for (k, v) in [(1u32, 2u32), (0, 0), (3, 3)] {
            expected.extend_from_slice(&k.to_le_bytes());
            expected.extend_from_slice(&v.to_le_bytes());
        }
        expected.extend_from_slice(b"a\0bc\0\0\0bin\0\xff\0\x80\0");
        assert_eq!(enc, expected);
        assert_eq!(encoded_map_size(pairs.iter().copied()), enc.len());
        assert_eq!(decode_map(&enc), Ok(pairs));
    }

    #[test]
    fn encoding_reuses_and_clears_the_buffer() {
        let mut out = vec![9u8; 3];
        encode_map_into([(&b"k"[..], &b"v"[..])].into_iter(), &mut out);
        assert_eq!(decode_map(&out), Ok(vec![(&b"k"[..], &b"v"[..])]));
        encode_map_into(core::iter::empty(), &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn the_empty_map_is_zero_bytes_or_a_zero_count() {
        assert!(encode_map(&[]).is_empty());
        assert_eq!(encoded_map_size(core::iter::empty()), 0);
        assert_eq!(decode_map(&[]), Ok(vec![]));
        assert_eq!(decode_map(&[0, 0, 0, 0]), Ok(vec![]));
    }

    #[test]
    fn every_malformed_input_class_is_rejected() {
        let enc = encode_map(&[(b"k", b"v")]);
        // Shorter than the count field.
        assert_eq!(malformed(&[0]), "truncated size field");
        // The size table is cut short.
        assert_eq!(malformed(&enc[..8]), "truncated size table");
        // A key or a value longer than what follows.
        let mut long_key = enc.clone();
        long_key[4..8].copy_from_slice(&50u32.to_le_bytes());
        assert_eq!(malformed(&long_key), "key runs past the end");
        let mut long_value = enc.clone();
        long_value[8..12].copy_from_slice(&50u32.to_le_bytes());
        assert_eq!(malformed(&long_value), "value runs past the end");
        // Missing NUL terminators.
        let mut key_nul = enc.clone();
        key_nul[13] = b'x';
        assert_eq!(malformed(&key_nul), "key is not NUL-terminated");
        let mut value_nul = enc.clone();
        let last = value_nul.len() - 1;
        value_nul[last] = b'x';
        assert_eq!(malformed(&value_nul), "value is not NUL-terminated");
        assert_eq!(
            malformed(&enc[..enc.len() - 1]),
            "value is not NUL-terminated"
        );
        // Bytes after the last pair.
        let mut extra = enc.clone();
        extra.push(0);
        assert_eq!(malformed(&extra), "trailing bytes after the last pair");
        // A 4 GiB length must neither panic nor over-read.
        let mut huge = vec![1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];
        huge.extend_from_slice(b"\0\0");
        assert_eq!(malformed(&huge), "key runs past the end");
    }

    #[test]
    fn caps_on_size_and_pair_count() {
        let mut over_count = vec![0u8; 8];
        over_count[..4].copy_from_slice(&1025u32.to_le_bytes());
        assert_eq!(
            decode_map(&over_count),
            Err(MapDecodeError::TooManyPairs(1025))
        );
        // Exactly 1024 empty pairs is allowed.
        let empty: &[u8] = b"";
        let at_cap = encode_map(&vec![(empty, empty); MAX_MAP_PAIRS]);
        assert_eq!(decode_map(&at_cap).map(|p| p.len()), Ok(MAX_MAP_PAIRS));
        // One value that makes the map one byte over 1 MiB.
        let big = vec![b'v'; MAX_MAP_BYTES - 4 - 8 - 1 - 1 + 1];
        let over_size = encode_map(&[(empty, &big[..])]);
        assert_eq!(over_size.len(), MAX_MAP_BYTES + 1);
        assert_eq!(
            decode_map(&over_size),
            Err(MapDecodeError::TooLarge(MAX_MAP_BYTES + 1))
        );
        let at_size = encode_map(&[(empty, &big[1..])]);
        assert_eq!(decode_map(&at_size).map(|p| p.len()), Ok(1));
    }

    #[test]
    fn errors_read_as_sentences() {
        use alloc::string::ToString;
        assert_eq!(
            MapDecodeError::TooManyPairs(2000).to_string(),
            "serialized map declares 2000 pairs, over the 1024 limit"
        );
    }

    #[test]
    fn property_paths_split_on_nul() {
        let parts: Vec<&[u8]> = split_property_path(b"request\0headers\0x").collect();
        assert_eq!(parts, vec![&b"request"[..], b"headers", b"x"]);
    }
}
