//! `warren cost`: what a task costs on AWS, counted. It provisions a fresh
//! table and queue on the configured endpoint (the emulator, or a real
//! account), runs tasks from enqueue to completed through the very code the
//! Lambda functions run (the worker fed as the SQS event source mapping
//! would, in batches of up to ten), counts every SDK request by operation
//! (retries included), and meters DynamoDB's write and read units by its
//! billing rules ([`warren::adapters::capacity`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clap::Args;
use tokio::sync::watch;
use warren::adapters::aws::{AwsClients, Meters, RequestCounter, Resources, sdk_config};
use warren::adapters::capacity::Consumed;
use warren::domain::execution::TriggerType;
use warren::service::enqueue::{NewTask, enqueue, enqueue_batch};
use warren::service::{executions, pipelines};
use warren::{Config, Deps, keys, runtime};

#[derive(Args, Debug, Clone)]
pub struct CostOptions {
    /// Tasks sent one by one (POST /api/v1/enqueue).
    #[arg(long, default_value_t = 200)]
    pub single: usize,
    /// Tasks sent in one batch (POST /api/v1/enqueue/batch).
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Tasks with `ttl_seconds: 0` (run, not kept) sent one by one.
    #[arg(long, default_value_t = 0)]
    pub ephemeral: usize,
    /// Executions of a pipeline of three steps, started one by one (as
    /// `POST /api/v1/pipelines/{id}/run` starts them).
    #[arg(long, default_value_t = 0)]
    pub pipeline: usize,
    /// Clients sending the single tasks at once.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Messages the worker runs at once.
    #[arg(long, default_value_t = 10)]
    pub concurrency: usize,
    /// Send every task before the worker starts (a backlog: full batches
    /// of ten), instead of while it polls (batches as tasks trickle in).
    #[arg(long)]
    pub backlog: bool,
    /// Give up when the tasks of one path have not all completed by then
    /// (seconds; emulators can be slow).
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// The worker's batching window in seconds (the event source mapping's
    /// MaximumBatchingWindowInSeconds).
    #[arg(long, default_value_t = 0)]
    pub batch_window: u64,
    /// Where queue counts are kept: `inline` (in each status change's
    /// transaction) or `stream` (from the table's change stream, read by
    /// this process as the `counts` function reads it on AWS).
    #[arg(long, default_value = "inline")]
    pub counts: String,
    /// Instead of tasks, count what authenticating an API call costs: this
    /// many `GET /api/v1/queues` per kind of credential, with and without a
    /// rate limit, through the functions' own routers.
    #[arg(long, default_value_t = 0)]
    pub auth_calls: usize,
}

pub async fn run(opts: CostOptions) -> anyhow::Result<()> {
    let meters = Meters::default();
    let counter = &meters.requests;
    let clients = AwsClients::new(&sdk_config().await, Some(&meters));
    let stamp = std::process::id();
    let resources = Resources {
        table: format!("warren-cost-{stamp}"),
        task_queue: format!("warren-cost-{stamp}"),
        topic_queue: format!("warren-cost-topics-{stamp}"),
    };
    // The task queue's visibility timeout, as template.yaml sets it (and
    // its worker is told): a message hidden that long holds its task's lease.
    let visibility = 960;
    crate::provision::ensure(&clients, &resources, Duration::from_secs(visibility)).await?;
    // Webhooks are not measured: fresh signing secrets stand in for real ones.
    let mut settings = runtime::Overrides::default();
    settings
        .set("WARREN_WEBHOOK_SECRET", Some(keys::generate_secret()))
        .set("WARREN_STEP_SECRET", Some(keys::generate_secret()))
        .set("WARREN_COUNTS", Some(&opts.counts))
        .set("WARREN_VISIBILITY", Some(&visibility.to_string()));
    let config = Config::from_settings(&settings).map_err(|e| anyhow::anyhow!("{e}"))?;
    let http = runtime::http_client(&settings).map_err(|e| anyhow::anyhow!("{e}"))?;
    let deps = runtime::aws(config, http, &resources, Some(&meters)).await;
    // Completions are read from the worker's metrics registry.
    let deps = warren::Deps {
        metrics: std::sync::Arc::new(warren::service::Metrics::prometheus()),
        ..deps
    };
    let (_stop_counts, stop) = watch::channel(false);
    if deps.config.counts_from_stream {
        runtime::stream_counts::spawn(deps.clone(), resources.table.clone(), stop);
    }
    meters.reset();
    if opts.auth_calls > 0 {
        return auth_costs(&deps, counter, opts.auth_calls).await;
    }

    let window = Duration::from_secs(opts.batch_window);
    let clients = opts.clients.max(1);
    let backlog = opts.backlog;
    let timeout = Duration::from_secs(opts.timeout);
    let one_by_one = |make: fn() -> NewTask| {
        move |deps: Deps, n: usize| async move {
            let mut senders = tokio::task::JoinSet::new();
            for c in 0..clients {
                let deps = deps.clone();
                // Client c sends tasks c, c + clients, ...: n in all.
                let count = (c..n).step_by(clients).count();
                senders.spawn(async move {
                    for _ in 0..count {
                        enqueue(&deps, make()).await?;
                    }
                    Ok::<_, warren::ServiceError>(())
                });
            }
            while let Some(sent) = senders.join_next().await {
                sent.map_err(|e| {
                    warren::ServiceError::Queue(warren::ports::QueueError::Unavailable(Box::new(e)))
                })??;
            }
            Ok(())
        }
    };
    let single = measure(
        &deps,
        &meters,
        opts.single,
        opts.concurrency,
        window,
        backlog,
        timeout,
        Done::Tasks,
        one_by_one(echo),
    )
    .await?;
    report("single enqueue", "task", opts.single, opts.single, &single);
    let ephemeral = measure(
        &deps,
        &meters,
        opts.ephemeral,
        opts.concurrency,
        window,
        backlog,
        timeout,
        Done::Tasks,
        one_by_one(|| NewTask {
            ttl_seconds: Some(0.0),
            ..echo()
        }),
    )
    .await?;
    report(
        "single enqueue, ttl_seconds 0",
        "task",
        opts.ephemeral,
        opts.ephemeral,
        &ephemeral,
    );
    let batch = measure(
        &deps,
        &meters,
        opts.batch,
        opts.concurrency,
        window,
        backlog,
        timeout,
        Done::Tasks,
        |deps, n| async move {
            enqueue_batch(&deps, (0..n).map(|_| echo()).collect()).await?;
            Ok(())
        },
    )
    .await?;
    report(
        &format!("one batch of {}", opts.batch),
        "task",
        opts.batch,
        1,
        &batch,
    );
    // Made only when measured: its writes would otherwise go unused.
    let pipeline = match opts.pipeline {
        0 => None,
        _ => Some(three_steps(&deps).await?),
    };
    let executions = measure(
        &deps,
        &meters,
        opts.pipeline,
        opts.concurrency,
        window,
        backlog,
        timeout,
        Done::Executions,
        |deps, n| async move {
            let Some(pipeline) = &pipeline else {
                return Ok(());
            };
            for i in 0..n {
                let input = serde_json::json!({"order": i, "items": [1, 2, 3]});
                executions::run_pipeline(&deps, pipeline, TriggerType::Manual, None, input).await?;
            }
            Ok(())
        },
    )
    .await?;
    // Priced per step: an execution of three is three steps for one call.
    report(
        &format!("{} executions of a pipeline of 3 steps", opts.pipeline),
        "step",
        opts.pipeline * 3,
        opts.pipeline,
        &executions,
    );
    println!(
        "(single path: {clients} clients at once; worker: {} at once, batching window {} s; {})",
        opts.concurrency,
        opts.batch_window,
        if backlog {
            "sent before the worker started"
        } else {
            "sent while the worker polled"
        }
    );
    Ok(())
}

/// A pipeline of three steps that run in the worker without calling out:
/// what the engine itself costs per step.
async fn three_steps(deps: &Deps) -> anyhow::Result<warren::domain::pipeline::Pipeline> {
    let spec = serde_json::from_value(serde_json::json!({
        "name": "cost",
        "steps": [
            {"name": "total", "kind": "transform", "expression": "{order: event.order, total: sum(event.items)}"},
            {"name": "label", "kind": "transform", "expression": "{order: steps.total.order, big: steps.total.total > `5`}"},
            {"name": "done", "kind": "transform", "expression": "steps.label"}
        ]
    }))?;
    pipelines::create(deps, spec)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}

fn echo() -> NewTask {
    NewTask {
        args: vec![serde_json::json!("cost")],
        ..NewTask::named("echo", "default")
    }
}

/// What a path consumed, by operation.
struct Measured {
    requests: BTreeMap<String, u64>,
    capacity: BTreeMap<String, Consumed>,
}

/// Requests and capacity by operation for `n` tasks from the first enqueue
/// until the worker has completed them all.
#[allow(clippy::too_many_arguments)] // one call site per mode; a struct would only rename them
async fn measure<F, Fut>(
    deps: &Deps,
    meters: &Meters,
    n: usize,
    concurrency: usize,
    batch_window: Duration,
    backlog: bool,
    timeout: Duration,
    done: Done,
    send: F,
) -> anyhow::Result<Measured>
where
    F: FnOnce(Deps, usize) -> Fut,
    Fut: Future<Output = Result<(), warren::ServiceError>>,
{
    meters.reset();
    if n == 0 {
        return Ok(Measured {
            requests: BTreeMap::new(),
            capacity: BTreeMap::new(),
        });
    }
    let done_before = finished(deps, done);
    let started = Instant::now();
    // Unless measuring a backlog, the worker polls from the start, as the
    // event source mapping does: tasks are received as they trickle in.
    let (stop_tx, stop) = watch::channel(false);
    let start_worker = || {
        tokio::spawn(worker::poll(
            deps.clone(),
            concurrency,
            batch_window,
            stop.clone(),
        ))
    };
    let poller = if backlog {
        send(deps.clone(), n).await?;
        start_worker()
    } else {
        let poller = start_worker();
        send(deps.clone(), n).await?;
        poller
    };
    let deadline = started + timeout;
    let bar = crate::progress::items(n as u64, "finished");
    loop {
        let done = finished(deps, done) - done_before;
        bar.set_position(done);
        if done >= n as u64 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "tasks did not complete within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bar.finish_and_clear();
    let _ = stop_tx.send(true);
    poller.await?;
    if deps.config.counts_from_stream {
        // The stream's last changes are counted by the poll after them.
        tokio::time::sleep(runtime::stream_counts::WINDOW + Duration::from_secs(1)).await;
    }
    eprintln!("{n} tasks in {:.1} s", started.elapsed().as_secs_f64());
    Ok(Measured {
        requests: meters.requests.snapshot(),
        capacity: meters.capacity.snapshot(),
    })
}

/// Tasks this process's worker completed, read from its metrics registry.
/// What a path waits for, by the worker's metric that counts it.
#[derive(Clone, Copy)]
enum Done {
    Tasks,
    Executions,
}

/// How many tasks or executions the worker finished so far.
fn finished(deps: &Deps, what: Done) -> u64 {
    let metric = match what {
        Done::Tasks => "warren_tasks_completed_total",
        Done::Executions => "warren_executions_finished_total",
    };
    let text = deps.metrics.exposition().unwrap_or_default();
    let values = text
        .lines()
        .filter(|l| l.starts_with(metric))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
    values.sum::<f64>() as u64
}

/// List prices, us-east-1, on-demand, after free tiers (checked 2026-12-05).
mod price {
    /// API Gateway HTTP API, per request.
    pub const API_GATEWAY: f64 = 1.00e-6;
    /// Lambda, per invocation.
    pub const LAMBDA_REQUEST: f64 = 0.20e-6;
    /// Lambda arm64, per GB-second.
    pub const LAMBDA_GB_SECOND: f64 = 0.000_013_333_4;
    /// SQS standard, per request.
    pub const SQS_REQUEST: f64 = 0.40e-6;
    /// DynamoDB on-demand, per write request unit.
    pub const WRITE_UNIT: f64 = 0.625e-6;
    /// DynamoDB on-demand, per read request unit.
    pub const READ_UNIT: f64 = 0.125e-6;
    /// Estimated run of an enqueue function: 20 ms at 128 MB.
    pub const ENQUEUE_GB_SECONDS: f64 = 0.020 * 0.125;
    /// Estimated run of a worker batch: 50 ms at 256 MB.
    pub const WORKER_GB_SECONDS: f64 = 0.050 * 0.25;
}

/// Requests, capacity and dollars of one path, per `unit` (a task, a
/// pipeline step); `calls` is how many API calls (and function
/// invocations) carried the `n` units.
fn report(title: &str, unit: &str, n: usize, calls: usize, measured: &Measured) {
    if n == 0 {
        return;
    }
    let per_unit = |x: f64| x / n as f64;
    let total: u64 = measured.requests.values().sum();
    println!(
        "{title}: {n} {unit}s, {total} requests, {:.2} per {unit}",
        per_unit(total as f64)
    );
    for (op, count) in &measured.requests {
        let units = op
            .strip_prefix("DynamoDB.")
            .and_then(|o| measured.capacity.get(o))
            .map(|c| {
                format!(
                    "  WRU {:>6.2}/{unit}  RRU {:>5.2}/{unit}",
                    per_unit(c.writes() as f64),
                    per_unit(c.reads)
                )
            })
            .unwrap_or_default();
        println!(
            "  {op:<36} {count:>7}  {:>6.3}/{unit}{units}",
            per_unit(*count as f64)
        );
    }
    let mut capacity = Consumed::default();
    for c in measured.capacity.values() {
        capacity.add(c);
    }
    println!(
        "  DynamoDB units per {unit}: {:.2} WRU ({:.2} on items, {:.2} on index entries), {:.2} RRU; the endpoint reported {:.2}",
        per_unit(capacity.writes() as f64),
        per_unit(capacity.table_writes as f64),
        per_unit(capacity.index_writes as f64),
        per_unit(capacity.reads),
        per_unit(capacity.reported),
    );
    let sqs = |prefix: &str| -> u64 {
        measured
            .requests
            .iter()
            .filter(|(op, _)| op.starts_with(prefix))
            .map(|(_, c)| c)
            .sum()
    };
    // Each receive that the event source mapping makes is at most one
    // worker invocation.
    let worker_runs = per_unit(sqs("SQS.ReceiveMessage") as f64);
    let enqueue_runs = per_unit(calls as f64);
    let million = 1e6;
    let api = enqueue_runs * price::API_GATEWAY * million;
    let lambda = ((enqueue_runs + worker_runs) * price::LAMBDA_REQUEST
        + (enqueue_runs * price::ENQUEUE_GB_SECONDS + worker_runs * price::WORKER_GB_SECONDS)
            * price::LAMBDA_GB_SECOND)
        * million;
    let queue = per_unit(sqs("SQS.") as f64) * price::SQS_REQUEST * million;
    let table = (per_unit(capacity.writes() as f64) * price::WRITE_UNIT
        + per_unit(capacity.reads) * price::READ_UNIT)
        * million;
    let rest = lambda + queue + table;
    println!(
        "  per million {unit}s: API Gateway ${api:.2}, Lambda ${lambda:.2}, SQS ${queue:.2}, DynamoDB ${table:.2}: ${:.2} (${rest:.2} through a function URL)",
        api + rest
    );
}

/// Requests per API call that authentication adds on AWS, by credential:
/// the first call of a process (nothing cached) and the rest.
async fn auth_costs(deps: &Deps, counter: &RequestCounter, n: usize) -> anyhow::Result<()> {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;
    use warren::domain::identity::{Credential, Permissions, Principal, Role};
    use warren::service::identity::{keys as user_keys, sessions, users};

    const BOOTSTRAP: &str = "cost-bootstrap-key-0123456789";
    let fail = |e: warren::ServiceError| anyhow::anyhow!("{e}");
    let user = users::create(
        deps,
        users::NewUser {
            username: "cost".into(),
            password: keys::password::random_password(),
            role: Role::Admin,
            permissions: Permissions::default(),
            runs_limit: None,
        },
    )
    .await
    .map_err(fail)?;
    let principal = Principal::of_user(&user, Credential::Session, Role::Admin);
    let new_key = user_keys::NewKey {
        name: "cost".into(),
        role: None,
        expires_at: None,
        expires_in_seconds: None,
    };
    let (key, _) = user_keys::create(deps, &principal, new_key)
        .await
        .map_err(fail)?;
    let session = sessions::start(deps, &user, deps.now())
        .await
        .map_err(fail)?;
    let cookie = format!("warren_session={session}");
    let kinds = [
        ("bootstrap key", ("x-api-key", BOOTSTRAP)),
        ("user's API key", ("x-api-key", key.as_str())),
        ("session cookie", ("cookie", cookie.as_str())),
    ];
    println!(
        "requests per GET /api/v1/queues, {n} calls per row (the handler's own reads included)"
    );
    println!(
        "{:<16} {:<14} {:>10} {:>10}",
        "credential", "rate limit", "1st call", "per call"
    );
    for rate_limit in [0, 1_000_000] {
        for (kind, (header, value)) in kinds {
            // A fresh process: nothing cached yet.
            let deps = Deps {
                config: Arc::new(Config {
                    api_key: warren::http::ApiKey::new(Some(BOOTSTRAP)),
                    rate_limit,
                    ..(*deps.config).clone()
                }),
                identity: Default::default(),
                ..deps.clone()
            };
            let app = crate::app(deps);
            let mut first = 0;
            counter.reset();
            for i in 0..n {
                let request = Request::get("/api/v1/queues")
                    .header(header, value)
                    .body(Body::empty())?;
                let answer = app.clone().oneshot(request).await?;
                anyhow::ensure!(answer.status() == 200, "{kind}: {}", answer.status());
                if i == 0 {
                    first = counter.total();
                }
            }
            // What the handler reads itself, and the rest of the calls.
            let rest = (counter.total() - first) as f64 / (n - 1).max(1) as f64;
            let limit = match rate_limit {
                0 => "off",
                _ => "on",
            };
            println!("{kind:<16} {limit:<14} {first:>10} {rest:>10.2}");
        }
    }
    Ok(())
}
