//! Topics and event triggers end to end: over HTTP on the embedded backend,
//! on the AWS wire with messages sent straight to the ingress queue with the
//! AWS SDK (attribute `topic`, or an SNS envelope), and through the
//! dispatcher's Lambda binary.

use aws_sdk_sqs::types::MessageAttributeValue;
use warren_tests::aws::{Provisioned, answer, sha256_hex};
use warren_tests::lambda::{LambdaFunction, http_event, sqs_event_with_attributes};
use warren_tests::*;

/// A one-step pipeline on `topic` that shapes its event.
fn on_topic(topic: &str) -> Value {
    json!({
        "name": format!("on {topic}"),
        "options": {"event": topic},
        "steps": [{"name": "shape", "kind": "transform", "expression": "{got: event}"}]
    })
}

/// Wait for the pipeline's execution of message `message_id` to finish.
async fn finished_run(w: &Warren, pipeline: &str, message_id: &str) -> Value {
    wait_until(
        &format!("the execution of message {message_id}"),
        secs(30),
        async || {
            w.executions(pipeline)
                .await
                .into_iter()
                .find(|e| e["trigger_id"] == message_id && e["status"] != "running")
        },
    )
    .await
}

/// Wait until the dispatcher has dropped `n` messages of `topic` in all.
async fn dropped(w: &Warren, topic: &str, n: u64) {
    wait_until(
        &format!("{n} dropped messages on {topic}"),
        secs(30),
        async || {
            let r = w.get(&format!("/api/v1/topics/{topic}")).await;
            (r.json["dropped"].as_u64() == Some(n)).then_some(())
        },
    )
    .await
}

#[track_caller]
fn assert_ran(e: &Value, input: Value) {
    assert_eq!(
        (&e["status"], &e["trigger_type"], &e["input"]),
        (&json!("success"), &json!("event"), &input),
        "{e}"
    );
    assert_eq!(e["output"], json!({ "got": input }), "{e}");
}

async fn start(w: &Warren, pipeline: &str, topic: &str) {
    let r = w.post_empty(&format!("/api/v1/events/{pipeline}")).await;
    r.expect(200);
    assert_eq!(
        (&r.json["topic"], &r.json["ready"]),
        (&json!(topic), &json!(true))
    );
    let status = w.get(&format!("/api/v1/events/{pipeline}")).await;
    assert_eq!(status.json["ready"], true, "{}", status.text);
}

async fn stop(w: &Warren, pipeline: &str) {
    w.delete(&format!("/api/v1/events/{pipeline}"))
        .await
        .expect(200);
    let status = w.get(&format!("/api/v1/events/{pipeline}")).await;
    assert_eq!(status.json["ready"], false, "{}", status.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_started_trigger_runs_each_published_message_and_a_stopped_one_nothing() {
    let w = Warren::start(Opts::new().api_key("k3y")).await;
    let pipeline = w.create_pipeline(&on_topic("orders")).await;
    start(&w, &pipeline, "orders").await;

    let r = w
        .post("/api/v1/topics/orders/messages", &json!({"order": 1}))
        .await;
    r.expect(202);
    assert_eq!(r.json["topic"], "orders");
    let message_id = r.json["message_id"].as_str().expect("message_id");
    let e = finished_run(&w, &pipeline, message_id).await;
    assert_ran(&e, json!({"order": 1}));

    stop(&w, &pipeline).await;
    w.post("/api/v1/topics/orders/messages", &json!({"order": 2}))
        .await
        .expect(202);
    dropped(&w, "orders", 1).await;
    assert_eq!(
        w.executions(&pipeline).await.len(),
        1,
        "stopped: nothing ran"
    );
    let topic = w.get("/api/v1/topics/orders").await;
    assert_eq!(
        (
            &topic.json["published"],
            &topic.json["dispatched"],
            &topic.json["subscriptions"]
        ),
        (&json!(2), &json!(1), &json!([])),
        "{}",
        topic.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_trigger_and_publish_requests_are_clear_4xx_json() {
    let w = Warren::default().await;
    let plain = w
        .create_pipeline(&json!({"name": "plain", "steps": [
            {"name": "t", "kind": "transform", "expression": "event"}
        ]}))
        .await;
    let r = w.post_empty(&format!("/api/v1/events/{plain}")).await;
    r.expect_error(409, Some("no_topic"));
    assert!(r.message().contains("options.event"), "{}", r.text);
    let status = w.get(&format!("/api/v1/events/{plain}")).await;
    assert_eq!(status.json["ready"], false);

    let unknown = uuid::Uuid::now_v7();
    w.post_empty(&format!("/api/v1/events/{unknown}"))
        .await
        .expect_error(404, Some("not_found"));
    w.get("/api/v1/events/not-an-id")
        .await
        .expect_error(400, Some("invalid_id"));
    w.post("/api/v1/topics/no%20spaces/messages", &json!({}))
        .await
        .expect_error(400, Some("invalid_topic"));
    w.post_bytes("/api/v1/topics/orders/messages", "{oops")
        .await
        .expect_error(400, Some("invalid_json"));
    let huge = json!("x".repeat(256 * 1024));
    w.post("/api/v1/topics/orders/messages", &huge)
        .await
        .expect_error(413, Some("payload_too_large"));
    let topic = w.get("/api/v1/topics/orders").await;
    assert_eq!(topic.json["published"], 0, "refused messages are not sent");
}

/// The ingress queue's URL, for producers that send to it straight.
async fn queue_url(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    sqs.get_queue_url()
        .queue_name(name)
        .send()
        .await
        .expect("GetQueueUrl")
        .queue_url
        .expect("a queue URL")
}

/// Send `body` straight to the queue, with a `topic` attribute when given;
/// the SQS message id.
async fn send(sqs: &aws_sdk_sqs::Client, url: &str, body: &str, topic: Option<&str>) -> String {
    let mut request = sqs.send_message().queue_url(url).message_body(body);
    if let Some(topic) = topic {
        let value = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(topic)
            .build()
            .expect("attribute");
        request = request.message_attributes("topic", value);
    }
    let sent = request.send().await.expect("SendMessage");
    sent.message_id.expect("a message id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_aws_wire_a_message_sent_straight_to_the_ingress_queue_runs_the_pipeline() {
    let aws = Provisioned::new();
    let w = Warren::start(aws.dev()).await;
    let pipeline = w.create_pipeline(&on_topic("orders")).await;
    start(&w, &pipeline, "orders").await;
    let sqs = aws_sdk_sqs::Client::new(&warren::adapters::aws::sdk_config().await);
    let url = queue_url(&sqs, &aws.topic_queue).await;

    // With the attribute: the SQS message id is the trigger id.
    let id = send(&sqs, &url, r#"{"order": 7}"#, Some("orders")).await;
    assert_ran(&finished_run(&w, &pipeline, &id).await, json!({"order": 7}));

    // An SNS notification (no raw delivery): the envelope is unwrapped.
    let envelope = json!({
        "Type": "Notification",
        "MessageId": "5f0e1f9c-sns-e2e",
        "TopicArn": "arn:aws:sns:us-east-1:000000000000:orders",
        "Message": "{\"order\": 8}",
        "Timestamp": "2026-12-02T08:00:00.000Z"
    });
    send(&sqs, &url, &envelope.to_string(), None).await;
    let e = finished_run(&w, &pipeline, "5f0e1f9c-sns-e2e").await;
    assert_ran(&e, json!({"order": 8}));

    // Published over HTTP on the same wire.
    let r = w
        .post("/api/v1/topics/orders/messages", &json!("plain"))
        .await;
    r.expect(202);
    let e = finished_run(&w, &pipeline, r.json["message_id"].as_str().unwrap()).await;
    assert_ran(&e, json!("plain"));

    stop(&w, &pipeline).await;
    send(&sqs, &url, r#"{"order": 9}"#, Some("orders")).await;
    dropped(&w, "orders", 1).await;
    assert_eq!(
        w.executions(&pipeline).await.len(),
        3,
        "stopped: nothing ran"
    );
}

const KEY: &str = "topics-wire-key";
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dispatcher_binary_acknowledges_a_batch_and_runs_only_the_routed_message() {
    let aws = Provisioned::new();
    let hash = sha256_hex(KEY);
    let env = aws.function_env(&hash, SECRET);
    let auth = [("x-api-key", KEY)];

    // A pipeline and its started trigger, through their Lambda binaries.
    let mut pipelines = LambdaFunction::start("pipelines", &env).await;
    let created = pipelines
        .invoke(http_event(
            "POST",
            "/api/v1/pipelines",
            &auth,
            Some(&on_topic("orders")),
        ))
        .await
        .expect("pipelines answers");
    let pipeline = answer(&created, 201)["id"].as_str().unwrap().to_string();
    let mut events = LambdaFunction::start("events", &env).await;
    let started = events
        .invoke(http_event(
            "POST",
            &format!("/api/v1/events/{pipeline}"),
            &auth,
            None,
        ))
        .await
        .expect("events answers");
    assert_eq!(answer(&started, 200)["ready"], true);

    // One record on the started topic, one on a topic nobody listens to.
    let mut dispatcher = LambdaFunction::start("dispatcher", &env).await;
    let batch = sqs_event_with_attributes(&[
        ("m-routed", r#"{"order": 1}"#, &[("topic", "orders")]),
        (
            "m-unknown",
            r#"{"order": 2}"#,
            &[("topic", "nobody-listens")],
        ),
    ]);
    let response = dispatcher.invoke(batch).await.expect("dispatcher answers");
    assert_eq!(response["batchItemFailures"], json!([]), "{response}");
    eprintln!("dispatcher cold start: {:?}", dispatcher.cold_start());

    let listed = pipelines
        .invoke(http_event(
            "GET",
            &format!("/api/v1/pipelines/{pipeline}/executions"),
            &auth,
            None,
        ))
        .await
        .expect("pipelines answers");
    let runs = answer(&listed, 200);
    let runs = runs.as_array().expect("an array");
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(
        (&runs[0]["trigger_id"], &runs[0]["input"]),
        (&json!("m-routed"), &json!({"order": 1}))
    );
    let topic = events
        .invoke(http_event(
            "GET",
            "/api/v1/topics/nobody-listens",
            &auth,
            None,
        ))
        .await
        .expect("events answers");
    assert_eq!(answer(&topic, 200)["dropped"], 1);
}
