//! Topics and event triggers (seed 003): while a pipeline's event trigger
//! is started, every message published on the topic its `options.event`
//! names starts one execution of it. Producers publish over HTTP, straight
//! into the topic ingress queue (message attribute `topic`), or through an
//! SNS topic subscribed to that queue; the dispatcher fans each message out.
//!
//! A subscription and its membership of its topic are written and deleted
//! together (see [`crate::table::topics`]), so the dispatcher finds a
//! topic's started triggers with a strongly consistent table query, and a
//! stopped trigger starts nothing afterwards.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::executions;
use super::pipelines;
use super::{Deps, ServiceError};
use crate::domain::execution::{Execution, TriggerType};
use crate::domain::pipeline::check_topic;
use crate::json::MAX_INPUT_DEPTH;
use crate::ports::{Delivery, OutgoingMessage};
use crate::table::{count, topics as table};
use crate::trace::{Span, SpanKind};

/// The message attribute that names a message's topic.
pub const TOPIC_ATTRIBUTE: &str = "topic";
/// An optional message attribute: the message's own id. Messages sent with
/// the same id start each pipeline once (a producer's retried send, say).
pub const MESSAGE_ID_ATTRIBUTE: &str = "message_id";
/// The longest message id taken from an attribute (it becomes a key).
const MAX_MESSAGE_ID: usize = 128;
/// How long a dispatched message is remembered against redelivery.
const DISPATCH_MEMORY: chrono::Duration = chrono::Duration::days(1);
/// The most event triggers one topic may have started.
pub const MAX_TRIGGERS_PER_TOPIC: usize = 100;

/// A started event trigger.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    pub pipeline_id: Uuid,
    pub topic: String,
    /// The pipeline version each message runs.
    pub pipeline_version: u32,
    pub started_at: DateTime<Utc>,
    /// The pipeline's owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Uuid>,
    /// Bumped by every write; the compare-and-set token.
    pub revision: u64,
}

fn invalid_topic(topic: &str, why: String) -> ServiceError {
    ServiceError::invalid("invalid_topic", format!("topic `{topic}`: {why}"))
}

async fn subscription(deps: &Deps, pipeline: Uuid) -> Result<Option<Subscription>, ServiceError> {
    Ok(table::subscription(&*deps.store, pipeline, deps.now().timestamp()).await?)
}

/// Start the pipeline's event trigger on the topic its `options.event`
/// names, running `version` (default: the current one). Starting again is
/// harmless; starting with another version (or after the topic changed)
/// moves the trigger over.
pub async fn start(
    deps: &Deps,
    pipeline_id: Uuid,
    version: Option<u32>,
) -> Result<Subscription, ServiceError> {
    let pipeline = pipelines::get(deps, pipeline_id, version).await?;
    let Some(topic) = pipeline.spec.options.event.clone() else {
        return Err(ServiceError::Conflict {
            message: format!(
                "pipeline {pipeline_id} (version {}) names no topic: set `options.event` to the topic its event trigger subscribes to",
                pipeline.version
            ),
            code: "no_topic",
        });
    };
    loop {
        let current = subscription(deps, pipeline_id).await?;
        if let Some(c) = &current
            && c.topic == topic
            && c.pipeline_version == pipeline.version
        {
            return Ok(c.clone());
        }
        if current.as_ref().is_none_or(|c| c.topic != topic) {
            check_room(deps, &topic).await?;
        }
        let now = deps.now();
        let next = Subscription {
            pipeline_id,
            topic: topic.clone(),
            pipeline_version: pipeline.version,
            started_at: now,
            user_id: pipeline.user_id,
            revision: current.as_ref().map_or(1, |c| c.revision + 1),
        };
        let ops = table::subscribe(
            pipeline_id,
            &topic,
            &next,
            current.as_ref().map(|c| c.revision),
            current.as_ref().map(|c| c.topic.as_str()),
            now,
        );
        match deps.store.transact(ops).await {
            // A concurrent start or stop won: build on what it wrote.
            Err(e) if e.is_conflict() => continue,
            other => return other.map(|()| next).map_err(Into::into),
        }
    }
}

/// Refuse one more event trigger on a full topic: every publish runs one
/// execution per trigger, so the triggers bound what one message costs.
async fn check_room(deps: &Deps, topic: &str) -> Result<(), ServiceError> {
    let members = table::member_count(&*deps.store, topic, MAX_TRIGGERS_PER_TOPIC).await?;
    match members < MAX_TRIGGERS_PER_TOPIC {
        true => Ok(()),
        false => Err(ServiceError::Conflict {
            message: format!(
                "topic `{topic}` already has {MAX_TRIGGERS_PER_TOPIC} started event triggers, the most one may have"
            ),
            code: "topic_full",
        }),
    }
}

/// The pipeline's started trigger, if it would run: `None` when it is
/// stopped, or when the pipeline version it runs was deleted. An unknown
/// pipeline without a trigger is `NotFound`.
pub async fn status(deps: &Deps, pipeline_id: Uuid) -> Result<Option<Subscription>, ServiceError> {
    let Some(s) = subscription(deps, pipeline_id).await? else {
        pipelines::get(deps, pipeline_id, None).await?;
        return Ok(None);
    };
    match pipelines::get(deps, pipeline_id, Some(s.pipeline_version)).await {
        Ok(_) => Ok(Some(s)),
        Err(ServiceError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Stop the pipeline's event trigger; stopping a stopped one is harmless.
/// An unknown pipeline without a trigger is `NotFound`.
pub async fn stop(deps: &Deps, pipeline_id: Uuid) -> Result<(), ServiceError> {
    if !stop_started(deps, pipeline_id).await? {
        pipelines::get(deps, pipeline_id, None).await?;
    }
    Ok(())
}

/// Stop the pipeline's event trigger if it is started (whether or not the
/// pipeline still exists); whether it was.
pub async fn stop_started(deps: &Deps, pipeline_id: Uuid) -> Result<bool, ServiceError> {
    loop {
        let Some(current) = subscription(deps, pipeline_id).await? else {
            return Ok(false);
        };
        let ops = table::unsubscribe(pipeline_id, &current.topic, current.revision);
        match deps.store.transact(ops).await {
            Err(e) if e.is_conflict() => continue,
            other => return other.map(|()| true).map_err(Into::into),
        }
    }
}

/// Publish `payload` on `topic` through the ingress queue; the message id.
pub async fn publish(deps: &Deps, topic: &str, payload: &Value) -> Result<String, ServiceError> {
    check_topic(topic).map_err(|why| invalid_topic(topic, why))?;
    let message_id = Uuid::now_v7().to_string();
    let message = OutgoingMessage::new(payload.to_string())
        .with_attribute(TOPIC_ATTRIBUTE, topic)
        .with_attribute(MESSAGE_ID_ATTRIBUTE, &message_id);
    let message = crate::trace::tag(message, crate::trace::current_header().as_deref());
    ServiceError::check_message_size("the message with its attributes", message.size())?;
    if deps.config.dispatch_inline {
        let delivery = Delivery {
            message_id: message_id.clone(),
            receipt: String::new(),
            body: message.body,
            receive_count: 1,
            attributes: message.attributes,
        };
        // Every started trigger gets its execution, even if the publisher
        // hangs up halfway through them.
        let deps = deps.clone();
        super::dispatch::detached(async move { dispatch(&deps, &delivery).await }).await?;
    } else {
        deps.queue
            .send_batch(&deps.config.topic_queue, vec![message])
            .await?;
    }
    // The message is out: a lost count must not make the producer send it again.
    if let Err(e) = deps
        .store
        .transact(vec![table::count(topic, "published")])
        .await
    {
        tracing::warn!(%topic, error = %e, "message published but not counted");
    }
    Ok(message_id)
}

/// A message as the dispatcher reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct TopicMessage {
    /// Its id: the `message_id` attribute, the SNS message id, else the
    /// queue's own.
    pub id: String,
    pub topic: String,
    pub payload: Value,
}

/// The part of an SNS notification (as SNS delivers it to SQS without raw
/// message delivery) that the dispatcher needs.
#[derive(Deserialize)]
struct SnsEnvelope {
    #[serde(rename = "Type")]
    kind: String,
    #[serde(rename = "TopicArn")]
    topic_arn: String,
    #[serde(rename = "Message")]
    message: String,
    #[serde(rename = "MessageId")]
    message_id: Option<String>,
}

/// JSON text as its value, anything else as a string; refused when it
/// nests deeper than an execution can keep as its input.
fn json_or_string(text: &str) -> Result<Value, String> {
    if crate::json::text_deeper_than(text.as_bytes(), MAX_INPUT_DEPTH) {
        return Err(format!(
            "the message nests deeper than {MAX_INPUT_DEPTH} levels"
        ));
    }
    Ok(serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string())))
}

fn usable_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_MESSAGE_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

impl TopicMessage {
    /// The topic, id and payload of a delivery: the `topic` attribute with
    /// the body as payload, else an SNS envelope's topic (its ARN's last
    /// segment) with its `Message`. Why not, when the message names no
    /// usable topic.
    pub fn read(d: &Delivery) -> Result<TopicMessage, String> {
        let (topic, id, payload) = if let Some(topic) = d.attributes.get(TOPIC_ATTRIBUTE) {
            let id = d.attributes.get(MESSAGE_ID_ATTRIBUTE);
            (topic.clone(), id.cloned(), json_or_string(&d.body)?)
        } else {
            let envelope = serde_json::from_str::<SnsEnvelope>(&d.body)
                .ok()
                .filter(|e| e.kind == "Notification" && e.topic_arn.starts_with("arn:"))
                .ok_or("no `topic` attribute and not an SNS notification")?;
            let topic = envelope.topic_arn.rsplit(':').next().unwrap_or_default();
            let payload = json_or_string(&envelope.message)?;
            (topic.to_string(), envelope.message_id, payload)
        };
        check_topic(&topic).map_err(|why| format!("topic `{topic}`: {why}"))?;
        let id = id
            .filter(|id| usable_id(id))
            .unwrap_or_else(|| d.message_id.clone());
        Ok(TopicMessage { id, topic, payload })
    }
}

/// What the dispatcher did with one message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dispatched {
    /// The topic, when the message named one.
    pub topic: Option<String>,
    /// Executions started now.
    pub started: usize,
    /// Started triggers that had run this message already (a redelivery).
    pub duplicates: usize,
    /// Started triggers whose owner's runs of the month are used up.
    pub refused: usize,
}

/// The started triggers of `topic`, in pipeline id order.
async fn members(deps: &Deps, topic: &str) -> Result<Vec<Subscription>, ServiceError> {
    Ok(table::members(&*deps.store, topic).await?)
}

/// Fan one message of the ingress queue out: one execution per started
/// trigger of its topic, each at most once however often the message is
/// delivered. A message for a topic without a started trigger, or naming
/// no topic, is counted and dropped. `Err` (a store failure) means: deliver
/// the message again.
pub async fn dispatch(deps: &Deps, delivery: &Delivery) -> Result<Dispatched, ServiceError> {
    // The publisher's trace (a `traceparent` attribute, from warren or a
    // producer sending to the queue straight) goes on in the executions.
    let trace = crate::trace::of(
        delivery
            .attributes
            .get(crate::trace::HEADER)
            .map(String::as_str),
    );
    let outcome = |done: &Result<Dispatched, ServiceError>, span: &mut Span| match done {
        Ok(d) => span.set_int("warren.executions_started", d.started as i64),
        Err(e) => span.fail(e.to_string()),
    };
    let dispatch = dispatch_traced(deps, delivery);
    crate::trace::traced(
        "topic message",
        SpanKind::Consumer,
        trace,
        dispatch,
        outcome,
    )
    .await
}

/// [`dispatch`] within the message's trace.
async fn dispatch_traced(deps: &Deps, delivery: &Delivery) -> Result<Dispatched, ServiceError> {
    let message = match TopicMessage::read(delivery) {
        Ok(m) => m,
        Err(why) => {
            tracing::warn!(message_id = %delivery.message_id, %why, "dropping a message with no topic");
            deps.store.transact(vec![table::count_unrouted()]).await?;
            deps.metrics.dropped_topic_message();
            return Ok(Dispatched::default());
        }
    };
    let mut done = Dispatched {
        topic: Some(message.topic.clone()),
        ..Dispatched::default()
    };
    let now = deps.now();
    for sub in members(deps, &message.topic).await? {
        let pipeline = match pipelines::get(deps, sub.pipeline_id, Some(sub.pipeline_version)).await
        {
            Ok(p) => p,
            Err(ServiceError::NotFound(_)) => {
                tracing::warn!(pipeline_id = %sub.pipeline_id, version = sub.pipeline_version, "event trigger of a deleted pipeline version skipped");
                continue;
            }
            Err(e) => return Err(e),
        };
        let execution = Execution::new(
            crate::table::executions::new_id(pipeline.id),
            &pipeline,
            TriggerType::Event,
            Some(message.id.clone()),
            message.payload.clone(),
            now,
        );
        let extra = vec![
            table::mark_dispatched(
                &message.id,
                sub.pipeline_id,
                execution.id,
                now,
                now + DISPATCH_MEMORY,
            ),
            table::count(&message.topic, "dispatched"),
        ];
        match executions::start(deps, &execution, extra).await {
            Ok(()) => done.started += 1,
            Err(e) if e.is_conflict() => {
                done.duplicates += 1;
                // The first dispatch may have stored its run and failed
                // before sending it (which is why this message came back).
                if let Some(id) =
                    table::dispatched_execution(&*deps.store, &message.id, sub.pipeline_id).await?
                {
                    executions::send_again_if_unclaimed(deps, id).await;
                }
            }
            Err(ServiceError::Limited { message: why, .. }) => {
                // Not retried: the month's runs are used up.
                tracing::warn!(pipeline_id = %sub.pipeline_id, message_id = %message.id, %why, "event trigger skipped");
                deps.store
                    .transact(vec![table::count(&message.topic, "refused")])
                    .await?;
                done.refused += 1;
            }
            Err(e) => return Err(e),
        }
    }
    if done.started + done.duplicates + done.refused == 0 {
        tracing::info!(topic = %message.topic, message_id = %message.id, "no started event trigger on this topic; message dropped");
        deps.store
            .transact(vec![table::count(&message.topic, "dropped")])
            .await?;
        deps.metrics.dropped_topic_message();
    }
    deps.metrics.dispatched(done.started as u64);
    Ok(done)
}

/// A topic's counters and started triggers.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TopicInfo {
    pub topic: String,
    /// Messages published over HTTP.
    pub published: i64,
    /// Executions the dispatcher started.
    pub dispatched: i64,
    /// Messages that found no started trigger.
    pub dropped: i64,
    /// Executions not started: their owner's runs of the month were used up.
    pub refused: i64,
    pub subscriptions: Vec<Subscription>,
}

/// A topic's counters and its started triggers.
pub async fn info(deps: &Deps, topic: &str) -> Result<TopicInfo, ServiceError> {
    check_topic(topic).map_err(|why| invalid_topic(topic, why))?;
    let counters = table::counters(&*deps.store, topic).await?;
    Ok(TopicInfo {
        topic: topic.to_string(),
        published: count(&counters, "published"),
        dispatched: count(&counters, "dispatched"),
        dropped: count(&counters, "dropped"),
        refused: count(&counters, "refused"),
        subscriptions: members(deps, topic).await?,
    })
}
