//! Client addresses: CIDR networks from the policy's `from` key, and the client address
//! taken from `SSH_CONNECTION` (set by sshd, not overridable by the user).
#![forbid(unsafe_code)]

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IP network, `addr/prefix` (a plain address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && !p.starts_with('+') => n,
                _ => return Err(format!("{s:?} has a bad prefix length (0..={max})")),
            },
        };
        let cidr = Cidr { addr, prefix };
        if cidr.network_bits(addr) != bits(addr) {
            return Err(format!("{s:?} has host bits set"));
        }
        Ok(cidr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

impl Cidr {
    fn network_bits(&self, addr: IpAddr) -> u128 {
        let width = if addr.is_ipv4() { 32 } else { 128 };
        let host_bits = width - u32::from(self.prefix);
        if host_bits >= 128 {
            0
        } else {
            (bits(addr) >> host_bits) << host_bits
        }
    }

    /// Does `client` lie in this network? IPv4-mapped IPv6 addresses count as IPv4.
    pub fn contains(&self, client: IpAddr) -> bool {
        let client = client.to_canonical();
        if client.is_ipv4() != self.addr.is_ipv4() {
            return false;
        }
        self.network_bits(client) == bits(self.addr)
    }
}

/// The client address from `SSH_CONNECTION` ("client_ip client_port server_ip server_port").
pub fn client_from_ssh_connection(value: Option<&str>) -> Option<IpAddr> {
    let first = value?.split(' ').next()?;
    // Strip an IPv6 zone id ("fe80::1%eth0"): zones never match a configured network.
    first.split('%').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("10.0.0.0/8", "10.1.2.3", true)]
    #[case("10.0.0.0/8", "11.0.0.1", false)]
    #[case("192.168.1.7", "192.168.1.7", true)]
    #[case("192.168.1.7", "192.168.1.8", false)]
    #[case("0.0.0.0/0", "203.0.113.9", true)]
    #[case("2001:db8::/32", "2001:db8::1", true)]
    #[case("2001:db8::/32", "2001:db9::1", false)]
    #[case("127.0.0.0/8", "::ffff:127.0.0.1", true)]
    #[case("::/0", "127.0.0.1", false)]
    fn cidr_matching(#[case] net: &str, #[case] client: &str, #[case] inside: bool) {
        let net: Cidr = net.parse().unwrap();
        assert_eq!(net.contains(client.parse().unwrap()), inside);
    }

    #[rstest]
    #[case("10.0.0.1/8")]
    #[case("10.0.0.0/33")]
    #[case("10.0.0.0/+8")]
    #[case("example.org")]
    #[case("")]
    fn bad_networks_are_rejected(#[case] net: &str) {
        assert!(net.parse::<Cidr>().is_err());
    }

    #[test]
    fn ssh_connection_parsing() {
        assert_eq!(
            client_from_ssh_connection(Some("127.0.0.1 50000 127.0.0.1 22")),
            Some("127.0.0.1".parse().unwrap())
        );
        assert_eq!(client_from_ssh_connection(Some("garbage")), None);
        assert_eq!(client_from_ssh_connection(None), None);
    }
}
