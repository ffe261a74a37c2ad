//! Wire shapes of the task API (compatible with the lapinq REST API): what
//! clients send and what they get back. Never the stored structs.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::domain::execution::{Execution, ExecutionStatus, StepRecord, TriggerType};
use crate::domain::pipeline::SchemaViolation;
use crate::domain::{Task, TaskStatus, WebhookOutcome};

/// The body of `POST /api/v1/enqueue` and of each batch item: the use
/// case's input, read with the task API's defaults and lapinq's messages.
pub use crate::service::enqueue::NewTask as EnqueueRequest;

/// A task as the API shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct TaskResponse {
    pub id: Uuid,
    pub task_name: String,
    pub queue_name: String,
    #[schema(required = true)]
    pub module_path: Option<String>,
    pub args: Vec<Value>,
    pub kwargs: Map<String, Value>,
    pub status: TaskStatus,
    pub priority: i32,
    pub max_retries: u32,
    pub attempts: u32,
    #[serde(serialize_with = "whole_as_integer")]
    #[schema(required = true)]
    pub retry_delay: Option<f64>,
    pub retry_backoff: bool,
    pub timeout_seconds: u64,
    #[serde(serialize_with = "whole_as_integer")]
    #[schema(required = true)]
    pub ttl_seconds: Option<f64>,
    pub metadata: Map<String, Value>,
    #[schema(required = true)]
    pub webhook_url: Option<String>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub webhook_headers: Map<String, Value>,
    #[schema(required = true)]
    pub idempotency_key: Option<String>,
    #[schema(required = true)]
    pub result: Option<String>,
    #[schema(required = true)]
    pub error: Option<String>,
    #[serde(serialize_with = "whole_as_integer")]
    #[schema(required = true)]
    pub progress: Option<f64>,
    #[schema(required = true)]
    pub progress_message: Option<String>,
    pub created_at: DateTime<Utc>,
    #[schema(required = true)]
    pub scheduled_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    pub started_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    pub completed_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    pub webhook: Option<WebhookOutcome>,
}

impl From<Task> for TaskResponse {
    fn from(t: Task) -> Self {
        TaskResponse {
            id: t.id,
            task_name: t.task_name,
            queue_name: t.queue_name,
            module_path: t.module_path,
            args: t.args,
            kwargs: t.kwargs,
            status: t.status,
            priority: t.priority,
            max_retries: t.max_retries,
            attempts: t.attempts,
            retry_delay: t.retry_delay,
            retry_backoff: t.retry_backoff,
            timeout_seconds: t.timeout_seconds,
            ttl_seconds: t.ttl_seconds,
            metadata: t.metadata,
            webhook_url: t.webhook_url,
            webhook_headers: t.webhook_headers,
            idempotency_key: t.idempotency_key,
            result: t.result,
            error: t.error,
            progress: t.progress,
            progress_message: t.progress_message,
            created_at: t.created_at,
            scheduled_at: t.scheduled_at,
            started_at: t.started_at,
            completed_at: t.completed_at,
            webhook: t.webhook,
        }
    }
}

/// Seconds and percentages that may have fractions: whole ones are written
/// as integers (`30`, not `30.0`), as warren has always answered them.
fn whole_as_integer<S: serde::Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    v.map(number).serialize(s)
}

/// A JSON number, an integer when it is whole.
pub fn number(x: f64) -> Value {
    match x.fract() == 0.0 && x.abs() < 9.0e15 {
        true => Value::from(x as i64),
        false => Value::from(x),
    }
}

/// `GET /api/v1/tasks/{id}/result` of a finished task.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct TaskResultResponse {
    pub id: Uuid,
    pub status: TaskStatus,
    #[schema(required = true)]
    pub result: Option<String>,
    #[schema(required = true)]
    pub error: Option<String>,
    #[schema(required = true)]
    pub completed_at: Option<DateTime<Utc>>,
}

/// Parse a task id from a path, answering 400 for anything but a UUID.
pub fn task_id(raw: &str) -> Result<Uuid, super::ApiError> {
    id_of(raw, "task")
}

/// The id of a `what` (pipeline, execution, event) in a path: 400 unless a UUID.
pub fn id_of(raw: &str, what: &str) -> Result<Uuid, super::ApiError> {
    raw.parse().map_err(|_| {
        super::ApiError::bad_request("invalid_id", format!("`{raw}` is not a {what} id (a UUID)"))
    })
}

/// An execution as the API shows it (the lease and write version stay inside).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ExecutionResponse {
    pub id: Uuid,
    pub pipeline_id: Uuid,
    pub pipeline_version: u32,
    pub status: ExecutionStatus,
    pub trigger_type: TriggerType,
    #[schema(required = true)]
    pub trigger_id: Option<String>,
    #[schema(required = true)]
    pub event_id: Option<Uuid>,
    pub started_at: DateTime<Utc>,
    #[schema(required = true)]
    pub completed_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    pub duration_ms: Option<u64>,
    pub input: Value,
    #[schema(required = true)]
    pub output: Option<Value>,
    #[schema(required = true)]
    pub error: Option<String>,
    #[schema(required = true)]
    pub validation_errors: Option<Vec<SchemaViolation>>,
    pub steps: Vec<StepRecord>,
}

impl From<Execution> for ExecutionResponse {
    fn from(e: Execution) -> Self {
        ExecutionResponse {
            id: e.id,
            pipeline_id: e.pipeline_id,
            pipeline_version: e.pipeline_version,
            status: e.status,
            trigger_type: e.trigger_type,
            trigger_id: e.trigger_id,
            event_id: e.event_id,
            started_at: e.started_at,
            completed_at: e.completed_at,
            duration_ms: e.duration_ms,
            input: e.input,
            output: e.output,
            error: e.error,
            validation_errors: e.validation_errors,
            steps: e.steps,
        }
    }
}
