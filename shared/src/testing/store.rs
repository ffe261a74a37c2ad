//! The [`Store`] conformance suite.
//!
//! Every check holds an adapter to the port's contract only, so the same
//! suite runs unchanged against the embedded store and against DynamoDB (on
//! an emulator or for real). Hence:
//! - each check writes under its own fresh key prefix (partition and index
//!   keys alike), so checks never see each other's items, even in a shared
//!   table;
//! - `get` and table queries are read once (they are strongly consistent);
//!   index queries are retried until they show the expected items, within a
//!   bounded deadline, since indexes may lag writes (DynamoDB GSIs do);
//! - TTLs lie an hour away from now, so expiry never races a check, and no
//!   check asserts that an expired item is gone (native TTL is lazy);
//! - attributes hold strings, integers, booleans, null, lists and maps only,
//!   which every backend round-trips exactly.
//!
//! A failed check panics with a message naming the broken behaviour.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::ports::{
    Condition, Index, Item, Key, MAX_ITEM_BYTES, MAX_TRANSACT_OPS, Query, Store, StoreError,
    WriteOp,
};

/// Runs every check, each on a store from `make`.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Store>>,
{
    put_then_get_roundtrips_attrs_indexes_and_ttl(make().await).await;
    get_of_missing_item_is_none(make().await).await;
    get_returns_expired_item(make().await).await;
    put_replaces_the_whole_item(make().await).await;
    absent_condition_creates_missing_item(make().await).await;
    absent_condition_conflicts_with_present_item(make().await).await;
    absent_condition_overwrites_expired_item(make().await).await;
    exists_condition_requires_present_item(make().await).await;
    version_condition_is_compare_and_set(make().await).await;
    equals_condition_compares_any_attribute(make().await).await;
    failed_condition_writes_nothing(make().await).await;
    transact_applies_every_operation(make().await).await;
    delete_honours_its_condition(make().await).await;
    delete_of_missing_item_without_condition_succeeds(make().await).await;
    add_creates_accumulates_and_goes_negative(make().await).await;
    add_keeps_other_attributes_indexes_and_ttl(make().await).await;
    add_to_non_integer_attribute_is_invalid(make().await).await;
    duplicate_keys_in_one_transact_are_invalid(make().await).await;
    duplicate_keys_in_one_put_batch_are_invalid(make().await).await;
    transact_takes_one_to_max_operations(make().await).await;
    oversize_item_is_invalid(make().await).await;
    too_deep_item_is_invalid(make().await).await;
    reserved_attribute_names_are_invalid(make().await).await;
    empty_keys_and_zero_limit_are_invalid(make().await).await;
    empty_put_batch_succeeds(make().await).await;
    table_query_reads_one_partition_in_sort_key_order(make().await).await;
    index_query_finds_item_under_its_index_key(make().await).await;
    index_query_follows_item_re_put_under_another_key(make().await).await;
    index_query_drops_item_whose_index_is_removed(make().await).await;
    index_query_drops_deleted_item(make().await).await;
    index_query_paginates_with_after_over_equal_prefix_keys(make().await).await;
    put_batch_of_1000_items_is_readable_by_query(make().await).await;
    concurrent_version_cas_has_exactly_one_winner(make().await).await;
    increment_counts_from_absent_up_to_the_limit(make().await).await;
    increment_stops_exactly_at_the_limit(make().await).await;
    increment_keeps_other_attributes_indexes_and_ttl(make().await).await;
    increment_sets_and_replaces_the_ttl(make().await).await;
    increment_does_not_reset_an_expired_item(make().await).await;
    increment_of_non_integer_attribute_is_invalid(make().await).await;
    increment_of_reserved_attribute_or_empty_key_is_invalid(make().await).await;
    increment_with_limit_below_one_is_invalid(make().await).await;
    concurrent_increments_stop_exactly_at_the_limit(make().await).await;
}

/// How long an index may lag a write before a check gives up on it.
const INDEX_LAG: Duration = Duration::from_secs(10);
/// A TTL this far from now never expires (or unexpires) during a check.
const HOUR: i64 = 3600;

/// A fresh key prefix, unique to one run of one check.
fn fresh(check: &str) -> String {
    format!("conf-{check}-{}", uuid::Uuid::now_v7().simple())
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn attrs(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("test attributes must be a JSON object, not {other}"),
    }
}

fn item(key: &Key, value: Value) -> Item {
    Item::new(key.clone(), attrs(value))
}

fn put_op(item: Item, cond: Condition) -> WriteOp {
    WriteOp::Put { item, cond }
}

/// Indexes in a fixed order, so items compare whatever order a backend returns them in.
fn normalized(mut item: Item) -> Item {
    item.indexes.sort();
    item
}

fn keys(items: &[Item]) -> Vec<Key> {
    items.iter().map(|i| i.key.clone()).collect()
}

async fn get(store: &dyn Store, key: &Key) -> Option<Item> {
    match store.get(key).await {
        Ok(found) => found.map(normalized),
        Err(e) => panic!("get({key:?}) failed: {e}"),
    }
}

async fn transact(store: &dyn Store, ops: Vec<WriteOp>, what: &str) {
    if let Err(e) = store.transact(ops).await {
        panic!("{what}: transact failed: {e}");
    }
}

async fn put(store: &dyn Store, item: Item) {
    let key = item.key.clone();
    transact(
        store,
        vec![put_op(item, Condition::None)],
        &format!("unconditional put of {key:?}"),
    )
    .await;
}

async fn query(store: &dyn Store, q: &Query) -> Vec<Item> {
    match store.query(q).await {
        Ok(items) => items,
        Err(e) => panic!("query {q:?} failed: {e}"),
    }
}

/// Queries an index until it returns exactly `want` (in order), as indexes
/// may lag writes; panics after [`INDEX_LAG`].
async fn index_eventually(store: &dyn Store, q: &Query, want: &[Key], what: &str) -> Vec<Item> {
    let deadline = Instant::now() + INDEX_LAG;
    loop {
        let got = query(store, q).await;
        if keys(&got) == want {
            return got;
        }
        if Instant::now() >= deadline {
            panic!(
                "{what}: index query {q:?} returned {:?}, expected {want:?}",
                keys(&got)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn increment(
    store: &dyn Store,
    key: &Key,
    attr: &str,
    limit: i64,
    ttl: Option<i64>,
) -> Option<i64> {
    match store.increment(key, attr, limit, ttl).await {
        Ok(count) => count,
        Err(e) => panic!("increment({key:?}, {attr:?}, limit {limit}, ttl {ttl:?}) failed: {e}"),
    }
}

fn assert_conflict(result: Result<(), StoreError>, op: usize, what: &str) {
    match result {
        Err(StoreError::Conflict { op: got }) if got == op => {}
        other => panic!("{what}: expected Conflict {{ op: {op} }}, got {other:?}"),
    }
}

fn assert_invalid<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    match result {
        Err(StoreError::Invalid(_)) => {}
        other => panic!("{what}: expected Invalid, got {other:?}"),
    }
}

async fn assert_missing(store: &dyn Store, key: &Key, what: &str) {
    if let Some(found) = get(store, key).await {
        panic!("{what}: {key:?} should not exist, found {found:?}");
    }
}

// ---------------------------------------------------------------------------
// Items, conditions, transactions

/// GIVEN an item with attributes, two index keys and a TTL
/// WHEN it is put
/// THEN get returns it exactly.
pub async fn put_then_get_roundtrips_attrs_indexes_and_ttl(store: Arc<dyn Store>) {
    let p = fresh("roundtrip");
    let key = Key::new(format!("{p}#item"), "meta");
    let mut written = item(
        &key,
        json!({
            "name": "ünïcode ✓",
            "empty": "",
            "count": 42,
            "negative": -7,
            "big": i64::MAX,
            "flag": true,
            "nothing": null,
            "list": [1, "two", false, null, {"nested": [3]}],
            "map": {"a": {"b": "c"}, "n": 1}
        }),
    );
    written.ttl = Some(now() + HOUR);
    written.indexes = vec![
        (Index::Gsi3, Key::new(format!("{p}#g3"), "s3")),
        (Index::Gsi1, Key::new(format!("{p}#g1"), "s1")),
    ];
    put(&*store, written.clone()).await;
    assert_eq!(
        get(&*store, &key).await,
        Some(normalized(written)),
        "get after put must return the item exactly"
    );
}

/// GIVEN an empty store WHEN a key is read THEN it is `None`.
pub async fn get_of_missing_item_is_none(store: Arc<dyn Store>) {
    let p = fresh("missing");
    assert_missing(
        &*store,
        &Key::new(format!("{p}#item"), "x"),
        "get of a never-written key",
    )
    .await;
}

/// GIVEN an item whose TTL has passed WHEN it is read THEN it is returned
/// with its TTL (expiry is lazy: the caller filters).
pub async fn get_returns_expired_item(store: Arc<dyn Store>) {
    let p = fresh("expired-get");
    let key = Key::new(format!("{p}#item"), "x");
    let mut written = item(&key, json!({"v": 1}));
    written.ttl = Some(now() - HOUR);
    put(&*store, written.clone()).await;
    let found = get(&*store, &key).await;
    assert_eq!(
        found,
        Some(written),
        "an expired item is still returned by get"
    );
}

/// GIVEN an item with attributes, an index and a TTL
/// WHEN another item with the same key and only other attributes is put
/// THEN the old attributes, TTL and index membership are gone.
pub async fn put_replaces_the_whole_item(store: Arc<dyn Store>) {
    let p = fresh("replace");
    let key = Key::new(format!("{p}#item"), "x");
    let mut first = item(&key, json!({"a": 1, "b": "two"}));
    first.ttl = Some(now() + HOUR);
    first.indexes = vec![(Index::Gsi2, Key::new(format!("{p}#g"), "s"))];
    put(&*store, first).await;
    let second = item(&key, json!({"c": 3}));
    put(&*store, second.clone()).await;
    assert_eq!(
        get(&*store, &key).await,
        Some(second),
        "a put replaces the whole item"
    );
    index_eventually(
        &*store,
        &Query::index(Index::Gsi2, format!("{p}#g"), 10),
        &[],
        "an index key the new version lacks",
    )
    .await;
}

/// GIVEN a missing item WHEN it is put with `Absent` THEN it is written.
pub async fn absent_condition_creates_missing_item(store: Arc<dyn Store>) {
    let p = fresh("absent-create");
    let key = Key::new(format!("{p}#item"), "x");
    let written = item(&key, json!({"v": 1}));
    transact(
        &*store,
        vec![put_op(written.clone(), Condition::Absent { now: now() })],
        "put Absent of a missing item",
    )
    .await;
    assert_eq!(
        get(&*store, &key).await,
        Some(written),
        "put Absent of a missing item writes it"
    );
}

/// GIVEN a present item (no TTL, or a future one) WHEN it is put with
/// `Absent` THEN `Conflict{op:0}` and the item is unchanged.
pub async fn absent_condition_conflicts_with_present_item(store: Arc<dyn Store>) {
    let p = fresh("absent-conflict");
    let plain = Key::new(format!("{p}#item"), "plain");
    let living = Key::new(format!("{p}#item"), "living");
    let original = item(&plain, json!({"v": 1}));
    let mut alive = item(&living, json!({"v": 1}));
    alive.ttl = Some(now() + HOUR);
    put(&*store, original.clone()).await;
    put(&*store, alive.clone()).await;
    for (key, kept) in [(&plain, original), (&living, alive)] {
        let result = store
            .transact(vec![put_op(
                item(key, json!({"v": 2})),
                Condition::Absent { now: now() },
            )])
            .await;
        assert_conflict(result, 0, "put Absent over a present item");
        assert_eq!(
            get(&*store, key).await,
            Some(kept),
            "a conflicting put leaves the item unchanged"
        );
    }
}

/// GIVEN items whose TTL is before, or exactly, `now`
/// WHEN they are put with `Absent { now }` THEN they are overwritten.
pub async fn absent_condition_overwrites_expired_item(store: Arc<dyn Store>) {
    let p = fresh("absent-expired");
    let t = now();
    for (sk, ttl) in [("past", t - HOUR), ("boundary", t)] {
        let key = Key::new(format!("{p}#item"), sk);
        let mut old = item(&key, json!({"v": 1}));
        old.ttl = Some(ttl);
        put(&*store, old).await;
        let fresh_item = item(&key, json!({"v": 2}));
        transact(
            &*store,
            vec![put_op(fresh_item.clone(), Condition::Absent { now: t })],
            &format!("put Absent over an item expired at {sk}"),
        )
        .await;
        assert_eq!(
            get(&*store, &key).await,
            Some(fresh_item),
            "an expired item counts as absent ({sk})"
        );
    }
}

/// GIVEN a missing item WHEN it is put with `Exists` THEN `Conflict{op:0}`
/// and nothing is written; GIVEN it present THEN the put applies.
pub async fn exists_condition_requires_present_item(store: Arc<dyn Store>) {
    let p = fresh("exists");
    let key = Key::new(format!("{p}#item"), "x");
    let result = store
        .transact(vec![put_op(item(&key, json!({"v": 1})), Condition::Exists)])
        .await;
    assert_conflict(result, 0, "put Exists of a missing item");
    assert_missing(
        &*store,
        &key,
        "a put Exists of a missing item writes nothing",
    )
    .await;
    put(&*store, item(&key, json!({"v": 1}))).await;
    let updated = item(&key, json!({"v": 2}));
    transact(
        &*store,
        vec![put_op(updated.clone(), Condition::Exists)],
        "put Exists of a present item",
    )
    .await;
    assert_eq!(
        get(&*store, &key).await,
        Some(updated),
        "put Exists of a present item applies"
    );
}

/// GIVEN an item at version 1 WHEN it is put with `version(1)` THEN it
/// applies; WHEN put again with the now stale `version(1)` THEN
/// `Conflict{op:0}` and version 2 stays. A missing item never matches.
pub async fn version_condition_is_compare_and_set(store: Arc<dyn Store>) {
    let p = fresh("version");
    let key = Key::new(format!("{p}#item"), "x");
    put(&*store, item(&key, json!({"version": 1, "state": "a"}))).await;
    let v2 = item(&key, json!({"version": 2, "state": "b"}));
    transact(
        &*store,
        vec![put_op(v2.clone(), Condition::version(1))],
        "put at the current version",
    )
    .await;
    assert_eq!(
        get(&*store, &key).await,
        Some(v2.clone()),
        "a matching version applies"
    );
    let stale = store
        .transact(vec![put_op(
            item(&key, json!({"version": 2, "state": "c"})),
            Condition::version(1),
        )])
        .await;
    assert_conflict(stale, 0, "put at a stale version");
    assert_eq!(
        get(&*store, &key).await,
        Some(v2),
        "a stale version writes nothing"
    );
    let missing = Key::new(format!("{p}#item"), "missing");
    let result = store
        .transact(vec![put_op(
            item(&missing, json!({"version": 1})),
            Condition::version(0),
        )])
        .await;
    assert_conflict(result, 0, "a version condition on a missing item");
    assert_missing(
        &*store,
        &missing,
        "a version condition on a missing item writes nothing",
    )
    .await;
}

/// GIVEN an item with a string, a signed integer and a missing attribute
/// WHEN conditions compare them THEN only exact JSON equality holds, and
/// integers compare by value whatever their Rust type.
pub async fn equals_condition_compares_any_attribute(store: Arc<dyn Store>) {
    let p = fresh("equals");
    let key = Key::new(format!("{p}#item"), "x");
    put(&*store, item(&key, json!({"state": "pending", "n": 3i64}))).await;
    let eq = |attr: &str, value: Value| Condition::Equals {
        attr: attr.into(),
        value,
    };
    for (cond, what) in [
        (eq("state", json!("running")), "a different string"),
        (eq("state", json!(["pending"])), "a different type"),
        (
            eq("absent", Value::Null),
            "a missing attribute against null",
        ),
        (eq("n", json!(4)), "a different integer"),
    ] {
        let result = store
            .transact(vec![put_op(item(&key, json!({"v": 9})), cond)])
            .await;
        assert_conflict(result, 0, &format!("Equals with {what}"));
    }
    transact(
        &*store,
        vec![put_op(
            item(&key, json!({"state": "running", "n": 3i64})),
            eq("state", json!("pending")),
        )],
        "Equals on a string",
    )
    .await;
    transact(
        &*store,
        vec![put_op(
            item(&key, json!({"state": "done", "n": 3i64})),
            eq("n", Value::from(3u64)),
        )],
        "Equals 3u64 on a stored 3i64",
    )
    .await;
    assert_eq!(
        get(&*store, &key).await,
        Some(item(&key, json!({"state": "done", "n": 3}))),
        "both matching conditions applied"
    );
}

/// GIVEN a transaction whose first operation would apply and whose second
/// and third fail their conditions WHEN it runs THEN `Conflict{op:1}` and
/// the first operation is not applied either.
pub async fn failed_condition_writes_nothing(store: Arc<dyn Store>) {
    let p = fresh("atomic");
    let a = Key::new(format!("{p}#a"), "x");
    let b = Key::new(format!("{p}#b"), "x");
    let c = Key::new(format!("{p}#c"), "x");
    let existing = item(&c, json!({"v": 1}));
    put(&*store, existing.clone()).await;
    let result = store
        .transact(vec![
            put_op(item(&a, json!({"v": 1})), Condition::Absent { now: now() }),
            put_op(item(&b, json!({"v": 1})), Condition::Exists),
            WriteOp::Delete {
                key: c.clone(),
                cond: Condition::version(7),
            },
        ])
        .await;
    assert_conflict(result, 1, "the first failing condition is reported");
    assert_missing(
        &*store,
        &a,
        "an operation before the failing one is not applied",
    )
    .await;
    assert_missing(&*store, &b, "the failing operation is not applied").await;
    assert_eq!(
        get(&*store, &c).await,
        Some(existing),
        "an operation after the failing one is not applied"
    );
}

/// GIVEN items to create, delete and add to WHEN one transaction carries all
/// three THEN every operation is applied.
pub async fn transact_applies_every_operation(store: Arc<dyn Store>) {
    let p = fresh("all-ops");
    let created = Key::new(format!("{p}#new"), "x");
    let deleted = Key::new(format!("{p}#old"), "x");
    let counted = Key::new(format!("{p}#counter"), "x");
    put(&*store, item(&deleted, json!({"v": 1}))).await;
    put(&*store, item(&counted, json!({"n": 1}))).await;
    transact(
        &*store,
        vec![
            put_op(
                item(&created, json!({"v": 1})),
                Condition::Absent { now: now() },
            ),
            WriteOp::Delete {
                key: deleted.clone(),
                cond: Condition::Exists,
            },
            WriteOp::Add {
                key: counted.clone(),
                deltas: vec![("n".into(), 2)],
            },
        ],
        "put + delete + add",
    )
    .await;
    assert_eq!(
        get(&*store, &created).await,
        Some(item(&created, json!({"v": 1}))),
        "the put applied"
    );
    assert_missing(&*store, &deleted, "the delete applied").await;
    assert_eq!(
        get(&*store, &counted).await,
        Some(item(&counted, json!({"n": 3}))),
        "the add applied"
    );
}

/// GIVEN a present item WHEN deleted under a failing condition THEN
/// `Conflict{op:0}` and it stays; WHEN deleted with `Exists` THEN it is
/// gone; WHEN deleted with `Exists` again THEN `Conflict{op:0}`.
pub async fn delete_honours_its_condition(store: Arc<dyn Store>) {
    let p = fresh("delete");
    let key = Key::new(format!("{p}#item"), "x");
    let kept = item(&key, json!({"version": 3}));
    put(&*store, kept.clone()).await;
    let delete = |cond| {
        vec![WriteOp::Delete {
            key: key.clone(),
            cond,
        }]
    };
    assert_conflict(
        store.transact(delete(Condition::version(2))).await,
        0,
        "delete at a stale version",
    );
    assert_conflict(
        store
            .transact(delete(Condition::Absent { now: now() }))
            .await,
        0,
        "delete Absent of a present item",
    );
    assert_eq!(
        get(&*store, &key).await,
        Some(kept),
        "a conflicting delete leaves the item"
    );
    transact(
        &*store,
        delete(Condition::version(3)),
        "delete at the current version",
    )
    .await;
    assert_missing(
        &*store,
        &key,
        "a delete whose condition holds removes the item",
    )
    .await;
    assert_conflict(
        store.transact(delete(Condition::Exists)).await,
        0,
        "delete Exists of a missing item",
    );
}

/// GIVEN a missing item WHEN deleted without condition THEN it succeeds.
pub async fn delete_of_missing_item_without_condition_succeeds(store: Arc<dyn Store>) {
    let p = fresh("delete-missing");
    let key = Key::new(format!("{p}#item"), "x");
    transact(
        &*store,
        vec![WriteOp::Delete {
            key: key.clone(),
            cond: Condition::None,
        }],
        "unconditional delete of a missing item",
    )
    .await;
    assert_missing(&*store, &key, "deleting a missing item creates nothing").await;
}

/// GIVEN a missing item WHEN deltas are added THEN it is created bare with
/// them; further adds accumulate, start missing attributes at zero and may
/// go below zero.
pub async fn add_creates_accumulates_and_goes_negative(store: Arc<dyn Store>) {
    let p = fresh("add");
    let key = Key::new(format!("{p}#counter"), "x");
    let add = |deltas: &[(&str, i64)]| {
        vec![WriteOp::Add {
            key: key.clone(),
            deltas: deltas.iter().map(|(n, d)| (n.to_string(), *d)).collect(),
        }]
    };
    transact(&*store, add(&[("hits", 5)]), "add to a missing item").await;
    assert_eq!(
        get(&*store, &key).await,
        Some(item(&key, json!({"hits": 5}))),
        "add creates the item bare"
    );
    transact(
        &*store,
        add(&[("hits", 3), ("misses", -2)]),
        "add to a present item",
    )
    .await;
    assert_eq!(
        get(&*store, &key).await,
        Some(item(&key, json!({"hits": 8, "misses": -2}))),
        "add accumulates and starts missing attributes at zero"
    );
    transact(&*store, add(&[("hits", -10)]), "add a negative delta").await;
    assert_eq!(
        get(&*store, &key).await,
        Some(item(&key, json!({"hits": -2, "misses": -2}))),
        "add goes below zero"
    );
}

/// GIVEN an item with attributes, an index and a TTL WHEN a delta is added
/// THEN only the counted attribute changes.
pub async fn add_keeps_other_attributes_indexes_and_ttl(store: Arc<dyn Store>) {
    let p = fresh("add-keeps");
    let key = Key::new(format!("{p}#item"), "x");
    let mut written = item(&key, json!({"name": "n", "count": 1}));
    written.ttl = Some(now() + HOUR);
    written.indexes = vec![(Index::Gsi4, Key::new(format!("{p}#g"), "s"))];
    put(&*store, written.clone()).await;
    transact(
        &*store,
        vec![WriteOp::Add {
            key: key.clone(),
            deltas: vec![("count".into(), 2)],
        }],
        "add to an indexed item",
    )
    .await;
    let mut expected = written;
    expected.attrs.insert("count".into(), json!(3));
    assert_eq!(
        get(&*store, &key).await,
        Some(normalized(expected)),
        "add changes only its attribute"
    );
    index_eventually(
        &*store,
        &Query::index(Index::Gsi4, format!("{p}#g"), 10),
        &[key],
        "an added-to item stays in its index",
    )
    .await;
}

/// GIVEN an item whose attribute is a string WHEN a delta is added to it
/// THEN `Invalid` and the item is unchanged.
pub async fn add_to_non_integer_attribute_is_invalid(store: Arc<dyn Store>) {
    let p = fresh("add-string");
    let key = Key::new(format!("{p}#item"), "x");
    let written = item(&key, json!({"label": "text", "n": 1}));
    put(&*store, written.clone()).await;
    let result = store
        .transact(vec![WriteOp::Add {
            key: key.clone(),
            deltas: vec![("n".into(), 1), ("label".into(), 1)],
        }])
        .await;
    assert_invalid(result, "add to a string attribute");
    assert_eq!(
        get(&*store, &key).await,
        Some(written),
        "a rejected add changes nothing"
    );
}

// ---------------------------------------------------------------------------
// Validation

/// GIVEN two operations on one key WHEN they are sent in one transaction
/// THEN `Invalid` and neither is applied.
pub async fn duplicate_keys_in_one_transact_are_invalid(store: Arc<dyn Store>) {
    let p = fresh("dup-transact");
    let key = Key::new(format!("{p}#item"), "x");
    let other = Key::new(format!("{p}#other"), "x");
    let result = store
        .transact(vec![
            put_op(item(&other, json!({"v": 1})), Condition::None),
            put_op(item(&key, json!({"v": 1})), Condition::None),
            WriteOp::Add {
                key: key.clone(),
                deltas: vec![("v".into(), 1)],
            },
        ])
        .await;
    assert_invalid(result, "two operations on one key");
    assert_missing(&*store, &key, "an invalid transaction writes nothing").await;
    assert_missing(&*store, &other, "an invalid transaction writes nothing").await;
}

/// GIVEN a batch holding one key twice WHEN it is put THEN `Invalid` and
/// nothing of the batch is written.
pub async fn duplicate_keys_in_one_put_batch_are_invalid(store: Arc<dyn Store>) {
    let p = fresh("dup-batch");
    let batch: Vec<Item> = ["a", "b", "a"]
        .iter()
        .map(|sk| item(&Key::new(format!("{p}#part"), *sk), json!({"v": 1})))
        .collect();
    assert_invalid(
        store.put_batch(batch).await,
        "a put_batch with a duplicate key",
    );
    let left = query(&*store, &Query::table(format!("{p}#part"), 10)).await;
    assert!(
        left.is_empty(),
        "an invalid put_batch writes nothing, found {:?}",
        keys(&left)
    );
}

/// GIVEN transactions of 0, `MAX_TRANSACT_OPS` + 1 and `MAX_TRANSACT_OPS`
/// operations THEN the first two are `Invalid` (writing nothing) and the
/// last applies.
pub async fn transact_takes_one_to_max_operations(store: Arc<dyn Store>) {
    let p = fresh("op-count");
    let ops = |n: usize| -> Vec<WriteOp> {
        (0..n)
            .map(|i| {
                put_op(
                    item(
                        &Key::new(format!("{p}#part"), format!("{i:04}")),
                        json!({"i": i}),
                    ),
                    Condition::None,
                )
            })
            .collect()
    };
    assert_invalid(store.transact(Vec::new()).await, "an empty transaction");
    assert_invalid(
        store.transact(ops(MAX_TRANSACT_OPS + 1)).await,
        "a transaction over the operation limit",
    );
    let part = Query::table(format!("{p}#part"), 1000);
    assert!(
        query(&*store, &part).await.is_empty(),
        "a transaction over the limit writes nothing"
    );
    transact(
        &*store,
        ops(MAX_TRANSACT_OPS),
        "a transaction at the operation limit",
    )
    .await;
    assert_eq!(
        query(&*store, &part).await.len(),
        MAX_TRANSACT_OPS,
        "every operation at the limit applied"
    );
}

/// GIVEN an item larger than `MAX_ITEM_BYTES` WHEN put by transact or
/// put_batch THEN `Invalid` and nothing is written; an item a little under
/// the limit is accepted.
pub async fn oversize_item_is_invalid(store: Arc<dyn Store>) {
    let p = fresh("oversize");
    let big = Key::new(format!("{p}#item"), "big");
    let oversize = item(&big, json!({"blob": "x".repeat(MAX_ITEM_BYTES)}));
    let small = Key::new(format!("{p}#item"), "small");
    assert_invalid(
        store
            .transact(vec![put_op(oversize.clone(), Condition::None)])
            .await,
        "transact with an oversize item",
    );
    assert_invalid(
        store
            .put_batch(vec![item(&small, json!({"v": 1})), oversize])
            .await,
        "put_batch with an oversize item",
    );
    assert_missing(&*store, &big, "an oversize item is not written").await;
    assert_missing(
        &*store,
        &small,
        "a put_batch rejected for size writes nothing",
    )
    .await;
    let large = item(&big, json!({"blob": "x".repeat(MAX_ITEM_BYTES - 8 * 1024)}));
    put(&*store, large.clone()).await;
    assert_eq!(
        get(&*store, &big).await,
        Some(large),
        "an item under the size limit round-trips"
    );
}

/// GIVEN an attribute nesting deeper than `MAX_ITEM_DEPTH` (DynamoDB's 32
/// levels) WHEN put by transact or put_batch THEN `Invalid` and nothing is
/// written; one exactly at the limit round-trips.
pub async fn too_deep_item_is_invalid(store: Arc<dyn Store>) {
    use crate::json::MAX_ITEM_DEPTH;
    let nested = |depth: usize| -> Value {
        let text = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        serde_json::from_str(&text).expect("nested JSON")
    };
    let p = fresh("deep");
    let deep = Key::new(format!("{p}#item"), "deep");
    let too_deep = item(&deep, json!({"v": nested(MAX_ITEM_DEPTH + 1)}));
    assert_invalid(
        store
            .transact(vec![put_op(too_deep.clone(), Condition::None)])
            .await,
        "transact with an item nesting 33 levels",
    );
    assert_invalid(
        store.put_batch(vec![too_deep]).await,
        "put_batch with an item nesting 33 levels",
    );
    assert_missing(&*store, &deep, "a too deep item is not written").await;
    let at_limit = item(&deep, json!({"v": nested(MAX_ITEM_DEPTH)}));
    put(&*store, at_limit.clone()).await;
    assert_eq!(
        get(&*store, &deep).await,
        Some(at_limit),
        "an item nesting 32 levels round-trips"
    );
}

/// GIVEN attribute names `pk`, `sk`, `ttl` or `gsi*` WHEN put or added
/// THEN `Invalid` and nothing is written.
pub async fn reserved_attribute_names_are_invalid(store: Arc<dyn Store>) {
    let p = fresh("reserved");
    let key = Key::new(format!("{p}#item"), "x");
    for name in ["pk", "sk", "ttl", "gsi1pk", "gsi6sk", "gsix"] {
        let mut attrs = Map::new();
        attrs.insert(name.into(), json!("v"));
        let result = store
            .transact(vec![put_op(
                Item::new(key.clone(), attrs.clone()),
                Condition::None,
            )])
            .await;
        assert_invalid(result, &format!("transact with attribute {name:?}"));
        let result = store.put_batch(vec![Item::new(key.clone(), attrs)]).await;
        assert_invalid(result, &format!("put_batch with attribute {name:?}"));
        let result = store
            .transact(vec![WriteOp::Add {
                key: key.clone(),
                deltas: vec![(name.into(), 1)],
            }])
            .await;
        assert_invalid(result, &format!("add to attribute {name:?}"));
    }
    assert_missing(&*store, &key, "writes with reserved names write nothing").await;
}

/// GIVEN empty partition or sort keys (of an item or of an index) or a query
/// limit of 0 THEN `Invalid`.
pub async fn empty_keys_and_zero_limit_are_invalid(store: Arc<dyn Store>) {
    let p = fresh("empty-keys");
    for key in [Key::new("", "x"), Key::new(format!("{p}#item"), "")] {
        let result = store
            .transact(vec![put_op(item(&key, json!({"v": 1})), Condition::None)])
            .await;
        assert_invalid(result, &format!("put of key {key:?}"));
        assert_invalid(store.get(&key).await, &format!("get of key {key:?}"));
    }
    let mut indexed = item(&Key::new(format!("{p}#item"), "x"), json!({"v": 1}));
    indexed.indexes = vec![(Index::Gsi1, Key::new(format!("{p}#g"), ""))];
    assert_invalid(
        store.transact(vec![put_op(indexed, Condition::None)]).await,
        "put with an empty index sort key",
    );
    assert_missing(
        &*store,
        &Key::new(format!("{p}#item"), "x"),
        "a put with an empty index key writes nothing",
    )
    .await;
    assert_invalid(
        store.query(&Query::table(format!("{p}#item"), 0)).await,
        "table query with limit 0",
    );
    assert_invalid(
        store
            .query(&Query::index(Index::Gsi1, format!("{p}#g"), 0))
            .await,
        "index query with limit 0",
    );
}

/// GIVEN no items WHEN put_batch is called THEN it succeeds.
pub async fn empty_put_batch_succeeds(store: Arc<dyn Store>) {
    if let Err(e) = store.put_batch(Vec::new()).await {
        panic!("an empty put_batch must succeed: {e}");
    }
}

// ---------------------------------------------------------------------------
// Queries

/// GIVEN a partition of five items beside partitions whose keys share its
/// prefix WHEN it is queried with bounds, order and limit THEN exactly its
/// items come back in sort-key order, bounds exclusive.
pub async fn table_query_reads_one_partition_in_sort_key_order(store: Arc<dyn Store>) {
    let p = fresh("table-query");
    let part = format!("{p}#part");
    let sks = ["a", "b", "b#1", "c", "d"];
    // Written out of order; neighbours share the partition key's prefix.
    for sk in ["c", "a", "d", "b#1", "b"] {
        put(&*store, item(&Key::new(&part, sk), json!({"label": sk}))).await;
    }
    put(&*store, item(&Key::new(format!("{part}2"), "a"), json!({}))).await;
    put(&*store, item(&Key::new(format!("{p}#par"), "z"), json!({}))).await;

    let q = |after: Option<&str>, before: Option<&str>, descending: bool, limit: usize| Query {
        index: None,
        pk: part.clone(),
        after: after.map(Into::into),
        before: before.map(Into::into),
        descending,
        limit,
    };
    let cases: [(Query, &[&str]); 9] = [
        (q(None, None, false, 10), &sks),
        (q(None, None, true, 10), &["d", "c", "b#1", "b", "a"]),
        (q(None, None, false, 2), &["a", "b"]),
        (q(None, None, true, 2), &["d", "c"]),
        (q(Some("b"), None, false, 10), &["b#1", "c", "d"]),
        (q(None, Some("c"), false, 10), &["a", "b", "b#1"]),
        (q(Some("a"), Some("d"), false, 10), &["b", "b#1", "c"]),
        (q(Some("a"), Some("d"), true, 2), &["c", "b#1"]),
        (q(Some("d"), None, false, 10), &[]),
    ];
    for (query_, want) in cases {
        let got = query(&*store, &query_).await;
        let got_sks: Vec<&str> = got.iter().map(|i| i.key.sk.as_str()).collect();
        assert_eq!(got_sks, want, "table query {query_:?}");
        assert!(
            got.iter().all(|i| i.key.pk == part),
            "table query {query_:?} left its partition"
        );
        for i in &got {
            assert_eq!(
                i.attrs.get("label"),
                Some(&json!(i.key.sk)),
                "a queried item carries its attributes"
            );
        }
    }
}

/// GIVEN an item in two indexes WHEN each index is queried under its key
/// THEN the full item is found there and nowhere else.
pub async fn index_query_finds_item_under_its_index_key(store: Arc<dyn Store>) {
    let p = fresh("index-find");
    let key = Key::new(format!("{p}#item"), "x");
    let mut written = item(&key, json!({"v": 1}));
    written.indexes = vec![
        (Index::Gsi1, Key::new(format!("{p}#g1"), "s1")),
        (Index::Gsi5, Key::new(format!("{p}#g5"), "s5")),
    ];
    put(&*store, written.clone()).await;
    let found = index_eventually(
        &*store,
        &Query::index(Index::Gsi1, format!("{p}#g1"), 10),
        std::slice::from_ref(&key),
        "an item under its gsi1 key",
    )
    .await;
    assert_eq!(
        normalized(found[0].clone()),
        normalized(written),
        "an index query returns the full item"
    );
    index_eventually(
        &*store,
        &Query::index(Index::Gsi5, format!("{p}#g5"), 10),
        std::slice::from_ref(&key),
        "an item under its gsi5 key",
    )
    .await;
    index_eventually(
        &*store,
        &Query::index(Index::Gsi2, format!("{p}#g1"), 10),
        &[],
        "an item is in no index it has no key for",
    )
    .await;
}

/// GIVEN an indexed item WHEN it is re-put under another key of the same
/// index THEN the index finds it under the new key only.
pub async fn index_query_follows_item_re_put_under_another_key(store: Arc<dyn Store>) {
    let p = fresh("index-move");
    let key = Key::new(format!("{p}#item"), "x");
    let mut written = item(&key, json!({"state": "pending"}));
    written.indexes = vec![(Index::Gsi1, Key::new(format!("{p}#pending"), "t1"))];
    put(&*store, written.clone()).await;
    let pending = Query::index(Index::Gsi1, format!("{p}#pending"), 10);
    index_eventually(
        &*store,
        &pending,
        std::slice::from_ref(&key),
        "before the move",
    )
    .await;
    written.attrs.insert("state".into(), json!("running"));
    written.indexes = vec![(Index::Gsi1, Key::new(format!("{p}#running"), "t2"))];
    put(&*store, written).await;
    let running = Query::index(Index::Gsi1, format!("{p}#running"), 10);
    let found = index_eventually(
        &*store,
        &running,
        std::slice::from_ref(&key),
        "under the new key",
    )
    .await;
    assert_eq!(
        found[0].attrs.get("state"),
        Some(&json!("running")),
        "the index returns the new version"
    );
    index_eventually(&*store, &pending, &[], "gone from the old key").await;
    // Same partition, new sort key: the old entry goes too.
    let mut moved = item(&key, json!({"state": "running"}));
    moved.indexes = vec![(Index::Gsi1, Key::new(format!("{p}#running"), "t3"))];
    put(&*store, moved).await;
    let newer = Query {
        after: Some("t2".into()),
        ..running.clone()
    };
    let older = Query {
        before: Some("t3".into()),
        ..running.clone()
    };
    index_eventually(
        &*store,
        &newer,
        std::slice::from_ref(&key),
        "under the new sort key",
    )
    .await;
    index_eventually(&*store, &older, &[], "gone from the old sort key").await;
}

/// GIVEN an indexed item WHEN it is re-put without that index THEN the index
/// no longer finds it, and the item itself remains.
pub async fn index_query_drops_item_whose_index_is_removed(store: Arc<dyn Store>) {
    let p = fresh("index-remove");
    let key = Key::new(format!("{p}#item"), "x");
    let mut written = item(&key, json!({"v": 1}));
    written.indexes = vec![(Index::Gsi3, Key::new(format!("{p}#g"), "s"))];
    put(&*store, written).await;
    let q = Query::index(Index::Gsi3, format!("{p}#g"), 10);
    index_eventually(
        &*store,
        &q,
        std::slice::from_ref(&key),
        "before the index is removed",
    )
    .await;
    put(&*store, item(&key, json!({"v": 2}))).await;
    index_eventually(&*store, &q, &[], "after the index is removed").await;
    assert!(
        get(&*store, &key).await.is_some(),
        "the item itself remains"
    );
}

/// GIVEN an indexed item WHEN it is deleted THEN the index no longer finds it.
pub async fn index_query_drops_deleted_item(store: Arc<dyn Store>) {
    let p = fresh("index-delete");
    let key = Key::new(format!("{p}#item"), "x");
    let mut written = item(&key, json!({"v": 1}));
    written.indexes = vec![(Index::Gsi6, Key::new(format!("{p}#g"), "s"))];
    put(&*store, written).await;
    let q = Query::index(Index::Gsi6, format!("{p}#g"), 10);
    index_eventually(&*store, &q, std::slice::from_ref(&key), "before the delete").await;
    transact(
        &*store,
        vec![WriteOp::Delete {
            key: key.clone(),
            cond: Condition::Exists,
        }],
        "delete of an indexed item",
    )
    .await;
    index_eventually(&*store, &q, &[], "after the delete").await;
}

/// GIVEN index sort keys that prefix one another (`a`, `a#1`, `a#10`, …)
/// WHEN the index is read in pages of two with `after` set to the last sort
/// key seen THEN every item comes exactly once in order; `before` pages
/// backwards likewise.
pub async fn index_query_paginates_with_after_over_equal_prefix_keys(store: Arc<dyn Store>) {
    let p = fresh("index-pages");
    let ipk = format!("{p}#g");
    let isks = ["a", "a#1", "a#10", "a#2", "ab", "b"];
    // Item keys deliberately sort against the index order.
    let key_of = |n: usize| Key::new(format!("{p}#item{}", 9 - n), "x");
    for (n, isk) in isks.iter().enumerate().rev() {
        let mut written = item(&key_of(n), json!({"isk": isk}));
        written.indexes = vec![(Index::Gsi2, Key::new(&ipk, *isk))];
        put(&*store, written).await;
    }
    let all: Vec<Key> = (0..isks.len()).map(key_of).collect();
    index_eventually(
        &*store,
        &Query::index(Index::Gsi2, &ipk, 10),
        &all,
        "the whole index partition",
    )
    .await;

    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = query(
            &*store,
            &Query {
                after: after.clone(),
                ..Query::index(Index::Gsi2, &ipk, 2)
            },
        )
        .await;
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2, "a page honours its limit");
        after = page
            .last()
            .and_then(|i| i.index_key(Index::Gsi2))
            .map(|k| k.sk.clone());
        assert!(
            after.is_some(),
            "an item found through an index carries its index key"
        );
        seen.extend(keys(&page));
        assert!(
            seen.len() <= isks.len(),
            "pagination repeats items: {seen:?}"
        );
    }
    assert_eq!(seen, all, "forward pages with after");

    let mut seen = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let page = query(
            &*store,
            &Query {
                before: before.clone(),
                descending: true,
                ..Query::index(Index::Gsi2, &ipk, 2)
            },
        )
        .await;
        if page.is_empty() {
            break;
        }
        before = page
            .last()
            .and_then(|i| i.index_key(Index::Gsi2))
            .map(|k| k.sk.clone());
        seen.extend(keys(&page));
        assert!(
            seen.len() <= isks.len(),
            "pagination repeats items: {seen:?}"
        );
    }
    let reversed: Vec<Key> = all.iter().rev().cloned().collect();
    assert_eq!(seen, reversed, "backward pages with before");

    let window = query(
        &*store,
        &Query {
            after: Some("a#1".into()),
            before: Some("ab".into()),
            ..Query::index(Index::Gsi2, &ipk, 10)
        },
    )
    .await;
    assert_eq!(
        keys(&window),
        all[2..4].to_vec(),
        "after and before together bound the index range"
    );
}

/// GIVEN 1,000 items, every hundredth also indexed WHEN they are put in one
/// batch THEN a table query returns all of them in order and the index the
/// indexed ones.
pub async fn put_batch_of_1000_items_is_readable_by_query(store: Arc<dyn Store>) {
    let p = fresh("batch");
    let part = format!("{p}#part");
    let batch: Vec<Item> = (0..1000)
        .map(|i| {
            let mut it = item(
                &Key::new(&part, format!("item-{i:04}")),
                json!({"i": i, "pad": "p".repeat(100)}),
            );
            if i % 100 == 0 {
                it.indexes = vec![(Index::Gsi2, Key::new(format!("{p}#g"), format!("{i:04}")))];
            }
            it
        })
        .collect();
    if let Err(e) = store.put_batch(batch.clone()).await {
        panic!("put_batch of 1000 items failed: {e}");
    }
    let got = query(&*store, &Query::table(&part, 1000)).await;
    assert_eq!(got.len(), 1000, "every batched item is readable");
    for (got, want) in got.into_iter().zip(batch.iter()) {
        assert_eq!(
            normalized(got),
            normalized(want.clone()),
            "batched items come back in order, intact"
        );
    }
    let indexed: Vec<Key> = batch
        .iter()
        .filter(|i| !i.indexes.is_empty())
        .map(|i| i.key.clone())
        .collect();
    index_eventually(
        &*store,
        &Query::index(Index::Gsi2, format!("{p}#g"), 100),
        &indexed,
        "batched items in their index",
    )
    .await;
}

/// GIVEN an item at version 1 WHEN 32 transactions race to move it to
/// version 2 with `version(1)` THEN exactly one wins and every other gets
/// `Conflict{op:0}`; the winner's write is what remains.
pub async fn concurrent_version_cas_has_exactly_one_winner(store: Arc<dyn Store>) {
    let p = fresh("race");
    let key = Key::new(format!("{p}#item"), "x");
    put(&*store, item(&key, json!({"version": 1}))).await;
    let mut racers = JoinSet::new();
    for n in 0..32u64 {
        let store = store.clone();
        let key = key.clone();
        racers.spawn(async move {
            let next = item(&key, json!({"version": 2, "winner": n}));
            (
                n,
                store
                    .transact(vec![put_op(next, Condition::version(1))])
                    .await,
            )
        });
    }
    let mut winners = Vec::new();
    while let Some(joined) = racers.join_next().await {
        let (n, result) = joined.unwrap_or_else(|e| panic!("a racing transaction panicked: {e}"));
        match result {
            Ok(()) => winners.push(n),
            Err(StoreError::Conflict { op: 0 }) => {}
            Err(e) => panic!("a losing racer must get Conflict {{ op: 0 }}, got {e:?}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one racer wins the compare-and-set, winners: {winners:?}"
    );
    assert_eq!(
        get(&*store, &key).await,
        Some(item(&key, json!({"version": 2, "winner": winners[0]}))),
        "the winner's write remains"
    );
}

// ---------------------------------------------------------------------------
// Counters

/// GIVEN a missing item WHEN `increment` is called with limit 3 THEN it
/// answers 1, 2, 3 and creates a bare item holding the count; WHEN called
/// again THEN `None` and nothing is written (not even the TTL it carries).
pub async fn increment_counts_from_absent_up_to_the_limit(store: Arc<dyn Store>) {
    let p = fresh("incr");
    let key = Key::new(format!("{p}#counter"), "x");
    for want in 1..=3 {
        assert_eq!(
            increment(&*store, &key, "hits", 3, None).await,
            Some(want),
            "increment below the limit answers the new value"
        );
    }
    let counted = item(&key, json!({"hits": 3}));
    assert_eq!(
        get(&*store, &key).await,
        Some(counted.clone()),
        "increment creates a bare item holding the count"
    );
    for ttl in [None, Some(now() + HOUR)] {
        assert_eq!(
            increment(&*store, &key, "hits", 3, ttl).await,
            None,
            "increment at the limit answers None (ttl {ttl:?})"
        );
        assert_eq!(
            get(&*store, &key).await,
            Some(counted.clone()),
            "increment at the limit writes nothing (ttl {ttl:?})"
        );
    }
}

/// GIVEN counters below, at and above their limit, and a negative one
/// WHEN incremented THEN the one just below reaches the limit exactly and
/// stops there, those at or above it answer `None` unchanged, a limit of 1
/// allows exactly one, and a negative counter counts up by one.
pub async fn increment_stops_exactly_at_the_limit(store: Arc<dyn Store>) {
    let p = fresh("incr-limit");
    let key = |sk: &str| Key::new(format!("{p}#counter"), sk);

    let once = key("once");
    assert_eq!(increment(&*store, &once, "n", 1, None).await, Some(1));
    assert_eq!(
        increment(&*store, &once, "n", 1, None).await,
        None,
        "limit 1 allows exactly one"
    );

    let below = key("below");
    put(&*store, item(&below, json!({"n": 4}))).await;
    assert_eq!(
        increment(&*store, &below, "n", 5, None).await,
        Some(5),
        "a counter one below the limit reaches it"
    );
    assert_eq!(
        increment(&*store, &below, "n", 5, None).await,
        None,
        "and stops there"
    );
    assert_eq!(
        get(&*store, &below).await,
        Some(item(&below, json!({"n": 5})))
    );

    for (sk, n) in [("at", 5), ("above", 7)] {
        let k = key(sk);
        let stored = item(&k, json!({"n": n}));
        put(&*store, stored.clone()).await;
        assert_eq!(
            increment(&*store, &k, "n", 5, None).await,
            None,
            "a counter {sk} the limit answers None"
        );
        assert_eq!(
            get(&*store, &k).await,
            Some(stored),
            "a counter {sk} the limit is unchanged"
        );
    }

    let negative = key("negative");
    put(&*store, item(&negative, json!({"n": -2}))).await;
    assert_eq!(
        increment(&*store, &negative, "n", 1, None).await,
        Some(-1),
        "a negative counter counts up by one"
    );
}

/// GIVEN an item with attributes, an index and a TTL WHEN its counter and
/// then a missing attribute are incremented without a TTL THEN only the
/// counted attributes change, and the item stays in its index.
pub async fn increment_keeps_other_attributes_indexes_and_ttl(store: Arc<dyn Store>) {
    let p = fresh("incr-keeps");
    let key = Key::new(format!("{p}#item"), "x");
    let mut written = item(&key, json!({"name": "n", "count": 1, "list": [1, "two"]}));
    written.ttl = Some(now() + HOUR);
    written.indexes = vec![(Index::Gsi4, Key::new(format!("{p}#g"), "s"))];
    put(&*store, written.clone()).await;
    assert_eq!(increment(&*store, &key, "count", 10, None).await, Some(2));
    assert_eq!(
        increment(&*store, &key, "hits", 10, None).await,
        Some(1),
        "a missing attribute of a present item starts at zero"
    );
    let mut expected = written;
    expected.attrs.insert("count".into(), json!(2));
    expected.attrs.insert("hits".into(), json!(1));
    assert_eq!(
        get(&*store, &key).await,
        Some(normalized(expected)),
        "increment changes only its attribute"
    );
    index_eventually(
        &*store,
        &Query::index(Index::Gsi4, format!("{p}#g"), 10),
        &[key],
        "an incremented item stays in its index",
    )
    .await;
}

/// GIVEN a missing item WHEN incremented with a TTL THEN it is created with
/// it; WHEN incremented without one THEN it is kept; WHEN with another THEN
/// it is replaced. An item that had no TTL gets one.
pub async fn increment_sets_and_replaces_the_ttl(store: Arc<dyn Store>) {
    let p = fresh("incr-ttl");
    let key = Key::new(format!("{p}#counter"), "x");
    let (first, second) = (now() + HOUR, now() + 2 * HOUR);
    let with_ttl = |n: i64, ttl: i64| {
        let mut it = item(&key, json!({"n": n}));
        it.ttl = Some(ttl);
        it
    };
    assert_eq!(
        increment(&*store, &key, "n", 10, Some(first)).await,
        Some(1)
    );
    assert_eq!(
        get(&*store, &key).await,
        Some(with_ttl(1, first)),
        "increment creates the item with its TTL"
    );
    assert_eq!(increment(&*store, &key, "n", 10, None).await, Some(2));
    assert_eq!(
        get(&*store, &key).await,
        Some(with_ttl(2, first)),
        "increment without a TTL keeps the item's"
    );
    assert_eq!(
        increment(&*store, &key, "n", 10, Some(second)).await,
        Some(3)
    );
    assert_eq!(
        get(&*store, &key).await,
        Some(with_ttl(3, second)),
        "increment with a TTL replaces the item's"
    );

    let plain = Key::new(format!("{p}#plain"), "x");
    let mut indexed = item(&plain, json!({"n": 0, "v": "keep"}));
    indexed.indexes = vec![(Index::Gsi2, Key::new(format!("{p}#g"), "s"))];
    put(&*store, indexed.clone()).await;
    assert_eq!(
        increment(&*store, &plain, "n", 10, Some(first)).await,
        Some(1)
    );
    let mut expected = indexed;
    expected.ttl = Some(first);
    expected.attrs.insert("n".into(), json!(1));
    assert_eq!(
        get(&*store, &plain).await,
        Some(normalized(expected)),
        "an item without a TTL gets the increment's"
    );
}

/// GIVEN a counter whose TTL has passed WHEN incremented THEN it counts on
/// from its stored value (stores do not know "now": callers put the window
/// in the key), at the limit it stays `None`, and a given TTL is set.
pub async fn increment_does_not_reset_an_expired_item(store: Arc<dyn Store>) {
    let p = fresh("incr-expired");
    let key = Key::new(format!("{p}#counter"), "x");
    let mut expired = item(&key, json!({"n": 2}));
    expired.ttl = Some(now() - HOUR);
    put(&*store, expired.clone()).await;
    let fresh_ttl = now() + HOUR;
    assert_eq!(
        increment(&*store, &key, "n", 3, Some(fresh_ttl)).await,
        Some(3),
        "an expired counter is counted on, not reset"
    );
    let mut expected = expired;
    expected.attrs.insert("n".into(), json!(3));
    expected.ttl = Some(fresh_ttl);
    assert_eq!(get(&*store, &key).await, Some(expected.clone()));
    assert_eq!(
        increment(&*store, &key, "n", 3, Some(fresh_ttl + HOUR)).await,
        None,
        "an expired-then-refreshed counter at its limit stays at it"
    );
    assert_eq!(
        get(&*store, &key).await,
        Some(expected),
        "nothing written at the limit"
    );
}

/// GIVEN an item whose attributes are a string, a boolean, null, a list and
/// a map WHEN each is incremented THEN `Invalid` and the item is unchanged
/// (also when the limit is low enough that a number would answer `None`).
pub async fn increment_of_non_integer_attribute_is_invalid(store: Arc<dyn Store>) {
    let p = fresh("incr-type");
    let key = Key::new(format!("{p}#item"), "x");
    let written = item(
        &key,
        json!({"s": "7", "b": true, "z": null, "l": [1], "m": {"n": 1}, "n": 1}),
    );
    put(&*store, written.clone()).await;
    for attr in ["s", "b", "z", "l", "m"] {
        for limit in [1, 100] {
            assert_invalid(
                store.increment(&key, attr, limit, Some(now() + HOUR)).await,
                &format!("increment of attribute {attr:?} (limit {limit})"),
            );
        }
    }
    assert_eq!(
        get(&*store, &key).await,
        Some(written),
        "a rejected increment changes nothing"
    );
}

/// GIVEN attribute names `pk`, `sk`, `ttl`, `gsi*` or empty, or an empty
/// partition or sort key WHEN incremented THEN `Invalid` and nothing is
/// written.
pub async fn increment_of_reserved_attribute_or_empty_key_is_invalid(store: Arc<dyn Store>) {
    let p = fresh("incr-reserved");
    let key = Key::new(format!("{p}#item"), "x");
    for name in ["pk", "sk", "ttl", "gsi1pk", "gsi6sk", "gsix", ""] {
        assert_invalid(
            store.increment(&key, name, 10, None).await,
            &format!("increment of attribute {name:?}"),
        );
    }
    assert_missing(&*store, &key, "increments of reserved names write nothing").await;
    let present = Key::new(format!("{p}#present"), "x");
    let written = item(&present, json!({"n": 1}));
    put(&*store, written.clone()).await;
    assert_invalid(
        store.increment(&present, "ttl", 10, None).await,
        "increment of ttl on a present item",
    );
    assert_eq!(
        get(&*store, &present).await,
        Some(written),
        "an invalid increment leaves a present item unchanged"
    );
    for key in [Key::new("", "x"), Key::new(format!("{p}#item"), "")] {
        assert_invalid(
            store.increment(&key, "n", 10, None).await,
            &format!("increment at key {key:?}"),
        );
    }
    assert_missing(
        &*store,
        &Key::new(format!("{p}#item"), "x"),
        "increments at empty keys write nothing",
    )
    .await;
}

/// GIVEN a missing item and a present negative counter WHEN incremented
/// with a limit of 0 or below THEN `Invalid` and nothing is written.
pub async fn increment_with_limit_below_one_is_invalid(store: Arc<dyn Store>) {
    let p = fresh("incr-zero");
    let missing = Key::new(format!("{p}#missing"), "x");
    let negative = Key::new(format!("{p}#negative"), "x");
    let written = item(&negative, json!({"n": -5}));
    put(&*store, written.clone()).await;
    for limit in [0, -1, i64::MIN] {
        assert_invalid(
            store.increment(&missing, "n", limit, None).await,
            &format!("increment of a missing item with limit {limit}"),
        );
        assert_invalid(
            store.increment(&negative, "n", limit, None).await,
            &format!("increment of a counter at -5 with limit {limit}"),
        );
    }
    assert_missing(&*store, &missing, "an invalid limit creates nothing").await;
    assert_eq!(
        get(&*store, &negative).await,
        Some(written),
        "an invalid limit changes nothing"
    );
}

/// GIVEN a missing counter WHEN 20 tasks increment it at once with limit 10
/// THEN exactly 10 get `Some`, their values are 1..=10 each once, the other
/// 10 get `None`, and the counter holds 10.
pub async fn concurrent_increments_stop_exactly_at_the_limit(store: Arc<dyn Store>) {
    let p = fresh("incr-race");
    let key = Key::new(format!("{p}#counter"), "x");
    let mut racers = JoinSet::new();
    for _ in 0..20 {
        let store = store.clone();
        let key = key.clone();
        racers.spawn(async move { store.increment(&key, "n", 10, Some(now() + HOUR)).await });
    }
    let mut counts = Vec::new();
    let mut refused = 0;
    while let Some(joined) = racers.join_next().await {
        match joined.unwrap_or_else(|e| panic!("a racing increment panicked: {e}")) {
            Ok(Some(n)) => counts.push(n),
            Ok(None) => refused += 1,
            Err(e) => panic!("a racing increment failed: {e}"),
        }
    }
    counts.sort_unstable();
    assert_eq!(
        counts,
        (1..=10).collect::<Vec<i64>>(),
        "each value up to the limit is handed out exactly once"
    );
    assert_eq!(refused, 10, "every increment past the limit answers None");
    let stored = get(&*store, &key).await.map(|i| i.attrs);
    assert_eq!(
        stored,
        Some(attrs(json!({"n": 10}))),
        "the counter holds the limit"
    );
}
