//! Address helpers: protocols, address folding as IPVS does it, persistence masks.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address stored as a connection entry and a [`Flow`](crate::packet::Flow) store it
/// (16 bytes; IPv4 in the first four), back as an `IpAddr`.
#[inline]
pub fn ip_of(v6: bool, a: &[u8; 16]) -> IpAddr {
    if v6 {
        IpAddr::from(*a)
    } else {
        IpAddr::from([a[0], a[1], a[2], a[3]])
    }
}

/// An address as a connection entry and a [`Flow`](crate::packet::Flow) store it: 16 bytes,
/// an IPv4 address in the first four and the rest zero.
#[inline]
pub fn addr_bytes(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(a) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.octets());
            b
        }
        IpAddr::V6(a) => a.octets(),
    }
}

/// A transport protocol lb-core balances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
}

impl Protocol {
    /// The IP protocol number (6 or 17).
    pub const fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }

    /// The protocol for an IP protocol number, if lb-core balances it.
    pub const fn from_number(n: u8) -> Option<Protocol> {
        match n {
            6 => Some(Protocol::Tcp),
            17 => Some(Protocol::Udp),
            _ => None,
        }
    }

    /// `TCP` or `UDP`, as `ipvsadm -L` prints it.
    pub const fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }
}

/// The "folded" address IPVS's hash schedulers key on, in host order: the IPv4 address, or the
/// XOR of an IPv6 address's four 32-bit words.
pub fn fold(addr: IpAddr) -> u32 {
    match addr {
        IpAddr::V4(a) => u32::from_be_bytes(a.octets()),
        IpAddr::V6(a) => {
            let o = a.octets();
            let mut x = 0u32;
            for w in o.chunks_exact(4) {
                x ^= u32::from_be_bytes([w[0], w[1], w[2], w[3]]);
            }
            x
        }
    }
}

/// `addr` with all but its first `prefix` bits cleared (persistence netmask, `-M`).
/// A prefix longer than the address keeps it whole.
pub fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let p = u32::from(prefix.min(32));
            let m = if p == 0 { 0 } else { u32::MAX << (32 - p) };
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
        }
        IpAddr::V6(a) => {
            let p = u32::from(prefix.min(128));
            let m = if p == 0 { 0 } else { u128::MAX << (128 - p) };
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
        }
    }
}

/// The prefix length of a dotted IPv4 netmask (`255.255.255.0` → 24), if it is contiguous.
pub fn netmask_prefix(mask: Ipv4Addr) -> Option<u8> {
    let m = u32::from(mask);
    let ones = m.leading_ones();
    if m.checked_shl(ones).unwrap_or(0) == 0 {
        Some(ones as u8)
    } else {
        None
    }
}

/// The dotted IPv4 netmask of a prefix length (24 → `255.255.255.0`).
pub fn prefix_netmask(prefix: u8) -> Ipv4Addr {
    let p = u32::from(prefix.min(32));
    Ipv4Addr::from(if p == 0 { 0 } else { u32::MAX << (32 - p) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_v4_is_host_order() {
        assert_eq!(fold("10.0.0.1".parse().unwrap()), 0x0a00_0001);
    }

    #[test]
    fn fold_v6_xors_words() {
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(fold(a), 0x2001_0db8 ^ 1);
    }

    #[test]
    fn masks() {
        assert_eq!(
            mask("10.1.2.3".parse().unwrap(), 24),
            "10.1.2.0".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            mask("2001:db8::1".parse().unwrap(), 64),
            "2001:db8::".parse::<IpAddr>().unwrap()
        );
        assert_eq!(netmask_prefix("255.255.255.0".parse().unwrap()), Some(24));
        assert_eq!(netmask_prefix("255.0.255.0".parse().unwrap()), None);
        assert_eq!(prefix_netmask(32), Ipv4Addr::new(255, 255, 255, 255));
        assert_eq!(netmask_prefix(prefix_netmask(0)), Some(0));
    }
}
