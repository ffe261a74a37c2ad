//! Operations endpoints, public by design: `GET /health`, `GET /metrics`
//! and `GET /openapi.json`.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use utoipa::{OpenApi, ToSchema};
use warren::Deps;
use warren::http::ApiError;
use warren::http::openapi::{ErrorBody, Faults};
use warren::ports::Key;

/// The API's OpenAPI document, as committed (docs/openapi.json): the
/// `warren` CLI generates it from the handlers and a test keeps it fresh,
/// so a Lambda serves a string and builds nothing.
pub const OPENAPI_JSON: &str = include_str!("../../../docs/openapi.json");

pub fn router(deps: Deps) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi_json))
        .with_state(deps)
}

/// What the ops routes say of themselves in the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    #[derive(OpenApi)]
    #[openapi(paths(health, metrics, openapi_json))]
    struct Doc;
    Doc::openapi()
}

/// `GET /health` when the store answers.
#[derive(ToSchema)]
#[allow(dead_code)]
struct Healthy {
    #[schema(pattern = "^ok$")]
    status: String,
    #[schema(pattern = "^connected$")]
    database: String,
}

/// `GET /health` when the store does not answer: the error body with
/// `status` and `database`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct Unhealthy {
    #[schema(pattern = "^error$")]
    status: String,
    #[schema(pattern = "^unreachable$")]
    database: String,
    error: String,
    code: String,
}

/// `{"status": "ok", "database": "connected"}`, or 503 when the store does not answer.
#[utoipa::path(
    get,
    path = "/health",
    operation_id = "get_health",
    tag = "ops",
    security(()),
    responses(
        (status = 200, description = "warren and its store answer", body = Healthy),
        (status = 503, description = "the store does not answer", body = Unhealthy),
    )
)]
async fn health(State(deps): State<Deps>) -> Response {
    match deps.store.get(&Key::new("HEALTH", "HEALTH")).await {
        Ok(_) => Json(json!({ "status": "ok", "database": "connected" })).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check: store unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "error", "database": "unreachable", "code": "unavailable", "error": "store unreachable" })),
            )
                .into_response()
        }
    }
}

/// Prometheus text: task counts per queue and status, counters, durations.
/// With a metrics key configured, only for scrapers that present it
/// (`Authorization: Bearer`, as Prometheus sends it, or `X-API-Key`).
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "get_metrics",
    tag = "ops",
    security((), ("api_key" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "Prometheus text exposition (0.0.4)", body = String,
            content_type = "text/plain; version=0.0.4"),
        (status = 401, description = "a metrics key is configured and the request does not present it", body = ErrorBody),
        Faults,
    )
)]
async fn metrics(State(deps): State<Deps>, headers: HeaderMap) -> Result<Response, ApiError> {
    deps.config.metrics_key.check(&headers)?;
    let queues = deps.tasks().queue_stats().await?;
    let body = deps.metrics.render(&queues);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response())
}

/// This API's OpenAPI 3.1 document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "get_openapi",
    tag = "ops",
    security(()),
    responses((status = 200, description = "the OpenAPI 3.1 document of this API", body = Object))
)]
async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON).into_response()
}
