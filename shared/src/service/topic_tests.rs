//! Event triggers and topics on the in-memory backend: start, report and
//! stop a trigger; the dispatcher starts one execution per started trigger
//! per message, never twice for a redelivered one, and counts and drops
//! what nobody listens to.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use super::pipeline_tests::drain;
use super::topics::{self, Dispatched, MESSAGE_ID_ATTRIBUTE, TOPIC_ATTRIBUTE};
use super::{Deps, ServiceError, executions, pipelines};
use crate::adapters::clock::SystemClock;
use crate::domain::execution::{ExecutionStatus, TriggerType};
use crate::domain::pipeline::Pipeline;
use crate::handlers::Registry;
use crate::ports::{Delivery, MAX_MESSAGE_BYTES, StoreError, WriteOp};
use crate::testing::intercept::{InterceptStore, Intercepted};
use crate::testing::{memory_deps, pipeline_on_topic as pipeline, receive_now};

fn deps() -> Deps {
    memory_deps(Arc::new(SystemClock), Registry::standard())
}

/// Fresh deps with a pipeline whose trigger is started on `orders`.
async fn started_on_orders() -> (Deps, Pipeline) {
    let deps = deps();
    let p = pipeline(&deps, Some("orders")).await;
    topics::start(&deps, p.id, None).await.unwrap();
    (deps, p)
}

fn delivery(id: &str, body: &str, attributes: &[(&str, &str)]) -> Delivery {
    Delivery {
        message_id: id.into(),
        receipt: format!("receipt-{id}"),
        body: body.into(),
        receive_count: 1,
        attributes: attributes
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn on_topic(id: &str, topic: &str, body: &str) -> Delivery {
    delivery(id, body, &[(TOPIC_ATTRIBUTE, topic)])
}

async fn executions_of(deps: &Deps, p: &Pipeline) -> Vec<crate::domain::execution::Execution> {
    executions::list(deps, p.id, 100, None).await.unwrap().0
}

async fn counters(deps: &Deps, topic: &str) -> (i64, i64, i64) {
    let info = topics::info(deps, topic).await.unwrap();
    (info.published, info.dispatched, info.dropped)
}

/// What waits on the topic queue (received, so hidden for a while).
async fn on_topic_queue(deps: &Deps) -> Vec<Delivery> {
    receive_now(deps, &deps.config.topic_queue, Duration::from_secs(30)).await
}

/// Whether the pipeline's event trigger is started (and would run).
async fn ready(deps: &Deps, pipeline_id: Uuid) -> Result<bool, ServiceError> {
    Ok(topics::status(deps, pipeline_id).await?.is_some())
}

/// The pipelines whose trigger is started on `topic`.
async fn subscribed(deps: &Deps, topic: &str) -> Vec<Uuid> {
    let info = topics::info(deps, topic).await.unwrap();
    info.subscriptions.iter().map(|s| s.pipeline_id).collect()
}

/// The process metrics show `line` (a counter and its value).
#[track_caller]
fn assert_metric(deps: &Deps, line: &str) {
    let metrics = deps.metrics.render(&[]);
    assert!(
        metrics.lines().any(|l| l == line),
        "no `{line}` in {metrics}"
    );
}

#[tokio::test]
async fn a_trigger_starts_reports_and_stops_and_starting_twice_is_harmless() {
    let deps = deps();
    let p = pipeline(&deps, Some("orders")).await;
    assert!(!ready(&deps, p.id).await.unwrap());

    let first = topics::start(&deps, p.id, None).await.unwrap();
    assert_eq!(
        (first.topic.as_str(), first.pipeline_version),
        ("orders", 1)
    );
    let again = topics::start(&deps, p.id, None).await.unwrap();
    assert_eq!(again, first, "starting twice changes nothing");
    assert!(ready(&deps, p.id).await.unwrap());
    assert_eq!(subscribed(&deps, "orders").await, vec![p.id]);

    topics::stop(&deps, p.id).await.unwrap();
    assert!(!ready(&deps, p.id).await.unwrap());
    topics::stop(&deps, p.id).await.unwrap();
    assert_eq!(subscribed(&deps, "orders").await, Vec::<Uuid>::new());

    let unknown = Uuid::now_v7();
    for r in [
        topics::start(&deps, unknown, None).await.map(|_| ()),
        ready(&deps, unknown).await.map(|_| ()),
        topics::stop(&deps, unknown).await,
    ] {
        assert!(matches!(r, Err(ServiceError::NotFound(_))), "{r:?}");
    }
}

#[tokio::test]
async fn starting_with_another_version_moves_the_trigger_to_its_topic() {
    let deps = deps();
    let p = pipeline(&deps, Some("orders")).await;
    let mut v2 = p.spec.clone();
    v2.options.event = Some("billing".into());
    pipelines::update(&deps, p.id, v2).await.unwrap();

    let s = topics::start(&deps, p.id, Some(1)).await.unwrap();
    assert_eq!((s.topic.as_str(), s.pipeline_version), ("orders", 1));
    let s = topics::start(&deps, p.id, None).await.unwrap();
    assert_eq!((s.topic.as_str(), s.pipeline_version), ("billing", 2));
    assert_eq!(subscribed(&deps, "orders").await, Vec::<Uuid>::new());
    assert_eq!(subscribed(&deps, "billing").await, vec![p.id]);
    let missing = topics::start(&deps, p.id, Some(9)).await;
    assert!(
        matches!(missing, Err(ServiceError::NotFound(_))),
        "{missing:?}"
    );
}

#[tokio::test]
async fn a_pipeline_without_a_topic_cannot_start_and_nothing_is_stored() {
    let deps = deps();
    let p = pipeline(&deps, None).await;
    match topics::start(&deps, p.id, None).await {
        Err(ServiceError::Conflict { code, message }) => {
            assert_eq!(code, "no_topic");
            assert!(message.contains("options.event"), "{message}");
        }
        other => panic!("expected a no_topic conflict, got {other:?}"),
    }
    assert!(!ready(&deps, p.id).await.unwrap());
}

#[tokio::test]
async fn a_message_starts_one_execution_per_started_trigger_with_its_payload() {
    let deps = deps();
    let (a, b, other) = (
        pipeline(&deps, Some("orders")).await,
        pipeline(&deps, Some("orders")).await,
        pipeline(&deps, Some("other")).await,
    );
    for p in [&a, &b, &other] {
        topics::start(&deps, p.id, None).await.unwrap();
    }

    let done = topics::dispatch(&deps, &on_topic("m1", "orders", r#"{"n": 1}"#))
        .await
        .unwrap();
    assert_eq!(
        done,
        Dispatched {
            topic: Some("orders".into()),
            started: 2,
            duplicates: 0,
            refused: 0,
        }
    );
    drain(&deps).await;
    for p in [&a, &b] {
        let runs = executions_of(&deps, p).await;
        assert_eq!(runs.len(), 1, "one execution per trigger");
        let e = &runs[0];
        assert_eq!(
            (e.trigger_type, e.trigger_id.as_deref(), &e.input),
            (TriggerType::Event, Some("m1"), &json!({"n": 1}))
        );
        assert_eq!(e.status, ExecutionStatus::Success, "{e:?}");
        assert_eq!(e.output, Some(json!({"got": {"n": 1}})));
    }
    assert!(executions_of(&deps, &other).await.is_empty());
    assert_eq!(counters(&deps, "orders").await, (0, 2, 0));
    assert_metric(&deps, "warren_topic_executions_started_total 2");
}

#[tokio::test]
async fn a_redelivered_message_starts_nothing_new() {
    let (deps, p) = started_on_orders().await;
    let message = on_topic("m1", "orders", "[1]");
    topics::dispatch(&deps, &message).await.unwrap();

    let again = topics::dispatch(&deps, &message).await.unwrap();
    assert_eq!((again.started, again.duplicates), (0, 1));
    // The same message id in its attribute is the same message, whatever
    // the queue's id: a producer's retried send runs once.
    let resent = delivery(
        "m2",
        "[1]",
        &[(TOPIC_ATTRIBUTE, "orders"), (MESSAGE_ID_ATTRIBUTE, "m1")],
    );
    assert_eq!(topics::dispatch(&deps, &resent).await.unwrap().started, 0);
    assert_eq!(executions_of(&deps, &p).await.len(), 1);
    assert_eq!(counters(&deps, "orders").await, (0, 1, 0));
}

/// The first dispatch stored its run and lost the answer, so it failed and
/// its message came back; the redelivery met the mark and, before this was
/// fixed, sent nothing: the run waited for its timer. Now the failed
/// dispatch sends the run (whether it was written is unknown) and so does
/// the redelivery, should that message be lost.
#[tokio::test]
async fn a_dispatch_whose_answer_was_lost_sends_its_run_and_so_does_the_redelivery() {
    let (mut deps, p) = started_on_orders().await;
    deps.store = InterceptStore::new(deps.store.clone(), {
        let starts = std::sync::atomic::AtomicUsize::new(0);
        move |ops: &[WriteOp]| {
            let start = ops.iter().any(|op| {
                matches!(op, WriteOp::Put { item, .. } if item.key.pk.starts_with("DISPATCH#"))
            });
            if start && starts.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                Intercepted::LoseAnswer(StoreError::Unavailable("answer lost".into()))
            } else {
                Intercepted::PassOn
            }
        }
    });
    let message = on_topic("m1", "orders", "[1]");
    assert!(topics::dispatch(&deps, &message).await.is_err());
    let sent = super::tests::receive_all(&deps).await;
    assert_eq!(sent.len(), 1, "sent although the write's fate was unknown");
    // That message is lost on its way.
    deps.queue
        .delete_batch(&deps.config.task_queue, vec![sent[0].receipt.clone()])
        .await
        .unwrap();
    let again = topics::dispatch(&deps, &message).await.unwrap();
    assert_eq!((again.started, again.duplicates), (0, 1));
    drain(&deps).await;
    let runs = executions_of(&deps, &p).await;
    assert_eq!(runs.len(), 1, "one run for the message");
    assert_eq!(runs[0].status, ExecutionStatus::Success, "{:?}", runs[0]);
}

#[tokio::test]
async fn a_stopped_trigger_runs_nothing_and_the_message_is_counted_and_dropped() {
    let (deps, p) = started_on_orders().await;
    topics::stop(&deps, p.id).await.unwrap();

    let done = topics::dispatch(&deps, &on_topic("m1", "orders", "{}"))
        .await
        .unwrap();
    assert_eq!((done.started, done.duplicates), (0, 0));
    assert!(executions_of(&deps, &p).await.is_empty());
    assert_eq!(counters(&deps, "orders").await, (0, 0, 1));

    // Unknown topics and messages naming no (usable) topic are dropped too.
    topics::dispatch(&deps, &on_topic("m2", "nobody-listens", "1"))
        .await
        .unwrap();
    assert_eq!(counters(&deps, "nobody-listens").await, (0, 0, 1));
    for d in [
        delivery("m3", "just text", &[]),
        on_topic("m4", "not a topic!", "{}"),
    ] {
        let done = topics::dispatch(&deps, &d).await.unwrap();
        assert_eq!(done, Dispatched::default());
    }
    let unrouted = crate::table::topics::unrouted(&*deps.store).await;
    assert_eq!(unrouted.unwrap()["dropped"], json!(2));
    assert_metric(&deps, "warren_topic_messages_dropped_total 4");
}

#[tokio::test]
async fn an_sns_envelope_is_unwrapped_json_or_plain_text() {
    let (deps, p) = started_on_orders().await;
    let envelope = |message_id: &str, message: &str| {
        json!({
            "Type": "Notification",
            "MessageId": message_id,
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:orders",
            "Message": message,
            "Timestamp": "2026-12-02T08:00:00.000Z"
        })
        .to_string()
    };
    for (sqs_id, body) in [
        ("q1", envelope("sns-1", r#"{"order": 7}"#)),
        ("q2", envelope("sns-2", "plain words")),
        // SNS delivered the first notification twice: it runs once.
        ("q3", envelope("sns-1", r#"{"order": 7}"#)),
    ] {
        topics::dispatch(&deps, &delivery(sqs_id, &body, &[]))
            .await
            .unwrap();
    }
    let mut got: Vec<(Option<String>, Value)> = executions_of(&deps, &p)
        .await
        .into_iter()
        .map(|e| (e.trigger_id, e.input))
        .collect();
    got.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        got,
        vec![
            (Some("sns-1".into()), json!({"order": 7})),
            (Some("sns-2".into()), json!("plain words")),
        ]
    );
}

#[tokio::test]
async fn publishing_queues_the_message_with_its_topic_for_the_dispatcher() {
    let (deps, p) = started_on_orders().await;
    let id = topics::publish(&deps, "orders", &json!({"n": 2}))
        .await
        .unwrap();
    let got = on_topic_queue(&deps).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].attributes[TOPIC_ATTRIBUTE], "orders");
    topics::dispatch(&deps, &got[0]).await.unwrap();
    let runs = executions_of(&deps, &p).await;
    assert_eq!(
        (runs[0].trigger_id.as_deref(), &runs[0].input),
        (Some(id.as_str()), &json!({"n": 2}))
    );
    assert_eq!(counters(&deps, "orders").await, (1, 1, 0));

    for (topic, payload, code) in [
        ("bad topic", json!(1), "invalid_topic"),
        ("dots.are.not.sns", json!(1), "invalid_topic"),
        (
            "orders",
            json!("x".repeat(MAX_MESSAGE_BYTES)),
            "payload_too_large",
        ),
    ] {
        match topics::publish(&deps, topic, &payload).await {
            Err(ServiceError::Invalid { code: c, .. }) => assert_eq!(c, code),
            other => panic!("{topic}: expected {code}, got {other:?}"),
        }
    }
    assert!(
        topics::publish(&deps, "orders.fifo", &json!(1))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_store_failure_is_an_error_so_the_message_comes_back() {
    let (mut deps, _) = started_on_orders().await;
    // Every write fails, as on an unreachable table.
    deps.store = InterceptStore::new(deps.store.clone(), |_: &[WriteOp]| {
        Intercepted::Refuse(StoreError::Unavailable("table unreachable".into()))
    });
    for d in [
        on_topic("m1", "orders", "{}"),
        on_topic("m2", "nobody-listens", "{}"),
    ] {
        let r = topics::dispatch(&deps, &d).await;
        assert!(matches!(r, Err(ServiceError::Store(_))), "{r:?}");
    }
}

#[tokio::test]
async fn where_the_queue_dies_with_the_process_publishing_dispatches_at_once() {
    let (mut deps, p) = started_on_orders().await;
    let mut config = (*deps.config).clone();
    config.dispatch_inline = true;
    deps.config = Arc::new(config);
    let id = topics::publish(&deps, "orders", &json!({"n": 3}))
        .await
        .unwrap();
    // The execution is stored before the 202: nothing waits in memory.
    let runs = executions_of(&deps, &p).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].trigger_id.as_deref(), Some(id.as_str()));
    let queued = on_topic_queue(&deps).await;
    assert!(queued.is_empty(), "nothing went through the topic queue");
    assert_eq!(counters(&deps, "orders").await, (1, 1, 0));
    drain(&deps).await;
    let done = executions::get(&deps, runs[0].id).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Success);
}

#[tokio::test]
async fn a_user_s_trigger_past_its_monthly_runs_is_refused_and_counted_not_retried() {
    let deps = deps();
    let ann = super::identity::users::create(
        &deps,
        serde_json::from_value(json!({"username": "ann", "password": "ann-password-1",
            "role": "user", "runs_limit": 1}))
        .unwrap(),
    )
    .await
    .unwrap();
    let spec = json!({"name": "mine", "options": {"event": "orders"},
        "steps": [{"name": "t", "kind": "transform", "expression": "event"}]});
    let p = pipelines::create_for(&deps, Some(ann.id), serde_json::from_value(spec).unwrap())
        .await
        .unwrap();
    topics::start(&deps, p.id, None).await.unwrap();

    let first = topics::dispatch(&deps, &on_topic("m1", "orders", "{}"))
        .await
        .unwrap();
    assert_eq!((first.started, first.refused), (1, 0));
    // The second message is over the limit: nothing starts, and it is not
    // an error (the queue would redeliver it for nothing).
    let second = topics::dispatch(&deps, &on_topic("m2", "orders", "{}"))
        .await
        .unwrap();
    assert_eq!((second.started, second.refused), (0, 1));
    assert_eq!(executions_of(&deps, &p).await.len(), 1);
    let info = topics::info(&deps, "orders").await.unwrap();
    assert_eq!((info.dispatched, info.refused, info.dropped), (1, 1, 0));
}

#[tokio::test]
async fn a_publisher_s_trace_travels_with_the_message_into_the_executions() {
    const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (deps, p) = started_on_orders().await;
    let trace = crate::trace::TraceContext::parse(CALLER);
    crate::trace::scope(trace, topics::publish(&deps, "orders", &json!({"n": 1})))
        .await
        .unwrap();
    let got = on_topic_queue(&deps).await;
    assert_eq!(
        got[0].attributes.get("traceparent").map(String::as_str),
        Some(CALLER)
    );
    // The dispatcher runs outside the publisher's request: the attribute
    // carries the trace.
    topics::dispatch(&deps, &got[0]).await.unwrap();
    let runs = executions_of(&deps, &p).await;
    assert_eq!(runs[0].traceparent.as_deref(), Some(CALLER));
}
