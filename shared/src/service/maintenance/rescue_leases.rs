//! Rescue running tasks whose lease ran out: their worker crashed or
//! stalled, so the attempt counts as failed and the task is retried or
//! failed, as the worker would have done.

use chrono::{DateTime, Utc};

use super::{Service, task_of};
use crate::domain::{AfterFailure, Task, TaskStatus};
use crate::ports::Item;
use crate::service::worker::{After, apply, invalid_transition};
use crate::service::{Deps, ServiceError};
use crate::table::tasks::from_item;
use crate::table::timers::{Due, Kind};

/// Running tasks past their lease.
pub struct RescueLeases;

fn lapsed(task: &Task, now: DateTime<Utc>) -> bool {
    task.status == TaskStatus::Running && task.lease_until.is_some_and(|l| l <= now)
}

impl Service for RescueLeases {
    const NAME: &'static str = "rescue-leases";
    const KIND: Kind = Kind::Timers;

    fn wants(due: &Due) -> bool {
        task_of(due).is_some_and(|t| t.status == TaskStatus::Running)
    }

    async fn act(deps: &Deps, item: Item, now: DateTime<Utc>) -> Result<bool, ServiceError> {
        match from_item(&item).filter(|t| lapsed(t, now)) {
            Some(task) => {
                let why = "attempt lost: its lease ran out (worker crashed or stalled)";
                rescue(deps, &task, now, why).await.map(|()| true)
            }
            None => Ok(false),
        }
    }
}

/// Count a lost attempt as failed and retry or fail the task, as the
/// worker would.
pub async fn rescue(
    deps: &Deps,
    task: &Task,
    now: DateTime<Utc>,
    why: &str,
) -> Result<(), ServiceError> {
    let after = task
        .fail(now, why.to_string(), true, deps.clock.jitter())
        .map_err(invalid_transition)?;
    tracing::warn!(task_id = %task.id, attempt = task.attempts, "{why}");
    let next = match after {
        AfterFailure::Retry(t, _) => After::Retry(t),
        AfterFailure::Failed(t) => After::Done(t),
    };
    // The scheduler's next sweep tries again: no waiting here.
    apply(deps, task, next, now).await
}
