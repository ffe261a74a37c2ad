//! kill -9 and restart on the same data dir: nothing acknowledged is lost,
//! nothing stays stuck, nothing runs more than the crash forces.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use warren_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_while_500_tasks_run_then_restart_completes_every_task_once() {
    const N: usize = 500;
    let opts = Opts::new().args(["--worker-concurrency", "16"]);
    let mut w = Warren::start(opts).await;
    let items: Vec<Value> = (0..N)
        .map(|i| {
            json!({
                "task_name": "sleep",
                "queue_name": "recovery",
                "args": [i],
                "kwargs": {"seconds": 0.2},
                "timeout_seconds": 30,
                "max_retries": 3
            })
        })
        .collect();
    let ids = w.enqueue_batch(&Value::Array(items)).await;
    assert_eq!(ids.len(), N);
    let ids: HashSet<String> = ids.into_iter().collect();
    assert_eq!(ids.len(), N);

    // Wait until the run is well under way: some done, some running.
    let (done_before, running_before) =
        wait_until("some completed and some running", secs(60), async || {
            let q = w.queue("recovery").await?;
            let (c, r) = (q["completed"].as_u64()?, q["running"].as_u64()?);
            (c >= 30 && r >= 1 && c < N as u64 - 50).then_some((c, r))
        })
        .await;
    w.kill9();
    eprintln!("killed with {done_before} completed and {running_before} running");

    w.restart().await;
    // Right after the restart every task is still there.
    assert_eq!(w.total_counted().await, N as u64, "{:?}", w.queues().await);
    let completed_after_restart = w.count("recovery", "completed").await;
    assert!(
        completed_after_restart >= done_before,
        "completed tasks were lost: {done_before} before the kill, {completed_after_restart} after"
    );

    let begun = Instant::now();
    let deadline = begun + secs(120);
    loop {
        let q = w.queue("recovery").await.expect("recovery queue listed");
        assert_eq!(q["failed"], 0, "tasks failed: {q}");
        if q["completed"] == N as u64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not all {N} tasks completed within 120 s of the restart: {q}\n{}",
            w.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("all {N} completed {:?} after the restart", begun.elapsed());

    let q = w.queue("recovery").await.unwrap();
    for s in ["pending", "running", "failed", "cancelled", "expired"] {
        assert_eq!(q[s], 0, "{s} of {q}");
    }
    assert_eq!(w.total_counted().await, N as u64);

    let all = w.list_all("queue=recovery&limit=100").await;
    assert_eq!(all.len(), N, "listing holds {} tasks", all.len());
    let listed: HashSet<String> = all
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, ids, "the listed tasks are not the enqueued ones");
    let mut by_attempts = BTreeMap::new();
    for t in &all {
        assert_eq!(t["status"], "completed", "{t}");
        let attempts = t["attempts"].as_u64().unwrap();
        assert!(
            (1..=2).contains(&attempts),
            "task ran {attempts} times: {t}"
        );
        *by_attempts.entry(attempts).or_insert(0) += 1;
        assert!(t["error"].is_null() || t["error"].is_string());
        assert!(!t["completed_at"].is_null());
        assert!(t["result"].is_string(), "{t}");
    }
    eprintln!("attempts: {by_attempts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_enqueues_survive_kill9_and_run_after_restart() {
    let mut w = Warren::start(Opts::new().no_worker()).await;
    let mut ids = HashSet::new();
    for i in 0..10 {
        ids.insert(
            w.enqueue(&json!({"task_name": "echo", "queue_name": "durable", "args": [i]}))
                .await,
        );
    }
    let batch: Vec<Value> = (10..60)
        .map(|i| json!({"task_name": "echo", "queue_name": "durable", "args": [i]}))
        .collect();
    ids.extend(w.enqueue_batch(&Value::Array(batch)).await);
    w.kill9();

    w.restart_with(Opts::new()).await;
    wait_until(
        "60 tasks completed after the restart",
        secs(60),
        async || (w.count("durable", "completed").await == 60).then_some(()),
    )
    .await;
    let all = w.list_all("queue=durable&limit=100").await;
    let listed: HashSet<String> = all
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, ids);
    assert!(
        all.iter().all(|t| t["attempts"] == 1),
        "a never-started task ran twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_task_survives_kill9_and_runs_when_due() {
    let mut w = Warren::start(Opts::new().args(["--scheduler-interval", "0.2"])).await;
    let at = chrono::Utc::now() + chrono::Duration::seconds(3);
    let id = w
        .enqueue(&json!({"task_name": "echo", "scheduled_at": at.to_rfc3339()}))
        .await;
    w.kill9();
    w.restart().await;
    assert_eq!(w.task(&id).await["status"], "pending");
    let t = w.wait_for_status(&id, "completed", secs(30)).await;
    assert!(ts(&t["started_at"]) >= at - chrono::Duration::milliseconds(10));
    assert_eq!(t["attempts"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_running_at_kill9_is_retried_after_restart_not_lost() {
    let mut w = Warren::default().await;
    let id = w
        .enqueue(&json!({"task_name": "sleep", "kwargs": {"seconds": 1}, "max_retries": 3, "timeout_seconds": 30}))
        .await;
    w.wait_for_status(&id, "running", secs(20)).await;
    w.kill9();
    w.restart().await;
    let t = w.wait_for_status(&id, "completed", secs(60)).await;
    assert_eq!(
        t["attempts"], 2,
        "the crashed attempt counts, and one more ran: {t}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_running_at_kill9_with_no_retries_left_ends_failed_not_stuck() {
    let mut w = Warren::default().await;
    let id = w
        .enqueue(&json!({"task_name": "sleep", "kwargs": {"seconds": 5}, "max_retries": 0, "timeout_seconds": 30}))
        .await;
    w.wait_for_status(&id, "running", secs(20)).await;
    w.kill9();
    w.restart().await;
    let t = w
        .wait_for_status_where(&id, secs(60), |t| {
            t["status"] == "failed" || t["status"] == "completed"
        })
        .await;
    // Its only attempt was lost in the crash: failed per its own policy.
    assert_eq!(t["status"], "failed", "{t}");
    assert_eq!(t["attempts"], 1, "{t}");
    assert!(t["error"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_task_reads_the_same_after_a_restart() {
    let mut w = Warren::default().await;
    let id = w
        .enqueue(&json!({"task_name": "echo", "args": ["kept"]}))
        .await;
    let before = w.wait_for_status(&id, "completed", secs(20)).await;
    w.restart().await;
    let after = w.task(&id).await;
    assert_eq!(before, after);
}
