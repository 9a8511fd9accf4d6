//! Where a node is reached: an IP address or a DNS host name, alone ([`Host`]) or with a port
//! ([`HostPort`]). A name is resolved by whoever connects, each time it connects, so a
//! machine that changes its address keeps its name in every config.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use multiaddr::{Multiaddr, Protocol};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest host name DNS carries, without a trailing dot.
const MAX_NAME: usize = 253;
/// The longest label of a host name.
const MAX_LABEL: usize = 63;

/// An IP address or a DNS host name (lower case, no trailing dot).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Host {
    /// An address, v4 or v6 (a v4-mapped v6 address is kept as its v4 address).
    Ip(IpAddr),
    /// A host name: dot-separated labels of letters, digits and hyphens.
    Name(String),
}

impl Host {
    /// 127.0.0.1.
    pub const LOCALHOST: Host = Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST));

    /// Whether connections to it stay on this machine: a loopback address, or `localhost`
    /// (which the system's resolver answers from `/etc/hosts`; a name under `.localhost` is
    /// not promised to).
    #[must_use]
    pub fn is_loopback(&self) -> bool {
        match self {
            Host::Ip(ip) => ip.is_loopback(),
            Host::Name(name) => name == "localhost",
        }
    }

    /// Where it is the same place as another host: `localhost` is 127.0.0.1 (two nodes reached
    /// at `localhost:P` and `127.0.0.1:P` would listen on one port).
    #[must_use]
    pub fn place(&self) -> Host {
        match self {
            Host::Name(name) if name == "localhost" => Host::LOCALHOST,
            other => other.clone(),
        }
    }

    /// Its address, if it is one that reaches no machine: unspecified (`0.0.0.0`, `::`),
    /// multicast or the v4 broadcast address. Listening there is possible; being reached is not.
    #[must_use]
    pub fn nowhere(&self) -> Option<IpAddr> {
        let ip = self.ip()?;
        let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
        (ip.is_unspecified() || ip.is_multicast() || broadcast).then_some(ip)
    }

    /// Why a node reached here cannot listen on `bind`, if it cannot: nothing listens on a
    /// multicast or broadcast address; a node reached at an address listens on it or on every
    /// interface (`0.0.0.0` or `::`, whatever the address's family: behind NAT or in a
    /// container, a public IPv6 address may well be forwarded to an IPv4 listener); one reached
    /// at `localhost` listens where that name is, 127.0.0.1 or ::1 (or every interface). A node
    /// reached by another name may listen anywhere: where the name leads is not known here.
    /// Inventories (`bind`) and node configs (`listen.raft` against the member's `raft_addr`)
    /// are held to the same rules.
    #[must_use]
    pub fn bind_misfit(&self, bind: IpAddr) -> Option<String> {
        let bind = bind.to_canonical();
        let broadcast = matches!(bind, IpAddr::V4(v4) if v4.is_broadcast());
        if bind.is_multicast() || broadcast {
            return Some(format!(
                "{bind} is a multicast or broadcast address, which nothing listens on; name the \
                 machine's own address, or 0.0.0.0 (or ::) for all of them"
            ));
        }
        match self {
            _ if bind.is_unspecified() => None,
            Host::Ip(ip) if bind != *ip => Some(format!(
                "{bind} is not {ip}, the node's host: a node reached at an address listens on it \
                 or on every interface (0.0.0.0 or ::); name the host by its DNS name to listen \
                 on another address"
            )),
            Host::Name(_)
                if self.is_loopback()
                    && bind != IpAddr::V4(Ipv4Addr::LOCALHOST)
                    && bind != IpAddr::V6(Ipv6Addr::LOCALHOST) =>
            {
                Some(format!(
                    "{bind} is not where localhost is (127.0.0.1 or ::1): the others would not \
                     reach the node there"
                ))
            }
            _ => None,
        }
    }

    /// Its address, if it is one.
    #[must_use]
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::Ip(ip) => Some(*ip),
            Host::Name(_) => None,
        }
    }

    /// Its libp2p address at TCP `port`: `/ip4/…`, `/ip6/…` or `/dns/…/tcp/port`.
    #[must_use]
    pub fn multiaddr(&self, port: u16) -> Multiaddr {
        let host = match self {
            Host::Ip(ip) => Multiaddr::from(*ip),
            Host::Name(name) => Multiaddr::empty().with(Protocol::Dns(name.clone().into())),
        };
        host.with(Protocol::Tcp(port))
    }

    /// It with `port`.
    #[must_use]
    pub fn with_port(&self, port: u16) -> HostPort {
        HostPort {
            host: self.clone(),
            port,
        }
    }
}

impl From<IpAddr> for Host {
    fn from(ip: IpAddr) -> Self {
        Host::Ip(ip.to_canonical())
    }
}

/// Why text is not a host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is neither an IP address nor a host name; expected e.g. 10.20.0.11 or \
     xc-municipal-1.example.cn (letters, digits and hyphens in dot-separated labels of at most \
     63 characters, 253 in all, the last not starting with a digit)"
)]
pub struct HostError(pub String);

/// At most the first 80 characters of `text`, for an error that quotes what it refused.
fn quoted(text: &str) -> String {
    match text.char_indices().nth(80) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

impl FromStr for Host {
    type Err = HostError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || HostError(quoted(text));
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Host::from(ip));
        }
        // Brackets hold a v6 address, and only that.
        if let Some(v6) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            return match v6.parse::<IpAddr>() {
                Ok(ip @ IpAddr::V6(_)) => Ok(Host::from(ip)),
                _ => Err(bad()),
            };
        }
        if text.is_empty() || text.len() > MAX_NAME {
            return Err(bad());
        }
        let label_ok = |label: &str| {
            (1..=MAX_LABEL).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        };
        let labels: Vec<&str> = text.split('.').collect();
        // A last label starting with a digit is a mistyped address (10.20.0.300) or one in a
        // form resolvers read as a number (0x7f000001), never a name under a real top level.
        let last_numeric = labels
            .last()
            .is_some_and(|l| l.bytes().next().is_some_and(|b| b.is_ascii_digit()));
        if !labels.iter().all(|l| label_ok(l)) || last_numeric {
            return Err(bad());
        }
        Ok(Host::Name(text.to_ascii_lowercase()))
    }
}

impl fmt::Display for Host {
    /// An address bare (`::1`, not `[::1]`), a name as it is.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(ip) => ip.fmt(f),
            Host::Name(name) => f.write_str(name),
        }
    }
}

impl Serialize for Host {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Host {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A host and a TCP port: `10.20.0.11:7101`, `[fd00::11]:7101`, `xc-1.example.cn:7101`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostPort {
    /// The host.
    pub host: Host,
    /// The port, 1 to 65535.
    pub port: u16,
}

/// Why text is not `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not host:port; expected an IP address or host name and a port from 1 to 65535, \
     e.g. 10.20.0.11:7101, [fd00::11]:7101 or xc-municipal-1.example.cn:7101"
)]
pub struct HostPortError(pub String);

impl FromStr for HostPort {
    type Err = HostPortError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || HostPortError(quoted(text));
        let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
        // A v6 address takes brackets, or its colons would be read as the port's.
        let bracketed = host.starts_with('[') && host.ends_with(']');
        if host.contains(':') && !bracketed {
            return Err(bad());
        }
        // Written as it prints: no sign, no leading zero.
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p: &u16| *p != 0 && p.to_string() == port)
            .ok_or_else(bad)?;
        let host: Host = host.parse().map_err(|_| bad())?;
        Ok(HostPort { host, port })
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            host => write!(f, "{host}:{}", self.port),
        }
    }
}

impl From<std::net::SocketAddr> for HostPort {
    fn from(addr: std::net::SocketAddr) -> Self {
        HostPort {
            host: Host::from(addr.ip()),
            port: addr.port(),
        }
    }
}

impl Serialize for HostPort {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HostPort {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_names_are_hosts() {
        assert_eq!(
            "10.20.0.11".parse::<Host>().expect("parses"),
            Host::Ip("10.20.0.11".parse().expect("parses"))
        );
        assert_eq!(
            "[fd00::11]".parse::<Host>().expect("parses"),
            Host::Ip("fd00::11".parse().expect("parses"))
        );
        assert_eq!(
            "::ffff:10.0.0.1".parse::<Host>().expect("parses"),
            Host::Ip("10.0.0.1".parse().expect("parses")),
            "one address, one host"
        );
        assert_eq!(
            "XC-Municipal-1.Example.CN".parse::<Host>().expect("parses"),
            Host::Name("xc-municipal-1.example.cn".into())
        );
        assert_eq!(
            "localhost".parse::<Host>().expect("parses").to_string(),
            "localhost"
        );
        assert!("localhost".parse::<Host>().expect("parses").is_loopback());
        assert!(
            !"db.example.cn"
                .parse::<Host>()
                .expect("parses")
                .is_loopback()
        );
        assert!(
            !"xc.localhost"
                .parse::<Host>()
                .expect("parses")
                .is_loopback(),
            "only localhost itself is promised to be this machine"
        );
        assert_eq!(
            "localhost".parse::<Host>().expect("parses").place(),
            Host::LOCALHOST
        );
        let long = "x".repeat(1 << 20);
        let err = long.parse::<HostPort>().expect_err("too long").to_string();
        assert!(
            err.len() < 400,
            "the error quotes a bounded part: {}",
            err.len()
        );
    }

    #[test]
    fn what_is_no_host_is_refused() {
        let long_label = "a".repeat(64);
        let long_name = ["abcdefghi"; 26].join(".");
        for text in [
            "",
            "10.20.0.300",
            "-xc.example.cn",
            "xc-.example.cn",
            "xc..example.cn",
            "xc.example.cn.",
            "xc_1.example.cn",
            "xc 1",
            "例子.cn",
            "http://xc.example.cn",
            "[xc.example.cn]",
            "[10.0.0.1]",
            "0x7f000001",
            "xc.example.1cn",
            &long_label,
            &long_name,
        ] {
            assert!(text.parse::<Host>().is_err(), "{text:?}");
        }
    }

    #[test]
    fn host_ports_read_and_print_the_same() {
        for text in [
            "10.20.0.11:7101",
            "[fd00::11]:7101",
            "xc-municipal-1.example.cn:7101",
            "localhost:65535",
        ] {
            let parsed: HostPort = text.parse().expect("parses");
            assert_eq!(parsed.to_string(), text);
            let json = serde_json::to_string(&parsed).expect("parses");
            assert_eq!(
                serde_json::from_str::<HostPort>(&json).expect("parses"),
                parsed
            );
        }
        for text in [
            "10.20.0.11",
            "fd00::11:7101",
            "xc.example.cn:0",
            "xc.example.cn:65536",
            "xc.example.cn:+80",
            "xc.example.cn:07101",
            "[10.0.0.1]:7101",
            ":7101",
            "xc.example.cn:",
        ] {
            assert!(text.parse::<HostPort>().is_err(), "{text:?}");
        }
    }

    #[test]
    fn a_name_dials_as_dns() {
        let name: Host = "xc.example.cn".parse().expect("parses");
        assert_eq!(
            name.multiaddr(7102).to_string(),
            "/dns/xc.example.cn/tcp/7102"
        );
        assert_eq!(
            Host::LOCALHOST.multiaddr(7102).to_string(),
            "/ip4/127.0.0.1/tcp/7102"
        );
    }
}
