//! Tasks and their queue counters.
//!
//! A task is one item in its queue's partition: `TQ#<tag>` / id, where the
//! tag is the id's low 32 bits, which [`new_id`] sets to a hash of the
//! queue name with the shard in its low two bits. So a get by id needs only
//! the id, and a queue's tasks are the [`SHARDS`] partitions of its hash,
//! newest first (ids are UUIDv7: an id sort key is a creation-time order),
//! read from the table itself: a task that is enqueued, run and finished
//! is in no index at all, and each of its writes costs one unit.
//!
//! It joins an index only where a list needs one that the table cannot
//! answer, or the scheduler must look at it:
//! - gsi1 `QS#<queue>#<status>` / id, only while `failed`, `cancelled` or
//!   `expired` (the dead letters, their groups and requeue; a status a
//!   task ends in, so the entry is written once);
//! - gsi5, its timer: a pending task's due or re-dispatch time, a running
//!   task's lease end, a webhook still owed;
//! - gsi6, its expiry: TTL work (expire, then delete after the retention).
//!
//! Lists by `pending`, `running` or `completed` read the queue's
//! partitions and filter, within a bounded read per page (as substring
//! filters do); lists of every queue merge the partitions of the queues
//! the counters know.
//!
//! Counts per queue and status live in `QSTATS#<shard>`/`<queue>`; a read
//! sums the shards. They are added to in the same transaction as every
//! status change, or, when the table's change stream keeps them
//! ([`Tasks::counted_by_stream`]), by its consumer, once per batch of
//! changes: a batch leaves a mark (`COUNTED#<first change>`) in the same
//! transaction, so a batch delivered again is not counted twice.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::tagged;
use super::timers::{expiry_entry, timer_entry, timer_of};
use crate::domain::{Task, TaskStatus};
use crate::ports::{Condition, Index, Item, Key, Query, Store, StoreError, WriteOp};

pub mod chunks;
use chunks::Chunk;

/// Partitions per queue, and shards of the queue counters.
pub const SHARDS: u32 = tagged::SHARDS;

/// A queue's dead letters in one status (sparse: see the module's doc).
const ENDED: Index = Index::Gsi1;

const PREFIX: &str = "TQ#";

/// A new task id for `queue`: its tag names the queue's partitions.
pub fn new_id(queue: &str) -> Uuid {
    chunks::plain_id(queue)
}

/// The key of a task's item.
pub fn key(id: Uuid) -> Key {
    tagged::key(PREFIX, id)
}

/// Whether `key` is a task's.
pub(crate) fn is_task(key: &Key) -> bool {
    key.pk.starts_with(PREFIX)
}

/// The id of the task whose item has this key.
pub fn id_of(key: &Key) -> Option<Uuid> {
    tagged::id_of(PREFIX, key)
}

/// The queue and status of the task an item holds; `None` for any other item.
pub fn queue_and_status(item: &Item) -> Option<(String, TaskStatus)> {
    if !is_task(&item.key) {
        return None;
    }
    let text = |name: &str| item.attrs.get(name).and_then(Value::as_str);
    Some((
        text("queue_name")?.to_owned(),
        text("status")?.parse().ok()?,
    ))
}

fn counters_key(shard: u32, queue: &str) -> Key {
    Key::new(format!("QSTATS#{shard}"), queue)
}

/// The tasks of the table, as seen at one instant (`now` decides what has
/// expired and when TTL work is due).
pub struct Tasks<'a> {
    store: &'a dyn Store,
    /// How long an `expired` task stays readable before it is deleted.
    expired_retention: chrono::Duration,
    now: DateTime<Utc>,
    /// Counters are not written with the tasks: the change stream's
    /// consumer keeps them.
    counted_by_stream: bool,
}

impl<'a> Tasks<'a> {
    /// The tasks of `store` as of `now`; expired ones are kept `expired_retention`.
    pub fn new(
        store: &'a dyn Store,
        expired_retention: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Self {
        Tasks {
            store,
            expired_retention,
            now,
            counted_by_stream: false,
        }
    }

    /// These tasks' counters are kept by the change stream's consumer, so
    /// writes leave them out.
    pub fn counted_by_stream(self, yes: bool) -> Self {
        Tasks {
            counted_by_stream: yes,
            ..self
        }
    }

    /// Whether writes carry their counter changes.
    pub fn counts_inline(&self) -> bool {
        !self.counted_by_stream
    }

    /// The live task with this id: `None` if absent or past its TTL.
    pub async fn get(&self, id: Uuid) -> Result<Option<Task>, StoreError> {
        Ok(self.get_with_timer(id).await?.map(|(task, _)| task))
    }

    /// The live task with this id and when its timer fires (`None` when it
    /// has none).
    pub async fn get_with_timer(
        &self,
        id: Uuid,
    ) -> Result<Option<(Task, Option<DateTime<Utc>>)>, StoreError> {
        Ok(stored(self.store, id)
            .await?
            .filter(|(_, item)| !item.is_expired(self.now.timestamp()))
            .map(|(task, item)| (task, timer_of(&item))))
    }

    /// The chunk with this base id, as stored.
    pub async fn chunk(&self, base: Uuid) -> Result<Option<Chunk>, StoreError> {
        Ok(self
            .store
            .get(&key(base))
            .await?
            .as_ref()
            .and_then(Chunk::from_item))
    }

    /// The write that stores a new chunk (a batch's tasks, just made).
    pub fn new_chunk(&self, chunk: &Chunk) -> WriteOp {
        WriteOp::Put {
            item: chunk.item(),
            cond: Condition::Absent {
                now: self.now.timestamp(),
            },
        }
    }

    /// Replace `prev` by `next` (compare-and-set on the chunk's version;
    /// `Conflict` if any of its members changed).
    pub async fn save_chunk(&self, prev: &Chunk, next: &Chunk) -> Result<(), StoreError> {
        let mut ops = vec![next.write_over(prev)];
        if self.counts_inline() {
            let status = |c: &Chunk, n: &u8| c.members.get(n).map(|t| t.status);
            ops.extend(counter_ops(prev.members.iter().map(|(n, t)| {
                (&t.queue_name, t.id, status(prev, n), status(next, n))
            })));
        }
        self.store.transact(ops).await
    }

    /// Write `next` (`None`: delete) over `prev`, a task of a chunk, if the
    /// chunk still holds it: in the chunk where `next` needs neither a
    /// timer nor an index, else out of it, to its own item, in the same
    /// transaction. A change to another member meanwhile is read and
    /// written over; a change to this one is a `Conflict`. `false` when
    /// the chunk no longer holds the task (it left, or was never in one).
    async fn save_member(
        &self,
        prev: &Task,
        next: Option<&Task>,
        timer: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        let Some((base, number)) = chunks::member_of(prev.id) else {
            return Ok(false);
        };
        // Each try that conflicts found another member changed: bounded all
        // the same, so a hot chunk gives up rather than spin.
        for _ in 0..100 {
            let Some(chunk) = self.chunk(base).await? else {
                return Ok(false);
            };
            let Some(current) = chunk.members.get(&number) else {
                return Ok(false);
            };
            if current.version != prev.version {
                return Err(StoreError::Conflict { op: 0 });
            }
            let own = next.filter(|n| !self.fits_a_chunk(n, timer));
            let after = chunk.changed(|members| match next {
                Some(n) if own.is_none() => {
                    members.insert(number, n.clone());
                }
                _ => {
                    members.remove(&number);
                }
            });
            let mut ops = vec![after.write_over(&chunk)];
            ops.extend(own.map(|n| self.put(None, n, timer)));
            if self.counts_inline() {
                ops.extend(counter_op(
                    &prev.queue_name,
                    prev.id,
                    Some(current.status),
                    next.map(|n| n.status),
                ));
            }
            match self.store.transact(ops).await {
                Err(StoreError::Conflict { op: 0 }) => continue,
                other => return other.map(|()| true),
            }
        }
        Err(StoreError::Conflict { op: 0 })
    }

    /// Whether `task` with this timer may stay in a chunk: its item would
    /// be in no index and have no TTL.
    /// (What [`Tasks::item`] would give it either.)
    pub(crate) fn fits_a_chunk(&self, task: &Task, timer: Option<DateTime<Utc>>) -> bool {
        timer.is_none() && !is_indexed(task.status) && self.expiry_check_at(task).is_none()
    }

    /// The writes that replace `prev` (the stored version, if any) by
    /// `next` with its timer: a compare-and-set on the version (absent for a
    /// new task) plus the counter change.
    pub fn write(
        &self,
        prev: Option<&Task>,
        next: &Task,
        timer: Option<DateTime<Utc>>,
    ) -> Vec<WriteOp> {
        let mut ops = vec![self.put(prev, next, timer)];
        if self.counts_inline() {
            ops.extend(counter_op(
                &next.queue_name,
                next.id,
                prev.map(|p| p.status),
                Some(next.status),
            ));
        }
        ops
    }

    /// The put alone of [`Tasks::write`], its counter left to the caller
    /// (a batch sums its counters: one add per shard and queue).
    pub fn put(&self, prev: Option<&Task>, next: &Task, timer: Option<DateTime<Utc>>) -> WriteOp {
        let cond = match prev {
            Some(p) => Condition::version(p.version),
            None => Condition::Absent {
                now: self.now.timestamp(),
            },
        };
        WriteOp::Put {
            item: self.item(next, timer),
            cond,
        }
    }

    /// Replace `prev` by `next` (compare-and-set); `Conflict` if it changed.
    pub async fn save(
        &self,
        prev: &Task,
        next: &Task,
        timer: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        if self.save_member(prev, Some(next), timer).await? {
            return Ok(());
        }
        self.store
            .transact(self.write(Some(prev), next, timer))
            .await
    }

    /// Delete a task if it is still at `task.version`.
    pub async fn delete(&self, task: &Task) -> Result<(), StoreError> {
        if self.save_member(task, None, None).await? {
            return Ok(());
        }
        let mut ops = vec![WriteOp::Delete {
            key: key(task.id),
            cond: Condition::version(task.version),
        }];
        if self.counts_inline() {
            ops.extend(counter_op(
                &task.queue_name,
                task.id,
                Some(task.status),
                None,
            ));
        }
        self.store.transact(ops).await
    }

    /// What a stored task item looks like, given when the scheduler must
    /// next look at it (`timer`).
    fn item(&self, task: &Task, timer: Option<DateTime<Utc>>) -> Item {
        let id = task.id.to_string();
        let status = task.status.as_str();
        let queue = &task.queue_name;
        let mut indexes = Vec::new();
        if is_indexed(task.status) {
            indexes.push((ENDED, Key::new(format!("QS#{queue}#{status}"), &id)));
        }
        if let Some(at) = timer {
            indexes.push(timer_entry(at, &id));
        }
        let key = key(task.id);
        let mut ttl = None;
        if let Some(expires) = self.expiry_check_at(task) {
            indexes.push(expiry_entry(expires, &id));
            // The backend may delete the item itself once the expired record's
            // retention is over (DynamoDB TTL); until then the scheduler acts.
            // Not while it owes its webhook: the write that records the
            // delivery sets it.
            ttl = task
                .expires_at()
                .filter(|_| !task.owes_webhook())
                .map(|e| (e + self.expired_retention).timestamp());
        }
        let mut attrs = super::attrs_of(task);
        // Every nullable field of a task is an `Option`, which reads back as
        // `None` when absent: leaving the nulls out makes the hottest record
        // about 40% smaller, and each write that much cheaper.
        attrs.retain(|_, v| !v.is_null());
        Item {
            key,
            indexes,
            ttl,
            attrs,
        }
    }

    /// When the scheduler must next look at a task for its TTL: at expiry,
    /// then (once expired) at the end of the expired record's retention.
    /// Never before `now`: a write after expiry files the entry in a bucket
    /// still to be swept.
    fn expiry_check_at(&self, task: &Task) -> Option<DateTime<Utc>> {
        let expires = task.expires_at()?;
        Some(match (task.status, task.completed_at) {
            (TaskStatus::Expired, Some(at)) => at + self.expired_retention,
            _ => expires.max(self.now),
        })
    }

    /// Tasks per queue and status, from the sharded counters (no scan).
    pub async fn queue_stats(&self) -> Result<Vec<QueueStats>, StoreError> {
        let mut by_queue: std::collections::BTreeMap<String, QueueStats> = Default::default();
        for shard in 0..SHARDS {
            let mut q = Query::table(format!("QSTATS#{shard}"), 1000);
            loop {
                let page = self.store.query(&q).await?;
                let full = page.len() == q.limit;
                for item in &page {
                    let stats = by_queue
                        .entry(item.key.sk.clone())
                        .or_insert_with(|| QueueStats::new(&item.key.sk));
                    stats.add(&item.attrs);
                }
                match page.last() {
                    Some(last) if full => q.after = Some(last.key.sk.clone()),
                    _ => break,
                }
            }
        }
        Ok(by_queue.into_values().collect())
    }

    /// One page of tasks, newest first, matching `filter`. Filters that no
    /// index answers (statuses read from the table, substrings) are applied
    /// as read, within a bounded read per page.
    pub async fn list(&self, filter: &TaskFilter, limit: usize) -> Result<TaskPage, StoreError> {
        let sources = self.sources(filter).await?;
        let now = self.now.timestamp();
        let budget = (limit * 20).max(1000);
        let (tasks, next) = tagged::list(
            self.store,
            &sources,
            filter.before.clone(),
            limit,
            budget,
            |sort_key, item| match Chunk::from_item(item) {
                Some(chunk) => chunk
                    .positions()
                    .filter(|(_, t)| filter.matches(t))
                    .map(|(at, t)| (at, t.clone()))
                    .collect(),
                None => tagged::one(
                    sort_key,
                    tagged::live::<Task>(item, now).filter(|t| filter.matches(t)),
                ),
            },
        )
        .await?;
        Ok(TaskPage { tasks, next })
    }

    /// The partitions that hold every candidate of `filter`: one query each.
    async fn sources(&self, filter: &TaskFilter) -> Result<Vec<Query>, StoreError> {
        let ended =
            |q: &str, s: TaskStatus| Query::index(ENDED, format!("QS#{q}#{}", s.as_str()), 1);
        let queues: Vec<String> = match &filter.queue {
            Some(q) => vec![q.clone()],
            None => self
                .queue_stats()
                .await?
                .into_iter()
                .map(|stats| stats.queue_name)
                .collect(),
        };
        Ok(match filter.status {
            Some(s) if is_indexed(s) => queues.iter().map(|q| ended(q, s)).collect(),
            _ => {
                let partitions: std::collections::BTreeSet<String> = queues
                    .iter()
                    .flat_map(|q| tagged::partitions(PREFIX, q))
                    .collect();
                partitions
                    .into_iter()
                    .map(|pk| Query::table(pk, 1))
                    .collect()
            }
        })
    }
}

/// Whether a task in `status` has an entry in [`ENDED`]: the statuses a
/// task ends in, and stays in until someone acts on it.
fn is_indexed(status: TaskStatus) -> bool {
    matches!(
        status,
        TaskStatus::Failed | TaskStatus::Cancelled | TaskStatus::Expired
    )
}

/// Task `id` and the item that holds it (its own, or its chunk's, which
/// has no timer and no TTL), past its TTL or not.
pub async fn stored(store: &dyn Store, id: Uuid) -> Result<Option<(Task, Item)>, StoreError> {
    if let Some((base, _)) = chunks::member_of(id)
        && let Some(item) = store.get(&key(base)).await?
        && let Some(task) = Chunk::from_item(&item).and_then(|c| c.get(id).cloned())
    {
        return Ok(Some((task, item)));
    }
    Ok(store
        .get(&key(id))
        .await?
        .and_then(|item| Some((from_item(&item)?, item))))
}

/// The task in an item; `None` when the item is not a valid task.
pub fn from_item(item: &Item) -> Option<Task> {
    super::from_attrs(item)
}

/// The counter add of `n` new pending tasks of `queue` in shard `shard`
/// (a batch sums its tasks per shard and queue).
pub fn pending_added(shard: u32, queue: &str, n: i64) -> WriteOp {
    WriteOp::Add {
        key: counters_key(shard, queue),
        deltas: vec![("pending".into(), n)],
    }
}

/// The counter adds of a counted batch of status changes: `deltas` by
/// queue and status, into shard `shard`.
pub fn counts_added(
    shard: u32,
    deltas: &std::collections::BTreeMap<String, std::collections::BTreeMap<TaskStatus, i64>>,
) -> Vec<WriteOp> {
    deltas
        .iter()
        .filter_map(|(queue, by_status)| {
            let deltas: Vec<(String, i64)> = by_status
                .iter()
                .filter(|(_, n)| **n != 0)
                .map(|(s, n)| (s.as_str().to_string(), *n))
                .collect();
            (!deltas.is_empty()).then(|| WriteOp::Add {
                key: counters_key(shard % SHARDS, queue),
                deltas,
            })
        })
        .collect()
}

fn counted_key(first_change: &str) -> Key {
    Key::new(format!("COUNTED#{first_change}"), "COUNTED")
}

/// The mark of a counted batch of changes: the id of its first change and
/// how many it counted, kept until `until` (past the stream's retention).
/// Written only if no batch starting there was counted before.
pub fn counted_mark(first_change: &str, counted: usize, now: i64, until: DateTime<Utc>) -> WriteOp {
    let mut attrs = Map::new();
    attrs.insert("counted".into(), Value::from(counted as u64));
    let item = Item {
        key: counted_key(first_change),
        indexes: Vec::new(),
        ttl: None,
        attrs,
    };
    WriteOp::Put {
        item: super::timers::expiring(item, until),
        cond: Condition::Absent { now },
    }
}

/// How many changes the batch starting at `first_change` counted, if one was.
pub async fn counted_before(
    store: &dyn Store,
    first_change: &str,
    now: i64,
) -> Result<Option<usize>, StoreError> {
    Ok(store
        .get(&counted_key(first_change))
        .await?
        .filter(|i| !i.is_expired(now))
        .map(|i| i.attrs.get("counted").and_then(Value::as_u64).unwrap_or(0) as usize))
}

/// The counters shard a task is counted in.
pub fn counter_shard(task: &Task) -> u32 {
    tagged::shard_of(task.id)
}

/// The counter deltas of a status change (`None` for no change).
fn counter_op(
    queue: &str,
    id: Uuid,
    from: Option<TaskStatus>,
    to: Option<TaskStatus>,
) -> Option<WriteOp> {
    if from == to {
        return None;
    }
    let mut deltas = Vec::with_capacity(2);
    if let Some(f) = from {
        deltas.push((f.as_str().to_string(), -1));
    }
    if let Some(t) = to {
        deltas.push((t.as_str().to_string(), 1));
    }
    Some(WriteOp::Add {
        key: counters_key(tagged::shard_of(id), queue),
        deltas,
    })
}

/// The counter adds of several tasks' status changes (queue, id, from,
/// to), one per counters item they touch (a transaction writes an item
/// once).
fn counter_ops<'q>(
    changes: impl Iterator<Item = (&'q String, Uuid, Option<TaskStatus>, Option<TaskStatus>)>,
) -> Vec<WriteOp> {
    let mut by_key: std::collections::BTreeMap<Key, std::collections::BTreeMap<&str, i64>> =
        Default::default();
    for (queue, id, from, to) in changes.filter(|(_, _, from, to)| from != to) {
        let deltas = by_key
            .entry(counters_key(tagged::shard_of(id), queue))
            .or_default();
        for (status, n) in [(from, -1), (to, 1)] {
            if let Some(s) = status {
                *deltas.entry(s.as_str()).or_default() += n;
            }
        }
    }
    by_key
        .into_iter()
        .map(|(key, deltas)| WriteOp::Add {
            key,
            deltas: deltas
                .into_iter()
                .filter(|(_, n)| *n != 0)
                .map(|(s, n)| (s.to_string(), n))
                .collect(),
        })
        .collect()
}

/// Which tasks a list or bulk delete is about.
#[derive(Clone, Debug, Default)]
pub struct TaskFilter {
    pub queue: Option<String>,
    /// Part of the task's id (case-insensitive).
    pub id: Option<String>,
    pub status: Option<TaskStatus>,
    /// Case-insensitive substrings.
    pub task_name: Option<String>,
    pub args: Option<String>,
    pub result: Option<String>,
    pub error: Option<String>,
    /// Cursor: only tasks older than this sort key (a task id).
    pub before: Option<String>,
}

impl TaskFilter {
    /// Whether `t` passes every filter.
    pub fn matches(&self, t: &Task) -> bool {
        fn contains(hay: &str, needle: &Option<String>) -> bool {
            needle
                .as_ref()
                .is_none_or(|n| hay.to_lowercase().contains(&n.to_lowercase()))
        }
        self.queue.as_ref().is_none_or(|q| &t.queue_name == q)
            && contains(&t.id.to_string(), &self.id)
            && self.status.is_none_or(|s| t.status == s)
            && contains(&t.task_name, &self.task_name)
            && (self.args.is_none()
                || contains(&Value::from(t.args.clone()).to_string(), &self.args))
            && (self.result.is_none() || contains(t.result.as_deref().unwrap_or(""), &self.result))
            && (self.error.is_none() || contains(t.error.as_deref().unwrap_or(""), &self.error))
    }
}

/// A page of a task list and the cursor of the next one.
#[derive(Debug)]
pub struct TaskPage {
    pub tasks: Vec<Task>,
    pub next: Option<String>,
}

/// Task counts of one queue.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct QueueStats {
    pub queue_name: String,
    pub pending: i64,
    pub running: i64,
    pub completed: i64,
    pub failed: i64,
    pub cancelled: i64,
    pub expired: i64,
}

impl QueueStats {
    fn new(queue: &str) -> Self {
        QueueStats {
            queue_name: queue.to_string(),
            pending: 0,
            running: 0,
            completed: 0,
            failed: 0,
            cancelled: 0,
            expired: 0,
        }
    }

    fn add(&mut self, attrs: &Map<String, Value>) {
        let n = |s: &str| attrs.get(s).and_then(Value::as_i64).unwrap_or(0);
        self.pending += n("pending");
        self.running += n("running");
        self.completed += n("completed");
        self.failed += n("failed");
        self.cancelled += n("cancelled");
        self.expired += n("expired");
    }

    /// The count of one status.
    pub fn count(&self, status: TaskStatus) -> i64 {
        match status {
            TaskStatus::Pending => self.pending,
            TaskStatus::Running => self.running,
            TaskStatus::Completed => self.completed,
            TaskStatus::Failed => self.failed,
            TaskStatus::Cancelled => self.cancelled,
            TaskStatus::Expired => self.expired,
        }
    }
}
