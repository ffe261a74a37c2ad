//! Pipelines: create, read (any version), update (a new version), delete,
//! list; and their statistics, kept as counters (see
//! [`crate::table::pipelines`] for where they live).

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{Deps, ServiceError, found};
use crate::domain::pipeline::{Pipeline, PipelineSpec};
use crate::table::{self, count};

/// The longest period `usage` reports on.
pub const MAX_USAGE_DAYS: i64 = 366;

fn check(spec: &PipelineSpec) -> Result<(), ServiceError> {
    spec.check()
        .map_err(|e| ServiceError::invalid("invalid_pipeline", e.to_string()))
}

/// Store a new pipeline of the deployment's at version 1.
pub async fn create(deps: &Deps, spec: PipelineSpec) -> Result<Pipeline, ServiceError> {
    create_for(deps, None, spec).await
}

/// Store a new pipeline of `owner`'s at version 1.
pub async fn create_for(
    deps: &Deps,
    owner: Option<Uuid>,
    spec: PipelineSpec,
) -> Result<Pipeline, ServiceError> {
    check(&spec)?;
    let now = deps.now();
    let p = Pipeline {
        id: Uuid::now_v7(),
        version: 1,
        spec,
        created_at: now,
        updated_at: now,
        user_id: owner,
    };
    deps.store
        .transact(table::pipelines::create(&p, now))
        .await?;
    Ok(p)
}

/// The current version, or `version` when given (old versions stay readable).
pub async fn get(deps: &Deps, id: Uuid, version: Option<u32>) -> Result<Pipeline, ServiceError> {
    let now = deps.now().timestamp();
    let store = &*deps.store;
    let head = found(
        table::pipelines::head(store, id, now).await?,
        "no such pipeline",
    )?;
    match version {
        None => Ok(head),
        Some(v) if v == head.version => Ok(head),
        Some(v) => found(
            table::pipelines::version(store, id, v, now).await?,
            "no such pipeline version",
        ),
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
        let ops = table::pipelines::update(&current, &next, deps.now());
        match deps.store.transact(ops).await {
            // Another update won the race: build on its version.
            Err(e) if e.is_conflict() => continue,
            other => return other.map(|_| next).map_err(Into::into),
        }
    }
}

/// Delete the pipeline and its versions. Its executions stay readable.
pub async fn delete(deps: &Deps, id: Uuid) -> Result<(), ServiceError> {
    let current = get(deps, id, None).await?;
    table::pipelines::delete(&*deps.store, &current).await?;
    Ok(())
}

/// A page of pipelines, newest first, and the next cursor: every one, or
/// only `owner`'s (`Some(None)`: the deployment's own are not listed
/// apart, so none).
pub async fn list(
    deps: &Deps,
    owner: Option<Option<Uuid>>,
    limit: usize,
    before: Option<String>,
) -> Result<(Vec<Pipeline>, Option<String>), ServiceError> {
    let now = deps.now().timestamp();
    let store = &*deps.store;
    Ok(match owner {
        None => table::pipelines::list(store, limit, before, now).await?,
        Some(Some(user)) => table::pipelines::list_of(store, user, limit, before, now).await?,
        Some(None) => (Vec::new(), None),
    })
}

/// The ids of every pipeline `user` owns.
pub async fn ids_of(
    deps: &Deps,
    user: Uuid,
) -> Result<std::collections::HashSet<String>, ServiceError> {
    let now = deps.now().timestamp();
    let mut ids = std::collections::HashSet::new();
    let mut before = None;
    loop {
        let (page, next) = table::pipelines::list_of(&*deps.store, user, 1000, before, now).await?;
        ids.extend(page.into_iter().map(|p| p.id.to_string()));
        match next {
            Some(n) => before = Some(n),
            None => return Ok(ids),
        }
    }
}

/// A user's runs this month against its limit (seed 002's usage dashboard).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Quota {
    pub period_start: NaiveDate,
    pub period_end: NaiveDate,
    pub runs_used: i64,
    /// `None`: no limit.
    #[schema(required = true)]
    pub runs_limit: Option<u64>,
    /// Of the limit, 0-100 (0 without a limit).
    pub runs_percentage: f64,
    pub days_remaining: i64,
}

/// `user`'s runs in the current month and its limit.
pub async fn quota(deps: &Deps, user: Uuid) -> Result<Quota, ServiceError> {
    use super::identity::limits::{period_bounds, period_of};
    let now = deps.now();
    let (start, next) = period_bounds(now);
    let used = crate::table::limits::runs(&*deps.store, user, &period_of(now)).await?;
    let limit = crate::table::users::get(&*deps.store, user, now.timestamp())
        .await?
        .and_then(|u| u.runs_limit);
    let percentage = match limit {
        Some(l) if l > 0 => (used as f64 / l as f64 * 100.0).min(100.0),
        Some(_) => 100.0,
        None => 0.0,
    };
    Ok(Quota {
        period_start: start,
        period_end: next.pred_opt().unwrap_or(next),
        runs_used: used,
        runs_limit: limit,
        runs_percentage: (percentage * 100.0).round() / 100.0,
        days_remaining: (next - now.date_naive()).num_days(),
    })
}

/// A pipeline's totals, from its counters.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct PipelineStats {
    pub pipeline_id: Uuid,
    pub executions_total: i64,
    pub executions_success: i64,
    pub executions_error: i64,
    pub executions_timeout: i64,
    pub avg_duration_ms: f64,
    #[schema(required = true)]
    pub last_executed_at: Option<DateTime<Utc>>,
}

/// Totals from the pipeline's counters; the last run from its newest execution.
pub async fn stats(deps: &Deps, id: Uuid) -> Result<PipelineStats, ServiceError> {
    get(deps, id, None).await?;
    let attrs = table::pipelines::totals(&*deps.store, id).await?;
    let now = deps.now().timestamp();
    let (last, _) = table::executions::list(&*deps.store, id, 1, None, now).await?;
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

/// The runs of one day, in all and per pipeline.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct UsageDay {
    pub day: NaiveDate,
    pub runs: i64,
    pub success: i64,
    pub error: i64,
    pub timeout: i64,
    /// Runs per pipeline id.
    pub pipelines: Map<String, Value>,
}

/// Runs per day and per pipeline from `from` to `to` (inclusive, days):
/// of every pipeline, or only of the pipelines `only` names.
pub async fn usage(
    deps: &Deps,
    from: NaiveDate,
    to: NaiveDate,
    only: Option<&std::collections::HashSet<String>>,
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
        let mut entry = UsageDay {
            day,
            runs: 0,
            success: 0,
            error: 0,
            timeout: 0,
            pipelines: Map::new(),
        };
        for (pipeline, attrs) in table::pipelines::usage_of_day(&*deps.store, day).await? {
            if only.is_some_and(|only| !only.contains(&pipeline)) {
                continue;
            }
            entry.runs += count(&attrs, "runs");
            entry.success += count(&attrs, "success");
            entry.error += count(&attrs, "error");
            entry.timeout += count(&attrs, "timeout");
            entry
                .pipelines
                .insert(pipeline, count(&attrs, "runs").into());
        }
        out.push(entry);
    }
    Ok(out)
}
