//! Request rate limits and run quotas.
//!
//! Requests: at most `rate_limit` per minute per principal (per client
//! address when unauthenticated). One process (`warren dev`) counts them in
//! memory over a sliding minute; many (Lambda) count them in the table,
//! one conditional increment per request and fixed minute, so the limit
//! holds however many containers serve.
//!
//! Runs: a user with a `runs_limit` starts at most that many runs of its
//! pipelines per calendar month (UTC); every run of a user's pipeline is
//! counted, one conditional increment, so the month's usage is known.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use uuid::Uuid;

use super::super::{Deps, ServiceError};
use crate::table::limits;

/// The window requests are counted over.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Clients one process remembers; past this the quietest are forgotten.
const MAX_CLIENTS: usize = 10_000;

/// The answer for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admission {
    pub allowed: bool,
    /// Requests per window.
    pub limit: u32,
    /// Requests left in the window after this one.
    pub remaining: u32,
    /// Seconds until a request is admitted again (when refused) or the
    /// window's count drops.
    pub reset: u64,
}

/// Request times of each client within the last window (one process).
#[derive(Default)]
pub struct MemoryWindow {
    clients: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl MemoryWindow {
    /// Count a request of `who` at `now` against `limit` per window.
    pub fn admit(&self, who: &str, limit: u32, now: Instant) -> Admission {
        let limit_n = limit.max(1) as usize;
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if clients.len() >= MAX_CLIENTS && !clients.contains_key(who) {
            clients.retain(|_, times| times.back().is_some_and(|t| now - *t < WINDOW));
            if clients.len() >= MAX_CLIENTS {
                return Admission {
                    allowed: false,
                    limit,
                    remaining: 0,
                    reset: 1,
                };
            }
        }
        let times = clients.entry(who.to_string()).or_default();
        while times.front().is_some_and(|t| now - *t >= WINDOW) {
            times.pop_front();
        }
        let allowed = times.len() < limit_n;
        if allowed {
            times.push_back(now);
        }
        let reset = times
            .front()
            .map_or(0, |first| (WINDOW - (now - *first)).as_secs().max(1));
        Admission {
            allowed,
            limit,
            remaining: (limit_n - times.len().min(limit_n)) as u32,
            reset,
        }
    }
}

/// Count a request of `who` (`user:<id>`, `key:<id>`, `ip:<address>`)
/// against the configured limit.
pub async fn admit(deps: &Deps, who: &str) -> Result<Admission, ServiceError> {
    let limit = deps.config.rate_limit;
    if !deps.config.shared_limits {
        return Ok(deps.identity.requests.admit(who, limit, Instant::now()));
    }
    let now = deps.now().timestamp();
    let minute = now - now.rem_euclid(60);
    let reset = (minute + 60 - now).max(1) as u64;
    let count = limits::count_request(&*deps.store, who, minute, limit.max(1) as i64).await?;
    Ok(Admission {
        allowed: count.is_some(),
        limit,
        remaining: count.map_or(0, |n| (limit as i64 - n).max(0) as u32),
        reset,
    })
}

/// The month a run counts in, `yyyy-mm`.
pub fn period_of(at: DateTime<Utc>) -> String {
    format!("{:04}-{:02}", at.year(), at.month())
}

/// The first day of `at`'s month and of the next.
pub fn period_bounds(at: DateTime<Utc>) -> (NaiveDate, NaiveDate) {
    let first = NaiveDate::from_ymd_opt(at.year(), at.month(), 1).unwrap_or(at.date_naive());
    let next = first
        .checked_add_months(chrono::Months::new(1))
        .unwrap_or(first);
    (first, next)
}

/// Count a run of a pipeline `owner` owns: 429 `quota_exceeded` when the
/// owner's month is used up (nothing counted). The deployment's own
/// pipelines are not counted.
pub async fn count_run(deps: &Deps, owner: Option<Uuid>) -> Result<(), ServiceError> {
    let Some(user) = owner else {
        return Ok(());
    };
    let now = deps.now();
    let store = &*deps.store;
    let limit = crate::table::users::get(store, user, now.timestamp())
        .await?
        .and_then(|u| u.runs_limit)
        .map_or(i64::MAX, |l| l.min(i64::MAX as u64) as i64);
    if limit == 0 {
        return Err(quota_exceeded(0));
    }
    match limits::count_run(store, user, &period_of(now), limit).await? {
        Some(_) => Ok(()),
        None => Err(quota_exceeded(limit)),
    }
}

fn quota_exceeded(limit: i64) -> ServiceError {
    ServiceError::Limited {
        message: format!("the monthly limit of {limit} pipeline runs is used up"),
        code: "quota_exceeded",
        retry_after: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_requests_per_window_and_no_more() {
        let w = MemoryWindow::default();
        let t0 = Instant::now();
        for i in 0..3 {
            let a = w.admit("a", 3, t0 + Duration::from_secs(i));
            assert!(a.allowed);
            assert_eq!(a.remaining, 2 - i as u32);
        }
        let refused = w.admit("a", 3, t0 + Duration::from_secs(5));
        assert!(!refused.allowed);
        assert_eq!(
            refused.reset, 55,
            "until the first request leaves the window"
        );
        assert!(w.admit("b", 3, t0 + Duration::from_secs(5)).allowed);
        assert!(w.admit("a", 3, t0 + WINDOW).allowed);
    }

    #[test]
    fn periods_are_calendar_months() {
        let at: DateTime<Utc> = "2026-12-31T23:59:59Z".parse().unwrap();
        assert_eq!(period_of(at), "2026-12");
        let (first, next) = period_bounds(at);
        assert_eq!(first.to_string(), "2026-12-01");
        assert_eq!(next.to_string(), "2027-01-01");
    }
}
