//! The domain: pure types and rules, no I/O.

pub mod task;

pub use task::{AfterFailure, RetryPolicy, Task, TaskStatus, TransitionError, WebhookOutcome};
