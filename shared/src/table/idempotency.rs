//! Idempotency keys: `IDEM#<key>`/`IDEM` names the first task enqueued with
//! that key for a window, then expires (a TTL and an expiry entry on which
//! the scheduler deletes it).

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::timers::expiring;
use crate::ports::{Condition, Item, Key, Store, StoreError, WriteOp};

fn key(idempotency_key: &str) -> Key {
    Key::new(format!("IDEM#{idempotency_key}"), "IDEM")
}

/// The write that claims `idempotency_key` for task `id` until `expires`:
/// it fails (`Conflict`) while a live claim exists.
pub fn claim(
    idempotency_key: &str,
    id: Uuid,
    now: DateTime<Utc>,
    expires: DateTime<Utc>,
) -> WriteOp {
    let mut attrs = Map::new();
    attrs.insert("task_id".into(), Value::from(id.to_string()));
    WriteOp::Put {
        item: expiring(Item::new(key(idempotency_key), attrs), expires),
        cond: Condition::Absent {
            now: now.timestamp(),
        },
    }
}

/// The task that holds `idempotency_key`, if a claim is stored.
pub async fn holder(store: &dyn Store, idempotency_key: &str) -> Result<Option<Uuid>, StoreError> {
    super::id_in(store, &key(idempotency_key), "task_id").await
}
