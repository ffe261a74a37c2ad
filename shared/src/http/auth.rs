//! API authentication: an `X-API-Key` header (or `Authorization: Bearer`)
//! checked against the SHA-256 of the configured key in constant time, so
//! the key itself is never kept in memory longer than start-up.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ApiError;

/// The accepted API key, as its hash; `None` leaves the API open (only for
/// loopback development, which the CLI enforces).
#[derive(Clone, Debug, Default)]
pub struct ApiKey(Option<[u8; 32]>);

impl ApiKey {
    pub fn new(key: Option<&str>) -> Self {
        ApiKey(key.filter(|k| !k.is_empty()).map(hash))
    }

    /// The key given as the hex SHA-256 of it, so a deployment never holds
    /// the key itself (`printf %s "$KEY" | sha256sum`).
    pub fn from_sha256_hex(hex: &str) -> Result<Self, String> {
        let hex = hex.trim();
        let bad = || "an API key hash must be 64 hex digits (its SHA-256)".to_string();
        if hex.len() != 64 || !hex.is_ascii() {
            return Err(bad());
        }
        let mut digest = [0u8; 32];
        for (i, byte) in digest.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(ApiKey(Some(digest)))
    }

    pub fn is_enabled(&self) -> bool {
        self.0.is_some()
    }

    /// Whether `presented` is the key.
    pub fn accepts(&self, presented: &str) -> bool {
        match &self.0 {
            None => true,
            Some(expected) => bool::from(hash(presented).ct_eq(expected)),
        }
    }
}

fn hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Middleware: 401 unless the request carries the key (OPTIONS passes, for CORS preflight).
pub async fn require_api_key(State(key): State<ApiKey>, req: Request, next: Next) -> Response {
    if req.method() == axum::http::Method::OPTIONS {
        return next.run(req).await;
    }
    match key.check(req.headers()) {
        Ok(()) => next.run(req).await,
        Err(refusal) => refusal.into_response(),
    }
}

impl ApiKey {
    /// Ok when the key is disabled or the headers carry it, else the 401.
    pub fn check(&self, headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
        if !self.is_enabled() {
            return Ok(());
        }
        // `error` is lapinq's word for it; `detail` says which case.
        let refused = |detail: &str| {
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "unauthorized")
                .with("detail", detail)
        };
        match presented_key(headers) {
            Some(k) if self.accepts(k.trim()) => Ok(()),
            Some(_) => Err(refused("invalid API key")),
            None => Err(refused("missing API key: send it in the X-API-Key header")),
        }
    }
}

/// The key in `X-API-Key`, else in `Authorization: Bearer <key>` (the
/// scheme name in any case, as RFC 7235 has it).
fn presented_key(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            let value = headers
                .get(axum::http::header::AUTHORIZATION)?
                .to_str()
                .ok()?;
            let (scheme, credentials) = value.trim_start().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then_some(credentials.trim_start())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_configured_key_is_accepted() {
        let key = ApiKey::new(Some("s3cret"));
        assert!(key.accepts("s3cret"));
        assert!(!key.accepts("s3cre"));
        assert!(!key.accepts(""));
        assert!(ApiKey::new(None).accepts("anything"));
        assert!(!ApiKey::new(Some("")).is_enabled());
    }

    #[test]
    fn the_bearer_scheme_is_read_in_any_case() {
        let key = ApiKey::new(Some("s3cret-s3cret-s3cret"));
        for value in [
            "Bearer s3cret-s3cret-s3cret",
            "bearer s3cret-s3cret-s3cret",
            "BEARER  s3cret-s3cret-s3cret",
        ] {
            let mut headers = axum::http::HeaderMap::new();
            headers.insert("authorization", value.parse().unwrap());
            assert!(key.check(&headers).is_ok(), "{value}");
        }
        let mut basic = axum::http::HeaderMap::new();
        basic.insert(
            "authorization",
            "Basic s3cret-s3cret-s3cret".parse().unwrap(),
        );
        assert!(key.check(&basic).is_err());
    }

    #[test]
    fn a_key_given_by_its_hash_accepts_the_key() {
        // printf %s s3cret | sha256sum
        let key = ApiKey::from_sha256_hex(
            "1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0",
        )
        .unwrap();
        assert!(key.accepts("s3cret"));
        assert!(!key.accepts("s3cret "));
        assert!(ApiKey::from_sha256_hex("abc").is_err());
        assert!(ApiKey::from_sha256_hex(&"zz".repeat(32)).is_err());
    }
}
