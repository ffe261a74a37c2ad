//! Webhooks: signed (Standard Webhooks), sent once a task is completed or
//! finally failed, retried with backoff, outcome recorded on the task.

use std::time::Duration;

use warren_tests::*;

const KEY: &[u8] = b"0123456789abcdef-test-key";

fn opts_with_secret() -> Opts {
    Opts::new()
        .allow_loopback()
        .args(["--webhook-secret".to_string(), webhook_secret(KEY)])
}

/// Check the Standard Webhooks headers and signature of one delivery; its body.
#[track_caller]
fn verify(req: &Received, key: &[u8], task_id: &str) -> Value {
    assert_eq!(req.method, "POST");
    assert!(
        req.header("content-type")
            .unwrap_or("")
            .starts_with("application/json")
    );
    let id = req.header("webhook-id").expect("webhook-id header");
    assert_eq!(id, format!("msg_{task_id}"));
    let timestamp = req
        .header("webhook-timestamp")
        .expect("webhook-timestamp header");
    let secs: i64 = timestamp
        .parse()
        .expect("webhook-timestamp is epoch seconds");
    let now = chrono::Utc::now().timestamp();
    assert!(
        (now - secs).abs() < 120,
        "webhook-timestamp {secs} is not now ({now})"
    );
    let signatures = req
        .header("webhook-signature")
        .expect("webhook-signature header");
    let expected = webhook_signature(key, id, timestamp, &req.body);
    assert!(
        signatures.split(' ').any(|s| s == expected),
        "signature {signatures} does not match {expected}"
    );
    req.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completed_task_sends_a_signed_webhook_and_records_it_delivered() {
    let rx = Receiver::ok().await;
    let w = Warren::start(opts_with_secret()).await;
    let id = w
        .enqueue(&json!({"task_name": "echo", "queue_name": "hooks", "args": [7], "webhook_url": rx.url("/done")}))
        .await;
    let got = rx.wait_for(1, secs(20)).await;
    assert_eq!(got[0].uri, "/done");
    let body = verify(&got[0], KEY, &id);
    assert_eq!(body["task_id"], id.as_str());
    assert_eq!(body["task_name"], "echo");
    assert_eq!(body["queue_name"], "hooks");
    assert_eq!(body["status"], "completed");
    assert!(
        body["type"].as_str().is_some_and(|t| !t.is_empty()),
        "type: {body}"
    );
    assert_eq!(body["attempts"], 1);
    assert!(body["error"].is_null());
    let result: Value =
        serde_json::from_str(body["result"].as_str().expect("result is JSON text")).unwrap();
    assert_eq!(result, json!({"args": [7], "kwargs": {}}));
    assert!(!body["completed_at"].is_null());

    let t = w
        .wait_for_status_where(&id, secs(20), |t| t["webhook"]["status"] == "delivered")
        .await;
    assert_eq!(t["status"], "completed");
    assert_eq!(t["webhook"]["attempts"], 1);
    assert_eq!(t["webhook"]["last_status_code"], 200);
    assert!(t["webhook"]["last_error"].is_null());
    ts(&t["webhook"]["updated_at"]);
    assert_eq!(
        body["completed_at"]
            .as_str()
            .map(|_| ts(&body["completed_at"])),
        Some(ts(&t["completed_at"]))
    );
    tokio::time::sleep(secs(1)).await;
    assert_eq!(rx.requests().len(), 1, "a delivered webhook was sent again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_without_webhook_url_has_no_webhook_outcome() {
    let w = Warren::default().await;
    let id = w.enqueue(&json!({"task_name": "echo"})).await;
    let t = w.wait_for_status(&id, "completed", secs(20)).await;
    assert!(t["webhook"].is_null(), "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finally_failed_task_sends_one_webhook_after_its_last_attempt() {
    let rx = Receiver::ok().await;
    let w = Warren::start(opts_with_secret()).await;
    let id = w
        .enqueue(&json!({
            "task_name": "fail", "kwargs": {"message": "it broke"},
            "max_retries": 2, "retry_delay": 0, "retry_backoff": false,
            "webhook_url": rx.url("/failed")
        }))
        .await;
    let got = rx.wait_for(1, secs(30)).await;
    let body = verify(&got[0], KEY, &id);
    assert_eq!(body["status"], "failed");
    assert_eq!(
        body["attempts"], 3,
        "the webhook came before the last attempt"
    );
    assert!(body["error"].as_str().unwrap_or("").contains("it broke"));
    let t = w
        .wait_for_status_where(&id, secs(20), |t| t["webhook"]["status"] == "delivered")
        .await;
    assert_eq!(t["status"], "failed");
    assert_eq!(t["attempts"], 3);
    tokio::time::sleep(secs(2)).await;
    assert_eq!(rx.requests().len(), 1, "retried attempts sent webhooks too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_answered_non_2xx_is_retried_with_backoff_until_delivered() {
    let rx = Receiver::start(vec![500, 503, 200]).await;
    let w = Warren::start(opts_with_secret()).await;
    let id = w
        .enqueue(&json!({"task_name": "echo", "webhook_url": rx.url("/flaky")}))
        .await;
    let got = rx.wait_for(3, secs(40)).await;
    for r in &got {
        verify(r, KEY, &id);
    }
    let gap1 = got[1].at - got[0].at;
    let gap2 = got[2].at - got[1].at;
    assert!(
        gap1 >= Duration::from_millis(900),
        "first retry after {gap1:?} (1 s backoff expected)"
    );
    assert!(
        gap1 < Duration::from_millis(1800),
        "first retry after {gap1:?} (1 s backoff expected)"
    );
    assert!(
        gap2 >= Duration::from_millis(1800),
        "second retry after {gap2:?} (2 s backoff expected)"
    );
    assert!(
        gap2 < Duration::from_millis(3500),
        "second retry after {gap2:?} (2 s backoff expected)"
    );
    let t = w
        .wait_for_status_where(&id, secs(20), |t| t["webhook"]["status"] == "delivered")
        .await;
    assert_eq!(t["webhook"]["attempts"], 3);
    assert_eq!(t["webhook"]["last_status_code"], 200);
    // The task itself completed once.
    assert_eq!(t["status"], "completed");
    assert_eq!(t["attempts"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_that_keeps_failing_ends_failed_with_its_last_status() {
    let rx = Receiver::start(vec![500]).await;
    let w = Warren::start(opts_with_secret()).await;
    let id = w
        .enqueue(&json!({"task_name": "echo", "webhook_url": rx.url("/down")}))
        .await;
    let t = w
        .wait_for_status_where(&id, secs(60), |t| t["webhook"]["status"] == "failed")
        .await;
    assert_eq!(
        t["status"], "completed",
        "a webhook failure must not change the task"
    );
    assert_eq!(t["webhook"]["last_status_code"], 500);
    assert!(!t["webhook"]["last_error"].is_null());
    let attempts = t["webhook"]["attempts"].as_u64().unwrap();
    assert!(attempts > 1, "a failed webhook was not retried");
    assert_eq!(rx.requests().len() as u64, attempts);
    tokio::time::sleep(secs(2)).await;
    assert_eq!(
        rx.requests().len() as u64,
        attempts,
        "sent again after giving up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_to_loopback_without_allow_list_is_refused_and_recorded_failed() {
    let rx = Receiver::ok().await;
    let w = Warren::start(Opts::new().args(["--webhook-secret".to_string(), webhook_secret(KEY)]))
        .await;
    let id = w
        .enqueue(&json!({"task_name": "echo", "webhook_url": rx.url("/private")}))
        .await;
    let t = w
        .wait_for_status_where(&id, secs(30), |t| t["webhook"]["status"] == "failed")
        .await;
    assert_eq!(t["status"], "completed");
    let err = t["webhook"]["last_error"]
        .as_str()
        .unwrap_or("")
        .to_lowercase();
    assert!(err.contains("refused"), "last_error: {err}");
    assert!(rx.requests().is_empty(), "the loopback receiver was called");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_without_a_configured_secret_is_signed_with_the_generated_one() {
    let rx = Receiver::ok().await;
    let w = Warren::start(Opts::new().allow_loopback()).await;
    let id = w
        .enqueue(&json!({"task_name": "echo", "webhook_url": rx.url("/gen")}))
        .await;
    let got = rx.wait_for(1, secs(20)).await;
    let secret = std::fs::read_to_string(w.data_dir().join("webhook-secret"))
        .expect("generated secret kept in <data-dir>/webhook-secret");
    let secret = secret.trim();
    let b64 = secret.strip_prefix("whsec_").expect("whsec_ secret");
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64 secret");
    assert!(key.len() >= 16);
    verify(&got[0], &key, &id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_secret_that_is_too_short_is_refused_at_start() {
    let short = webhook_secret(b"short");
    let (status, _, stderr) = run_to_exit(&["--webhook-secret", &short], &[], secs(20));
    let status = status.expect("warren kept running with a 5-byte webhook secret");
    assert!(!status.success());
    assert!(
        stderr.contains("16") || stderr.to_lowercase().contains("secret"),
        "{stderr}"
    );
}
