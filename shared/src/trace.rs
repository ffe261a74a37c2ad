//! W3C Trace Context: a request's `traceparent` is kept with the task or
//! execution it creates, travels with its queue message, and goes out on
//! every call warren makes for it (the `http` handler and steps, webhooks),
//! so a tracing backend joins the caller's trace to what warren did.
//!
//! Within a request or a run, the context is a task-local ([`scope`],
//! [`current`]); spawned work takes it along with [`carry`].
//!
//! When a [`SpanSink`] is set (`warren dev` sets one that sends OTLP when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` names a collector), warren also reports
//! its own [`Span`]s: each request, task attempt, execution run, topic
//! message and outgoing call, in the caller's trace or a new one; what
//! they start then carries warren's span as its parent. Without a sink
//! nothing is recorded and the caller's context passes through unchanged.

use std::future::Future;
use std::sync::OnceLock;
use std::time::SystemTime;

use crate::ports::OutgoingMessage;

/// The header, and the queue message attribute, that carries the context.
pub const HEADER: &str = "traceparent";

tokio::task_local! {
    static CURRENT: Option<TraceContext>;
}

/// One `traceparent`: the trace, the caller's span in it, and its flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: [u8; 16],
    parent_id: [u8; 8],
    flags: u8,
}

impl TraceContext {
    /// Parse a `traceparent` header value; `None` for anything the W3C
    /// rules say to ignore (bad length or hex, upper case, all-zero ids,
    /// version `ff`). A later version is read by its first four fields.
    pub fn parse(header: &str) -> Option<TraceContext> {
        let h = header.trim();
        let version = u8::from_str_radix(h.get(0..2)?, 16).ok()?;
        let exact = h.len() == 55;
        let longer = version > 0 && h.len() > 55 && h.as_bytes()[55] == b'-';
        if version == 0xff || !(exact || longer) || !h.is_char_boundary(55) {
            return None;
        }
        let h = &h[..55];
        let lower_hex = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        let parts: Vec<&str> = h.split('-').collect();
        let [v, trace, parent, flags] = parts[..] else {
            return None;
        };
        if ![v, trace, parent, flags].iter().all(|p| lower_hex(p)) {
            return None;
        }
        let mut trace_id = [0u8; 16];
        let mut parent_id = [0u8; 8];
        hex::decode_to_slice(trace, &mut trace_id).ok()?;
        hex::decode_to_slice(parent, &mut parent_id).ok()?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        let flags = u8::from_str_radix(flags, 16).ok()?;
        Some(TraceContext {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// The same trace with a new span of warren's as the parent: what an
    /// outgoing call carries.
    pub fn child(&self) -> TraceContext {
        TraceContext {
            parent_id: new_span_id(),
            ..*self
        }
    }

    fn sampled(&self) -> bool {
        self.flags & 0x01 == 1
    }

    /// The trace id as 32 hex digits (for log lines).
    pub fn trace_id(&self) -> String {
        hex::encode(self.trace_id)
    }

    /// The header value, version 00.
    pub fn header(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            hex::encode(self.trace_id),
            hex::encode(self.parent_id),
            self.flags & 0x01 // only the sampled flag is defined for 00
        )
    }
}

/// The context of the request or run this code serves, if its caller sent
/// one.
pub fn current() -> Option<TraceContext> {
    CURRENT.try_with(|c| *c).ok().flatten()
}

/// The current context as a header value, to keep with what this request
/// creates.
pub fn current_header() -> Option<String> {
    current().map(|c| c.header())
}

/// Run `work` in `context` (a stored header value, or none).
pub async fn scope<F: Future>(context: Option<TraceContext>, work: F) -> F::Output {
    CURRENT.scope(context, work).await
}

/// `work` in the current context, for `tokio::spawn` (a task-local does not
/// cross a spawn by itself).
pub fn carry<F: Future>(work: F) -> impl Future<Output = F::Output> {
    CURRENT.scope(current(), work)
}

/// The context kept as `stored` (a task's or an execution's `traceparent`,
/// a message's attribute).
pub fn of(stored: Option<&str>) -> Option<TraceContext> {
    stored.and_then(TraceContext::parse)
}

/// `message` carrying `traceparent` (kept with what it starts) as its
/// attribute, for whatever else reads the queue.
pub fn tag(message: OutgoingMessage, traceparent: Option<&str>) -> OutgoingMessage {
    match traceparent {
        Some(t) => message.with_attribute(HEADER, t),
        None => message,
    }
}

/// Add the current context to an outgoing call's `headers`, as a span of
/// warren's in the caller's trace, unless the call names one itself. The
/// span, when spans are exported, lasts as long as the caller keeps it.
pub fn propagate(headers: &mut Vec<(String, String)>, method: &str, url: &str) -> Option<Span> {
    let context = current()?;
    if headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(HEADER)) {
        return None;
    }
    let span = Span::start(method, SpanKind::Client, Some(context)).map(|mut span| {
        span.set("http.request.method", method);
        // The host only: a path or query may carry a token.
        let host = url.split_once("://").map_or(url, |(_, rest)| rest);
        span.set(
            "server.address",
            host.split(['/', '?', '#']).next().unwrap_or(""),
        );
        span
    });
    let sent = span.as_ref().map_or_else(|| context.child(), Span::context);
    headers.push((HEADER.into(), sent.header()));
    span
}

fn new_span_id() -> [u8; 8] {
    let mut id: [u8; 8] = rand::random();
    if id == [0; 8] {
        id[7] = 1;
    }
    id
}

/// What a [`Span`] stands for, in OpenTelemetry's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    /// A request warren serves.
    Server,
    /// A call warren makes.
    Client,
    /// A task attempt, execution run or topic message warren takes from a queue.
    Consumer,
}

/// A span that has ended, as a [`SpanSink`] receives it.
#[derive(Clone, Debug, PartialEq)]
pub struct FinishedSpan {
    pub name: String,
    pub kind: SpanKind,
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// The caller's span; `None` when warren started the trace.
    pub parent_id: Option<[u8; 8]>,
    pub start: SystemTime,
    pub end: SystemTime,
    pub attributes: Vec<(&'static str, Attribute)>,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// A span attribute's value.
#[derive(Clone, Debug, PartialEq)]
pub enum Attribute {
    Text(String),
    Int(i64),
}

/// Where finished spans go (an OTLP exporter). `record` is called on the
/// path of the work itself: it must hand the span off, not send it.
pub trait SpanSink: Send + Sync {
    fn record(&self, span: FinishedSpan);
}

static SINK: OnceLock<Box<dyn SpanSink>> = OnceLock::new();

/// Report every span of this process to `sink` from now on (once per
/// process; a second sink is ignored).
pub fn export_spans(sink: Box<dyn SpanSink>) {
    let _ = SINK.set(sink);
}

/// A unit of warren's work in a trace, reported when it is dropped: at its
/// end, or when its future is dropped mid-way (then marked `cancelled`
/// unless it already has an outcome).
#[derive(Debug)]
pub struct Span {
    /// Taken when it is reported.
    finished: Option<FinishedSpan>,
    flags: u8,
    ended: bool,
}

impl Span {
    /// A span in `parent`'s trace (a new, sampled trace without one);
    /// `None` when no sink is set or the caller's trace is not sampled.
    pub fn start(name: &str, kind: SpanKind, parent: Option<TraceContext>) -> Option<Span> {
        SINK.get()?;
        if parent.is_some_and(|p| !p.sampled()) {
            return None;
        }
        let (trace_id, parent_id, flags) = match parent {
            Some(p) => (p.trace_id, Some(p.parent_id), p.flags),
            None => (new_trace_id(), None, 0x01),
        };
        let now = SystemTime::now();
        Some(Span {
            finished: Some(FinishedSpan {
                name: name.to_owned(),
                kind,
                trace_id,
                span_id: new_span_id(),
                parent_id,
                start: now,
                end: now,
                attributes: Vec::new(),
                error: None,
            }),
            flags,
            ended: false,
        })
    }

    /// The context of work this span starts: its trace, itself as parent.
    pub fn context(&self) -> TraceContext {
        let f = self.finished.as_ref().expect("reported only when dropped");
        TraceContext {
            trace_id: f.trace_id,
            parent_id: f.span_id,
            flags: self.flags,
        }
    }

    pub fn set(&mut self, key: &'static str, value: impl ToString) {
        self.note(key, Attribute::Text(value.to_string()));
    }

    pub fn set_int(&mut self, key: &'static str, value: impl Into<i64>) {
        self.note(key, Attribute::Int(value.into()));
    }

    fn note(&mut self, key: &'static str, value: Attribute) {
        if let Some(f) = &mut self.finished {
            f.attributes.push((key, value));
        }
    }

    /// Mark it failed, with why.
    pub fn fail(&mut self, error: impl Into<String>) {
        if let Some(f) = &mut self.finished {
            f.error = Some(error.into());
        }
    }

    /// End it now (a span dropped without ending, and not failed, was
    /// cancelled).
    pub fn end(mut self) {
        self.ended = true;
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        let (Some(sink), Some(mut finished)) = (SINK.get(), self.finished.take()) else {
            return;
        };
        if !self.ended && finished.error.is_none() {
            finished.error = Some("cancelled".into());
        }
        finished.end = SystemTime::now();
        sink.record(finished);
    }
}

fn new_trace_id() -> [u8; 16] {
    let mut id: [u8; 16] = rand::random();
    if id == [0; 16] {
        id[15] = 1;
    }
    id
}

/// Run `work` within `parent`, as a span of warren's named `name` when
/// spans are exported (it starts now); `outcome` then notes on the span
/// how it went.
pub fn traced<F: Future, O: FnOnce(&F::Output, &mut Span)>(
    name: &str,
    kind: SpanKind,
    parent: Option<TraceContext>,
    work: F,
    outcome: O,
) -> impl Future<Output = F::Output> + use<F, O> {
    let span = Span::start(name, kind, parent);
    let context = span.as_ref().map(Span::context).or(parent);
    async move {
        let out = scope(context, work).await;
        if let Some(mut span) = span {
            outcome(&out, &mut span);
            span.end();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_header_reads_back_the_same() {
        let c = TraceContext::parse(SAMPLE).expect("valid");
        assert_eq!(c.header(), SAMPLE);
        assert_eq!(c.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn a_child_keeps_the_trace_and_flags_with_a_new_span() {
        let c = TraceContext::parse(SAMPLE).unwrap();
        let child = c.child();
        let h = child.header();
        assert!(h.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{h}");
        assert!(h.ends_with("-01"), "{h}");
        assert_ne!(h, SAMPLE);
        assert_eq!(TraceContext::parse(&h), Some(child));
    }

    #[test]
    fn what_the_spec_says_to_ignore_is_ignored() {
        for bad in [
            "",
            "00",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0é",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_later_version_is_read_by_its_first_fields() {
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-next";
        let c = TraceContext::parse(later).expect("version 01 with more fields");
        assert_eq!(c.header(), SAMPLE);
    }

    #[tokio::test]
    async fn the_context_holds_within_its_scope_and_carries_into_spawns() {
        assert_eq!(current(), None);
        let c = TraceContext::parse(SAMPLE);
        scope(c, async {
            assert_eq!(current(), c);
            let spawned = tokio::spawn(carry(async { current() })).await.unwrap();
            assert_eq!(spawned, c);
            let lost = tokio::spawn(async { current() }).await.unwrap();
            assert_eq!(lost, None, "a bare spawn does not carry it");
        })
        .await;
        assert_eq!(current(), None);
    }
}
