//! The use cases end to end on the in-memory backend, with an injected clock:
//! what the worker and the scheduler promise, without HTTP.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, json};

use super::enqueue::{Enqueued, NewTask, enqueue};
use super::maintenance::tick;
use super::worker::process;
use crate::Deps;
use crate::adapters::clock::ManualClock;
use crate::domain::TaskStatus;
use crate::handlers::Registry;
use crate::ports::{Clock, Delivery, OutgoingMessage, StoreError, WriteOp};
use crate::testing::intercept::{InterceptQueue, InterceptStore, Intercepted};
use crate::testing::{memory_deps, receive_now};

fn t0() -> DateTime<Utc> {
    "2026-03-01T12:00:00Z".parse().unwrap()
}

pub(super) fn new_task(name: &str) -> NewTask {
    NewTask {
        task_name: name.into(),
        queue_name: "default".into(),
        module_path: None,
        args: vec![json!(1)],
        kwargs: Map::new(),
        scheduled_at: None,
        max_retries: 2,
        priority: 0,
        ttl_seconds: None,
        metadata: Map::new(),
        retry_delay: Some(0.0),
        retry_backoff: false,
        webhook_url: None,
        webhook_headers: Default::default(),
        timeout_seconds: Some(30),
        idempotency_key: None,
        owner: None,
    }
}

/// A registry whose `count` handler counts its runs.
pub(super) fn counting() -> (Registry, Arc<AtomicUsize>) {
    let runs = Arc::new(AtomicUsize::new(0));
    let mut r = Registry::standard();
    let c = runs.clone();
    r.register("count", move |_| {
        let c = c.clone();
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            Ok(json!("counted"))
        }
    });
    (r, runs)
}

pub(super) fn setup(handlers: Registry) -> (Deps, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(t0()));
    (memory_deps(clock.clone(), handlers), clock)
}

/// A hook that meets the `n`-th transaction (from 0) writing a task in
/// `status` with `then()`, and passes on every other.
fn nth_write_of(
    status: &'static str,
    n: usize,
    then: impl Fn() -> Intercepted + Send + Sync + 'static,
) -> impl Fn(&[WriteOp]) -> Intercepted + Send + Sync + 'static {
    let seen = AtomicUsize::new(0);
    move |ops: &[WriteOp]| {
        let writes = ops.iter().any(|op| {
            matches!(op, WriteOp::Put { item, .. } if item.attrs.get("status") == Some(&json!(status)))
        });
        if writes && seen.fetch_add(1, Ordering::SeqCst) == n {
            then()
        } else {
            Intercepted::PassOn
        }
    }
}

/// `deps` with its settings changed by `change`.
pub(super) fn reconfigured(deps: Deps, change: impl FnOnce(&mut crate::Config)) -> Deps {
    let mut config = (*deps.config).clone();
    change(&mut config);
    Deps {
        config: Arc::new(config),
        ..deps
    }
}

pub(super) async fn receive_all(deps: &Deps) -> Vec<Delivery> {
    receive_now(deps, &deps.config.task_queue, Duration::from_secs(30)).await
}

pub(super) async fn created(deps: &Deps, t: NewTask) -> uuid::Uuid {
    match enqueue(deps, t).await.unwrap() {
        Enqueued::Created(id) => id,
        other => panic!("expected a new task, got {other:?}"),
    }
}

#[tokio::test]
async fn duplicate_delivery_runs_the_task_once() {
    // GIVEN an enqueued task and its message
    let (registry, runs) = counting();
    let (deps, _) = setup(registry);
    let id = created(&deps, new_task("count")).await;
    let messages = receive_all(&deps).await;
    assert_eq!(messages.len(), 1);
    // WHEN the same message is processed twice (an at-least-once redelivery)
    process(&deps, &messages[0].body).await.unwrap();
    process(&deps, &messages[0].body).await.unwrap();
    // THEN the handler ran once and the task completed after one attempt
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let task = deps.tasks().get(id).await.unwrap().unwrap();
    assert_eq!((task.status, task.attempts), (TaskStatus::Completed, 1));
    assert_eq!(task.result.as_deref(), Some("\"counted\""));
}

#[tokio::test]
async fn message_of_a_cancelled_task_is_dropped() {
    let (registry, runs) = counting();
    let (deps, _) = setup(registry);
    let id = created(&deps, new_task("count")).await;
    super::control::cancel(&deps, id, &admin()).await.unwrap();
    for m in receive_all(&deps).await {
        process(&deps, &m.body).await.unwrap();
    }
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    assert_eq!(
        deps.tasks().get(id).await.unwrap().unwrap().status,
        TaskStatus::Cancelled
    );
}

#[tokio::test]
async fn failing_task_is_retried_until_its_attempts_are_spent() {
    let (deps, _) = setup(Registry::standard());
    let id = created(&deps, new_task("fail")).await; // max_retries 2, no delay
    for _ in 0..10 {
        let batch = receive_all(&deps).await;
        if batch.is_empty() {
            break;
        }
        for m in batch {
            process(&deps, &m.body).await.unwrap();
        }
    }
    let task = deps.tasks().get(id).await.unwrap().unwrap();
    assert_eq!((task.status, task.attempts), (TaskStatus::Failed, 3));
    assert_eq!(task.error.as_deref(), Some("failed on purpose"));
}

#[tokio::test]
async fn panicking_handler_fails_its_attempt_and_is_retried() {
    // GIVEN a handler that panics on its first attempt only
    let mut registry = Registry::standard();
    registry.register("crash_once", |ctx| async move {
        if ctx.attempt == 1 {
            panic!("handler bug");
        }
        Ok(json!("recovered"))
    });
    let (deps, _) = setup(registry);
    let id = created(&deps, new_task("crash_once")).await;
    // WHEN its messages are processed
    for _ in 0..5 {
        let batch = receive_all(&deps).await;
        if batch.is_empty() {
            break;
        }
        for m in batch {
            // THEN the crash is the attempt's failure, not the worker's
            process(&deps, &m.body).await.unwrap();
        }
    }
    // AND the retry completed it
    let task = deps.tasks().get(id).await.unwrap().unwrap();
    assert_eq!((task.status, task.attempts), (TaskStatus::Completed, 2));
}

#[tokio::test]
async fn unknown_task_fails_at_once_without_retries() {
    let (deps, _) = setup(Registry::standard());
    let id = created(&deps, new_task("no_such_handler")).await;
    for m in receive_all(&deps).await {
        process(&deps, &m.body).await.unwrap();
    }
    let task = deps.tasks().get(id).await.unwrap().unwrap();
    assert_eq!((task.status, task.attempts), (TaskStatus::Failed, 1));
    assert!(task.error.unwrap().contains("unknown task"));
    assert!(receive_all(&deps).await.is_empty());
}

#[tokio::test]
async fn running_task_past_its_lease_is_rescued_and_retried() {
    // GIVEN a task whose worker died mid-attempt (started, never finished)
    let (registry, runs) = counting();
    let (deps, clock) = setup(registry);
    let id = created(&deps, new_task("count")).await;
    let _lost = receive_all(&deps).await;
    let pending = deps.tasks().get(id).await.unwrap().unwrap();
    let running = pending.start(clock.now(), deps.config.lease_grace).unwrap();
    deps.tasks()
        .save(&pending, &running, running.lease_until)
        .await
        .unwrap();
    // WHEN its lease (timeout 30 s + grace 30 s) runs out and the scheduler ticks
    assert_eq!(
        tick(&deps).await.unwrap().rescued,
        0,
        "not before the lease ends"
    );
    clock.advance(chrono::Duration::seconds(61));
    assert_eq!(tick(&deps).await.unwrap().rescued, 1);
    // THEN it is pending again with its message re-sent, and the next attempt completes
    for m in receive_all(&deps).await {
        process(&deps, &m.body).await.unwrap();
    }
    let task = deps.tasks().get(id).await.unwrap().unwrap();
    assert_eq!((task.status, task.attempts), (TaskStatus::Completed, 2));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn task_due_beyond_the_queue_delay_waits_for_the_scheduler() {
    let (registry, runs) = counting();
    let (deps, clock) = setup(registry);
    let mut t = new_task("count");
    t.scheduled_at = Some(t0() + chrono::Duration::hours(2));
    let id = created(&deps, t).await;
    assert!(receive_all(&deps).await.is_empty(), "nothing sent yet");
    clock.advance(chrono::Duration::minutes(30));
    assert_eq!(tick(&deps).await.unwrap().released, 0);
    // 14 minutes before it is due, it is handed to the queue with a delay.
    clock.advance(chrono::Duration::minutes(76));
    assert_eq!(tick(&deps).await.unwrap().released, 1);
    assert_eq!(
        deps.tasks().get(id).await.unwrap().unwrap().status,
        TaskStatus::Pending
    );
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn lost_message_is_re_sent_by_the_outbox_timer() {
    let (registry, runs) = counting();
    let (deps, clock) = setup(registry);
    let id = created(&deps, new_task("count")).await;
    // The message is lost: received and never acknowledged nor processed,
    // and the queue copy is deleted.
    let lost = receive_all(&deps).await;
    let receipts = lost.into_iter().map(|d| d.receipt).collect();
    deps.queue
        .delete_batch(&deps.config.task_queue, receipts)
        .await
        .unwrap();
    clock.advance(
        chrono::Duration::from_std(deps.config.redispatch_after).unwrap()
            + chrono::Duration::seconds(1),
    );
    assert_eq!(tick(&deps).await.unwrap().released, 1);
    for m in receive_all(&deps).await {
        process(&deps, &m.body).await.unwrap();
    }
    assert_eq!(
        deps.tasks().get(id).await.unwrap().unwrap().status,
        TaskStatus::Completed
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn pending_task_past_its_ttl_expires_then_is_deleted() {
    let (deps, clock) = setup(Registry::standard());
    let mut t = new_task("echo");
    t.ttl_seconds = Some(60.0);
    t.scheduled_at = Some(t0() + chrono::Duration::hours(1));
    let id = created(&deps, t).await;
    clock.advance(chrono::Duration::seconds(61));
    assert_eq!(tick(&deps).await.unwrap().expired, 1);
    assert_eq!(
        deps.tasks().get(id).await.unwrap().unwrap().status,
        TaskStatus::Expired
    );
    let stats = deps.tasks().queue_stats().await.unwrap();
    assert_eq!((stats[0].pending, stats[0].expired), (0, 1));
    clock.advance(deps.config.expired_retention + chrono::Duration::seconds(1));
    assert_eq!(tick(&deps).await.unwrap().deleted, 1);
    assert!(deps.tasks().get(id).await.unwrap().is_none());
    assert_eq!(deps.tasks().queue_stats().await.unwrap()[0].expired, 0);
}

/// Found by the simulator: a message handled after the TTL ran out, before
/// the scheduler's sweep expired the task, started it.
#[tokio::test]
async fn a_message_handled_past_the_ttl_expires_its_task_instead_of_running_it() {
    let (registry, runs) = counting();
    let (deps, clock) = setup(registry);
    let mut t = new_task("count");
    t.ttl_seconds = Some(60.0);
    let id = created(&deps, t).await;
    clock.advance(chrono::Duration::seconds(61));
    for m in receive_all(&deps).await {
        process(&deps, &m.body).await.unwrap();
    }
    assert_eq!(runs.load(Ordering::SeqCst), 0, "it ran past its TTL");
    let task = deps.tasks().get(id).await.unwrap().unwrap();
    assert_eq!((task.status, task.attempts), (TaskStatus::Expired, 0));
    let stats = deps.tasks().queue_stats().await.unwrap();
    assert_eq!((stats[0].pending, stats[0].expired), (0, 1));
}

/// Found by the simulator: a finished task was deleted at its TTL while its
/// webhook was still owed, so the delivery was lost with it.
#[tokio::test]
async fn a_task_owing_its_webhook_outlives_its_ttl_until_the_delivery_is_recorded() {
    let (deps, clock) = setup(Registry::standard());
    let mut t = new_task("echo");
    t.ttl_seconds = Some(60.0);
    t.webhook_url = Some("https://hooks.example.com/done".into());
    let id = created(&deps, t).await;
    for m in receive_all(&deps).await {
        process(&deps, &m.body).await.unwrap();
    }
    // The webhook's message waits on the queue, undelivered.
    let owing = deps.tasks().get(id).await.unwrap().unwrap();
    assert!(owing.owes_webhook(), "{owing:?}");
    let item = deps
        .store
        .get(&crate::table::tasks::key(id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(item.ttl, None, "the backend's own TTL would delete it");
    clock.advance(chrono::Duration::seconds(61));
    assert_eq!(tick(&deps).await.unwrap().deleted, 0);
    assert!(deps.tasks().get(id).await.unwrap().is_some());
    // Once the outcome is recorded, it goes at the next sweep.
    let mut delivered = owing.clone();
    if let Some(w) = delivered.webhook.as_mut() {
        w.status = crate::domain::WebhookStatus::Delivered;
    }
    delivered.version += 1;
    deps.tasks().save(&owing, &delivered, None).await.unwrap();
    clock.advance(chrono::Duration::seconds(1));
    assert_eq!(tick(&deps).await.unwrap().deleted, 1);
    assert!(deps.tasks().get(id).await.unwrap().is_none());
}

/// Found by the simulator (seed 1317 of 5,000): a message handed twice in
/// one batch starts its task twice at the same instant; the twin whose
/// write was refused tried again, met the other's write, read it back, took
/// it for its own (the same task at the same instant) and ran the attempt
/// a second time. The start now carries a random claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_handed_twice_at_once_runs_its_attempt_once() {
    let runs = Arc::new(AtomicUsize::new(0));
    let mut registry = Registry::standard();
    let counted = runs.clone();
    registry.register("slow", move |_| {
        let counted = counted.clone();
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            // Still running when the refused twin reads the task back.
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok(json!("done"))
        }
    });
    let (memory, _clock) = setup(registry);
    let deps = Deps {
        // The second write that starts a task is refused before it lands:
        // the backend was unavailable for that one call.
        store: InterceptStore::new(
            memory.store.clone(),
            nth_write_of("running", 1, || {
                Intercepted::Refuse(StoreError::Unavailable("refused".into()))
            }),
        ),
        ..memory
    };
    let id = created(&deps, new_task("slow")).await;
    let message = receive_all(&deps).await.remove(0);
    let (a, b) = tokio::join!(process(&deps, &message.body), process(&deps, &message.body));
    a.unwrap();
    b.unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the attempt ran twice");
    let task = deps.tasks().get(id).await.unwrap().unwrap();
    assert_eq!((task.status, task.attempts), (TaskStatus::Completed, 1));
}

#[tokio::test]
async fn repeated_idempotency_key_returns_the_first_task() {
    let (deps, clock) = setup(Registry::standard());
    let mut t = new_task("echo");
    t.idempotency_key = Some("order-42".into());
    let first = created(&deps, t.clone()).await;
    assert_eq!(
        enqueue(&deps, t.clone()).await.unwrap(),
        Enqueued::Existing(first)
    );
    assert_eq!(
        deps.tasks().queue_stats().await.unwrap()[0].pending,
        1,
        "nothing created twice"
    );
    // After the window the key is free again.
    clock.advance(super::enqueue::IDEMPOTENCY_WINDOW + chrono::Duration::seconds(1));
    tick(&deps).await.unwrap();
    assert!(matches!(enqueue(&deps, t).await.unwrap(), Enqueued::Created(id) if id != first));
}

/// Found by reading, while chasing the full fault run's ten-minute tail: an
/// enqueue whose write landed but whose answer was lost failed without
/// sending, and its retry (a client's, or a pipeline step's) found the
/// key's task and returned it without sending either, so the task waited
/// for its re-dispatch timer. Now the failed try sends (whether its write
/// landed is unknown) and so does the retry.
#[tokio::test]
async fn an_enqueue_whose_answer_was_lost_sends_its_task_and_so_does_its_retry() {
    let (memory, _clock) = setup(Registry::standard());
    let deps = Deps {
        store: InterceptStore::new(
            memory.store.clone(),
            nth_write_of("pending", 0, || {
                Intercepted::LoseAnswer(StoreError::Unavailable("answer lost".into()))
            }),
        ),
        ..memory
    };
    let mut t = new_task("echo");
    t.idempotency_key = Some("step-7".into());
    assert!(
        enqueue(&deps, t.clone()).await.is_err(),
        "the first answer is lost"
    );
    let sent = receive_all(&deps).await;
    assert_eq!(sent.len(), 1, "sent although the write's fate was unknown");
    // That message is lost on its way.
    deps.queue
        .delete_batch(&deps.config.task_queue, vec![sent[0].receipt.clone()])
        .await
        .unwrap();
    let Enqueued::Existing(id) = enqueue(&deps, t).await.unwrap() else {
        panic!("the first try's task was stored")
    };
    let sent = receive_all(&deps).await;
    assert_eq!(sent.len(), 1, "the retry sends the pending task again");
    process(&deps, &sent[0].body).await.unwrap();
    let task = deps.tasks().get(id).await.unwrap().unwrap();
    assert_eq!((task.status, task.attempts), (TaskStatus::Completed, 1));
}

/// Enqueue `t` and run its first attempt while every send fails (the
/// SDK's tries spent): what the attempt meant to send is not on the queue.
async fn first_attempt_with_sends_refused(t: NewTask) -> (Deps, Arc<ManualClock>, uuid::Uuid) {
    let (memory, clock) = setup(Registry::standard());
    let refusing = Arc::new(AtomicBool::new(false));
    let deps = Deps {
        queue: InterceptQueue::new(memory.queue.clone(), {
            let refusing = refusing.clone();
            move |_: &[OutgoingMessage]| refusing.load(Ordering::SeqCst)
        }),
        ..memory
    };
    let id = created(&deps, t).await;
    let first = receive_all(&deps).await;
    refusing.store(true, Ordering::SeqCst);
    process(&deps, &first[0].body).await.unwrap();
    refusing.store(false, Ordering::SeqCst);
    assert!(receive_all(&deps).await.is_empty(), "nothing was sent");
    (deps, clock, id)
}

/// Found by the full fault run (two tasks waited ten minutes): a retry whose
/// message could not be sent, the SDK's tries spent, was left to its
/// re-dispatch timer. Now it is tried again, then its timer is brought
/// forward to seconds, as an enqueue's is.
#[tokio::test]
async fn a_retry_whose_message_could_not_be_sent_goes_again_within_seconds() {
    let (deps, clock, id) = first_attempt_with_sends_refused(new_task("fail")).await;
    let task = deps.tasks().get(id).await.unwrap().unwrap();
    assert_eq!((task.status, task.attempts), (TaskStatus::Pending, 1));
    clock.advance(super::dispatch::LOST_RECHECK + chrono::Duration::seconds(1));
    assert_eq!(tick(&deps).await.unwrap().released, 1);
    let retry = receive_all(&deps).await;
    assert_eq!(retry.len(), 1, "the retry is sent seconds later");
    process(&deps, &retry[0].body).await.unwrap();
    let task = deps.tasks().get(id).await.unwrap().unwrap();
    assert_eq!(task.attempts, 2);
}

/// The same for the webhook of a finished task.
#[tokio::test]
async fn a_webhook_whose_message_could_not_be_sent_goes_again_within_seconds() {
    let mut t = new_task("echo");
    t.webhook_url = Some("https://hooks.example.com/done".into());
    let (deps, clock, id) = first_attempt_with_sends_refused(t).await;
    let task = deps.tasks().get(id).await.unwrap().unwrap();
    assert_eq!(task.status, TaskStatus::Completed);
    assert!(task.owes_webhook(), "{task:?}");
    clock.advance(super::dispatch::LOST_RECHECK + chrono::Duration::seconds(1));
    assert_eq!(tick(&deps).await.unwrap().webhooks, 1);
    assert_eq!(
        receive_all(&deps).await.len(),
        1,
        "the webhook is sent seconds later"
    );
}

#[tokio::test]
async fn counters_follow_every_transition() {
    let (deps, _) = setup(Registry::standard());
    let ok = created(&deps, new_task("echo")).await;
    let mut f = new_task("fail");
    f.max_retries = 0;
    created(&deps, f).await;
    let cancelled = created(&deps, new_task("echo")).await;
    super::control::cancel(&deps, cancelled, &admin())
        .await
        .unwrap();
    for m in receive_all(&deps).await {
        process(&deps, &m.body).await.unwrap();
    }
    let s = &deps.tasks().queue_stats().await.unwrap()[0];
    assert_eq!(
        (s.pending, s.running, s.completed, s.failed, s.cancelled),
        (0, 0, 1, 1, 1)
    );
    deps.tasks()
        .delete(&deps.tasks().get(ok).await.unwrap().unwrap())
        .await
        .unwrap();
    assert_eq!(deps.tasks().queue_stats().await.unwrap()[0].completed, 0);
}

#[tokio::test]
async fn stored_task_leaves_out_its_nulls_and_reads_back_whole() {
    // GIVEN a task with its optional fields unset
    let (deps, _) = setup(Registry::standard());
    let id = created(&deps, new_task("echo")).await;
    let key = crate::table::tasks::key(id);
    // WHEN its item is read from the store
    let mut item = deps.store.get(&key).await.unwrap().expect("stored");
    // THEN the item holds no nulls, and still reads as the whole task
    assert!(
        item.attrs.values().all(|v| !v.is_null()),
        "{:?}",
        item.attrs
    );
    let task = deps.tasks().get(id).await.unwrap().expect("a task");
    assert_eq!((task.module_path, task.started_at), (None, None));
    // AND a record stored with explicit nulls reads the same
    item.attrs
        .insert("module_path".into(), serde_json::Value::Null);
    item.attrs
        .insert("started_at".into(), serde_json::Value::Null);
    let old = crate::table::tasks::from_item(&item).expect("a task");
    assert_eq!(old, deps.tasks().get(id).await.unwrap().unwrap());
}

/// The deployment itself, as an open API or the bootstrap key acts.
pub(super) fn admin() -> crate::domain::identity::Principal {
    crate::domain::identity::Principal::deployment(crate::domain::identity::Credential::Open)
}

/// Found by the simulator (seed 336, with the AWS data path): a webhook of
/// a task's first final state (failed), delivered while the task was
/// requeued and completed, was recorded as delivered on the completion,
/// whose own webhook was then never sent.
#[tokio::test]
async fn a_webhook_outcome_is_recorded_on_the_state_it_announced_only() {
    use crate::ports::{HttpClient, HttpError, HttpRequest, HttpResponse};

    /// An endpoint that, on its first delivery, has the task requeued and
    /// run to completion before it answers 200; it keeps every body.
    struct Racing {
        deps: std::sync::OnceLock<Deps>,
        task: std::sync::OnceLock<uuid::Uuid>,
        bodies: std::sync::Mutex<Vec<serde_json::Value>>,
    }

    #[async_trait::async_trait]
    impl HttpClient for Racing {
        async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
            let first = {
                let mut bodies = self.bodies.lock().unwrap();
                bodies.push(serde_json::from_slice(&request.body).unwrap());
                bodies.len() == 1
            };
            if first {
                let deps = self.deps.get().unwrap();
                let id = *self.task.get().unwrap();
                super::control::requeue(deps, id, &admin()).await.unwrap();
                for m in receive_all(deps).await {
                    let message = crate::messages::TaskMessage::decode(&m.body).unwrap();
                    if !matches!(message, crate::messages::TaskMessage::Webhook { .. }) {
                        process(deps, &m.body).await.unwrap();
                    }
                }
            }
            Ok(HttpResponse {
                status: 200,
                headers: Vec::new(),
                body: Vec::new(),
            })
        }
    }

    // GIVEN a task that fails on its first run and succeeds on its second,
    // with a webhook
    let runs = Arc::new(AtomicUsize::new(0));
    let mut registry = Registry::standard();
    let counted = runs.clone();
    registry.register("second_time", move |_| {
        let first = counted.fetch_add(1, Ordering::SeqCst) == 0;
        async move {
            match first {
                true => Err(crate::handlers::TaskFailure::retry("first run")),
                false => Ok(json!("fine")),
            }
        }
    });
    let (deps, _) = setup(registry);
    let racing = Arc::new(Racing {
        deps: Default::default(),
        task: Default::default(),
        bodies: Default::default(),
    });
    let deps = Deps {
        http: racing.clone(),
        ..deps
    };
    racing.deps.set(deps.clone()).ok();
    let mut t = new_task("second_time");
    t.max_retries = 0;
    t.webhook_url = Some("https://hooks.example.com/done".into());
    let id = created(&deps, t).await;
    racing.task.set(id).ok();
    for m in receive_all(&deps).await {
        process(&deps, &m.body).await.unwrap();
    }
    assert_eq!(
        deps.tasks().get(id).await.unwrap().unwrap().status,
        TaskStatus::Failed
    );
    // WHEN its failure's webhook is delivered while it is requeued and
    // completes
    let failure_hook = receive_all(&deps).await.remove(0);
    process(&deps, &failure_hook.body).await.unwrap();
    // THEN the completion still owes its webhook, and gets it
    let task = deps.tasks().get(id).await.unwrap().unwrap();
    assert_eq!(task.status, TaskStatus::Completed);
    assert!(task.owes_webhook(), "{:?}", task.webhook);
    for m in receive_all(&deps).await {
        process(&deps, &m.body).await.unwrap();
    }
    let statuses: Vec<serde_json::Value> = racing
        .bodies
        .lock()
        .unwrap()
        .iter()
        .map(|b| b["status"].clone())
        .collect();
    assert_eq!(statuses, vec![json!("failed"), json!("completed")]);
    assert!(!deps.tasks().get(id).await.unwrap().unwrap().owes_webhook());
}
