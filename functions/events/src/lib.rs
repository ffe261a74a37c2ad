//! Event ingestion (`POST /events`, `/events/`): any JSON body is stored as
//! an event and processed by a pipeline (the workflow), asynchronously.
//! `GET /events/{id}` shows how that went.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use warren::Deps;
use warren::http::dto::id_of;
use warren::http::{ApiError, Params, parse_any_json};
use warren::ports::MAX_MESSAGE_BYTES;
use warren::service::events::{self, Ingested};

pub fn router(deps: Deps) -> Router {
    let routes = Router::new()
        .route("/events", post(ingest))
        .route("/events/", post(ingest))
        .route("/events/{id}", get(one))
        .layer(DefaultBodyLimit::max(MAX_MESSAGE_BYTES));
    warren::http::api(&deps, routes)
}

#[derive(Deserialize)]
struct IngestParams {
    /// The pipeline id; else the configured default.
    workflow: Option<String>,
    /// `sync`: check the pipeline's `event_schema` now (422 when broken).
    validate: Option<String>,
}

/// 202 `{"event_id", "task_id"}` (the task is the execution that processes
/// the event); 422 `invalid_event` with `violations` when `validate=sync`
/// finds the body breaks the pipeline's schema (nothing is stored then).
async fn ingest(
    State(deps): State<Deps>,
    Params(p): Params<IngestParams>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let workflow = match p.workflow.as_deref().filter(|w| !w.is_empty()) {
        Some(w) => Some(id_of(w, "pipeline")?),
        None => None,
    };
    let sync = match p.validate.as_deref() {
        None | Some("") | Some("async") => false,
        Some("sync") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("validate must be `sync` or `async`, not `{other}`"),
            ));
        }
    };
    let data = parse_any_json(&body)?;
    match events::ingest(&deps, data, workflow, sync).await? {
        Ingested::Queued {
            event_id,
            execution_id,
        } => Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "event_id": event_id, "task_id": execution_id })),
        )
            .into_response()),
        Ingested::Invalid(violations) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_event",
            format!(
                "the event breaks the workflow's event_schema ({} violation(s))",
                violations.len()
            ),
        )
        .with("violations", json!(violations))),
    }
}

/// The event: id, data, workflow, status (pending, completed, failed),
/// result, error, validation_errors, timestamps.
async fn one(State(deps): State<Deps>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let event = events::get(&deps, id_of(&id, "event")?).await?;
    Ok(Json(event).into_response())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::http::StatusCode;
    use serde_json::json;
    use warren::adapters::clock::SystemClock;
    use warren::domain::pipeline::PipelineSpec;
    use warren::handlers::Registry;
    use warren::http::ApiKey;
    use warren::service::pipelines;
    use warren::testing::memory_deps;
    use warren::testing::router::call;
    use warren::{Config, Deps};

    use super::router;

    fn deps(configure: impl FnOnce(&mut Config)) -> Deps {
        let mut deps = memory_deps(Arc::new(SystemClock), Registry::standard());
        let mut config = (*deps.config).clone();
        configure(&mut config);
        deps.config = Arc::new(config);
        deps
    }

    async fn pipeline(deps: &Deps) -> uuid::Uuid {
        let spec: PipelineSpec = serde_json::from_value(json!({
            "name": "orders",
            "event_schema": {"type": "object", "required": ["id"]},
            "steps": [{"name": "check", "kind": "validate"}]
        }))
        .unwrap();
        pipelines::create(deps, spec).await.unwrap().id
    }

    #[tokio::test]
    async fn an_event_is_stored_and_queued_for_its_workflow() {
        let deps = deps(|_| {});
        let id = pipeline(&deps).await;
        for path in [
            format!("/events?workflow={id}"),
            format!("/events/?workflow={id}"),
        ] {
            let a = call(router(deps.clone()), "POST", &path, r#"{"id": 1}"#).await;
            assert_eq!(a.status, StatusCode::ACCEPTED, "{path}: {:?}", a.body);
            let event = a.body["event_id"].as_str().unwrap();
            assert!(a.body["task_id"].is_string());
            let got = call(router(deps.clone()), "GET", &format!("/events/{event}"), "").await;
            assert_eq!(
                (got.body["status"].as_str(), &got.body["data"]),
                (Some("pending"), &json!({"id": 1}))
            );
            assert_eq!(got.body["workflow"], id.to_string());
        }
    }

    #[tokio::test]
    async fn the_configured_default_workflow_is_used_when_none_is_named() {
        let none = deps(|_| {});
        let a = call(router(none), "POST", "/events", "{}").await;
        assert_eq!(
            (a.status, a.body["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("no_workflow"))
        );
        let mut with_default = deps(|_| {});
        let id = pipeline(&with_default).await;
        let mut config = (*with_default.config).clone();
        config.default_workflow = Some(id);
        with_default.config = Arc::new(config);
        let b = call(router(with_default), "POST", "/events", "[1, 2]").await;
        assert_eq!(b.status, StatusCode::ACCEPTED, "{:?}", b.body);
    }

    #[tokio::test]
    async fn sync_validation_answers_422_with_the_violations() {
        let deps = deps(|_| {});
        let id = pipeline(&deps).await;
        let a = call(
            router(deps),
            "POST",
            &format!("/events?workflow={id}&validate=sync"),
            r#"{"x": 1}"#,
        )
        .await;
        assert_eq!(
            (a.status, a.body["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_event"))
        );
        assert_eq!(a.body["violations"][0]["path"], "");
        assert!(
            a.body["violations"][0]["message"]
                .as_str()
                .unwrap()
                .contains("id")
        );
    }

    #[tokio::test]
    async fn bad_requests_are_4xx() {
        let deps = deps(|_| {});
        let id = pipeline(&deps).await;
        let unknown = uuid::Uuid::now_v7();
        for (path, body, status) in [
            (
                format!("/events?workflow={unknown}"),
                "{}",
                StatusCode::NOT_FOUND,
            ),
            (
                "/events?workflow=nope".to_string(),
                "{}",
                StatusCode::BAD_REQUEST,
            ),
            (
                format!("/events?workflow={id}"),
                "{",
                StatusCode::BAD_REQUEST,
            ),
            (
                format!("/events?workflow={id}"),
                "",
                StatusCode::BAD_REQUEST,
            ),
            (
                format!("/events?workflow={id}&validate=maybe"),
                "{}",
                StatusCode::BAD_REQUEST,
            ),
        ] {
            let a = call(router(deps.clone()), "POST", &path, body).await;
            assert_eq!(a.status, status, "{path} {body}: {:?}", a.body);
            assert!(a.body["code"].is_string());
        }
        let a = call(router(deps), "GET", &format!("/events/{unknown}"), "").await;
        assert_eq!(a.status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn events_require_the_api_key_like_the_api() {
        let deps = deps(|c| c.api_key = ApiKey::new(Some("s3cret")));
        let id = pipeline(&deps).await;
        let a = call(
            router(deps),
            "POST",
            &format!("/events?workflow={id}"),
            "{}",
        )
        .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    }
}
