//! The embedded [`Store`]: one redb database (a file, or memory for tests)
//! holding the single table and its indexes.
//!
//! All writes go through one writer thread that applies every queued request
//! in ONE redb transaction and commits once (group commit): a disk that does a
//! few dozen fsyncs a second still serves thousands of conditional writes a
//! second. Requests in a group are applied in order, each all or nothing, so
//! none observes another half-applied. Reads open redb read transactions
//! straight from the caller: a reply to a write is sent after its commit, so
//! any read begun after it sees the write.
//!
//! Layout (all keys compare as UTF-8 bytes, as DynamoDB sorts strings):
//! - `items`: `(pk, sk)` → record: a format byte, the TTL, the index keys,
//!   then the attributes as a JSON object. The binary header lets a write
//!   find the old index keys without parsing the attributes.
//! - `gsi1` … `gsi6`: `(index pk, index sk, pk, sk)` → `()`, one table per
//!   index. The item key in the tuple orders equal index sort keys and points
//!   back into `items`.
//! - `meta`: `"format"` → the layout version, so a future layout can refuse
//!   or migrate an old file instead of misreading it.

use std::fmt;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redb::{ReadableDatabase, ReadableTable, TableDefinition, TableHandle};
use serde_json::{Map, Value};
use tokio::sync::oneshot;

use crate::adapters::checks::{check_batch, check_increment, check_key, check_ops, check_size};
use crate::ports::{Condition, Index, Item, Key, Query, Store, StoreError, WriteOp};

/// How soon an acknowledged write is on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// A write is fsynced before it is acknowledged.
    Sync,
    /// A write is acknowledged once visible and reaches disk at most ~100 ms
    /// later (PostgreSQL's `synchronous_commit = off`): a crash may lose that
    /// window, never consistency. A clean shutdown loses nothing.
    Relaxed,
}

/// The embedded [`Store`] backed by redb.
///
/// Cheap to clone: clones share the database and its writer thread, which
/// stops (after making pending writes durable) when the last clone drops.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<Handle>,
    /// Taken on drop, so the writer sees the channel close and winds down.
    jobs: Option<mpsc::Sender<Job>>,
    /// Joined on drop, so the file lock is released when the store is gone
    /// (a reopen right after a drop must succeed).
    writer: Option<JoinHandle<()>>,
    path: Option<PathBuf>,
    durability: Durability,
}

/// Makes the store's database, again after an I/O failure.
type Opener = Box<dyn Fn() -> Result<redb::Database, redb::DatabaseError> + Send + Sync>;

/// The database readers use, or why there is none: after an I/O failure
/// (a full disk) redb fails every later call until the file is reopened,
/// which the writer does (see `reopen`). An uncontended read lock per read
/// transaction, beside the locks redb takes to begin one; writes take none.
struct Handle(RwLock<Result<Arc<redb::Database>, Arc<BackendError>>>);

impl Handle {
    fn new(db: Arc<redb::Database>) -> Handle {
        Handle(RwLock::new(Ok(db)))
    }

    fn get(&self) -> Result<Arc<redb::Database>, StoreError> {
        match &*self.0.read().unwrap_or_else(PoisonError::into_inner) {
            Ok(db) => Ok(db.clone()),
            Err(why) => Err(StoreError::Unavailable(Box::new(why.clone()))),
        }
    }

    fn set(&self, db: Result<Arc<redb::Database>, Arc<BackendError>>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = db;
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!("the store writer thread panicked");
        }
    }
}

impl fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.inner.path)
            .field("durability", &self.inner.durability)
            .finish()
    }
}

/// `(pk, sk)`.
type ItemKey = (&'static str, &'static str);
/// `(index pk, index sk, pk, sk)`.
type IndexKey = (&'static str, &'static str, &'static str, &'static str);
const ITEMS: TableDefinition<ItemKey, &[u8]> = TableDefinition::new("items");
const INDEXES: [TableDefinition<IndexKey, ()>; 6] = [
    TableDefinition::new("gsi1"),
    TableDefinition::new("gsi2"),
    TableDefinition::new("gsi3"),
    TableDefinition::new("gsi4"),
    TableDefinition::new("gsi5"),
    TableDefinition::new("gsi6"),
];
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const LAYOUT_VERSION: u64 = 1;

/// Operations per group commit (soft: a group closes once it reaches this),
/// so one commit stays short and replies keep flowing under heavy load.
const GROUP_OPS: usize = 10_000;
/// Items per writer request of a `put_batch`, so a huge batch interleaves
/// with other writers instead of holding the writer for its whole length.
const BATCH_CHUNK: usize = 5_000;
/// Longest silence while a group gathers (see `gather`): callers who
/// have not sent their next request by then are not about to.
const GATHER_GAP: Duration = Duration::from_micros(250);
/// redb's page cache (its default is 1 GiB). The kernel's page cache holds
/// the file anyway, and the hot pages of task writes are few (ids are
/// time-ordered, so inserts land on the right edges of the trees). A cache
/// that grows to a gigabyte only costs memory and fresh-page faults:
/// batch enqueue on a store of 200k tasks measured 32-37k tasks/s with it,
/// 41-56k with 64 MiB (docs/BENCHMARKS.md); 8 MiB against 64 MiB, and 4
/// against 8, moved neither enqueue nor end-to-end rates beyond the noise,
/// and 4 MiB keeps warren under 40 MiB once idle (docs/RELIABILITY.md,
/// "Memory").
pub const DEFAULT_CACHE_BYTES: usize = 4 << 20;

/// Create the store file readable by its owner only (0600), or make an
/// existing one so: it holds every task, result and (hashed) key. redb
/// initialises an empty file as a new database.
fn restrict_to_owner(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        options.open(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
    }
    #[cfg(not(unix))]
    options.open(path).map(|_| ())
}

impl EmbeddedStore {
    /// Opens (creating it and its parent directories if needed) the store
    /// file at `path`. Fails if another process has it open, or with one
    /// line naming the file and what to do if it is damaged, not a warren
    /// store, or not readable and writable.
    pub fn open(path: &Path, durability: Durability) -> Result<EmbeddedStore, StoreError> {
        Self::open_cached(path, durability, DEFAULT_CACHE_BYTES)
    }

    /// [`EmbeddedStore::open`] with a page cache of at most `cache_bytes`
    /// (the bulk of the memory the store keeps once it is warm).
    pub fn open_cached(
        path: &Path,
        durability: Durability,
        cache_bytes: usize,
    ) -> Result<EmbeddedStore, StoreError> {
        let file = path.to_path_buf();
        let opener: Opener = Box::new(move || {
            redb::Builder::new()
                .set_cache_size(cache_bytes)
                .create(&file)
        });
        Self::open_with(path, durability, opener)
    }

    /// [`EmbeddedStore::open`] with the database made by `opener`, which the
    /// writer calls again to reopen the file after an I/O failure.
    fn open_with(
        path: &Path,
        durability: Durability,
        opener: Opener,
    ) -> Result<EmbeddedStore, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                start_error(path, &e).unwrap_or_else(|| {
                    unavailable(format!("creating directory {}", parent.display()), e)
                })
            })?;
        }
        restrict_to_owner(path).map_err(|e| {
            start_error(path, &e).unwrap_or_else(|| {
                unavailable(format!("creating store file {}", path.display()), e)
            })
        })?;
        let db = guarded(|| {
            let db = opener().map_err(|e| open_error(path, e))?;
            init_tables(&db).map_err(|e| match e {
                Init::Foreign(tables) => foreign(path, &tables),
                Init::Store(e) => e,
            })?;
            Ok(db)
        })
        .map_err(|e| match e {
            Guarded::Failed(e) => e,
            Guarded::Panicked(why) => damaged(path, &why),
        })?;
        Self::start(db, durability, Some(path.to_path_buf()), Some(opener))
    }

    /// A fresh store in memory (for tests), on the same code path as a file.
    ///
    /// # Panics
    /// If the process cannot start a thread or allocate the empty database.
    pub fn in_memory() -> EmbeddedStore {
        let db = redb::Builder::new()
            .set_cache_size(16 << 20)
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .expect("an empty in-memory redb database opens");
        if init_tables(&db).is_err() {
            panic!("the tables of an empty in-memory database are created");
        }
        Self::start(db, Durability::Sync, None, None).expect("the in-memory store starts")
    }

    /// Makes every acknowledged write durable before returning (for shutdown
    /// in [`Durability::Relaxed`]; under `Sync` it only waits for the writes
    /// already queued).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.submit(Work::Flush).await.map(drop)
    }

    fn start(
        db: redb::Database,
        durability: Durability,
        path: Option<PathBuf>,
        opener: Option<Opener>,
    ) -> Result<EmbeddedStore, StoreError> {
        let db = Arc::new(Handle::new(Arc::new(db)));
        let (jobs, queue) = mpsc::channel();
        let writer_db = db.clone();
        let writer = std::thread::Builder::new()
            .name("warren-store-writer".into())
            .spawn(move || writer_loop(&writer_db, opener.as_ref(), &queue, durability))
            .map_err(|e| unavailable("starting the store writer thread", e))?;
        Ok(EmbeddedStore {
            inner: Arc::new(Inner {
                db,
                jobs: Some(jobs),
                writer: Some(writer),
                path,
                durability,
            }),
        })
    }

    fn send(&self, work: Work) -> Result<oneshot::Receiver<Outcome>, StoreError> {
        let (reply, answer) = oneshot::channel();
        let jobs = self.inner.jobs.as_ref().ok_or_else(writer_gone)?;
        let sent = Instant::now();
        jobs.send(Job { work, reply, sent })
            .map_err(|_| writer_gone())?;
        Ok(answer)
    }

    async fn submit(&self, work: Work) -> Outcome {
        self.send(work)?.await.map_err(|_| writer_gone())?
    }

    fn read(&self) -> Result<Reader, StoreError> {
        let txn = self
            .inner
            .db
            .get()?
            .begin_read()
            .map_err(|e| unavailable("beginning a read", e))?;
        let items = txn
            .open_table(ITEMS)
            .map_err(|e| unavailable("opening the items table", e))?;
        Ok(Reader { txn, items })
    }
}

/// Why [`init_tables`] failed.
enum Init {
    /// The file is a redb database of another program: its tables.
    Foreign(String),
    Store(StoreError),
}

impl From<StoreError> for Init {
    fn from(e: StoreError) -> Self {
        Init::Store(e)
    }
}

/// Creates every table up front, so read transactions always find them.
/// Refuses a database that holds tables but not warren's `meta`, or warren's
/// table names with other types: another program's file, which warren
/// would otherwise fill with its own tables.
fn init_tables(db: &redb::Database) -> Result<(), Init> {
    let txn = db
        .begin_write()
        .map_err(|e| unavailable("initialising the store", e))?;
    let tables: Vec<String> = txn
        .list_tables()
        .map_err(|e| unavailable("listing the store tables", e))?
        .map(|t| t.name().to_string())
        .collect();
    if !tables.is_empty() && !tables.iter().any(|t| t == "meta") {
        return Err(Init::Foreign(tables.join(", ")));
    }
    {
        let init = |e: redb::TableError| match e {
            redb::TableError::TableTypeMismatch { .. } | redb::TableError::TableIsMultimap(_) => {
                Init::Foreign(tables.join(", "))
            }
            e => Init::Store(unavailable("creating the store tables", e)),
        };
        txn.open_table(ITEMS).map_err(init)?;
        for def in INDEXES {
            txn.open_table(def).map_err(init)?;
        }
        let mut meta = txn.open_table(META).map_err(init)?;
        let found = meta
            .get("format")
            .map_err(|e| unavailable("reading the store format", e))?
            .map(|v| v.value());
        match found {
            Some(LAYOUT_VERSION) => {}
            None => {
                meta.insert("format", LAYOUT_VERSION)
                    .map_err(|e| unavailable("writing the store format", e))?;
            }
            Some(other) => {
                return Err(Init::Store(StoreError::Unavailable(
                    format!("store file has layout version {other}; this warren reads version {LAYOUT_VERSION}").into(),
                )));
            }
        }
    }
    txn.commit()
        .map_err(|e| Init::Store(unavailable("initialising the store", e)))
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        check_key(key).map_err(StoreError::Invalid)?;
        let reader = self.read()?;
        reader.item(key.clone())
    }

    async fn transact(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        let ops = prepare_transact(ops)?;
        self.submit(Work::Transact(ops)).await.map(drop)
    }

    async fn put_batch(&self, items: Vec<Item>) -> Result<(), StoreError> {
        if items.is_empty() {
            return Ok(());
        }
        check_batch(&items)?;
        let mut puts = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            puts.push(
                prepare_put(item).map_err(|m| StoreError::Invalid(format!("item {i}: {m}")))?,
            );
        }
        // Send every chunk before awaiting any, so they share group commits.
        let mut answers = Vec::with_capacity(puts.len().div_ceil(BATCH_CHUNK));
        let mut puts = puts.into_iter();
        loop {
            let chunk: Vec<PreparedPut> = puts.by_ref().take(BATCH_CHUNK).collect();
            if chunk.is_empty() {
                break;
            }
            answers.push(self.send(Work::Puts(chunk))?);
        }
        for answer in answers {
            answer.await.map_err(|_| writer_gone())??;
        }
        Ok(())
    }

    async fn query(&self, query: &Query) -> Result<Vec<Item>, StoreError> {
        if query.limit == 0 {
            return Err(StoreError::Invalid("query limit must be at least 1".into()));
        }
        if query.pk.is_empty() {
            return Err(StoreError::Invalid("query partition key is empty".into()));
        }
        let reader = self.read()?;
        match query.index {
            None => reader.table_query(query),
            Some(index) => reader.index_query(index, query),
        }
    }

    async fn increment(
        &self,
        key: &Key,
        attr: &str,
        limit: i64,
        ttl: Option<i64>,
    ) -> Result<Option<i64>, StoreError> {
        check_increment(key, attr, limit)?;
        let work = Work::Increment {
            key: key.clone(),
            attr: attr.to_owned(),
            limit,
            ttl,
        };
        match self.submit(work).await? {
            Done::Counted(count) => Ok(count),
            Done::Written => Err(StoreError::Unavailable(
                "the store writer answered an increment without a count".into(),
            )),
        }
    }
}

// ---------------------------------------------------------------------------
// Reads

struct Reader {
    txn: redb::ReadTransaction,
    items: redb::ReadOnlyTable<ItemKey, &'static [u8]>,
}

impl Reader {
    fn item(&self, key: Key) -> Result<Option<Item>, StoreError> {
        let found = self
            .items
            .get((key.pk.as_str(), key.sk.as_str()))
            .map_err(|e| unavailable("reading an item", e))?;
        match found {
            None => Ok(None),
            Some(record) => decode_item(key, record.value()).map(Some),
        }
    }

    fn table_query(&self, query: &Query) -> Result<Vec<Item>, StoreError> {
        let pk = query.pk.as_str();
        let (lower, upper) = (lower_bound(query.after.as_deref()), upper_bound(pk));
        if query.before.as_deref().is_some_and(|b| lower.as_str() >= b) {
            return Ok(Vec::new());
        }
        let end = match query.before.as_deref() {
            Some(b) => Bound::Excluded((pk, b)),
            None => Bound::Excluded((upper.as_str(), "")),
        };
        let range = self
            .items
            .range::<(&str, &str)>((Bound::Included((pk, lower.as_str())), end))
            .map_err(|e| unavailable("reading a partition", e))?;
        let mut out = Vec::with_capacity(query.limit.min(256));
        for entry in ordered(range, query.descending) {
            if out.len() == query.limit {
                break;
            }
            let (key, record) = entry.map_err(|e| unavailable("reading a partition", e))?;
            let (pk, sk) = key.value();
            out.extend(readable(decode_item(Key::new(pk, sk), record.value())));
        }
        Ok(out)
    }

    fn index_query(&self, index: Index, query: &Query) -> Result<Vec<Item>, StoreError> {
        let table = self
            .txn
            .open_table(INDEXES[slot(index)])
            .map_err(|e| unavailable("opening an index table", e))?;
        let ipk = query.pk.as_str();
        let (lower, upper) = (lower_bound(query.after.as_deref()), upper_bound(ipk));
        if query.before.as_deref().is_some_and(|b| lower.as_str() >= b) {
            return Ok(Vec::new());
        }
        let end = match query.before.as_deref() {
            Some(b) => Bound::Excluded((ipk, b, "", "")),
            None => Bound::Excluded((upper.as_str(), "", "", "")),
        };
        let range = table
            .range::<(&str, &str, &str, &str)>((
                Bound::Included((ipk, lower.as_str(), "", "")),
                end,
            ))
            .map_err(|e| unavailable("reading an index", e))?;
        let mut out = Vec::with_capacity(query.limit.min(256));
        for entry in ordered(range, query.descending) {
            if out.len() == query.limit {
                break;
            }
            let (key, _) = entry.map_err(|e| unavailable("reading an index", e))?;
            let (_, _, pk, sk) = key.value();
            // Index and items are written in the same transaction, so a miss
            // means a damaged file; skipping keeps the rest readable.
            let found = self
                .items
                .get((pk, sk))
                .map_err(|e| unavailable("reading an item", e))?;
            if let Some(record) = found {
                out.extend(readable(decode_item(Key::new(pk, sk), record.value())));
            }
        }
        Ok(out)
    }
}

/// An item a query returns, or nothing for one that cannot be decoded: a
/// damaged item is reported and skipped, so it cannot stop every list, the
/// scheduler and start-up recovery that read past it (a `get` of it still
/// fails).
fn readable(decoded: Result<Item, StoreError>) -> Option<Item> {
    decoded
        .inspect_err(|e| tracing::error!(error = %e, "skipping a damaged item"))
        .ok()
}

/// The smallest sort key a query reads: just past `after` (appending NUL
/// gives the next string in byte order), or the very first.
fn lower_bound(after: Option<&str>) -> String {
    match after {
        Some(a) => {
            let mut s = String::with_capacity(a.len() + 1);
            s.push_str(a);
            s.push('\0');
            s
        }
        None => String::new(),
    }
}

/// The first partition key after `pk`: every key of `pk`'s partition sorts below it.
fn upper_bound(pk: &str) -> String {
    lower_bound(Some(pk))
}

fn ordered<'a, I>(range: I, descending: bool) -> Box<dyn Iterator<Item = I::Item> + 'a>
where
    I: DoubleEndedIterator + 'a,
{
    if descending {
        Box::new(range.rev())
    } else {
        Box::new(range)
    }
}

// ---------------------------------------------------------------------------
// Validation and encoding, done by the caller so the single writer only writes

struct PreparedPut {
    key: Key,
    /// Sorted by index, unique.
    indexes: Vec<(Index, Key)>,
    record: Vec<u8>,
}

enum Prepared {
    Put {
        put: PreparedPut,
        cond: Condition,
    },
    Delete {
        key: Key,
        cond: Condition,
    },
    Add {
        key: Key,
        deltas: Vec<(String, i64)>,
    },
}

fn prepare_transact(ops: Vec<WriteOp>) -> Result<Vec<Prepared>, StoreError> {
    check_ops(&ops)?;
    let mut prepared = Vec::with_capacity(ops.len());
    for (i, op) in ops.into_iter().enumerate() {
        let op = match op {
            WriteOp::Put { item, cond } => prepare_put(item).map(|put| Prepared::Put { put, cond }),
            WriteOp::Delete { key, cond } => Ok(Prepared::Delete { key, cond }),
            WriteOp::Add { key, deltas } => Ok(Prepared::Add { key, deltas }),
        };
        prepared.push(op.map_err(|m| StoreError::Invalid(format!("operation {i}: {m}")))?);
    }
    Ok(prepared)
}

/// A checked item, its indexes in order and its record encoded.
fn prepare_put(item: Item) -> Result<PreparedPut, String> {
    let mut indexes = item.indexes;
    indexes.sort_by_key(|(index, _)| *index);
    let record = encode_record(&item.key, item.ttl, &indexes, &item.attrs)?;
    Ok(PreparedPut {
        key: item.key,
        indexes,
        record,
    })
}

/// Record format: version byte, flags (bit 0: has TTL), TTL (i64 LE), index
/// count, then per index its number and both keys (u32 LE length + UTF-8),
/// then the attributes as a JSON object.
const RECORD_FORMAT: u8 = 1;
const HAS_TTL: u8 = 1;

/// Encodes a record, refusing items over [`MAX_ITEM_BYTES`] in their JSON form.
fn encode_record(
    key: &Key,
    ttl: Option<i64>,
    indexes: &[(Index, Key)],
    attrs: &Map<String, Value>,
) -> Result<Vec<u8>, String> {
    let mut buf = Vec::with_capacity(256);
    buf.push(RECORD_FORMAT);
    buf.push(if ttl.is_some() { HAS_TTL } else { 0 });
    if let Some(t) = ttl {
        buf.extend_from_slice(&t.to_le_bytes());
    }
    // At most one key per index: fewer than 256 always.
    buf.push(indexes.len() as u8);
    for (index, k) in indexes {
        buf.push(slot(*index) as u8 + 1);
        for part in [&k.pk, &k.sk] {
            buf.extend_from_slice(&(part.len() as u32).to_le_bytes());
            buf.extend_from_slice(part.as_bytes());
        }
    }
    let header = buf.len();
    serde_json::to_writer(&mut buf, attrs).map_err(|e| format!("attributes do not encode: {e}"))?;
    check_size(key, ttl, indexes, buf.len() - header)?;
    Ok(buf)
}

/// A record's header decoded, its attributes left as JSON.
struct RecordView<'a> {
    ttl: Option<i64>,
    indexes: Vec<(Index, Key)>,
    attrs: &'a [u8],
}

impl<'a> RecordView<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self, &'static str> {
        let mut r = Cursor { bytes };
        if r.take(1)?[0] != RECORD_FORMAT {
            return Err("unknown record format");
        }
        let flags = r.take(1)?[0];
        let ttl = if flags & HAS_TTL != 0 {
            let raw: [u8; 8] = r.take(8)?.try_into().map_err(|_| "truncated record")?;
            Some(i64::from_le_bytes(raw))
        } else {
            None
        };
        let count = r.take(1)?[0];
        let mut indexes = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let number = r.take(1)?[0] as usize;
            let index = *number
                .checked_sub(1)
                .and_then(|n| Index::ALL.get(n))
                .ok_or("unknown index in record")?;
            let pk = r.string()?;
            let sk = r.string()?;
            indexes.push((index, Key::new(pk, sk)));
        }
        Ok(RecordView {
            ttl,
            indexes,
            attrs: r.bytes,
        })
    }

    fn attrs(&self) -> Result<Map<String, Value>, &'static str> {
        serde_json::from_slice(self.attrs).map_err(|_| "attributes are not a JSON object")
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if self.bytes.len() < n {
            return Err("truncated record");
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn string(&mut self) -> Result<&'a str, &'static str> {
        let raw: [u8; 4] = self.take(4)?.try_into().map_err(|_| "truncated record")?;
        let len = u32::from_le_bytes(raw) as usize;
        std::str::from_utf8(self.take(len)?).map_err(|_| "index key is not UTF-8")
    }
}

fn decode_item(key: Key, bytes: &[u8]) -> Result<Item, StoreError> {
    let view = RecordView::parse(bytes).map_err(|e| corrupt(&key, e))?;
    let attrs = view.attrs().map_err(|e| corrupt(&key, e))?;
    Ok(Item {
        key,
        indexes: view.indexes,
        ttl: view.ttl,
        attrs,
    })
}

fn slot(index: Index) -> usize {
    match index {
        Index::Gsi1 => 0,
        Index::Gsi2 => 1,
        Index::Gsi3 => 2,
        Index::Gsi4 => 3,
        Index::Gsi5 => 4,
        Index::Gsi6 => 5,
    }
}

// ---------------------------------------------------------------------------
// The writer

struct Job {
    work: Work,
    reply: oneshot::Sender<Outcome>,
    /// When it was queued, which tells a caller who waited through the last
    /// commit from one who came back after it (see `gather`).
    sent: Instant,
}

enum Work {
    Transact(Vec<Prepared>),
    Puts(Vec<PreparedPut>),
    /// A checked [`Store::increment`].
    Increment {
        key: Key,
        attr: String,
        limit: i64,
        ttl: Option<i64>,
    },
    /// Forces the group's commit to be durable.
    Flush,
}

impl Work {
    fn ops(&self) -> usize {
        match self {
            Work::Transact(ops) => ops.len(),
            Work::Puts(puts) => puts.len(),
            Work::Increment { .. } | Work::Flush => 1,
        }
    }
}

/// What the writer answers a request.
type Outcome = Result<Done, StoreError>;

/// A request the writer applied.
enum Done {
    /// Written (for a flush: made durable).
    Written,
    /// An increment's new value, or `None` at its limit (nothing written).
    Counted(Option<i64>),
}

/// Owns every write: drains the queue into a group, applies it in one redb
/// transaction, commits once, replies to all. After an I/O failure it
/// reopens the file (with `opener`; a store in memory has none).
/// How often an idle writer wakes to see whether the process went quiet
/// (and gives back the memory its commits left behind).
const IDLE_CHECK: Duration = Duration::from_secs(1);

fn writer_loop(
    current: &Handle,
    opener: Option<&Opener>,
    queue: &mpsc::Receiver<Job>,
    durability: Durability,
) {
    let Ok(mut db) = current.get() else {
        return;
    };
    let mut flusher = Flusher::new();
    let mut last = LastCommit::none();
    loop {
        let first = match flusher.deadline() {
            None => match queue.recv_timeout(IDLE_CHECK) {
                Ok(job) => job,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    crate::runtime::idle::on_park();
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            },
            Some(deadline) => {
                match queue.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(job) => job,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        let started = Instant::now();
                        match durable_commit(&db) {
                            Ok(()) => {
                                let ended = Instant::now();
                                let held = ended - started;
                                tracing::trace!(total_us = held.as_micros() as u64, "store flush");
                                flusher.committed(0, true, ended, held);
                            }
                            Err(e) => {
                                tracing::error!(error = %e, "store flush failed; retrying");
                                flusher.retry_later();
                                if let Some(opener) = opener.filter(|_| e.is_io()) {
                                    let Some(opened) = reopen(current, opener, queue, db, e) else {
                                        return;
                                    };
                                    db = opened;
                                    // The commits it had not made durable are gone with the
                                    // old handle, as a crash would lose them.
                                    flusher = Flusher::new();
                                    last = LastCommit::none();
                                }
                            }
                        }
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
        };
        let mut ops = first.work.ops();
        let mut group = vec![first];
        while ops < GROUP_OPS {
            match queue.try_recv() {
                Ok(job) => {
                    ops += job.work.ops();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        // Only worth it when a commit costs an fsync: a relaxed commit is
        // cheap, and waiting would only add latency.
        if durability == Durability::Sync {
            gather(queue, &mut group, &mut ops, &last);
        }
        let callers = group.len();
        let durable = match durability {
            Durability::Sync => true,
            Durability::Relaxed => {
                flusher.due(ops, Instant::now())
                    || group.iter().any(|job| matches!(job.work, Work::Flush))
            }
        };
        let (works, replies): (Vec<Work>, Vec<_>) =
            group.into_iter().map(|job| (job.work, job.reply)).unzip();
        // Relaxed only asks for durability to flush earlier commits, so that
        // group must commit even if it writes nothing itself.
        let force = durable && durability == Durability::Relaxed;
        let started = Instant::now();
        match commit_group(&db, works, durable, force) {
            Ok((outcomes, synced)) => {
                if let Some(sync) = synced {
                    last = LastCommit::new(callers, ops, started, sync);
                    let held = last.ended - started;
                    tracing::trace!(
                        callers,
                        ops,
                        durable,
                        commit_us = sync.as_micros() as u64,
                        total_us = held.as_micros() as u64,
                        "store group commit"
                    );
                    flusher.committed(ops, durable, last.ended, held);
                }
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    // The caller may have stopped waiting; the write stands.
                    let _ = reply.send(outcome);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "store group commit failed");
                let io = e.is_io();
                let e = Arc::new(e);
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Unavailable(Box::new(e.clone()))));
                }
                if let Some(opener) = opener.filter(|_| io) {
                    let Some(opened) = reopen(current, opener, queue, db, e) else {
                        return;
                    };
                    db = opened;
                    flusher = Flusher::new();
                    last = LastCommit::none();
                }
            }
        }
    }
    // Clean shutdown: nothing acknowledged is left only in memory.
    if flusher.deadline().is_some()
        && let Err(e) = durable_commit(&db)
    {
        tracing::error!(error = %e, "store flush at shutdown failed");
    }
}

/// The first wait before reopening the store file after an I/O failure
/// (it doubles up to [`REOPEN_MAX`]): redb fails every call on a handle
/// that saw one, so only a new handle can tell that space has come back.
const REOPEN_FIRST: Duration = Duration::from_millis(10);
/// The longest wait between two attempts to reopen the store file.
const REOPEN_MAX: Duration = Duration::from_secs(1);

/// After an I/O failure `why` (a full disk, a read-only remount), drops the
/// failed handle and opens the file again, retrying until it opens (redb
/// repairs it on open: nothing a failed commit began is kept). Meanwhile
/// readers and writers get `why` (or the last reopen's failure). `None`
/// when the store is dropped meanwhile.
fn reopen(
    current: &Handle,
    opener: &Opener,
    queue: &mpsc::Receiver<Job>,
    db: Arc<redb::Database>,
    why: impl Into<Arc<BackendError>>,
) -> Option<Arc<redb::Database>> {
    let mut why = why.into();
    current.set(Err(why.clone()));
    // Readers in flight still hold the old handle; until they let go its
    // file lock stays and a reopen fails with `DatabaseAlreadyOpen`.
    drop(db);
    let mut delay = REOPEN_FIRST;
    loop {
        match guarded(|| Ok(opener())) {
            Ok(Ok(db)) => {
                let db = Arc::new(db);
                current.set(Ok(db.clone()));
                tracing::warn!(after = %why, "store file reopened after an I/O failure");
                return Some(db);
            }
            Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => {}
            Ok(Err(e)) => {
                why = Arc::new(BackendError::new("reopening the store file", e));
                current.set(Err(why.clone()));
            }
            Err(failed) => {
                let what = match failed {
                    Guarded::Failed(e) => e.to_string(),
                    Guarded::Panicked(message) => message,
                };
                why = Arc::new(BackendError::new(
                    "reopening the store file",
                    redb::Error::Corrupted(what),
                ));
                current.set(Err(why.clone()));
            }
        }
        let until = Instant::now() + delay;
        loop {
            match queue.recv_timeout(until.saturating_duration_since(Instant::now())) {
                Ok(job) => {
                    let _ = job
                        .reply
                        .send(Err(StoreError::Unavailable(Box::new(why.clone()))));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
            }
        }
        delay = (delay * 2).min(REOPEN_MAX);
    }
}

/// Relaxed mode: when the writer makes its non-durable commits durable. At
/// the latest [`FLUSH_DELAY`] after the first of them (the window a crash
/// may lose), and sooner once [`FLUSH_OPS`] operations wait: redb keeps the
/// pages of non-durable commits in memory and writes them all in the durable
/// commit, which holds the writer meanwhile, so the stall grows with what
/// waits (6-8 ms after 100 ms at 30k enqueues/s, 2 ms after 1,000
/// operations; docs/BENCHMARKS.md). An early flush waits until the writer
/// has run [`FLUSH_SPACING`] times as long as the last flush took, so a disk
/// slow to sync is not flushed more often than the window asks (PostgreSQL's
/// WAL writer has the same two triggers, `wal_writer_delay` and
/// `wal_writer_flush_after`, without stalling its writers).
struct Flusher {
    /// Since when a non-durable commit has been waiting for a durable one.
    since: Option<Instant>,
    /// Operations committed since the last durable commit.
    ops: usize,
    /// The earliest an early flush may come: the last durable commit's end,
    /// plus [`FLUSH_SPACING`] times how long it held the writer.
    early_from: Instant,
}

/// Longest relaxed window: a non-durable commit is followed by a durable one
/// at most this much later.
const FLUSH_DELAY: Duration = Duration::from_millis(100);
/// Operations after which a durable commit comes early.
const FLUSH_OPS: usize = 1_000;
/// An early durable commit waits until this many times the last one's
/// duration has passed since it ended.
const FLUSH_SPACING: u32 = 8;

impl Flusher {
    fn new() -> Flusher {
        Flusher {
            since: None,
            ops: 0,
            early_from: Instant::now(),
        }
    }

    /// When a flush is due if nothing else is written: `None` when nothing waits.
    fn deadline(&self) -> Option<Instant> {
        self.since.map(|since| since + FLUSH_DELAY)
    }

    /// Whether a group of `ops` operations committing at `now` must be durable.
    fn due(&self, ops: usize, now: Instant) -> bool {
        self.deadline().is_some_and(|d| now >= d)
            || (self.ops + ops >= FLUSH_OPS && now >= self.early_from)
    }

    /// A flush failed: try again a window later, not in a tight loop.
    fn retry_later(&mut self) {
        self.since = Some(Instant::now());
    }

    /// A commit of `ops` operations ended at `ended`, having held the writer for `held`.
    fn committed(&mut self, ops: usize, durable: bool, ended: Instant, held: Duration) {
        if durable {
            self.since = None;
            self.ops = 0;
            self.early_from = ended + held * FLUSH_SPACING;
        } else {
            self.since.get_or_insert(ended);
            self.ops += ops;
        }
    }
}

/// What the writer learnt from its last commit, to size the next gather.
struct LastCommit {
    /// Callers it answered.
    callers: usize,
    /// When it ended.
    ended: Instant,
    /// How long the commit itself took: under `Sync`, the fsync.
    sync: Duration,
    /// How long applying the group took, per operation.
    apply_per_op: Duration,
}

impl LastCommit {
    /// Before any commit: nothing to wait for.
    fn none() -> LastCommit {
        LastCommit {
            callers: 0,
            ended: Instant::now(),
            sync: Duration::ZERO,
            apply_per_op: Duration::ZERO,
        }
    }

    fn new(callers: usize, ops: usize, started: Instant, sync: Duration) -> LastCommit {
        let ended = Instant::now();
        let ops = u32::try_from(ops.max(1)).unwrap_or(u32::MAX);
        LastCommit {
            callers,
            ended,
            sync,
            apply_per_op: (ended - started).saturating_sub(sync) / ops,
        }
    }

    /// Whether a group of `ops` operations should wait for more: not once
    /// its own work outweighs the fsync it would share.
    fn worth_waiting(&self, ops: usize) -> bool {
        ops < GROUP_OPS
            && self
                .apply_per_op
                .saturating_mul(u32::try_from(ops).unwrap_or(u32::MAX))
                < self.sync
    }
}

/// Sync mode: before a group commits, waits for the callers the last commit
/// released, who are usually about to send their next request, so that they
/// join those who queued during that commit (sent before it ended: a caller
/// who came back after it is one of the released, not one more). Without
/// it two cohorts take turns at the disk, and every caller waits two fsyncs
/// instead of one (on a slow disk they trickle back over milliseconds of
/// HTTP work). The waits scale with the fsync, the cost a merge saves: at
/// most half an fsync for the first caller back (a full round trip), then
/// gaps of an eighth (at most [`GATHER_GAP`]). On a fast disk they are tens
/// of microseconds, so a writer busy applying big batches does not sit idle
/// (a wait scaled by the whole commit cost batch enqueue 20%).
fn gather(queue: &mpsc::Receiver<Job>, group: &mut Vec<Job>, ops: &mut usize, last: &LastCommit) {
    let queued_during = group.iter().filter(|job| job.sent < last.ended).count();
    let expected = queued_during + last.callers;
    let deadline = Instant::now() + last.sync / 2;
    let gap = (last.sync / 8).min(GATHER_GAP);
    let mut arrived = false;
    while group.len() < expected && last.worth_waiting(*ops) {
        let mut wait = deadline.saturating_duration_since(Instant::now());
        if arrived {
            wait = wait.min(gap);
        }
        match queue.recv_timeout(wait) {
            Ok(job) => {
                arrived = true;
                *ops += job.work.ops();
                group.push(job);
            }
            Err(_) => break,
        }
    }
}

/// An empty durable commit: makes every earlier non-durable commit durable.
fn durable_commit(db: &redb::Database) -> Result<(), BackendError> {
    let txn = db
        .begin_write()
        .map_err(|e| BackendError::new("beginning a flush", e))?;
    txn.commit()
        .map_err(|e| BackendError::new("committing a flush", e))
}

/// Each request's outcome in a group, in order.
type Outcomes = Vec<Outcome>;

/// Applies a group and commits it, unless nothing was written and `force`
/// is off (a group of failed conditions costs no fsync). Returns each
/// request's outcome and, if a commit happened, how long the commit itself
/// took (under `Sync`, the fsync); `Err` means the whole group failed
/// (nothing committed).
fn commit_group(
    db: &redb::Database,
    works: Vec<Work>,
    durable: bool,
    force: bool,
) -> Result<(Outcomes, Option<Duration>), BackendError> {
    let mut txn = db
        .begin_write()
        .map_err(|e| BackendError::new("beginning a write", e))?;
    let level = if durable {
        redb::Durability::Immediate
    } else {
        redb::Durability::None
    };
    txn.set_durability(level)
        .map_err(|e| BackendError::new("setting durability", e))?;
    let mut outcomes = Vec::with_capacity(works.len());
    let mut wrote = force;
    {
        let mut tables = Tables::open(&txn)?;
        for work in works {
            // A flush writes nothing: under Sync every commit already is durable.
            let flush = matches!(work, Work::Flush);
            let outcome = match work {
                Work::Transact(ops) => tables.transact(ops).map(|()| Done::Written),
                Work::Puts(puts) => tables.put_all(puts).map(|()| Done::Written),
                Work::Increment {
                    key,
                    attr,
                    limit,
                    ttl,
                } => tables.increment(&key, &attr, limit, ttl).map(Done::Counted),
                Work::Flush => Ok(Done::Written),
            };
            outcomes.push(match outcome {
                Ok(done) => {
                    // Nor does an increment at its limit.
                    wrote |= !flush && !matches!(done, Done::Counted(None));
                    Ok(done)
                }
                Err(Failure::Request(e)) => Err(e),
                // Dropping the transaction aborts it: the group fails whole.
                Err(Failure::Backend(e)) => return Err(BackendError::new("writing", e)),
            });
        }
    }
    if !wrote {
        txn.abort()
            .map_err(|e| BackendError::new("aborting an empty write", e))?;
        return Ok((outcomes, None));
    }
    let started = Instant::now();
    txn.commit()
        .map_err(|e| BackendError::new("committing", e))?;
    Ok((outcomes, Some(started.elapsed())))
}

/// Why a request was not applied: its own fault (only it fails) or the
/// backend's (the whole group fails).
enum Failure {
    Request(StoreError),
    Backend(redb::StorageError),
}

impl From<redb::StorageError> for Failure {
    fn from(e: redb::StorageError) -> Self {
        Failure::Backend(e)
    }
}

/// The current version of an item, as far as a write needs it.
struct Current {
    ttl: Option<i64>,
    indexes: Vec<(Index, Key)>,
    /// Parsed only for conditions and adds that look at attributes.
    attrs: Option<Map<String, Value>>,
}

/// A checked operation, ready to apply.
enum Plan {
    Put {
        put: PreparedPut,
        old: Vec<(Index, Key)>,
    },
    Delete {
        key: Key,
        old: Vec<(Index, Key)>,
    },
    Record {
        key: Key,
        record: Vec<u8>,
    },
}

struct Tables<'t> {
    items: redb::Table<'t, ItemKey, &'static [u8]>,
    indexes: Vec<redb::Table<'t, IndexKey, ()>>,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t redb::WriteTransaction) -> Result<Self, BackendError> {
        let err = |e| BackendError::new("opening tables", e);
        let items = txn.open_table(ITEMS).map_err(err)?;
        let mut indexes = Vec::with_capacity(INDEXES.len());
        for def in INDEXES {
            indexes.push(txn.open_table(def).map_err(err)?);
        }
        Ok(Tables { items, indexes })
    }

    fn current(&self, key: &Key, with_attrs: bool) -> Result<Option<Current>, Failure> {
        let Some(record) = self.items.get((key.pk.as_str(), key.sk.as_str()))? else {
            return Ok(None);
        };
        let bytes = record.value();
        let view = RecordView::parse(bytes).map_err(|e| Failure::Request(corrupt(key, e)))?;
        let attrs = if with_attrs {
            Some(
                view.attrs()
                    .map_err(|e| Failure::Request(corrupt(key, e)))?,
            )
        } else {
            None
        };
        Ok(Some(Current {
            ttl: view.ttl,
            indexes: view.indexes,
            attrs,
        }))
    }

    /// Checks every condition first, then applies every operation: all or nothing.
    fn transact(&mut self, ops: Vec<Prepared>) -> Result<(), Failure> {
        let mut plans = Vec::with_capacity(ops.len());
        for (i, op) in ops.into_iter().enumerate() {
            let conflict = || Failure::Request(StoreError::Conflict { op: i });
            match op {
                Prepared::Put { put, cond } => {
                    let current = self.current(&put.key, needs_attrs(&cond))?;
                    if !holds(&cond, current.as_ref()) {
                        return Err(conflict());
                    }
                    plans.push(Plan::Put {
                        put,
                        old: current.map(|c| c.indexes).unwrap_or_default(),
                    });
                }
                Prepared::Delete { key, cond } => {
                    let current = self.current(&key, needs_attrs(&cond))?;
                    if !holds(&cond, current.as_ref()) {
                        return Err(conflict());
                    }
                    if let Some(current) = current {
                        plans.push(Plan::Delete {
                            key,
                            old: current.indexes,
                        });
                    }
                }
                Prepared::Add { key, deltas } => {
                    let current = self.current(&key, true)?;
                    let record = added(&key, current, &deltas).map_err(|m| {
                        Failure::Request(StoreError::Invalid(format!("operation {i}: {m}")))
                    })?;
                    plans.push(Plan::Record { key, record });
                }
            }
        }
        for plan in plans {
            match plan {
                Plan::Put { put, old } => self.put(&put, &old)?,
                Plan::Delete { key, old } => self.delete(&key, &old)?,
                Plan::Record { key, record } => {
                    self.items
                        .insert((key.pk.as_str(), key.sk.as_str()), record.as_slice())?;
                }
            }
        }
        Ok(())
    }

    /// Adds 1 to `attr` unless it is at `limit` or above: the new value, or
    /// `None` with nothing written. The item keeps its other attributes and
    /// indexes (so no index entry moves), and its TTL unless `ttl` is given.
    fn increment(
        &mut self,
        key: &Key,
        attr: &str,
        limit: i64,
        ttl: Option<i64>,
    ) -> Result<Option<i64>, Failure> {
        let (old_ttl, indexes, mut attrs) = match self.current(key, true)? {
            Some(c) => (c.ttl, c.indexes, c.attrs.unwrap_or_default()),
            None => (None, Vec::new(), Map::new()),
        };
        let invalid = |m: String| Failure::Request(StoreError::Invalid(format!("increment: {m}")));
        let count = integer(key, &attrs, attr).map_err(invalid)?;
        if count >= i128::from(limit) {
            return Ok(None);
        }
        // Below an i64 limit, so one more still fits in an i64.
        let next = i64::try_from(count + 1).map_err(|_| invalid(format!("{attr:?} overflows")))?;
        attrs.insert(attr.to_owned(), Value::from(next));
        let record = encode_record(key, ttl.or(old_ttl), &indexes, &attrs).map_err(invalid)?;
        self.items
            .insert((key.pk.as_str(), key.sk.as_str()), record.as_slice())?;
        Ok(Some(next))
    }

    fn put_all(&mut self, puts: Vec<PreparedPut>) -> Result<(), Failure> {
        for put in puts {
            let old = self
                .current(&put.key, false)?
                .map(|c| c.indexes)
                .unwrap_or_default();
            self.put(&put, &old)?;
        }
        Ok(())
    }

    /// Writes the record and moves its index entries from `old` to the new keys.
    fn put(&mut self, put: &PreparedPut, old: &[(Index, Key)]) -> Result<(), redb::StorageError> {
        let (pk, sk) = (put.key.pk.as_str(), put.key.sk.as_str());
        for entry in old {
            if !put.indexes.contains(entry) {
                let (index, k) = entry;
                self.indexes[slot(*index)].remove((k.pk.as_str(), k.sk.as_str(), pk, sk))?;
            }
        }
        for entry in &put.indexes {
            if !old.contains(entry) {
                let (index, k) = entry;
                self.indexes[slot(*index)].insert((k.pk.as_str(), k.sk.as_str(), pk, sk), ())?;
            }
        }
        self.items.insert((pk, sk), put.record.as_slice())?;
        Ok(())
    }

    fn delete(&mut self, key: &Key, old: &[(Index, Key)]) -> Result<(), redb::StorageError> {
        let (pk, sk) = (key.pk.as_str(), key.sk.as_str());
        for (index, k) in old {
            self.indexes[slot(*index)].remove((k.pk.as_str(), k.sk.as_str(), pk, sk))?;
        }
        self.items.remove((pk, sk))?;
        Ok(())
    }
}

fn needs_attrs(cond: &Condition) -> bool {
    matches!(cond, Condition::Equals { .. })
}

fn holds(cond: &Condition, current: Option<&Current>) -> bool {
    match cond {
        Condition::None => true,
        Condition::Absent { now } => current.is_none_or(|c| c.ttl.is_some_and(|t| t <= *now)),
        Condition::Exists => current.is_some(),
        // serde_json compares integers by value whatever their Rust type.
        Condition::Equals { attr, value } => current
            .and_then(|c| c.attrs.as_ref())
            .and_then(|attrs| attrs.get(attr))
            .is_some_and(|v| v == value),
    }
}

/// The record after adding `deltas`: the item is created bare if missing;
/// an existing one keeps its other attributes, indexes and TTL.
fn added(key: &Key, current: Option<Current>, deltas: &[(String, i64)]) -> Result<Vec<u8>, String> {
    let (ttl, indexes, mut attrs) = match current {
        Some(c) => (c.ttl, c.indexes, c.attrs.unwrap_or_default()),
        None => (None, Vec::new(), Map::new()),
    };
    for (name, delta) in deltas {
        let sum = integer(key, &attrs, name)? + i128::from(*delta);
        let value = match (i64::try_from(sum), u64::try_from(sum)) {
            (Ok(i), _) => Value::from(i),
            (_, Ok(u)) => Value::from(u),
            _ => {
                return Err(format!(
                    "attribute {name:?} of ({}, {}) would overflow",
                    key.pk, key.sk
                ));
            }
        };
        attrs.insert(name.clone(), value);
    }
    encode_record(key, ttl, &indexes, &attrs)
}

/// The integer attribute `name` of the item at `key`, 0 when missing.
fn integer(key: &Key, attrs: &Map<String, Value>, name: &str) -> Result<i128, String> {
    let not_integer = || {
        format!(
            "attribute {name:?} of ({}, {}) is not an integer",
            key.pk, key.sk
        )
    };
    match attrs.get(name) {
        None => Ok(0),
        Some(Value::Number(n)) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Ok(i128::from(i)),
            (None, Some(u)) => Ok(i128::from(u)),
            _ => Err(not_integer()),
        },
        Some(_) => Err(not_integer()),
    }
}

// ---------------------------------------------------------------------------
// Errors

/// A redb failure with what the store was doing, keeping redb's error as source.
#[derive(Debug)]
struct BackendError {
    context: String,
    source: redb::Error,
}

impl BackendError {
    fn new(context: impl Into<String>, source: impl Into<redb::Error>) -> Self {
        BackendError {
            context: context.into(),
            source: source.into(),
        }
    }

    /// An I/O failure, after which redb fails every call on this handle.
    fn is_io(&self) -> bool {
        matches!(self.source, redb::Error::Io(_) | redb::Error::PreviousIo)
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.context, self.source)
    }
}

impl std::error::Error for BackendError {
    /// The `io::Error` itself when there is one (redb's error names no
    /// source), so the HTTP layer can tell a full disk by its kind.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.source {
            redb::Error::Io(e) => Some(e),
            other => Some(other),
        }
    }
}

/// The name of the thread that opens the store file: a panic there is
/// redb meeting a damaged page, reported as such (see [`guarded`]).
const OPENING: &str = "warren-store-open";

/// Why [`guarded`] failed.
enum Guarded {
    Failed(StoreError),
    /// redb panicked (its message): on some damaged pages it panics where
    /// it could return `Corrupted`.
    Panicked(String),
}

/// Runs `open` on a thread of its own and turns a panic into an error, so a
/// damaged file gives one line at start, not a panic and a backtrace. Its
/// panic message is kept from stderr by a hook that lets every other
/// thread's panics through.
fn guarded<T: Send>(open: impl FnOnce() -> Result<T, StoreError> + Send) -> Result<T, Guarded> {
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() != Some(OPENING) {
                previous(info);
            }
        }));
    });
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name(OPENING.into())
            .spawn_scoped(scope, open)
            .map_err(|e| Guarded::Failed(unavailable("starting a thread to open the store", e)))?;
        match thread.join() {
            Ok(opened) => opened.map_err(Guarded::Failed),
            Err(panic) => Err(Guarded::Panicked(
                panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "redb panicked".into()),
            )),
        }
    })
}

/// What a user reads when the store file cannot be opened at start: one
/// line naming the file, what is wrong and what to do.
fn start_failure(message: String) -> StoreError {
    StoreError::Unavailable(message.into())
}

/// The file exists but is not a warren store redb can read.
fn damaged(path: &Path, why: &str) -> StoreError {
    start_failure(format!(
        "store file {} is damaged or not a warren store ({why}): move it away (or restore a backup) and start again; warren then creates an empty store",
        path.display()
    ))
}

/// A redb database of another program.
fn foreign(path: &Path, tables: &str) -> StoreError {
    start_failure(format!(
        "store file {} is a redb database of another program (its tables: {tables}): point --data-dir elsewhere, or move the file away and start again",
        path.display()
    ))
}

/// The start-up message for an I/O error on the store file, for the kinds
/// a user can act on.
fn start_error(path: &Path, e: &std::io::Error) -> Option<StoreError> {
    use std::io::ErrorKind as K;
    let file = path.display();
    let message = match e.kind() {
        K::IsADirectory => format!(
            "store file {file} is a directory: move it away (warren creates the file) or point --data-dir elsewhere"
        ),
        K::PermissionDenied => format!(
            "store file {file} cannot be opened for reading and writing (permission denied): give the user warren runs as read and write access to it and its directory, or point --data-dir elsewhere"
        ),
        K::ReadOnlyFilesystem => format!(
            "store file {file} is on a read-only file system: remount it read-write or point --data-dir elsewhere"
        ),
        K::StorageFull | K::QuotaExceeded | K::FileTooLarge => {
            format!("no space left for store file {file} ({e}): free some space and start again")
        }
        K::NotADirectory => {
            format!("store file {file} cannot be created: a part of its directory path is a file")
        }
        _ => return None,
    };
    Some(start_failure(message))
}

/// The start-up message for a failed open of the store file.
fn open_error(path: &Path, e: redb::DatabaseError) -> StoreError {
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => unavailable(
            format!(
                "store file {} is locked: another warren process (or another store in this one) has it open",
                path.display()
            ),
            e,
        ),
        redb::DatabaseError::Storage(redb::StorageError::Io(io)) => match start_error(path, &io) {
            Some(clear) => clear,
            // "Not a redb database: magic number mismatch", "failed to fill
            // whole buffer" (a file cut short), ...
            None => damaged(path, &io.to_string()),
        },
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(why)) => damaged(path, &why),
        redb::DatabaseError::UpgradeRequired(version) => start_failure(format!(
            "store file {} has redb file format {version}, which this warren cannot read: open it with the warren that wrote it, or move it away",
            path.display()
        )),
        e => unavailable(format!("opening store file {}", path.display()), e),
    }
}

fn unavailable(context: impl Into<String>, source: impl Into<redb::Error>) -> StoreError {
    StoreError::Unavailable(Box::new(BackendError::new(context, source)))
}

fn writer_gone() -> StoreError {
    StoreError::Unavailable("the store writer has stopped".into())
}

fn corrupt(key: &Key, what: &str) -> StoreError {
    StoreError::Unavailable(
        format!("stored item ({}, {}) is damaged: {what}", key.pk, key.sk).into(),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use serde_json::json;

    use super::*;

    /// A file path in a fresh directory under the temp dir, which is
    /// removed (whatever was created in it) on drop.
    struct TempPath {
        root: PathBuf,
        file: PathBuf,
    }

    impl TempPath {
        fn new(name: &str) -> Self {
            let root = std::env::temp_dir().join(format!(
                "warren-store-test-{}",
                uuid::Uuid::now_v7().simple()
            ));
            let file = root.join(name);
            TempPath { root, file }
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }

    fn item(pk: &str, sk: &str, n: i64) -> Item {
        let mut it = Item::new(
            Key::new(pk, sk),
            json!({"n": n}).as_object().cloned().unwrap_or_default(),
        );
        it.indexes = vec![(Index::Gsi1, Key::new("idx", sk))];
        it
    }

    async fn run_on_files(durability: Durability) {
        let paths = Arc::new(Mutex::new(Vec::new()));
        let made = paths.clone();
        crate::testing::store::run_all(move || {
            let made = made.clone();
            async move {
                let path = TempPath::new("store.redb");
                let store =
                    EmbeddedStore::open(&path.file, durability).expect("a fresh store file opens");
                made.lock().expect("paths lock").push(path);
                Arc::new(store) as Arc<dyn Store>
            }
        })
        .await;
        let created = paths.lock().expect("paths lock").len();
        assert!(created > 0, "the suite made stores");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn in_memory_store_conforms() {
        crate::testing::store::run_all(|| async {
            Arc::new(EmbeddedStore::in_memory()) as Arc<dyn Store>
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sync_file_store_conforms() {
        run_on_files(Durability::Sync).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn relaxed_file_store_conforms() {
        run_on_files(Durability::Relaxed).await;
    }

    #[tokio::test]
    async fn sync_writes_survive_reopen() {
        let path = TempPath::new("nested/dir/store.redb");
        {
            let store = EmbeddedStore::open(&path.file, Durability::Sync).expect("open");
            store
                .put_batch(vec![item("p", "a", 1), item("p", "b", 2)])
                .await
                .expect("put_batch");
            store
                .transact(vec![WriteOp::Add {
                    key: Key::new("p", "a"),
                    deltas: vec![("n".into(), 10)],
                }])
                .await
                .expect("add");
        }
        let store = EmbeddedStore::open(&path.file, Durability::Sync).expect("reopen after drop");
        let a = store
            .get(&Key::new("p", "a"))
            .await
            .expect("get")
            .expect("a survives");
        assert_eq!(a.attrs.get("n"), Some(&json!(11)));
        let indexed = store
            .query(&Query::index(Index::Gsi1, "idx", 10))
            .await
            .expect("query");
        assert_eq!(indexed.len(), 2, "index entries survive too");
    }

    #[tokio::test]
    async fn relaxed_writes_survive_flush_and_reopen() {
        let path = TempPath::new("store.redb");
        let store = EmbeddedStore::open(&path.file, Durability::Relaxed).expect("open");
        store
            .put_batch(vec![item("p", "a", 1)])
            .await
            .expect("put_batch");
        store.flush().await.expect("flush");
        drop(store);
        let store =
            EmbeddedStore::open(&path.file, Durability::Relaxed).expect("reopen after drop");
        assert!(
            store.get(&Key::new("p", "a")).await.expect("get").is_some(),
            "flushed data survives"
        );
        // A clean drop without flush also persists: the writer flushes on its way out.
        store
            .transact(vec![WriteOp::Put {
                item: item("p", "b", 2),
                cond: Condition::None,
            }])
            .await
            .expect("put");
        drop(store);
        let store = EmbeddedStore::open(&path.file, Durability::Relaxed).expect("second reopen");
        assert!(
            store.get(&Key::new("p", "b")).await.expect("get").is_some(),
            "data survives a clean drop"
        );
    }

    #[tokio::test]
    async fn locked_file_error_names_the_path() {
        let path = TempPath::new("store.redb");
        let _first = EmbeddedStore::open(&path.file, Durability::Sync).expect("open");
        let err = EmbeddedStore::open(&path.file, Durability::Sync)
            .expect_err("second open of a locked file");
        let message = err.to_string();
        assert!(
            message.contains(&path.file.display().to_string()),
            "message names the path: {message}"
        );
        assert!(message.contains("locked"), "message says why: {message}");
    }

    /// A write the disk refuses for lack of space reaches a client as 507
    /// `insufficient_storage`; a read-only file system as 503; any other
    /// I/O failure as the plain 503.
    #[test]
    fn io_failures_map_to_clear_statuses() {
        use std::io::{Error, ErrorKind};
        let answer = |kind: ErrorKind| {
            // As the writer answers a failed group: its error behind an Arc.
            let failed = BackendError::new("writing", redb::StorageError::Io(Error::from(kind)));
            let e = StoreError::Unavailable(Box::new(Arc::new(failed)));
            let api = crate::http::ApiError::from(e);
            (api.status.as_u16(), api.code)
        };
        for full in [
            ErrorKind::StorageFull,
            ErrorKind::QuotaExceeded,
            ErrorKind::FileTooLarge,
        ] {
            assert_eq!(answer(full), (507, "insufficient_storage"), "{full:?}");
        }
        assert_eq!(
            answer(ErrorKind::ReadOnlyFilesystem),
            (503, "storage_read_only")
        );
        assert_eq!(answer(ErrorKind::Other), (503, "unavailable"));
    }

    #[tokio::test]
    async fn clones_share_one_database() {
        let store = EmbeddedStore::in_memory();
        let other = store.clone();
        store
            .put_batch(vec![item("p", "a", 1)])
            .await
            .expect("put_batch");
        assert!(other.get(&Key::new("p", "a")).await.expect("get").is_some());
    }

    // --- the relaxed flush -----------------------------------------------

    /// A flusher whose last durable commit took `cost` and ended `ago`, with
    /// `ops` operations committed since, the first of them `waiting` ago.
    fn flusher(cost: Duration, ago: Duration, ops: usize, waiting: Duration) -> (Flusher, Instant) {
        let now = Instant::now();
        let flusher = Flusher {
            since: Some(now - waiting),
            ops,
            early_from: now - ago + cost * FLUSH_SPACING,
        };
        (flusher, now)
    }

    #[test]
    fn a_relaxed_commit_is_made_durable_within_the_window() {
        // GIVEN nothing written yet
        let mut flusher = Flusher::new();
        assert_eq!(flusher.deadline(), None, "nothing waits, no flush");
        // WHEN a small non-durable commit ends
        let ended = Instant::now();
        assert!(!flusher.due(3, ended));
        flusher.committed(3, false, ended, Duration::from_micros(50));
        // THEN a flush is due FLUSH_DELAY after it, and not before
        let deadline = flusher.deadline().expect("a flush is due");
        assert!(deadline <= Instant::now() + FLUSH_DELAY);
        assert!(!flusher.due(3, deadline - Duration::from_millis(1)));
        assert!(flusher.due(3, deadline));
        // AND a durable commit clears it
        flusher.committed(0, true, Instant::now(), Duration::from_millis(2));
        assert_eq!(flusher.deadline(), None);
    }

    #[test]
    fn many_waiting_operations_are_flushed_early_on_a_fast_disk() {
        // GIVEN a 2 ms flush that ended 30 ms ago, and 990 operations since
        let (flusher, now) = flusher(
            Duration::from_millis(2),
            Duration::from_millis(30),
            990,
            Duration::from_millis(20),
        );
        // THEN the group that brings them to FLUSH_OPS is durable, a smaller one not
        assert!(flusher.due(FLUSH_OPS - 990, now));
        assert!(!flusher.due(5, now));
    }

    #[test]
    fn a_slow_disk_is_flushed_no_more_often_than_the_window_asks() {
        // GIVEN a flush that held the writer 15 ms and ended 50 ms ago, with
        // far more than FLUSH_OPS operations waiting for 40 ms
        let (flusher, now) = flusher(
            Duration::from_millis(15),
            Duration::from_millis(50),
            10 * FLUSH_OPS,
            Duration::from_millis(40),
        );
        // THEN no early flush: the writer has not yet run FLUSH_SPACING flushes' time
        assert!(!flusher.due(1, now));
        // AND the window still bounds what a crash may lose
        assert!(flusher.due(1, now + Duration::from_millis(60)));
    }

    // --- the sync gather -------------------------------------------------

    fn job() -> Job {
        let (reply, _) = oneshot::channel();
        Job {
            work: Work::Flush,
            reply,
            sent: Instant::now(),
        }
    }

    /// A last commit of `callers`, whose fsync took `sync`, that ended now.
    fn last_commit(callers: usize, sync: Duration) -> LastCommit {
        LastCommit {
            callers,
            ended: Instant::now(),
            sync,
            apply_per_op: Duration::from_micros(1),
        }
    }

    #[test]
    fn a_lone_caller_back_from_the_last_commit_does_not_wait() {
        // GIVEN a commit that answered one caller, with a slow fsync
        let (_jobs, queue) = mpsc::channel();
        let last = last_commit(1, Duration::from_secs(2));
        // WHEN that caller's next request is the whole group
        let mut group = vec![job()];
        let mut ops = 1;
        let started = Instant::now();
        gather(&queue, &mut group, &mut ops, &last);
        // THEN it commits at once: there is nobody else to wait for
        assert!(started.elapsed() < Duration::from_millis(500));
        assert_eq!(group.len(), 1);
    }

    #[test]
    fn callers_queued_during_a_commit_wait_for_those_it_released() {
        // GIVEN a caller queued during a commit that answered one other
        let (jobs, queue) = mpsc::channel();
        let queued = job();
        let last = last_commit(1, Duration::from_secs(2));
        // WHEN the released caller comes back 50 ms later
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            jobs.send(job()).expect("the writer listens");
            jobs
        });
        let mut group = vec![queued];
        let mut ops = 1;
        gather(&queue, &mut group, &mut ops, &last);
        // THEN both share one commit
        assert_eq!(group.len(), 2);
        assert_eq!(ops, 2);
        drop(sender.join());
    }

    #[test]
    fn no_wait_once_the_work_outweighs_the_fsync() {
        // GIVEN a group whose apply time (200 ms) exceeds the fsync (100 ms)
        let (_jobs, queue) = mpsc::channel();
        let mut last = last_commit(4, Duration::from_millis(100));
        last.apply_per_op = Duration::from_millis(1);
        let queued = Job {
            sent: last.ended - Duration::from_millis(1),
            ..job()
        };
        let mut group = vec![queued];
        let mut ops = 200;
        let started = Instant::now();
        gather(&queue, &mut group, &mut ops, &last);
        // THEN it commits without waiting (50 ms) for the four callers
        assert!(started.elapsed() < Duration::from_millis(25));
        assert_eq!(group.len(), 1);
    }
}
