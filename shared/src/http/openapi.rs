//! What the OpenAPI document (docs/openapi.json) says of every route's
//! errors: the one error body and the answers that carry it. Only the
//! `warren` CLI builds the document; nothing here runs in a Lambda.

use utoipa::{IntoResponses, ToSchema};

use crate::domain::pipeline::SchemaViolation;

/// Every error answer ([`ApiError`](super::ApiError)): a message and a
/// code, and for some errors more fields saying where.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    /// What went wrong, for people.
    error: String,
    /// What went wrong, for programs: `invalid_json`, `invalid_field`,
    /// `not_found`, `unauthorized`, `rate_limited`, ...
    code: String,
    /// Which case of a 401 it is (`missing API key`, `invalid token: ...`).
    #[schema(required = false)]
    detail: String,
    /// The request field that is wrong (`invalid_field`).
    #[schema(required = false)]
    field: String,
    /// The batch item that is wrong.
    #[schema(required = false)]
    index: u64,
    /// Where and how an event breaks its pipeline's schema (`invalid_event`).
    #[schema(required = false)]
    violations: Vec<SchemaViolation>,
}

/// What any route behind authentication may answer besides its own:
/// no or bad credentials, not allowed, too many requests.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum Refused {
    /// No credentials, or credentials warren does not accept (`detail` says which).
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The caller's role or permissions do not allow this (`forbidden`), or
    /// a signed-in change came from another site (`cross_site`).
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// Over the rate limit (`rate_limited`); `Retry-After` says when to retry.
    #[response(status = 429, headers(("Retry-After" = u64, description = "Seconds to wait")))]
    RateLimited(ErrorBody),
}

/// What any route may answer when warren or its store fails.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum Faults {
    /// A fault of warren's; the body says no more than `internal error`.
    #[response(status = 500)]
    Internal(ErrorBody),
    /// The store does not answer (`unavailable`): retry later.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// 400: a path, query or body warren cannot read (`invalid_path`,
/// `invalid_query`, `invalid_json`, `invalid_field`, `too_deep`, ...).
#[derive(IntoResponses)]
#[response(status = 400)]
pub struct BadRequest(#[allow(dead_code)] ErrorBody);

/// 404: no such thing, or none the caller may see (`not_found`).
#[derive(IntoResponses)]
#[response(status = 404)]
pub struct NotFound(#[allow(dead_code)] ErrorBody);

/// 409: the request conflicts with what is stored.
#[derive(IntoResponses)]
#[response(status = 409)]
pub struct Conflict(#[allow(dead_code)] ErrorBody);

/// 413: the body (or a batch) is larger than the route takes
/// (`payload_too_large`, `batch_too_large`).
#[derive(IntoResponses)]
#[response(status = 413)]
pub struct TooLarge(#[allow(dead_code)] ErrorBody);

/// 422: well-formed, but not what this route takes (`invalid_event`
/// with the `violations`).
#[derive(IntoResponses)]
#[response(status = 422)]
pub struct Unprocessable(#[allow(dead_code)] ErrorBody);
