//! Proxy-Wasm ABI versions, 0.2.1 enums, status codes and the header-map wire format.

/// Status codes returned by host functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Status {
    /// 0
    Ok = 0,
    /// 1
    NotFound = 1,
    /// 2
    BadArgument = 2,
    /// 3
    SerializationFailure = 3,
    /// 4
    ParseFailure = 4,
    /// 6 (the Rust SDK cannot represent it)
    InvalidMemoryAccess = 6,
    /// 7
    Empty = 7,
    /// 8
    CasMismatch = 8,
    /// 10
    InternalFailure = 10,
    /// 12 (the Rust SDK cannot represent it)
    Unimplemented = 12,
}

impl Status {
    /// From the ABI number; unknown values are `None`.
    pub fn from_u32(v: u32) -> Option<Status> {
        Some(match v {
            0 => Status::Ok,
            1 => Status::NotFound,
            2 => Status::BadArgument,
            3 => Status::SerializationFailure,
            4 => Status::ParseFailure,
            6 => Status::InvalidMemoryAccess,
            7 => Status::Empty,
            8 => Status::CasMismatch,
            10 => Status::InternalFailure,
            12 => Status::Unimplemented,
            _ => return None,
        })
    }

    /// Short upper-case name for traces.
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::NotFound => "NOT_FOUND",
            Status::BadArgument => "BAD_ARGUMENT",
            Status::SerializationFailure => "SERIALIZATION_FAILURE",
            Status::ParseFailure => "PARSE_FAILURE",
            Status::InvalidMemoryAccess => "INVALID_MEMORY_ACCESS",
            Status::Empty => "EMPTY",
            Status::CasMismatch => "CAS_MISMATCH",
            Status::InternalFailure => "INTERNAL_FAILURE",
            Status::Unimplemented => "UNIMPLEMENTED",
        }
    }
}

/// The Proxy-Wasm ABI version a module declares (an exported empty
/// `proxy_abi_version_*` function); semantics differ per version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AbiVersion {
    /// `proxy_abi_version_0_1_0`: header callbacks without end_of_stream, a
    /// missing header reads as OK and empty, `proxy_continue_request`/
    /// `proxy_continue_response`, `proxy_get_configuration`,
    /// `proxy_clear_route_cache`; no `proxy_get_log_level`.
    V0_1_0,
    /// `proxy_abi_version_0_2_0`: 0.2.1 without `proxy_get_log_level`.
    V0_2_0,
    /// `proxy_abi_version_0_2_1`.
    #[default]
    V0_2_1,
}

impl AbiVersion {
    /// Every version with the export that declares it, newest first.
    pub const ALL: [(AbiVersion, &'static str); 3] = [
        (AbiVersion::V0_2_1, "proxy_abi_version_0_2_1"),
        (AbiVersion::V0_2_0, "proxy_abi_version_0_2_0"),
        (AbiVersion::V0_1_0, "proxy_abi_version_0_1_0"),
    ];

    /// The version a module declares, from its export names (the newest
    /// when several are exported).
    pub fn detect<'a>(exports: impl Iterator<Item = &'a str> + Clone) -> Option<AbiVersion> {
        Self::ALL
            .iter()
            .find(|(_, marker)| exports.clone().any(|e| e == *marker))
            .map(|(v, _)| *v)
    }

    /// Whether a module of this version may import the host function `name`.
    pub fn offers(self, name: &str) -> bool {
        match name {
            "proxy_get_log_level" => self == AbiVersion::V0_2_1,
            _ => true,
        }
    }

    /// `"0.1.0"`, `"0.2.0"`, `"0.2.1"`.
    pub fn as_str(self) -> &'static str {
        match self {
            AbiVersion::V0_1_0 => "0.1.0",
            AbiVersion::V0_2_0 => "0.2.0",
            AbiVersion::V0_2_1 => "0.2.1",
        }
    }
}

/// Callback results for stream callbacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// 0: let the data through.
    Continue,
    /// 1 (or anything else): stop iteration.
    Pause,
}

impl Action {
    /// Envoy treats every value other than 0 as a stop.
    pub fn from_raw(v: u64) -> Action {
        if v == 0 {
            Action::Continue
        } else {
            Action::Pause
        }
    }
}

macro_rules! abi_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $val:expr),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $variant = $val),* }
        impl $name {
            /// From the ABI number; unknown values are `None`.
            pub fn from_u32(v: u32) -> Option<$name> {
                match v { $($val => Some($name::$variant),)* _ => None }
            }
        }
    };
}

abi_enum!(
    /// Buffers a filter can read or write.
    BufferType {
        /// HTTP request body.
        HttpRequestBody = 0,
        /// HTTP response body.
        HttpResponseBody = 1,
        /// TCP downstream data.
        DownstreamData = 2,
        /// TCP upstream data.
        UpstreamData = 3,
        /// Body of the http_call response being delivered.
        HttpCallResponseBody = 4,
        /// gRPC message being delivered.
        GrpcReceiveBuffer = 5,
        /// VM configuration.
        VmConfiguration = 6,
        /// Plugin configuration.
        PluginConfiguration = 7,
        /// Foreign function arguments.
        CallData = 8,
    }
);

abi_enum!(
    /// Header maps a filter can read or write.
    MapType {
        /// Request headers.
        HttpRequestHeaders = 0,
        /// Request trailers.
        HttpRequestTrailers = 1,
        /// Response headers.
        HttpResponseHeaders = 2,
        /// Response trailers.
        HttpResponseTrailers = 3,
        /// gRPC initial metadata being delivered.
        GrpcReceiveInitialMetadata = 4,
        /// gRPC trailing metadata being delivered.
        GrpcReceiveTrailingMetadata = 5,
        /// Headers of the http_call response being delivered.
        HttpCallResponseHeaders = 6,
        /// Trailers of the http_call response being delivered.
        HttpCallResponseTrailers = 7,
    }
);

abi_enum!(
    /// Streams for continue/close.
    StreamType {
        /// Request direction.
        HttpRequest = 0,
        /// Response direction.
        HttpResponse = 1,
        /// TCP downstream.
        Downstream = 2,
        /// TCP upstream.
        Upstream = 3,
    }
);

abi_enum!(
    /// Metric kinds.
    MetricType {
        /// Counter.
        Counter = 0,
        /// Gauge.
        Gauge = 1,
        /// Histogram.
        Histogram = 2,
    }
);

/// Envoy's limits on a serialized header map (proxy-wasm-cpp-host limits.h).
pub const MAX_MAP_BYTES: usize = 1024 * 1024;
/// Maximum number of pairs in a serialized header map.
pub const MAX_MAP_PAIRS: usize = 1024;

/// Size of a serialized map with these pairs (0 for an empty map).
pub fn encoded_map_size<'a>(pairs: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> usize {
    let mut n = 0usize;
    let mut size = 4usize;
    for (k, v) in pairs {
        n += 1;
        size += 8 + k.len() + 1 + v.len() + 1;
    }
    if n == 0 { 0 } else { size }
}

/// Serializes pairs into `out` (cleared first): u32 LE count, (u32 key len,
/// u32 value len) per pair, then each key and value followed by NUL.
/// An empty map serializes to zero bytes.
pub fn encode_map_into<'a, I>(pairs: I, out: &mut Vec<u8>)
where
    I: Iterator<Item = (&'a [u8], &'a [u8])> + Clone,
{
    out.clear();
    let count = pairs.clone().count();
    if count == 0 {
        return;
    }
    out.extend_from_slice(&(count as u32).to_le_bytes());
    for (k, v) in pairs.clone() {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
}

/// Serializes pairs into a fresh vector.
pub fn encode_map(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_map_into(pairs.iter().copied(), &mut out);
    out
}

/// Why a serialized map was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapDecodeError {
    /// More than [`MAX_MAP_BYTES`].
    #[error("serialized map of {0} bytes exceeds the 1 MiB limit")]
    TooLarge(usize),
    /// More than [`MAX_MAP_PAIRS`].
    #[error("serialized map declares {0} pairs, over the 1024 limit")]
    TooManyPairs(usize),
    /// Sizes do not add up or a NUL terminator is missing.
    #[error("malformed serialized map: {0}")]
    Malformed(&'static str),
}

/// One decoded (key, value) pair borrowing the serialized bytes.
pub type Pair<'a> = (&'a [u8], &'a [u8]);

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
            .and_then(|b| b.try_into().ok())
            .map(|b: [u8; 4]| u32::from_le_bytes(b) as usize)
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
    for i in 0..count {
        let klen = read_u32(4 + i * 8)?;
        let vlen = read_u32(8 + i * 8)?;
        let key = data
            .get(at..at + klen)
            .ok_or(MapDecodeError::Malformed("key runs past the end"))?;
        at += klen;
        if data.get(at) != Some(&0) {
            return Err(MapDecodeError::Malformed("key is not NUL-terminated"));
        }
        at += 1;
        let value = data
            .get(at..at + vlen)
            .ok_or(MapDecodeError::Malformed("value runs past the end"))?;
        at += vlen;
        if data.get(at) != Some(&0) {
            return Err(MapDecodeError::Malformed("value is not NUL-terminated"));
        }
        at += 1;
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

    #[test]
    fn map_round_trip_and_exact_layout() {
        let pairs: Vec<(&[u8], &[u8])> = vec![(b"a", b"bc"), (b"", b"")];
        let enc = encode_map(&pairs);
        let mut expected = vec![2, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        expected.extend_from_slice(b"a\0bc\0\0\0");
        assert_eq!(enc, expected);
        assert_eq!(encoded_map_size(pairs.iter().copied()), enc.len());
        assert_eq!(decode_map(&enc).unwrap(), pairs);
    }

    #[test]
    fn empty_map_is_zero_bytes() {
        assert!(encode_map(&[]).is_empty());
        assert_eq!(encoded_map_size(std::iter::empty()), 0);
        assert!(decode_map(&[]).unwrap().is_empty());
        assert!(decode_map(&[0, 0, 0, 0]).unwrap().is_empty());
    }

    #[test]
    fn decode_rejects_inexact_input() {
        let enc = encode_map(&[(b"k", b"v")]);
        let mut extra = enc.clone();
        extra.push(0);
        assert!(matches!(
            decode_map(&extra),
            Err(MapDecodeError::Malformed(_))
        ));
        let mut no_nul = enc.clone();
        let last = no_nul.len() - 1;
        no_nul[last] = b'x';
        assert!(decode_map(&no_nul).is_err());
        assert!(decode_map(&enc[..enc.len() - 1]).is_err());
        assert!(decode_map(&[0]).is_err());
        let mut big_count = vec![0u8; 8];
        big_count[..4].copy_from_slice(&2000u32.to_le_bytes());
        assert_eq!(
            decode_map(&big_count),
            Err(MapDecodeError::TooManyPairs(2000))
        );
        // A huge declared length must not panic or over-read.
        let mut huge = vec![1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];
        huge.extend_from_slice(b"\0\0");
        assert!(decode_map(&huge).is_err());
    }

    #[test]
    fn action_and_enums() {
        assert_eq!(Action::from_raw(0), Action::Continue);
        assert_eq!(Action::from_raw(7), Action::Pause);
        assert_eq!(MapType::from_u32(6), Some(MapType::HttpCallResponseHeaders));
        assert_eq!(BufferType::from_u32(9), None);
    }
}
