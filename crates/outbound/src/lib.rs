//! Outbound HTTP to URLs people configure — an OIDC issuer's keys today; webhooks,
//! health checks, registries and git remotes as deploy targets arrive — behind a guard
//! against server-side request forgery: a configured URL must not become a way to
//! reach the loopback interface, the private network Gantry runs in, or a cloud
//! metadata service.
//!
//! The guard sits in the resolver of the HTTP agent ([`agent`]): every address a host
//! name resolves to is checked when the connection is made, so a name that resolves
//! to a public address when configured and to a private one later (DNS rebinding) is
//! still refused. Addresses in the refused ranges pass only when an operator
//! allow-lists them ([`Policy`]). The agent follows no redirects and uses no proxy,
//! both of which would connect somewhere the guard never saw.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// A network written as `ADDRESS` or `ADDRESS/PREFIX` (IPv4 or IPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    address: IpAddr,
    prefix: u8,
}

/// Why a network could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an address or a network (write 10.0.0.0/8, 127.0.0.1 or fd00::/8)")]
pub struct InvalidNetwork(String);

impl Network {
    pub fn parse(text: &str) -> Result<Network, InvalidNetwork> {
        let invalid = || InvalidNetwork(text.to_owned());
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address: IpAddr = address.trim().parse().map_err(|_| invalid())?;
        let bits = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(prefix) => prefix.trim().parse::<u8>().map_err(|_| invalid())?,
        };
        if prefix > bits {
            return Err(invalid());
        }
        Ok(Network { address, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.address, canonical(ip)) {
            (IpAddr::V4(network), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(network) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(network) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

/// An IPv4 address written as IPv6 (`::ffff:10.0.0.1`) is judged as the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The range an address falls in that outbound requests may not reach unless
/// allow-listed; `None` for a public address.
pub fn restricted_range(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => restricted_v4(v4),
        IpAddr::V6(v6) => restricted_v6(v6),
    }
}

fn restricted_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_unspecified() || a == 0 => "this network (0.0.0.0/8)",
        (127, ..) => "loopback (127.0.0.0/8)",
        (10, ..) => "private (10.0.0.0/8)",
        (172, 16..=31, _) => "private (172.16.0.0/12)",
        (192, 168, _) => "private (192.168.0.0/16)",
        (169, 254, _) => "link-local and cloud metadata (169.254.0.0/16)",
        (100, 64..=127, _) => "shared address space (100.64.0.0/10)",
        (192, 0, 0) => "IETF protocol assignments (192.0.0.0/24)",
        (198, 18..=19, _) => "benchmarking (198.18.0.0/15)",
        (224..=239, ..) => "multicast (224.0.0.0/4)",
        (240..=255, ..) => "reserved and broadcast (240.0.0.0/4)",
        _ => return None,
    })
}

fn restricted_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    Some(match first {
        _ if ip.is_unspecified() => "unspecified (::)",
        _ if ip.is_loopback() => "loopback (::1)",
        0xfc00..=0xfdff => "unique local (fc00::/7)",
        0xfe80..=0xfebf => "link-local (fe80::/10)",
        0xff00..=0xffff => "multicast (ff00::/8)",
        // NAT64 and 6to4 embed IPv4 addresses that could be private.
        0x0064 if ip.segments()[1] == 0xff9b => "NAT64 (64:ff9b::/96)",
        0x2002 => "6to4 (2002::/16)",
        _ => return None,
    })
}

/// Which restricted addresses outbound requests may reach anyway.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    allow: Vec<Network>,
}

/// Why an outbound request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{address} is {range}: outbound requests may not reach it unless `outbound.allow` lists it"
)]
pub struct Refused {
    pub address: IpAddr,
    pub range: &'static str,
}

impl Policy {
    /// A policy allowing the restricted addresses in `allow` (and every public one).
    pub fn new(allow: Vec<Network>) -> Policy {
        Policy { allow }
    }

    /// A policy refusing nothing: for a command-line client, where the person running
    /// it names the addresses (the guard protects servers from their users' URLs).
    pub fn unrestricted() -> Policy {
        let everything = ["0.0.0.0/0", "::/0"]
            .into_iter()
            .filter_map(|network| Network::parse(network).ok())
            .collect();
        Policy::new(everything)
    }

    /// Reads `allow` as written in configuration.
    pub fn parse(allow: &[String]) -> Result<Policy, InvalidNetwork> {
        allow
            .iter()
            .map(|text| Network::parse(text))
            .collect::<Result<Vec<_>, _>>()
            .map(Policy::new)
    }

    /// Whether a request may connect to `ip`.
    pub fn check(&self, ip: IpAddr) -> Result<(), Refused> {
        match restricted_range(ip) {
            Some(range) if !self.allow.iter().any(|network| network.contains(ip)) => {
                Err(Refused { address: ip, range })
            }
            _ => Ok(()),
        }
    }
}

/// Resolves as usual, then keeps only the addresses the policy allows.
#[derive(Debug)]
struct GuardedResolver {
    policy: Arc<Policy>,
    inner: DefaultResolver,
}

impl Resolver for GuardedResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let resolved = self.inner.resolve(uri, config, timeout)?;
        let mut allowed = self.empty();
        let mut refused = None;
        for address in resolved.iter() {
            match self.policy.check(address.ip()) {
                Ok(()) => allowed.push(*address),
                Err(reason) => refused = Some(reason),
            }
        }
        match (allowed.is_empty(), refused) {
            (true, Some(reason)) => Err(ureq::Error::Io(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                reason.to_string(),
            ))),
            _ => Ok(allowed),
        }
    }
}

/// An HTTP agent whose every connection is checked against `policy`: no redirects, no
/// proxy, answers of any status returned to the caller, `timeout` for the whole call.
pub fn agent(policy: Arc<Policy>, timeout: Duration) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .max_redirects(0)
        .proxy(None)
        .http_status_as_error(false)
        .build();
    ureq::Agent::with_parts(
        config,
        ureq::unversioned::transport::DefaultConnector::default(),
        GuardedResolver {
            policy,
            inner: DefaultResolver::default(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn the_unrestricted_policy_refuses_nothing() {
        let policy = Policy::unrestricted();
        for ip in [
            "127.0.0.1",
            "169.254.169.254",
            "10.0.0.1",
            "::1",
            "fd00::1",
            "8.8.8.8",
        ] {
            let ip: IpAddr = ip.parse().expect("an address");
            assert_eq!(policy.check(ip), Ok(()), "{ip}");
        }
    }

    #[test]
    fn private_loopback_link_local_and_metadata_addresses_are_restricted() {
        for restricted in [
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.100.100.200",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:1",
            "2002:a00:1::",
        ] {
            assert!(restricted_range(ip(restricted)).is_some(), "{restricted}");
        }
        for public in [
            "1.1.1.1",
            "140.82.112.3",
            "172.32.0.1",
            "192.169.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(restricted_range(ip(public)), None, "{public}");
        }
    }

    #[test]
    fn allow_listed_networks_open_exactly_their_addresses() {
        let policy = Policy::parse(&["127.0.0.1".to_owned(), "10.20.0.0/16".to_owned()])
            .expect("valid networks");
        assert_eq!(policy.check(ip("127.0.0.1")), Ok(()));
        assert_eq!(policy.check(ip("::ffff:127.0.0.1")), Ok(()));
        assert!(policy.check(ip("127.0.0.2")).is_err());
        assert_eq!(policy.check(ip("10.20.255.1")), Ok(()));
        assert!(policy.check(ip("10.21.0.1")).is_err());
        assert!(policy.check(ip("169.254.169.254")).is_err());
        assert_eq!(policy.check(ip("1.1.1.1")), Ok(()));
        let refused = Policy::default()
            .check(ip("169.254.169.254"))
            .expect_err("metadata is refused");
        assert!(refused.to_string().contains("outbound.allow"), "{refused}");
        for bad in ["", "10.0.0.0/33", "::/129", "example.com", "10.0.0.0/x"] {
            assert!(Network::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Network::parse("::/0")
                .expect("every IPv6 address")
                .to_string(),
            "::/0"
        );
        assert!(
            Network::parse("0.0.0.0/0")
                .expect("all")
                .contains(ip("8.8.8.8"))
        );
    }

    #[test]
    fn the_agent_refuses_to_connect_to_a_restricted_address_and_reaches_an_allowed_one() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("address"));
        let server = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let (mut stream, _) = listener.accept().expect("one connection");
            let mut buffer = [0u8; 1024];
            let _ = stream.read(&mut buffer);
            stream
                .write_all(
                    b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .expect("answer");
        });
        let guarded = agent(Arc::new(Policy::default()), Duration::from_secs(5));
        let error = guarded.get(&url).call().expect_err("loopback is refused");
        assert!(error.to_string().contains("loopback"), "{error}");
        let allowed = agent(
            Arc::new(Policy::parse(&["127.0.0.1".to_owned()]).expect("valid")),
            Duration::from_secs(5),
        );
        let response = allowed.get(&url).call().expect("allow-listed loopback");
        assert_eq!(response.status(), 204);
        server.join().expect("the server answered");
    }
}
