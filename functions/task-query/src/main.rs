//! The `task-query` Lambda function: the task and queue reads (GET /api/v1/tasks…, /api/v1/queues), behind the HTTP API.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    let deps = warren::runtime::lambda().await?;
    lambda_http::run(task_query::router(deps)).await
}
