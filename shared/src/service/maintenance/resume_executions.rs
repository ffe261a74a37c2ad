//! Resume pipeline executions whose message was lost or whose worker died
//! mid-step: they go on from their first unfinished step.

use chrono::{DateTime, Utc};

use super::Service;
use crate::ports::Item;
use crate::service::{Deps, ServiceError, executions};
use crate::table::timers::{Due, Kind, Owner};

/// Running executions nobody holds.
pub struct ResumeExecutions;

impl Service for ResumeExecutions {
    const NAME: &'static str = "resume-executions";
    const KIND: Kind = Kind::Timers;

    fn wants(due: &Due) -> bool {
        matches!(due.owner, Owner::Execution(_))
    }

    async fn act(deps: &Deps, item: Item, now: DateTime<Utc>) -> Result<bool, ServiceError> {
        executions::resume(deps, &item, now).await
    }
}
