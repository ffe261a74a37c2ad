//! TTL: pending tasks past their TTL expire (then go after the retention);
//! finished tasks past their TTL are deleted.

use warren_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_task_past_its_ttl_becomes_expired() {
    let w = Warren::start(
        Opts::new()
            .no_worker()
            .args(["--scheduler-interval", "0.2"]),
    )
    .await;
    let id = w
        .enqueue(&json!({"task_name": "echo", "queue_name": "t", "ttl_seconds": 1}))
        .await;
    let keep = w
        .enqueue(&json!({"task_name": "echo", "queue_name": "t", "ttl_seconds": 3600}))
        .await;
    let forever = w
        .enqueue(&json!({"task_name": "echo", "queue_name": "t"}))
        .await;
    let t = w.wait_for_status(&id, "expired", secs(15)).await;
    assert_eq!(t["attempts"], 0);
    assert_eq!(w.count("t", "expired").await, 1);
    assert_eq!(w.count("t", "pending").await, 2);
    // still readable under the default retention (an hour)
    tokio::time::sleep(secs(2)).await;
    assert_eq!(w.task(&id).await["status"], "expired");
    assert_eq!(w.task(&keep).await["status"], "pending");
    assert_eq!(w.task(&forever).await["status"], "pending");
    let listed = w.list("status=expired").await;
    assert_eq!(listed.len(), 1);
    // an expired task cannot be cancelled any more
    w.delete(&format!("/api/v1/tasks/{id}"))
        .await
        .expect_error(404, Some("task_not_pending"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_task_is_deleted_after_the_retention() {
    let w = Warren::start(Opts::new().no_worker().args([
        "--scheduler-interval",
        "0.2",
        "--expired-retention",
        "2",
    ]))
    .await;
    let id = w
        .enqueue(&json!({"task_name": "echo", "queue_name": "t", "ttl_seconds": 1}))
        .await;
    w.wait_for_status(&id, "expired", secs(15)).await;
    w.wait_for_gone(&id, secs(20)).await;
    assert!(w.list("").await.is_empty());
    // The deleted task is no longer counted either.
    tokio::time::sleep(secs(3)).await;
    assert_eq!(
        w.total_counted().await,
        0,
        "a deleted expired task is still counted: {:?}",
        w.queues().await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_task_never_runs() {
    // scheduled after its TTL: it expires before it is due
    let w = Warren::start(Opts::new().args(["--scheduler-interval", "0.2"])).await;
    let at = (chrono::Utc::now() + chrono::Duration::seconds(4)).to_rfc3339();
    let id = w
        .enqueue(&json!({"task_name": "echo", "ttl_seconds": 1, "scheduled_at": at}))
        .await;
    w.wait_for_status(&id, "expired", secs(15)).await;
    tokio::time::sleep(secs(5)).await;
    let t = w.task(&id).await;
    assert_eq!(t["status"], "expired", "{t}");
    assert_eq!(t["attempts"], 0);
    assert!(t["started_at"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_task_past_its_ttl_is_deleted() {
    let w = Warren::start(Opts::new().args(["--scheduler-interval", "0.2"])).await;
    let done = w
        .enqueue(&json!({"task_name": "echo", "ttl_seconds": 2}))
        .await;
    let failed = w
        .enqueue(&json!({"task_name": "fail", "ttl_seconds": 2, "max_retries": 0}))
        .await;
    let kept = w.enqueue(&json!({"task_name": "echo"})).await;
    w.wait_for_status(&done, "completed", secs(20)).await;
    w.wait_for_status(&failed, "failed", secs(20)).await;
    w.wait_for_gone(&done, secs(20)).await;
    w.wait_for_gone(&failed, secs(20)).await;
    w.get(&format!("/api/v1/tasks/{done}/result"))
        .await
        .expect_error(404, None);
    assert_eq!(w.task(&kept).await["status"], "completed");
    assert_eq!(w.list("").await.len(), 1);
    assert_eq!(w.total_counted().await, 1, "{:?}", w.queues().await);
}
