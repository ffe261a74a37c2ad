//! Built-in handlers: `echo`, `sleep`, `fail`, `http`.

use std::time::Duration;

use serde_json::{Map, Value, json};

use super::{Registry, TaskContext, TaskFailure};
use crate::ports::{HttpError, HttpRequest};

/// The longest a built-in waits, whatever it is told: a day, the longest
/// task timeout (a task's own timeout cuts it short anyway).
const MAX_WAIT_SECONDS: f64 = crate::domain::task::MAX_TIMEOUT_SECONDS as f64;

/// Add the built-in handlers to `registry`.
pub fn register(registry: &mut Registry) {
    registry.register("echo", echo);
    registry.register("sleep", sleep);
    registry.register("fail", fail);
    registry.register("http", http);
}

/// Returns its arguments: `{"args": [...], "kwargs": {...}}`.
async fn echo(ctx: TaskContext) -> Result<Value, TaskFailure> {
    Ok(json!({ "args": ctx.args, "kwargs": ctx.kwargs }))
}

/// Sleeps `kwargs.seconds` (a number); the task timeout cuts it short.
async fn sleep(ctx: TaskContext) -> Result<Value, TaskFailure> {
    let secs = ctx
        .kwarg("seconds")?
        .as_f64()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .ok_or_else(|| TaskFailure::fatal("kwargs.seconds must be a non-negative number"))?;
    // The task timeout ends it long before; the cap only keeps a huge
    // number (1e300) from overflowing the duration.
    tokio::time::sleep(Duration::from_secs_f64(secs.min(MAX_WAIT_SECONDS))).await;
    Ok(json!({ "slept": secs }))
}

/// Fails with `kwargs.message`; retried per the task's policy unless
/// `kwargs.retryable` is false.
async fn fail(ctx: TaskContext) -> Result<Value, TaskFailure> {
    let message = ctx
        .kwargs
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("failed on purpose")
        .to_string();
    let retryable = ctx
        .kwargs
        .get("retryable")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    Err(TaskFailure { message, retryable })
}

/// Calls `kwargs.url` with `method` (GET), `headers` (object), `body`
/// (string, or JSON sent as JSON) and `timeout` (seconds, 30). The result is
/// `{status, headers, body}`; a non-2xx status fails the attempt (retried for
/// 429 and 5xx only).
async fn http(ctx: TaskContext) -> Result<Value, TaskFailure> {
    let url = ctx
        .kwarg("url")?
        .as_str()
        .ok_or_else(|| TaskFailure::fatal("kwargs.url must be a string"))?
        .to_string();
    let method = match ctx.kwargs.get("method") {
        None => "GET".to_string(),
        Some(Value::String(m)) => m.to_ascii_uppercase(),
        Some(_) => return Err(TaskFailure::fatal("kwargs.method must be a string")),
    };
    let mut headers = Vec::new();
    match ctx.kwargs.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(h)) => {
            for (k, v) in h {
                let v = v.as_str().ok_or_else(|| {
                    TaskFailure::fatal(format!("kwargs.headers.{k} must be a string"))
                })?;
                headers.push((k.clone(), v.to_string()));
            }
        }
        Some(_) => return Err(TaskFailure::fatal("kwargs.headers must be an object")),
    }
    let body = match ctx.kwargs.get("body") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => s.clone().into_bytes(),
        Some(v) => {
            if !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            {
                headers.push(("content-type".into(), "application/json".into()));
            }
            v.to_string().into_bytes()
        }
    };
    let timeout = ctx
        .kwargs
        .get("timeout")
        .and_then(Value::as_f64)
        .filter(|t| t.is_finite() && *t > 0.0)
        .unwrap_or(30.0)
        .min(MAX_WAIT_SECONDS);
    let request = HttpRequest {
        method,
        url,
        headers,
        body,
        timeout: Duration::from_secs_f64(timeout),
    };
    let response = ctx.http.send(request).await.map_err(|e| match e {
        HttpError::Blocked(_) | HttpError::Invalid(_) => TaskFailure::fatal(e.to_string()),
        HttpError::Timeout | HttpError::Transport(_) => TaskFailure::retry(e.to_string()),
    })?;
    let headers: Map<String, Value> = response
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.clone())))
        .collect();
    let body = String::from_utf8_lossy(&response.body).into_owned();
    if !(200..300).contains(&response.status) {
        let message = format!("HTTP {}: {}", response.status, truncate(&body, 500));
        let retryable = response.status == 429 || response.status >= 500;
        return Err(TaskFailure { message, retryable });
    }
    Ok(json!({ "status": response.status, "headers": headers, "body": body }))
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
