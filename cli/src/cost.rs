//! `warren cost`: what a task costs on AWS, counted. It provisions a fresh
//! table and queue on the configured endpoint (the emulator, or a real
//! account), runs tasks from enqueue to completed through the very code the
//! Lambda functions run (the worker fed as the SQS event source mapping
//! would, in batches of up to ten), and counts every SDK request by
//! operation, retries included.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clap::Args;
use tokio::sync::watch;
use warren::adapters::aws::{AwsClients, RequestCounter, Resources, sdk_config};
use warren::service::enqueue::{NewTask, enqueue, enqueue_batch};
use warren::{Config, Deps, keys, runtime};

#[derive(Args, Debug, Clone)]
pub struct CostOptions {
    /// Tasks sent one by one (POST /api/v1/enqueue).
    #[arg(long, default_value_t = 200)]
    pub single: usize,
    /// Tasks sent in one batch (POST /api/v1/enqueue/batch).
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
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
    /// Instead of tasks, count what authenticating an API call costs: this
    /// many `GET /api/v1/queues` per kind of credential, with and without a
    /// rate limit, through the functions' own routers.
    #[arg(long, default_value_t = 0)]
    pub auth_calls: usize,
}

pub async fn run(opts: CostOptions) -> anyhow::Result<()> {
    let counter = RequestCounter::default();
    let clients = AwsClients::new(&sdk_config().await, Some(&counter));
    let stamp = std::process::id();
    let resources = Resources {
        table: format!("warren-cost-{stamp}"),
        task_queue: format!("warren-cost-{stamp}"),
        topic_queue: format!("warren-cost-topics-{stamp}"),
    };
    crate::provision::ensure(&clients, &resources, Duration::from_secs(60)).await?;
    // Webhooks are not measured: fresh signing secrets stand in for real ones.
    let mut settings = runtime::Overrides::default();
    settings
        .set("WARREN_WEBHOOK_SECRET", Some(keys::generate_secret()))
        .set("WARREN_STEP_SECRET", Some(keys::generate_secret()));
    let config = Config::from_settings(&settings).map_err(|e| anyhow::anyhow!("{e}"))?;
    let http = runtime::http_client(&settings).map_err(|e| anyhow::anyhow!("{e}"))?;
    let deps = runtime::aws(config, http, &resources, Some(&counter)).await;
    // Completions are read from the worker's metrics registry.
    let deps = warren::Deps {
        metrics: std::sync::Arc::new(warren::service::Metrics::prometheus()),
        ..deps
    };
    counter.reset();
    if opts.auth_calls > 0 {
        return auth_costs(&deps, &counter, opts.auth_calls).await;
    }

    let window = Duration::from_secs(opts.batch_window);
    let clients = opts.clients.max(1);
    let backlog = opts.backlog;
    let timeout = Duration::from_secs(opts.timeout);
    let single = measure(
        &deps,
        &counter,
        opts.single,
        opts.concurrency,
        window,
        backlog,
        timeout,
        |deps, n| async move {
            let mut senders = tokio::task::JoinSet::new();
            for c in 0..clients {
                let deps = deps.clone();
                // Client c sends tasks c, c + clients, ...: n in all.
                let count = (c..n).step_by(clients).count();
                senders.spawn(async move {
                    for _ in 0..count {
                        enqueue(&deps, echo()).await?;
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
        },
    )
    .await?;
    report("single enqueue", opts.single, &single);
    let batch = measure(
        &deps,
        &counter,
        opts.batch,
        opts.concurrency,
        window,
        backlog,
        timeout,
        |deps, n| async move {
            enqueue_batch(&deps, (0..n).map(|_| echo()).collect()).await?;
            Ok(())
        },
    )
    .await?;
    report(&format!("one batch of {}", opts.batch), opts.batch, &batch);
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

fn echo() -> NewTask {
    NewTask {
        args: vec![serde_json::json!("cost")],
        ..NewTask::named("echo", "default")
    }
}

/// Requests by operation for `n` tasks from the first enqueue until the
/// worker has completed them all.
#[allow(clippy::too_many_arguments)] // one call site per mode; a struct would only rename them
async fn measure<F, Fut>(
    deps: &Deps,
    counter: &RequestCounter,
    n: usize,
    concurrency: usize,
    batch_window: Duration,
    backlog: bool,
    timeout: Duration,
    send: F,
) -> anyhow::Result<BTreeMap<String, u64>>
where
    F: FnOnce(Deps, usize) -> Fut,
    Fut: Future<Output = Result<(), warren::ServiceError>>,
{
    counter.reset();
    let done_before = completed(deps);
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
    let bar = crate::progress::items(n as u64, "completed");
    loop {
        let done = completed(deps) - done_before;
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
    eprintln!("{n} tasks in {:.1} s", started.elapsed().as_secs_f64());
    Ok(counter.snapshot())
}

/// Tasks this process's worker completed, read from its metrics registry.
fn completed(deps: &Deps) -> u64 {
    let text = deps.metrics.exposition().unwrap_or_default();
    let values = text
        .lines()
        .filter(|l| l.starts_with("warren_tasks_completed_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
    values.sum::<f64>() as u64
}

fn report(title: &str, n: usize, requests: &BTreeMap<String, u64>) {
    if n == 0 {
        return;
    }
    let total: u64 = requests.values().sum();
    println!(
        "{title}: {n} tasks, {total} requests, {:.2} per task",
        total as f64 / n as f64
    );
    for (op, count) in requests {
        println!(
            "  {op:<36} {count:>7}  {:>6.3}/task",
            *count as f64 / n as f64
        );
    }
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
