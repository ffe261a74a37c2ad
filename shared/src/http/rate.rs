//! Requests per minute per client address on `/api/*`, as lapinq's
//! `--rate-limit` counts them: a sliding window of the last minute, 429
//! `{"error": "rate limit exceeded"}` past it. For the local gateway; on
//! AWS, API Gateway's throttling does this job across instances.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// The window requests are counted over.
const WINDOW: Duration = Duration::from_secs(60);
/// Clients remembered at once; past this, the quietest are forgotten, so a
/// flood of addresses cannot grow the table without bound.
const MAX_CLIENTS: usize = 10_000;

/// The request times of each client within the last window.
#[derive(Clone)]
pub struct RateLimiter {
    per_minute: usize,
    clients: Arc<Mutex<HashMap<IpAddr, VecDeque<Instant>>>>,
}

impl RateLimiter {
    /// At most `per_minute` requests per client per minute (at least 1).
    pub fn new(per_minute: u32) -> Self {
        RateLimiter {
            per_minute: per_minute.max(1) as usize,
            clients: Arc::default(),
        }
    }

    /// Count a request of `client` at `now`: false when it is one too many.
    pub fn admit(&self, client: IpAddr, now: Instant) -> bool {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if clients.len() >= MAX_CLIENTS && !clients.contains_key(&client) {
            clients.retain(|_, times| times.back().is_some_and(|t| now - *t < WINDOW));
            if clients.len() >= MAX_CLIENTS {
                return false;
            }
        }
        let times = clients.entry(client).or_default();
        while times.front().is_some_and(|t| now - *t >= WINDOW) {
            times.pop_front();
        }
        if times.len() >= self.per_minute {
            return false;
        }
        times.push_back(now);
        true
    }
}

/// Middleware: 429 once a client has made its requests of the minute to
/// `/api/*`. The client is the connection's peer address.
pub async fn rate_limit(State(limiter): State<RateLimiter>, req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with("/api/") {
        return next.run(req).await;
    }
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
    match limiter.admit(client, Instant::now()) {
        true => next.run(req).await,
        false => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "rate limit exceeded",
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_requests_per_minute_and_no_more() {
        let limiter = RateLimiter::new(3);
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let t0 = Instant::now();
        assert!((0..3).all(|i| limiter.admit(a, t0 + Duration::from_secs(i))));
        assert!(!limiter.admit(a, t0 + Duration::from_secs(5)));
        assert!(
            limiter.admit(b, t0 + Duration::from_secs(5)),
            "others are not held back"
        );
        assert!(
            limiter.admit(a, t0 + WINDOW),
            "the first request left the window"
        );
        assert!(!limiter.admit(a, t0 + WINDOW));
    }
}
