//! Operator actions on tasks: cancel, requeue, report progress, bulk delete.
//! Each is a compare-and-set; a lost race re-reads and tries again.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::dispatch::{self, Dispatch};
use super::worker::invalid_transition;
use super::{Deps, ServiceError};
use crate::domain::identity::{Action, Principal, QueueAction};
use crate::domain::{Task, TaskStatus, TransitionError};
use crate::table::tasks::TaskFilter;

/// When the scheduler must next look at a task.
type Timer = DateTime<Utc>;

/// Races lost before giving up (each needs a concurrent writer of the same task).
const CAS_TRIES: usize = 8;

/// Apply `change` to the current task (and its current timer) until it
/// sticks. The closure's error ends the attempt (the transition is not
/// allowed from the current state).
async fn update<F>(
    deps: &Deps,
    id: Uuid,
    permit: Option<(&Principal, QueueAction)>,
    change: F,
) -> Result<Task, ServiceError>
where
    F: Fn(&Task, Option<Timer>) -> Result<(Task, Option<Timer>), TransitionError>,
{
    for _ in 0..CAS_TRIES {
        let (task, timer) = deps
            .tasks()
            .get_with_timer(id)
            .await?
            .ok_or(ServiceError::NotFound("task not found"))?;
        if let Some((who, action)) = permit
            && !who.may(Action::Queue(&task.queue_name, action))
        {
            return Err(ServiceError::Forbidden(format!(
                "your permissions do not allow `{}` on queue `{}`",
                action.as_str(),
                task.queue_name
            )));
        }
        let (next, timer) = change(&task, timer).map_err(invalid_transition)?;
        match deps.tasks().save(&task, &next, timer).await {
            Err(e) if e.is_conflict() => continue,
            Err(e) => return Err(e.into()),
            Ok(()) => return Ok(next),
        }
    }
    Err(ServiceError::Conflict {
        message: "the task kept changing; try again".into(),
        code: "contention",
    })
}

/// pending → cancelled, if `who` may cancel on the task's queue. Its
/// message, when it arrives, is dropped.
pub async fn cancel(deps: &Deps, id: Uuid, who: &Principal) -> Result<Task, ServiceError> {
    let now = deps.now();
    let permit = Some((who, QueueAction::Cancel));
    update(deps, id, permit, |t, _| t.cancel(now).map(|t| (t, None))).await
}

/// failed → pending, due now, with a fresh attempt budget, if `who` may
/// requeue on the task's queue. Once written, its message is sent even if
/// the caller goes away.
pub async fn requeue(deps: &Deps, id: Uuid, who: &Principal) -> Result<Task, ServiceError> {
    let (deps, who) = (deps.clone(), who.clone());
    dispatch::detached(async move {
        let now = deps.now();
        let permit = Some((&who, QueueAction::Requeue));
        let task = update(&deps, id, permit, |t, _| {
            let next = t.requeue(now)?;
            let plan = dispatch::plan(&deps, &next, now);
            Ok((next, Some(plan.timer())))
        })
        .await?;
        if let Dispatch::Send { delay, .. } = dispatch::plan(&deps, &task, now) {
            let message = dispatch::message(&deps, &task, delay);
            dispatch::send_or_recheck(&deps, vec![message], |soon| {
                vec![dispatch::recheck(&deps, &task, soon)]
            })
            .await;
        }
        Ok(task)
    })
    .await
}

/// Record progress (0-100) of a task, whatever its status (as lapinq does).
pub async fn progress(
    deps: &Deps,
    id: Uuid,
    progress: f64,
    message: Option<String>,
) -> Result<Task, ServiceError> {
    if !(0.0..=100.0).contains(&progress) {
        return Err(ServiceError::invalid(
            "invalid_field",
            "progress must be between 0 and 100",
        ));
    }
    update(deps, id, None, |t, timer| {
        let next = t.report_progress(progress, message.clone())?;
        // Its timer stays: when the scheduler must look at it next.
        Ok((next, timer))
    })
    .await
}

/// The most tasks one bulk delete removes; the caller continues with the
/// cursor it gets back.
pub const MAX_DELETED_PER_CALL: u64 = 1000;
/// How long one bulk delete may work (well under API Gateway's 29 s).
const DELETE_BUDGET: std::time::Duration = std::time::Duration::from_secs(10);

/// What one bulk delete did, and where the next one goes on (`None` when
/// every matching task is gone).
#[derive(Debug, PartialEq, Eq)]
pub struct Deleted {
    pub deleted: u64,
    pub next: Option<String>,
}

/// Delete tasks matching `filter`, newest first, from its cursor on: at
/// most [`MAX_DELETED_PER_CALL`] of them within [`DELETE_BUDGET`].
pub async fn delete_matching(deps: &Deps, filter: &TaskFilter) -> Result<Deleted, ServiceError> {
    let started = std::time::Instant::now();
    let mut filter = filter.clone();
    let mut deleted = 0;
    loop {
        let page = deps.tasks().list(&filter, 200).await?;
        for task in &page.tasks {
            match deps.tasks().delete(task).await {
                Ok(()) => deleted += 1,
                // Changed since we read it: it is re-read on the next pass only
                // if it still matches; skip it here.
                Err(e) if e.is_conflict() => {}
                Err(e) => return Err(e.into()),
            }
            // Task ids are the lists' sort keys: the next call starts below it.
            let next = Some(task.id.to_string());
            if deleted == MAX_DELETED_PER_CALL || started.elapsed() > DELETE_BUDGET {
                return Ok(Deleted { deleted, next });
            }
        }
        match page.next {
            Some(cursor) if started.elapsed() > DELETE_BUDGET => {
                return Ok(Deleted {
                    deleted,
                    next: Some(cursor),
                });
            }
            Some(cursor) => filter.before = Some(cursor),
            None => {
                return Ok(Deleted {
                    deleted,
                    next: None,
                });
            }
        }
    }
}

/// Whether a status answers a "not finished" result.
pub fn is_finished(status: TaskStatus) -> bool {
    matches!(
        status,
        TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Cancelled | TaskStatus::Expired
    )
}
