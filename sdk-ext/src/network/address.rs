//! Envoy's address properties (`source.address`, `destination.address`,
//! `upstream.address`) are text: `ip:port` for IPv4, `[ip]:port` for IPv6.

use std::net::{IpAddr, SocketAddr};

/// The IP of an address property (`10.0.0.1:5000`, `[::1]:443`, or a bare
/// IP); `None` for anything else (a pipe path, an empty value).
pub fn ip_of(address: &str) -> Option<IpAddr> {
    if let Ok(socket) = address.parse::<SocketAddr>() {
        return Some(socket.ip());
    }
    let bare = address
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(address);
    bare.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_families_with_and_without_ports() {
        assert_eq!(ip_of("10.1.2.3:5000"), "10.1.2.3".parse().ok());
        assert_eq!(ip_of("[2001:db8::1]:443"), "2001:db8::1".parse().ok());
        assert_eq!(ip_of("192.168.0.1"), "192.168.0.1".parse().ok());
        assert_eq!(ip_of("::1"), "::1".parse().ok());
        assert_eq!(ip_of("[::1]"), "::1".parse().ok());
    }

    #[test]
    fn other_text_is_not_an_ip() {
        assert_eq!(ip_of(""), None);
        assert_eq!(ip_of("/tmp/envoy.sock"), None);
        assert_eq!(ip_of("example.com:80"), None);
        assert_eq!(ip_of("10.0.0.1:99999"), None);
    }
}
