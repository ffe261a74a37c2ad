//! `warren bench`: a load generator for a running warren. A benchmark, not a
//! test: it prints figures, it asserts nothing.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use serde_json::{Value, json};

use crate::progress;

/// How late a timer may wake before the lateness counts as backlog.
const TIMER_SLACK: Duration = Duration::from_millis(2);

#[derive(Args, Debug, Clone)]
pub struct BenchOptions {
    /// What to measure.
    #[arg(value_enum)]
    pub mode: BenchMode,
    /// Base URL of the warren to load.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Enqueue and health modes: offered load in requests/s across all clients (open
    /// loop: latency counts from each request's scheduled start, so a slow
    /// server cannot hide its queueing). 0 = as fast as the server answers.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Seconds to run (enqueue and batch modes).
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Tasks per batch (batch mode) or in all (e2e mode).
    #[arg(long, default_value_t = 1000)]
    pub tasks: usize,
    #[arg(long, env = "WARREN_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchMode {
    /// Single-task enqueue: requests/s and latency percentiles.
    Enqueue,
    /// `GET /health` with the same clients and rate as `enqueue`: the floor of
    /// HTTP and scheduling on this machine, without a write.
    Health,
    /// Batch enqueue of `--tasks` per request: tasks/s.
    Batch,
    /// Enqueue `--tasks` echo tasks in batches and wait until all completed: tasks/s.
    E2e,
    /// Single-task enqueue of echo tasks at `--rate` (the worker on), then the
    /// enqueue-to-start latency of each task (its `started_at` minus its
    /// `created_at`): mean and percentiles.
    Pickup,
}

pub async fn run(opts: BenchOptions) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(opts.concurrency)
        .build()?;
    match opts.mode {
        BenchMode::Enqueue => {
            paced(&client, &opts, "enqueue", 201, |client, opts, c, i| {
                let body = json!({"task_name": "echo", "queue_name": "bench", "args": [c, i]});
                post(client, opts, "/api/v1/enqueue", &body)
            })
            .await
        }
        BenchMode::Health => {
            paced(&client, &opts, "health", 200, |client, opts, _, _| {
                client.get(format!("{}/health", opts.url))
            })
            .await
        }
        BenchMode::Batch => batch(&client, &opts).await,
        BenchMode::E2e => e2e(&client, &opts).await,
        BenchMode::Pickup => pickup(&client, &opts).await,
    }
}

/// The queue `pickup` mode loads; its earlier tasks are left out by time.
const PICKUP_QUEUE: &str = "bench-pickup";

fn get(client: &reqwest::Client, opts: &BenchOptions, path: &str) -> reqwest::RequestBuilder {
    let mut r = client.get(format!("{}{path}", opts.url));
    if let Some(k) = &opts.api_key {
        r = r.header("x-api-key", k);
    }
    r
}

fn post(
    client: &reqwest::Client,
    opts: &BenchOptions,
    path: &str,
    body: &Value,
) -> reqwest::RequestBuilder {
    let mut r = client
        .post(format!("{}{path}", opts.url))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(k) = &opts.api_key {
        r = r.header("x-api-key", k);
    }
    r
}

/// Runs `opts.concurrency` clients, each sending `request(client, opts,
/// client index, request index)` in a closed loop or at its share of
/// `opts.rate`, and prints requests/s and latency percentiles.
async fn paced(
    client: &reqwest::Client,
    opts: &BenchOptions,
    label: &'static str,
    expect: u16,
    request: fn(&reqwest::Client, &BenchOptions, usize, u64) -> reqwest::RequestBuilder,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(opts.duration);
    let started = Instant::now();
    let bar = progress::timed(Duration::from_secs(opts.duration), label);
    let mut set = tokio::task::JoinSet::new();
    for c in 0..opts.concurrency {
        let client = client.clone();
        let opts = opts.clone();
        set.spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let mut i = 0u64;
            // Each client sends at rate/concurrency; the first sends are spread out.
            let period = (opts.rate > 0)
                .then(|| Duration::from_secs_f64(opts.concurrency as f64 / opts.rate as f64));
            let mut next = Instant::now()
                + period.map_or(Duration::ZERO, |p| {
                    p.mul_f64(c as f64 / opts.concurrency as f64)
                });
            while Instant::now() < deadline {
                let t = match period {
                    Some(p) => {
                        tokio::time::sleep_until(next.into()).await;
                        let scheduled = next;
                        next += p;
                        // Timers wake up to ~1 ms late: that lag is the
                        // client's, not the server's. Only a real backlog
                        // (this client behind its schedule) counts from the
                        // scheduled start.
                        let now = Instant::now();
                        if now.duration_since(scheduled) > TIMER_SLACK {
                            scheduled
                        } else {
                            now
                        }
                    }
                    None => Instant::now(),
                };
                match request(&client, &opts, c, i).send().await {
                    Ok(r) if r.status().as_u16() == expect => {
                        latencies.push(t.elapsed().as_micros() as u64)
                    }
                    _ => errors += 1,
                }
                i += 1;
            }
            (latencies, errors)
        });
    }
    let mut all = Vec::new();
    let mut errors = 0;
    while let Some(r) = set.join_next().await {
        let (l, e) = r?;
        all.extend(l);
        errors += e;
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    println!(
        "{label}: {} ok, {errors} errors in {secs:.1} s = {:.0} req/s at {} clients ({}); latency ms p50 {:.2} p90 {:.2} p99 {:.2} max {:.2}",
        all.len(),
        all.len() as f64 / secs,
        opts.concurrency,
        if opts.rate > 0 {
            format!("offered {} req/s", opts.rate)
        } else {
            "closed loop".into()
        },
        pct(0.50),
        pct(0.90),
        pct(0.99),
        all.last().copied().unwrap_or(0) as f64 / 1000.0
    );
    Ok(())
}

fn echo_batch(n: usize, tag: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| json!({"task_name": "echo", "queue_name": "bench", "args": [tag, i]}))
            .collect(),
    )
}

async fn batch(client: &reqwest::Client, opts: &BenchOptions) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(opts.duration);
    let started = Instant::now();
    let bar = progress::timed(Duration::from_secs(opts.duration), "batch");
    let mut set = tokio::task::JoinSet::new();
    for c in 0..opts.concurrency {
        let client = client.clone();
        let opts = opts.clone();
        set.spawn(async move {
            let body = echo_batch(opts.tasks, c);
            let mut done = 0usize;
            while Instant::now() < deadline {
                let r = post(&client, &opts, "/api/v1/enqueue/batch", &body)
                    .send()
                    .await?;
                if r.status().as_u16() != 201 {
                    bail!("batch enqueue answered {}", r.status());
                }
                done += opts.tasks;
            }
            Ok(done)
        });
    }
    let mut total = 0;
    while let Some(r) = set.join_next().await {
        total += r??;
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "batch enqueue: {total} tasks in {secs:.1} s = {:.0} tasks/s ({} per request, {} clients)",
        total as f64 / secs,
        opts.tasks,
        opts.concurrency
    );
    Ok(())
}

/// The counts of queue `name` (an empty object before its first task).
async fn queue_counts(
    client: &reqwest::Client,
    opts: &BenchOptions,
    name: &str,
) -> anyhow::Result<Value> {
    let bytes = get(client, opts, "/api/v1/queues")
        .send()
        .await?
        .bytes()
        .await?;
    let queues: Vec<Value> = serde_json::from_slice(&bytes).context("GET /api/v1/queues")?;
    Ok(queues
        .into_iter()
        .find(|q| q["queue_name"] == name)
        .unwrap_or_else(|| json!({})))
}

async fn completed_in_bench(client: &reqwest::Client, opts: &BenchOptions) -> anyhow::Result<i64> {
    Ok(queue_counts(client, opts, "bench").await?["completed"]
        .as_i64()
        .unwrap_or(0))
}

/// `pickup` mode: paced single enqueues, then every task's wait from its
/// creation to its start, read back from the API once all have run.
async fn pickup(client: &reqwest::Client, opts: &BenchOptions) -> anyhow::Result<()> {
    let since = chrono::Utc::now();
    paced(client, opts, "enqueue", 201, |client, opts, c, i| {
        let body = json!({"task_name": "echo", "queue_name": PICKUP_QUEUE, "args": [c, i]});
        post(client, opts, "/api/v1/enqueue", &body)
    })
    .await?;
    let waiting = Instant::now();
    loop {
        let q = queue_counts(client, opts, PICKUP_QUEUE).await?;
        let left = q["pending"].as_i64().unwrap_or(0) + q["running"].as_i64().unwrap_or(0);
        if left == 0 {
            break;
        }
        if waiting.elapsed() > Duration::from_secs(600) {
            bail!("{left} tasks still pending or running after 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut waits = Vec::new();
    let mut path = format!("/api/v1/tasks?queue={PICKUP_QUEUE}&limit=1000");
    loop {
        let r = get(client, opts, &path).send().await?;
        let next = r
            .headers()
            .get("x-next-cursor")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let tasks: Vec<Value> = serde_json::from_slice(&r.bytes().await?).context("GET tasks")?;
        let time = |t: &Value, field: &str| {
            t[field]
                .as_str()
                .and_then(|s| s.parse::<chrono::DateTime<chrono::Utc>>().ok())
        };
        let mut older = false;
        for t in &tasks {
            match (time(t, "created_at"), time(t, "started_at")) {
                (Some(created), _) if created < since => older = true,
                (Some(created), Some(started)) => {
                    waits.push((started - created).num_microseconds().unwrap_or(0).max(0))
                }
                _ => {}
            }
        }
        // Newest first: once a page reaches earlier runs, the rest is theirs.
        match next {
            Some(cursor) if !older => {
                path = format!("/api/v1/tasks?queue={PICKUP_QUEUE}&limit=1000&cursor={cursor}")
            }
            _ => break,
        }
    }
    waits.sort_unstable();
    let ms = |us: i64| us as f64 / 1000.0;
    let pct = |p: f64| ms(waits[((waits.len() as f64 * p) as usize).min(waits.len() - 1)]);
    if waits.is_empty() {
        bail!("no task of this run was found started");
    }
    println!(
        "pickup (enqueue to start): {} tasks; ms mean {:.2} p50 {:.2} p90 {:.2} p99 {:.2} max {:.2}",
        waits.len(),
        ms(waits.iter().sum::<i64>() / waits.len() as i64),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        ms(*waits.last().unwrap_or(&0)),
    );
    Ok(())
}

async fn e2e(client: &reqwest::Client, opts: &BenchOptions) -> anyhow::Result<()> {
    let before = completed_in_bench(client, opts).await?;
    let per_batch = 1000.min(opts.tasks);
    let started = Instant::now();
    let bar = progress::items(opts.tasks as u64, "enqueued");
    let mut sent = 0;
    while sent < opts.tasks {
        let n = per_batch.min(opts.tasks - sent);
        let r = post(client, opts, "/api/v1/enqueue/batch", &echo_batch(n, sent))
            .send()
            .await?;
        if r.status().as_u16() != 201 {
            bail!("batch enqueue answered {}", r.status());
        }
        sent += n;
        bar.set_position(sent as u64);
    }
    let enqueued = started.elapsed().as_secs_f64();
    let target = before + opts.tasks as i64;
    bar.set_message("completed");
    bar.set_position(0);
    loop {
        let done = completed_in_bench(client, opts).await?;
        bar.set_position((done - before).max(0) as u64);
        if done >= target {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!(
                "only {} of {} tasks completed in 10 minutes",
                done - before,
                opts.tasks
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "end to end: {} echo tasks enqueued in {enqueued:.2} s and all completed in {secs:.2} s = {:.0} tasks/s",
        opts.tasks,
        opts.tasks as f64 / secs
    );
    Ok(())
}
