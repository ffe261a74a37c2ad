//! Hostile requests: each finding of the hardening review, sent over HTTP.
//! After each, warren must still serve, its state must be intact, and it
//! must start again on the same data and serve.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use warren_tests::aws::Provisioned;
use warren_tests::*;

/// `[[[...1...]]]`, `depth` arrays deep.
fn nested(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

fn nested_value(depth: usize) -> Value {
    serde_json::from_str(&nested(depth)).expect("nested JSON parses")
}

/// A one-step pipeline that transforms its event with `expression`.
fn transform(expression: &str) -> Value {
    json!({"name": "hostile", "steps": [{"name": "t", "kind": "transform", "expression": expression}]})
}

async fn run(w: &Warren, pipeline: &str, input: &Value) -> Value {
    let r = w
        .post(&format!("/api/v1/pipelines/{pipeline}/run"), input)
        .await;
    r.expect(202);
    finished_execution(w, r.json["execution_id"].as_str().expect("execution id")).await
}

// ----- 1 and 3: JMESPath -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jmespath_expressions_that_nest_deep_or_run_long_are_refused_when_written() {
    let mut w = Warren::start(Opts::new().no_worker()).await;
    let deep = [
        format!("{}@", "!".repeat(2000)),
        "(".repeat(100_000),
        format!("{}a", "a.".repeat(3000)),
        format!("{}a", "a||".repeat(2000)),
        format!("a{}", "[*]".repeat(500)),
        format!("{}@", "!".repeat(100)),
    ];
    for expression in &deep {
        let r = w.post("/api/v1/pipelines", &transform(expression)).await;
        r.expect_error(400, Some("invalid_pipeline"));
        let items = json!({"name": "fan", "steps": [{"name": "e", "kind": "enqueue", "task_name": "echo", "items": expression}]});
        w.post("/api/v1/pipelines", &items)
            .await
            .expect_error(400, Some("invalid_pipeline"));
    }
    assert_eq!(w.get("/api/v1/pipelines").await.json, json!([]));
    w.restarts_and_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_expression_that_doubles_its_result_fails_its_step_without_eating_memory() {
    let mut w = Warren::default().await;
    let doubling = format!("`1`{}", " | [@,@]".repeat(30));
    for expression in [
        doubling.clone(),
        format!("{doubling} | to_string(@)"),
        format!("{doubling} | @ == @"),
        format!("`[1]`{}", " | [@,@][]".repeat(40)),
    ] {
        let p = w.create_pipeline(&transform(&expression)).await;
        let e = run(&w, &p, &json!({})).await;
        assert_eq!(e["status"], "error", "{expression}: {e}");
        let error = e["error"].as_str().unwrap_or("");
        assert!(error.contains("too expensive"), "{expression}: {error}");
    }
    let peak = w.peak_rss_mib();
    assert!(peak < 300, "the worker peaked at {peak} MiB");
    // A sane expression still runs.
    let p = w.create_pipeline(&transform("{got: event.n}")).await;
    let e = run(&w, &p, &json!({"n": 7})).await;
    assert_eq!(
        (&e["status"], &e["output"]),
        (&json!("success"), &json!({"got": 7}))
    );
    w.restarts_and_serves().await;
}

// ----- 2: nesting, damaged records, redelivery -----

/// Every route that takes a document refuses one nesting past 32 levels,
/// stores nothing, and one at the limit is stored and read back.
async fn deep_json_is_refused_everywhere(w: &Warren) {
    let spec = json!({"name": "deep", "options": {"event": "deep-topic"},
        "steps": [{"name": "t", "kind": "transform", "expression": "{got: event}"}]});
    let p = w.create_pipeline(&spec).await;
    let hook = w
        .post(
            &format!("/api/v1/pipelines/{p}/triggers"),
            &json!({"type": "webhook", "name": "in"}),
        )
        .await;
    hook.expect(201);
    let token = hook.json["webhook_token"]
        .as_str()
        .expect("token")
        .to_string();
    w.post(&format!("/api/v1/events/{p}"), &json!({}))
        .await
        .expect(200);
    let deep = nested(127);
    for path in [
        format!("/events?workflow={p}"),
        format!("/api/v1/pipelines/{p}/run"),
        "/api/v1/topics/deep-topic/messages".to_string(),
        format!("/hooks/{token}"),
    ] {
        w.post_bytes(&path, deep.clone())
            .await
            .expect_error(400, Some("too_deep"));
    }
    let task = format!(
        r#"{{"task_name": "echo", "kwargs": {{"k": {}}}}}"#,
        nested(40)
    );
    w.post_bytes("/api/v1/enqueue", task.clone())
        .await
        .expect_error(400, Some("too_deep"));
    w.post_bytes("/api/v1/enqueue/batch", format!("[{task}]"))
        .await
        .expect_error(400, Some("too_deep"));
    assert!(w.executions(&p).await.is_empty(), "nothing ran");
    assert_eq!(w.total_counted().await, 0, "nothing was stored");

    // At the limit: stored and read back; its output would nest deeper
    // than an execution keeps, so the step fails, not the store.
    let at_limit = w
        .post(&format!("/events?workflow={p}"), &nested_value(32))
        .await;
    at_limit.expect(202);
    let e = finished_execution(w, at_limit.json["task_id"].as_str().unwrap()).await;
    assert_eq!(e["status"], "error", "{e}");
    assert!(
        e["error"].as_str().unwrap_or("").contains("nests deeper"),
        "{e}"
    );
    let event = w
        .get(&format!(
            "/events/{}",
            at_limit.json["event_id"].as_str().unwrap()
        ))
        .await;
    event.expect(200);
    assert_eq!(event.json["data"], nested_value(32));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_nesting_past_32_levels_is_refused_on_every_route() {
    let mut w = Warren::default().await;
    deep_json_is_refused_everywhere(&w).await;
    w.restarts_and_serves().await;
    let id = w.enqueue(&json!({"task_name": "echo"})).await;
    w.wait_for_status(&id, "completed", secs(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_nesting_past_32_levels_is_refused_on_the_aws_wire() {
    let mut w = Warren::start(Provisioned::new().dev()).await;
    deep_json_is_refused_everywhere(&w).await;
    w.restarts_and_serves().await;
}

/// Overwrite the stored record at (`pk`, `sk`) of a stopped warren's
/// store with bytes that do not decode, leaving its index entries.
fn damage(data_dir: &std::path::Path, pk: &str, sk: &str) {
    const ITEMS: redb::TableDefinition<(&str, &str), &[u8]> = redb::TableDefinition::new("items");
    let db = redb::Database::open(data_dir.join("warren.redb")).expect("open the store file");
    let tx = db.begin_write().expect("write transaction");
    {
        let mut items = tx.open_table(ITEMS).expect("items table");
        let old = items
            .insert((pk, sk), b"\x01damaged".as_slice())
            .expect("overwrite");
        assert!(old.is_some(), "({pk}, {sk}) was stored");
    }
    tx.commit().expect("commit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_record_is_skipped_by_lists_the_scheduler_and_start_up() {
    let mut w = Warren::start(Opts::new().no_worker()).await;
    let damaged = w
        .enqueue(&json!({"task_name": "echo", "args": ["damaged"]}))
        .await;
    let now_due = w
        .enqueue(&json!({"task_name": "echo", "args": ["now"]}))
        .await;
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(4)).to_rfc3339();
    let later = w
        .enqueue(&json!({"task_name": "echo", "args": ["soon"], "scheduled_at": soon}))
        .await;
    w.kill9();
    let key = warren::table::tasks::key(damaged.parse().expect("a task id"));
    damage(w.data_dir(), &key.pk, &key.sk);

    // Start-up recovery, lists and the scheduler read past it.
    w.restart_with(Opts::new()).await;
    w.wait_for_status(&now_due, "completed", secs(20)).await;
    w.wait_for_status(&later, "completed", secs(30)).await;
    let listed: HashSet<String> = w
        .list_all("limit=1000")
        .await
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, HashSet::from([now_due.clone(), later.clone()]));
    // The record itself cannot be read: a JSON error, not a dropped request.
    let r = w.get(&format!("/api/v1/tasks/{damaged}")).await;
    r.expect_error(503, Some("unavailable"));
    w.restarts_and_serves().await;
}

// ----- 4 and 9: the SSRF guard -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outgoing_calls_never_go_through_a_proxy_from_the_environment() {
    let proxy = Receiver::ok().await;
    let target = Receiver::ok().await;
    let mut opts = Opts::new();
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        opts = opts.env(var, &proxy.base);
    }
    let mut w = Warren::start(opts.clone()).await;
    let port = target.base.rsplit(':').next().unwrap().to_string();
    let url = format!("http://localhost:{port}/inside");
    let id = w
        .enqueue(&json!({"task_name": "http", "kwargs": {"url": url}, "max_retries": 0}))
        .await;
    let t = w.wait_for_status(&id, "failed", secs(20)).await;
    assert!(t["error"].as_str().unwrap_or("").contains("refused"), "{t}");
    let hook = w
        .enqueue(
            &json!({"task_name": "echo", "webhook_url": format!("http://localhost:{port}/hook")}),
        )
        .await;
    let t = wait_until("the webhook outcome", secs(20), async || {
        let t = w.task(&hook).await;
        (t["webhook"]["status"] == "failed").then_some(t)
    })
    .await;
    assert!(
        t["webhook"]["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("refused"),
        "{t}"
    );
    let p = w
        .create_pipeline(
            &json!({"name": "out", "steps": [{"name": "h", "kind": "http", "url": url}]}),
        )
        .await;
    let e = run(&w, &p, &json!({})).await;
    assert_eq!(e["status"], "error", "{e}");
    assert!(proxy.requests().is_empty(), "the proxy was used");
    assert!(target.requests().is_empty(), "the target was reached");

    // Allowed explicitly, loopback is reached directly, still not through the proxy.
    w.restart_with(opts.allow_loopback()).await;
    let id = w
        .enqueue(&json!({"task_name": "http", "kwargs": {"url": url}, "max_retries": 0}))
        .await;
    w.wait_for_status(&id, "completed", secs(20)).await;
    assert_eq!(target.requests().len(), 1);
    assert!(proxy.requests().is_empty(), "the proxy was used");
    w.restarts_and_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_addresses_that_reach_ipv4_or_special_ranges_are_refused() {
    let mut w = Warren::default().await;
    let mut ids = Vec::new();
    for host in [
        "[64:ff9b::7f00:1]",                      // NAT64 of 127.0.0.1
        "[64:ff9b::a9fe:a9fe]",                   // NAT64 of 169.254.169.254
        "[64:ff9b:1::808:808]",                   // local-use NAT64
        "[2002:7f00:1::1]",                       // 6to4 of 127.0.0.1
        "[2001:0:4136:e378:8000:63bf:3fff:fdd2]", // Teredo
        "[fec0::1]",                              // site-local
        "[100::1]",                               // discard-only
    ] {
        let url = format!("http://{host}:8080/");
        let id = w
            .enqueue(&json!({"task_name": "http", "kwargs": {"url": url}, "max_retries": 3}))
            .await;
        ids.push((host, id));
    }
    for (host, id) in ids {
        let t = w.wait_for_status(&id, "failed", secs(20)).await;
        assert_eq!(
            t["attempts"], 1,
            "{host}: refused at once, not retried: {t}"
        );
        assert!(
            t["error"]
                .as_str()
                .unwrap_or("")
                .contains("private or internal"),
            "{host}: {t}"
        );
    }
    w.restarts_and_serves().await;
}

// ----- 5: schema patterns -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backtracking_pattern_is_checked_in_linear_time() {
    let mut w = Warren::default().await;
    let spec = json!({"name": "patterns",
        "event_schema": {"type": "object", "properties": {"s": {"type": "string", "pattern": "^(a+)+$"}}},
        "steps": [{"name": "v", "kind": "validate"}]});
    let p = w.create_pipeline(&spec).await;
    let hostile = json!({"s": format!("{}!", "a".repeat(200_000))});
    let started = Instant::now();
    let r = w
        .post(&format!("/events?workflow={p}&validate=sync"), &hostile)
        .await;
    r.expect_error(422, Some("invalid_event"));
    assert!(started.elapsed() < secs(5), "took {:?}", started.elapsed());
    let queued = w.post(&format!("/events?workflow={p}"), &hostile).await;
    queued.expect(202);
    let e = finished_execution(&w, queued.json["task_id"].as_str().unwrap()).await;
    assert_eq!(e["status"], "error", "{e}");
    // The engine matches in linear time, so it has no lookaround to offer.
    let lookbehind = json!({"name": "lb",
        "event_schema": {"type": "string", "pattern": "(?<=a)b"},
        "steps": [{"name": "v", "kind": "validate"}]});
    w.post("/api/v1/pipelines", &lookbehind)
        .await
        .expect_error(400, Some("invalid_pipeline"));
    w.restarts_and_serves().await;
}

// ----- 6: web pages against a keyless gateway -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_pages_cannot_drive_a_gateway_without_a_key() {
    let mut w = Warren::start(Opts::new().no_worker()).await;
    let task = br#"{"task_name": "echo"}"#.to_vec();
    let text = ("content-type", "text/plain");
    let refused = [
        vec![text, ("origin", "https://evil.example")],
        vec![text, ("origin", "null")],
        vec![text, ("sec-fetch-site", "cross-site")],
        vec![("host", "rebound.example:8000")],
    ];
    for headers in refused {
        let r = w
            .send_raw("POST", "/api/v1/enqueue", &headers, Some(task.clone()))
            .await;
        r.expect(403);
        r.expect_error(403, None);
    }
    assert_eq!(w.total_counted().await, 0, "nothing was stored");
    // curl -d (no content type, no Origin) and the gateway's own pages pass.
    w.send_raw("POST", "/api/v1/enqueue", &[], Some(task.clone()))
        .await
        .expect(201);
    let own = w.base.clone();
    w.send_raw(
        "POST",
        "/api/v1/enqueue",
        &[text, ("origin", &own)],
        Some(task.clone()),
    )
    .await
    .expect(201);

    // An origin allowed with --cors-origin gets CORS answers.
    w.restart_with(
        Opts::new()
            .no_worker()
            .args(["--cors-origin", "http://localhost:3000"]),
    )
    .await;
    let dev = ("origin", "http://localhost:3000");
    let r = w
        .send_raw("POST", "/api/v1/enqueue", &[text, dev], Some(task.clone()))
        .await;
    r.expect(201);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://localhost:3000")
    );
    let preflight = w
        .send_raw(
            "OPTIONS",
            "/api/v1/enqueue",
            &[dev, ("access-control-request-method", "POST")],
            None,
        )
        .await;
    preflight.expect(200);
    assert_eq!(
        preflight.header("access-control-allow-methods"),
        Some("POST")
    );
    w.send_raw("OPTIONS", "/api/v1/enqueue", &[], None)
        .await
        .expect_error(405, None);
    w.restarts_and_serves().await;
}

// ----- 7: batches -----

async fn huge_batches_are_refused_while_read(w: &Warren, fits: usize) {
    // Three million tiny items: the 1,001st ends the reading.
    let mut body = String::with_capacity(9_000_010);
    body.push('[');
    body.push_str(&"{},".repeat(3_000_000));
    body.push_str("{}]");
    w.post_bytes("/api/v1/enqueue/batch", body)
        .await
        .expect_error(413, Some("batch_too_large"));
    let over = Value::Array(vec![json!({"task_name": "echo"}); 1001]);
    w.post("/api/v1/enqueue/batch", &over)
        .await
        .expect_error(413, Some("batch_too_large"));
    // Past the body limit warren answers before reading the rest and closes
    // the connection, so this one goes on a connection of its own.
    let too_long = format!("[{}]", "0".repeat(11 * 1024 * 1024));
    let r = client()
        .post(format!("{}/api/v1/enqueue/batch", w.base))
        .body(too_long)
        .send()
        .await;
    if let Ok(r) = r {
        assert_eq!(r.status().as_u16(), 413);
        let body: Value =
            serde_json::from_slice(&r.bytes().await.unwrap_or_default()).unwrap_or(Value::Null);
        assert_eq!(body["code"], "payload_too_large", "{body}");
    }
    assert_eq!(w.total_counted().await, 0, "nothing was stored");
    let batch = Value::Array(vec![later("fits"); fits]);
    assert_eq!(w.enqueue_batch(&batch).await.len(), fits);
}

/// A task due in 2099: stored with a timer, no queue message yet (which
/// keeps the emulator's queues, slow to fill, out of bulk tests).
fn later(queue: &str) -> Value {
    json!({"task_name": "echo", "queue_name": queue, "scheduled_at": "2099-01-01T00:00:00Z"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_counted_as_it_is_read_and_stops_at_the_1001st_item() {
    let mut w = Warren::start(Opts::new().no_worker()).await;
    huge_batches_are_refused_while_read(&w, 1000).await;
    let peak = w.peak_rss_mib();
    assert!(peak < 200, "warren peaked at {peak} MiB");
    w.restarts_and_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_counted_as_it_is_read_on_the_aws_wire() {
    // The emulator writes slowly: a small batch shows the same code path.
    let mut w = Warren::start(Provisioned::new().dev().no_worker()).await;
    huge_batches_are_refused_while_read(&w, 50).await;
    w.restarts_and_serves().await;
}

// ----- 8: bounded work -----

/// Bulk delete needs a filter or `all=true`, and goes in bounded steps: at
/// most 1000 tasks, about 10 s, per call (at least `min_calls` of them).
async fn bulk_delete_goes_in_bounded_steps(w: &Warren, n: usize, min_calls: u32) {
    w.delete("/api/v1/tasks")
        .await
        .expect_error(400, Some("filter_required"));
    let batch = Value::Array(vec![later("bulk"); n / 2]);
    for _ in 0..2 {
        w.enqueue_batch(&batch).await;
    }
    let stored = w.total_counted().await;
    let (mut deleted, mut calls, mut cursor) = (0, 0, String::new());
    loop {
        let started = Instant::now();
        let r = w.delete(&format!("/api/v1/tasks?all=true{cursor}")).await;
        r.expect(200);
        assert!(
            started.elapsed() < secs(20),
            "one call took {:?}",
            started.elapsed()
        );
        calls += 1;
        let got = r.json["deleted"].as_u64().expect("deleted count");
        assert!(got <= 1000, "one call deleted {got}");
        deleted += got;
        match r.json["more"].as_bool() {
            Some(false) => break,
            Some(true) => cursor = format!("&cursor={}", r.json["cursor"].as_str().unwrap()),
            None => panic!("no `more`: {}", r.text),
        }
        assert!(calls < 50, "never finished");
    }
    assert_eq!(deleted, stored);
    assert!(calls >= min_calls, "{stored} tasks took {calls} call(s)");
    assert_eq!(w.total_counted().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_per_request_and_per_record_is_bounded() {
    let mut w = Warren::start(Opts::new().args(["--execution-retention", "2"])).await;
    // Schedules: none firing more than once a minute (by default).
    let p = w.create_pipeline(&transform("{got: event}")).await;
    let r = w
        .post(
            &format!("/api/v1/pipelines/{p}/triggers"),
            &json!({"type": "schedule", "name": "hammer", "config": {"cron": "* * * * * *"}}),
        )
        .await;
    r.expect_error(400, Some("invalid_cron"));
    assert!(r.message().contains("minimum interval"), "{}", r.text);

    // Executions and their events expire after the retention.
    let e = run(&w, &p, &json!({"x": 1})).await;
    let event = w
        .post(&format!("/events?workflow={p}"), &json!({"y": 2}))
        .await;
    event.expect(202);
    finished_execution(&w, event.json["task_id"].as_str().unwrap()).await;
    let execution = format!("/api/v1/executions/{}", e["id"].as_str().unwrap());
    let event = format!("/events/{}", event.json["event_id"].as_str().unwrap());
    wait_until(
        "the finished execution and event to expire",
        secs(20),
        async || {
            let gone = w.get(&execution).await.status == 404 && w.get(&event).await.status == 404;
            gone.then_some(())
        },
    )
    .await;

    // Fan-out: 1000 tasks per execution across all its enqueue steps.
    let fan = json!({"name": "fan", "steps": [
        {"name": "first", "kind": "enqueue", "task_name": "echo", "queue_name": "fan", "items": "event.a"},
        {"name": "second", "kind": "enqueue", "task_name": "echo", "queue_name": "fan", "items": "event.b"}
    ]});
    let fan = w.create_pipeline(&fan).await;
    let items = Value::Array((0..600).map(Value::from).collect());
    let e = run(&w, &fan, &json!({"a": items, "b": items})).await;
    assert_eq!(e["status"], "error", "{e}");
    assert!(
        e["steps"][1]["error"]
            .as_str()
            .unwrap_or("")
            .contains("at most 1000"),
        "{e}"
    );
    let fanned = w.queue("fan").await.expect("the fan queue");
    let total: u64 = ["pending", "running", "completed"]
        .iter()
        .map(|s| fanned[s].as_u64().unwrap())
        .sum();
    assert_eq!(total, 600, "{fanned}");

    w.restart_with(Opts::new().no_worker()).await;
    bulk_delete_goes_in_bounded_steps(&w, 1500, 2).await;
    w.restarts_and_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_delete_goes_in_bounded_steps_on_the_aws_wire() {
    // The emulator deletes slowly: fewer tasks, and its own pace decides
    // how many calls the time budget splits them into.
    let mut w = Warren::start(Provisioned::new().dev().no_worker()).await;
    bulk_delete_goes_in_bounded_steps(&w, 100, 1).await;
    w.restarts_and_serves().await;
}

// ----- 10: numbers and dates -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_numbers_and_far_dates_answer_4xx_or_fail_the_task_never_the_process() {
    let mut w = Warren::default().await;
    for query in [
        "to=-262143-01-01",
        "from=-262143-01-01&to=%2B262142-12-31",
        "from=2026-01-01&to=2025-01-01",
    ] {
        w.get(&format!("/api/v1/usage?{query}"))
            .await
            .expect_error(400, None);
    }
    for at in [
        "+262142-12-31T23:59:59Z",
        "-262143-01-01T00:00:00Z",
        "0000-01-01T00:00:00Z",
    ] {
        w.post(
            "/api/v1/enqueue",
            &json!({"task_name": "echo", "scheduled_at": at}),
        )
        .await
        .expect_error(400, None);
    }
    for ttl in [json!(1e300), json!(-1), json!(1e-300)] {
        let r = w
            .post(
                "/api/v1/enqueue",
                &json!({"task_name": "echo", "ttl_seconds": ttl}),
            )
            .await;
        assert!(
            r.status == 201 || r.status == 400,
            "ttl {ttl}: {} {}",
            r.status,
            r.text
        );
    }
    let sleepy = w
        .enqueue(&json!({"task_name": "sleep", "kwargs": {"seconds": 1e300}, "timeout_seconds": 1, "max_retries": 0}))
        .await;
    let t = w.wait_for_status(&sleepy, "failed", secs(20)).await;
    assert!(
        t["error"].as_str().unwrap_or("").contains("timed out"),
        "{t}"
    );
    let slow_http = w
        .enqueue(&json!({"task_name": "http", "kwargs": {"url": "http://127.0.0.1:9/", "timeout": 1e300}, "max_retries": 0}))
        .await;
    w.wait_for_status(&slow_http, "failed", secs(20)).await;
    let fine = w.enqueue(&json!({"task_name": "echo"})).await;
    w.wait_for_status(&fine, "completed", secs(20)).await;
    w.restarts_and_serves().await;
}

// ----- 11: one key per kind of signed message -----

#[test]
fn the_step_secret_must_differ_from_the_webhook_secret() {
    let secret = webhook_secret(b"one key for both kinds of message");
    let (status, _, stderr) = run_to_exit(
        &["--webhook-secret", &secret, "--step-secret", &secret],
        &[],
        secs(20),
    );
    assert!(status.is_some_and(|s| !s.success()), "{stderr}");
    assert!(stderr.contains("must differ"), "{stderr}");
}

// ----- 12: clients that hang up -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_hang_up_mid_request_leave_no_task_waiting() {
    let mut w = Warren::start(Opts::new().args(["--durability", "sync"])).await;
    let url = format!("{}/api/v1/enqueue", w.base);
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..400u64 {
        let url = url.clone();
        requests.spawn(async move {
            // Give up after 0-4 ms: the server's handler is dropped wherever
            // it happens to be, before or after its write.
            let client = reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_micros(500 + (i * 7919) % 4000))
                .build()
                .expect("client");
            let body = json!({"task_name": "echo", "queue_name": "hangups", "args": [i]});
            client
                .post(&url)
                .body(body.to_string())
                .send()
                .await
                .is_ok()
        });
        while requests.len() >= 16 {
            requests.join_next().await;
        }
    }
    let mut answered = 0;
    while let Some(done) = requests.join_next().await {
        answered += usize::from(done.unwrap_or(false));
    }
    assert!(
        answered < 400,
        "no request was cut short; the test proves nothing"
    );
    // Whatever was stored starts within seconds, not after the 600 s re-dispatch.
    let stored = wait_until("every stored task to complete", secs(30), async || {
        match w.queue("hangups").await {
            None if answered == 0 => Some(json!({"failed": 0})), // nothing was stored
            None => None,
            Some(q) => (q["pending"] == 0 && q["running"] == 0).then_some(q),
        }
    })
    .await;
    eprintln!("{answered} answered of 400; stored: {stored}");
    assert_eq!(stored["failed"], 0, "{stored}");
    w.restarts_and_serves().await;
}

// ----- 13: the smaller ones -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_and_the_secrets_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let mut w = Warren::start(Opts::new().no_worker()).await;
    for file in ["warren.redb", "webhook-secret", "step-secret"] {
        let mode = std::fs::metadata(w.data_dir().join(file))
            .expect("the file exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file} is {:o}", mode & 0o777);
    }
    w.restarts_and_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_is_read_in_any_case() {
    const KEY: &str = "a-key-of-more-than-16-chars";
    let mut w = Warren::start(
        Opts::new()
            .args(["--api-key", KEY])
            .client_key(KEY)
            .no_worker(),
    )
    .await;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let value = format!("{scheme} {KEY}");
        w.send_raw("GET", "/api/v1/tasks", &[("authorization", &value)], None)
            .await
            .expect(200);
    }
    let r = w.send_raw("GET", "/api/v1/tasks", &[], None).await;
    r.expect_error(401, Some("unauthorized"));
    assert_eq!(r.json["error"], "unauthorized", "lapinq's answer");
    w.restarts_and_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hook_tokens_stay_out_of_the_logs_and_links_use_the_public_url() {
    let mut w = Warren::start(Opts::new().no_worker().env("RUST_LOG", "debug")).await;
    let p = w.create_pipeline(&transform("@")).await;
    let triggers = format!("/api/v1/pipelines/{p}/triggers");
    let spec = json!({"type": "webhook", "name": "in"})
        .to_string()
        .into_bytes();
    let made = w
        .send_raw(
            "POST",
            &triggers,
            &[
                ("content-type", "application/json"),
                ("x-forwarded-host", "evil.example"),
            ],
            Some(spec.clone()),
        )
        .await;
    made.expect(201);
    let url = made.json["webhook_url"].as_str().unwrap();
    assert!(url.starts_with(&format!("{}/hooks/", w.base)), "{url}");
    assert_eq!(made.header("cache-control"), Some("no-store"));
    assert_eq!(made.header("x-content-type-options"), Some("nosniff"));
    let token = made.json["webhook_token"].as_str().unwrap().to_string();
    w.post(&format!("/hooks/{token}"), &json!({}))
        .await
        .expect(202);
    let log = w.log_tail(100_000);
    assert!(log.contains("/hooks/<token>"), "requests are traced");
    assert!(!log.contains(&token[4..]), "the token is in the log");

    w.restart_with(
        Opts::new()
            .no_worker()
            .args(["--public-url", "https://api.example.com/"]),
    )
    .await;
    let made = w
        .post(&triggers, &json!({"type": "webhook", "name": "out"}))
        .await;
    made.expect(201);
    let url = made.json["webhook_url"].as_str().unwrap();
    assert!(
        url.starts_with("https://api.example.com/hooks/whk_"),
        "{url}"
    );
    w.restarts_and_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_drop_emptied_queues_and_can_require_a_key() {
    const KEY: &str = "metrics-key-0123456789";
    let mut w = Warren::start(Opts::new().no_worker()).await;
    w.enqueue(&json!({"task_name": "echo", "queue_name": "kept"}))
        .await;
    w.enqueue(&json!({"task_name": "echo", "queue_name": "emptied"}))
        .await;
    w.delete("/api/v1/tasks?queue=emptied").await.expect(200);
    let text = w.get("/metrics").await.text;
    assert!(
        text.contains(r#"warren_tasks{queue="kept",status="pending"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"lapinq_tasks{queue="kept",status="pending"} 1"#),
        "{text}"
    );
    // The store's counts of an emptied queue are gone (its enqueue is still
    // counted by this process, until the series idles out).
    assert!(!text.contains(r#"warren_tasks{queue="emptied""#), "{text}");
    assert!(!text.contains(r#"lapinq_tasks{queue="emptied""#), "{text}");

    w.restart_with(Opts::new().no_worker().args(["--metrics-key", KEY]))
        .await;
    w.send_raw("GET", "/metrics", &[], None)
        .await
        .expect_error(401, Some("unauthorized"));
    let bearer = format!("Bearer {KEY}");
    let r = w
        .send_raw("GET", "/metrics", &[("authorization", &bearer)], None)
        .await;
    r.expect(200);
    assert!(r.text.contains("warren_tasks"));
    w.get("/health").await.expect(200);
    w.restarts_and_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_run_and_hook_bodies_answer_413_as_json() {
    let mut w = Warren::start(Opts::new().no_worker()).await;
    let p = w.create_pipeline(&transform("@")).await;
    let made = w
        .post(
            &format!("/api/v1/pipelines/{p}/triggers"),
            &json!({"type": "webhook", "name": "in"}),
        )
        .await;
    let token = made.json["webhook_token"].as_str().unwrap().to_string();
    let huge = format!("\"{}\"", "x".repeat(300 * 1024));
    for path in [
        format!("/api/v1/pipelines/{p}/run"),
        format!("/hooks/{token}"),
    ] {
        w.post_bytes(&path, huge.clone())
            .await
            .expect_error(413, Some("payload_too_large"));
    }
    w.restarts_and_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lapinq_s_configuration_names_are_read() {
    const KEY: &str = "lapinq-style-key-123";
    let mut w = Warren::start(
        Opts::new()
            .no_worker()
            .env("LAPINQ_API_KEY", KEY)
            .env("LAPINQ_RATE_LIMIT", "3")
            .client_key(KEY),
    )
    .await;
    w.send_raw("GET", "/api/v1/queues", &[], None)
        .await
        .expect_error(401, None);
    // The key's requests are counted apart from the address's refused
    // ones: three pass, then 429.
    for _ in 0..3 {
        w.get("/api/v1/queues").await.expect(200);
    }
    let r = w.get("/api/v1/queues").await;
    r.expect_error(429, None);
    assert_eq!(r.json["error"], "rate limit exceeded");
    assert!(r.header("retry-after").is_some(), "{:?}", r.headers);
    w.get("/health").await.expect(200);
    w.restarts_and_serves().await;
}

// ----- found by scripts/fuzz-http -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_parameters_that_are_not_utf8_answer_400_as_json() {
    let mut w = Warren::start(Opts::new().no_worker()).await;
    for (method, path) in [
        ("GET", "/events/%FF"),
        ("POST", "/hooks/%C0%80"),
        ("GET", "/api/v1/tasks/%FF"),
        ("DELETE", "/api/v1/tasks/%FF"),
        ("GET", "/api/v1/pipelines/%FF/executions"),
        ("GET", "/api/v1/topics/%FF"),
    ] {
        w.send(method, path, &[], None)
            .await
            .expect_error(400, Some("invalid_path"));
    }
    w.restarts_and_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_of_empty_list_items_is_refused_at_once() {
    let mut w = Warren::start(Opts::new().no_worker()).await;
    let p = w.create_pipeline(&transform("@")).await;
    for cron in [", * * * * *", ", * * * *", "1,, * * * *"] {
        let started = Instant::now();
        let r = w
            .post(
                &format!("/api/v1/pipelines/{p}/triggers"),
                &json!({"type": "schedule", "name": "x", "config": {"cron": cron}}),
            )
            .await;
        r.expect_error(400, Some("invalid_cron"));
        assert!(
            started.elapsed() < secs(3),
            "{cron}: {:?}",
            started.elapsed()
        );
    }
    w.restarts_and_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_takes_at_most_100_triggers_and_a_deleted_pipeline_leaves_none() {
    let mut w = Warren::start(Opts::new().no_worker()).await;
    let spec = json!({"name": "sub", "options": {"event": "busy"},
        "steps": [{"name": "t", "kind": "transform", "expression": "@"}]});
    let mut pipelines = Vec::new();
    for _ in 0..101 {
        pipelines.push(w.create_pipeline(&spec).await);
    }
    for p in &pipelines[..100] {
        w.post(&format!("/api/v1/events/{p}"), &json!({}))
            .await
            .expect(200);
    }
    w.post(&format!("/api/v1/events/{}", pipelines[100]), &json!({}))
        .await
        .expect_error(409, Some("topic_full"));
    // Deleting a pipeline stops its trigger and makes room.
    w.delete(&format!("/api/v1/pipelines/{}", pipelines[0]))
        .await
        .expect(204);
    let topic = w.get("/api/v1/topics/busy").await;
    topic.expect(200);
    assert!(!topic.text.contains(&pipelines[0]), "{}", topic.text);
    w.post(&format!("/api/v1/events/{}", pipelines[100]), &json!({}))
        .await
        .expect(200);
    w.restarts_and_serves().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enqueue_step_names_a_queue_that_can_exist() {
    let mut w = Warren::start(Opts::new().no_worker()).await;
    let spec = json!({"name": "fan", "steps": [
        {"name": "e", "kind": "enqueue", "task_name": "echo", "queue_name": "a b"}]});
    w.post("/api/v1/pipelines", &spec)
        .await
        .expect_error(400, Some("invalid_pipeline"));
    w.restarts_and_serves().await;
}
