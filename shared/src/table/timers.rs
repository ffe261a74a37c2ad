//! The scheduler's two indexes, bucketed per minute so that no partition
//! gets hot, and the sweeps that read them:
//! - timers (gsi5): when the scheduler must next look at a record (a
//!   pending task's due or re-dispatch time, a running task's lease end, a
//!   webhook still owed, a running execution's lease or re-dispatch time, a
//!   schedule trigger's next slot);
//! - expiry (gsi6): when a record outlives its TTL (tasks, idempotency
//!   keys, finished executions and events).
//!
//! An entry's partition is `<TIMER|EXP>#<yyyymmddhhmm>` and its sort key
//! `<epoch ms, 15 digits>#<record>`, so a minute's entries come in time
//! order. Each maintenance service sweeps with a cursor of its own: the
//! last minute it has swept completely.

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{Map, Value};

use super::{executions, tasks, triggers};
use crate::ports::{Condition, Index, Item, Key, Query, Store, StoreError, WriteOp};

/// Timers: when the scheduler must look at a record next.
pub const TIMER: Index = Index::Gsi5;
/// Expiry: when a record outlives its TTL.
pub const EXPIRY: Index = Index::Gsi6;

const TIMER_PREFIX: &str = "TIMER";
const EXPIRY_PREFIX: &str = "EXP";

/// The most due entries one sweep returns; the rest wait for the next.
pub const MAX_PER_SWEEP: usize = 2000;
/// How far back a sweep looks when it has no cursor yet.
const FIRST_LOOKBACK_MINUTES: i64 = 60;
/// Buckets swept again behind the current minute, for writers whose
/// clocks lag.
const SLACK_MINUTES: i64 = 2;

/// Minute bucket of a time: the partition of both indexes.
pub fn minute_bucket(t: DateTime<Utc>) -> String {
    t.format("%Y%m%d%H%M").to_string()
}

/// A fixed-width, sortable time for sort keys.
fn sort_time(t: DateTime<Utc>) -> String {
    format!("{:015}", t.timestamp_millis().max(0))
}

fn entry(prefix: &str, at: DateTime<Utc>, tail: &str) -> Key {
    Key::new(
        format!("{prefix}#{}", minute_bucket(at)),
        format!("{}#{tail}", sort_time(at)),
    )
}

/// The timer entry of a record that must be looked at `at`.
pub(crate) fn timer_entry(at: DateTime<Utc>, record: &str) -> (Index, Key) {
    (TIMER, entry(TIMER_PREFIX, at, record))
}

/// The expiry entry of a record whose TTL work is due `at`.
pub(crate) fn expiry_entry(at: DateTime<Utc>, record: &str) -> (Index, Key) {
    (EXPIRY, entry(EXPIRY_PREFIX, at, record))
}

/// `item` made to end at `at`: its TTL, its expiry entry, and the
/// `expires` attribute the expiry sweep checks before it deletes (a record
/// written again since is not deleted).
pub(crate) fn expiring(mut item: Item, at: DateTime<Utc>) -> Item {
    item.indexes.push(expiry_entry(at, &item.key.pk));
    // Rounded up: a record asked to live until 12:00:01.95 must still be
    // there at 12:00:01.5, and TTLs count whole seconds.
    let end = at.timestamp() + i64::from(at.timestamp_subsec_nanos() > 0);
    item.ttl = Some(end);
    item.attrs.insert("expires".into(), Value::from(end));
    item
}

/// When an item's timer fires, if it has one.
pub fn timer_of(item: &Item) -> Option<DateTime<Utc>> {
    fires_at(item, TIMER).and_then(DateTime::from_timestamp_millis)
}

/// When an item's entry in `index` fires (epoch ms), from its sort key.
fn fires_at(item: &Item, index: Index) -> Option<i64> {
    item.index_key(index)?.sk.split('#').next()?.parse().ok()
}

/// Which index a sweep reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Timers,
    Expiry,
}

impl Kind {
    fn index(self) -> Index {
        match self {
            Kind::Timers => TIMER,
            Kind::Expiry => EXPIRY,
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Kind::Timers => TIMER_PREFIX,
            Kind::Expiry => EXPIRY_PREFIX,
        }
    }
}

/// The record a due entry belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    Task(Key),
    Execution(Key),
    Trigger(Key),
    /// Anything else with a TTL (idempotency keys, events).
    Other(Key),
}

impl Owner {
    fn of(key: &Key) -> Owner {
        let key = key.clone();
        if tasks::is_task(&key) {
            Owner::Task(key)
        } else if executions::is_execution(&key) {
            Owner::Execution(key)
        } else if triggers::is_trigger(&key) {
            Owner::Trigger(key)
        } else {
            Owner::Other(key)
        }
    }

    /// The record's key.
    pub fn key(&self) -> &Key {
        match self {
            Owner::Task(k) | Owner::Execution(k) | Owner::Trigger(k) | Owner::Other(k) => k,
        }
    }
}

/// A due entry: the record as the index shows it (indexes may lag: act
/// only on [`current`]'s read), whose it is, and the minute bucket it sits in.
#[derive(Clone, Debug)]
pub struct Due {
    pub item: Item,
    pub owner: Owner,
    minute: DateTime<Utc>,
}

/// The due entries of one index from one cursor on, and how far that
/// cursor may move once they are handled.
pub struct Sweep {
    cursor_key: Key,
    old_cursor: String,
    /// The first minute not swept completely (or swept again for slack).
    swept_to: DateTime<Utc>,
    pub due: Vec<Due>,
}

fn cursor_key(name: &str) -> Key {
    Key::new("SCHED", name)
}

/// Where the next sweep with the cursor named `cursor` starts (every entry
/// before it has been handled), and that cursor as stored. One not stored
/// yet is pinned an hour before `now` before anything reads or acts: if
/// the first sweep fails, the next starts there too, instead of an hour
/// before its own now, past the entries written meanwhile; and a process
/// that pins its cursors before it writes anything (start-up recovery)
/// leaves none of its entries behind them.
pub async fn sweep_start(
    store: &dyn Store,
    cursor: &str,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, String), StoreError> {
    let key = cursor_key(cursor);
    let stored = store.get(&key).await?;
    let minute = stored
        .as_ref()
        .and_then(|i| i.attrs.get("minute")?.as_str());
    if let Some(m) = minute
        && let Some(start) = parse_minute(m)
    {
        return Ok((start, m.to_string()));
    }
    let start = now - Duration::minutes(FIRST_LOOKBACK_MINUTES);
    let first = minute_bucket(start);
    let mut attrs = Map::new();
    attrs.insert("minute".into(), Value::from(first.clone()));
    let pin = WriteOp::Put {
        item: Item::new(key, attrs),
        cond: Condition::Absent {
            now: now.timestamp(),
        },
    };
    match store.transact(vec![pin]).await {
        // Another sweeper pinned it first: its start is as good.
        Ok(()) | Err(StoreError::Conflict { .. }) => Ok((start, first)),
        Err(e) => Err(e),
    }
}

/// Read the entries of `kind` due by `now`, oldest first, from the cursor
/// named `cursor` on: at most [`MAX_PER_SWEEP`].
pub async fn sweep(
    store: &dyn Store,
    kind: Kind,
    cursor: &str,
    now: DateTime<Utc>,
) -> Result<Sweep, StoreError> {
    let (start, old_cursor) = sweep_start(store, cursor, now).await?;
    let until = format!("{}~", sort_time(now)); // every sort key at or before now
    let index = kind.index();
    let mut due = Vec::new();
    let mut minute = start;
    let mut complete = true;
    while minute_bucket(minute) <= minute_bucket(now) {
        let mut q = Query::index(
            index,
            format!("{}#{}", kind.prefix(), minute_bucket(minute)),
            500,
        );
        q.before = Some(until.clone());
        loop {
            q.limit = (MAX_PER_SWEEP - due.len()).clamp(1, 500);
            let page = store.query(&q).await?;
            let full = page.len() == q.limit;
            q.after = page
                .last()
                .and_then(|i| i.index_key(index))
                .map(|k| k.sk.clone());
            due.extend(page.into_iter().map(|item| Due {
                owner: Owner::of(&item.key),
                item,
                minute,
            }));
            if due.len() >= MAX_PER_SWEEP {
                complete = false;
                break;
            }
            if !full {
                break;
            }
        }
        if !complete {
            break;
        }
        minute += Duration::minutes(1);
    }
    let swept_to = if complete {
        now - Duration::minutes(SLACK_MINUTES)
    } else {
        minute
    };
    Ok(Sweep {
        cursor_key: cursor_key(cursor),
        old_cursor,
        swept_to: swept_to.max(start),
        due,
    })
}

impl Sweep {
    /// Move the cursor to where the sweep got, but not past the bucket of
    /// `retry`, an entry whose action must be tried again.
    pub async fn advance(self, store: &dyn Store, retry: &[Due]) -> Result<(), StoreError> {
        let retry_from = retry.iter().map(|d| d.minute).min();
        let to = retry_from.map_or(self.swept_to, |r| r.min(self.swept_to));
        let new_cursor = minute_bucket(to);
        if self.old_cursor == new_cursor {
            return Ok(());
        }
        let mut attrs = Map::new();
        attrs.insert("minute".into(), Value::from(new_cursor));
        let op = WriteOp::Put {
            item: Item::new(self.cursor_key, attrs),
            cond: Condition::None,
        };
        store.transact(vec![op]).await
    }
}

fn parse_minute(s: &str) -> Option<DateTime<Utc>> {
    let naive = chrono::NaiveDateTime::parse_from_str(&format!("{s}00"), "%Y%m%d%H%M%S").ok()?;
    Some(Utc.from_utc_datetime(&naive))
}

/// Every timer entry from the bucket of `from` to that of `to`, whether due
/// or not (start-up recovery looks ahead).
pub async fn between(
    store: &dyn Store,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Due>, StoreError> {
    let mut out = Vec::new();
    let mut minute = from;
    while minute_bucket(minute) <= minute_bucket(to) {
        let mut q = Query::index(
            TIMER,
            format!("{TIMER_PREFIX}#{}", minute_bucket(minute)),
            500,
        );
        loop {
            let page = store.query(&q).await?;
            let full = page.len() == q.limit;
            q.after = page
                .last()
                .and_then(|i| i.index_key(TIMER))
                .map(|k| k.sk.clone());
            out.extend(page.into_iter().map(|item| Due {
                owner: Owner::of(&item.key),
                item,
                minute,
            }));
            if !full {
                break;
            }
        }
        minute += Duration::minutes(1);
    }
    Ok(out)
}

/// The record behind a due entry, read again (indexes may lag writes), if
/// its entry in `kind`'s index is still due at `now`.
pub async fn current(
    store: &dyn Store,
    due: &Due,
    kind: Kind,
    now: DateTime<Utc>,
) -> Result<Option<Item>, StoreError> {
    let item = store.get(due.owner.key()).await?;
    Ok(item.filter(|i| fires_at(i, kind.index()).is_some_and(|at| at <= now.timestamp_millis())))
}

/// Delete an expired record that is not a task (an idempotency key, a
/// finished execution or event), unless it was written again since: its
/// `expires` attribute, where it has one, must not have changed.
pub fn delete_expired(item: &Item) -> WriteOp {
    let cond = match item.attrs.get("expires") {
        Some(v) => Condition::Equals {
            attr: "expires".into(),
            value: v.clone(),
        },
        None => Condition::Exists,
    };
    WriteOp::Delete {
        key: item.key.clone(),
        cond,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::embedded::EmbeddedStore;

    fn at(minutes: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_900_000_000, 0).unwrap() + Duration::minutes(minutes)
    }

    /// Found by the simulator (seeds 8 and 115): a scheduler whose first
    /// sweeps all failed, then ran again over an hour later, looked back
    /// an hour from its own now and never saw the timers written before.
    #[tokio::test]
    async fn a_failed_first_sweep_keeps_its_starting_point() {
        let store = EmbeddedStore::in_memory();
        let mut item = Item::new(Key::new("TASK#t", "TASK"), Map::new());
        item.indexes.push(timer_entry(at(10), "t"));
        store.put_batch(vec![item]).await.unwrap();

        // The first sweep reads its entries but dies before it advances.
        let first = sweep(&store, Kind::Timers, "test", at(0)).await.unwrap();
        assert!(first.due.is_empty(), "not due yet");
        drop(first);

        let later = sweep(&store, Kind::Timers, "test", at(120)).await.unwrap();
        let due: Vec<&Key> = later.due.iter().map(|d| d.owner.key()).collect();
        assert_eq!(due, [&Key::new("TASK#t", "TASK")]);
    }

    #[test]
    fn a_record_lives_at_least_until_its_end() {
        let end = Utc.timestamp_millis_opt(1_700_000_001_950).unwrap();
        let item = expiring(Item::new(Key::new("K", "K"), Map::new()), end);
        assert!(!item.is_expired(1_700_000_001), "alive in its last second");
        assert!(item.is_expired(1_700_000_002));
        let whole = Utc.timestamp_opt(1_700_000_001, 0).unwrap();
        let item = expiring(Item::new(Key::new("K", "K"), Map::new()), whole);
        assert!(
            item.is_expired(1_700_000_001),
            "a whole second is not rounded"
        );
    }
}
