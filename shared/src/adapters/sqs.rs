//! The SQS [`Queue`]: standard queues addressed by name (resolved once per
//! process with GetQueueUrl, then cached) or by URL, sends batched by 10
//! within SQS's 256 KiB request limit, per-entry failures retried, deletes
//! batched by 10. Durations go to SQS in whole seconds, rounded up. Message
//! attributes travel as SQS `String` message attributes; receives ask for
//! all of them (whatever type a producer sent, those with a string value
//! are kept).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageAttributeValue, MessageSystemAttributeName,
    QueueAttributeName, SendMessageBatchRequestEntry,
};
use tokio::sync::OnceCell;
use tokio::task::JoinSet;

use crate::adapters::backoff;
use crate::adapters::checks::{check_messages, check_receive};
use crate::ports::{Delivery, MAX_MESSAGE_BYTES, OutgoingMessage, Queue, QueueError};

/// SendMessageBatch and DeleteMessageBatch take at most 10 entries.
const BATCH_SIZE: usize = 10;
/// SendMessageBatch chunks of one `send_batch` in flight at once.
const BATCH_PARALLELISM: usize = 8;
/// Rounds of a chunk while SQS reports entries failed on its side.
const BATCH_ATTEMPTS: u32 = 5;
/// Pauses between rounds of a chunk: full jitter under this ceiling.
const BACKOFF_BASE: Duration = Duration::from_millis(20);
const BACKOFF_CAP: Duration = Duration::from_secs(5);
/// SQS's longest long poll.
const MAX_WAIT_SECONDS: u64 = 20;
/// SQS's longest visibility timeout (12 hours).
const MAX_VISIBILITY_SECONDS: u64 = 43_200;
/// A dead-letter queue keeps its messages for the longest SQS allows.
const DLQ_RETENTION_SECONDS: u32 = 14 * 24 * 3600;
/// Receives of one message before SQS moves it to the dead-letter queue: a
/// message that crashed its consumer this often is poison.
pub const MAX_RECEIVE_COUNT: u32 = 5;

/// The [`Queue`] on SQS. Cheap to clone (the client and cache are shared).
#[derive(Clone)]
pub struct SqsQueue {
    client: Client,
    /// One cell per queue name: concurrent first sends resolve it once.
    urls: Arc<Mutex<HashMap<String, Arc<OnceCell<String>>>>>,
    /// Creates a queue on first use. Tests use it for the fresh names of
    /// the conformance suite; deployments provision. A closure, so a
    /// process that never sets it (every Lambda) links no provisioning code.
    create_missing: Option<Create>,
}

type Create = Arc<dyn Fn(Client, String) -> BoxFuture<Result<String, BoxError>> + Send + Sync>;
type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl std::fmt::Debug for SqsQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqsQueue")
            .field("creates_missing", &self.create_missing.is_some())
            .finish_non_exhaustive()
    }
}

impl SqsQueue {
    /// A queue port on this SQS client (queues named or given by URL).
    pub fn new(client: Client) -> Self {
        Self {
            client,
            urls: Arc::default(),
            create_missing: None,
        }
    }

    /// Provisions a queue (with its dead-letter queue) the first time a name
    /// is not found, instead of failing.
    pub fn create_missing(mut self, visibility: Duration) -> Self {
        self.create_missing = Some(Arc::new(move |client, name| {
            Box::pin(async move { provision_queue(&client, &name, visibility).await })
        }));
        self
    }

    /// The URL of a queue name (or the URL itself).
    async fn url(&self, queue: &str) -> Result<String, QueueError> {
        if queue.starts_with("https://") || queue.starts_with("http://") {
            return Ok(queue.to_owned());
        }
        let cell = self
            .urls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(queue.to_owned())
            .or_default()
            .clone();
        cell.get_or_try_init(|| self.resolve(queue)).await.cloned()
    }

    async fn resolve(&self, queue: &str) -> Result<String, QueueError> {
        match self.client.get_queue_url().queue_name(queue).send().await {
            Ok(out) => Ok(out.queue_url.unwrap_or_default()),
            Err(e) if is_missing_queue(&e) => match &self.create_missing {
                Some(create) => create(self.client.clone(), queue.to_owned())
                    .await
                    .map_err(QueueError::Unavailable),
                None => Err(QueueError::Unavailable(
                    format!("SQS queue {queue} does not exist (run `warren provision`)").into(),
                )),
            },
            Err(e) => Err(unavailable("GetQueueUrl", &e)),
        }
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send_batch(
        &self,
        queue: &str,
        messages: Vec<OutgoingMessage>,
    ) -> Result<(), QueueError> {
        check_messages(&messages)?;
        if messages.is_empty() {
            return Ok(());
        }
        let url = self.url(queue).await?;
        let mut chunks = chunk_messages(messages).into_iter();
        let mut running = JoinSet::new();
        loop {
            while running.len() < BATCH_PARALLELISM {
                let Some(chunk) = chunks.next() else { break };
                running.spawn(send_chunk(self.client.clone(), url.clone(), chunk));
            }
            // An early return drops the set, which aborts the other chunks.
            match running.join_next().await {
                None => return Ok(()),
                Some(Ok(result)) => result?,
                Some(Err(e)) => return Err(QueueError::Unavailable(Box::new(e))),
            }
        }
    }

    async fn receive(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        check_receive(max)?;
        let url = self.url(queue).await?;
        let out = self
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(max as i32)
            .visibility_timeout(seconds(visibility, MAX_VISIBILITY_SECONDS))
            .wait_time_seconds(seconds(wait, MAX_WAIT_SECONDS))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| unavailable("ReceiveMessage", &e))?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                let receive_count = m
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1);
                let attributes = m
                    .message_attributes
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|(name, v)| Some((name, v.string_value?)))
                    .collect();
                Some(Delivery {
                    message_id: m.message_id?,
                    receipt: m.receipt_handle?,
                    body: m.body.unwrap_or_default(),
                    receive_count,
                    attributes,
                })
            })
            .collect())
    }

    async fn delete_batch(&self, queue: &str, mut receipts: Vec<String>) -> Result<(), QueueError> {
        // A receive can hand the same message twice; SQS refuses a whole
        // batch that names one receipt twice (`BatchEntryIdsNotDistinct`).
        let mut seen = std::collections::HashSet::with_capacity(receipts.len());
        receipts.retain(|r| seen.insert(r.clone()));
        if receipts.is_empty() {
            return Ok(());
        }
        let url = self.url(queue).await?;
        let mut running = JoinSet::new();
        for chunk in receipts.chunks(BATCH_SIZE) {
            running.spawn(delete_chunk(
                self.client.clone(),
                url.clone(),
                chunk.to_vec(),
            ));
        }
        while let Some(joined) = running.join_next().await {
            joined.map_err(|e| QueueError::Unavailable(Box::new(e)))??;
        }
        Ok(())
    }

    async fn change_visibility(
        &self,
        queue: &str,
        receipt: &str,
        visibility: Duration,
    ) -> Result<(), QueueError> {
        let url = self.url(queue).await?;
        match self
            .client
            .change_message_visibility()
            .queue_url(url)
            .receipt_handle(receipt)
            .visibility_timeout(seconds(visibility, MAX_VISIBILITY_SECONDS))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code().is_some_and(is_stale_receipt) => Ok(()),
            Err(e) => Err(unavailable("ChangeMessageVisibility", &e)),
        }
    }
}

/// Splits messages into SendMessageBatch requests: at most [`BATCH_SIZE`]
/// entries and [`MAX_MESSAGE_BYTES`] of bodies and attributes each.
fn chunk_messages(messages: Vec<OutgoingMessage>) -> Vec<Vec<OutgoingMessage>> {
    let mut chunks: Vec<Vec<OutgoingMessage>> = Vec::new();
    let mut bytes = 0;
    for m in messages {
        let full = chunks
            .last()
            .is_none_or(|c| c.len() == BATCH_SIZE || bytes + m.size() > MAX_MESSAGE_BYTES);
        if full {
            chunks.push(Vec::with_capacity(BATCH_SIZE));
            bytes = 0;
        }
        bytes += m.size();
        chunks.last_mut().expect("a chunk was just pushed").push(m);
    }
    chunks
}

/// Sends one chunk, re-sending the entries SQS failed on its side until all
/// are in or the attempts run out.
async fn send_chunk(
    client: Client,
    url: String,
    chunk: Vec<OutgoingMessage>,
) -> Result<(), QueueError> {
    let mut pending: Vec<(String, OutgoingMessage)> = chunk
        .into_iter()
        .enumerate()
        .map(|(i, m)| (i.to_string(), m))
        .collect();
    for attempt in 0..BATCH_ATTEMPTS {
        let entries = pending
            .iter()
            .map(|(id, m)| {
                let attributes = m
                    .attributes
                    .iter()
                    .map(|(name, value)| {
                        MessageAttributeValue::builder()
                            .data_type("String")
                            .string_value(value)
                            .build()
                            .map(|v| (name.clone(), v))
                    })
                    .collect::<Result<_, _>>()?;
                SendMessageBatchRequestEntry::builder()
                    .id(id)
                    .message_body(&m.body)
                    .delay_seconds(m.delay.as_secs() as i32)
                    .set_message_attributes((!m.attributes.is_empty()).then_some(attributes))
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| QueueError::Invalid(format!("malformed SQS request: {e}")))?;
        let out = client
            .send_message_batch()
            .queue_url(&url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| unavailable("SendMessageBatch", &e))?;
        if let Some(bad) = out.failed.iter().find(|f| f.sender_fault) {
            return Err(QueueError::Invalid(format!(
                "SQS refused a message: {} {}",
                bad.code,
                bad.message.as_deref().unwrap_or_default()
            )));
        }
        if out.failed.is_empty() {
            return Ok(());
        }
        let failed: Vec<&str> = out.failed.iter().map(|f| f.id.as_str()).collect();
        pending.retain(|(id, _)| failed.contains(&id.as_str()));
        tracing::debug!(
            failed = pending.len(),
            attempt,
            "SQS failed batch entries; re-sending"
        );
        backoff(attempt, BACKOFF_BASE, BACKOFF_CAP).await;
    }
    Err(QueueError::Unavailable(
        format!("SQS kept failing {} messages of a batch", pending.len()).into(),
    ))
}

/// Deletes one chunk; stale receipts are ignored, entries SQS failed on its
/// side are retried.
async fn delete_chunk(
    client: Client,
    url: String,
    receipts: Vec<String>,
) -> Result<(), QueueError> {
    let mut pending: Vec<(String, String)> = receipts
        .into_iter()
        .enumerate()
        .map(|(i, r)| (i.to_string(), r))
        .collect();
    for attempt in 0..BATCH_ATTEMPTS {
        let entries = pending
            .iter()
            .map(|(id, receipt)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(id)
                    .receipt_handle(receipt)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| QueueError::Invalid(format!("malformed SQS request: {e}")))?;
        let out = match client
            .delete_message_batch()
            .queue_url(&url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(out) => out,
            // One malformed receipt fails the whole request on some servers.
            Err(e) if e.code().is_some_and(is_stale_receipt) => return Ok(()),
            Err(e) => return Err(unavailable("DeleteMessageBatch", &e)),
        };
        let retry: Vec<&str> = out
            .failed
            .iter()
            .filter(|f| !f.sender_fault && !is_stale_receipt(&f.code))
            .map(|f| f.id.as_str())
            .collect();
        if retry.is_empty() {
            return Ok(());
        }
        pending.retain(|(id, _)| retry.contains(&id.as_str()));
        backoff(attempt, BACKOFF_BASE, BACKOFF_CAP).await;
    }
    Err(QueueError::Unavailable(
        format!("SQS kept failing to delete {} messages", pending.len()).into(),
    ))
}

/// Creates `name` and its dead-letter queue `name-dlq` unless they exist,
/// and (re)applies their attributes: the visibility timeout, the redrive
/// after [`MAX_RECEIVE_COUNT`] receives, the DLQ's 14-day retention.
/// Idempotent; returns the queue's URL.
pub async fn provision_queue(
    client: &Client,
    name: &str,
    visibility: Duration,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let dlq_url = create_queue(
        client,
        &format!("{name}-dlq"),
        &[(
            QueueAttributeName::MessageRetentionPeriod,
            DLQ_RETENTION_SECONDS.to_string(),
        )],
    )
    .await?;
    let dlq_arn = client
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| error_text("GetQueueAttributes", &e))?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .ok_or("SQS GetQueueAttributes: no QueueArn for the dead-letter queue")?;
    let redrive = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": MAX_RECEIVE_COUNT.to_string(),
    });
    create_queue(
        client,
        name,
        &[
            (
                QueueAttributeName::VisibilityTimeout,
                seconds(visibility, MAX_VISIBILITY_SECONDS).to_string(),
            ),
            (QueueAttributeName::RedrivePolicy, redrive.to_string()),
        ],
    )
    .await
}

/// CreateQueue without attributes (which never conflicts with an existing
/// queue), then SetQueueAttributes, so re-provisioning updates a queue.
async fn create_queue(
    client: &Client,
    name: &str,
    attributes: &[(QueueAttributeName, String)],
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let url = client
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .map_err(|e| error_text("CreateQueue", &e))?
        .queue_url
        .ok_or("SQS CreateQueue: no queue URL in the answer")?;
    client
        .set_queue_attributes()
        .queue_url(&url)
        .set_attributes(Some(attributes.iter().cloned().collect()))
        .send()
        .await
        .map_err(|e| error_text("SetQueueAttributes", &e))?;
    Ok(url)
}

/// A duration as SQS seconds: rounded up (a 1 ms visibility must still
/// hide), capped at SQS's maximum.
fn seconds(d: Duration, max: u64) -> i32 {
    let whole = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    whole.min(max) as i32
}

fn is_missing_queue<E, R>(e: &SdkError<E, R>) -> bool
where
    E: ProvideErrorMetadata,
{
    matches!(
        e.code(),
        Some("AWS.SimpleQueueService.NonExistentQueue" | "QueueDoesNotExist")
    )
}

/// Receipts of messages already deleted, redelivered or expired.
fn is_stale_receipt(code: &str) -> bool {
    matches!(
        code,
        "ReceiptHandleIsInvalid"
            | "InvalidParameterValue"
            | "AWS.SimpleQueueService.MessageNotInflight"
            | "MessageNotInflight"
    )
}

fn error_text<E, R>(operation: &str, err: &SdkError<E, R>) -> String
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    format!("SQS {operation}: {}", DisplayErrorContext(err))
}

fn unavailable<E, R>(operation: &str, err: &SdkError<E, R>) -> QueueError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    QueueError::Unavailable(error_text(operation, err).into())
}
