//! Enqueues that send first and store after (`Config::send_first`, the AWS
//! runtimes): the message is the task's outbox, so no timer is written,
//! and a worker that meets a message before its record waits for it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::ServiceError;
use super::dispatch;
use super::tests::{counting, created, new_task, receive_all, reconfigured, setup};
use super::worker::process;
use crate::Deps;
use crate::adapters::clock::ManualClock;
use crate::domain::{Task, TaskStatus};
use crate::handlers::Registry;

fn sending_first(registry: Registry) -> (Deps, Arc<ManualClock>) {
    let (deps, clock) = setup(registry);
    (reconfigured(deps, |c| c.send_first = true), clock)
}

/// A `count` task's message on the queue, its record not written.
async fn sent_not_stored(deps: &Deps, clock: &ManualClock) -> (Task, String) {
    let now = crate::ports::Clock::now(clock);
    sent_not_stored_due(deps, new_task("count").into_task(deps, now)).await
}

/// `task`'s message on the queue, sent at once, its record not written.
async fn sent_not_stored_due(deps: &Deps, task: Task) -> (Task, String) {
    let message = dispatch::message(deps, &task, Duration::ZERO);
    deps.queue
        .send_batch(&deps.config.task_queue, vec![message])
        .await
        .unwrap();
    (task, receive_all(deps).await.remove(0).body)
}

/// `task` stored 300 ms from now, as a slow enqueue write lands.
fn stored_later(deps: &Deps, task: &Task) -> tokio::task::JoinHandle<()> {
    let (deps, task) = (deps.clone(), task.clone());
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let write = deps.tasks().write(None, &task, None);
        deps.store.transact(write).await.unwrap();
    })
}

#[tokio::test]
async fn a_task_sent_before_it_is_stored_has_no_timer_and_runs() {
    let (registry, runs) = counting();
    let (deps, _) = sending_first(registry);
    let id = created(&deps, new_task("count")).await;
    let (task, timer) = deps.tasks().get_with_timer(id).await.unwrap().unwrap();
    assert_eq!((task.status, timer), (TaskStatus::Pending, None));
    for m in receive_all(&deps).await {
        process(&deps, &m.body).await.unwrap();
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let task = deps.tasks().get(id).await.unwrap().unwrap();
    assert_eq!((task.status, task.attempts), (TaskStatus::Completed, 1));
}

#[tokio::test]
async fn a_message_that_comes_before_its_record_waits_for_it() {
    // GIVEN a message whose record is written 300 ms after it is handled
    let (registry, runs) = counting();
    let (deps, clock) = sending_first(registry);
    let (task, message) = sent_not_stored(&deps, &clock).await;
    let writer = stored_later(&deps, &task);
    // WHEN the worker handles it
    process(&deps, &message).await.unwrap();
    writer.await.unwrap();
    // THEN it waited for the record and ran the task once
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let stored = deps.tasks().get(task.id).await.unwrap().unwrap();
    assert_eq!(stored.status, TaskStatus::Completed);
}

#[tokio::test]
async fn a_message_whose_record_never_comes_is_dropped_once_its_write_cannot_land() {
    // GIVEN a message whose enqueue failed to store its task
    let (registry, runs) = counting();
    let (deps, clock) = sending_first(registry);
    let (_, message) = sent_not_stored(&deps, &clock).await;
    // WHEN it is handled while the write may still land
    let early = process(&deps, &message).await;
    // THEN it must come back later
    assert!(
        matches!(
            early,
            Err(ServiceError::Unavailable {
                code: "not_stored_yet",
                ..
            })
        ),
        "{early:?}"
    );
    // AND once the write can no longer land, it is done with, unrun
    clock.advance(super::enqueue::RECORD_MAY_LAND_FOR);
    process(&deps, &message).await.unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_batch_is_sent_before_it_is_stored_and_runs_without_timers() {
    let (registry, runs) = counting();
    let (deps, _) = sending_first(registry);
    let batch = (0..25).map(|_| new_task("count")).collect();
    let ids = super::enqueue::enqueue_batch(&deps, batch).await.unwrap();
    for id in ids.iter().flatten() {
        let (_, timer) = deps.tasks().get_with_timer(*id).await.unwrap().unwrap();
        assert_eq!(timer, None);
    }
    loop {
        let messages = receive_all(&deps).await;
        if messages.is_empty() {
            break;
        }
        for m in messages {
            process(&deps, &m.body).await.unwrap();
        }
    }
    assert_eq!(runs.load(Ordering::SeqCst), 25);
}

#[tokio::test]
async fn a_message_early_for_its_due_time_and_its_record_is_sent_again_once_stored() {
    // GIVEN a task due in half a second (its message's delay rounds down
    // to none), its record written 300 ms after the message is handled
    let (registry, runs) = counting();
    let (deps, clock) = sending_first(registry);
    let now = crate::ports::Clock::now(&*clock);
    let mut soon = new_task("count");
    soon.scheduled_at = Some(now + chrono::Duration::milliseconds(500));
    let (task, message) = sent_not_stored_due(&deps, soon.into_task(&deps, now)).await;
    let writer = stored_later(&deps, &task);
    // WHEN the worker handles the early message
    process(&deps, &message).await.unwrap();
    writer.await.unwrap();
    // THEN it is held back, not dropped: sent again for its due time
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    let (stored, timer) = deps.tasks().get_with_timer(task.id).await.unwrap().unwrap();
    assert_eq!(stored.status, TaskStatus::Pending);
    assert!(timer.is_some(), "refiled with a timer");
    // (sent with what is left of its half second)
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(receive_all(&deps).await.len(), 1, "its message, sent again");
}

#[tokio::test(start_paused = true)]
async fn a_write_that_cannot_land_before_its_message_is_given_up_is_abandoned() {
    // GIVEN a store whose writes never answer (a process stalled between
    // the send and the write, or a call retried for minutes)
    use crate::testing::intercept::{InterceptStore, Intercepted};
    let (deps, _) = sending_first(Registry::standard());
    let deps = Deps {
        store: InterceptStore::new(deps.store.clone(), |_| Intercepted::Hang),
        ..deps
    };
    // WHEN a task and a batch are enqueued
    // THEN each fails, and gives its write up before a worker that met the
    // message first can drop it: the write never lands after that
    let began = tokio::time::Instant::now();
    let single = super::enqueue::enqueue(&deps, new_task("echo")).await;
    let single_waited = began.elapsed();
    let began = tokio::time::Instant::now();
    let batch = super::enqueue::enqueue_batch(&deps, vec![new_task("echo")]).await;
    let batch_waited = began.elapsed();
    for outcome in [single.map(|_| ()), batch.map(|_| ())] {
        assert!(
            matches!(outcome, Err(ServiceError::Unavailable { .. })),
            "{outcome:?}"
        );
    }
    let deadline = super::enqueue::RECORD_MAY_LAND_FOR.to_std().unwrap();
    assert!(single_waited < deadline, "{single_waited:?}");
    assert!(batch_waited < deadline, "{batch_waited:?}");
    assert_eq!(receive_all(&deps).await.len(), 2, "both messages were sent");
}
