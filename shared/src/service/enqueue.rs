//! Enqueue: write the task, then send its message. The write comes first so a
//! message never names a task that does not exist; a message lost after the
//! write is re-sent by the scheduler (the task's timer is its outbox entry,
//! see [`dispatch`]).

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use tracing::Instrument;
use uuid::Uuid;

use super::dispatch::{self, Dispatch};
use super::{Deps, ServiceError};
use crate::domain::task::valid_queue_name;
use crate::domain::{Task, TaskStatus};
use crate::messages::TaskMessage;
use crate::ports::{MAX_DELAY, MAX_TRANSACT_OPS, OutgoingMessage, StoreError, WriteOp};
use crate::table::idempotency;
use crate::table::tasks::{self, chunks};

/// How long an idempotency key keeps answering with its first task.
pub const IDEMPOTENCY_WINDOW: chrono::Duration = chrono::Duration::hours(24);
pub use crate::domain::task::MAX_TIMEOUT_SECONDS;
/// Longest accepted retry delay: a week.
pub const MAX_RETRY_DELAY_SECONDS: f64 = 7.0 * 86_400.0;
/// Longest accepted TTL: ten years.
pub const MAX_TTL_SECONDS: f64 = 10.0 * 365.0 * 86_400.0;
/// The queue of a task that names none.
pub const DEFAULT_QUEUE: &str = "default";
/// Retries of a task that names none (attempts = 1 + retries).
pub const DEFAULT_MAX_RETRIES: u32 = 3;

/// A task as a client asks for it, before it exists: the body of
/// `POST /api/v1/enqueue` and of each batch item, read as lapinq clients
/// write it. Every field but `task_name` may be omitted or null, which
/// takes the default.
#[derive(Clone, Debug, PartialEq, Deserialize, utoipa::ToSchema)]
pub struct NewTask {
    /// 1 to 200 characters, not all blank.
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub task_name: String,
    #[serde(default = "default_queue", deserialize_with = "or_default_queue")]
    #[schema(nullable, pattern = "^[A-Za-z0-9_.:-]{1,100}$")]
    pub queue_name: String,
    #[serde(default)]
    pub module_path: Option<String>,
    #[serde(default, deserialize_with = "array")]
    #[schema(nullable)]
    pub args: Vec<Value>,
    #[serde(default, deserialize_with = "object")]
    #[schema(nullable)]
    pub kwargs: Map<String, Value>,
    /// ISO 8601, with an offset or without one (UTC).
    #[serde(default, deserialize_with = "timestamp")]
    #[schema(value_type = Option<String>)]
    pub scheduled_at: Option<DateTime<Utc>>,
    #[serde(
        default = "default_max_retries",
        deserialize_with = "or_default_max_retries"
    )]
    #[schema(nullable, maximum = 1000)]
    pub max_retries: u32,
    #[serde(default, deserialize_with = "or_default")]
    #[schema(nullable)]
    pub priority: i32,
    /// Seconds, fractions allowed (lapinq keeps them as floats).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 315_360_000)]
    pub ttl_seconds: Option<f64>,
    #[serde(default, deserialize_with = "object")]
    #[schema(nullable)]
    pub metadata: Map<String, Value>,
    /// Seconds, fractions allowed.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 604_800)]
    pub retry_delay: Option<f64>,
    #[serde(default = "yes", deserialize_with = "or_yes")]
    #[schema(nullable)]
    pub retry_backoff: bool,
    /// An absolute http(s) URL.
    #[serde(default)]
    #[schema(pattern = "^[Hh][Tt][Tt][Pp][Ss]?://")]
    pub webhook_url: Option<String>,
    /// Extra headers of the webhook call (string values).
    #[serde(default, deserialize_with = "object")]
    #[schema(nullable, value_type = std::collections::BTreeMap<String, String>)]
    pub webhook_headers: Map<String, Value>,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 86_400)]
    pub timeout_seconds: Option<u64>,
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200)]
    pub idempotency_key: Option<String>,
    /// Who enqueues it: set by the API from the caller, never read from
    /// the request.
    #[serde(skip)]
    pub owner: Option<Uuid>,
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
            max_retries: DEFAULT_MAX_RETRIES,
            priority: 0,
            ttl_seconds: None,
            metadata: Map::new(),
            retry_delay: None,
            retry_backoff: true,
            webhook_url: None,
            webhook_headers: Map::new(),
            timeout_seconds: None,
            idempotency_key: None,
            owner: None,
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
        if let Some(problem) = super::webhook::headers_problem(&self.webhook_headers) {
            return bad(problem);
        }
        if let Some(k) = &self.idempotency_key
            && (k.is_empty() || k.len() > 200)
        {
            return bad("idempotency_key must be 1 to 200 characters".into());
        }
        Ok(())
    }

    pub(super) fn into_task(self, deps: &Deps, now: DateTime<Utc>) -> Task {
        let timeout = self
            .timeout_seconds
            .unwrap_or(deps.config.default_timeout.as_secs());
        Task {
            id: crate::table::tasks::new_id(&self.queue_name),
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
            webhook_headers: self.webhook_headers,
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
            owner: self.owner,
            traceparent: crate::trace::current_header(),
            claim: None,
            version: 1,
        }
    }
}

/// Enqueue one task. Once its write has committed, its message is sent
/// even if the caller goes away (see [`dispatch::detached`]).
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
    dispatch::detached(async move { store_and_send(&deps, task, now).await }).await
}

async fn store_and_send(
    deps: &Deps,
    task: Task,
    now: DateTime<Utc>,
) -> Result<Enqueued, ServiceError> {
    let plan = dispatch::plan(deps, &task, now);
    if let Dispatch::Send { delay, .. } = plan
        && deps.config.send_first
        && task.idempotency_key.is_none()
    {
        return send_then_store(deps, task, delay).await;
    }
    let mut ops = deps.tasks().write(None, &task, Some(plan.timer()));
    let claim = task
        .idempotency_key
        .as_ref()
        .map(|k| idempotency::claim(k, task.id, now, now + IDEMPOTENCY_WINDOW));
    let claim_index = claim.as_ref().map(|_| ops.len());
    ops.extend(claim);
    match deps.store.transact(ops).await {
        Ok(()) => {}
        Err(StoreError::Conflict { op }) if Some(op) == claim_index => {
            let key = task.idempotency_key.as_deref().unwrap_or_default();
            return match idempotency::holder(&*deps.store, key).await? {
                Some(id) => {
                    send_again_if_pending(deps, id, now).await;
                    Ok(Enqueued::Existing(id))
                }
                // It expired between our write and this read: a retry will create it.
                None => Err(ServiceError::Conflict {
                    message: "idempotency key changed concurrently; retry".into(),
                    code: "idempotency_conflict",
                }),
            };
        }
        Err(e) => {
            let message = || match plan {
                Dispatch::Send { delay, .. } => Some(dispatch::message(deps, &task, delay)),
                Dispatch::Later { .. } => None,
            };
            return Err(dispatch::send_if_maybe_written(deps, e, message, "task")
                .await
                .into());
        }
    }
    deps.metrics.enqueued(&task.queue_name, 1);
    if let Dispatch::Send { delay, .. } = plan {
        let message = dispatch::message(deps, &task, delay);
        dispatch::send_or_recheck(deps, vec![message], |soon| {
            vec![dispatch::recheck(deps, &task, soon)]
        })
        .await;
    }
    Ok(Enqueued::Created(task.id))
}

/// Send the task's message, then store it with no timer: the message is
/// its outbox (the queue keeps it until a worker deletes it), and the
/// worker that receives it before the write lands waits for the record. A
/// failed send stores nothing; a failed write leaves a message whose
/// record never comes, which the worker drops once the write can no longer
/// land ([`crate::service::worker`]). Either way the caller gets the error.
/// A task with an idempotency key, or due beyond the queue's delay, takes
/// the stored-first path with its timer instead.
async fn send_then_store(
    deps: &Deps,
    task: Task,
    delay: std::time::Duration,
) -> Result<Enqueued, ServiceError> {
    deps.queue
        .send_batch(
            &deps.config.task_queue,
            vec![dispatch::message(deps, &task, delay)],
        )
        .await?;
    let write = deps.store.transact(deps.tasks().write(None, &task, None));
    store_in_time(deps, task.created_at, write).await?;
    deps.metrics.enqueued(&task.queue_name, 1);
    Ok(Enqueued::Created(task.id))
}

/// How long after a task is made a write that follows its message may be
/// tried. A worker that meets the message first waits for the record until
/// [`RECORD_MAY_LAND_FOR`] after, then drops the message, so a write must
/// never land later than that: a process stalled between the send and the
/// write (suspended, or its call retried for minutes) would leave a pending
/// task that nothing sends. Stopped here, the write leaves a minute's margin
/// for clocks and eventually consistent reads.
const STORE_WITHIN: chrono::Duration = chrono::Duration::minutes(4);
/// See [`STORE_WITHIN`].
pub(crate) const RECORD_MAY_LAND_FOR: chrono::Duration = chrono::Duration::minutes(5);

/// Run `write`, the write of tasks whose messages were sent first, made at
/// `created_at`, only until [`STORE_WITHIN`] after: past that it is
/// abandoned (a call not yet made is not made) and the enqueue fails.
async fn store_in_time<E: Into<ServiceError>>(
    deps: &Deps,
    created_at: DateTime<Utc>,
    write: impl std::future::Future<Output = Result<(), E>>,
) -> Result<(), ServiceError> {
    let left = (created_at + STORE_WITHIN - deps.now())
        .to_std()
        .unwrap_or_default();
    match tokio::time::timeout(left, write).await {
        Ok(written) => written.map_err(Into::into),
        Err(_) => Err(ServiceError::Unavailable {
            message: "the task store did not answer in time; the tasks were not enqueued: retry"
                .into(),
            code: "unavailable",
        }),
    }
}

/// A repeated enqueue found its key's first task. The request that made it
/// may have stored it and failed before sending its message (its answer
/// lost, its retries spent), and the client, or a pipeline step, is trying
/// again because of that failure: if the task is still pending, send it
/// again now rather than leave it to its re-dispatch timer. A message
/// that was not lost makes this one a duplicate, which the worker drops.
/// Best effort: the timer still covers a failure here.
async fn send_again_if_pending(deps: &Deps, id: Uuid, now: DateTime<Utc>) {
    let pending = match deps.tasks().get(id).await {
        Ok(Some(task)) if task.status == TaskStatus::Pending => task,
        Ok(_) => return,
        Err(e) => {
            tracing::warn!(task_id = %id, error = %e, "could not read a repeated key's task; its timer re-sends it");
            return;
        }
    };
    if let Err(e) = dispatch::redispatch(deps, &pending, now).await {
        tracing::warn!(task_id = %id, error = %e, "could not send a repeated key's task again; its timer re-sends it");
    }
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
    let sizes = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| check_size(t).map_err(|e| at_index(i, e)))
        .collect::<Result<Vec<usize>, _>>()?;
    let mut ephemeral = Vec::new();
    let mut ids = Vec::with_capacity(tasks.len());
    let mut parts = Vec::new();
    let mut part = Part::default();
    let mut counters: std::collections::BTreeMap<(u32, String), i64> = Default::default();
    let mut per_queue: std::collections::BTreeMap<String, u64> = Default::default();
    // Tasks of a queue and priority that may share a chunk, with their
    // places in `ids`.
    let mut groups: std::collections::BTreeMap<(String, i32), Vec<(usize, Task)>> =
        Default::default();
    let table = deps.tasks();
    for (task, size) in tasks.into_iter().zip(sizes) {
        *per_queue.entry(task.queue_name.clone()).or_default() += 1;
        if task.ttl_seconds == Some(0.0) {
            ephemeral.push(ephemeral_message(&task)?);
            ids.push(None);
            continue;
        }
        if chunkable(deps, &task, size, now) {
            let group = groups
                .entry((task.queue_name.clone(), task.priority))
                .or_default();
            group.push((ids.len(), task));
            ids.push(None);
            if group.len() == chunks::CHUNK_TASKS {
                let group = std::mem::take(group);
                part.make_room(&mut parts, &mut counters, 2);
                part.add_chunk(deps, group, &mut ids, &mut counters);
            }
            continue;
        }
        ids.push(Some(task.id));
        // Counters are summed per part: one add per (shard, queue), not per
        // task (none where the change stream counts).
        let shard_key = (tasks::counter_shard(&task), task.queue_name.clone());
        part.make_room(&mut parts, &mut counters, 2);
        let plan = dispatch::plan(deps, &task, now);
        // A task sent before it is stored needs no timer (`send_then_store`).
        let timer = match plan {
            Dispatch::Send { .. } if deps.config.send_first => None,
            _ => Some(plan.timer()),
        };
        part.ops.push(table.put(None, &task, timer));
        if let Dispatch::Send { delay, .. } = plan {
            part.messages.push(dispatch::message(deps, &task, delay));
            part.sent.push(task);
        }
        if !deps.config.counts_from_stream {
            *counters.entry(shard_key).or_default() += 1;
        }
    }
    for group in groups.into_values().filter(|g| !g.is_empty()) {
        part.make_room(&mut parts, &mut counters, 2);
        part.add_chunk(deps, group, &mut ids, &mut counters);
    }
    if !part.ops.is_empty() {
        parts.push(part.close(&mut counters));
    }
    // Tasks that are not stored exist only as messages: if they cannot be
    // sent, the request fails before anything is written.
    if !ephemeral.is_empty() {
        deps.queue
            .send_batch(&deps.config.task_queue, ephemeral)
            .await?;
    }
    let deps = deps.clone();
    dispatch::detached(async move {
        // Parts are written concurrently so they share group commits (one
        // fsync for the lot, not one per part); each part stays atomic and
        // sends its own messages once written.
        let mut writes = tokio::task::JoinSet::new();
        for part in parts {
            let deps = deps.clone();
            writes.spawn(async move { part.store_and_send(&deps).await }.in_current_span());
        }
        let mut outcome = Ok(());
        while let Some(done) = writes.join_next().await {
            let result = done.unwrap_or_else(|crash| Err(ServiceError::Crashed(crash.to_string())));
            if let (Err(e), Ok(())) = (result, &outcome) {
                outcome = Err(e);
            }
        }
        outcome?;
        for (queue, n) in &per_queue {
            deps.metrics.enqueued(queue, *n);
        }
        Ok(ids)
    })
    .await
}

/// One atomic write of a batch: its operations, and the messages of the
/// tasks it stores (with those tasks, to bring their timers forward if the
/// messages are lost).
#[derive(Default)]
struct Part {
    ops: Vec<WriteOp>,
    messages: Vec<OutgoingMessage>,
    sent: Vec<Task>,
}

impl Part {
    /// The part with one counter add per (shard, queue) it touches.
    fn close(&mut self, counters: &mut std::collections::BTreeMap<(u32, String), i64>) -> Part {
        for ((shard, queue), n) in std::mem::take(counters) {
            self.ops.push(tasks::pending_added(shard, &queue, n));
        }
        std::mem::take(self)
    }

    /// Where `more` operations would not fit one transaction with this
    /// part's counter adds, close it into `parts` and start a new one.
    fn make_room(
        &mut self,
        parts: &mut Vec<Part>,
        counters: &mut std::collections::BTreeMap<(u32, String), i64>,
        more: usize,
    ) {
        if self.ops.len() + counters.len() + more > MAX_TRANSACT_OPS {
            parts.push(self.close(counters));
        }
    }

    /// Add a chunk of `group`'s tasks (one item, one message), giving each
    /// its id in the chunk, in its place in `ids`.
    fn add_chunk(
        &mut self,
        deps: &Deps,
        group: Vec<(usize, Task)>,
        ids: &mut [Option<Uuid>],
        counters: &mut std::collections::BTreeMap<(u32, String), i64>,
    ) {
        let Some((_, first)) = group.first() else {
            return;
        };
        let (base, members) = chunks::new_ids(&first.queue_name, group.len());
        if !deps.config.counts_from_stream {
            let shard = crate::table::tagged::shard_of(base);
            *counters
                .entry((shard, first.queue_name.clone()))
                .or_default() += group.len() as i64;
        }
        let mut tasks = Vec::with_capacity(group.len());
        for ((at, mut task), id) in group.into_iter().zip(members) {
            task.id = id;
            ids[at] = Some(id);
            tasks.push(task);
        }
        let message = dispatch::chunk_message(base, &tasks[0]);
        let chunk = chunks::Chunk::new(base, tasks);
        self.ops.push(deps.tasks().new_chunk(&chunk));
        self.messages.push(message);
        self.sent.extend(chunk.members.into_values());
    }

    /// Store the part and send its messages: in that order, with timers
    /// that re-send a lost message, or, where enqueues send first
    /// ([`send_then_store`]), the messages first and nothing stored if they
    /// cannot be sent.
    async fn store_and_send(self, deps: &Deps) -> Result<(), ServiceError> {
        if deps.config.send_first {
            deps.queue
                .send_batch(&deps.config.task_queue, self.messages)
                .await?;
            let Some(made) = self.sent.first().map(|t| t.created_at) else {
                return store(deps, self.ops).await;
            };
            return store_in_time(deps, made, store(deps, self.ops)).await;
        }
        store(deps, self.ops).await?;
        let sent = self.sent;
        dispatch::send_or_recheck(deps, self.messages, |soon| {
            sent.iter()
                .map(|t| dispatch::recheck(deps, t, soon))
                .collect()
        })
        .await;
        Ok(())
    }
}

/// Write a part's operations: atomically with its counter adds, or, where
/// the change stream counts and nothing else must change with them, as
/// plain batch writes of new tasks (fresh ids), half the units of a
/// transaction.
async fn store(deps: &Deps, ops: Vec<WriteOp>) -> Result<(), ServiceError> {
    if !deps.config.counts_from_stream {
        return Ok(deps.store.transact(ops).await?);
    }
    let items = ops.into_iter().filter_map(|op| match op {
        WriteOp::Put { item, .. } => Some(item),
        _ => None,
    });
    Ok(deps.store.put_batch(items.collect()).await?)
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

/// Whether a task of a batch may share a chunk (and its writes) with
/// others ([`crate::table::tasks::chunks`]): only where the message is the
/// outbox, and only a task due now that is small (`size`: its JSON's
/// bytes), needs no timer, index or webhook, and whose lease its message
/// can hold. Every other task is stored alone.
fn chunkable(deps: &Deps, task: &Task, size: usize, now: DateTime<Utc>) -> bool {
    deps.config.send_first
        && size <= CHUNKED_TASK_BYTES
        && task.webhook_url.is_none()
        && matches!(dispatch::plan(deps, task, now), Dispatch::Send { delay, .. } if delay.is_zero())
        && deps.tasks().fits_a_chunk(task, None)
        && task
            .start(now, deps.config.lease_grace)
            .is_ok_and(|running| dispatch::message_holds_lease(deps, &running, now))
}

/// The largest task a chunk takes: ten of them stay far below an item's
/// 400 KB, and a write of one task of a chunk costs little more than its
/// own would.
const CHUNKED_TASK_BYTES: usize = 2048;

/// A task must fit in one queue message and one table item: its size in
/// bytes of JSON, if it does.
fn check_size(task: &Task) -> Result<usize, ServiceError> {
    let size = serde_json::to_vec(task)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    ServiceError::check_message_size("task", size).map(|()| size)
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
    deps.metrics.enqueued(&task.queue_name, 1);
    Ok(())
}

// ----- reading a NewTask as clients write it

fn default_queue() -> String {
    DEFAULT_QUEUE.into()
}

fn default_max_retries() -> u32 {
    DEFAULT_MAX_RETRIES
}

fn yes() -> bool {
    true
}

/// A value, or its type's default when null.
fn or_default<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(
    d: D,
) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn or_default_queue<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_else(default_queue))
}

fn or_default_max_retries<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    Ok(Option::<u32>::deserialize(d)?.unwrap_or(DEFAULT_MAX_RETRIES))
}

fn or_yes<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(d)?.unwrap_or(true))
}

/// A JSON object or null; anything else is refused in lapinq's words
/// ("metadata must be a JSON object").
fn object<'de, D: Deserializer<'de>>(d: D) -> Result<Map<String, Value>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m),
        Some(_) => Err(serde::de::Error::custom("must be a JSON object")),
    }
}

/// A JSON array or null.
fn array<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Value>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(serde::de::Error::custom("must be a JSON array")),
    }
}

/// ISO 8601 with an offset, or without one (read as UTC, as lapinq writes them).
fn timestamp<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    let Some(s) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    parse_timestamp(&s)
        .map(Some)
        .ok_or_else(|| serde::de::Error::custom(format!("`{s}` is not an ISO 8601 date-time")))
}

/// Parse an ISO 8601 date-time, with or without offset.
pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
    .map(|n| n.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_with_and_without_offset_are_utc() {
        let z = parse_timestamp("2026-06-15T12:00:00Z").unwrap();
        assert_eq!(parse_timestamp("2026-06-15T12:00:00").unwrap(), z);
        assert_eq!(parse_timestamp("2026-06-15T14:00:00+02:00").unwrap(), z);
        assert_eq!(parse_timestamp("2026-06-15 12:00:00.000").unwrap(), z);
        assert!(parse_timestamp("tomorrow").is_none());
        assert!(parse_timestamp("2026-13-01T00:00:00Z").is_none());
    }

    #[test]
    fn omitted_and_null_fields_take_the_defaults() {
        let t: NewTask =
            serde_json::from_str(r#"{"task_name": "echo", "queue_name": null, "args": null, "max_retries": null, "retry_backoff": null}"#)
                .unwrap();
        assert_eq!(t, NewTask::named("echo", "default"));
        assert_eq!(t.max_retries, 3);
        assert!(t.retry_backoff);
    }
}
