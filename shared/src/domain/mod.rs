//! The domain: pure types and rules, no I/O.

pub mod event;
pub mod execution;
pub mod expression;
pub mod fingerprint;
pub mod identity;
pub mod pipeline;
pub mod task;
pub mod trigger;

pub use task::{
    AfterFailure, RetryPolicy, Task, TaskStatus, TransitionError, WebhookOutcome, WebhookStatus,
};
