//! The worker's Lambda entry on one SQS batch: a message whose backend
//! write fails is reported (and only it), a panicking handler fails its own
//! attempt, duplicates and garbage are done with.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::sqs::SqsEvent;
use serde_json::{Map, Value, json};
use uuid::Uuid;
use warren::adapters::clock::SystemClock;
use warren::domain::TaskStatus;
use warren::handlers::Registry;
use warren::ports::{Key, StoreError, WriteOp};
use warren::service::enqueue::{Enqueued, NewTask, enqueue};
use warren::table::tasks::key as task_key;
use warren::testing::intercept::{InterceptStore, Intercepted};
use warren::testing::{memory_deps, receive_now};

fn task(name: &str) -> NewTask {
    NewTask {
        task_name: name.into(),
        queue_name: "default".into(),
        module_path: None,
        args: vec![],
        kwargs: Map::new(),
        scheduled_at: None,
        max_retries: 1,
        priority: 0,
        ttl_seconds: None,
        metadata: Map::new(),
        retry_delay: Some(60.0),
        retry_backoff: false,
        webhook_url: None,
        webhook_headers: Default::default(),
        timeout_seconds: Some(30),
        idempotency_key: None,
        owner: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failing_message_fails_alone_and_a_crash_fails_only_its_attempt() {
    // GIVEN tasks on a store where one task's writes fail, and a handler that panics
    let mut registry = Registry::standard();
    registry.register("crash", |_| async move {
        if true {
            panic!("handler bug");
        }
        Ok(Value::Null)
    });
    let mut deps = memory_deps(Arc::new(SystemClock), registry);
    // Writes to one key fail, as a throttled or unreachable partition would.
    let broken: Arc<Mutex<Option<Key>>> = Default::default();
    let hook = broken.clone();
    deps.store = InterceptStore::new(deps.store.clone(), move |ops: &[WriteOp]| {
        let broken = hook.lock().unwrap();
        if ops.iter().any(|op| Some(op.key()) == broken.as_ref()) {
            Intercepted::Refuse(StoreError::Unavailable("partition unavailable".into()))
        } else {
            Intercepted::PassOn
        }
    });
    let mut ids: Vec<Uuid> = Vec::new();
    for name in ["echo", "echo", "crash"] {
        match enqueue(&deps, task(name)).await.unwrap() {
            Enqueued::Created(id) => ids.push(id),
            other => panic!("{other:?}"),
        }
    }
    *broken.lock().unwrap() = Some(task_key(ids[1]));
    let messages = receive_now(&deps, &deps.config.task_queue, Duration::from_secs(60)).await;
    assert_eq!(messages.len(), 3);
    let mut records: Vec<Value> = messages
        .iter()
        .map(|m| json!({"messageId": m.message_id, "body": m.body}))
        .collect();
    records.push(json!({"messageId": "garbage", "body": "{not json"}));
    records.push(json!({"messageId": "duplicate", "body": messages[0].body}));
    let event: SqsEvent = serde_json::from_value(json!({ "Records": records })).unwrap();

    // WHEN the batch is handled
    let response = worker::handle_batch(&deps, event).await;

    // THEN only the message whose write failed is reported for redelivery
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    let broken_message = messages
        .iter()
        .find(|m| m.body.contains(&ids[1].to_string()))
        .unwrap();
    assert_eq!(failed, vec![broken_message.message_id.as_str()]);
    // AND the others ran once; the crash is its task's failed attempt, to be retried
    let get = |id| {
        let deps = deps.clone();
        async move { deps.tasks().get(id).await.unwrap().unwrap() }
    };
    let echo = get(ids[0]).await;
    assert_eq!((echo.status, echo.attempts), (TaskStatus::Completed, 1));
    let untouched = get(ids[1]).await;
    assert_eq!(
        (untouched.status, untouched.attempts),
        (TaskStatus::Pending, 0)
    );
    let crashed = get(ids[2]).await;
    assert_eq!((crashed.status, crashed.attempts), (TaskStatus::Pending, 1));
    assert!(
        crashed
            .error
            .as_deref()
            .unwrap_or("")
            .contains("handler crashed"),
        "{:?}",
        crashed.error
    );
}
