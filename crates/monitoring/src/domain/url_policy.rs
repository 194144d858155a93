//! Which outbound URLs monitoring may call (alert webhooks, API checks): a pure policy, no I/O.
//!
//! A URL a tenant registers is a server-side request made with the service's network position,
//! so it is checked twice: when it is registered ([`UrlPolicy::check_url`]: scheme, host, and
//! literal addresses and well-known metadata host names) and again at delivery time on every
//! address the host resolved to ([`UrlPolicy::check_resolved`]), because a name that resolved to
//! a public address at registration can resolve to `169.254.169.254` later (DNS rebinding).
//!
//! Always refused unless an explicit flag allows them: cloud metadata endpoints, link-local
//! addresses, unspecified (`0.0.0.0` connects to the local host on Linux), broadcast, multicast
//! and reserved addresses. Loopback is refused by default too: it reaches the service's own
//! ports (metrics, gRPC) and whatever shares its host or pod. Private ranges (RFC 1918, unique
//! local IPv6, CGNAT) are allowed by default because a self-hosted CI platform's webhook
//! receivers and probed services normally live on the internal network; an operator who wants
//! only public targets turns `allow_private` off.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};
use url::{Host, Url};

/// Longest URL accepted; webhook URLs are stored and shown, not documents.
pub const MAX_URL_LEN: usize = 2048;

/// Host names that serve cloud instance metadata (credentials) on every major provider.
const METADATA_HOSTS: &[&str] = &[
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "metadata.azure.com",
    "metadata.azure.internal",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.tencentyun.com",
    "metadata.packet.net",
];

/// The switches of the policy; the defaults are the safe ones described in the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UrlPolicy {
    /// `127.0.0.0/8`, `::1`, `localhost`.
    pub allow_loopback: bool,
    /// `10/8`, `172.16/12`, `192.168/16`, `100.64/10`, `fc00::/7`, `fec0::/10`.
    pub allow_private: bool,
    /// `169.254/16`, `fe80::/10`.
    pub allow_link_local: bool,
    /// Cloud metadata endpoints (`169.254.169.254`, `fd00:ec2::254`, `100.100.100.200`, …).
    pub allow_metadata: bool,
    /// Unspecified (`0.0.0.0/8`, `::`), broadcast, multicast and reserved (`240/4`) addresses.
    pub allow_unspecified: bool,
}

impl Default for UrlPolicy {
    fn default() -> Self {
        UrlPolicy {
            allow_loopback: false,
            allow_private: true,
            allow_link_local: false,
            allow_metadata: false,
            allow_unspecified: false,
        }
    }
}

/// Why a URL or an address is refused; the text is meant for the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRejection {
    #[error("not a valid URL: {0}")]
    Parse(String),
    #[error("URL is longer than {MAX_URL_LEN} characters")]
    TooLong,
    #[error("URL scheme must be http or https, got {0:?}")]
    Scheme(String),
    #[error("URL must name a host")]
    NoHost,
    #[error("{0} is a cloud metadata endpoint")]
    Metadata(String),
    #[error("{0} is a loopback address")]
    Loopback(String),
    #[error("{0} is a private-network address")]
    Private(String),
    #[error("{0} is a link-local address")]
    LinkLocal(String),
    #[error("{0} is an unspecified, broadcast, multicast or reserved address")]
    Unspecified(String),
}

/// What kind of network an address belongs to, as far as the policy cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    Public,
    Loopback,
    Private,
    LinkLocal,
    Metadata,
    Unspecified,
}

impl UrlPolicy {
    /// Parses `raw` and checks what can be checked without resolving: scheme, host, literal
    /// addresses and metadata host names. Returns the parsed URL.
    pub fn check_url(&self, raw: &str) -> Result<Url, UrlRejection> {
        if raw.len() > MAX_URL_LEN {
            return Err(UrlRejection::TooLong);
        }
        let url = Url::parse(raw.trim()).map_err(|e| UrlRejection::Parse(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(UrlRejection::Scheme(url.scheme().to_owned()));
        }
        match url.host() {
            None => return Err(UrlRejection::NoHost),
            Some(Host::Domain(domain)) => self.check_domain(domain)?,
            Some(Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip))?,
            Some(Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip))?,
        }
        Ok(url)
    }

    /// Checks every address a host resolved to, right before connecting; one refused address
    /// refuses the host (a name that mixes public and internal answers is not trusted).
    pub fn check_resolved(&self, addresses: &[IpAddr]) -> Result<(), UrlRejection> {
        addresses.iter().try_for_each(|ip| self.check_ip(*ip))
    }

    /// Checks one address against the policy.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), UrlRejection> {
        let allowed = match classify(ip) {
            AddressClass::Public => true,
            AddressClass::Loopback => self.allow_loopback,
            AddressClass::Private => self.allow_private,
            AddressClass::LinkLocal => self.allow_link_local,
            AddressClass::Metadata => self.allow_metadata,
            AddressClass::Unspecified => self.allow_unspecified,
        };
        if allowed {
            return Ok(());
        }
        let shown = ip.to_string();
        Err(match classify(ip) {
            AddressClass::Loopback => UrlRejection::Loopback(shown),
            AddressClass::Private => UrlRejection::Private(shown),
            AddressClass::LinkLocal => UrlRejection::LinkLocal(shown),
            AddressClass::Metadata => UrlRejection::Metadata(shown),
            AddressClass::Public | AddressClass::Unspecified => UrlRejection::Unspecified(shown),
        })
    }

    fn check_domain(&self, domain: &str) -> Result<(), UrlRejection> {
        // `url` lower-cases domains; a trailing dot names the same host.
        let name = domain.trim_end_matches('.');
        if name.is_empty() {
            return Err(UrlRejection::NoHost);
        }
        if !self.allow_metadata && METADATA_HOSTS.contains(&name) {
            return Err(UrlRejection::Metadata(name.to_owned()));
        }
        if !self.allow_loopback && (name == "localhost" || name.ends_with(".localhost")) {
            return Err(UrlRejection::Loopback(name.to_owned()));
        }
        Ok(())
    }
}

/// The class of `ip`; IPv4 addresses embedded in IPv6 (mapped, NAT64) are classified as the
/// IPv4 address they reach.
pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => classify_v4(v4),
            None => classify_v6(v6),
        },
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let [a, b, c, d] = ip.octets();
    if [
        [169, 254, 169, 254],
        [169, 254, 170, 2],
        [100, 100, 100, 200],
    ]
    .contains(&[a, b, c, d])
    {
        // AWS/GCP/Azure/OCI, ECS task metadata, Alibaba Cloud.
        return AddressClass::Metadata;
    }
    if a == 0 || a >= 224 {
        // 0/8 "this network", 224/4 multicast, 240/4 reserved and the broadcast address.
        return AddressClass::Unspecified;
    }
    if a == 127 {
        return AddressClass::Loopback;
    }
    if a == 169 && b == 254 {
        return AddressClass::LinkLocal;
    }
    if a == 10 || (a == 172 && (16..32).contains(&b)) || (a == 192 && b == 168) {
        return AddressClass::Private;
    }
    if a == 100 && (64..128).contains(&b) {
        return AddressClass::Private;
    }
    AddressClass::Public
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    if ip == Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254) {
        return AddressClass::Metadata;
    }
    if ip.is_unspecified() || ip.is_multicast() {
        return AddressClass::Unspecified;
    }
    if ip.is_loopback() {
        return AddressClass::Loopback;
    }
    let first = ip.segments()[0];
    if first & 0xffc0 == 0xfe80 {
        return AddressClass::LinkLocal;
    }
    if first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfec0 {
        return AddressClass::Private;
    }
    AddressClass::Public
}

/// The IPv4 address an IPv6 address forwards to: IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible
/// `::a.b.c.d` (deprecated, still routed by some stacks) and NAT64 `64:ff9b::a.b.c.d`.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    let nat64 = s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0];
    let compatible = s[..6] == [0; 6] && u32::from(tail) > 1;
    (nat64 || compatible).then_some(tail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict() -> UrlPolicy {
        UrlPolicy::default()
    }

    #[test]
    fn url_policy_accepts_public_http_and_https() {
        let url = strict()
            .check_url("https://hooks.example.com/services/T0/B0?x=1")
            .expect("public https");
        assert_eq!(url.host_str(), Some("hooks.example.com"));
        assert!(strict().check_url("http://93.184.216.34:8080/hook").is_ok());
        assert!(strict().check_url("http://[2606:2800:220:1::1]/").is_ok());
        // Private ranges are allowed by default (internal receivers).
        assert!(strict().check_url("http://10.1.2.3/hook").is_ok());
        assert!(
            strict()
                .check_url("http://alertmanager.monitoring.svc:9093/")
                .is_ok()
        );
    }

    #[test]
    fn url_policy_refuses_other_schemes_and_hostless_urls() {
        for (raw, want) in [
            ("ftp://example.com/x", UrlRejection::Scheme("ftp".into())),
            ("file:///etc/passwd", UrlRejection::Scheme("file".into())),
            (
                "gopher://example.com/",
                UrlRejection::Scheme("gopher".into()),
            ),
        ] {
            assert_eq!(strict().check_url(raw), Err(want), "{raw}");
        }
        assert!(matches!(
            strict().check_url("not a url"),
            Err(UrlRejection::Parse(_))
        ));
        assert!(matches!(
            strict().check_url("http://"),
            Err(UrlRejection::Parse(_) | UrlRejection::NoHost)
        ));
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(strict().check_url(&long), Err(UrlRejection::TooLong));
    }

    #[test]
    fn url_policy_refuses_metadata_endpoints_in_every_spelling() {
        for raw in [
            "http://169.254.169.254/latest/meta-data/",
            "http://[fd00:ec2::254]/latest/meta-data/",
            "http://100.100.100.200/latest/meta-data/",
            "http://metadata.google.internal/computeMetadata/v1/",
            "http://METADATA.google.internal./computeMetadata/v1/",
            "http://metadata.azure.com/",
            // Alternative IPv4 spellings the URL parser normalises.
            "http://0xa9.0xfe.0xa9.0xfe/",
            "http://2852039166/",
            "http://[::ffff:169.254.169.254]/",
            "http://[64:ff9b::a9fe:a9fe]/",
        ] {
            assert!(
                matches!(strict().check_url(raw), Err(UrlRejection::Metadata(_))),
                "{raw}: {:?}",
                strict().check_url(raw)
            );
        }
    }

    #[test]
    fn url_policy_refuses_link_local_loopback_and_unspecified_by_default() {
        type Check = fn(&UrlRejection) -> bool;
        let cases: [(&str, Check); 8] = [
            ("http://169.254.1.1/", |r| {
                matches!(r, UrlRejection::LinkLocal(_))
            }),
            ("http://[fe80::1]/", |r| {
                matches!(r, UrlRejection::LinkLocal(_))
            }),
            ("http://127.0.0.1:9030/metrics", |r| {
                matches!(r, UrlRejection::Loopback(_))
            }),
            ("http://[::1]/", |r| matches!(r, UrlRejection::Loopback(_))),
            ("http://localhost:6379/", |r| {
                matches!(r, UrlRejection::Loopback(_))
            }),
            ("http://0.0.0.0:7030/", |r| {
                matches!(r, UrlRejection::Unspecified(_))
            }),
            ("http://255.255.255.255/", |r| {
                matches!(r, UrlRejection::Unspecified(_))
            }),
            ("http://[::]/", |r| {
                matches!(r, UrlRejection::Unspecified(_))
            }),
        ];
        for (raw, check) in cases {
            let rejection = strict().check_url(raw).expect_err(raw);
            assert!(check(&rejection), "{raw}: {rejection:?}");
        }
    }

    #[test]
    fn url_policy_flags_allow_what_they_name_and_nothing_more() {
        let loopback = UrlPolicy {
            allow_loopback: true,
            ..UrlPolicy::default()
        };
        assert!(loopback.check_url("http://127.0.0.1:8080/hook").is_ok());
        assert!(loopback.check_url("http://localhost/hook").is_ok());
        assert!(loopback.check_url("http://169.254.169.254/").is_err());
        assert!(loopback.check_url("http://169.254.1.1/").is_err());

        let public_only = UrlPolicy {
            allow_private: false,
            ..UrlPolicy::default()
        };
        for raw in [
            "http://10.0.0.1/",
            "http://172.20.0.1/",
            "http://192.168.1.1/",
            "http://[fd12::1]/",
        ] {
            assert!(
                matches!(public_only.check_url(raw), Err(UrlRejection::Private(_))),
                "{raw}"
            );
        }

        let metadata = UrlPolicy {
            allow_metadata: true,
            ..UrlPolicy::default()
        };
        assert!(metadata.check_url("http://169.254.169.254/").is_ok());
        assert!(metadata.check_url("http://169.254.1.1/").is_err());

        let link_local = UrlPolicy {
            allow_link_local: true,
            ..UrlPolicy::default()
        };
        assert!(link_local.check_url("http://169.254.1.1/").is_ok());
        assert!(link_local.check_url("http://169.254.169.254/").is_err());
    }

    #[test]
    fn url_policy_rechecks_resolved_addresses() {
        let policy = strict();
        let public: IpAddr = "93.184.216.34".parse().expect("ip");
        let rebound: IpAddr = "169.254.169.254".parse().expect("ip");
        let loopback: IpAddr = "::1".parse().expect("ip");
        assert!(policy.check_resolved(&[public]).is_ok());
        assert!(matches!(
            policy.check_resolved(&[public, rebound]),
            Err(UrlRejection::Metadata(_))
        ));
        assert!(matches!(
            policy.check_resolved(&[loopback]),
            Err(UrlRejection::Loopback(_))
        ));
    }

    #[test]
    fn address_classes_cover_the_edges_of_each_range() {
        let class = |s: &str| classify(s.parse().expect("ip"));
        assert_eq!(class("172.15.255.255"), AddressClass::Public);
        assert_eq!(class("172.16.0.0"), AddressClass::Private);
        assert_eq!(class("172.31.255.255"), AddressClass::Private);
        assert_eq!(class("172.32.0.0"), AddressClass::Public);
        assert_eq!(class("100.63.255.255"), AddressClass::Public);
        assert_eq!(class("100.64.0.1"), AddressClass::Private);
        assert_eq!(class("169.253.255.255"), AddressClass::Public);
        assert_eq!(class("169.255.0.0"), AddressClass::Public);
        assert_eq!(class("223.255.255.255"), AddressClass::Public);
        assert_eq!(class("224.0.0.1"), AddressClass::Unspecified);
        assert_eq!(class("febf::1"), AddressClass::LinkLocal);
        assert_eq!(class("fec0::1"), AddressClass::Private);
        assert_eq!(class("::ffff:10.0.0.1"), AddressClass::Private);
        assert_eq!(class("::127.0.0.1"), AddressClass::Loopback);
        assert_eq!(class("2001:db8::1"), AddressClass::Public);
    }
}
