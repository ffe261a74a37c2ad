//! Expire pending tasks past their TTL: they never ran and never will. A
//! running task is left alone; its next write files its expiry again.

use chrono::{DateTime, Utc};

use super::{Service, task_of};
use crate::domain::TaskStatus;
use crate::ports::Item;
use crate::service::worker::expire;
use crate::service::{Deps, ServiceError};
use crate::table::tasks::from_item;
use crate::table::timers::{Due, Kind};

/// Pending tasks past their TTL.
pub struct ExpireTasks;

impl Service for ExpireTasks {
    const NAME: &'static str = "expire-tasks";
    const KIND: Kind = Kind::Expiry;

    fn wants(due: &Due) -> bool {
        task_of(due).is_some_and(|t| t.status == TaskStatus::Pending)
    }

    async fn act(deps: &Deps, item: Item, now: DateTime<Utc>) -> Result<bool, ServiceError> {
        let Some(task) = from_item(&item).filter(|t| t.status == TaskStatus::Pending) else {
            return Ok(false);
        };
        expire(deps, &task, now).await.map(|()| true)
    }
}
