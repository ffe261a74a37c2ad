//! The rules every store applies before it writes (DynamoDB's limits and
//! warren's reserved names), in one place so no two adapters drift apart.

use std::collections::HashSet;

use crate::json::MAX_ITEM_DEPTH;

use crate::ports::{
    Condition, Index, Item, Key, MAX_DELAY, MAX_ITEM_BYTES, MAX_MESSAGE_ATTRIBUTES,
    MAX_MESSAGE_BYTES, MAX_RECEIVE, MAX_TRANSACT_OPS, OutgoingMessage, QueueError, StoreError,
    WriteOp,
};

/// A batch of messages every queue accepts: each at most
/// [`MAX_MESSAGE_BYTES`] with its attributes, each delay at most
/// [`MAX_DELAY`], attributes as SQS takes them. Checked as a whole first, so
/// a bad message never leaves its neighbours half sent.
pub(crate) fn check_messages(messages: &[OutgoingMessage]) -> Result<(), QueueError> {
    for (i, m) in messages.iter().enumerate() {
        if m.size() > MAX_MESSAGE_BYTES {
            return Err(QueueError::Invalid(format!(
                "message {i}: {} bytes with its attributes exceeds {MAX_MESSAGE_BYTES}",
                m.size()
            )));
        }
        if m.delay > MAX_DELAY {
            return Err(QueueError::Invalid(format!(
                "message {i}: delay of {:?} exceeds {:?}",
                m.delay, MAX_DELAY
            )));
        }
        check_attributes(m).map_err(|e| QueueError::Invalid(format!("message {i}: {e}")))?;
    }
    Ok(())
}

/// SQS's rules for message attributes: how many, their names, no empty value.
fn check_attributes(m: &OutgoingMessage) -> Result<(), String> {
    if m.attributes.len() > MAX_MESSAGE_ATTRIBUTES {
        return Err(format!(
            "{} attributes; at most {MAX_MESSAGE_ATTRIBUTES}",
            m.attributes.len()
        ));
    }
    for (name, value) in &m.attributes {
        let chars_ok = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        let lower = name.to_ascii_lowercase();
        let well_formed = (1..=256).contains(&name.len())
            && chars_ok
            && !name.starts_with('.')
            && !name.ends_with('.')
            && !name.contains("..")
            && !lower.starts_with("aws.")
            && !lower.starts_with("amazon.");
        if !well_formed {
            return Err(format!(
                "attribute name {name:?}: 1-256 of [A-Za-z0-9_.-], no leading, trailing or double `.`, no AWS./Amazon. prefix"
            ));
        }
        if value.is_empty() {
            return Err(format!("attribute {name:?} has an empty value"));
        }
    }
    Ok(())
}

/// A receive asks for 1..=[`MAX_RECEIVE`] messages.
pub(crate) fn check_receive(max: usize) -> Result<(), QueueError> {
    if !(1..=MAX_RECEIVE).contains(&max) {
        return Err(QueueError::Invalid(format!(
            "receive of {max} messages: must be 1..={MAX_RECEIVE}"
        )));
    }
    Ok(())
}

const MAX_PK_BYTES: usize = 2048;
const MAX_SK_BYTES: usize = 1024;

/// A transaction's shape: 1..=[`MAX_TRANSACT_OPS`] operations on distinct
/// keys, each well-formed. Item sizes are left to [`check_size`], which
/// needs the item's encoded attributes.
pub(crate) fn check_ops(ops: &[WriteOp]) -> Result<(), StoreError> {
    if ops.is_empty() {
        return Err(StoreError::Invalid(
            "a transaction needs at least one operation".into(),
        ));
    }
    if ops.len() > MAX_TRANSACT_OPS {
        return Err(StoreError::Invalid(format!(
            "{} operations in one transaction; at most {MAX_TRANSACT_OPS}",
            ops.len()
        )));
    }
    let mut seen = HashSet::with_capacity(ops.len());
    for op in ops {
        if !seen.insert(op.key()) {
            return Err(StoreError::Invalid(format!(
                "two operations on key ({}, {}) in one transaction",
                op.key().pk,
                op.key().sk
            )));
        }
    }
    for (i, op) in ops.iter().enumerate() {
        let checked = match op {
            WriteOp::Put { item, cond } => check_condition(cond).and_then(|()| check_item(item)),
            WriteOp::Delete { key, cond } => check_key(key).and_then(|()| check_condition(cond)),
            WriteOp::Add { key, deltas } => check_key(key).and_then(|()| check_deltas(deltas)),
        };
        checked.map_err(|m| StoreError::Invalid(format!("operation {i}: {m}")))?;
    }
    Ok(())
}

/// An increment's arguments: the key and attribute name an add of `attr`
/// must have (checked by the rules every write shares), a limit of at least 1.
pub(crate) fn check_increment(key: &Key, attr: &str, limit: i64) -> Result<(), StoreError> {
    if limit < 1 {
        return Err(StoreError::Invalid(format!(
            "increment limit {limit}: must be at least 1"
        )));
    }
    check_ops(&[WriteOp::Add {
        key: key.clone(),
        deltas: vec![(attr.to_owned(), 1)],
    }])
    .map_err(|e| match e {
        StoreError::Invalid(m) => StoreError::Invalid(format!(
            "increment: {}",
            m.strip_prefix("operation 0: ").unwrap_or(&m)
        )),
        other => other,
    })
}

/// A put batch's items: distinct keys, each well-formed (sizes aside).
pub(crate) fn check_batch(items: &[Item]) -> Result<(), StoreError> {
    let mut seen = HashSet::with_capacity(items.len());
    for item in items {
        if !seen.insert(&item.key) {
            return Err(StoreError::Invalid(format!(
                "key ({}, {}) appears twice in one put_batch",
                item.key.pk, item.key.sk
            )));
        }
    }
    for (i, item) in items.iter().enumerate() {
        check_item(item).map_err(|m| StoreError::Invalid(format!("item {i}: {m}")))?;
    }
    Ok(())
}

pub(crate) fn check_key(key: &Key) -> Result<(), String> {
    check_key_parts(&key.pk, &key.sk).map_err(|m| format!("key ({}, {}): {m}", key.pk, key.sk))
}

/// An item's keys, index keys (one per index), attribute names, and how
/// deep its attribute values nest (DynamoDB refuses more than 32 levels).
fn check_item(item: &Item) -> Result<(), String> {
    check_key(&item.key)?;
    let mut seen = HashSet::with_capacity(item.indexes.len());
    for (index, key) in &item.indexes {
        if !seen.insert(*index) {
            return Err(format!(
                "item ({}, {}) has two keys for one index",
                item.key.pk, item.key.sk
            ));
        }
        check_key_parts(&key.pk, &key.sk)
            .map_err(|m| format!("{} key ({}, {}): {m}", index.name(), key.pk, key.sk))?;
    }
    item.attrs
        .keys()
        .try_for_each(|name| check_attr_name(name))?;
    match item
        .attrs
        .iter()
        .find(|(_, value)| crate::json::deeper_than(value, MAX_ITEM_DEPTH))
    {
        Some((name, _)) => Err(format!(
            "attribute {name:?} of item ({}, {}) nests deeper than {MAX_ITEM_DEPTH} levels",
            item.key.pk, item.key.sk
        )),
        None => Ok(()),
    }
}

/// The item's size as one flat JSON object (keys, index keys and TTL as
/// attributes beside the others), the form the limit is stated in, given
/// the length of its attributes as a JSON object.
pub(crate) fn check_size(
    key: &Key,
    ttl: Option<i64>,
    indexes: &[(Index, Key)],
    attrs_json: usize,
) -> Result<(), String> {
    // `"name":"value",` costs 6 bytes of punctuation around name and value.
    let string_attr = |name: usize, value: &str| name + value.len() + 6;
    let mut size = attrs_json + string_attr(2, &key.pk) + string_attr(2, &key.sk);
    for (_, k) in indexes {
        size += string_attr(6, &k.pk) + string_attr(6, &k.sk);
    }
    if let Some(t) = ttl {
        size += 3 + 4 + t.to_string().len();
    }
    if size > MAX_ITEM_BYTES {
        return Err(format!(
            "item ({}, {}) is {size} bytes as JSON; at most {MAX_ITEM_BYTES}",
            key.pk, key.sk
        ));
    }
    Ok(())
}

fn check_key_parts(pk: &str, sk: &str) -> Result<(), String> {
    if pk.is_empty() || sk.is_empty() {
        return Err("partition and sort keys must not be empty".into());
    }
    if pk.len() > MAX_PK_BYTES {
        return Err(format!(
            "partition key is {} bytes; at most {MAX_PK_BYTES}",
            pk.len()
        ));
    }
    if sk.len() > MAX_SK_BYTES {
        return Err(format!(
            "sort key is {} bytes; at most {MAX_SK_BYTES}",
            sk.len()
        ));
    }
    Ok(())
}

fn check_attr_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        Err("attribute names must not be empty".into())
    } else if matches!(name, "pk" | "sk" | "ttl") || name.starts_with("gsi") {
        Err(format!(
            "attribute name {name:?} is reserved (pk, sk, ttl, gsi*)"
        ))
    } else {
        Ok(())
    }
}

fn check_condition(cond: &Condition) -> Result<(), String> {
    match cond {
        Condition::Equals { attr, .. } => check_attr_name(attr),
        Condition::None | Condition::Absent { .. } | Condition::Exists => Ok(()),
    }
}

fn check_deltas(deltas: &[(String, i64)]) -> Result<(), String> {
    if deltas.is_empty() {
        return Err("an add needs at least one delta".into());
    }
    let mut seen = HashSet::with_capacity(deltas.len());
    for (name, _) in deltas {
        check_attr_name(name)?;
        if !seen.insert(name.as_str()) {
            return Err(format!("attribute {name:?} appears twice in one add"));
        }
    }
    Ok(())
}
