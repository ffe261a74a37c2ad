//! The task worker. [`process`] handles one queue message (the same code in
//! every runtime); [`handle_batch`] is the Lambda entry for an SQS event;
//! [`poll`] is the local stand-in for the Lambda event source mapping (see
//! [`warren::runtime::consumer`]).

use std::time::Duration;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use tokio::sync::watch;
use warren::ports::Delivery;
use warren::runtime::consumer::{handle_records, poll_queue};
use warren::{Deps, ServiceError};

pub use warren::messages::TaskMessage;
pub use warren::service::worker::process;

/// A task message, whatever runtime received it.
async fn run_task(deps: Deps, message: Delivery) -> Result<(), ServiceError> {
    process(&deps, &message.body).await
}

/// Run every task message of an SQS batch concurrently and report the ones
/// that failed (a backend error, or a crash of the code that ran it), so SQS
/// redelivers only those (`ReportBatchItemFailures`); a duplicate delivery is
/// a success that runs nothing.
pub async fn handle_batch(deps: &Deps, event: SqsEvent) -> SqsBatchResponse {
    handle_records(deps, event, run_task).await
}

/// [`poll_queue`] on the task queue with the task worker.
pub async fn poll(
    deps: Deps,
    concurrency: usize,
    batch_window: Duration,
    stop: watch::Receiver<bool>,
) {
    let queue = deps.config.task_queue.clone();
    poll_queue(deps, queue, concurrency, batch_window, stop, run_task).await
}
