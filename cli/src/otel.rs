//! OpenTelemetry traces of `warren dev`: when `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) names a collector, warren's
//! spans (requests, task attempts, execution runs, topic messages, outgoing
//! calls; see `warren::trace`) go to it over OTLP/HTTP, protobuf or JSON as
//! `OTEL_EXPORTER_OTLP_PROTOCOL` says, as `OTEL_SERVICE_NAME` (default
//! `warren`).
//!
//! Spans are handed to a bounded channel on the path of the work and sent
//! in batches by one task (every `OTEL_BSP_SCHEDULE_DELAY` ms, default
//! 5000, or once 512 wait): a slow or absent collector costs a request
//! nothing, and spans past the channel's 4096 are dropped and counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind as OtelKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};
use tokio::sync::mpsc;
use warren::trace::{Attribute, FinishedSpan, SpanKind, SpanSink};

const QUEUED: usize = 4096;
const BATCH: usize = 512;

/// The running exporter: [`Exporter::shutdown`] sends what is left.
pub struct Exporter {
    stop: mpsc::Sender<Flush>,
    task: tokio::task::JoinHandle<()>,
}

struct Flush;

/// Start exporting when the environment names a collector; `None` otherwise.
pub fn start_from_env() -> anyhow::Result<Option<Exporter>> {
    let named = |v: &str| std::env::var(v).is_ok_and(|s| !s.trim().is_empty());
    if !named("OTEL_EXPORTER_OTLP_ENDPOINT") && !named("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        return Ok(None);
    }
    // The exporter's HTTP client speaks TLS through rustls' process default.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .context("OTEL_EXPORTER_OTLP_ENDPOINT: building the OTLP exporter")?;
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "warren".into());
    exporter.set_resource(&Resource::builder().with_service_name(service).build());
    let delay = std::env::var("OTEL_BSP_SCHEDULE_DELAY")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(5), Duration::from_millis);
    let (spans, mut queued) = mpsc::channel(QUEUED);
    let dropped = Arc::new(AtomicU64::new(0));
    warren::trace::export_spans(Box::new(Channel {
        spans,
        dropped: dropped.clone(),
    }));
    let (stop, mut stopping) = mpsc::channel(1);
    let scope = InstrumentationScope::builder("warren")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build();
    let task = tokio::spawn(async move {
        let mut batch = Vec::with_capacity(BATCH);
        let mut every = tokio::time::interval(delay);
        loop {
            let (send, last) = tokio::select! {
                n = queued.recv_many(&mut batch, BATCH) => (n == 0 || batch.len() >= BATCH, n == 0),
                _ = every.tick() => (true, false),
                _ = stopping.recv() => {
                    while let Ok(s) = queued.try_recv() {
                        batch.push(s);
                    }
                    (true, true)
                }
            };
            if send && !batch.is_empty() {
                let spans = batch.drain(..).map(|s| span_data(s, &scope)).collect();
                if let Err(e) = exporter.export(spans).await {
                    tracing::warn!(error = %e, "OTLP export failed; those spans are lost");
                }
            }
            let lost = dropped.swap(0, Ordering::Relaxed);
            if lost > 0 {
                tracing::warn!(lost, "OTLP exporter behind: spans dropped");
            }
            if last {
                return;
            }
        }
    });
    Ok(Some(Exporter { stop, task }))
}

impl Exporter {
    /// Send the spans still waiting (at most `within`).
    pub async fn shutdown(self, within: Duration) {
        let _ = self.stop.send(Flush).await;
        let _ = tokio::time::timeout(within, self.task).await;
    }
}

struct Channel {
    spans: mpsc::Sender<FinishedSpan>,
    dropped: Arc<AtomicU64>,
}

impl SpanSink for Channel {
    fn record(&self, span: FinishedSpan) {
        if self.spans.try_send(span).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn span_data(s: FinishedSpan, scope: &InstrumentationScope) -> SpanData {
    SpanData {
        span_context: SpanContext::new(
            TraceId::from_bytes(s.trace_id),
            SpanId::from_bytes(s.span_id),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id: s.parent_id.map_or(SpanId::INVALID, SpanId::from_bytes),
        parent_span_is_remote: false,
        span_kind: match s.kind {
            SpanKind::Server => OtelKind::Server,
            SpanKind::Client => OtelKind::Client,
            SpanKind::Consumer => OtelKind::Consumer,
        },
        name: s.name.into(),
        start_time: s.start,
        end_time: s.end,
        attributes: s
            .attributes
            .into_iter()
            .map(|(k, v)| match v {
                Attribute::Text(t) => KeyValue::new(k, t),
                Attribute::Int(n) => KeyValue::new(k, n),
            })
            .collect(),
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: match s.error {
            Some(e) => Status::error(e),
            None => Status::Ok,
        },
        instrumentation_scope: scope.clone(),
    }
}
