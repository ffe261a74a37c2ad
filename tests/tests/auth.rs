//! The bootstrap key: with WARREN_API_KEY every /api route needs it (or a
//! user's credentials); /health and /metrics stay public; an open API
//! (`--open`) is only served on loopback.

use warren_tests::*;

const KEY: &str = "test-key-5f2b9c-7e41a";

/// One request per /api route and method.
fn api_routes() -> Vec<(&'static str, String, Option<Value>)> {
    let id = uuid::Uuid::now_v7();
    vec![
        (
            "POST",
            "/api/v1/enqueue".into(),
            Some(json!({"task_name": "echo"})),
        ),
        (
            "POST",
            "/api/v1/enqueue/batch".into(),
            Some(json!([{"task_name": "echo"}])),
        ),
        ("GET", "/api/v1/tasks".into(), None),
        ("DELETE", "/api/v1/tasks".into(), None),
        ("GET", "/api/v1/tasks/failed".into(), None),
        ("GET", "/api/v1/queues".into(), None),
        ("GET", format!("/api/v1/tasks/{id}"), None),
        ("DELETE", format!("/api/v1/tasks/{id}"), None),
        ("GET", format!("/api/v1/tasks/{id}/result"), None),
        (
            "PATCH",
            format!("/api/v1/tasks/{id}/progress"),
            Some(json!({"progress": 1})),
        ),
        ("POST", format!("/api/v1/tasks/{id}/requeue"), None),
    ]
}

async fn call(
    w: &Warren,
    method: &str,
    path: &str,
    body: &Option<Value>,
    auth: &[(&str, &str)],
) -> Resp {
    let mut headers: Vec<(&str, &str)> = auth.to_vec();
    let bytes = body.as_ref().map(|b| {
        headers.push(("content-type", "application/json"));
        b.to_string().into_bytes()
    });
    w.send_raw(method, path, &headers, bytes).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_api_key_every_api_route_answers_401_without_it() {
    let w = Warren::start(Opts::new().api_key(KEY).no_worker()).await;
    for (method, path, body) in api_routes() {
        for auth in [
            vec![],
            vec![("x-api-key", "wrong-key")],
            vec![("x-api-key", "")],
            vec![("authorization", "Bearer wrong-key")],
        ] {
            let r = call(&w, method, &path, &body, &auth).await;
            assert_eq!(
                r.status, 401,
                "{method} {path} with {auth:?}: {} {}",
                r.status, r.text
            );
            r.expect_error(401, None);
        }
    }
    // Nothing the rejected requests carried was stored.
    let r = w
        .send_raw("GET", "/api/v1/queues", &[("x-api-key", KEY)], None)
        .await;
    r.expect(200);
    assert_eq!(r.json, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_api_key_or_bearer_token_opens_the_api() {
    let w = Warren::start(Opts::new().api_key(KEY).no_worker()).await;
    let body = Some(json!({"task_name": "echo"}));
    let r = call(&w, "POST", "/api/v1/enqueue", &body, &[("x-api-key", KEY)]).await;
    r.expect(201);
    let id = r.json["task_id"].as_str().unwrap().to_string();
    let bearer = format!("Bearer {KEY}");
    let r = call(
        &w,
        "GET",
        &format!("/api/v1/tasks/{id}"),
        &None,
        &[("authorization", &bearer)],
    )
    .await;
    r.expect(200);
    assert_eq!(r.json["id"], id.as_str());
    let r = call(&w, "GET", "/api/v1/queues", &None, &[("X-API-Key", KEY)]).await;
    r.expect(200);
    assert_eq!(r.json[0]["pending"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_stay_public_with_an_api_key() {
    let w = Warren::start(Opts::new().api_key(KEY).no_worker()).await;
    let r = w.send_raw("GET", "/health", &[], None).await;
    r.expect(200);
    assert_eq!(r.json["status"], "ok");
    let r = w.send_raw("GET", "/metrics", &[], None).await;
    r.expect(200);
    assert!(r.text.contains("warren_tasks"), "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_flag_works_like_the_environment_variable() {
    let w = Warren::start(
        Opts::new()
            .args(["--api-key", KEY])
            .client_key(KEY)
            .no_worker(),
    )
    .await;
    w.send_raw("GET", "/api/v1/tasks", &[], None)
        .await
        .expect_error(401, None);
    w.get("/api/v1/tasks").await.expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_open_the_loopback_api_needs_no_credentials_and_without_it_does() {
    let w = Warren::start(Opts::new().no_worker()).await;
    w.send_raw("GET", "/api/v1/tasks", &[], None)
        .await
        .expect(200);
    let w = Warren::start(Opts::new().signed_in().no_worker()).await;
    w.send_raw("GET", "/api/v1/tasks", &[], None)
        .await
        .expect_error(401, None);
}

#[test]
fn an_open_api_beyond_loopback_is_refused_at_start() {
    let (status, stdout, stderr) = run_to_exit(&["--host", "0.0.0.0", "--open"], &[], secs(20));
    let status =
        status.unwrap_or_else(|| panic!("warren served 0.0.0.0 with --open; stdout {stdout}"));
    assert!(!status.success(), "exit status {status}");
    assert!(
        stderr.contains("--open"),
        "the message does not name --open: {stderr}"
    );
    assert!(!stdout.contains("warren listening"), "{stdout}");
}

#[test]
fn open_and_a_bootstrap_key_together_are_refused_at_start() {
    let (status, stdout, stderr) = run_to_exit(&["--open"], &[("WARREN_API_KEY", KEY)], secs(20));
    let status = status.unwrap_or_else(|| panic!("warren served: {stdout}"));
    assert!(!status.success(), "exit status {status}");
    assert!(stderr.contains("choose one"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_loopback_without_any_key_users_sign_in() {
    let w = Warren::start(
        Opts::new()
            .signed_in()
            .args(["--host", "0.0.0.0"])
            .no_worker(),
    )
    .await;
    w.send_raw("GET", "/api/v1/tasks", &[], None)
        .await
        .expect_error(401, Some("unauthorized"));
    w.send_raw("GET", "/health", &[], None).await.expect(200);
}

#[test]
fn a_key_shorter_than_16_characters_is_refused_beyond_loopback() {
    let (status, stdout, stderr) = run_to_exit(
        &["--host", "0.0.0.0", "--no-worker"],
        &[("WARREN_API_KEY", "k")],
        secs(20),
    );
    let status = status.unwrap_or_else(|| panic!("a 1-character key served 0.0.0.0: {stdout}"));
    assert!(!status.success(), "exit status {status}");
    assert!(stderr.contains("at least 16"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_loopback_host_with_an_api_key_serves() {
    let w = Warren::start(
        Opts::new()
            .args(["--host", "0.0.0.0"])
            .api_key(KEY)
            .no_worker(),
    )
    .await;
    w.get("/api/v1/tasks").await.expect(200);
    w.send_raw("GET", "/api/v1/tasks", &[], None)
        .await
        .expect_error(401, None);
}
