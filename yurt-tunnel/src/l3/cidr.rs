//! Small address types the L3 planner works in: [`Cidr`] (an IPv4 or IPv6 network in
//! `address/prefix` form, as Kubernetes writes `spec.podCIDR`) and [`Mac`] (a link-layer
//! address for VXLAN forwarding entries). Both order totally, so plans sort deterministically.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IP network: an address with its host bits cleared and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why a string is not a [`Cidr`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// No `/` between address and prefix length.
    #[error("invalid CIDR address: {0}")]
    MissingPrefix(String),
    /// The address part is not an IP address.
    #[error("invalid CIDR address: {0}")]
    BadAddress(String),
    /// The prefix length is not a number within the address family's width.
    #[error("invalid CIDR address: {0}")]
    BadPrefix(String),
}

impl Cidr {
    /// The network of `addr` with `prefix` leading bits (host bits are cleared, as Go's
    /// `net.ParseCIDR` does). `None` when `prefix` exceeds the address width.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let addr = match addr {
            IpAddr::V4(a) if prefix <= 32 => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) if prefix <= 128 => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
            _ => return None,
        };
        Some(Self { addr, prefix })
    }

    /// The network address (host bits zero).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` lies inside this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        Cidr::new(ip, self.prefix).is_some_and(|n| n.addr == self.addr)
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| CidrError::MissingPrefix(s.to_owned()))?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| CidrError::BadAddress(s.to_owned()))?;
        // Digits only: `u8::from_str` would also take a leading `+`.
        if prefix.is_empty() || prefix.len() > 3 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CidrError::BadPrefix(s.to_owned()));
        }
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| CidrError::BadPrefix(s.to_owned()))?;
        Cidr::new(addr, prefix).ok_or_else(|| CidrError::BadPrefix(s.to_owned()))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A 48-bit link-layer address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        let c: Cidr = "10.244.1.7/24".parse().unwrap();
        assert_eq!(c.to_string(), "10.244.1.0/24");
        assert!(c.contains("10.244.1.200".parse().unwrap()));
        assert!(!c.contains("10.244.2.1".parse().unwrap()));
        let c: Cidr = "fd00::1/64".parse().unwrap();
        assert_eq!(c.to_string(), "fd00::/64");
        assert_eq!("0.0.0.0/0".parse::<Cidr>().unwrap().prefix(), 0);
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0.0/+8",
            "x/8",
            "10.0.0.0/",
            "::/129",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn mac_formats() {
        assert_eq!(
            Mac([0xaa, 0x0f, 240, 1, 2, 3]).to_string(),
            "aa:0f:f0:01:02:03"
        );
    }
}
