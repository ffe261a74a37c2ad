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
    // This process's counters, per queue.
    for (line, value) in [
        ("warren_tasks_enqueued_total{queue=\"m\"}", 4.0),
        ("warren_tasks_enqueued_total{queue=\"other\"}", 1.0),
        ("warren_tasks_completed_total{queue=\"m\"}", 3.0),
        ("warren_tasks_failed_total{queue=\"m\"}", 1.0),
    ] {
        assert_eq!(metric(text, line), Some(value), "{line} in\n{text}");
    }
    let started = metric(text, "warren_task_attempts_started_total{queue=\"m\"}");
    assert!(started >= Some(4.0), "4 attempts ran on m: {started:?}");
    // Histograms: attempt run time and pickup (due to started), per queue.
    for name in ["warren_task_duration_seconds", "warren_task_pickup_seconds"] {
        assert!(text.contains(&format!("# TYPE {name} histogram")), "{text}");
        let inf = metric(text, &format!("{name}_bucket{{queue=\"m\",le=\"+Inf\"}}"))
            .unwrap_or_else(|| panic!("{name} +Inf bucket in\n{text}"));
        assert!(inf >= 4.0, "4 attempts ran, {name} counts {inf}");
        assert_eq!(
            metric(text, &format!("{name}_count{{queue=\"m\"}}")),
            Some(inf)
        );
        let buckets: Vec<f64> = text
            .lines()
            .filter(|l| l.starts_with(&format!("{name}_bucket{{queue=\"m\"")))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert!(buckets.len() > 2);
        assert!(
            buckets.windows(2).all(|p| p[0] <= p[1]),
            "{name} buckets not cumulative: {buckets:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_webhooks_executions_steps_and_expiries() {
    let rx = Receiver::ok().await;
    let w = Warren::start(
        Opts::new()
            .allow_loopback()
            .args(["--scheduler-interval", "0.2"]),
    )
    .await;
    let hooked = w
        .enqueue(&json!({"task_name": "echo", "queue_name": "h", "webhook_url": rx.url("/done")}))
        .await;
    w.wait_for_status_where(&hooked, secs(20), |t| t["webhook"]["status"] == "delivered")
        .await;
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let expiring = w
        .enqueue(&json!({"task_name": "echo", "queue_name": "x", "ttl_seconds": 1, "scheduled_at": later}))
        .await;
    w.wait_for_status(&expiring, "expired", secs(15)).await;
    let pipeline = w
        .create_pipeline(&json!({"name": "two", "steps": [
            {"name": "pick", "kind": "transform", "expression": "event.n"},
            {"name": "check", "kind": "validate", "schema": {"type": "string"}}
        ]}))
        .await;
    let run = w
        .post(
            &format!("/api/v1/pipelines/{pipeline}/run"),
            &json!({"n": 3}),
        )
        .await;
    run.expect(202);
    let id = run.json["execution_id"].as_str().expect("execution_id");
    assert_eq!(finished_execution(&w, id).await["status"], "error");

    let text = &w.get("/metrics").await.text;
    for (line, value) in [
        (
            "warren_webhook_deliveries_total{outcome=\"delivered\"}",
            1.0,
        ),
        ("warren_tasks_expired_total{queue=\"x\"}", 1.0),
        ("warren_executions_finished_total{status=\"error\"}", 1.0),
        ("warren_steps_finished_total{status=\"success\"}", 1.0),
        ("warren_steps_finished_total{status=\"error\"}", 1.0),
    ] {
        assert_eq!(metric(text, line), Some(value), "{line} in\n{text}");
    }
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
