//! Conformance suites: every adapter of a port passes the same one, so no
//! backend is kinder than another. Adapter tests call `run_all` with a
//! factory for fresh, empty instances. Also: dependencies for tests that run
//! the use cases in memory.

pub mod aws;
pub mod intercept;
pub mod queue;
pub mod router;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use crate::adapters::embedded::{EmbeddedStore, MemoryQueue};
use crate::adapters::http::GuardedHttpClient;
use crate::domain::pipeline::{Pipeline, PipelineSpec};
use crate::handlers::Registry;
use crate::ports::{Clock, Delivery};
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
        metrics: Arc::new(crate::service::Metrics::prometheus()),
        config: Arc::new(Config {
            webhook_secret: vec![7; 32],
            step_secret: vec![8; 32],
            // Tests call the API as loopback development does.
            open: true,
            ..Config::default()
        }),
        identity: Default::default(),
    }
}

/// What waits on `queue` now (up to a batch), received and so hidden for
/// `visibility`: for tests that inspect or hand-deliver messages.
pub async fn receive_now(deps: &Deps, queue: &str, visibility: Duration) -> Vec<Delivery> {
    deps.queue
        .receive(queue, crate::ports::MAX_RECEIVE, visibility, Duration::ZERO)
        .await
        .expect("the queue answers a receive")
}

/// A pipeline that answers its event as `{"got": <event>}`, its event
/// trigger on `topic` (`options.event`; none when `None`).
pub async fn pipeline_on_topic(deps: &Deps, topic: Option<&str>) -> Pipeline {
    let mut spec = serde_json::json!({
        "name": "on-topic",
        "steps": [{"name": "shape", "kind": "transform", "expression": "{got: event}"}]
    });
    if let Some(t) = topic {
        spec["options"] = serde_json::json!({ "event": t });
    }
    let spec: PipelineSpec = serde_json::from_value(spec).expect("a valid pipeline spec");
    crate::service::pipelines::create(deps, spec)
        .await
        .expect("the pipeline is created")
}
