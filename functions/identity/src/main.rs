//! The `identity` Lambda function: sign-in and sessions, `/me`, the
//! account, users (admin), API keys and stored secrets, behind the HTTP API.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    let deps = warren::runtime::lambda().await?;
    let metrics = deps.metrics.clone();
    warren::runtime::serve_http(identity::router(deps), metrics).await
}
