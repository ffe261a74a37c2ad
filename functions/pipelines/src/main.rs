//! The `pipelines` Lambda function: /api/v1/pipelines, executions and usage, behind the HTTP API.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    let deps = warren::runtime::lambda().await?;
    lambda_http::run(pipelines::router(deps)).await
}
