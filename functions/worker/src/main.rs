//! The `worker` Lambda function: runs the tasks of an SQS batch and reports
//! the messages that failed, so SQS redelivers only those.

use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    let deps = &warren::runtime::lambda().await?;
    // The worker signs webhooks and pipeline `http` steps.
    warren::runtime::require_signing(deps)?;
    let handler = |event: LambdaEvent<SqsEvent>| async move {
        let failures = worker::handle_batch(deps, event.payload).await;
        // What the batch counted, as CloudWatch EMF lines.
        deps.metrics.flush(Some(&event.context.request_id));
        Ok::<_, lambda_runtime::Error>(failures)
    };
    lambda_runtime::run(service_fn(handler)).await
}
