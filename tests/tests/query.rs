//! Reading tasks: one task, its result, lists with filters and cursors, the
//! failed list, per-queue counts.

use std::collections::HashSet;

use warren_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_task_id_is_404_json() {
    let w = Warren::start(Opts::new().no_worker()).await;
    let id = uuid::Uuid::now_v7();
    w.get(&format!("/api/v1/tasks/{id}"))
        .await
        .expect_error(404, None);
    w.get(&format!("/api/v1/tasks/{id}/result"))
        .await
        .expect_error(404, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_id_that_is_not_a_uuid_is_400_invalid_id() {
    let w = Warren::start(Opts::new().no_worker()).await;
    w.get("/api/v1/tasks/not-a-uuid")
        .await
        .expect_error(400, Some("invalid_id"));
    w.get("/api/v1/tasks/1234/result")
        .await
        .expect_error(400, Some("invalid_id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_of_an_unfinished_task_says_task_not_finished_with_its_status() {
    let w = Warren::start(Opts::new().no_worker()).await;
    let id = w.enqueue(&json!({"task_name": "echo"})).await;
    let r = w.get(&format!("/api/v1/tasks/{id}/result")).await;
    r.expect(200);
    assert_eq!(r.json["error"], "task not finished");
    assert_eq!(r.json["status"], "pending");
    assert_eq!(r.json["code"], "task_not_finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_of_a_completed_task_is_json_text_with_its_completion_time() {
    let w = Warren::default().await;
    let id = w
        .enqueue(&json!({"task_name": "echo", "args": [1, "a"], "kwargs": {"k": [true]}}))
        .await;
    let t = w.wait_for_status(&id, "completed", secs(20)).await;
    let r = w.get(&format!("/api/v1/tasks/{id}/result")).await;
    r.expect(200);
    let keys: HashSet<&str> = r
        .json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        HashSet::from(["id", "status", "result", "error", "completed_at"]),
        "{}",
        r.text
    );
    assert_eq!(r.json["id"], id.as_str());
    assert_eq!(r.json["status"], "completed");
    assert!(r.json["error"].is_null());
    assert_eq!(
        result_json(&r.json),
        json!({"args": [1, "a"], "kwargs": {"k": [true]}})
    );
    assert_eq!(r.json["completed_at"], t["completed_at"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_of_a_failed_task_carries_its_error() {
    let w = Warren::default().await;
    let id = w
        .enqueue(
            &json!({"task_name": "fail", "kwargs": {"message": "disk on fire"}, "max_retries": 0}),
        )
        .await;
    w.wait_for_status(&id, "failed", secs(20)).await;
    let r = w.get(&format!("/api/v1/tasks/{id}/result")).await;
    r.expect(200);
    assert_eq!(r.json["status"], "failed");
    assert!(
        r.json["error"]
            .as_str()
            .unwrap_or("")
            .contains("disk on fire"),
        "{}",
        r.text
    );
    assert!(!r.json["completed_at"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_is_newest_first_and_filters_by_queue_status_and_task_name() {
    let w = Warren::start(Opts::new().no_worker()).await;
    let a = w
        .enqueue(&json!({"task_name": "SendEmail", "queue_name": "mail"}))
        .await;
    let b = w
        .enqueue(&json!({"task_name": "resize_image", "queue_name": "media"}))
        .await;
    let c = w
        .enqueue(&json!({"task_name": "send_sms", "queue_name": "mail"}))
        .await;
    let d = w
        .enqueue(&json!({"task_name": "echo", "queue_name": "mail"}))
        .await;
    w.delete(&format!("/api/v1/tasks/{d}")).await.expect(200); // cancelled

    let ids = |v: Vec<Value>| {
        v.iter()
            .map(|t| t["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(w.list("").await),
        vec![d.clone(), c.clone(), b.clone(), a.clone()]
    );
    assert_eq!(
        ids(w.list("queue=mail").await),
        vec![d.clone(), c.clone(), a.clone()]
    );
    assert_eq!(ids(w.list("queue=media").await), vec![b.clone()]);
    assert_eq!(ids(w.list("status=cancelled").await), vec![d.clone()]);
    assert_eq!(
        ids(w.list("status=pending&queue=mail").await),
        vec![c.clone(), a.clone()]
    );
    // task_name: case-insensitive substring
    assert_eq!(
        ids(w.list("task_name=send").await),
        vec![c.clone(), a.clone()]
    );
    assert_eq!(ids(w.list("task_name=EMAIL").await), vec![a.clone()]);
    assert_eq!(
        ids(w.list("task_name=IMAGE&queue=media").await),
        vec![b.clone()]
    );
    assert!(w.list("task_name=nothing-like-it").await.is_empty());
    assert!(w.list("queue=nope").await.is_empty());
    assert_eq!(ids(w.list("limit=2").await), vec![d, c]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_limit_defaults_to_50_and_pages_follow_the_cursor_headers() {
    let w = Warren::start(Opts::new().no_worker()).await;
    let items: Vec<Value> = (0..57)
        .map(|i| json!({"task_name": "echo", "args": [i]}))
        .collect();
    let created = w.enqueue_batch(&Value::Array(items)).await;

    let first = w.get("/api/v1/tasks").await;
    first.expect(200);
    assert_eq!(first.json.as_array().unwrap().len(), 50, "default limit");
    assert!(
        first.header("x-next-cursor").is_some(),
        "no X-Next-Cursor with more to come"
    );

    // limit=10: 6 pages, by X-Next-Cursor, and the Link header agrees.
    let mut seen = Vec::new();
    let mut created_ats = Vec::new();
    let mut path = "/api/v1/tasks?limit=10".to_string();
    for page_no in 0.. {
        assert!(page_no < 10, "too many pages");
        let r = w.get(&path).await;
        r.expect(200);
        let page = r.json.as_array().unwrap().clone();
        seen.extend(page.iter().map(|t| t["id"].as_str().unwrap().to_string()));
        created_ats.extend(page.iter().map(|t| ts(&t["created_at"])));
        match r.header("x-next-cursor") {
            Some(cursor) => {
                assert_eq!(page.len(), 10);
                let link = r.header("link").expect("Link header beside X-Next-Cursor");
                assert!(link.contains("rel=\"next\""), "Link: {link}");
                assert!(
                    link.contains(&format!("cursor={}", enc(cursor)))
                        || link.contains(&format!("cursor={cursor}")),
                    "Link {link} does not carry cursor {cursor}"
                );
                // Follow the Link target itself on odd pages.
                let target = link
                    .trim_start_matches('<')
                    .split('>')
                    .next()
                    .unwrap()
                    .to_string();
                path = if page_no % 2 == 1 {
                    let t = target.strip_prefix(&w.base).unwrap_or(&target).to_string();
                    assert!(t.starts_with("/api/v1/tasks?"), "Link target {t}");
                    assert!(
                        t.contains("limit=10"),
                        "Link target drops the other parameters: {t}"
                    );
                    t
                } else {
                    format!("/api/v1/tasks?limit=10&cursor={}", enc(cursor))
                };
            }
            None => {
                assert!(r.header("link").is_none(), "Link on the last page");
                break;
            }
        }
    }
    assert_eq!(seen.len(), 57);
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), 57, "pages overlap");
    assert_eq!(unique, created.iter().collect::<HashSet<_>>());
    assert!(
        created_ats.windows(2).all(|p| p[0] >= p[1]),
        "pages are not newest first"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_with_an_unknown_status_is_400() {
    let w = Warren::start(Opts::new().no_worker()).await;
    w.get("/api/v1/tasks?status=exploded")
        .await
        .expect_error(400, None);
    w.get("/api/v1/tasks?limit=many")
        .await
        .expect_error(400, None);
    w.get("/api/v1/tasks?cursor=%%%garbage")
        .await
        .expect_error(400, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_list_holds_only_failed_tasks_filtered_by_queue_and_limit() {
    let w = Warren::default().await;
    let mut failed_a = Vec::new();
    for i in 0..3 {
        failed_a.push(
            w.enqueue(&json!({"task_name": "fail", "queue_name": "qa", "kwargs": {"message": format!("a{i}")}, "max_retries": 0}))
                .await,
        );
    }
    let failed_b = w
        .enqueue(&json!({"task_name": "fail", "queue_name": "qb", "max_retries": 0}))
        .await;
    let ok = w
        .enqueue(&json!({"task_name": "echo", "queue_name": "qa"}))
        .await;
    for id in failed_a.iter().chain([&failed_b]) {
        w.wait_for_status(id, "failed", secs(20)).await;
    }
    w.wait_for_status(&ok, "completed", secs(20)).await;

    let r = w.get("/api/v1/tasks/failed").await;
    r.expect(200);
    let all = r.json.as_array().expect("failed list is an array");
    assert_eq!(all.len(), 4);
    assert!(all.iter().all(|t| t["status"] == "failed"));

    let qa = w.get("/api/v1/tasks/failed?queue=qa").await.json;
    let qa: HashSet<String> = qa
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(qa, failed_a.iter().cloned().collect());

    let one = w.get("/api/v1/tasks/failed?queue=qa&limit=1").await;
    assert_eq!(one.json.as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_stats_count_every_status() {
    let w = Warren::start(Opts::new().args(["--worker-concurrency", "1"])).await;
    // running: a long sleep holds the only worker slot
    let sleeper = w
        .enqueue(&json!({"task_name": "sleep", "queue_name": "s", "kwargs": {"seconds": 30}}))
        .await;
    w.wait_for_status(&sleeper, "running", secs(20)).await;
    // pending (behind the sleeper) and cancelled
    w.enqueue(&json!({"task_name": "echo", "queue_name": "s"}))
        .await;
    w.enqueue(&json!({"task_name": "echo", "queue_name": "s"}))
        .await;
    let c = w
        .enqueue(&json!({"task_name": "echo", "queue_name": "s"}))
        .await;
    w.delete(&format!("/api/v1/tasks/{c}")).await.expect(200);

    let q = w.queue("s").await.expect("queue s listed");
    assert_eq!(q["queue_name"], "s");
    assert_eq!(q["running"], 1, "{q}");
    assert_eq!(q["pending"], 2, "{q}");
    assert_eq!(q["cancelled"], 1, "{q}");
    assert_eq!(q["completed"], 0, "{q}");
    assert_eq!(q["failed"], 0, "{q}");
    assert_eq!(q["expired"], 0, "{q}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_stats_count_completed_and_failed() {
    let w = Warren::default().await;
    let a = w
        .enqueue(&json!({"task_name": "echo", "queue_name": "done"}))
        .await;
    let b = w
        .enqueue(&json!({"task_name": "echo", "queue_name": "done"}))
        .await;
    let f = w
        .enqueue(&json!({"task_name": "fail", "queue_name": "done", "max_retries": 0}))
        .await;
    w.wait_for_status(&a, "completed", secs(20)).await;
    w.wait_for_status(&b, "completed", secs(20)).await;
    w.wait_for_status(&f, "failed", secs(20)).await;
    let q = w.queue("done").await.expect("queue listed");
    assert_eq!(
        (
            q["completed"].as_u64(),
            q["failed"].as_u64(),
            q["pending"].as_u64()
        ),
        (Some(2), Some(1), Some(0)),
        "{q}"
    );
}
