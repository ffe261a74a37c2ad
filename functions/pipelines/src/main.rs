//! The `pipelines` Lambda function: /api/v1/pipelines, executions and usage, behind the HTTP API.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    let deps = warren::runtime::lambda().await?;
    let metrics = deps.metrics.clone();
    warren::runtime::serve_http(pipelines::router(deps), metrics).await
}
