//! The queue counter: adds each batch of the table's change stream up into
//! the queue counts ([`warren::service::counts`]) when the tasks' writes
//! leave them out (`WARREN_COUNTS=stream`). [`handle_batch`] is the Lambda
//! entry for a DynamoDB Streams event; locally the stream is read by
//! [`warren::runtime::stream_counts`], to the same service.

use aws_lambda_events::dynamodb::Event;
use warren::adapters::streams::change;
use warren::ports::ItemChange;
use warren::service::counts;
use warren::{Deps, ServiceError};

/// Count one batch of changes, exactly once. An error fails the whole
/// batch, which the event source mapping then delivers again from its
/// first change: that is what makes a retry count nothing twice, so the
/// mapping must not bisect batches or report partial failures.
pub async fn handle_batch(deps: &Deps, event: Event) -> Result<usize, ServiceError> {
    let changes: Vec<ItemChange> = event
        .records
        .into_iter()
        .filter_map(|record| {
            let id = record.event_id;
            match change(id.clone(), record.change.old_image, record.change.new_image) {
                Ok(change) => Some(change),
                // Not an item warren wrote: nothing of it can be counted, and
                // holding the shard back for it would stop every count.
                Err(e) => {
                    tracing::warn!(event_id = %id, error = %e, "a change that is not an item of warren's is skipped");
                    None
                }
            }
        })
        .collect();
    counts::count_changes(deps, &changes).await?;
    Ok(changes.len())
}
