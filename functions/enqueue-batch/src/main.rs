//! The `enqueue-batch` Lambda function: POST /api/v1/enqueue/batch, behind the HTTP API.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    let deps = warren::runtime::lambda().await?;
    let metrics = deps.metrics.clone();
    warren::runtime::serve_http(enqueue_batch::router(deps), metrics).await
}
