//! Enqueue: write the task, then send its message. The write comes first so a
//! message never names a task that does not exist; a message lost after the
//! write is re-sent by the scheduler (the task's timer is its outbox entry).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::worker::TaskMessage;
use super::{Deps, ServiceError, outbox};
use crate::domain::task::valid_queue_name;
use crate::domain::{Task, TaskStatus};
use crate::ports::{
    Condition, Index, Item, Key, MAX_DELAY, MAX_MESSAGE_BYTES, MAX_TRANSACT_OPS, OutgoingMessage,
    StoreError, WriteOp,
};

/// How long an idempotency key keeps answering with its first task.
pub const IDEMPOTENCY_WINDOW: chrono::Duration = chrono::Duration::hours(24);
/// Longest accepted task timeout.
pub const MAX_TIMEOUT_SECONDS: u64 = 86_400;
/// Longest accepted retry delay: a week.
pub const MAX_RETRY_DELAY_SECONDS: f64 = 7.0 * 86_400.0;
/// Longest accepted TTL: ten years.
pub const MAX_TTL_SECONDS: f64 = 10.0 * 365.0 * 86_400.0;

/// A task as a client asks for it, before it exists.
#[derive(Clone, Debug, PartialEq)]
pub struct NewTask {
    pub task_name: String,
    pub queue_name: String,
    pub module_path: Option<String>,
    pub args: Vec<Value>,
    pub kwargs: Map<String, Value>,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub max_retries: u32,
    pub priority: i32,
    pub ttl_seconds: Option<f64>,
    pub metadata: Map<String, Value>,
    pub retry_delay: Option<f64>,
    pub retry_backoff: bool,
    pub webhook_url: Option<String>,
    pub timeout_seconds: Option<u64>,
    pub idempotency_key: Option<String>,
}

/// What an enqueue did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enqueued {
    Created(Uuid),
    /// The idempotency key was seen within the window: its first task.
    Existing(Uuid),
    /// `ttl_seconds: 0`: the task runs but is not kept.
    Ephemeral,
}

impl NewTask {
    /// A task of `task_name` on `queue_name` with the task API's defaults
    /// for every other field.
    pub fn named(task_name: impl Into<String>, queue_name: impl Into<String>) -> Self {
        NewTask {
            task_name: task_name.into(),
            queue_name: queue_name.into(),
            module_path: None,
            args: Vec::new(),
            kwargs: Map::new(),
            scheduled_at: None,
            max_retries: crate::http::dto::DEFAULT_MAX_RETRIES,
            priority: 0,
            ttl_seconds: None,
            metadata: Map::new(),
            retry_delay: None,
            retry_backoff: true,
            webhook_url: None,
            timeout_seconds: None,
            idempotency_key: None,
        }
    }

    /// Check the fields a type cannot: names, ranges, URLs, size.
    pub fn validate(&self) -> Result<(), ServiceError> {
        let bad = |m: String| Err(ServiceError::invalid("invalid_field", m));
        if self.task_name.trim().is_empty() || self.task_name.len() > 200 {
            return bad("task_name must be 1 to 200 characters".into());
        }
        if !valid_queue_name(&self.queue_name) {
            return bad(
                "queue_name must be 1 to 100 characters of letters, digits, `_`, `-`, `.`, `:`"
                    .into(),
            );
        }
        if self.max_retries > 1000 {
            return bad("max_retries must be at most 1000".into());
        }
        if self
            .retry_delay
            .is_some_and(|d| !(0.0..=MAX_RETRY_DELAY_SECONDS).contains(&d))
        {
            return bad(format!(
                "retry_delay must be 0 to {MAX_RETRY_DELAY_SECONDS} seconds"
            ));
        }
        if let Some(t) = self.timeout_seconds
            && !(1..=MAX_TIMEOUT_SECONDS).contains(&t)
        {
            return bad(format!(
                "timeout_seconds must be 1 to {MAX_TIMEOUT_SECONDS}"
            ));
        }
        if self
            .ttl_seconds
            .is_some_and(|t| !(0.0..=MAX_TTL_SECONDS).contains(&t))
        {
            return bad(format!(
                "ttl_seconds must be 0 to {MAX_TTL_SECONDS} seconds"
            ));
        }
        if let Some(at) = self.scheduled_at
            && !(1970..=9999).contains(&chrono::Datelike::year(&at))
        {
            return bad("scheduled_at must lie between the years 1970 and 9999".into());
        }
        if let Some(url) = &self.webhook_url {
            match reqwest::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                _ => return bad("webhook_url must be an absolute http(s) URL".into()),
            }
        }
        if let Some(k) = &self.idempotency_key
            && (k.is_empty() || k.len() > 200)
        {
            return bad("idempotency_key must be 1 to 200 characters".into());
        }
        Ok(())
    }

    fn into_task(self, deps: &Deps, now: DateTime<Utc>) -> Task {
        let timeout = self
            .timeout_seconds
            .unwrap_or(deps.config.default_timeout.as_secs());
        Task {
            id: Uuid::now_v7(),
            task_name: self.task_name,
            queue_name: self.queue_name,
            module_path: self.module_path,
            args: self.args,
            kwargs: self.kwargs,
            status: TaskStatus::Pending,
            priority: self.priority,
            max_retries: self.max_retries,
            retry_delay: self.retry_delay,
            retry_backoff: self.retry_backoff,
            timeout_seconds: timeout,
            ttl_seconds: self.ttl_seconds,
            metadata: self.metadata,
            webhook_url: self.webhook_url,
            idempotency_key: self.idempotency_key,
            attempts: 0,
            result: None,
            error: None,
            progress: None,
            progress_message: None,
            created_at: now,
            scheduled_at: self.scheduled_at,
            started_at: None,
            completed_at: None,
            lease_until: None,
            webhook: None,
            version: 1,
        }
    }
}

/// When a task should be released, and how: a message now (with a delay the
/// queue can hold), or a timer the scheduler fires later.
pub enum Dispatch {
    /// Send now with this delay; the timer re-sends if it never starts.
    Send {
        delay: Duration,
        recheck_at: DateTime<Utc>,
    },
    /// Too far ahead for the queue: the scheduler sends it at this time.
    Later { at: DateTime<Utc> },
}

impl Deps {
    /// How to release a pending task at `now`.
    pub fn dispatch_plan(&self, task: &Task, now: DateTime<Utc>) -> Dispatch {
        let due = task.scheduled_at.unwrap_or(now).max(now);
        let wait = (due - now).to_std().unwrap_or_default();
        if wait > MAX_DELAY {
            // Hand it to the queue a little before it is due, with a delay.
            let lead =
                chrono::Duration::from_std(MAX_DELAY - Duration::from_secs(60)).unwrap_or_default();
            return Dispatch::Later { at: due - lead };
        }
        let redispatch =
            chrono::Duration::from_std(self.config.redispatch_after).unwrap_or_default();
        Dispatch::Send {
            delay: wait,
            recheck_at: due + redispatch,
        }
    }

    /// The timer a pending task is stored with under a plan.
    pub fn pending_timer(plan: &Dispatch) -> DateTime<Utc> {
        match plan {
            Dispatch::Send { recheck_at, .. } => *recheck_at,
            Dispatch::Later { at } => *at,
        }
    }

    /// The message that starts a stored task: the task as stored (so the
    /// worker needs no read), unless that would not fit in a message or
    /// the runtime prefers ids (see [`super::Config::snapshot_messages`]).
    pub fn task_message(&self, task: &Task, delay: Duration) -> OutgoingMessage {
        let snapshot = self.config.snapshot_messages.then(|| {
            TaskMessage::Snapshot {
                snapshot: Box::new(task.clone()),
            }
            .encode()
        });
        OutgoingMessage {
            body: snapshot
                .filter(|s| s.len() <= MAX_MESSAGE_BYTES)
                .unwrap_or_else(|| TaskMessage::Stored { id: task.id }.encode()),
            delay,
            priority: task.priority,
            ..Default::default()
        }
    }
}

/// Enqueue one task. Once its write has committed, its message is sent
/// even if the caller goes away (see [`outbox`]).
pub async fn enqueue(deps: &Deps, new: NewTask) -> Result<Enqueued, ServiceError> {
    new.validate()?;
    let now = deps.now();
    let task = new.into_task(deps, now);
    if task.ttl_seconds == Some(0.0) {
        send_ephemeral(deps, &task).await?;
        return Ok(Enqueued::Ephemeral);
    }
    check_size(&task)?;
    let deps = deps.clone();
    outbox::detached(async move { store_and_send(&deps, task, now).await }).await
}

async fn store_and_send(
    deps: &Deps,
    task: Task,
    now: DateTime<Utc>,
) -> Result<Enqueued, ServiceError> {
    let plan = deps.dispatch_plan(&task, now);
    let mut ops = deps.task_write(None, &task, Some(Deps::pending_timer(&plan)));
    let idem_op = task
        .idempotency_key
        .as_ref()
        .map(|k| idempotency_put(k, task.id, now));
    let idem_index = idem_op.as_ref().map(|_| ops.len());
    ops.extend(idem_op);
    match deps.store.transact(ops).await {
        Ok(()) => {}
        Err(StoreError::Conflict { op }) if Some(op) == idem_index => {
            let key = task.idempotency_key.as_deref().unwrap_or_default();
            return existing_for_key(deps, key).await;
        }
        Err(e) => return Err(e.into()),
    }
    deps.metrics.enqueued(1);
    if let Dispatch::Send { delay, .. } = plan {
        let message = deps.task_message(&task, delay);
        outbox::send_or_recheck(deps, vec![message], |soon| {
            vec![recheck_op(deps, &task, soon)]
        })
        .await;
    }
    Ok(Enqueued::Created(task.id))
}

/// The write that brings a pending task's timer forward to `soon`, at the
/// same version: a message sent meanwhile (whose send only seemed to fail)
/// still starts it.
pub fn recheck_op(deps: &Deps, task: &Task, soon: DateTime<Utc>) -> Vec<WriteOp> {
    deps.task_write(Some(task), task, Some(soon))
}

/// Enqueue many tasks: validated as a whole first (one bad item rejects the
/// batch, naming its index), then written in atomic chunks with their
/// counters, each chunk's messages sent once it has committed, whether or
/// not the caller is still there. Returns the ids in order (`None` for
/// ephemeral tasks).
pub async fn enqueue_batch(
    deps: &Deps,
    batch: Vec<NewTask>,
) -> Result<Vec<Option<Uuid>>, ServiceError> {
    for (i, t) in batch.iter().enumerate() {
        t.validate().map_err(|e| at_index(i, e))?;
        if t.idempotency_key.is_some() {
            return Err(ServiceError::invalid(
                "invalid_field",
                format!("item {i}: idempotency_key is only accepted on single enqueue"),
            ));
        }
    }
    let now = deps.now();
    let tasks: Vec<Task> = batch.into_iter().map(|n| n.into_task(deps, now)).collect();
    for (i, t) in tasks.iter().enumerate() {
        check_size(t).map_err(|e| at_index(i, e))?;
    }
    let mut ephemeral = Vec::new();
    let mut ids = Vec::with_capacity(tasks.len());
    let mut chunks = Vec::new();
    let mut chunk = Chunk::default();
    let mut counters: std::collections::BTreeMap<(u32, String), i64> = Default::default();
    let mut stored = 0;
    for task in tasks {
        if task.ttl_seconds == Some(0.0) {
            ephemeral.push(ephemeral_message(&task)?);
            ids.push(None);
            continue;
        }
        ids.push(Some(task.id));
        // Counters are summed per chunk: one Add per (shard, queue), not per task.
        let shard_key = (super::tasks::shard_of(task.id), task.queue_name.clone());
        if chunk.ops.len() + counters.len() + 2 > MAX_TRANSACT_OPS {
            chunks.push(chunk.close(&mut counters));
        }
        let plan = deps.dispatch_plan(&task, now);
        let mut put = deps.task_write(None, &task, Some(Deps::pending_timer(&plan)));
        put.truncate(1); // the counter is summed instead
        chunk.ops.extend(put);
        if let Dispatch::Send { delay, .. } = plan {
            chunk.messages.push(deps.task_message(&task, delay));
            chunk.sent.push(task);
        }
        *counters.entry(shard_key).or_default() += 1;
        stored += 1;
    }
    if !chunk.ops.is_empty() {
        chunks.push(chunk.close(&mut counters));
    }
    // Tasks that are not stored exist only as messages: if they cannot be
    // sent, the request fails before anything is written.
    if !ephemeral.is_empty() {
        deps.queue
            .send_batch(&deps.config.task_queue, ephemeral)
            .await?;
    }
    let deps = deps.clone();
    outbox::detached(async move {
        // Chunks are written concurrently so they share group commits (one
        // fsync for the lot, not one per chunk); each chunk stays atomic and
        // sends its own messages once written.
        let mut writes = tokio::task::JoinSet::new();
        for chunk in chunks {
            let deps = deps.clone();
            writes.spawn(async move { chunk.store_and_send(&deps).await });
        }
        let mut outcome = Ok(());
        while let Some(done) = writes.join_next().await {
            let result = done.unwrap_or_else(|crash| Err(ServiceError::Crashed(crash.to_string())));
            if let (Err(e), Ok(())) = (result, &outcome) {
                outcome = Err(e);
            }
        }
        outcome?;
        deps.metrics.enqueued(stored);
        Ok(ids)
    })
    .await
}

/// One atomic write of a batch: its operations, and the messages of the
/// tasks it stores (with those tasks, to bring their timers forward if the
/// messages are lost).
#[derive(Default)]
struct Chunk {
    ops: Vec<WriteOp>,
    messages: Vec<OutgoingMessage>,
    sent: Vec<Task>,
}

impl Chunk {
    /// The chunk with one counter add per (shard, queue) it touches.
    fn close(&mut self, counters: &mut std::collections::BTreeMap<(u32, String), i64>) -> Chunk {
        for ((shard, queue), n) in std::mem::take(counters) {
            self.ops.push(WriteOp::Add {
                key: Key::new(format!("QSTATS#{shard}"), queue),
                deltas: vec![("pending".into(), n)],
            });
        }
        std::mem::take(self)
    }

    async fn store_and_send(self, deps: &Deps) -> Result<(), ServiceError> {
        deps.store.transact(self.ops).await?;
        let sent = self.sent;
        outbox::send_or_recheck(deps, self.messages, |soon| {
            sent.iter().map(|t| recheck_op(deps, t, soon)).collect()
        })
        .await;
        Ok(())
    }
}

fn at_index(i: usize, e: ServiceError) -> ServiceError {
    match e {
        ServiceError::Invalid { message, code } => ServiceError::Invalid {
            message: format!("item {i}: {message}"),
            code,
        },
        other => other,
    }
}

/// A task must fit in one queue message and one table item.
fn check_size(task: &Task) -> Result<(), ServiceError> {
    let size = serde_json::to_vec(task)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    ServiceError::check_message_size("task", size)
}

fn ephemeral_message(task: &Task) -> Result<OutgoingMessage, ServiceError> {
    let body = TaskMessage::Inline {
        task: Box::new(task.clone()),
    }
    .encode();
    ServiceError::check_message_size("task", body.len())?;
    let delay = task
        .scheduled_at
        .map(|at| (at - task.created_at).to_std().unwrap_or_default())
        .unwrap_or_default();
    if delay > MAX_DELAY {
        return Err(ServiceError::invalid(
            "invalid_field",
            "a task with ttl_seconds 0 is not stored, so it cannot be scheduled more than 15 minutes ahead",
        ));
    }
    Ok(OutgoingMessage {
        body,
        delay,
        priority: task.priority,
        ..Default::default()
    })
}

async fn send_ephemeral(deps: &Deps, task: &Task) -> Result<(), ServiceError> {
    let message = ephemeral_message(task)?;
    deps.queue
        .send_batch(&deps.config.task_queue, vec![message])
        .await?;
    deps.metrics.enqueued(0);
    Ok(())
}

fn idempotency_key(key: &str) -> Key {
    Key::new(format!("IDEM#{key}"), "IDEM")
}

/// The record that maps an idempotency key to its task for the window; the
/// scheduler deletes it through the expiry index.
fn idempotency_put(key: &str, id: Uuid, now: DateTime<Utc>) -> WriteOp {
    let expires = now + IDEMPOTENCY_WINDOW;
    let mut attrs = Map::new();
    attrs.insert("task_id".into(), Value::from(id.to_string()));
    attrs.insert("expires".into(), Value::from(expires.timestamp()));
    let item = Item {
        key: idempotency_key(key),
        indexes: vec![(
            Index::Gsi6,
            super::tasks::timed_key(super::tasks::EXPIRY_PREFIX, expires, &format!("IDEM#{key}")),
        )],
        ttl: Some(expires.timestamp()),
        attrs,
    };
    WriteOp::Put {
        item,
        cond: Condition::Absent {
            now: now.timestamp(),
        },
    }
}

async fn existing_for_key(deps: &Deps, key: &str) -> Result<Enqueued, ServiceError> {
    let item = deps.store.get(&idempotency_key(key)).await?;
    let id = item
        .as_ref()
        .and_then(|i| i.attrs.get("task_id"))
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok());
    match id {
        Some(id) => Ok(Enqueued::Existing(id)),
        // It expired between our write and this read: a retry will create it.
        None => Err(ServiceError::Conflict {
            message: "idempotency key changed concurrently; retry".into(),
            code: "idempotency_conflict",
        }),
    }
}
