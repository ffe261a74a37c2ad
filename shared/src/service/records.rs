//! Records as table items: every use case stores its domain records as the
//! attributes of one item and reads them back through these.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::{Deps, ServiceError};
use crate::ports::{Item, Key};

/// A serialisable value as item attributes.
pub fn attrs_of<T: Serialize>(value: &T) -> Map<String, Value> {
    match serde_json::to_value(value) {
        Ok(Value::Object(m)) => m,
        // Domain records always serialise to objects; anything else is a bug.
        other => panic!("record serialised to {other:?}"),
    }
}

/// The record in an item, `None` when the item holds something else.
pub fn from_attrs<T: DeserializeOwned>(item: &Item) -> Option<T> {
    serde_json::from_value(Value::Object(item.attrs.clone())).ok()
}

/// The record stored at `key`, or `None` (also once its TTL has passed:
/// the backend may keep it a while longer).
pub async fn find<T: DeserializeOwned>(deps: &Deps, key: &Key) -> Result<Option<T>, ServiceError> {
    let now = deps.now().timestamp();
    Ok(deps
        .store
        .get(key)
        .await?
        .filter(|i| !i.is_expired(now))
        .and_then(|i| from_attrs(&i)))
}

/// The record stored at `key`; `missing` names it when there is none.
pub async fn record<T: DeserializeOwned>(
    deps: &Deps,
    key: &Key,
    missing: &'static str,
) -> Result<T, ServiceError> {
    find(deps, key)
        .await?
        .ok_or(ServiceError::NotFound(missing))
}

/// The counters kept (by `WriteOp::Add`) in the item at `key`: read them
/// with [`count`]. Empty when the item does not exist yet.
pub async fn counters(deps: &Deps, key: &Key) -> Result<Map<String, Value>, ServiceError> {
    Ok(deps
        .store
        .get(key)
        .await?
        .map(|i| i.attrs)
        .unwrap_or_default())
}

/// A counter among an item's attributes; 0 when it was never added to.
pub fn count(attrs: &Map<String, Value>, name: &str) -> i64 {
    attrs.get(name).and_then(Value::as_i64).unwrap_or(0)
}
