//! CORS for the origins the gateway is told to allow (`--cors-origin`), as
//! lapinq's Starlette middleware answers: a preflight (an `OPTIONS` with
//! `Origin` and `Access-Control-Request-Method`) from an allowed origin gets
//! 200 with what it asked for; other requests from it get
//! `Access-Control-Allow-Origin`. A bare `OPTIONS` is not a preflight and
//! goes on to the routes (405), and nothing is added for other origins.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::guard::AllowedOrigins;

/// How long a browser may cache a preflight's answer, in seconds.
const PREFLIGHT_MAX_AGE: &str = "600";

/// Middleware: answer preflights and mark answers for allowed origins.
pub async fn cors(State(allowed): State<AllowedOrigins>, req: Request, next: Next) -> Response {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .filter(|o| o.to_str().is_ok_and(|o| allowed.allows(o)))
        .cloned();
    let Some(origin) = origin else {
        return next.run(req).await;
    };
    let wildcard = allowed.0.iter().any(|o| o == "*");
    let allow_origin = match wildcard {
        true => HeaderValue::from_static("*"),
        false => origin,
    };
    if req.method() == Method::OPTIONS
        && let Some(method) = req.headers().get(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        let mut answer = StatusCode::OK.into_response();
        let headers = answer.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, method.clone());
        if let Some(asked) = req.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
        }
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static(PREFLIGHT_MAX_AGE),
        );
        mark(headers, allow_origin, wildcard);
        return answer;
    }
    let mut answer = next.run(req).await;
    mark(answer.headers_mut(), allow_origin, wildcard);
    answer.headers_mut().insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("x-next-cursor, link"),
    );
    answer
}

fn mark(headers: &mut HeaderMap, allow_origin: HeaderValue, wildcard: bool) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
    if !wildcard {
        // The answer depends on who asked: caches must keep them apart.
        headers.append(header::VARY, HeaderValue::from_static("origin"));
    }
}
