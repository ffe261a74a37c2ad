//! The invariants, read straight from the store (past the gates).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;
use uuid::Uuid;
use warren::domain::execution::{Execution, ExecutionStatus, StepStatus};
use warren::domain::{Task, TaskStatus};
use warren::service::{executions, failed};
use warren::table::tasks::{self, TaskFilter};
use warren::table::timers::timer_of;

use crate::world::{Sim, Verdict, fan_label, label_of, step_label, verdict};

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
pub async fn pending_have_timers(sim: &mut Sim) {
    for t in all_tasks(sim).await {
        if t.status.is_final() {
            continue;
        }
        let item = sim
            .store()
            .get(&tasks::key(t.id))
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
    let mut found = Vec::new();

    for id in sim.ledger().acked.lock().unwrap().iter() {
        if !by_id.contains_key(id) {
            found.push(format!(
                "lost: task {id} was acknowledged to its producer but is not stored"
            ));
        }
    }

    let runs = sim.ledger().runs.lock().unwrap().clone();
    for (&(id, attempt), &n) in &runs {
        if n > 1 {
            found.push(format!(
                "ran twice: attempt {attempt} of task {id} ran its handler {n} times"
            ));
        }
        match by_id.get(&id) {
            None => found.push(format!(
                "ghost: a handler ran for task {id}, which is not stored"
            )),
            Some(t) if attempt > t.attempts => found.push(format!(
                "unrecorded attempt: task {id} ran attempt {attempt} but records {} attempts",
                t.attempts
            )),
            Some(_) => {}
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
        if let Some(t) = by_id.get(id).filter(|t| t.status != TaskStatus::Cancelled) {
            found.push(format!(
                "cancel undone: task {id} was cancelled, then ended {} after {} attempts",
                t.status.as_str(),
                t.attempts
            ));
        }
    }

    let mut digest = Vec::new();
    for t in &all {
        let n = label(t);
        let max = t.retry_policy().max_attempts();
        let last = runs.get(&(t.id, t.attempts)).copied().unwrap_or(0);
        let v = verdict(seed, n, t.attempts);
        let who = format!("task {} (n {n}, attempts {}/{max})", t.id, t.attempts);
        digest.push((n, t.status.as_str(), t.attempts));
        let never_started = t.attempts == 0 && t.status == TaskStatus::Cancelled;
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
            // Cancelled while pending: before its first attempt or between
            // two (whose outcomes the checks above hold).
            TaskStatus::Cancelled => {}
            other => found.push(format!(
                "unfinished: {who} ended {} after the drain",
                other.as_str()
            )),
        }
        if t.status.is_final() {
            let item = sim.store().get(&tasks::key(t.id)).await.ok().flatten();
            if item.as_ref().and_then(timer_of).is_some() {
                found.push(format!("stale timer: finished {who} keeps a timer"));
            }
        }
    }

    // The failed list (its index) and the error groups name exactly the failed tasks.
    let failed_ids: BTreeSet<Uuid> = all
        .iter()
        .filter(|t| t.status == TaskStatus::Failed)
        .map(|t| t.id)
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
        found.push(format!(
            "failed list: it names {} tasks, {} are failed (listed only: {:?}; failed only: {:?})",
            listed.len(),
            failed_ids.len(),
            listed.difference(&failed_ids).collect::<Vec<_>>(),
            failed_ids.difference(&listed).collect::<Vec<_>>()
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

    // The per-queue counters equal the tasks' states.
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

    executions_at_end(sim, &all, &mut found).await;

    digest.sort();
    for (n, status, attempts) in digest {
        sim.fold(n ^ (u64::from(attempts) << 32) ^ status.len() as u64);
    }
    for v in found {
        sim.violation(v);
    }
}
