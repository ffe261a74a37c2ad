//! Users' API keys.
//!
//! | item    | pk                    | sk       | indexes |
//! |---------|-----------------------|----------|---------|
//! | key     | `APIKEY#<sha256 hex>` | `APIKEY` | gsi3 `UKEYS#<user>` / id; expiry entry when it expires |
//! | key id  | `KEYID#<id>`          | `KEYID`  | none; `sha256` |
//!
//! A request finds its key by the key's hash, one read; the id item lets
//! its owner delete it by id with a consistent read (the list is an index,
//! which may lag). Both are written and deleted in one transaction.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::find;
use super::timers::expiring;
use crate::domain::identity::UserKey;
use crate::ports::{Condition, Index, Item, Key, Query, Store, StoreError, WriteOp};

/// The index of a user's keys.
const BY_USER: Index = Index::Gsi3;

fn key(sha256_hex: &str) -> Key {
    Key::new(format!("APIKEY#{sha256_hex}"), "APIKEY")
}

fn id_key(id: Uuid) -> Key {
    Key::new(format!("KEYID#{id}"), "KEYID")
}

fn owner_partition(user: Uuid) -> String {
    format!("UKEYS#{user}")
}

/// An item that ends at `at`, if it ends.
fn ending(item: Item, at: Option<DateTime<Utc>>) -> Item {
    match at {
        Some(at) => expiring(item, at),
        None => item,
    }
}

fn item(k: &UserKey) -> Item {
    let mut item = Item::new(key(&k.sha256), super::attrs_of(k));
    item.indexes.push((
        BY_USER,
        Key::new(owner_partition(k.user_id), k.id.to_string()),
    ));
    ending(item, k.expires_at)
}

/// The writes of a new key and its id item.
pub fn create(k: &UserKey, now: DateTime<Utc>) -> Vec<WriteOp> {
    let absent = Condition::Absent {
        now: now.timestamp(),
    };
    let mut attrs = Map::new();
    attrs.insert("sha256".into(), Value::from(k.sha256.clone()));
    attrs.insert("user_id".into(), Value::from(k.user_id.to_string()));
    vec![
        WriteOp::Put {
            item: item(k),
            cond: absent.clone(),
        },
        WriteOp::Put {
            item: ending(Item::new(id_key(k.id), attrs), k.expires_at),
            cond: absent,
        },
    ]
}

/// The writes that delete a key and its id item.
pub fn delete(k: &UserKey) -> Vec<WriteOp> {
    vec![
        WriteOp::Delete {
            key: key(&k.sha256),
            cond: Condition::None,
        },
        WriteOp::Delete {
            key: id_key(k.id),
            cond: Condition::None,
        },
    ]
}

/// The write that records a use, only while the key still exists (a
/// late write must not bring a deleted key back).
pub fn touch(k: &UserKey) -> WriteOp {
    WriteOp::Put {
        item: item(k),
        cond: Condition::Exists,
    }
}

/// The live key that hashes to `sha256_hex`.
pub async fn by_hash(
    store: &dyn Store,
    sha256_hex: &str,
    now: i64,
) -> Result<Option<UserKey>, StoreError> {
    find(store, &key(sha256_hex), now).await
}

/// The live key with this id.
pub async fn by_id(store: &dyn Store, id: Uuid, now: i64) -> Result<Option<UserKey>, StoreError> {
    let Some(pointer) = store.get(&id_key(id)).await? else {
        return Ok(None);
    };
    match pointer.attrs.get("sha256").and_then(Value::as_str) {
        Some(hash) => by_hash(store, hash, now).await,
        None => Ok(None),
    }
}

/// A user's live keys, oldest first (at most `limit`).
pub async fn of_user(
    store: &dyn Store,
    user: Uuid,
    limit: usize,
    now: i64,
) -> Result<Vec<UserKey>, StoreError> {
    let items = store
        .query(&Query::index(BY_USER, owner_partition(user), limit))
        .await?;
    Ok(items
        .iter()
        .filter(|i| !i.is_expired(now))
        .filter_map(super::from_attrs)
        .collect())
}
