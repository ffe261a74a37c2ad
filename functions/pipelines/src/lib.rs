//! Pipelines and their runs: `/api/v1/pipelines` (create, list, read any
//! version, update as a new version, delete), manual runs, executions,
//! per-pipeline stats and usage per day; triggers (webhook, schedule,
//! manual) and the public webhook endpoint `POST /hooks/{token}`, which
//! the secret token authorises instead of the API key.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;
use warren::Deps;
use warren::domain::execution::{Execution, TriggerType};
use warren::domain::identity::Principal;
use warren::domain::pipeline::{Pipeline, PipelineSpec};
use warren::domain::trigger::{Trigger, TriggerKind, TriggerSpec};
use warren::http::dto::{ExecutionResponse, id_of};
use warren::http::openapi::{BadRequest, Conflict, Faults, NotFound, Refused, TooLarge};
use warren::http::{
    ApiError, JsonBody, Params, Path, RawBody, decode_cursor, page_response, parse_any_json,
};
use warren::ports::MAX_MESSAGE_BYTES;
use warren::service::identity::{check_owns, check_sees};
use warren::service::pipelines::{PipelineStats, Quota, UsageDay};
use warren::service::{executions, pipelines, triggers};

/// Page size when the client names none, and the most one page holds.
pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 1000;
/// Days `GET /api/v1/usage` covers when the client names no period.
pub const DEFAULT_USAGE_DAYS: u64 = 30;

pub fn router(deps: Deps) -> Router {
    let routes = Router::new()
        .route("/api/v1/pipelines", get(list).post(create))
        .route(
            "/api/v1/pipelines/{id}",
            get(one).put(update).delete(remove),
        )
        .route("/api/v1/pipelines/{id}/stats", get(stats))
        .route("/api/v1/pipelines/{id}/run", post(run))
        .route("/api/v1/pipelines/{id}/executions", get(executions_of))
        .route("/api/v1/executions/{id}", get(execution))
        .route("/api/v1/usage", get(usage))
        .route(
            "/api/v1/pipelines/{id}/triggers",
            get(triggers_of).post(create_trigger),
        )
        .route(
            "/api/v1/triggers/{id}",
            axum::routing::delete(remove_trigger),
        )
        .layer(DefaultBodyLimit::max(MAX_MESSAGE_BYTES));
    // The webhook route stays outside the API-key layer: its token is the credential.
    let public = Router::new()
        .route("/hooks/{token}", post(hook))
        .layer(DefaultBodyLimit::max(MAX_MESSAGE_BYTES))
        .with_state(deps.clone());
    warren::http::api(&deps, routes).merge(warren::http::private(public))
}

/// What this function's routes say of themselves in the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    #[derive(OpenApi)]
    #[openapi(paths(
        list,
        create,
        one,
        update,
        remove,
        stats,
        run,
        executions_of,
        execution,
        usage,
        triggers_of,
        create_trigger,
        remove_trigger,
        hook
    ))]
    struct Doc;
    Doc::openapi()
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct PageParams {
    /// Items per page: 50 by default, at most 1000 (larger asks get 1000, 0 gets 1).
    limit: Option<usize>,
    /// Where the page starts: the `X-Next-Cursor` of the previous page
    /// (anything else answers 400 `invalid_cursor`).
    cursor: Option<String>,
}

impl PageParams {
    fn limit(&self) -> usize {
        self.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
    }

    fn before(&self) -> Result<Option<String>, ApiError> {
        self.cursor
            .as_deref()
            .filter(|c| !c.is_empty())
            .map(decode_cursor)
            .transpose()
    }
}

/// 201 with the stored pipeline (version 1).
#[utoipa::path(
    post,
    path = "/api/v1/pipelines",
    operation_id = "create_pipeline",
    tag = "pipelines",
    request_body = PipelineSpec,
    responses(
        (status = 201, description = "the stored pipeline, version 1", body = Pipeline),
        BadRequest, Conflict, TooLarge, Refused, Faults,
    )
)]
async fn create(
    State(deps): State<Deps>,
    who: Principal,
    JsonBody(spec): JsonBody<PipelineSpec>,
) -> Result<Response, ApiError> {
    let p = pipelines::create_for(&deps, who.user_id, spec).await?;
    Ok((StatusCode::CREATED, Json(p)).into_response())
}

/// Current versions, newest pipeline first: a `user`'s own, everyone's
/// for an admin or a viewer.
#[utoipa::path(
    get,
    path = "/api/v1/pipelines",
    operation_id = "list_pipelines",
    tag = "pipelines",
    params(PageParams),
    responses(
        (status = 200, description = "one page of pipelines, newest first", body = Vec<Pipeline>),
        BadRequest, Refused, Faults,
    )
)]
async fn list(
    State(deps): State<Deps>,
    who: Principal,
    uri: Uri,
    Params(p): Params<PageParams>,
) -> Result<Response, ApiError> {
    let scope = who.listing_scope();
    let (items, next) = pipelines::list(&deps, scope, p.limit(), p.before()?).await?;
    Ok(page_response(&uri, items, next))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct VersionParams {
    /// A version; the current one by default.
    version: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/api/v1/pipelines/{id}",
    operation_id = "get_pipeline",
    tag = "pipelines",
    params(("id" = Uuid, Path, description = "the pipeline's id"), VersionParams),
    responses(
        (status = 200, description = "the pipeline, at its current or the given version", body = Pipeline),
        BadRequest, NotFound, Refused, Faults,
    )
)]
async fn one(
    State(deps): State<Deps>,
    who: Principal,
    Path(id): Path<String>,
    Params(p): Params<VersionParams>,
) -> Result<Response, ApiError> {
    let p = pipelines::get(&deps, id_of(&id, "pipeline")?, p.version).await?;
    check_sees(&who, p.user_id, NO_PIPELINE)?;
    Ok(Json(p).into_response())
}

const NO_PIPELINE: &str = "no such pipeline";

/// The current version of pipeline `id`, if `who` may change it.
async fn owned(deps: &Deps, who: &Principal, id: &str) -> Result<Pipeline, ApiError> {
    let p = pipelines::get(deps, id_of(id, "pipeline")?, None).await?;
    check_owns(who, p.user_id, NO_PIPELINE)?;
    Ok(p)
}

/// The current version of pipeline `id`, if `who` may read it.
async fn seen(deps: &Deps, who: &Principal, id: &str) -> Result<Pipeline, ApiError> {
    let p = pipelines::get(deps, id_of(id, "pipeline")?, None).await?;
    check_sees(who, p.user_id, NO_PIPELINE)?;
    Ok(p)
}

/// 200 with the new version; the previous ones stay readable.
#[utoipa::path(
    put,
    path = "/api/v1/pipelines/{id}",
    operation_id = "update_pipeline",
    tag = "pipelines",
    params(("id" = Uuid, Path, description = "the pipeline's id")),
    request_body = PipelineSpec,
    responses(
        (status = 200, description = "the pipeline's new version", body = Pipeline),
        BadRequest, NotFound, Conflict, TooLarge, Refused, Faults,
    )
)]
async fn update(
    State(deps): State<Deps>,
    who: Principal,
    Path(id): Path<String>,
    JsonBody(spec): JsonBody<PipelineSpec>,
) -> Result<Response, ApiError> {
    let current = owned(&deps, &who, &id).await?;
    let p = pipelines::update(&deps, current.id, spec).await?;
    Ok(Json(p).into_response())
}

/// 204; its triggers are deleted, its executions stay readable.
#[utoipa::path(
    delete,
    path = "/api/v1/pipelines/{id}",
    operation_id = "delete_pipeline",
    tag = "pipelines",
    params(("id" = Uuid, Path, description = "the pipeline's id")),
    responses(
        (status = 204, description = "the pipeline and its triggers are deleted"),
        BadRequest, NotFound, Conflict, Refused, Faults,
    )
)]
async fn remove(
    State(deps): State<Deps>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let current = owned(&deps, &who, &id).await?;
    triggers::delete_pipeline(&deps, current.id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/pipelines/{id}/stats",
    operation_id = "get_pipeline_stats",
    tag = "pipelines",
    params(("id" = Uuid, Path, description = "the pipeline's id")),
    responses(
        (status = 200, description = "the pipeline's execution totals", body = PipelineStats),
        BadRequest, NotFound, Refused, Faults,
    )
)]
async fn stats(
    State(deps): State<Deps>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let p = seen(&deps, &who, &id).await?;
    let s = pipelines::stats(&deps, p.id).await?;
    Ok(Json(s).into_response())
}

/// Start a run (manual trigger) of the current version, or of `version`,
/// with the JSON body as its input (`{}` when there is none): 202
/// `{"execution_id", "status"}`.
#[utoipa::path(
    post,
    path = "/api/v1/pipelines/{id}/run",
    operation_id = "run_pipeline",
    tag = "pipelines",
    params(("id" = Uuid, Path, description = "the pipeline's id"), VersionParams),
    request_body(content = Option<Value>, description = "the run's input: any JSON value (`{}` when empty)"),
    responses(
        (status = 202, description = "the run is started", body = RunStarted),
        BadRequest, NotFound, TooLarge, Refused, Faults,
    )
)]
async fn run(
    State(deps): State<Deps>,
    who: Principal,
    Path(id): Path<String>,
    Params(p): Params<VersionParams>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let pipeline = pipelines::get(&deps, id_of(&id, "pipeline")?, p.version).await?;
    check_owns(&who, pipeline.user_id, NO_PIPELINE)?;
    let e = executions::run_pipeline(
        &deps,
        &pipeline,
        TriggerType::Manual,
        None,
        input_of(&body)?,
    )
    .await?;
    Ok(accepted(&e))
}

/// A run's input: the JSON body, `{}` when there is none.
fn input_of(body: &Bytes) -> Result<Value, ApiError> {
    match body.iter().all(u8::is_ascii_whitespace) {
        true => Ok(json!({})),
        false => parse_any_json(body),
    }
}

/// A started run.
#[derive(ToSchema)]
#[allow(dead_code)]
struct RunStarted {
    execution_id: Uuid,
    status: warren::domain::execution::ExecutionStatus,
    pipeline_version: u32,
}

/// 202 `{"execution_id", "status", "pipeline_version"}` of a started run.
fn accepted(e: &Execution) -> Response {
    let answer =
        json!({ "execution_id": e.id, "status": e.status, "pipeline_version": e.pipeline_version });
    (StatusCode::ACCEPTED, Json(answer)).into_response()
}

/// A trigger as the API shows it. A webhook's token (and URL) appear only
/// in the answer that creates it; later only its last characters
/// (`webhook_token_hint`). A schedule shows its next fire times.
#[derive(Serialize, ToSchema)]
struct TriggerResponse {
    id: Uuid,
    pipeline_id: Uuid,
    #[serde(rename = "type")]
    kind: TriggerKind,
    name: String,
    config: Value,
    created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook_token_hint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_fires: Option<Vec<DateTime<Utc>>>,
}

impl TriggerResponse {
    fn new(t: Trigger, now: DateTime<Utc>) -> Self {
        TriggerResponse {
            next_fires: (t.kind == TriggerKind::Schedule).then(|| t.next_fires(now)),
            config: t.config(),
            id: t.id,
            pipeline_id: t.pipeline_id,
            kind: t.kind,
            name: t.name,
            created_at: t.created_at,
            webhook_token: None,
            webhook_url: None,
            webhook_token_hint: t.webhook_hint,
        }
    }
}

/// Where this API is reached: the configured public URL, else the Host
/// the client named (with API Gateway's `X-Forwarded-Proto` scheme). A
/// client's `X-Forwarded-Host` is never used: it would let a caller point
/// the URL shown with a fresh token anywhere.
fn public_base(deps: &Deps, headers: &HeaderMap, uri: &Uri) -> String {
    if let Some(url) = &deps.config.public_url {
        return url.trim_end_matches('/').to_string();
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let host = header("host")
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or("localhost");
    let scheme = match header("x-forwarded-proto").or_else(|| uri.scheme_str()) {
        Some("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}")
}

/// 201 with the trigger; a webhook's `webhook_token` and `webhook_url`
/// are shown this once.
#[utoipa::path(
    post,
    path = "/api/v1/pipelines/{id}/triggers",
    operation_id = "create_trigger",
    tag = "pipelines",
    params(("id" = Uuid, Path, description = "the pipeline's id")),
    request_body = TriggerSpec,
    responses(
        (status = 201, description = "the trigger (a webhook's token and URL shown this once)", body = TriggerResponse),
        BadRequest, NotFound, Conflict, TooLarge, Refused, Faults,
    )
)]
async fn create_trigger(
    State(deps): State<Deps>,
    who: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    JsonBody(spec): JsonBody<TriggerSpec>,
) -> Result<Response, ApiError> {
    let pipeline = owned(&deps, &who, &id).await?;
    let created = triggers::create(&deps, pipeline.id, spec).await?;
    let mut body = TriggerResponse::new(created.trigger, deps.now());
    if let Some(token) = created.token {
        body.webhook_url = Some(format!(
            "{}/hooks/{token}",
            public_base(&deps, &headers, &uri)
        ));
        body.webhook_token = Some(token);
    }
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// A pipeline's triggers, newest first, with the list cursor headers.
#[utoipa::path(
    get,
    path = "/api/v1/pipelines/{id}/triggers",
    operation_id = "list_triggers",
    tag = "pipelines",
    params(("id" = Uuid, Path, description = "the pipeline's id"), PageParams),
    responses(
        (status = 200, description = "one page of the pipeline's triggers, newest first", body = Vec<TriggerResponse>),
        BadRequest, NotFound, Refused, Faults,
    )
)]
async fn triggers_of(
    State(deps): State<Deps>,
    who: Principal,
    Path(id): Path<String>,
    uri: Uri,
    Params(p): Params<PageParams>,
) -> Result<Response, ApiError> {
    let pipeline = seen(&deps, &who, &id).await?.id;
    let (items, next) = triggers::list(&deps, pipeline, p.limit(), p.before()?).await?;
    let now = deps.now();
    let shown = items.into_iter().map(|t| TriggerResponse::new(t, now));
    Ok(page_response(&uri, shown.collect::<Vec<_>>(), next))
}

/// 204; the trigger fires nothing from then on.
#[utoipa::path(
    delete,
    path = "/api/v1/triggers/{id}",
    operation_id = "delete_trigger",
    tag = "pipelines",
    params(("id" = Uuid, Path, description = "the trigger's id")),
    responses(
        (status = 204, description = "the trigger is deleted"),
        BadRequest, NotFound, Conflict, Refused, Faults,
    )
)]
async fn remove_trigger(
    State(deps): State<Deps>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let trigger = triggers::get(&deps, id_of(&id, "trigger")?).await?;
    check_owns(&who, trigger.user_id, "no such trigger")?;
    triggers::delete(&deps, trigger.id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The public webhook: a run of the token's pipeline with the body as its
/// input (`{}` when empty), answered like a manual run (202); 404 for an
/// unknown or deleted token, before the body is even read as JSON.
#[utoipa::path(
    post,
    path = "/hooks/{token}",
    operation_id = "call_webhook",
    tag = "pipelines",
    security(()),
    params(("token" = String, Path, description = "the webhook trigger's secret token (`whk_...`): the credential")),
    request_body(content = Option<Value>, description = "the run's input: any JSON value (`{}` when empty)"),
    responses(
        (status = 202, description = "the run is started", body = RunStarted),
        BadRequest, NotFound, TooLarge,
        (status = 429, description = "the owner's runs of the month are used up", body = warren::http::openapi::ErrorBody),
        Faults,
    )
)]
async fn hook(
    State(deps): State<Deps>,
    Path(token): Path<String>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let trigger = triggers::by_token(&deps, &token).await?;
    let e = triggers::run_webhook(&deps, &trigger, input_of(&body)?).await?;
    Ok(accepted(&e))
}

/// A pipeline's executions, newest first, with the task list's cursor headers.
#[utoipa::path(
    get,
    path = "/api/v1/pipelines/{id}/executions",
    operation_id = "list_executions",
    tag = "pipelines",
    params(("id" = Uuid, Path, description = "the pipeline's id"), PageParams),
    responses(
        (status = 200, description = "one page of the pipeline's executions, newest first", body = Vec<ExecutionResponse>),
        BadRequest, NotFound, Refused, Faults,
    )
)]
async fn executions_of(
    State(deps): State<Deps>,
    who: Principal,
    Path(id): Path<String>,
    uri: Uri,
    Params(p): Params<PageParams>,
) -> Result<Response, ApiError> {
    let (items, next) =
        executions::list(&deps, id_of(&id, "pipeline")?, p.limit(), p.before()?).await?;
    // A pipeline's executions share its owner (and outlive it).
    if let Some(first) = items.first() {
        check_sees(&who, first.user_id, NO_PIPELINE)?;
    } else if !who.sees(None) {
        seen(&deps, &who, &id).await?;
    }
    let body: Vec<ExecutionResponse> = items.into_iter().map(Into::into).collect();
    Ok(page_response(&uri, body, next))
}

#[utoipa::path(
    get,
    path = "/api/v1/executions/{id}",
    operation_id = "get_execution",
    tag = "pipelines",
    params(("id" = Uuid, Path, description = "the execution's id")),
    responses(
        (status = 200, description = "the execution, step by step", body = ExecutionResponse),
        BadRequest, NotFound, Refused, Faults,
    )
)]
async fn execution(
    State(deps): State<Deps>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let e = executions::get(&deps, id_of(&id, "execution")?).await?;
    check_sees(&who, e.user_id, "no such execution")?;
    Ok(Json(ExecutionResponse::from(e)).into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct UsageParams {
    /// The first day (UTC); 29 days before `to` by default. The period
    /// may be at most 366 days (else 400 `invalid_period`).
    from: Option<NaiveDate>,
    /// The last day (UTC); today by default.
    to: Option<NaiveDate>,
}

/// `GET /api/v1/usage`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct Usage {
    from: NaiveDate,
    to: NaiveDate,
    /// Runs over the period.
    runs: i64,
    /// Runs over the period per pipeline id.
    pipelines: std::collections::BTreeMap<String, i64>,
    days: Vec<UsageDay>,
    /// The caller's runs this month against its limit; null for the
    /// deployment itself (no user).
    #[schema(required = true)]
    quota: Option<Quota>,
}

/// Runs per day (`days`, each with its per-pipeline counts) and per
/// pipeline over the period, from `from` to `to` inclusive (default: the
/// last 30 days to today, UTC), and for a user its `quota`: runs this
/// month against its `runs_limit`.
#[utoipa::path(
    get,
    path = "/api/v1/usage",
    operation_id = "get_usage",
    tag = "pipelines",
    params(UsageParams),
    responses(
        (status = 200, description = "runs per day and per pipeline over the period", body = Usage),
        BadRequest, Refused, Faults,
    )
)]
async fn usage(
    State(deps): State<Deps>,
    who: Principal,
    Params(p): Params<UsageParams>,
) -> Result<Response, ApiError> {
    let to = p.to.unwrap_or_else(|| deps.now().date_naive());
    let from = match p.from {
        Some(from) => from,
        None => to
            .checked_sub_days(chrono::Days::new(DEFAULT_USAGE_DAYS - 1))
            .ok_or_else(|| {
                ApiError::bad_request("invalid_period", "`to` is too far in the past")
            })?,
    };
    // A user sees its own pipelines' runs; admins and viewers everyone's.
    let only = match who.listing_scope() {
        None => None,
        Some(Some(user)) => Some(pipelines::ids_of(&deps, user).await?),
        Some(None) => Some(Default::default()),
    };
    let days = pipelines::usage(&deps, from, to, only.as_ref()).await?;
    let quota = match who.user_id {
        Some(user) => Some(pipelines::quota(&deps, user).await?),
        None => None,
    };
    let mut per_pipeline = Map::new();
    for (id, runs) in days.iter().flat_map(|d| d.pipelines.iter()) {
        let sum =
            per_pipeline.get(id).and_then(Value::as_i64).unwrap_or(0) + runs.as_i64().unwrap_or(0);
        per_pipeline.insert(id.clone(), sum.into());
    }
    let total: i64 = days.iter().map(|d| d.runs).sum();
    Ok(Json(json!({
        "from": from,
        "to": to,
        "runs": total,
        "pipelines": per_pipeline,
        "days": days,
        "quota": quota,
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::http::StatusCode;
    use serde_json::{Value, json};
    use warren::adapters::clock::SystemClock;
    use warren::handlers::Registry;
    use warren::testing::memory_deps;
    use warren::testing::router::{Answer, call};

    use super::*;

    fn app() -> Router {
        router(memory_deps(Arc::new(SystemClock), Registry::standard()))
    }

    fn pipeline() -> Value {
        json!({
            "name": "orders",
            "event_schema": {"type": "object", "required": ["id"]},
            "steps": [
                {"name": "check", "kind": "validate"},
                {"name": "shape", "kind": "transform", "expression": "{id: event.id}"}
            ]
        })
    }

    async fn create(app: &Router) -> Answer {
        call(
            app.clone(),
            "POST",
            "/api/v1/pipelines",
            &pipeline().to_string(),
        )
        .await
    }

    #[tokio::test]
    async fn create_read_update_and_read_an_old_version() {
        let app = app();
        let created = create(&app).await;
        assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
        assert_eq!(created.body["version"], 1);
        let id = created.body["id"].as_str().unwrap().to_string();
        let mut changed = pipeline();
        changed["name"] = json!("orders, renamed");
        let updated = call(
            app.clone(),
            "PUT",
            &format!("/api/v1/pipelines/{id}"),
            &changed.to_string(),
        )
        .await;
        assert_eq!(
            (updated.status, &updated.body["version"]),
            (StatusCode::OK, &json!(2))
        );
        let old = call(
            app.clone(),
            "GET",
            &format!("/api/v1/pipelines/{id}?version=1"),
            "",
        )
        .await;
        assert_eq!(old.body["name"], "orders");
        let current = call(app.clone(), "GET", &format!("/api/v1/pipelines/{id}"), "").await;
        assert_eq!(current.body["name"], "orders, renamed");
        let listed = call(app, "GET", "/api/v1/pipelines", "").await;
        assert_eq!(listed.body.as_array().map(Vec::len), Some(1));
    }

    #[tokio::test]
    async fn bad_definitions_answer_4xx_and_store_nothing() {
        let app = app();
        let mut unknown_kind = pipeline();
        unknown_kind["steps"][1]["kind"] = json!("teleport");
        let mut bad_expression = pipeline();
        bad_expression["steps"][1]["expression"] = json!("a[?");
        let mut bad_schema = pipeline();
        bad_schema["event_schema"] = json!({"type": 12});
        for (body, code) in [
            (unknown_kind, "invalid_field"),
            (bad_expression, "invalid_pipeline"),
            (bad_schema, "invalid_pipeline"),
        ] {
            let a = call(app.clone(), "POST", "/api/v1/pipelines", &body.to_string()).await;
            assert_eq!(
                (a.status, a.body["code"].as_str()),
                (StatusCode::BAD_REQUEST, Some(code)),
                "{body}"
            );
            assert!(a.body["error"].as_str().is_some_and(|e| !e.is_empty()));
        }
        let listed = call(app, "GET", "/api/v1/pipelines", "").await;
        assert_eq!(listed.body, json!([]));
    }

    #[tokio::test]
    async fn unknown_pipelines_and_executions_are_404() {
        let app = app();
        let id = uuid::Uuid::now_v7();
        for (method, path) in [
            ("GET", format!("/api/v1/pipelines/{id}")),
            ("PUT", format!("/api/v1/pipelines/{id}")),
            ("DELETE", format!("/api/v1/pipelines/{id}")),
            ("GET", format!("/api/v1/pipelines/{id}/stats")),
            ("POST", format!("/api/v1/pipelines/{id}/run")),
            ("GET", format!("/api/v1/pipelines/{id}/executions")),
            ("GET", format!("/api/v1/executions/{id}")),
        ] {
            let a = call(app.clone(), method, &path, &pipeline().to_string()).await;
            assert_eq!(
                (a.status, a.body["code"].as_str()),
                (StatusCode::NOT_FOUND, Some("not_found")),
                "{method} {path}"
            );
        }
        let a = call(app, "GET", "/api/v1/pipelines/nope", "").await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
    }

    /// POST `body` to `path` (a run or a hook): 202, and the execution it started.
    async fn started(app: &Router, path: &str, body: &str) -> Value {
        let run = call(app.clone(), "POST", path, body).await;
        assert_eq!(run.status, StatusCode::ACCEPTED, "{:?}", run.body);
        let exec = format!(
            "/api/v1/executions/{}",
            run.body["execution_id"].as_str().unwrap()
        );
        call(app.clone(), "GET", &exec, "").await.body
    }

    #[tokio::test]
    async fn a_manual_run_is_accepted_and_readable_while_it_waits() {
        let app = app();
        let created = create(&app).await;
        let id = created.body["id"].as_str().unwrap().to_string();
        let e = started(&app, &format!("/api/v1/pipelines/{id}/run"), r#"{"id": 7}"#).await;
        assert_eq!(e["status"], "running");
        assert_eq!(e["trigger_type"], "manual");
        assert_eq!(e["input"], json!({"id": 7}));
        assert_eq!(e["steps"][0]["status"], "pending");
        assert!(e.get("lease_until").is_none(), "internals stay inside");
        let malformed = call(
            app.clone(),
            "POST",
            &format!("/api/v1/pipelines/{id}/run"),
            "{",
        )
        .await;
        assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
        let listed = call(
            app,
            "GET",
            &format!("/api/v1/pipelines/{id}/executions"),
            "",
        )
        .await;
        assert_eq!(listed.body.as_array().map(Vec::len), Some(1));
    }

    #[tokio::test]
    async fn usage_refuses_a_reversed_period() {
        let a = call(
            app(),
            "GET",
            "/api/v1/usage?from=2026-03-02&to=2026-03-01",
            "",
        )
        .await;
        assert_eq!(
            (a.status, a.body["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_period"))
        );
        let b = call(app(), "GET", "/api/v1/usage?from=yesterday", "").await;
        assert_eq!(b.status, StatusCode::BAD_REQUEST);
        let c = call(
            app(),
            "GET",
            "/api/v1/usage?from=2026-03-01&to=2026-03-02",
            "",
        )
        .await;
        assert_eq!(
            (
                c.status,
                c.body["runs"].as_i64(),
                c.body["days"].as_array().map(Vec::len)
            ),
            (StatusCode::OK, Some(0), Some(2))
        );
    }

    async fn triggers_listed(app: &Router, pipeline: &str) -> Answer {
        let path = format!("/api/v1/pipelines/{pipeline}/triggers");
        call(app.clone(), "GET", &path, "").await
    }

    async fn trigger(app: &Router, pipeline: &str, body: Value) -> Answer {
        let path = format!("/api/v1/pipelines/{pipeline}/triggers");
        call(app.clone(), "POST", &path, &body.to_string()).await
    }

    #[tokio::test]
    async fn a_webhook_trigger_shows_its_token_once_and_runs_the_pipeline() {
        let app = app();
        let id = create(&app).await.body["id"].as_str().unwrap().to_string();
        let created = trigger(&app, &id, json!({"type": "webhook", "name": "orders in"})).await;
        assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
        let token = created.body["webhook_token"].as_str().unwrap().to_string();
        assert!(token.starts_with("whk_"));
        assert_eq!(
            created.body["webhook_url"],
            json!(format!("http://localhost/hooks/{token}"))
        );
        assert_eq!(
            (&created.body["type"], &created.body["config"]),
            (&json!("webhook"), &json!({}))
        );

        let e = started(&app, &format!("/hooks/{token}"), r#"{"id": 9}"#).await;
        assert_eq!(
            (&e["trigger_type"], &e["trigger_id"], &e["input"]),
            (&json!("webhook"), &created.body["id"], &json!({"id": 9}))
        );
        let empty = call(app.clone(), "POST", &format!("/hooks/{token}"), "").await;
        assert_eq!(
            empty.status,
            StatusCode::ACCEPTED,
            "an empty body is `{{}}`"
        );

        let listed = triggers_listed(&app, &id).await;
        let shown = &listed.body[0];
        assert!(shown.get("webhook_token").is_none() && shown.get("webhook_url").is_none());
        assert_eq!(
            shown["webhook_token_hint"],
            json!(format!("...{}", &token[token.len() - 4..]))
        );
        assert!(!listed.body.to_string().contains(&token[4..]));

        let trigger_id = created.body["id"].as_str().unwrap();
        let path = format!("/api/v1/triggers/{trigger_id}");
        let gone = call(app.clone(), "DELETE", &path, "").await;
        assert_eq!(gone.status, StatusCode::NO_CONTENT);
        let again = call(app.clone(), "DELETE", &path, "").await;
        assert_eq!(again.status, StatusCode::NOT_FOUND);
        let dead = call(app, "POST", &format!("/hooks/{token}"), "{}").await;
        assert_eq!(
            (dead.status, dead.body["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("not_found"))
        );
    }

    #[tokio::test]
    async fn a_schedule_trigger_lists_its_next_five_fire_times() {
        let app = app();
        let id = create(&app).await.body["id"].as_str().unwrap().to_string();
        let body = json!({"type": "schedule", "name": "nightly", "config": {"cron": "0 3 * * *", "timezone": "Europe/Paris"}});
        let created = trigger(&app, &id, body).await;
        assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
        assert!(created.body.get("webhook_token").is_none());
        let listed = triggers_listed(&app, &id).await;
        let fires = listed.body[0]["next_fires"].as_array().unwrap().clone();
        assert_eq!(fires.len(), 5);
        let times: Vec<chrono::DateTime<chrono::FixedOffset>> = fires
            .iter()
            .map(|f| chrono::DateTime::parse_from_rfc3339(f.as_str().unwrap()).unwrap())
            .collect();
        assert!(times.windows(2).all(|w| w[0] < w[1]));
        assert!(
            fires.iter().all(|f| f.as_str().unwrap().ends_with('Z')),
            "UTC"
        );
        assert_eq!(
            listed.body[0]["config"],
            json!({"cron": "0 3 * * *", "timezone": "Europe/Paris"})
        );
    }

    #[tokio::test]
    async fn bad_triggers_answer_4xx_and_store_nothing() {
        let app = app();
        let id = create(&app).await.body["id"].as_str().unwrap().to_string();
        for (body, code) in [
            (json!({"type": "cron", "name": "x"}), "invalid_field"),
            (
                json!({"type": "webhook", "name": "x", "secret": "s"}),
                "invalid_field",
            ),
            (
                json!({"type": "webhook", "name": "x", "config": {"secret": "s"}}),
                "invalid_trigger",
            ),
            (
                json!({"type": "schedule", "name": "x", "config": {"cron": "* * * * *", "every": 1}}),
                "invalid_trigger",
            ),
            (
                json!({"type": "schedule", "name": "x", "config": {"cron": "99 * * * *"}}),
                "invalid_cron",
            ),
            (
                json!({"type": "schedule", "name": "x", "config": {"cron": "* * * * *", "timezone": "Europe/Atlantis"}}),
                "invalid_timezone",
            ),
            (json!({"type": "manual", "name": ""}), "invalid_trigger"),
        ] {
            let a = trigger(&app, &id, body.clone()).await;
            assert_eq!(
                (a.status, a.body["code"].as_str()),
                (StatusCode::BAD_REQUEST, Some(code)),
                "{body}: {:?}",
                a.body
            );
        }
        let listed = triggers_listed(&app, &id).await;
        assert_eq!(listed.body, json!([]));
        let unknown = uuid::Uuid::now_v7();
        let manual = json!({"type": "manual", "name": "m"});
        for a in [
            trigger(&app, &unknown.to_string(), manual).await,
            call(
                app.clone(),
                "GET",
                &format!("/api/v1/pipelines/{unknown}/triggers"),
                "",
            )
            .await,
            call(
                app.clone(),
                "DELETE",
                &format!("/api/v1/triggers/{unknown}"),
                "",
            )
            .await,
            call(app, "POST", "/hooks/whk_nope", "{}").await,
        ] {
            assert_eq!(a.status, StatusCode::NOT_FOUND, "{:?}", a.body);
        }
    }

    #[tokio::test]
    async fn the_hook_route_is_public_while_the_api_requires_its_key() {
        let deps = memory_deps(Arc::new(SystemClock), Registry::standard());
        let deps = Deps {
            config: Arc::new(warren::Config {
                api_key: warren::http::ApiKey::new(Some("k3y")),
                ..(*deps.config).clone()
            }),
            ..deps
        };
        let spec: PipelineSpec = serde_json::from_value(pipeline()).unwrap();
        let p = pipelines::create(&deps, spec).await.unwrap();
        let webhook: TriggerSpec =
            serde_json::from_value(json!({"type": "webhook", "name": "h"})).unwrap();
        let token = triggers::create(&deps, p.id, webhook)
            .await
            .unwrap()
            .token
            .unwrap();
        let app = router(deps);
        let api = call(
            app.clone(),
            "GET",
            &format!("/api/v1/pipelines/{}/triggers", p.id),
            "",
        )
        .await;
        assert_eq!(api.status, StatusCode::UNAUTHORIZED);
        let hook = call(app, "POST", &format!("/hooks/{token}"), r#"{"id": 1}"#).await;
        assert_eq!(hook.status, StatusCode::ACCEPTED, "{:?}", hook.body);
    }
}
