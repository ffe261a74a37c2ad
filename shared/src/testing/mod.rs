//! Conformance suites: every adapter of a port passes the same one, so no
//! backend is kinder than another. Adapter tests call `run_all` with a
//! factory for fresh, empty instances. Also: dependencies for tests that run
//! the use cases in memory.

pub mod aws;
pub mod queue;
pub mod router;
pub mod store;

use std::sync::Arc;

use crate::adapters::embedded::{EmbeddedStore, MemoryQueue};
use crate::adapters::http::GuardedHttpClient;
use crate::handlers::Registry;
use crate::ports::Clock;
use crate::{Config, Deps};

/// Use-case dependencies on the in-memory store and queue, with `clock` and
/// `handlers`; outgoing HTTP refuses every private address.
pub fn memory_deps(clock: Arc<dyn Clock>, handlers: Registry) -> Deps {
    Deps {
        store: Arc::new(EmbeddedStore::in_memory()),
        queue: Arc::new(MemoryQueue::new()),
        clock,
        http: Arc::new(GuardedHttpClient::new(Vec::new()).expect("http client")),
        handlers: Arc::new(handlers),
        metrics: Default::default(),
        config: Arc::new(Config {
            webhook_secret: vec![7; 32],
            ..Config::default()
        }),
    }
}
