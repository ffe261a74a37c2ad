//! Pipelines: create, read (any version), update (a new version), delete,
//! list; and their statistics, kept as counters.
//!
//! Keys: the current version at `PIPE#<id>`/`HEAD` (listed newest first in
//! index gsi2 under `PIPES`), every version at `PIPE#<id>`/`V#<version>`,
//! counters at `PSTATS#<id>`/`STATS` and `USAGE#<day>`/`<id>`.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::records::{attrs_of, count, counters, from_attrs, record};
use super::{Deps, ServiceError};
use crate::domain::execution::{Execution, ExecutionStatus};
use crate::domain::pipeline::{Pipeline, PipelineSpec};
use crate::ports::{Condition, Index, Item, Key, Query, WriteOp};

/// Lists by parent, newest first: pipelines, a pipeline's executions and triggers.
pub const CHILDREN: Index = Index::Gsi2;
const ALL_PIPELINES: &str = "PIPES";
/// The longest period `usage` reports on.
pub const MAX_USAGE_DAYS: i64 = 366;

fn head_key(id: Uuid) -> Key {
    Key::new(format!("PIPE#{id}"), "HEAD")
}

fn version_key(id: Uuid, version: u32) -> Key {
    Key::new(format!("PIPE#{id}"), format!("V#{version:010}"))
}

fn stats_key(id: Uuid) -> Key {
    Key::new(format!("PSTATS#{id}"), "STATS")
}

fn usage_key(day: NaiveDate, pipeline: &str) -> Key {
    Key::new(format!("USAGE#{day}"), pipeline)
}

fn check(spec: &PipelineSpec) -> Result<(), ServiceError> {
    spec.check()
        .map_err(|e| ServiceError::invalid("invalid_pipeline", e.to_string()))
}

fn head_item(p: &Pipeline) -> Item {
    let mut item = Item::new(head_key(p.id), attrs_of(p));
    item.indexes
        .push((CHILDREN, Key::new(ALL_PIPELINES, p.id.to_string())));
    item
}

pub async fn create(deps: &Deps, spec: PipelineSpec) -> Result<Pipeline, ServiceError> {
    check(&spec)?;
    let now = deps.now();
    let p = Pipeline {
        id: Uuid::now_v7(),
        version: 1,
        spec,
        created_at: now,
        updated_at: now,
    };
    let absent = Condition::Absent {
        now: now.timestamp(),
    };
    deps.store
        .transact(vec![
            WriteOp::Put {
                item: head_item(&p),
                cond: absent.clone(),
            },
            WriteOp::Put {
                item: Item::new(version_key(p.id, 1), attrs_of(&p)),
                cond: absent,
            },
        ])
        .await?;
    Ok(p)
}

/// The current version, or `version` when given (old versions stay readable).
pub async fn get(deps: &Deps, id: Uuid, version: Option<u32>) -> Result<Pipeline, ServiceError> {
    let head: Pipeline = record(deps, &head_key(id), "no such pipeline").await?;
    match version {
        None => Ok(head),
        Some(v) if v == head.version => Ok(head),
        Some(v) => record(deps, &version_key(id, v), "no such pipeline version").await,
    }
}

/// Write the next version; the current one stays readable by number.
pub async fn update(deps: &Deps, id: Uuid, spec: PipelineSpec) -> Result<Pipeline, ServiceError> {
    check(&spec)?;
    loop {
        let current = get(deps, id, None).await?;
        let next = Pipeline {
            version: current.version + 1,
            spec: spec.clone(),
            updated_at: deps.now(),
            ..current.clone()
        };
        let ops = vec![
            WriteOp::Put {
                item: head_item(&next),
                cond: Condition::Equals {
                    attr: "version".into(),
                    value: current.version.into(),
                },
            },
            WriteOp::Put {
                item: Item::new(version_key(id, next.version), attrs_of(&next)),
                cond: Condition::Absent {
                    now: deps.now().timestamp(),
                },
            },
        ];
        match deps.store.transact(ops).await {
            // Another update won the race: build on its version.
            Err(crate::ports::StoreError::Conflict { .. }) => continue,
            other => return other.map(|_| next).map_err(Into::into),
        }
    }
}

/// Delete the pipeline and its versions. Its executions stay readable.
pub async fn delete(deps: &Deps, id: Uuid) -> Result<(), ServiceError> {
    let current = get(deps, id, None).await?;
    // Old versions first, the head last: a failure halfway leaves it listed.
    let keys: Vec<Key> = (1..current.version).map(|v| version_key(id, v)).collect();
    for chunk in keys.chunks(crate::ports::MAX_TRANSACT_OPS) {
        let ops = chunk
            .iter()
            .map(|k| WriteOp::Delete {
                key: k.clone(),
                cond: Condition::None,
            })
            .collect();
        deps.store.transact(ops).await?;
    }
    deps.store
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
        .await?;
    Ok(())
}

/// A page of records listed under `parent` in [`CHILDREN`], newest first,
/// and the cursor of the next page.
pub async fn children<T: serde::de::DeserializeOwned>(
    deps: &Deps,
    parent: &str,
    limit: usize,
    before: Option<String>,
) -> Result<(Vec<T>, Option<String>), ServiceError> {
    let mut q = Query::index(CHILDREN, parent, limit);
    q.descending = true;
    q.before = before;
    let items = deps.store.query(&q).await?;
    let next = (items.len() == limit)
        .then(|| {
            items
                .last()
                .and_then(|i| i.index_key(CHILDREN))
                .map(|k| k.sk.clone())
        })
        .flatten();
    let now = deps.now().timestamp();
    let live = items.iter().filter(|i| !i.is_expired(now));
    Ok((live.filter_map(from_attrs).collect(), next))
}

pub async fn list(
    deps: &Deps,
    limit: usize,
    before: Option<String>,
) -> Result<(Vec<Pipeline>, Option<String>), ServiceError> {
    children(deps, ALL_PIPELINES, limit, before).await
}

/// The counter updates of a finished execution, for its final write.
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
            key: usage_key(day, &e.pipeline_id.to_string()),
            deltas: runs(Vec::new()),
        },
    ]
}

#[derive(Clone, Debug, Serialize)]
pub struct PipelineStats {
    pub pipeline_id: Uuid,
    pub executions_total: i64,
    pub executions_success: i64,
    pub executions_error: i64,
    pub executions_timeout: i64,
    pub avg_duration_ms: f64,
    pub last_executed_at: Option<DateTime<Utc>>,
}

/// Totals from the pipeline's counters; the last run from its newest execution.
pub async fn stats(deps: &Deps, id: Uuid) -> Result<PipelineStats, ServiceError> {
    get(deps, id, None).await?;
    let attrs = counters(deps, &stats_key(id)).await?;
    let (last, _) = children::<Execution>(deps, &executions_parent(id), 1, None).await?;
    let total = count(&attrs, "runs");
    Ok(PipelineStats {
        pipeline_id: id,
        executions_total: total,
        executions_success: count(&attrs, "success"),
        executions_error: count(&attrs, "error"),
        executions_timeout: count(&attrs, "timeout"),
        avg_duration_ms: match total {
            0 => 0.0,
            n => count(&attrs, "duration_ms") as f64 / n as f64,
        },
        last_executed_at: last.first().map(|e| e.started_at),
    })
}

/// Where a pipeline's executions are listed in [`CHILDREN`].
pub fn executions_parent(pipeline: Uuid) -> String {
    format!("PEXEC#{pipeline}")
}

#[derive(Clone, Debug, Serialize)]
pub struct UsageDay {
    pub day: NaiveDate,
    pub runs: i64,
    pub success: i64,
    pub error: i64,
    pub timeout: i64,
    /// Runs per pipeline id.
    pub pipelines: Map<String, Value>,
}

/// Runs per day and per pipeline from `from` to `to` (inclusive, days).
pub async fn usage(
    deps: &Deps,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<UsageDay>, ServiceError> {
    let days = (to - from).num_days();
    if !(0..MAX_USAGE_DAYS).contains(&days) {
        return Err(ServiceError::invalid(
            "invalid_period",
            format!("`from` must not be after `to`, and the period at most {MAX_USAGE_DAYS} days"),
        ));
    }
    let mut out = Vec::new();
    for day in from.iter_days().take(days as usize + 1) {
        let mut q = Query::table(format!("USAGE#{day}"), 1000);
        let mut entry = UsageDay {
            day,
            runs: 0,
            success: 0,
            error: 0,
            timeout: 0,
            pipelines: Map::new(),
        };
        loop {
            let page = deps.store.query(&q).await?;
            for item in &page {
                entry.runs += count(&item.attrs, "runs");
                entry.success += count(&item.attrs, "success");
                entry.error += count(&item.attrs, "error");
                entry.timeout += count(&item.attrs, "timeout");
                entry
                    .pipelines
                    .insert(item.key.sk.clone(), count(&item.attrs, "runs").into());
            }
            if page.len() < q.limit {
                break;
            }
            q.after = page.last().map(|i| i.key.sk.clone());
        }
        out.push(entry);
    }
    Ok(out)
}
