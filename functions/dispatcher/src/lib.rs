//! The topic dispatcher: each message of the topic ingress queue starts one
//! execution per started event trigger of its topic
//! ([`warren::service::topics::dispatch`]). [`handle_batch`] is the Lambda
//! entry for an SQS event; [`poll`] consumes the queue locally as the SQS
//! event source mapping would, both through [`warren::runtime::consumer`].

use std::time::Duration;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use tokio::sync::watch;
use warren::ports::Delivery;
use warren::runtime::consumer::{handle_records, poll_queue};
use warren::service::topics;
use warren::{Deps, ServiceError};

/// Dispatch one message; only a backend failure asks for it again.
async fn dispatch(deps: Deps, message: Delivery) -> Result<(), ServiceError> {
    let done = topics::dispatch(&deps, &message).await?;
    tracing::debug!(message_id = %message.message_id, topic = ?done.topic, started = done.started, duplicates = done.duplicates, "message dispatched");
    Ok(())
}

/// Dispatch every message of an SQS batch and report the ones that failed
/// (`ReportBatchItemFailures`): only those come back.
pub async fn handle_batch(deps: &Deps, event: SqsEvent) -> SqsBatchResponse {
    handle_records(deps, event, dispatch).await
}

/// Consume the topic queue (`Config::topic_queue`), up to `concurrency`
/// messages at a time, until `stop` turns true.
pub async fn poll(deps: Deps, concurrency: usize, stop: watch::Receiver<bool>) {
    let queue = deps.config.topic_queue.clone();
    poll_queue(deps, queue, concurrency, Duration::ZERO, stop, dispatch).await
}
