//! Events posted to `/events`: `EVENT#<id>`/`EVENT`, written with the
//! execution that processes them and rewritten by its final checkpoint;
//! kept for the execution retention once finished.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::executions::retain;
use super::find;
use crate::domain::event::{Event, EventStatus};
use crate::ports::{Condition, Item, Key, Store, StoreError, WriteOp};

fn key(id: Uuid) -> Key {
    Key::new(format!("EVENT#{id}"), "EVENT")
}

fn item(event: &Event, retention: chrono::Duration) -> Item {
    let mut item = Item::new(key(event.id), super::attrs_of(event));
    if event.status != EventStatus::Pending {
        retain(&mut item, event.updated_at + retention);
    }
    item
}

/// The write of a new event.
pub fn create(event: &Event, retention: chrono::Duration, now: DateTime<Utc>) -> WriteOp {
    WriteOp::Put {
        item: item(event, retention),
        cond: Condition::Absent {
            now: now.timestamp(),
        },
    }
}

/// The write of an event's outcome (it must still exist).
pub fn finish(event: &Event, retention: chrono::Duration) -> WriteOp {
    WriteOp::Put {
        item: item(event, retention),
        cond: Condition::Exists,
    }
}

/// The event with this id.
pub async fn get(store: &dyn Store, id: Uuid, now: i64) -> Result<Option<Event>, StoreError> {
    find(store, &key(id), now).await
}
