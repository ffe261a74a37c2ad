//! The guard of a gateway that serves without an API key (loopback
//! development): no web page may drive it.
//!
//! A page on any site can make the browser send a "simple" cross-site POST
//! (`text/plain`, no preflight), and a page whose own name rebinds to
//! 127.0.0.1 can even read the answers. So, without a key:
//! - a request whose `Origin` is not the gateway's own (nor one allowed by
//!   `--cors-origin`), or whose `Sec-Fetch-Site` says `cross-site`, gets 403;
//! - a request whose `Host` is not a loopback name gets 403 (DNS rebinding).
//!
//! Requests without those headers (curl, SDKs, other servers) pass as before.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// Origins besides the gateway's own that may call it from a browser
/// (`scheme://host[:port]`, as browsers send them).
#[derive(Clone, Debug, Default)]
pub struct AllowedOrigins(pub Arc<Vec<String>>);

impl AllowedOrigins {
    /// Whether a browser on `origin` may call.
    pub fn allows(&self, origin: &str) -> bool {
        self.0
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
    }
}

/// Middleware: 403 `cross_site` or `host_not_loopback` as described above.
pub async fn loopback_same_origin(
    State(allowed): State<AllowedOrigins>,
    req: Request,
    next: Next,
) -> Response {
    match refusal(req.headers(), &allowed) {
        None => next.run(req).await,
        Some((code, message)) => {
            ApiError::new(StatusCode::FORBIDDEN, code, message).into_response()
        }
    }
}

fn refusal(headers: &HeaderMap, allowed: &AllowedOrigins) -> Option<(&'static str, String)> {
    let text = |name: &str| headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"));
    let host = text(header::HOST.as_str());
    if let Some(host) = host
        && !is_loopback_host(host)
    {
        return Some((
            "host_not_loopback",
            format!("this gateway has no API key and answers only loopback names, not `{host}`"),
        ));
    }
    let origin = text(header::ORIGIN.as_str());
    let origin_allowed = origin.is_some_and(|o| allowed.allows(o));
    if text("sec-fetch-site") == Some("cross-site") && !origin_allowed {
        return Some((
            "cross_site",
            "cross-site browser requests are refused by a gateway without an API key".into(),
        ));
    }
    match (origin, host) {
        (Some(o), Some(h)) if !origin_allowed && !same_origin(o, h) => Some((
            "cross_site",
            format!("requests from origin `{o}` are refused by a gateway without an API key"),
        )),
        _ => None,
    }
}

/// Whether `origin` (`scheme://host[:port]`) names the `host` header's
/// host and port.
pub fn same_origin(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false; // "null" and other opaque origins
    };
    let default_port = match scheme {
        "http" => "80",
        "https" => "443",
        _ => return false,
    };
    let (o_name, o_port) = split_authority(authority);
    let (h_name, h_port) = split_authority(host);
    o_name.eq_ignore_ascii_case(h_name)
        && o_port.unwrap_or(default_port) == h_port.unwrap_or(default_port)
}

/// `name[:port]` or `[v6][:port]` into its name and port.
fn split_authority(authority: &str) -> (&str, Option<&str>) {
    if let Some(rest) = authority.strip_prefix('[') {
        let (name, after) = rest.split_once(']').unwrap_or((rest, ""));
        return (name, after.strip_prefix(':'));
    }
    match authority.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (authority, None),
    }
}

/// `localhost`, `*.localhost`, 127.0.0.0/8 or `[::1]`, with any port.
fn is_loopback_host(host: &str) -> bool {
    let name = split_authority(host)
        .0
        .trim_end_matches('.')
        .to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn loopback_names_pass_and_others_are_refused() {
        for host in [
            "localhost",
            "localhost:8000",
            "127.0.0.1:8000",
            "127.1.2.3",
            "[::1]:80",
            "app.localhost:3000",
            "LOCALHOST.",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "evil.example:8000",
            "10.0.0.1",
            "[::2]",
            "localhost.evil.example",
            "0.0.0.0:8000",
            "",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn only_the_gateway_s_own_origin_or_an_allowed_one_passes() {
        let none = AllowedOrigins::default();
        let ok = |pairs: &[(&'static str, &str)]| refusal(&headers(pairs), &none).is_none();
        assert!(ok(&[("host", "127.0.0.1:8000")]));
        assert!(ok(&[]));
        assert!(ok(&[
            ("host", "localhost:8000"),
            ("origin", "http://localhost:8000")
        ]));
        assert!(ok(&[
            ("host", "localhost"),
            ("origin", "http://localhost:80")
        ]));
        assert!(ok(&[
            ("host", "localhost:8000"),
            ("sec-fetch-site", "same-origin")
        ]));
        assert!(!ok(&[
            ("host", "localhost:8000"),
            ("origin", "https://evil.example")
        ]));
        assert!(!ok(&[
            ("host", "localhost:8000"),
            ("origin", "http://localhost:3000")
        ]));
        assert!(!ok(&[("host", "localhost:8000"), ("origin", "null")]));
        assert!(!ok(&[
            ("host", "localhost:8000"),
            ("sec-fetch-site", "cross-site")
        ]));
        assert!(!ok(&[("host", "rebound.example:8000")]));
        let dev = AllowedOrigins(Arc::new(vec!["http://localhost:3000".into()]));
        let pairs = headers(&[
            ("host", "localhost:8000"),
            ("origin", "http://localhost:3000"),
            ("sec-fetch-site", "same-site"),
        ]);
        assert!(refusal(&pairs, &dev).is_none());
    }
}
