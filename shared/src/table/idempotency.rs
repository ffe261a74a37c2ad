//! Idempotency keys: `IDEM#<key>`/`IDEM` names the first task enqueued with
//! that key for a window, then expires (a TTL and an expiry entry on which
//! the scheduler deletes it).

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::timers::expiry_entry;
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
    attrs.insert("expires".into(), Value::from(expires.timestamp()));
    let key = key(idempotency_key);
    let item = Item {
        indexes: vec![expiry_entry(expires, &key.pk)],
        ttl: Some(expires.timestamp()),
        attrs,
        key,
    };
    WriteOp::Put {
        item,
        cond: Condition::Absent {
            now: now.timestamp(),
        },
    }
}

/// The task that holds `idempotency_key`, if a claim is stored.
pub async fn holder(store: &dyn Store, idempotency_key: &str) -> Result<Option<Uuid>, StoreError> {
    let item = store.get(&key(idempotency_key)).await?;
    Ok(item
        .as_ref()
        .and_then(|i| i.attrs.get("task_id"))
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok()))
}
