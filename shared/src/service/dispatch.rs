//! How stored work reaches the task queue.
//!
//! A pending task is released by a message now (with a delay the queue can
//! hold) or by a timer the scheduler fires later ([`plan`]). Either way it
//! is stored first, with a timer that is its outbox entry: a message lost
//! between the write and the send is re-sent when that timer fires. Once
//! the write has committed the send must happen, whoever was waiting:
//! - [`detached`] runs a write-then-send on a task of its own, so a request
//!   whose client hangs up (its future dropped at any `.await`) cannot stop
//!   it between the two;
//! - [`send_or_recheck`] retries a failed send briefly, and if the messages
//!   are still not sent (known lost), moves the owners' timers close, so
//!   the scheduler re-sends them within seconds instead of after the
//!   re-dispatch window that covers messages lost without anyone knowing
//!   (a crash between write and send). A backlog of tasks whose messages
//!   wait in the queue keeps its far timers: nothing is re-sent twice.

use std::future::Future;
use std::time::Duration;
use tracing::Instrument;

use chrono::{DateTime, Utc};

use super::{Deps, ServiceError};
use crate::domain::Task;
use crate::messages::TaskMessage;
use crate::ports::{MAX_DELAY, MAX_MESSAGE_BYTES, OutgoingMessage, StoreError, WriteOp};

/// Sends of one batch before its messages count as lost.
const SEND_ATTEMPTS: u32 = 3;
/// Pause before the second send; doubled before the third.
const SEND_RETRY_PAUSE: Duration = Duration::from_millis(100);
/// How soon the scheduler looks again at work whose message was lost.
pub const LOST_RECHECK: chrono::Duration = chrono::Duration::seconds(5);

/// When a pending task is released, and how.
pub enum Dispatch {
    /// Send now with this delay; the timer re-sends if it never starts.
    Send {
        delay: Duration,
        recheck_at: DateTime<Utc>,
    },
    /// Too far ahead for the queue: the scheduler sends it at this time.
    Later { at: DateTime<Utc> },
}

impl Dispatch {
    /// The timer a pending task is stored with under this plan.
    pub fn timer(&self) -> DateTime<Utc> {
        match self {
            Dispatch::Send { recheck_at, .. } => *recheck_at,
            Dispatch::Later { at } => *at,
        }
    }
}

/// How to release a pending task at `now`.
pub fn plan(deps: &Deps, task: &Task, now: DateTime<Utc>) -> Dispatch {
    let due = task.scheduled_at.unwrap_or(now).max(now);
    let wait = (due - now).to_std().unwrap_or_default();
    if wait > MAX_DELAY {
        // Hand it to the queue a little before it is due, with a delay.
        let lead =
            chrono::Duration::from_std(MAX_DELAY - Duration::from_secs(60)).unwrap_or_default();
        return Dispatch::Later { at: due - lead };
    }
    let redispatch = chrono::Duration::from_std(deps.config.redispatch_after).unwrap_or_default();
    Dispatch::Send {
        delay: wait,
        recheck_at: due + redispatch,
    }
}

/// The message that starts a stored task: the task as stored (so the
/// worker needs no read), unless that would not fit in a message or the
/// runtime prefers ids (see [`crate::Config::snapshot_messages`]).
pub fn message(deps: &Deps, task: &Task, delay: Duration) -> OutgoingMessage {
    let snapshot = deps.config.snapshot_messages.then(|| {
        TaskMessage::Snapshot {
            snapshot: Box::new(task.clone()),
        }
        .encode()
    });
    let message = OutgoingMessage {
        body: snapshot
            .filter(|s| s.len() <= MAX_MESSAGE_BYTES)
            .unwrap_or_else(|| TaskMessage::Stored { id: task.id }.encode()),
        delay,
        priority: task.priority,
        ..Default::default()
    };
    // For whatever else reads the queue; the worker reads the task's.
    crate::trace::tag(message, task.traceparent.as_deref())
}

/// Whether a running task's lease ends before its message can come back:
/// received just now (within [`RECEIVED_WITHIN`]) and hidden for the
/// queue's visibility timeout, the message returns only once the lease is
/// over, and a worker that receives it then takes the lost attempt over
/// ([`crate::service::worker`]). Then the task needs no lease timer, which
/// saves the index writes of one on every attempt (docs/COST.md). A lease
/// longer than that keeps its timer: the message would come back while the
/// attempt runs, again and again, until the queue dead-letters it. Only
/// where the queue outlives the process ([`crate::Config::send_first`]):
/// elsewhere the message dies with it, and start-up recovery finds the
/// attempts it must take over by their timers. Nor where the record may be
/// gone when the message comes back (its TTL and the expired record's
/// retention over): a worker would then find nothing to take over.
pub fn message_holds_lease(deps: &Deps, running: &Task, now: DateTime<Utc>) -> bool {
    let hidden = chrono::Duration::from_std(deps.config.visibility).unwrap_or_default();
    let back = now + hidden;
    deps.config.send_first
        && running
            .lease_until
            .is_some_and(|lease| lease <= back - RECEIVED_WITHIN)
        && running
            .expires_at()
            .is_none_or(|at| at + deps.config.expired_retention > back)
}

/// How long before an attempt starts its message may have been received
/// (a batch waits for its slots before it is received, so this is the time
/// a message waits for the tasks of its batch ahead of it to start).
const RECEIVED_WITHIN: chrono::Duration = chrono::Duration::seconds(60);

/// The message of a chunk's tasks ([`crate::table::tasks::chunks`]), sent at once,
/// with `first`'s priority and trace (a batch's tasks share its trace).
pub fn chunk_message(base: uuid::Uuid, first: &Task) -> OutgoingMessage {
    let message = OutgoingMessage {
        body: TaskMessage::Chunk {
            chunk: base,
            created_at: first.created_at,
        }
        .encode(),
        priority: first.priority,
        ..Default::default()
    };
    crate::trace::tag(message, first.traceparent.as_deref())
}

/// The writes that bring a pending task's timer forward to `soon`, at the
/// same version: a message sent meanwhile (whose send only seemed to fail)
/// still starts it.
pub fn recheck(deps: &Deps, task: &Task, soon: DateTime<Utc>) -> Vec<WriteOp> {
    deps.tasks().write(Some(task), task, Some(soon))
}

/// Run `work` on a task of its own and wait for its outcome. Dropping the
/// returned future (a client that hangs up, a request timeout) leaves the
/// work running to its end. A panic in it answers an internal error.
pub async fn detached<T, F>(work: F) -> Result<T, ServiceError>
where
    T: Send + 'static,
    F: Future<Output = Result<T, ServiceError>> + Send + 'static,
{
    tokio::spawn(work.in_current_span())
        .await
        .unwrap_or_else(|crash| Err(ServiceError::Crashed(crash.to_string())))
}

/// Send `messages` to the task queue, retrying a failed send; if they are
/// still not sent, apply the writes `recheck` builds for the time the
/// scheduler should look again (each on its own, best effort: a conflict
/// means the owner moved on, which is as good). The caller's writes have
/// committed, so this never fails: what it cannot do, the owners' timers do.
pub async fn send_or_recheck(
    deps: &Deps,
    messages: Vec<OutgoingMessage>,
    recheck: impl FnOnce(DateTime<Utc>) -> Vec<Vec<WriteOp>>,
) {
    if messages.is_empty() {
        return;
    }
    let mut pause = SEND_RETRY_PAUSE;
    for attempt in 1..=SEND_ATTEMPTS {
        match deps
            .queue
            .send_batch(&deps.config.task_queue, messages.clone())
            .await
        {
            Ok(()) => return,
            Err(e) if attempt == SEND_ATTEMPTS => {
                tracing::warn!(error = %e, messages = messages.len(), "stored but not sent; the scheduler re-sends within seconds");
            }
            Err(e) => {
                tracing::debug!(error = %e, attempt, "send failed; retrying");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
    }
    let soon = deps.now() + LOST_RECHECK;
    for ops in recheck(soon) {
        match deps.store.transact(ops).await {
            Ok(()) | Err(StoreError::Conflict { .. }) => {}
            Err(e) => {
                tracing::warn!(error = %e, "could not bring a lost message's timer forward; it fires at its re-dispatch time")
            }
        }
    }
}

/// A write failed with `err`. Where it is `Unavailable`, whether the write
/// landed is unknown: send its message anyway, so a landed write does not
/// wait for its timer (a message whose record does not exist is dropped by
/// the worker). Best effort: a failed send is only logged, the timer
/// covers it. Hands `err` back for the caller to return.
pub async fn send_if_maybe_written(
    deps: &Deps,
    err: StoreError,
    message: impl FnOnce() -> Option<OutgoingMessage>,
    what: &str,
) -> StoreError {
    if matches!(err, StoreError::Unavailable(_))
        && let Some(message) = message()
        && let Err(e) = deps
            .queue
            .send_batch(&deps.config.task_queue, vec![message])
            .await
    {
        tracing::warn!(%what, error = %e, "send failed; the scheduler will re-send");
    }
    err
}

/// Send (again) the message of a pending task that is not due yet or whose
/// message may be lost, and move its timer on. `false` when the task is
/// no longer at `task`'s version (it moved on, or, as a message's snapshot
/// of a task sent before it is stored, it is not stored yet), and nothing
/// was done.
pub async fn redispatch(
    deps: &Deps,
    task: &Task,
    now: DateTime<Utc>,
) -> Result<bool, ServiceError> {
    let plan = plan(deps, task, now);
    let next = task.refiled();
    match deps.tasks().save(task, &next, Some(plan.timer())).await {
        // (A retried write that found its own earlier try is not a
        // conflict: the store adapter tells the two apart.)
        Err(e) if e.is_conflict() => return Ok(false),
        other => other?,
    }
    if let Dispatch::Send { delay, .. } = plan {
        deps.queue
            .send_batch(&deps.config.task_queue, vec![message(deps, &next, delay)])
            .await?;
    }
    Ok(true)
}
