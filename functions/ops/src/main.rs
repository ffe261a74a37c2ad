//! The `ops` Lambda function: GET /health and GET /metrics, behind the HTTP API.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    let deps = warren::runtime::lambda().await?;
    lambda_http::run(ops::router(deps)).await
}
