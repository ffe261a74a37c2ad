//! Writes whose messages must follow them. A stored task or execution is
//! started only by its message, so once the write has committed the send
//! must happen, whoever was waiting for it:
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

use chrono::{DateTime, Utc};

use super::{Deps, ServiceError};
use crate::ports::{OutgoingMessage, WriteOp};

/// Sends of one batch before its messages count as lost.
const SEND_ATTEMPTS: u32 = 3;
/// Pause before the second send; doubled before the third.
const SEND_RETRY_PAUSE: Duration = Duration::from_millis(100);
/// How soon the scheduler looks again at work whose message was lost.
pub const LOST_RECHECK: chrono::Duration = chrono::Duration::seconds(5);

/// Run `work` on a task of its own and wait for its outcome. Dropping the
/// returned future (a client that hangs up, a request timeout) leaves the
/// work running to its end. A panic in it answers an internal error.
pub async fn detached<T, F>(work: F) -> Result<T, ServiceError>
where
    T: Send + 'static,
    F: Future<Output = Result<T, ServiceError>> + Send + 'static,
{
    tokio::spawn(work)
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
            Ok(()) => {}
            Err(crate::ports::StoreError::Conflict { .. }) => {}
            Err(e) => {
                tracing::warn!(error = %e, "could not bring a lost message's timer forward; it fires at its re-dispatch time")
            }
        }
    }
}
