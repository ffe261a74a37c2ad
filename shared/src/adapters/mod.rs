//! Backends behind the ports: the embedded store and in-process queue for one
//! process on a laptop, DynamoDB and SQS for AWS, the system clock, guarded
//! outgoing HTTP.

pub mod aws;
mod checks;
pub mod clock;
pub mod dynamodb;
pub mod embedded;
pub mod http;
pub mod sqs;

use std::sync::Arc;
use std::time::Duration;

use crate::handlers::Registry;
use crate::ports::{HttpClient, Queue, Store};
use crate::{Config, Deps};

/// Sleep before retry `attempt` (0-based) of a backend call: full jitter
/// under an exponential ceiling from `base`, capped at `cap`.
pub(crate) async fn backoff(attempt: u32, base: Duration, cap: Duration) {
    let ceiling = base.saturating_mul(1 << attempt.min(16)).min(cap);
    tokio::time::sleep(ceiling.mul_f64(rand::random::<f64>())).await;
}

impl Deps {
    /// The dependencies of a running process (`warren dev`, a Lambda
    /// function, `warren cost`): the system clock, the registered task
    /// handlers and fresh metrics around the given backends.
    pub fn live(
        store: Arc<dyn Store>,
        queue: Arc<dyn Queue>,
        http: Arc<dyn HttpClient>,
        config: Config,
    ) -> Deps {
        Deps {
            store,
            queue,
            clock: Arc::new(clock::SystemClock),
            http,
            handlers: Arc::new(Registry::standard()),
            metrics: Default::default(),
            config: Arc::new(config),
        }
    }
}
