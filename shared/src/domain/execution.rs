//! Executions: one run of one pipeline version on one input. Each finished
//! step is checkpointed on the execution (a compare-and-set on its version),
//! so a run that resumes after a crash starts at the first unfinished step
//! and never runs a finished one again.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::pipeline::{Pipeline, SchemaViolation};

/// Where an execution stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionStatus {
    Running,
    Success,
    Error,
    Timeout,
}

impl ExecutionStatus {
    /// The status as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Running => "running",
            ExecutionStatus::Success => "success",
            ExecutionStatus::Error => "error",
            ExecutionStatus::Timeout => "timeout",
        }
    }
}

/// What started an execution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TriggerType {
    Manual,
    Webhook,
    Schedule,
    /// A message on a topic (event trigger).
    Event,
    /// An event posted to `/events`.
    Ingest,
}

/// Where one step of an execution stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    Success,
    Error,
    Timeout,
}

impl StepStatus {
    /// The status as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Success => "success",
            StepStatus::Error => "error",
            StepStatus::Timeout => "timeout",
        }
    }
}

/// One step's record within an execution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StepRecord {
    pub name: String,
    pub kind: String,
    pub status: StepStatus,
    pub attempts: u32,
    #[schema(required = true)]
    pub output: Option<Value>,
    #[schema(required = true)]
    pub error: Option<String>,
    #[schema(required = true)]
    pub started_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    pub completed_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    pub duration_ms: Option<u64>,
    /// Times a worker died (or stalled past its lease) while running this
    /// step; past [`MAX_LOST_WORKERS`] the step fails instead of resuming.
    #[serde(default)]
    pub lost_workers: u32,
}

/// How often a step may lose its worker before it is failed: a step that
/// keeps crashing the process (or hanging it) must not resume forever.
pub const MAX_LOST_WORKERS: u32 = 3;

/// How one step ended (after its retries).
#[derive(Clone, Debug, PartialEq)]
pub enum StepOutcome {
    Success(Value),
    /// Failed for good: the execution ends in `error`, with the input's
    /// schema violations when a `validate` step failed.
    Error {
        message: String,
        violations: Vec<SchemaViolation>,
    },
    /// Its last attempt ran out of time: the execution ends in `timeout`.
    Timeout(String),
}

/// One run of one pipeline version on one input, step by step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Execution {
    pub id: Uuid,
    pub pipeline_id: Uuid,
    pub pipeline_version: u32,
    pub trigger_type: TriggerType,
    pub trigger_id: Option<String>,
    /// The stored event this execution processes (`POST /events`).
    pub event_id: Option<Uuid>,
    pub status: ExecutionStatus,
    pub started_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<u64>,
    pub input: Value,
    pub output: Option<Value>,
    pub error: Option<String>,
    /// Where and how the input broke the pipeline's schema.
    pub validation_errors: Option<Vec<SchemaViolation>>,
    pub steps: Vec<StepRecord>,
    /// A worker holds the execution until then; after it, the run is
    /// presumed lost and resumed.
    pub lease_until: Option<DateTime<Utc>>,
    /// Its pipeline's owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Uuid>,
    /// The W3C `traceparent` of the request that started it: its steps'
    /// outgoing calls and enqueued tasks continue that trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// A random token of the worker that holds it, with its lease: a worker
    /// whose claim was retried (its answer lost) tells its own write from a
    /// twin's by it, where two copies of one message claimed the run at the
    /// same instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<u64>,
    /// Bumped by every write; the compare-and-set token.
    pub version: u64,
}

impl Execution {
    /// A new execution of `pipeline`, every step pending.
    pub fn new(
        id: Uuid,
        pipeline: &Pipeline,
        trigger_type: TriggerType,
        trigger_id: Option<String>,
        input: Value,
        now: DateTime<Utc>,
    ) -> Self {
        let steps = pipeline
            .spec
            .steps
            .iter()
            .map(|s| StepRecord {
                name: s.name.clone(),
                kind: s.kind.name().into(),
                status: StepStatus::Pending,
                attempts: 0,
                output: None,
                error: None,
                started_at: None,
                completed_at: None,
                duration_ms: None,
                lost_workers: 0,
            })
            .collect();
        Execution {
            id,
            pipeline_id: pipeline.id,
            pipeline_version: pipeline.version,
            user_id: pipeline.user_id,
            trigger_type,
            trigger_id,
            event_id: None,
            status: ExecutionStatus::Running,
            started_at: now,
            completed_at: None,
            duration_ms: None,
            input,
            output: None,
            error: None,
            validation_errors: None,
            steps,
            lease_until: None,
            traceparent: None,
            claim: None,
            version: 1,
        }
    }

    /// The first step not yet done, while the execution runs.
    pub fn next_step(&self) -> Option<usize> {
        if self.status != ExecutionStatus::Running {
            return None;
        }
        self.steps
            .iter()
            .position(|s| s.status == StepStatus::Pending)
    }

    /// What a step sees: the input and the outputs of the steps before it.
    pub fn context(&self) -> Value {
        let outputs: Map<String, Value> = self
            .steps
            .iter()
            .filter(|s| s.status == StepStatus::Success)
            .map(|s| (s.name.clone(), s.output.clone().unwrap_or(Value::Null)))
            .collect();
        serde_json::json!({ "event": self.input, "steps": outputs })
    }

    /// Whether a worker may take the run at `now`: running, and nobody
    /// holds it (or its holder's lease ran out).
    pub fn is_free(&self, now: DateTime<Utc>) -> bool {
        self.status == ExecutionStatus::Running && self.lease_until.is_none_or(|l| l <= now)
    }

    /// The next version, held by nobody: what every write that ends a
    /// worker's hold starts from.
    fn unheld(&self) -> Execution {
        let mut next = self.clone();
        next.version += 1;
        next.lease_until = None;
        next.claim = None;
        next
    }

    /// Held until `until` by the worker whose token is `claim`.
    pub fn claimed(&self, until: DateTime<Utc>, claim: u64) -> Execution {
        let mut next = self.clone();
        next.lease_until = Some(until);
        next.claim = Some(claim);
        next.version += 1;
        next
    }

    /// Ended before any step ran: the input breaks the pipeline's
    /// `event_schema`, which every run checks first.
    pub fn rejected(&self, violations: Vec<SchemaViolation>, now: DateTime<Utc>) -> Execution {
        let mut next = self.unheld();
        next.status = ExecutionStatus::Error;
        next.error = Some(format!(
            "the input breaks the pipeline's event_schema ({} violation(s))",
            violations.len()
        ));
        next.validation_errors = Some(violations);
        next.completed_at = Some(now);
        next.duration_ms = Some(millis(now - next.started_at));
        next
    }

    /// Free the run for another worker after its holder was lost. The step
    /// it was running counts the loss; once it has lost
    /// [`MAX_LOST_WORKERS`] workers it fails and ends the execution.
    pub fn released(&self, now: DateTime<Utc>) -> Execution {
        let mut next = self.unheld();
        let (Some(_), Some(index)) = (self.lease_until, self.next_step()) else {
            return next;
        };
        let lost = self.steps[index].lost_workers + 1;
        if lost >= MAX_LOST_WORKERS {
            let outcome = StepOutcome::Error {
                message: format!(
                    "its worker was lost {lost} times (crashed or stalled); not resumed again"
                ),
                violations: Vec::new(),
            };
            next = self.record(
                index,
                outcome,
                self.steps[index].attempts.max(lost),
                now,
                now,
            );
        }
        next.steps[index].lost_workers = lost;
        next
    }

    /// Checkpoint step `index` with its outcome after `attempts` attempts;
    /// the last success, or any failure, ends the execution. The lease is
    /// released: the holder claims the next step anew.
    pub fn record(
        &self,
        index: usize,
        outcome: StepOutcome,
        attempts: u32,
        started: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Execution {
        let mut next = self.unheld();
        let step = &mut next.steps[index];
        step.attempts = attempts;
        step.started_at = Some(started);
        step.completed_at = Some(now);
        step.duration_ms = Some(millis(now - started));
        let end = match outcome {
            StepOutcome::Success(output) => {
                step.status = StepStatus::Success;
                step.output = Some(output.clone());
                (index + 1 == next.steps.len()).then_some((
                    ExecutionStatus::Success,
                    Some(output),
                    None,
                ))
            }
            StepOutcome::Error {
                message,
                violations,
            } => {
                step.status = StepStatus::Error;
                step.error = Some(message.clone());
                if !violations.is_empty() {
                    next.validation_errors = Some(violations);
                }
                Some((ExecutionStatus::Error, None, Some(message)))
            }
            StepOutcome::Timeout(message) => {
                step.status = StepStatus::Timeout;
                step.error = Some(message.clone());
                Some((ExecutionStatus::Timeout, None, Some(message)))
            }
        };
        if let Some((status, output, error)) = end {
            next.status = status;
            next.output = output;
            next.error = error.map(|e| format!("step `{}`: {e}", next.steps[index].name));
            next.completed_at = Some(now);
            next.duration_ms = Some(millis(now - next.started_at));
        }
        next
    }
}

fn millis(d: chrono::Duration) -> u64 {
    d.num_milliseconds().max(0) as u64
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::pipeline::PipelineSpec;

    /// A manual execution of `pipeline()` on `input`.
    fn manual(input: Value, now: DateTime<Utc>) -> Execution {
        Execution::new(
            Uuid::now_v7(),
            &pipeline(),
            TriggerType::Manual,
            None,
            input,
            now,
        )
    }

    fn pipeline() -> Pipeline {
        let spec: PipelineSpec = serde_json::from_value(json!({
            "name": "p",
            "steps": [
                {"name": "a", "kind": "transform", "expression": "event.x"},
                {"name": "b", "kind": "transform", "expression": "steps.a"}
            ]
        }))
        .unwrap();
        let now = Utc::now();
        Pipeline {
            id: Uuid::now_v7(),
            version: 1,
            spec,
            created_at: now,
            updated_at: now,
            user_id: None,
        }
    }

    #[test]
    fn steps_are_checkpointed_in_order_and_the_last_output_is_the_result() {
        let now = Utc::now();
        let e = manual(json!({"x": 1}), now);
        assert_eq!(e.next_step(), Some(0));
        let e = e.record(0, StepOutcome::Success(json!(1)), 1, now, now);
        assert_eq!(
            (e.next_step(), e.status),
            (Some(1), ExecutionStatus::Running)
        );
        assert_eq!(e.context(), json!({"event": {"x": 1}, "steps": {"a": 1}}));
        let e = e.record(1, StepOutcome::Success(json!(2)), 1, now, now);
        assert_eq!((e.next_step(), e.status), (None, ExecutionStatus::Success));
        assert_eq!(e.output, Some(json!(2)));
        assert_eq!(e.version, 3);
    }

    #[test]
    fn a_failed_step_ends_the_execution_with_its_error() {
        let now = Utc::now();
        let e = manual(json!({}), now);
        let e = e.record(0, StepOutcome::Timeout("took too long".into()), 3, now, now);
        assert_eq!(e.status, ExecutionStatus::Timeout);
        assert_eq!(e.error.as_deref(), Some("step `a`: took too long"));
        assert_eq!(e.steps[1].status, StepStatus::Pending);
        assert_eq!(e.next_step(), None);
    }

    #[test]
    fn a_lease_holds_the_run_until_it_runs_out() {
        let now = Utc::now();
        let e = manual(json!({}), now);
        assert!(e.is_free(now));
        let held = e.claimed(now + chrono::Duration::seconds(30), 1);
        assert!(!held.is_free(now));
        assert!(held.is_free(now + chrono::Duration::seconds(30)));
        let checkpointed = held.record(0, StepOutcome::Success(json!(1)), 1, now, now);
        assert_eq!(
            checkpointed.lease_until, None,
            "a checkpoint releases the lease"
        );
        assert!(checkpointed.is_free(now));
    }

    #[test]
    fn a_lost_worker_is_counted_on_its_step_and_the_third_loss_fails_it() {
        let now = Utc::now();
        let mut e = manual(json!({}), now);
        assert_eq!(
            e.released(now).steps[0].lost_workers,
            0,
            "an unheld run lost nobody"
        );
        for lost in 1..=MAX_LOST_WORKERS {
            e = e.claimed(now, 1).released(now);
            assert_eq!(e.steps[0].lost_workers, lost);
            assert_eq!(e.lease_until, None);
        }
        assert_eq!(e.status, ExecutionStatus::Error);
        assert_eq!(e.steps[0].status, StepStatus::Error);
        assert_eq!(e.next_step(), None);
    }

    #[test]
    fn a_rejected_input_ends_the_run_before_any_step() {
        let now = Utc::now();
        let violation = SchemaViolation {
            path: "".into(),
            message: "\"order_id\" is a required property".into(),
        };
        let e = manual(json!({}), now).rejected(vec![violation.clone()], now);
        assert_eq!(e.status, ExecutionStatus::Error);
        assert_eq!(e.validation_errors, Some(vec![violation]));
        assert_eq!(e.next_step(), None);
        assert!(e.steps.iter().all(|s| s.status == StepStatus::Pending));
    }
}
