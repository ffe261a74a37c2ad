//! Operations endpoints, public by design: `GET /health` and `GET /metrics`.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use warren::Deps;
use warren::http::ApiError;
use warren::ports::Key;

pub fn router(deps: Deps) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(deps)
}

/// `{"status": "ok", "database": "connected"}`, or 503 when the store does not answer.
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
async fn metrics(State(deps): State<Deps>, headers: HeaderMap) -> Result<Response, ApiError> {
    deps.config.metrics_key.check(&headers)?;
    let queues = deps.tasks().queue_stats().await?;
    let body = deps.metrics.render(&queues);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response())
}
