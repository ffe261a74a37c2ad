//! The `scheduler` Lambda function, run every minute by EventBridge:
//! releases due tasks, rescues lost ones, expires old ones.

use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    let deps = &warren::runtime::lambda().await?;
    let handler = |event: LambdaEvent<serde_json::Value>| async move {
        let report = scheduler::tick(deps).await;
        // What the tick counted (expired tasks, retries...), as CloudWatch EMF lines.
        deps.metrics.flush(Some(&event.context.request_id));
        Ok::<_, lambda_runtime::Error>(serde_json::to_value(report?)?)
    };
    lambda_runtime::run(service_fn(handler)).await
}
