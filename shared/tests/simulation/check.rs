//! The invariants, read straight from the store (past the gates).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use uuid::Uuid;
use warren::domain::execution::{Execution, ExecutionStatus, StepStatus};
use warren::domain::{Task, TaskStatus, WebhookStatus};
use warren::ports::{Index, Item};
use warren::service::{executions, failed, webhook};
use warren::table::tasks::{self, TaskFilter};
use warren::table::timers::timer_of;

use crate::ports::{Version, is_requeue, lives};
use crate::world::{
    Sim, Verdict, breaks_schema, fan_label, label_of, life_label, step_label, verdict,
};

/// When an item's TTL work (expiry, then removal) is due, if it has any:
/// its entry in the expiry index.
pub fn expiry_of(item: &Item) -> Option<DateTime<Utc>> {
    let sk = &item.index_key(Index::Gsi6)?.sk;
    DateTime::from_timestamp_millis(sk.split('#').next()?.parse().ok()?)
}

/// A task's versions, each with the life it belongs to (a requeue starts
/// the next).
fn with_lives(versions: &[Version]) -> Vec<(u32, &Version)> {
    let mut life = 0;
    let mut prev: Option<&Task> = None;
    let mut out = Vec::with_capacity(versions.len());
    for v in versions {
        if let (Some(p), Some(t)) = (prev, v.task.as_ref())
            && is_requeue(p, t)
        {
            life += 1;
        }
        prev = v.task.as_ref().or(prev);
        out.push((life, v));
    }
    out
}

/// The last state a task was written in, and whether it was removed since.
fn last_state(versions: &[Version]) -> Option<(&Task, bool)> {
    let task = versions.iter().rev().find_map(|v| v.task.as_ref())?;
    Some((task, versions.last().is_some_and(|v| v.task.is_none())))
}

/// Whether the state machine (and the services' writes that only refile
/// a task: progress, timers, webhook outcomes) lets `next` follow `prev`.
fn may_follow(prev: &Task, next: &Task) -> bool {
    use TaskStatus::*;
    let same = prev.attempts == next.attempts;
    match (prev.status, next.status) {
        (Pending, Running) => next.attempts == prev.attempts + 1,
        (Failed, Pending) => next.attempts == 0,
        (Pending, Pending | Cancelled | Expired)
        | (Running, Running | Pending | Completed | Failed) => same,
        (a, b) => a == b && a.is_final() && same,
    }
}

/// Every execution of the simulated pipeline.
pub async fn all_executions(sim: &Sim) -> Vec<Execution> {
    executions::list(sim.deps(), sim.pipeline(), 1_000, None)
        .await
        .expect("the store lists the executions")
        .0
}

/// Every task in the store.
pub async fn all_tasks(sim: &Sim) -> Vec<Task> {
    let page = sim
        .deps()
        .tasks()
        .list(&TaskFilter::default(), 1_000)
        .await
        .expect("the store lists its tasks");
    page.tasks
}

fn label(t: &Task) -> u64 {
    label_of(&t.kwargs).unwrap_or(u64::MAX)
}

/// A task that is not finished has a timer: its outbox entry (pending) or
/// its lease (running), so a lost message or a lost worker is noticed.
/// Not where enqueues send first: there the message is the outbox and may
/// hold the lease, and the drain's checks (every task finished, none
/// stuck) are what show that none was lost.
pub async fn pending_have_timers(sim: &mut Sim) {
    let message_holds = sim.deps().config.send_first;
    for t in all_tasks(sim).await {
        if t.status.is_final() || message_holds {
            continue;
        }
        let (_, item) = tasks::stored(sim.store(), t.id)
            .await
            .expect("the store answers")
            .expect("a listed task exists");
        if timer_of(&item).is_none() {
            sim.violation(format!(
                "no timer: task {} (n {}) is {} (attempt {}) with no timer, so nothing would release it if its message is lost",
                t.id,
                label(&t),
                t.status.as_str(),
                t.attempts
            ));
        }
    }
    for e in all_executions(sim).await {
        if e.next_step().is_none() {
            continue;
        }
        let item = sim
            .store()
            .get(&warren::table::executions::key(e.id))
            .await
            .expect("the store answers");
        if item.as_ref().and_then(timer_of).is_none() {
            sim.violation(format!(
                "no timer: execution {} is running with no timer, so nothing would resume it if its message or worker is lost",
                e.id
            ));
        }
    }
}

/// The pipeline's invariants: each published message ran one execution to
/// its end; a task step ended as its handler's answers say and never ran
/// again once checkpointed; the enqueue step enqueued exactly one task.
async fn executions_at_end(sim: &Sim, all: &[Task], found: &mut Vec<String>) {
    let seed = sim.seed();
    let retries = |step: &str| if step == "a" { 2 } else { 1 };
    let execs = all_executions(sim).await;
    let mut per_message: BTreeMap<String, u32> = BTreeMap::new();
    for e in &execs {
        *per_message
            .entry(e.trigger_id.clone().unwrap_or_default())
            .or_default() += 1;
    }
    for id in sim.ledger().published.lock().unwrap().iter() {
        if !per_message.contains_key(id) {
            found.push(format!(
                "lost: message {id} was acknowledged to its publisher but ran no execution"
            ));
        }
    }
    for (id, n) in &per_message {
        if *n > 1 {
            found.push(format!("dispatched twice: message {id} ran {n} executions"));
        }
    }
    let runs = sim.ledger().steps.lock().unwrap().clone();
    for e in &execs {
        let m = e.input["m"].as_u64().unwrap_or(u64::MAX);
        let who = format!("execution {} (m {m})", e.id);
        if e.status == ExecutionStatus::Running {
            found.push(format!("stuck: {who} is still running after the drain"));
            continue;
        }
        let ran = runs.iter().any(|r| r.m == m);
        match (breaks_schema(m), &e.validation_errors) {
            (true, Some(v)) if !v.is_empty() && e.status == ExecutionStatus::Error && !ran => {}
            (false, None) => {}
            (broken, v) => found.push(format!(
                "schema: {who} (input breaks the schema: {broken}) ended {} with validation errors {v:?}, steps run: {ran}",
                e.status.as_str()
            )),
        }
        let step_a = e.steps.iter().find(|s| s.name == "a");
        if let Some(shape) = e.steps.iter().find(|s| s.name == "shape")
            && shape.status == StepStatus::Success
        {
            let want = json!({"m": m, "a": step_a.and_then(|a| a.output.clone())});
            if shape.output.as_ref() != Some(&want) {
                found.push(format!(
                    "transform: {who}'s shape step gave {:?}, not {want}",
                    shape.output
                ));
            }
        }
        let all_done = e.steps.iter().all(|s| s.status == StepStatus::Success);
        if (e.status == ExecutionStatus::Success) != all_done {
            found.push(format!(
                "wrong end: {who} ended {} with steps {:?}",
                e.status.as_str(),
                e.steps
                    .iter()
                    .map(|s| s.status.as_str())
                    .collect::<Vec<_>>()
            ));
        }
        for s in &e.steps {
            if let (Some(done), StepStatus::Success | StepStatus::Error | StepStatus::Timeout) =
                (s.completed_at, s.status)
            {
                for r in runs.iter().filter(|r| r.m == m && r.step == s.name) {
                    if r.at > done {
                        found.push(format!(
                            "ran again: step {} of {who} ran at {} after its checkpoint at {done}",
                            s.name, r.at
                        ));
                    }
                }
            }
            if s.kind == "task" && s.status != StepStatus::Pending {
                let v = verdict(seed, step_label(m, &s.name), s.attempts);
                let error = s.error.as_deref().unwrap_or("");
                let want = json!({"m": m, "step": s.name, "attempt": s.attempts});
                let ok = match s.status {
                    StepStatus::Success => {
                        v == Verdict::Succeed && s.output.as_ref() == Some(&want)
                    }
                    _ if error.starts_with("sim: retry") => {
                        v == Verdict::Retry && s.attempts == retries(&s.name) + 1
                    }
                    _ if error.starts_with("sim: fatal") => v == Verdict::Fatal,
                    _ => true, // lost workers: not the handler's answer
                };
                if !ok {
                    found.push(format!(
                        "wrong step end: step {} of {who} ended {} after {} attempts ({error:?}, output {:?}), but its handler answers {v:?}",
                        s.name,
                        s.status.as_str(),
                        s.attempts,
                        s.output
                    ));
                }
            }
        }
        let fanned = all.iter().filter(|t| label(t) == fan_label(m)).count();
        let fan_ok = e
            .steps
            .iter()
            .any(|s| s.name == "fan" && s.status == StepStatus::Success);
        if fanned > 1 || fan_ok && fanned != 1 {
            found.push(format!(
                "fan-out: {who} enqueued {fanned} tasks (its enqueue step {})",
                if fan_ok {
                    "succeeded"
                } else {
                    "did not succeed"
                }
            ));
        }
    }
}

/// The invariants of a run that has drained.
pub async fn at_end(sim: &mut Sim) {
    let seed = sim.seed();
    let all = all_tasks(sim).await;
    let by_id: BTreeMap<Uuid, &Task> = all.iter().map(|t| (t.id, t)).collect();
    let history = sim.ledger().history.snapshot();
    let mut found = Vec::new();

    // The recorder saw every write: each listed task is as last written.
    for t in &all {
        let last = history.get(&t.id).and_then(|v| v.last());
        if last.and_then(|v| v.task.as_ref()) != Some(t) {
            found.push(format!(
                "history: task {} is stored at version {} ({}), its last recorded write is {:?}",
                t.id,
                t.version,
                t.status.as_str(),
                last.map(|v| v.task.as_ref().map(|t| (t.version, t.status.as_str())))
            ));
        }
    }
    // Every task ever written: its last state, and whether it was removed.
    let finals: BTreeMap<Uuid, (&Task, bool)> = history
        .iter()
        .filter_map(|(id, v)| Some((*id, last_state(v)?)))
        .collect();

    for id in sim.ledger().acked.lock().unwrap().iter() {
        if !finals.contains_key(id) {
            found.push(format!(
                "lost: task {id} was acknowledged to its producer but was never stored"
            ));
        }
    }

    // An attempt runs its handler once, in every life of the task, and
    // only once a write started it.
    let runs = sim.ledger().runs.lock().unwrap().clone();
    for (&(id, life, attempt), at) in &runs {
        if at.len() > 1 {
            found.push(format!(
                "ran twice: attempt {attempt} of life {life} of task {id} ran its handler {} times, at {at:?}",
                at.len()
            ));
        }
        let Some(versions) = history.get(&id) else {
            found.push(format!(
                "ghost: a handler ran for task {id}, which was never stored"
            ));
            continue;
        };
        let started = with_lives(versions).iter().any(|(l, v)| {
            *l == life
                && v.task
                    .as_ref()
                    .is_some_and(|t| t.status == TaskStatus::Running && t.attempts == attempt)
        });
        if !started {
            found.push(format!(
                "unrecorded attempt: task {id} ran attempt {attempt} of life {life}, which no write started"
            ));
        }
    }

    // An idempotency key made one task, however often it was sent.
    let mut keyed: BTreeMap<&str, Vec<Uuid>> = BTreeMap::new();
    for t in &all {
        if let Some(k) = &t.idempotency_key {
            keyed.entry(k).or_default().push(t.id);
        }
    }
    for (k, ids) in keyed.iter().filter(|(_, ids)| ids.len() > 1) {
        found.push(format!(
            "idempotency: key {k} made {} tasks: {ids:?}",
            ids.len()
        ));
    }

    // A cancel that was acknowledged holds: nothing ran the task afterwards
    // or wrote over it.
    let cancelled = sim.ledger().cancelled.lock().unwrap().clone();
    for id in &cancelled {
        if let Some((t, _)) = finals
            .get(id)
            .filter(|(t, _)| t.status != TaskStatus::Cancelled)
        {
            found.push(format!(
                "cancel undone: task {id} was cancelled, then ended {} after {} attempts",
                t.status.as_str(),
                t.attempts
            ));
        }
    }

    // A requeue that was acknowledged landed: each made a life.
    let requeued = sim.ledger().requeued.lock().unwrap().clone();
    let by_group = *sim.ledger().group_requeued.lock().unwrap();
    let landed: BTreeMap<Uuid, u32> = history.iter().map(|(id, v)| (*id, lives(v))).collect();
    for (id, acked) in &requeued {
        let made = landed.get(id).copied().unwrap_or(0);
        if made < *acked {
            found.push(format!(
                "requeue lost: task {id} was requeued {acked} times, its history shows {made} requeues"
            ));
        }
    }
    let acked_total = requeued.values().map(|n| u64::from(*n)).sum::<u64>() + by_group;
    let landed_total = landed.values().map(|n| u64::from(*n)).sum::<u64>();
    if landed_total < acked_total {
        found.push(format!(
            "requeue lost: {acked_total} requeues were acknowledged ({by_group} by group), {landed_total} landed"
        ));
    }

    // Each task ended as its handler's answers in its last life say.
    let mut digest = Vec::new();
    for (id, &(t, removed)) in &finals {
        let n = label(t);
        let life = landed.get(id).copied().unwrap_or(0);
        let max = t.retry_policy().max_attempts();
        let last = runs.get(&(t.id, life, t.attempts)).map_or(0, Vec::len);
        let v = verdict(seed, life_label(n, life), t.attempts);
        let gone = if removed { ", removed at its TTL" } else { "" };
        let who = format!(
            "task {} (n {n}, life {life}, attempts {}/{max}{gone})",
            t.id, t.attempts
        );
        digest.push((n, t.status.as_str(), t.attempts, life, removed));
        let never_started =
            t.attempts == 0 && matches!(t.status, TaskStatus::Cancelled | TaskStatus::Expired);
        if (t.attempts == 0 && !never_started) || t.attempts > max {
            found.push(format!(
                "attempts: {who} records an impossible attempt count"
            ));
        }
        match t.status {
            TaskStatus::Completed => {
                let want = json!({"n": n, "attempt": t.attempts}).to_string();
                if v != Verdict::Succeed || last != 1 || t.result.as_deref() != Some(&want) {
                    found.push(format!(
                        "wrong end: {who} completed with {:?}, but its handler answers {v:?} for that attempt (ran {last} times)",
                        t.result
                    ));
                }
            }
            TaskStatus::Failed => {
                let error = t.error.as_deref().unwrap_or("");
                // The recorded failure is the handler's own, or a lost
                // attempt's (lease or timeout), never a made-up one.
                let handler_said = match v {
                    Verdict::Retry => error.starts_with("sim: retry"),
                    Verdict::Fatal => error.starts_with("sim: fatal"),
                    Verdict::Succeed => false,
                };
                if error.starts_with("sim: ") && !handler_said {
                    found.push(format!(
                        "wrong end: {who} failed with `{error}`, but its handler answers {v:?} for that attempt"
                    ));
                }
                if t.attempts < max && !(v == Verdict::Fatal && handler_said) {
                    found.push(format!(
                        "failed early: {who} failed with `{error}` with attempts left"
                    ));
                }
            }
            // Cancelled or expired while pending: before its first attempt
            // or between two (whose outcomes the checks above hold); the
            // TTL's invariants are `ttl_at_end`'s.
            TaskStatus::Cancelled | TaskStatus::Expired => {}
            other => found.push(format!(
                "unfinished: {who} ended {} after the drain",
                other.as_str()
            )),
        }
        if t.status.is_final() && !removed {
            let item = tasks::stored(sim.store(), t.id)
                .await
                .ok()
                .flatten()
                .map(|(_, item)| item);
            if item.as_ref().and_then(timer_of).is_some() {
                found.push(format!("stale timer: finished {who} keeps a timer"));
            }
        }
    }

    // The failed list (its index) and the error groups name exactly the
    // tasks whose attempts ran out in their last life: failed, and not
    // requeued since (a requeued task is listed again only once it failed
    // again).
    let failed_ids: BTreeSet<Uuid> = finals
        .iter()
        .filter(|(_, (t, removed))| t.status == TaskStatus::Failed && !removed)
        .map(|(id, _)| *id)
        .collect();
    let filter = TaskFilter {
        status: Some(TaskStatus::Failed),
        ..TaskFilter::default()
    };
    let listed: BTreeSet<Uuid> = sim
        .deps()
        .tasks()
        .list(&filter, 1_000)
        .await
        .expect("the failed list")
        .tasks
        .iter()
        .map(|t| t.id)
        .collect();
    if listed != failed_ids {
        let lives_of = |ids: Vec<&Uuid>| -> Vec<(Uuid, u32)> {
            ids.into_iter()
                .map(|id| (*id, landed.get(id).copied().unwrap_or(0)))
                .collect()
        };
        found.push(format!(
            "failed list: it names {} tasks, {} ran out of attempts in their last life (listed only, with their lives: {:?}; failed only: {:?})",
            listed.len(),
            failed_ids.len(),
            lives_of(listed.difference(&failed_ids).collect()),
            lives_of(failed_ids.difference(&listed).collect())
        ));
    }
    let groups = failed::groups(sim.deps(), None)
        .await
        .expect("the error groups");
    let grouped: u64 = groups.groups.iter().map(|g| g.count).sum();
    if grouped != failed_ids.len() as u64 {
        found.push(format!(
            "error groups: they count {grouped} failed tasks, {} are failed",
            failed_ids.len()
        ));
    }

    // The per-queue counters equal the tasks' states (removed tasks
    // counted out).
    let mut counted: BTreeMap<(String, &str), i64> = BTreeMap::new();
    for t in &all {
        *counted
            .entry((t.queue_name.clone(), t.status.as_str()))
            .or_default() += 1;
    }
    let stats = sim
        .deps()
        .tasks()
        .queue_stats()
        .await
        .expect("the queue counters");
    let mut kept: BTreeMap<(String, &str), i64> = BTreeMap::new();
    for q in &stats {
        for s in TaskStatus::ALL {
            let n = q.count(s);
            if n != 0 {
                kept.insert((q.queue_name.clone(), s.as_str()), n);
            }
        }
    }
    if kept != counted {
        found.push(format!(
            "counters: the queue counters say {kept:?}, the tasks {counted:?}"
        ));
    }

    ttl_at_end(sim, &history, &by_id, &mut found).await;
    let hooks = webhooks_at_end(sim, &history, &finals, &mut found);
    executions_at_end(sim, &all, &mut found).await;

    digest.sort();
    for (n, status, attempts, life, removed) in digest {
        sim.fold(
            n ^ (u64::from(attempts) << 32)
                ^ status.len() as u64
                ^ u64::from(life) << 40
                ^ u64::from(removed) << 44,
        );
    }
    sim.fold(hooks);
    for v in found {
        sim.violation(v);
    }
}

/// The TTL's invariants, over each task's history: every write follows
/// the state machine (so no task is both completed and expired); a task
/// that ended expired never started an attempt after its expiry time, nor
/// expired before it; a task is removed only once finished and past its
/// TTL (an expired one past its retention too), and once the run has
/// drained, every task with a TTL is removed.
async fn ttl_at_end(
    sim: &Sim,
    history: &BTreeMap<Uuid, Vec<Version>>,
    listed: &BTreeMap<Uuid, &Task>,
    found: &mut Vec<String>,
) {
    let now = sim.now();
    let retention = sim.deps().config.expired_retention;
    for (id, versions) in history {
        let mut prev: Option<&Task> = None;
        let mut removed_at = None;
        let (mut completed, mut expired) = (false, false);
        for v in versions {
            let at = v.at;
            let Some(t) = &v.task else {
                // Removed: finished, with a TTL, and past it.
                let Some(p) = prev else {
                    found.push(format!("ttl: task {id} was removed before it was written"));
                    continue;
                };
                let deadline = match (p.status, p.completed_at) {
                    (TaskStatus::Expired, Some(c)) => Some(c + retention),
                    _ => p.expires_at(),
                };
                if !p.status.is_final() || deadline.is_none_or(|d| at < d) {
                    found.push(format!(
                        "removed early: task {id} (n {}) was removed at {at} while {} with TTL {:?} (so not before {deadline:?})",
                        label(p),
                        p.status.as_str(),
                        p.ttl_seconds
                    ));
                }
                removed_at = Some(at);
                continue;
            };
            if let Some(r) = removed_at {
                found.push(format!(
                    "ttl: task {id} was written again ({} at {at}) after its removal at {r}",
                    t.status.as_str()
                ));
            }
            if let Some(p) = prev
                && (!may_follow(p, t) || t.version < p.version)
            {
                found.push(format!(
                    "transition: task {id} (n {}) went from {} (attempt {}, version {}) to {} (attempt {}, version {}) at {at}",
                    label(t),
                    p.status.as_str(),
                    p.attempts,
                    p.version,
                    t.status.as_str(),
                    t.attempts,
                    t.version
                ));
            }
            if let Some(p) = prev
                && p.version == t.version
                && p != t
            {
                found.push(format!(
                    "transition: task {id} was written twice at version {} with different contents",
                    t.version
                ));
            }
            completed |= t.status == TaskStatus::Completed;
            expired |= t.status == TaskStatus::Expired;
            if t.status == TaskStatus::Expired
                && prev.is_some_and(|p| p.status == TaskStatus::Pending)
            {
                let early = match (t.expires_at(), t.completed_at) {
                    (Some(e), Some(c)) => c < e,
                    _ => true,
                };
                if early {
                    found.push(format!(
                        "expired early: task {id} (n {}) expired at {:?}, its TTL {:?} runs out at {:?}",
                        label(t),
                        t.completed_at,
                        t.ttl_seconds,
                        t.expires_at()
                    ));
                }
            }
            prev = Some(t);
        }
        if completed && expired {
            found.push(format!(
                "completed and expired: task {id} was written both completed and expired"
            ));
        }
        let Some((last, removed)) = last_state(versions) else {
            continue;
        };
        // Ended expired: no attempt started after its expiry time.
        if last.status == TaskStatus::Expired
            && let Some(e) = last.expires_at()
        {
            let mut prev: Option<&Task> = None;
            for (life, v) in with_lives(versions) {
                let Some(t) = &v.task else { continue };
                let started = prev.is_some_and(|p| p.status == TaskStatus::Pending)
                    && t.status == TaskStatus::Running;
                if started && t.started_at.is_some_and(|s| s > e) {
                    found.push(format!(
                        "ran after expiry: task {id} (n {}, TTL {:?} s) ended expired, but started attempt {} of life {life} at {:?}, after its expiry at {e}",
                        label(t),
                        t.ttl_seconds,
                        t.attempts,
                        t.started_at
                    ));
                }
                prev = Some(t);
            }
        }
        // Drained: whatever had a TTL and finished is gone by now.
        if !removed && last.status.is_final() && last.ttl_seconds.is_some() {
            let listed = if listed.contains_key(id) {
                "listed"
            } else {
                "hidden"
            };
            found.push(format!(
                "not removed: task {id} (n {}) ended {} at {:?} with TTL {:?} s ({listed}), and is still stored at {now}",
                label(last),
                last.status.as_str(),
                last.completed_at,
                last.ttl_seconds
            ));
        }
    }
}

/// The webhooks' invariants: every delivery is signed and announces a
/// state its task reached (completed or failed, with that URL), not before
/// it was written; every task that ended completed or failed with a
/// webhook URL had its final state delivered at least once, unless every
/// one of its attempts failed; what the task records of its webhook
/// agrees with what the endpoint answered. The deliveries accepted, for
/// the digest.
fn webhooks_at_end(
    sim: &Sim,
    history: &BTreeMap<Uuid, Vec<Version>>,
    finals: &BTreeMap<Uuid, (&Task, bool)>,
    found: &mut Vec<String>,
) -> u64 {
    let config = &sim.deps().config;
    let hooks = sim.http().hooks();
    let parse = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
    // (task, payload) → (accepted, refused)
    let mut answered: BTreeMap<(Uuid, String), (u32, u32)> = BTreeMap::new();
    for h in &hooks {
        let body = parse(&h.body);
        let header = |name: &str| {
            h.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let Some(id) = body["task_id"]
            .as_str()
            .and_then(|s| s.parse::<Uuid>().ok())
        else {
            found.push(format!(
                "webhook: a delivery to {} names no task: {}",
                h.url, h.body
            ));
            continue;
        };
        let signed = match (header("webhook-id"), header("webhook-timestamp")) {
            (Some(wid), Some(ts)) => ts.parse().ok().is_some_and(|ts| {
                header("webhook-signature")
                    == Some(webhook::sign(&config.webhook_secret, wid, ts, &h.body).as_str())
            }),
            _ => false,
        };
        if !signed {
            found.push(format!(
                "webhook unsigned: the delivery of task {id} at {} carries no valid signature",
                h.at
            ));
        }
        let reached = history.get(&id).and_then(|versions| {
            versions.iter().find(|v| {
                v.task.as_ref().is_some_and(|t| {
                    t.webhook_url.as_deref() == Some(h.url.as_str())
                        && parse(&webhook::payload(t)) == body
                })
            })
        });
        match reached {
            None => found.push(format!(
                "webhook phantom: task {id} was announced {} to {} at {}, a state it never reached: {}",
                body["status"], h.url, h.at, h.body
            )),
            Some(v) => {
                let status = v.task.as_ref().map(|t| t.status);
                if !matches!(status, Some(TaskStatus::Completed | TaskStatus::Failed)) {
                    found.push(format!(
                        "webhook: task {id} was announced while {status:?}, which owes none"
                    ));
                }
                if h.at < v.at {
                    found.push(format!(
                        "webhook early: task {id} was announced {} at {}, before that state was written at {}",
                        body["status"], h.at, v.at
                    ));
                }
            }
        }
        let tally = answered.entry((id, body.to_string())).or_default();
        if h.ok {
            tally.0 += 1;
        } else {
            tally.1 += 1;
        }
    }
    for (id, &(t, removed)) in finals {
        if t.webhook_url.is_none()
            || !matches!(t.status, TaskStatus::Completed | TaskStatus::Failed)
        {
            continue;
        }
        let state = parse(&webhook::payload(t)).to_string();
        let (ok, refused) = answered.get(&(*id, state)).copied().unwrap_or_default();
        let outcome = t.webhook.as_ref().map(|w| (w.status, w.attempts));
        let who = format!(
            "task {id} (n {}) ended {} after {} attempts{}",
            label(t),
            t.status.as_str(),
            t.attempts,
            if removed { ", removed at its TTL" } else { "" }
        );
        let gave_up = matches!(outcome, Some((WebhookStatus::Failed, _)));
        if ok == 0 && !gave_up {
            found.push(format!(
                "webhook lost: {who}, and its final state was never delivered ({refused} deliveries refused; outcome {outcome:?})"
            ));
        }
        match outcome {
            Some((WebhookStatus::Delivered, _)) if ok == 0 => found.push(format!(
                "webhook: {who} records its webhook delivered, but the endpoint accepted none of its final state"
            )),
            Some((WebhookStatus::Failed, n)) if refused < config.webhook_attempts || n < config.webhook_attempts => {
                found.push(format!(
                    "webhook given up early: {who} records its webhook failed after {n} attempts, the endpoint refused {refused} (of {} allowed)",
                    config.webhook_attempts
                ))
            }
            Some((WebhookStatus::Pending, _)) if !removed => found.push(format!(
                "webhook owed: {who} still owes its webhook after the drain"
            )),
            None => found.push(format!(
                "webhook never announced: {who} has a webhook URL but no webhook outcome"
            )),
            _ => {}
        }
    }
    hooks.iter().filter(|h| h.ok).count() as u64
}
