//! Pipelines: the list, one pipeline (versions, steps, schema, options,
//! triggers, its topic trigger, recent executions) and one execution with
//! its step timeline.

use std::fmt::Write;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use uuid::Uuid;
use warren::ServiceError;
use warren::domain::execution::Execution;
use warren::domain::identity::Principal;
use warren::http::ApiError;
use warren::service::{executions, pipelines, topics, triggers};

use crate::Board;
use crate::html::{self, Section, badge, escape};

fn failed(who: &Principal, e: ServiceError) -> Response {
    match e {
        ServiceError::NotFound(what) => html::refusal(who, StatusCode::NOT_FOUND, what),
        e => ApiError::from(e).into_response(),
    }
}

/// `GET /pipelines`.
pub async fn list(State(board): State<Board>, who: Principal) -> Response {
    let (items, _) = match pipelines::list(&board.deps, who.listing_scope(), 200, None).await {
        Ok(page) => page,
        Err(e) => return failed(&who, e),
    };
    let mut rows = String::new();
    for p in &items {
        let _ = write!(
            rows,
            r#"<tr><td><a href="/pipelines/{id}">{name}</a></td><td>{version}</td><td>{steps}</td><td>{event}</td><td>{updated}</td></tr>"#,
            id = p.id,
            name = escape(&p.spec.name),
            version = p.version,
            steps = p.spec.steps.len(),
            event = escape(p.spec.options.event.as_deref().unwrap_or("—")),
            updated = html::time(Some(p.updated_at)),
        );
    }
    if items.is_empty() {
        rows.push_str(r#"<tr><td colspan="5" class="empty">No pipeline yet: create one with <code>POST /api/v1/pipelines</code>.</td></tr>"#);
    }
    let body = format!(
        r#"<table id="pipelines"><thead><tr><th scope="col">Name</th><th scope="col">Version</th><th scope="col">Steps</th><th scope="col">Topic</th><th scope="col">Updated</th></tr></thead><tbody>{rows}</tbody></table>"#
    );
    html::page(&who, "Pipelines", Section::Pipelines, &body)
}

/// Which version of a pipeline its page shows (`?version=N`; the latest
/// without it).
#[derive(serde::Deserialize)]
pub struct AtVersion {
    version: Option<String>,
}

/// How many earlier versions the page links to.
const VERSION_LINKS: u32 = 20;

/// `GET /pipelines/{id}`.
pub async fn page(
    State(board): State<Board>,
    who: Principal,
    Path(id): Path<String>,
    Query(at): Query<AtVersion>,
) -> Response {
    let deps = &board.deps;
    let no = || html::refusal(&who, StatusCode::NOT_FOUND, "no such pipeline");
    let Ok(id) = id.parse::<Uuid>() else {
        return no();
    };
    let asked = match at.version.as_deref().map(str::parse::<u32>) {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(_)) => {
            return html::refusal(&who, StatusCode::BAD_REQUEST, "version is a whole number");
        }
    };
    let latest = match pipelines::get(deps, id, None).await {
        Ok(p) if who.sees(p.user_id) => p,
        Ok(_) => return no(),
        Err(e) => return failed(&who, e),
    };
    let newest = latest.version;
    let p = match asked {
        Some(v) if v != newest => match pipelines::get(deps, id, Some(v)).await {
            Ok(p) => p,
            Err(e) => return failed(&who, e),
        },
        _ => latest,
    };
    let versions = (newest.saturating_sub(VERSION_LINKS - 1).max(1)..=newest)
        .map(|v| match v == p.version {
            true => format!("<strong aria-current=\"page\">{v}</strong>"),
            false => format!(r#"<a href="/pipelines/{id}?version={v}">{v}</a>"#),
        })
        .collect::<Vec<_>>()
        .join(" ");
    let may_change = who.owns(p.user_id);
    let (runs, _) = match executions::list(deps, id, 50, None).await {
        Ok(page) => page,
        Err(e) => return failed(&who, e),
    };
    let (trigs, _) = match triggers::list(deps, id, 100, None).await {
        Ok(page) => page,
        Err(e) => return failed(&who, e),
    };
    let topic = topics::status(deps, id).await.ok().flatten();
    let now = deps.now();

    let mut steps = String::new();
    for s in &p.spec.steps {
        let kind = serde_json::to_value(&s.kind).ok();
        let kind = kind
            .as_ref()
            .and_then(|k| k.get("kind"))
            .and_then(Value::as_str)
            .unwrap_or("step");
        let _ = write!(
            steps,
            "<li><strong>{}</strong> <small>{}</small></li>",
            escape(&s.name),
            escape(kind)
        );
    }
    let mut executions_rows = String::new();
    for e in &runs {
        let _ = write!(
            executions_rows,
            r#"<tr data-execution-id="{id}"><td><a href="/executions/{id}"><code>{short}</code></a></td><td>{status}</td><td>{trigger}</td><td>{started}</td><td>{took}</td></tr>"#,
            id = e.id,
            short = html::short_id(&e.id),
            status = badge(e.status.as_str()),
            trigger = html::word(&e.trigger_type),
            started = html::time(Some(e.started_at)),
            took = html::duration(e.duration_ms),
        );
    }
    if runs.is_empty() {
        executions_rows
            .push_str(r#"<tr><td colspan="5" class="empty">No execution yet.</td></tr>"#);
    }
    let mut trigger_rows = String::new();
    for t in &trigs {
        let fires: Vec<String> = t
            .next_fires(now)
            .into_iter()
            .map(|at| html::time(Some(at)))
            .collect();
        let schedule = t
            .schedule
            .as_ref()
            .map(|s| format!("<code>{}</code> ({})", escape(&s.cron), escape(&s.timezone)))
            .unwrap_or_default();
        let remove = match may_change {
            true => format!(
                r#"<button type="button" data-action="delete-trigger" data-method="DELETE" data-url="/api/v1/triggers/{}" data-confirm="Delete this trigger?">Delete</button>"#,
                t.id
            ),
            false => String::new(),
        };
        let _ = write!(
            trigger_rows,
            r#"<tr data-trigger-id="{id}"><td>{name}</td><td>{kind}</td><td>{schedule}</td><td class="fires">{fires}</td><td>{remove}</td></tr>"#,
            id = t.id,
            name = escape(&t.name),
            kind = t.kind.as_str(),
            fires = fires.join("<br>"),
        );
    }
    let topic_state = match (&topic, &p.spec.options.event) {
        (Some(s), _) => format!(
            r#"Listening to <code>{}</code> since {} (version {}). {}"#,
            escape(&s.topic),
            html::time(Some(s.started_at)),
            s.pipeline_version,
            if may_change {
                format!(
                    r#"<button type="button" data-action="stop-topic" data-method="DELETE" data-url="/api/v1/events/{id}">Stop</button>"#
                )
            } else {
                String::new()
            }
        ),
        (None, Some(event)) => format!(
            r#"Not listening to <code>{}</code>. {}"#,
            escape(event),
            if may_change {
                format!(
                    r#"<button type="button" data-action="start-topic" data-method="POST" data-url="/api/v1/events/{id}">Start</button>"#
                )
            } else {
                String::new()
            }
        ),
        (None, None) => "No topic (<code>options.event</code>) set.".into(),
    };
    let forms = match may_change {
        true => format!(
            r#"<section><h2>Run</h2><form id="run" data-method="POST" data-url="/api/v1/pipelines/{id}/run" data-shape="json-input">
<label>Input (JSON) <textarea name="input" rows="4">{{}}</textarea></label><button>Run now</button></form></section>
<section><h2>New trigger</h2><form id="new-trigger" data-method="POST" data-url="/api/v1/pipelines/{id}/triggers" data-shape="trigger">
<label>Name <input name="name" required maxlength="100"></label>
<label>Type <select name="type"><option>webhook</option><option>schedule</option><option>manual</option></select></label>
<label>Cron (schedule) <input name="cron" placeholder="*/5 * * * *"></label>
<label>Time zone (schedule) <input name="timezone" placeholder="UTC"></label>
<button>Create trigger</button></form><output id="new-trigger-value"></output></section>"#
        ),
        false => String::new(),
    };
    let schema = p
        .spec
        .event_schema
        .as_ref()
        .map(html::json)
        .unwrap_or_else(|| "<p>None: any JSON input.</p>".into());
    let body = format!(
        r#"<p>{description}</p><dl class="facts"><dt>Id</dt><dd><code>{id}</code></dd><dt>Version</dt><dd id="versions">{versions}{older}</dd><dt>Updated</dt><dd>{updated}</dd></dl>
<section><h2>Steps</h2><ol class="steps">{steps}</ol></section>
<section><h2>Event schema</h2>{schema}</section>
<section><h2>Options</h2>{options}</section>
<section><h2>Topic trigger</h2><p id="topic">{topic_state}</p></section>
<section><h2>Triggers</h2><table id="triggers"><thead><tr><th scope="col">Name</th><th scope="col">Type</th><th scope="col">Schedule</th><th scope="col">Next fires</th><th scope="col"></th></tr></thead><tbody>{trigger_rows}</tbody></table></section>
{forms}
<section><h2>Executions</h2><table id="executions"><thead><tr><th scope="col">Execution</th><th scope="col">Status</th><th scope="col">Trigger</th><th scope="col">Started</th><th scope="col">Took</th></tr></thead><tbody>{executions_rows}</tbody></table></section>"#,
        description = escape(p.spec.description.as_deref().unwrap_or("")),
        older = match p.version == newest {
            true => String::new(),
            false => format!(
                " (showing version {}; triggers and executions are the pipeline's)",
                p.version
            ),
        },
        updated = html::time(Some(p.updated_at)),
        options = html::json(&serde_json::to_value(&p.spec.options).unwrap_or_default()),
    );
    html::page(
        &who,
        &format!("Pipeline {}", p.spec.name),
        Section::Pipelines,
        &body,
    )
}

/// `GET /executions/{id}`.
pub async fn execution(
    State(board): State<Board>,
    who: Principal,
    Path(id): Path<String>,
) -> Response {
    let no = || html::refusal(&who, StatusCode::NOT_FOUND, "no such execution");
    let Ok(id) = id.parse::<Uuid>() else {
        return no();
    };
    let e = match executions::get(&board.deps, id).await {
        Ok(e) if who.sees(e.user_id) => e,
        Ok(_) => return no(),
        Err(e) => return failed(&who, e),
    };
    let body = format!(
        r#"<dl class="facts"><dt>Status</dt><dd data-field="status">{status}</dd><dt>Pipeline</dt><dd><a href="/pipelines/{pipeline}">{pipeline}</a> (version {version})</dd><dt>Trigger</dt><dd>{trigger}</dd><dt>Started</dt><dd>{started}</dd><dt>Took</dt><dd>{took}</dd></dl>
<section><h2>Steps</h2>{timeline}</section>
{error}<section><h2>Input</h2>{input}</section><section><h2>Output</h2>{output}</section>"#,
        status = badge(e.status.as_str()),
        pipeline = e.pipeline_id,
        version = e.pipeline_version,
        trigger = html::word(&e.trigger_type),
        started = html::time(Some(e.started_at)),
        took = html::duration(e.duration_ms),
        timeline = timeline(&e),
        error = e
            .error
            .as_deref()
            .map(|m| format!(
                r#"<section><h2>Error</h2><pre class="error">{}</pre></section>"#,
                escape(m)
            ))
            .unwrap_or_default(),
        input = html::json(&e.input),
        output = e
            .output
            .as_ref()
            .map(html::json)
            .unwrap_or_else(|| "—".into()),
    );
    html::page(
        &who,
        &format!("Execution {}", html::short_id(&e.id)),
        Section::Pipelines,
        &body,
    )
}

/// Each step as a bar: where it started and how long it ran, on the scale
/// of the whole execution.
fn timeline(e: &Execution) -> String {
    let start = e.started_at;
    let end = e
        .steps
        .iter()
        .filter_map(|s| s.completed_at.or(s.started_at))
        .chain(e.completed_at)
        .max()
        .unwrap_or(start);
    let span = (end - start).num_milliseconds().max(1) as f64;
    let mut out = String::from(r#"<ol id="timeline">"#);
    for s in &e.steps {
        let (x, w) = match s.started_at {
            Some(at) => {
                let from = (at - start).num_milliseconds().max(0) as f64;
                let to = s
                    .completed_at
                    .map_or(span, |c| (c - start).num_milliseconds().max(0) as f64);
                // A step shorter than a pixel still shows, inside the frame.
                let w = (1000.0 * (to - from) / span).max(6.0);
                ((1000.0 * from / span).min(1000.0 - w), w)
            }
            None => (0.0, 0.0),
        };
        let status = s.status.as_str();
        let _ = write!(
            out,
            r#"<li class="step" data-step="{name}" data-status="{status}"><span class="name">{name}</span> {badge} <svg class="bar" viewBox="0 0 1000 12" preserveAspectRatio="none" role="img" aria-label="{name}: {took}"><rect class="{status}" x="{x:.0}" y="0" width="{w:.0}" height="12"/></svg> <span class="took">{took}</span>{attempts}{error}</li>"#,
            name = escape(&s.name),
            badge = badge(status),
            took = html::duration(s.duration_ms),
            attempts = if s.attempts > 1 {
                format!(" <small>{} attempts</small>", s.attempts)
            } else {
                String::new()
            },
            error = s
                .error
                .as_deref()
                .map(|m| format!(r#"<pre class="error">{}</pre>"#, escape(m)))
                .unwrap_or_default(),
        );
    }
    out.push_str("</ol>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bars(html: &str) -> Vec<(f64, f64)> {
        html.split("<rect ")
            .skip(1)
            .map(|r| {
                let attr = |name: &str| -> f64 {
                    let at = r.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
                    r[at..].split('"').next().unwrap().parse().unwrap()
                };
                (attr("x"), attr("width"))
            })
            .collect()
    }

    #[test]
    fn every_step_bar_shows_inside_the_frame_however_short() {
        let step = |name: &str, from: &str, to: &str| {
            serde_json::json!({"name": name, "kind": "transform", "status": "success",
                "attempts": 1, "output": null, "error": null, "started_at": from,
                "completed_at": to, "duration_ms": 0})
        };
        let e: Execution = serde_json::from_value(serde_json::json!({
            "id": "00000000-0000-4000-8000-000000000001",
            "pipeline_id": "00000000-0000-4000-8000-000000000002",
            "pipeline_version": 1, "trigger_type": "manual", "trigger_id": null,
            "event_id": null, "status": "success",
            "started_at": "2026-12-05T07:00:00.000Z",
            "completed_at": "2026-12-05T07:00:00.008Z", "duration_ms": 8,
            "input": {}, "output": {}, "error": null, "validation_errors": null,
            "steps": [
                step("check", "2026-12-05T07:00:00.006Z", "2026-12-05T07:00:00.006Z"),
                step("shape", "2026-12-05T07:00:00.008Z", "2026-12-05T07:00:00.008Z"),
            ],
            "lease_until": null, "version": 3
        }))
        .unwrap();
        let bars = bars(&timeline(&e));
        assert_eq!(bars.len(), 2);
        for (x, w) in bars {
            assert!(w >= 6.0 && x >= 0.0 && x + w <= 1000.0, "x={x} w={w}");
        }
    }
}
