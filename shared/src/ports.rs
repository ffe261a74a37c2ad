//! The only ways out of the core: the key-value table, the message queue, the
//! clock and outgoing HTTP. Adapters in [`crate::adapters`] plug a backend in;
//! the conformance suites in [`crate::testing`] hold every adapter to the same
//! semantics (those of DynamoDB and SQS, the strictest backend).

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// The most operations one [`Store::transact`] call may carry (DynamoDB's limit).
pub const MAX_TRANSACT_OPS: usize = 100;
/// The largest item a store accepts, in bytes of its JSON form (DynamoDB: 400 KiB).
pub const MAX_ITEM_BYTES: usize = 400 * 1024;
/// The largest message body a queue accepts (SQS: 256 KiB).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// The longest delay a queue can hold a message back (SQS DelaySeconds: 15 min).
pub const MAX_DELAY: Duration = Duration::from_secs(900);
/// The most messages one receive returns (SQS: 10).
pub const MAX_RECEIVE: usize = 10;

/// A secondary index of the single table. Items opt into an index by carrying a
/// key for it (sparse indexes, as DynamoDB GSIs); what each index means is
/// decided by the services that write the keys, not by the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Index {
    Gsi1,
    Gsi2,
    Gsi3,
    Gsi4,
    Gsi5,
    Gsi6,
}

impl Index {
    /// Every index, in order.
    pub const ALL: [Index; 6] = [
        Index::Gsi1,
        Index::Gsi2,
        Index::Gsi3,
        Index::Gsi4,
        Index::Gsi5,
        Index::Gsi6,
    ];

    /// The index name, also the prefix of its key attributes (`gsi1pk`, `gsi1sk`).
    pub fn name(self) -> &'static str {
        match self {
            Index::Gsi1 => "gsi1",
            Index::Gsi2 => "gsi2",
            Index::Gsi3 => "gsi3",
            Index::Gsi4 => "gsi4",
            Index::Gsi5 => "gsi5",
            Index::Gsi6 => "gsi6",
        }
    }
}

/// Partition and sort key of an item in the table or in one index.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub pk: String,
    pub sk: String,
}

impl Key {
    /// The key of partition `pk`, sort key `sk`.
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Key {
            pk: pk.into(),
            sk: sk.into(),
        }
    }
}

/// One change of the table, as its change stream reports it: its id, and
/// the item before and after it (`None`: absent). A stream shard's changes
/// come in the order they were made.
#[derive(Clone, Debug, PartialEq)]
pub struct ItemChange {
    pub id: String,
    pub before: Option<Item>,
    pub after: Option<Item>,
}

/// One item of the table.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    pub key: Key,
    /// Index memberships, at most one key per index.
    pub indexes: Vec<(Index, Key)>,
    /// Epoch seconds from which the item counts as deleted (DynamoDB native
    /// TTL). Stores may keep such items for a while: readers filter them.
    pub ttl: Option<i64>,
    /// The item's other attributes. Names `pk`, `sk`, `ttl` and `gsi*` are reserved.
    pub attrs: Map<String, Value>,
}

impl Item {
    /// An item with these attributes and no index, TTL or condition.
    pub fn new(key: Key, attrs: Map<String, Value>) -> Self {
        Item {
            key,
            indexes: Vec::new(),
            ttl: None,
            attrs,
        }
    }

    /// The item's key in `index`, if it is in it.
    pub fn index_key(&self, index: Index) -> Option<&Key> {
        self.indexes
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, k)| k)
    }

    /// True when the item's TTL has passed at `now` (epoch seconds).
    pub fn is_expired(&self, now: i64) -> bool {
        self.ttl.is_some_and(|t| t <= now)
    }
}

/// A condition on the current state of the item an operation writes.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    /// No condition.
    None,
    /// The item does not exist, or exists with a TTL at or before `now`
    /// (epoch seconds); an expired item is as good as absent.
    Absent { now: i64 },
    /// The item exists.
    Exists,
    /// The item exists and its attribute `attr` equals `value`.
    Equals { attr: String, value: Value },
}

impl Condition {
    /// Compare-and-set on an item's `version` attribute.
    pub fn version(v: u64) -> Self {
        Condition::Equals {
            attr: "version".into(),
            value: Value::from(v),
        }
    }
}

/// One write of a [`Store::transact`].
#[derive(Clone, Debug, PartialEq)]
pub enum WriteOp {
    /// Replace the whole item (its attributes, indexes and TTL).
    Put { item: Item, cond: Condition },
    /// Delete the item; deleting an absent item with [`Condition::None`] succeeds.
    Delete { key: Key, cond: Condition },
    /// Add signed deltas to numeric attributes, creating the item and missing
    /// attributes at zero (DynamoDB `ADD`). The item carries no index or TTL.
    Add {
        key: Key,
        deltas: Vec<(String, i64)>,
    },
}

impl WriteOp {
    /// The key of the item the operation writes.
    pub fn key(&self) -> &Key {
        match self {
            WriteOp::Put { item, .. } => &item.key,
            WriteOp::Delete { key, .. } | WriteOp::Add { key, .. } => key,
        }
    }
}

/// A range read of one partition of the table or of an index, in sort-key order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// `None` reads the table itself.
    pub index: Option<Index>,
    pub pk: String,
    /// Only sort keys strictly greater than this.
    pub after: Option<String>,
    /// Only sort keys strictly less than this.
    pub before: Option<String>,
    /// Highest sort key first.
    pub descending: bool,
    /// At most this many items (at least 1).
    pub limit: usize,
}

impl Query {
    /// A read of the table's partition `pk`, at most `limit` items.
    pub fn table(pk: impl Into<String>, limit: usize) -> Self {
        Query {
            index: None,
            pk: pk.into(),
            after: None,
            before: None,
            descending: false,
            limit,
        }
    }

    /// A read of partition `pk` of `index`, at most `limit` items.
    pub fn index(index: Index, pk: impl Into<String>, limit: usize) -> Self {
        Query {
            index: Some(index),
            ..Query::table(pk, limit)
        }
    }
}

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The condition of operation `op` (its position in the call) did not hold;
    /// nothing was written.
    #[error("condition failed on operation {op}")]
    Conflict { op: usize },
    /// The request breaks a limit or a rule of the store; nothing was written.
    #[error("invalid store request: {0}")]
    Invalid(String),
    /// The backend failed; whether anything was written is unknown.
    #[error("store unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// True for a lost compare-and-set: someone else changed the item first.
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }
}

/// The key-value table (DynamoDB's single-table model).
///
/// Strong consistency is promised for [`Store::get`] and table queries only;
/// index queries may lag writes (DynamoDB GSIs do), so a caller acts on an
/// item found through an index only after a conditional write.
#[async_trait]
pub trait Store: Send + Sync {
    /// The item at `key`, or `None`. Expired items may be returned: the caller
    /// decides with [`Item::is_expired`].
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError>;

    /// Apply up to [`MAX_TRANSACT_OPS`] operations atomically: all or nothing.
    /// No two operations may touch the same key (`Invalid`). A failed
    /// condition answers `Conflict` with the first failing operation. A
    /// write an adapter tries again after losing its answer, and whose
    /// earlier try landed, succeeds: it is not a conflict with itself.
    async fn transact(&self, ops: Vec<WriteOp>) -> Result<(), StoreError>;

    /// Unconditional puts of any number of items. Not atomic across items; a
    /// retry after an error is safe (each put is idempotent). Duplicate keys
    /// are `Invalid`.
    async fn put_batch(&self, items: Vec<Item>) -> Result<(), StoreError>;

    /// Items of one partition in sort-key order. Within an index the caller
    /// keeps sort keys unique per partition, so `after`/`before` make cursors.
    async fn query(&self, query: &Query) -> Result<Vec<Item>, StoreError>;

    /// Add 1 to the integer attribute `attr` of the item at `key` unless it
    /// is already at `limit` or above (an absent item or attribute counts as
    /// 0), creating the item if needed, set the item's TTL to `ttl` (epoch
    /// seconds) when given, and answer the new value; `Ok(None)` when the
    /// counter was at the limit (nothing written). One conditional write, so
    /// a limit holds across any number of concurrent callers: on DynamoDB an
    /// UpdateItem `SET ttl = :t ADD #a :one` under
    /// `attribute_not_exists(#a) OR #a < :limit`. The item's other
    /// attributes, its indexes and (when `ttl` is `None`) its TTL are kept.
    ///
    /// An item past its TTL is counted on, not reset: a store does not know
    /// "now" (DynamoDB deletes expired items lazily), so a caller puts the
    /// time window in the key (`rate#<client>#<minute>`) and uses the TTL
    /// only to have old windows cleaned up.
    ///
    /// `Invalid` (nothing written) for what [`WriteOp::Add`] refuses (an
    /// empty key, a reserved attribute name, an existing attribute that is
    /// not an integer) and for a `limit` below 1.
    async fn increment(
        &self,
        key: &Key,
        attr: &str,
        limit: i64,
        ttl: Option<i64>,
    ) -> Result<Option<i64>, StoreError>;
}

/// The most message attributes one message may carry (SQS: 10).
pub const MAX_MESSAGE_ATTRIBUTES: usize = 10;

/// A message to send.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub body: String,
    /// Held back this long before it can be received (at most [`MAX_DELAY`]).
    pub delay: Duration,
    /// Higher first, where the backend can order (best effort).
    pub priority: i32,
    /// String message attributes (SQS `MessageAttributes` of type `String`):
    /// at most [`MAX_MESSAGE_ATTRIBUTES`], names of 1-256 characters of
    /// `[A-Za-z0-9_.-]` (no leading, trailing or double `.`, no `AWS.` or
    /// `Amazon.` prefix), values not empty. Their bytes count toward
    /// [`MAX_MESSAGE_BYTES`], as SQS counts them.
    pub attributes: BTreeMap<String, String>,
}

impl OutgoingMessage {
    /// A message to receive at once, priority 0, no attributes.
    pub fn new(body: impl Into<String>) -> Self {
        OutgoingMessage {
            body: body.into(),
            ..Default::default()
        }
    }

    /// The same message with one more attribute.
    pub fn with_attribute(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.insert(name.into(), value.into());
        self
    }

    /// Its size as SQS counts it against [`MAX_MESSAGE_BYTES`]: the body,
    /// plus each attribute's name, data type (`String`) and value.
    pub fn size(&self) -> usize {
        self.body.len()
            + self
                .attributes
                .iter()
                .map(|(name, value)| name.len() + "String".len() + value.len())
                .sum::<usize>()
    }
}

/// A received message. It stays hidden from other receivers until its
/// visibility timeout passes; deleting it with its receipt acknowledges it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    pub message_id: String,
    pub receipt: String,
    pub body: String,
    /// How many times this message has been received, this time included.
    pub receive_count: u32,
    /// The string attributes it was sent with.
    pub attributes: BTreeMap<String, String>,
}

/// Why a queue call failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The request breaks a limit of the queue; nothing was sent.
    #[error("invalid queue request: {0}")]
    Invalid(String),
    /// The backend failed.
    #[error("queue unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A message queue with at-least-once delivery and visibility timeouts (SQS).
#[async_trait]
pub trait Queue: Send + Sync {
    /// Send any number of messages (chunked to the backend's batch limit).
    /// Each message (body and attributes, [`OutgoingMessage::size`]) is at
    /// most [`MAX_MESSAGE_BYTES`], each delay at most [`MAX_DELAY`], its
    /// attributes well-formed, else `Invalid` and nothing is sent.
    async fn send_batch(
        &self,
        queue: &str,
        messages: Vec<OutgoingMessage>,
    ) -> Result<(), QueueError>;

    /// Up to `max` (1..=[`MAX_RECEIVE`]) visible messages, each hidden for
    /// `visibility`; waits up to `wait` for the first one (long polling).
    async fn receive(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError>;

    /// Acknowledge received messages. Unknown or stale receipts are ignored.
    async fn delete_batch(&self, queue: &str, receipts: Vec<String>) -> Result<(), QueueError>;

    /// Hide a received message for `visibility` from now (0 makes it visible
    /// again at once). A stale receipt is ignored.
    async fn change_visibility(
        &self,
        queue: &str,
        receipt: &str,
        visibility: Duration,
    ) -> Result<(), QueueError>;
}

/// The time, and the chance that spreads retries over it; both injectable
/// for tests (a simulation replays a seed only if its jitter replays too).
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;

    /// A uniform number in [0, 1): the backoff jitter of a retry.
    fn jitter(&self) -> f64 {
        rand::random()
    }
}

/// An outgoing HTTP request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout: Duration,
}

/// The answer to an [`HttpRequest`], whatever its status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Why an outgoing request failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The destination is not allowed (private, loopback or metadata address
    /// not on the allow-list); nothing was sent.
    #[error("destination refused: {0}")]
    Blocked(String),
    /// The request itself is malformed (bad URL, method or header).
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("timed out")]
    Timeout,
    /// Connection, TLS or protocol failure.
    #[error("transport error: {0}")]
    Transport(String),
}

/// Outgoing HTTP with the safety rules applied (no private destinations).
#[async_trait]
pub trait HttpClient: Send + Sync {
    /// Send `request` and read the whole answer, or say why not.
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError>;
}
