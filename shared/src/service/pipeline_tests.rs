//! Pipelines and executions end to end on the in-memory backend, with an
//! injected clock and a store that can fail on cue: what an execution
//! promises when its worker crashes, its message is lost or its input is bad.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use super::events::{self, Ingested};
use super::maintenance::tick;
use super::worker::process;
use super::{Deps, executions, pipelines};
use crate::adapters::clock::ManualClock;
use crate::domain::event::EventStatus;
use crate::domain::execution::{Execution, ExecutionStatus, StepStatus, TriggerType};
use crate::domain::pipeline::{Pipeline, PipelineSpec};
use crate::handlers::Registry;
use crate::ports::{Store, WriteOp};
use crate::testing::intercept::{InterceptStore, Intercepted};
use crate::testing::{memory_deps, receive_now};

fn t0() -> DateTime<Utc> {
    "2026-03-01T12:00:00Z".parse().unwrap()
}

/// `inner`, whose `n`-th write of an execution item (counting from 1)
/// never answers, as a worker that dies before its checkpoint lands.
fn dies_at_execution_write(inner: Arc<dyn Store>, n: usize) -> Arc<dyn Store> {
    let writes = AtomicUsize::new(0);
    InterceptStore::new(inner, move |ops: &[WriteOp]| {
        let execution = ops
            .iter()
            .any(|op| crate::table::executions::is_execution(op.key()));
        if execution && writes.fetch_add(1, Ordering::SeqCst) + 1 == n {
            Intercepted::Hang
        } else {
            Intercepted::PassOn
        }
    })
}

/// Handlers `count_a` and `count_b` that count their runs.
fn counting() -> (Registry, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let mut r = Registry::standard();
    let a = Arc::new(AtomicUsize::new(0));
    let b = Arc::new(AtomicUsize::new(0));
    for (name, counter) in [("count_a", a.clone()), ("count_b", b.clone())] {
        r.register(name, move |_| {
            let c = counter.clone();
            async move { Ok(json!(c.fetch_add(1, Ordering::SeqCst) + 1)) }
        });
    }
    (r, a, b)
}

fn setup(handlers: Registry) -> (Deps, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(t0()));
    (memory_deps(clock.clone(), handlers), clock)
}

fn spec(value: Value) -> PipelineSpec {
    serde_json::from_value(value).unwrap()
}

/// validate → transform → task echo: the pipeline of the tests.
fn orders() -> PipelineSpec {
    spec(json!({
        "name": "orders",
        "event_schema": {
            "type": "object",
            "required": ["order_id"],
            "properties": {"order_id": {"type": "string"}, "qty": {"type": "integer"}}
        },
        "steps": [
            {"name": "check", "kind": "validate"},
            {"name": "shape", "kind": "transform", "expression": "{id: event.order_id, qty: event.qty}"},
            {"name": "say", "kind": "task", "task_name": "echo", "args": [1]}
        ]
    }))
}

/// Process every message on the task queue, new ones included, until none is left.
pub(super) async fn drain(deps: &Deps) {
    loop {
        let got = super::tests::receive_all(deps).await;
        if got.is_empty() {
            return;
        }
        for m in got {
            process(deps, &m.body).await.unwrap();
            deps.queue
                .delete_batch(&deps.config.task_queue, vec![m.receipt])
                .await
                .unwrap();
        }
    }
}

async fn created(deps: &Deps, s: PipelineSpec) -> Pipeline {
    pipelines::create(deps, s).await.unwrap()
}

/// Run a pipeline of `steps` once on `input` to its end with the standard
/// handlers: the deps (to look further) and the finished execution.
async fn run_to_end(steps: Value, input: Value) -> (Deps, Execution) {
    let (deps, _) = setup(Registry::standard());
    let p = created(&deps, spec(json!({"name": "p", "steps": steps}))).await;
    let e = executions::run_pipeline(&deps, &p, TriggerType::Manual, None, input)
        .await
        .unwrap();
    drain(&deps).await;
    let done = executions::get(&deps, e.id).await.unwrap();
    (deps, done)
}

async fn ingest(deps: &Deps, p: &Pipeline, data: Value) -> (Uuid, Uuid) {
    match events::ingest(deps, data, Some(p.id), false).await.unwrap() {
        Ingested::Queued {
            event_id,
            execution_id,
        } => (event_id, execution_id),
        other => panic!("expected a queued event, got {other:?}"),
    }
}

#[tokio::test]
async fn valid_event_runs_every_step_to_success_and_completes_the_event() {
    let (deps, _) = setup(Registry::standard());
    let p = created(&deps, orders()).await;
    let (event_id, execution_id) = ingest(&deps, &p, json!({"order_id": "A-1", "qty": 3})).await;
    assert_eq!(
        events::get(&deps, event_id).await.unwrap().status,
        EventStatus::Pending
    );

    drain(&deps).await;

    let e = executions::get(&deps, execution_id).await.unwrap();
    assert_eq!(e.status, ExecutionStatus::Success, "{e:?}");
    assert_eq!(e.trigger_type, TriggerType::Ingest);
    assert_eq!(e.trigger_id, Some(event_id.to_string()));
    let outputs: Vec<_> = e
        .steps
        .iter()
        .map(|s| (s.status, s.output.clone()))
        .collect();
    assert_eq!(
        outputs[0],
        (StepStatus::Success, Some(json!({"valid": true})))
    );
    assert_eq!(
        outputs[1],
        (StepStatus::Success, Some(json!({"id": "A-1", "qty": 3})))
    );
    let echoed = outputs[2].1.clone().unwrap();
    assert_eq!(echoed["args"], json!([1]));
    assert_eq!(
        echoed["kwargs"]["context"]["steps"]["shape"],
        json!({"id": "A-1", "qty": 3})
    );
    assert_eq!(e.output, Some(echoed.clone()));
    assert!(e.completed_at.is_some() && e.duration_ms.is_some());
    assert_eq!(e.lease_until, None);

    let event = events::get(&deps, event_id).await.unwrap();
    assert_eq!(event.status, EventStatus::Completed);
    assert_eq!(event.result, Some(echoed));
}

#[tokio::test]
async fn invalid_event_fails_with_its_violations_stored() {
    let (deps, _) = setup(Registry::standard());
    let p = created(&deps, orders()).await;
    let (event_id, execution_id) = ingest(&deps, &p, json!({"qty": "three"})).await;
    drain(&deps).await;

    let event = events::get(&deps, event_id).await.unwrap();
    assert_eq!(event.status, EventStatus::Failed);
    let found = event
        .validation_errors
        .expect("violations stored on the event");
    assert!(found.iter().any(|v| v.path == "/qty"), "{found:?}");
    assert!(
        found
            .iter()
            .any(|v| v.path.is_empty() && v.message.contains("order_id")),
        "{found:?}"
    );
    let e = executions::get(&deps, execution_id).await.unwrap();
    assert_eq!(e.status, ExecutionStatus::Error);
    assert_eq!(e.steps[0].status, StepStatus::Error);
    assert_eq!(
        e.steps[1].status,
        StepStatus::Pending,
        "no step runs after a failed one"
    );
}

#[tokio::test]
async fn sync_validation_refuses_an_invalid_event_and_stores_nothing() {
    let (deps, _) = setup(Registry::standard());
    let p = created(&deps, orders()).await;
    match events::ingest(&deps, json!({"order_id": 5}), Some(p.id), true)
        .await
        .unwrap()
    {
        Ingested::Invalid(v) => assert_eq!(v[0].path, "/order_id"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let (runs, _) = executions::list(&deps, p.id, 10, None).await.unwrap();
    assert!(runs.is_empty());
}

#[tokio::test]
async fn an_event_without_a_workflow_is_refused() {
    let (deps, _) = setup(Registry::standard());
    let err = events::ingest(&deps, json!({}), None, false)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            super::ServiceError::Invalid {
                code: "no_workflow",
                ..
            }
        ),
        "{err:?}"
    );
    let err = events::ingest(&deps, json!({}), Some(Uuid::now_v7()), false)
        .await
        .unwrap_err();
    assert!(matches!(err, super::ServiceError::NotFound(_)), "{err:?}");
}

#[tokio::test]
async fn a_crash_between_steps_resumes_without_re_running_finished_steps() {
    // GIVEN a worker whose store dies on the checkpoint of step 2 (writes of
    // the execution: 1 start, 2 claim, 3 step 1 done, 4 step 2 done)
    let (registry, a, b) = counting();
    let (memory, clock) = setup(registry);
    let deps = Deps {
        store: dies_at_execution_write(memory.store.clone(), 4),
        ..memory
    };
    let p = created(
        &deps,
        spec(json!({"name": "crash", "steps": [
            {"name": "a", "kind": "task", "task_name": "count_a"},
            {"name": "b", "kind": "task", "task_name": "count_b"},
            {"name": "c", "kind": "transform", "expression": "[steps.a, steps.b]"}
        ]})),
    )
    .await;
    let e = executions::run_pipeline(&deps, &p, TriggerType::Manual, None, json!({}))
        .await
        .unwrap();
    let message = deps
        .queue
        .receive(
            &deps.config.task_queue,
            1,
            Duration::from_secs(30),
            Duration::ZERO,
        )
        .await
        .unwrap()
        .remove(0);
    // WHEN the worker dies after step b ran, before its checkpoint
    let died = tokio::time::timeout(Duration::from_millis(200), process(&deps, &message.body));
    assert!(
        died.await.is_err(),
        "the worker's checkpoint of step b answered"
    );
    let stuck = executions::get(&deps, e.id).await.unwrap();
    assert_eq!(stuck.steps[0].status, StepStatus::Success);
    assert_eq!(stuck.steps[1].status, StepStatus::Pending);
    // AND the message comes back while the dead worker's lease still holds
    process(&deps, &message.body).await.unwrap();
    assert_eq!(
        b.load(Ordering::SeqCst),
        1,
        "a held execution is not run twice"
    );
    // THEN once the lease runs out the scheduler re-sends it
    clock.advance(chrono::Duration::minutes(2));
    let report = tick(&deps).await.unwrap();
    assert_eq!(report.executions, 1);
    drain(&deps).await;
    // AND it resumes at step b: a ran once, b (in flight at the crash) twice
    let done = executions::get(&deps, e.id).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Success, "{done:?}");
    assert_eq!((a.load(Ordering::SeqCst), b.load(Ordering::SeqCst)), (1, 2));
    assert_eq!(done.output, Some(json!([1, 2])));
    assert_eq!(
        tick(&deps).await.unwrap().executions,
        0,
        "a finished execution has no timer"
    );
}

#[tokio::test]
async fn a_lost_message_is_re_sent_by_the_timer() {
    let (deps, clock) = setup(Registry::standard());
    let p = created(&deps, orders()).await;
    let (_, execution_id) = ingest(&deps, &p, json!({"order_id": "A-2"})).await;
    // The message is received and lost (never processed nor deleted; its
    // visibility outlives the test's clock, which SQS does not share).
    receive_now(&deps, &deps.config.task_queue, Duration::from_secs(3600)).await;
    assert_eq!(
        tick(&deps).await.unwrap().executions,
        0,
        "not before its timer"
    );
    clock.advance(
        chrono::Duration::from_std(deps.config.redispatch_after).unwrap()
            + chrono::Duration::seconds(1),
    );
    assert_eq!(tick(&deps).await.unwrap().executions, 1);
    drain(&deps).await;
    assert_eq!(
        executions::get(&deps, execution_id).await.unwrap().status,
        ExecutionStatus::Success
    );
}

#[tokio::test]
async fn failing_step_is_retried_then_ends_the_execution() {
    let (_, e) = run_to_end(
        json!([
            {"name": "f", "kind": "task", "task_name": "fail", "kwargs": {"message": "boom"}, "retries": 2},
            {"name": "never", "kind": "transform", "expression": "event"}
        ]),
        json!({}),
    )
    .await;
    assert_eq!(e.status, ExecutionStatus::Error);
    assert_eq!(e.steps[0].attempts, 3);
    assert_eq!(e.error.as_deref(), Some("step `f`: boom"));
}

#[tokio::test]
async fn a_step_past_its_timeout_ends_the_execution_in_timeout() {
    let (_, e) = run_to_end(
        json!([
            {"name": "s", "kind": "task", "task_name": "sleep", "kwargs": {"seconds": 5}, "timeout_seconds": 1}
        ]),
        json!({}),
    )
    .await;
    assert_eq!(e.status, ExecutionStatus::Timeout);
    assert_eq!(e.steps[0].status, StepStatus::Timeout);
}

#[tokio::test]
async fn http_step_to_a_private_address_is_refused_without_retries() {
    let (_, e) = run_to_end(
        json!([
            {"name": "h", "kind": "http", "url": "http://127.0.0.1:9/x", "retries": 3}
        ]),
        json!({}),
    )
    .await;
    assert_eq!((e.status, e.steps[0].attempts), (ExecutionStatus::Error, 1));
    assert!(e.error.unwrap().contains("refused"));
}

#[tokio::test]
async fn enqueue_step_fans_out_one_task_per_item() {
    let (deps, e) = run_to_end(
        json!([{"name": "out", "kind": "enqueue", "task_name": "echo", "queue_name": "lines", "items": "event.lines"}]),
        json!({"lines": ["x", "y"]}),
    )
    .await;
    let ids = e.output.unwrap()["task_ids"].as_array().unwrap().clone();
    assert_eq!(ids.len(), 2);
    let task = deps
        .tasks()
        .get(ids[1].as_str().unwrap().parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (task.queue_name.as_str(), &task.kwargs["item"]),
        ("lines", &json!("y"))
    );
}

#[tokio::test]
async fn stats_and_usage_count_finished_runs() {
    let (deps, _) = setup(Registry::standard());
    let p = created(&deps, orders()).await;
    let other = created(&deps, orders()).await;
    ingest(&deps, &p, json!({"order_id": "1"})).await;
    ingest(&deps, &p, json!({"order_id": "2"})).await;
    ingest(&deps, &p, json!({"order_id": 3})).await;
    ingest(&deps, &other, json!({"order_id": "4"})).await;
    drain(&deps).await;

    let s = pipelines::stats(&deps, p.id).await.unwrap();
    assert_eq!(
        (s.executions_total, s.executions_success, s.executions_error),
        (3, 2, 1)
    );
    assert!(s.last_executed_at.is_some());
    let day = t0().date_naive();
    let usage = pipelines::usage(&deps, day.pred_opt().unwrap(), day, None)
        .await
        .unwrap();
    assert_eq!(usage.len(), 2);
    assert_eq!(usage[0].runs, 0);
    assert_eq!((usage[1].runs, usage[1].success, usage[1].error), (4, 3, 1));
    assert_eq!(usage[1].pipelines[&p.id.to_string()], json!(3));
    assert_eq!(usage[1].pipelines[&other.id.to_string()], json!(1));
}

#[tokio::test]
async fn every_update_is_a_new_version_and_bad_specs_store_nothing() {
    let (deps, _) = setup(Registry::standard());
    let p = created(&deps, orders()).await;
    let mut renamed = orders();
    renamed.name = "orders v2".into();
    let v2 = pipelines::update(&deps, p.id, renamed).await.unwrap();
    assert_eq!(v2.version, 2);
    let mut bad = orders();
    bad.steps[1] =
        serde_json::from_value(json!({"name": "shape", "kind": "transform", "expression": "a[?"}))
            .unwrap();
    let err = pipelines::update(&deps, p.id, bad.clone())
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        super::ServiceError::Invalid {
            code: "invalid_pipeline",
            ..
        }
    ));
    assert!(pipelines::create(&deps, bad).await.is_err());

    assert_eq!(pipelines::get(&deps, p.id, None).await.unwrap().version, 2);
    assert_eq!(
        pipelines::get(&deps, p.id, Some(1))
            .await
            .unwrap()
            .spec
            .name,
        "orders"
    );
    let (all, _) = pipelines::list(&deps, None, 10, None).await.unwrap();
    assert_eq!(all.len(), 1, "the refused create stored nothing");

    pipelines::delete(&deps, p.id).await.unwrap();
    assert!(pipelines::get(&deps, p.id, Some(1)).await.is_err());
    assert!(
        pipelines::list(&deps, None, 10, None)
            .await
            .unwrap()
            .0
            .is_empty()
    );
}

#[tokio::test]
async fn executions_list_newest_first_with_a_cursor() {
    let (deps, _) = setup(Registry::standard());
    let p = created(&deps, orders()).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let e = executions::run_pipeline(&deps, &p, TriggerType::Manual, None, json!({}))
            .await
            .unwrap();
        ids.push(e.id);
    }
    let (first, cursor) = executions::list(&deps, p.id, 2, None).await.unwrap();
    assert_eq!(
        first.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![ids[2], ids[1]]
    );
    let (rest, end) = executions::list(&deps, p.id, 2, cursor).await.unwrap();
    assert_eq!(rest.iter().map(|e| e.id).collect::<Vec<_>>(), vec![ids[0]]);
    assert_eq!(end, None);
}

#[tokio::test]
async fn the_event_schema_is_checked_before_the_first_step_even_without_a_validate_step() {
    let (registry, a, _) = counting();
    let (deps, _) = setup(registry);
    let p = created(
        &deps,
        spec(json!({
            "name": "no-validate-step",
            "event_schema": {"type": "object", "required": ["order_id"]},
            "steps": [{"name": "a", "kind": "task", "task_name": "count_a"}]
        })),
    )
    .await;
    let (event_id, execution_id) = ingest(&deps, &p, json!({"qty": 1})).await;
    drain(&deps).await;
    let e = executions::get(&deps, execution_id).await.unwrap();
    assert_eq!(e.status, ExecutionStatus::Error, "{e:?}");
    assert_eq!(
        a.load(Ordering::SeqCst),
        0,
        "no step runs on a rejected input"
    );
    assert_eq!(e.steps[0].status, StepStatus::Pending);
    let violations = e.validation_errors.clone().unwrap();
    assert_eq!(violations.len(), 1);
    assert!(violations[0].message.contains("order_id"), "{violations:?}");
    let event = events::get(&deps, event_id).await.unwrap();
    assert_eq!(event.status, EventStatus::Failed);
    assert_eq!(event.validation_errors, Some(violations));
    // A valid input runs as usual.
    let (_, ok) = ingest(&deps, &p, json!({"order_id": "A-9"})).await;
    drain(&deps).await;
    let ok = executions::get(&deps, ok).await.unwrap();
    assert_eq!(ok.status, ExecutionStatus::Success, "{ok:?}");
}

#[tokio::test]
async fn a_step_that_keeps_losing_its_worker_fails_instead_of_resuming_forever() {
    use crate::domain::execution::MAX_LOST_WORKERS;
    let mut registry = Registry::standard();
    // A step that never returns: its worker is lost while it runs.
    registry.register("hang", |_| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(json!(null))
    });
    let (deps, clock) = setup(registry);
    let p = created(
        &deps,
        spec(
            json!({"name": "hangs", "steps": [{"name": "h", "kind": "task", "task_name": "hang"}]}),
        ),
    )
    .await;
    let e = executions::run_pipeline(&deps, &p, TriggerType::Manual, None, json!({}))
        .await
        .unwrap();
    for lost in 1..=MAX_LOST_WORKERS {
        // A worker takes the message and dies mid-step.
        let message = super::tests::receive_all(&deps).await.remove(0);
        let worker = tokio::spawn({
            let deps = deps.clone();
            async move { process(&deps, &message.body).await }
        });
        while executions::get(&deps, e.id)
            .await
            .unwrap()
            .lease_until
            .is_none()
        {
            tokio::task::yield_now().await;
        }
        worker.abort();
        // Its lease runs out and the scheduler finds it.
        clock.advance(chrono::Duration::minutes(2));
        assert_eq!(tick(&deps).await.unwrap().executions, 1);
        let now = executions::get(&deps, e.id).await.unwrap();
        assert_eq!(now.steps[0].lost_workers, lost);
        match lost < MAX_LOST_WORKERS {
            true => assert_eq!(
                now.status,
                ExecutionStatus::Running,
                "resumed after loss {lost}"
            ),
            false => {
                assert_eq!(now.status, ExecutionStatus::Error);
                assert_eq!(now.steps[0].status, StepStatus::Error);
                assert!(now.error.unwrap().contains("lost 3 times"));
                assert!(
                    super::tests::receive_all(&deps).await.is_empty(),
                    "not re-sent"
                );
            }
        }
    }
    let stats = pipelines::stats(&deps, p.id).await.unwrap();
    assert_eq!(stats.executions_error, 1, "{stats:?}");
}

#[tokio::test]
async fn a_run_keeps_its_caller_s_trace_for_its_message_and_the_tasks_it_enqueues() {
    const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (deps, _) = setup(Registry::standard());
    let p = created(
        &deps,
        spec(json!({"name": "p", "steps": [
            {"name": "out", "kind": "enqueue", "task_name": "echo", "queue_name": "traced"}
        ]})),
    )
    .await;
    let trace = crate::trace::TraceContext::parse(CALLER);
    let run = executions::run_pipeline(&deps, &p, TriggerType::Manual, None, json!({}));
    let e = crate::trace::scope(trace, run).await.unwrap();

    let stored = executions::get(&deps, e.id).await.unwrap();
    assert_eq!(stored.traceparent.as_deref(), Some(CALLER));
    let messages = super::tests::receive_all(&deps).await;
    assert_eq!(
        messages[0]
            .attributes
            .get("traceparent")
            .map(String::as_str),
        Some(CALLER)
    );
    // Run outside any request: the enqueued task takes the execution's trace.
    for m in messages {
        process(&deps, &m.body).await.unwrap();
    }
    let done = executions::get(&deps, e.id).await.unwrap();
    let ids = done.output.unwrap()["task_ids"].as_array().unwrap().clone();
    let task_id = ids[0].as_str().unwrap().parse().unwrap();
    let task = deps.tasks().get(task_id).await.unwrap().unwrap();
    assert_eq!(task.traceparent.as_deref(), Some(CALLER));
    let task_message = super::tests::receive_all(&deps).await;
    assert_eq!(
        task_message[0]
            .attributes
            .get("traceparent")
            .map(String::as_str),
        Some(CALLER)
    );

    // Without a caller's trace there is none.
    let untraced = executions::run_pipeline(&deps, &p, TriggerType::Manual, None, json!({}))
        .await
        .unwrap();
    let stored = executions::get(&deps, untraced.id).await.unwrap();
    assert_eq!(stored.traceparent, None);
    let messages = super::tests::receive_all(&deps).await;
    assert!(
        messages[0].attributes.is_empty(),
        "{:?}",
        messages[0].attributes
    );
}

/// Transforms and schema checks act only on the execution, so each is
/// checkpointed with the step after it: a 5-step run writes the execution
/// three times (claim, after the task step, at the end), not six.
#[tokio::test]
async fn steps_without_side_effects_are_checkpointed_with_the_next_step() {
    let (registry, a, _) = counting();
    let (memory, _) = setup(registry);
    let writes = Arc::new(AtomicUsize::new(0));
    let counted = writes.clone();
    let deps = Deps {
        store: InterceptStore::new(memory.store.clone(), move |ops: &[WriteOp]| {
            if ops
                .iter()
                .any(|op| crate::table::executions::is_execution(op.key()))
            {
                counted.fetch_add(1, Ordering::SeqCst);
            }
            Intercepted::PassOn
        }),
        ..memory
    };
    let p = created(
        &deps,
        spec(json!({"name": "pure", "steps": [
            {"name": "check", "kind": "validate", "schema": {"type": "object", "required": ["n"]}},
            {"name": "double", "kind": "transform", "expression": "{n: event.n, twice: [event.n, event.n]}"},
            {"name": "a", "kind": "task", "task_name": "count_a"},
            {"name": "both", "kind": "transform", "expression": "[steps.double.twice, steps.a]"},
            {"name": "last", "kind": "transform", "expression": "steps.both"}
        ]})),
    )
    .await;
    let e = executions::run_pipeline(&deps, &p, TriggerType::Manual, None, json!({"n": 2}))
        .await
        .unwrap();
    let started = writes.load(Ordering::SeqCst);
    drain(&deps).await;
    let done = executions::get(&deps, e.id).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Success, "{done:?}");
    assert_eq!(done.output, Some(json!([[2, 2], 1])));
    assert!(done.steps.iter().all(|s| s.status == StepStatus::Success));
    assert_eq!(a.load(Ordering::SeqCst), 1);
    assert_eq!(
        writes.load(Ordering::SeqCst) - started,
        3,
        "execution writes"
    );
}

/// An output too large for the execution's item fails its step, and the
/// run ends there; where steps without side effects wait for the next
/// checkpoint, the failure goes on the first of them, saying which steps'
/// outputs could not be kept.
#[tokio::test]
async fn an_output_that_cannot_be_kept_fails_its_step_and_ends_the_run() {
    let big = json!({"blob": "x".repeat(120 * 1024)});
    let (_, alone) = run_to_end(
        json!([{"name": "four", "kind": "transform", "expression": "[event, event, event, event]"}]),
        big.clone(),
    )
    .await;
    assert_eq!(alone.status, ExecutionStatus::Error, "{alone:?}");
    let error = alone.steps[0].error.as_deref().unwrap_or_default();
    assert!(
        error.starts_with("the step's output cannot be kept"),
        "{error}"
    );

    let (_, together) = run_to_end(
        json!([
            {"name": "copy", "kind": "transform", "expression": "event"},
            {"name": "two", "kind": "transform", "expression": "[steps.copy, steps.copy]"}
        ]),
        big,
    )
    .await;
    assert_eq!(together.status, ExecutionStatus::Error, "{together:?}");
    assert_eq!(together.steps[0].status, StepStatus::Error);
    assert_eq!(together.steps[1].status, StepStatus::Pending);
    let error = together.steps[0].error.as_deref().unwrap_or_default();
    assert!(error.contains("up to `two` cannot be kept"), "{error}");
    assert_eq!(together.steps[0].output, None);
}
