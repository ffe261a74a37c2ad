//! The `task-control` Lambda function: progress, cancel, requeue and bulk delete of tasks, behind the HTTP API.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    let deps = warren::runtime::lambda().await?;
    let metrics = deps.metrics.clone();
    warren::runtime::serve_http(task_control::router(deps), metrics).await
}
