//! Triggers: create, list and delete a pipeline's triggers; run a pipeline
//! from a webhook token; fire a due schedule from the scheduler's tick.
//!
//! A webhook's token is never stored: its SHA-256 keys the hook item (see
//! [`crate::table::triggers`]) and is kept on the trigger, where the call's
//! hash is compared in constant time.
//!
//! A schedule trigger's timer entry is its next slot. The tick that finds
//! it due starts the execution and moves the timer to the first slot after
//! its own now in ONE transaction, conditional on the trigger's version:
//! of two overlapping ticks one wins and the other's write fails whole, so
//! a slot fires exactly once; slots missed while no tick ran fire once,
//! late, as the slot the timer held.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::pipelines;
use super::{Deps, ServiceError, executions, found};
use crate::domain::execution::{Execution, TriggerType};
use crate::domain::trigger::{
    Trigger, TriggerKind, TriggerSpec, is_token_shaped, new_token, token_sha256,
};
use crate::ports::{Item, MAX_TRANSACT_OPS};
use crate::table::triggers as table;

/// The longest the check of a new trigger's schedule may take.
const SCHEDULE_CHECK_BUDGET: std::time::Duration = std::time::Duration::from_secs(2);

/// A new trigger, with the webhook token it answers to (shown this once).
#[derive(Debug)]
pub struct Created {
    pub trigger: Trigger,
    pub token: Option<String>,
}

/// Check `spec` and store it as a trigger of `pipeline` (with its hook item
/// for a webhook). A refused spec or an unknown pipeline stores nothing.
pub async fn create(
    deps: &Deps,
    pipeline: Uuid,
    spec: TriggerSpec,
) -> Result<Created, ServiceError> {
    let now = deps.now();
    let token = (spec.kind == TriggerKind::Webhook).then(new_token);
    let min_interval =
        chrono::Duration::from_std(deps.config.min_schedule_interval).unwrap_or_default();
    // A cron pattern is walked fire by fire to check it: on a blocking
    // thread, within a budget, so no pattern can hold an async worker.
    let hook = token.clone();
    let check = tokio::task::spawn_blocking(move || {
        Trigger::new(
            Uuid::now_v7(),
            pipeline,
            spec,
            hook.as_deref(),
            now,
            min_interval,
        )
    });
    let mut trigger = match tokio::time::timeout(SCHEDULE_CHECK_BUDGET, check).await {
        Ok(Ok(checked)) => checked.map_err(|e| ServiceError::invalid(e.code(), e.to_string()))?,
        Ok(Err(crash)) => return Err(ServiceError::Crashed(crash.to_string())),
        Err(_) => {
            return Err(ServiceError::invalid(
                "invalid_cron",
                "the schedule takes too long to check; simplify its pattern",
            ));
        }
    };
    trigger.user_id = pipelines::get(deps, pipeline, None).await?.user_id;
    deps.store.transact(table::create(&trigger, now)).await?;
    Ok(Created { trigger, token })
}

/// The trigger with this id.
pub async fn get(deps: &Deps, id: Uuid) -> Result<Trigger, ServiceError> {
    let now = deps.now().timestamp();
    found(table::get(&*deps.store, id, now).await?, "no such trigger")
}

/// A page of a pipeline's triggers, newest first, and the next cursor.
pub async fn list(
    deps: &Deps,
    pipeline: Uuid,
    limit: usize,
    before: Option<String>,
) -> Result<(Vec<Trigger>, Option<String>), ServiceError> {
    pipelines::get(deps, pipeline, None).await?;
    let now = deps.now().timestamp();
    Ok(table::list(&*deps.store, pipeline, limit, before, now).await?)
}

/// Delete a trigger and its hook item: its token answers 404 and its
/// schedule fires nothing from then on.
pub async fn delete(deps: &Deps, id: Uuid) -> Result<(), ServiceError> {
    loop {
        let current = get(deps, id).await?;
        match remove(deps, &current).await {
            // A tick fired it meanwhile (a new version): delete that one.
            Err(e) if e.is_conflict() => continue,
            other => return other,
        }
    }
}

async fn remove(deps: &Deps, t: &Trigger) -> Result<(), ServiceError> {
    deps.store.transact(table::delete(t)).await?;
    Ok(())
}

/// Delete a pipeline, then its triggers (a schedule left behind by a
/// failure halfway is removed when it next fires).
pub async fn delete_pipeline(deps: &Deps, id: Uuid) -> Result<(), ServiceError> {
    pipelines::delete(deps, id).await?;
    // Its event trigger would be looked up by every publish on its topic.
    super::topics::stop_started(deps, id).await?;
    loop {
        let now = deps.now().timestamp();
        let (page, next) = table::list(&*deps.store, id, MAX_TRANSACT_OPS, None, now).await?;
        for t in &page {
            match remove(deps, t).await {
                Err(e) if e.is_conflict() => delete(deps, t.id).await.or_else(gone_is_fine)?,
                other => other?,
            }
        }
        if next.is_none() {
            return Ok(());
        }
    }
}

fn gone_is_fine(e: ServiceError) -> Result<(), ServiceError> {
    match e {
        ServiceError::NotFound(_) => Ok(()),
        other => Err(other),
    }
}

/// The live webhook trigger `token` opens: 404 for junk, an unknown or a
/// deleted token.
pub async fn by_token(deps: &Deps, token: &str) -> Result<Trigger, ServiceError> {
    const UNKNOWN: ServiceError = ServiceError::NotFound("no such webhook");
    if !is_token_shaped(token) {
        return Err(UNKNOWN);
    }
    let hash = token_sha256(token);
    let Some(id) = table::by_hook(&*deps.store, &hash).await? else {
        return Err(UNKNOWN);
    };
    let trigger = match get(deps, id).await {
        Err(ServiceError::NotFound(_)) => return Err(UNKNOWN),
        other => other?,
    };
    let stored = trigger.webhook_sha256.as_deref().unwrap_or("");
    match bool::from(stored.as_bytes().ct_eq(hash.as_bytes())) {
        true => Ok(trigger),
        false => Err(UNKNOWN),
    }
}

/// Start a run of the current version of the webhook trigger's pipeline on `input`.
pub async fn run_webhook(
    deps: &Deps,
    trigger: &Trigger,
    input: Value,
) -> Result<Execution, ServiceError> {
    let pipeline = pipelines::get(deps, trigger.pipeline_id, None).await?;
    executions::run_pipeline(
        deps,
        &pipeline,
        TriggerType::Webhook,
        Some(trigger.id.to_string()),
        input,
    )
    .await
}

/// The scheduler found a trigger's timer due: start an execution for its
/// slot and advance the timer past `now`, in one write conditional on the
/// trigger's version. True when this call fired it; a lost race is a
/// `Conflict` (someone else fired the slot) and writes nothing.
pub async fn fire_due(deps: &Deps, item: &Item, now: DateTime<Utc>) -> Result<bool, ServiceError> {
    let Some(t) = table::from_item(item) else {
        return Ok(false);
    };
    let Some(slot) = t.next_fire.filter(|at| *at <= now) else {
        return Ok(false);
    };
    let pipeline = match pipelines::get(deps, t.pipeline_id, None).await {
        Err(ServiceError::NotFound(_)) => {
            tracing::info!(trigger_id = %t.id, "the trigger's pipeline is gone; removing the trigger");
            return remove(deps, &t).await.map(|_| false);
        }
        other => other?,
    };
    let input = json!({ "scheduled_for": slot, "fired_at": now, "trigger_id": t.id });
    let execution = Execution::new(
        crate::table::executions::new_id(pipeline.id),
        &pipeline,
        TriggerType::Schedule,
        Some(t.id.to_string()),
        input,
        now,
    );
    let advanced = table::replace(&t, &t.fired(now));
    match executions::start(deps, &execution, vec![advanced.clone()]).await {
        Err(ServiceError::Limited { message, .. }) => {
            // The slot is skipped, not retried every tick: advance past it.
            tracing::warn!(trigger_id = %t.id, %message, "schedule fire skipped");
            deps.store.transact(vec![advanced]).await?;
        }
        other => other?,
    }
    if slot < now - chrono::Duration::minutes(1) {
        tracing::warn!(trigger_id = %t.id, %slot, "schedule fired late (slots missed while no tick ran fire once)");
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::adapters::clock::ManualClock;
    use crate::domain::pipeline::PipelineSpec;
    use crate::handlers::Registry;
    use crate::service::maintenance::tick;
    use crate::testing::memory_deps;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    /// Deps at `start` on the in-memory backend, with one pipeline.
    async fn setup(start: &str) -> (Deps, Arc<ManualClock>, Uuid) {
        let clock = Arc::new(ManualClock::new(at(start)));
        let deps = memory_deps(clock.clone(), Registry::standard());
        let p = new_pipeline(&deps).await;
        (deps, clock, p)
    }

    async fn new_pipeline(deps: &Deps) -> Uuid {
        let spec: PipelineSpec = serde_json::from_value(json!({
            "name": "p",
            "steps": [{"name": "t", "kind": "transform", "expression": "event"}]
        }))
        .unwrap();
        pipelines::create(deps, spec).await.unwrap().id
    }

    fn spec(value: Value) -> TriggerSpec {
        serde_json::from_value(value).unwrap()
    }

    async fn schedule(deps: &Deps, pipeline: Uuid, cron: &str, tz: &str) -> Trigger {
        let s = spec(json!({
            "type": "schedule", "name": "s", "config": {"cron": cron, "timezone": tz}
        }));
        create(deps, pipeline, s).await.unwrap().trigger
    }

    async fn webhook(deps: &Deps, pipeline: Uuid) -> Created {
        let s = spec(json!({"type": "webhook", "name": "h"}));
        create(deps, pipeline, s).await.unwrap()
    }

    async fn runs(deps: &Deps, pipeline: Uuid) -> Vec<Execution> {
        executions::list(deps, pipeline, 100, None).await.unwrap().0
    }

    async fn fires(deps: &Deps) -> usize {
        tick(deps).await.unwrap().triggers
    }

    #[tokio::test]
    async fn a_schedule_fires_on_time_and_not_before() {
        let (deps, clock, p) = setup("2026-03-01T12:00:10Z").await;
        let t = schedule(&deps, p, "* * * * *", "UTC").await;
        assert_eq!(t.next_fire, Some(at("2026-03-01T12:01:00Z")));

        clock.set(at("2026-03-01T12:00:59.999Z"));
        assert_eq!(fires(&deps).await, 0, "not before its slot");
        clock.set(at("2026-03-01T12:01:00Z"));
        assert_eq!(fires(&deps).await, 1);
        assert_eq!(fires(&deps).await, 0, "a slot fires once");

        let e = &runs(&deps, p).await[0];
        assert_eq!(e.trigger_type, TriggerType::Schedule);
        assert_eq!(e.trigger_id, Some(t.id.to_string()));
        assert_eq!(e.input["scheduled_for"], json!("2026-03-01T12:01:00Z"));
        assert_eq!(e.input["trigger_id"], json!(t.id));
        assert_eq!(
            get(&deps, t.id).await.unwrap().next_fire,
            Some(at("2026-03-01T12:02:00Z"))
        );
        clock.set(at("2026-03-01T12:02:00.500Z"));
        assert_eq!(fires(&deps).await, 1, "and the next slot fires too");
    }

    #[tokio::test]
    async fn overlapping_ticks_fire_a_slot_exactly_once() {
        let (deps, clock, p) = setup("2026-03-01T12:00:10Z").await;
        let t = schedule(&deps, p, "* * * * *", "UTC").await;
        clock.set(at("2026-03-01T12:01:00Z"));
        let (a, b) = tokio::join!(tick(&deps), tick(&deps));
        assert_eq!(a.unwrap().triggers + b.unwrap().triggers, 1);

        // Two ticks that both read the trigger before either wrote: the
        // second's write fails whole on the trigger's version.
        clock.set(at("2026-03-01T12:02:00Z"));
        let seen = deps.store.get(&table::key(t.id)).await.unwrap().unwrap();
        assert!(fire_due(&deps, &seen, deps.now()).await.unwrap());
        let err = fire_due(&deps, &seen, deps.now()).await.unwrap_err();
        assert!(err.is_conflict(), "{err:?}");
        assert_eq!(runs(&deps, p).await.len(), 2, "one execution per slot");
    }

    #[tokio::test]
    async fn slots_missed_while_no_tick_ran_fire_once_late() {
        let (deps, clock, p) = setup("2026-03-01T12:00:10Z").await;
        let t = schedule(&deps, p, "*/5 * * * *", "UTC").await;
        assert_eq!(fires(&deps).await, 0);
        // Three hours without a tick: 36 slots pass.
        clock.set(at("2026-03-01T15:02:30Z"));
        assert_eq!(fires(&deps).await, 1);
        assert_eq!(fires(&deps).await, 0);
        let done = runs(&deps, p).await;
        assert_eq!(done.len(), 1);
        assert_eq!(
            done[0].input["scheduled_for"],
            json!("2026-03-01T12:05:00Z")
        );
        assert_eq!(done[0].input["fired_at"], json!("2026-03-01T15:02:30Z"));
        let next = get(&deps, t.id).await.unwrap().next_fire.unwrap();
        assert_eq!(next, at("2026-03-01T15:05:00Z"));
        assert!(next > deps.now());
    }

    #[tokio::test]
    async fn a_daily_schedule_follows_the_wall_clock_across_dst() {
        let (deps, clock, p) = setup("2026-03-28T12:00:00Z").await;
        let t = schedule(&deps, p, "30 2 * * *", "Europe/Berlin").await;
        // 29 March: 02:30 does not exist in Berlin; it fires at 03:00 CEST.
        clock.set(at("2026-03-29T00:59:59Z"));
        assert_eq!(fires(&deps).await, 0);
        clock.set(at("2026-03-29T01:00:00Z"));
        assert_eq!(fires(&deps).await, 1);
        assert_eq!(
            get(&deps, t.id).await.unwrap().next_fire,
            Some(at("2026-03-30T00:30:00Z"))
        );
        // 25 October: 02:30 happens twice in Berlin; it fires once.
        let (deps, clock, p) = setup("2026-10-24T12:00:00Z").await;
        let autumn = schedule(&deps, p, "30 2 * * *", "Europe/Berlin").await;
        assert_eq!(autumn.next_fire, Some(at("2026-10-25T00:30:00Z")));
        clock.set(at("2026-10-25T00:30:00Z"));
        assert_eq!(fires(&deps).await, 1);
        clock.set(at("2026-10-25T01:30:00Z"));
        assert_eq!(
            fires(&deps).await,
            0,
            "the repeated 02:30 does not fire again"
        );
        assert_eq!(
            get(&deps, autumn.id).await.unwrap().next_fire,
            Some(at("2026-10-26T01:30:00Z"))
        );
    }

    #[tokio::test]
    async fn a_deleted_trigger_never_fires() {
        let (deps, clock, p) = setup("2026-03-01T12:00:10Z").await;
        let s = schedule(&deps, p, "* * * * *", "UTC").await;
        let hook = webhook(&deps, p).await;
        let token = hook.token.clone().unwrap();
        assert_eq!(by_token(&deps, &token).await.unwrap().id, hook.trigger.id);

        delete(&deps, s.id).await.unwrap();
        delete(&deps, hook.trigger.id).await.unwrap();
        clock.set(at("2026-03-01T12:05:00Z"));
        assert_eq!(fires(&deps).await, 0);
        assert!(matches!(
            by_token(&deps, &token).await,
            Err(ServiceError::NotFound(_))
        ));
        assert!(matches!(
            delete(&deps, s.id).await,
            Err(ServiceError::NotFound(_))
        ));
        assert!(runs(&deps, p).await.is_empty());
        assert!(list(&deps, p, 10, None).await.unwrap().0.is_empty());
    }

    #[tokio::test]
    async fn a_webhook_token_runs_its_pipeline_and_no_other_token_does() {
        let (deps, _, p) = setup("2026-03-01T12:00:10Z").await;
        let hook = webhook(&deps, p).await;
        let token = hook.token.unwrap();
        let t = by_token(&deps, &token).await.unwrap();
        let e = run_webhook(&deps, &t, json!({"x": 1})).await.unwrap();
        assert_eq!(
            (e.trigger_type, e.trigger_id, e.input),
            (
                TriggerType::Webhook,
                Some(t.id.to_string()),
                json!({"x": 1})
            )
        );
        let mut wrong = token.clone().into_bytes();
        wrong[10] = if wrong[10] == b'A' { b'B' } else { b'A' };
        for bad in [
            String::from_utf8(wrong).unwrap(),
            "whk_nope".into(),
            String::new(),
        ] {
            assert!(
                matches!(by_token(&deps, &bad).await, Err(ServiceError::NotFound(_))),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn refused_triggers_store_nothing() {
        let (deps, _, p) = setup("2026-03-01T12:00:10Z").await;
        for (pipeline, body, code) in [
            (
                p,
                json!({"type": "schedule", "name": "s", "config": {"cron": "bad"}}),
                Some("invalid_cron"),
            ),
            (
                p,
                json!({"type": "schedule", "name": "s", "config": {"cron": "* * * * *", "timezone": "Nowhere/Land"}}),
                Some("invalid_timezone"),
            ),
            (
                p,
                json!({"type": "webhook", "name": "h", "config": {"secret": "x"}}),
                Some("invalid_trigger"),
            ),
            (
                Uuid::now_v7(),
                json!({"type": "webhook", "name": "h"}),
                None,
            ),
        ] {
            match (create(&deps, pipeline, spec(body.clone())).await, code) {
                (Err(ServiceError::Invalid { code: got, .. }), Some(code)) => {
                    assert_eq!(got, code, "{body}")
                }
                (Err(ServiceError::NotFound(_)), None) => {}
                (other, _) => panic!("{body}: {other:?}"),
            }
        }
        assert!(list(&deps, p, 10, None).await.unwrap().0.is_empty());
        let minute = at("2026-03-01T12:01:00Z");
        let timers = crate::table::timers::between(&*deps.store, minute, minute).await;
        assert!(timers.unwrap().is_empty());
    }

    #[tokio::test]
    async fn deleting_a_pipeline_deletes_its_triggers_and_an_orphan_schedule_removes_itself() {
        let (deps, clock, p) = setup("2026-03-01T12:00:10Z").await;
        let s = schedule(&deps, p, "* * * * *", "UTC").await;
        let hook = webhook(&deps, p).await;
        delete_pipeline(&deps, p).await.unwrap();
        assert!(get(&deps, s.id).await.is_err() && get(&deps, hook.trigger.id).await.is_err());
        assert!(by_token(&deps, &hook.token.unwrap()).await.is_err());

        // A schedule whose pipeline vanished behind its back (a delete that
        // failed halfway) is dropped by the tick that finds it due.
        let q = new_pipeline(&deps).await;
        let orphan = schedule(&deps, q, "* * * * *", "UTC").await;
        pipelines::delete(&deps, q).await.unwrap();
        clock.set(at("2026-03-01T12:01:00Z"));
        assert_eq!(fires(&deps).await, 0);
        assert!(matches!(
            get(&deps, orphan.id).await,
            Err(ServiceError::NotFound(_))
        ));
    }
}
