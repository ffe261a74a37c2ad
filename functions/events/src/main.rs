//! The `events` Lambda function: POST /events and GET /events/{id}, behind the HTTP API.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    let deps = warren::runtime::lambda().await?;
    let metrics = deps.metrics.clone();
    warren::runtime::serve_http(events::router(deps), metrics).await
}
