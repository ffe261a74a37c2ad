//! Counters that hold across processes (many Lambda containers): login
//! failures, requests per principal per minute, pipeline runs per user per
//! month.
//!
//! | item           | pk                              | sk      | written by |
//! |----------------|---------------------------------|---------|------------|
//! | login failures | `LOGINFAIL#<user:name or ip:addr>` | `FAIL` | compare-and-set on `version`; TTL and expiry entry an hour after the last failure |
//! | request count  | `RATE#<principal>#<minute>`     | `RATE`  | one conditional increment per request (TTL: the minute after) |
//! | run count      | `RUNS#<user>#<yyyy-mm>`         | `RUNS`  | one conditional increment per run of the user's pipelines |

use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::timers::expiring;
use crate::ports::{Condition, Item, Key, Store, StoreError, WriteOp};

/// How long login failures are remembered after the last one.
pub const FAILURE_MEMORY: Duration = Duration::hours(1);

fn failures_key(scope: &str) -> Key {
    Key::new(format!("LOGINFAIL#{scope}"), "FAIL")
}

/// Recent login failures of one username or address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Failures {
    pub count: u64,
    /// Epoch seconds of the last one.
    pub last_at: i64,
    /// The record's version; `None` when there is no item.
    version: Option<u64>,
}

/// The failures remembered for `scope` (`user:<name>` or `ip:<address>`).
pub async fn failures(store: &dyn Store, scope: &str, now: i64) -> Result<Failures, StoreError> {
    let Some(item) = store.get(&failures_key(scope)).await? else {
        return Ok(Failures::default());
    };
    let number = |name: &str| item.attrs.get(name).and_then(Value::as_u64).unwrap_or(0);
    let version = Some(number("version"));
    if item.is_expired(now) {
        // Forgotten; the item is replaced at its version.
        return Ok(Failures {
            version,
            ..Failures::default()
        });
    }
    Ok(Failures {
        count: number("failures"),
        last_at: number("last_at") as i64,
        version,
    })
}

/// The write that adds one failure at `now` to `prev` (`Conflict` when
/// another was recorded since: read and try again).
pub fn failed(scope: &str, prev: &Failures, now: DateTime<Utc>) -> WriteOp {
    let until = now + FAILURE_MEMORY;
    let key = failures_key(scope);
    let mut attrs = Map::new();
    attrs.insert("failures".into(), Value::from(prev.count + 1));
    attrs.insert("last_at".into(), Value::from(now.timestamp()));
    attrs.insert("version".into(), Value::from(prev.version.unwrap_or(0) + 1));
    let item = expiring(Item::new(key, attrs), until);
    let cond = match prev.version {
        Some(v) => Condition::version(v),
        None => Condition::Absent {
            now: now.timestamp(),
        },
    };
    WriteOp::Put { item, cond }
}

/// The write that forgets `scope`'s failures (after a good login).
pub fn forget(scope: &str) -> WriteOp {
    WriteOp::Delete {
        key: failures_key(scope),
        cond: Condition::None,
    }
}

/// Count one request of `who` in the minute starting `minute` (epoch
/// seconds): its number in the minute, `None` past `limit`.
pub async fn count_request(
    store: &dyn Store,
    who: &str,
    minute: i64,
    limit: i64,
) -> Result<Option<i64>, StoreError> {
    let key = Key::new(format!("RATE#{who}#{minute}"), "RATE");
    store.increment(&key, "n", limit, Some(minute + 120)).await
}

fn runs_key(user: Uuid, period: &str) -> Key {
    Key::new(format!("RUNS#{user}#{period}"), "RUNS")
}

/// Count one run of `user`'s pipelines in `period` (`yyyy-mm`): the runs
/// so far, this one included; `None` when `limit` runs were made already.
pub async fn count_run(
    store: &dyn Store,
    user: Uuid,
    period: &str,
    limit: i64,
) -> Result<Option<i64>, StoreError> {
    store
        .increment(&runs_key(user, period), "runs", limit, None)
        .await
}

/// The runs of `user`'s pipelines in `period`.
pub async fn runs(store: &dyn Store, user: Uuid, period: &str) -> Result<i64, StoreError> {
    let attrs = super::counters(store, &runs_key(user, period)).await?;
    Ok(super::count(&attrs, "runs"))
}
