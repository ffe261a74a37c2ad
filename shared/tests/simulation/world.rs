//! One simulated run: the services over the in-memory store and queue,
//! actors stepped one port call at a time in the order the seed picks,
//! faults as the seed says, then a drain without faults until nothing is
//! left to do, then the invariants.
//!
//! Beside the tasks, a 3-step pipeline subscribed to a topic runs once per
//! published message: a publisher, the topic dispatcher and the workers
//! (which run executions as they run tasks) are actors like the others.
//!
//! Some tasks carry a TTL (expired by the scheduler's sweeps, removed after
//! the retention) or a webhook URL (answered by a fake endpoint that
//! records each delivery and sometimes fails it), and a requeuer puts
//! failed tasks back as the API's requeue routes do.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};
use tokio::sync::Notify;
use uuid::Uuid;
use warren::adapters::embedded::{EmbeddedStore, MemoryQueue};
use warren::domain::TaskStatus;
use warren::domain::fingerprint::error_fingerprint;
use warren::domain::identity::{Credential, Principal};
use warren::domain::pipeline::PipelineSpec;
use warren::handlers::{Registry, TaskFailure};
use warren::ports::Delivery;
use warren::ports::{Clock, Key, Store};
use warren::service::enqueue::{self, Enqueued, NewTask};
use warren::service::{
    Metrics, ServiceError, control, failed, maintenance, pipelines, topics, worker,
};
use warren::table::timers::timer_of;
use warren::table::{executions, tasks};
use warren::{Config, Deps};

use crate::gate::Step;
use crate::ports::{Faults, History, Rates, SimHttp, SimQueue, SimStore, Tally};
use crate::rng::{Rng, mix};

/// The knobs of one run, all drawn from its seed.
#[derive(Clone, Debug)]
pub struct Plan {
    pub workers: usize,
    pub tasks: u64,
    /// Messages published on the pipeline's topic.
    pub messages: u64,
    pub rates: Rates,
    /// Chance (permille) that a step is killed at the gate instead of passing it.
    pub crash: u32,
    pub jumps: bool,
    pub snapshot_messages: bool,
    /// When a pending task's message counts as lost (the outbox timer).
    pub redispatch_after: Duration,
    /// Scheduling decisions before the drain (at least until every task is offered).
    pub chaos_events: u32,
    /// Cancel requests made on acknowledged tasks.
    pub cancels: u64,
    /// Chance (permille) that a single enqueue carries an idempotency key
    /// (from a pool of three, so keys repeat), resent once on an error.
    pub keyed: u32,
    /// Requeue requests made on failed tasks, and the chance (permille)
    /// that one requeues the task's whole error group instead.
    pub requeues: u64,
    pub group_requeue: u32,
    /// Chance (permille) that a task has a TTL (of 1 to 240 s), and how
    /// long an expired task is kept.
    pub ttl: u32,
    pub expired_retention: Duration,
    /// Chance (permille) that a task has a webhook URL, and that the
    /// endpoint fails a delivery while the faults last.
    pub hooks: u32,
    pub hook_fail: u32,
    /// The scheduler ticked before the run (a deployment that has run a
    /// while): every sweep has its cursor from the start, so the clock may
    /// jump. Else the first tick pins them, under the faults.
    pub warm: bool,
    /// Enqueues send first and store after (`Config::send_first`, the AWS
    /// runtimes), the task queue then losing no accepted message, as SQS;
    /// and how long a received task message stays hidden (with a long
    /// one, a running task's lease is held by its message, not a timer).
    pub send_first: bool,
    pub visibility: Duration,
    /// Where enqueues send first, a batch's tasks are plain (no TTL,
    /// webhook or due time), so that where the message holds the lease
    /// too, they share chunks (`table::tasks::chunks`).
    pub plain_batches: bool,
}

impl Plan {
    pub fn of(seed: u64) -> Plan {
        let mut rng = Rng::new(mix(seed ^ 0x5EED));
        // A tenth of the runs without faults, the rest at a low or a high level.
        let level = match rng.below(10) {
            0 => 0,
            1..=5 => 1,
            _ => 3,
        };
        let p = |rng: &mut Rng, max: u64| (rng.below(max + 1) * level) as u32;
        let rates = Rates {
            loss: p(&mut rng, 20),
            duplicate: p(&mut rng, 30),
            delay: p(&mut rng, 60),
            delay_max: Duration::from_secs(rng.range(1, 120)),
            send_error_before: p(&mut rng, 15),
            send_error_after: p(&mut rng, 15),
            delete_error: p(&mut rng, 30),
            store_error_before: p(&mut rng, 5),
            store_error_after: p(&mut rng, 5),
        };
        let mut plan = Plan {
            workers: rng.range(1, 4) as usize,
            tasks: rng.range(3, 12),
            messages: rng.range(0, 6),
            rates,
            crash: p(&mut rng, 8),
            jumps: level > 0 && rng.chance(500),
            snapshot_messages: rng.chance(500),
            redispatch_after: Duration::from_secs(*rng.pick(&[60, 120, 600])),
            chaos_events: rng.range(40, 240) as u32,
            cancels: if rng.chance(300) { rng.range(1, 4) } else { 0 },
            keyed: *rng.pick(&[0, 300, 1000]),
            requeues: if rng.chance(400) { rng.range(1, 5) } else { 0 },
            group_requeue: *rng.pick(&[0, 300]),
            ttl: *rng.pick(&[0, 300, 700]),
            expired_retention: Duration::from_secs(*rng.pick(&[60, 300, 900])),
            hooks: *rng.pick(&[0, 400, 1000]),
            hook_fail: p(&mut rng, 150),
            warm: rng.chance(500),
            // Drawn last, so the other draws of a seed stay as they were.
            send_first: rng.chance(400),
            visibility: Duration::from_secs(*rng.pick(&[60, 960])),
            plain_batches: rng.chance(500),
        };
        // As the AWS runtimes, which send first, always do: a message by
        // id alone has the worker read the task's age from its id, whose
        // time is the system's, not the simulated clock's.
        plan.snapshot_messages |= plan.send_first;
        plan
    }
}

/// What a handler does on one attempt of task `n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Succeed,
    Retry,
    Fatal,
}

/// The label of life `life` of the task labelled `n`: a requeued task's
/// handler answers afresh.
pub fn life_label(n: u64, life: u32) -> u64 {
    n | u64::from(life) << 48
}

/// The handler's fixed answer for attempt `attempt` of task `n` under `seed`.
pub fn verdict(seed: u64, n: u64, attempt: u32) -> Verdict {
    match mix(seed ^ mix(n.wrapping_mul(0x1_0000_0001)) ^ mix(u64::from(attempt) << 40)) % 100 {
        0..60 => Verdict::Succeed,
        60..92 => Verdict::Retry,
        _ => Verdict::Fatal,
    }
}

/// The topic the pipeline listens on.
pub const TOPIC: &str = "simtopic";

/// The pipeline every run subscribes to its topic: an event schema that
/// some messages break ([`breaks_schema`]), then two task steps (retried 2
/// and 1 times) around a transform and an enqueue step whose task is judged
/// like any other. The schema check and the transform, which run on a
/// blocking thread in production, run inline here (`cpu_inline`), as the
/// paused clock would not wait for another thread.
fn pipeline_spec() -> PipelineSpec {
    serde_json::from_value(json!({
        "name": "sim",
        "options": {"event": TOPIC},
        "event_schema": {
            "type": "object",
            "required": ["m", "ok"],
            "properties": {"m": {"type": "integer"}, "ok": {"const": true}}
        },
        "steps": [
            {"name": "a", "kind": "task", "task_name": "simstep", "kwargs": {"step": "a"}, "retries": 2, "timeout_seconds": 30},
            {"name": "shape", "kind": "transform", "expression": "{m: event.m, a: steps.a}"},
            {"name": "fan", "kind": "enqueue", "task_name": "sim", "queue_name": "q0"},
            {"name": "b", "kind": "task", "task_name": "simstep", "kwargs": {"step": "b"}, "retries": 1, "timeout_seconds": 30},
        ]
    }))
    .expect("the simulated pipeline parses")
}

/// Whether message `m` breaks the pipeline's event schema: one in ten.
pub fn breaks_schema(m: u64) -> bool {
    m % 10 == 3
}

/// The verdict label of task step `step` of the execution for message `m`.
pub fn step_label(m: u64, step: &str) -> u64 {
    1 << 40 | m << 1 | u64::from(step == "b")
}

/// The label of the task the execution for message `m` enqueues.
pub fn fan_label(m: u64) -> u64 {
    1 << 20 | m
}

/// One run of a pipeline's task step, as its handler saw it.
#[derive(Clone, Debug)]
pub struct StepRun {
    pub m: u64,
    pub step: String,
    pub at: DateTime<Utc>,
}

/// One attempt of one life of a task: (task id, life, attempt).
pub type Attempt = (Uuid, u32, u32);

/// What the test handlers, the producers and the publisher saw: the side
/// effects the invariants are checked against.
#[derive(Default)]
pub struct Ledger {
    /// When the handler ran, per (task id, life, attempt): a requeue starts
    /// a task's next life, whose attempts count from 1 again.
    pub runs: Mutex<BTreeMap<Attempt, Vec<DateTime<Utc>>>>,
    /// Tasks whose enqueue was answered with success.
    pub acked: Mutex<BTreeSet<Uuid>>,
    /// Messages whose publish was answered with success, by id.
    pub published: Mutex<BTreeSet<String>>,
    /// Every run of a pipeline's task step.
    pub steps: Mutex<Vec<StepRun>>,
    /// Tasks whose cancel was answered with success.
    pub cancelled: Mutex<BTreeSet<Uuid>>,
    /// Single requeues answered with success, per task; and the tasks
    /// group requeues said they requeued.
    pub requeued: Mutex<BTreeMap<Uuid, u32>>,
    pub group_requeued: Mutex<u64>,
    /// Every task write that landed.
    pub history: Arc<History>,
}

/// A task's label: `kwargs.n`, or for a task a pipeline enqueued, from the
/// message its execution ran for.
pub fn label_of(kwargs: &serde_json::Map<String, Value>) -> Option<u64> {
    kwargs.get("n").and_then(Value::as_u64).or_else(|| {
        let m = kwargs.get("context")?.get("event")?.get("m")?.as_u64()?;
        Some(fan_label(m))
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Time as the paused tokio clock has it: advanced only by the simulator
/// (and by the services' own short sleeps), so the store's timers and the
/// queue's delays and visibility share one simulated time.
/// Its jitter comes from the seed, so retries with backoff replay too.
struct SimClock {
    base: DateTime<Utc>,
    start: tokio::time::Instant,
    chance: Mutex<Rng>,
}

impl Clock for SimClock {
    fn now(&self) -> DateTime<Utc> {
        self.base + chrono::Duration::from_std(self.start.elapsed()).unwrap_or_default()
    }

    fn jitter(&self) -> f64 {
        lock(&self.chance).below(1 << 20) as f64 / f64::from(1 << 20)
    }
}

/// `WARREN_SIM_TRACE` set: print every decision and task write.
pub fn tracing() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("WARREN_SIM_TRACE").is_some())
}

/// Wakes the simulator when an actor it polls can move on.
struct Wakeup(Arc<Notify>);

impl Wake for Wakeup {
    fn wake(self: Arc<Self>) {
        self.0.notify_one();
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Worker,
    Scheduler,
    Producer,
    Publisher,
    Dispatcher,
    Canceller,
    Requeuer,
}

impl Kind {
    /// The function's timeout on AWS (template.yaml): a step still running
    /// after it is killed, as Lambda kills an invocation.
    fn timeout(self) -> chrono::Duration {
        chrono::Duration::seconds(match self {
            Kind::Worker => 900,
            Kind::Scheduler | Kind::Dispatcher => 60,
            Kind::Producer | Kind::Publisher | Kind::Canceller | Kind::Requeuer => 29,
        })
    }
}

/// A step under way: its future, polled by the simulator alone.
type StepFuture = Pin<Box<dyn Future<Output = ()>>>;

struct Actor {
    kind: Kind,
    running: Option<(StepFuture, Arc<Step>)>,
    started: DateTime<Utc>,
}

/// What a run found.
pub struct Report {
    pub plan: Plan,
    pub violations: Vec<String>,
    pub tally: Tally,
    pub tasks: usize,
    /// Tasks stored in chunks (a batch's, sent first).
    pub chunked: usize,
    pub attempts: u64,
    pub executions: usize,
    pub step_runs: usize,
    /// Cancels acknowledged, and enqueues sent with an idempotency key.
    pub cancelled: usize,
    pub keyed: usize,
    /// Requeues that landed (single or by group), tasks that ended
    /// expired, tasks removed at the end of their TTL or retention.
    pub requeues: u64,
    pub expired: u64,
    pub removed: u64,
    /// Webhook deliveries the endpoint accepted.
    pub hooks: u64,
    pub simulated: Duration,
    /// A digest of the run's outcome, to check that a seed replays.
    pub digest: u64,
}

/// Run seed `seed` to its end on a fresh single-threaded runtime.
pub fn run(seed: u64) -> Report {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
    // Built inside the runtime, so its clock starts on the paused one.
    let report = rt.block_on(async { Sim::new(seed).run().await });
    // Tasks of killed steps wait at their gate for ever: dropped here.
    rt.shutdown_background();
    report
}

pub struct Sim {
    seed: u64,
    plan: Plan,
    rng: Rng,
    base: Deps,
    store: Arc<EmbeddedStore>,
    queue: Arc<MemoryQueue>,
    faults: Arc<Faults>,
    http: Arc<SimHttp>,
    ledger: Arc<Ledger>,
    notify: Arc<Notify>,
    actors: Vec<Actor>,
    /// Tasks offered so far (their `n` labels).
    offered: u64,
    /// Messages offered so far (their `m` labels).
    published: u64,
    /// Cancel and requeue requests made so far.
    cancels: u64,
    requeues: u64,
    /// Single enqueues given an idempotency key so far.
    keyed_sends: usize,
    /// The pipeline subscribed to [`TOPIC`].
    pipeline: Uuid,
    /// Decisions taken, folded into the digest.
    trail: u64,
    violations: Vec<String>,
    crashes: u64,
    jumps: u64,
}

/// The cursors of the scheduler's sweeps, in the order a tick pins them.
const SWEEPS: [&str; 7] = [
    "release-pending",
    "rescue-leases",
    "resend-webhooks",
    "fire-schedules",
    "resume-executions",
    "expire-tasks",
    "delete-expired",
];

const START: i64 = 1_900_000_000; // 2030-03-17, a fixed simulated start

impl Sim {
    fn new(seed: u64) -> Sim {
        let plan = Plan::of(seed);
        let ledger = Arc::new(Ledger::default());
        let clock = Arc::new(SimClock {
            base: Utc.timestamp_opt(START, 0).single().expect("a valid start"),
            start: tokio::time::Instant::now(),
            chance: Mutex::new(Rng::new(mix(seed ^ 0x717E))),
        });
        let mut handlers = Registry::new();
        let (l, c) = (ledger.clone(), clock.clone());
        handlers.register("sim", move |ctx| {
            let (l, at) = (l.clone(), c.now());
            async move {
                let n = label_of(&ctx.kwargs).unwrap_or(0);
                let id = ctx.task_id.unwrap_or_default();
                // Its life: the requeues that landed before this attempt
                // started (no requeue can land while it runs unless its
                // lease ran out, and a handler runs at once).
                let life = l.history.life(id);
                lock(&l.runs)
                    .entry((id, life, ctx.attempt))
                    .or_default()
                    .push(at);
                match verdict(seed, life_label(n, life), ctx.attempt) {
                    Verdict::Succeed => Ok(json!({"n": n, "attempt": ctx.attempt})),
                    Verdict::Retry => Err(TaskFailure::retry(format!("sim: retry {n}"))),
                    Verdict::Fatal => Err(TaskFailure::fatal(format!("sim: fatal {n}"))),
                }
            }
        });
        let (l, c) = (ledger.clone(), clock.clone());
        handlers.register("simstep", move |ctx| {
            let (l, at) = (l.clone(), c.now());
            async move {
                let m = ctx.kwargs["context"]["event"]["m"].as_u64().unwrap_or(0);
                let step = ctx.kwargs["step"].as_str().unwrap_or_default().to_string();
                let attempt = ctx.attempt;
                let v = verdict(seed, step_label(m, &step), attempt);
                lock(&l.steps).push(StepRun {
                    m,
                    step: step.clone(),
                    at,
                });
                match v {
                    Verdict::Succeed => Ok(json!({"m": m, "step": step, "attempt": attempt})),
                    Verdict::Retry => Err(TaskFailure::retry(format!("sim: retry {m}{step}"))),
                    Verdict::Fatal => Err(TaskFailure::fatal(format!("sim: fatal {m}{step}"))),
                }
            }
        });
        let store = Arc::new(EmbeddedStore::in_memory());
        let queue = Arc::new(MemoryQueue::new());
        let faults = Faults::new(plan.rates, mix(seed ^ 0xFA17));
        let http = Arc::new(SimHttp {
            faults: faults.clone(),
            fail: plan.hook_fail,
            clock: clock.clone(),
            rng: Mutex::new(Rng::new(mix(seed ^ 0x4007))),
            hooks: Mutex::default(),
        });
        let base = Deps {
            store: store.clone(),
            queue: queue.clone(),
            clock,
            http: http.clone(),
            handlers: Arc::new(handlers),
            metrics: Arc::new(Metrics::off()),
            config: Arc::new(Config {
                webhook_secret: vec![7; 32],
                step_secret: vec![8; 32],
                open: true,
                cpu_inline: true,
                snapshot_messages: plan.snapshot_messages,
                redispatch_after: plan.redispatch_after,
                send_first: plan.send_first,
                visibility: plan.visibility,
                expired_retention: chrono::Duration::from_std(plan.expired_retention)
                    .expect("a short retention"),
                ..Config::default()
            }),
            identity: Default::default(),
        };
        let mut actors = vec![Actor {
            kind: Kind::Scheduler,
            running: None,
            started: DateTime::<Utc>::MIN_UTC,
        }];
        for _ in 0..plan.workers {
            actors.push(Actor {
                kind: Kind::Worker,
                running: None,
                started: DateTime::<Utc>::MIN_UTC,
            });
        }
        for kind in [
            Kind::Producer,
            Kind::Producer,
            Kind::Publisher,
            Kind::Dispatcher,
            Kind::Canceller,
            Kind::Requeuer,
        ] {
            actors.push(Actor {
                kind,
                running: None,
                started: DateTime::<Utc>::MIN_UTC,
            });
        }
        Sim {
            seed,
            faults,
            http,
            rng: Rng::new(seed),
            plan,
            base,
            store,
            queue,
            ledger,
            notify: Arc::new(Notify::new()),
            actors,
            offered: 0,
            published: 0,
            cancels: 0,
            requeues: 0,
            keyed_sends: 0,
            pipeline: Uuid::nil(),
            trail: 0,
            violations: Vec::new(),
            crashes: 0,
            jumps: 0,
        }
    }

    fn note(&mut self, what: u64) {
        if tracing() {
            eprintln!("{} decision {what:#x}", self.now());
        }
        self.trail = mix(self.trail ^ what);
    }

    /// Whether actor `a` has something left to offer (producers and the
    /// publisher stop once their share is out).
    fn has_work(&self, a: usize) -> bool {
        match self.actors[a].kind {
            Kind::Producer => self.offered < self.plan.tasks,
            Kind::Publisher => self.published < self.plan.messages,
            Kind::Canceller => {
                self.cancels < self.plan.cancels && !lock(&self.ledger.acked).is_empty()
            }
            Kind::Requeuer => {
                self.requeues < self.plan.requeues && !self.ledger.history.failed().is_empty()
            }
            _ => true,
        }
    }

    /// The pipeline and its event trigger, written before the faults start.
    async fn subscribe(&mut self) {
        let p = pipelines::create(&self.base, pipeline_spec())
            .await
            .expect("the simulated pipeline is stored");
        topics::start(&self.base, p.id, None)
            .await
            .expect("its event trigger starts");
        self.pipeline = p.id;
    }

    async fn run(mut self) -> Report {
        self.subscribe().await;
        if self.plan.warm {
            busy(maintenance::tick(&self.base))
                .await
                .expect("the scheduler ticks before the run");
        }
        let mut events = 0;
        while events < self.plan.chaos_events
            || self.offered < self.plan.tasks
            || self.published < self.plan.messages
        {
            self.settle().await;
            self.time_out();
            if events % 100 == 0 {
                busy(self.check_timers()).await;
            }
            self.chaos().await;
            events += 1;
        }
        // The drain: no more faults or crashes; steps under way finish.
        self.faults.off();
        self.plan.crash = 0;
        self.run_to_idle().await;
        busy(self.check_timers()).await;
        let give_up = self.now() + chrono::Duration::hours(8);
        loop {
            let now = self.now();
            let timers = busy(self.open_timers()).await;
            // The scheduler runs when a timer is due: the rest of its
            // rounds would find nothing to do.
            if timers.iter().any(|t| *t <= now) {
                self.start(0);
                self.run_to_idle().await;
            }
            let config = self.base.config.clone();
            let queues = [&config.task_queue, &config.topic_queue];
            while queues.iter().any(|q| self.queue.counts(q).visible > 0) {
                for a in 0..self.actors.len() {
                    if matches!(self.actors[a].kind, Kind::Worker | Kind::Dispatcher) {
                        self.start(a);
                    }
                }
                self.run_to_idle().await;
            }
            let timers = busy(self.open_timers()).await;
            let queued = queues
                .iter()
                .map(|q| self.queue.counts(q))
                .any(|c| c.visible + c.in_flight + c.delayed > 0);
            if timers.is_empty() && !queued {
                break;
            }
            if self.now() > give_up {
                let stuck = busy(self.unfinished()).await;
                self.violations.push(format!(
                    "stuck: 8 simulated hours after the faults stopped, not quiescent: {stuck}"
                ));
                break;
            }
            let wait = self.next_due(&timers);
            self.advance(wait).await;
        }
        crate::check::at_end(&mut self).await;
        let tally = {
            let mut t = *lock(&self.faults.tally);
            t.crashes = self.crashes;
            t.clock_jumps = self.jumps;
            t
        };
        let runs = lock(&self.ledger.runs).clone();
        let history = self.ledger.history.snapshot();
        let versions = || history.values().flatten();
        let requeues = history
            .values()
            .map(|v| u64::from(crate::ports::lives(v)))
            .sum();
        let expired = history
            .values()
            .filter(|v| {
                v.iter().flat_map(|v| &v.task).last().map(|t| t.status) == Some(TaskStatus::Expired)
            })
            .count() as u64;
        let removed = versions().filter(|v| v.task.is_none()).count() as u64;
        let hooks = self.http.hooks().iter().filter(|h| h.ok).count() as u64;
        let executions = crate::check::all_executions(&self).await.len();
        let step_runs = lock(&self.ledger.steps).len();
        let start = Utc.timestamp_opt(START, 0).single().unwrap_or_default();
        Report {
            plan: self.plan.clone(),
            violations: std::mem::take(&mut self.violations),
            tally,
            tasks: runs
                .keys()
                .map(|(id, _, _)| *id)
                .collect::<BTreeSet<_>>()
                .len(),
            chunked: history
                .keys()
                .filter(|id| warren::table::tasks::chunks::member_of(**id).is_some())
                .count(),
            attempts: runs.values().map(|at| at.len() as u64).sum(),
            executions,
            step_runs,
            cancelled: lock(&self.ledger.cancelled).len(),
            keyed: self.keyed_sends,
            requeues,
            expired,
            removed,
            hooks,
            simulated: (self.now() - start).to_std().unwrap_or_default(),
            digest: self.trail,
        }
    }

    /// One decision of the chaotic phase.
    async fn chaos(&mut self) {
        let waiting = self.waiting();
        let idle: Vec<usize> = (0..self.actors.len())
            .filter(|&a| self.actors[a].running.is_none() && self.has_work(a))
            .collect();
        let r = self.rng.below(100);
        if r < 10 || waiting.is_empty() && idle.is_empty() {
            // Mostly the milliseconds calls take (every actor runs at once
            // on AWS, so little time passes between two of their calls);
            // now and then long enough for visibility timeouts and leases
            // to run out.
            let d = match self.rng.below(1000) {
                0..900 => Duration::from_millis(self.rng.range(1, 50)),
                900..970 => Duration::from_millis(self.rng.range(50, 3_000)),
                970..990 => Duration::from_secs(self.rng.range(10, 150)),
                // Not before every sweep has its cursor: a sweep with no
                // cursor looks back one hour, so entries older than that
                // when it first runs are not seen (a known limit: on AWS
                // the scheduler ticks every minute from deployment).
                _ if self.plan.jumps && busy(self.pinned()).await => {
                    self.jumps += 1;
                    Duration::from_secs(self.rng.range(300, 3_600))
                }
                _ => Duration::from_secs(self.rng.range(10, 150)),
            };
            self.advance(d).await;
        } else if !waiting.is_empty() && (r < 85 || idle.is_empty()) {
            // An actor first, then one of its calls: an actor with many
            // calls waiting (a batch) moves no faster than the others.
            let mut actors: Vec<usize> = waiting.iter().map(|(a, _)| *a).collect();
            actors.dedup();
            let a = *self.rng.pick(&actors);
            let calls: Vec<u64> = waiting.iter().filter(|w| w.0 == a).map(|w| w.1).collect();
            let id = *self.rng.pick(&calls);
            if self.rng.chance(self.plan.crash) {
                self.kill(a);
            } else {
                self.grant(a, id);
            }
        } else {
            let a = *self.rng.pick(&idle);
            self.start(a);
        }
    }

    /// Every call waiting at a gate, as (actor, call), in a fixed order.
    fn waiting(&self) -> Vec<(usize, u64)> {
        let mut all = Vec::new();
        for (a, actor) in self.actors.iter().enumerate() {
            if let Some((_, step)) = &actor.running {
                all.extend(step.waiting().into_iter().map(|id| (a, id)));
            }
        }
        all
    }

    fn grant(&mut self, a: usize, id: u64) {
        self.note((a as u64) << 32 | id);
        if let Some((_, step)) = &self.actors[a].running {
            step.grant(id);
        }
    }

    /// The actor's process dies between two port calls: its step is dropped
    /// where it stands, as a killed Lambda's would be.
    fn kill(&mut self, a: usize) {
        self.note(0xDEAD ^ a as u64);
        if let Some((fut, step)) = self.actors[a].running.take() {
            step.kill();
            drop(fut);
            self.crashes += 1;
        }
    }

    /// Every sweep has its cursor (a tick killed part way pins only the
    /// first few).
    async fn pinned(&self) -> bool {
        for name in SWEEPS {
            let key = Key::new("SCHED", name);
            if !matches!(self.store.get(&key).await, Ok(Some(_))) {
                return false;
            }
        }
        true
    }

    /// Kill the steps that outlived their function's timeout.
    fn time_out(&mut self) {
        let now = self.now();
        for a in 0..self.actors.len() {
            let actor = &self.actors[a];
            if actor.running.is_some() && now - actor.started > actor.kind.timeout() {
                self.kill(a);
            }
        }
    }

    async fn advance(&mut self, d: Duration) {
        self.note(d.as_millis() as u64);
        tokio::time::advance(d).await;
    }

    /// The deps one step sees: every store and queue call passes its gate.
    fn step_deps(&self, step: &Arc<Step>) -> Deps {
        let config = &self.base.config;
        let mut lossless = vec![config.topic_queue.clone()];
        if config.send_first {
            lossless.push(config.task_queue.clone());
        }
        Deps {
            store: Arc::new(SimStore {
                inner: self.store.clone() as Arc<dyn Store>,
                step: step.clone(),
                faults: self.faults.clone(),
                history: self.ledger.history.clone(),
                clock: self.base.clock.clone(),
            }),
            queue: Arc::new(SimQueue {
                inner: self.queue.clone(),
                lossless,
                clock: self.base.clock.clone(),
                step: step.clone(),
                faults: self.faults.clone(),
            }),
            ..self.base.clone()
        }
    }

    /// Begin the next step of actor `a`.
    fn start(&mut self, a: usize) {
        if self.actors[a].running.is_some() {
            return;
        }
        self.note(0x5747 ^ a as u64);
        let step = Step::new(self.notify.clone());
        let deps = self.step_deps(&step);
        let fut: StepFuture = match self.actors[a].kind {
            Kind::Scheduler => Box::pin(async move {
                let report = maintenance::tick(&deps).await;
                if tracing() {
                    eprintln!("  tick at {}: {report:?}", deps.now());
                }
            }),
            Kind::Worker => {
                let max = self.rng.range(1, 10) as usize;
                Box::pin(consume(deps, Inbox::Tasks, max))
            }
            Kind::Dispatcher => {
                let max = self.rng.range(1, 10) as usize;
                Box::pin(consume(deps, Inbox::Topic, max))
            }
            Kind::Publisher => {
                if self.published >= self.plan.messages {
                    return;
                }
                let m = self.published;
                self.published += 1;
                Box::pin(publish(deps, m, self.ledger.clone()))
            }
            Kind::Producer => {
                if self.offered >= self.plan.tasks {
                    return;
                }
                let count = match self.rng.below(3) {
                    0 => 1,
                    _ => self.rng.range(1, 6).min(self.plan.tasks - self.offered),
                };
                let mut batch: Vec<NewTask> = (0..count).map(|_| self.new_task()).collect();
                let single = count == 1 && self.rng.chance(600);
                if !single && self.plan.plain_batches && self.plan.send_first {
                    for t in &mut batch {
                        (t.ttl_seconds, t.webhook_url, t.scheduled_at) = (None, None, None);
                    }
                }
                if single && self.rng.chance(self.plan.keyed) {
                    batch[0].idempotency_key = Some(format!("key{}", self.rng.below(3)));
                    self.keyed_sends += 1;
                }
                Box::pin(produce(deps, batch, single, self.ledger.clone()))
            }
            Kind::Canceller => {
                let acked: Vec<Uuid> = lock(&self.ledger.acked).iter().copied().collect();
                if self.cancels >= self.plan.cancels || acked.is_empty() {
                    return;
                }
                self.cancels += 1;
                let id = *self.rng.pick(&acked);
                Box::pin(cancel(deps, id, self.ledger.clone()))
            }
            Kind::Requeuer => {
                let failed = self.ledger.history.failed();
                if self.requeues >= self.plan.requeues || failed.is_empty() {
                    return;
                }
                self.requeues += 1;
                let (id, task) = self.rng.pick(&failed).clone();
                let how = if self.rng.chance(self.plan.group_requeue) {
                    // As the dashboard's button does: the group of the
                    // error it shows, failed before the page was drawn
                    // (or at any time).
                    let fingerprint = error_fingerprint(task.error.as_deref().unwrap_or(""));
                    let before = self.rng.chance(500).then(|| self.now());
                    Requeue::Group(fingerprint, before)
                } else {
                    Requeue::One(id)
                };
                Box::pin(requeue(deps, how, self.ledger.clone()))
            }
        };
        self.actors[a].running = Some((fut, step));
        self.actors[a].started = self.now();
    }

    fn new_task(&mut self) -> NewTask {
        let n = self.offered;
        self.offered += 1;
        let mut t = NewTask::named("sim", "q".to_string() + &self.rng.below(2).to_string());
        t.kwargs.insert("n".into(), json!(n));
        t.max_retries = self.rng.below(4) as u32;
        // Fixed delays or exponential backoff, whose jitter (the clock's)
        // comes from the seed.
        t.retry_backoff = self.rng.chance(300);
        t.retry_delay = Some(self.rng.below(90) as f64);
        t.timeout_seconds = Some(self.rng.range(5, 120));
        t.priority = self.rng.below(3) as i32;
        if self.rng.chance(250) {
            // Some beyond the queue's 15 minutes of delay: the timer path.
            let ahead = self.rng.range(1, 20 * 60) as i64;
            t.scheduled_at = Some(self.now() + chrono::Duration::seconds(ahead));
        }
        if self.rng.chance(self.plan.ttl) {
            // Short against the run: some run out before the task's delay
            // or its retries, so it expires pending; some after it ended,
            // so it is removed.
            let half = if self.rng.chance(300) { 0.5 } else { 0.0 };
            t.ttl_seconds = Some(self.rng.range(1, 240) as f64 + half);
        }
        if self.rng.chance(self.plan.hooks) {
            t.webhook_url = Some(format!("http://hooks.sim/{n}"));
        }
        t
    }

    /// Poll every running step until each is finished or waits at its gate
    /// with no call in flight: then nothing moves until the next decision.
    async fn settle(&mut self) {
        let waker = Waker::from(Arc::new(Wakeup(self.notify.clone())));
        let mut cx = Context::from_waker(&waker);
        let mut settled_at = usize::MAX;
        loop {
            let (mut moving, mut in_flight) = (false, false);
            let mut waiting = 0;
            for actor in &mut self.actors {
                let Some((fut, step)) = &mut actor.running else {
                    continue;
                };
                if let Poll::Ready(()) = fut.as_mut().poll(&mut cx) {
                    actor.running = None;
                    continue;
                }
                in_flight |= step.in_flight();
                waiting += step.waiting().len();
                if step.in_flight() || step.waiting().is_empty() {
                    moving = true;
                }
            }
            if !moving {
                // Every step has a call at its gate, but a task a step
                // spawned may be ready to run and reach a gate of its own:
                // let every ready task run once, and decide only when that
                // changed nothing, so the set of waiting calls (and their
                // order) never depends on timing.
                if waiting == settled_at {
                    return;
                }
                settled_at = waiting;
                tokio::task::yield_now().await;
                continue;
            }
            settled_at = usize::MAX;
            if in_flight {
                // The store's writer thread is answering: stay busy, for an
                // idle runtime would move the paused clock to the next
                // timer (a sleep between two sends) before the answer came,
                // and the run would depend on the thread's speed. (The OS
                // yield lets the writer thread have the core meanwhile.)
                std::thread::yield_now();
                tokio::task::yield_now().await;
            } else {
                self.notify.notified().await;
            }
        }
    }

    /// Grant calls in the seed's order until every step has ended.
    async fn run_to_idle(&mut self) {
        loop {
            self.settle().await;
            let waiting = self.waiting();
            if waiting.is_empty() {
                return;
            }
            let (a, id) = *self.rng.pick(&waiting);
            self.grant(a, id);
        }
    }

    /// The work still to come: the timers of the unfinished tasks and
    /// executions (one for each: one without is reported, and counted here
    /// as due now so the drain goes on), of the finished tasks still owing
    /// their webhook, and the TTL work on tasks (expiry, then removal). The
    /// tasks are read past the list (which hides a record past its TTL):
    /// every task written and not removed.
    async fn open_timers(&self) -> Vec<DateTime<Utc>> {
        let now = self.now();
        let mut timers = Vec::new();
        for id in self.ledger.history.stored() {
            let Some((t, item)) = tasks::stored(&*self.store, id).await.ok().flatten() else {
                continue;
            };
            match timer_of(&item) {
                Some(at) => timers.push(at),
                None if !t.status.is_final() => timers.push(now),
                None => {}
            }
            // A running task's expiry waits for its next write.
            if t.status != TaskStatus::Running {
                timers.extend(crate::check::expiry_of(&item));
            }
        }
        for e in crate::check::all_executions(self).await {
            if e.next_step().is_some() {
                let item = self.store.get(&executions::key(e.id)).await.ok().flatten();
                timers.push(item.as_ref().and_then(timer_of).unwrap_or(now));
            }
        }
        timers
    }

    /// How long the drain may wait before something is due: the next time
    /// a queued message becomes visible or a timer of an unfinished task
    /// fires (nothing else can happen before), at most five minutes. At
    /// least a second, so close events are taken together.
    fn next_due(&self, timers: &[DateTime<Utc>]) -> Duration {
        let now = self.now();
        let mut next = now + chrono::Duration::minutes(5);
        if let Some(&ms) = lock(&self.faults.wakes)
            .range(now.timestamp_millis() + 1..)
            .next()
        {
            next = next.min(DateTime::from_timestamp_millis(ms).unwrap_or(next));
        }
        for at in timers {
            if *at > now {
                next = next.min(*at);
            }
        }
        // A little past it, so it is due (a sweep reads whole milliseconds).
        ((next - now).to_std().unwrap_or_default() + Duration::from_millis(2))
            .max(Duration::from_secs(1))
    }

    /// What is left to do, and where the sweeps stand, for the report.
    async fn unfinished(&self) -> String {
        let mut open = vec![format!(
            "queue {:?}, topic queue {:?}",
            self.queue.counts(&self.base.config.task_queue),
            self.queue.counts(&self.base.config.topic_queue)
        )];
        for e in crate::check::all_executions(self).await {
            if e.next_step().is_some() {
                let item = self.store.get(&executions::key(e.id)).await.ok().flatten();
                open.push(format!(
                    "execution {} (message {:?}) at step {:?}, lease {:?}, timer {:?}",
                    e.id,
                    e.trigger_id,
                    e.next_step(),
                    e.lease_until,
                    item.as_ref().and_then(timer_of)
                ));
            }
        }
        for t in crate::check::all_tasks(self).await {
            if t.status.is_final() {
                continue;
            }
            let item = tasks::stored(&*self.store, t.id)
                .await
                .ok()
                .flatten()
                .map(|(_, item)| item);
            open.push(format!(
                "task {} {} (attempt {}) timer {:?}",
                t.id,
                t.status.as_str(),
                t.attempts,
                item.as_ref().and_then(timer_of)
            ));
        }
        for name in SWEEPS {
            let cursor = self
                .store
                .get(&Key::new("SCHED", name))
                .await
                .ok()
                .flatten();
            open.push(format!(
                "cursor {name} {:?}",
                cursor.and_then(|c| c.attrs.get("minute").cloned())
            ));
        }
        open.push(format!("now {}", self.now()));
        open.join("; ")
    }

    async fn check_timers(&mut self) {
        crate::check::pending_have_timers(self).await;
    }
}

/// Await `f` (the simulator's own reads of the store, past the gates)
/// without letting the runtime idle: an idle paused runtime moves the
/// clock on to the next timer of some step, and the run would depend on
/// how fast the store's thread answers.
async fn busy<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    loop {
        tokio::select! {
            biased;
            out = &mut f => return out,
            () = tokio::task::yield_now() => std::thread::yield_now(),
        }
    }
}

/// The queue a consuming step reads.
#[derive(Clone, Copy)]
enum Inbox {
    /// Task and execution messages, for a worker.
    Tasks,
    /// Published messages, for the topic dispatcher.
    Topic,
}

/// The topic queue's visibility timeout (template.yaml: six times the
/// dispatcher's 60 s).
const TOPIC_VISIBILITY: Duration = Duration::from_secs(360);

/// What the function for `inbox` does with one message; `Ok` deletes it.
async fn handle(deps: &Deps, inbox: Inbox, d: &Delivery) -> Result<(), ServiceError> {
    match inbox {
        Inbox::Tasks => {
            let out = worker::process(deps, &d.body).await;
            if tracing() {
                eprintln!("  message {} -> {out:?}", &d.body[..d.body.len().min(120)]);
            }
            out
        }
        Inbox::Topic => topics::dispatch(deps, d).await.map(|_| ()),
    }
}

/// A worker's or the dispatcher's step, as the SQS event source runs a
/// batch: receive, handle the messages concurrently, delete those that
/// succeeded together.
async fn consume(deps: Deps, inbox: Inbox, max: usize) {
    let (queue, visibility) = match inbox {
        Inbox::Tasks => (deps.config.task_queue.clone(), deps.config.visibility),
        Inbox::Topic => (deps.config.topic_queue.clone(), TOPIC_VISIBILITY),
    };
    let Ok(batch) = deps
        .queue
        .receive(&queue, max, visibility, Duration::ZERO)
        .await
    else {
        return;
    };
    let mut running = tokio::task::JoinSet::new();
    for d in batch {
        let deps = deps.clone();
        running.spawn(async move { handle(&deps, inbox, &d).await.ok().map(|()| d.receipt) });
    }
    let mut done = Vec::new();
    while let Some(r) = running.join_next().await {
        done.extend(r.ok().flatten());
    }
    if !done.is_empty() {
        let _ = deps.queue.delete_batch(&queue, done).await;
    }
}

/// A producer's step: one enqueue request, single or batch. A single one
/// with an idempotency key is sent again after an error, as a client that
/// holds a key does.
async fn produce(deps: Deps, mut batch: Vec<NewTask>, single: bool, ledger: Arc<Ledger>) {
    if single {
        let task = batch.remove(0);
        let tries = if task.idempotency_key.is_some() { 2 } else { 1 };
        for _ in 0..tries {
            match enqueue::enqueue(&deps, task.clone()).await {
                Ok(Enqueued::Created(id) | Enqueued::Existing(id)) => {
                    lock(&ledger.acked).insert(id);
                    return;
                }
                Ok(Enqueued::Ephemeral) => return,
                Err(_) => {}
            }
        }
    } else if let Ok(ids) = enqueue::enqueue_batch(&deps, batch).await {
        lock(&ledger.acked).extend(ids.into_iter().flatten());
    }
}

/// A cancel request on task `id`, as an API client makes it.
async fn cancel(deps: Deps, id: Uuid, ledger: Arc<Ledger>) {
    let who = Principal::deployment(Credential::Open);
    if control::cancel(&deps, id, &who).await.is_ok() {
        lock(&ledger.cancelled).insert(id);
    }
}

/// What a requeue request names.
enum Requeue {
    /// One task (`POST /api/v1/tasks/{id}/requeue`).
    One(Uuid),
    /// An error group, failed before a time or at any
    /// (`POST /api/v1/tasks/failed/requeue`).
    Group(String, Option<DateTime<Utc>>),
}

/// A requeue request, as an API client makes it.
async fn requeue(deps: Deps, how: Requeue, ledger: Arc<Ledger>) {
    let who = Principal::deployment(Credential::Open);
    match how {
        Requeue::One(id) => {
            if control::requeue(&deps, id, &who).await.is_ok() {
                *lock(&ledger.requeued).entry(id).or_default() += 1;
            }
        }
        Requeue::Group(fingerprint, before) => {
            if let Ok(done) = failed::requeue_group(&deps, &who, &fingerprint, None, before).await {
                *lock(&ledger.group_requeued) += done.requeued;
            }
        }
    }
}

/// The publisher's step: one message on [`TOPIC`], labelled `m`.
async fn publish(deps: Deps, m: u64, ledger: Arc<Ledger>) {
    let event = json!({"m": m, "ok": !breaks_schema(m)});
    if let Ok(id) = topics::publish(&deps, TOPIC, &event).await {
        lock(&ledger.published).insert(id);
    }
}

impl Sim {
    pub fn seed(&self) -> u64 {
        self.seed
    }
    pub fn pipeline(&self) -> Uuid {
        self.pipeline
    }
    pub fn store(&self) -> &dyn Store {
        &*self.store
    }
    pub fn deps(&self) -> &Deps {
        &self.base
    }
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }
    pub fn http(&self) -> &SimHttp {
        &self.http
    }
    pub fn now(&self) -> DateTime<Utc> {
        self.base.clock.now()
    }
    pub fn violation(&mut self, v: String) {
        self.violations.push(v);
    }
    pub fn fold(&mut self, v: u64) {
        self.note(v);
    }
}
