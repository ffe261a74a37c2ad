//! A task and its state machine. Pure: every transition takes the time and
//! returns the next version of the task, or says why it is not allowed.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

/// Where a task is in its life.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    PartialOrd,
    Ord,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Pending,
    Running,
    Completed,
    Failed,
    Cancelled,
    Expired,
}

impl TaskStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [TaskStatus; 6] = [
        TaskStatus::Pending,
        TaskStatus::Running,
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
        TaskStatus::Expired,
    ];

    /// The status as the API and the table write it.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Running => "running",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
            TaskStatus::Expired => "expired",
        }
    }

    /// No transition leaves this status except requeue (failed) and deletion.
    pub fn is_final(self) -> bool {
        !matches!(self, TaskStatus::Pending | TaskStatus::Running)
    }
}

impl std::str::FromStr for TaskStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown status `{s}` (pending, running, completed, failed, cancelled, expired)"
                )
            })
    }
}

/// Longest accepted task timeout, in seconds (a day).
pub const MAX_TIMEOUT_SECONDS: u64 = 86_400;

/// Queue names become parts of keys and metric labels: keep them plain.
pub fn valid_queue_name(q: &str) -> bool {
    !q.is_empty()
        && q.len() <= 100
        && q.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

/// How a failed attempt is retried.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    pub max_retries: u32,
    /// Fixed delay, or the base of the exponential backoff, in seconds
    /// (fractions allowed, as lapinq takes them).
    pub retry_delay: Option<f64>,
    pub retry_backoff: bool,
}

/// Base delay of exponential backoff when no (positive) `retry_delay` is given.
const DEFAULT_BACKOFF_BASE: f64 = 1.0;
/// No retry waits longer than this.
const MAX_BACKOFF: f64 = 3600.0;

impl RetryPolicy {
    /// Total attempts allowed: the first one plus the retries.
    pub fn max_attempts(&self) -> u32 {
        self.max_retries.saturating_add(1)
    }

    /// Delay before the attempt that follows attempt number `attempt` (1-based).
    /// Backoff uses "full jitter": uniform in [0, base * 2^(attempt-1)], capped,
    /// so a burst of failures does not retry in lockstep. `unit` is a uniform
    /// random number in [0, 1).
    pub fn delay_after(&self, attempt: u32, unit: f64) -> Duration {
        let delay = self.retry_delay.filter(|d| d.is_finite() && *d > 0.0);
        if !self.retry_backoff {
            return Duration::from_secs_f64(delay.unwrap_or(0.0).min(MAX_BACKOFF));
        }
        let base = delay.unwrap_or(DEFAULT_BACKOFF_BASE);
        let exp = attempt.saturating_sub(1).min(30);
        let ceiling = (base * f64::from(1u32 << exp)).min(MAX_BACKOFF);
        Duration::from_secs_f64(ceiling * unit.clamp(0.0, 1.0))
    }
}

/// Where a webhook delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookStatus {
    /// Owed: a delivery is under way or will be retried.
    Pending,
    Delivered,
    /// Given up: refused for good, or out of attempts.
    Failed,
}

/// What became of a webhook delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WebhookOutcome {
    pub status: WebhookStatus,
    pub attempts: u32,
    #[schema(required = true)]
    pub last_status_code: Option<u16>,
    #[schema(required = true)]
    pub last_error: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// A unit of work, as stored. Serialised only into the store; the API has its
/// own DTOs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: Uuid,
    pub task_name: String,
    pub queue_name: String,
    pub module_path: Option<String>,
    pub args: Vec<Value>,
    pub kwargs: Map<String, Value>,
    pub status: TaskStatus,
    pub priority: i32,
    pub max_retries: u32,
    pub retry_delay: Option<f64>,
    pub retry_backoff: bool,
    pub timeout_seconds: u64,
    pub ttl_seconds: Option<f64>,
    pub metadata: Map<String, Value>,
    pub webhook_url: Option<String>,
    /// Extra headers of the webhook call; values may name the owner's
    /// stored secrets as `{{secrets.NAME}}`, resolved only at send time.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub webhook_headers: Map<String, Value>,
    pub idempotency_key: Option<String>,
    /// Attempts started so far.
    pub attempts: u32,
    /// The handler's result, as JSON text (the wire shape of the task API).
    pub result: Option<String>,
    pub error: Option<String>,
    /// 0 to 100, fractions allowed (as lapinq keeps it).
    pub progress: Option<f64>,
    pub progress_message: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Not before this time (delayed tasks and retries).
    pub scheduled_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    /// A running attempt not finished by then is presumed lost.
    pub lease_until: Option<DateTime<Utc>>,
    pub webhook: Option<WebhookOutcome>,
    /// The user who enqueued it (`None`: the deployment): whose stored
    /// secrets its `http` calls may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Uuid>,
    /// The W3C `traceparent` of the request that enqueued it: its attempts'
    /// outgoing calls continue that trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// A random token of the attempt that started it, while it runs: a
    /// worker whose start write was retried (its answer lost) tells its own
    /// write from a twin's by it, where a message handed twice in one batch
    /// started the task twice at the same instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<u64>,
    /// Bumped by every write; the compare-and-set token.
    pub version: u64,
}

/// A transition that the current status does not allow.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("task is {from:?}, cannot {action}")]
pub struct TransitionError {
    pub from: TaskStatus,
    pub action: &'static str,
}

/// What to do after an attempt failed.
#[derive(Clone, Debug, PartialEq)]
pub enum AfterFailure {
    /// Back to pending, to run again at this time.
    Retry(Task, DateTime<Utc>),
    /// No attempts left (or not retryable): the task is failed.
    Failed(Task),
}

impl Task {
    /// How a failed attempt of this task is retried.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_retries: self.max_retries,
            retry_delay: self.retry_delay,
            retry_backoff: self.retry_backoff,
        }
    }

    /// Whether it is finished and still owes its webhook (the scheduler
    /// re-sends it): its record must outlive its TTL until it is delivered.
    pub fn owes_webhook(&self) -> bool {
        self.status.is_final()
            && self.status != TaskStatus::Expired
            && self
                .webhook
                .as_ref()
                .is_some_and(|w| w.status == WebhookStatus::Pending)
    }

    /// When the TTL runs out, if it has one.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        // Validated at enqueue to at most ten years: the sum cannot overflow.
        self.ttl_seconds
            .map(|s| self.created_at + chrono::Duration::milliseconds((s * 1000.0).round() as i64))
    }

    /// When it became (or becomes) runnable: its delay or retry time, else
    /// its creation.
    pub fn due_at(&self) -> DateTime<Utc> {
        self.scheduled_at.unwrap_or(self.created_at)
    }

    /// Whether it may run at `now` (delayed tasks wait).
    pub fn is_due(&self, now: DateTime<Utc>) -> bool {
        self.scheduled_at.is_none_or(|at| at <= now)
    }

    fn next(&self, action: &'static str, allowed: &[TaskStatus]) -> Result<Task, TransitionError> {
        if !allowed.contains(&self.status) {
            return Err(TransitionError {
                from: self.status,
                action,
            });
        }
        let mut next = self.clone();
        next.version += 1;
        next.claim = None;
        Ok(next)
    }

    /// pending → running: one more attempt starts, leased for its timeout plus `grace`.
    pub fn start(&self, now: DateTime<Utc>, grace: Duration) -> Result<Task, TransitionError> {
        let mut t = self.next("start", &[TaskStatus::Pending])?;
        t.status = TaskStatus::Running;
        t.attempts += 1;
        t.started_at = Some(now);
        t.completed_at = None;
        if self.attempts > 0 {
            // A retry starts over; progress reported before the first start stays.
            t.progress = None;
            t.progress_message = None;
        }
        let lease = Duration::from_secs(t.timeout_seconds) + grace;
        t.lease_until =
            Some(now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX));
        Ok(t)
    }

    /// running → completed with the handler's result (JSON text).
    pub fn complete(&self, now: DateTime<Utc>, result: String) -> Result<Task, TransitionError> {
        let mut t = self.next("complete", &[TaskStatus::Running])?;
        t.status = TaskStatus::Completed;
        t.result = Some(result);
        t.error = None;
        t.completed_at = Some(now);
        t.lease_until = None;
        Ok(t)
    }

    /// running → pending (retry later) or failed. `retryable: false` fails at
    /// once whatever attempts are left (e.g. an unknown task name). `unit` is
    /// a uniform random number in [0, 1) for the backoff jitter.
    pub fn fail(
        &self,
        now: DateTime<Utc>,
        error: String,
        retryable: bool,
        unit: f64,
    ) -> Result<AfterFailure, TransitionError> {
        let mut t = self.next("fail", &[TaskStatus::Running])?;
        t.error = Some(error);
        t.lease_until = None;
        let policy = t.retry_policy();
        if retryable && t.attempts < policy.max_attempts() {
            let delay = policy.delay_after(t.attempts, unit);
            let at = now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
            t.status = TaskStatus::Pending;
            t.scheduled_at = Some(at);
            return Ok(AfterFailure::Retry(t, at));
        }
        t.status = TaskStatus::Failed;
        t.completed_at = Some(now);
        Ok(AfterFailure::Failed(t))
    }

    /// pending → cancelled.
    pub fn cancel(&self, now: DateTime<Utc>) -> Result<Task, TransitionError> {
        let mut t = self.next("cancel", &[TaskStatus::Pending])?;
        t.status = TaskStatus::Cancelled;
        t.completed_at = Some(now);
        Ok(t)
    }

    /// failed → pending, with a fresh budget of attempts, due now.
    pub fn requeue(&self, now: DateTime<Utc>) -> Result<Task, TransitionError> {
        let mut t = self.next("requeue", &[TaskStatus::Failed])?;
        t.status = TaskStatus::Pending;
        t.attempts = 0;
        t.error = None;
        t.result = None;
        t.completed_at = None;
        t.started_at = None;
        t.scheduled_at = Some(now);
        t.webhook = None;
        Ok(t)
    }

    /// pending → expired: its TTL ran out before it ran.
    pub fn expire(&self, now: DateTime<Utc>) -> Result<Task, TransitionError> {
        let mut t = self.next("expire", &[TaskStatus::Pending])?;
        t.status = TaskStatus::Expired;
        t.completed_at = Some(now);
        Ok(t)
    }

    /// Record progress (0 to 100), whatever the status: lapinq takes a
    /// report for a task that has not started, or has just finished.
    pub fn report_progress(
        &self,
        progress: f64,
        message: Option<String>,
    ) -> Result<Task, TransitionError> {
        let mut t = self.next("report progress", &TaskStatus::ALL)?;
        t.progress = Some(progress);
        t.progress_message = message;
        Ok(t)
    }

    /// The same task at the next version, for a write that changes only
    /// where it is filed (its timer): a message still carrying the older
    /// version finds it moved on and reads it again.
    pub fn refiled(&self) -> Task {
        let mut t = self.clone();
        t.version += 1;
        t
    }

    /// Record what became of the webhook call (any status).
    pub fn with_webhook(&self, outcome: WebhookOutcome) -> Task {
        let mut t = self.clone();
        t.version += 1;
        t.webhook = Some(outcome);
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(status: TaskStatus) -> Task {
        Task {
            id: Uuid::now_v7(),
            task_name: "echo".into(),
            queue_name: "default".into(),
            module_path: None,
            args: vec![],
            kwargs: Map::new(),
            status,
            priority: 0,
            max_retries: 2,
            retry_delay: Some(10.0),
            retry_backoff: false,
            timeout_seconds: 30,
            ttl_seconds: None,
            metadata: Map::new(),
            webhook_url: None,
            webhook_headers: Map::new(),
            idempotency_key: None,
            attempts: 0,
            result: None,
            error: None,
            progress: None,
            progress_message: None,
            created_at: now(),
            scheduled_at: None,
            started_at: None,
            completed_at: None,
            lease_until: None,
            webhook: None,
            owner: None,
            traceparent: None,
            claim: None,
            version: 1,
        }
    }

    fn now() -> DateTime<Utc> {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn transitions_follow_the_state_machine() {
        use TaskStatus::*;
        type Step = fn(&Task) -> Result<TaskStatus, TransitionError>;
        let steps: [(&str, Step); 6] = [
            ("start", |t| {
                t.start(now(), Duration::ZERO).map(|t| t.status)
            }),
            ("complete", |t| {
                t.complete(now(), "1".into()).map(|t| t.status)
            }),
            ("fail", |t| {
                t.fail(now(), "x".into(), false, 0.5).map(|o| match o {
                    AfterFailure::Retry(t, _) | AfterFailure::Failed(t) => t.status,
                })
            }),
            ("cancel", |t| t.cancel(now()).map(|t| t.status)),
            ("requeue", |t| t.requeue(now()).map(|t| t.status)),
            ("expire", |t| t.expire(now()).map(|t| t.status)),
        ];
        // (from, action) → expected status, or None when refused.
        let table: &[(TaskStatus, &str, Option<TaskStatus>)] = &[
            (Pending, "start", Some(Running)),
            (Pending, "cancel", Some(Cancelled)),
            (Pending, "expire", Some(Expired)),
            (Pending, "complete", None),
            (Pending, "requeue", None),
            (Running, "complete", Some(Completed)),
            (Running, "fail", Some(Failed)),
            (Running, "start", None),
            (Running, "cancel", None),
            (Running, "expire", None),
            (Failed, "requeue", Some(Pending)),
            (Failed, "start", None),
            (Completed, "requeue", None),
            (Completed, "cancel", None),
            (Cancelled, "start", None),
            (Expired, "start", None),
        ];
        for (from, action, expected) in table {
            let step = steps.iter().find(|(n, _)| n == action).unwrap().1;
            let got = step(&task(*from)).ok();
            assert_eq!(got, *expected, "{from:?} --{action}-->");
        }
    }

    #[test]
    fn every_transition_bumps_the_version() {
        let t = task(TaskStatus::Pending);
        assert_eq!(
            t.start(now(), Duration::ZERO).unwrap().version,
            t.version + 1
        );
        assert_eq!(t.cancel(now()).unwrap().version, t.version + 1);
    }

    #[test]
    fn start_counts_the_attempt_and_leases_for_timeout_plus_grace() {
        let t = task(TaskStatus::Pending)
            .start(now(), Duration::from_secs(5))
            .unwrap();
        assert_eq!(t.attempts, 1);
        assert_eq!(t.lease_until, Some(now() + chrono::Duration::seconds(35)));
    }

    #[test]
    fn failure_retries_until_attempts_are_spent() {
        // max_retries 2 → 3 attempts in all.
        let mut t = task(TaskStatus::Pending);
        for attempt in 1..=3 {
            let running = t.start(now(), Duration::ZERO).unwrap();
            assert_eq!(running.attempts, attempt);
            match running.fail(now(), "boom".into(), true, 0.5).unwrap() {
                AfterFailure::Retry(next, at) if attempt < 3 => {
                    assert_eq!(next.status, TaskStatus::Pending);
                    assert_eq!(at, now() + chrono::Duration::seconds(10));
                    t = next;
                }
                AfterFailure::Failed(done) if attempt == 3 => {
                    assert_eq!(done.status, TaskStatus::Failed);
                    assert_eq!(done.error.as_deref(), Some("boom"));
                }
                other => panic!("attempt {attempt}: unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn non_retryable_failure_fails_at_once() {
        let running = task(TaskStatus::Pending)
            .start(now(), Duration::ZERO)
            .unwrap();
        let out = running
            .fail(now(), "unknown task".into(), false, 0.5)
            .unwrap();
        assert!(matches!(out, AfterFailure::Failed(t) if t.attempts == 1));
    }

    #[test]
    fn backoff_is_full_jitter_under_an_exponential_ceiling() {
        let p = RetryPolicy {
            max_retries: 10,
            retry_delay: Some(2.0),
            retry_backoff: true,
        };
        assert_eq!(p.delay_after(1, 0.0), Duration::ZERO);
        assert_eq!(p.delay_after(1, 1.0), Duration::from_secs(2));
        assert_eq!(p.delay_after(3, 1.0), Duration::from_secs(8));
        assert_eq!(p.delay_after(3, 0.5), Duration::from_secs(4));
        assert_eq!(p.delay_after(40, 1.0), Duration::from_secs_f64(MAX_BACKOFF));
    }

    #[test]
    fn fixed_delay_ignores_jitter() {
        let p = RetryPolicy {
            max_retries: 1,
            retry_delay: Some(30.0),
            retry_backoff: false,
        };
        assert_eq!(p.delay_after(1, 0.1), Duration::from_secs(30));
        assert_eq!(p.delay_after(5, 0.9), Duration::from_secs(30));
    }

    #[test]
    fn requeue_gives_a_fresh_budget() {
        let mut failed = task(TaskStatus::Failed);
        failed.attempts = 3;
        failed.error = Some("x".into());
        let t = failed.requeue(now()).unwrap();
        assert_eq!(
            (t.status, t.attempts, t.error),
            (TaskStatus::Pending, 0, None)
        );
    }

    #[test]
    fn progress_is_kept_in_any_status_and_a_retry_starts_it_over() {
        for status in TaskStatus::ALL {
            let t = task(status)
                .report_progress(50.5, Some("half".into()))
                .unwrap();
            assert_eq!(
                (t.progress, t.progress_message.as_deref()),
                (Some(50.5), Some("half"))
            );
        }
        let reported = task(TaskStatus::Pending)
            .report_progress(5.0, None)
            .unwrap();
        let first = reported.start(now(), Duration::ZERO).unwrap();
        assert_eq!(first.progress, Some(5.0), "reported before the first start");
        let mut failed_once = first.clone();
        failed_once.status = TaskStatus::Pending;
        let retry = failed_once.start(now(), Duration::ZERO).unwrap();
        assert_eq!(retry.progress, None, "a retry starts over");
    }
}
