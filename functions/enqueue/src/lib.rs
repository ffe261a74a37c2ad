//! `POST /api/v1/enqueue`: store one task and queue it.

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;
use utoipa::{OpenApi, ToSchema};
use warren::Deps;
use warren::domain::identity::Principal;
use warren::http::dto::EnqueueRequest;
use warren::http::openapi::{BadRequest, Conflict, Faults, Refused, TooLarge};
use warren::http::{ApiError, JsonBody};
use warren::ports::MAX_MESSAGE_BYTES;
use warren::service::enqueue::{Enqueued, enqueue};

pub fn router(deps: Deps) -> Router {
    let routes = Router::new()
        .route("/api/v1/enqueue", post(enqueue_one))
        .layer(DefaultBodyLimit::max(MAX_MESSAGE_BYTES));
    warren::http::api(&deps, routes)
}

/// What this function's route says of itself in the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    #[derive(OpenApi)]
    #[openapi(paths(enqueue_one))]
    struct Doc;
    Doc::openapi()
}

/// The answer to an enqueue.
#[derive(ToSchema)]
#[allow(dead_code)]
struct EnqueueResponse {
    /// The task's id; null for a `ttl_seconds: 0` task, which runs but is not kept.
    #[schema(required = true)]
    task_id: Option<uuid::Uuid>,
    /// 0, only for a task that is not kept.
    #[schema(required = false)]
    ttl_seconds: u64,
}

/// 201 `{"task_id"}`; 200 with the first task's id for a repeated
/// idempotency key (body field or `Idempotency-Key` header); 201
/// `{"task_id": null, "ttl_seconds": 0}` for a task that is not kept.
#[utoipa::path(
    post,
    path = "/api/v1/enqueue",
    operation_id = "enqueue_task",
    tag = "tasks",
    params(("Idempotency-Key" = Option<String>, Header,
        description = "An idempotency key, when the body names none")),
    request_body = EnqueueRequest,
    responses(
        (status = 201, description = "the task is stored and queued", body = EnqueueResponse),
        (status = 200, description = "the idempotency key was seen: the first task's id", body = EnqueueResponse),
        BadRequest, Conflict, TooLarge, Refused, Faults,
    )
)]
async fn enqueue_one(
    State(deps): State<Deps>,
    who: Principal,
    headers: HeaderMap,
    JsonBody(mut new): JsonBody<EnqueueRequest>,
) -> Result<Response, ApiError> {
    new.owner = who.user_id;
    if new.idempotency_key.is_none() {
        new.idempotency_key = headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
    }
    Ok(match enqueue(&deps, new).await? {
        Enqueued::Created(id) => {
            (StatusCode::CREATED, Json(json!({ "task_id": id }))).into_response()
        }
        Enqueued::Existing(id) => (StatusCode::OK, Json(json!({ "task_id": id }))).into_response(),
        Enqueued::Ephemeral => (
            StatusCode::CREATED,
            Json(json!({ "task_id": null, "ttl_seconds": 0 })),
        )
            .into_response(),
    })
}
