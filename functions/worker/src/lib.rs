//! The task worker. [`process`] handles one queue message (the same code in
//! every runtime); [`handle_batch`] is the Lambda entry for an SQS event;
//! [`poll`] is the local stand-in for the Lambda event source mapping: it
//! receives in batches, runs messages concurrently and acknowledges the ones
//! that succeeded.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use warren::Deps;
use warren::ports::MAX_RECEIVE;

pub use warren::service::worker::{TaskMessage, process};

/// How long one receive waits for a message (long polling).
const RECEIVE_WAIT: Duration = Duration::from_secs(1);
/// Back-off after a failed receive, so a broken queue is not hammered.
const RECEIVE_ERROR_PAUSE: Duration = Duration::from_secs(1);
/// How long acknowledgements wait for company before they are deleted: a
/// late delete costs nothing (a redelivered finished task is a no-op), a
/// DeleteMessageBatch per message costs a request each.
const ACK_LINGER: Duration = Duration::from_millis(200);

/// Run every message of an SQS batch concurrently and report the ones that
/// failed (a backend error, or a crash of the code that ran it), so SQS
/// redelivers only those (`ReportBatchItemFailures`); a duplicate delivery is
/// a success that runs nothing.
pub async fn handle_batch(deps: &Deps, event: SqsEvent) -> SqsBatchResponse {
    let mut set = JoinSet::new();
    let mut ids = std::collections::HashMap::new();
    for record in event.records {
        let deps = deps.clone();
        let body = record.body.unwrap_or_default();
        let handle = set.spawn(async move { process(&deps, &body).await });
        ids.insert(handle.id(), record.message_id.unwrap_or_default());
    }
    let mut response = SqsBatchResponse::default();
    while let Some(joined) = set.join_next_with_id().await {
        let (id, failed) = match joined {
            Ok((id, Ok(()))) => (id, None),
            Ok((id, Err(e))) => (id, Some(e.to_string())),
            Err(e) => (e.id(), Some(format!("crashed: {e}"))),
        };
        if let (Some(reason), Some(message_id)) = (failed, ids.remove(&id)) {
            tracing::warn!(%message_id, %reason, "message failed; SQS will redeliver it");
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = message_id;
            response.batch_item_failures.push(failure);
        }
    }
    response
}

/// Run up to `concurrency` messages at a time until `stop` turns true, then
/// let the running ones finish. Like the event source mapping's
/// `MaximumBatchingWindowInSeconds`, a receive that got fewer messages than
/// it has free slots keeps receiving for up to `batch_window` (zero: start
/// at once) before the batch runs.
pub async fn poll(deps: Deps, concurrency: usize, batch_window: Duration, stop: watch::Receiver<bool>) {
    let concurrency = concurrency.max(1);
    let permits = Arc::new(Semaphore::new(concurrency));
    let (ack_tx, ack_rx) = mpsc::unbounded_channel::<String>();
    let acker = tokio::spawn(acknowledge(deps.clone(), ack_rx));
    // One receiver per ten slots keeps every slot fed when receives are slow (SQS).
    let receivers = concurrency.div_ceil(MAX_RECEIVE).clamp(1, 8);
    let mut set = JoinSet::new();
    for _ in 0..receivers {
        set.spawn(receive(
            deps.clone(),
            batch_window,
            permits.clone(),
            ack_tx.clone(),
            stop.clone(),
        ));
    }
    drop(ack_tx);
    while set.join_next().await.is_some() {}
    let _ = permits.acquire_many(concurrency as u32).await;
    let _ = acker.await;
}

async fn receive(
    deps: Deps,
    batch_window: Duration,
    permits: Arc<Semaphore>,
    ack: mpsc::UnboundedSender<String>,
    mut stop: watch::Receiver<bool>,
) {
    let queue = deps.config.task_queue.clone();
    loop {
        if *stop.borrow() {
            return;
        }
        // Hold free slots before receiving: a received message's visibility
        // clock is running, so it must not wait for a slot.
        let first = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = stop.changed() => return,
        };
        let mut slots = vec![first];
        while slots.len() < MAX_RECEIVE {
            match permits.clone().try_acquire_owned() {
                Ok(p) => slots.push(p),
                Err(_) => break,
            }
        }
        // An in-flight receive is never abandoned on stop: the queue may
        // already have handed it messages, which would stay hidden for a
        // whole visibility timeout. RECEIVE_WAIT bounds the stop's delay.
        let deliveries = match gather(&deps, &queue, slots.len(), batch_window).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "receive failed");
                tokio::time::sleep(RECEIVE_ERROR_PAUSE).await;
                continue;
            }
        };
        for (delivery, slot) in deliveries.into_iter().zip(slots.drain(..)) {
            let deps = deps.clone();
            let ack = ack.clone();
            tokio::spawn(async move {
                let _slot = slot;
                match process(&deps, &delivery.body).await {
                    Ok(()) => {
                        let _ = ack.send(delivery.receipt);
                    }
                    // Left unacknowledged: the queue delivers it again.
                    Err(e) => {
                        tracing::warn!(error = %e, message_id = %delivery.message_id, "message failed; it will be redelivered")
                    }
                }
            });
        }
    }
}

/// Up to `max` messages: one receive, then more within `window` while the
/// batch is not full.
async fn gather(
    deps: &Deps,
    queue: &str,
    max: usize,
    window: Duration,
) -> Result<Vec<warren::ports::Delivery>, warren::ports::QueueError> {
    let visibility = deps.config.visibility;
    let mut got = deps.queue.receive(queue, max, visibility, RECEIVE_WAIT).await?;
    let deadline = tokio::time::Instant::now() + window;
    while !got.is_empty() && got.len() < max {
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        // A long poll, never a busy loop: it returns when a message comes.
        match deps.queue.receive(queue, max - got.len(), visibility, RECEIVE_WAIT).await {
            Ok(more) => got.extend(more),
            // What was received still runs; the error shows on the next receive.
            Err(_) => break,
        }
    }
    Ok(got)
}

/// Delete acknowledged messages in batches of up to ten (one request each),
/// waiting up to [`ACK_LINGER`] for a batch to fill.
async fn acknowledge(deps: Deps, mut receipts: mpsc::UnboundedReceiver<String>) {
    let queue = deps.config.task_queue.clone();
    while let Some(first) = receipts.recv().await {
        let mut batch = vec![first];
        let linger = tokio::time::sleep(ACK_LINGER);
        tokio::pin!(linger);
        while batch.len() < MAX_RECEIVE {
            tokio::select! {
                r = receipts.recv() => match r {
                    Some(r) => batch.push(r),
                    None => break,
                },
                _ = &mut linger => break,
            }
        }
        if let Err(e) = deps.queue.delete_batch(&queue, batch).await {
            // Undeleted messages come back and are dropped as duplicates.
            tracing::warn!(error = %e, "acknowledging messages failed");
        }
    }
}
