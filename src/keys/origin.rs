//! CORS origin allowlists: parsing presented `Origin` headers and matching allowlist entries.
//!
//! An origin is `scheme://host[:port]` (RFC 6454). Scheme and host compare case-insensitively and
//! a default port (`http` 80, `https` 443) equals no port. An allowlist entry may start its host
//! with `*.` to allow every subdomain of the rest (`https://*.example.com` allows
//! `https://a.example.com` and `https://a.b.example.com`, not `https://example.com`).

/// A presented, normalized origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    /// Parses an `Origin` header value; `None` for `null`, paths, userinfo or anything malformed.
    pub fn parse(value: &str) -> Option<Self> {
        let (scheme, host, port) = split_origin(value)?;
        if host.starts_with("*.") || !is_host(&host) {
            return None;
        }
        Some(Self { scheme, host, port })
    }
}

/// One parsed allowlist entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedOrigin {
    scheme: String,
    host: HostPattern,
    port: u16,
}

/// Which hosts an allowlist entry matches.
#[derive(Clone, Debug, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    /// Every strict subdomain of this domain.
    SubdomainsOf(String),
}

impl AllowedOrigin {
    /// Parses an allowlist entry; `None` when it is not in Origin format.
    pub fn parse(entry: &str) -> Option<Self> {
        let (scheme, host, port) = split_origin(entry)?;
        let host = match host.strip_prefix("*.") {
            Some(domain) if is_host(domain) => HostPattern::SubdomainsOf(domain.to_owned()),
            Some(_) => return None,
            None if is_host(&host) => HostPattern::Exact(host),
            None => return None,
        };
        Some(Self { scheme, host, port })
    }

    /// Whether this entry allows `origin`.
    pub fn allows(&self, origin: &Origin) -> bool {
        if self.scheme != origin.scheme || self.port != origin.port {
            return false;
        }
        match &self.host {
            HostPattern::Exact(host) => *host == origin.host,
            HostPattern::SubdomainsOf(domain) => origin
                .host
                .strip_suffix(domain.as_str())
                .and_then(|prefix| prefix.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty()),
        }
    }
}

/// Whether the `Origin` header value `origin` matches an entry of `allowlist`. An empty
/// allowlist allows nothing; malformed entries never match.
pub fn is_origin_allowed(origin: &str, allowlist: &[String]) -> bool {
    let Some(origin) = Origin::parse(origin) else {
        return false;
    };
    allowlist
        .iter()
        .filter_map(|entry| AllowedOrigin::parse(entry))
        .any(|entry| entry.allows(&origin))
}

/// Splits `scheme://host[:port]` into lowercase scheme and host and an explicit or default port.
fn split_origin(value: &str) -> Option<(String, String, u16)> {
    let (scheme, authority) = value.trim().split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
        return None;
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => {
            if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (host, port.parse::<u16>().ok().filter(|p| *p != 0)?)
        }
        None => (authority, default_port),
    };
    Some((scheme, host.to_ascii_lowercase(), port))
}

/// Whether `host` is a DNS name or IPv4 address made of non-empty LDH labels.
fn is_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowlist(entries: &[&str]) -> Vec<String> {
        entries.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn exact_origin_matches_only_same_scheme_host_and_port() {
        let list = allowlist(&["https://app.example.com", "https://ops.example.com:8443"]);
        assert!(is_origin_allowed("https://app.example.com", &list));
        assert!(is_origin_allowed("https://ops.example.com:8443", &list));
        assert!(!is_origin_allowed("http://app.example.com", &list));
        assert!(!is_origin_allowed("https://ops.example.com", &list));
        assert!(!is_origin_allowed("https://app.example.com:8443", &list));
        assert!(!is_origin_allowed("https://evil.com", &list));
        assert!(!is_origin_allowed(
            "https://app.example.com.evil.com",
            &list
        ));
    }

    #[test]
    fn default_ports_and_case_are_normalized() {
        let list = allowlist(&["https://app.example.com", "http://local.test:80"]);
        assert!(is_origin_allowed("https://app.example.com:443", &list));
        assert!(is_origin_allowed("HTTPS://App.Example.COM", &list));
        assert!(is_origin_allowed("http://local.test", &list));
    }

    #[test]
    fn wildcard_entry_allows_strict_subdomains_only() {
        let list = allowlist(&["https://*.example.com"]);
        assert!(is_origin_allowed("https://a.example.com", &list));
        assert!(is_origin_allowed("https://a.b.example.com", &list));
        assert!(!is_origin_allowed("https://example.com", &list));
        assert!(!is_origin_allowed("https://badexample.com", &list));
        assert!(!is_origin_allowed("http://a.example.com", &list));
    }

    #[test]
    fn empty_allowlist_allows_nothing() {
        assert!(!is_origin_allowed("https://app.example.com", &[]));
    }

    #[test]
    fn malformed_origins_never_match() {
        let list = allowlist(&["https://app.example.com", "https://*.example.com"]);
        for origin in [
            "null",
            "",
            "app.example.com",
            "https://app.example.com/",
            "https://app.example.com/path",
            "https://user@app.example.com",
            "ftp://app.example.com",
            "https://*.example.com",
            "https://app.example.com:",
            "https://app.example.com:99999",
            "https://app..example.com",
        ] {
            assert!(
                !is_origin_allowed(origin, &list),
                "{origin:?} must not match"
            );
        }
    }

    #[test]
    fn malformed_allowlist_entries_are_ignored() {
        let list = allowlist(&["app.example.com", "https://*.", "https://ok.example.com"]);
        assert!(!is_origin_allowed("https://app.example.com", &list));
        assert!(is_origin_allowed("https://ok.example.com", &list));
    }
}
