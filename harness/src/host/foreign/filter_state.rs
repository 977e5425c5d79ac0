//! Envoy's registry of filter-state object factories
//! (`Registry::FactoryRegistry<StreamInfo::FilterState::ObjectFactory>`),
//! which `set_envoy_filter_state` looks its path up in. The names are those
//! Envoy registers and documents in "Well Known Filter State Objects"
//! (docs/root/configuration/advanced/well_known_filter_state.rst); each
//! factory's `createFromBytes` accepts what its constructor documents.

use std::net::{IpAddr, SocketAddr};

/// How one factory parses its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Any bytes (`StringAccessor`).
    Text,
    /// A comma-separated list (ALPN, SAN names): any bytes.
    List,
    /// A decimal `uint32` (`absl::SimpleAtoi`).
    Uint32,
    /// `true` or `false`.
    Bool,
    /// An IPv4 or IPv6 address.
    Ip,
    /// `IP:PORT` (`[v6]:PORT` for IPv6).
    IpPort,
}

const FACTORIES: &[(&str, Kind)] = &[
    ("envoy.string", Kind::Text),
    ("envoy.tcp_proxy.cluster", Kind::Text),
    ("envoy.udp_proxy.cluster", Kind::Text),
    ("envoy.network.upstream_server_name", Kind::Text),
    ("envoy.upstream.dynamic_host", Kind::Text),
    ("envoy.network.application_protocols", Kind::List),
    ("envoy.network.upstream_subject_alt_names", Kind::List),
    (
        "envoy.tcp_proxy.per_connection_idle_timeout_ms",
        Kind::Uint32,
    ),
    ("envoy.upstream.dynamic_port", Kind::Uint32),
    ("envoy.ratelimit.hits_addend", Kind::Uint32),
    ("envoy.tcp_proxy.disable_tunneling", Kind::Bool),
    ("envoy.network.ip", Kind::Ip),
    (
        "envoy.network.transport_socket.original_dst_address",
        Kind::IpPort,
    ),
    ("envoy.filters.listener.original_dst.local_ip", Kind::IpPort),
    (
        "envoy.filters.listener.original_dst.remote_ip",
        Kind::IpPort,
    ),
];

/// What a factory made of a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Created {
    /// The object, as its `serializeAsString` gives it back.
    Object(Vec<u8>),
    /// The factory refused the value (`createFromBytes` returned null).
    Refused,
    /// No factory of that name.
    UnknownFactory,
}

/// Runs the factory `name` over `value`.
pub(crate) fn create(name: &str, value: &str) -> Created {
    let Some(&(_, kind)) = FACTORIES.iter().find(|(n, _)| *n == name) else {
        return Created::UnknownFactory;
    };
    let serialized = match kind {
        Kind::Text | Kind::List => Some(value.to_owned()),
        Kind::Uint32 => simple_atoi_u32(value).map(|n| n.to_string()),
        Kind::Bool => matches!(value, "true" | "false").then(|| value.to_owned()),
        Kind::Ip => value.parse::<IpAddr>().ok().map(|ip| ip.to_string()),
        Kind::IpPort => value.parse::<SocketAddr>().ok().map(|a| a.to_string()),
    };
    serialized.map_or(Created::Refused, |s| Created::Object(s.into_bytes()))
}

/// `absl::SimpleAtoi` into a `uint32_t`: ASCII whitespace around, an
/// optional `+`, decimal digits, no overflow.
fn simple_atoi_u32(text: &str) -> Option<u32> {
    let digits = text.trim_ascii();
    let digits = digits.strip_prefix('+').unwrap_or(digits);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(s: &str) -> Created {
        Created::Object(s.as_bytes().to_vec())
    }

    #[test]
    fn each_kind_accepts_and_refuses_like_its_envoy_factory() {
        assert_eq!(
            create("envoy.tcp_proxy.cluster", "backend"),
            object("backend")
        );
        assert_eq!(create("envoy.string", ""), object(""));
        assert_eq!(
            create("envoy.network.application_protocols", "h2,http/1.1"),
            object("h2,http/1.1")
        );
        let idle = "envoy.tcp_proxy.per_connection_idle_timeout_ms";
        assert_eq!(create(idle, "1234"), object("1234"));
        assert_eq!(create(idle, " +42 "), object("42"));
        for bad in ["not_a_number", "", "-1", "4294967296", "1.5", "0x10"] {
            assert_eq!(create(idle, bad), Created::Refused, "{bad}");
        }
        let tunneling = "envoy.tcp_proxy.disable_tunneling";
        assert_eq!(create(tunneling, "true"), object("true"));
        assert_eq!(create(tunneling, "yes"), Created::Refused);
        assert_eq!(create("envoy.network.ip", "::1"), object("::1"));
        assert_eq!(create("envoy.network.ip", "10.0.0.1:80"), Created::Refused);
        let dst = "envoy.network.transport_socket.original_dst_address";
        assert_eq!(create(dst, "10.1.2.3:8000"), object("10.1.2.3:8000"));
        assert_eq!(create(dst, "[::1]:80"), object("[::1]:80"));
        assert_eq!(create(dst, "10.1.2.3"), Created::Refused);
        assert_eq!(create("envoy.no_such_object", "x"), Created::UnknownFactory);
    }
}
