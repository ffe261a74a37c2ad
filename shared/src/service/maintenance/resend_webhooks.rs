//! Re-send the webhook message of a finished task whose delivery is still
//! owed: the message was lost, or the worker died before recording the
//! outcome.

use chrono::{DateTime, Utc};

use super::{Service, task_of};
use crate::domain::Task;
use crate::messages::TaskMessage;
use crate::ports::{Item, OutgoingMessage};
use crate::service::{Deps, ServiceError};
use crate::table::tasks::from_item;
use crate::table::timers::{Due, Kind};

/// Finished tasks owing their webhook.
pub struct ResendWebhooks;

impl Service for ResendWebhooks {
    const NAME: &'static str = "resend-webhooks";
    const KIND: Kind = Kind::Timers;

    fn wants(due: &Due) -> bool {
        task_of(due).is_some_and(|t| t.owes_webhook())
    }

    async fn act(deps: &Deps, item: Item, now: DateTime<Utc>) -> Result<bool, ServiceError> {
        let Some(task) = from_item(&item).filter(Task::owes_webhook) else {
            return Ok(false);
        };
        let attempt = task.webhook.as_ref().map_or(0, |w| w.attempts) + 1;
        let recheck =
            now + chrono::Duration::from_std(deps.config.redispatch_after).unwrap_or_default();
        deps.tasks()
            .save(&task, &task.refiled(), Some(recheck))
            .await?;
        let message = OutgoingMessage {
            body: TaskMessage::Webhook {
                webhook: task.id,
                attempt,
            }
            .encode(),
            priority: task.priority,
            ..Default::default()
        };
        deps.queue
            .send_batch(&deps.config.task_queue, vec![message])
            .await?;
        Ok(true)
    }
}
