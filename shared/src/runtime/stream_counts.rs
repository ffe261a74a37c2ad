//! Queue counts kept from the table's change stream in a long-running
//! process (`warren dev --backend aws`, `warren cost`, the tests), as the
//! `counts` Lambda function keeps them on AWS: each batch counted, then
//! acknowledged; a batch that fails to count comes again.

use std::time::Duration;

use aws_types::SdkConfig;
use tokio::sync::watch;

use crate::Deps;
use crate::adapters::streams::TableStream;
use crate::ports::StoreError;
use crate::service::counts;

/// Pause between reads: as the `counts` function's event source mapping
/// gathers changes for up to 2 s (`MaximumBatchingWindowInSeconds`) before
/// it counts them, so a batch here holds what one there would, and costs
/// one counting transaction, as there.
pub const WINDOW: Duration = Duration::from_secs(2);
/// A batch this full was cut short by the read's limit: read on at once.
const FULL: usize = 1000;
/// Pause after a failed read or count.
const AFTER_FAILURE: Duration = Duration::from_secs(1);

/// [`run`] in the background, with the SDK configuration of the
/// environment; a table without a stream is logged, as nothing can count.
pub fn spawn(
    deps: Deps,
    table: String,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let sdk = crate::adapters::aws::sdk_config().await;
        if let Err(e) = run(deps, &sdk, &table, stop).await {
            tracing::error!(error = %e, "queue counts cannot be kept from the table's stream");
        }
    })
}

/// Count `table`'s changes into `deps`' queue counters until `stop` is set.
/// Fails only if the table has no stream to read.
pub async fn run(
    deps: Deps,
    sdk: &SdkConfig,
    table: &str,
    mut stop: watch::Receiver<bool>,
) -> Result<(), StoreError> {
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    let streams = aws_sdk_dynamodbstreams::Client::new(sdk);
    let mut stream = TableStream::open(streams, &dynamodb, table).await?;
    while !*stop.borrow() {
        let pause = match stream.next_batch().await {
            Ok(batch) if batch.is_empty() => WINDOW,
            Ok(batch) => match counts::count_changes(&deps, &batch).await {
                Ok(()) if batch.len() >= FULL => {
                    stream.acknowledge();
                    continue;
                }
                Ok(()) => {
                    stream.acknowledge();
                    WINDOW
                }
                Err(e) => {
                    tracing::warn!(error = %e, changes = batch.len(), "counting a stream batch failed; it comes again");
                    AFTER_FAILURE
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "reading the table's stream failed");
                AFTER_FAILURE
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => {}
        }
    }
    Ok(())
}
