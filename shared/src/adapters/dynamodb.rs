//! The DynamoDB [`Store`]: the single table of the design, `pk`/`sk` strings,
//! six sparse GSIs `gsi1`..`gsi6` keyed by `gsiNpk`/`gsiNsk`, native TTL on
//! `ttl` (epoch seconds), every other attribute converted by serde_dynamo.
//!
//! Requests are checked before anything is sent, with the same rules (and
//! messages) as the embedded store, so both backends refuse the same calls
//! whatever DynamoDB itself would let through.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{BuildError, DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, Delete, GlobalSecondaryIndex, IndexStatus,
    KeySchemaElement, KeyType, Projection, ProjectionType, Put, PutRequest, ReturnValue,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, StreamSpecification, StreamViewType,
    TableStatus, TimeToLiveSpecification, TimeToLiveStatus, TransactWriteItem, Update,
    WriteRequest,
};
use serde_json::{Map, Value};
use tokio::task::JoinSet;

use crate::adapters::backoff;
use crate::adapters::checks::{check_batch, check_increment, check_key, check_ops, check_size};
use crate::adapters::requests::RequestCounter;
use crate::ports::{Condition, Index, Item, Key, Query, Store, StoreError, WriteOp};

/// The table's partition key attribute (S).
pub const PARTITION_KEY: &str = "pk";
/// The table's sort key attribute (S).
pub const SORT_KEY: &str = "sk";
/// The native TTL attribute (N, epoch seconds).
pub const TTL_ATTRIBUTE: &str = "ttl";

/// BatchWriteItem takes at most 25 requests.
const BATCH_SIZE: usize = 25;
/// BatchWriteItem calls of one `put_batch` in flight at once.
const BATCH_PARALLELISM: usize = 8;
/// Rounds of a batch chunk while DynamoDB leaves items unprocessed.
const BATCH_ATTEMPTS: u32 = 10;
/// Tries of a write that lost a race with a concurrent transaction.
const WRITE_ATTEMPTS: u32 = 5;

/// The partition and sort key attribute names of an index.
pub fn index_attributes(index: Index) -> (&'static str, &'static str) {
    match index {
        Index::Gsi1 => ("gsi1pk", "gsi1sk"),
        Index::Gsi2 => ("gsi2pk", "gsi2sk"),
        Index::Gsi3 => ("gsi3pk", "gsi3sk"),
        Index::Gsi4 => ("gsi4pk", "gsi4sk"),
        Index::Gsi5 => ("gsi5pk", "gsi5sk"),
        Index::Gsi6 => ("gsi6pk", "gsi6sk"),
    }
}

/// The [`Store`] on one DynamoDB table. Cheap to clone (the client is an `Arc`).
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    /// A store on `table`, which [`provision_table`] created.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table.into(),
        }
    }

    /// The table this store reads and writes.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// One write alone: a conditional PutItem/DeleteItem/UpdateItem costs
    /// half of the same write in a transaction.
    async fn write_one(&self, op: &WriteOp) -> Result<(), Failure> {
        match op {
            WriteOp::Put { item, cond } => {
                let (text, names, values) = split(condition(cond));
                // A conditional write the SDK tries again (a timeout, a reset
                // connection, a 5xx) may have landed on an earlier try whose
                // answer was lost; the retry then fails on its own write.
                let tries = RequestCounter::default();
                let sent = self
                    .client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(encode(item)))
                    .set_condition_expression(text)
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values)
                    .return_values_on_condition_check_failure(
                        ReturnValuesOnConditionCheckFailure::AllOld,
                    )
                    .customize()
                    .interceptor(tries.clone())
                    .send()
                    .await;
                match sent {
                    Ok(_) => Ok(()),
                    Err(e) if tries.total() > 1 && found_itself(&e, item) => Ok(()),
                    Err(e) => Err(classify("PutItem", e)),
                }
            }
            WriteOp::Delete { key, cond } => {
                let (text, names, values) = split(condition(cond));
                self.client
                    .delete_item()
                    .table_name(&self.table)
                    .set_key(Some(key_attrs(key)))
                    .set_condition_expression(text)
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values)
                    .send()
                    .await
                    .map(drop)
                    .map_err(|e| classify("DeleteItem", e))
            }
            WriteOp::Add { key, deltas } => {
                let (add, guard) = add_expression(deltas);
                self.client
                    .update_item()
                    .table_name(&self.table)
                    .set_key(Some(key_attrs(key)))
                    .update_expression(add.text)
                    .condition_expression(guard)
                    .set_expression_attribute_names(Some(add.names))
                    .set_expression_attribute_values(Some(add.values))
                    .send()
                    .await
                    .map(drop)
                    .map_err(|e| classify("UpdateItem", e))
            }
        }
    }

    /// One try of an increment: a conditional UpdateItem (see
    /// [`increment_expression`]) answering the new value, or `None` when the
    /// condition failed on a number at the limit. A failed condition returns
    /// the item (`ALL_OLD`), which tells a counter at its limit from an
    /// attribute that is not an integer, without a second request.
    async fn increment_once(
        &self,
        key: &Key,
        attr: &str,
        limit: i64,
        ttl: Option<i64>,
    ) -> Result<Option<i64>, Failure> {
        let (update, guard) = increment_expression(attr, limit, ttl);
        let not_integer = || {
            Failure::Final(StoreError::Invalid(format!(
                "increment: attribute {attr:?} of ({}, {}) is not an integer",
                key.pk, key.sk
            )))
        };
        let sent = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_attrs(key)))
            .update_expression(update.text)
            .condition_expression(guard)
            .set_expression_attribute_names(Some(update.names))
            .set_expression_attribute_values(Some(update.values))
            .return_values(ReturnValue::UpdatedNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match sent {
            Ok(out) => match out.attributes.as_ref().and_then(|a| a.get(attr)) {
                Some(AttributeValue::N(n)) => match n.parse::<i64>() {
                    Ok(count) => Ok(Some(count)),
                    // A fractional number passes the condition (DynamoDB has
                    // no integer test), so this one was written.
                    Err(_) => Err(not_integer()),
                },
                other => Err(Failure::Final(StoreError::Unavailable(
                    format!("DynamoDB UpdateItem answered {attr:?} as {other:?}").into(),
                ))),
            },
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                    // The condition only fails on a present attribute: a
                    // number at the limit, or something else.
                    match failed.item().and_then(|item| item.get(attr)) {
                        Some(AttributeValue::N(n)) if n.parse::<i64>().is_err() => {
                            Err(not_integer())
                        }
                        Some(AttributeValue::N(_)) | None => Ok(None),
                        Some(_) => Err(not_integer()),
                    }
                }
                _ => Err(classify("UpdateItem", e)),
            },
        }
    }

    /// Several writes: one TransactWriteItems.
    async fn write_all(&self, items: &[TransactWriteItem]) -> Result<(), Failure> {
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items.to_vec()))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match e.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(cancel)) => {
                    Err(cancellation(cancel.cancellation_reasons(), &e))
                }
                _ => Err(classify("TransactWriteItems", e)),
            },
        }
    }

    fn transact_item(&self, op: &WriteOp) -> Result<TransactWriteItem, StoreError> {
        let item = match op {
            WriteOp::Put { item, cond } => {
                let (text, names, values) = split(condition(cond));
                let put = Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(encode(item)))
                    .set_condition_expression(text)
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values)
                    .build()
                    .map_err(malformed)?;
                TransactWriteItem::builder().put(put)
            }
            WriteOp::Delete { key, cond } => {
                let (text, names, values) = split(condition(cond));
                let delete = Delete::builder()
                    .table_name(&self.table)
                    .set_key(Some(key_attrs(key)))
                    .set_condition_expression(text)
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values)
                    .build()
                    .map_err(malformed)?;
                TransactWriteItem::builder().delete(delete)
            }
            WriteOp::Add { key, deltas } => {
                let (add, guard) = add_expression(deltas);
                let update = Update::builder()
                    .table_name(&self.table)
                    .set_key(Some(key_attrs(key)))
                    .update_expression(add.text)
                    .condition_expression(guard)
                    .set_expression_attribute_names(Some(add.names))
                    .set_expression_attribute_values(Some(add.values))
                    .build()
                    .map_err(malformed)?;
                TransactWriteItem::builder().update(update)
            }
        };
        Ok(item.build())
    }
}

#[async_trait]
impl Store for DynamoStore {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        check_key(key).map_err(StoreError::Invalid)?;
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_attrs(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify("GetItem", e).error())?;
        out.item.map(decode).transpose()
    }

    async fn transact(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        check_transact(&ops)?;
        let items = if ops.len() == 1 {
            Vec::new()
        } else {
            ops.iter()
                .map(|op| self.transact_item(op))
                .collect::<Result<Vec<_>, _>>()?
        };
        let (ops_ref, items) = (&ops, &items);
        let written = retry_busy(|| async move {
            match ops_ref.as_slice() {
                [op] => self.write_one(op).await,
                _ => self.write_all(items).await,
            }
        })
        .await;
        match written {
            Ok(()) => Ok(()),
            // An add's only condition is that its attributes are numbers.
            Err(Failure::Final(StoreError::Conflict { op }))
                if matches!(ops.get(op), Some(WriteOp::Add { .. })) =>
            {
                Err(StoreError::Invalid(format!(
                    "operation {op}: an attribute to add to is not a number"
                )))
            }
            Err(failure) => Err(failure.error()),
        }
    }

    async fn put_batch(&self, items: Vec<Item>) -> Result<(), StoreError> {
        if items.is_empty() {
            return Ok(());
        }
        // Every item is checked before the first chunk is sent.
        check_batch(&items)?;
        let mut requests = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            check_item_size(item).map_err(|m| StoreError::Invalid(format!("item {i}: {m}")))?;
            let put = PutRequest::builder()
                .set_item(Some(encode(item)))
                .build()
                .map_err(malformed)?;
            requests.push(WriteRequest::builder().put_request(put).build());
        }
        let mut chunks = Vec::with_capacity(requests.len().div_ceil(BATCH_SIZE));
        let mut requests = requests.into_iter().peekable();
        while requests.peek().is_some() {
            chunks.push(requests.by_ref().take(BATCH_SIZE).collect::<Vec<_>>());
        }
        let mut chunks = chunks.into_iter();
        let mut running = JoinSet::new();
        loop {
            while running.len() < BATCH_PARALLELISM {
                let Some(chunk) = chunks.next() else { break };
                running.spawn(write_chunk(self.client.clone(), self.table.clone(), chunk));
            }
            // An early return drops the set, which aborts the other chunks.
            match running.join_next().await {
                None => return Ok(()),
                Some(Ok(result)) => result?,
                Some(Err(e)) => return Err(StoreError::Unavailable(Box::new(e))),
            }
        }
    }

    async fn query(&self, query: &Query) -> Result<Vec<Item>, StoreError> {
        if query.limit == 0 {
            return Err(StoreError::Invalid("query limit must be at least 1".into()));
        }
        if query.pk.is_empty() {
            return Err(StoreError::Invalid("query partition key is empty".into()));
        }
        let (after, before) = (query.after.as_deref(), query.before.as_deref());
        if let (Some(a), Some(b)) = (after, before)
            && a >= b
        {
            // Nothing lies strictly between; BETWEEN would refuse the range.
            return Ok(Vec::new());
        }
        let (pk_attr, sk_attr) = match query.index {
            None => (PARTITION_KEY, SORT_KEY),
            Some(index) => index_attributes(index),
        };
        let mut names = HashMap::from([("#pk".to_owned(), pk_attr.to_owned())]);
        let mut values = HashMap::from([(":pk".to_owned(), s(&query.pk))]);
        let mut key_condition = "#pk = :pk".to_owned();
        let sort_bound = match (after, before) {
            (None, None) => None,
            (Some(_), None) => Some("#sk > :a"),
            (None, Some(_)) => Some("#sk < :b"),
            // Key conditions take one bound on the sort key: BETWEEN is
            // inclusive, so its endpoints are dropped below.
            (Some(_), Some(_)) => Some("#sk BETWEEN :a AND :b"),
        };
        if let Some(bound) = sort_bound {
            names.insert("#sk".into(), sk_attr.into());
            key_condition.push_str(" AND ");
            key_condition.push_str(bound);
        }
        if let Some(a) = after {
            values.insert(":a".into(), s(a));
        }
        if let Some(b) = before {
            values.insert(":b".into(), s(b));
        }
        // Up to two endpoints may be read and dropped.
        let slack = if after.is_some() && before.is_some() {
            2
        } else {
            0
        };
        let mut out: Vec<Item> = Vec::with_capacity(query.limit.min(1000));
        let mut start = None;
        loop {
            let page_limit = (query.limit - out.len()).saturating_add(slack);
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .set_index_name(query.index.map(|i| i.name().to_owned()))
                .key_condition_expression(&key_condition)
                .set_expression_attribute_names(Some(names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .scan_index_forward(!query.descending)
                // GSIs refuse strongly consistent reads.
                .set_consistent_read(query.index.is_none().then_some(true))
                .limit(i32::try_from(page_limit).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| classify("Query", e).error())?;
            for raw in page.items.unwrap_or_default() {
                // A damaged item is reported and skipped, so it cannot stop
                // every list and sweep that reads past it (a get still fails).
                let item = match decode(raw) {
                    Ok(item) => item,
                    Err(e) => {
                        tracing::error!(error = %e, "skipping a damaged item");
                        continue;
                    }
                };
                let sk = match query.index {
                    None => Some(item.key.sk.as_str()),
                    Some(index) => item.index_key(index).map(|k| k.sk.as_str()),
                };
                if slack > 0 && (sk == after || sk == before) {
                    continue;
                }
                out.push(item);
                if out.len() == query.limit {
                    return Ok(out);
                }
            }
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(out),
            }
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
        match retry_busy(|| self.increment_once(key, attr, limit, ttl)).await {
            Ok(count) => Ok(count),
            // Not a lost condition: the item stayed locked by transactions.
            Err(Failure::Busy(e)) => Err(StoreError::Unavailable(
                format!(
                    "DynamoDB UpdateItem: increment kept racing transactions after {WRITE_ATTEMPTS} tries ({e})"
                )
                .into(),
            )),
            Err(Failure::Final(e)) => Err(e),
        }
    }
}

/// Writes one BatchWriteItem chunk, resending what DynamoDB leaves
/// unprocessed (throttling) with exponential backoff.
async fn write_chunk(
    client: Client,
    table: String,
    mut requests: Vec<WriteRequest>,
) -> Result<(), StoreError> {
    for attempt in 0..BATCH_ATTEMPTS {
        if attempt > 0 {
            backoff(
                attempt - 1,
                Duration::from_millis(50),
                Duration::from_secs(2),
            )
            .await;
        }
        let out = client
            .batch_write_item()
            .request_items(&table, requests)
            .send()
            .await
            .map_err(|e| classify("BatchWriteItem", e).error())?;
        match out.unprocessed_items.and_then(|mut m| m.remove(&table)) {
            Some(left) if !left.is_empty() => requests = left,
            _ => return Ok(()),
        }
    }
    Err(StoreError::Unavailable(
        format!("BatchWriteItem left items unprocessed after {BATCH_ATTEMPTS} attempts").into(),
    ))
}

// ---------------------------------------------------------------------------
// Table provisioning

/// Creates the table with its six GSIs and TTL unless it exists, waits until
/// it is ACTIVE and makes sure TTL is on. Idempotent; true when it created
/// the table.
pub async fn provision_table(
    client: &Client,
    table: &str,
) -> Result<bool, Box<dyn std::error::Error + Send + Sync>> {
    let exists = match client.describe_table().table_name(table).send().await {
        Ok(_) => true,
        Err(e) if e.code() == Some("ResourceNotFoundException") => false,
        Err(e) => return Err(aws_error("DescribeTable", &e).into()),
    };
    let mut created = false;
    if !exists {
        match client
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest)
            .set_attribute_definitions(Some(attribute_definitions()?))
            .set_key_schema(Some(key_schema(PARTITION_KEY, SORT_KEY)?))
            .set_global_secondary_indexes(Some(global_secondary_indexes()?))
            .stream_specification(changes_stream()?)
            .send()
            .await
        {
            Ok(_) => created = true,
            // Another provisioner got there first: wait for its table.
            Err(e) if e.code() == Some("ResourceInUseException") => {}
            Err(e) => return Err(aws_error("CreateTable", &e).into()),
        }
    }
    wait_until_active(client, table).await?;
    enable_ttl(client, table).await?;
    enable_stream(client, table).await?;
    Ok(created)
}

/// The change stream the queue counts can be kept from (`WARREN_COUNTS=stream`).
fn changes_stream() -> Result<StreamSpecification, BuildError> {
    StreamSpecification::builder()
        .stream_enabled(true)
        .stream_view_type(StreamViewType::NewAndOldImages)
        .build()
}

/// Turn the change stream on for a table made before it was part of the design.
async fn enable_stream(
    client: &Client,
    table: &str,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let described = client
        .describe_table()
        .table_name(table)
        .send()
        .await
        .map_err(|e| aws_error("DescribeTable", &e))?;
    let enabled = described
        .table
        .and_then(|t| t.stream_specification)
        .is_some_and(|s| s.stream_enabled);
    if !enabled {
        client
            .update_table()
            .table_name(table)
            .stream_specification(changes_stream()?)
            .send()
            .await
            .map_err(|e| aws_error("UpdateTable", &e))?;
        wait_until_active(client, table).await?;
    }
    Ok(())
}

fn attribute_definitions() -> Result<Vec<AttributeDefinition>, BuildError> {
    let mut names = vec![PARTITION_KEY, SORT_KEY];
    for index in Index::ALL {
        let (pk, sk) = index_attributes(index);
        names.extend([pk, sk]);
    }
    names
        .into_iter()
        .map(|name| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
        })
        .collect()
}

fn key_schema(pk: &str, sk: &str) -> Result<Vec<KeySchemaElement>, BuildError> {
    Ok(vec![
        KeySchemaElement::builder()
            .attribute_name(pk)
            .key_type(KeyType::Hash)
            .build()?,
        KeySchemaElement::builder()
            .attribute_name(sk)
            .key_type(KeyType::Range)
            .build()?,
    ])
}

fn global_secondary_indexes() -> Result<Vec<GlobalSecondaryIndex>, BuildError> {
    Index::ALL
        .into_iter()
        .map(|index| {
            let (pk, sk) = index_attributes(index);
            GlobalSecondaryIndex::builder()
                .index_name(index.name())
                .set_key_schema(Some(key_schema(pk, sk)?))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
        })
        .collect()
}

/// Polls DescribeTable until the table and every index are ACTIVE (5 min at most).
async fn wait_until_active(
    client: &Client,
    table: &str,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    for _ in 0..600 {
        let out = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| aws_error("DescribeTable", &e))?;
        if let Some(t) = out.table
            && t.table_status == Some(TableStatus::Active)
            && t.global_secondary_indexes()
                .iter()
                .all(|i| i.index_status == Some(IndexStatus::Active))
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(format!("table {table} did not become ACTIVE within 5 minutes").into())
}

async fn enable_ttl(
    client: &Client,
    table: &str,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let current = client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .map_err(|e| aws_error("DescribeTimeToLive", &e))?;
    let on = current.time_to_live_description.is_some_and(|d| {
        d.attribute_name.as_deref() == Some(TTL_ATTRIBUTE)
            && matches!(
                d.time_to_live_status,
                Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
            )
    });
    if on {
        return Ok(());
    }
    let spec = TimeToLiveSpecification::builder()
        .enabled(true)
        .attribute_name(TTL_ATTRIBUTE)
        .build()?;
    match client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(spec)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        // A concurrent provisioner enabled it in between.
        Err(e)
            if e.code() == Some("ValidationException")
                && e.message().is_some_and(|m| m.contains("already enabled")) =>
        {
            Ok(())
        }
        Err(e) => Err(aws_error("UpdateTimeToLive", &e).into()),
    }
}

// ---------------------------------------------------------------------------
// Items and expressions

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn key_attrs(key: &Key) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (PARTITION_KEY.to_owned(), s(&key.pk)),
        (SORT_KEY.to_owned(), s(&key.sk)),
    ])
}

/// The DynamoDB item: keys, index keys, TTL, then the attributes.
fn encode(item: &Item) -> HashMap<String, AttributeValue> {
    let mut out = HashMap::with_capacity(item.attrs.len() + 3 + 2 * item.indexes.len());
    for (name, value) in &item.attrs {
        out.insert(name.clone(), to_attribute(value));
    }
    out.extend(key_attrs(&item.key));
    for (index, key) in &item.indexes {
        let (pk, sk) = index_attributes(*index);
        out.insert(pk.to_owned(), s(&key.pk));
        out.insert(sk.to_owned(), s(&key.sk));
    }
    if let Some(ttl) = item.ttl {
        out.insert(TTL_ATTRIBUTE.to_owned(), AttributeValue::N(ttl.to_string()));
    }
    out
}

fn to_attribute(value: &Value) -> AttributeValue {
    // Every JSON value has a DynamoDB form: the conversion cannot fail.
    serde_dynamo::to_attribute_value(value).unwrap_or(AttributeValue::Null(true))
}

/// The [`Item`] of a DynamoDB item: the reverse of [`encode`].
pub(crate) fn decode(mut raw: HashMap<String, AttributeValue>) -> Result<Item, StoreError> {
    let mut take_s = |name: &str| match raw.remove(name) {
        None => Ok(None),
        Some(AttributeValue::S(v)) => Ok(Some(v)),
        Some(other) => Err(format!("{name} is {other:?}, not a string")),
    };
    let damaged =
        |m: String| StoreError::Unavailable(format!("stored item is damaged: {m}").into());
    let (Some(pk), Some(sk)) = (
        take_s(PARTITION_KEY).map_err(damaged)?,
        take_s(SORT_KEY).map_err(damaged)?,
    ) else {
        return Err(damaged("an item lacks its pk or sk".into()));
    };
    let mut indexes = Vec::new();
    for index in Index::ALL {
        let (ipk, isk) = index_attributes(index);
        match (take_s(ipk).map_err(damaged)?, take_s(isk).map_err(damaged)?) {
            (Some(ipk), Some(isk)) => indexes.push((index, Key::new(ipk, isk))),
            (None, None) => {}
            _ => {
                return Err(damaged(format!(
                    "({pk}, {sk}) has half a {} key",
                    index.name()
                )));
            }
        }
    }
    let ttl = match raw.remove(TTL_ATTRIBUTE) {
        None => None,
        Some(AttributeValue::N(n)) => Some(
            n.parse::<i64>()
                .map_err(|_| damaged(format!("({pk}, {sk}) has TTL {n}")))?,
        ),
        Some(other) => return Err(damaged(format!("({pk}, {sk}) has TTL {other:?}"))),
    };
    let attrs: Map<String, Value> = serde_dynamo::from_item(raw)
        .map_err(|e| damaged(format!("attributes of ({pk}, {sk}): {e}")))?;
    Ok(Item {
        key: Key::new(pk, sk),
        indexes,
        ttl,
        attrs,
    })
}

/// An expression with its `#name` and `:value` placeholders.
struct Expr {
    text: String,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

type ExprParts = (
    Option<String>,
    Option<HashMap<String, String>>,
    Option<HashMap<String, AttributeValue>>,
);

/// The builder arguments of an optional condition: unused placeholders are
/// refused by DynamoDB, so no condition sends none.
fn split(expr: Option<Expr>) -> ExprParts {
    match expr {
        None => (None, None, None),
        Some(e) => (
            Some(e.text),
            Some(e.names),
            (!e.values.is_empty()).then_some(e.values),
        ),
    }
}

fn condition(cond: &Condition) -> Option<Expr> {
    let expr = |text: &str, names: &[(&str, &str)], values: Vec<(&str, AttributeValue)>| Expr {
        text: text.to_owned(),
        names: names
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        values: values.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
    };
    match cond {
        Condition::None => None,
        // An expired item is as good as absent (native TTL deletes lazily).
        Condition::Absent { now } => Some(expr(
            "attribute_not_exists(#pk) OR #ttl <= :now",
            &[("#pk", PARTITION_KEY), ("#ttl", TTL_ATTRIBUTE)],
            vec![(":now", AttributeValue::N(now.to_string()))],
        )),
        Condition::Exists => Some(expr(
            "attribute_exists(#pk)",
            &[("#pk", PARTITION_KEY)],
            Vec::new(),
        )),
        // A missing attribute equals nothing, not even NULL. DynamoDB's `=`
        // already says so; moto does not, and spelling it out costs nothing.
        Condition::Equals { attr, value } => Some(expr(
            "attribute_exists(#a) AND #a = :v",
            &[("#a", attr)],
            vec![(":v", to_attribute(value))],
        )),
    }
}

/// `ADD #a0 :v0, #a1 :v1, ...`: creates the item and missing attributes at
/// zero. Its condition requires each present attribute to be a number:
/// DynamoDB refuses ADD to a string anyway, but moto applies the deltas
/// before the refusal, and a failed condition is atomic everywhere.
fn add_expression(deltas: &[(String, i64)]) -> (Expr, String) {
    let mut text = String::from("ADD ");
    let mut guard = String::new();
    let mut names = HashMap::with_capacity(deltas.len());
    let mut values = HashMap::with_capacity(deltas.len() + 1);
    for (i, (name, delta)) in deltas.iter().enumerate() {
        if i > 0 {
            text.push_str(", ");
            guard.push_str(" AND ");
        }
        text.push_str(&format!("#a{i} :v{i}"));
        guard.push_str(&format!(
            "(attribute_not_exists(#a{i}) OR attribute_type(#a{i}, :number))"
        ));
        names.insert(format!("#a{i}"), name.clone());
        values.insert(format!(":v{i}"), AttributeValue::N(delta.to_string()));
    }
    values.insert(":number".into(), s("N"));
    let expr = Expr {
        text,
        names,
        values,
    };
    (expr, guard)
}

/// `[SET #ttl = :t] ADD #a :one` under `attribute_not_exists(#a) OR
/// (attribute_type(#a, :number) AND #a < :limit)`: creates the item and the
/// attribute at zero, keeps everything else. The type test changes nothing
/// on DynamoDB (a string is never `<` a number there) but keeps moto from
/// comparing a string with a number, which it fails on.
fn increment_expression(attr: &str, limit: i64, ttl: Option<i64>) -> (Expr, String) {
    let mut names = HashMap::from([("#a".to_owned(), attr.to_owned())]);
    let mut values = HashMap::from([
        (":one".to_owned(), AttributeValue::N("1".into())),
        (":limit".to_owned(), AttributeValue::N(limit.to_string())),
        (":number".to_owned(), s("N")),
    ]);
    let mut text = String::new();
    if let Some(t) = ttl {
        text.push_str("SET #ttl = :t ");
        names.insert("#ttl".into(), TTL_ATTRIBUTE.into());
        values.insert(":t".into(), AttributeValue::N(t.to_string()));
    }
    text.push_str("ADD #a :one");
    let guard =
        "attribute_not_exists(#a) OR (attribute_type(#a, :number) AND #a < :limit)".to_owned();
    let expr = Expr {
        text,
        names,
        values,
    };
    (expr, guard)
}

// ---------------------------------------------------------------------------
// Checks (shared with every store) and the size of an item

fn check_transact(ops: &[WriteOp]) -> Result<(), StoreError> {
    check_ops(ops)?;
    for (i, op) in ops.iter().enumerate() {
        if let WriteOp::Put { item, .. } = op {
            check_item_size(item)
                .map_err(|m| StoreError::Invalid(format!("operation {i}: {m}")))?;
        }
    }
    Ok(())
}

fn check_item_size(item: &Item) -> Result<(), String> {
    let attrs = serde_json::to_vec(&item.attrs)
        .map_err(|e| format!("attributes do not encode: {e}"))?
        .len();
    check_size(&item.key, item.ttl, &item.indexes, attrs)
}

/// A retried put failed its condition on an item that is exactly the one it
/// writes (`ALL_OLD`): its own earlier try landed, and it is done. Only after
/// a retry: on a first try an identical item is someone else's write (two
/// writers may build the same item), and that is a conflict. This covers the
/// SDK's tries of one request; `service::write_while_unavailable` does the
/// same for the service's own tries of a write.
fn found_itself(err: &SdkError<PutItemError>, item: &Item) -> bool {
    let Some(PutItemError::ConditionalCheckFailedException(failed)) = err.as_service_error() else {
        return false;
    };
    // Compared as written (attributes as maps, numbers in one form).
    let landed = failed
        .item()
        .and_then(|old| decode(old.clone()).ok())
        .is_some_and(|old| encode(&old) == encode(item));
    if landed {
        tracing::debug!(pk = %item.key.pk, sk = %item.key.sk, "a retried put found its own earlier try");
    }
    landed
}

// ---------------------------------------------------------------------------
// Errors

/// What a failed write means: final, or lost to a concurrent transaction
/// (worth a retry; if retries run out, it counts as a conflict).
enum Failure {
    Final(StoreError),
    Busy(StoreError),
}

/// Run `write` again, with backoff, while it races a transaction (at most
/// [`WRITE_ATTEMPTS`] times); the last outcome as it came.
async fn retry_busy<T, F, Fut>(mut write: F) -> Result<T, Failure>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Failure>>,
{
    let mut attempt = 0;
    loop {
        match write().await {
            Err(Failure::Busy(e)) if attempt + 1 < WRITE_ATTEMPTS => {
                tracing::debug!(error = %e, attempt, "write raced a transaction; retrying");
                backoff(
                    attempt,
                    Duration::from_millis(20),
                    Duration::from_millis(500),
                )
                .await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

impl Failure {
    fn error(self) -> StoreError {
        match self {
            Failure::Final(e) | Failure::Busy(e) => e,
        }
    }
}

/// The one mapping from SDK errors to store errors. Throttling and transient
/// network errors are already retried by the SDK; what reaches here failed.
fn classify<E>(operation: &str, err: SdkError<E>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err.code() {
        Some("ConditionalCheckFailedException") => Failure::Final(StoreError::Conflict { op: 0 }),
        Some("ValidationException") => Failure::Final(StoreError::Invalid(format!(
            "DynamoDB {operation}: {}",
            err.message().unwrap_or("validation failed")
        ))),
        Some("TransactionConflictException" | "TransactionInProgressException") => {
            Failure::Busy(StoreError::Conflict { op: 0 })
        }
        _ => Failure::Final(StoreError::Unavailable(aws_error(operation, &err).into())),
    }
}

/// A cancelled transaction: the first operation whose reason is not `None`
/// decides, as the embedded store stops at the first failing operation.
fn cancellation(
    reasons: &[aws_sdk_dynamodb::types::CancellationReason],
    err: &SdkError<TransactWriteItemsError>,
) -> Failure {
    for (op, reason) in reasons.iter().enumerate() {
        match reason.code() {
            None | Some("None") => {}
            Some("ConditionalCheckFailed") => return Failure::Final(StoreError::Conflict { op }),
            Some("ValidationError" | "ValidationException") => {
                return Failure::Final(StoreError::Invalid(format!(
                    "operation {op}: {}",
                    reason.message().unwrap_or("validation failed")
                )));
            }
            Some("TransactionConflict") => return Failure::Busy(StoreError::Conflict { op }),
            Some("ThrottlingError" | "ProvisionedThroughputExceeded") => {
                return Failure::Busy(StoreError::Unavailable(
                    aws_error("TransactWriteItems", err).into(),
                ));
            }
            Some(_) => break,
        }
    }
    Failure::Final(StoreError::Unavailable(
        aws_error("TransactWriteItems", err).into(),
    ))
}

/// An SDK error as text with its whole cause chain (its own Display is just
/// "service error").
fn aws_error<E, R>(operation: &str, err: &SdkError<E, R>) -> String
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    format!("DynamoDB {operation}: {}", DisplayErrorContext(err))
}

fn malformed(e: BuildError) -> StoreError {
    StoreError::Invalid(format!("malformed DynamoDB request: {e}"))
}
