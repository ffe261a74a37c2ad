//! What every HTTP function shares: the one error type, the JSON and query
//! extractors that turn bad input into clear 4xx answers, authentication,
//! and the task DTOs of the wire API.

pub mod auth;
pub mod cors;
pub mod dto;
pub mod guard;
pub mod openapi;
pub mod trace_context;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::json::MAX_INPUT_DEPTH;
use crate::ports::StoreError;
use crate::service::ServiceError;

pub use auth::{ApiKey, authenticate, require};

/// An error answer: `{"error": "...", "code": "..."}` plus optional fields.
/// Server faults answer a fixed 500 body; their cause goes to the log only.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub extra: Map<String, Value>,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error answer with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            extra: Map::new(),
            retry_after: None,
        }
    }

    /// 400 with this code and message.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 400 `invalid_field`: a well-formed request whose fields are not
    /// acceptable (lapinq answers 400 to both kinds of bad request).
    pub fn invalid_field(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_field", message)
    }

    /// 403 `forbidden` with this message: the caller may not do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404 `not_found` with this message.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }

    /// The same answer with another code.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = code;
        self
    }

    /// The same answer with one more field.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.into(), value.into());
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = self.extra;
        body.insert("error".into(), Value::from(self.message));
        body.insert("code".into(), Value::from(self.code));
        let mut answer = (self.status, axum::Json(Value::Object(body))).into_response();
        if let Some(seconds) = self.retry_after {
            answer
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        answer
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::NotFound(what) => ApiError::not_found(what),
            ServiceError::Conflict { message, code } => {
                ApiError::new(StatusCode::CONFLICT, code, message)
            }
            ServiceError::Invalid {
                message,
                code: "payload_too_large",
            } => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message),
            ServiceError::Invalid { message, code } => {
                ApiError::new(StatusCode::BAD_REQUEST, code, message)
            }
            ServiceError::Store(StoreError::Conflict { .. }) => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                "the resource changed concurrently; retry",
            ),
            ServiceError::Store(StoreError::Invalid(m)) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", m)
            }
            ServiceError::Store(e) => {
                tracing::error!(error = ?e, "store failed");
                match io_kind(&e) {
                    // Nothing was written (a store commits whole or not at
                    // all) and a retry helps once space is freed: 507, the
                    // status WebDAV defined for exactly this.
                    Some(
                        std::io::ErrorKind::StorageFull
                        | std::io::ErrorKind::QuotaExceeded
                        | std::io::ErrorKind::FileTooLarge,
                    ) => ApiError::new(
                        StatusCode::INSUFFICIENT_STORAGE,
                        "insufficient_storage",
                        "the server's disk is full: nothing was written; retry once space is freed",
                    ),
                    Some(std::io::ErrorKind::ReadOnlyFilesystem) => ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "storage_read_only",
                        "the server's storage is read-only: nothing was written; retry later",
                    ),
                    _ => ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "unavailable",
                        "storage is unavailable; retry later",
                    ),
                }
            }
            ServiceError::Forbidden(message) => ApiError::forbidden(message),
            ServiceError::Limited {
                message,
                code,
                retry_after,
            } => ApiError {
                retry_after,
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, message)
            },
            ServiceError::Unavailable { message, code } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
            }
            // The backend failed after its own retries: a retry later may
            // well pass (at-least-once: a retried publish may run twice).
            ServiceError::Queue(e @ crate::ports::QueueError::Unavailable(_)) => {
                tracing::error!(error = ?e, "queue failed");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the queue is unavailable; retry later",
                )
            }
            // A message warren built breaks a queue limit: its own bug.
            ServiceError::Queue(e) => ApiError::internal(&e),
            ServiceError::Crashed(e) => ApiError::internal(&e),
        }
    }
}

/// The kind of the I/O error behind a store failure, if one is.
fn io_kind(e: &StoreError) -> Option<std::io::ErrorKind> {
    let mut cause = std::error::Error::source(e);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        cause = e.source();
    }
    None
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ServiceError::Store(e).into()
    }
}

/// Parse a JSON object body into `T`: 400 `invalid_json` for malformed text
/// (whatever else is wrong with it), 400 `too_deep` past
/// [`MAX_INPUT_DEPTH`], else 400 `invalid_field` naming the field. Objects
/// only: serde would otherwise take an array as a struct's fields in order,
/// which no client means.
pub fn parse_json<T: DeserializeOwned>(text: &[u8]) -> Result<T, ApiError> {
    expect_start(text, b'{', "the body must be a JSON object")?;
    check_depth(text)?;
    let mut de = serde_json::Deserializer::from_slice(text);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        if !well_formed(text) {
            return malformed(text);
        }
        let path = e.path().to_string();
        let inner = e.into_inner();
        let reason = inner.to_string();
        // serde's "missing field `x` at line 1 column 9", in lapinq's words.
        if let Some(field) = reason
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
        {
            let field = match path.as_str() {
                "." | "" => field.to_string(),
                outer => format!("{outer}.{field}"),
            };
            return ApiError::invalid_field(format!("{field} is required")).with("field", field);
        }
        if path == "." || path.is_empty() {
            ApiError::invalid_field(format!("invalid body: {inner}"))
        } else {
            // serde_json appends where in the text it was; the field says more.
            let reason = reason.split(" at line ").next().unwrap_or(&reason);
            let message = match reason.starts_with("must ") {
                true => format!("{path} {reason}"), // "metadata must be a JSON object"
                false => format!("{path}: {reason}"),
            };
            ApiError::invalid_field(message).with("field", path)
        }
    })?;
    de.end().map_err(|_| malformed(text))?;
    Ok(value)
}

/// Any JSON value (object, array, scalar): 400 `invalid_json` when the body
/// is empty or malformed, 400 `too_deep` past [`MAX_INPUT_DEPTH`].
pub fn parse_any_json(text: &[u8]) -> Result<Value, ApiError> {
    if text.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "invalid_json",
            "request body is empty; JSON expected",
        ));
    }
    check_depth(text)?;
    serde_json::from_slice(text).map_err(|_| malformed(text))
}

/// 400 `too_deep` when the text nests deeper than any item may be stored
/// (checked before parsing, so a hostile document costs one scan).
fn check_depth(text: &[u8]) -> Result<(), ApiError> {
    match crate::json::text_deeper_than(text, MAX_INPUT_DEPTH) {
        false => Ok(()),
        true => Err(ApiError::bad_request(
            "too_deep",
            format!("JSON nests deeper than {MAX_INPUT_DEPTH} levels"),
        )),
    }
}

/// Whether `text` is syntactically valid JSON (checked only on error paths).
fn well_formed(text: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(text).is_ok()
}

fn malformed(text: &[u8]) -> ApiError {
    match serde_json::from_slice::<serde::de::IgnoredAny>(text) {
        Err(e) => malformed_because(&e),
        Ok(_) => ApiError::bad_request("invalid_json", "malformed JSON"),
    }
}

fn malformed_because(e: &dyn std::fmt::Display) -> ApiError {
    ApiError::bad_request("invalid_json", format!("malformed JSON: {e}"))
}

/// The JSON text must open with `open` (`{` or `[`): else 400 if it is
/// empty or malformed, 422 with `shape` if it is well-formed JSON of another kind.
fn expect_start(text: &[u8], open: u8, shape: &str) -> Result<(), ApiError> {
    match text.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b) if *b == open => Ok(()),
        None => Err(ApiError::bad_request(
            "invalid_json",
            "request body is empty; JSON expected",
        )),
        Some(_) if well_formed(text) => Err(ApiError::invalid_field(shape)),
        Some(_) => Err(malformed(text)),
    }
}

/// A JSON object body, whatever its content type (clients of the task API do
/// not all send one). Over the route's body limit answers 413.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(req, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// A JSON array body of at most `MAX` items, each an object read as `T`; a
/// bad item answers 422 naming its index, one item too many 413
/// `batch_too_large`.
pub struct JsonArray<T, const MAX: usize>(pub Vec<T>);

impl<S: Send + Sync, T: DeserializeOwned, const MAX: usize> FromRequest<S> for JsonArray<T, MAX> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(req, state).await?;
        parse_array(&bytes, MAX).map(JsonArray)
    }
}

/// Parse a JSON array of at most `max` objects into `T`s. Items are counted
/// while the text is read, and the reading stops at the first one too many,
/// so a body of a million tiny items costs no more than `max` of them.
pub fn parse_array<T: DeserializeOwned>(text: &[u8], max: usize) -> Result<Vec<T>, ApiError> {
    use serde::de::Deserializer as _;
    expect_start(text, b'[', "the body must be a JSON array")?;
    check_depth(text)?;
    // Borrowed raw items: each is read straight into `T` afterwards,
    // without building a JSON tree first.
    let too_many = std::cell::Cell::new(false);
    let mut de = serde_json::Deserializer::from_slice(text);
    let items = de
        .deserialize_seq(CappedItems {
            max,
            too_many: &too_many,
        })
        .and_then(|items| de.end().map(|()| items));
    let items = match items {
        Ok(items) => items,
        Err(_) if too_many.get() => {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "batch_too_large",
                format!("more than {max} items in one request; the limit is {max}"),
            ));
        }
        Err(e) => return Err(malformed_because(&e)),
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            parse_json(item.get().as_bytes()).map_err(|e| {
                let message = format!("item {i}: {}", e.message);
                ApiError { message, ..e }.with("index", i)
            })
        })
        .collect()
}

/// The raw items of a JSON array, refusing the one past `max` (and saying
/// so in `too_many`, to tell that apart from malformed text).
struct CappedItems<'a> {
    max: usize,
    too_many: &'a std::cell::Cell<bool>,
}

impl<'de> serde::de::Visitor<'de> for CappedItems<'_> {
    type Value = Vec<&'de serde_json::value::RawValue>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(self.max.min(1024));
        while let Some(item) = seq.next_element()? {
            if items.len() == self.max {
                self.too_many.set(true);
                return Err(serde::de::Error::custom("too many items"));
            }
            items.push(item);
        }
        Ok(items)
    }
}

/// Any JSON value body (object, array, scalar): 400 `invalid_json` when it
/// is empty or malformed, 413 over the route's body limit.
pub struct AnyJson(pub Value);

impl<S: Send + Sync> FromRequest<S> for AnyJson {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(req, state).await?;
        parse_any_json(&bytes).map(AnyJson)
    }
}

/// The raw body, whatever it holds; over the route's body limit answers
/// 413 as JSON, like every other error.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        body_bytes(req, state).await.map(RawBody)
    }
}

async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "request body is too large",
            )
        } else {
            ApiError::bad_request("invalid_body", e.body_text())
        }
    })
}

/// A path parameter, answering 400 `invalid_path` as JSON when it does not
/// decode (a `%FF` that is not UTF-8), like every other error.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))
    }
}

/// Query parameters, answering 400 with the reason when they do not parse.
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| Params(q.0))
            .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))
    }
}

/// A request path fit for logs: a hook's token (its credential) masked.
pub fn redacted_path(path: &str) -> std::borrow::Cow<'_, str> {
    match path.strip_prefix("/hooks/") {
        Some(token) if !token.is_empty() => "/hooks/<token>".into(),
        _ => path.into(),
    }
}

/// JSON 404 and 405 answers for paths and methods no route serves.
pub fn with_fallbacks(router: Router) -> Router {
    router
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route",
            )
        })
}

/// Finish an API router: every route is [`authenticate`]d (and so rate
/// limited) and needs the method's [`least_role`](auth::least_role), gets
/// the shared dependencies as state, and answers as [`private`].
pub fn api(deps: &crate::Deps, routes: Router<crate::Deps>) -> Router {
    authenticated(
        deps,
        routes.route_layer(axum::middleware::from_fn(auth::least_role)),
    )
}

/// [`api`] without the method's least role: for routes every role may
/// use to change its own things (its password, its keys); their handlers
/// check the rest.
pub fn authenticated(deps: &crate::Deps, routes: Router<crate::Deps>) -> Router {
    private(
        routes
            .route_layer(axum::middleware::from_fn_with_state(
                deps.clone(),
                authenticate,
            ))
            .with_state(deps.clone()),
    )
}

/// Answers that may carry tokens, keys or task data: never cached, never
/// sniffed as another content type by a browser.
pub fn private(routes: Router) -> Router {
    routes
        .layer(axum::middleware::map_response(
            |mut answer: Response| async move {
                use axum::http::{HeaderValue, header};
                let headers = answer.headers_mut();
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                headers.insert(
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                );
                answer
            },
        ))
        .layer(trace_context::ContinueTraceLayer)
}

/// Decode a list cursor from a query parameter.
pub fn decode_cursor(raw: &str) -> Result<String, ApiError> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| ApiError::bad_request("invalid_cursor", "cursor is not one this API issued"))
}

/// A JSON array answer of one list page; when more follow, `X-Next-Cursor`
/// and a `Link` header (rel="next", the request's query with the cursor)
/// say where.
pub fn page_response<T: serde::Serialize>(
    uri: &axum::http::Uri,
    items: Vec<T>,
    next: Option<String>,
) -> Response {
    use axum::http::{HeaderMap, HeaderValue};
    let mut headers = HeaderMap::new();
    if let Some(next) = next {
        let cursor = encode_cursor(&next);
        let query: Vec<String> = uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|kv| !kv.is_empty() && !kv.starts_with("cursor="))
            .map(str::to_string)
            .chain([format!("cursor={cursor}")])
            .collect();
        let link = format!("<{}?{}>; rel=\"next\"", uri.path(), query.join("&"));
        if let (Ok(c), Ok(l)) = (HeaderValue::from_str(&cursor), HeaderValue::from_str(&link)) {
            headers.insert("x-next-cursor", c);
            headers.insert(axum::http::header::LINK, l);
        }
    }
    (headers, axum::Json(items)).into_response()
}

/// Encode a list cursor for a response header.
pub fn encode_cursor(sort_key: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sort_key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::QueueError;

    #[test]
    fn a_queue_that_fails_after_its_retries_answers_503_not_500() {
        let down = ApiError::from(ServiceError::Queue(QueueError::Unavailable(
            "throttled".into(),
        )));
        assert_eq!((down.status.as_u16(), down.code), (503, "unavailable"));
        let ours = ApiError::from(ServiceError::Queue(QueueError::Invalid("too big".into())));
        assert_eq!(ours.status.as_u16(), 500);
    }
}
