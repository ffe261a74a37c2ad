//! POST /api/v1/enqueue/batch: all or nothing, at most 1000 items.

use warren_tests::*;

fn items(n: usize, queue: &str) -> Value {
    Value::Array(
        (0..n)
            .map(|i| json!({"task_name": "echo", "queue_name": queue, "args": [i], "max_retries": 0}))
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_enqueue_answers_201_with_every_task_id_and_count() {
    let w = Warren::start(Opts::new().no_worker()).await;
    let r = w.post("/api/v1/enqueue/batch", &items(3, "batch")).await;
    r.expect(201);
    assert_eq!(r.json["count"], 3);
    let ids: Vec<String> = r.json["task_ids"]
        .as_array()
        .expect("task_ids array")
        .iter()
        .map(|v| v.as_str().expect("id string").to_string())
        .collect();
    assert_eq!(ids.len(), 3);
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), 3, "duplicate ids {ids:?}");
    // The ids come back in item order.
    for (i, id) in ids.iter().enumerate() {
        let t = w.task(id).await;
        assert_eq!(t["args"], json!([i]));
        assert_eq!(t["queue_name"], "batch");
        assert_eq!(t["max_retries"], 0);
        assert_eq!(t["status"], "pending");
    }
    assert_eq!(w.count("batch", "pending").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_of_1000_items_is_accepted_and_every_task_runs() {
    let w = Warren::default().await;
    let ids = w.enqueue_batch(&items(1000, "big")).await;
    assert_eq!(ids.len(), 1000);
    wait_until("1000 completed echo tasks", secs(90), async || {
        (w.count("big", "completed").await == 1000).then_some(())
    })
    .await;
    let all = w.list_all("queue=big&limit=1000").await;
    assert_eq!(all.len(), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_with_one_bad_item_is_rejected_naming_its_index_and_stores_nothing() {
    let w = Warren::start(Opts::new().no_worker()).await;
    let mut batch = items(5, "batch");
    batch[3] = json!({"queue_name": "batch", "args": [3]}); // no task_name
    let r = w.post("/api/v1/enqueue/batch", &batch).await;
    r.expect_error(400, None);
    assert!(
        r.message().contains("item 3"),
        "message does not name item 3: {}",
        r.text
    );
    assert!(
        r.message().contains("task_name"),
        "message does not name the field: {}",
        r.text
    );

    let mut batch = items(5, "batch");
    batch[1]["args"] = json!("not a list");
    let r = w.post("/api/v1/enqueue/batch", &batch).await;
    r.expect_error(400, None);
    assert!(
        r.message().contains("item 1"),
        "message does not name item 1: {}",
        r.text
    );

    let mut batch = items(4, "batch");
    batch[2]["scheduled_at"] = json!("next tuesday");
    let r = w.post("/api/v1/enqueue/batch", &batch).await;
    r.expect_error(400, None);
    assert!(
        r.message().contains("item 2"),
        "message does not name item 2: {}",
        r.text
    );

    let mut batch = items(4, "batch");
    batch[0]["queue_name"] = json!("bad queue#");
    let r = w.post("/api/v1/enqueue/batch", &batch).await;
    r.expect_error(400, None);
    assert!(
        r.message().contains("item 0"),
        "message does not name item 0: {}",
        r.text
    );

    assert!(w.list("").await.is_empty(), "a rejected batch stored tasks");
    assert_eq!(w.total_counted().await, 0, "{:?}", w.queues().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_of_1001_items_is_413_and_stores_nothing() {
    let w = Warren::start(Opts::new().no_worker()).await;
    let r = w.post("/api/v1/enqueue/batch", &items(1001, "batch")).await;
    r.expect_error(413, None);
    assert_eq!(w.total_counted().await, 0);
    assert!(w.list("").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_batch_is_400() {
    let w = Warren::start(Opts::new().no_worker()).await;
    let r = w.post("/api/v1/enqueue/batch", &json!([])).await;
    r.expect_error(400, None);
    assert_eq!(w.total_counted().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_that_is_not_an_array_is_rejected_with_a_json_error() {
    let w = Warren::start(Opts::new().no_worker()).await;
    let r = w
        .post("/api/v1/enqueue/batch", &json!({"task_name": "echo"}))
        .await;
    assert!((400..500).contains(&r.status), "{} {}", r.status, r.text);
    r.expect_error(r.status, None);
    let r = w
        .post_bytes("/api/v1/enqueue/batch", "[{\"task_name\": \"echo\"},")
        .await;
    r.expect_error(400, Some("invalid_json"));
    assert_eq!(w.total_counted().await, 0);
}
