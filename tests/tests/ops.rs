//! /health, /metrics, and JSON answers for unknown routes and methods.

use warren_tests::*;

/// The value of one metric line `<name_and_labels> <value>`.
fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name_and_labels)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .map(|v| {
            v.trim()
                .parse()
                .unwrap_or_else(|_| panic!("bad value of {name_and_labels}: {v}"))
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_ok_and_a_connected_database() {
    let w = Warren::default().await;
    let r = w.get("/health").await;
    r.expect(200);
    assert_eq!(r.json, json!({"status": "ok", "database": "connected"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_expose_task_counts_counters_and_a_duration_histogram() {
    let w = Warren::default().await;
    let ids = w
        .enqueue_batch(&json!([
            {"task_name": "echo", "queue_name": "m"},
            {"task_name": "echo", "queue_name": "m"},
            {"task_name": "echo", "queue_name": "m"},
            {"task_name": "fail", "queue_name": "m", "max_retries": 0}
        ]))
        .await;
    for id in &ids[..3] {
        w.wait_for_status(id, "completed", secs(20)).await;
    }
    w.wait_for_status(&ids[3], "failed", secs(20)).await;
    w.enqueue(&json!({"task_name": "echo", "queue_name": "other"}))
        .await;

    let r = w.get("/metrics").await;
    r.expect(200);
    assert!(
        r.header("content-type")
            .unwrap_or("")
            .starts_with("text/plain"),
        "{:?}",
        r.header("content-type")
    );
    let text = &r.text;
    assert_eq!(
        metric(text, "warren_tasks{queue=\"m\",status=\"completed\"}"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        metric(text, "warren_tasks{queue=\"m\",status=\"failed\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(text, "warren_tasks{queue=\"m\",status=\"pending\"}"),
        Some(0.0),
        "{text}"
    );
    assert!(text.contains("# TYPE warren_tasks gauge"), "{text}");
    let enqueued =
        metric(text, "warren_tasks_enqueued_total").expect("warren_tasks_enqueued_total");
    assert_eq!(enqueued, 5.0);
    assert!(
        text.contains("# TYPE warren_task_duration_seconds histogram"),
        "{text}"
    );
    let inf =
        metric(text, "warren_task_duration_seconds_bucket{le=\"+Inf\"}").expect("+Inf bucket");
    assert!(inf >= 4.0, "4 attempts ran, histogram counts {inf}");
    assert_eq!(
        metric(text, "warren_task_duration_seconds_count"),
        Some(inf)
    );
    // buckets are cumulative
    let buckets: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("warren_task_duration_seconds_bucket"))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(buckets.len() > 2);
    assert!(
        buckets.windows(2).all(|p| p[0] <= p[1]),
        "buckets not cumulative: {buckets:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_escape_queue_names_in_labels() {
    let w = Warren::start(Opts::new().no_worker()).await;
    let r = w
        .post(
            "/api/v1/enqueue",
            &json!({"task_name": "echo", "queue_name": "we\"ird\\q"}),
        )
        .await;
    if r.status == 400 {
        return; // such queue names are refused: nothing to escape
    }
    r.expect(201);
    let text = w.get("/metrics").await.text;
    assert!(
        text.contains(r#"warren_tasks{queue="we\"ird\\q",status="pending"} 1"#),
        "queue label not escaped per the Prometheus text format:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_route_is_404_json() {
    let w = Warren::start(Opts::new().no_worker()).await;
    w.get("/nope").await.expect_error(404, None);
    w.get("/api/v1/nothing-here").await.expect_error(404, None);
    w.get("/api/v2/tasks").await.expect_error(404, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_method_is_405_json() {
    let w = Warren::start(Opts::new().no_worker()).await;
    w.get("/api/v1/enqueue").await.expect_error(405, None);
    w.send("PUT", "/api/v1/tasks", &[], None)
        .await
        .expect_error(405, None);
    w.post_empty("/health").await.expect_error(405, None);
    let id = uuid::Uuid::now_v7();
    w.send("PUT", &format!("/api/v1/tasks/{id}"), &[], None)
        .await
        .expect_error(405, None);
    w.get(&format!("/api/v1/tasks/{id}/requeue"))
        .await
        .expect_error(405, None);
}
