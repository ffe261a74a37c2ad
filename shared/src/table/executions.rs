//! Executions: each in its pipeline's partitions of the table (see
//! [`super::tagged`]): `EX#<tag>` / id, listed newest first from there, so
//! no index entry lists them. While running, an execution's timer (gsi5)
//! is its worker's lease end or, before any claim, when its message counts
//! as lost. Once finished, it is kept for a retention: a TTL and an expiry
//! entry (gsi6). Every write is a compare-and-set on its version.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::find;
use super::tagged;
use super::timers::{expiry_entry, timer_entry};
use crate::domain::execution::{Execution, ExecutionStatus};
use crate::ports::{Condition, Item, Key, Query, Store, StoreError, WriteOp};

const PREFIX: &str = "EX#";

/// A new execution id of `pipeline`: its tag names the pipeline's partitions.
pub fn new_id(pipeline: Uuid) -> Uuid {
    tagged::new_id(&pipeline.to_string())
}

pub fn key(id: Uuid) -> Key {
    tagged::key(PREFIX, id)
}

/// Whether `key` is an execution's.
pub(crate) fn is_execution(key: &Key) -> bool {
    key.pk.starts_with(PREFIX)
}

/// The item of `e` with its timer, kept for `retention` once finished.
fn item(e: &Execution, timer: Option<DateTime<Utc>>, retention: chrono::Duration) -> Item {
    let id = e.id.to_string();
    let mut attrs = super::attrs_of(e);
    // Absent reads back as `None`, as null does: leaving out the nulls of the
    // execution and of its steps keeps the item, and so each write and each
    // of its index entries, within fewer started kilobytes.
    attrs.retain(|_, v| !v.is_null());
    if let Some(serde_json::Value::Array(steps)) = attrs.get_mut("steps") {
        for step in steps
            .iter_mut()
            .filter_map(serde_json::Value::as_object_mut)
        {
            step.retain(|_, v| !v.is_null());
        }
    }
    let mut item = Item::new(key(e.id), attrs);
    if let Some(at) = timer {
        item.indexes.push(timer_entry(at, &id));
    }
    if e.status != ExecutionStatus::Running {
        let ended = e.completed_at.unwrap_or(e.started_at);
        retain(&mut item, ended + retention);
    }
    item
}

/// Keep `item` until `until`: a TTL the backend may act on (DynamoDB's,
/// lazily; readers filter it) and an expiry entry the scheduler deletes on.
pub(crate) fn retain(item: &mut Item, until: DateTime<Utc>) {
    item.ttl = Some(until.timestamp());
    let entry = expiry_entry(until, &format!("{}#{}", item.key.pk, item.key.sk));
    item.indexes.push(entry);
}

/// The write of a new execution with its timer.
pub fn create(
    e: &Execution,
    timer: DateTime<Utc>,
    retention: chrono::Duration,
    now: DateTime<Utc>,
) -> WriteOp {
    WriteOp::Put {
        item: item(e, Some(timer), retention),
        cond: Condition::Absent {
            now: now.timestamp(),
        },
    }
}

/// The write that replaces `prev` by `next` with its timer (compare-and-set
/// on `prev`'s version; the same version keeps a message sent meanwhile
/// able to claim it).
pub fn replace(
    prev: &Execution,
    next: &Execution,
    timer: Option<DateTime<Utc>>,
    retention: chrono::Duration,
) -> WriteOp {
    WriteOp::Put {
        item: item(next, timer, retention),
        cond: Condition::version(prev.version),
    }
}

/// The execution with this id.
pub async fn get(store: &dyn Store, id: Uuid, now: i64) -> Result<Option<Execution>, StoreError> {
    find(store, &key(id), now).await
}

/// The execution in an item, `None` when it holds something else.
pub fn from_item(item: &Item) -> Option<Execution> {
    super::from_attrs(item)
}

/// A page of a pipeline's executions, newest first, and the next cursor.
pub async fn list(
    store: &dyn Store,
    pipeline: Uuid,
    limit: usize,
    before: Option<String>,
    now: i64,
) -> Result<(Vec<Execution>, Option<String>), StoreError> {
    let sources: Vec<Query> = tagged::partitions(PREFIX, &pipeline.to_string())
        .map(|pk| Query::table(pk, 1))
        .collect();
    let budget = (limit * 20).max(1000);
    tagged::list(store, &sources, before, limit, budget, |sort_key, item| {
        let live = tagged::live::<Execution>(item, now).filter(|e| e.pipeline_id == pipeline);
        tagged::one(sort_key, live)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::clock::SystemClock;
    use crate::domain::execution::TriggerType;
    use crate::handlers::Registry;

    #[tokio::test]
    async fn stored_execution_leaves_out_its_nulls_and_reads_back_whole() {
        // GIVEN a new execution: no output, error or times of its own or of
        // its steps yet, and an input holding a null
        let deps =
            crate::testing::memory_deps(std::sync::Arc::new(SystemClock), Registry::standard());
        let pipeline = crate::testing::pipeline_on_topic(&deps, None).await;
        let now = deps.now();
        let e = Execution::new(
            Uuid::now_v7(),
            &pipeline,
            TriggerType::Manual,
            None,
            serde_json::json!({"kept": null}),
            now,
        );
        // WHEN it is stored and read back
        let write = create(&e, now, chrono::Duration::days(1), now);
        deps.store.transact(vec![write]).await.unwrap();
        let item = deps.store.get(&key(e.id)).await.unwrap().expect("stored");
        // THEN neither it nor its steps hold a null, its input is untouched,
        // and it reads as the whole execution
        let step = &item.attrs["steps"][0];
        assert!(
            item.attrs.values().all(|v| !v.is_null()),
            "{:?}",
            item.attrs
        );
        assert!(
            step.as_object().unwrap().values().all(|v| !v.is_null()),
            "{step}"
        );
        assert_eq!(item.attrs["input"], serde_json::json!({"kept": null}));
        assert_eq!(
            get(&*deps.store, e.id, now.timestamp()).await.unwrap(),
            Some(e)
        );
    }
}
