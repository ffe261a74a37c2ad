//! The scheduler's work, as small maintenance services in the spirit of
//! River's: each owns one kind of due work, sweeps the timer or expiry
//! index with a cursor of its own, and reports what it did.
//!
//! | service              | index  | acts on |
//! |----------------------|--------|---------|
//! | [`ReleasePending`]   | timers | pending tasks now due, or whose message may be lost |
//! | [`RescueLeases`]     | timers | running tasks whose lease ran out (worker lost) |
//! | [`ResendWebhooks`]   | timers | finished tasks still owing their webhook |
//! | [`FireSchedules`]    | timers | schedule triggers whose slot came |
//! | [`ResumeExecutions`] | timers | executions whose message or worker was lost |
//! | [`ExpireTasks`]      | expiry | pending tasks past their TTL |
//! | [`DeleteExpired`]    | expiry | records past their TTL or retention |
//!
//! Every action is a compare-and-set, so overlapping sweeps are harmless.
//! One entry's failure is logged and counted, never the end of the sweep;
//! a failure for want of a backend keeps the service's cursor at that
//! entry, so the next sweep tries it again. [`tick`] runs them all, as the
//! scheduler Lambda and `warren dev`'s loop do; [`recovery`] is what a
//! runtime whose queue died with it does at start.

mod delete_expired;
mod expire_tasks;
mod fire_schedules;
pub mod recovery;
mod release_pending;
mod rescue_leases;
mod resend_webhooks;
mod resume_executions;

use std::future::Future;

use chrono::{DateTime, Utc};

pub use delete_expired::DeleteExpired;
pub use expire_tasks::ExpireTasks;
pub use fire_schedules::FireSchedules;
pub use release_pending::ReleasePending;
pub use rescue_leases::RescueLeases;
pub use resend_webhooks::ResendWebhooks;
pub use resume_executions::ResumeExecutions;

use super::{Deps, ServiceError};
use crate::ports::{Item, QueueError, StoreError};
use crate::table::timers::{self, Due, Kind, current};

/// What one run of a service did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Records it acted on.
    pub acted: usize,
    /// Records whose action failed (logged; tried again when transient).
    pub failed: usize,
}

/// One kind of due work.
pub trait Service {
    /// Its name: the name of its cursor, and in logs.
    const NAME: &'static str;
    /// The index it sweeps.
    const KIND: Kind;

    /// Whether a due entry is its work, judged from the index's copy.
    fn wants(due: &Due) -> bool;

    /// Act on the current record behind a due entry; whether it acted (a
    /// lost race is no error: someone else acted first).
    fn act(
        deps: &Deps,
        item: Item,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool, ServiceError>> + Send;
}

/// Sweep `S`'s index from its cursor and act on its due entries.
pub async fn run_once<S: Service>(deps: &Deps, now: DateTime<Utc>) -> Result<Counts, ServiceError> {
    let sweep = timers::sweep(&*deps.store, S::KIND, S::NAME, now).await?;
    let mut counts = Counts::default();
    let mut retry = Vec::new();
    for due in sweep.due.iter().filter(|d| S::wants(d)) {
        let outcome = match current(&*deps.store, due, S::KIND, now).await {
            Ok(Some(item)) => S::act(deps, item, now).await,
            Ok(None) => Ok(false), // moved on since the index was written
            Err(e) => Err(e.into()),
        };
        match outcome {
            Ok(acted) => counts.acted += usize::from(acted),
            Err(e) if e.is_conflict() => {}
            Err(e) => {
                counts.failed += 1;
                let transient = matches!(
                    e,
                    ServiceError::Store(StoreError::Unavailable(_))
                        | ServiceError::Queue(QueueError::Unavailable(_))
                );
                let key = due.owner.key();
                tracing::error!(service = S::NAME, pk = %key.pk, sk = %key.sk, error = %e, transient, "maintenance action failed");
                if transient {
                    retry.push(due.clone());
                }
            }
        }
    }
    sweep.advance(&*deps.store, &retry).await?;
    Ok(counts)
}

/// What one tick of every service did.
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
    /// Records deleted at the end of their TTL or retention.
    pub deleted: usize,
    /// Actions that failed, every service together.
    pub failed: usize,
}

/// Run every service once at the clock's now. A service whose sweep cannot
/// even read its index fails the tick after the others have run.
pub async fn tick(deps: &Deps) -> Result<TickReport, ServiceError> {
    let now = deps.now();
    let mut report = TickReport::default();
    let mut first_error = None;
    let mut add =
        |counts: Result<Counts, ServiceError>, into: &mut usize, failed: &mut usize| match counts {
            Ok(c) => {
                *into += c.acted;
                *failed += c.failed;
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        };
    let TickReport {
        released,
        rescued,
        webhooks,
        executions,
        triggers,
        expired,
        deleted,
        failed,
    } = &mut report;
    add(
        run_once::<ReleasePending>(deps, now).await,
        released,
        failed,
    );
    add(run_once::<RescueLeases>(deps, now).await, rescued, failed);
    add(
        run_once::<ResendWebhooks>(deps, now).await,
        webhooks,
        failed,
    );
    add(run_once::<FireSchedules>(deps, now).await, triggers, failed);
    add(
        run_once::<ResumeExecutions>(deps, now).await,
        executions,
        failed,
    );
    add(run_once::<ExpireTasks>(deps, now).await, expired, failed);
    add(run_once::<DeleteExpired>(deps, now).await, deleted, failed);
    match first_error {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

/// The task in a due entry, as the index shows it.
fn task_of(due: &Due) -> Option<crate::domain::Task> {
    match due.owner {
        timers::Owner::Task(_) => crate::table::tasks::from_item(&due.item),
        _ => None,
    }
}
