//! Start and finish a task: what the worker does with each queue message.
//!
//! Delivery is at least once. The pending → running compare-and-set makes a
//! duplicate message a no-op, so a task body runs once per attempt.

use std::time::{Duration, Instant};
use tracing::Instrument;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::dispatch::{self, Dispatch};
use super::identity::secrets::Resolving;
use super::webhook;
use super::{Deps, ServiceError, claim_token, while_unavailable, write_while_unavailable};
use crate::domain::{AfterFailure, Task, TaskStatus, TransitionError};
use crate::handlers::{TaskContext, TaskFailure};
use crate::messages::TaskMessage;
use crate::ports::{OutgoingMessage, StoreError};
use crate::table::tasks::chunks::Chunk;
use crate::trace::SpanKind;

/// Handle one message. `Ok` means the message is done with (delete it);
/// `Err` means a backend failed and the message should come back later.
pub async fn process(deps: &Deps, body: &str) -> Result<(), ServiceError> {
    let message = match TaskMessage::decode(body) {
        Ok(m) => m,
        Err(e) => {
            // Not ours to retry: it will never parse. Logged, counted, dropped.
            tracing::error!(error = %e, "dropping a malformed task message");
            deps.metrics.malformed_message();
            return Ok(());
        }
    };
    match message {
        TaskMessage::Stored { id } => run_stored(deps, id, created_at_of(id)).await,
        TaskMessage::Chunk { chunk, created_at } => run_chunk(deps, chunk, created_at).await,
        TaskMessage::Snapshot { snapshot } => {
            let (id, created_at) = (snapshot.id, snapshot.created_at);
            match run_pending(deps, *snapshot).await? {
                Start::Stale => run_stored(deps, id, Some(created_at)).await,
                Start::Done => Ok(()),
            }
        }
        TaskMessage::Inline { task } => run_inline(deps, *task).await,
        TaskMessage::Webhook {
            webhook: id,
            attempt,
        } => webhook::deliver_stored(deps, id, attempt).await,
        TaskMessage::InlineWebhook {
            webhook_task,
            attempt,
        } => webhook::deliver_inline(deps, *webhook_task, attempt).await,
        TaskMessage::Execution { execution } => super::executions::run(deps, execution).await,
    }
}

/// When a task id was made (UUIDv7 ids carry it).
fn created_at_of(id: Uuid) -> Option<DateTime<Utc>> {
    let (secs, nanos) = id.get_timestamp()?.to_unix();
    DateTime::from_timestamp(i64::try_from(secs).ok()?, nanos)
}

/// How long after a task was made its enqueue's write may still land: the
/// write follows the send at once, and is abandoned if it has not been
/// made a minute before this ([`super::enqueue::RECORD_MAY_LAND_FOR`]).
const WRITE_MAY_LAND_FOR: chrono::Duration = super::enqueue::RECORD_MAY_LAND_FOR;
/// How long a worker waits for the record of a message that came first,
/// and how often it looks.
const RECORD_WAIT: Duration = Duration::from_secs(5);
const RECORD_POLL: Duration = Duration::from_millis(100);

async fn run_stored(
    deps: &Deps,
    id: Uuid,
    created_at: Option<DateTime<Utc>>,
) -> Result<(), ServiceError> {
    let Some((task, timer)) = read_stored(deps, id, created_at).await? else {
        tracing::debug!(task_id = %id, "message for a task that is gone");
        return Ok(());
    };
    if task.status == TaskStatus::Running && timer.is_none() {
        return held_by_its_message(deps, &task).await;
    }
    run_pending(deps, task).await.map(|_| ())
}

/// The task and its timer, waited for as [`wait_for_record`] says.
async fn read_stored(
    deps: &Deps,
    id: Uuid,
    created_at: Option<DateTime<Utc>>,
) -> Result<Option<(Task, Option<DateTime<Utc>>)>, ServiceError> {
    wait_for_record(deps, id, created_at, || async move {
        deps.tasks().get_with_timer(id).await
    })
    .await
}

/// The record `read` reads, made at `created_at`. Where enqueues send
/// before they store ([`crate::Config::send_first`]), a message may come
/// before its record: while the write may still land, wait a little for
/// it, then have the message come back later; after that, no record means
/// the enqueue failed (and said so) or the record was deleted, and the
/// message is done with.
async fn wait_for_record<T, F, Fut>(
    deps: &Deps,
    id: Uuid,
    created_at: Option<DateTime<Utc>>,
    read: F,
) -> Result<Option<T>, ServiceError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, StoreError>>,
{
    let until = hold_until(deps, deps.now());
    let mut waited = Duration::ZERO;
    loop {
        let (found, _) = while_unavailable(deps, until, id, &read).await;
        let found = found?;
        let may_land = deps.config.send_first
            && created_at.is_some_and(|at| deps.now() - at < WRITE_MAY_LAND_FOR);
        if found.is_some() || !may_land {
            return Ok(found);
        }
        if waited >= RECORD_WAIT {
            return Err(ServiceError::Unavailable {
                message: format!("task {id} is not stored yet; its message comes back later"),
                code: "not_stored_yet",
            });
        }
        tokio::time::sleep(RECORD_POLL).await;
        waited += RECORD_POLL;
    }
}

/// Run the tasks of a chunk ([`crate::table::tasks::chunks`]): start every one
/// this message may start in one write, run them together, and record
/// their completions in one write. The others (a task whose lease the
/// message cannot hold, or left running by a worker that died) go as a
/// task of its own would, and so does a failed attempt: a retry needs a
/// timer and a failure an index, so [`crate::table::tasks::Tasks::save`]
/// moves the task out of its chunk.
async fn run_chunk(deps: &Deps, base: Uuid, created_at: DateTime<Utc>) -> Result<(), ServiceError> {
    let created_at = Some(created_at);
    let read = || async move { deps.tasks().chunk(base).await };
    let Some(chunk) = wait_for_record(deps, base, created_at, read).await? else {
        tracing::debug!(chunk = %base, "message for a chunk that is gone");
        return Ok(());
    };
    let until = hold_until(deps, deps.now());
    let started = change_chunk(deps, chunk, until, |chunk, now| {
        let claim = claim_token(deps);
        let (mut started, mut others) = (Vec::new(), Vec::new());
        for task in chunk.members.values() {
            match startable(deps, task, now) {
                Some(mut running) => {
                    running.claim = Some(claim);
                    started.push(running);
                }
                None if !task.status.is_final() => others.push(task.id),
                None => {}
            }
        }
        let next = (!started.is_empty()).then(|| chunk.with(&started));
        (next, (started, others, now))
    })
    .await?;
    let Some((chunk, (started, others, now))) = started else {
        return Ok(());
    };
    for t in &started {
        count_start(deps, t, now);
    }
    let alone = futures_util::future::join_all(
        others
            .into_iter()
            .map(|id| run_stored(deps, id, created_at)),
    );
    let (alone, together) = tokio::join!(alone, run_together(deps, chunk, started));
    alone.into_iter().chain([together]).collect()
}

/// Write the chunk `change` makes of `chunk` at `now` (`None`: nothing to
/// write), held while the store is unavailable until `until`; where
/// another write moved the chunk on, read it again and change that. Returns
/// the chunk as written (or as read, where nothing was) with what the
/// change that stuck said; `None` once the chunk is gone.
async fn change_chunk<T>(
    deps: &Deps,
    mut chunk: Chunk,
    until: DateTime<Utc>,
    mut change: impl FnMut(&Chunk, DateTime<Utc>) -> (Option<Chunk>, T),
) -> Result<Option<(Chunk, T)>, ServiceError> {
    loop {
        let (next, said) = change(&chunk, deps.now());
        let Some(next) = next else {
            return Ok(Some((chunk, said)));
        };
        match save_chunk_until(deps, &chunk, &next, until).await {
            Ok(()) => return Ok(Some((next, said))),
            Err(e) if e.is_conflict() => match deps.tasks().chunk(chunk.base).await? {
                Some(read) => chunk = read,
                None => return Ok(None),
            },
            Err(e) => return Err(e.into()),
        }
    }
}

/// `task` started at `now`, if this message may start it in its chunk:
/// pending, due, within its TTL, and with a lease its message holds.
fn startable(deps: &Deps, task: &Task, now: DateTime<Utc>) -> Option<Task> {
    if task.status != TaskStatus::Pending
        || !task.is_due(now)
        || task.expires_at().is_some_and(|at| at <= now)
    {
        return None;
    }
    let running = task.start(now, deps.config.lease_grace).ok()?;
    dispatch::message_holds_lease(deps, &running, now).then_some(running)
}

/// Run the tasks started in `chunk` together, then record their outcomes:
/// the completions in one write, each failure as its own task's.
async fn run_together(deps: &Deps, chunk: Chunk, started: Vec<Task>) -> Result<(), ServiceError> {
    let outcomes =
        futures_util::future::join_all(started.iter().map(|t| run_attempt(deps, t))).await;
    let mut completed = Vec::new();
    let mut alone = Vec::new();
    for (task, outcome) in started.into_iter().zip(outcomes) {
        match outcome {
            Ok(value) if task.webhook_url.is_none() => completed.push((task, value)),
            other => alone.push(finish(deps, task, other)),
        }
    }
    let (together, alone) = tokio::join!(
        complete_together(deps, chunk, completed),
        futures_util::future::join_all(alone)
    );
    [together].into_iter().chain(alone).collect()
}

/// Record the completions of attempts of `chunk`'s tasks in one write,
/// over the chunk as it is then (a progress report may have moved a task
/// on): each onto its task if the attempt was not taken over meanwhile.
async fn complete_together(
    deps: &Deps,
    chunk: Chunk,
    completed: Vec<(Task, Value)>,
) -> Result<(), ServiceError> {
    let Some(until) = completed.iter().filter_map(|(t, _)| t.lease_until).min() else {
        return Ok(());
    };
    let written = change_chunk(deps, chunk, until, |chunk, now| {
        let done: Vec<Task> = completed
            .iter()
            .filter_map(|(ran, value)| {
                let current = chunk.get(ran.id)?;
                let same_attempt =
                    current.status == TaskStatus::Running && current.attempts == ran.attempts;
                same_attempt.then(|| complete(current, now, value).ok())?
            })
            .collect();
        ((!done.is_empty()).then(|| chunk.with(&done)), done)
    })
    .await?;
    let done = written.map(|(_, done)| done).unwrap_or_default();
    if done.len() < completed.len() {
        tracing::info!(
            taken_over = completed.len() - done.len(),
            "attempts of a chunk were taken over; their outcomes are dropped"
        );
    }
    for t in &done {
        deps.metrics.finished(&t.queue_name, true);
    }
    Ok(())
}

/// Write `next` over `prev`, held while the store is unavailable until
/// `until` (see [`write_while_unavailable`]).
async fn save_chunk_until(
    deps: &Deps,
    prev: &Chunk,
    next: &Chunk,
    until: DateTime<Utc>,
) -> Result<(), StoreError> {
    write_while_unavailable(
        deps,
        until,
        (next.base, next),
        || async move { deps.tasks().save_chunk(prev, next).await },
        || async move { deps.tasks().chunk(next.base).await },
    )
    .await
}

/// A message for a running task whose lease its own message holds (it has
/// no timer: see [`dispatch::message_holds_lease`]): that message back after its
/// worker died, or a duplicate. Past the lease, the attempt is lost: take
/// it over, as the scheduler does with a lease timer. Before, the attempt
/// may still run: the message must come back later, not go, since it may
/// be the one that stands for the lease.
async fn held_by_its_message(deps: &Deps, task: &Task) -> Result<(), ServiceError> {
    let now = deps.now();
    if !lapsed(task, now) {
        return Err(ServiceError::Unavailable {
            message: format!(
                "task {} is running within its lease; its message comes back later",
                task.id
            ),
            code: "attempt_running",
        });
    }
    let why =
        "attempt lost: its message came back after its lease ran out (worker crashed or stalled)";
    match rescue(deps, task, now, why).await {
        // Another worker or the scheduler took it over first.
        Err(e) if e.is_conflict() => Ok(()),
        other => other,
    }
}

/// Whether `task`'s attempt is lost: running past its lease.
pub(crate) fn lapsed(task: &Task, now: DateTime<Utc>) -> bool {
    task.status == TaskStatus::Running && task.lease_until.is_some_and(|l| l <= now)
}

/// Count a lost attempt as failed and retry or fail the task, as the
/// worker would.
pub(crate) async fn rescue(
    deps: &Deps,
    task: &Task,
    now: DateTime<Utc>,
    why: &str,
) -> Result<(), ServiceError> {
    let after = task
        .fail(now, why.to_string(), true, deps.clock.jitter())
        .map_err(invalid_transition)?;
    tracing::warn!(task_id = %task.id, attempt = task.attempts, "{why}");
    let next = match after {
        AfterFailure::Retry(t, _) => After::Retry(t),
        AfterFailure::Failed(t) => After::Done(t),
    };
    // The scheduler's next sweep tries again: no waiting here.
    apply(deps, task, next, now).await
}

/// What became of a message's task.
enum Start {
    /// Run, held back, or dropped as a duplicate: the message is done with.
    Done,
    /// The task is no longer at the version the caller had.
    Stale,
}

/// Start `task` (as last seen) with a compare-and-set and run one attempt.
async fn run_pending(deps: &Deps, task: Task) -> Result<Start, ServiceError> {
    let id = task.id;
    if task.status != TaskStatus::Pending {
        // A duplicate delivery, or the task was cancelled or expired.
        tracing::debug!(task_id = %id, status = task.status.as_str(), "task not pending; message dropped");
        return Ok(Start::Done);
    }
    let now = deps.now();
    if task.expires_at().is_some_and(|at| at <= now) {
        // Its TTL ran out before this attempt: it must not start, though
        // the scheduler's sweep has not expired it yet.
        return match expire(deps, &task, now).await {
            Err(e) if e.is_conflict() => Ok(Start::Stale),
            other => other.map(|()| Start::Done),
        };
    }
    if !task.is_due(now) {
        // Sent early (re-dispatch of a retry that is not due yet): hold it back again.
        // Not at this version (a snapshot whose record moved on or is not
        // stored yet): the caller reads the record and decides from it.
        return dispatch::redispatch(deps, &task, now)
            .await
            .map(|refiled| if refiled { Start::Done } else { Start::Stale });
    }
    let mut running = task
        .start(now, deps.config.lease_grace)
        .map_err(invalid_transition)?;
    running.claim = Some(claim_token(deps));
    let until = hold_until(deps, now);
    let timer = running
        .lease_until
        .filter(|_| !dispatch::message_holds_lease(deps, &running, now));
    match save_until(deps, &task, &running, timer, until).await {
        Err(e) if e.is_conflict() => return Ok(Start::Stale),
        other => other?,
    }
    count_start(deps, &running, now);
    let outcome = run_attempt(deps, &running).await;
    finish(deps, running, outcome).await.map(|_| Start::Done)
}

/// pending → expired at `now`, its TTL having run out before it ran (the
/// worker that would start it, and the scheduler's sweep).
pub(crate) async fn expire(
    deps: &Deps,
    task: &Task,
    now: DateTime<Utc>,
) -> Result<(), ServiceError> {
    let expired = task.expire(now).map_err(invalid_transition)?;
    deps.tasks().save(task, &expired, None).await?;
    deps.metrics.expired(&task.queue_name);
    Ok(())
}

/// Count an attempt that starts at `now`, and how long after its task was due.
fn count_start(deps: &Deps, running: &Task, now: DateTime<Utc>) {
    let pickup = (now - running.due_at()).to_std().unwrap_or_default();
    deps.metrics.started(&running.queue_name, pickup);
}

/// Run the handler under the task's timeout; a timeout is a retryable failure.
async fn run_attempt(deps: &Deps, task: &Task) -> Result<Value, TaskFailure> {
    let ctx = TaskContext {
        task_id: Some(task.id),
        task_name: task.task_name.clone(),
        args: task.args.clone(),
        kwargs: task.kwargs.clone(),
        attempt: task.attempts,
        // Its owner's stored secrets go into its calls at send time.
        http: Resolving::client(deps, task.owner),
    };
    let started = Instant::now();
    let limit = Duration::from_secs(task.timeout_seconds);
    // On its own tokio task, so a panicking handler fails its attempt (and
    // is retried per the task's policy) instead of taking the worker down.
    let trace = crate::trace::of(task.traceparent.as_deref());
    let (queue, id, attempt) = (task.queue_name.clone(), task.id, task.attempts);
    let run = crate::trace::traced(
        &task.task_name,
        SpanKind::Consumer,
        trace,
        deps.handlers.run(ctx),
        move |outcome, span| {
            span.set("warren.queue", queue);
            span.set("warren.task_id", id);
            span.set_int("warren.attempt", attempt);
            if let Err(f) = outcome {
                span.fail(&f.message);
            }
        },
    );
    let mut run = tokio::spawn(run.in_current_span());
    let outcome = match tokio::time::timeout(limit, &mut run).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(TaskFailure::retry(format!("handler crashed: {e}"))),
        Err(_) => {
            run.abort();
            Err(TaskFailure::retry(format!(
                "timed out after {} s",
                task.timeout_seconds
            )))
        }
    };
    deps.metrics
        .attempt_ran(&task.queue_name, started.elapsed());
    outcome
}

/// Record the attempt's outcome with a compare-and-set, re-reading when a
/// progress report moved the version; give up if the attempt was taken over
/// (rescued after its lease, or the task deleted).
async fn finish(
    deps: &Deps,
    mut current: Task,
    outcome: Result<Value, TaskFailure>,
) -> Result<(), ServiceError> {
    let attempt = current.attempts;
    loop {
        let now = deps.now();
        let next = match &outcome {
            Ok(v) => After::Done(complete(&current, now, v)?),
            Err(f) => match current
                .fail(now, f.message.clone(), f.retryable, deps.clock.jitter())
                .map_err(invalid_transition)?
            {
                AfterFailure::Retry(t, _) => After::Retry(t),
                AfterFailure::Failed(t) => After::Done(t),
            },
        };
        // The outcome is in hand: writing it is worth waiting for while the
        // lease holds, or the attempt runs again once the lease runs out.
        let until = current.lease_until.unwrap_or(now);
        match apply(deps, &current, next, until).await {
            Err(e) if e.is_conflict() => match deps.tasks().get(current.id).await? {
                Some(t) if t.status == TaskStatus::Running && t.attempts == attempt => current = t,
                _ => {
                    tracing::info!(task_id = %current.id, "attempt was taken over; its outcome is dropped");
                    return Ok(());
                }
            },
            other => return other,
        }
    }
}

fn complete(task: &Task, now: DateTime<Utc>, value: &Value) -> Result<Task, ServiceError> {
    task.complete(now, value.to_string())
        .map_err(invalid_transition)
}

/// A transition the state machine refused, as the use cases report it.
pub(crate) fn invalid_transition(e: TransitionError) -> ServiceError {
    ServiceError::Conflict {
        message: e.to_string(),
        code: "invalid_transition",
    }
}

/// Where a finished attempt leaves the task.
pub enum After {
    /// Pending again, to retry.
    Retry(Task),
    /// Completed or failed for good.
    Done(Task),
}

/// Write the attempt's outcome over `current` (trying again while the store
/// is unavailable, until `until`), then release the retry or announce the
/// end (webhook). Shared by the worker and the lease rescue.
pub async fn apply(
    deps: &Deps,
    current: &Task,
    next: After,
    until: DateTime<Utc>,
) -> Result<(), ServiceError> {
    let now = deps.now();
    match next {
        After::Retry(t) => {
            let plan = dispatch::plan(deps, &t, now);
            save_until(deps, current, &t, Some(plan.timer()), until).await?;
            deps.metrics.retried(&t.queue_name);
            if let Dispatch::Send { delay, .. } = plan {
                let message = dispatch::message(deps, &t, delay);
                dispatch::send_or_recheck(deps, vec![message], |soon| {
                    vec![dispatch::recheck(deps, &t, soon)]
                })
                .await;
            }
        }
        After::Done(mut t) => {
            let announces = t.webhook_url.is_some();
            if announces {
                t.webhook = Some(webhook::pending_outcome(now));
            }
            // A pending webhook keeps a timer so a lost message is re-sent.
            let timer = announces.then(|| now + redispatch_window(deps));
            save_until(deps, current, &t, timer, until).await?;
            deps.metrics
                .finished(&t.queue_name, t.status == TaskStatus::Completed);
            if announces {
                let message = OutgoingMessage {
                    body: TaskMessage::Webhook {
                        webhook: t.id,
                        attempt: 1,
                    }
                    .encode(),
                    priority: t.priority,
                    ..Default::default()
                };
                dispatch::send_or_recheck(deps, vec![message], |soon| {
                    vec![dispatch::recheck(deps, &t, soon)]
                })
                .await;
            }
        }
    }
    Ok(())
}

fn redispatch_window(deps: &Deps) -> chrono::Duration {
    chrono::Duration::from_std(deps.config.redispatch_after).unwrap_or_default()
}

/// Save a task's transition, held while the store is unavailable until
/// `until` (see [`write_while_unavailable`]).
async fn save_until(
    deps: &Deps,
    prev: &Task,
    next: &Task,
    timer: Option<DateTime<Utc>>,
    until: DateTime<Utc>,
) -> Result<(), StoreError> {
    write_while_unavailable(
        deps,
        until,
        (next.id, next),
        || async move { deps.tasks().save(prev, next, timer).await },
        || async move { deps.tasks().get(next.id).await },
    )
    .await
}

/// How long a worker holds a message while the store is unavailable: half
/// its visibility, so it is not delivered again meanwhile.
fn hold_until(deps: &Deps, now: DateTime<Utc>) -> DateTime<Utc> {
    now + chrono::Duration::from_std(deps.config.visibility / 2).unwrap_or_default()
}

/// Run a task that is not stored: no state to change, so retries and the
/// webhook travel in messages; its states still come from the state machine.
async fn run_inline(deps: &Deps, task: Task) -> Result<(), ServiceError> {
    let now = deps.now();
    let running = task
        .start(now, deps.config.lease_grace)
        .map_err(invalid_transition)?;
    count_start(deps, &running, now);
    let outcome = run_attempt(deps, &running).await;
    let now = deps.now();
    let done = match outcome {
        Ok(v) => running
            .complete(now, v.to_string())
            .map_err(invalid_transition)?,
        Err(f) => match running
            .fail(now, f.message, f.retryable, deps.clock.jitter())
            .map_err(invalid_transition)?
        {
            AfterFailure::Retry(t, at) => {
                deps.metrics.retried(&t.queue_name);
                let delay = (at - now)
                    .to_std()
                    .unwrap_or_default()
                    .min(crate::ports::MAX_DELAY);
                let message = OutgoingMessage {
                    body: TaskMessage::Inline {
                        task: Box::new(t.clone()),
                    }
                    .encode(),
                    delay,
                    priority: t.priority,
                    ..Default::default()
                };
                deps.queue
                    .send_batch(&deps.config.task_queue, vec![message])
                    .await?;
                return Ok(());
            }
            AfterFailure::Failed(t) => t,
        },
    };
    deps.metrics
        .finished(&done.queue_name, done.status == TaskStatus::Completed);
    if done.webhook_url.is_some() {
        let message = OutgoingMessage {
            body: TaskMessage::InlineWebhook {
                webhook_task: Box::new(done),
                attempt: 1,
            }
            .encode(),
            ..Default::default()
        };
        deps.queue
            .send_batch(&deps.config.task_queue, vec![message])
            .await?;
    }
    Ok(())
}
