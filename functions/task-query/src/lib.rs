//! Reading tasks: one task, its result, lists (filtered, newest first, with a
//! cursor), the failed list (dead letters), and per-queue counts.

use axum::extract::State;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, OpenApi, ToSchema};
use warren::Deps;
use warren::domain::TaskStatus;
use warren::http::dto::{TaskResponse, TaskResultResponse, task_id};
use warren::http::openapi::{BadRequest, Faults, NotFound, Refused};
use warren::http::{ApiError, Params, Path, decode_cursor, page_response};
use warren::service::control::is_finished;
use warren::table::tasks::TaskFilter;

/// Page size when the client names none, and the most one page holds.
pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 1000;

pub fn router(deps: Deps) -> Router {
    let routes = Router::new()
        .route("/api/v1/tasks", get(list))
        .route("/api/v1/tasks/failed", get(list_failed))
        .route("/api/v1/tasks/failed/groups", get(failed_groups))
        .route("/api/v1/tasks/{id}", get(one))
        .route("/api/v1/tasks/{id}/result", get(result))
        .route("/api/v1/queues", get(queues));
    warren::http::api(&deps, routes)
}

/// What this function's routes say of themselves in the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    #[derive(OpenApi)]
    #[openapi(paths(list, list_failed, failed_groups, one, result, queues))]
    struct Doc;
    Doc::openapi()
}

/// Tasks, newest first; an empty value is no filter.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListParams {
    /// Only this queue's tasks.
    queue: Option<String>,
    /// Only tasks in this status.
    #[param(value_type = Option<TaskStatus>)]
    status: Option<String>,
    /// Only tasks whose name contains this (any case).
    task_name: Option<String>,
    /// Only tasks whose id contains this (any case).
    id: Option<String>,
    /// Only tasks whose args (as JSON) contain this (any case).
    args: Option<String>,
    /// Only tasks whose result contains this (any case).
    result: Option<String>,
    /// Only tasks whose error contains this (any case).
    error: Option<String>,
    /// Tasks per page: 50 by default, at most 1000 (larger asks get 1000, 0 gets 1).
    limit: Option<usize>,
    /// Where the page starts: the `X-Next-Cursor` of the previous page
    /// (anything else answers 400 `invalid_cursor`).
    cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/tasks",
    operation_id = "list_tasks",
    tag = "tasks",
    params(ListParams),
    responses(
        (status = 200, description = "one page of tasks, newest first", body = Vec<TaskResponse>),
        BadRequest, Refused, Faults,
    )
)]
async fn list(
    State(deps): State<Deps>,
    uri: Uri,
    Params(p): Params<ListParams>,
) -> Result<Response, ApiError> {
    let status = match p.status.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(
            s.parse::<TaskStatus>()
                .map_err(|e| ApiError::bad_request("invalid_query", e))?,
        ),
        None => None,
    };
    let filter = TaskFilter {
        queue: p.queue.filter(|q| !q.is_empty()),
        status,
        task_name: p.task_name.filter(|n| !n.is_empty()),
        id: p.id.filter(|n| !n.is_empty()),
        args: p.args.filter(|n| !n.is_empty()),
        result: p.result.filter(|n| !n.is_empty()),
        error: p.error.filter(|n| !n.is_empty()),
        before: None,
    };
    page(&deps, uri, filter, p.limit, p.cursor).await
}

/// Failed tasks (dead letters), newest first.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct FailedParams {
    /// Only this queue's tasks.
    queue: Option<String>,
    /// Tasks per page: 50 by default, at most 1000.
    limit: Option<usize>,
    /// Where the page starts: the `X-Next-Cursor` of the previous page
    /// (anything else answers 400 `invalid_cursor`).
    cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/tasks/failed",
    operation_id = "list_failed_tasks",
    tag = "tasks",
    params(FailedParams),
    responses(
        (status = 200, description = "one page of failed tasks, newest first", body = Vec<TaskResponse>),
        BadRequest, Refused, Faults,
    )
)]
async fn list_failed(
    State(deps): State<Deps>,
    uri: Uri,
    Params(p): Params<FailedParams>,
) -> Result<Response, ApiError> {
    let filter = TaskFilter {
        queue: p.queue.filter(|q| !q.is_empty()),
        status: Some(TaskStatus::Failed),
        ..TaskFilter::default()
    };
    page(&deps, uri, filter, p.limit, p.cursor).await
}

/// Query of `GET /api/v1/tasks/failed/groups`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct GroupParams {
    /// Only this queue's failed tasks.
    queue: Option<String>,
}

/// Failed tasks grouped by error fingerprint (the error with ids, hashes,
/// numbers and timestamps masked), largest group first; the newest 5000
/// failed tasks are read (`partial` says when there were more).
#[utoipa::path(
    get,
    path = "/api/v1/tasks/failed/groups",
    operation_id = "list_failed_groups",
    tag = "tasks",
    params(GroupParams),
    responses(
        (status = 200, description = "the groups", body = warren::service::failed::FailedGroups),
        BadRequest, Refused, Faults,
    )
)]
async fn failed_groups(
    State(deps): State<Deps>,
    Params(p): Params<GroupParams>,
) -> Result<Json<warren::service::failed::FailedGroups>, ApiError> {
    let queue = p.queue.filter(|q| !q.is_empty());
    Ok(Json(warren::service::failed::groups(&deps, queue).await?))
}

/// A JSON array of tasks; when more follow, `X-Next-Cursor` and a `Link`
/// header (rel="next") say where.
async fn page(
    deps: &Deps,
    uri: Uri,
    mut filter: TaskFilter,
    limit: Option<usize>,
    cursor: Option<String>,
) -> Result<Response, ApiError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    if let Some(c) = cursor.filter(|c| !c.is_empty()) {
        filter.before = Some(decode_cursor(&c)?);
    }
    let page = deps.tasks().list(&filter, limit).await?;
    let body: Vec<TaskResponse> = page.tasks.into_iter().map(TaskResponse::from).collect();
    Ok(page_response(&uri, body, page.next))
}

#[utoipa::path(
    get,
    path = "/api/v1/tasks/{id}",
    operation_id = "get_task",
    tag = "tasks",
    params(("id" = uuid::Uuid, Path, description = "the task's id")),
    responses(
        (status = 200, description = "the task", body = TaskResponse),
        BadRequest, NotFound, Refused, Faults,
    )
)]
async fn one(
    State(deps): State<Deps>,
    Path(id): Path<String>,
) -> Result<Json<TaskResponse>, ApiError> {
    let id = task_id(&id)?;
    let task = deps
        .tasks()
        .get(id)
        .await?
        .ok_or_else(|| ApiError::not_found("task not found"))?;
    Ok(Json(task.into()))
}

/// The result of a finished task; `{"error": "task not finished", "status"}`
/// (200, as the lapinq API answers) while it is not.
#[utoipa::path(
    get,
    path = "/api/v1/tasks/{id}/result",
    operation_id = "get_task_result",
    tag = "tasks",
    params(("id" = uuid::Uuid, Path, description = "the task's id")),
    responses(
        (status = 200, description = "the result of a finished task, or that it has not finished",
            body = ResultAnswer),
        BadRequest, NotFound, Refused, Faults,
    )
)]
async fn result(State(deps): State<Deps>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = task_id(&id)?;
    let task = deps
        .tasks()
        .get(id)
        .await?
        .ok_or_else(|| ApiError::not_found("task not found"))?;
    if !is_finished(task.status) {
        let body = json!({ "error": "task not finished", "code": "task_not_finished", "status": task.status });
        return Ok(Json(body).into_response());
    }
    Ok(Json(TaskResultResponse {
        id: task.id,
        status: task.status,
        result: task.result,
        error: task.error,
        completed_at: task.completed_at,
    })
    .into_response())
}

/// `GET /api/v1/tasks/{id}/result`: a finished task's result, or (200
/// too, as lapinq answers) that it has not finished.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum ResultAnswer {
    Finished(TaskResultResponse),
    NotFinished(NotFinished),
}

/// `{"error": "task not finished", "code": "task_not_finished", "status"}`.
#[derive(Serialize, ToSchema)]
struct NotFinished {
    error: String,
    code: String,
    status: TaskStatus,
}

/// One object per queue: `queue_name` and a count per status.
///
/// Where the deployment counts from its table's change stream
/// (`Counts=stream`, the AWS template's default), the counts follow the
/// tasks by the stream's batch window: a change shows within a few
/// seconds. `warren dev` and `Counts=inline` count in each change's own
/// write.
#[utoipa::path(
    get,
    path = "/api/v1/queues",
    operation_id = "list_queues",
    tag = "tasks",
    responses(
        (status = 200, description = "task counts per queue and status",
            body = Vec<warren::table::tasks::QueueStats>),
        Refused, Faults,
    )
)]
async fn queues(State(deps): State<Deps>) -> Result<Response, ApiError> {
    Ok(Json(deps.tasks().queue_stats().await?).into_response())
}
