//! The worker: built-in handlers, priority, timeouts, retries, delays.

use std::time::Instant;

use warren_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_completes_with_its_args_and_kwargs_as_json_text() {
    let w = Warren::default().await;
    let id = w
        .enqueue(&json!({"task_name": "echo", "args": [1, [2], {"x": null}], "kwargs": {"k": "v"}}))
        .await;
    let t = w.wait_for_status(&id, "completed", secs(20)).await;
    assert!(
        t["result"].is_string(),
        "result must be a string holding JSON: {t}"
    );
    assert_eq!(
        result_json(&t),
        json!({"args": [1, [2], {"x": null}], "kwargs": {"k": "v"}})
    );
    assert!(t["error"].is_null());
    assert_eq!(t["attempts"], 1);
    let (created, started, completed) = (
        ts(&t["created_at"]),
        ts(&t["started_at"]),
        ts(&t["completed_at"]),
    );
    assert!(
        created <= started && started <= completed,
        "{created} {started} {completed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn word_count_counts_the_words_of_its_text() {
    let w = Warren::default().await;
    let id = w
        .enqueue(&json!({"task_name": "word_count", "kwargs": {"text": "to be  or not\tto be"}}))
        .await;
    let t = w.wait_for_status(&id, "completed", secs(20)).await;
    assert_eq!(result_json(&t), json!({"words": 6}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleep_runs_for_its_seconds() {
    let w = Warren::default().await;
    let id = w
        .enqueue(&json!({"task_name": "sleep", "kwargs": {"seconds": 1}}))
        .await;
    let t = w.wait_for_status(&id, "completed", secs(20)).await;
    let took = ts(&t["completed_at"]) - ts(&t["started_at"]);
    assert!(took.num_milliseconds() >= 950, "slept only {took}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_task_name_fails_after_exactly_one_attempt() {
    let w = Warren::default().await;
    let id = w
        .enqueue(&json!({"task_name": "no_such_handler", "max_retries": 5}))
        .await;
    let t = w.wait_for_status(&id, "failed", secs(20)).await;
    assert_eq!(t["attempts"], 1);
    let err = t["error"].as_str().unwrap_or("");
    assert!(err.to_lowercase().contains("unknown task"), "error: {err}");
    // it stays failed: no retry follows
    tokio::time::sleep(secs(2)).await;
    assert_eq!(w.task(&id).await["attempts"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn higher_priority_runs_first() {
    let w = Warren::start(Opts::new().args(["--worker-concurrency", "1"])).await;
    let blocker = w
        .enqueue(&json!({"task_name": "sleep", "kwargs": {"seconds": 1}}))
        .await;
    w.wait_for_status(&blocker, "running", secs(20)).await;
    let low = w
        .enqueue(&json!({"task_name": "echo", "args": ["low"], "priority": 1}))
        .await;
    let mid_old = w
        .enqueue(&json!({"task_name": "echo", "args": ["mid-old"], "priority": 5}))
        .await;
    let mid_new = w
        .enqueue(&json!({"task_name": "echo", "args": ["mid-new"], "priority": 5}))
        .await;
    let high = w
        .enqueue(&json!({"task_name": "echo", "args": ["high"], "priority": 10}))
        .await;
    let mut started = Vec::new();
    for id in [&low, &mid_old, &mid_new, &high] {
        let t = w.wait_for_status(id, "completed", secs(20)).await;
        started.push(ts(&t["started_at"]));
    }
    let b = w.wait_for_status(&blocker, "completed", secs(20)).await;
    let blocker_done = ts(&b["completed_at"]);
    assert!(
        started
            .iter()
            .all(|s| *s >= blocker_done - chrono::Duration::milliseconds(300)),
        "a task overtook the blocker"
    );
    let [low_s, mid_old_s, mid_new_s, high_s] = [started[0], started[1], started[2], started[3]];
    assert!(
        high_s < mid_old_s,
        "high {high_s} not before mid {mid_old_s}"
    );
    assert!(
        mid_old_s < mid_new_s,
        "equal priority: older {mid_old_s} not before newer {mid_new_s}"
    );
    assert!(mid_new_s < low_s, "mid {mid_new_s} not before low {low_s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_past_its_timeout_fails_with_timed_out() {
    let w = Warren::default().await;
    let begun = Instant::now();
    let id = w
        .enqueue(&json!({"task_name": "sleep", "kwargs": {"seconds": 20}, "timeout_seconds": 1, "max_retries": 0}))
        .await;
    let t = w.wait_for_status(&id, "failed", secs(15)).await;
    assert!(
        begun.elapsed() < secs(10),
        "the timeout did not cut the sleep short"
    );
    assert_eq!(t["attempts"], 1);
    let err = t["error"].as_str().unwrap_or("");
    assert!(err.contains("timed out"), "error: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_out_attempts_count_as_failed_and_are_retried() {
    let w = Warren::default().await;
    let id = w
        .enqueue(&json!({"task_name": "sleep", "kwargs": {"seconds": 20}, "timeout_seconds": 1, "max_retries": 1, "retry_delay": 0, "retry_backoff": false}))
        .await;
    let t = w.wait_for_status(&id, "failed", secs(20)).await;
    assert_eq!(t["attempts"], 2);
    assert!(t["error"].as_str().unwrap_or("").contains("timed out"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_timeout_flag_is_the_default_timeout() {
    let w = Warren::start(Opts::new().args(["--task-timeout", "1"])).await;
    let id = w
        .enqueue(&json!({"task_name": "sleep", "kwargs": {"seconds": 20}, "max_retries": 0}))
        .await;
    let t = w.wait_for_status(&id, "failed", secs(15)).await;
    assert!(
        t["error"].as_str().unwrap_or("").contains("timed out"),
        "{t}"
    );
    // A task's own timeout_seconds beats the default.
    let id = w
        .enqueue(&json!({"task_name": "sleep", "kwargs": {"seconds": 1.5}, "timeout_seconds": 10, "max_retries": 0}))
        .await;
    w.wait_for_status(&id, "completed", secs(15)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_task_is_retried_max_retries_times_then_failed_and_listed() {
    let w = Warren::default().await;
    let id = w
        .enqueue(&json!({"task_name": "fail", "kwargs": {"message": "try again"}, "max_retries": 2, "retry_delay": 0, "retry_backoff": false}))
        .await;
    let t = w.wait_for_status(&id, "failed", secs(30)).await;
    assert_eq!(t["attempts"], 3, "total attempts = 1 + max_retries");
    assert!(t["error"].as_str().unwrap_or("").contains("try again"));
    assert!(!t["completed_at"].is_null());
    let failed = w.get("/api/v1/tasks/failed").await.json;
    assert!(
        failed
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["id"] == id.as_str())
    );
    tokio::time::sleep(secs(2)).await;
    assert_eq!(w.task(&id).await["attempts"], 3, "retried past max_retries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_max_retries_gives_four_attempts() {
    let w = Warren::default().await;
    let id = w
        .enqueue(&json!({"task_name": "fail", "retry_delay": 0, "retry_backoff": false}))
        .await;
    let t = w.wait_for_status(&id, "failed", secs(30)).await;
    assert_eq!(t["attempts"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_wait_retry_delay_between_attempts() {
    let w = Warren::start(Opts::new().args(["--scheduler-interval", "0.2"])).await;
    let id = w
        .enqueue(&json!({"task_name": "fail", "max_retries": 2, "retry_delay": 1, "retry_backoff": false}))
        .await;
    // after the first attempt it waits as pending, then runs again
    let t = w
        .wait_for_status_where(&id, secs(20), |t| {
            t["attempts"] == 1 && t["status"] == "pending"
        })
        .await;
    assert!(t["error"].is_string() || t["error"].is_null());
    let t = w.wait_for_status(&id, "failed", secs(30)).await;
    assert_eq!(t["attempts"], 3);
    let took = ts(&t["completed_at"]) - ts(&t["created_at"]);
    assert!(
        took.num_milliseconds() >= 1900,
        "two 1 s retry delays took only {took}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_retryable_failure_fails_at_once() {
    let w = Warren::default().await;
    let id = w
        .enqueue(&json!({"task_name": "fail", "kwargs": {"message": "bad input", "retryable": false}, "max_retries": 3}))
        .await;
    let t = w.wait_for_status(&id, "failed", secs(20)).await;
    assert_eq!(t["attempts"], 1);
    assert!(t["error"].as_str().unwrap_or("").contains("bad input"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_at_in_the_future_delays_the_run() {
    let w = Warren::start(Opts::new().args(["--scheduler-interval", "0.2"])).await;
    let at = chrono::Utc::now() + chrono::Duration::seconds(3);
    let id = w
        .enqueue(&json!({"task_name": "echo", "scheduled_at": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)}))
        .await;
    tokio::time::sleep(secs(1)).await;
    let t = w.task(&id).await;
    assert_eq!(t["status"], "pending", "ran before its time: {t}");
    assert_eq!(t["attempts"], 0);
    let t = w.wait_for_status(&id, "completed", secs(20)).await;
    let started = ts(&t["started_at"]);
    assert!(
        started >= at - chrono::Duration::milliseconds(10),
        "started {started} before scheduled {at}"
    );
    // A past scheduled_at runs right away.
    let id = w
        .enqueue(&json!({"task_name": "echo", "scheduled_at": "2001-01-01T00:00:00Z"}))
        .await;
    w.wait_for_status(&id, "completed", secs(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_task_calls_the_url_and_returns_status_headers_and_body() {
    let rx = Receiver::ok().await;
    let w = Warren::start(Opts::new().allow_loopback()).await;
    let id = w
        .enqueue(&json!({
            "task_name": "http",
            "kwargs": {
                "url": rx.url("/hook?x=1"),
                "method": "PUT",
                "headers": {"x-custom": "yes"},
                "body": {"hello": "world"}
            }
        }))
        .await;
    let t = w.wait_for_status(&id, "completed", secs(20)).await;
    let got = rx.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].method, "PUT");
    assert_eq!(got[0].uri, "/hook?x=1");
    assert_eq!(got[0].header("x-custom"), Some("yes"));
    assert_eq!(got[0].json(), json!({"hello": "world"}));
    let result = result_json(&t);
    assert_eq!(result["status"], 200);
    assert_eq!(result["headers"]["x-receiver"], "warren-tests");
    let body = result["body"].as_str().expect("body string");
    assert_eq!(
        serde_json::from_str::<Value>(body).unwrap(),
        json!({"received": 1})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_task_with_a_non_2xx_answer_fails() {
    let rx = Receiver::start(vec![404]).await;
    let w = Warren::start(Opts::new().allow_loopback()).await;
    let id = w
        .enqueue(
            &json!({"task_name": "http", "kwargs": {"url": rx.url("/missing")}, "max_retries": 0}),
        )
        .await;
    let t = w.wait_for_status(&id, "failed", secs(20)).await;
    assert!(t["error"].as_str().unwrap_or("").contains("404"), "{t}");
    assert_eq!(rx.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_task_to_a_loopback_address_is_refused_without_an_allow_list() {
    let rx = Receiver::ok().await;
    let w = Warren::default().await;
    let id = w
        .enqueue(
            &json!({"task_name": "http", "kwargs": {"url": rx.url("/private")}, "max_retries": 0}),
        )
        .await;
    let t = w.wait_for_status(&id, "failed", secs(20)).await;
    let err = t["error"].as_str().unwrap_or("").to_lowercase();
    assert!(
        err.contains("refused") || err.contains("blocked") || err.contains("not allowed"),
        "error: {err}"
    );
    assert!(rx.requests().is_empty(), "the private address was called");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durability_relaxed_serves_and_runs_tasks() {
    let w = Warren::start(Opts::new().args(["--durability", "relaxed"])).await;
    let id = w.enqueue(&json!({"task_name": "echo", "args": [1]})).await;
    w.wait_for_status(&id, "completed", secs(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_concurrency_bounds_tasks_running_at_once() {
    let w = Warren::start(Opts::new().args(["--worker-concurrency", "2"])).await;
    let items: Vec<Value> = (0..5)
        .map(|_| json!({"task_name": "sleep", "queue_name": "c", "kwargs": {"seconds": 1.5}}))
        .collect();
    let ids = w.enqueue_batch(&Value::Array(items)).await;
    let mut max_running = 0;
    let deadline = Instant::now() + secs(30);
    while w.count("c", "completed").await < 5 {
        assert!(Instant::now() < deadline, "5 sleeps did not complete");
        max_running = max_running.max(w.count("c", "running").await);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        max_running, 2,
        "at most (and, with 5 waiting, exactly) 2 at once"
    );
    for id in ids {
        assert_eq!(w.task(&id).await["attempts"], 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_worker_runs_nothing() {
    let w = Warren::start(Opts::new().no_worker()).await;
    let id = w.enqueue(&json!({"task_name": "echo"})).await;
    tokio::time::sleep(secs(2)).await;
    assert_eq!(w.task(&id).await["status"], "pending");
}
