//! The dispatcher's Lambda entry on one SQS batch: records carry their
//! message attributes, every record that was dealt with (dispatched or
//! dropped) is acknowledged, and only a failed one is reported.

use std::sync::Arc;

use aws_lambda_events::sqs::SqsEvent;
use serde_json::{Value, json};
use warren::adapters::clock::SystemClock;
use warren::domain::pipeline::PipelineSpec;
use warren::handlers::Registry;
use warren::service::{executions, pipelines, topics};
use warren::testing::memory_deps;

fn record(id: &str, body: &str, topic: Option<&str>) -> Value {
    let attributes = match topic {
        Some(t) => {
            json!({"topic": {"stringValue": t, "stringListValues": [], "binaryListValues": [], "dataType": "String"}})
        }
        None => json!({}),
    };
    json!({
        "messageId": id,
        "receiptHandle": format!("receipt-{id}"),
        "body": body,
        "attributes": {"ApproximateReceiveCount": "1"},
        "messageAttributes": attributes,
        "eventSource": "aws:sqs"
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_dispatched_and_acknowledged_whole() {
    // GIVEN a pipeline whose trigger is started on `orders`
    let deps = memory_deps(Arc::new(SystemClock), Registry::standard());
    let spec: PipelineSpec = serde_json::from_value(json!({
        "name": "orders",
        "options": {"event": "orders"},
        "steps": [{"name": "t", "kind": "transform", "expression": "event"}]
    }))
    .unwrap();
    let p = pipelines::create(&deps, spec).await.unwrap();
    topics::start(&deps, p.id, None).await.unwrap();
    let sns = json!({
        "Type": "Notification",
        "MessageId": "sns-1",
        "TopicArn": "arn:aws:sns:us-east-1:000000000000:orders",
        "Message": "from sns"
    })
    .to_string();
    let event: SqsEvent = serde_json::from_value(json!({"Records": [
        record("m1", r#"{"n": 1}"#, Some("orders")),
        record("m2", r#"{"n": 2}"#, Some("nobody-listens")),
        record("m3", &sns, None),
        record("m4", "no topic at all", None),
    ]}))
    .unwrap();

    // WHEN the batch is handled, twice (SQS redelivered all of it)
    for _ in 0..2 {
        let response = dispatcher::handle_batch(&deps, event.clone()).await;
        // THEN nothing is reported for redelivery
        assert!(
            response.batch_item_failures.is_empty(),
            "{:?}",
            response.batch_item_failures
        );
    }

    // AND the pipeline ran once per message on its topic, with its payload
    let (runs, _) = executions::list(&deps, p.id, 10, None).await.unwrap();
    let mut got: Vec<(Option<String>, Value)> =
        runs.into_iter().map(|e| (e.trigger_id, e.input)).collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        vec![
            (Some("m1".into()), json!({"n": 1})),
            (Some("sns-1".into()), json!("from sns")),
        ]
    );
    let dropped = topics::info(&deps, "nobody-listens").await.unwrap().dropped;
    assert_eq!(dropped, 2, "counted at each delivery");
}
