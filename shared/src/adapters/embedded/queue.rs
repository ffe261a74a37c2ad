//! `MemoryQueue`: the in-process [`Queue`] with SQS semantics (delays,
//! visibility timeouts, redelivery, receive counts, long polling).
//!
//! It lives in memory only and does not survive the process. That is by
//! design: the store is the source of truth, and at start the core re-sends
//! every pending task from the store (outbox), so losing the queue loses no
//! task.
//!
//! Each named queue is one mutex over:
//! - a binary heap of the visible messages, ordered by priority then send
//!   order, so a receive pops in O(log n) instead of scanning. A message
//!   never received yet lives in its heap entry itself: nothing can name it
//!   before its first receive, and a backlog is mostly such messages, so it
//!   costs one dense array slot each (40 bytes for the task messages of the
//!   embedded runtime: see [`Content`]) rather than a map node;
//! - a map by internal key of the messages a receipt or a timer names
//!   (received at least once, or delayed);
//! - an ordered set of timers `(due, key)` for the hidden ones (delayed or in
//!   flight), so the messages that became visible are found at its front and
//!   a timer can be removed exactly when the message is deleted or re-hidden
//!   (no stale timers piling up under a high delete rate).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::adapters::checks::{check_messages, check_receive};
use crate::ports::{Delivery, OutgoingMessage, Queue, QueueError};

/// How many messages of one queue are in each state, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// Ready to be received now.
    pub visible: usize,
    /// Received and not yet deleted, hidden until their visibility timeout.
    pub in_flight: usize,
    /// Sent with a delay that has not passed yet (never received).
    pub delayed: usize,
}

/// The in-process queue backend: named queues created on first use, SQS
/// semantics, nothing persisted (see the module documentation).
#[derive(Default)]
pub struct MemoryQueue {
    // Queues are created once and then only looked up, so a read lock keeps
    // lookups from different queues from contending.
    queues: RwLock<HashMap<String, Arc<Shared>>>,
    /// SQS's redrive policy: a message received this many times without
    /// being deleted moves to `<queue>-dlq` instead of coming back again.
    max_receives: Option<u32>,
}

/// The dead-letter queue of `queue` under a redrive policy.
pub fn dead_letter_queue(queue: &str) -> String {
    format!("{queue}{DEAD_LETTER_SUFFIX}")
}

const DEAD_LETTER_SUFFIX: &str = "-dlq";

/// One named queue: its state and the notifier its long pollers wait on.
struct Shared {
    state: Mutex<State>,
    /// Woken on every change that may make a message visible sooner than a
    /// waiting receiver expects (send, change of visibility, new timer).
    notify: Notify,
}

#[derive(Default)]
struct State {
    /// Next internal key; also the send order, as keys only grow.
    next_key: u64,
    /// A random UUID (v7) that message ids are made from: see
    /// [`State::message_id`].
    id_base: u128,
    /// The messages received at least once, and the delayed ones, by key. A
    /// B-tree, not a hash map: keys only grow, so inserts land on its right
    /// edge and it never rehashes (a hash map stalled every sender while it
    /// copied a grown table, docs/BENCHMARKS.md).
    held: BTreeMap<u64, Message>,
    /// Visible messages: never-received ones in place, the others by key.
    /// Entries of messages deleted while visible are left in place and
    /// skipped when popped (cheaper than removing from the middle of a heap).
    ready: BinaryHeap<Ready>,
    /// Hidden messages by the instant they become visible again.
    timers: BTreeSet<(Instant, u64)>,
    /// Visible messages never received, held in `ready`.
    fresh: usize,
    /// Hidden messages never received yet.
    delayed: usize,
    /// Hidden messages received at least once.
    in_flight: usize,
}

/// What a message was sent with, in 24 bytes: a backlog is mostly these.
/// The embedded runtime's task messages are all `{"id":"<uuid>"}` with no
/// attributes (see `TaskMessage::Stored`), kept as the 16 bytes of the id
/// and given a message id made from the queue's base and the message's key
/// ([`State::message_id`]); anything else is boxed whole. A backlog of a
/// million costs 40 MB, where the id, body and attributes side by side
/// took 72.
enum Content {
    Task(uuid::Uuid),
    Other(Box<Other>),
}

struct Other {
    /// Its own id: it keeps it when it moves to a dead-letter queue.
    id: uuid::Uuid,
    body: Box<str>,
    attributes: Box<[(String, String)]>,
}

const ID_BODY_START: &str = "{\"id\":\"";
const ID_BODY_END: &str = "\"}";

impl Content {
    fn new(id: uuid::Uuid, body: String, attributes: BTreeMap<String, String>) -> Content {
        let task = attributes
            .is_empty()
            .then(|| body.strip_prefix(ID_BODY_START)?.strip_suffix(ID_BODY_END))
            .flatten()
            .and_then(|id| {
                uuid::Uuid::try_parse(id)
                    .ok()
                    .filter(|u| u.hyphenated().to_string() == id)
            });
        match task {
            Some(task) => Content::Task(task),
            None => Content::Other(Box::new(Other {
                id,
                body: body.into_boxed_str(),
                attributes: attributes.into_iter().collect(),
            })),
        }
    }

    /// The message id, `derived` unless the message carries its own.
    fn id(&self, derived: uuid::Uuid) -> uuid::Uuid {
        match self {
            Content::Task(_) => derived,
            Content::Other(other) => other.id,
        }
    }

    /// The body exactly as it was sent.
    fn body(&self) -> String {
        match self {
            Content::Task(id) => format!("{ID_BODY_START}{}{ID_BODY_END}", id.hyphenated()),
            Content::Other(other) => other.body.to_string(),
        }
    }

    fn attributes(&self) -> BTreeMap<String, String> {
        match self {
            Content::Task(_) => BTreeMap::new(),
            Content::Other(other) => other.attributes.iter().cloned().collect(),
        }
    }

    /// The same message with `id` kept in it, for another queue.
    fn with_id(self, id: uuid::Uuid) -> Content {
        match self {
            Content::Task(task) => Content::Other(Box::new(Other {
                id,
                body: Content::Task(task).body().into_boxed_str(),
                attributes: Box::default(),
            })),
            other => other,
        }
    }
}

struct Message {
    content: Content,
    priority: i32,
    receive_count: u32,
    /// Bumped on every receive: only a receipt carrying the latest value is
    /// honoured, so an earlier receiver cannot delete or extend a message
    /// someone else holds now.
    receipt_gen: u64,
    /// `Some(due)` while hidden (delayed or in flight), with its timer entry
    /// `(due, key)`; `None` while visible, with its entry in `ready`.
    hidden_until: Option<Instant>,
}

/// A visible message in the ready heap: higher priority first, then the
/// oldest send (lowest key) first. Redelivered messages keep their key, hence
/// their place among their peers.
struct Ready {
    priority: i32,
    key: u64,
    /// The message itself until its first receive; `None` for one in `held`.
    fresh: Option<Content>,
}

impl PartialEq for Ready {
    fn eq(&self, other: &Self) -> bool {
        (self.priority, self.key) == (other.priority, other.key)
    }
}

impl Eq for Ready {}

impl Ord for Ready {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.key.cmp(&self.key))
    }
}

impl PartialOrd for Ready {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Receipts are `key.generation`: cheap to make and parse, and unique per
/// receive of a message.
fn receipt(key: u64, generation: u64) -> String {
    format!("{key}.{generation}")
}

fn parse_receipt(receipt: &str) -> Option<(u64, u64)> {
    let (key, generation) = receipt.split_once('.')?;
    Some((key.parse().ok()?, generation.parse().ok()?))
}

/// `now + d`, saturating far in the future instead of panicking on an absurd
/// duration (a caller-supplied visibility or wait must never crash the queue).
fn after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

impl State {
    fn new() -> State {
        State {
            id_base: uuid::Uuid::now_v7().as_u128(),
            ..State::default()
        }
    }

    /// The id of the message under `key`: the queue's base with the key in
    /// its random bits (a v7 UUID's low 62 bits are random, and keys stay far
    /// below 2^62), so ids are unique in the queue and cost no room.
    fn message_id(&self, key: u64) -> uuid::Uuid {
        uuid::Uuid::from_u128(self.id_base ^ u128::from(key))
    }

    /// Makes visible every hidden message whose time has come. Done lazily by
    /// each operation rather than by a background task, so an idle queue
    /// costs nothing.
    fn promote_due(&mut self, now: Instant) {
        while let Some(&(due, key)) = self.timers.first() {
            if due > now {
                break;
            }
            self.timers.pop_first();
            let Some(msg) = self.held.get_mut(&key) else {
                continue;
            };
            let priority = msg.priority;
            if msg.receive_count == 0 {
                // A delay passed: nothing can name it yet, so it moves into
                // the heap whole.
                self.delayed -= 1;
                if let Some(msg) = self.held.remove(&key) {
                    self.push_fresh(priority, key, msg.content);
                }
            } else {
                msg.hidden_until = None;
                self.in_flight -= 1;
                self.ready.push(Ready {
                    priority,
                    key,
                    fresh: None,
                });
            }
        }
    }

    fn push_fresh(&mut self, priority: i32, key: u64, content: Content) {
        self.fresh += 1;
        self.ready.push(Ready {
            priority,
            key,
            fresh: Some(content),
        });
    }

    /// Gives back the heap's room once a backlog has drained, so memory
    /// follows the backlog down again.
    fn shrink_ready(&mut self) {
        const KEEP: usize = 4096;
        let (len, capacity) = (self.ready.len(), self.ready.capacity());
        if capacity > KEEP && len < capacity / 4 {
            self.ready.shrink_to((len * 2).max(KEEP));
        }
    }

    /// The message a receipt designates, if the receipt is still the latest
    /// one for it.
    fn by_receipt(&mut self, receipt: &str) -> Option<(u64, &mut Message)> {
        let (key, generation) = parse_receipt(receipt)?;
        let msg = self.held.get_mut(&key)?;
        (msg.receive_count > 0 && msg.receipt_gen == generation).then_some((key, msg))
    }

    fn counts(&self) -> QueueCounts {
        QueueCounts {
            visible: self.fresh + self.held.len() - self.delayed - self.in_flight,
            in_flight: self.in_flight,
            delayed: self.delayed,
        }
    }
}

impl Shared {
    fn new() -> Shared {
        Shared {
            state: Mutex::new(State::new()),
            notify: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every mutation keeps the state consistent before anything can
        // panic, so a poisoned lock still guards valid data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl MemoryQueue {
    /// An empty backend; queues appear when first used.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty backend with SQS's redrive policy on every queue (but
    /// dead-letter queues): a message received `max_receives` times moves to
    /// [`dead_letter_queue`] on its next receive, so a message that can
    /// never be handled is not redelivered forever.
    pub fn with_redrive(max_receives: u32) -> Self {
        MemoryQueue {
            max_receives: Some(max_receives.max(1)),
            ..Self::default()
        }
    }

    /// How many messages of `queue` are visible, in flight and delayed now.
    /// An unknown queue counts as empty (and is not created).
    pub fn counts(&self, queue: &str) -> QueueCounts {
        let shared = {
            let queues = self.queues.read().unwrap_or_else(|e| e.into_inner());
            match queues.get(queue) {
                Some(shared) => shared.clone(),
                None => return QueueCounts::default(),
            }
        };
        let mut state = shared.lock();
        state.promote_due(Instant::now());
        state.counts()
    }

    fn queue(&self, name: &str) -> Arc<Shared> {
        if let Some(shared) = self
            .queues
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            return shared.clone();
        }
        self.queues
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(Shared::new()))
            .clone()
    }
}

impl MemoryQueue {
    /// Move messages past their receive limit to `queue`'s dead-letter
    /// queue, as they were sent (SQS keeps the body and attributes).
    fn dead_letter(&self, queue: &str, dead: Vec<(uuid::Uuid, Message)>) {
        if dead.is_empty() {
            return;
        }
        let dlq = self.queue(&dead_letter_queue(queue));
        let mut state = dlq.lock();
        for (id, msg) in dead {
            tracing::warn!(
                queue,
                message_id = %id,
                receives = msg.receive_count,
                "message received too often without success; moved to the dead-letter queue"
            );
            let key = state.next_key;
            state.next_key += 1;
            state.push_fresh(msg.priority, key, msg.content.with_id(id));
        }
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn send_batch(
        &self,
        queue: &str,
        messages: Vec<OutgoingMessage>,
    ) -> Result<(), QueueError> {
        check_messages(&messages)?;
        if messages.is_empty() {
            return Ok(());
        }
        let shared = self.queue(queue);
        {
            let mut state = shared.lock();
            let now = Instant::now();
            for m in messages {
                let key = state.next_key;
                state.next_key += 1;
                let content = Content::new(state.message_id(key), m.body, m.attributes);
                if m.delay.is_zero() {
                    state.push_fresh(m.priority, key, content);
                    continue;
                }
                let due = now + m.delay;
                state.timers.insert((due, key));
                state.delayed += 1;
                state.held.insert(
                    key,
                    Message {
                        content,
                        priority: m.priority,
                        receive_count: 0,
                        receipt_gen: 0,
                        hidden_until: Some(due),
                    },
                );
            }
        }
        // Wake long pollers: a visible message is there, or a delayed one may
        // be due sooner than the time they sleep until.
        shared.notify.notify_waiters();
        Ok(())
    }

    async fn receive(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        check_receive(max)?;
        let shared = self.queue(queue);
        let deadline = after(Instant::now(), wait);
        let max_receives = self
            .max_receives
            .filter(|_| !queue.ends_with(DEAD_LETTER_SUFFIX));
        loop {
            // Register for wake-ups before looking, so a send between the
            // look and the sleep is not missed.
            let notified = shared.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();

            let mut dead = Vec::new();
            let next_due = {
                let mut state = shared.lock();
                let now = Instant::now();
                state.promote_due(now);
                let hidden_until = after(now, visibility);
                let mut out = Vec::new();
                while out.len() < max {
                    let Some(Ready {
                        priority,
                        key,
                        fresh,
                    }) = state.ready.pop()
                    else {
                        break;
                    };
                    if let Some(content) = fresh {
                        state.fresh -= 1;
                        state.held.insert(
                            key,
                            Message {
                                content,
                                priority,
                                receive_count: 0,
                                receipt_gen: 0,
                                hidden_until: None,
                            },
                        );
                    }
                    let derived = state.message_id(key);
                    let Some(msg) = state.held.get_mut(&key) else {
                        continue; // deleted while visible
                    };
                    if msg.hidden_until.is_some() {
                        continue; // defensive: never hand out a hidden message
                    }
                    if max_receives.is_some_and(|m| msg.receive_count >= m) {
                        if let Some(msg) = state.held.remove(&key) {
                            dead.push((msg.content.id(state.message_id(key)), msg));
                        }
                        continue;
                    }
                    msg.receive_count += 1;
                    msg.receipt_gen += 1;
                    msg.hidden_until = Some(hidden_until);
                    out.push(Delivery {
                        message_id: msg.content.id(derived).to_string(),
                        receipt: receipt(key, msg.receipt_gen),
                        body: msg.content.body(),
                        receive_count: msg.receive_count,
                        attributes: msg.content.attributes(),
                    });
                    state.timers.insert((hidden_until, key));
                    state.in_flight += 1;
                }
                state.shrink_ready();
                if !out.is_empty() {
                    drop(state);
                    self.dead_letter(queue, dead);
                    if visibility.is_zero() {
                        // Visible again at once: others may be waiting.
                        shared.notify.notify_waiters();
                    }
                    return Ok(out);
                }
                state.timers.first().map(|&(due, _)| due)
            };
            self.dead_letter(queue, dead);

            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            // Sleep until the wait ends or the next hidden message is due,
            // whichever is first, unless a change wakes us earlier.
            let until = next_due.map_or(deadline, |due| due.min(deadline));
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(until) => {}
            }
        }
    }

    async fn delete_batch(&self, queue: &str, receipts: Vec<String>) -> Result<(), QueueError> {
        let shared = self.queue(queue);
        let mut state = shared.lock();
        for r in &receipts {
            let Some((key, msg)) = state.by_receipt(r) else {
                continue;
            };
            if let Some(due) = msg.hidden_until {
                state.timers.remove(&(due, key));
                state.in_flight -= 1;
            }
            // A visible message's heap entry is skipped when popped.
            state.held.remove(&key);
        }
        Ok(())
    }

    async fn change_visibility(
        &self,
        queue: &str,
        receipt: &str,
        visibility: Duration,
    ) -> Result<(), QueueError> {
        let shared = self.queue(queue);
        {
            let mut state = shared.lock();
            let now = Instant::now();
            // Bring the timers up to date so a message whose timeout already
            // passed counts as visible (not in flight) below.
            state.promote_due(now);
            let Some((key, msg)) = state.by_receipt(receipt) else {
                return Ok(());
            };
            // SQS refuses to re-hide a message that is no longer in flight
            // (its timeout passed): ignore, as for a stale receipt.
            let Some(due) = msg.hidden_until else {
                return Ok(());
            };
            let priority = msg.priority;
            if visibility.is_zero() {
                msg.hidden_until = None;
                state.timers.remove(&(due, key));
                state.in_flight -= 1;
                state.ready.push(Ready {
                    priority,
                    key,
                    fresh: None,
                });
            } else {
                let new_due = after(now, visibility);
                msg.hidden_until = Some(new_due);
                state.timers.remove(&(due, key));
                state.timers.insert((new_due, key));
            }
        }
        // Either a message became visible, or a timer may now be earlier than
        // what a long poller sleeps until.
        shared.notify.notify_waiters();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(body: &str, priority: i32) -> OutgoingMessage {
        OutgoingMessage {
            priority,
            ..OutgoingMessage::new(body)
        }
    }

    const LONG: Duration = Duration::from_secs(30);

    #[tokio::test]
    async fn higher_priority_first_then_fifo_among_equals() {
        let q = MemoryQueue::new();
        q.send_batch(
            "q",
            vec![msg("low-1", 0), msg("high-1", 5), msg("low-2", 0)],
        )
        .await
        .unwrap();
        q.send_batch("q", vec![msg("high-2", 5), msg("mid", 1), msg("neg", -3)])
            .await
            .unwrap();
        let got = q.receive("q", 10, LONG, Duration::ZERO).await.unwrap();
        let bodies: Vec<_> = got.iter().map(|d| d.body.as_str()).collect();
        assert_eq!(bodies, ["high-1", "high-2", "mid", "low-1", "low-2", "neg"]);
    }

    #[tokio::test]
    async fn a_message_received_too_often_moves_to_the_dead_letter_queue() {
        let q = MemoryQueue::with_redrive(3);
        // A task message: it moves with its id, as SQS keeps it.
        let poison = format!(r#"{{"id":"{}"}}"#, uuid::Uuid::now_v7());
        q.send_batch("q", vec![msg(&poison, 0), msg("fine", 0)])
            .await
            .unwrap();
        let mut poison_id = String::new();
        for round in 1..=3 {
            let got = q
                .receive("q", 10, Duration::ZERO, Duration::ZERO)
                .await
                .unwrap();
            let p = got.iter().find(|d| d.body == poison).unwrap();
            assert_eq!(p.receive_count, round);
            poison_id = p.message_id.clone();
            // "fine" is handled the first time; the poison never is.
            let fine: Vec<_> = got
                .iter()
                .filter(|d| d.body == "fine")
                .map(|d| d.receipt.clone())
                .collect();
            q.delete_batch("q", fine).await.unwrap();
        }
        let got = q.receive("q", 10, LONG, Duration::ZERO).await.unwrap();
        assert!(got.is_empty(), "a fourth receive gets nothing: {got:?}");
        assert_eq!(q.counts("q"), QueueCounts::default());
        let dead = q
            .receive(&dead_letter_queue("q"), 10, LONG, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(
            (dead[0].body.as_str(), dead[0].receive_count),
            (poison.as_str(), 1)
        );
        assert_eq!(dead[0].message_id, poison_id);
    }

    #[tokio::test]
    async fn redelivered_message_keeps_its_place() {
        let q = MemoryQueue::new();
        q.send_batch("q", vec![msg("a", 0), msg("b", 0), msg("c", 0)])
            .await
            .unwrap();
        let a = q.receive("q", 1, LONG, Duration::ZERO).await.unwrap();
        assert_eq!(a[0].body, "a");
        q.change_visibility("q", &a[0].receipt, Duration::ZERO)
            .await
            .unwrap();
        let all = q.receive("q", 10, LONG, Duration::ZERO).await.unwrap();
        let bodies: Vec<_> = all.iter().map(|d| d.body.as_str()).collect();
        assert_eq!(bodies, ["a", "b", "c"]);
        assert_eq!(all[0].receive_count, 2);
    }

    #[tokio::test]
    async fn stale_receipt_is_ignored() {
        let q = MemoryQueue::new();
        q.send_batch("q", vec![msg("m", 0)]).await.unwrap();
        let first = q.receive("q", 1, LONG, Duration::ZERO).await.unwrap();
        q.change_visibility("q", &first[0].receipt, Duration::ZERO)
            .await
            .unwrap();
        let second = q.receive("q", 1, LONG, Duration::ZERO).await.unwrap();
        assert_eq!(second[0].message_id, first[0].message_id);
        assert_ne!(second[0].receipt, first[0].receipt);

        // The first receiver's receipt no longer touches the message.
        q.delete_batch("q", vec![first[0].receipt.clone()])
            .await
            .unwrap();
        q.change_visibility("q", &first[0].receipt, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(
            q.counts("q"),
            QueueCounts {
                visible: 0,
                in_flight: 1,
                delayed: 0
            }
        );
        // Garbage receipts are ignored too.
        q.delete_batch("q", vec!["nonsense".into(), "1.x".into()])
            .await
            .unwrap();
        // The current receipt still works.
        q.delete_batch("q", vec![second[0].receipt.clone()])
            .await
            .unwrap();
        assert_eq!(q.counts("q"), QueueCounts::default());
    }

    #[tokio::test(start_paused = true)]
    async fn counts_follow_delays_and_visibility() {
        let q = MemoryQueue::new();
        let delayed = OutgoingMessage {
            delay: Duration::from_secs(5),
            ..msg("later", 0)
        };
        q.send_batch("q", vec![msg("now", 0), delayed])
            .await
            .unwrap();
        assert_eq!(
            q.counts("q"),
            QueueCounts {
                visible: 1,
                in_flight: 0,
                delayed: 1
            }
        );
        let got = q
            .receive("q", 10, Duration::from_secs(2), Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(
            q.counts("q"),
            QueueCounts {
                visible: 0,
                in_flight: 1,
                delayed: 1
            }
        );
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(
            q.counts("q"),
            QueueCounts {
                visible: 1,
                in_flight: 0,
                delayed: 1
            }
        );
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(
            q.counts("q"),
            QueueCounts {
                visible: 2,
                in_flight: 0,
                delayed: 0
            }
        );
        assert_eq!(q.counts("unknown"), QueueCounts::default());
    }

    #[tokio::test(start_paused = true)]
    async fn long_poll_wakes_when_a_delay_passes() {
        let q = MemoryQueue::new();
        let start = Instant::now();
        let delayed = OutgoingMessage {
            delay: Duration::from_secs(3),
            ..msg("later", 0)
        };
        q.send_batch("q", vec![delayed]).await.unwrap();
        let got = q
            .receive("q", 1, LONG, Duration::from_secs(20))
            .await
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test]
    async fn bodies_come_back_exactly_as_sent() {
        let id = uuid::Uuid::now_v7();
        let bodies = [
            format!(r#"{{"id":"{id}"}}"#),
            format!(r#"{{"id":"{}"}}"#, id.as_simple()),
            format!(r#"{{"id":"{}"}}"#, id.to_string().to_uppercase()),
            format!(r#"{{"id": "{id}"}}"#),
            format!(r#"{{"id":"{id}"}} "#),
            r#"{"id":""}"#.to_owned(),
            "plain text ✓".to_owned(),
        ];
        let content = |b: &String| Content::new(uuid::Uuid::nil(), b.clone(), BTreeMap::new());
        assert!(matches!(content(&bodies[0]), Content::Task(_)));
        assert!(
            bodies[1..]
                .iter()
                .all(|b| matches!(content(b), Content::Other(_)))
        );
        let q = MemoryQueue::new();
        let sent: Vec<_> = bodies.iter().map(|b| msg(b, 0)).collect();
        q.send_batch("q", sent).await.unwrap();
        let got = q.receive("q", 10, LONG, Duration::ZERO).await.unwrap();
        let got: Vec<_> = got.into_iter().map(|d| d.body).collect();
        assert_eq!(got, bodies);
    }

    #[tokio::test]
    async fn a_task_message_costs_40_bytes_and_keeps_its_id_and_attributes_apart() {
        // The backlog's cost per message, held to its figure.
        assert!(std::mem::size_of::<Ready>() <= 40);
        let id = uuid::Uuid::now_v7();
        let body = format!(r#"{{"id":"{id}"}}"#);
        let tagged = OutgoingMessage {
            attributes: BTreeMap::from([("topic".to_owned(), "t".to_owned())]),
            ..msg(&body, 0)
        };
        let q = MemoryQueue::new();
        q.send_batch("q", vec![msg(&body, 0), msg(&body, 0), tagged])
            .await
            .unwrap();
        let got = q.receive("q", 10, LONG, Duration::ZERO).await.unwrap();
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|d| d.body == body));
        let ids: std::collections::HashSet<_> = got.iter().map(|d| &d.message_id).collect();
        assert_eq!(ids.len(), 3, "message ids repeat: {got:?}");
        assert!(
            got.iter()
                .all(|d| uuid::Uuid::try_parse(&d.message_id).is_ok())
        );
        assert_eq!(
            got[2].attributes.get("topic").map(String::as_str),
            Some("t")
        );
    }

    #[tokio::test]
    async fn a_drained_backlog_gives_its_room_back() {
        let q = MemoryQueue::new();
        let backlog = 50_000;
        for chunk in 0..backlog / 10 {
            let batch = (0..10).map(|i| msg(&format!("m{chunk}-{i}"), 0)).collect();
            q.send_batch("q", batch).await.unwrap();
        }
        let room = || q.queue("q").lock().ready.capacity();
        assert!(room() >= backlog);
        let mut left = backlog;
        while left > 0 {
            let got = q.receive("q", 10, LONG, Duration::ZERO).await.unwrap();
            left -= got.len();
            q.delete_batch("q", got.into_iter().map(|d| d.receipt).collect())
                .await
                .unwrap();
        }
        assert!(room() <= 4096, "room for {} messages kept", room());
        assert_eq!(q.counts("q"), QueueCounts::default());
    }

    #[tokio::test]
    async fn passes_the_conformance_suite() {
        crate::testing::queue::run_all(|| async { Arc::new(MemoryQueue::new()) as Arc<dyn Queue> })
            .await;
    }
}
