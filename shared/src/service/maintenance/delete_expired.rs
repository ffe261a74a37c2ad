//! Delete what has outlived its TTL or retention: finished tasks (after
//! `expired_retention` for expired ones), idempotency keys, finished
//! executions and their events. DynamoDB's own TTL may get there first.

use chrono::{DateTime, Utc};

use super::{Service, task_of};
use crate::domain::Task;
use crate::ports::Item;
use crate::service::{Deps, ServiceError};
use crate::table::tasks::{from_item, is_task};
use crate::table::timers::{Due, Kind, Owner, delete_expired};

/// Records past their TTL.
pub struct DeleteExpired;

impl Service for DeleteExpired {
    const NAME: &'static str = "delete-expired";
    const KIND: Kind = Kind::Expiry;

    fn wants(due: &Due) -> bool {
        match due.owner {
            Owner::Task(_) => task_of(due).is_some_and(|t| deletable(&t)),
            _ => true,
        }
    }

    async fn act(deps: &Deps, item: Item, now: DateTime<Utc>) -> Result<bool, ServiceError> {
        if is_task(&item.key) {
            return match from_item(&item).filter(deletable) {
                Some(task) => deps
                    .tasks()
                    .delete(&task)
                    .await
                    .map(|()| true)
                    .map_err(Into::into),
                None => Ok(false),
            };
        }
        if !item.is_expired(now.timestamp()) {
            return Ok(false);
        }
        deps.store.transact(vec![delete_expired(&item)]).await?;
        Ok(true)
    }
}

/// A finished task goes at its TTL, unless it still owes its webhook: the
/// write that records the delivery files its expiry again.
fn deletable(task: &Task) -> bool {
    task.status.is_final() && !task.owes_webhook()
}
