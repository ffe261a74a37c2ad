//! Pipelines and their runs: `/api/v1/pipelines` (create, list, read any
//! version, update as a new version, delete), manual runs, executions,
//! per-pipeline stats and usage per day.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{Duration, NaiveDate};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use warren::Deps;
use warren::domain::execution::TriggerType;
use warren::domain::pipeline::PipelineSpec;
use warren::http::dto::{ExecutionResponse, id_of};
use warren::http::{ApiError, JsonBody, Params, decode_cursor, page_response, parse_any_json};
use warren::ports::MAX_MESSAGE_BYTES;
use warren::service::{executions, pipelines};

/// Page size when the client names none, and the most one page holds.
pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 1000;
/// Days `GET /api/v1/usage` covers when the client names no period.
pub const DEFAULT_USAGE_DAYS: i64 = 30;

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
        .layer(DefaultBodyLimit::max(MAX_MESSAGE_BYTES));
    warren::http::api(&deps, routes)
}

#[derive(Deserialize)]
struct PageParams {
    limit: Option<usize>,
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
async fn create(
    State(deps): State<Deps>,
    JsonBody(spec): JsonBody<PipelineSpec>,
) -> Result<Response, ApiError> {
    let p = pipelines::create(&deps, spec).await?;
    Ok((StatusCode::CREATED, Json(p)).into_response())
}

/// Current versions, newest pipeline first.
async fn list(
    State(deps): State<Deps>,
    uri: Uri,
    Params(p): Params<PageParams>,
) -> Result<Response, ApiError> {
    let (items, next) = pipelines::list(&deps, p.limit(), p.before()?).await?;
    Ok(page_response(&uri, items, next))
}

#[derive(Deserialize)]
struct VersionParams {
    version: Option<u32>,
}

async fn one(
    State(deps): State<Deps>,
    Path(id): Path<String>,
    Params(p): Params<VersionParams>,
) -> Result<Response, ApiError> {
    let p = pipelines::get(&deps, id_of(&id, "pipeline")?, p.version).await?;
    Ok(Json(p).into_response())
}

/// 200 with the new version; the previous ones stay readable.
async fn update(
    State(deps): State<Deps>,
    Path(id): Path<String>,
    JsonBody(spec): JsonBody<PipelineSpec>,
) -> Result<Response, ApiError> {
    let p = pipelines::update(&deps, id_of(&id, "pipeline")?, spec).await?;
    Ok(Json(p).into_response())
}

/// 204; its executions stay readable.
async fn remove(State(deps): State<Deps>, Path(id): Path<String>) -> Result<Response, ApiError> {
    pipelines::delete(&deps, id_of(&id, "pipeline")?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn stats(State(deps): State<Deps>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let s = pipelines::stats(&deps, id_of(&id, "pipeline")?).await?;
    Ok(Json(s).into_response())
}

/// Start a run (manual trigger) of the current version, or of `version`,
/// with the JSON body as its input (`{}` when there is none): 202
/// `{"execution_id", "status"}`.
async fn run(
    State(deps): State<Deps>,
    Path(id): Path<String>,
    Params(p): Params<VersionParams>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let pipeline = pipelines::get(&deps, id_of(&id, "pipeline")?, p.version).await?;
    let input = match body.iter().all(u8::is_ascii_whitespace) {
        true => json!({}),
        false => parse_any_json(&body)?,
    };
    let e = executions::run_pipeline(&deps, &pipeline, TriggerType::Manual, None, input).await?;
    let answer =
        json!({ "execution_id": e.id, "status": e.status, "pipeline_version": e.pipeline_version });
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}

/// A pipeline's executions, newest first, with the task list's cursor headers.
async fn executions_of(
    State(deps): State<Deps>,
    Path(id): Path<String>,
    uri: Uri,
    Params(p): Params<PageParams>,
) -> Result<Response, ApiError> {
    let (items, next) =
        executions::list(&deps, id_of(&id, "pipeline")?, p.limit(), p.before()?).await?;
    let body: Vec<ExecutionResponse> = items.into_iter().map(Into::into).collect();
    Ok(page_response(&uri, body, next))
}

async fn execution(State(deps): State<Deps>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let e = executions::get(&deps, id_of(&id, "execution")?).await?;
    Ok(Json(ExecutionResponse::from(e)).into_response())
}

#[derive(Deserialize)]
struct UsageParams {
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
}

/// Runs per day (`days`, each with its per-pipeline counts) and per
/// pipeline over the period, from `from` to `to` inclusive (default: the
/// last 30 days to today, UTC).
async fn usage(
    State(deps): State<Deps>,
    Params(p): Params<UsageParams>,
) -> Result<Response, ApiError> {
    let to = p.to.unwrap_or_else(|| deps.now().date_naive());
    let from = p
        .from
        .unwrap_or(to - Duration::days(DEFAULT_USAGE_DAYS - 1));
    let days = pipelines::usage(&deps, from, to).await?;
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
                (StatusCode::UNPROCESSABLE_ENTITY, Some(code)),
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

    #[tokio::test]
    async fn a_manual_run_is_accepted_and_readable_while_it_waits() {
        let app = app();
        let created = create(&app).await;
        let id = created.body["id"].as_str().unwrap().to_string();
        let run = call(
            app.clone(),
            "POST",
            &format!("/api/v1/pipelines/{id}/run"),
            r#"{"id": 7}"#,
        )
        .await;
        assert_eq!(run.status, StatusCode::ACCEPTED, "{:?}", run.body);
        let exec_id = run.body["execution_id"].as_str().unwrap();
        let e = call(
            app.clone(),
            "GET",
            &format!("/api/v1/executions/{exec_id}"),
            "",
        )
        .await;
        assert_eq!(e.body["status"], "running");
        assert_eq!(e.body["trigger_type"], "manual");
        assert_eq!(e.body["input"], json!({"id": 7}));
        assert_eq!(e.body["steps"][0]["status"], "pending");
        assert!(e.body.get("lease_until").is_none(), "internals stay inside");
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
            (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_period"))
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
}
