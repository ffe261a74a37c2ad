//! One task: every field, its payloads pretty-printed, progress, timings,
//! the webhook's outcome, and the buttons the viewer may use.

use std::fmt::Write;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use warren::domain::identity::{Action, Principal, QueueAction};
use warren::domain::{Task, TaskStatus};
use warren::http::ApiError;

use crate::Board;
use crate::html::{self, Section, badge, escape};

/// `GET /tasks/{id}`.
pub async fn page(State(board): State<Board>, who: Principal, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<uuid::Uuid>() else {
        return html::refusal(&who, StatusCode::NOT_FOUND, "no such task");
    };
    let task = match board.deps.tasks().get(id).await {
        Ok(Some(t)) => t,
        Ok(None) => return html::refusal(&who, StatusCode::NOT_FOUND, "no such task"),
        Err(e) => return ApiError::from(warren::ServiceError::from(e)).into_response(),
    };
    html::page(
        &who,
        &format!("Task {}", html::short_id(&task.id)),
        Section::Overview,
        &render(&task, &who),
    )
}

/// The actions `who` may take on `t` now, as buttons the script drives.
fn buttons(t: &Task, who: &Principal) -> String {
    let may = |act| who.may(Action::Queue(&t.queue_name, act));
    let id = t.id;
    let mut out = String::new();
    let mut button = |action: &str,
                      label: &str,
                      method: &str,
                      url: String,
                      then: &str,
                      confirm: &str| {
        let _ = write!(
            out,
            r#"<button type="button" data-action="{action}" data-method="{method}" data-url="{url}" data-then="{then}" data-confirm="{confirm}">{label}</button>"#,
            url = escape(&url),
        );
    };
    if t.status == TaskStatus::Pending && may(QueueAction::Cancel) {
        button(
            "cancel",
            "Cancel",
            "DELETE",
            format!("/api/v1/tasks/{id}"),
            "",
            "Cancel this task?",
        );
    }
    if t.status == TaskStatus::Failed && may(QueueAction::Requeue) {
        button(
            "requeue",
            "Requeue",
            "POST",
            format!("/api/v1/tasks/{id}/requeue"),
            "",
            "",
        );
    }
    let finished = !matches!(t.status, TaskStatus::Pending | TaskStatus::Running);
    if finished && may(QueueAction::Delete) {
        let queue = crate::percent_encoded(&t.queue_name);
        button(
            "delete",
            "Delete",
            "DELETE",
            format!("/api/v1/tasks?queue={queue}&id={id}"),
            "/",
            "Delete this task for good?",
        );
    }
    match out.is_empty() {
        true => out,
        false => format!(r#"<p class="actions">{out}</p>"#),
    }
}

/// A stored result: JSON when it parses, else text.
fn result(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(v) => html::json(&v),
        Err(_) => format!("<pre>{}</pre>", escape(text)),
    }
}

fn render(t: &Task, who: &Principal) -> String {
    let mut rows = String::new();
    let mut row = |field: &str, label: &str, value: String| {
        let _ = write!(
            rows,
            r#"<dt>{label}</dt><dd data-field="{field}">{value}</dd>"#
        );
    };
    row("id", "Id", format!("<code>{}</code>", t.id));
    row("task_name", "Name", escape(&t.task_name));
    row("queue", "Queue", escape(&t.queue_name));
    row("status", "Status", badge(t.status.as_str()));
    row(
        "attempts",
        "Attempts",
        format!("{} of {}", t.attempts, t.max_retries + 1),
    );
    row("priority", "Priority", t.priority.to_string());
    row("created_at", "Created", html::time(Some(t.created_at)));
    row("scheduled_at", "Due", html::time(t.scheduled_at));
    row("started_at", "Started", html::time(t.started_at));
    row("completed_at", "Finished", html::time(t.completed_at));
    let ran = t
        .started_at
        .zip(t.completed_at)
        .map(|(s, c)| (c - s).num_milliseconds().max(0) as u64);
    row("duration", "Ran for", html::duration(ran));
    let waited = t
        .started_at
        .map(|s| (s - t.created_at).num_milliseconds().max(0) as u64);
    row("pickup", "Waited", html::duration(waited));
    row(
        "timeout_seconds",
        "Timeout",
        format!("{} s", t.timeout_seconds),
    );
    if let Some(ttl) = t.ttl_seconds {
        row("ttl_seconds", "Kept for", format!("{ttl} s"));
    }
    if let Some(key) = &t.idempotency_key {
        row(
            "idempotency_key",
            "Idempotency key",
            format!("<code>{}</code>", escape(key)),
        );
    }
    if let Some(p) = t.progress {
        let message = t
            .progress_message
            .as_deref()
            .map(escape)
            .unwrap_or_default();
        row(
            "progress",
            "Progress",
            format!(r#"<progress max="100" value="{p:.1}">{p:.0}%</progress> {p:.0}% {message}"#),
        );
    }
    if let Some(url) = &t.webhook_url {
        let outcome = match &t.webhook {
            Some(w) => format!(
                "{} after {} attempt(s){}{}",
                badge(&html::word(&w.status)),
                w.attempts,
                w.last_status_code
                    .map(|c| format!(", HTTP {c}"))
                    .unwrap_or_default(),
                w.last_error
                    .as_deref()
                    .map(|e| format!(", {}", escape(e)))
                    .unwrap_or_default(),
            ),
            None => "not yet sent".into(),
        };
        row(
            "webhook",
            "Webhook",
            format!("<code>{}</code>: {outcome}", escape(url)),
        );
    }
    let mut payloads = String::new();
    let mut block = |title: &str, field: &str, body: String| {
        let _ = write!(
            payloads,
            r#"<section data-field="{field}"><h2>{title}</h2>{body}</section>"#
        );
    };
    block("Args", "args", html::json(&Value::from(t.args.clone())));
    block(
        "Kwargs",
        "kwargs",
        html::json(&Value::Object(t.kwargs.clone())),
    );
    if !t.metadata.is_empty() {
        block(
            "Metadata",
            "metadata",
            html::json(&Value::Object(t.metadata.clone())),
        );
    }
    if let Some(r) = &t.result {
        block("Result", "result", result(r));
    }
    if let Some(e) = &t.error {
        block(
            "Error",
            "error",
            format!(r#"<pre class="error">{}</pre>"#, escape(e)),
        );
    }
    format!(
        r#"{buttons}<dl id="task">{rows}</dl>{payloads}"#,
        buttons = buttons(t, who)
    )
}
