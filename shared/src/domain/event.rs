//! Events posted to `/events`: the raw JSON, the pipeline (workflow) that
//! processes it, and how that ended.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::execution::{Execution, ExecutionStatus};
use super::pipeline::SchemaViolation;

/// Where an ingested event stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    /// Stored, its execution queued or running.
    Pending,
    Completed,
    /// Its execution ended in error or timeout (an invalid event among them).
    Failed,
}

/// An event posted to `/events`, and what its execution made of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    pub id: Uuid,
    pub data: Value,
    /// The pipeline that processes it, and which version.
    pub workflow: Uuid,
    pub pipeline_version: u32,
    /// The execution that processes it.
    pub execution_id: Uuid,
    pub status: EventStatus,
    #[schema(required = true)]
    pub result: Option<Value>,
    #[schema(required = true)]
    pub error: Option<String>,
    /// Where and how the data broke the pipeline's schema.
    #[schema(required = true)]
    pub validation_errors: Option<Vec<SchemaViolation>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Its pipeline's owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Uuid>,
}

impl Event {
    /// The event once its execution `e` has finished.
    pub fn finished(&self, e: &Execution, now: DateTime<Utc>) -> Event {
        let mut next = self.clone();
        next.status = match e.status {
            ExecutionStatus::Success => EventStatus::Completed,
            ExecutionStatus::Running => EventStatus::Pending,
            ExecutionStatus::Error | ExecutionStatus::Timeout => EventStatus::Failed,
        };
        next.result = e.output.clone();
        next.error = e.error.clone();
        next.validation_errors = e.validation_errors.clone();
        next.updated_at = now;
        next
    }
}
