//! Start-up recovery for a runtime whose queue does not outlive the process
//! (the embedded one): every pending task and running execution lost its
//! message, and every running attempt its worker. Only sound when this
//! process holds the store exclusively (the redb file lock), so no other
//! worker can own those attempts.
//!
//! Each of them has a timer there (a pending task its re-dispatch time, a
//! running task its lease end, a running execution its lease or re-dispatch
//! time: [`crate::Config::send_first`] is off), so recovery reads the timer
//! index, from where the scheduler's sweeps have got to (what lies before,
//! they handled; cursors not stored yet are pinned here, before this
//! process writes anything) to as far ahead as such a timer can lie: its
//! work grows with the live records and the minutes since the last sweep,
//! not with the tasks the store keeps.

use super::{ReleasePending, RescueLeases, ResumeExecutions, Service};
use crate::domain::task::MAX_TIMEOUT_SECONDS;
use crate::domain::{Task, TaskStatus};
use crate::ports::{Key, MAX_DELAY};
use crate::service::dispatch::{self, Dispatch};
use crate::service::worker::rescue;
use crate::service::{Deps, ServiceError, executions};
use crate::table::tasks;
use crate::table::timers::{self, Owner};

/// Re-send every pending task and running execution, and rescue every
/// running task: (re-sent, rescued). What cannot be done now is logged and
/// left to the scheduler, never a reason not to start.
pub async fn recover_exclusive(deps: &Deps) -> Result<(usize, usize), ServiceError> {
    let now = deps.now();
    let mut from = now;
    for cursor in [
        ReleasePending::NAME,
        RescueLeases::NAME,
        ResumeExecutions::NAME,
    ] {
        from = from.min(timers::sweep_start(&*deps.store, cursor, now).await?.0);
    }
    let (mut pending, mut running, mut resent) = (Vec::new(), Vec::new(), 0);
    for due in timers::between(&*deps.store, from, now + furthest_timer(deps)).await? {
        match &due.owner {
            Owner::Task(key) => match task_at(deps, key).await {
                Some(t) if t.status == TaskStatus::Pending => pending.push(t),
                Some(t) if t.status == TaskStatus::Running => running.push(t),
                _ => {}
            },
            Owner::Execution(key) => {
                resent += usize::from(executions::resume_at_start(deps, key, now).await)
            }
            _ => {}
        }
    }
    let mut batch = Vec::new();
    for task in &pending {
        if let Dispatch::Send { delay, .. } = dispatch::plan(deps, task, now) {
            batch.push(dispatch::message(deps, task, delay));
        }
    }
    resent += batch.len();
    deps.queue
        .send_batch(&deps.config.task_queue, batch)
        .await?;
    let mut rescued = 0;
    for task in &running {
        match rescue(
            deps,
            task,
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

/// How far ahead of now a live record's timer can lie: a pending task's
/// re-dispatch time after the longest delay a message takes, a running
/// task's lease after the longest timeout, an execution's.
fn furthest_timer(deps: &Deps) -> chrono::Duration {
    let std = |d| chrono::Duration::from_std(d).unwrap_or_default();
    let pending = std(MAX_DELAY + deps.config.redispatch_after);
    let running =
        chrono::Duration::seconds(MAX_TIMEOUT_SECONDS as i64) + std(deps.config.lease_grace);
    pending.max(running).max(executions::furthest_timer(deps))
}

/// The live task whose timer entry is `key`; an unreadable record is logged
/// and left to the scheduler.
async fn task_at(deps: &Deps, key: &Key) -> Option<Task> {
    let id = tasks::id_of(key)?;
    match deps.tasks().get(id).await {
        Ok(task) => task,
        Err(e) => {
            tracing::error!(task_id = %id, error = %e, "could not read a task at start; the scheduler will recover it");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::recover_exclusive;
    use crate::Deps;
    use crate::domain::TaskStatus;
    use crate::handlers::Registry;
    use crate::messages::TaskMessage;
    use crate::service::maintenance::tick;
    use crate::service::tests::{created, new_task, receive_all, setup};
    use crate::service::worker::process;

    fn task_of(body: &str) -> uuid::Uuid {
        match TaskMessage::decode(body).unwrap() {
            TaskMessage::Snapshot { snapshot } => snapshot.id,
            TaskMessage::Stored { id } => id,
            other => panic!("not a task's message: {other:?}"),
        }
    }

    /// Make `id` running, as a worker that then died would leave it.
    async fn started(deps: &Deps, id: uuid::Uuid) {
        let task = deps.tasks().get(id).await.unwrap().unwrap();
        let running = task.start(deps.now(), Duration::from_secs(30)).unwrap();
        let lease = running.lease_until;
        deps.tasks().save(&task, &running, lease).await.unwrap();
    }

    #[tokio::test]
    async fn restart_resends_pending_tasks_and_takes_over_running_ones_from_their_timers() {
        // GIVEN a completed task, a pending one, a running one, one due in
        // two hours and one due in ten minutes, their messages all gone
        // with the process (none of them ever swept)
        let (deps, clock) = setup(Registry::standard());
        let done = created(&deps, new_task("echo")).await;
        let message = receive_all(&deps).await.remove(0);
        process(&deps, &message.body).await.unwrap();
        let pending = created(&deps, new_task("echo")).await;
        let running = created(&deps, new_task("echo")).await;
        started(&deps, running).await;
        let mut later = new_task("echo");
        later.scheduled_at = Some(deps.now() + chrono::Duration::hours(2));
        let later = created(&deps, later).await;
        let mut soon = new_task("echo");
        soon.scheduled_at = Some(deps.now() + chrono::Duration::minutes(10));
        let soon = created(&deps, soon).await;
        receive_all(&deps).await;
        // WHEN warren starts again five minutes on
        clock.advance(chrono::Duration::minutes(5));
        let (resent, rescued) = recover_exclusive(&deps).await.unwrap();
        // THEN the pending task and the one due soon (with its delay) are
        // sent again, and the running attempt is counted lost and its
        // retry sent
        assert_eq!((resent, rescued), (2, 1), "{soon} is one of them");
        let task = deps.tasks().get(running).await.unwrap().unwrap();
        assert_eq!((task.status, task.attempts), (TaskStatus::Pending, 1));
        let mut ids: Vec<uuid::Uuid> = receive_all(&deps)
            .await
            .iter()
            .map(|m| task_of(&m.body))
            .collect();
        ids.sort();
        let mut expected = vec![pending, running];
        expected.sort();
        assert_eq!(
            ids, expected,
            "{later} must wait for its timer, {done} is done"
        );
    }

    #[tokio::test]
    async fn restart_finds_what_lies_between_the_last_sweep_and_now_however_long_ago() {
        // GIVEN a store that was swept, then a task enqueued and lost with
        // its message, and warren down for two days
        let (deps, clock) = setup(Registry::standard());
        tick(&deps).await.unwrap();
        let lost = created(&deps, new_task("echo")).await;
        receive_all(&deps).await;
        clock.advance(chrono::Duration::days(2));
        // WHEN it starts again
        let (resent, _) = recover_exclusive(&deps).await.unwrap();
        // THEN the task is sent again at once, not left to the sweeps
        assert_eq!(resent, 1);
        let sent = receive_all(&deps).await;
        assert_eq!(sent.len(), 1);
        process(&deps, &sent[0].body).await.unwrap();
        let task = deps.tasks().get(lost).await.unwrap().unwrap();
        assert_eq!(task.status, TaskStatus::Completed);
    }

    #[tokio::test]
    async fn restart_pins_the_sweeps_cursors_so_nothing_written_after_falls_behind_them() {
        // GIVEN a store no sweep has read, recovered at start
        let (deps, clock) = setup(Registry::standard());
        recover_exclusive(&deps).await.unwrap();
        // WHEN a task is enqueued and lost with the process before any
        // sweep, and warren is down for a day
        let lost = created(&deps, new_task("echo")).await;
        receive_all(&deps).await;
        clock.advance(chrono::Duration::days(1));
        // THEN the next start still finds it
        assert_eq!(recover_exclusive(&deps).await.unwrap(), (1, 0));
        assert_eq!(receive_all(&deps).await.len(), 1, "{lost} sent again");
    }
}
