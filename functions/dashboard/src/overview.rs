//! The overview: a card per queue (counts by status and recent
//! throughput) and the task table with seed 001's filters. The same
//! snapshot feeds the first render, `/ws` and `/dashboard/snapshot`.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write;
use std::sync::Mutex;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use warren::ServiceError;
use warren::domain::TaskStatus;
use warren::domain::identity::Principal;
use warren::http::{ApiError, decode_cursor, encode_cursor};
use warren::table::tasks::{QueueStats, TaskFilter};

use crate::html::{self, Section, badge, escape};
use crate::{Board, Ticket};

/// Rows per page of the task table.
const ROWS: usize = 50;
/// The longest filter value (a longer one is refused).
const MAX_FILTER_CHARS: usize = 200;
/// How often the throughput history takes a sample, and how many it keeps.
const SAMPLE_EVERY_SECONDS: i64 = 10;
const SAMPLES: usize = 31;

/// The table's filters (seed 001's filter messages) and page.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Filter {
    pub queue: Option<String>,
    pub id: Option<String>,
    pub status: Option<String>,
    pub task_name: Option<String>,
    pub args: Option<String>,
    pub result: Option<String>,
    pub error: Option<String>,
    /// The page: the `next` of a previous snapshot.
    pub cursor: Option<String>,
}

impl Filter {
    /// Apply one filter message (`{"queue": "video"}`): each field it
    /// names is set, or cleared by `""` or `null`; other fields stay.
    #[cfg_attr(not(feature = "websocket"), allow(dead_code))]
    pub fn apply(&mut self, message: &serde_json::Map<String, Value>) -> Result<(), String> {
        for (name, value) in message {
            let slot = match name.as_str() {
                "queue" => &mut self.queue,
                "id" => &mut self.id,
                "status" => &mut self.status,
                "task_name" => &mut self.task_name,
                "args" => &mut self.args,
                "result" => &mut self.result,
                "error" => &mut self.error,
                "cursor" => &mut self.cursor,
                "type" => continue,
                other => return Err(format!("unknown filter `{other}`")),
            };
            *slot = match value {
                Value::Null => None,
                Value::String(s) if s.is_empty() => None,
                Value::String(s) => Some(s.clone()),
                _ => return Err(format!("filter `{name}` must be a string")),
            };
            if name != "cursor" {
                // A new filter starts from the newest tasks again.
                self.cursor = None;
            }
        }
        self.task_filter().map(|_| ())
    }

    /// The table's query, or why the filters are invalid.
    fn task_filter(&self) -> Result<TaskFilter, String> {
        let given = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        for v in [
            &self.queue,
            &self.id,
            &self.status,
            &self.task_name,
            &self.args,
            &self.result,
            &self.error,
        ] {
            if v.as_ref()
                .is_some_and(|s| s.chars().count() > MAX_FILTER_CHARS)
            {
                return Err(format!("a filter is at most {MAX_FILTER_CHARS} characters"));
            }
        }
        let status = match given(&self.status) {
            Some(s) => Some(s.parse::<TaskStatus>().map_err(|e| e.to_string())?),
            None => None,
        };
        let before = match given(&self.cursor) {
            Some(c) => Some(decode_cursor(&c).map_err(|_| "invalid cursor".to_string())?),
            None => None,
        };
        Ok(TaskFilter {
            queue: given(&self.queue),
            id: given(&self.id),
            status,
            task_name: given(&self.task_name),
            args: given(&self.args),
            result: given(&self.result),
            error: given(&self.error),
            before,
        })
    }
}

/// Finished tasks (completed + failed) per queue, sampled every
/// [`SAMPLE_EVERY_SECONDS`], for the cards' throughput lines. Per process:
/// a new Lambda instance starts with an empty line.
#[derive(Default)]
pub struct History {
    samples: Mutex<VecDeque<Sample>>,
}

/// When, and how many tasks each queue had finished by then.
type Sample = (DateTime<Utc>, HashMap<String, i64>);

impl History {
    fn record(&self, now: DateTime<Utc>, stats: &[QueueStats]) {
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let due = samples
            .back()
            .is_none_or(|(at, _)| now - *at >= Duration::seconds(SAMPLE_EVERY_SECONDS));
        if due {
            let finished = stats
                .iter()
                .map(|s| (s.queue_name.clone(), s.completed + s.failed))
                .collect();
            samples.push_back((now, finished));
            while samples.len() > SAMPLES {
                samples.pop_front();
            }
        }
    }

    /// Tasks finished per second in each interval, oldest first.
    fn rates(&self, queue: &str) -> Vec<f64> {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        samples
            .iter()
            .zip(samples.iter().skip(1))
            .map(|((t0, a), (t1, b))| {
                let seconds = (*t1 - *t0).num_milliseconds().max(1) as f64 / 1000.0;
                let done = b.get(queue).copied().unwrap_or(0) - a.get(queue).copied().unwrap_or(0);
                done.max(0) as f64 / seconds
            })
            .collect()
    }
}

/// The overview's data: the cards and the table as HTML fragments (seed
/// 001's shape), the next page's cursor, and who is looking.
pub async fn snapshot_of(
    board: &Board,
    who: &Principal,
    filter: &Filter,
) -> Result<Value, ServiceError> {
    let query = filter
        .task_filter()
        .map_err(|e| ServiceError::invalid("invalid_filter", e))?;
    let deps = &board.deps;
    let stats = deps.tasks().queue_stats().await?;
    let now = deps.now();
    board.history.record(now, &stats);
    let page = deps.tasks().list(&query, ROWS).await?;
    let next = page.next.as_deref().map(encode_cursor);
    Ok(json!({
        "type": "update",
        "cards": cards(board, &stats),
        "table": table(&page.tasks, filter.cursor.is_some(), next.as_deref()),
        "next": next,
        "stats": stats,
        "user": {"username": who.username, "role": who.role.as_str()},
        "at": now.to_rfc3339_opts(SecondsFormat::Millis, true),
    }))
}

fn cards(board: &Board, stats: &[QueueStats]) -> String {
    if stats.is_empty() {
        return r#"<p class="empty">No tasks yet: enqueue one with <code>POST /api/v1/enqueue</code>.</p>"#.into();
    }
    let mut out = String::new();
    for s in stats {
        let q = escape(&s.queue_name);
        let _ = write!(
            out,
            r#"<article class="card" data-queue="{q}"><h2>{q}</h2><dl>"#
        );
        let counts = [
            ("pending", s.pending),
            ("running", s.running),
            ("completed", s.completed),
            ("failed", s.failed),
            ("cancelled", s.cancelled),
            ("expired", s.expired),
        ];
        for (status, n) in counts {
            let _ = write!(
                out,
                r#"<div data-status="{status}"><dt>{status}</dt><dd class="count">{n}</dd></div>"#
            );
        }
        let rates = board.history.rates(&s.queue_name);
        let now = rates.last().copied().unwrap_or(0.0);
        let _ = write!(
            out,
            r#"</dl>{}<p class="rate">{now:.1} finished/s</p></article>"#,
            sparkline(&rates)
        );
    }
    out
}

/// Throughput as a small line (an SVG, so no inline style is needed).
fn sparkline(rates: &[f64]) -> String {
    let (w, h) = (120.0, 24.0);
    let top = rates.iter().copied().fold(0.0_f64, f64::max).max(1e-9);
    let step = w / (SAMPLES - 2) as f64;
    let offset = w - step * rates.len().saturating_sub(1) as f64;
    let points: Vec<String> = rates
        .iter()
        .enumerate()
        .map(|(i, r)| {
            format!(
                "{:.1},{:.1}",
                offset + step * i as f64,
                h - 1.0 - (h - 2.0) * r / top
            )
        })
        .collect();
    format!(
        r#"<svg class="spark" viewBox="0 0 {w} {h}" role="img" aria-label="tasks finished per second, last 5 minutes"><polyline fill="none" points="{}"/></svg>"#,
        points.join(" ")
    )
}

fn table(tasks: &[warren::domain::Task], paged: bool, next: Option<&str>) -> String {
    let mut out = String::from(
        r#"<table id="tasks"><thead><tr><th scope="col">Task</th><th scope="col">Name</th><th scope="col">Queue</th><th scope="col">Status</th><th scope="col">Attempts</th><th scope="col">Progress</th><th scope="col">Created</th></tr></thead><tbody>"#,
    );
    for t in tasks {
        let id = t.id.to_string();
        let progress = t.progress.map_or_else(String::new, |p| {
            format!(r#"<progress max="100" value="{p:.0}">{p:.0}%</progress>"#)
        });
        let _ = write!(
            out,
            r#"<tr data-task-id="{id}" data-status="{status}"><td><a href="/tasks/{id}"><code>{short}</code></a></td><td>{name}</td><td>{queue}</td><td>{badge}</td><td>{attempts}</td><td>{progress}</td><td>{created}</td></tr>"#,
            status = t.status.as_str(),
            short = html::short_id(&t.id),
            name = escape(&t.task_name),
            queue = escape(&t.queue_name),
            badge = badge(t.status.as_str()),
            attempts = t.attempts,
            created = html::time(Some(t.created_at)),
        );
    }
    if tasks.is_empty() {
        out.push_str(r#"<tr><td colspan="7" class="empty">No task matches.</td></tr>"#);
    }
    out.push_str("</tbody></table><nav class=\"pager\" aria-label=\"Pages\">");
    if paged {
        out.push_str(r#"<button type="button" data-cursor="">Newest</button>"#);
    }
    if let Some(next) = next {
        let _ = write!(
            out,
            r#"<button type="button" data-cursor="{}">Older</button>"#,
            escape(next)
        );
    }
    out.push_str("</nav>");
    out
}

/// `GET /`: the overview, rendered with its first snapshot; the script
/// keeps it live.
pub async fn page(
    State(board): State<Board>,
    who: Principal,
    axum::Extension(ticket): axum::Extension<Ticket>,
    Query(filter): Query<Filter>,
) -> Response {
    let snap = match snapshot_of(&board, &who, &filter).await {
        Ok(s) => s,
        Err(ServiceError::Invalid { message, .. }) => {
            return html::refusal(&who, StatusCode::BAD_REQUEST, &message);
        }
        Err(e) => return ApiError::from(e).into_response(),
    };
    let field = |name: &str, label: &str, value: &Option<String>| {
        format!(
            r#"<label>{label} <input name="{name}" value="{}" autocomplete="off"></label>"#,
            escape(value.as_deref().unwrap_or(""))
        )
    };
    let mut statuses = String::from(r#"<option value="">any</option>"#);
    for s in TaskStatus::ALL {
        let selected = if filter.status.as_deref() == Some(s.as_str()) {
            " selected"
        } else {
            ""
        };
        let _ = write!(statuses, r#"<option{selected}>{}</option>"#, s.as_str());
    }
    let body = format!(
        r#"<section id="cards" aria-label="Queues">{cards}</section>
<form id="filters" role="search" aria-label="Filter tasks">{queue}{id}<label>Status <select name="status">{statuses}</select></label>{name}{args}{result}{error}<button type="reset">Clear</button></form>
<p class="live">Updates: <span id="live" data-mode="connecting" data-ticket="{ticket}" aria-live="polite">connecting</span></p>
<div id="table">{table}</div>"#,
        cards = snap["cards"].as_str().unwrap_or_default(),
        table = snap["table"].as_str().unwrap_or_default(),
        queue = field("queue", "Queue", &filter.queue),
        id = field("id", "Id", &filter.id),
        name = field("task_name", "Name", &filter.task_name),
        args = field("args", "Args", &filter.args),
        result = field("result", "Result", &filter.result),
        error = field("error", "Error", &filter.error),
        ticket = escape(&ticket.0),
    );
    html::page(&who, "Overview", Section::Overview, &body)
}

/// `GET /dashboard/snapshot`: what `/ws` pushes, for polling (on AWS).
pub async fn snapshot(
    State(board): State<Board>,
    who: Principal,
    Query(filter): Query<Filter>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(snapshot_of(&board, &who, &filter).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_messages_set_and_clear_one_field_each() {
        let mut f = Filter::default();
        let msg = |v: Value| v.as_object().unwrap().clone();
        f.apply(&msg(json!({"queue": "video"}))).unwrap();
        f.apply(&msg(json!({"status": "failed"}))).unwrap();
        assert_eq!(
            (f.queue.as_deref(), f.status.as_deref()),
            (Some("video"), Some("failed"))
        );
        f.apply(&msg(json!({"queue": ""}))).unwrap();
        assert_eq!(f.queue, None);
        assert!(f.apply(&msg(json!({"status": "bogus"}))).is_err());
        assert!(f.apply(&msg(json!({"nope": "x"}))).is_err());
        assert!(f.apply(&msg(json!({"queue": 3}))).is_err());
        assert!(f.apply(&msg(json!({"error": "x".repeat(201)}))).is_err());
    }

    #[test]
    fn throughput_is_finished_tasks_per_second() {
        let h = History::default();
        let t0 = Utc::now();
        let stats = |done: i64| {
            vec![QueueStats {
                queue_name: "q".into(),
                pending: 0,
                running: 0,
                completed: done,
                failed: 0,
                cancelled: 0,
                expired: 0,
            }]
        };
        h.record(t0, &stats(0));
        h.record(t0 + Duration::seconds(5), &stats(50)); // too soon: not sampled
        h.record(t0 + Duration::seconds(10), &stats(100));
        assert_eq!(h.rates("q"), vec![10.0]);
        assert_eq!(h.rates("other"), vec![0.0]);
        assert!(sparkline(&h.rates("q")).contains("<polyline"));
    }
}
