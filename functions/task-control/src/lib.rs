//! Changing tasks: progress reports, cancel, requeue, bulk delete. A
//! `user` cancels, requeues and bulk-deletes only where its per-queue
//! permissions say; an admin anywhere.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, patch, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use warren::Deps;
use warren::ServiceError;
use warren::domain::TaskStatus;
use warren::domain::identity::{Action, Principal, QueueAction};
use warren::http::dto::{TaskResponse, number, task_id};
use warren::http::{ApiError, JsonBody, Params, Path, decode_cursor, encode_cursor, require};
use warren::service::control;
use warren::table::tasks::TaskFilter;

pub fn router(deps: Deps) -> Router {
    let routes = Router::new()
        .route("/api/v1/tasks/{id}/progress", patch(progress))
        .route("/api/v1/tasks/{id}", delete(cancel))
        .route("/api/v1/tasks/{id}/requeue", post(requeue))
        .route("/api/v1/tasks", delete(delete_many));
    warren::http::api(&deps, routes)
}

#[derive(Deserialize)]
struct ProgressRequest {
    #[serde(default)]
    progress: Option<Value>,
    #[serde(default)]
    message: Option<String>,
}

/// 200 `{"status": "ok", "id", "progress", "progress_message"}` (lapinq's
/// answer, with what was stored), whatever the task's status; 400 unless
/// `progress` is a number from 0 to 100.
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

fn not_in_state(e: ServiceError, code: &'static str, message: &str) -> ApiError {
    match e {
        ServiceError::Conflict {
            code: "invalid_transition",
            message: detail,
        } => ApiError::new(StatusCode::NOT_FOUND, code, format!("{message} ({detail})")),
        other => other.into(),
    }
}

#[derive(Deserialize)]
struct DeleteParams {
    queue: Option<String>,
    status: Option<String>,
    task_name: Option<String>,
    args: Option<String>,
    result: Option<String>,
    error: Option<String>,
    /// Delete every task: required when no filter is given.
    #[serde(default)]
    all: bool,
    cursor: Option<String>,
}

/// Delete the tasks matching the filters, at most 1000 per call:
/// `{"deleted": n, "more": false}`, or with `"more": true` and a `cursor`
/// to pass to the next call. Without any filter, `all=true` is required.
/// An admin deletes anything; a `user` only by a `queue` its permissions
/// let it delete on.
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
        && filter.status.is_none()
        && filter.task_name.is_none()
        && filter.args.is_none()
        && filter.result.is_none()
        && filter.error.is_none();
    if unfiltered && !p.all {
        return Err(ApiError::bad_request(
            "filter_required",
            "name a filter (queue, status, task_name, args, result, error), or pass all=true to delete every task",
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
