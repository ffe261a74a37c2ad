//! Queue and pipeline counts kept from the table's change stream
//! (`WARREN_COUNTS=stream`).
//!
//! Each status change of a task, and an execution's last checkpoint, is
//! then one single-item write, with no counter in it; the stream's consumer
//! (the `counts` Lambda function, or the poller of `warren dev --backend
//! aws`) adds a batch of changes up into the queue counters and the
//! pipelines' run counters: one transaction per batch, holding a mark that
//! names the batch's first change and how many it counted. A batch delivered
//! again (a retried invocation) finds the mark and counts nothing twice; a
//! longer batch starting at the same change counts only what follows.
//! Stream consumers deliver a shard's changes in order and retry a failed
//! batch from its first change, which is what the mark relies on.

use std::collections::BTreeMap;

use super::{Deps, ServiceError};
use crate::domain::execution::{Execution, ExecutionStatus};
use crate::domain::{Task, TaskStatus};
use crate::ports::{Item, ItemChange, Key, MAX_TRANSACT_OPS, StoreError, WriteOp};
use crate::table::tasks::chunks::Chunk;
use crate::table::{executions, pipelines, tasks};

/// How long a batch's mark is kept: beyond the stream's 24 hours, after
/// which no batch can be delivered again.
const MARK_RETENTION_HOURS: i64 = 48;

/// A task, as its queue's counters see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counted {
    pub queue: String,
    pub status: TaskStatus,
}

impl Counted {
    /// The task an item holds; `None` for any other item.
    pub fn of(item: &Item) -> Option<Counted> {
        let (queue, status) = tasks::queue_and_status(item)?;
        Some(Counted { queue, status })
    }

    fn task(task: &Task) -> Counted {
        Counted {
            queue: task.queue_name.clone(),
            status: task.status,
        }
    }
}

/// One change of the table, in stream order: its id, the task before and
/// after it (`None`: no task there), and the run it finished, if it is an
/// execution's last checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub id: String,
    pub before: Option<Counted>,
    pub after: Option<Counted>,
    pub finished: Option<Box<Execution>>,
}

/// The execution a change finished: running (or absent) before, and not
/// after.
fn finished(change: &ItemChange) -> Option<Box<Execution>> {
    let after = executions::from_item(change.after.as_ref()?)?;
    let was_running = match change.before.as_ref() {
        Some(item) => executions::from_item(item)?.status == ExecutionStatus::Running,
        None => true,
    };
    (was_running && after.status != ExecutionStatus::Running).then(|| Box::new(after))
}

/// What one change of the table changed: one [`Change`], or one per task
/// of a chunk, each named by the change and the task's number in it (in
/// the same order each time the change is delivered).
fn changes_of(change: &ItemChange) -> Vec<Change> {
    let chunk = |item: &Option<Item>| item.as_ref().and_then(Chunk::from_item);
    let (before, after) = (chunk(&change.before), chunk(&change.after));
    if before.is_none() && after.is_none() {
        return vec![Change {
            id: change.id.clone(),
            before: change.before.as_ref().and_then(Counted::of),
            after: change.after.as_ref().and_then(Counted::of),
            finished: finished(change),
        }];
    }
    let member = |chunk: &Option<Chunk>, n: &u8| {
        chunk
            .as_ref()
            .and_then(|c| c.members.get(n))
            .map(Counted::task)
    };
    let numbers: std::collections::BTreeSet<u8> = [&before, &after]
        .into_iter()
        .flatten()
        .flat_map(|c| c.members.keys().copied())
        .collect();
    numbers
        .iter()
        .map(|n| Change {
            id: format!("{}/{n}", change.id),
            before: member(&before, n),
            after: member(&after, n),
            finished: None,
        })
        .collect()
}

/// Count a batch of the table's changes (one stream shard's, in order) into
/// the queue counters, exactly once.
pub async fn count_changes(deps: &Deps, changes: &[ItemChange]) -> Result<(), ServiceError> {
    // Changes of other items (the marks and counters this writes among
    // them) are not counted, and mark nothing: a batch of them writes nothing.
    let changes: Vec<Change> = changes
        .iter()
        .flat_map(changes_of)
        .filter(|c| c.before.is_some() || c.after.is_some() || c.finished.is_some())
        .collect();
    count(deps, &changes).await
}

/// Count a batch of task changes into the queue counters, exactly once (a
/// batch delivered again starts with the same task change).
pub async fn count(deps: &Deps, changes: &[Change]) -> Result<(), ServiceError> {
    let now = deps.now();
    let until = now + chrono::Duration::hours(MARK_RETENTION_HOURS);
    let mut rest = changes;
    while let Some(first) = rest.first() {
        let (n, deltas, runs) = prefix(rest);
        let mut ops = tasks::counts_added(shard_of(&first.id), &deltas);
        ops.extend(runs.into_iter().map(|(key, deltas)| WriteOp::Add {
            key,
            deltas: deltas.into_iter().collect(),
        }));
        // Written even when the changes add up to nothing, so a longer
        // delivery of the same batch knows where counting resumes.
        ops.push(tasks::counted_mark(&first.id, n, now.timestamp(), until));
        let mark = ops.len() - 1;
        match deps.store.transact(ops).await {
            Ok(()) => rest = &rest[n..],
            Err(StoreError::Conflict { op }) if op == mark => {
                match tasks::counted_before(&*deps.store, &first.id, now.timestamp()).await? {
                    Some(done) if done > 0 => rest = &rest[done.min(rest.len())..],
                    // Expired between the write and the read: count it now.
                    _ => continue,
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// What a batch adds to the queue counters (by queue and status) and to
/// the pipelines' run counters (by counter item).
type QueueDeltas = BTreeMap<String, BTreeMap<TaskStatus, i64>>;
type RunDeltas = BTreeMap<Key, BTreeMap<String, i64>>;

/// The longest prefix of `changes` whose counters fit one transaction with
/// its mark, and what it adds to them.
fn prefix(changes: &[Change]) -> (usize, QueueDeltas, RunDeltas) {
    let mut deltas = QueueDeltas::new();
    let mut runs = RunDeltas::new();
    for (i, change) in changes.iter().enumerate() {
        let queues = [&change.before, &change.after]
            .into_iter()
            .flatten()
            .filter(|c| !deltas.contains_key(&c.queue))
            .map(|c| &c.queue)
            .collect::<std::collections::BTreeSet<_>>();
        let run_adds = change
            .finished
            .as_deref()
            .map(pipelines::finished_counters)
            .unwrap_or_default();
        let new_runs = run_adds
            .iter()
            .filter(|op| matches!(op, WriteOp::Add { key, .. } if !runs.contains_key(key)))
            .count();
        if i > 0 && deltas.len() + runs.len() + queues.len() + new_runs >= MAX_TRANSACT_OPS {
            return (i, deltas, runs);
        }
        for op in run_adds {
            if let WriteOp::Add { key, deltas: adds } = op {
                let counters = runs.entry(key).or_default();
                for (name, n) in adds {
                    *counters.entry(name).or_default() += n;
                }
            }
        }
        if change.before == change.after {
            continue;
        }
        for (side, by) in [(&change.before, -1), (&change.after, 1)] {
            if let Some(c) = side {
                *deltas
                    .entry(c.queue.clone())
                    .or_default()
                    .entry(c.status)
                    .or_default() += by;
            }
        }
    }
    (changes.len(), deltas, runs)
}

/// The counter shard a batch adds into: spread by its first change, so
/// concurrent batches (one per stream shard) seldom write the same item.
fn shard_of(change: &str) -> u32 {
    change
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::Registry;

    fn memory_deps() -> Deps {
        let clock = std::sync::Arc::new(crate::adapters::clock::SystemClock);
        crate::testing::memory_deps(clock, Registry::standard())
    }

    fn task(queue: &str, status: TaskStatus) -> Option<Counted> {
        Some(Counted {
            queue: queue.into(),
            status,
        })
    }

    /// A task's life: enqueued, started, completed.
    fn life(n: usize, queue: &str) -> Vec<Change> {
        use TaskStatus::*;
        (0..n)
            .flat_map(|i| {
                [
                    (None, task(queue, Pending)),
                    (task(queue, Pending), task(queue, Running)),
                    (task(queue, Running), task(queue, Completed)),
                ]
                .into_iter()
                .enumerate()
                .map(move |(step, (before, after))| Change {
                    id: format!("{queue}-{i}-{step}"),
                    before,
                    after,
                    finished: None,
                })
            })
            .collect()
    }

    async fn counts(deps: &Deps, queue: &str) -> (i64, i64, i64) {
        let stats = deps.tasks().queue_stats().await.unwrap();
        let s = stats.iter().find(|s| s.queue_name == queue).unwrap();
        (s.pending, s.running, s.completed)
    }

    #[tokio::test]
    async fn a_batch_delivered_again_is_counted_once() {
        let deps = memory_deps();
        let changes = life(3, "q");
        count(&deps, &changes).await.unwrap();
        assert_eq!(counts(&deps, "q").await, (0, 0, 3));
        count(&deps, &changes).await.unwrap();
        assert_eq!(counts(&deps, "q").await, (0, 0, 3));
    }

    #[tokio::test]
    async fn a_longer_delivery_counts_only_what_follows() {
        let deps = memory_deps();
        let changes = life(2, "q");
        // The first 4 changes: two enqueues and a start and a finish.
        count(&deps, &changes[..4]).await.unwrap();
        assert_eq!(counts(&deps, "q").await, (1, 0, 1));
        count(&deps, &changes).await.unwrap();
        assert_eq!(counts(&deps, "q").await, (0, 0, 2));
    }

    #[tokio::test]
    async fn changes_that_add_up_to_nothing_still_mark_where_counting_resumes() {
        use TaskStatus::*;
        let deps = memory_deps();
        // Enqueued then deleted: nothing to add, but a redelivery with more
        // changes must count only the new ones.
        let changes = vec![
            Change {
                id: "a".into(),
                before: None,
                after: task("q", Pending),
                finished: None,
            },
            Change {
                id: "b".into(),
                before: task("q", Pending),
                after: None,
                finished: None,
            },
            Change {
                id: "c".into(),
                before: None,
                after: task("q", Pending),
                finished: None,
            },
        ];
        count(&deps, &changes[..2]).await.unwrap();
        count(&deps, &changes).await.unwrap();
        assert_eq!(counts(&deps, "q").await, (1, 0, 0));
    }

    #[tokio::test]
    async fn more_queues_than_a_transaction_holds_are_counted_in_parts() {
        let deps = memory_deps();
        let changes: Vec<Change> = (0..250).flat_map(|q| life(1, &format!("q{q}"))).collect();
        count(&deps, &changes).await.unwrap();
        count(&deps, &changes).await.unwrap();
        let stats = deps.tasks().queue_stats().await.unwrap();
        assert_eq!(stats.len(), 250);
        assert!(stats.iter().all(|s| s.completed == 1 && s.pending == 0));
    }

    /// An execution of a new pipeline, finished in `status` at `now`.
    async fn execution(deps: &Deps, status: ExecutionStatus) -> Execution {
        let pipeline = crate::testing::pipeline_on_topic(deps, None).await;
        let now = deps.now();
        let mut e = Execution::new(
            uuid::Uuid::now_v7(),
            &pipeline,
            crate::domain::execution::TriggerType::Manual,
            None,
            serde_json::json!({}),
            now,
        );
        e.status = status;
        e.completed_at = Some(now);
        e.duration_ms = Some(40);
        e
    }

    fn change(id: &str, before: Option<&Execution>, after: &Execution) -> ItemChange {
        let item = |e: &Execution| {
            let write =
                executions::create(e, e.started_at, chrono::Duration::days(1), e.started_at);
            match write {
                WriteOp::Put { item, .. } => item,
                other => panic!("a put, not {other:?}"),
            }
        };
        ItemChange {
            id: id.into(),
            before: before.map(item),
            after: Some(item(after)),
        }
    }

    #[tokio::test]
    async fn a_finished_execution_is_counted_in_its_pipeline_once() {
        // GIVEN an execution claimed (running → running) and then finished
        let deps = memory_deps();
        let done = execution(&deps, ExecutionStatus::Success).await;
        let running = Execution {
            status: ExecutionStatus::Running,
            completed_at: None,
            duration_ms: None,
            ..done.clone()
        };
        let changes = [
            change("e1", None, &running),
            change("e2", Some(&running), &running),
            change("e3", Some(&running), &done),
        ];
        // WHEN the batch is counted, and delivered again
        count_changes(&deps, &changes).await.unwrap();
        count_changes(&deps, &changes).await.unwrap();
        // THEN its pipeline counts one successful run of 40 ms
        let stats = pipelines::totals(&*deps.store, done.pipeline_id)
            .await
            .unwrap();
        let n = |name: &str| crate::table::count(&stats, name);
        assert_eq!((n("runs"), n("success"), n("duration_ms")), (1, 1, 40));
    }

    #[test]
    fn only_task_items_are_counted() {
        use crate::table::{executions, tasks};
        let id = uuid::Uuid::now_v7();
        let item = |key: crate::ports::Key, status: &str| Item {
            key,
            indexes: Vec::new(),
            ttl: None,
            attrs: serde_json::json!({"queue_name": "q", "status": status})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        };
        assert_eq!(
            Counted::of(&item(tasks::key(id), "failed")),
            task("q", TaskStatus::Failed)
        );
        assert_eq!(Counted::of(&item(executions::key(id), "failed")), None);
        assert_eq!(Counted::of(&item(tasks::key(id), "odd")), None);
    }
}
