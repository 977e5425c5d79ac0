//! IPv4 and IPv6 CIDR blocks (`10.0.0.0/8`, `2001:db8::/32`, or a bare
//! address for a single host).

use std::net::IpAddr;

/// One block: a network address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `addr/len` or a bare address. Host bits set past the prefix
    /// (`10.1.2.3/8`) are refused: they usually mean a typo in the length.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address
            .trim()
            .parse()
            .map_err(|_| format!("`{address}` is not an IPv4 or IPv6 address"))?;
        let max = max_prefix(network);
        let prefix = match prefix {
            None => max,
            Some(digits) => digits
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("prefix length `{digits}` must be 0 to {max}"))?,
        };
        let cidr = Cidr { network, prefix };
        if bits(network) & !mask(max, prefix) != 0 {
            let lowest = from_bits(network, bits(network) & mask(max, prefix));
            return Err(format!(
                "`{text}` has host bits set past /{prefix}; the block starts at {lowest}/{prefix}"
            ));
        }
        Ok(cidr)
    }

    /// True when `ip` is inside the block (IPv4 blocks never hold IPv6
    /// addresses, nor the reverse; IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if ip.is_ipv4() != self.network.is_ipv4() {
            return false;
        }
        let mask = mask(max_prefix(ip), self.prefix);
        bits(ip) & mask == bits(self.network) & mask
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

fn max_prefix(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

/// The address as the low `max_prefix` bits of a u128.
fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_bits(like: IpAddr, value: u128) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4((value as u32).into()),
        IpAddr::V6(_) => IpAddr::V6(value.into()),
    }
}

/// The top `prefix` of `width` bits set.
fn mask(width: u8, prefix: u8) -> u128 {
    let all = if width == 128 {
        u128::MAX
    } else {
        (1u128 << width) - 1
    };
    if prefix == 0 {
        0
    } else {
        all & !((1u128 << (width - prefix)) - 1)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ipv4_blocks_hold_their_range_only() {
        let block = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(block.contains(ip("10.0.0.0")));
        assert!(block.contains(ip("10.255.255.255")));
        assert!(!block.contains(ip("11.0.0.0")));
        assert!(!block.contains(ip("9.255.255.255")));
        let odd = Cidr::parse("192.168.1.128/25").unwrap();
        assert!(odd.contains(ip("192.168.1.200")));
        assert!(!odd.contains(ip("192.168.1.127")));
    }

    #[test]
    fn ipv6_blocks_and_mapped_addresses() {
        let block = Cidr::parse("2001:db8::/32").unwrap();
        assert!(block.contains(ip("2001:db8:ffff::1")));
        assert!(!block.contains(ip("2001:db9::1")));
        assert!(!block.contains(ip("10.0.0.1")), "families never mix");
        let v4 = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(v4.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped is IPv4");
        assert!(!v4.contains(ip("2001:db8::1")));
    }

    #[test]
    fn bare_addresses_zero_and_full_prefixes() {
        let host = Cidr::parse("203.0.113.9").unwrap();
        assert_eq!(host.to_string(), "203.0.113.9/32");
        assert!(host.contains(ip("203.0.113.9")));
        assert!(!host.contains(ip("203.0.113.8")));
        let everything = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(everything.contains(ip("255.255.255.255")));
        let all_v6 = Cidr::parse("::/0").unwrap();
        assert!(all_v6.contains(ip("2001:db8::1")));
        assert!(!all_v6.contains(ip("1.2.3.4")));
        let one = Cidr::parse("2001:db8::1/128").unwrap();
        assert!(one.contains(ip("2001:db8::1")));
        assert!(!one.contains(ip("2001:db8::2")));
    }

    #[test]
    fn mistakes_are_explained() {
        let err = Cidr::parse("10.1.2.3/8").unwrap_err();
        assert!(err.contains("10.0.0.0/8"), "{err}");
        let err = Cidr::parse("2001:db8::1/32").unwrap_err();
        assert!(err.contains("2001:db8::/32"), "{err}");
        assert!(Cidr::parse("10.0.0.0/33").unwrap_err().contains("0 to 32"));
        assert!(Cidr::parse("::/129").unwrap_err().contains("0 to 128"));
        assert!(Cidr::parse("10.0.0/8").unwrap_err().contains("not an IPv4"));
        assert!(Cidr::parse("10.0.0.0/x").is_err());
        assert!(Cidr::parse("").is_err());
    }
}
