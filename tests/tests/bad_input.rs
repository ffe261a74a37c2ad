//! Bad input gets a 4xx JSON error `{"error", "code"}`, stores nothing, and
//! never a 500.

use warren_tests::*;

/// A server with one known task, so "nothing stored" is checkable.
async fn server_with_one_task() -> (Warren, String) {
    let w = Warren::start(Opts::new().no_worker()).await;
    let id = w
        .enqueue(&json!({"task_name": "echo", "queue_name": "baseline"}))
        .await;
    (w, id)
}

/// Assert the store still holds exactly the baseline task, unchanged.
async fn assert_nothing_stored(w: &Warren, baseline: &str) {
    let all = w.list("limit=1000").await;
    assert_eq!(all.len(), 1, "a rejected request stored a task: {all:?}");
    assert_eq!(all[0]["id"], baseline);
    assert_eq!(all[0]["status"], "pending");
    let queues = w.queues().await;
    assert_eq!(queues.len(), 1, "{queues:?}");
    assert_eq!(queues[0]["queue_name"], "baseline");
    assert_eq!(w.total_counted().await, 1, "{queues:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_400_invalid_json() {
    let (w, base) = server_with_one_task().await;
    let mut wrong = Vec::new();
    for body in [
        "{\"task_name\": ",
        "{task_name: 'echo'}",
        "not json at all",
        "{\"task_name\": \"echo\"} trailing",
        "{\"task_name\": \"echo\",}",
        "\u{feff}{]",
    ] {
        for path in ["/api/v1/enqueue", "/api/v1/enqueue/batch"] {
            let r = w.post_bytes(path, body).await;
            if r.status != 400 || r.json["code"] != "invalid_json" {
                wrong.push(format!("{path} {body:?}: {} {}", r.status, r.text));
            } else {
                r.expect_error(400, Some("invalid_json"));
            }
        }
    }
    // invalid UTF-8
    let r = w
        .post_bytes("/api/v1/enqueue", vec![b'{', 0xff, 0xfe, b'}'])
        .await;
    r.expect_error(400, None);
    assert_nothing_stored(&w, &base).await;
    assert!(
        wrong.is_empty(),
        "malformed JSON not answered 400 invalid_json:\n{}",
        wrong.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_body_is_400() {
    let (w, base) = server_with_one_task().await;
    w.post_bytes("/api/v1/enqueue", "")
        .await
        .expect_error(400, None);
    w.post_empty("/api/v1/enqueue")
        .await
        .expect_error(400, None);
    w.post_bytes("/api/v1/enqueue/batch", "")
        .await
        .expect_error(400, None);
    w.post_bytes("/api/v1/enqueue", "   \n")
        .await
        .expect_error(400, None);
    assert_nothing_stored(&w, &base).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_task_name_is_400_naming_the_field() {
    let (w, base) = server_with_one_task().await;
    for body in [
        json!({}),
        json!({"queue_name": "x"}),
        json!({"task_name": null}),
    ] {
        let r = w.post("/api/v1/enqueue", &body).await;
        r.expect_error(400, None);
        assert!(r.message().contains("task_name"), "{body}: {}", r.text);
    }
    let r = w.post("/api/v1/enqueue", &json!({"task_name": ""})).await;
    r.expect_error(400, None);
    assert!(r.message().contains("task_name"), "{}", r.text);
    assert_nothing_stored(&w, &base).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_that_is_not_an_object_is_400() {
    let (w, base) = server_with_one_task().await;
    let mut wrong = Vec::new();
    // A task is a JSON object: arrays (even ones that line up with the
    // fields, as serde would read them) are not tasks.
    let cases = [
        ("/api/v1/enqueue", "[]"),
        ("/api/v1/enqueue", "[{\"task_name\": \"echo\"}]"),
        ("/api/v1/enqueue", "[\"echo\"]"),
        ("/api/v1/enqueue", "[\"echo\", \"not-default\"]"),
        ("/api/v1/enqueue", "\"echo\""),
        ("/api/v1/enqueue", "42"),
        ("/api/v1/enqueue", "null"),
        ("/api/v1/enqueue", "true"),
        ("/api/v1/enqueue/batch", "[[\"echo\"]]"),
        ("/api/v1/enqueue/batch", "[\"echo\"]"),
        ("/api/v1/enqueue/batch", "[null]"),
        ("/api/v1/enqueue/batch", "{\"task_name\": \"echo\"}"),
    ];
    for (path, body) in cases {
        let r = w.post_bytes(path, body).await;
        if r.status != 400 {
            wrong.push(format!("{path} {body}: {} {}", r.status, r.text));
        } else {
            r.expect_error(400, None);
        }
    }
    assert!(wrong.is_empty(), "not answered 400:\n{}", wrong.join("\n"));
    assert_nothing_stored(&w, &base).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_field_types_are_400_naming_the_field() {
    let (w, base) = server_with_one_task().await;
    let cases = [
        ("task_name", json!(42)),
        ("task_name", json!(["echo"])),
        ("queue_name", json!(5)),
        ("module_path", json!({"a": 1})),
        ("args", json!("not a list")),
        ("args", json!({"a": 1})),
        ("kwargs", json!([1, 2])),
        ("kwargs", json!("k=v")),
        ("scheduled_at", json!(1700000000)),
        ("max_retries", json!("three")),
        ("max_retries", json!(-1)),
        ("max_retries", json!(1.5)),
        ("priority", json!("high")),
        ("priority", json!(1e30)),
        ("ttl_seconds", json!(-5)),
        ("ttl_seconds", json!("1h")),
        ("metadata", json!("source=web")),
        ("metadata", json!([1])),
        ("retry_delay", json!("30s")),
        ("retry_delay", json!(-30)),
        ("retry_backoff", json!("yes")),
        ("webhook_url", json!(123)),
        ("timeout_seconds", json!("60")),
        ("timeout_seconds", json!(-1)),
        ("idempotency_key", json!(7)),
    ];
    for (field, value) in cases {
        let mut body = json!({"task_name": "echo", "queue_name": "q"});
        body[field] = value.clone();
        let r = w.post("/api/v1/enqueue", &body).await;
        assert_eq!(r.status, 400, "{field} = {value}: {} {}", r.status, r.text);
        r.expect_error(400, None);
        assert!(
            r.message().contains(field),
            "{field} = {value}: message does not name the field: {}",
            r.text
        );
    }
    assert_nothing_stored(&w, &base).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_dates_are_400() {
    let (w, base) = server_with_one_task().await;
    for date in [
        "tomorrow",
        "2026-13-01T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "2026-06-15T25:00:00Z",
        "",
        "15/06/2026",
    ] {
        let r = w
            .post(
                "/api/v1/enqueue",
                &json!({"task_name": "echo", "scheduled_at": date}),
            )
            .await;
        assert_eq!(
            r.status, 400,
            "scheduled_at {date:?}: {} {}",
            r.status, r.text
        );
        r.expect_error(400, None);
        assert!(r.message().contains("scheduled_at"), "{}", r.text);
    }
    assert_nothing_stored(&w, &base).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_256_kib_is_413() {
    let (w, base) = server_with_one_task().await;
    let big = "x".repeat(257 * 1024);
    let r = w
        .post(
            "/api/v1/enqueue",
            &json!({"task_name": "echo", "args": [big]}),
        )
        .await;
    r.expect_error(413, None);
    let r = w
        .post(
            "/api/v1/enqueue/batch",
            &json!([{"task_name": "echo", "kwargs": {"blob": big}}]),
        )
        .await;
    r.expect_error(413, None);
    // A task whose payload is over 256 KiB inside a batch that is not.
    let half = "y".repeat(200 * 1024);
    let r = w
        .post(
            "/api/v1/enqueue/batch",
            &json!([{"task_name": "echo", "args": [half]}, {"task_name": "echo", "args": [half]}]),
        )
        .await;
    assert!(
        r.status == 413 || r.status == 201,
        "{} {}",
        r.status,
        r.text
    );
    if r.status == 413 {
        r.expect_error(413, None);
        assert_nothing_stored(&w, &base).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_just_under_the_limit_is_accepted() {
    let w = Warren::start(Opts::new().no_worker()).await;
    let blob = "z".repeat(200 * 1024);
    let id = w
        .enqueue(&json!({"task_name": "echo", "args": [blob]}))
        .await;
    assert_eq!(
        w.task(&id).await["args"][0].as_str().map(str::len),
        Some(200 * 1024)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_webhook_urls_are_400() {
    let (w, base) = server_with_one_task().await;
    for url in [
        "not a url",
        "ftp://example.com/x",
        "example.com/hook",
        "http://",
        "javascript:alert(1)",
    ] {
        let r = w
            .post(
                "/api/v1/enqueue",
                &json!({"task_name": "echo", "webhook_url": url}),
            )
            .await;
        assert_eq!(
            r.status, 400,
            "webhook_url {url:?}: {} {}",
            r.status, r.text
        );
        r.expect_error(400, None);
        assert!(r.message().contains("webhook_url"), "{}", r.text);
    }
    assert_nothing_stored(&w, &base).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_queue_names_are_400() {
    let (w, base) = server_with_one_task().await;
    for q in [
        "a#b",
        "#",
        "has space",
        " lead",
        "trail ",
        "tab\there",
        "new\nline",
    ] {
        let r = w
            .post(
                "/api/v1/enqueue",
                &json!({"task_name": "echo", "queue_name": q}),
            )
            .await;
        assert_eq!(r.status, 400, "queue_name {q:?}: {} {}", r.status, r.text);
        r.expect_error(400, None);
        assert!(r.message().contains("queue_name"), "{}", r.text);
    }
    assert_nothing_stored(&w, &base).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uuids_are_400_invalid_id_on_every_task_route() {
    let (w, base) = server_with_one_task().await;
    for bad in [
        "not-a-uuid",
        "123",
        "00000000-0000-0000-0000-00000000000g",
        "%20",
        "..%2F..%2Fetc",
    ] {
        w.get(&format!("/api/v1/tasks/{bad}"))
            .await
            .expect_error(400, Some("invalid_id"));
        w.get(&format!("/api/v1/tasks/{bad}/result"))
            .await
            .expect_error(400, Some("invalid_id"));
        w.delete(&format!("/api/v1/tasks/{bad}"))
            .await
            .expect_error(400, Some("invalid_id"));
        w.post_empty(&format!("/api/v1/tasks/{bad}/requeue"))
            .await
            .expect_error(400, Some("invalid_id"));
        w.patch(
            &format!("/api/v1/tasks/{bad}/progress"),
            &json!({"progress": 1}),
        )
        .await
        .expect_error(400, Some("invalid_id"));
    }
    assert_nothing_stored(&w, &base).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_query_parameters_are_4xx_json() {
    let (w, base) = server_with_one_task().await;
    for q in [
        "status=running,pending",
        "status=PENDING1",
        "limit=-1",
        "limit=abc",
        "cursor=!!!",
    ] {
        let r = w.get(&format!("/api/v1/tasks?{q}")).await;
        assert!(
            (400..500).contains(&r.status),
            "?{q}: {} {}",
            r.status,
            r.text
        );
        r.expect_error(r.status, None);
    }
    for q in ["limit=abc", "limit=-3"] {
        let r = w.get(&format!("/api/v1/tasks/failed?{q}")).await;
        assert!(
            (400..500).contains(&r.status),
            "failed ?{q}: {} {}",
            r.status,
            r.text
        );
        r.expect_error(r.status, None);
    }
    let r = w.delete("/api/v1/tasks?status=nope").await;
    r.expect_error(400, None);
    assert_nothing_stored(&w, &base).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_but_valid_looking_inputs_never_answer_500() {
    let (w, base) = server_with_one_task().await;
    let deep_array = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_object = format!(
        "{{\"task_name\": \"echo\", \"kwargs\": {}1{}}}",
        "{\"a\":".repeat(5_000),
        "}".repeat(5_000)
    );
    let raw_bodies: Vec<String> = vec![
        deep_array.clone(),
        deep_object.clone(),
        "{\"task_name\": \"echo\", \"task_name\": \"fail\", \"args\": 1}".into(),
        "{\"task_name\": \"\\ud800\"}".into(),
        "{\"task_name\": \"echo\", \"max_retries\": 1e400}".into(),
        "{\"task_name\": \"echo\", \"priority\": 99999999999999999999}".into(),
        "{\"task_name\": \"echo\", \"ttl_seconds\": 18446744073709551616}".into(),
        "{\"task_name\": \"echo\", \"scheduled_at\": \"99999-01-01T00:00:00Z\"}".into(),
        "{\"task_name\": \"echo\", \"scheduled_at\": \"-0001-01-01T00:00:00Z\"}".into(),
        format!("{{\"task_name\": \"{}\"}}", "n".repeat(100_000)),
        format!("{{\"task_name\": \"echo\", \"idempotency_key\": \"{}\"}}", "k".repeat(100_000)),
        "{\"task_name\": \"echo\", \"metadata\": {\"\": null}, \"args\": [null], \"bogus\": {\"x\": [1]}}".into(),
    ];
    for body in &raw_bodies {
        for path in ["/api/v1/enqueue", "/api/v1/enqueue/batch"] {
            let r = w.post_bytes(path, body.clone()).await;
            assert!(
                r.status < 500,
                "{path} {}…: {} {}",
                &body[..body.len().min(80)],
                r.status,
                r.text
            );
            if r.status >= 400 {
                r.expect_error(r.status, None);
            }
        }
    }
    // Huge numbers in the batch too.
    let r = w
        .post_bytes(
            "/api/v1/enqueue/batch",
            "[{\"task_name\": \"echo\", \"timeout_seconds\": 1e300}]",
        )
        .await;
    assert!((400..500).contains(&r.status), "{} {}", r.status, r.text);
    // Whatever was accepted above is allowed to exist; the bad ones not.
    let listed = w.list("limit=1000").await;
    assert!(listed.iter().any(|t| t["id"] == base.as_str()));
    for t in &listed {
        assert!(!t["task_name"].as_str().unwrap_or("").is_empty());
    }
    let r = w.get("/health").await;
    r.expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_type_other_than_json_never_answers_500() {
    let (w, _base) = server_with_one_task().await;
    let body = json!({"task_name": "echo"}).to_string().into_bytes();
    for ct in ["text/plain", "multipart/form-data; boundary=x"] {
        let r = w
            .send(
                "POST",
                "/api/v1/enqueue",
                &[("content-type", ct)],
                Some(body.clone()),
            )
            .await;
        assert!(r.status < 500, "content-type {ct}: {} {}", r.status, r.text);
        if r.status >= 400 {
            r.expect_error(r.status, None);
        }
    }
    // What lapinq clients and `curl -d` (the README's example) send.
    let r = w
        .send("POST", "/api/v1/enqueue", &[], Some(body.clone()))
        .await;
    assert_eq!(
        r.status, 201,
        "JSON without a content type must work: {}",
        r.text
    );
    let r = w
        .send(
            "POST",
            "/api/v1/enqueue",
            &[("content-type", "application/x-www-form-urlencoded")],
            Some(body),
        )
        .await;
    assert_eq!(
        r.status, 201,
        "JSON sent as by `curl -d` must work: {}",
        r.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_bodies_of_the_wrong_shape_are_4xx_and_change_nothing() {
    let w = Warren::default().await;
    let id = w
        .enqueue(&json!({"task_name": "sleep", "kwargs": {"seconds": 30}, "timeout_seconds": 60}))
        .await;
    w.wait_for_status(&id, "running", secs(20)).await;
    let path = format!("/api/v1/tasks/{id}/progress");
    w.send("PATCH", &path, &[], None)
        .await
        .expect_error(400, None);
    w.send(
        "PATCH",
        &path,
        &[("content-type", "application/json")],
        Some(b"{".to_vec()),
    )
    .await
    .expect_error(400, Some("invalid_json"));
    let mut wrong = Vec::new();
    for body in [
        json!([50]),
        json!([50, "positional"]),
        json!({"progress": 1e10}),
        json!({"progress": null}),
        json!(50),
    ] {
        let r = w.patch(&path, &body).await;
        if r.status != 400 {
            wrong.push(format!("PATCH progress {body}: {} {}", r.status, r.text));
        } else {
            r.expect_error(400, None);
        }
    }
    assert!(wrong.is_empty(), "not answered 400:\n{}", wrong.join("\n"));
    let t = w.task(&id).await;
    assert!(t["progress"].is_null() || t["progress"] == 0, "{t}");
    assert_eq!(t["status"], "running");
    assert_eq!(w.total_counted().await, 1);

    // On a task that is not running, a bad body is refused the same way.
    let pending = w
        .enqueue(&json!({"task_name": "echo", "scheduled_at": "2099-01-01T00:00:00Z"}))
        .await;
    w.patch(&format!("/api/v1/tasks/{pending}/progress"), &json!([50]))
        .await
        .expect_error(400, None);
    assert!(w.task(&pending).await["progress"].is_null());
}
