//! Envoy filter state from a Wasm filter: the `set_envoy_filter_state` foreign
//! function (Envoy's source/extensions/common/wasm/foreign.cc), whose argument
//! is the protobuf message
//!
//! ```text
//! message SetEnvoyFilterStateArguments {
//!   string path = 1;    // the filter state key, e.g. envoy.tcp_proxy.cluster
//!   string value = 2;   // given to the key's registered ObjectFactory
//!   LifeSpan span = 3;  // FilterChain = 0, DownstreamRequest = 1, DownstreamConnection = 2
//! }
//! ```
//!
//! Encoded here by hand (three fields do not justify a protobuf dependency).
//! Envoy answers NOT_FOUND when no factory is registered for `path` and
//! BAD_ARGUMENT when the factory rejects `value`.

/// The foreign function's name.
pub const SET_ENVOY_FILTER_STATE: &str = "set_envoy_filter_state";

/// The key tcp_proxy reads for its per-connection cluster (Envoy's
/// `PerConnectionCluster`), when it connects upstream.
pub const TCP_PROXY_CLUSTER: &str = "envoy.tcp_proxy.cluster";

/// How long a filter state value lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifeSpan {
    FilterChain = 0,
    DownstreamRequest = 1,
    DownstreamConnection = 2,
}

/// The protobuf encoding of `SetEnvoyFilterStateArguments` (fields equal to
/// their proto3 default are left out, as protobuf encoders do).
pub fn encode_arguments(path: &str, value: &str, span: LifeSpan) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len() + value.len() + 8);
    put_bytes(&mut out, 1, path.as_bytes());
    put_bytes(&mut out, 2, value.as_bytes());
    if span != LifeSpan::FilterChain {
        put_varint(&mut out, 3 << 3); // field 3, wire type 0 (varint)
        put_varint(&mut out, span as u64);
    }
    out
}

/// A length-delimited field (wire type 2); empty ones are left out.
fn put_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    put_varint(out, (field << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_fields_use_their_protobuf_tags() {
        let encoded = encode_arguments("k", "vv", LifeSpan::DownstreamConnection);
        assert_eq!(
            encoded,
            [0x0a, 1, b'k', 0x12, 2, b'v', b'v', 0x18, 2],
            "path = 1 and value = 2 length-delimited, span = 3 a varint"
        );
    }

    #[test]
    fn defaults_are_left_out() {
        assert_eq!(
            encode_arguments("k", "", LifeSpan::FilterChain),
            [0x0a, 1, b'k']
        );
        assert_eq!(
            encode_arguments("", "", LifeSpan::DownstreamRequest),
            [0x18, 1]
        );
    }

    #[test]
    fn long_values_get_multi_byte_lengths() {
        let value = "c".repeat(300);
        let encoded = encode_arguments(TCP_PROXY_CLUSTER, &value, LifeSpan::FilterChain);
        let key = TCP_PROXY_CLUSTER.as_bytes();
        assert_eq!(encoded[..2], [0x0a, key.len() as u8]);
        let value_tag = 2 + key.len();
        // 300 = 0b10_0101100: low seven bits first with the continuation bit.
        assert_eq!(
            encoded[value_tag..value_tag + 3],
            [0x12, 0xac, 0x02],
            "{encoded:?}"
        );
        assert_eq!(encoded.len(), value_tag + 3 + 300);
    }
}
