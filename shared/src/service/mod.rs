//! Use cases: what the functions and runtimes do, written once against the
//! ports so every runtime runs the same code path.

pub mod compiled;
pub mod control;
pub mod counts;
pub mod dispatch;
pub mod enqueue;
pub mod events;
pub mod executions;
pub mod failed;
pub mod identity;
pub mod maintenance;
pub mod metrics;
pub mod pipelines;
pub mod schemas;
pub mod topics;
pub mod triggers;
pub mod webhook;
pub mod worker;

#[cfg(test)]
mod chunk_tests;
#[cfg(test)]
mod lease_tests;
#[cfg(test)]
mod list_tests;
#[cfg(test)]
mod pipeline_tests;
#[cfg(test)]
mod send_first_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod topic_tests;

use std::sync::Arc;

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::handlers::Registry;
use crate::ports::{Clock, HttpClient, Queue, QueueError, Store, StoreError};
use crate::table::tasks::Tasks;

pub use crate::config::Config;
pub use metrics::Metrics;

/// Everything a use case needs, built once per process and shared.
#[derive(Clone)]
pub struct Deps {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    pub clock: Arc<dyn Clock>,
    pub http: Arc<dyn HttpClient>,
    pub handlers: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    pub config: Arc<Config>,
    /// Caches and counters of identity and access (per process).
    pub identity: Arc<identity::Identity>,
}

impl Deps {
    /// The clock's now.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The tasks of the table, as of now.
    pub fn tasks(&self) -> Tasks<'_> {
        Tasks::new(&*self.store, self.config.expired_retention, self.now())
            .counted_by_stream(self.config.counts_from_stream)
    }
}

/// The record a lookup found, or `NotFound` naming what was missing.
pub(crate) fn found<T>(record: Option<T>, missing: &'static str) -> Result<T, ServiceError> {
    record.ok_or(ServiceError::NotFound(missing))
}

/// Why a use case did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    NotFound(&'static str),
    /// The request is well-formed but the current state forbids it.
    #[error("{message}")]
    Conflict { message: String, code: &'static str },
    /// The request is invalid (a 4xx with this code).
    #[error("{message}")]
    Invalid { message: String, code: &'static str },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The caller may not do this (403 `forbidden`).
    #[error("{0}")]
    Forbidden(String),
    /// A limit is reached (429 with this code, and `Retry-After` when known).
    #[error("{message}")]
    Limited {
        message: String,
        code: &'static str,
        retry_after: Option<u64>,
    },
    /// Something the request needs is not set up or not reachable (503).
    #[error("{message}")]
    Unavailable { message: String, code: &'static str },
    /// The code that ran the use case panicked.
    #[error("crashed: {0}")]
    Crashed(String),
}

impl ServiceError {
    /// A refusal of the request with this code and message (a 4xx).
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        ServiceError::Invalid {
            message: message.into(),
            code,
        }
    }

    /// `payload_too_large` (413) unless `bytes` of `what` fit in one queue
    /// message.
    pub fn check_message_size(what: &str, bytes: usize) -> Result<(), Self> {
        if bytes <= crate::ports::MAX_MESSAGE_BYTES {
            return Ok(());
        }
        Err(ServiceError::invalid(
            "payload_too_large",
            format!(
                "{what} is {bytes} bytes; at most {}",
                crate::ports::MAX_MESSAGE_BYTES
            ),
        ))
    }

    /// True for a lost compare-and-set: someone else changed the item first.
    pub fn is_conflict(&self) -> bool {
        matches!(self, ServiceError::Store(StoreError::Conflict { .. }))
    }
}

/// Run CPU-bound work (an expression, a schema check) off the async
/// workers, on a blocking thread; on the calling task where
/// `config.cpu_inline`. A panic in it is an error, not a crash.
pub(crate) async fn on_cpu<T, F>(deps: &Deps, work: F) -> Result<T, String>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    if deps.config.cpu_inline {
        return std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
            .map_err(|_| "panicked".to_string());
    }
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|crash| crash.to_string())
}

/// A random token for a claim (a task's start, an execution's lease): two
/// workers that take one record at the same instant write different items,
/// so a retried write can tell its own from a twin's. 53 random bits, from
/// the clock's randomness (seeded in simulation).
pub(crate) fn claim_token(deps: &Deps) -> u64 {
    (deps.clock.jitter() * (1u64 << 53) as f64) as u64
}

/// Run a store call about record `id` (a task, an execution) again while
/// the store is unavailable (a full disk, an outage that outlasted the
/// adapter's own retries), backing off up to 2 s, until `until`: work in
/// hand is worth holding, where failing it would leave it to the queue's
/// visibility timeout, a lease's end or a re-dispatch timer, and run again
/// what already ran. Also says whether the call was tried more than once.
pub(crate) async fn while_unavailable<T, F, Fut>(
    deps: &Deps,
    until: DateTime<Utc>,
    id: Uuid,
    mut call: F,
) -> (Result<T, StoreError>, bool)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut failed = 0u32;
    loop {
        match call().await {
            Err(StoreError::Unavailable(e)) if deps.now() < until => {
                tracing::warn!(record = %id, error = %e, "store unavailable; trying again");
                let pause = Duration::from_millis(50 << failed.min(5)).min(Duration::from_secs(2));
                tokio::time::sleep(pause).await;
                failed += 1;
            }
            other => return (other, failed > 0),
        }
    }
}

/// Write `next` (a task, an execution), held while the store is unavailable
/// as [`while_unavailable`] does. A try that failed may have landed all the
/// same, so if a later try conflicts, `read_back` fetches the record, and
/// finding exactly `next` there means the write is done. Only a retry can
/// meet its own write: a first try's conflict stays one, since two writers
/// may build the same record. (The DynamoDB adapter tells its SDK's retries
/// of one request apart in the same way; this covers the service's tries.)
pub(crate) async fn write_while_unavailable<R, W, WFut, G, GFut>(
    deps: &Deps,
    until: DateTime<Utc>,
    next: (Uuid, &R),
    write: W,
    read_back: G,
) -> Result<(), StoreError>
where
    R: PartialEq,
    W: FnMut() -> WFut,
    WFut: std::future::Future<Output = Result<(), StoreError>>,
    G: FnOnce() -> GFut,
    GFut: std::future::Future<Output = Result<Option<R>, StoreError>>,
{
    let (id, record) = next;
    match while_unavailable(deps, until, id, write).await {
        (Err(e), true) if e.is_conflict() => match read_back().await? {
            Some(found) if found == *record => Ok(()),
            _ => Err(e),
        },
        (saved, _) => saved,
    }
}
