//! POST /api/v1/enqueue: fields stored as sent, defaults, idempotency keys,
//! `ttl_seconds: 0` tasks that run without being kept.

use warren_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_answers_201_with_a_v7_uuid_and_stores_every_field() {
    let w = Warren::start(Opts::new().no_worker()).await;
    let body = json!({
        "task_name": "echo",
        "queue_name": "reports",
        "module_path": "myapp.tasks",
        "args": [1, "two", {"three": 3}],
        "kwargs": {"key": "value", "n": 42},
        "scheduled_at": "2099-06-15T12:00:00Z",
        "max_retries": 5,
        "priority": 7,
        "ttl_seconds": 86400,
        "metadata": {"source": "web", "user_id": 42},
        "retry_delay": 30,
        "retry_backoff": false,
        "webhook_url": "https://example.com/webhooks/task-complete",
        "timeout_seconds": 45,
        "idempotency_key": "enqueue-every-field"
    });
    let r = w.post("/api/v1/enqueue", &body).await;
    r.expect(201);
    assert!(
        r.header("content-type")
            .unwrap_or("")
            .starts_with("application/json")
    );
    let id = r.json["task_id"]
        .as_str()
        .expect("task_id string")
        .to_string();
    let uuid = uuid::Uuid::parse_str(&id).expect("task_id is a UUID");
    assert_eq!(uuid.get_version_num(), 7, "task ids are UUID v7");

    let t = w.task(&id).await;
    assert_eq!(t["id"], id.as_str());
    for field in [
        "task_name",
        "queue_name",
        "module_path",
        "args",
        "kwargs",
        "max_retries",
        "priority",
        "ttl_seconds",
        "metadata",
        "retry_delay",
        "retry_backoff",
        "webhook_url",
        "timeout_seconds",
        "idempotency_key",
    ] {
        assert_eq!(t[field], body[field], "field `{field}` of {t}");
    }
    assert_eq!(ts(&t["scheduled_at"]), ts(&body["scheduled_at"]));
    assert_eq!(t["status"], "pending");
    assert_eq!(t["attempts"], 0);
    assert!(t["result"].is_null() && t["error"].is_null());
    assert!(t["started_at"].is_null() && t["completed_at"].is_null());
    let created = ts(&t["created_at"]);
    let age = chrono::Utc::now() - created;
    assert!(
        age.num_seconds().abs() < 60,
        "created_at {created} is not now"
    );
    for field in ["progress", "progress_message", "webhook"] {
        assert!(t.get(field).is_some(), "task JSON lacks `{field}`: {t}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_with_only_task_name_takes_the_defaults() {
    let w = Warren::start(Opts::new().no_worker()).await;
    let id = w.enqueue(&json!({"task_name": "echo"})).await;
    let t = w.task(&id).await;
    assert_eq!(t["task_name"], "echo");
    assert_eq!(t["queue_name"], "default");
    assert_eq!(t["max_retries"], 3);
    assert_eq!(t["priority"], 0);
    assert_eq!(t["retry_backoff"], true);
    assert_eq!(t["args"], json!([]));
    assert_eq!(t["kwargs"], json!({}));
    assert_eq!(t["metadata"], json!({}));
    assert!(t["module_path"].is_null());
    assert!(t["webhook_url"].is_null());
    assert_eq!(t["status"], "pending");
    assert_eq!(w.count("default", "pending").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_at_without_offset_is_read_as_utc() {
    let w = Warren::start(Opts::new().no_worker()).await;
    let id = w
        .enqueue(&json!({"task_name": "echo", "scheduled_at": "2099-01-02T03:04:05"}))
        .await;
    let t = w.task(&id).await;
    assert_eq!(ts(&t["scheduled_at"]), ts(&json!("2099-01-02T03:04:05Z")));
    let id2 = w
        .enqueue(&json!({"task_name": "echo", "scheduled_at": "2099-01-02T05:04:05+02:00"}))
        .await;
    assert_eq!(
        ts(&w.task(&id2).await["scheduled_at"]),
        ts(&json!("2099-01-02T03:04:05Z"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_idempotency_key_in_body_returns_200_with_the_first_task_id_and_creates_nothing() {
    let w = Warren::start(Opts::new().no_worker()).await;
    let body = json!({"task_name": "echo", "args": [1], "idempotency_key": "order-42"});
    let first = w.post("/api/v1/enqueue", &body).await;
    first.expect(201);
    let second = w.post("/api/v1/enqueue", &body).await;
    second.expect(200);
    assert_eq!(second.json["task_id"], first.json["task_id"]);
    // Even with a different body, the key wins.
    let third = w
        .post(
            "/api/v1/enqueue",
            &json!({"task_name": "echo", "args": [2], "idempotency_key": "order-42"}),
        )
        .await;
    third.expect(200);
    assert_eq!(third.json["task_id"], first.json["task_id"]);
    assert_eq!(w.list("").await.len(), 1);
    assert_eq!(w.total_counted().await, 1);
    // Another key is another task.
    let other = w
        .post(
            "/api/v1/enqueue",
            &json!({"task_name": "echo", "idempotency_key": "order-43"}),
        )
        .await;
    other.expect(201);
    assert_ne!(other.json["task_id"], first.json["task_id"]);
    assert_eq!(w.total_counted().await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_idempotency_key_header_returns_200_with_the_first_task_id() {
    let w = Warren::start(Opts::new().no_worker()).await;
    let body = json!({"task_name": "echo"}).to_string().into_bytes();
    let headers = [
        ("content-type", "application/json"),
        ("idempotency-key", "hdr-key-1"),
    ];
    let first = w
        .send("POST", "/api/v1/enqueue", &headers, Some(body.clone()))
        .await;
    first.expect(201);
    let second = w
        .send("POST", "/api/v1/enqueue", &headers, Some(body))
        .await;
    second.expect(200);
    assert_eq!(second.json["task_id"], first.json["task_id"]);
    let t = w.task(first.json["task_id"].as_str().unwrap()).await;
    assert_eq!(t["idempotency_key"], "hdr-key-1");
    assert_eq!(w.total_counted().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_zero_task_is_not_stored_but_still_runs() {
    let rx = Receiver::ok().await;
    let w = Warren::start(Opts::new().allow_loopback()).await;
    let r = w
        .post(
            "/api/v1/enqueue",
            &json!({
                "task_name": "http",
                "queue_name": "ephemeral",
                "kwargs": {"url": rx.url("/ttl-zero"), "method": "POST", "body": "ran"},
                "ttl_seconds": 0
            }),
        )
        .await;
    r.expect(201);
    assert_eq!(r.json, json!({"task_id": null, "ttl_seconds": 0}));
    let got = rx.wait_for(1, secs(20)).await;
    assert_eq!(got[0].uri, "/ttl-zero");
    assert_eq!(got[0].body, b"ran");
    // Give the worker a moment to finish, then: nothing was kept.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        w.list("").await.is_empty(),
        "a ttl_seconds 0 task was stored"
    );
    assert_eq!(
        w.total_counted().await,
        0,
        "queues count a ttl_seconds 0 task: {:?}",
        w.queues().await
    );
    assert_eq!(rx.requests().len(), 1, "the task ran more than once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_are_counted_in_their_named_queue() {
    let w = Warren::start(Opts::new().no_worker()).await;
    for _ in 0..3 {
        w.enqueue(&json!({"task_name": "echo", "queue_name": "emails"}))
            .await;
    }
    w.enqueue(&json!({"task_name": "echo", "queue_name": "video"}))
        .await;
    let emails = w.queue("emails").await.expect("emails queue listed");
    assert_eq!(emails["pending"], 3);
    for s in ["running", "completed", "failed", "cancelled", "expired"] {
        assert_eq!(emails[s], 0, "{s} of {emails}");
    }
    assert_eq!(w.count("video", "pending").await, 1);
}
