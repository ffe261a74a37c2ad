//! A batch's tasks in chunks ([`crate::table::tasks::chunks`]): where enqueues
//! send first, up to ten tasks share an item and a message, are started
//! with one write and completed with one, and each reads, lists, counts
//! and changes as a task of its own.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use super::control;
use super::enqueue::{NewTask, enqueue_batch};
use super::tests::{admin, new_task, receive_all, reconfigured, setup};
use super::worker::process;
use crate::Deps;
use crate::adapters::clock::ManualClock;
use crate::domain::TaskStatus;
use crate::handlers::{Registry, TaskFailure};
use crate::messages::TaskMessage;
use crate::ports::{Clock, WriteOp};
use crate::table::tasks::chunks::{self, Chunk};
use crate::table::tasks::{self, TaskFilter};
use crate::testing::intercept::{InterceptStore, Intercepted};

/// Deps that send first, with a queue that hides a received message for
/// 960 s (so it holds the lease of a 30 s task), as the AWS runtimes do;
/// and a handler `n` that fails its attempt when its argument is negative.
fn chunking() -> (Deps, Arc<ManualClock>, Arc<AtomicUsize>) {
    let runs = Arc::new(AtomicUsize::new(0));
    let mut registry = Registry::standard();
    let counted = runs.clone();
    registry.register("n", move |ctx| {
        let counted = counted.clone();
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            match ctx.args[0].as_i64() {
                Some(n) if n < 0 => Err(TaskFailure::retry(format!("{n} is negative"))),
                _ => Ok(json!("ok")),
            }
        }
    });
    let (deps, clock) = setup(registry);
    let deps = reconfigured(deps, |c| {
        c.send_first = true;
        c.visibility = Duration::from_secs(960);
    });
    (deps, clock, runs)
}

fn numbered(n: i64) -> NewTask {
    NewTask {
        args: vec![json!(n)],
        ..new_task("n")
    }
}

async fn batch(deps: &Deps, tasks: impl IntoIterator<Item = NewTask>) -> Vec<Uuid> {
    let ids = enqueue_batch(deps, tasks.into_iter().collect())
        .await
        .unwrap();
    ids.into_iter().map(|id| id.expect("kept")).collect()
}

async fn status(deps: &Deps, id: Uuid) -> (TaskStatus, u32) {
    let t = deps.tasks().get(id).await.unwrap().expect("stored");
    (t.status, t.attempts)
}

async fn run_all(deps: &Deps) {
    for m in receive_all(deps).await {
        process(deps, &m.body).await.unwrap();
    }
}

/// The writes that land, each as the keys it writes.
type Writes = Arc<Mutex<Vec<Vec<String>>>>;

fn counting_writes(deps: Deps) -> (Deps, Writes) {
    let writes: Writes = Default::default();
    let seen = writes.clone();
    let store = InterceptStore::new(deps.store.clone(), move |ops: &[WriteOp]| {
        let keys = ops
            .iter()
            .map(|op| op.key().pk.clone() + "/" + &op.key().sk);
        seen.lock().unwrap().push(keys.collect());
        Intercepted::PassOn
    });
    (Deps { store, ..deps }, writes)
}

#[tokio::test]
async fn a_batch_is_stored_ten_tasks_to_an_item_and_a_message() {
    let (deps, _, _) = chunking();
    let ids = batch(&deps, (0..25).map(numbered)).await;
    // Three chunks (10, 10, 5), one message each.
    let messages = receive_all(&deps).await;
    assert_eq!(messages.len(), 3);
    let mut bases: Vec<Uuid> = ids
        .iter()
        .map(|id| chunks::member_of(*id).expect("in a chunk").0)
        .collect();
    bases.dedup();
    assert_eq!(bases.len(), 3);
    for (i, id) in ids.iter().enumerate() {
        let task = deps
            .tasks()
            .get(*id)
            .await
            .unwrap()
            .expect("readable by id");
        assert_eq!((task.id, task.status), (*id, TaskStatus::Pending));
        assert_eq!(task.args, vec![json!(i)], "in the order of the request");
    }
    let chunk = deps.tasks().chunk(bases[2]).await.unwrap().unwrap();
    assert_eq!(chunk.members.len(), 5);
}

#[tokio::test]
async fn a_chunk_is_started_with_one_write_and_completed_with_one() {
    let (deps, _, runs) = chunking();
    let ids = batch(&deps, (0..10).map(numbered)).await;
    let (deps, writes) = counting_writes(deps);
    run_all(&deps).await;
    assert_eq!(runs.load(Ordering::SeqCst), 10);
    for id in &ids {
        assert_eq!(status(&deps, *id).await, (TaskStatus::Completed, 1));
    }
    let base = chunks::member_of(ids[0]).unwrap().0;
    let chunk_key = tasks::key(base);
    let writes = writes.lock().unwrap();
    assert_eq!(writes.len(), 2, "start and finish: {writes:?}");
    for w in writes.iter() {
        assert!(w.contains(&format!("{}/{}", chunk_key.pk, chunk_key.sk)));
    }
}

#[tokio::test]
async fn a_failed_attempt_leaves_its_chunk_and_is_retried_on_its_own() {
    let (deps, _, runs) = chunking();
    let ids = batch(&deps, [numbered(1), numbered(-1), numbered(2)]).await;
    run_all(&deps).await;
    assert_eq!(status(&deps, ids[0]).await, (TaskStatus::Completed, 1));
    assert_eq!(status(&deps, ids[2]).await, (TaskStatus::Completed, 1));
    // Pending again in an item of its own, with the timer a retry needs.
    let (task, timer) = deps.tasks().get_with_timer(ids[1]).await.unwrap().unwrap();
    assert_eq!((task.status, task.attempts), (TaskStatus::Pending, 1));
    assert!(timer.is_some(), "a retry keeps a timer");
    let chunk = deps
        .tasks()
        .chunk(chunks::member_of(ids[1]).unwrap().0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(chunk.members.len(), 2, "it left the chunk");
    assert!(deps.store.get(&tasks::key(ids[1])).await.unwrap().is_some());
    // Its retry message runs it again (and it fails its attempts out).
    run_all(&deps).await;
    run_all(&deps).await;
    assert_eq!(status(&deps, ids[1]).await, (TaskStatus::Failed, 3));
    assert_eq!(runs.load(Ordering::SeqCst), 5);
    let failed = TaskFilter {
        status: Some(TaskStatus::Failed),
        ..Default::default()
    };
    let page = deps.tasks().list(&failed, 10).await.unwrap();
    assert_eq!(
        page.tasks.iter().map(|t| t.id).collect::<Vec<_>>(),
        [ids[1]]
    );
}

#[tokio::test]
async fn a_cancelled_task_leaves_its_chunk_and_the_others_run() {
    let (deps, _, runs) = chunking();
    let ids = batch(&deps, (0..4).map(numbered)).await;
    control::cancel(&deps, ids[1], &admin()).await.unwrap();
    assert_eq!(status(&deps, ids[1]).await, (TaskStatus::Cancelled, 0));
    run_all(&deps).await;
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    for i in [0, 2, 3] {
        assert_eq!(status(&deps, ids[i]).await, (TaskStatus::Completed, 1));
    }
    assert_eq!(status(&deps, ids[1]).await, (TaskStatus::Cancelled, 0));
    let stats = deps.tasks().queue_stats().await.unwrap();
    assert_eq!((stats[0].completed, stats[0].cancelled), (3, 1));
    assert_eq!((stats[0].pending, stats[0].running), (0, 0));
}

#[tokio::test]
async fn a_deleted_task_is_gone_from_its_chunk() {
    let (deps, _, runs) = chunking();
    let ids = batch(&deps, (0..3).map(numbered)).await;
    let one = TaskFilter {
        id: Some(ids[0].to_string()),
        ..Default::default()
    };
    assert_eq!(
        control::delete_matching(&deps, &one).await.unwrap().deleted,
        1
    );
    assert!(deps.tasks().get(ids[0]).await.unwrap().is_none());
    run_all(&deps).await;
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    let all = deps.tasks().list(&TaskFilter::default(), 10).await.unwrap();
    assert_eq!(all.tasks.len(), 2);
}

#[tokio::test]
async fn a_list_that_ends_within_a_chunk_goes_on_from_there() {
    // GIVEN two chunks of a queue, one task of each out of its chunk
    let (deps, _, _) = chunking();
    let mut ids = batch(&deps, (0..20).map(numbered)).await;
    for i in [4, 15] {
        control::cancel(&deps, ids[i], &admin()).await.unwrap();
    }
    ids.extend(batch(&deps, (20..23).map(numbered)).await);
    // WHEN it is listed three at a time
    for limit in [1, 3, 7, 100] {
        let mut filter = TaskFilter::default();
        let mut listed = Vec::new();
        loop {
            let page = deps.tasks().list(&filter, limit).await.unwrap();
            assert!(page.tasks.len() <= limit);
            listed.extend(page.tasks.iter().map(|t| t.id));
            match page.next {
                Some(cursor) => filter.before = Some(cursor),
                None => break,
            }
        }
        // THEN every task is listed once, newest chunk first
        let mut sorted = listed.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 23, "limit {limit}: {listed:?}");
        assert_eq!(&listed[..3], &[ids[22], ids[21], ids[20]]);
    }
    // AND a status list filters the chunks' tasks as any others
    let pending = TaskFilter {
        status: Some(TaskStatus::Pending),
        ..Default::default()
    };
    assert_eq!(
        deps.tasks().list(&pending, 100).await.unwrap().tasks.len(),
        21
    );
}

#[tokio::test]
async fn a_chunk_whose_worker_died_is_taken_over_when_its_message_returns() {
    // GIVEN a chunk started by a worker that then died
    let (deps, clock, runs) = chunking();
    let ids = batch(&deps, (0..3).map(numbered)).await;
    let message = receive_all(&deps).await.remove(0);
    let base = chunks::member_of(ids[0]).unwrap().0;
    let chunk = deps.tasks().chunk(base).await.unwrap().unwrap();
    let started = chunk.changed(|members| {
        for t in members.values_mut() {
            *t = t.start(clock.now(), deps.config.lease_grace).unwrap();
        }
    });
    deps.tasks().save_chunk(&chunk, &started).await.unwrap();
    // WHEN its message comes back within the lease, it must come back later
    assert!(process(&deps, &message.body).await.is_err());
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    // AND past the lease (timeout 30 s, grace 30 s), the attempts are taken over
    clock.advance(chrono::Duration::seconds(61));
    process(&deps, &message.body).await.unwrap();
    run_all(&deps).await;
    for id in &ids {
        assert_eq!(status(&deps, *id).await, (TaskStatus::Completed, 2));
    }
    assert_eq!(runs.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_message_delivered_twice_runs_each_attempt_once() {
    let (deps, _, runs) = chunking();
    let ids = batch(&deps, (0..5).map(numbered)).await;
    let message = receive_all(&deps).await.remove(0);
    let (a, b) = tokio::join!(process(&deps, &message.body), process(&deps, &message.body));
    a.unwrap();
    // The twin meets running tasks whose lease its message may hold.
    let _ = b;
    assert_eq!(runs.load(Ordering::SeqCst), 5);
    for id in &ids {
        assert_eq!(status(&deps, *id).await, (TaskStatus::Completed, 1));
    }
}

#[tokio::test]
async fn a_task_a_chunk_cannot_hold_is_stored_alone() {
    let (deps, _, _) = chunking();
    let long = NewTask {
        // Its lease would outlast its message's 960 s.
        timeout_seconds: Some(3600),
        ..numbered(1)
    };
    let hooked = NewTask {
        webhook_url: Some("https://example.com/hook".into()),
        ..numbered(2)
    };
    let kept = NewTask {
        ttl_seconds: Some(60.0),
        ..numbered(3)
    };
    let ids = batch(&deps, [long, hooked, kept, numbered(4)]).await;
    for id in &ids[..3] {
        assert_eq!(chunks::member_of(*id), None);
    }
    assert!(chunks::member_of(ids[3]).is_some());
    assert_eq!(receive_all(&deps).await.len(), 4);
    // Where the message is not the outbox, no chunks.
    let (plain, _) = setup(Registry::standard());
    let ids = batch(&plain, (0..3).map(numbered)).await;
    assert!(ids.iter().all(|id| chunks::member_of(*id).is_none()));
}

#[tokio::test]
async fn a_chunks_message_names_it_and_when_it_was_made() {
    let (deps, clock, _) = chunking();
    let ids = batch(&deps, (0..2).map(numbered)).await;
    let body = receive_all(&deps).await.remove(0).body;
    let base = chunks::member_of(ids[0]).unwrap().0;
    assert_eq!(
        TaskMessage::decode(&body).unwrap(),
        TaskMessage::Chunk {
            chunk: base,
            created_at: clock.now()
        }
    );
    let chunk: Chunk = deps.tasks().chunk(base).await.unwrap().unwrap();
    let item = chunk.item();
    assert!(item.indexes.is_empty() && item.ttl.is_none());
    assert_eq!(Chunk::from_item(&item), Some(chunk));
}
