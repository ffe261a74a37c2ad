//! Use cases: what the functions and runtimes do, written once against the
//! ports so every runtime runs the same code path.

pub mod control;
pub mod enqueue;
pub mod events;
pub mod executions;
pub mod metrics;
pub mod outbox;
pub mod pipelines;
pub mod records;
pub mod scheduler;
pub mod schemas;
pub mod tasks;
pub mod topics;
pub mod triggers;
pub mod webhook;
pub mod worker;

#[cfg(test)]
mod pipeline_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod topic_tests;

use std::sync::Arc;
use std::time::Duration;

use crate::handlers::Registry;
use crate::ports::{Clock, HttpClient, Queue, QueueError, Store, StoreError};

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
}

/// Settings of the task engine (not of any backend).
#[derive(Clone, Debug)]
pub struct Config {
    /// The queue that carries task messages.
    pub task_queue: String,
    /// The topic ingress queue: messages published on topics, fanned out
    /// by the dispatcher to the pipelines whose event trigger is started.
    pub topic_queue: String,
    /// Task messages carry the whole task, so the worker starts it without
    /// reading it (one request less per task on DynamoDB). Off where store
    /// reads are cheap and serialising costs more (the embedded runtime:
    /// 10-15 % of batch enqueue throughput, docs/BENCHMARKS.md).
    pub snapshot_messages: bool,
    /// Publish dispatches at once instead of through `topic_queue`: set
    /// where that queue does not outlive the process (the embedded
    /// runtime), so a 202 always means the executions are stored.
    pub dispatch_inline: bool,
    /// Timeout of a task that names none.
    pub default_timeout: Duration,
    /// A running attempt is presumed lost this long after its timeout.
    pub lease_grace: Duration,
    /// A pending task whose message has not started it by then is re-sent
    /// (the message may have been lost between store and queue).
    pub redispatch_after: Duration,
    /// How long an `expired` task stays readable before it is deleted.
    pub expired_retention: chrono::Duration,
    /// How long a received message stays hidden while its task runs.
    pub visibility: Duration,
    /// The secret that signs task webhooks (Standard Webhooks, `whsec_…`).
    pub webhook_secret: Vec<u8>,
    /// The secret that signs pipeline `http` steps. Never the webhook one: a
    /// hook caller chooses what a step sends, so with one key warren would
    /// sign a forged `task.completed` for whoever asked.
    pub step_secret: Vec<u8>,
    /// Attempts of one webhook delivery before it is recorded as failed.
    pub webhook_attempts: u32,
    /// The key every `/api` route requires (hashed); disabled only for
    /// loopback development.
    pub api_key: crate::http::ApiKey,
    /// The key `GET /metrics` requires (hashed); disabled: public.
    pub metrics_key: crate::http::ApiKey,
    /// The pipeline that processes `POST /events` when the request names none.
    pub default_workflow: Option<uuid::Uuid>,
    /// The shortest interval between two fires of a schedule trigger.
    pub min_schedule_interval: Duration,
    /// How long a finished execution (and its event) stays readable.
    pub execution_retention: chrono::Duration,
    /// The URL clients reach this API at (`https://api.example.com`), for
    /// the links it hands out (a webhook trigger's URL); else the request's
    /// own Host.
    pub public_url: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            task_queue: "warren-tasks".into(),
            topic_queue: "warren-topics".into(),
            default_timeout: Duration::from_secs(300),
            lease_grace: Duration::from_secs(30),
            redispatch_after: Duration::from_secs(600),
            expired_retention: chrono::Duration::hours(1),
            visibility: Duration::from_secs(60),
            webhook_secret: Vec::new(),
            step_secret: Vec::new(),
            webhook_attempts: 4,
            api_key: crate::http::ApiKey::default(),
            metrics_key: crate::http::ApiKey::default(),
            default_workflow: None,
            min_schedule_interval: Duration::from_secs(60),
            execution_retention: chrono::Duration::days(30),
            public_url: None,
            dispatch_inline: false,
            snapshot_messages: true,
        }
    }
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
    /// The code that ran the use case panicked.
    #[error("crashed: {0}")]
    Crashed(String),
}

impl ServiceError {
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
