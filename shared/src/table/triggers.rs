//! Triggers and the hook items of webhook triggers.
//!
//! | item    | pk                  | sk     | indexes |
//! |---------|---------------------|--------|---------|
//! | trigger | `TRIG#<id>`         | `TRIG` | gsi2 `PTRIG#<pipeline>` / id, gsi5 timer at `next_fire` (schedules) |
//! | hook    | `HOOK#<sha256 hex>` | `HOOK` | none; `trigger_id` names the webhook trigger |
//!
//! A webhook's token is never stored: its SHA-256 keys the hook item (so a
//! call finds its trigger with one read, no scan). A trigger and its hook
//! are written and deleted in one transaction; a trigger is replaced by a
//! compare-and-set on its version.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::timers::timer_entry;
use super::{child_of, children, find};
use crate::domain::trigger::Trigger;
use crate::ports::{Condition, Item, Key, Store, StoreError, WriteOp};

const PREFIX: &str = "TRIG#";

/// The key of a trigger's item.
pub fn key(id: Uuid) -> Key {
    Key::new(format!("{PREFIX}{id}"), "TRIG")
}

/// Whether `key` is a trigger's.
pub(crate) fn is_trigger(key: &Key) -> bool {
    key.pk.starts_with(PREFIX)
}

fn hook_key(sha256_hex: &str) -> Key {
    Key::new(format!("HOOK#{sha256_hex}"), "HOOK")
}

/// Where a pipeline's triggers are listed.
fn parent(pipeline: Uuid) -> String {
    format!("PTRIG#{pipeline}")
}

fn item(t: &Trigger) -> Item {
    let id = t.id.to_string();
    let mut item = Item::new(key(t.id), super::attrs_of(t));
    item.indexes.push(child_of(&parent(t.pipeline_id), &id));
    if let Some(at) = t.next_fire {
        item.indexes.push(timer_entry(at, &id));
    }
    item
}

/// The writes of a new trigger (and of its hook, for a webhook).
pub fn create(t: &Trigger, now: DateTime<Utc>) -> Vec<WriteOp> {
    let absent = Condition::Absent {
        now: now.timestamp(),
    };
    let mut ops = vec![WriteOp::Put {
        item: item(t),
        cond: absent.clone(),
    }];
    if let Some(hash) = &t.webhook_sha256 {
        let mut attrs = Map::new();
        attrs.insert("trigger_id".into(), Value::from(t.id.to_string()));
        ops.push(WriteOp::Put {
            item: Item::new(hook_key(hash), attrs),
            cond: absent,
        });
    }
    ops
}

/// The write that replaces `prev` by `next` (compare-and-set on the version).
pub fn replace(prev: &Trigger, next: &Trigger) -> WriteOp {
    WriteOp::Put {
        item: item(next),
        cond: Condition::version(prev.version),
    }
}

/// The writes that delete `t` (if still at its version) and its hook.
pub fn delete(t: &Trigger) -> Vec<WriteOp> {
    let mut ops = vec![WriteOp::Delete {
        key: key(t.id),
        cond: Condition::version(t.version),
    }];
    if let Some(hash) = &t.webhook_sha256 {
        ops.push(WriteOp::Delete {
            key: hook_key(hash),
            cond: Condition::None,
        });
    }
    ops
}

/// The trigger with this id.
pub async fn get(store: &dyn Store, id: Uuid, now: i64) -> Result<Option<Trigger>, StoreError> {
    find(store, &key(id), now).await
}

/// The trigger in an item, `None` when it holds something else.
pub fn from_item(item: &Item) -> Option<Trigger> {
    super::from_attrs(item)
}

/// The id of the webhook trigger whose token hashes to `sha256_hex`.
pub async fn by_hook(store: &dyn Store, sha256_hex: &str) -> Result<Option<Uuid>, StoreError> {
    let hook = store.get(&hook_key(sha256_hex)).await?;
    Ok(hook
        .as_ref()
        .and_then(|h| h.attrs.get("trigger_id"))
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok()))
}

/// A page of a pipeline's triggers, newest first, and the next cursor.
pub async fn list(
    store: &dyn Store,
    pipeline: Uuid,
    limit: usize,
    before: Option<String>,
    now: i64,
) -> Result<(Vec<Trigger>, Option<String>), StoreError> {
    children(store, &parent(pipeline), limit, before, now).await
}
