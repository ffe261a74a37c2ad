//! The counter's Lambda entry on DynamoDB Streams events: task changes are
//! counted once however often a batch comes, other items and damaged images
//! count nothing and stop nothing.

use std::sync::Arc;

use aws_lambda_events::dynamodb::Event;
use serde_json::{Value, json};
use warren::adapters::clock::SystemClock;
use warren::handlers::Registry;
use warren::testing::memory_deps;

/// A task item's image, as the stream carries it (DynamoDB JSON).
fn task(id: &str, queue: &str, status: &str) -> Value {
    let key = warren::table::tasks::key(id.parse().expect("a task id"));
    json!({
        "pk": {"S": key.pk},
        "sk": {"S": key.sk},
        "queue_name": {"S": queue},
        "status": {"S": status},
        "task_name": {"S": "echo"}
    })
}

fn record(event_id: &str, old: Option<Value>, new: Option<Value>) -> Value {
    let mut change = json!({
        "Keys": {"pk": {"S": "any"}, "sk": {"S": "any"}},
        "SequenceNumber": event_id,
        "SizeBytes": 100,
        "StreamViewType": "NEW_AND_OLD_IMAGES"
    });
    if let Some(old) = old {
        change["OldImage"] = old;
    }
    if let Some(new) = new {
        change["NewImage"] = new;
    }
    let name = match (change.get("OldImage"), change.get("NewImage")) {
        (None, Some(_)) => "INSERT",
        (Some(_), Some(_)) => "MODIFY",
        _ => "REMOVE",
    };
    json!({
        "eventID": event_id,
        "eventName": name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:000000000000:table/warren/stream/2026-12-06T00:00:00.000",
        "dynamodb": change
    })
}

fn event(records: Vec<Value>) -> Event {
    serde_json::from_value(json!({ "Records": records })).expect("a DynamoDB Streams event")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_counted_once_however_often_it_comes() {
    // GIVEN a batch: two tasks enqueued, one of them run to completion, one
    // deleted, beside an item that is no task and one whose image is damaged
    let deps = memory_deps(Arc::new(SystemClock), Registry::standard());
    let (a, b) = (
        "0190b5a0-0000-7000-8000-000000000001",
        "0190b5a0-0000-7000-8000-000000000002",
    );
    let batch = vec![
        record("e1", None, Some(task(a, "mail", "pending"))),
        record("e2", None, Some(task(b, "mail", "pending"))),
        record(
            "e3",
            Some(task(a, "mail", "pending")),
            Some(task(a, "mail", "running")),
        ),
        record(
            "e4",
            Some(task(a, "mail", "running")),
            Some(task(a, "mail", "completed")),
        ),
        record("e5", Some(task(b, "mail", "pending")), None),
        record(
            "e6",
            None,
            Some(json!({"pk": {"S": "PIPELINE#p"}, "sk": {"S": "PIPELINE"}})),
        ),
        record("e7", None, Some(json!({"pk": {"N": "1"}}))),
    ];

    // WHEN it is handled twice (the mapping delivered it again)
    for _ in 0..2 {
        let counted = counts::handle_batch(&deps, event(batch.clone()))
            .await
            .expect("the batch is counted");
        // THEN the damaged change is left out, the rest handed to the count
        assert_eq!(counted, 6);
    }

    // THEN the queue counts hold each change once
    let stats = deps.tasks().queue_stats().await.unwrap();
    assert_eq!(stats.len(), 1, "{stats:?}");
    let mail = &stats[0];
    assert_eq!(
        (
            mail.queue_name.as_str(),
            mail.pending,
            mail.running,
            mail.completed
        ),
        ("mail", 0, 0, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_longer_batch_from_the_same_change_counts_only_what_follows() {
    // GIVEN a batch counted once
    let deps = memory_deps(Arc::new(SystemClock), Registry::standard());
    let id = "0190b5a0-0000-7000-8000-000000000003";
    let first = vec![record("f1", None, Some(task(id, "q", "pending")))];
    counts::handle_batch(&deps, event(first.clone()))
        .await
        .unwrap();

    // WHEN it comes again with the change after it (a wider batching window)
    let mut longer = first;
    longer.push(record(
        "f2",
        Some(task(id, "q", "pending")),
        Some(task(id, "q", "running")),
    ));
    counts::handle_batch(&deps, event(longer)).await.unwrap();

    // THEN only the new change is added
    let stats = deps.tasks().queue_stats().await.unwrap();
    assert_eq!((stats[0].pending, stats[0].running), (0, 1), "{stats:?}");
}
