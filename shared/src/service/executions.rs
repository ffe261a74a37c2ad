//! Executions: start one, run it from the task queue step by step, and
//! resume it when its worker is lost.
//!
//! A worker claims a running execution by compare-and-set with a lease long
//! enough for its next step, and checkpoints each finished step (claiming
//! the next one in the same write). The execution's timer is its lease end,
//! or, before any claim, when its message counts as lost; the scheduler
//! re-sends the message of a free execution whose timer fired, so a crash
//! between steps resumes at the first unfinished step. Where executions and
//! events live: [`crate::table::executions`], [`crate::table::events`].

use std::time::Duration;
use tracing::Instrument;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::dispatch;
use super::enqueue::{Enqueued, NewTask, enqueue};
use super::identity::secrets::Resolving;
use super::pipelines;
use super::schemas::{self, SchemaId};
use super::webhook::signed_headers;
use super::{Deps, ServiceError, claim_token, found, on_cpu, write_while_unavailable};
use crate::domain::execution::{Execution, ExecutionStatus, StepOutcome, StepStatus};
use crate::domain::expression::Expression;
use crate::domain::pipeline::{Pipeline, SchemaViolation, Step, StepKind};
use crate::handlers::TaskContext;
use crate::json::MAX_OUTPUT_DEPTH;
use crate::messages::TaskMessage;
use crate::ports::{HttpError, HttpRequest, Item, Key, OutgoingMessage, StoreError, WriteOp};
use crate::table::{events, executions as table};
use crate::trace::{Span, SpanKind};

/// The most tasks one execution may enqueue, all its `enqueue` steps
/// together: a pipeline of 50 steps cannot turn one hook call into 50,000
/// tasks.
pub const MAX_FAN_OUT: usize = 1000;
/// The longest pause between two attempts of a step.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(10);
/// Compiled JMESPath expressions of steps, by their text (at most 512; an
/// expression means the same in every pipeline, so the text is the key).
static EXPRESSIONS: super::compiled::Compiled<String, Expression> =
    super::compiled::Compiled::new(512);

/// The execution with this id.
pub async fn get(deps: &Deps, id: Uuid) -> Result<Execution, ServiceError> {
    let now = deps.now().timestamp();
    found(
        table::get(&*deps.store, id, now).await?,
        "no such execution",
    )
}

/// A page of a pipeline's executions, newest first, and the next cursor.
pub async fn list(
    deps: &Deps,
    pipeline: Uuid,
    limit: usize,
    before: Option<String>,
) -> Result<(Vec<Execution>, Option<String>), ServiceError> {
    let now = deps.now().timestamp();
    let page = table::list(&*deps.store, pipeline, limit, before.clone(), now).await?;
    // Executions outlive their pipeline; an unknown pipeline with none is a 404.
    if page.0.is_empty() && before.is_none() {
        pipelines::get(deps, pipeline, None).await?;
    }
    Ok(page)
}

fn redispatch_window(deps: &Deps) -> chrono::Duration {
    chrono::Duration::from_std(deps.config.redispatch_after).unwrap_or_default()
}

fn message(e: &Execution) -> OutgoingMessage {
    let message = OutgoingMessage::new(TaskMessage::Execution { execution: e.id }.encode());
    crate::trace::tag(message, e.traceparent.as_deref())
}

/// Store a new execution (with `extra` writes in the same transaction) and
/// queue it; 429 `quota_exceeded` when its owner's runs of the month are
/// used up. Once written, its message is sent even if the caller goes
/// away; a send that fails brings its timer forward (see [`dispatch`]).
pub async fn start(deps: &Deps, e: &Execution, extra: Vec<WriteOp>) -> Result<(), ServiceError> {
    // Counted first: past the owner's monthly runs, nothing is written.
    super::identity::limits::count_run(deps, e.user_id).await?;
    let (deps, mut e) = (deps.clone(), e.clone());
    e.traceparent = e.traceparent.or_else(crate::trace::current_header);
    dispatch::detached(async move {
        let now = deps.now();
        let retention = deps.config.execution_retention;
        let mut ops = vec![table::create(
            &e,
            now + redispatch_window(&deps),
            retention,
            now,
        )];
        ops.extend(extra);
        if let Err(err) = deps.store.transact(ops).await {
            let run_message = || Some(message(&e));
            return Err(
                dispatch::send_if_maybe_written(&deps, err, run_message, "execution")
                    .await
                    .into(),
            );
        }
        dispatch::send_or_recheck(&deps, vec![message(&e)], |soon| {
            // Same version: the message, if it did go, still claims it.
            vec![vec![table::replace(&e, &e, Some(soon), retention)]]
        })
        .await;
        Ok(())
    })
    .await
}

/// A repeated trigger found the run it started before. The call that
/// started it may have stored it and failed before sending its message
/// (its answer lost), so if no worker has claimed it yet, send it again
/// now rather than leave it to its timer; a message that was not lost
/// makes this one a duplicate, whose claim the first one's refuses. Best
/// effort: the timer still covers a failure here.
pub async fn send_again_if_unclaimed(deps: &Deps, id: Uuid) {
    let now = deps.now();
    let unclaimed = match table::get(&*deps.store, id, now.timestamp()).await {
        Ok(Some(e))
            if e.is_free(now)
                && e.lease_until.is_none()
                && e.steps.iter().all(|s| s.attempts == 0) =>
        {
            e
        }
        Ok(_) => return,
        Err(err) => {
            tracing::warn!(execution_id = %id, error = %err, "could not read a repeated trigger's run; its timer re-sends it");
            return;
        }
    };
    if let Err(err) = resend(deps, &unclaimed, now).await {
        tracing::warn!(execution_id = %id, error = %err, "could not send a repeated trigger's run again; its timer re-sends it");
    }
}

/// Start a run of `pipeline` on `input`.
pub async fn run_pipeline(
    deps: &Deps,
    pipeline: &Pipeline,
    trigger_type: crate::domain::execution::TriggerType,
    trigger_id: Option<String>,
    input: Value,
) -> Result<Execution, ServiceError> {
    let e = Execution::new(
        crate::table::executions::new_id(pipeline.id),
        pipeline,
        trigger_type,
        trigger_id,
        input,
        deps.now(),
    );
    start(deps, &e, Vec::new()).await?;
    Ok(e)
}

/// Replace `prev` by `next` (compare-and-set on its version) with `extra`.
async fn save(
    deps: &Deps,
    prev: &Execution,
    next: &Execution,
    timer: Option<DateTime<Utc>>,
    extra: Vec<WriteOp>,
) -> Result<(), StoreError> {
    let retention = deps.config.execution_retention;
    let mut ops = vec![table::replace(prev, next, timer, retention)];
    ops.extend(extra);
    deps.store.transact(ops).await
}

/// How long a worker may hold the execution to run its steps from `index`
/// with all their attempts and pauses, up to its next checkpoint: through
/// the steps without side effects there (checkpointed with the step after
/// them) and the first step with side effects. Past that the run is
/// presumed lost.
fn lease_end(deps: &Deps, steps: &[Step], index: usize, now: DateTime<Utc>) -> DateTime<Utc> {
    let run = steps[index..]
        .iter()
        .position(|s| !s.kind.is_pure())
        .map_or(steps.len(), |p| index + p + 1);
    steps[index..run].iter().fold(now, |end, s| {
        end + lease_budget(deps, s.timeout(), s.retries)
    })
}

fn lease_budget(deps: &Deps, timeout: Duration, retries: u32) -> chrono::Duration {
    let budget = timeout * (retries + 1) + MAX_RETRY_PAUSE * retries + deps.config.lease_grace;
    chrono::Duration::from_std(budget).unwrap_or_default()
}

/// The writes that go with an execution's final checkpoint: the pipeline's
/// counters (unless the change stream's consumer keeps them: see
/// [`super::counts`]) and, for an ingested event, the event's outcome.
async fn finishing_writes(deps: &Deps, e: &Execution) -> Result<Vec<WriteOp>, ServiceError> {
    let mut ops = Vec::new();
    if !deps.config.counts_from_stream {
        ops.extend(crate::table::pipelines::finished_counters(e));
    }
    if let Some(id) = e.event_id {
        let now = deps.now();
        let event = events::get(&*deps.store, id, now.timestamp()).await?;
        if let Some(event) = event {
            let retention = deps.config.execution_retention;
            ops.push(events::finish(&event.finished(e, now), retention));
        }
    }
    Ok(ops)
}

/// Write `next` over `prev`, the last write carrying the finishing writes.
async fn checkpoint(deps: &Deps, prev: &Execution, next: &Execution) -> Result<(), ServiceError> {
    let extra = match next.status {
        ExecutionStatus::Running => Vec::new(),
        _ => finishing_writes(deps, next).await?,
    };
    // A finished step is worth its checkpoint: while the store is
    // unavailable (a full disk) the worker holds the execution, until its
    // lease ends, rather than leave the step to run again.
    let until = prev.lease_until.unwrap_or_else(|| deps.now());
    let now = deps.now().timestamp();
    write_while_unavailable(
        deps,
        until,
        (next.id, next),
        || save(deps, prev, next, next.lease_until, extra.clone()),
        || table::get(&*deps.store, next.id, now),
    )
    .await?;
    // Counted once written: a checkpoint that lost a race counts nothing.
    for (before, after) in prev.steps.iter().zip(&next.steps) {
        if before.status == StepStatus::Pending && after.status != StepStatus::Pending {
            deps.metrics.step_finished(after.status.as_str());
        }
    }
    if prev.status == ExecutionStatus::Running && next.status != ExecutionStatus::Running {
        deps.metrics.execution_finished(next.status.as_str());
    }
    Ok(())
}

/// Run the execution from its first unfinished step to its end: what the
/// worker does with an execution message. A duplicate message, or one for
/// an execution another worker holds, is a no-op.
pub async fn run(deps: &Deps, id: Uuid) -> Result<(), ServiceError> {
    let current = match get(deps, id).await {
        Err(ServiceError::NotFound(_)) => return Ok(()),
        other => other?,
    };
    let trace = crate::trace::of(current.traceparent.as_deref());
    let (pipeline, version) = (current.pipeline_id, current.pipeline_version);
    let outcome = move |done: &Result<(), ServiceError>, span: &mut Span| {
        span.set("warren.execution_id", id);
        span.set("warren.pipeline_id", pipeline);
        span.set_int("warren.pipeline_version", version);
        if let Err(e) = done {
            span.fail(e.to_string());
        }
    };
    let run = run_from(deps, current);
    crate::trace::traced("execution", SpanKind::Consumer, trace, run, outcome).await
}

/// [`run`] once the execution is read.
async fn run_from(deps: &Deps, current: Execution) -> Result<(), ServiceError> {
    let id = current.id;
    let now = deps.now();
    let Some(first) = current.next_step() else {
        return Ok(());
    };
    if !current.is_free(now) {
        tracing::debug!(execution_id = %id, "execution held by another worker; message dropped");
        return Ok(());
    }
    let pipeline =
        match pipelines::get(deps, current.pipeline_id, Some(current.pipeline_version)).await {
            Ok(p) => p,
            Err(ServiceError::NotFound(_)) => {
                let gone = StepOutcome::Error {
                    message: "the pipeline version was deleted".into(),
                    violations: Vec::new(),
                };
                let next = current.record(first, gone, 0, now, now);
                return taken_over_is_fine(checkpoint(deps, &current, &next).await, id);
            }
            Err(e) => return Err(e),
        };
    // The event_schema is the pipeline's input contract: a run checks it
    // before its first step, unless a `validate` step checks it where the
    // pipeline's author placed it.
    let validated_by_a_step = pipeline
        .spec
        .steps
        .iter()
        .any(|s| matches!(s.kind, StepKind::Validate { schema: None }));
    if let (0, false, Some(schema)) = (first, validated_by_a_step, &pipeline.spec.event_schema) {
        let found = schemas::violations(
            deps,
            SchemaId::of(&pipeline, None),
            schema,
            current.input.clone(),
        )
        .await;
        if !found.is_empty() {
            let next = current.rejected(found, now);
            return taken_over_is_fine(checkpoint(deps, &current, &next).await, id);
        }
    }
    let steps = &pipeline.spec.steps;
    let claim = claim_token(deps);
    let held = current.claimed(lease_end(deps, steps, first, now), claim);
    if let Err(e) = save(deps, &current, &held, held.lease_until, Vec::new()).await {
        return taken_over_is_fine(Err(e.into()), id);
    }
    // What the store holds, and the steps run since that are not written
    // yet (steps without side effects, checkpointed with the next step).
    let mut stored = held;
    let mut ahead: Option<Execution> = None;
    while let Some(index) = ahead.as_ref().unwrap_or(&stored).next_step() {
        let held = ahead.as_ref().unwrap_or(&stored);
        let started = deps.now();
        let (outcome, attempts) = run_step(deps, &pipeline, held, index).await;
        let now = deps.now();
        let mut next = held.record(index, outcome, attempts, started, now);
        if steps[index].kind.is_pure()
            && next.steps[index].status == StepStatus::Success
            && next.next_step().is_some()
        {
            // Run again after a crash it would change nothing: one write
            // fewer, under the lease taken for the whole run.
            (next.lease_until, next.claim) = (stored.lease_until, stored.claim);
            ahead = Some(next);
            continue;
        }
        if let Some(following) = next.next_step() {
            next = next.claimed(lease_end(deps, steps, following, now), claim);
        }
        let saved = match checkpoint(deps, &stored, &next).await {
            // The output cannot be kept (too large or too deep for an item):
            // the step fails without it, rather than run again forever.
            // The failure goes on the first step not written yet, and the
            // steps run since are dropped with their outputs.
            Err(ServiceError::Store(crate::ports::StoreError::Invalid(why))) => {
                let first = stored.next_step().unwrap_or(index);
                let message = if first == index {
                    format!("the step's output cannot be kept: {why}")
                } else {
                    format!(
                        "the outputs of this step and the steps after it up to `{}` cannot be kept: {why}",
                        steps[index].name
                    )
                };
                let failed = StepOutcome::Error {
                    message,
                    violations: Vec::new(),
                };
                let (attempts, started) = match held.steps[first].started_at {
                    Some(at) if first < index => (held.steps[first].attempts, at),
                    _ => (attempts, started),
                };
                next = stored.record(first, failed, attempts, started, now);
                checkpoint(deps, &stored, &next).await
            }
            other => other,
        };
        if let Err(e) = saved {
            return taken_over_is_fine(Err(e), id);
        }
        stored = next;
        ahead = None;
    }
    Ok(())
}

/// A lost compare-and-set means another worker took the run over (after our
/// lease ran out): its outcome wins, ours is dropped.
fn taken_over_is_fine(r: Result<(), ServiceError>, id: Uuid) -> Result<(), ServiceError> {
    match r {
        Err(e) if e.is_conflict() => {
            tracing::info!(execution_id = %id, "execution was taken over; this run stops");
            Ok(())
        }
        other => other,
    }
}

/// Why one attempt of a step failed.
enum Failure {
    Retry(String),
    Fatal(String),
    Invalid(Vec<SchemaViolation>),
    Timeout(String),
}

impl Failure {
    fn retryable(&self) -> bool {
        matches!(self, Failure::Retry(_) | Failure::Timeout(_))
    }

    fn outcome(self) -> StepOutcome {
        let error = |message| StepOutcome::Error {
            message,
            violations: Vec::new(),
        };
        match self {
            Failure::Retry(m) | Failure::Fatal(m) => error(m),
            Failure::Timeout(m) => StepOutcome::Timeout(m),
            Failure::Invalid(v) => StepOutcome::Error {
                message: format!("the input breaks the schema ({} violation(s))", v.len()),
                violations: v,
            },
        }
    }
}

/// Run step `index` with its retries, each attempt under the step's
/// timeout; how it ended and after how many attempts.
async fn run_step(
    deps: &Deps,
    pipeline: &Pipeline,
    e: &Execution,
    index: usize,
) -> (StepOutcome, u32) {
    let step = &pipeline.spec.steps[index];
    let context = e.context();
    let fan_out_left = MAX_FAN_OUT.saturating_sub(enqueued_by_earlier_steps(e));
    let mut attempt = 0;
    loop {
        attempt += 1;
        let job = Attempt {
            deps: deps.clone(),
            step: step.clone(),
            event_schema: pipeline.spec.event_schema.clone(),
            schema_id: SchemaId::of(pipeline, Some(index)),
            fan_out_left,
            context: context.clone(),
            execution: e.id,
            owner: e.user_id,
            attempt,
        };
        // On its own tokio task, so a panicking handler fails its attempt
        // instead of taking the worker down.
        let mut run = tokio::spawn(crate::trace::carry(job.run()).in_current_span());
        let failure = match tokio::time::timeout(step.timeout(), &mut run).await {
            Ok(Ok(Ok(output))) if crate::json::deeper_than(&output, MAX_OUTPUT_DEPTH) => {
                Failure::Fatal(format!(
                    "the step's output nests deeper than {MAX_OUTPUT_DEPTH} levels"
                ))
            }
            Ok(Ok(Ok(output))) => return (StepOutcome::Success(output), attempt),
            Ok(Ok(Err(f))) => f,
            Ok(Err(crash)) => Failure::Retry(format!("step crashed: {crash}")),
            Err(_) => {
                run.abort();
                Failure::Timeout(format!("timed out after {} s", step.timeout().as_secs()))
            }
        };
        if !failure.retryable() || attempt > step.retries {
            return (failure.outcome(), attempt);
        }
        let pause = Duration::from_millis(200 * 2u64.pow(attempt.min(10) - 1)).min(MAX_RETRY_PAUSE);
        tokio::time::sleep(pause).await;
    }
}

/// Tasks the finished `enqueue` steps of `e` enqueued (their outputs'
/// `task_ids`).
fn enqueued_by_earlier_steps(e: &Execution) -> usize {
    e.steps
        .iter()
        .filter(|s| s.kind == "enqueue")
        .filter_map(|s| s.output.as_ref()?.get("task_ids")?.as_array().map(Vec::len))
        .sum()
}

/// One attempt of one step, owned so it can run on its own tokio task.
struct Attempt {
    deps: Deps,
    step: Step,
    event_schema: Option<Value>,
    /// The step's own schema, or the event schema when it names none.
    schema_id: SchemaId,
    /// Tasks this execution may still enqueue.
    fan_out_left: usize,
    context: Value,
    execution: Uuid,
    /// The pipeline's owner: whose secrets its calls may use, whose tasks
    /// it enqueues.
    owner: Option<Uuid>,
    attempt: u32,
}

impl Attempt {
    async fn run(self) -> Result<Value, Failure> {
        match &self.step.kind {
            StepKind::Validate { schema } => {
                let (id, schema) = match (schema, &self.event_schema) {
                    (Some(own), _) => (self.schema_id, own),
                    (None, Some(event_schema)) => (
                        SchemaId {
                            step: None,
                            ..self.schema_id
                        },
                        event_schema,
                    ),
                    (None, None) => return Ok(json!({ "valid": true })),
                };
                let found =
                    schemas::violations(&self.deps, id, schema, self.context["event"].clone())
                        .await;
                match found.is_empty() {
                    true => Ok(json!({ "valid": true })),
                    false => Err(Failure::Invalid(found)),
                }
            }
            StepKind::Task {
                task_name,
                args,
                kwargs,
            } => {
                let mut kwargs = kwargs.clone();
                kwargs
                    .entry("context")
                    .or_insert_with(|| self.context.clone());
                let ctx = TaskContext {
                    task_id: None,
                    task_name: task_name.clone(),
                    args: args.clone(),
                    kwargs,
                    attempt: self.attempt,
                    http: Resolving::client(&self.deps, self.owner),
                };
                self.deps
                    .handlers
                    .run(ctx)
                    .await
                    .map_err(|f| match f.retryable {
                        true => Failure::Retry(f.message),
                        false => Failure::Fatal(f.message),
                    })
            }
            StepKind::Http {
                url,
                method,
                headers,
            } => self.http(url, method, headers).await,
            StepKind::Transform { expression } => self.evaluate(expression).await,
            StepKind::Enqueue {
                task_name,
                queue_name,
                items,
            } => self.fan_out(task_name, queue_name, items.as_deref()).await,
        }
    }

    /// Evaluate a JMESPath expression (compiled once per process, see
    /// [`EXPRESSIONS`]) over the context on a blocking thread:
    /// bounded work, but CPU the async workers should not spend. Its
    /// failures are the expression's own, so never retried.
    async fn evaluate(&self, expression: &str) -> Result<Value, Failure> {
        let (expression, context) = (expression.to_string(), self.context.clone());
        on_cpu(&self.deps, move || {
            EXPRESSIONS
                .get_or_compile(expression.clone(), || Expression::compile(&expression))
                .and_then(|compiled| compiled.evaluate(&context))
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|crash| Failure::Fatal(format!("expression crashed: {crash}")))?
        .map_err(Failure::Fatal)
    }

    /// Send the context, signed like a webhook but with the step secret
    /// (`webhook-id` is stable across attempts so the receiver can drop
    /// duplicates).
    async fn http(
        &self,
        url: &str,
        method: &str,
        headers: &Map<String, Value>,
    ) -> Result<Value, Failure> {
        let body = self.context.to_string();
        let id = format!("msg_{}_{}", self.execution, self.step.name);
        let signed = signed_headers(
            &self.deps.config.step_secret,
            &id,
            self.deps.now().timestamp(),
            &body,
        )
        .ok_or_else(|| Failure::Retry("this process has no step secret".into()))?;
        // The step's own headers never replace the signature's.
        let mut all: Vec<(String, String)> = headers
            .iter()
            .filter(|(k, _)| !signed.iter().any(|(s, _)| s.eq_ignore_ascii_case(k)))
            .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
            .collect();
        all.extend(signed);
        let request = HttpRequest {
            method: method.to_string(),
            url: url.to_string(),
            headers: all,
            body: body.into_bytes(),
            timeout: self.step.timeout(),
        };
        let http = Resolving::client(&self.deps, self.owner);
        let response = http.send(request).await.map_err(|e| match e {
            HttpError::Blocked(_) | HttpError::Invalid(_) => Failure::Fatal(e.to_string()),
            HttpError::Timeout | HttpError::Transport(_) => Failure::Retry(e.to_string()),
        })?;
        let text = String::from_utf8_lossy(&response.body).into_owned();
        let answer = serde_json::from_str(&text).unwrap_or(Value::String(text));
        match response.status {
            200..=299 => Ok(json!({ "status": response.status, "body": answer })),
            429 | 500..=599 => Err(Failure::Retry(format!("answered HTTP {}", response.status))),
            s => Err(Failure::Fatal(format!("answered HTTP {s}"))),
        }
    }

    /// One task per element of `items` (or one with the context). Each has
    /// an idempotency key of this execution and step, so a step re-run
    /// after a crash enqueues nothing twice.
    async fn fan_out(
        &self,
        task_name: &str,
        queue: &str,
        items: Option<&str>,
    ) -> Result<Value, Failure> {
        if self.fan_out_left == 0 {
            return Err(Failure::Fatal(format!(
                "this execution has enqueued {MAX_FAN_OUT} tasks, the most one may"
            )));
        }
        let kwargs: Vec<Map<String, Value>> = match items {
            None => vec![Map::from_iter([(
                "context".to_string(),
                self.context.clone(),
            )])],
            Some(expression) => match self.evaluate(expression).await? {
                Value::Array(items) if items.len() <= self.fan_out_left => items
                    .into_iter()
                    .map(|item| Map::from_iter([("item".to_string(), item)]))
                    .collect(),
                Value::Array(items) => {
                    return Err(Failure::Fatal(format!(
                        "`items` yields {} elements; this execution may enqueue {} more (at most {MAX_FAN_OUT} in all)",
                        items.len(),
                        self.fan_out_left
                    )));
                }
                other => {
                    return Err(Failure::Fatal(format!(
                        "`items` must yield an array, not {other}"
                    )));
                }
            },
        };
        let mut ids = Vec::with_capacity(kwargs.len());
        for (i, kwargs) in kwargs.into_iter().enumerate() {
            let new = NewTask {
                kwargs,
                idempotency_key: Some(format!("exec:{}:{}:{i}", self.execution, self.step.name)),
                owner: self.owner,
                ..NewTask::named(task_name, queue)
            };
            match enqueue(&self.deps, new).await {
                Ok(Enqueued::Created(id) | Enqueued::Existing(id)) => {
                    ids.push(Value::from(id.to_string()))
                }
                Ok(Enqueued::Ephemeral) => {}
                Err(
                    e
                    @ (ServiceError::Invalid { .. } | ServiceError::Store(StoreError::Invalid(_))),
                ) => return Err(Failure::Fatal(e.to_string())),
                Err(e) => return Err(Failure::Retry(e.to_string())),
            }
        }
        Ok(json!({ "task_ids": ids }))
    }
}

/// The scheduler found the execution's timer due: if nobody holds it (its
/// message was lost, or its worker's lease ran out), re-send its message
/// and set the next timer. True when it was re-sent.
pub async fn resume(deps: &Deps, item: &Item, now: DateTime<Utc>) -> Result<bool, ServiceError> {
    let Some(e) = table::from_item(item) else {
        return Ok(false);
    };
    if e.next_step().is_none() || !e.is_free(now) {
        return Ok(false);
    }
    if e.lease_until.is_some() {
        tracing::warn!(execution_id = %e.id, "execution lost its worker (lease ran out); resuming it");
    }
    resend(deps, &e, now).await.map(|_| true)
}

/// Release the execution (whoever held it) and send its message again;
/// a step that has lost too many workers fails instead (see
/// [`Execution::released`]).
async fn resend(deps: &Deps, e: &Execution, now: DateTime<Utc>) -> Result<(), ServiceError> {
    let next = e.released(now);
    if next.status != ExecutionStatus::Running {
        tracing::warn!(execution_id = %e.id, error = ?next.error, "execution failed: its step keeps losing its worker");
        return checkpoint(deps, e, &next).await;
    }
    save(
        deps,
        e,
        &next,
        Some(now + redispatch_window(deps)),
        Vec::new(),
    )
    .await?;
    deps.queue
        .send_batch(&deps.config.task_queue, vec![message(e)])
        .await?;
    Ok(())
}

/// How far ahead of now a running execution's timer can lie: one lease
/// (the longest a step may take, with its retries) or one re-dispatch
/// window. Start-up recovery looks this far ahead.
pub(crate) fn furthest_timer(deps: &Deps) -> chrono::Duration {
    use crate::domain::pipeline::{MAX_STEP_RETRIES, MAX_STEP_TIMEOUT_SECONDS};
    let longest_lease = lease_budget(
        deps,
        Duration::from_secs(MAX_STEP_TIMEOUT_SECONDS),
        MAX_STEP_RETRIES,
    );
    longest_lease.max(redispatch_window(deps))
}

/// At the start of a runtime whose queue does not outlive the process and
/// which holds the store exclusively (the embedded one): the execution
/// whose timer entry is `key` lost its message or its worker if it is
/// still running, so re-send it now instead of when its timer fires.
/// Whether it was re-sent; one that cannot be is logged and left to the
/// scheduler (its timer is still due), never a reason not to start.
pub(crate) async fn resume_at_start(deps: &Deps, key: &Key, now: DateTime<Utc>) -> bool {
    let e = match deps.store.get(key).await {
        Ok(item) => item.as_ref().and_then(table::from_item),
        Err(err) => {
            tracing::error!(pk = %key.pk, error = %err, "could not read an execution at start; the scheduler will resume it");
            return false;
        }
    };
    let Some(e) = e.filter(|e| e.next_step().is_some()) else {
        return false;
    };
    match resend(deps, &e, now).await {
        Ok(()) => true,
        Err(err) => {
            tracing::error!(execution_id = %e.id, error = %err, "could not resume an execution at start; the scheduler will");
            false
        }
    }
}
