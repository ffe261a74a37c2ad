//! Release pending tasks whose timer fired: a delayed task now within the
//! queue's reach, or one whose message may have been lost (the outbox).

use chrono::{DateTime, Utc};

use super::{Service, task_of};
use crate::domain::TaskStatus;
use crate::ports::Item;
use crate::service::dispatch::redispatch;
use crate::service::{Deps, ServiceError};
use crate::table::tasks::from_item;
use crate::table::timers::{Due, Kind};

/// Pending tasks: send (again) and move the timer on.
pub struct ReleasePending;

impl Service for ReleasePending {
    const NAME: &'static str = "release-pending";
    const KIND: Kind = Kind::Timers;

    fn wants(due: &Due) -> bool {
        task_of(due).is_some_and(|t| t.status == TaskStatus::Pending)
    }

    async fn act(deps: &Deps, item: Item, now: DateTime<Utc>) -> Result<bool, ServiceError> {
        match from_item(&item).filter(|t| t.status == TaskStatus::Pending) {
            Some(task) => redispatch(deps, &task, now).await,
            None => Ok(false),
        }
    }
}
