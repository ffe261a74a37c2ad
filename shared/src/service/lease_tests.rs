//! A running task's lease held by its own message: where the queue keeps a
//! received message hidden longer than the lease (Lambda's event source
//! mapping, `WARREN_VISIBILITY`), the task is written with no lease timer,
//! and the message coming back is what takes a lost attempt over.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::ServiceError;
use super::tests::{created, new_task, receive_all, reconfigured, setup};
use super::worker::process;
use crate::Deps;
use crate::domain::TaskStatus;
use crate::handlers::Registry;

/// Deps whose task messages stay hidden `visibility` once received, with a
/// `hang` handler that never returns (counting its starts).
fn hidden_for(
    visibility: Duration,
) -> (
    Deps,
    Arc<crate::adapters::clock::ManualClock>,
    Arc<AtomicUsize>,
) {
    let starts = Arc::new(AtomicUsize::new(0));
    let mut registry = Registry::standard();
    let counted = starts.clone();
    registry.register("hang", move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
        std::future::pending()
    });
    let (deps, clock) = setup(registry);
    let deps = reconfigured(deps, |c| {
        c.visibility = visibility;
        c.send_first = true;
    });
    (deps, clock, starts)
}

/// A `hang` task whose worker started it and died: its message, as the
/// queue would hand it back.
async fn started_then_lost(deps: &Deps, starts: &AtomicUsize) -> (uuid::Uuid, String) {
    let id = created(deps, new_task("hang")).await;
    let message = receive_all(deps).await.remove(0);
    let worker = {
        let (deps, body) = (deps.clone(), message.body.clone());
        tokio::spawn(async move { process(&deps, &body).await })
    };
    while starts.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    worker.abort();
    (id, message.body)
}

#[tokio::test]
async fn a_lost_attempt_is_taken_over_when_its_message_comes_back() {
    // GIVEN a task whose worker died mid-attempt, its message hidden 960 s
    let (deps, clock, starts) = hidden_for(Duration::from_secs(960));
    let (id, message) = started_then_lost(&deps, &starts).await;
    // THEN it was written with no lease timer: the scheduler will not act
    let (_, timer) = deps.tasks().get_with_timer(id).await.unwrap().unwrap();
    assert_eq!(timer, None);
    // WHEN its message comes back within the lease (a duplicate, or early)
    let early = process(&deps, &message).await;
    // THEN it must come back again, and nothing else happens
    assert!(
        matches!(
            early,
            Err(ServiceError::Unavailable {
                code: "attempt_running",
                ..
            })
        ),
        "{early:?}"
    );
    let task = deps.tasks().get(id).await.unwrap().unwrap();
    assert_eq!((task.status, task.attempts), (TaskStatus::Running, 1));
    // WHEN it comes back after the lease (timeout 30 s + grace 30 s)
    clock.advance(chrono::Duration::seconds(61));
    process(&deps, &message).await.unwrap();
    // THEN the attempt counts as lost and the task is retried
    let task = deps.tasks().get(id).await.unwrap().unwrap();
    assert_eq!((task.status, task.attempts), (TaskStatus::Pending, 1));
    assert!(
        task.error
            .as_deref()
            .unwrap_or("")
            .contains("message came back")
    );
    assert_eq!(receive_all(&deps).await.len(), 1, "the retry's message");
    assert_eq!(starts.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_lease_longer_than_the_message_stays_hidden_keeps_its_timer() {
    // GIVEN messages hidden 60 s, shorter than the lease (30 s + 30 s grace
    // + the time a message may wait for its start)
    let (deps, clock, starts) = hidden_for(Duration::from_secs(60));
    let (id, message) = started_then_lost(&deps, &starts).await;
    // THEN the running task has its lease timer
    let (task, timer) = deps.tasks().get_with_timer(id).await.unwrap().unwrap();
    assert_eq!(timer, task.lease_until);
    // AND its message, back within the lease, is done with: the timer covers it
    process(&deps, &message).await.unwrap();
    clock.advance(chrono::Duration::seconds(61));
    assert_eq!(super::maintenance::tick(&deps).await.unwrap().rescued, 1);
}

#[tokio::test]
async fn where_the_queue_dies_with_the_process_a_running_task_keeps_its_timer() {
    // GIVEN messages hidden 960 s by a queue that does not outlive the
    // process (the embedded runtime's)
    let (deps, _, starts) = hidden_for(Duration::from_secs(960));
    let deps = reconfigured(deps, |c| c.send_first = false);
    // WHEN a worker starts a task and dies
    let (id, _) = started_then_lost(&deps, &starts).await;
    // THEN the task has its lease timer, by which start-up recovery finds it
    let (task, timer) = deps.tasks().get_with_timer(id).await.unwrap().unwrap();
    assert!(timer.is_some());
    assert_eq!(timer, task.lease_until);
}

#[tokio::test]
async fn a_task_whose_record_may_be_gone_when_its_message_returns_keeps_its_timer() {
    // GIVEN messages hidden 960 s, and a task with a 10 s TTL whose expired
    // record is kept 60 s: gone before its message could come back
    let (deps, _, starts) = hidden_for(Duration::from_secs(960));
    let deps = reconfigured(deps, |c| {
        c.expired_retention = chrono::Duration::seconds(60)
    });
    let mut task = new_task("hang");
    task.ttl_seconds = Some(10.0);
    let id = created(&deps, task).await;
    let message = receive_all(&deps).await.remove(0);
    // WHEN a worker starts it and dies
    let worker = {
        let deps = deps.clone();
        tokio::spawn(async move { process(&deps, &message.body).await })
    };
    while starts.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    worker.abort();
    // THEN its lease has a timer: the scheduler, not the message, takes over
    let (task, timer) = deps.tasks().get_with_timer(id).await.unwrap().unwrap();
    assert!(timer.is_some());
    assert_eq!(timer, task.lease_until);
}
