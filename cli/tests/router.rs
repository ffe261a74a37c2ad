//! Router tests: the merged app answered in memory with `oneshot`, no network.

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;
use warren::adapters::clock::SystemClock;
use warren::handlers::Registry;
use warren::http::ApiKey;
use warren::testing::memory_deps;
use warren::{Config, Deps};

fn deps() -> Deps {
    memory_deps(Arc::new(SystemClock), Registry::standard())
}

fn with_key(mut deps: Deps, key: &str) -> Deps {
    let config = Config {
        api_key: ApiKey::new(Some(key)),
        ..(*deps.config).clone()
    };
    deps.config = Arc::new(config);
    deps
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
}

async fn call(
    deps: &Deps,
    method: &str,
    uri: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> Answer {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Body::from(body.unwrap_or("").to_string()))
        .unwrap();
    let res = warren_cli::app(deps.clone()).oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = to_bytes(res.into_body(), usize::MAX).await.unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
    Answer {
        status,
        headers,
        body,
    }
}

async fn post(deps: &Deps, uri: &str, body: &str) -> Answer {
    call(deps, "POST", uri, Some(body), &[]).await
}

async fn get(deps: &Deps, uri: &str) -> Answer {
    call(deps, "GET", uri, None, &[]).await
}

async fn stored_tasks(deps: &Deps) -> usize {
    get(deps, "/api/v1/tasks?limit=1000")
        .await
        .body
        .as_array()
        .map_or(0, Vec::len)
}

fn assert_error(a: &Answer, status: StatusCode, code: &str) {
    assert_eq!(a.status, status, "body: {}", a.body);
    assert_eq!(a.body["code"], code, "body: {}", a.body);
    assert!(
        a.body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "body: {}",
        a.body
    );
}

#[tokio::test]
async fn enqueued_task_reads_back_with_every_field() {
    let deps = deps();
    let body = json!({
        "task_name": "echo", "queue_name": "video", "module_path": "myapp.tasks",
        "args": [1, 2], "kwargs": {"k": "v"}, "max_retries": 5, "priority": 7,
        "metadata": {"source": "web"}, "retry_delay": 30, "retry_backoff": false,
        "scheduled_at": "2030-06-15T12:00:00"
    });
    let a = post(&deps, "/api/v1/enqueue", &body.to_string()).await;
    assert_eq!(a.status, StatusCode::CREATED);
    let id = a.body["task_id"].as_str().unwrap().to_string();
    let t = get(&deps, &format!("/api/v1/tasks/{id}")).await.body;
    assert_eq!(t["status"], "pending");
    assert_eq!(t["queue_name"], "video");
    assert_eq!(t["module_path"], "myapp.tasks");
    assert_eq!(t["args"], json!([1, 2]));
    assert_eq!(t["kwargs"], json!({"k": "v"}));
    assert_eq!(
        (t["max_retries"].as_u64(), t["priority"].as_i64()),
        (Some(5), Some(7))
    );
    assert_eq!(t["metadata"], json!({"source": "web"}));
    assert_eq!(
        (t["retry_delay"].as_u64(), t["retry_backoff"].as_bool()),
        (Some(30), Some(false))
    );
    assert_eq!(t["scheduled_at"], "2030-06-15T12:00:00Z");
    assert_eq!(t["attempts"], 0);
    let r = get(&deps, &format!("/api/v1/tasks/{id}/result")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["error"], "task not finished");
    assert_eq!(r.body["status"], "pending");
}

#[tokio::test]
async fn ephemeral_task_answers_null_id_and_is_not_stored() {
    let deps = deps();
    let a = post(
        &deps,
        "/api/v1/enqueue",
        r#"{"task_name": "echo", "ttl_seconds": 0}"#,
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(a.body, json!({"task_id": null, "ttl_seconds": 0}));
    assert_eq!(stored_tasks(&deps).await, 0);
}

#[tokio::test]
async fn bad_input_gets_a_4xx_json_error_and_stores_nothing() {
    let deps = deps();
    let big = format!(
        r#"{{"task_name": "echo", "args": ["{}"]}}"#,
        "x".repeat(300 * 1024)
    );
    let cases: Vec<(&str, String, StatusCode, &str)> = vec![
        (
            "/api/v1/enqueue",
            "{not json".into(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "/api/v1/enqueue",
            "".into(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "/api/v1/enqueue",
            r#"{"queue_name": "q"}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            "/api/v1/enqueue",
            r#"{"task_name": "echo", "priority": "high"}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            "/api/v1/enqueue",
            r#"{"task_name": "echo", "args": {"a": 1}}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            "/api/v1/enqueue",
            r#"{"task_name": "echo", "scheduled_at": "soon"}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            "/api/v1/enqueue",
            r#"{"task_name": "echo", "max_retries": -1}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            "/api/v1/enqueue",
            r#"{"task_name": "echo", "queue_name": "a b#c"}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            "/api/v1/enqueue",
            r#"{"task_name": "echo", "webhook_url": "ftp://x"}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            "/api/v1/enqueue",
            r#"{"task_name": ""}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            "/api/v1/enqueue",
            r#"[1]"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            "/api/v1/enqueue",
            big,
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            "/api/v1/enqueue/batch",
            r#"{"task_name": "echo"}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            "/api/v1/enqueue/batch",
            "[]".into(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
    ];
    for (path, body, status, code) in cases {
        let a = post(&deps, path, &body).await;
        assert_error(&a, status, code);
    }
    assert_eq!(stored_tasks(&deps).await, 0);
}

#[tokio::test]
async fn one_bad_item_rejects_the_whole_batch_naming_its_index() {
    let deps = deps();
    let batch = json!([{"task_name": "echo"}, {"task_name": "echo"}, {"task_name": "echo", "priority": "x"}]);
    let a = post(&deps, "/api/v1/enqueue/batch", &batch.to_string()).await;
    assert_error(&a, StatusCode::BAD_REQUEST, "invalid_field");
    assert!(
        a.body["error"].as_str().unwrap().contains("item 2"),
        "{}",
        a.body
    );
    let batch = json!([{"task_name": "echo"}, {"task_name": "echo", "timeout_seconds": 0}]);
    let a = post(&deps, "/api/v1/enqueue/batch", &batch.to_string()).await;
    assert!(
        a.body["error"].as_str().unwrap().contains("item 1"),
        "{}",
        a.body
    );
    assert_eq!(stored_tasks(&deps).await, 0);
}

#[tokio::test]
async fn batch_of_1001_is_refused_and_1000_accepted() {
    let deps = deps();
    let items = |n: usize| {
        Value::Array(
            (0..n)
                .map(|i| json!({"task_name": "echo", "args": [i]}))
                .collect(),
        )
    };
    let a = post(&deps, "/api/v1/enqueue/batch", &items(1001).to_string()).await;
    assert_error(&a, StatusCode::PAYLOAD_TOO_LARGE, "batch_too_large");
    assert_eq!(stored_tasks(&deps).await, 0);
    let a = post(&deps, "/api/v1/enqueue/batch", &items(1000).to_string()).await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(a.body["count"], 1000);
    assert_eq!(a.body["task_ids"].as_array().unwrap().len(), 1000);
    assert_eq!(stored_tasks(&deps).await, 1000);
}

#[tokio::test]
async fn bad_ids_unknown_routes_and_wrong_methods_answer_json() {
    let deps = deps();
    assert_error(
        &get(&deps, "/api/v1/tasks/not-a-uuid").await,
        StatusCode::BAD_REQUEST,
        "invalid_id",
    );
    let unknown = uuid::Uuid::now_v7();
    assert_error(
        &get(&deps, &format!("/api/v1/tasks/{unknown}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &get(&deps, "/api/v2/nothing").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &call(&deps, "PUT", "/api/v1/enqueue", Some("{}"), &[]).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    assert_error(
        &get(&deps, "/api/v1/tasks?status=done").await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    );
    assert_error(
        &get(&deps, "/api/v1/tasks?limit=lots").await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    );
    assert_error(
        &get(&deps, "/api/v1/tasks?cursor=%%%").await,
        StatusCode::BAD_REQUEST,
        "invalid_cursor",
    );
}

#[tokio::test]
async fn api_routes_require_the_key_when_one_is_set() {
    let deps = with_key(deps(), "s3cret");
    let body = r#"{"task_name": "echo"}"#;
    assert_error(
        &post(&deps, "/api/v1/enqueue", body).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    let wrong = call(
        &deps,
        "POST",
        "/api/v1/enqueue",
        Some(body),
        &[("x-api-key", "nope")],
    )
    .await;
    assert_error(&wrong, StatusCode::UNAUTHORIZED, "unauthorized");
    let ok = call(
        &deps,
        "POST",
        "/api/v1/enqueue",
        Some(body),
        &[("x-api-key", "s3cret")],
    )
    .await;
    assert_eq!(ok.status, StatusCode::CREATED);
    let bearer = call(
        &deps,
        "GET",
        "/api/v1/queues",
        None,
        &[("authorization", "Bearer s3cret")],
    )
    .await;
    assert_eq!(bearer.status, StatusCode::OK);
    assert_eq!(get(&deps, "/health").await.status, StatusCode::OK);
    assert_eq!(get(&deps, "/metrics").await.status, StatusCode::OK);
    let doc = get(&deps, "/openapi.json").await;
    assert_eq!(doc.status, StatusCode::OK, "the API document stays public");
    assert_eq!(doc.headers["content-type"], "application/json");
    assert_eq!(doc.body["openapi"], "3.1.0");
    assert_eq!(doc.body["info"]["title"], "warren");
}

#[tokio::test]
async fn task_list_pages_newest_first_with_a_cursor() {
    let deps = deps();
    let mut ids = Vec::new();
    for i in 0..7 {
        let a = post(
            &deps,
            "/api/v1/enqueue",
            &json!({"task_name": "echo", "queue_name": "pages", "args": [i]}).to_string(),
        )
        .await;
        ids.push(a.body["task_id"].as_str().unwrap().to_string());
    }
    ids.reverse(); // newest first
    let mut seen = Vec::new();
    let mut uri = "/api/v1/tasks?queue=pages&limit=3".to_string();
    loop {
        let a = get(&deps, &uri).await;
        assert_eq!(a.status, StatusCode::OK);
        seen.extend(
            a.body
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["id"].as_str().unwrap().to_string()),
        );
        match a.headers.get("x-next-cursor") {
            Some(c) => {
                let link = a.headers.get("link").unwrap().to_str().unwrap();
                assert!(link.contains("rel=\"next\""), "{link}");
                uri = format!(
                    "/api/v1/tasks?queue=pages&limit=3&cursor={}",
                    c.to_str().unwrap()
                );
            }
            None => break,
        }
    }
    assert_eq!(seen, ids);
    let by_status = get(&deps, "/api/v1/tasks?status=pending&task_name=ECH")
        .await
        .body;
    assert_eq!(by_status.as_array().unwrap().len(), 7);
    let none = get(&deps, "/api/v1/tasks?task_name=nomatch").await.body;
    assert_eq!(none, json!([]));
}

#[tokio::test]
async fn cancel_requeue_and_bulk_delete_follow_the_state_machine() {
    let deps = deps();
    let a = post(
        &deps,
        "/api/v1/enqueue",
        r#"{"task_name": "echo", "scheduled_at": "2099-01-01T00:00:00Z"}"#,
    )
    .await;
    let id = a.body["task_id"].as_str().unwrap().to_string();
    let requeue = call(
        &deps,
        "POST",
        &format!("/api/v1/tasks/{id}/requeue"),
        None,
        &[],
    )
    .await;
    assert_error(&requeue, StatusCode::NOT_FOUND, "task_not_failed");
    let progress = call(
        &deps,
        "PATCH",
        &format!("/api/v1/tasks/{id}/progress"),
        Some(r#"{"progress": 5}"#),
        &[],
    )
    .await;
    assert_eq!(
        progress.status,
        StatusCode::OK,
        "lapinq records progress in any status"
    );
    assert_eq!(progress.body["status"], "ok");
    let cancel = call(&deps, "DELETE", &format!("/api/v1/tasks/{id}"), None, &[]).await;
    assert_eq!(cancel.status, StatusCode::OK);
    assert_eq!(cancel.body["status"], "cancelled");
    let again = call(&deps, "DELETE", &format!("/api/v1/tasks/{id}"), None, &[]).await;
    assert_error(&again, StatusCode::NOT_FOUND, "task_not_pending");
    let queues = get(&deps, "/api/v1/queues").await.body;
    assert_eq!(queues[0]["cancelled"], 1);
    assert_eq!(queues[0]["pending"], 0);
    let deleted = call(&deps, "DELETE", "/api/v1/tasks?status=cancelled", None, &[]).await;
    assert_eq!(deleted.body, json!({"deleted": 1, "more": false}));
    assert_eq!(
        get(&deps, &format!("/api/v1/tasks/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
}
