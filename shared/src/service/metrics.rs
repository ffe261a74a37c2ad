//! What warren counts, through the `metrics` facade, and where it goes: a
//! Prometheus registry of the process (`warren dev` serves it at
//! `/metrics`), CloudWatch Embedded Metric Format lines written after each
//! Lambda invocation (CloudWatch turns them into metrics), or nowhere.
//!
//! The task counts per queue and status come from the store, not from
//! these counters: they are the same whichever process is scraped.

use std::fmt::Write;
use std::time::Duration;

use metrics::{counter, describe_counter, describe_histogram, histogram};

use crate::domain::TaskStatus;
use crate::table::tasks::QueueStats;

/// Upper bounds (seconds) of the attempt duration buckets.
#[cfg_attr(not(feature = "prometheus"), allow(dead_code))]
const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Upper bounds (seconds) of the pickup buckets: from due to started, which
/// a backlog stretches to minutes.
#[cfg_attr(not(feature = "prometheus"), allow(dead_code))]
const PICKUP_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0, 300.0, 900.0,
];

/// How long a Prometheus series lives without an update.
#[cfg(feature = "prometheus")]
const IDLE: Duration = Duration::from_secs(3600);

/// This process's metrics and where they go.
pub struct Metrics {
    sink: Sink,
}

enum Sink {
    /// Nothing is recorded.
    Off,
    /// The process-wide recorder (CloudWatch EMF on Lambda), flushed after
    /// each invocation.
    Emf(&'static metrics_cloudwatch_embedded::Collector),
    /// A registry of this `Deps` alone, rendered by `/metrics`.
    #[cfg(feature = "prometheus")]
    Prometheus(metrics_exporter_prometheus::PrometheusRecorder),
}

impl Default for Metrics {
    /// Nothing recorded: each runtime chooses its sink ([`Metrics::emf`] on
    /// Lambda, [`Metrics::prometheus`] in `warren dev`), so a Lambda never
    /// links the Prometheus exporter, even built beside the CLI.
    fn default() -> Metrics {
        Metrics::off()
    }
}

impl Metrics {
    /// Records nothing.
    pub fn off() -> Metrics {
        Metrics { sink: Sink::Off }
    }

    /// A Prometheus registry of its own (so two `Deps` in one process, as
    /// in tests, never mix their counts).
    #[cfg(feature = "prometheus")]
    pub fn prometheus() -> Metrics {
        use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
        use metrics_util::MetricKindMask;
        let recorder = PrometheusBuilder::new()
            // Queue names are the callers' to choose: a series nobody
            // updated for an hour is dropped, so the registry holds the
            // queues in use, not every name ever seen.
            .idle_timeout(MetricKindMask::ALL, Some(IDLE))
            .set_buckets_for_metric(Matcher::Full(PICKUP.into()), &PICKUP_BUCKETS)
            .and_then(|b| b.set_buckets(&DURATION_BUCKETS))
            .expect("bucket bounds are non-empty")
            .build_recorder();
        metrics::with_local_recorder(&recorder, describe);
        Metrics {
            sink: Sink::Prometheus(recorder),
        }
    }

    /// CloudWatch Embedded Metric Format in namespace `namespace`, the
    /// process-wide recorder: for a Lambda function, which [`Metrics::flush`]es
    /// after each invocation. Fails if a recorder is already installed.
    pub fn emf(namespace: &str, function: &str) -> Result<Metrics, String> {
        let collector = metrics_cloudwatch_embedded::Builder::new()
            .cloudwatch_namespace(namespace.to_string())
            .with_dimension("function", function.to_string())
            .init()
            .map_err(|e| e.to_string())?;
        describe();
        Ok(Metrics {
            sink: Sink::Emf(collector),
        })
    }

    fn record(&self, f: impl FnOnce()) {
        match &self.sink {
            Sink::Off => {}
            Sink::Emf(_) => f(),
            #[cfg(feature = "prometheus")]
            Sink::Prometheus(r) => metrics::with_local_recorder(r, f),
        }
    }

    /// Add `n` to the counter `name` of `queue`.
    fn count(&self, name: &'static str, queue: &str, n: u64) {
        self.record(|| counter!(name, "queue" => queue.to_string()).increment(n));
    }

    /// Count `n` tasks enqueued on `queue`.
    pub fn enqueued(&self, queue: &str, n: u64) {
        if n > 0 {
            self.count(ENQUEUED, queue, n);
        }
    }

    /// Count one attempt started on `queue`, `pickup` after the task was due.
    pub fn started(&self, queue: &str, pickup: Duration) {
        self.record(|| {
            counter!(STARTED, "queue" => queue.to_string()).increment(1);
            histogram!(PICKUP, "queue" => queue.to_string()).record(pickup.as_secs_f64());
        });
    }

    /// Record how long one attempt's handler ran.
    pub fn attempt_ran(&self, queue: &str, elapsed: Duration) {
        self.record(|| {
            histogram!(DURATION, "queue" => queue.to_string()).record(elapsed.as_secs_f64())
        });
    }

    /// Count one failed attempt that will be retried.
    pub fn retried(&self, queue: &str) {
        self.count(RETRIED, queue, 1);
    }

    /// A task of `queue` reached completed (`true`) or failed for good.
    pub fn finished(&self, queue: &str, completed: bool) {
        self.count(if completed { COMPLETED } else { FAILED }, queue, 1);
    }

    /// A pending task of `queue` outlived its TTL.
    pub fn expired(&self, queue: &str) {
        self.count(EXPIRED, queue, 1);
    }

    /// A webhook delivery attempt ended: `delivered`, `retrying` or `failed`.
    pub fn webhook(&self, outcome: &'static str) {
        self.record(|| counter!(WEBHOOKS, "outcome" => outcome).increment(1));
    }

    /// An execution ended in `status`.
    pub fn execution_finished(&self, status: &'static str) {
        self.record(|| counter!(EXECUTIONS, "status" => status).increment(1));
    }

    /// A pipeline step ended in `status`.
    pub fn step_finished(&self, status: &'static str) {
        self.record(|| counter!(STEPS, "status" => status).increment(1));
    }

    /// Count one queue message dropped as unreadable.
    pub fn malformed_message(&self) {
        self.record(|| counter!(MALFORMED).increment(1));
    }

    /// Executions the topic dispatcher started.
    pub fn dispatched(&self, n: u64) {
        if n > 0 {
            self.record(|| counter!(DISPATCHED).increment(n));
        }
    }

    /// A topic message that found no started trigger (or named no topic).
    pub fn dropped_topic_message(&self) {
        self.record(|| counter!(DROPPED).increment(1));
    }

    /// The Prometheus exposition of this process's metrics, if it keeps a
    /// registry.
    pub fn exposition(&self) -> Option<String> {
        match &self.sink {
            #[cfg(feature = "prometheus")]
            Sink::Prometheus(r) => Some(r.handle().render()),
            _ => None,
        }
    }

    /// Drain the registry's histogram samples into its buckets: a
    /// long-running process calls this every few seconds (a render does it
    /// too), so unscraped samples do not pile up.
    pub fn upkeep(&self) {
        #[cfg(feature = "prometheus")]
        if let Sink::Prometheus(r) = &self.sink {
            r.handle().run_upkeep();
        }
    }

    /// Write what was counted since the last flush as EMF lines on stdout,
    /// tagged with the invocation's request id (a Lambda, after each
    /// invocation; elsewhere a no-op).
    pub fn flush(&self, request_id: Option<&str>) {
        if let Sink::Emf(collector) = &self.sink {
            if let Some(id) = request_id {
                collector.set_property("requestId", id.to_string());
            }
            let out = std::io::stdout();
            if let Err(e) = collector.flush(out.lock()) {
                tracing::warn!(error = %e, "writing metrics failed");
            }
        }
    }

    /// The Prometheus text `/metrics` answers: the task counts per queue and
    /// status from the store (as `warren_tasks` and lapinq's `lapinq_tasks`),
    /// then this process's metrics where it keeps them.
    pub fn render(&self, queues: &[QueueStats]) -> String {
        let mut out = String::with_capacity(2048);
        // A queue whose tasks are all gone keeps its (zero) counters: its
        // rows would stay forever. lapinq's gauge name is kept beside
        // warren's, so a lapinq scrape config and its panels keep working.
        let live: Vec<&QueueStats> = queues
            .iter()
            .filter(|q| TaskStatus::ALL.iter().any(|s| q.count(*s) != 0))
            .collect();
        for gauge in ["warren_tasks", "lapinq_tasks"] {
            let _ = writeln!(
                out,
                "# HELP {gauge} Task counts by queue and status\n# TYPE {gauge} gauge"
            );
            for q in &live {
                for s in TaskStatus::ALL {
                    let _ = writeln!(
                        out,
                        "{gauge}{{queue=\"{}\",status=\"{}\"}} {}",
                        escape_label(&q.queue_name),
                        s.as_str(),
                        q.count(s)
                    );
                }
            }
        }
        if let Some(process) = self.exposition() {
            out.push('\n');
            out.push_str(&process);
        }
        out
    }
}

/// A label value as the exposition format writes it.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

const ENQUEUED: &str = "warren_tasks_enqueued_total";
const STARTED: &str = "warren_task_attempts_started_total";
const COMPLETED: &str = "warren_tasks_completed_total";
const FAILED: &str = "warren_tasks_failed_total";
const RETRIED: &str = "warren_task_retries_total";
const EXPIRED: &str = "warren_tasks_expired_total";
const DURATION: &str = "warren_task_duration_seconds";
const PICKUP: &str = "warren_task_pickup_seconds";
const WEBHOOKS: &str = "warren_webhook_deliveries_total";
const EXECUTIONS: &str = "warren_executions_finished_total";
const STEPS: &str = "warren_steps_finished_total";
const MALFORMED: &str = "warren_malformed_messages_total";
const DISPATCHED: &str = "warren_topic_executions_started_total";
const DROPPED: &str = "warren_topic_messages_dropped_total";

/// The help text of every metric, for the recorder in effect.
fn describe() {
    describe_counter!(ENQUEUED, "Tasks enqueued, by queue");
    describe_counter!(STARTED, "Attempts started, by queue");
    describe_counter!(COMPLETED, "Tasks completed, by queue");
    describe_counter!(FAILED, "Tasks failed for good, by queue");
    describe_counter!(RETRIED, "Failed attempts scheduled for retry, by queue");
    describe_counter!(EXPIRED, "Pending tasks expired past their TTL, by queue");
    describe_histogram!(
        DURATION,
        metrics::Unit::Seconds,
        "Handler run time per attempt, by queue"
    );
    describe_histogram!(
        PICKUP,
        metrics::Unit::Seconds,
        "From a task being due (enqueued, released or retried) to its attempt starting, by queue"
    );
    describe_counter!(WEBHOOKS, "Webhook delivery attempts, by outcome");
    describe_counter!(EXECUTIONS, "Pipeline executions finished, by status");
    describe_counter!(STEPS, "Pipeline steps finished, by status");
    describe_counter!(MALFORMED, "Queue messages dropped as malformed");
    describe_counter!(
        DISPATCHED,
        "Executions the topic dispatcher of this process started"
    );
    describe_counter!(
        DROPPED,
        "Topic messages that found no started event trigger"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [&str; 14] = [
        ENQUEUED, STARTED, COMPLETED, FAILED, RETRIED, EXPIRED, DURATION, PICKUP, WEBHOOKS,
        EXECUTIONS, STEPS, MALFORMED, DISPATCHED, DROPPED,
    ];

    /// The Grafana dashboard in infra/ charts every metric warren records,
    /// and names no metric warren does not have.
    #[test]
    fn the_grafana_dashboard_charts_exactly_the_metrics_warren_records() {
        let dashboard = include_str!("../../../infra/grafana-dashboard.json");
        let spec: serde_json::Value = serde_json::from_str(dashboard).expect("dashboard JSON");
        let mut charted = std::collections::BTreeSet::new();
        for panel in spec["panels"].as_array().expect("panels") {
            for target in panel["targets"].as_array().expect("targets") {
                let expr = target["expr"].as_str().expect("expr");
                for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                    if word.starts_with("warren_") {
                        let name = ["_bucket", "_count", "_sum"]
                            .iter()
                            .find_map(|s| word.strip_suffix(s))
                            .unwrap_or(word);
                        charted.insert(name.to_string());
                    }
                }
            }
        }
        let known: std::collections::BTreeSet<String> = ALL
            .iter()
            .chain(&["warren_tasks"])
            .map(|s| s.to_string())
            .collect();
        assert_eq!(charted, known);
    }

    #[test]
    fn a_registry_renders_counters_and_histograms_per_queue() {
        let m = Metrics::prometheus();
        m.enqueued("a", 2);
        m.started("a", Duration::from_millis(30));
        m.attempt_ran("a", Duration::from_millis(3));
        m.finished("a", true);
        m.webhook("delivered");
        let text = m.render(&[]);
        for line in [
            "warren_tasks_enqueued_total{queue=\"a\"} 2",
            "warren_task_attempts_started_total{queue=\"a\"} 1",
            "warren_tasks_completed_total{queue=\"a\"} 1",
            "warren_webhook_deliveries_total{outcome=\"delivered\"} 1",
            "warren_task_pickup_seconds_bucket{queue=\"a\",le=\"0.05\"} 1",
            "warren_task_pickup_seconds_bucket{queue=\"a\",le=\"0.025\"} 0",
            "warren_task_duration_seconds_count{queue=\"a\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
        assert!(
            text.contains("# HELP warren_tasks_enqueued_total Tasks enqueued, by queue"),
            "{text}"
        );
        // Another registry counts apart.
        assert!(
            !Metrics::prometheus()
                .render(&[])
                .contains("warren_tasks_enqueued_total{")
        );
        assert_eq!(Metrics::off().exposition(), None);
    }
}
