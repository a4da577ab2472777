//! What the verifier believes from a proxy: the original method (from one configured header) and
//! the client address (from `X-Forwarded-For`/`X-Real-IP`, only when the TCP peer is a trusted
//! proxy, as nginx's `real_ip` module and Envoy's `xff_num_trusted_hops` do).

use std::net::IpAddr;
use std::str::FromStr;

use http::{HeaderMap, HeaderName};
use ipnet::IpNet;

/// A network of trusted proxies: `10.0.0.0/8`, `fd00::/8`, or one address (`127.0.0.1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProxyNetwork(IpNet);

/// A `--trusted-proxies` entry that is neither an address nor a CIDR network.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not an IP address or CIDR network (like 10.0.0.0/8)")]
pub struct InvalidNetwork(String);

impl FromStr for ProxyNetwork {
    type Err = InvalidNetwork;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        text.parse::<IpNet>()
            .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
            .map(|net| ProxyNetwork(net.trunc()))
            .map_err(|_| InvalidNetwork(text.to_owned()))
    }
}

impl std::fmt::Display for ProxyNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Which request headers come from a proxy the verifier trusts.
#[derive(Clone, Debug, Default)]
pub struct Forwarding {
    /// The header carrying the original method (`X-Original-Method` for nginx,
    /// `X-Forwarded-Method` for Caddy and Traefik); `None` uses the request's own method.
    pub method_header: Option<HeaderName>,
    /// Peers whose `X-Forwarded-For`/`X-Real-IP` are believed.
    pub trusted_proxies: Vec<ProxyNetwork>,
}

impl Forwarding {
    /// The original method: the configured header's value when present, else `own`.
    pub fn method<'a>(&self, headers: &'a HeaderMap, own: &'a str) -> &'a str {
        self.method_header
            .as_ref()
            .and_then(|name| headers.get(name)?.to_str().ok())
            .map_or(own, str::trim)
    }

    /// Whether `address` is one of the trusted proxies.
    pub fn is_trusted(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.trusted_proxies
            .iter()
            .any(|net| net.0.contains(&address))
    }

    /// The client's address: the TCP peer, unless the peer is a trusted proxy. Then
    /// `X-Forwarded-For` is walked from the right, each hop believed only while the one that
    /// reported it is trusted (so the result is the first untrusted hop, or the left-most when
    /// all are trusted); without `X-Forwarded-For`, `X-Real-IP`.
    pub fn client_address(&self, headers: &HeaderMap, peer: IpAddr) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.is_trusted(client) {
            return client;
        }
        let mut hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .rev()
            .flat_map(|value| value.to_str().unwrap_or("?").rsplit(','))
            .peekable();
        if hops.peek().is_none() {
            return headers
                .get("x-real-ip")
                .and_then(|value| value.to_str().ok()?.trim().parse::<IpAddr>().ok())
                .map_or(client, |ip| ip.to_canonical());
        }
        for hop in hops {
            if !self.is_trusted(client) {
                break;
            }
            // why: a hop that is no address ends the walk at the trusted proxy that reported
            // it, as nginx does; skipping it would let a client hide behind garbage.
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) => client = ip.to_canonical(),
                Err(_) => break,
            }
        }
        client
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn networks(list: &[&str]) -> Vec<ProxyNetwork> {
        list.iter()
            .map(|n| n.parse().expect("valid network"))
            .collect()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().expect("header value"));
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    #[test]
    fn networks_parse_from_cidrs_and_bare_addresses() {
        assert_eq!(networks(&["10.1.2.3/8"])[0].to_string(), "10.0.0.0/8");
        assert_eq!(networks(&[" 127.0.0.1 "])[0].to_string(), "127.0.0.1/32");
        assert_eq!(networks(&["fd00::/8"])[0].to_string(), "fd00::/8");
        let error = "10.0.0.0/33".parse::<ProxyNetwork>().unwrap_err();
        assert_eq!(
            error.to_string(),
            r#""10.0.0.0/33" is not an IP address or CIDR network (like 10.0.0.0/8)"#
        );
    }

    #[test]
    fn forwarded_addresses_are_ignored_from_untrusted_peers() {
        let forwarding = Forwarding {
            trusted_proxies: networks(&["10.0.0.0/8"]),
            ..Forwarding::default()
        };
        let spoofed = headers(&[("x-forwarded-for", "1.1.1.1"), ("x-real-ip", "2.2.2.2")]);
        assert_eq!(
            forwarding.client_address(&spoofed, ip("192.0.2.7")),
            ip("192.0.2.7")
        );
        let none = Forwarding::default();
        assert_eq!(
            none.client_address(&spoofed, ip("10.0.0.1")),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn forwarded_for_is_walked_from_the_right_past_trusted_hops() {
        let forwarding = Forwarding {
            trusted_proxies: networks(&["10.0.0.0/8", "127.0.0.1"]),
            ..Forwarding::default()
        };
        let cases = [
            (vec!["6.6.6.6, 203.0.113.9"], "203.0.113.9"),
            (vec!["6.6.6.6, 203.0.113.9, 10.0.0.5"], "203.0.113.9"),
            (vec!["6.6.6.6", "203.0.113.9, 10.0.0.5"], "203.0.113.9"),
            (vec!["10.0.0.7, 10.0.0.5"], "10.0.0.7"),
            (vec!["6.6.6.6, garbage, 10.0.0.5"], "10.0.0.5"),
            (vec!["::ffff:203.0.113.9"], "203.0.113.9"),
        ];
        for (values, expected) in cases {
            let map = headers(
                &values
                    .iter()
                    .map(|v| ("x-forwarded-for", *v))
                    .collect::<Vec<_>>(),
            );
            assert_eq!(
                forwarding.client_address(&map, ip("127.0.0.1")),
                ip(expected),
                "{values:?}"
            );
        }
        let real_ip = headers(&[("x-real-ip", "203.0.113.4")]);
        assert_eq!(
            forwarding.client_address(&real_ip, ip("::ffff:127.0.0.1")),
            ip("203.0.113.4")
        );
    }

    #[test]
    fn only_the_configured_method_header_is_read() {
        let spoofed = headers(&[
            ("x-forwarded-method", "OPTIONS"),
            ("x-original-method", " POST "),
        ]);
        assert_eq!(Forwarding::default().method(&spoofed, "GET"), "GET");
        let nginx = Forwarding {
            method_header: Some(HeaderName::from_static("x-original-method")),
            ..Forwarding::default()
        };
        assert_eq!(nginx.method(&spoofed, "GET"), "POST");
        assert_eq!(nginx.method(&HeaderMap::new(), "DELETE"), "DELETE");
    }
}
