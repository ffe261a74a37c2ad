//! The `worker` Lambda function: runs the tasks of an SQS batch and reports
//! the messages that failed, so SQS redelivers only those.

use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    let deps = &warren::runtime::lambda().await?;
    let handler = |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, lambda_runtime::Error>(worker::handle_batch(deps, event.payload).await)
    };
    lambda_runtime::run(service_fn(handler)).await
}
