//! The scheduler: [`tick`] runs every maintenance service once (called by
//! an EventBridge schedule in AWS); [`run_every`] calls it on a timer
//! locally.

use std::time::Duration;

use tokio::sync::watch;
use warren::Deps;

pub use warren::service::maintenance::{TickReport, tick};

/// Tick every `interval` until `stop` turns true.
pub async fn run_every(deps: Deps, interval: Duration, mut stop: watch::Receiver<bool>) {
    let mut timer = tokio::time::interval(interval);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = timer.tick() => {}
            _ = stop.changed() => return,
        }
        match tick(&deps).await {
            Ok(r) if r != TickReport::default() => tracing::info!(
                released = r.released,
                rescued = r.rescued,
                webhooks = r.webhooks,
                executions = r.executions,
                triggers = r.triggers,
                expired = r.expired,
                deleted = r.deleted,
                failed = r.failed,
                "scheduler tick"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "scheduler tick failed; retrying next tick"),
        }
    }
}
