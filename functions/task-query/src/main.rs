//! The `task-query` Lambda function: the task and queue reads (GET /api/v1/tasks…, /api/v1/queues), behind the HTTP API.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    let deps = warren::runtime::lambda().await?;
    let metrics = deps.metrics.clone();
    warren::runtime::serve_http(task_query::router(deps), metrics).await
}
