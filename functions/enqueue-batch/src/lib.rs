//! `POST /api/v1/enqueue/batch`: up to 1000 tasks, validated as a whole.

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use utoipa::{OpenApi, ToSchema};
use warren::Deps;
use warren::domain::identity::Principal;
use warren::http::dto::EnqueueRequest;
use warren::http::openapi::{BadRequest, Faults, Refused, TooLarge};
use warren::http::{ApiError, JsonArray};
use warren::service::enqueue::enqueue_batch;

/// Most tasks in one batch.
pub const MAX_BATCH: usize = 1000;
/// Largest batch body: API Gateway's own payload limit (10 MiB), 10 KiB per
/// task of a full batch; each task is still held to the single-task limit.
/// Items are counted as the body is read (see [`JsonArray`]), so what a
/// batch costs in memory is bounded by this and [`MAX_BATCH`].
pub const MAX_BATCH_BYTES: usize = 10 * 1024 * 1024;

pub fn router(deps: Deps) -> Router {
    let routes = Router::new()
        .route("/api/v1/enqueue/batch", post(enqueue_many))
        .layer(DefaultBodyLimit::max(MAX_BATCH_BYTES));
    warren::http::api(&deps, routes)
}

/// What this function's route says of itself in the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    #[derive(OpenApi)]
    #[openapi(paths(enqueue_many))]
    struct Doc;
    Doc::openapi()
}

/// The answer to a batch enqueue.
#[derive(ToSchema)]
#[allow(dead_code)]
struct BatchResponse {
    /// The stored tasks' ids, in order (a `ttl_seconds: 0` task has none).
    task_ids: Vec<uuid::Uuid>,
    #[schema(minimum = 0)]
    count: u64,
}

/// 201 `{"task_ids": [...], "count": n}`: the ids of the stored tasks in
/// order (a `ttl_seconds: 0` task runs but is not stored, so it has none,
/// as lapinq answers); one bad item rejects the whole batch with its
/// index, and nothing is stored.
#[utoipa::path(
    post,
    path = "/api/v1/enqueue/batch",
    operation_id = "enqueue_tasks",
    tag = "tasks",
    request_body(content = Vec<EnqueueRequest>,
        description = "1 to 1000 tasks; an `idempotency_key` is refused here"),
    responses(
        (status = 201, description = "every task is stored and queued", body = BatchResponse),
        BadRequest, TooLarge, Refused, Faults,
    )
)]
async fn enqueue_many(
    State(deps): State<Deps>,
    who: Principal,
    JsonArray(mut batch): JsonArray<EnqueueRequest, MAX_BATCH>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if batch.is_empty() {
        return Err(ApiError::invalid_field("the batch is empty"));
    }
    for task in &mut batch {
        task.owner = who.user_id;
    }
    let ids: Vec<_> = enqueue_batch(&deps, batch)
        .await?
        .into_iter()
        .flatten()
        .collect();
    let count = ids.len();
    Ok((
        StatusCode::CREATED,
        Json(json!({ "task_ids": ids, "count": count })),
    ))
}
