//! Fire schedule triggers whose slot came: each slot starts one execution,
//! once, even when two sweeps overlap.

use chrono::{DateTime, Utc};

use super::Service;
use crate::ports::Item;
use crate::service::{Deps, ServiceError, triggers};
use crate::table::timers::{Due, Kind, Owner};

/// Schedule triggers.
pub struct FireSchedules;

impl Service for FireSchedules {
    const NAME: &'static str = "fire-schedules";
    const KIND: Kind = Kind::Timers;

    fn wants(due: &Due) -> bool {
        matches!(due.owner, Owner::Trigger(_))
    }

    async fn act(deps: &Deps, item: Item, now: DateTime<Utc>) -> Result<bool, ServiceError> {
        triggers::fire_due(deps, &item, now).await
    }
}
