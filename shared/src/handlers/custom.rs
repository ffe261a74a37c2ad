//! Your handlers: the one place to add task handlers to warren.
//!
//! A handler is an async function from a [`TaskContext`] to a JSON result or
//! a [`TaskFailure`]. Register it under the `task_name` clients will send;
//! every runtime (the local `warren dev`, the Lambda worker) picks it up.
//!
//! ```text
//! curl -X POST localhost:8000/api/v1/enqueue \
//!   -d '{"task_name": "word_count", "kwargs": {"text": "to be or not to be"}}'
//! ```
//! completes with the result `{"words": 6}`. Return `TaskFailure::retry(..)`
//! for a failure another attempt may fix, `TaskFailure::fatal(..)` for one it
//! cannot.

use serde_json::{Value, json};

use super::{Registry, TaskContext, TaskFailure};

/// Called once at start-up with the built-ins already registered.
pub fn register(registry: &mut Registry) {
    registry.register("word_count", word_count);
}

/// Example: counts the words of `kwargs.text`.
async fn word_count(ctx: TaskContext) -> Result<Value, TaskFailure> {
    let text = ctx
        .kwarg("text")?
        .as_str()
        .ok_or_else(|| TaskFailure::fatal("kwargs.text must be a string"))?;
    Ok(json!({ "words": text.split_whitespace().count() }))
}
