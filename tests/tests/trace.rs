//! W3C Trace Context: a caller's `traceparent` goes on to every call warren
//! makes for what the request created (a task's `http` call and webhook, a
//! pipeline's `http` step), as a span of warren's in the same trace. (Queue
//! message attributes and tasks enqueued by steps: `service::tests`.)

use warren_tests::*;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// POST `body` as JSON with `traceparent` set to `trace`.
async fn post_traced(w: &Warren, path: &str, trace: &str, body: &Value) -> Resp {
    w.send_raw(
        "POST",
        path,
        &[("content-type", "application/json"), ("traceparent", trace)],
        Some(body.to_string().into_bytes()),
    )
    .await
}

/// The `traceparent` the receiver got on `path`, once.
async fn traceparent_at(rx: &Receiver, path: &str) -> Option<String> {
    let got = wait_until(&format!("a call to {path}"), secs(20), async || {
        rx.requests().into_iter().find(|r| r.uri == path)
    })
    .await;
    got.header("traceparent").map(str::to_string)
}

/// A span of warren's in the caller's trace: same trace id and flags, its
/// own span id.
#[track_caller]
fn continues_the_caller_s_trace(header: Option<String>) -> String {
    let h = header.expect("a traceparent on the call");
    let parts: Vec<&str> = h.split('-').collect();
    assert_eq!(parts.len(), 4, "{h}");
    assert_eq!(
        (parts[0], parts[1], parts[3]),
        ("00", TRACE_ID, "01"),
        "{h}"
    );
    assert_eq!(parts[2].len(), 16, "{h}");
    assert_ne!(
        parts[2], "00f067aa0ba902b7",
        "warren's span, not the caller's: {h}"
    );
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_s_call_and_webhook_continue_the_enqueuer_s_trace() {
    let rx = Receiver::ok().await;
    let w = Warren::start(Opts::new().allow_loopback()).await;
    let task = |call: &str, done: &str| json!({"task_name": "http", "kwargs": {"url": rx.url(call)}, "webhook_url": rx.url(done)});

    let r = post_traced(&w, "/api/v1/enqueue", CALLER, &task("/call", "/done")).await;
    r.expect(201);
    let call = continues_the_caller_s_trace(traceparent_at(&rx, "/call").await);
    let hook = continues_the_caller_s_trace(traceparent_at(&rx, "/done").await);
    assert_ne!(call, hook, "each call is a span of its own");

    // Batches too; an ill-formed header (upper case) is ignored, not refused.
    let r = post_traced(
        &w,
        "/api/v1/enqueue/batch",
        CALLER,
        &json!([task("/batch-call", "/batch-done")]),
    )
    .await;
    r.expect(201);
    continues_the_caller_s_trace(traceparent_at(&rx, "/batch-call").await);
    let shouting = CALLER.to_uppercase();
    post_traced(
        &w,
        "/api/v1/enqueue",
        &shouting,
        &task("/bad-call", "/bad-done"),
    )
    .await
    .expect(201);
    assert_eq!(traceparent_at(&rx, "/bad-call").await, None);
    assert_eq!(traceparent_at(&rx, "/bad-done").await, None);
    // Without one, warren starts no trace of its own.
    w.enqueue(&task("/plain-call", "/plain-done")).await;
    assert_eq!(traceparent_at(&rx, "/plain-call").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_s_http_step_continues_the_runner_s_trace() {
    let rx = Receiver::ok().await;
    let w = Warren::start(Opts::new().allow_loopback()).await;
    let pipeline = w
        .create_pipeline(&json!({"name": "traced", "steps": [
            {"name": "tell", "kind": "http", "url": rx.url("/step")}
        ]}))
        .await;
    let r = post_traced(
        &w,
        &format!("/api/v1/pipelines/{pipeline}/run"),
        CALLER,
        &json!({"n": 1}),
    )
    .await;
    r.expect(202);
    continues_the_caller_s_trace(traceparent_at(&rx, "/step").await);
}

/// Every span of every OTLP/JSON export the receiver got.
fn exported_spans(rx: &Receiver) -> Vec<Value> {
    let mut spans = Vec::new();
    for r in rx.requests().into_iter().filter(|r| r.uri == "/v1/traces") {
        let body: Value = serde_json::from_slice(&r.body).expect("OTLP JSON");
        for resource in body["resourceSpans"].as_array().unwrap() {
            let service = resource["resource"]["attributes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["key"] == "service.name")
                .map(|a| a["value"]["stringValue"].clone());
            assert_eq!(service, Some(json!("warren")), "{resource}");
            for scope in resource["scopeSpans"].as_array().unwrap() {
                spans.extend(scope["spans"].as_array().unwrap().iter().cloned());
            }
        }
    }
    spans
}

fn attribute(span: &Value, key: &str) -> Option<Value> {
    let a = span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)?;
    Some(a["value"].clone())
}

/// OTLP span kinds, as the protocol numbers them.
const SERVER: u64 = 2;
const CLIENT: u64 = 3;
const CONSUMER: u64 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_go_to_an_otlp_collector_as_one_tree_per_trace() {
    let rx = Receiver::ok().await;
    let w = Warren::start(
        Opts::new()
            .allow_loopback()
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &rx.base)
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
            .env("OTEL_BSP_SCHEDULE_DELAY", "100"),
    )
    .await;
    let task = json!({"task_name": "http", "kwargs": {"url": rx.url("/call")}});
    post_traced(&w, "/api/v1/enqueue", CALLER, &task)
        .await
        .expect(201);
    let sent = traceparent_at(&rx, "/call").await.expect("a traceparent");
    let in_trace = wait_until("the call's span exported", secs(20), async || {
        let spans: Vec<Value> = exported_spans(&rx)
            .into_iter()
            .filter(|s| s["traceId"] == TRACE_ID)
            .collect();
        spans.iter().any(|s| s["kind"] == CLIENT).then_some(spans)
    })
    .await;
    let of_kind = |kind: u64| {
        let found: Vec<&Value> = in_trace.iter().filter(|s| s["kind"] == kind).collect();
        assert_eq!(found.len(), 1, "one span of kind {kind}: {in_trace:#?}");
        found[0].clone()
    };
    let (request, attempt, call) = (of_kind(SERVER), of_kind(CONSUMER), of_kind(CLIENT));
    // The request is the caller's child; the attempt the request's; the call the attempt's.
    assert_eq!(request["parentSpanId"], "00f067aa0ba902b7", "{request:#}");
    assert_eq!(
        attribute(&request, "http.response.status_code"),
        Some(json!({"intValue": "201"}))
    );
    assert_eq!(
        attribute(&request, "url.path"),
        Some(json!({"stringValue": "/api/v1/enqueue"}))
    );
    assert_eq!(attempt["parentSpanId"], request["spanId"], "{attempt:#}");
    assert_eq!(attempt["name"], "http");
    assert_eq!(call["parentSpanId"], attempt["spanId"], "{call:#}");
    assert_eq!(
        attribute(&call, "http.response.status_code"),
        Some(json!({"intValue": "200"}))
    );
    // What the called service saw names warren's call span as its parent.
    let span_id = call["spanId"].as_str().unwrap();
    assert_eq!(sent, format!("00-{TRACE_ID}-{span_id}-01"));

    // Without a caller's trace, warren starts one.
    w.get("/api/v1/queues").await.expect(200);
    let fresh = wait_until("a span of a new trace", secs(20), async || {
        exported_spans(&rx).into_iter().find(|s| {
            s["traceId"] != TRACE_ID
                && attribute(s, "url.path") == Some(json!({"stringValue": "/api/v1/queues"}))
        })
    })
    .await;
    assert_eq!(fresh["kind"], SERVER);
    assert_eq!(fresh["parentSpanId"], "", "{fresh:#}");
}
