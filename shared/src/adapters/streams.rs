//! The table's change stream (DynamoDB Streams, `NEW_AND_OLD_IMAGES`), read
//! as Lambda's event source mapping reads it: each shard from its oldest
//! change, in order, one batch at a time; a batch is handed out again until
//! it is acknowledged. On AWS the `counts` function gets the same batches
//! from the mapping; `warren dev --backend aws` and the tests read them here.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_dynamodbstreams::Client;
use aws_sdk_dynamodbstreams::types::{Record, ShardIteratorType};

use crate::adapters::dynamodb::decode;
use crate::ports::{ItemChange, StoreError};

/// Changes one `GetRecords` hands out at most (DynamoDB's limit).
const BATCH: i32 = 1000;
/// How often the stream's shards are listed again (shards split and close
/// over time).
const RELIST_EVERY: Duration = Duration::from_secs(10);

/// An item's change from its stream images (an empty image: no item).
pub fn change(
    id: String,
    before: serde_dynamo::Item,
    after: serde_dynamo::Item,
) -> Result<ItemChange, StoreError> {
    let item = |image: serde_dynamo::Item| {
        let raw: HashMap<String, aws_sdk_dynamodb::types::AttributeValue> = image.into();
        (!raw.is_empty()).then(|| decode(raw)).transpose()
    };
    Ok(ItemChange {
        id,
        before: item(before)?,
        after: item(after)?,
    })
}

fn change_of(record: Record) -> Result<ItemChange, StoreError> {
    let image = |i: Option<HashMap<String, aws_sdk_dynamodbstreams::types::AttributeValue>>| {
        serde_dynamo::Item::from(i.unwrap_or_default())
    };
    let (before, after) = match record.dynamodb {
        Some(stream) => (stream.old_image, stream.new_image),
        None => (None, None),
    };
    change(
        record.event_id.unwrap_or_default(),
        image(before),
        image(after),
    )
}

/// Where the reader is in one shard.
struct Shard {
    id: String,
    /// Where the next batch starts; `None`: ask for one after `last`.
    iterator: Option<String>,
    /// The last change acknowledged (`None`: start from the oldest).
    last: Option<String>,
    closed: bool,
}

/// A batch handed out and not yet acknowledged.
struct Handed {
    shard: usize,
    /// Where the batch after it starts (`None`: the shard is closed).
    next: Option<String>,
    last: Option<String>,
}

/// The ARN of `table`'s latest stream; `Invalid` if it has none.
pub async fn stream_arn(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<String, StoreError> {
    let described = dynamodb
        .describe_table()
        .table_name(table)
        .send()
        .await
        .map_err(unavailable)?;
    described
        .table
        .and_then(|t| t.latest_stream_arn)
        .ok_or_else(|| StoreError::Invalid(format!("table {table} has no stream")))
}

/// A reader of one table's change stream.
pub struct TableStream {
    client: Client,
    arn: String,
    shards: Vec<Shard>,
    listed: Option<Instant>,
    handed: Option<Handed>,
}

impl TableStream {
    /// The reader of `table`'s latest stream; `Invalid` if it has none.
    pub async fn open(
        client: Client,
        dynamodb: &aws_sdk_dynamodb::Client,
        table: &str,
    ) -> Result<Self, StoreError> {
        Ok(TableStream {
            client,
            arn: stream_arn(dynamodb, table).await?,
            shards: Vec::new(),
            listed: None,
            handed: None,
        })
    }

    async fn list_shards(&mut self) -> Result<(), StoreError> {
        let mut start = None;
        loop {
            let page = self
                .client
                .describe_stream()
                .stream_arn(&self.arn)
                .set_exclusive_start_shard_id(start)
                .send()
                .await
                .map_err(unavailable)?;
            let Some(description) = page.stream_description else {
                break;
            };
            // Listed parents first, so a shard is read before its children.
            for shard in description.shards.unwrap_or_default() {
                let Some(id) = shard.shard_id else { continue };
                if !self.shards.iter().any(|s| s.id == id) {
                    self.shards.push(Shard {
                        id,
                        iterator: None,
                        last: None,
                        closed: false,
                    });
                }
            }
            match description.last_evaluated_shard_id {
                Some(last) => start = Some(last),
                None => break,
            }
        }
        self.listed = Some(Instant::now());
        Ok(())
    }

    /// The next batch of changes of some shard (empty when none has any
    /// yet). Until [`TableStream::acknowledge`], the same batch comes again.
    pub async fn next_batch(&mut self) -> Result<Vec<ItemChange>, StoreError> {
        if let Some(handed) = &self.handed {
            let shard = handed.shard;
            return self.read(shard).await;
        }
        if self.listed.is_none_or(|at| at.elapsed() >= RELIST_EVERY) {
            self.list_shards().await?;
        }
        for i in 0..self.shards.len() {
            if self.shards[i].closed {
                continue;
            }
            let batch = self.read(i).await?;
            if !batch.is_empty() {
                return Ok(batch);
            }
        }
        Ok(Vec::new())
    }

    /// Read shard `i` from its position: a batch handed out until it is
    /// acknowledged, or nothing (the position moves on).
    async fn read(&mut self, i: usize) -> Result<Vec<ItemChange>, StoreError> {
        let iterator = match &self.shards[i].iterator {
            Some(it) => it.clone(),
            None => {
                let shard = &self.shards[i];
                let (kind, after) = match &shard.last {
                    Some(seq) => (ShardIteratorType::AfterSequenceNumber, Some(seq.clone())),
                    None => (ShardIteratorType::TrimHorizon, None),
                };
                let it = self
                    .client
                    .get_shard_iterator()
                    .stream_arn(&self.arn)
                    .shard_id(&shard.id)
                    .shard_iterator_type(kind)
                    .set_sequence_number(after)
                    .send()
                    .await
                    .map_err(unavailable)?
                    .shard_iterator
                    .unwrap_or_default();
                self.shards[i].iterator = Some(it.clone());
                it
            }
        };
        let page = match self
            .client
            .get_records()
            .shard_iterator(iterator)
            .limit(BATCH)
            .send()
            .await
        {
            Ok(page) => page,
            Err(e) => {
                // An iterator expires after 15 minutes: the next read asks
                // for a fresh one after the last change acknowledged.
                self.shards[i].iterator = None;
                return Err(unavailable(e));
            }
        };
        let records = page.records.unwrap_or_default();
        let handed = Handed {
            shard: i,
            next: page.next_shard_iterator,
            last: records
                .last()
                .and_then(|r| r.dynamodb.as_ref()?.sequence_number.clone()),
        };
        self.handed = Some(handed);
        if records.is_empty() {
            self.acknowledge();
            return Ok(Vec::new());
        }
        records.into_iter().map(change_of).collect()
    }

    /// The batch [`TableStream::next_batch`] handed out is done with.
    pub fn acknowledge(&mut self) {
        let Some(handed) = self.handed.take() else {
            return;
        };
        let shard = &mut self.shards[handed.shard];
        if handed.last.is_some() {
            shard.last = handed.last;
        }
        match handed.next {
            Some(next) => shard.iterator = Some(next),
            None => shard.closed = true,
        }
    }
}

fn unavailable<E: std::error::Error + Send + Sync + 'static>(e: E) -> StoreError {
    StoreError::Unavailable(Box::new(e))
}
