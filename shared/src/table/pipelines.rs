//! Pipelines, their versions and their counters.
//!
//! The current version is `PIPE#<id>`/`HEAD` (listed newest first in gsi2
//! under `PIPES`), every version `PIPE#<id>`/`V#<version>`; the head is
//! replaced by a compare-and-set on its version. A user's pipelines are
//! also listed in gsi3 under `UPIPES#<user>`. Counters: totals at
//! `PSTATS#<id>`/`STATS`, runs per day at `USAGE#<day>`/`<pipeline id>`.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{child_of, children, counters, find};
use crate::domain::execution::{Execution, ExecutionStatus};
use crate::domain::pipeline::Pipeline;
use crate::ports::{Condition, Item, Key, MAX_TRANSACT_OPS, Query, Store, StoreError, WriteOp};

const ALL: &str = "PIPES";

fn head_key(id: Uuid) -> Key {
    Key::new(format!("PIPE#{id}"), "HEAD")
}

fn version_key(id: Uuid, version: u32) -> Key {
    Key::new(format!("PIPE#{id}"), format!("V#{version:010}"))
}

fn stats_key(id: Uuid) -> Key {
    Key::new(format!("PSTATS#{id}"), "STATS")
}

fn usage_partition(day: NaiveDate) -> String {
    format!("USAGE#{day}")
}

/// Where a user's pipelines are listed.
fn owner_partition(user: Uuid) -> String {
    format!("UPIPES#{user}")
}

fn head_item(p: &Pipeline) -> Item {
    let mut item = Item::new(head_key(p.id), super::attrs_of(p));
    item.indexes.push(child_of(ALL, p.id.to_string()));
    if let Some(user) = p.user_id {
        item.indexes.push((
            super::OWNED,
            Key::new(owner_partition(user), p.id.to_string()),
        ));
    }
    item
}

/// The writes of a new pipeline (its head and version 1).
pub fn create(p: &Pipeline, now: DateTime<Utc>) -> Vec<WriteOp> {
    let absent = Condition::Absent {
        now: now.timestamp(),
    };
    vec![
        WriteOp::Put {
            item: head_item(p),
            cond: absent.clone(),
        },
        WriteOp::Put {
            item: Item::new(version_key(p.id, p.version), super::attrs_of(p)),
            cond: absent,
        },
    ]
}

/// The writes of `next`, the version after `current`: the head replaced
/// only if it is still `current` (`Conflict` otherwise).
pub fn update(current: &Pipeline, next: &Pipeline, now: DateTime<Utc>) -> Vec<WriteOp> {
    vec![
        WriteOp::Put {
            item: head_item(next),
            cond: Condition::Equals {
                attr: "version".into(),
                value: current.version.into(),
            },
        },
        WriteOp::Put {
            item: Item::new(version_key(next.id, next.version), super::attrs_of(next)),
            cond: Condition::Absent {
                now: now.timestamp(),
            },
        },
    ]
}

/// The current version of a pipeline.
pub async fn head(store: &dyn Store, id: Uuid, now: i64) -> Result<Option<Pipeline>, StoreError> {
    find(store, &head_key(id), now).await
}

/// One stored version of a pipeline.
pub async fn version(
    store: &dyn Store,
    id: Uuid,
    version: u32,
    now: i64,
) -> Result<Option<Pipeline>, StoreError> {
    find(store, &version_key(id, version), now).await
}

/// Delete `current` and every version before it: old versions first, the
/// head last, so a failure halfway leaves it listed.
pub async fn delete(store: &dyn Store, current: &Pipeline) -> Result<(), StoreError> {
    let id = current.id;
    let keys: Vec<Key> = (1..current.version).map(|v| version_key(id, v)).collect();
    for chunk in keys.chunks(MAX_TRANSACT_OPS) {
        let ops = chunk
            .iter()
            .map(|k| WriteOp::Delete {
                key: k.clone(),
                cond: Condition::None,
            })
            .collect();
        store.transact(ops).await?;
    }
    store
        .transact(vec![
            WriteOp::Delete {
                key: version_key(id, current.version),
                cond: Condition::None,
            },
            WriteOp::Delete {
                key: head_key(id),
                cond: Condition::Equals {
                    attr: "version".into(),
                    value: current.version.into(),
                },
            },
        ])
        .await
}

/// A page of pipelines (their current versions), newest first.
pub async fn list(
    store: &dyn Store,
    limit: usize,
    before: Option<String>,
    now: i64,
) -> Result<(Vec<Pipeline>, Option<String>), StoreError> {
    children(store, ALL, limit, before, now).await
}

/// A page of `user`'s pipelines, newest first.
pub async fn list_of(
    store: &dyn Store,
    user: Uuid,
    limit: usize,
    before: Option<String>,
    now: i64,
) -> Result<(Vec<Pipeline>, Option<String>), StoreError> {
    super::children_in(
        store,
        super::OWNED,
        &owner_partition(user),
        limit,
        before,
        now,
    )
    .await
}

/// The counter updates of a finished execution, for its final write: the
/// pipeline's totals and its runs of the day.
pub fn finished_counters(e: &Execution) -> Vec<WriteOp> {
    let outcome = match e.status {
        ExecutionStatus::Success => "success",
        ExecutionStatus::Timeout => "timeout",
        _ => "error",
    };
    let duration = e.duration_ms.unwrap_or(0) as i64;
    let day = e.completed_at.unwrap_or(e.started_at).date_naive();
    let runs = |extra: Vec<(String, i64)>| {
        let mut d = vec![("runs".to_string(), 1), (outcome.to_string(), 1)];
        d.extend(extra);
        d
    };
    vec![
        WriteOp::Add {
            key: stats_key(e.pipeline_id),
            deltas: runs(vec![("duration_ms".into(), duration)]),
        },
        WriteOp::Add {
            key: Key::new(usage_partition(day), e.pipeline_id.to_string()),
            deltas: runs(Vec::new()),
        },
    ]
}

/// A pipeline's totals (`runs`, `success`, `error`, `timeout`, `duration_ms`).
pub async fn totals(store: &dyn Store, id: Uuid) -> Result<Map<String, Value>, StoreError> {
    counters(store, &stats_key(id)).await
}

/// One day's runs: each pipeline's id and its counters.
pub async fn usage_of_day(
    store: &dyn Store,
    day: NaiveDate,
) -> Result<Vec<(String, Map<String, Value>)>, StoreError> {
    let mut q = Query::table(usage_partition(day), 1000);
    let mut out = Vec::new();
    loop {
        let page = store.query(&q).await?;
        let full = page.len() == q.limit;
        q.after = page.last().map(|i| i.key.sk.clone());
        out.extend(page.into_iter().map(|i| (i.key.sk, i.attrs)));
        if !full {
            return Ok(out);
        }
    }
}
