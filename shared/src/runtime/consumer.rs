//! Consuming a queue as the Lambda SQS event source mapping does, for every
//! runtime: [`handle_records`] runs an SQS batch handed to a Lambda and
//! reports partial batch failures; [`poll_queue`] is its local stand-in,
//! receiving batches, running their messages concurrently and deleting the
//! ones that succeeded. Both take what runs one message (a [`Handler`]):
//! the task worker and the topic dispatcher consume their queues with them.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::ports::{Delivery, MAX_RECEIVE};
use crate::{Deps, ServiceError};

/// How long one receive waits for a message (long polling).
const RECEIVE_WAIT: Duration = Duration::from_secs(1);
/// Back-off after a failed receive, so a broken queue is not hammered.
const RECEIVE_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// What runs one message: `Ok` when it is done with (acknowledge it), `Err`
/// when a backend failed and the queue should deliver it again. Any
/// `async fn(Deps, Delivery) -> Result<(), ServiceError>` is one.
pub trait Handler: Clone + Send + Sync + 'static {
    /// Run one message; `Ok` to acknowledge it, `Err` to have it delivered again.
    fn handle(
        &self,
        deps: Deps,
        message: Delivery,
    ) -> impl Future<Output = Result<(), ServiceError>> + Send + 'static;
}

impl<H, F> Handler for H
where
    H: Fn(Deps, Delivery) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<(), ServiceError>> + Send + 'static,
{
    fn handle(
        &self,
        deps: Deps,
        message: Delivery,
    ) -> impl Future<Output = Result<(), ServiceError>> + Send + 'static {
        self(deps, message)
    }
}

/// An SQS event record as the queue port's [`Delivery`] (its string
/// message attributes included).
pub fn delivery_of(record: SqsMessage) -> Delivery {
    Delivery {
        receive_count: record
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|n| n.parse().ok())
            .unwrap_or(1),
        attributes: record
            .message_attributes
            .into_iter()
            .filter_map(|(name, v)| Some((name, v.string_value?)))
            .collect(),
        message_id: record.message_id.unwrap_or_default(),
        receipt: record.receipt_handle.unwrap_or_default(),
        body: record.body.unwrap_or_default(),
    }
}

/// Run every record of an SQS batch concurrently with `handler` and report
/// the ones that failed or crashed, so SQS redelivers only those.
pub async fn handle_records(
    deps: &Deps,
    event: SqsEvent,
    handler: impl Handler,
) -> SqsBatchResponse {
    let mut set = JoinSet::new();
    let mut ids = std::collections::HashMap::new();
    for record in event.records {
        let delivery = delivery_of(record);
        let message_id = delivery.message_id.clone();
        // In the invocation's span, so each message's log lines carry its
        // request id.
        let handle = set.spawn(handler.handle(deps.clone(), delivery).in_current_span());
        ids.insert(handle.id(), message_id);
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

/// Run the messages of `queue` with `handler`, up to `concurrency` at a
/// time, until `stop` turns true, then let the running ones finish. It works as the SQS event source mapping
/// does for a Lambda function: each receive asks for a whole batch (up to
/// ten), the batch's messages run concurrently, and the ones that succeeded
/// are deleted together in one request once the batch is done. Like the
/// mapping's `MaximumBatchingWindowInSeconds`, a receive that got less than
/// a batch keeps receiving for up to `batch_window` (zero: run at once).
pub async fn poll_queue(
    deps: Deps,
    queue: String,
    concurrency: usize,
    batch_window: Duration,
    stop: watch::Receiver<bool>,
    handler: impl Handler,
) {
    let concurrency = concurrency.max(1);
    let batch_size = concurrency.min(MAX_RECEIVE);
    let permits = Arc::new(Semaphore::new(concurrency));
    // One receiver per batch of slots keeps every slot fed when receives are slow (SQS).
    let receivers = concurrency.div_ceil(batch_size).clamp(1, 8);
    let mut set = JoinSet::new();
    for _ in 0..receivers {
        set.spawn(receive(
            deps.clone(),
            queue.clone(),
            handler.clone(),
            batch_size,
            batch_window,
            permits.clone(),
            stop.clone(),
        ));
    }
    while set.join_next().await.is_some() {}
    // Every running batch holds slots until it has deleted its messages.
    let _ = permits.acquire_many(concurrency as u32).await;
}

async fn receive(
    deps: Deps,
    queue: String,
    handler: impl Handler,
    batch_size: usize,
    batch_window: Duration,
    permits: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if *stop.borrow() {
            return;
        }
        // Hold free slots before receiving: a received message's visibility
        // clock is running, so it must not wait for a slot. Wait for one,
        // then take what else is free up to a batch: waiting for a whole
        // batch would leave messages queued behind one long task.
        let mut slots = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = stop.changed() => return,
        };
        while slots.num_permits() < batch_size {
            match permits.clone().try_acquire_owned() {
                Ok(more) => slots.merge(more),
                Err(_) => break,
            }
        }
        let room = slots.num_permits();
        // An in-flight receive is never abandoned on stop: the queue may
        // already have handed it messages, which would stay hidden for a
        // whole visibility timeout. RECEIVE_WAIT bounds the stop's delay.
        let deliveries = match gather(&deps, &queue, room, batch_window).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "receive failed");
                tokio::time::sleep(RECEIVE_ERROR_PAUSE).await;
                continue;
            }
        };
        if deliveries.is_empty() {
            continue;
        }
        // Free the slots this batch does not fill (a backend that answers
        // more than asked must not panic the loop that keeps receiving).
        drop(slots.split(room.saturating_sub(deliveries.len())));
        tokio::spawn(run_batch(
            deps.clone(),
            queue.clone(),
            handler.clone(),
            deliveries,
            slots,
        ));
    }
}

/// Run a received batch, each message releasing its slot when done, then
/// delete the ones that succeeded in one request. Failed ones are left for
/// the queue to deliver again.
async fn run_batch(
    deps: Deps,
    queue: String,
    handler: impl Handler,
    deliveries: Vec<Delivery>,
    mut slots: tokio::sync::OwnedSemaphorePermit,
) {
    let mut running = JoinSet::new();
    for delivery in deliveries {
        let slot = slots.split(1);
        let (receipt, message_id) = (delivery.receipt.clone(), delivery.message_id.clone());
        let run = handler.handle(deps.clone(), delivery);
        running.spawn(async move {
            let _slot = slot;
            match run.await {
                Ok(()) => Some(receipt),
                Err(e) => {
                    tracing::warn!(error = %e, %message_id, "message failed; it will be redelivered");
                    None
                }
            }
        });
    }
    let mut done = Vec::new();
    while let Some(joined) = running.join_next().await {
        // A crash (panic) of the code that ran a message fails only that message.
        if let Ok(Some(receipt)) = joined {
            done.push(receipt);
        }
    }
    if let Err(e) = deps.queue.delete_batch(&queue, done).await {
        // Undeleted messages come back and are dropped as duplicates.
        tracing::warn!(error = %e, "deleting processed messages failed");
    }
}

/// Up to `max` messages: one receive, then more within `window` while the
/// batch is not full.
async fn gather(
    deps: &Deps,
    queue: &str,
    max: usize,
    window: Duration,
) -> Result<Vec<Delivery>, crate::ports::QueueError> {
    let visibility = deps.config.visibility;
    let mut got = deps
        .queue
        .receive(queue, max, visibility, RECEIVE_WAIT)
        .await?;
    let deadline = tokio::time::Instant::now() + window;
    while !got.is_empty() && got.len() < max {
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        // A long poll, never a busy loop: it returns when a message comes.
        match deps
            .queue
            .receive(queue, max - got.len(), visibility, RECEIVE_WAIT)
            .await
        {
            Ok(more) => got.extend(more),
            // What was received still runs; the error shows on the next receive.
            Err(_) => break,
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use tokio::sync::{Notify, watch};

    use super::poll_queue;
    use crate::adapters::clock::SystemClock;
    use crate::handlers::Registry;
    use crate::ports::{Delivery, OutgoingMessage};
    use crate::testing::memory_deps;
    use crate::{Deps, ServiceError};

    /// GIVEN a consumer with slots to spare, running one long message
    /// WHEN another message arrives
    /// THEN it runs at once, beside the long one (a regression: each receive
    /// waited for a whole batch of free slots, so one long task held back
    /// every message after it).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_long_message_does_not_hold_back_the_next() {
        let deps = memory_deps(Arc::new(SystemClock), Registry::default());
        let (stop_tx, stop) = watch::channel(false);
        let long_started = Arc::new(Notify::new());
        let short_ran = Arc::new(AtomicBool::new(false));
        let handler = {
            let (long_started, short_ran) = (long_started.clone(), short_ran.clone());
            move |_: Deps, message: Delivery| {
                let (long_started, short_ran) = (long_started.clone(), short_ran.clone());
                async move {
                    if message.body == "long" {
                        long_started.notify_one();
                        // Ends only once the short one has run beside it.
                        while !short_ran.load(Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    } else {
                        short_ran.store(true, Ordering::SeqCst);
                    }
                    Ok::<(), ServiceError>(())
                }
            }
        };
        let consumer = tokio::spawn(poll_queue(
            deps.clone(),
            "work".into(),
            4,
            Duration::ZERO,
            stop,
            handler,
        ));
        for body in ["long", "short"] {
            deps.queue
                .send_batch("work", vec![OutgoingMessage::new(body)])
                .await
                .expect("send");
            if body == "long" {
                long_started.notified().await;
            }
        }
        let ran = tokio::time::timeout(Duration::from_secs(5), async {
            while !short_ran.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        assert!(
            ran.await.is_ok(),
            "the short message waited behind the long one"
        );
        stop_tx.send(true).expect("stop");
        tokio::time::timeout(Duration::from_secs(5), consumer)
            .await
            .expect("the consumer stops")
            .expect("consumer");
    }
}
