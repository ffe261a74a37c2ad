//! The messages of the task queue: what a worker is asked to do. Each is
//! small JSON; a task too large to carry travels by id.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::Task;

/// The body of a message on the task queue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TaskMessage {
    /// Run the stored task, carried as it was stored when the message was
    /// sent: its start is a compare-and-set on that version, so the worker
    /// reads the task only when it moved on meanwhile (one request less per
    /// task on DynamoDB).
    Snapshot { snapshot: Box<Task> },
    /// Run the stored task with this id (a task too large to carry).
    Stored { id: Uuid },
    /// Run the tasks of the chunk with this base id
    /// ([`crate::table::tasks::chunks`]): a batch's tasks, up to ten to a message.
    /// It carries when the tasks were made: the worker waits for the
    /// chunk's record while its write may still land.
    Chunk {
        chunk: Uuid,
        created_at: chrono::DateTime<chrono::Utc>,
    },
    /// Run a task that is not stored (`ttl_seconds: 0`); it carries itself.
    Inline { task: Box<Task> },
    /// Deliver the webhook of a finished task (`attempt` from 1).
    Webhook { webhook: Uuid, attempt: u32 },
    /// Deliver the webhook of a finished task that is not stored.
    InlineWebhook {
        webhook_task: Box<Task>,
        attempt: u32,
    },
    /// Run a pipeline execution from its first unfinished step.
    Execution { execution: Uuid },
}

impl TaskMessage {
    /// The message as JSON text.
    pub fn encode(&self) -> String {
        // Serialising these plain types cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A message read back from its JSON text.
    pub fn decode(body: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(body)
    }
}
