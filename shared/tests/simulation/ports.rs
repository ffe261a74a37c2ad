//! The store and queue as one actor's step sees them: every call passes the
//! step's gate, and the queue (and, rarely, the store) misbehaves as the
//! seed says.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;
use warren::adapters::embedded::MemoryQueue;
use warren::domain::{Task, TaskStatus};
use warren::ports::{
    Clock, Delivery, HttpClient, HttpError, HttpRequest, HttpResponse, Item, Key, MAX_DELAY,
    OutgoingMessage, Query, Queue, QueueError, Store, StoreError, WriteOp,
};
use warren::table::tasks::chunks::{self, Chunk};

use crate::gate::Step;
use crate::rng::Rng;

/// How often each fault strikes, in permille of the calls (or messages) it
/// can strike.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rates {
    /// A sent message never arrives.
    pub loss: u32,
    /// A sent message arrives twice.
    pub duplicate: u32,
    /// A sent message is held back up to `delay_max` more (reordering).
    pub delay: u32,
    pub delay_max: Duration,
    /// A send fails before anything is sent, or after (its answer lost).
    pub send_error_before: u32,
    pub send_error_after: u32,
    /// A delete fails: the messages come back after their visibility.
    pub delete_error: u32,
    /// A store call fails before anything is written, or after the write
    /// (its answer lost).
    pub store_error_before: u32,
    pub store_error_after: u32,
}

/// What was injected, for the report.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tally {
    pub lost: u64,
    pub duplicated: u64,
    pub delayed: u64,
    pub queue_errors: u64,
    pub store_errors: u64,
    pub crashes: u64,
    pub clock_jumps: u64,
    /// Webhook deliveries the fake endpoint answered with an error.
    pub hook_errors: u64,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, o: Tally) {
        self.lost += o.lost;
        self.duplicated += o.duplicated;
        self.delayed += o.delayed;
        self.queue_errors += o.queue_errors;
        self.store_errors += o.store_errors;
        self.crashes += o.crashes;
        self.clock_jumps += o.clock_jumps;
        self.hook_errors += o.hook_errors;
    }
}

/// The faults of one run: its rates, its own stream of chance (calls are
/// serialised by the gate, so the stream is consumed in a fixed order) and
/// a switch that turns them off for the final drain.
pub struct Faults {
    pub rates: Rates,
    on: AtomicBool,
    rng: Mutex<Rng>,
    pub tally: Mutex<Tally>,
    /// When queued messages become visible (epoch ms): a delay ends, or a
    /// visibility timeout. The drain jumps from one to the next.
    pub wakes: Mutex<BTreeSet<i64>>,
}

impl Faults {
    pub fn new(rates: Rates, seed: u64) -> Arc<Faults> {
        Arc::new(Faults {
            rates,
            on: AtomicBool::new(true),
            rng: Mutex::new(Rng::new(seed)),
            tally: Mutex::default(),
            wakes: Mutex::default(),
        })
    }

    pub fn off(&self) {
        self.on.store(false, Ordering::SeqCst);
    }

    /// Whether faults still strike (the drain turns them off).
    pub fn on(&self) -> bool {
        self.on.load(Ordering::SeqCst)
    }

    fn strikes(&self, permille: u32) -> bool {
        permille > 0 && self.on.load(Ordering::SeqCst) && self.rng().chance(permille)
    }

    fn rng(&self) -> std::sync::MutexGuard<'_, Rng> {
        self.rng.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wake_at(&self, at: DateTime<Utc>, after: Duration) {
        let at = at + chrono::Duration::from_std(after).unwrap_or_default();
        self.wakes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(at.timestamp_millis());
    }

    fn count(&self, f: impl FnOnce(&mut Tally)) {
        f(&mut self.tally.lock().unwrap_or_else(|e| e.into_inner()));
    }

    fn store_error(&self, permille: u32) -> Result<(), StoreError> {
        if self.strikes(permille) {
            self.count(|t| t.store_errors += 1);
            return Err(StoreError::Unavailable("simulated store fault".into()));
        }
        Ok(())
    }

    fn queue_error(&self, permille: u32) -> Result<(), QueueError> {
        if self.strikes(permille) {
            self.count(|t| t.queue_errors += 1);
            return Err(QueueError::Unavailable("simulated queue fault".into()));
        }
        Ok(())
    }
}

/// One write of a task that landed in the store, and when: the task as
/// written, or `None` for its deletion.
#[derive(Clone, Debug)]
pub struct Version {
    pub at: DateTime<Utc>,
    pub task: Option<Task>,
}

/// Every write of every task that landed, in the order the store took
/// them (a write whose answer was lost landed all the same): what the
/// invariants about a task's past (its lives, its expiry, its deletion,
/// the states its webhook may announce) are checked against.
#[derive(Default)]
pub struct History(
    Mutex<BTreeMap<Uuid, Vec<Version>>>,
    /// The members each chunk held at its last write.
    Mutex<BTreeMap<Uuid, BTreeSet<u8>>>,
);

fn lock_chunks(
    chunks: &Mutex<BTreeMap<Uuid, BTreeSet<u8>>>,
) -> std::sync::MutexGuard<'_, BTreeMap<Uuid, BTreeSet<u8>>> {
    chunks.lock().unwrap_or_else(|e| e.into_inner())
}

/// The task id of a task item's key.
fn task_id(key: &Key) -> Option<Uuid> {
    warren::table::tasks::id_of(key)
}

/// Whether `prev` → `next` is a requeue: the start of a new life.
pub fn is_requeue(prev: &Task, next: &Task) -> bool {
    prev.status == TaskStatus::Failed && next.status == TaskStatus::Pending
}

impl History {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Uuid, Vec<Version>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record the task writes among `ops`, which landed at `at`. A write of
    /// a chunk is a write of each task it holds that changed, and a
    /// deletion of each it held before that the same writes did not move
    /// to an item of its own.
    fn landed<'a>(
        &self,
        at: DateTime<Utc>,
        ops: impl Iterator<Item = (&'a Key, Option<&'a Item>)>,
    ) {
        let ops: Vec<_> = ops.collect();
        let own: BTreeSet<Uuid> = ops.iter().filter_map(|(key, _)| task_id(key)).collect();
        let mut all = self.lock();
        // A chunk's write holds its members that did not change too.
        let mut record = |id: Uuid, task: Option<Task>| {
            let versions = all.entry(id).or_default();
            if versions.last().is_none_or(|v| v.task != task) {
                versions.push(Version { at, task });
            }
        };
        for (key, item) in ops {
            if let Some(chunk) = item.and_then(Chunk::from_item) {
                let members: BTreeSet<u8> = chunk.members.keys().copied().collect();
                let held = lock_chunks(&self.1).insert(chunk.base, members.clone());
                for number in held.unwrap_or_default().difference(&members) {
                    let id = chunks::member_id(chunk.base, *number);
                    if !own.contains(&id) {
                        record(id, None);
                    }
                }
                for task in chunk.members.into_values() {
                    record(task.id, Some(task));
                }
                continue;
            }
            let Some(id) = task_id(key) else { continue };
            let task = match item {
                Some(item) => match warren::table::tasks::from_item(item) {
                    Some(t) => Some(t),
                    None => continue,
                },
                None => None,
            };
            record(id, task);
        }
    }

    /// The lives task `id` has had so far, less one: its requeues.
    pub fn life(&self, id: Uuid) -> u32 {
        self.lock().get(&id).map_or(0, |v| lives(v))
    }

    /// The tasks whose last write left them failed.
    pub fn failed(&self) -> Vec<(Uuid, Task)> {
        self.lock()
            .iter()
            .filter_map(|(id, v)| match v.last()?.task.as_ref() {
                Some(t) if t.status == TaskStatus::Failed => Some((*id, t.clone())),
                _ => None,
            })
            .collect()
    }

    /// Every task written and not removed since.
    pub fn stored(&self) -> Vec<Uuid> {
        self.lock()
            .iter()
            .filter(|(_, v)| v.last().is_some_and(|v| v.task.is_some()))
            .map(|(id, _)| *id)
            .collect()
    }

    pub fn snapshot(&self) -> BTreeMap<Uuid, Vec<Version>> {
        self.lock().clone()
    }
}

/// The requeues among one task's versions.
pub fn lives(versions: &[Version]) -> u32 {
    let mut prev: Option<&Task> = None;
    let mut n = 0;
    for v in versions {
        if let (Some(p), Some(t)) = (prev, v.task.as_ref())
            && is_requeue(p, t)
        {
            n += 1;
        }
        prev = v.task.as_ref();
    }
    n
}

pub struct SimStore {
    pub inner: Arc<dyn Store>,
    pub step: Arc<Step>,
    pub faults: Arc<Faults>,
    pub history: Arc<History>,
    pub clock: Arc<dyn Clock>,
}

impl SimStore {
    fn landed(&self, ops: &[WriteOp]) {
        let writes = ops.iter().filter_map(|op| match op {
            WriteOp::Put { item, .. } => Some((&item.key, Some(item))),
            WriteOp::Delete { key, .. } => Some((key, None)),
            WriteOp::Add { .. } => None,
        });
        self.history.landed(self.clock.now(), writes);
    }
}

#[async_trait]
impl Store for SimStore {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        let _call = self.step.pass().await;
        self.faults
            .store_error(self.faults.rates.store_error_before)?;
        self.inner.get(key).await
    }

    async fn transact(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        let _call = self.step.pass().await;
        let r = &self.faults.rates;
        self.faults.store_error(r.store_error_before)?;
        if crate::world::tracing() {
            for op in &ops {
                match op {
                    WriteOp::Put { item, .. } => eprintln!(
                        "  write {} {} status {:?} minute {:?} timer {:?} webhook {:?}",
                        item.key.pk,
                        item.key.sk,
                        item.attrs.get("status"),
                        item.attrs.get("minute"),
                        warren::table::timers::timer_of(item),
                        item.attrs.get("webhook").map(|w| &w["status"])
                    ),
                    WriteOp::Delete { key, .. } => eprintln!("  delete {} {}", key.pk, key.sk),
                    WriteOp::Add { .. } => {}
                }
            }
        }
        let tasks: Vec<WriteOp> = ops
            .iter()
            .filter(|op| task_id(op.key()).is_some())
            .cloned()
            .collect();
        self.inner.transact(ops).await?;
        self.landed(&tasks);
        self.faults.store_error(r.store_error_after)
    }

    async fn put_batch(&self, items: Vec<Item>) -> Result<(), StoreError> {
        let _call = self.step.pass().await;
        let r = &self.faults.rates;
        self.faults.store_error(r.store_error_before)?;
        let tasks: Vec<Item> = items
            .iter()
            .filter(|i| task_id(&i.key).is_some())
            .cloned()
            .collect();
        self.inner.put_batch(items).await?;
        self.history
            .landed(self.clock.now(), tasks.iter().map(|i| (&i.key, Some(i))));
        self.faults.store_error(r.store_error_after)
    }

    async fn query(&self, query: &Query) -> Result<Vec<Item>, StoreError> {
        let _call = self.step.pass().await;
        self.faults
            .store_error(self.faults.rates.store_error_before)?;
        self.inner.query(query).await
    }

    async fn increment(
        &self,
        key: &Key,
        attr: &str,
        limit: i64,
        ttl: Option<i64>,
    ) -> Result<Option<i64>, StoreError> {
        let _call = self.step.pass().await;
        let r = &self.faults.rates;
        self.faults.store_error(r.store_error_before)?;
        let n = self.inner.increment(key, attr, limit, ttl).await?;
        self.faults.store_error(r.store_error_after)?;
        Ok(n)
    }
}

pub struct SimQueue {
    pub inner: Arc<MemoryQueue>,
    /// The queues whose accepted messages are never lost: the topic queue,
    /// whose messages are stored nowhere else, so it rests on SQS's own
    /// promise (an accepted message is delivered), and the task queue
    /// where enqueues send first (the message is the outbox). Every other
    /// fault strikes them as it strikes the rest.
    pub lossless: Vec<String>,
    pub clock: Arc<dyn Clock>,
    pub step: Arc<Step>,
    pub faults: Arc<Faults>,
}

#[async_trait]
impl Queue for SimQueue {
    async fn send_batch(
        &self,
        queue: &str,
        messages: Vec<OutgoingMessage>,
    ) -> Result<(), QueueError> {
        let _call = self.step.pass().await;
        let f = &self.faults;
        let r = &f.rates;
        f.queue_error(r.send_error_before)?;
        let mut out = Vec::with_capacity(messages.len());
        for mut m in messages {
            if !self.lossless.iter().any(|q| q == queue) && f.strikes(r.loss) {
                f.count(|t| t.lost += 1);
                continue;
            }
            if f.strikes(r.delay) {
                let extra = f.rng().below(r.delay_max.as_millis() as u64 + 1);
                m.delay = (m.delay + Duration::from_millis(extra)).min(MAX_DELAY);
                f.count(|t| t.delayed += 1);
            }
            if f.strikes(r.duplicate) {
                f.count(|t| t.duplicated += 1);
                out.push(m.clone());
            }
            out.push(m);
        }
        for m in &out {
            f.wake_at(self.clock.now(), m.delay);
        }
        self.inner.send_batch(queue, out).await?;
        f.queue_error(r.send_error_after)
    }

    async fn receive(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
        _wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        let _call = self.step.pass().await;
        // No long poll: the simulator, not a timer, decides when to look again.
        let mut got = self
            .inner
            .receive(queue, max, visibility, Duration::ZERO)
            .await?;
        if !got.is_empty() {
            self.faults.wake_at(self.clock.now(), visibility);
        }
        if self.faults.on.load(Ordering::SeqCst) {
            self.faults.rng().shuffle(&mut got);
        }
        Ok(got)
    }

    async fn delete_batch(&self, queue: &str, receipts: Vec<String>) -> Result<(), QueueError> {
        let _call = self.step.pass().await;
        self.faults.queue_error(self.faults.rates.delete_error)?;
        self.inner.delete_batch(queue, receipts).await
    }

    async fn change_visibility(
        &self,
        queue: &str,
        receipt: &str,
        visibility: Duration,
    ) -> Result<(), QueueError> {
        let _call = self.step.pass().await;
        self.inner
            .change_visibility(queue, receipt, visibility)
            .await
    }
}

/// One webhook delivery as the fake endpoint received it.
#[derive(Clone, Debug)]
pub struct Hook {
    pub at: DateTime<Utc>,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Answered with a 2xx (else an error status or a transport error).
    pub ok: bool,
}

/// The webhook endpoints of one run: every request recorded, answered with
/// an error `fail` permille of the time while the faults are on.
pub struct SimHttp {
    pub faults: Arc<Faults>,
    pub fail: u32,
    pub clock: Arc<dyn Clock>,
    pub rng: Mutex<Rng>,
    pub hooks: Mutex<Vec<Hook>>,
}

impl SimHttp {
    pub fn hooks(&self) -> Vec<Hook> {
        self.hooks.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[async_trait]
impl HttpClient for SimHttp {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        // Calls are serialised by the gates around them, so the stream of
        // chance is consumed in a fixed order.
        let (fails, transport) = {
            let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            let fails = self.faults.on() && rng.chance(self.fail);
            (fails, rng.chance(500))
        };
        if fails {
            self.faults.count(|t| t.hook_errors += 1);
        }
        if crate::world::tracing() {
            eprintln!(
                "  webhook {} ok {}: {}",
                request.url,
                !fails,
                String::from_utf8_lossy(&request.body)
            );
        }
        self.hooks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Hook {
                at: self.clock.now(),
                url: request.url.clone(),
                headers: request.headers.clone(),
                body: String::from_utf8_lossy(&request.body).into_owned(),
                ok: !fails,
            });
        match (fails, transport) {
            (false, _) => Ok(HttpResponse {
                status: 204,
                headers: Vec::new(),
                body: Vec::new(),
            }),
            (true, true) => Err(HttpError::Transport("simulated connection reset".into())),
            (true, false) => Ok(HttpResponse {
                status: 503,
                headers: Vec::new(),
                body: b"simulated outage".to_vec(),
            }),
        }
    }
}
