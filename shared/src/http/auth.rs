//! API authentication: an `X-API-Key` header (or `Authorization: Bearer`)
//! checked against the configured [`ApiKey`].

use super::ApiError;
pub use crate::keys::ApiKey;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

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
}
