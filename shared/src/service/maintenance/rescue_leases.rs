//! Rescue running tasks whose lease ran out: their worker crashed or
//! stalled, so the attempt counts as failed and the task is retried or
//! failed, as the worker would have done.

use chrono::{DateTime, Utc};

use super::{Service, task_of};
use crate::domain::TaskStatus;
use crate::ports::Item;
use crate::service::worker::{lapsed, rescue};
use crate::service::{Deps, ServiceError};
use crate::table::tasks::from_item;
use crate::table::timers::{Due, Kind};

/// Running tasks past their lease.
pub struct RescueLeases;

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
