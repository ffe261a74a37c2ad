//! Users' stored provider keys, sealed: `SECRET#<user or ->`/`<name>`, one
//! partition per owner (`-`: the deployment's), so a list is one
//! consistent read and a lookup by name one get.

use uuid::Uuid;

use super::{find, from_attrs};
use crate::domain::identity::StoredSecret;
use crate::ports::{Condition, Item, Key, Query, Store, StoreError, WriteOp};

fn partition(owner: Option<Uuid>) -> String {
    match owner {
        Some(id) => format!("SECRET#{id}"),
        None => "SECRET#-".into(),
    }
}

fn key(owner: Option<Uuid>, name: &str) -> Key {
    Key::new(partition(owner), name)
}

/// The write that stores `s` for `owner`, replacing one of the same name.
pub fn put(owner: Option<Uuid>, s: &StoredSecret) -> WriteOp {
    WriteOp::Put {
        item: Item::new(key(owner, &s.name), super::attrs_of(s)),
        cond: Condition::None,
    }
}

/// The write that records a use, only while the secret still exists.
pub fn touch(owner: Option<Uuid>, s: &StoredSecret) -> WriteOp {
    WriteOp::Put {
        item: Item::new(key(owner, &s.name), super::attrs_of(s)),
        cond: Condition::Exists,
    }
}

/// The write that deletes `owner`'s secret `name`: `Conflict` when there
/// is none.
pub fn delete(owner: Option<Uuid>, name: &str) -> WriteOp {
    WriteOp::Delete {
        key: key(owner, name),
        cond: Condition::Exists,
    }
}

/// `owner`'s secret `name`.
pub async fn get(
    store: &dyn Store,
    owner: Option<Uuid>,
    name: &str,
) -> Result<Option<StoredSecret>, StoreError> {
    find(store, &key(owner, name), 0).await
}

/// `owner`'s secrets by name (at most `limit`).
pub async fn of_owner(
    store: &dyn Store,
    owner: Option<Uuid>,
    limit: usize,
) -> Result<Vec<StoredSecret>, StoreError> {
    let items = store.query(&Query::table(partition(owner), limit)).await?;
    Ok(items.iter().filter_map(from_attrs).collect())
}
