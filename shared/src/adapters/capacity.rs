//! What DynamoDB bills for each request, by its documented rules, and a
//! meter that applies them to every request a client sends.
//!
//! The rules (on-demand capacity, the table's six GSIs projecting all
//! attributes):
//! - an item's size is the sum of its attribute names' and values' sizes
//!   ([`item_size`]);
//! - a write consumes 1 write unit per started KB of the larger of the item
//!   before and after it (2 in a transaction), at least 1; a failed
//!   condition still consumes them;
//! - each index the item is in before or after the write costs 1 unit per
//!   started KB of its entry (the item plus 100 bytes), 2 entries' worth when
//!   the write changes the item's key in that index (a delete and a put);
//! - a read consumes 1 read unit per started 4 KB (half that when
//!   eventually consistent): per item for `GetItem` (an absent item still
//!   costs one), over the items returned together for `Query`.
//!
//! The meter knows an item's size before a write because every item of a
//! measured run was written through it: `warren cost` starts on a fresh
//! table. It also asks DynamoDB for the units it consumed
//! (`ReturnConsumedCapacity=TOTAL`) and keeps that figure beside its own: on
//! AWS it is the bill; an emulator may answer a constant.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::operation::batch_write_item::{BatchWriteItemInput, BatchWriteItemOutput};
use aws_sdk_dynamodb::operation::delete_item::{
    DeleteItemError, DeleteItemInput, DeleteItemOutput,
};
use aws_sdk_dynamodb::operation::get_item::{GetItemInput, GetItemOutput};
use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemInput, PutItemOutput};
use aws_sdk_dynamodb::operation::query::{QueryInput, QueryOutput};
use aws_sdk_dynamodb::operation::transact_write_items::{
    TransactWriteItemsInput, TransactWriteItemsOutput,
};
use aws_sdk_dynamodb::operation::update_item::{
    UpdateItemError, UpdateItemInput, UpdateItemOutput,
};
use aws_sdk_dynamodb::types::{AttributeValue, ConsumedCapacity, ReturnConsumedCapacity};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextMut, FinalizerInterceptorContextRef, Input, Output,
};
use aws_smithy_types::config_bag::{Storable, StoreReplace};

use crate::adapters::dynamodb::{PARTITION_KEY, SORT_KEY, index_attributes};
use crate::ports::Index;

/// Bytes per write unit.
const WRITE_UNIT: usize = 1024;
/// Bytes per (strongly consistent) read unit.
const READ_UNIT: usize = 4096;
/// What an index entry weighs beyond the item's attributes.
const INDEX_ENTRY_OVERHEAD: usize = 100;

type Attributes = HashMap<String, AttributeValue>;

/// The size DynamoDB bills for an item: its attribute names and values.
pub fn item_size(item: &Attributes) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

/// The size of one attribute value.
pub fn value_size(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => number_size(n),
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(v) => v.iter().map(String::len).sum(),
        AttributeValue::Ns(v) => v.iter().map(|n| number_size(n)).sum(),
        AttributeValue::Bs(v) => v.iter().map(|b| b.as_ref().len()).sum(),
        // 3 bytes for the container, 1 per element (and a map's names).
        AttributeValue::L(v) => 3 + v.iter().map(|e| 1 + value_size(e)).sum::<usize>(),
        AttributeValue::M(m) => {
            3 + m
                .iter()
                .map(|(k, e)| 1 + k.len() + value_size(e))
                .sum::<usize>()
        }
        _ => 0,
    }
}

/// 1 byte per two significant digits, plus 1.
fn number_size(n: &str) -> usize {
    let mantissa = n.split(['e', 'E']).next().unwrap_or(n);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0');
    1 + significant.len().div_ceil(2)
}

/// What of an item decides what its writes cost: its size and its key in
/// each index it is in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    pub size: usize,
    pub index_keys: Vec<(Index, String, String)>,
}

impl Footprint {
    pub fn of(item: &Attributes) -> Self {
        let text = |name: &str| match item.get(name) {
            Some(AttributeValue::S(s)) => Some(s.clone()),
            _ => None,
        };
        let index_keys = Index::ALL
            .into_iter()
            .filter_map(|index| {
                let (pk, sk) = index_attributes(index);
                Some((index, text(pk)?, text(sk)?))
            })
            .collect();
        Footprint {
            size: item_size(item),
            index_keys,
        }
    }

    fn key_in(&self, index: Index) -> Option<(&str, &str)> {
        self.index_keys
            .iter()
            .find(|(i, _, _)| *i == index)
            .map(|(_, pk, sk)| (pk.as_str(), sk.as_str()))
    }
}

/// Write units of one write, split into the table's and the indexes'.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteUnits {
    pub table: u64,
    pub indexes: u64,
}

fn units(bytes: usize, per: usize) -> u64 {
    bytes.div_ceil(per).max(1) as u64
}

/// What a write from `before` to `after` (`None`: absent) costs.
pub fn write_units(
    before: Option<&Footprint>,
    after: Option<&Footprint>,
    transactional: bool,
) -> WriteUnits {
    let size = |f: Option<&Footprint>| f.map_or(0, |f| f.size);
    let larger = size(before).max(size(after));
    let table = units(larger, WRITE_UNIT) * if transactional { 2 } else { 1 };
    let entry = |bytes: usize| units(bytes + INDEX_ENTRY_OVERHEAD, WRITE_UNIT);
    let indexes = Index::ALL
        .into_iter()
        .map(|index| {
            let old = before.and_then(|f| f.key_in(index));
            let new = after.and_then(|f| f.key_in(index));
            match (old, new) {
                (None, None) => 0,
                (Some(_), None) => entry(size(before)),
                (None, Some(_)) => entry(size(after)),
                (Some(a), Some(b)) if a == b => entry(larger),
                (Some(_), Some(_)) => entry(size(before)) + entry(size(after)),
            }
        })
        .sum();
    WriteUnits { table, indexes }
}

/// Read units of reading `bytes` at once (one item, or a query's page).
pub fn read_units(bytes: usize, consistent: bool) -> f64 {
    let full = units(bytes, READ_UNIT) as f64;
    if consistent { full } else { full / 2.0 }
}

/// Units consumed by one kind of request.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Consumed {
    pub requests: u64,
    /// Write units on the table's items.
    pub table_writes: u64,
    /// Write units on index entries.
    pub index_writes: u64,
    pub reads: f64,
    /// What DynamoDB said it consumed (`ConsumedCapacity`), reads and writes.
    pub reported: f64,
}

impl Consumed {
    pub fn writes(&self) -> u64 {
        self.table_writes + self.index_writes
    }

    /// Adds `other`'s units to these.
    pub fn add(&mut self, other: &Consumed) {
        self.requests += other.requests;
        self.table_writes += other.table_writes;
        self.index_writes += other.index_writes;
        self.reads += other.reads;
        self.reported += other.reported;
    }
}

/// Applies [`write_units`] and [`read_units`] to every DynamoDB request of
/// the clients it is attached to, by operation. Items are tracked by key as
/// they are written, so a run must start on a table this meter has seen
/// from the start (an item it never saw counts as absent before a write).
#[derive(Clone, Debug, Default)]
pub struct CapacityMeter(Arc<Mutex<Ledger>>);

#[derive(Debug, Default)]
struct Ledger {
    items: HashMap<(String, String), Attributes>,
    by_operation: BTreeMap<String, Consumed>,
}

impl CapacityMeter {
    /// Units so far, by operation.
    pub fn snapshot(&self) -> BTreeMap<String, Consumed> {
        self.0
            .lock()
            .map(|l| l.by_operation.clone())
            .unwrap_or_default()
    }

    /// Start counting afresh (the items written so far stay known).
    pub fn reset(&self) {
        if let Ok(mut l) = self.0.lock() {
            l.by_operation.clear();
        }
    }
}

/// One item write of a request, as sent.
#[derive(Clone, Debug)]
enum Change {
    Put(Attributes),
    Delete,
    /// The attributes an update sets (their new values where known).
    Update(Vec<(String, Option<AttributeValue>)>),
}

/// A request being sent, as the meter needs it once the answer is in.
#[derive(Clone, Debug)]
enum Pending {
    Writes {
        operation: &'static str,
        writes: Vec<((String, String), Change)>,
        transactional: bool,
    },
    Get {
        consistent: bool,
    },
    Query {
        consistent: bool,
        index: bool,
    },
}

impl Storable for Pending {
    type Storer = StoreReplace<Self>;
}

fn key_of(key: Option<&Attributes>) -> (String, String) {
    let text = |name: &str| match key.and_then(|k| k.get(name)) {
        Some(AttributeValue::S(s)) => s.clone(),
        _ => String::new(),
    };
    (text(PARTITION_KEY), text(SORT_KEY))
}

/// The attributes an update expression sets: every `#name` placeholder, with
/// the value of the `:value` placeholder that follows it.
fn updated(
    expression: Option<&str>,
    names: Option<&HashMap<String, String>>,
    values: Option<&Attributes>,
) -> Vec<(String, Option<AttributeValue>)> {
    let (Some(expression), Some(names)) = (expression, names) else {
        return Vec::new();
    };
    let tokens: Vec<&str> = expression
        .split(|c: char| c.is_whitespace() || c == ',' || c == '=')
        .filter(|t| !t.is_empty())
        .collect();
    let mut out = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let Some(name) = names.get(*token) else {
            continue;
        };
        let value = tokens[i + 1..]
            .iter()
            .find(|t| t.starts_with(':'))
            .and_then(|v| values?.get(*v).cloned());
        out.push((name.clone(), value));
    }
    out
}

/// What the meter must remember of a request before it is sent.
fn pending(input: &Input) -> Option<Pending> {
    let single = |operation, key, change| Pending::Writes {
        operation,
        writes: vec![(key, change)],
        transactional: false,
    };
    if let Some(i) = input.downcast_ref::<PutItemInput>() {
        let item = i.item.clone().unwrap_or_default();
        return Some(single("PutItem", key_of(Some(&item)), Change::Put(item)));
    }
    if let Some(i) = input.downcast_ref::<DeleteItemInput>() {
        return Some(single("DeleteItem", key_of(i.key.as_ref()), Change::Delete));
    }
    if let Some(i) = input.downcast_ref::<UpdateItemInput>() {
        let change = Change::Update(updated(
            i.update_expression.as_deref(),
            i.expression_attribute_names.as_ref(),
            i.expression_attribute_values.as_ref(),
        ));
        return Some(single("UpdateItem", key_of(i.key.as_ref()), change));
    }
    if let Some(i) = input.downcast_ref::<TransactWriteItemsInput>() {
        let writes = i
            .transact_items
            .iter()
            .flatten()
            .filter_map(|t| {
                if let Some(p) = &t.put {
                    Some((key_of(Some(&p.item)), Change::Put(p.item.clone())))
                } else if let Some(d) = &t.delete {
                    Some((key_of(Some(&d.key)), Change::Delete))
                } else {
                    t.update.as_ref().map(|u| {
                        let set = updated(
                            Some(&u.update_expression),
                            u.expression_attribute_names.as_ref(),
                            u.expression_attribute_values.as_ref(),
                        );
                        (key_of(Some(&u.key)), Change::Update(set))
                    })
                }
            })
            .collect();
        return Some(Pending::Writes {
            operation: "TransactWriteItems",
            writes,
            transactional: true,
        });
    }
    if let Some(i) = input.downcast_ref::<BatchWriteItemInput>() {
        let writes = i
            .request_items
            .iter()
            .flat_map(|m| m.values().flatten())
            .filter_map(|w| {
                if let Some(p) = &w.put_request {
                    Some((key_of(Some(&p.item)), Change::Put(p.item.clone())))
                } else {
                    w.delete_request
                        .as_ref()
                        .map(|d| (key_of(Some(&d.key)), Change::Delete))
                }
            })
            .collect();
        return Some(Pending::Writes {
            operation: "BatchWriteItem",
            writes,
            transactional: false,
        });
    }
    if let Some(i) = input.downcast_ref::<GetItemInput>() {
        return Some(Pending::Get {
            consistent: i.consistent_read == Some(true),
        });
    }
    if let Some(i) = input.downcast_ref::<QueryInput>() {
        return Some(Pending::Query {
            consistent: i.consistent_read == Some(true),
            index: i.index_name.is_some(),
        });
    }
    None
}

/// Ask DynamoDB what the request consumed.
fn ask_for_capacity(input: &mut Input) {
    let total = Some(ReturnConsumedCapacity::Total);
    macro_rules! ask {
        ($($t:ty),*) => {$(
            if let Some(i) = input.downcast_mut::<$t>() {
                i.return_consumed_capacity = total;
                return;
            }
        )*};
    }
    ask!(
        PutItemInput,
        DeleteItemInput,
        UpdateItemInput,
        TransactWriteItemsInput,
        BatchWriteItemInput,
        GetItemInput,
        QueryInput
    );
}

/// What DynamoDB reported in an answer.
fn reported(output: &Output) -> f64 {
    let one = |c: Option<&ConsumedCapacity>| c.and_then(|c| c.capacity_units).unwrap_or(0.0);
    let many = |c: &[ConsumedCapacity]| c.iter().filter_map(|c| c.capacity_units).sum::<f64>();
    if let Some(o) = output.downcast_ref::<PutItemOutput>() {
        one(o.consumed_capacity())
    } else if let Some(o) = output.downcast_ref::<DeleteItemOutput>() {
        one(o.consumed_capacity())
    } else if let Some(o) = output.downcast_ref::<UpdateItemOutput>() {
        one(o.consumed_capacity())
    } else if let Some(o) = output.downcast_ref::<GetItemOutput>() {
        one(o.consumed_capacity())
    } else if let Some(o) = output.downcast_ref::<QueryOutput>() {
        one(o.consumed_capacity())
    } else if let Some(o) = output.downcast_ref::<TransactWriteItemsOutput>() {
        many(o.consumed_capacity())
    } else if let Some(o) = output.downcast_ref::<BatchWriteItemOutput>() {
        many(o.consumed_capacity())
    } else {
        0.0
    }
}

/// The keys of a batch's writes DynamoDB left unprocessed (not written).
fn unprocessed(output: &Output) -> Vec<(String, String)> {
    let Some(o) = output.downcast_ref::<BatchWriteItemOutput>() else {
        return Vec::new();
    };
    o.unprocessed_items
        .iter()
        .flat_map(|m| m.values().flatten())
        .map(|w| match (&w.put_request, &w.delete_request) {
            (Some(p), _) => key_of(Some(&p.item)),
            (_, Some(d)) => key_of(Some(&d.key)),
            _ => Default::default(),
        })
        .collect()
}

/// Whether a write failed on its condition (which DynamoDB still bills).
fn condition_failed(error: &aws_smithy_runtime_api::client::interceptors::context::Error) -> bool {
    error
        .downcast_ref::<PutItemError>()
        .is_some_and(PutItemError::is_conditional_check_failed_exception)
        || error
            .downcast_ref::<DeleteItemError>()
            .is_some_and(DeleteItemError::is_conditional_check_failed_exception)
        || error
            .downcast_ref::<UpdateItemError>()
            .is_some_and(UpdateItemError::is_conditional_check_failed_exception)
        || error
            .downcast_ref::<aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError>()
            .is_some_and(|e| e.is_transaction_canceled_exception())
}

impl Ledger {
    /// Apply a write that happened; its units.
    fn write(&mut self, key: (String, String), change: Change, transactional: bool) -> WriteUnits {
        let before = self.items.get(&key).cloned();
        let after = match change {
            Change::Put(item) => Some(item),
            Change::Delete => None,
            Change::Update(set) => {
                let mut item = before.clone().unwrap_or_else(|| {
                    HashMap::from([
                        (PARTITION_KEY.to_owned(), AttributeValue::S(key.0.clone())),
                        (SORT_KEY.to_owned(), AttributeValue::S(key.1.clone())),
                    ])
                });
                for (name, value) in set {
                    item.insert(name, value.unwrap_or(AttributeValue::N("1".into())));
                }
                Some(item)
            }
        };
        let units = write_units(
            before.as_ref().map(Footprint::of).as_ref(),
            after.as_ref().map(Footprint::of).as_ref(),
            transactional,
        );
        match after {
            Some(item) => self.items.insert(key, item),
            None => self.items.remove(&key),
        };
        units
    }

    /// A write refused on its condition: the item's units, no index change.
    fn refused(&self, key: &(String, String), change: &Change, transactional: bool) -> u64 {
        let size = match change {
            Change::Put(item) => item_size(item),
            _ => self.items.get(key).map_or(0, item_size),
        };
        let before = self.items.get(key).map_or(0, item_size);
        units(size.max(before), WRITE_UNIT) * if transactional { 2 } else { 1 }
    }

    fn settle(&mut self, pending: Pending, output: Result<&Output, bool>) -> (String, Consumed) {
        let mut consumed = Consumed {
            requests: 1,
            reported: output.map(reported).unwrap_or(0.0),
            ..Consumed::default()
        };
        let operation = match pending {
            Pending::Writes {
                operation,
                writes,
                transactional,
            } => {
                match output {
                    Ok(output) => {
                        let skipped = unprocessed(output);
                        for (key, change) in writes {
                            if skipped.contains(&key) {
                                continue;
                            }
                            let units = self.write(key, change, transactional);
                            consumed.table_writes += units.table;
                            consumed.index_writes += units.indexes;
                        }
                    }
                    Err(true) => {
                        for (key, change) in &writes {
                            consumed.table_writes += self.refused(key, change, transactional);
                        }
                    }
                    // Throttled or failed before the table: nothing billed.
                    Err(false) => {}
                }
                operation
            }
            Pending::Get { consistent } => {
                if let Ok(o) = output
                    && let Some(o) = o.downcast_ref::<GetItemOutput>()
                {
                    consumed.reads = read_units(o.item.as_ref().map_or(0, item_size), consistent);
                }
                "GetItem"
            }
            Pending::Query { consistent, index } => {
                if let Ok(o) = output
                    && let Some(o) = o.downcast_ref::<QueryOutput>()
                {
                    let overhead = if index { INDEX_ENTRY_OVERHEAD } else { 0 };
                    let bytes = o.items().iter().map(|i| item_size(i) + overhead).sum();
                    consumed.reads = read_units(bytes, consistent);
                }
                "Query"
            }
        };
        (operation.to_owned(), consumed)
    }
}

impl Intercept for CapacityMeter {
    fn name(&self) -> &'static str {
        "CapacityMeter"
    }

    fn modify_before_serialization(
        &self,
        context: &mut BeforeSerializationInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(p) = pending(context.input()) {
            cfg.interceptor_state().store_put(p);
        }
        ask_for_capacity(context.input_mut());
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(pending) = cfg.load::<Pending>().cloned() else {
            return Ok(());
        };
        let output = match context.output_or_error() {
            Some(Ok(output)) => Ok(output),
            Some(Err(e)) => Err(e.as_operation_error().is_some_and(condition_failed)),
            None => Err(false),
        };
        if let Ok(mut ledger) = self.0.lock() {
            let (operation, consumed) = ledger.settle(pending, output);
            ledger
                .by_operation
                .entry(operation)
                .or_default()
                .add(&consumed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> AttributeValue {
        AttributeValue::S(v.into())
    }

    fn item(pairs: &[(&str, AttributeValue)]) -> Attributes {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn sizes_follow_the_documented_rules() {
        // Names count as well as values.
        assert_eq!(item_size(&item(&[("pk", s("TASK#1"))])), 2 + 6);
        // Numbers: 1 byte per two significant digits, plus 1; zeros at
        // either end are not significant.
        assert_eq!(value_size(&AttributeValue::N("7".into())), 2);
        assert_eq!(value_size(&AttributeValue::N("12345".into())), 4);
        assert_eq!(value_size(&AttributeValue::N("-1200.00".into())), 2);
        assert_eq!(value_size(&AttributeValue::Bool(true)), 1);
        assert_eq!(value_size(&AttributeValue::Null(true)), 1);
        // Containers: 3 bytes, 1 per element, and a map's names.
        let list = AttributeValue::L(vec![s("ab"), AttributeValue::Bool(false)]);
        assert_eq!(value_size(&list), 3 + (1 + 2) + (1 + 1));
        let map = AttributeValue::M(item(&[("k", s("vv"))]));
        assert_eq!(value_size(&map), 3 + 1 + 1 + 2);
    }

    fn footprint(size: usize, keys: &[(Index, &str)]) -> Footprint {
        Footprint {
            size,
            index_keys: keys
                .iter()
                .map(|(i, k)| (*i, (*k).to_owned(), "sk".to_owned()))
                .collect(),
        }
    }

    #[test]
    fn writes_cost_per_started_kilobyte_of_the_larger_version() {
        let small = footprint(300, &[]);
        let large = footprint(2049, &[]);
        assert_eq!(write_units(None, Some(&small), false).table, 1);
        assert_eq!(write_units(Some(&small), Some(&large), false).table, 3);
        assert_eq!(write_units(Some(&large), Some(&small), false).table, 3);
        assert_eq!(write_units(Some(&large), None, false).table, 3);
        // An absent item still costs a unit to delete (or fail to).
        assert_eq!(write_units(None, None, false).table, 1);
        // Transactions cost twice.
        assert_eq!(write_units(None, Some(&small), true).table, 2);
    }

    #[test]
    fn indexes_cost_an_entry_to_add_or_remove_and_two_to_move() {
        let a = footprint(300, &[(Index::Gsi1, "QS#q#pending"), (Index::Gsi4, "T#0")]);
        let b = footprint(300, &[(Index::Gsi1, "QS#q#running"), (Index::Gsi4, "T#0")]);
        let none = footprint(300, &[]);
        // New into two indexes.
        assert_eq!(write_units(None, Some(&a), false).indexes, 2);
        // gsi1 moves (delete + put), gsi4 is updated in place.
        assert_eq!(write_units(Some(&a), Some(&b), false).indexes, 3);
        // Leaving both.
        assert_eq!(write_units(Some(&b), Some(&none), false).indexes, 2);
        // Index writes are not doubled by a transaction.
        assert_eq!(
            write_units(Some(&a), Some(&b), true),
            WriteUnits {
                table: 2,
                indexes: 3
            }
        );
        // The entry carries 100 bytes beyond the item: 950 bytes are 2 units there.
        let heavy = footprint(950, &[(Index::Gsi4, "T#0")]);
        assert_eq!(
            write_units(None, Some(&heavy), false),
            WriteUnits {
                table: 1,
                indexes: 2
            }
        );
    }

    #[test]
    fn reads_cost_per_started_four_kilobytes_halved_when_eventual() {
        assert_eq!(read_units(0, true), 1.0);
        assert_eq!(read_units(4096, true), 1.0);
        assert_eq!(read_units(4097, true), 2.0);
        assert_eq!(read_units(10_000, false), 1.5);
    }

    #[test]
    fn the_ledger_follows_items_through_puts_updates_and_deletes() {
        let mut ledger = Ledger::default();
        let key = ("TASK#1".to_owned(), "TASK".to_owned());
        let task = |status: &str| {
            item(&[
                ("pk", s("TASK#1")),
                ("sk", s("TASK")),
                ("gsi1pk", s(&format!("QS#q#{status}"))),
                ("gsi1sk", s("1")),
            ])
        };
        let first = ledger.write(key.clone(), Change::Put(task("pending")), true);
        assert_eq!(
            first,
            WriteUnits {
                table: 2,
                indexes: 1
            }
        );
        let moved = ledger.write(key.clone(), Change::Put(task("running")), false);
        assert_eq!(
            moved,
            WriteUnits {
                table: 1,
                indexes: 2
            }
        );
        let counters = ("QSTATS#0".to_owned(), "q".to_owned());
        let set = updated(
            Some("ADD #a0 :a0, #a1 :a1"),
            Some(&HashMap::from([
                ("#a0".into(), "pending".into()),
                ("#a1".into(), "running".into()),
            ])),
            Some(&item(&[
                (":a0", AttributeValue::N("-1".into())),
                (":a1", AttributeValue::N("1".into())),
            ])),
        );
        assert_eq!(set.len(), 2);
        let added = ledger.write(counters.clone(), Change::Update(set), true);
        assert_eq!(
            added,
            WriteUnits {
                table: 2,
                indexes: 0
            }
        );
        assert!(ledger.items[&counters].contains_key("running"));
        let gone = ledger.write(key.clone(), Change::Delete, false);
        assert_eq!(
            gone,
            WriteUnits {
                table: 1,
                indexes: 1
            }
        );
        assert!(!ledger.items.contains_key(&key));
    }
}
