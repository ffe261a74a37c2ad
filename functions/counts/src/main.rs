//! The `counts` Lambda function: fed by the table's DynamoDB Stream (task
//! and execution items only, by the mapping's filter), it keeps the queue
//! counts that `GET /api/v1/queues` reads and the pipelines' run counts.

use aws_lambda_events::dynamodb::Event;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    let deps = &warren::runtime::lambda().await?;
    let handler = |event: LambdaEvent<Event>| async move {
        let changes = counts::handle_batch(deps, event.payload).await?;
        tracing::debug!(changes, "batch counted");
        Ok::<_, lambda_runtime::Error>(())
    };
    lambda_runtime::run(service_fn(handler)).await
}
