//! `GuardedHttpClient`: outgoing HTTP that cannot reach private, loopback,
//! link-local (cloud metadata) or otherwise internal addresses unless they
//! are allow-listed.
//!
//! The check happens where connections are made: a DNS resolver that drops
//! refused addresses, so a name that resolves to an internal address (DNS
//! rebinding included) is refused too. IP-literal hosts skip resolvers, so
//! they are checked before sending. Redirects are not followed: a 3xx is
//! returned as it is, so no redirect can lead to an internal address.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use async_trait::async_trait;
use ipnet::IpNet;

use crate::ports::{HttpClient, HttpError, HttpRequest, HttpResponse};

/// Largest response body read; more is an error, not a truncation.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Outgoing HTTP with the SSRF guard. Build once; it pools connections.
/// The underlying client (and its TLS trust store, read from the system's
/// certificates) is built on first use: most processes, e.g. the enqueue
/// function, never call out, and a cold start should not pay for it.
#[derive(Clone)]
pub struct GuardedHttpClient {
    client: Arc<std::sync::OnceLock<reqwest::Client>>,
    allow: Arc<Vec<IpNet>>,
}

/// Parse a comma-separated allow-list of IPs and CIDRs (`127.0.0.1/32, 10.0.0.0/8`).
pub fn parse_allow_list(s: &str) -> Result<Vec<IpNet>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<IpNet>()
                .or_else(|_| p.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("`{p}` is not an IP address or CIDR"))
        })
        .collect()
}

/// Whether an address is on the public internet (not private, loopback,
/// link-local, CGNAT, multicast, documentation or otherwise special). An
/// IPv6 address that carries an IPv4 one (mapped, compatible, NAT64 and
/// 6to4) is as public as that IPv4 address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_unspecified()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // CGNAT
                || (a == 192 && b == 0 && v4.octets()[2] == 0) // IETF protocol assignments
                || (a == 198 && (b == 18 || b == 19)) // benchmarking
                || a >= 240) // reserved
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_ipv4(v6) {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || s[..6] == [0; 6] // the rest of ::/96 (IPv4-compatible, reserved)
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated, still routed internally)
                || s[..4] == [0x100, 0, 0, 0] // discard-only 100::/64
                || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1) // local-use NAT64 64:ff9b:1::/48
                || (s[0] == 0x2001 && s[1] < 0x200) // IETF special purpose 2001::/23 (Teredo, benchmarking, ORCHID)
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] & 0xfff0) == 0x3ff0) // documentation 3fff::/20
        }
    }
}

/// The IPv4 address an IPv6 one stands for: IPv4-mapped `::ffff:a.b.c.d`,
/// IPv4-compatible `::a.b.c.d`, well-known NAT64 `64:ff9b::a.b.c.d` and
/// 6to4 `2002:aabb:ccdd::/48`. Teredo (2001::/32) is refused as a whole
/// instead: its client address is obfuscated and its server is a relay.
fn embedded_ipv4(v6: std::net::Ipv6Addr) -> Option<std::net::Ipv4Addr> {
    let s = v6.segments();
    let v4 = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        std::net::Ipv4Addr::new(a, b, c, d)
    };
    if let Some(mapped) = v6.to_ipv4_mapped() {
        return Some(mapped);
    }
    match s {
        // ::a.b.c.d, but not :: and ::1 (judged as IPv6) nor ::0.0.x.y.
        [0, 0, 0, 0, 0, 0, hi, _] if hi != 0 => Some(v4(s[6], s[7])),
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(v4(hi, lo)),
        [0x2002, hi, lo, ..] => Some(v4(hi, lo)),
        _ => None,
    }
}

/// Public, or on the allow-list itself or through the IPv4 address it
/// carries (`::ffff:127.0.0.1` is allowed by `127.0.0.1/32`).
fn allowed(ip: IpAddr, allow: &[IpNet]) -> bool {
    let carried = match ip {
        IpAddr::V6(v6) => embedded_ipv4(v6).map(IpAddr::V4),
        IpAddr::V4(_) => None,
    };
    is_public(ip)
        || allow
            .iter()
            .any(|net| net.contains(&ip) || carried.is_some_and(|v4| net.contains(&v4)))
}

/// Marks a refusal by the resolver, found again in reqwest's error chain.
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

struct GuardedResolver {
    allow: Arc<Vec<IpNet>>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.allow.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> = addrs
                .iter()
                .copied()
                .filter(|a| allowed(a.ip(), &allow))
                .collect();
            if kept.is_empty() {
                let err: Box<dyn std::error::Error + Send + Sync> = Box::new(Refused(format!(
                    "{host} resolves only to private or internal addresses"
                )));
                return Err(err);
            }
            let addrs: reqwest::dns::Addrs = Box::new(kept.into_iter());
            Ok(addrs)
        })
    }
}

impl GuardedHttpClient {
    /// A client that may reach, besides public addresses, the networks in `allow`.
    pub fn new(allow: Vec<IpNet>) -> Result<Self, HttpError> {
        // One process-wide TLS provider (ring); a second install is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Ok(GuardedHttpClient {
            client: Arc::default(),
            allow: Arc::new(allow),
        })
    }

    fn client(&self) -> Result<&reqwest::Client, HttpError> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        // No proxy, whatever HTTP(S)_PROXY/ALL_PROXY say: through a proxy
        // the guard would only ever see the proxy's address.
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(GuardedResolver {
                allow: self.allow.clone(),
            }))
            .build()
            .map_err(|e| HttpError::Transport(format!("building the HTTP client: {e}")))?;
        // Two first calls at once may both build one; the first stored wins.
        Ok(self.client.get_or_init(|| client))
    }

    fn check_url(&self, raw: &str) -> Result<reqwest::Url, HttpError> {
        let url = reqwest::Url::parse(raw)
            .map_err(|e| HttpError::Invalid(format!("bad URL `{raw}`: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(HttpError::Invalid(format!(
                "only http and https URLs are allowed, not `{}`",
                url.scheme()
            )));
        }
        let host = url
            .host_str()
            .ok_or_else(|| HttpError::Invalid(format!("URL `{raw}` has no host")))?;
        let ip = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .ok();
        if let Some(ip) = ip
            && !allowed(ip, &self.allow)
        {
            return Err(HttpError::Blocked(format!(
                "{ip} is a private or internal address"
            )));
        }
        Ok(url)
    }
}

fn classify(e: reqwest::Error) -> HttpError {
    if e.is_timeout() {
        return HttpError::Timeout;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<Refused>() {
            return HttpError::Blocked(r.0.clone());
        }
        source = s.source();
    }
    if e.is_builder() {
        return HttpError::Invalid(e.to_string());
    }
    HttpError::Transport(full_chain(&e))
}

/// An error and every cause under it, `: `-separated.
pub(crate) fn full_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[async_trait]
impl HttpClient for GuardedHttpClient {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let url = self.check_url(&request.url)?;
        let method = reqwest::Method::from_bytes(request.method.as_bytes())
            .map_err(|_| HttpError::Invalid(format!("bad method `{}`", request.method)))?;
        let mut builder = self.client()?.request(method, url).timeout(request.timeout);
        for (k, v) in &request.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        if !request.body.is_empty() {
            builder = builder.body(request.body);
        }
        let run = async {
            let mut response = builder.send().await.map_err(classify)?;
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(classify)? {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(HttpError::Transport(format!(
                        "response body is larger than {MAX_RESPONSE_BYTES} bytes"
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(HttpResponse {
                status,
                headers,
                body,
            })
        };
        // The per-request timeout covers the body too.
        tokio::time::timeout(request.timeout, run)
            .await
            .unwrap_or(Err(HttpError::Timeout))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn request(url: &str) -> HttpRequest {
        HttpRequest {
            method: "GET".into(),
            url: url.into(),
            headers: vec![("x-test".into(), "1".into())],
            body: Vec::new(),
            timeout: Duration::from_secs(5),
        }
    }

    /// A one-route server on loopback: `/ok` answers 200 "hello", `/slow`
    /// waits 3 s, `/moved` redirects.
    async fn server() -> SocketAddr {
        use axum::routing::get;
        let app = axum::Router::new()
            .route("/ok", get(|| async { ([("x-answer", "yes")], "hello") }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    "late"
                }),
            )
            .route(
                "/moved",
                get(|| async {
                    (
                        axum::http::StatusCode::FOUND,
                        [("location", "http://169.254.169.254/")],
                    )
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    #[test]
    fn internal_ranges_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "ff02::1",
            "64:ff9b::7f00:1",
            "64:ff9b::10.0.0.1",
            "64:ff9b::169.254.169.254",
            "64:ff9b:1::8.8.8.8",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::1",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:2::1",
            "2001:10::1",
            "fec0::1",
            "100::1",
            "2001:db8::1",
            "3fff::1",
            "::0.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip} must not be public");
        }
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1",
            "::ffff:8.8.8.8",
            "64:ff9b::8.8.8.8",
            "2002:808:808::1",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip} is public");
        }
    }

    #[test]
    fn allow_lists_parse_ips_and_cidrs() {
        let nets = parse_allow_list(" 127.0.0.1/32, 10.0.0.0/8 ,::1").unwrap();
        assert_eq!(nets.len(), 3);
        assert!(nets[2].contains(&"::1".parse::<IpAddr>().unwrap()));
        assert!(parse_allow_list("").unwrap().is_empty());
        assert!(parse_allow_list("localhost").is_err());
        assert!(parse_allow_list("10.0.0.0/33").is_err());
    }

    #[tokio::test]
    async fn loopback_is_refused_without_an_allow_list() {
        let addr = server().await;
        let client = GuardedHttpClient::new(vec![]).unwrap();
        for url in [
            format!("http://{addr}/ok"),
            format!("http://localhost:{}/ok", addr.port()),
            "http://169.254.169.254/latest/meta-data".to_string(),
            "http://10.0.0.1/".to_string(),
            "http://[::1]/".to_string(),
        ] {
            let got = client.send(request(&url)).await;
            assert!(matches!(got, Err(HttpError::Blocked(_))), "{url}: {got:?}");
        }
    }

    #[tokio::test]
    async fn allow_listed_loopback_is_reached() {
        let addr = server().await;
        let client = GuardedHttpClient::new(parse_allow_list("127.0.0.1/32").unwrap()).unwrap();
        for url in [
            format!("http://{addr}/ok"),
            format!("http://localhost:{}/ok", addr.port()),
        ] {
            let r = client.send(request(&url)).await.unwrap();
            assert_eq!(r.status, 200);
            assert_eq!(r.body, b"hello");
            assert!(r.headers.iter().any(|(k, v)| k == "x-answer" && v == "yes"));
        }
    }

    #[tokio::test]
    async fn redirects_are_returned_not_followed() {
        let addr = server().await;
        let client = GuardedHttpClient::new(parse_allow_list("127.0.0.1").unwrap()).unwrap();
        let r = client
            .send(request(&format!("http://{addr}/moved")))
            .await
            .unwrap();
        assert_eq!(r.status, 302);
    }

    #[tokio::test]
    async fn slow_servers_time_out_and_bad_urls_are_invalid() {
        let addr = server().await;
        let client = GuardedHttpClient::new(parse_allow_list("127.0.0.1").unwrap()).unwrap();
        let mut slow = request(&format!("http://{addr}/slow"));
        slow.timeout = Duration::from_millis(300);
        assert!(matches!(client.send(slow).await, Err(HttpError::Timeout)));
        assert!(matches!(
            client.send(request("ftp://example.com/")).await,
            Err(HttpError::Invalid(_))
        ));
        assert!(matches!(
            client.send(request("not a url")).await,
            Err(HttpError::Invalid(_))
        ));
    }
}
