//! The scheduler's tick: fire the timers that are due and do the TTL work.
//!
//! Timers (index gsi5) release delayed tasks, re-send pending tasks whose
//! message may be lost (the outbox), rescue running tasks past their lease and
//! re-send owed webhooks, re-send lost pipeline executions and fire due
//! schedule triggers. Expiry entries (gsi6) expire pending tasks past their
//! TTL and delete what has outlived it. Both indexes are bucketed per minute;
//! a cursor per index remembers the last bucket fully swept. Every action is a
//! compare-and-set, so overlapping ticks are harmless.

use chrono::{DateTime, Duration as ChronoDuration, TimeZone, Utc};
use serde_json::{Map, Value};

use super::tasks::{
    EXPIRY, EXPIRY_PREFIX, TIMER, TIMER_PREFIX, minute_bucket, sort_time, task_from_item,
};
use super::webhook;
use super::worker::{After, TaskMessage, apply, redispatch};
use super::{Deps, ServiceError};
use crate::domain::{AfterFailure, Task, TaskStatus};
use crate::ports::{Condition, Index, Item, Key, OutgoingMessage, Query, StoreError, WriteOp};

/// The most entries one tick handles per index; the rest wait for the next.
const MAX_PER_TICK: usize = 2000;
/// How far back the first tick ever looks.
const FIRST_LOOKBACK_MINUTES: i64 = 60;
/// Buckets re-swept behind the current minute, for writers whose clocks lag.
const SLACK_MINUTES: i64 = 2;

/// What one tick did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TickReport {
    /// Pending tasks sent to the queue (delayed ones now due, or re-sent).
    pub released: usize,
    /// Running tasks whose lease ran out.
    pub rescued: usize,
    /// Owed webhooks re-sent.
    pub webhooks: usize,
    /// Pipeline executions re-sent (message lost, or worker lost mid-run).
    pub executions: usize,
    /// Schedule triggers fired (each started one execution).
    pub triggers: usize,
    /// Pending tasks past their TTL.
    pub expired: usize,
    /// Items deleted at the end of their TTL.
    pub deleted: usize,
    /// Entries whose action failed; each is logged, the others still run,
    /// and a backend outage keeps its entry due for the next tick.
    pub failed: usize,
}

/// Fire everything due at the clock's now. One entry's failure is logged
/// and counted, never the end of the tick: the sweep moves on, and the
/// index's cursor stays at the first entry that failed for want of a
/// backend, so the next tick tries it again.
pub async fn tick(deps: &Deps) -> Result<TickReport, ServiceError> {
    let now = deps.now();
    let mut report = TickReport::default();
    for (prefix, index) in [(TIMER_PREFIX, TIMER), (EXPIRY_PREFIX, EXPIRY)] {
        let sweep = due_entries(deps, prefix, index, now).await?;
        let mut retry_from: Option<DateTime<Utc>> = None;
        for item in &sweep.due {
            let done = match index {
                TIMER => on_timer(deps, &item.key, now, &mut report).await,
                _ => on_expiry(deps, &item.key, now, &mut report).await,
            };
            if let Err(e) = done {
                report.failed += 1;
                let transient = matches!(
                    e,
                    ServiceError::Store(StoreError::Unavailable(_)) | ServiceError::Queue(_)
                );
                tracing::error!(pk = %item.key.pk, sk = %item.key.sk, error = %e, transient, "scheduler entry failed");
                let minute = item
                    .index_key(index)
                    .and_then(|k| k.pk.rsplit('#').next())
                    .and_then(parse_minute);
                if let (true, Some(m)) = (transient, minute) {
                    retry_from = Some(retry_from.map_or(m, |r| r.min(m)));
                }
            }
        }
        sweep.advance(deps, retry_from).await?;
    }
    Ok(report)
}

/// The entries of one bucketed index that are due, and how far the index's
/// cursor may move once they are handled.
struct Sweep {
    cursor_key: Key,
    old_cursor: Option<String>,
    /// The first minute not swept completely (or re-swept for slack).
    swept_to: DateTime<Utc>,
    due: Vec<Item>,
}

impl Sweep {
    /// Move the cursor to where the sweep got, but not past `retry_from`.
    async fn advance(
        self,
        deps: &Deps,
        retry_from: Option<DateTime<Utc>>,
    ) -> Result<(), ServiceError> {
        let to = retry_from.map_or(self.swept_to, |r| r.min(self.swept_to));
        let new_cursor = minute_bucket(to);
        if self.old_cursor.as_deref() == Some(new_cursor.as_str()) {
            return Ok(());
        }
        let mut attrs = Map::new();
        attrs.insert("minute".into(), Value::from(new_cursor));
        let op = WriteOp::Put {
            item: Item::new(self.cursor_key, attrs),
            cond: Condition::None,
        };
        deps.store.transact(vec![op]).await?;
        Ok(())
    }
}

/// Entries of a bucketed index due by `now`, oldest bucket first, from the
/// index's cursor on.
async fn due_entries(
    deps: &Deps,
    prefix: &str,
    index: Index,
    now: DateTime<Utc>,
) -> Result<Sweep, ServiceError> {
    let cursor_key = Key::new("SCHED", prefix);
    let old_cursor = deps.store.get(&cursor_key).await?.and_then(|i| {
        i.attrs
            .get("minute")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let start = old_cursor
        .as_deref()
        .and_then(parse_minute)
        .unwrap_or(now - ChronoDuration::minutes(FIRST_LOOKBACK_MINUTES));
    let until = format!("{}~", sort_time(now)); // every sort key at or before now
    let mut due = Vec::new();
    let mut minute = start;
    let mut complete = true;
    while minute_bucket(minute) <= minute_bucket(now) {
        let mut q = Query::index(index, format!("{prefix}#{}", minute_bucket(minute)), 500);
        q.before = Some(until.clone());
        loop {
            q.limit = (MAX_PER_TICK - due.len()).clamp(1, 500);
            let page = deps.store.query(&q).await?;
            let full = page.len() == q.limit;
            q.after = page
                .last()
                .and_then(|i| i.index_key(index))
                .map(|k| k.sk.clone());
            due.extend(page);
            if due.len() >= MAX_PER_TICK {
                complete = false;
                break;
            }
            if !full {
                break;
            }
        }
        if !complete {
            break;
        }
        minute += ChronoDuration::minutes(1);
    }
    let swept_to = if complete {
        now - ChronoDuration::minutes(SLACK_MINUTES)
    } else {
        minute
    };
    Ok(Sweep {
        cursor_key,
        old_cursor,
        swept_to: swept_to.max(start),
        due,
    })
}

fn parse_minute(s: &str) -> Option<DateTime<Utc>> {
    let naive = chrono::NaiveDateTime::parse_from_str(&format!("{s}00"), "%Y%m%d%H%M%S").ok()?;
    Some(Utc.from_utc_datetime(&naive))
}

/// When an item's entry in a timed index fires (epoch ms), from its sort key.
fn fires_at(item: &Item, index: Index) -> Option<i64> {
    item.index_key(index)?.sk.split('#').next()?.parse().ok()
}

/// Read the current item behind an index entry (indexes may lag), if its
/// entry in `index` is still due.
async fn current_due(
    deps: &Deps,
    key: &Key,
    index: Index,
    now: DateTime<Utc>,
) -> Result<Option<Item>, ServiceError> {
    let item = deps.store.get(key).await?;
    Ok(item.filter(|i| fires_at(i, index).is_some_and(|at| at <= now.timestamp_millis())))
}

async fn on_timer(
    deps: &Deps,
    key: &Key,
    now: DateTime<Utc>,
    report: &mut TickReport,
) -> Result<(), ServiceError> {
    let Some(item) = current_due(deps, key, TIMER, now).await? else {
        return Ok(());
    };
    if key.pk.starts_with(super::triggers::TRIGGER_PREFIX) {
        let fired = super::triggers::fire_due(deps, &item, now).await;
        return counted(fired, &mut report.triggers);
    }
    if key.pk.starts_with(super::executions::EXECUTION_PREFIX) {
        let resent = super::executions::resume(deps, &item, now).await;
        return counted(resent, &mut report.executions);
    }
    let Some(task) = task_from_item(&item) else {
        return Ok(());
    };
    let outcome = match task.status {
        TaskStatus::Pending => redispatch(deps, &task, now)
            .await
            .map(|_| report.released += 1),
        TaskStatus::Running if task.lease_until.is_some_and(|l| l <= now) => rescue(
            deps,
            &task,
            now,
            "attempt lost: its lease ran out (worker crashed or stalled)",
        )
        .await
        .map(|_| report.rescued += 1),
        _ if webhook::owes_webhook(&task) => resend_webhook(deps, &task, now)
            .await
            .map(|_| report.webhooks += 1),
        _ => Ok(()),
    };
    // One task's lost race must not stop the sweep.
    match outcome {
        Err(e) if e.is_conflict() => Ok(()),
        other => other,
    }
}

/// Count what a timer's action did; a lost race is no error (another tick
/// or a worker acted first).
fn counted(outcome: Result<bool, ServiceError>, counter: &mut usize) -> Result<(), ServiceError> {
    match outcome {
        Ok(done) => {
            *counter += usize::from(done);
            Ok(())
        }
        Err(e) if e.is_conflict() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Count a lost attempt as failed and retry or fail the task, as the worker would.
pub async fn rescue(
    deps: &Deps,
    task: &Task,
    now: DateTime<Utc>,
    why: &str,
) -> Result<(), ServiceError> {
    let after = task
        .fail(now, why.to_string(), true, rand::random())
        .map_err(|e| ServiceError::Conflict {
            message: e.to_string(),
            code: "invalid_transition",
        })?;
    tracing::warn!(task_id = %task.id, attempt = task.attempts, "{why}");
    let next = match after {
        AfterFailure::Retry(t, _) => After::Retry(t),
        AfterFailure::Failed(t) => After::Done(t),
    };
    apply(deps, task, next).await
}

async fn resend_webhook(deps: &Deps, task: &Task, now: DateTime<Utc>) -> Result<(), ServiceError> {
    let attempt = task.webhook.as_ref().map_or(0, |w| w.attempts) + 1;
    let mut next = task.clone();
    next.version += 1;
    let recheck = now + ChronoDuration::from_std(deps.config.redispatch_after).unwrap_or_default();
    deps.save_task(task, &next, Some(recheck)).await?;
    let message = OutgoingMessage {
        body: TaskMessage::Webhook {
            webhook: task.id,
            attempt,
        }
        .encode(),
        priority: task.priority,
        ..Default::default()
    };
    deps.queue
        .send_batch(&deps.config.task_queue, vec![message])
        .await?;
    Ok(())
}

async fn on_expiry(
    deps: &Deps,
    key: &Key,
    now: DateTime<Utc>,
    report: &mut TickReport,
) -> Result<(), ServiceError> {
    let Some(item) = current_due(deps, key, EXPIRY, now).await? else {
        return Ok(());
    };
    let outcome = match task_from_item(&item) {
        Some(task) => match task.status {
            TaskStatus::Pending => {
                let expired = task.expire(now).map_err(|e| ServiceError::Conflict {
                    message: e.to_string(),
                    code: "invalid_transition",
                });
                match expired {
                    Ok(t) => deps
                        .save_task(&task, &t, None)
                        .await
                        .map(|_| report.expired += 1),
                    Err(e) => Err(e),
                }
            }
            // Still running: its next write re-files the expiry at that time.
            TaskStatus::Running => Ok(()),
            _ => deps.delete_task(&task).await.map(|_| report.deleted += 1),
        },
        // Any other item with a TTL (idempotency keys): delete it unless it
        // was re-created since (its `expires` would differ).
        None if item.is_expired(now.timestamp()) => {
            let cond = match item.attrs.get("expires") {
                Some(v) => Condition::Equals {
                    attr: "expires".into(),
                    value: v.clone(),
                },
                None => Condition::Exists,
            };
            let op = WriteOp::Delete {
                key: item.key.clone(),
                cond,
            };
            deps.store
                .transact(vec![op])
                .await
                .map(|_| report.deleted += 1)
                .map_err(Into::into)
        }
        None => Ok(()),
    };
    match outcome {
        Err(e) if e.is_conflict() => Ok(()),
        other => other,
    }
}

/// At the start of a runtime whose queue does not outlive the process (the
/// embedded one): re-send every pending task and running pipeline
/// execution, and rescue every running task.
/// Only sound when this process holds the store exclusively (the redb file
/// lock), so no other worker can own those running attempts.
pub async fn recover_exclusive(deps: &Deps) -> Result<(usize, usize), ServiceError> {
    let now = deps.now();
    let mut resent = 0;
    let mut batch = Vec::new();
    for task in all_with_status(deps, TaskStatus::Pending).await? {
        if let super::enqueue::Dispatch::Send { delay, .. } = deps.dispatch_plan(&task, now) {
            batch.push(deps.task_message(&task, delay));
            resent += 1;
        }
    }
    deps.queue
        .send_batch(&deps.config.task_queue, batch)
        .await?;
    resent +=
        super::executions::recover_exclusive(deps, ChronoDuration::minutes(FIRST_LOOKBACK_MINUTES))
            .await?;
    let mut rescued = 0;
    for task in all_with_status(deps, TaskStatus::Running).await? {
        match rescue(
            deps,
            &task,
            now,
            "attempt lost: warren restarted while it ran",
        )
        .await
        {
            Ok(()) => rescued += 1,
            Err(e) if e.is_conflict() => {}
            // One task that cannot be rescued must not keep warren from
            // starting: its lease still runs out, and the scheduler retries.
            Err(e) => {
                tracing::error!(task_id = %task.id, error = %e, "could not rescue a task at start; the scheduler will")
            }
        }
    }
    Ok((resent, rescued))
}

async fn all_with_status(deps: &Deps, status: TaskStatus) -> Result<Vec<Task>, ServiceError> {
    let mut filter = super::tasks::TaskFilter {
        status: Some(status),
        ..Default::default()
    };
    let mut out = Vec::new();
    loop {
        let page = deps.list_tasks(&filter, 1000).await?;
        out.extend(page.tasks);
        match page.next {
            Some(cursor) => filter.before = Some(cursor),
            None => return Ok(out),
        }
    }
}
