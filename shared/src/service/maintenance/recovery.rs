//! Start-up recovery for a runtime whose queue does not outlive the process
//! (the embedded one): every pending task and running execution lost its
//! message, and every running attempt its worker. Only sound when this
//! process holds the store exclusively (the redb file lock), so no other
//! worker can own those attempts.

use crate::domain::{Task, TaskStatus};
use crate::service::dispatch::{self, Dispatch};
use crate::service::worker::rescue;
use crate::service::{Deps, ServiceError, executions};
use crate::table::tasks::TaskFilter;

/// How far back the executions' timers are searched at start.
const LOOKBACK: chrono::Duration = chrono::Duration::hours(1);

/// Re-send every pending task and running execution, and rescue every
/// running task: (re-sent, rescued). What cannot be done now is logged and
/// left to the scheduler, never a reason not to start.
pub async fn recover_exclusive(deps: &Deps) -> Result<(usize, usize), ServiceError> {
    let now = deps.now();
    let mut resent = 0;
    let mut batch = Vec::new();
    for task in all_with_status(deps, TaskStatus::Pending).await? {
        if let Dispatch::Send { delay, .. } = dispatch::plan(deps, &task, now) {
            batch.push(dispatch::message(deps, &task, delay));
            resent += 1;
        }
    }
    deps.queue
        .send_batch(&deps.config.task_queue, batch)
        .await?;
    resent += executions::recover_exclusive(deps, LOOKBACK).await?;
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
            // Its lease still runs out, and the scheduler rescues it then.
            Err(e) => {
                tracing::error!(task_id = %task.id, error = %e, "could not rescue a task at start; the scheduler will")
            }
        }
    }
    Ok((resent, rescued))
}

async fn all_with_status(deps: &Deps, status: TaskStatus) -> Result<Vec<Task>, ServiceError> {
    let mut filter = TaskFilter {
        status: Some(status),
        ..Default::default()
    };
    let mut out = Vec::new();
    loop {
        let page = deps.tasks().list(&filter, 1000).await?;
        out.extend(page.tasks);
        match page.next {
            Some(cursor) => filter.before = Some(cursor),
            None => return Ok(out),
        }
    }
}
