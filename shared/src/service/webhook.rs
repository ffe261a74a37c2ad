//! Webhooks: tell a task's `webhook_url` that it completed or finally failed.
//!
//! Each delivery is a message on the task queue, so it survives a crash and
//! retries with backoff without holding a worker. Requests are signed the
//! Standard Webhooks way: `webhook-id`, `webhook-timestamp` and
//! `webhook-signature: v1,<base64 HMAC-SHA256(secret, "id.timestamp.body")>`.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;
use uuid::Uuid;

use super::identity::secrets::{Resolving, references};
use super::{Deps, ServiceError};
use crate::domain::{Task, WebhookOutcome, WebhookStatus};
use crate::messages::TaskMessage;
use crate::ports::{HttpError, HttpRequest, OutgoingMessage};

/// How long one delivery attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// The most extra headers a task's webhook may carry.
pub const MAX_HEADERS: usize = 20;
/// The largest extra header value, in bytes.
const MAX_HEADER_BYTES: usize = 8 * 1024;
/// Headers warren sets on every delivery, which a task may not replace.
const OWN_HEADERS: [&str; 6] = [
    "content-type",
    "content-length",
    "host",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

/// Why `headers` cannot be a task's `webhook_headers`, if they cannot.
pub fn headers_problem(headers: &Map<String, Value>) -> Option<String> {
    if headers.len() > MAX_HEADERS {
        return Some(format!(
            "webhook_headers may hold at most {MAX_HEADERS} headers"
        ));
    }
    for (name, value) in headers {
        let valid_name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_ok();
        if !valid_name || OWN_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Some(format!("webhook_headers cannot set `{name}`"));
        }
        let Some(text) = value.as_str() else {
            return Some(format!("webhook_headers.{name} must be a string"));
        };
        if text.len() > MAX_HEADER_BYTES || reqwest::header::HeaderValue::from_str(text).is_err() {
            return Some(format!(
                "webhook_headers.{name} must be printable text of at most {MAX_HEADER_BYTES} bytes"
            ));
        }
        if let Err(problem) = references(text) {
            return Some(format!("webhook_headers.{name}: {problem}"));
        }
    }
    None
}

/// The outcome recorded when a task finishes and its webhook is due.
pub fn pending_outcome(now: DateTime<Utc>) -> WebhookOutcome {
    WebhookOutcome {
        status: WebhookStatus::Pending,
        attempts: 0,
        last_status_code: None,
        last_error: None,
        updated_at: now,
    }
}

/// The JSON body sent for a finished task.
pub fn payload(task: &Task) -> String {
    json!({
        "type": format!("task.{}", task.status.as_str()),
        "task_id": task.id,
        "task_name": task.task_name,
        "queue_name": task.queue_name,
        "status": task.status,
        "result": task.result,
        "error": task.error,
        "attempts": task.attempts,
        "completed_at": task.completed_at,
    })
    .to_string()
}

/// The Standard Webhooks signature header value of `body`.
pub fn sign(secret: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("hmac key");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body.as_bytes());
    format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
}

/// The headers of a signed JSON request: content type, `webhook-id`,
/// `webhook-timestamp` and `webhook-signature`. `None` in a process that
/// has no key (only the worker signs): it never sends unsigned.
pub fn signed_headers(
    secret: &[u8],
    id: &str,
    timestamp: i64,
    body: &str,
) -> Option<Vec<(String, String)>> {
    if secret.is_empty() {
        return None;
    }
    Some(vec![
        ("content-type".into(), "application/json".into()),
        ("webhook-id".into(), id.to_string()),
        ("webhook-timestamp".into(), timestamp.to_string()),
        (
            "webhook-signature".into(),
            sign(secret, id, timestamp, body),
        ),
    ])
}

/// Why one delivery attempt did not deliver.
#[derive(Debug)]
enum Undelivered {
    /// It can never succeed (a refused or malformed URL): not retried.
    Refused(HttpError),
    /// It may succeed later: the answer's status, if any, and why.
    Failed { status: Option<u16>, error: String },
}

impl Undelivered {
    fn error(&self) -> String {
        match self {
            Undelivered::Refused(e) => format!("not retried: {e}"),
            Undelivered::Failed { error, .. } => error.clone(),
        }
    }

    fn status(&self) -> Option<u16> {
        match self {
            Undelivered::Refused(_) => None,
            Undelivered::Failed { status, .. } => *status,
        }
    }
}

/// One delivery attempt: the 2xx status it got, or why it did not deliver.
async fn attempt(deps: &Deps, task: &Task) -> Result<u16, Undelivered> {
    let url = task.webhook_url.clone().unwrap_or_default();
    let body = payload(task);
    let now = deps.now().timestamp();
    let id = format!("msg_{}", task.id);
    let mut headers =
        signed_headers(&deps.config.webhook_secret, &id, now, &body).ok_or_else(|| {
            Undelivered::Failed {
                status: None,
                error: "this process has no webhook secret".into(),
            }
        })?;
    headers.extend(
        task.webhook_headers
            .iter()
            .filter_map(|(name, value)| Some((name.clone(), value.as_str()?.to_string()))),
    );
    let request = HttpRequest {
        method: "POST".into(),
        url,
        headers,
        body: body.into_bytes(),
        timeout: ATTEMPT_TIMEOUT,
    };
    // The owner's client: it resolves `{{secrets.NAME}}` in the extra headers.
    let client = Resolving::client(deps, task.owner);
    let sent = crate::trace::scope(
        crate::trace::of(task.traceparent.as_deref()),
        client.send(request),
    );
    match sent.await {
        Ok(r) if (200..300).contains(&r.status) => Ok(r.status),
        Ok(r) => Err(Undelivered::Failed {
            status: Some(r.status),
            error: format!("HTTP {}", r.status),
        }),
        Err(e @ (HttpError::Blocked(_) | HttpError::Invalid(_))) => Err(Undelivered::Refused(e)),
        Err(e) => Err(Undelivered::Failed {
            status: None,
            error: e.to_string(),
        }),
    }
}

/// Delay before attempt `next` (2, 3, ...): 1 s, 2 s, 4 s, ... capped by the queue.
fn backoff(next: u32) -> Duration {
    Duration::from_secs(1u64 << next.saturating_sub(2).min(9)).min(crate::ports::MAX_DELAY)
}

fn retry_message(body: TaskMessage, next: u32) -> OutgoingMessage {
    OutgoingMessage {
        body: body.encode(),
        delay: backoff(next),
        ..Default::default()
    }
}

/// Deliver the webhook of a stored task and record the outcome on it.
pub async fn deliver_stored(deps: &Deps, id: Uuid, attempt_no: u32) -> Result<(), ServiceError> {
    let Some(task) = deps.tasks().get(id).await? else {
        return Ok(());
    };
    if !task.owes_webhook() {
        return Ok(()); // already delivered (a duplicate message) or requeued since
    }
    let result = attempt(deps, &task).await;
    let max = deps.config.webhook_attempts;
    let now = deps.now();
    let (status, code, error, again) = match result {
        Ok(code) => (WebhookStatus::Delivered, Some(code), None, false),
        Err(undelivered) => {
            let again = !matches!(undelivered, Undelivered::Refused(_)) && attempt_no < max;
            let status = match again {
                true => WebhookStatus::Pending,
                false => WebhookStatus::Failed,
            };
            (
                status,
                undelivered.status(),
                Some(undelivered.error()),
                again,
            )
        }
    };
    let outcome = WebhookOutcome {
        status,
        attempts: attempt_no,
        last_status_code: code,
        last_error: error,
        updated_at: now,
    };
    // Keep the timer while still pending, so a lost retry message is re-sent.
    let timer = again.then(|| {
        now + chrono::Duration::from_std(deps.config.redispatch_after).unwrap_or_default()
    });
    deps.metrics.webhook(match status {
        WebhookStatus::Delivered => "delivered",
        WebhookStatus::Pending => "retrying",
        WebhookStatus::Failed => "failed",
    });
    record(deps, task, outcome, timer).await?;
    if again {
        let next = attempt_no + 1;
        deps.queue
            .send_batch(
                &deps.config.task_queue,
                vec![retry_message(
                    TaskMessage::Webhook {
                        webhook: id,
                        attempt: next,
                    },
                    next,
                )],
            )
            .await?;
    }
    Ok(())
}

/// Write the webhook outcome, re-reading if the task changed meanwhile:
/// onto the same final state only. A task requeued and finished again since
/// is in another final state, whose own webhook is still owed.
async fn record(
    deps: &Deps,
    mut task: Task,
    outcome: WebhookOutcome,
    timer: Option<DateTime<Utc>>,
) -> Result<(), ServiceError> {
    let state = |t: &Task| (t.status, t.attempts, t.started_at, t.completed_at);
    let announced = state(&task);
    for _ in 0..5 {
        let next = task.with_webhook(outcome.clone());
        match deps.tasks().save(&task, &next, timer).await {
            Err(e) if e.is_conflict() => match deps.tasks().get(task.id).await? {
                Some(t) if state(&t) == announced => task = t,
                _ => return Ok(()),
            },
            other => return other.map_err(Into::into),
        }
    }
    Ok(())
}

/// Deliver the webhook of a task that is not stored: nothing to record, so
/// the outcome is only logged.
pub async fn deliver_inline(deps: &Deps, task: Task, attempt_no: u32) -> Result<(), ServiceError> {
    match attempt(deps, &task).await {
        Ok(_) => {
            deps.metrics.webhook("delivered");
            Ok(())
        }
        Err(Undelivered::Failed { .. }) if attempt_no < deps.config.webhook_attempts => {
            deps.metrics.webhook("retrying");
            let next = attempt_no + 1;
            let body = TaskMessage::InlineWebhook {
                webhook_task: Box::new(task),
                attempt: next,
            };
            deps.queue
                .send_batch(&deps.config.task_queue, vec![retry_message(body, next)])
                .await?;
            Ok(())
        }
        Err(undelivered) => {
            deps.metrics.webhook("failed");
            tracing::warn!(error = %undelivered.error(), "webhook of an unstored task failed for good");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::decode_secret;

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // The example from the Standard Webhooks specification.
        let secret = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = r#"{"test": 2432232314}"#;
        let sig = sign(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn retries_back_off_one_two_four_seconds() {
        let secs: Vec<u64> = (2..=5).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8]);
    }
}
