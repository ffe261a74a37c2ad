//! Failed tasks (the dead letters) grouped by error fingerprint, with
//! "requeue this group".

use std::fmt::Write;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use chrono::SecondsFormat;
use serde::Deserialize;
use serde_json::json;
use warren::domain::identity::{Action, Principal, QueueAction};
use warren::http::ApiError;
use warren::service::failed;

use crate::Board;
use crate::html::{self, Section, escape};

#[derive(Deserialize)]
pub struct Params {
    queue: Option<String>,
}

/// `GET /failed`.
pub async fn page(State(board): State<Board>, who: Principal, Query(p): Query<Params>) -> Response {
    let queue = p.queue.filter(|q| !q.is_empty());
    let groups = match failed::groups(&board.deps, queue.clone()).await {
        Ok(g) => g,
        Err(e) => return ApiError::from(e).into_response(),
    };
    // The page's time: a click requeues only what had failed by then.
    let shown_at = board
        .deps
        .now()
        .to_rfc3339_opts(SecondsFormat::AutoSi, true);
    let mut body = format!(
        r#"<form class="inline" role="search"><label>Queue <input name="queue" value="{}"></label><button>Show</button></form>
<p>{} failed task(s) in {} group(s){}.</p>"#,
        escape(queue.as_deref().unwrap_or("")),
        groups.scanned,
        groups.groups.len(),
        if groups.partial {
            ", the newest 5000 read"
        } else {
            ""
        },
    );
    for g in &groups.groups {
        let may = g
            .queues
            .iter()
            .any(|q| who.may(Action::Queue(q, QueueAction::Requeue)));
        let mut examples = String::new();
        for id in &g.task_ids {
            let _ = write!(
                examples,
                r#"<li><a href="/tasks/{id}"><code>{}</code></a></li>"#,
                html::short_id(id)
            );
        }
        let button = match may {
            true => {
                let request = json!({"fingerprint": g.fingerprint, "queue": queue, "failed_before": shown_at});
                format!(
                    r#"<button type="button" data-action="requeue-group" data-method="POST" data-url="/api/v1/tasks/failed/requeue" data-body="{}" data-confirm="Requeue the {} task(s) of this group?">Requeue this group</button>"#,
                    escape(&request.to_string()),
                    g.count
                )
            }
            false => String::new(),
        };
        let _ = write!(
            body,
            r#"<section class="group" data-fingerprint="{fp}"><h2><code class="pattern">{pattern}</code></h2>
<p><span class="count">{count}</span> task(s) · queue(s): {queues} · last failed {last}</p><ul class="examples">{examples}</ul>{button}</section>"#,
            fp = g.fingerprint,
            pattern = escape(&g.pattern),
            count = g.count,
            queues = escape(&g.queues.join(", ")),
            last = html::time(g.last_failed_at),
        );
    }
    if groups.groups.is_empty() {
        body.push_str(r#"<p class="empty">No failed task.</p>"#);
    }
    html::page(&who, "Failed tasks", Section::Failed, &body)
}
