//! Records kept in their owner's partitions of the table (a task in its
//! queue's, an execution in its pipeline's), so that listing an owner's
//! records needs no index entry per record.
//!
//! A record's id is a UUIDv7 whose low 32 bits, its tag, are a hash of its
//! owner with a random shard in the low two bits ([`new_id`]); the bits it
//! replaces are random too, and the time-ordered high bits are untouched.
//! Its item is `<prefix><tag>` / id: the id alone names its partition, and
//! an owner's records are its [`SHARDS`] partitions, newest first. Owners
//! whose hashes collide share partitions; lists filter by owner.

use sha2::Digest;
use uuid::Uuid;

use super::from_attrs;
use crate::ports::{Item, Key, Query, Store, StoreError};

/// Partitions per owner: spreads a busy owner's writes (DynamoDB takes
/// about 1,000 write units a second per partition key). A power of two.
pub const SHARDS: u32 = 4;

/// A new id of a record of `owner`.
pub fn new_id(owner: &str) -> Uuid {
    let id = Uuid::now_v7().as_u128();
    let shard = (id as u32) % SHARDS;
    Uuid::from_u128((id & !0xffff_ffff) | u128::from(owner_hash(owner) | shard))
}

/// The owner's part of its ids' tags: the first bytes of its name's
/// SHA-256 (stable across versions and machines), shard bits cleared.
fn owner_hash(owner: &str) -> u32 {
    let digest = sha2::Sha256::digest(owner.as_bytes());
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) & !(SHARDS - 1)
}

/// The shard of an id: its low bits.
pub fn shard_of(id: Uuid) -> u32 {
    (id.as_u128() as u32) % SHARDS
}

fn partition(prefix: &str, tag: u32) -> String {
    format!("{prefix}{tag:08x}")
}

/// The key of the record with this id.
pub fn key(prefix: &str, id: Uuid) -> Key {
    Key::new(partition(prefix, id.as_u128() as u32), id.to_string())
}

/// The id of the record whose item has this key, if it is one of `prefix`.
pub fn id_of(prefix: &str, key: &Key) -> Option<Uuid> {
    key.pk
        .starts_with(prefix)
        .then(|| key.sk.parse().ok())
        .flatten()
}

/// The table partitions that hold `owner`'s records (and those of any
/// owner whose name hashes alike).
pub fn partitions(prefix: &str, owner: &str) -> impl Iterator<Item = String> {
    let hash = owner_hash(owner);
    (0..SHARDS).map(move |shard| partition(prefix, hash | shard))
}

/// The reads of a list: one query per partition (of the table, or of an
/// index), all of them with id sort keys.
pub type Sources = Vec<Query>;

/// One page of the records `pick` keeps, newest first, read from `sources`
/// merged by id, from the cursor `before` on, and the cursor of the next
/// page. `pick` gives an item's records with their positions, highest
/// first: an item holds one record at its sort key, or several (a chunk of
/// tasks) at positions above its sort key and below the next item's.
/// Records `pick` drops are read all the same: at most `budget` items a
/// page (a page may come back short, with a cursor where it stopped).
pub async fn list<T>(
    store: &dyn Store,
    sources: &[Query],
    before: Option<String>,
    limit: usize,
    budget: usize,
    mut pick: impl FnMut(&str, &Item) -> Vec<(String, T)>,
) -> Result<(Vec<T>, Option<String>), StoreError> {
    let mut found = Vec::with_capacity(limit);
    let mut cursor = before;
    let mut budget = budget;
    // Where the first read found too few matches, read more at a time.
    let mut want = 0;
    loop {
        want = (limit - found.len()).max(want * 2).max(1).min(budget);
        let read_before = cursor.clone();
        let (page, exhausted) = merged_page(store, sources, read_before.as_deref(), want).await?;
        budget = budget.saturating_sub(page.len());
        let mut unread = page.len();
        'items: for (sort_key, item) in page {
            unread -= 1;
            cursor = Some(sort_key.clone());
            let records = pick(&sort_key, &item);
            let mut left = records.len();
            for (position, record) in records {
                left -= 1;
                // Listed by the page that ended within this item.
                if read_before.as_ref().is_some_and(|b| &position >= b) {
                    continue;
                }
                found.push(record);
                if found.len() == limit {
                    if left > 0 {
                        cursor = Some(position);
                        unread += 1;
                    }
                    break 'items;
                }
            }
        }
        let next = (!exhausted || unread > 0)
            .then_some(cursor.clone())
            .flatten();
        if next.is_none() || found.len() == limit || budget == 0 {
            return Ok((found, next));
        }
    }
}

/// An item's one record, at its sort key, if it has one.
pub fn one<T>(sort_key: &str, record: Option<T>) -> Vec<(String, T)> {
    record
        .map(|r| vec![(sort_key.to_string(), r)])
        .unwrap_or_default()
}

/// The live record of type `T` in an item, `None` when it has expired (at
/// `now`) or holds something else.
pub fn live<T: serde::de::DeserializeOwned>(item: &Item, now: i64) -> Option<T> {
    (!item.is_expired(now)).then(|| from_attrs(item)).flatten()
}

/// How many partitions a list reads at once: a page costs about one round
/// trip, not one per partition (4 per queue on DynamoDB).
const CONCURRENT_READS: usize = 16;

/// Up to `want` items, newest first, with their sort keys, from several
/// partitions merged by sort key (all are ids, so `before` is a cursor
/// valid across every partition), and whether every partition is read to
/// its end. Each partition is read only as deep as its share of the page;
/// the merge is complete down to the highest last sort key among the
/// partitions that had more, and stops there.
async fn merged_page(
    store: &dyn Store,
    sources: &[Query],
    before: Option<&str>,
    want: usize,
) -> Result<(Vec<(String, Item)>, bool), StoreError> {
    let share = match sources.len() {
        0 | 1 => want,
        n => (want.div_ceil(n) * 2).max(10).min(want),
    };
    let queries: Vec<Query> = sources
        .iter()
        .map(|source| Query {
            before: before.map(str::to_string),
            descending: true,
            limit: share,
            ..source.clone()
        })
        .collect();
    let mut pages = Vec::with_capacity(queries.len());
    for at_once in queries.chunks(CONCURRENT_READS) {
        let read = futures_util::future::try_join_all(at_once.iter().map(|q| store.query(q)));
        pages.extend(at_once.iter().zip(read.await?));
    }
    let mut all = Vec::new();
    let mut complete_to: Option<String> = None;
    for (q, page) in pages {
        let full = page.len() == share;
        let keyed: Vec<(String, Item)> = page
            .into_iter()
            .filter_map(|item| {
                let sk = match q.index {
                    Some(index) => item.index_key(index)?.sk.clone(),
                    None => item.key.sk.clone(),
                };
                Some((sk, item))
            })
            .collect();
        if full
            && let Some((last, _)) = keyed.last()
            && complete_to.as_ref().is_none_or(|c| last > c)
        {
            complete_to = Some(last.clone());
        }
        all.extend(keyed);
    }
    all.sort_by(|a, b| b.0.cmp(&a.0));
    if let Some(floor) = &complete_to {
        all.retain(|(sk, _)| sk >= floor);
    }
    let exhausted = complete_to.is_none() && all.len() <= want;
    all.truncate(want);
    Ok((all, exhausted))
}
