//! Authentication and the first line of authorization, for every route of
//! the API: who the request acts for (an `X-API-Key`, an `Authorization:
//! Bearer` API key or JWT, or the session cookie), the CSRF check of
//! cookie-authenticated changes, the rate limit, and ([`least_role`]) the
//! role a method needs at least (reads: any; changes: `user`). Handlers
//! take the [`Principal`] and check what only they can (ownership, queue
//! permissions, admin).

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;
use super::guard::same_origin;
use crate::Deps;
use crate::domain::identity::{Action, Credential, Principal};
pub use crate::keys::ApiKey;
use crate::service::identity::limits::{self, Admission};
use crate::service::identity::{self, Denied, Presented};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "warren_session";

/// What the request presents, in this order: `X-API-Key`, `Authorization:
/// Bearer` (the scheme in any case, as RFC 7235 has it), the session cookie.
pub fn presented(headers: &HeaderMap) -> Presented {
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(key) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Presented::Key(key.to_string());
    }
    if let Some(value) = text(header::AUTHORIZATION)
        && let Some((scheme, credentials)) = value.trim_start().split_once(' ')
        && scheme.eq_ignore_ascii_case("bearer")
    {
        return Presented::Bearer(credentials.trim().to_string());
    }
    match session_token(headers) {
        Some(token) => Presented::Session(token),
        None => Presented::Nothing,
    }
}

/// The session cookie's value, if the request carries one.
pub fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim().to_string())
}

/// The client's address: the connection's peer (`warren dev`), or the
/// source API Gateway saw (Lambda).
pub fn client_ip(parts: &axum::http::Extensions) -> Option<IpAddr> {
    if let Some(ConnectInfo(addr)) = parts.get::<ConnectInfo<SocketAddr>>() {
        return Some(addr.ip());
    }
    match parts.get::<lambda_http::request::RequestContext>() {
        Some(lambda_http::request::RequestContext::ApiGatewayV2(ctx)) => {
            ctx.http.source_ip.as_deref()?.parse().ok()
        }
        _ => None,
    }
}

/// 401 in lapinq's words (`error`), with `detail` saying which case.
fn unauthorized(detail: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "unauthorized").with("detail", detail)
}

impl From<Denied> for ApiError {
    fn from(denied: Denied) -> Self {
        match denied {
            Denied::Unauthenticated(detail) => unauthorized(detail),
            Denied::Token(e) => unauthorized(&format!("invalid token: {e}")),
            Denied::Failed(e) => e.into(),
        }
    }
}

/// Middleware of every API route: authenticate, check CSRF, count the
/// request, require the method's least role, then hand the [`Principal`]
/// to the handler. A preflight `OPTIONS` passes untouched (CORS).
pub async fn authenticate(State(deps): State<Deps>, mut req: Request, next: Next) -> Response {
    if req.method() == Method::OPTIONS {
        return next.run(req).await;
    }
    let who = identity::authenticate(&deps, &presented(req.headers())).await;
    let client = client_ip(req.extensions());
    let principal = match who {
        Ok(p) => p,
        Err(denied) => {
            // Failed tries count against the address, so guessing keys is slow too.
            if let Some(refusal) = over_limit(&deps, &address_of(client)).await {
                return refusal;
            }
            return ApiError::from(denied).into_response();
        }
    };
    if principal.credential == Credential::Session
        && let Some(refusal) = cross_site(req.method(), req.headers(), &deps)
    {
        return refusal.into_response();
    }
    let counted = match deps.config.rate_limit {
        0 => None,
        _ => match limits::admit(&deps, &subject_of(&principal, client)).await {
            Ok(a) if a.allowed => Some(a),
            Ok(a) => return refused(a),
            Err(e) => return ApiError::from(e).into_response(),
        },
    };
    req.extensions_mut().insert(principal);
    let mut answer = next.run(req).await;
    if let Some(a) = counted {
        rate_headers(answer.headers_mut(), a);
    }
    answer
}

/// Middleware after [`authenticate`]: reads need any role, changes at
/// least `user` (a viewer only reads).
pub async fn least_role(principal: Principal, req: Request, next: Next) -> Response {
    let needs = match *req.method() {
        Method::GET | Method::HEAD | Method::OPTIONS => Action::Read,
        _ => Action::Write,
    };
    match require(&principal, needs) {
        Ok(()) => next.run(req).await,
        Err(refusal) => refusal.into_response(),
    }
}

/// Who a request is counted as: its user, else its address.
fn subject_of(p: &Principal, client: Option<IpAddr>) -> String {
    match (p.user_id, &p.credential) {
        (Some(user), _) => format!("user:{user}"),
        (None, Credential::BootstrapKey) => "bootstrap".into(),
        (None, _) => address_of(client),
    }
}

fn address_of(client: Option<IpAddr>) -> String {
    client.map_or_else(|| "ip:unknown".into(), |ip| format!("ip:{ip}"))
}

/// 429 when `who` has made its requests of the minute (counting this one).
async fn over_limit(deps: &Deps, who: &str) -> Option<Response> {
    if deps.config.rate_limit == 0 {
        return None;
    }
    match limits::admit(deps, who).await {
        Ok(a) if a.allowed => None,
        Ok(a) => Some(refused(a)),
        Err(e) => Some(ApiError::from(e).into_response()),
    }
}

/// 429 `rate_limited` (`{"error": "rate limit exceeded"}`, as lapinq says
/// it) with `Retry-After` and the IETF `RateLimit` headers.
fn refused(a: Admission) -> Response {
    let mut answer = ApiError {
        retry_after: Some(a.reset),
        ..ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "rate limit exceeded",
        )
    }
    .into_response();
    rate_headers(answer.headers_mut(), a);
    answer
}

/// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers).
fn rate_headers(headers: &mut HeaderMap, a: Admission) {
    let window = limits::WINDOW.as_secs();
    let policy = format!("\"default\";q={};w={window}", a.limit);
    let state = format!("\"default\";r={};t={}", a.remaining, a.reset);
    for (name, value) in [("ratelimit-policy", policy), ("ratelimit", state)] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
}

/// 403 `cross_site` for a change a browser sent from another site: a
/// cookie goes with any request to its site, so a change it authenticates
/// must come from warren's own pages. Requests without `Origin` and
/// `Sec-Fetch-Site` (not from a browser) pass.
pub fn cross_site(method: &Method, headers: &HeaderMap, deps: &Deps) -> Option<ApiError> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return None;
    }
    let text = |name: &str| headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"));
    let host = text(header::HOST.as_str());
    let own = |origin: &str| {
        host.is_some_and(|h| same_origin(origin, h))
            || deps
                .config
                .public_url
                .as_deref()
                .is_some_and(|u| u.trim_end_matches('/').eq_ignore_ascii_case(origin))
    };
    let refusal = || {
        Some(
            ApiError::forbidden("a signed-in change must come from warren's own pages")
                .with_code("cross_site"),
        )
    };
    match text("sec-fetch-site") {
        Some("same-origin") | Some("none") | None => {}
        Some(_) => return refusal(),
    }
    match text(header::ORIGIN.as_str()) {
        Some(origin) if !own(origin) => refusal(),
        _ => None,
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| unauthorized("this route needs credentials"))
    }
}

/// 403 unless `principal` may do `action`.
pub fn require(principal: &Principal, action: Action) -> Result<(), ApiError> {
    if principal.may(action) {
        return Ok(());
    }
    let why = match action {
        Action::Admin => "only an admin may do this".to_string(),
        Action::Queue(queue, act) => format!(
            "your permissions do not allow `{}` on queue `{queue}`",
            act.as_str()
        ),
        Action::Write | Action::Read => {
            format!("the {} role may only read", principal.role.as_str())
        }
    };
    Err(ApiError::forbidden(why))
}

impl ApiKey {
    /// Ok when no key is configured or the headers carry it, else the 401
    /// (`/metrics` with `--metrics-key`).
    pub fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        if !self.is_enabled() {
            return Ok(());
        }
        match presented(headers) {
            Presented::Key(k) | Presented::Bearer(k) if self.accepts(k.trim()) => Ok(()),
            Presented::Key(_) | Presented::Bearer(_) => Err(unauthorized("invalid API key")),
            _ => Err(unauthorized(
                "missing API key: send it in the X-API-Key header",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn credentials_are_read_from_key_bearer_and_cookie_in_that_order() {
        assert_eq!(
            presented(&headers(&[
                ("x-api-key", "k"),
                ("authorization", "Bearer b")
            ])),
            Presented::Key("k".into())
        );
        for value in ["Bearer b", "bearer b", "BEARER  b"] {
            assert_eq!(
                presented(&headers(&[("authorization", value)])),
                Presented::Bearer("b".into()),
                "{value}"
            );
        }
        assert_eq!(
            presented(&headers(&[("authorization", "Basic b")])),
            Presented::Nothing
        );
        assert_eq!(
            presented(&headers(&[("cookie", "a=1; warren_session=ws_x ; b=2")])),
            Presented::Session("ws_x".into())
        );
        assert_eq!(
            presented(&headers(&[
                ("cookie", "a=1"),
                ("cookie", "warren_session=s")
            ])),
            Presented::Session("s".into())
        );
        assert_eq!(presented(&HeaderMap::new()), Presented::Nothing);
    }

    #[test]
    fn cookie_changes_from_other_sites_are_refused() {
        let deps = crate::testing::memory_deps(
            std::sync::Arc::new(crate::adapters::clock::SystemClock),
            crate::handlers::Registry::standard(),
        );
        let post = Method::POST;
        let check = |pairs: &[(&'static str, &str)]| cross_site(&post, &headers(pairs), &deps);
        assert!(check(&[("host", "localhost:8000")]).is_none(), "no browser");
        assert!(
            check(&[
                ("host", "localhost:8000"),
                ("origin", "http://localhost:8000")
            ])
            .is_none()
        );
        assert!(check(&[("host", "h"), ("sec-fetch-site", "same-origin")]).is_none());
        assert!(check(&[("host", "h"), ("origin", "https://evil.example")]).is_some());
        assert!(check(&[("host", "h"), ("sec-fetch-site", "cross-site")]).is_some());
        assert!(check(&[("host", "h"), ("sec-fetch-site", "same-site")]).is_some());
        assert!(check(&[("host", "h"), ("origin", "null")]).is_some());
        let get = cross_site(
            &Method::GET,
            &headers(&[("origin", "https://evil.example")]),
            &deps,
        );
        assert!(get.is_none(), "reads change nothing");
    }
}
