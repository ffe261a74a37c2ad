//! Changing tasks: progress reports, cancel, requeue, bulk delete. A
//! `user` cancels, requeues and bulk-deletes only where its per-queue
//! permissions say; an admin anywhere.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, patch, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, OpenApi, ToSchema};
use warren::Deps;
use warren::ServiceError;
use warren::domain::TaskStatus;
use warren::domain::identity::{Action, Principal, QueueAction};
use warren::http::dto::{TaskResponse, number, task_id};
use warren::http::openapi::{BadRequest, Conflict, Faults, NotFound, Refused, TooLarge};
use warren::http::{ApiError, JsonBody, Params, Path, decode_cursor, encode_cursor, require};
use warren::service::control;
use warren::table::tasks::TaskFilter;

pub fn router(deps: Deps) -> Router {
    let routes = Router::new()
        .route("/api/v1/tasks/{id}/progress", patch(progress))
        .route("/api/v1/tasks/{id}", delete(cancel))
        .route("/api/v1/tasks/{id}/requeue", post(requeue))
        .route("/api/v1/tasks/failed/requeue", post(requeue_group))
        .route("/api/v1/tasks", delete(delete_many));
    warren::http::api(&deps, routes)
}

/// What this function's routes say of themselves in the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    #[derive(OpenApi)]
    #[openapi(paths(progress, cancel, requeue, requeue_group, delete_many))]
    struct Doc;
    Doc::openapi()
}

/// A progress report.
#[derive(Deserialize, ToSchema)]
struct ProgressRequest {
    /// 0 to 100, fractions allowed (required; anything but a number is refused).
    #[serde(default)]
    #[schema(value_type = f64, minimum = 0, maximum = 100, required = true)]
    progress: Option<Value>,
    #[serde(default)]
    message: Option<String>,
}

/// `PATCH /api/v1/tasks/{id}/progress`: what was stored.
#[derive(ToSchema)]
#[allow(dead_code)]
struct ProgressAnswer {
    #[schema(pattern = "^ok$")]
    status: String,
    id: uuid::Uuid,
    #[schema(required = true)]
    progress: Option<f64>,
    #[schema(required = true)]
    progress_message: Option<String>,
}

/// `POST /api/v1/tasks/{id}/requeue`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct Requeued {
    #[schema(pattern = "^requeued$")]
    status: String,
    id: uuid::Uuid,
}

/// `DELETE /api/v1/tasks`: how many went, and where to go on.
#[derive(ToSchema)]
#[allow(dead_code)]
struct Deleted {
    #[schema(minimum = 0)]
    deleted: u64,
    /// More tasks match: call again with `cursor`.
    more: bool,
    /// Only with `"more": true`.
    #[schema(required = false)]
    cursor: String,
}

/// 200 `{"status": "ok", "id", "progress", "progress_message"}` (lapinq's
/// answer, with what was stored), whatever the task's status; 400 unless
/// `progress` is a number from 0 to 100.
#[utoipa::path(
    patch,
    path = "/api/v1/tasks/{id}/progress",
    operation_id = "report_task_progress",
    tag = "tasks",
    params(("id" = uuid::Uuid, Path, description = "the task's id")),
    request_body = ProgressRequest,
    responses(
        (status = 200, description = "the progress is stored", body = ProgressAnswer),
        BadRequest, NotFound, Conflict, TooLarge, Refused, Faults,
    )
)]
async fn progress(
    State(deps): State<Deps>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ProgressRequest>,
) -> Result<Json<Value>, ApiError> {
    let id = task_id(&id)?;
    let Some(progress) = body.progress.as_ref().and_then(Value::as_f64) else {
        return Err(
            ApiError::invalid_field("progress is required (0-100)").with("field", "progress")
        );
    };
    let task = control::progress(&deps, id, progress, body.message)
        .await
        .map_err(|e| ApiError::from(e).with("field", "progress"))?;
    Ok(Json(json!({
        "status": "ok",
        "id": task.id,
        "progress": task.progress.map(number),
        "progress_message": task.progress_message,
    })))
}

/// Cancel a pending task: 200 with the task; 404 if there is no pending task
/// with that id (as the lapinq API answers), with a code saying which.
#[utoipa::path(
    delete,
    path = "/api/v1/tasks/{id}",
    operation_id = "cancel_task",
    tag = "tasks",
    params(("id" = uuid::Uuid, Path, description = "the task's id")),
    responses(
        (status = 200, description = "the cancelled task", body = TaskResponse),
        BadRequest, NotFound, Conflict, Refused, Faults,
    )
)]
async fn cancel(
    State(deps): State<Deps>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Json<TaskResponse>, ApiError> {
    let id = task_id(&id)?;
    let task = control::cancel(&deps, id, &who).await.map_err(|e| {
        not_in_state(
            e,
            "task_not_pending",
            "only a pending task can be cancelled",
        )
    })?;
    Ok(Json(task.into()))
}

/// Requeue a failed task: 200 `{"status": "requeued", "id"}` (lapinq's
/// answer); 404 unless it is failed.
#[utoipa::path(
    post,
    path = "/api/v1/tasks/{id}/requeue",
    operation_id = "requeue_task",
    tag = "tasks",
    params(("id" = uuid::Uuid, Path, description = "the task's id")),
    responses(
        (status = 200, description = "the task is queued again", body = Requeued),
        BadRequest, NotFound, Conflict, Refused, Faults,
    )
)]
async fn requeue(
    State(deps): State<Deps>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = task_id(&id)?;
    let task = control::requeue(&deps, id, &who)
        .await
        .map_err(|e| not_in_state(e, "task_not_failed", "only a failed task can be requeued"))?;
    Ok(Json(json!({ "status": "requeued", "id": task.id })))
}

/// Which failed tasks to requeue together.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct GroupRequeue {
    /// The group's fingerprint (`GET /api/v1/tasks/failed/groups`).
    #[schema(pattern = "^[0-9a-f]{16}$")]
    fingerprint: String,
    /// Only this queue's tasks of the group.
    #[serde(default)]
    queue: Option<String>,
    /// Only tasks that failed at or before this time (when the page that
    /// asks was shown): a repeated click requeues nothing new.
    #[serde(default)]
    failed_before: Option<chrono::DateTime<chrono::Utc>>,
}

/// Requeue every failed task of one error group at once: `{"requeued",
/// "forbidden", "skipped"}`. Each task moves failed → pending only once,
/// however often the call is repeated; tasks on queues the caller may not
/// requeue on are counted in `forbidden` (403 when that is all of them).
#[utoipa::path(
    post,
    path = "/api/v1/tasks/failed/requeue",
    operation_id = "requeue_failed_group",
    tag = "tasks",
    request_body = GroupRequeue,
    responses(
        (status = 200, description = "the group's tasks are queued again",
            body = warren::service::failed::GroupRequeued),
        BadRequest, Refused, TooLarge, Faults,
    )
)]
async fn requeue_group(
    State(deps): State<Deps>,
    who: Principal,
    JsonBody(body): JsonBody<GroupRequeue>,
) -> Result<Json<warren::service::failed::GroupRequeued>, ApiError> {
    let fp = &body.fingerprint;
    if fp.len() != 16 || !fp.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(ApiError::bad_request(
            "invalid_field",
            "fingerprint must be 16 lowercase hex digits",
        ));
    }
    let queue = body.queue.filter(|q| !q.is_empty());
    let done =
        warren::service::failed::requeue_group(&deps, &who, fp, queue, body.failed_before).await?;
    Ok(Json(done))
}

fn not_in_state(e: ServiceError, code: &'static str, message: &str) -> ApiError {
    match e {
        ServiceError::Conflict {
            code: "invalid_transition",
            message: detail,
        } => ApiError::new(StatusCode::NOT_FOUND, code, format!("{message} ({detail})")),
        other => other.into(),
    }
}

/// Which tasks to delete; an empty value is no filter.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct DeleteParams {
    /// Only this queue's tasks.
    queue: Option<String>,
    /// Only tasks whose id contains this (any case).
    id: Option<String>,
    /// Only tasks in this status.
    #[param(value_type = Option<TaskStatus>)]
    status: Option<String>,
    /// Only tasks whose name contains this (any case).
    task_name: Option<String>,
    /// Only tasks whose args (as JSON) contain this (any case).
    args: Option<String>,
    /// Only tasks whose result contains this (any case).
    result: Option<String>,
    /// Only tasks whose error contains this (any case).
    error: Option<String>,
    /// Delete every task: required when no filter is given.
    #[serde(default)]
    all: bool,
    /// Where to go on: the `cursor` of the previous answer.
    cursor: Option<String>,
}

/// Delete the tasks matching the filters, at most 1000 per call:
/// `{"deleted": n, "more": false}`, or with `"more": true` and a `cursor`
/// to pass to the next call. Without any filter, `all=true` is required.
/// An admin deletes anything; a `user` only by a `queue` its permissions
/// let it delete on.
#[utoipa::path(
    delete,
    path = "/api/v1/tasks",
    operation_id = "delete_tasks",
    tag = "tasks",
    params(DeleteParams),
    responses(
        (status = 200, description = "the matching tasks (at most 1000) are deleted", body = Deleted),
        BadRequest, Refused, Faults,
    )
)]
async fn delete_many(
    State(deps): State<Deps>,
    who: Principal,
    Params(p): Params<DeleteParams>,
) -> Result<Json<Value>, ApiError> {
    let nonempty = |s: Option<String>| s.filter(|v| !v.is_empty());
    let status = match nonempty(p.status) {
        Some(s) => Some(
            s.parse::<TaskStatus>()
                .map_err(|e| ApiError::bad_request("invalid_query", e))?,
        ),
        None => None,
    };
    let filter = TaskFilter {
        queue: nonempty(p.queue),
        id: nonempty(p.id),
        status,
        task_name: nonempty(p.task_name),
        args: nonempty(p.args),
        result: nonempty(p.result),
        error: nonempty(p.error),
        before: match nonempty(p.cursor) {
            Some(c) => Some(decode_cursor(&c)?),
            None => None,
        },
    };
    let unfiltered = filter.queue.is_none()
        && filter.id.is_none()
        && filter.status.is_none()
        && filter.task_name.is_none()
        && filter.args.is_none()
        && filter.result.is_none()
        && filter.error.is_none();
    if unfiltered && !p.all {
        return Err(ApiError::bad_request(
            "filter_required",
            "name a filter (queue, id, status, task_name, args, result, error), or pass all=true to delete every task",
        ));
    }
    match &filter.queue {
        _ if who.is_admin() => {}
        Some(queue) => require(&who, Action::Queue(queue, QueueAction::Delete))?,
        None => require(&who, Action::Admin)?,
    }
    let done = control::delete_matching(&deps, &filter).await?;
    Ok(Json(match done.next {
        None => json!({ "deleted": done.deleted, "more": false }),
        Some(cursor) => {
            json!({ "deleted": done.deleted, "more": true, "cursor": encode_cursor(&cursor) })
        }
    }))
}
