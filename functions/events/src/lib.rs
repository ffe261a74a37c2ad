//! Event ingestion (`POST /events`, `/events/`): any JSON body is stored as
//! an event and processed by a pipeline (the workflow), asynchronously.
//! `GET /events/{id}` shows how that went.
//!
//! Event triggers and topics (seed 003): `POST/GET/DELETE
//! /api/v1/events/{pipeline_id}` start, report and stop the pipeline's
//! topic trigger; `POST /api/v1/topics/{topic}/messages` publishes on a
//! topic; `GET /api/v1/topics/{topic}` shows its counters and triggers.

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use utoipa::{IntoParams, OpenApi, ToSchema};
use warren::Deps;
use warren::domain::event::Event;
use warren::domain::identity::Principal;
use warren::http::dto::id_of;
use warren::http::openapi::{
    BadRequest, Conflict, Faults, NotFound, Refused, TooLarge, Unprocessable,
};
use warren::http::{AnyJson, ApiError, Params, Path};
use warren::ports::MAX_MESSAGE_BYTES;
use warren::service::events::{self, Ingested};
use warren::service::identity::{check_owns, check_sees};
use warren::service::pipelines;
use warren::service::topics::{self, Subscription};

pub fn router(deps: Deps) -> Router {
    let routes = Router::new()
        .route("/events", post(ingest))
        .route("/events/", post(ingest))
        .route("/events/{id}", get(one))
        .route(
            "/api/v1/events/{pipeline_id}",
            post(start).get(status).delete(stop),
        )
        .route("/api/v1/topics/{topic}", get(topic))
        .route("/api/v1/topics/{topic}/messages", post(publish))
        .layer(DefaultBodyLimit::max(MAX_MESSAGE_BYTES));
    warren::http::api(&deps, routes)
}

/// What this function's routes say of themselves in the OpenAPI document
/// (`POST /events/` is `POST /events` again).
pub fn openapi() -> utoipa::openapi::OpenApi {
    #[derive(OpenApi)]
    #[openapi(paths(ingest, one, start, status, stop, topic, publish))]
    struct Doc;
    let mut doc = Doc::openapi();
    if let Some(mut item) = doc.paths.paths.get("/events").cloned() {
        if let Some(op) = item.post.as_mut() {
            op.operation_id = Some("ingest_event_slash".into());
        }
        doc.paths.paths.insert("/events/".into(), item);
    }
    doc
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct IngestParams {
    /// The pipeline id; else the configured default.
    #[param(value_type = Option<uuid::Uuid>)]
    workflow: Option<String>,
    /// `sync`: check the pipeline's `event_schema` now (422 when broken);
    /// `async` (the default): when the pipeline runs.
    #[param(value_type = Option<Validate>, inline)]
    validate: Option<String>,
}

/// When an event is checked against its pipeline's `event_schema`.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
enum Validate {
    Sync,
    Async,
}

/// `POST /events`: the stored event and the execution that processes it.
#[derive(ToSchema)]
#[allow(dead_code)]
struct Accepted {
    event_id: uuid::Uuid,
    /// The execution that processes the event.
    task_id: uuid::Uuid,
}

/// 202 `{"event_id", "task_id"}` (the task is the execution that processes
/// the event); 422 `invalid_event` with `violations` when `validate=sync`
/// finds the body breaks the pipeline's schema (nothing is stored then).
#[utoipa::path(
    post,
    path = "/events",
    operation_id = "ingest_event",
    tag = "events",
    params(IngestParams),
    request_body(content = serde_json::Value, description = "any JSON value: the event"),
    responses(
        (status = 202, description = "the event is stored and its execution queued", body = Accepted),
        BadRequest, NotFound, TooLarge, Unprocessable, Refused, Faults,
    )
)]
async fn ingest(
    State(deps): State<Deps>,
    who: Principal,
    Params(p): Params<IngestParams>,
    AnyJson(data): AnyJson,
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
    // Running a pipeline is its owner's (or an admin's) to do.
    let pipeline = events::workflow(&deps, workflow).await?;
    check_owns(&who, pipeline.user_id, "no such pipeline")?;
    match events::ingest_into(&deps, data, &pipeline, sync).await? {
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
#[utoipa::path(
    get,
    path = "/events/{id}",
    operation_id = "get_event",
    tag = "events",
    params(("id" = uuid::Uuid, Path, description = "the event's id")),
    responses(
        (status = 200, description = "the event and what its execution made of it", body = Event),
        BadRequest, NotFound, Refused, Faults,
    )
)]
async fn one(
    State(deps): State<Deps>,
    who: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let event = events::get(&deps, id_of(&id, "event")?).await?;
    check_sees(&who, event.user_id, "no such event")?;
    Ok(Json(event).into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct StartParams {
    /// The version each message runs; the current one by default.
    pipeline_version: Option<u32>,
}

/// A pipeline's event trigger: started (`ready`) with its topic and
/// version, or not.
#[derive(ToSchema)]
#[allow(dead_code)]
struct TriggerState {
    pipeline_id: uuid::Uuid,
    ready: bool,
    /// While started.
    #[schema(required = false)]
    topic: String,
    /// While started.
    #[schema(required = false)]
    pipeline_version: u32,
    /// While started.
    #[schema(required = false)]
    started_at: chrono::DateTime<chrono::Utc>,
    /// Only in the answers to a start or a stop.
    #[schema(required = false)]
    message: String,
}

/// `GET /api/v1/topics/{topic}`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct TopicAnswer {
    topic: String,
    /// Messages published over HTTP.
    published: i64,
    /// Executions the dispatcher started.
    dispatched: i64,
    /// Messages that found no started trigger.
    dropped: i64,
    /// Executions not started: their owner's runs of the month were used up.
    refused: i64,
    /// The started triggers on the topic (a user sees its own).
    subscriptions: Vec<TriggerState>,
}

/// A topic in a path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct TopicPath {
    /// Letters, digits, `-` or `_`, optionally ending in `.fifo`; at most
    /// 256 characters (an SNS topic name).
    #[param(pattern = r"^[A-Za-z0-9_-]+(\.fifo)?$", max_length = 256)]
    topic: String,
}

/// `POST /api/v1/topics/{topic}/messages`.
#[derive(ToSchema)]
#[allow(dead_code)]
struct Published {
    topic: String,
    message_id: uuid::Uuid,
}

/// A started trigger: it is ready.
fn subscription_json(s: &Subscription) -> serde_json::Value {
    json!({
        "pipeline_id": s.pipeline_id,
        "topic": s.topic,
        "pipeline_version": s.pipeline_version,
        "started_at": s.started_at,
        "ready": true,
    })
}

/// 200 `{"message", "ready": true, "pipeline_id", "topic",
/// "pipeline_version", "started_at"}`; 409 `no_topic` when the pipeline's
/// `options.event` names no topic.
#[utoipa::path(
    post,
    path = "/api/v1/events/{pipeline_id}",
    operation_id = "start_event_trigger",
    tag = "events",
    params(("pipeline_id" = uuid::Uuid, Path, description = "the pipeline's id"), StartParams),
    responses(
        (status = 200, description = "the trigger is started", body = TriggerState),
        BadRequest, NotFound, Conflict, Refused, Faults,
    )
)]
async fn start(
    State(deps): State<Deps>,
    who: Principal,
    Path(pipeline_id): Path<String>,
    Params(p): Params<StartParams>,
) -> Result<Response, ApiError> {
    let id = id_of(&pipeline_id, "pipeline")?;
    check_owns(&who, owner_of(&deps, id).await?, "no such pipeline")?;
    let s = topics::start(&deps, id, p.pipeline_version).await?;
    let mut body = subscription_json(&s);
    body["message"] = json!("Event started successfully");
    Ok(Json(body).into_response())
}

/// `{"ready": bool}`, plus the topic and version while it is started.
#[utoipa::path(
    get,
    path = "/api/v1/events/{pipeline_id}",
    operation_id = "get_event_trigger",
    tag = "events",
    params(("pipeline_id" = uuid::Uuid, Path, description = "the pipeline's id")),
    responses(
        (status = 200, description = "whether the trigger is started", body = TriggerState),
        BadRequest, NotFound, Refused, Faults,
    )
)]
async fn status(
    State(deps): State<Deps>,
    who: Principal,
    Path(pipeline_id): Path<String>,
) -> Result<Response, ApiError> {
    let id = id_of(&pipeline_id, "pipeline")?;
    check_sees(&who, owner_of(&deps, id).await?, "no such pipeline")?;
    let body = match topics::status(&deps, id).await? {
        Some(s) => subscription_json(&s),
        None => json!({ "pipeline_id": id, "ready": false }),
    };
    Ok(Json(body).into_response())
}

#[utoipa::path(
    delete,
    path = "/api/v1/events/{pipeline_id}",
    operation_id = "stop_event_trigger",
    tag = "events",
    params(("pipeline_id" = uuid::Uuid, Path, description = "the pipeline's id")),
    responses(
        (status = 200, description = "the trigger is stopped", body = TriggerState),
        BadRequest, NotFound, Conflict, Refused, Faults,
    )
)]
async fn stop(
    State(deps): State<Deps>,
    who: Principal,
    Path(pipeline_id): Path<String>,
) -> Result<Response, ApiError> {
    let id = id_of(&pipeline_id, "pipeline")?;
    check_owns(&who, owner_of(&deps, id).await?, "no such pipeline")?;
    topics::stop(&deps, id).await?;
    Ok(Json(json!({
        "message": "Event deleted successfully",
        "pipeline_id": id,
        "ready": false,
    }))
    .into_response())
}

/// Whose pipeline `id` is (404 when there is none).
async fn owner_of(deps: &Deps, id: uuid::Uuid) -> Result<Option<uuid::Uuid>, ApiError> {
    Ok(pipelines::get(deps, id, None).await?.user_id)
}

/// 202 `{"topic", "message_id"}`: the message is on the topic queue; the
/// dispatcher starts the topic's started triggers (each execution carries
/// the message id as its `trigger_id`).
#[utoipa::path(
    post,
    path = "/api/v1/topics/{topic}/messages",
    operation_id = "publish_message",
    tag = "events",
    params(TopicPath),
    request_body(content = serde_json::Value, description = "any JSON value: the message"),
    responses(
        (status = 202, description = "the message is on the topic queue", body = Published),
        BadRequest, TooLarge, Refused, Faults,
    )
)]
async fn publish(
    State(deps): State<Deps>,
    Path(topic): Path<String>,
    AnyJson(payload): AnyJson,
) -> Result<Response, ApiError> {
    let message_id = topics::publish(&deps, &topic, &payload).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "topic": topic, "message_id": message_id })),
    )
        .into_response())
}

/// The topic's counters (published, dispatched, dropped, refused) and the
/// pipelines whose trigger is started on it (a user sees its own).
#[utoipa::path(
    get,
    path = "/api/v1/topics/{topic}",
    operation_id = "get_topic",
    tag = "events",
    params(TopicPath),
    responses(
        (status = 200, description = "the topic's counters and started triggers", body = TopicAnswer),
        BadRequest, Refused, Faults,
    )
)]
async fn topic(
    State(deps): State<Deps>,
    who: Principal,
    Path(topic): Path<String>,
) -> Result<Response, ApiError> {
    let info = topics::info(&deps, &topic).await?;
    let subscriptions: Vec<_> = info
        .subscriptions
        .iter()
        .filter(|s| who.sees(s.user_id))
        .map(subscription_json)
        .collect();
    Ok(Json(json!({
        "topic": info.topic,
        "published": info.published,
        "dispatched": info.dispatched,
        "dropped": info.dropped,
        "refused": info.refused,
        "subscriptions": subscriptions,
    }))
    .into_response())
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
    use warren::testing::router::call;
    use warren::testing::{memory_deps, pipeline_on_topic};
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
            (StatusCode::BAD_REQUEST, Some("no_workflow"))
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

    async fn on_topic(deps: &Deps, topic: Option<&str>) -> uuid::Uuid {
        pipeline_on_topic(deps, topic).await.id
    }

    #[tokio::test]
    async fn an_event_trigger_starts_reports_and_stops() {
        let deps = deps(|_| {});
        let id = on_topic(&deps, Some("orders")).await;
        let path = format!("/api/v1/events/{id}");
        let ready = |deps: Deps| {
            let path = path.clone();
            async move { call(router(deps), "GET", &path, "").await.body["ready"].clone() }
        };
        assert_eq!(ready(deps.clone()).await, json!(false));
        for _ in 0..2 {
            let a = call(router(deps.clone()), "POST", &path, "").await;
            assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
            assert_eq!(
                (
                    &a.body["topic"],
                    &a.body["pipeline_version"],
                    &a.body["ready"]
                ),
                (&json!("orders"), &json!(1), &json!(true))
            );
            assert_eq!(a.body["message"], "Event started successfully");
        }
        assert_eq!(ready(deps.clone()).await, json!(true));
        let pinned = call(
            router(deps.clone()),
            "POST",
            &format!("{path}?pipeline_version=1"),
            "",
        )
        .await;
        assert_eq!(pinned.status, StatusCode::OK, "{:?}", pinned.body);
        for _ in 0..2 {
            let d = call(router(deps.clone()), "DELETE", &path, "").await;
            assert_eq!(d.status, StatusCode::OK, "{:?}", d.body);
            assert_eq!(d.body["message"], "Event deleted successfully");
        }
        assert_eq!(ready(deps).await, json!(false));
    }

    #[tokio::test]
    async fn bad_trigger_requests_are_4xx_json_and_store_nothing() {
        let deps = deps(|_| {});
        let no_topic = on_topic(&deps, None).await;
        let with_topic = on_topic(&deps, Some("orders")).await;
        let unknown = uuid::Uuid::now_v7();
        for (method, path, status, code) in [
            (
                "POST",
                format!("/api/v1/events/{no_topic}"),
                StatusCode::CONFLICT,
                "no_topic",
            ),
            (
                "POST",
                format!("/api/v1/events/{unknown}"),
                StatusCode::NOT_FOUND,
                "not_found",
            ),
            (
                "GET",
                format!("/api/v1/events/{unknown}"),
                StatusCode::NOT_FOUND,
                "not_found",
            ),
            (
                "DELETE",
                format!("/api/v1/events/{unknown}"),
                StatusCode::NOT_FOUND,
                "not_found",
            ),
            (
                "POST",
                "/api/v1/events/nope".into(),
                StatusCode::BAD_REQUEST,
                "invalid_id",
            ),
            (
                "POST",
                format!("/api/v1/events/{with_topic}?pipeline_version=x"),
                StatusCode::BAD_REQUEST,
                "invalid_query",
            ),
            (
                "POST",
                format!("/api/v1/events/{with_topic}?pipeline_version=9"),
                StatusCode::NOT_FOUND,
                "not_found",
            ),
        ] {
            let a = call(router(deps.clone()), method, &path, "").await;
            assert_eq!(
                (a.status, a.body["code"].as_str()),
                (status, Some(code)),
                "{method} {path}: {:?}",
                a.body
            );
            assert!(a.body["error"].as_str().is_some_and(|e| !e.is_empty()));
        }
        for id in [no_topic, with_topic] {
            let a = call(
                router(deps.clone()),
                "GET",
                &format!("/api/v1/events/{id}"),
                "",
            )
            .await;
            assert_eq!(a.body["ready"], json!(false), "nothing was started");
        }
        let topic = call(router(deps), "GET", "/api/v1/topics/orders", "").await;
        assert_eq!(topic.body["subscriptions"], json!([]));
    }

    #[tokio::test]
    async fn publishing_answers_202_with_the_message_id_and_counts_it() {
        let deps = deps(|_| {});
        let a = call(
            router(deps.clone()),
            "POST",
            "/api/v1/topics/orders/messages",
            r#"{"order": 1}"#,
        )
        .await;
        assert_eq!(a.status, StatusCode::ACCEPTED, "{:?}", a.body);
        assert_eq!(a.body["topic"], "orders");
        assert!(a.body["message_id"].as_str().is_some_and(|m| !m.is_empty()));
        let info = call(router(deps.clone()), "GET", "/api/v1/topics/orders", "").await;
        assert_eq!(
            (info.status, &info.body["published"]),
            (StatusCode::OK, &json!(1))
        );

        let huge = format!("\"{}\"", "x".repeat(warren::ports::MAX_MESSAGE_BYTES));
        for (path, body, status) in [
            (
                "/api/v1/topics/bad%20topic/messages",
                "{}",
                StatusCode::BAD_REQUEST,
            ),
            ("/api/v1/topics/a.b/messages", "{}", StatusCode::BAD_REQUEST),
            (
                "/api/v1/topics/orders/messages",
                "{",
                StatusCode::BAD_REQUEST,
            ),
            (
                "/api/v1/topics/orders/messages",
                "",
                StatusCode::BAD_REQUEST,
            ),
            (
                "/api/v1/topics/orders/messages",
                huge.as_str(),
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            ("/api/v1/topics/bad%20topic", "", StatusCode::BAD_REQUEST),
        ] {
            let method = if path.ends_with("messages") {
                "POST"
            } else {
                "GET"
            };
            let a = call(router(deps.clone()), method, path, body).await;
            assert_eq!(a.status, status, "{path}: {:?}", a.body);
            assert!(a.body["code"].is_string(), "{path}: {:?}", a.body);
        }
        let info = call(router(deps), "GET", "/api/v1/topics/orders", "").await;
        assert_eq!(
            info.body["published"],
            json!(1),
            "refused messages are not sent"
        );
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

    #[tokio::test]
    async fn triggers_and_topics_require_the_api_key_too() {
        let deps = deps(|c| c.api_key = ApiKey::new(Some("s3cret")));
        let id = on_topic(&deps, Some("orders")).await;
        for (method, path) in [
            ("POST", format!("/api/v1/events/{id}")),
            ("GET", format!("/api/v1/events/{id}")),
            ("DELETE", format!("/api/v1/events/{id}")),
            ("POST", "/api/v1/topics/orders/messages".into()),
            ("GET", "/api/v1/topics/orders".into()),
        ] {
            let a = call(router(deps.clone()), method, &path, "{}").await;
            assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{method} {path}");
        }
    }
}
