//! Failed tasks (the dead letters) grouped by error fingerprint, and the
//! requeue of a whole group in one call.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::{Deps, ServiceError, control};
use crate::domain::TaskStatus;
use crate::domain::fingerprint::{error_fingerprint, error_pattern};
use crate::domain::identity::Principal;
use crate::table::tasks::TaskFilter;

/// The most failed tasks one grouping (or one group's requeue) reads;
/// past it the answer says it is partial.
pub const MAX_SCANNED: usize = 5000;
/// Task ids a group lists as examples.
const EXAMPLES: usize = 5;

/// Failed tasks with one error pattern.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FailedGroup {
    /// 16 hex digits naming the pattern (`POST /api/v1/tasks/failed/requeue`).
    pub fingerprint: String,
    /// The error with ids, hashes, numbers and timestamps masked.
    pub pattern: String,
    pub count: u64,
    /// The queues its tasks are in.
    pub queues: Vec<String>,
    /// The newest few of its tasks.
    pub task_ids: Vec<Uuid>,
    /// When the newest of them failed.
    #[schema(required = true)]
    pub last_failed_at: Option<DateTime<Utc>>,
}

/// Failed tasks grouped by fingerprint, largest group first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FailedGroups {
    pub groups: Vec<FailedGroup>,
    /// Failed tasks read.
    pub scanned: u64,
    /// More than [`MAX_SCANNED`] failed tasks: the oldest were not read.
    pub partial: bool,
}

/// The failed tasks of `queue` (all queues: `None`), newest first, each
/// with its fingerprint; at most [`MAX_SCANNED`], and whether more exist.
async fn each_failed<F>(
    deps: &Deps,
    queue: Option<String>,
    mut visit: F,
) -> Result<bool, ServiceError>
where
    F: FnMut(&crate::domain::Task, String),
{
    let mut filter = TaskFilter {
        queue,
        status: Some(TaskStatus::Failed),
        ..TaskFilter::default()
    };
    let mut seen = 0;
    loop {
        let page = deps.tasks().list(&filter, 500).await?;
        for task in &page.tasks {
            visit(task, error_fingerprint(task.error.as_deref().unwrap_or("")));
            seen += 1;
        }
        match page.next {
            Some(_) if seen >= MAX_SCANNED => return Ok(true),
            Some(cursor) => filter.before = Some(cursor),
            None => return Ok(false),
        }
    }
}

/// The failed tasks of `queue` (or every queue), grouped.
pub async fn groups(deps: &Deps, queue: Option<String>) -> Result<FailedGroups, ServiceError> {
    let mut groups: HashMap<String, FailedGroup> = HashMap::new();
    let mut scanned = 0;
    let partial = each_failed(deps, queue, |task, fingerprint| {
        scanned += 1;
        let group = groups
            .entry(fingerprint.clone())
            .or_insert_with(|| FailedGroup {
                fingerprint,
                pattern: error_pattern(task.error.as_deref().unwrap_or("")),
                count: 0,
                queues: Vec::new(),
                task_ids: Vec::new(),
                last_failed_at: None,
            });
        group.count += 1;
        if !group.queues.contains(&task.queue_name) {
            group.queues.push(task.queue_name.clone());
        }
        if group.task_ids.len() < EXAMPLES {
            group.task_ids.push(task.id);
        }
        group.last_failed_at = group.last_failed_at.max(task.completed_at);
    })
    .await?;
    let mut groups: Vec<FailedGroup> = groups.into_values().collect();
    groups.sort_by(|a, b| b.count.cmp(&a.count).then(a.pattern.cmp(&b.pattern)));
    Ok(FailedGroups {
        groups,
        scanned,
        partial,
    })
}

/// What one group requeue did.
#[derive(Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct GroupRequeued {
    pub requeued: u64,
    /// Tasks of the group `who` may not requeue (its queue permissions).
    pub forbidden: u64,
    /// Tasks that left the failed state between the read and the requeue
    /// (requeued by someone else, deleted).
    pub skipped: u64,
}

/// Requeue every task of group `fingerprint` (in `queue`, if given) that
/// failed at or before `failed_before`: a second click, or a stale page,
/// cannot requeue a task that failed again since the page was shown, and
/// each requeue is a failed → pending compare-and-set, so two calls at once
/// requeue each task once.
pub async fn requeue_group(
    deps: &Deps,
    who: &Principal,
    fingerprint: &str,
    queue: Option<String>,
    failed_before: Option<DateTime<Utc>>,
) -> Result<GroupRequeued, ServiceError> {
    let mut ids = Vec::new();
    each_failed(deps, queue, |task, fp| {
        let in_time = failed_before.is_none_or(|at| task.completed_at.is_none_or(|c| c <= at));
        if fp == fingerprint && in_time {
            ids.push(task.id);
        }
    })
    .await?;
    let mut done = GroupRequeued::default();
    for id in ids {
        match control::requeue(deps, id, who).await {
            Ok(_) => done.requeued += 1,
            Err(ServiceError::Forbidden(_)) => done.forbidden += 1,
            Err(ServiceError::NotFound(_) | ServiceError::Conflict { .. }) => done.skipped += 1,
            Err(e) => return Err(e),
        }
    }
    if done.requeued == 0 && done.forbidden > 0 {
        return Err(ServiceError::Forbidden(format!(
            "you may not requeue on the queues of these {} tasks",
            done.forbidden
        )));
    }
    Ok(done)
}
