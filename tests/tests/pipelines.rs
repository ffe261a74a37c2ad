//! Pipelines, executions and event ingestion over HTTP on the embedded
//! backend: events run a 3-step pipeline, invalid ones fail with their
//! violations, manual runs call out signed, and the counters add up.

use warren_tests::aws::Provisioned;
use warren_tests::*;

const KEY: &[u8] = b"0123456789abcdef-test-key";

/// validate → transform → task echo.
fn orders() -> Value {
    json!({
        "name": "orders",
        "event_schema": {
            "type": "object",
            "required": ["order_id"],
            "properties": {"order_id": {"type": "string"}, "qty": {"type": "integer"}}
        },
        "steps": [
            {"name": "check", "kind": "validate"},
            {"name": "shape", "kind": "transform", "expression": "{id: event.order_id, qty: event.qty}"},
            {"name": "say", "kind": "task", "task_name": "echo", "args": ["hi"]}
        ]
    })
}

/// Poll an event until it leaves `pending`.
async fn finished_event(w: &Warren, id: &str) -> Value {
    wait_until("the event to finish", secs(20), async || {
        let e = w.get(&format!("/events/{id}")).await.json;
        (e["status"] != "pending").then_some(e)
    })
    .await
}

/// Poll an execution until it leaves `running`.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_event_runs_the_pipeline_to_success_with_every_step_output() {
    valid_event_runs_to_success(Opts::new()).await;
}

/// The same on DynamoDB and SQS (the emulator `scripts/test` starts), with
/// a table and queue `warren provision` makes; an invalid event fails there
/// too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_run_or_fail_on_the_aws_wire() {
    let w = valid_event_runs_to_success(Provisioned::new().dev()).await;
    invalid_event_fails_with_its_violations(&w).await;
}

async fn valid_event_runs_to_success(opts: Opts) -> Warren {
    let w = Warren::start(opts.api_key("k3y")).await;
    let pipeline = w.create_pipeline(&orders()).await;
    let unauthenticated = w
        .send_raw(
            "POST",
            &format!("/events?workflow={pipeline}"),
            &[],
            Some(b"{}".to_vec()),
        )
        .await;
    unauthenticated.expect_error(401, Some("unauthorized"));

    let r = w
        .post(
            &format!("/events/?workflow={pipeline}"),
            &json!({"order_id": "A-1", "qty": 2}),
        )
        .await;
    r.expect(202);
    let (event_id, task_id) = (
        r.json["event_id"].as_str().unwrap(),
        r.json["task_id"].as_str().unwrap(),
    );

    let event = finished_event(&w, event_id).await;
    assert_eq!(event["status"], "completed", "{event}");
    assert_eq!(event["data"], json!({"order_id": "A-1", "qty": 2}));
    assert_eq!(event["workflow"], pipeline.as_str());
    assert_eq!(event["result"]["args"], json!(["hi"]));

    let e = finished_execution(&w, task_id).await;
    assert_eq!(e["status"], "success", "{e}");
    assert_eq!(
        (e["trigger_type"].as_str(), e["trigger_id"].as_str()),
        (Some("ingest"), Some(event_id))
    );
    assert!(
        e["duration_ms"].is_u64() && e["completed_at"].is_string() && e["started_at"].is_string()
    );
    let steps = e["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3);
    assert!(
        steps
            .iter()
            .all(|s| s["status"] == "success" && s["duration_ms"].is_u64()),
        "{e}"
    );
    assert_eq!(steps[0]["output"], json!({"valid": true}));
    assert_eq!(steps[1]["output"], json!({"id": "A-1", "qty": 2}));
    assert_eq!(
        steps[2]["output"]["kwargs"]["context"]["steps"]["shape"],
        json!({"id": "A-1", "qty": 2})
    );
    assert_eq!(e["output"], steps[2]["output"]);
    w
}

/// An invalid event to the orders pipeline ends `failed` with its
/// violations stored; the pipeline's id.
async fn invalid_event_fails_with_its_violations(w: &Warren) -> String {
    let pipeline = w.create_pipeline(&orders()).await;
    let r = w
        .post(
            &format!("/events?workflow={pipeline}"),
            &json!({"qty": "two"}),
        )
        .await;
    r.expect(202);
    let event = finished_event(w, r.json["event_id"].as_str().unwrap()).await;
    assert_eq!(event["status"], "failed", "{event}");
    let violations = event["validation_errors"]
        .as_array()
        .expect("violations stored");
    assert!(
        violations
            .iter()
            .any(|v| v["path"] == "/qty" && v["message"].is_string()),
        "{event}"
    );
    assert!(
        violations
            .iter()
            .any(|v| v["path"] == "" && v["message"].as_str().unwrap().contains("order_id"))
    );
    let e = finished_execution(w, r.json["task_id"].as_str().unwrap()).await;
    assert_eq!(
        (e["status"].as_str(), e["steps"][1]["status"].as_str()),
        (Some("error"), Some("pending"))
    );
    pipeline
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_event_fails_with_its_violations_and_sync_validation_refuses_it_at_once() {
    let w = Warren::default().await;
    let pipeline = invalid_event_fails_with_its_violations(&w).await;

    let sync = w
        .post(
            &format!("/events?workflow={pipeline}&validate=sync"),
            &json!({"qty": 1}),
        )
        .await;
    sync.expect_error(422, Some("invalid_event"));
    assert_eq!(sync.json["violations"][0]["path"], "");
    let runs = w
        .get(&format!("/api/v1/pipelines/{pipeline}/executions"))
        .await;
    assert_eq!(
        runs.json.as_array().map(Vec::len),
        Some(1),
        "the refused event started nothing"
    );

    w.post("/events", &json!({}))
        .await
        .expect_error(400, Some("no_workflow"));
    let unknown = uuid::Uuid::now_v7();
    w.post(&format!("/events?workflow={unknown}"), &json!({}))
        .await
        .expect_error(404, Some("not_found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_runs_call_out_signed_and_are_counted_in_stats_and_usage() {
    const STEP_KEY: &[u8] = b"pipeline steps have their own key";
    let rx = Receiver::ok().await;
    let w = Warren::start(Opts::new().allow_loopback().args([
        "--webhook-secret".to_string(),
        webhook_secret(KEY),
        "--step-secret".to_string(),
        webhook_secret(STEP_KEY),
    ]))
    .await;
    let pipeline = w
        .create_pipeline(&json!({"name": "notify", "steps": [
            {"name": "pick", "kind": "transform", "expression": "event.who"},
            {"name": "tell", "kind": "http", "url": rx.url("/notify"), "headers": {"x-team": "ops"}}
        ]}))
        .await;

    let mut ids = Vec::new();
    for who in ["ann", "bob"] {
        let r = w
            .post(
                &format!("/api/v1/pipelines/{pipeline}/run"),
                &json!({"who": who}),
            )
            .await;
        r.expect(202);
        ids.push(r.json["execution_id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        let e = finished_execution(&w, id).await;
        assert_eq!(
            (e["status"].as_str(), e["trigger_type"].as_str()),
            (Some("success"), Some("manual")),
            "{e}"
        );
        assert_eq!(e["steps"][1]["output"]["status"], 200);
    }
    let got = rx.wait_for(2, secs(10)).await;
    let call = &got[0];
    assert_eq!(
        (call.method.as_str(), call.uri.as_str()),
        ("POST", "/notify")
    );
    assert_eq!(call.header("x-team"), Some("ops"));
    let (id, timestamp) = (
        call.header("webhook-id").unwrap(),
        call.header("webhook-timestamp").unwrap(),
    );
    // Signed with the step key: a receiver of task webhooks, which checks
    // the webhook key, can never take a step's body for a task event.
    assert_eq!(
        call.header("webhook-signature"),
        Some(webhook_signature(STEP_KEY, id, timestamp, &call.body).as_str())
    );
    assert_ne!(
        call.header("webhook-signature"),
        Some(webhook_signature(KEY, id, timestamp, &call.body).as_str())
    );
    assert!(["ann", "bob"].contains(&call.json()["steps"]["pick"].as_str().unwrap()));

    // Newest first, one per page with a cursor.
    let first = w
        .get(&format!("/api/v1/pipelines/{pipeline}/executions?limit=1"))
        .await;
    assert_eq!(first.json[0]["id"], ids[1].as_str());
    let cursor = first
        .header("x-next-cursor")
        .expect("a next cursor")
        .to_string();
    let second = w
        .get(&format!(
            "/api/v1/pipelines/{pipeline}/executions?limit=1&cursor={cursor}"
        ))
        .await;
    assert_eq!(second.json[0]["id"], ids[0].as_str());

    let stats = w.get(&format!("/api/v1/pipelines/{pipeline}/stats")).await;
    stats.expect(200);
    assert_eq!(
        (
            stats.json["executions_total"].as_i64(),
            stats.json["executions_success"].as_i64()
        ),
        (Some(2), Some(2))
    );
    assert!(stats.json["last_executed_at"].is_string());
    let today = chrono::Utc::now().date_naive();
    let usage = w
        .get(&format!("/api/v1/usage?from={today}&to={today}"))
        .await;
    usage.expect(200);
    assert_eq!(usage.json["runs"], 2);
    assert_eq!(usage.json["pipelines"][&pipeline], 2);
    assert_eq!(usage.json["days"][0]["pipelines"][&pipeline], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_versions_and_bad_definitions_over_http() {
    let w = Warren::default().await;
    let pipeline = w.create_pipeline(&orders()).await;
    let mut v2 = orders();
    v2["description"] = json!("second");
    let r = w.put(&format!("/api/v1/pipelines/{pipeline}"), &v2).await;
    r.expect(200);
    assert_eq!(r.json["version"], 2);
    assert_eq!(
        w.get(&format!("/api/v1/pipelines/{pipeline}?version=1"))
            .await
            .json["description"],
        Value::Null
    );
    assert_eq!(
        w.get(&format!("/api/v1/pipelines/{pipeline}")).await.json["description"],
        "second"
    );
    w.get(&format!("/api/v1/pipelines/{pipeline}?version=3"))
        .await
        .expect_error(404, None);

    let mut bad_kind = orders();
    bad_kind["steps"][0]["kind"] = json!("teleport");
    w.post("/api/v1/pipelines", &bad_kind)
        .await
        .expect_error(400, None);
    let mut bad_expression = orders();
    bad_expression["steps"][1]["expression"] = json!("{id: ");
    w.put(&format!("/api/v1/pipelines/{pipeline}"), &bad_expression)
        .await
        .expect_error(400, Some("invalid_pipeline"));
    let mut bad_schema = orders();
    bad_schema["event_schema"] = json!({"type": "nothing"});
    w.post("/api/v1/pipelines", &bad_schema)
        .await
        .expect_error(400, Some("invalid_pipeline"));
    let all = w.get("/api/v1/pipelines").await;
    assert_eq!(
        all.json.as_array().map(Vec::len),
        Some(1),
        "nothing stored: {}",
        all.text
    );
    assert_eq!(
        all.json[0]["version"], 2,
        "the refused update left version 2 current"
    );

    w.delete(&format!("/api/v1/pipelines/{pipeline}"))
        .await
        .expect(204);
    w.get(&format!("/api/v1/pipelines/{pipeline}"))
        .await
        .expect_error(404, None);
    w.post(&format!("/api/v1/pipelines/{pipeline}/run"), &json!({}))
        .await
        .expect_error(404, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_between_steps_resumes_after_restart_without_re_running_finished_steps() {
    let rx = Receiver::ok().await;
    let mut w = Warren::start(Opts::new().allow_loopback()).await;
    let pipeline = w
        .create_pipeline(&json!({"name": "durable", "steps": [
            {"name": "tell", "kind": "http", "url": rx.url("/once")},
            {"name": "wait", "kind": "task", "task_name": "sleep", "kwargs": {"seconds": 3}},
            {"name": "end", "kind": "transform", "expression": "steps.tell.status"}
        ]}))
        .await;
    let r = w
        .post(&format!("/api/v1/pipelines/{pipeline}/run"), &json!({}))
        .await;
    r.expect(202);
    let id = r.json["execution_id"].as_str().unwrap().to_string();
    // GIVEN the first step checkpointed and the second one running
    wait_until("the first step's checkpoint", secs(10), async || {
        let e = w.get(&format!("/api/v1/executions/{id}")).await.json;
        (e["steps"][0]["status"] == "success").then_some(())
    })
    .await;
    // WHEN warren dies mid-step and starts again on the same data
    w.kill9();
    w.restart().await;
    // THEN the run resumes at the unfinished step and the call went out once
    let e = finished_execution(&w, &id).await;
    assert_eq!(e["status"], "success", "{e}");
    assert_eq!(e["output"], 200);
    assert_eq!(rx.requests().len(), 1, "the finished http step ran once");
}
