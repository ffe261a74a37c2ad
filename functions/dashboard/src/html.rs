//! The page frame and the small pieces every page renders: escaping,
//! times (shown in the viewer's zone by the script, UTC on hover), JSON.

use std::fmt::Write;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use warren::domain::identity::Principal;

use crate::assets;

/// Text made safe for HTML, in element content and quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A time: UTC in the markup; the script shows it in the viewer's zone.
pub fn time(at: Option<DateTime<Utc>>) -> String {
    match at {
        Some(at) => {
            let iso = at.to_rfc3339_opts(SecondsFormat::Millis, true);
            format!(
                r#"<time datetime="{iso}" title="{iso}">{}</time>"#,
                at.format("%Y-%m-%d %H:%M:%S UTC")
            )
        }
        None => "—".into(),
    }
}

/// An id, short: its last 12 hex digits (a v7 id starts with its time,
/// so ids made together share their start). The table's id filter
/// matches any part of an id.
pub fn short_id(id: &uuid::Uuid) -> String {
    let text = id.simple().to_string();
    text[text.len() - 12..].to_string()
}

/// A duration in milliseconds, for people.
pub fn duration(ms: Option<u64>) -> String {
    match ms {
        None => "—".into(),
        Some(ms) if ms < 1000 => format!("{ms} ms"),
        Some(ms) if ms < 60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        Some(ms) => format!("{:.1} min", ms as f64 / 60_000.0),
    }
}

/// A JSON value, pretty-printed and escaped, in a `<pre>`.
pub fn json(value: &Value) -> String {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    format!("<pre class=\"json\">{}</pre>", escape(&text))
}

/// An enum as the API spells it (its serde name).
pub fn word<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        _ => String::new(),
    }
}

/// A status as a badge.
pub fn badge(status: &str) -> String {
    let s = escape(status);
    format!(r#"<span class="badge {s}">{s}</span>"#)
}

/// The sections of the navigation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Overview,
    Failed,
    Pipelines,
    Admin,
    Account,
}

/// A whole page: the frame around `body`, with the security headers.
pub fn page(who: &Principal, title: &str, section: Section, body: &str) -> Response {
    let mut nav = String::new();
    let mut link = |href: &str, label: &str, s: Section| {
        let current = if s == section {
            r#" aria-current="page""#
        } else {
            ""
        };
        let _ = write!(nav, r#"<a href="{href}"{current}>{label}</a>"#);
    };
    link("/", "Overview", Section::Overview);
    link("/failed", "Failed", Section::Failed);
    link("/pipelines", "Pipelines", Section::Pipelines);
    if who.is_admin() {
        link("/admin", "Admin", Section::Admin);
    }
    link("/account", "Account", Section::Account);
    let html = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · warren</title><link rel="stylesheet" href="{css}"><script src="{js}" defer></script></head>
<body data-role="{role}"><header><a class="brand" href="/">warren</a><nav aria-label="Sections">{nav}</nav>
<span class="who">{user} <small>({role})</small> <a href="/logout">Sign out</a></span></header>
<main><h1>{title}</h1><p id="flash" role="alert" hidden></p>
{body}</main></body></html>"#,
        title = escape(title),
        css = assets::STYLE.href(),
        js = assets::SCRIPT.href(),
        role = who.role.as_str(),
        user = escape(&who.username),
    );
    secured((StatusCode::OK, Html(html)).into_response())
}

/// A page that says why it shows nothing (403, 404).
pub fn refusal(who: &Principal, status: StatusCode, message: &str) -> Response {
    let mut answer = page(
        who,
        status.canonical_reason().unwrap_or("Error"),
        Section::Overview,
        &format!(r#"<p class="error">{}</p>"#, escape(message)),
    );
    *answer.status_mut() = status;
    answer
}

/// The dashboard's headers: no script but its own, no framing, no
/// referrer beyond the site, nothing cached.
pub fn secured(mut answer: Response) -> Response {
    let headers = answer.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_data_stays_text() {
        assert_eq!(
            escape(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert!(json(&serde_json::json!({"a": "</pre><b>"})).contains("&lt;/pre&gt;&lt;b&gt;"));
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(Some(12)), "12 ms");
        assert_eq!(duration(Some(1500)), "1.5 s");
        assert_eq!(duration(Some(90_000)), "1.5 min");
        assert_eq!(duration(None), "—");
    }
}
