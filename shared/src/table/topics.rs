//! Event triggers (subscriptions of pipelines to topics), topic counters
//! and the marks that keep a redelivered message from running twice.
//!
//! | item          | pk                   | sk           |
//! |---------------|----------------------|--------------|
//! | subscription  | `SUB#<pipeline>`     | `SUB`        |
//! | member        | `TOPIC#<topic>`      | `<pipeline>` |
//! | counters      | `TSTATS#<topic>`     | `STATS`      |
//! | unrouted      | `TSTATS`             | `UNROUTED`   |
//! | dispatch mark | `DISPATCH#<message>` | `<pipeline>` |
//!
//! A pipeline's subscription and its membership of its topic's partition
//! are written together; the subscription carries the compare-and-set
//! token (`revision`). A dispatch mark is written with the execution it
//! started, conditional on its absence, and expires by TTL.

use chrono::{DateTime, Utc};
use serde_json::Map;
use uuid::Uuid;

use super::find;
use crate::ports::{Condition, Item, Key, Query, Store, StoreError, WriteOp};

/// Members read per query page.
const PAGE: usize = 100;

fn subscription_key(pipeline: Uuid) -> Key {
    Key::new(format!("SUB#{pipeline}"), "SUB")
}

fn partition(topic: &str) -> String {
    format!("TOPIC#{topic}")
}

fn member_key(topic: &str, pipeline: Uuid) -> Key {
    Key::new(partition(topic), pipeline.to_string())
}

fn stats_key(topic: &str) -> Key {
    Key::new(format!("TSTATS#{topic}"), "STATS")
}

/// A pipeline's subscription record, `None` when it has none.
pub async fn subscription<T: serde::de::DeserializeOwned>(
    store: &dyn Store,
    pipeline: Uuid,
    now: i64,
) -> Result<Option<T>, StoreError> {
    find(store, &subscription_key(pipeline), now).await
}

/// The writes that make `record` the pipeline's subscription to `topic`:
/// replacing the one at `revision` (`None`: there is none), and moving its
/// membership from `old_topic` when that differs.
pub fn subscribe<T: serde::Serialize>(
    pipeline: Uuid,
    topic: &str,
    record: &T,
    revision: Option<u64>,
    old_topic: Option<&str>,
    now: DateTime<Utc>,
) -> Vec<WriteOp> {
    let cond = match revision {
        None => Condition::Absent {
            now: now.timestamp(),
        },
        Some(r) => Condition::Equals {
            attr: "revision".into(),
            value: r.into(),
        },
    };
    let attrs = super::attrs_of(record);
    let mut ops = vec![
        WriteOp::Put {
            item: Item::new(subscription_key(pipeline), attrs.clone()),
            cond,
        },
        WriteOp::Put {
            item: Item::new(member_key(topic, pipeline), attrs),
            cond: Condition::None,
        },
    ];
    if let Some(old) = old_topic.filter(|old| *old != topic) {
        ops.push(WriteOp::Delete {
            key: member_key(old, pipeline),
            cond: Condition::None,
        });
    }
    ops
}

/// The writes that end the pipeline's subscription at `revision` on `topic`.
pub fn unsubscribe(pipeline: Uuid, topic: &str, revision: u64) -> Vec<WriteOp> {
    vec![
        WriteOp::Delete {
            key: subscription_key(pipeline),
            cond: Condition::Equals {
                attr: "revision".into(),
                value: revision.into(),
            },
        },
        WriteOp::Delete {
            key: member_key(topic, pipeline),
            cond: Condition::None,
        },
    ]
}

/// Every subscription of `topic`, in pipeline id order.
pub async fn members<T: serde::de::DeserializeOwned>(
    store: &dyn Store,
    topic: &str,
) -> Result<Vec<T>, StoreError> {
    let mut q = Query::table(partition(topic), PAGE);
    let mut out = Vec::new();
    loop {
        let page = store.query(&q).await?;
        out.extend(page.iter().filter_map(super::from_attrs::<T>));
        match page.last() {
            Some(last) if page.len() == PAGE => q.after = Some(last.key.sk.clone()),
            _ => return Ok(out),
        }
    }
}

/// How many subscriptions `topic` has, counting to `limit` at most.
pub async fn member_count(
    store: &dyn Store,
    topic: &str,
    limit: usize,
) -> Result<usize, StoreError> {
    Ok(store
        .query(&Query::table(partition(topic), limit))
        .await?
        .len())
}

/// Add one to a counter of `topic` (`published`, `dispatched`, `dropped`).
pub fn count(topic: &str, counter: &str) -> WriteOp {
    WriteOp::Add {
        key: stats_key(topic),
        deltas: vec![(counter.to_string(), 1)],
    }
}

fn unrouted_key() -> Key {
    Key::new("TSTATS", "UNROUTED")
}

/// Add one to the drops of messages that named no usable topic.
pub fn count_unrouted() -> WriteOp {
    WriteOp::Add {
        key: unrouted_key(),
        deltas: vec![("dropped".to_string(), 1)],
    }
}

/// The counters of messages that named no usable topic (`dropped`).
pub async fn unrouted(store: &dyn Store) -> Result<Map<String, serde_json::Value>, StoreError> {
    super::counters(store, &unrouted_key()).await
}

/// The counters of `topic`.
pub async fn counters(
    store: &dyn Store,
    topic: &str,
) -> Result<Map<String, serde_json::Value>, StoreError> {
    super::counters(store, &stats_key(topic)).await
}

fn dispatch_key(message: &str, pipeline: Uuid) -> Key {
    Key::new(format!("DISPATCH#{message}"), pipeline.to_string())
}

/// The execution that message `message` started of `pipeline`, while its
/// mark is remembered.
pub async fn dispatched_execution(
    store: &dyn Store,
    message: &str,
    pipeline: Uuid,
) -> Result<Option<Uuid>, StoreError> {
    super::id_in(store, &dispatch_key(message, pipeline), "execution_id").await
}

/// The mark that message `message` started execution `execution` of
/// `pipeline`, remembered until `until`: it fails (`Conflict`) when the
/// message already did.
pub fn mark_dispatched(
    message: &str,
    pipeline: Uuid,
    execution: Uuid,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> WriteOp {
    let mut item = Item::new(
        dispatch_key(message, pipeline),
        Map::from_iter([("execution_id".into(), execution.to_string().into())]),
    );
    item.ttl = Some(until.timestamp());
    WriteOp::Put {
        item,
        cond: Condition::Absent {
            now: now.timestamp(),
        },
    }
}
