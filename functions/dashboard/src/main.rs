//! The `dashboard` Lambda function: the dashboard's pages, assets and live
//! snapshot, behind the HTTP API (which carries no WebSocket: the pages
//! poll the snapshot there).

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    let deps = warren::runtime::lambda().await?;
    let metrics = deps.metrics.clone();
    warren::runtime::serve_http(dashboard::router(deps), metrics).await
}
