//! Changing tasks: progress, cancel, requeue, bulk delete.

use warren_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_of_a_running_task_is_recorded() {
    let w = Warren::default().await;
    let id = w
        .enqueue(&json!({"task_name": "sleep", "kwargs": {"seconds": 30}, "timeout_seconds": 60}))
        .await;
    w.wait_for_status(&id, "running", secs(20)).await;
    let r = w
        .patch(
            &format!("/api/v1/tasks/{id}/progress"),
            &json!({"progress": 50, "message": "Processing frame 50/100"}),
        )
        .await;
    r.expect(200);
    assert_eq!(r.json["status"], "ok", "lapinq's answer");
    assert_eq!(r.json["id"], id.as_str());
    assert_eq!(r.json["progress"], 50);
    assert_eq!(r.json["progress_message"], "Processing frame 50/100");
    let t = w.task(&id).await;
    assert_eq!(t["progress"], 50);
    assert_eq!(t["progress_message"], "Processing frame 50/100");
    assert_eq!(t["status"], "running");

    // message is optional; bounds 0 and 100 are fine
    w.patch(
        &format!("/api/v1/tasks/{id}/progress"),
        &json!({"progress": 100}),
    )
    .await
    .expect(200);
    assert_eq!(w.task(&id).await["progress"], 100);
    w.patch(
        &format!("/api/v1/tasks/{id}/progress"),
        &json!({"progress": 0}),
    )
    .await
    .expect(200);
    assert_eq!(w.task(&id).await["progress"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_out_of_range_or_of_the_wrong_type_is_400() {
    let w = Warren::default().await;
    let id = w
        .enqueue(&json!({"task_name": "sleep", "kwargs": {"seconds": 30}, "timeout_seconds": 60}))
        .await;
    w.wait_for_status(&id, "running", secs(20)).await;
    let path = format!("/api/v1/tasks/{id}/progress");
    for bad in [
        json!({"progress": 101}),
        json!({"progress": -1}),
        json!({"progress": "half"}),
        json!({"progress": 50, "message": 7}),
        json!({"message": "no progress"}),
    ] {
        let r = w.patch(&path, &bad).await;
        r.expect_error(400, None);
    }
    w.send(
        "PATCH",
        &path,
        &[("content-type", "application/json")],
        Some(b"{progress:".to_vec()),
    )
    .await
    .expect_error(400, Some("invalid_json"));
    let t = w.task(&id).await;
    assert!(
        t["progress"].is_null() || t["progress"] == 0,
        "a rejected update changed progress: {t}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_of_a_pending_task_is_kept_as_lapinq_keeps_it() {
    let w = Warren::start(Opts::new().no_worker()).await;
    let id = w.enqueue(&json!({"task_name": "echo"})).await;
    let r = w
        .patch(
            &format!("/api/v1/tasks/{id}/progress"),
            &json!({"progress": 12.5, "message": "queued behind others"}),
        )
        .await;
    r.expect(200);
    assert_eq!(r.json["status"], "ok");
    let t = w.task(&id).await;
    assert_eq!(
        (&t["status"], &t["progress"], &t["progress_message"]),
        (
            &json!("pending"),
            &json!(12.5),
            &json!("queued behind others")
        )
    );
    let unknown = uuid::Uuid::now_v7();
    w.patch(
        &format!("/api/v1/tasks/{unknown}/progress"),
        &json!({"progress": 10}),
    )
    .await
    .expect_error(404, None);
    w.patch("/api/v1/tasks/xyz/progress", &json!({"progress": 10}))
        .await
        .expect_error(400, Some("invalid_id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_pending_task_marks_it_cancelled_and_it_never_runs() {
    let w = Warren::start(Opts::new().args(["--scheduler-interval", "0.2"])).await;
    let at = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let id = w
        .enqueue(&json!({"task_name": "echo", "scheduled_at": at}))
        .await;
    let r = w.delete(&format!("/api/v1/tasks/{id}")).await;
    r.expect(200);
    assert_eq!(r.json["id"], id.as_str());
    assert_eq!(r.json["status"], "cancelled");
    assert_eq!(w.task(&id).await["status"], "cancelled");
    // past its scheduled time it still has not run
    tokio::time::sleep(secs(4)).await;
    let t = w.task(&id).await;
    assert_eq!(t["status"], "cancelled");
    assert_eq!(t["attempts"], 0);
    assert!(t["started_at"].is_null());
    assert_eq!(w.count("default", "cancelled").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_task_that_is_not_pending_is_404_task_not_pending() {
    let w = Warren::default().await;
    let id = w.enqueue(&json!({"task_name": "echo"})).await;
    w.wait_for_status(&id, "completed", secs(20)).await;
    w.delete(&format!("/api/v1/tasks/{id}"))
        .await
        .expect_error(404, Some("task_not_pending"));
    assert_eq!(w.task(&id).await["status"], "completed");

    let running = w
        .enqueue(&json!({"task_name": "sleep", "kwargs": {"seconds": 30}, "timeout_seconds": 60}))
        .await;
    w.wait_for_status(&running, "running", secs(20)).await;
    w.delete(&format!("/api/v1/tasks/{running}"))
        .await
        .expect_error(404, Some("task_not_pending"));
    assert_eq!(w.task(&running).await["status"], "running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_twice_or_an_unknown_task_is_404() {
    let w = Warren::start(Opts::new().no_worker()).await;
    let id = w.enqueue(&json!({"task_name": "echo"})).await;
    w.delete(&format!("/api/v1/tasks/{id}")).await.expect(200);
    w.delete(&format!("/api/v1/tasks/{id}"))
        .await
        .expect_error(404, Some("task_not_pending"));
    let unknown = uuid::Uuid::now_v7();
    w.delete(&format!("/api/v1/tasks/{unknown}"))
        .await
        .expect_error(404, None);
    w.delete("/api/v1/tasks/zzz")
        .await
        .expect_error(400, Some("invalid_id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requeue_of_a_failed_task_resets_attempts_and_runs_it_again() {
    let w = Warren::default().await;
    let id = w
        .enqueue(&json!({"task_name": "fail", "kwargs": {"message": "nope"}, "max_retries": 1, "retry_delay": 0, "retry_backoff": false}))
        .await;
    let t = w.wait_for_status(&id, "failed", secs(30)).await;
    assert_eq!(t["attempts"], 2);

    let r = w.post_empty(&format!("/api/v1/tasks/{id}/requeue")).await;
    r.expect(200);
    // lapinq's answer, with the task's id.
    assert_eq!(r.json, json!({"status": "requeued", "id": id}));
    // It runs again, through the whole retry policy, and fails again.
    let again = w
        .wait_for_status_where(&id, secs(30), |t| {
            t["status"] == "failed" && t["attempts"] == 2
        })
        .await;
    assert!(again["error"].as_str().unwrap_or("").contains("nope"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requeue_of_a_task_that_is_not_failed_is_404_task_not_failed() {
    let w = Warren::start(Opts::new().no_worker()).await;
    let id = w.enqueue(&json!({"task_name": "echo"})).await;
    w.post_empty(&format!("/api/v1/tasks/{id}/requeue"))
        .await
        .expect_error(404, Some("task_not_failed"));
    assert_eq!(w.task(&id).await["status"], "pending");
    let unknown = uuid::Uuid::now_v7();
    w.post_empty(&format!("/api/v1/tasks/{unknown}/requeue"))
        .await
        .expect_error(404, None);
    w.post_empty("/api/v1/tasks/nope/requeue")
        .await
        .expect_error(400, Some("invalid_id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_delete_removes_exactly_the_tasks_matching_every_filter() {
    let w = Warren::default().await;
    let alpha = w
        .enqueue(&json!({"task_name": "echo", "queue_name": "q1", "args": ["alpha"]}))
        .await;
    let beta = w
        .enqueue(&json!({"task_name": "echo", "queue_name": "q1", "kwargs": {"word": "betamax"}}))
        .await;
    let boom = w
        .enqueue(&json!({"task_name": "fail", "queue_name": "q2", "kwargs": {"message": "kaboom-123"}, "max_retries": 0}))
        .await;
    let report = w
        .enqueue(&json!({"task_name": "BuildReport", "queue_name": "q2", "args": [1]}))
        .await;
    let keep = w
        .enqueue(&json!({"task_name": "echo", "queue_name": "q3", "args": ["keep"]}))
        .await;
    for id in [&alpha, &beta, &keep] {
        w.wait_for_status(id, "completed", secs(20)).await;
    }
    w.wait_for_status(&boom, "failed", secs(20)).await;
    w.wait_for_status(&report, "failed", secs(20)).await; // unknown task

    let del = async |q: &str| {
        let r = w.delete(&format!("/api/v1/tasks?{q}")).await;
        r.expect(200);
        r.json["deleted"]
            .as_u64()
            .unwrap_or_else(|| panic!("no deleted count: {}", r.text))
    };
    // args ILIKE
    assert_eq!(del("args=ALPHA").await, 1);
    w.get(&format!("/api/v1/tasks/{alpha}")).await.expect(404);
    // result ILIKE (the echo result holds the kwargs)
    assert_eq!(del("result=betamax").await, 1);
    w.get(&format!("/api/v1/tasks/{beta}")).await.expect(404);
    // error ILIKE
    assert_eq!(del("error=KABOOM").await, 1);
    w.get(&format!("/api/v1/tasks/{boom}")).await.expect(404);
    // filters combine: task_name in the wrong queue deletes nothing
    assert_eq!(del("task_name=report&queue=q3").await, 0);
    assert_eq!(del("task_name=report&queue=q2&status=completed").await, 0);
    assert_eq!(del("task_name=REPORT&queue=q2&status=failed").await, 1);
    w.get(&format!("/api/v1/tasks/{report}")).await.expect(404);
    // no match
    assert_eq!(del("queue=q3&status=failed").await, 0);
    w.task(&keep).await;
    assert_eq!(w.list("").await.len(), 1);
    assert_eq!(w.total_counted().await, 1, "{:?}", w.queues().await);
    // status filter alone
    assert_eq!(del("status=completed").await, 1);
    assert!(w.list("").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_delete_with_an_unknown_status_is_400_and_deletes_nothing() {
    let w = Warren::start(Opts::new().no_worker()).await;
    w.enqueue(&json!({"task_name": "echo"})).await;
    w.delete("/api/v1/tasks?status=bogus")
        .await
        .expect_error(400, None);
    assert_eq!(w.total_counted().await, 1);
}
