//! Backends behind the ports: the embedded store and in-process queue for one
//! process on a laptop, DynamoDB and SQS for AWS, the system clock, guarded
//! outgoing HTTP.

pub mod aws;
pub mod capacity;
mod checks;
pub mod clock;
pub mod dynamodb;
pub mod embedded;
pub mod http;
pub mod requests;
pub mod sqs;
pub mod ssm;
pub mod streams;

use std::time::Duration;

/// Sleep before retry `attempt` (0-based) of a backend call: full jitter
/// under an exponential ceiling from `base`, capped at `cap`.
pub(crate) async fn backoff(attempt: u32, base: Duration, cap: Duration) {
    let ceiling = base.saturating_mul(1 << attempt.min(16)).min(cap);
    tokio::time::sleep(ceiling.mul_f64(rand::random::<f64>())).await;
}
