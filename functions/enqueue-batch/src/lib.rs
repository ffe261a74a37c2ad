//! `POST /api/v1/enqueue/batch`: up to 1000 tasks, validated as a whole.

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use warren::Deps;
use warren::http::dto::EnqueueRequest;
use warren::http::{ApiError, JsonArray};
use warren::service::enqueue::{NewTask, enqueue_batch};

/// Most tasks in one batch.
pub const MAX_BATCH: usize = 1000;
/// Largest batch body: room for many typical tasks; each task is still held
/// to the single-task limit.
pub const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;

pub fn router(deps: Deps) -> Router {
    let routes = Router::new()
        .route("/api/v1/enqueue/batch", post(enqueue_many))
        .layer(DefaultBodyLimit::max(MAX_BATCH_BYTES));
    warren::http::api(&deps, routes)
}

/// 201 `{"task_ids": [...], "count": n}`; one bad item rejects the whole
/// batch with its index, and nothing is stored.
async fn enqueue_many(
    State(deps): State<Deps>,
    JsonArray(items): JsonArray<EnqueueRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if items.is_empty() {
        return Err(ApiError::unprocessable("the batch is empty"));
    }
    if items.len() > MAX_BATCH {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            format!(
                "{} tasks in one batch; the limit is {MAX_BATCH}",
                items.len()
            ),
        ));
    }
    let batch = items.into_iter().map(NewTask::from).collect();
    let ids = enqueue_batch(&deps, batch).await?;
    let count = ids.len();
    Ok((
        StatusCode::CREATED,
        Json(json!({ "task_ids": ids, "count": count })),
    ))
}
