//! The single table's layout, in one place. Tasks and executions live in
//! their owner's partitions ([`tagged`]): the records written most need no
//! index entry to be listed. Each record kind has a
//! repository here that owns its keys, the indexes it joins and what they
//! mean, the mapping between its record and an [`Item`], and its
//! conditional writes; the use cases in `service/` speak in records.
//! Both backends store exactly these keys.
//!
//! | record         | pk                    | sk           | indexes |
//! |----------------|-----------------------|--------------|---------|
//! | task           | `TQ#<queue hash, shard>` | `<id>`    | gsi1 once failed, cancelled or expired; gsi5 timer, gsi6 expiry |
//! | chunk of a batch's tasks | `TQ#<queue hash, shard>` | `<base id>` | none (a task that needs an index leaves it: [`tasks::chunks`]) |
//! | queue counters | `QSTATS#<shard>`      | `<queue>`    | none |
//! | idempotency    | `IDEM#<key>`          | `IDEM`       | gsi6 expiry |
//! | pipeline       | `PIPE#<id>`           | `HEAD`, `V#<version>` | gsi2 `PIPES` (the head) |
//! | pipeline stats | `PSTATS#<id>`, `USAGE#<day>` | `STATS`, `<pipeline>` | none |
//! | trigger        | `TRIG#<id>`           | `TRIG`       | gsi2 `PTRIG#<pipeline>`, gsi5 timer (schedules) |
//! | webhook hook   | `HOOK#<sha256>`       | `HOOK`       | none |
//! | execution      | `EX#<pipeline hash, shard>` | `<id>` | gsi5 timer while running, gsi6 expiry once finished |
//! | event          | `EVENT#<id>`          | `EVENT`      | gsi6 expiry once finished |
//! | subscription   | `SUB#<pipeline>`, `TOPIC#<topic>` | `SUB`, `<pipeline>` | none |
//! | topic counters | `TSTATS#<topic>`, `TSTATS` | `STATS`, `UNROUTED` | none |
//! | dispatch mark  | `DISPATCH#<message>`  | `<pipeline>` | none (TTL) |
//! | sweep cursor   | `SCHED`               | `<service>`  | none |
//! | user           | `USER#<id>`, `UNAME#<name>`, `OIDC#<sha256>`, `USTATS` | `USER`, `UNAME`, `OIDC`, `ADMINS` | gsi2 `USERS` (the user) |
//! | session        | `SESSION#<sha256>`    | `SESSION`    | gsi6 expiry |
//! | API key        | `APIKEY#<sha256>`, `KEYID#<id>` | `APIKEY`, `KEYID` | gsi3 `UKEYS#<user>`, gsi6 expiry when it expires |
//! | stored secret  | `SECRET#<user>`       | `<name>`     | none |
//! | limits         | `LOGINFAIL#<scope>`, `RATE#<who>#<minute>`, `RUNS#<user>#<month>` | `FAIL`, `RATE`, `RUNS` | gsi6 expiry (login failures) |
//!
//! | index | what it answers |
//! |-------|-----------------|
//! | gsi1  | a queue's failed, cancelled or expired tasks, newest first (`QS#<queue>#<status>` / id) |
//! | gsi2  | children newest first: pipelines, users, a pipeline's triggers |
//! | gsi3  | what a user owns: its API keys (`UKEYS#<user>`), its pipelines (`UPIPES#<user>`) |
//! | gsi4  | unused (tasks left it: lists read their queues' partitions) |
//! | gsi5  | timers: what the scheduler must look at when (see [`timers`]) |
//! | gsi6  | expiry: what outlives its TTL when (see [`timers`]) |

pub mod api_keys;
pub mod events;
pub mod executions;
pub mod idempotency;
pub mod limits;
pub mod pipelines;
pub mod secrets;
pub mod sessions;
pub mod tagged;
pub mod tasks;
pub mod timers;
pub mod topics;
pub mod triggers;
pub mod users;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::ports::{Index, Item, Key, Query, Store, StoreError};

/// The index of lists by parent, newest first (pipelines, users, a
/// pipeline's triggers).
pub const CHILDREN: Index = Index::Gsi2;

/// A record as an item's attributes.
pub fn attrs_of<T: Serialize>(value: &T) -> Map<String, Value> {
    match serde_json::to_value(value) {
        Ok(Value::Object(m)) => m,
        // Records always serialise to objects; anything else is a bug.
        other => panic!("record serialised to {other:?}"),
    }
}

/// The record in an item, `None` when the item holds something else.
pub fn from_attrs<T: DeserializeOwned>(item: &Item) -> Option<T> {
    serde_json::from_value(Value::Object(item.attrs.clone())).ok()
}

/// The live record at `key` (an item past its TTL counts as gone: the
/// backend may keep it a while longer), `None` when there is none.
pub async fn find<T: DeserializeOwned>(
    store: &dyn Store,
    key: &Key,
    now: i64,
) -> Result<Option<T>, StoreError> {
    Ok(store
        .get(key)
        .await?
        .filter(|i| !i.is_expired(now))
        .and_then(|i| from_attrs(&i)))
}

/// The counters kept (by `WriteOp::Add`) in the item at `key`; read them
/// with [`count`]. Empty when the item does not exist yet.
pub async fn counters(store: &dyn Store, key: &Key) -> Result<Map<String, Value>, StoreError> {
    Ok(store.get(key).await?.map(|i| i.attrs).unwrap_or_default())
}

/// The id a mark at `key` names in its attribute `attr` (a claim's holder,
/// a dispatch's run), if the mark is stored.
pub async fn id_in(
    store: &dyn Store,
    key: &Key,
    attr: &str,
) -> Result<Option<uuid::Uuid>, StoreError> {
    Ok(store
        .get(key)
        .await?
        .and_then(|i| i.attrs.get(attr)?.as_str()?.parse().ok()))
}

/// A counter among an item's attributes; 0 when it was never added to.
pub fn count(attrs: &Map<String, Value>, name: &str) -> i64 {
    attrs.get(name).and_then(Value::as_i64).unwrap_or(0)
}

/// One page of the live records listed under `parent` in [`CHILDREN`],
/// newest first, and the cursor of the next page.
pub async fn children<T: DeserializeOwned>(
    store: &dyn Store,
    parent: &str,
    limit: usize,
    before: Option<String>,
    now: i64,
) -> Result<(Vec<T>, Option<String>), StoreError> {
    children_in(store, CHILDREN, parent, limit, before, now).await
}

/// [`children`] listed in `index` instead.
pub async fn children_in<T: DeserializeOwned>(
    store: &dyn Store,
    index: Index,
    parent: &str,
    limit: usize,
    before: Option<String>,
    now: i64,
) -> Result<(Vec<T>, Option<String>), StoreError> {
    let mut q = Query::index(index, parent, limit);
    q.descending = true;
    q.before = before;
    let items = store.query(&q).await?;
    let next = (items.len() == limit)
        .then(|| {
            items
                .last()
                .and_then(|i| i.index_key(index))
                .map(|k| k.sk.clone())
        })
        .flatten();
    let live = items.iter().filter(|i| !i.is_expired(now));
    Ok((live.filter_map(from_attrs).collect(), next))
}

/// The index of what a user owns: its API keys and pipelines.
pub const OWNED: Index = Index::Gsi3;

/// A child entry of `parent` in [`CHILDREN`], sorted by `id` (time-ordered).
pub(crate) fn child_of(parent: &str, id: impl Into<String>) -> (Index, Key) {
    (CHILDREN, Key::new(parent, id))
}
