//! Process counters and the task duration histogram, rendered with the
//! per-queue task counts in the Prometheus text format.

use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::domain::TaskStatus;
use crate::table::tasks::QueueStats;

/// Upper bounds (seconds) of the duration histogram buckets.
const BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Counters of this process (each Lambda instance or `warren dev` keeps its own).
#[derive(Default)]
pub struct Metrics {
    enqueued: AtomicU64,
    started: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    malformed: AtomicU64,
    dispatched: AtomicU64,
    dropped: AtomicU64,
    durations: Mutex<Histogram>,
}

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

impl Metrics {
    /// Count `n` enqueued tasks.
    pub fn enqueued(&self, n: u64) {
        self.enqueued.fetch_add(n, Relaxed);
    }
    /// Count one started attempt.
    pub fn started(&self) {
        self.started.fetch_add(1, Relaxed);
    }
    /// Count one failed attempt that will be retried.
    pub fn retried(&self) {
        self.retried.fetch_add(1, Relaxed);
    }
    /// Count one queue message dropped as unreadable.
    pub fn malformed_message(&self) {
        self.malformed.fetch_add(1, Relaxed);
    }
    /// Executions the topic dispatcher started.
    pub fn dispatched(&self, n: u64) {
        self.dispatched.fetch_add(n, Relaxed);
    }
    /// A topic message that found no started trigger (or named no topic).
    pub fn dropped_topic_message(&self) {
        self.dropped.fetch_add(1, Relaxed);
    }
    /// A task reached completed (`true`) or failed for good.
    pub fn finished(&self, completed: bool) {
        let c = if completed {
            &self.completed
        } else {
            &self.failed
        };
        c.fetch_add(1, Relaxed);
    }

    /// Tasks this process finished: (completed, failed for good).
    pub fn finished_counts(&self) -> (u64, u64) {
        (self.completed.load(Relaxed), self.failed.load(Relaxed))
    }

    /// Record how long one attempt's handler ran.
    pub fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let slot = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        if let Ok(mut h) = self.durations.lock() {
            h.counts[slot] += 1;
            h.sum += secs;
            h.count += 1;
        }
    }

    /// The Prometheus exposition of these counters and the queue counts.
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
                        q.queue_name,
                        s.as_str(),
                        q.count(s)
                    );
                }
            }
        }
        let counters = [
            (
                "warren_tasks_enqueued_total",
                "Tasks enqueued by this process",
                &self.enqueued,
            ),
            (
                "warren_task_attempts_started_total",
                "Attempts started by this process",
                &self.started,
            ),
            (
                "warren_tasks_completed_total",
                "Tasks completed by this process",
                &self.completed,
            ),
            (
                "warren_tasks_failed_total",
                "Tasks failed for good by this process",
                &self.failed,
            ),
            (
                "warren_task_retries_total",
                "Failed attempts scheduled for retry",
                &self.retried,
            ),
            (
                "warren_malformed_messages_total",
                "Queue messages dropped as malformed",
                &self.malformed,
            ),
            (
                "warren_topic_executions_started_total",
                "Executions the topic dispatcher of this process started",
                &self.dispatched,
            ),
            (
                "warren_topic_messages_dropped_total",
                "Topic messages that found no started event trigger",
                &self.dropped,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Relaxed)
            );
        }
        let name = "warren_task_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Handler run time per attempt\n# TYPE {name} histogram"
        );
        if let Ok(h) = self.durations.lock() {
            let mut cumulative = 0;
            for (i, bound) in BUCKETS.iter().enumerate() {
                cumulative += h.counts[i];
                let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
            }
            cumulative += h.counts[BUCKETS.len()];
            let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
            let _ = writeln!(out, "{name}_sum {}\n{name}_count {}", h.sum, h.count);
        }
        out
    }
}
