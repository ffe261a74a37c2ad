//! `warren dev`: the local runtime. One process serves every endpoint, runs
//! the worker and the topic dispatcher and ticks the scheduler: on an
//! embedded redb store and in-process queues (default), or on DynamoDB and
//! SQS (`--backend aws`, e.g. against LocalStack), polling the task and topic
//! queues the way the Lambda event source mappings do (on the embedded
//! backend a publish dispatches in the request, so only the task queue is
//! polled).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;
use warren::adapters::aws::Resources;
use warren::adapters::embedded::{Durability, EmbeddedStore, MemoryQueue};
use warren::keys;
use warren::ports::StoreError;
use warren::runtime::{self, Overrides};
use warren::service::Metrics;
use warren::service::maintenance::recovery;
use warren::{Config, Deps};

#[derive(Args, Debug, Clone)]
pub struct DevOptions {
    /// Address to listen on. `--open` is refused beyond loopback.
    #[arg(long, default_value = "127.0.0.1", env = "WARREN_HOST")]
    pub host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 8000, env = "WARREN_PORT")]
    pub port: u16,
    /// Where the embedded store lives.
    #[arg(long, default_value = ".warren", env = "WARREN_DATA_DIR")]
    pub data_dir: PathBuf,
    /// `sync`: a 2xx means the write is on disk. `relaxed`: flushed within
    /// ~100 ms (faster on slow disks; a crash may lose the last writes).
    #[arg(long, value_enum, default_value_t = DurabilityArg::Sync, env = "WARREN_DURABILITY")]
    pub durability: DurabilityArg,
    /// MiB of the embedded store's page cache: most of the memory warren
    /// keeps once warm. More speeds up reads of a large store; the kernel's
    /// page cache holds the file either way.
    #[arg(long, default_value_t = warren::adapters::embedded::store::DEFAULT_CACHE_BYTES >> 20, env = "WARREN_STORE_CACHE_MB")]
    pub store_cache_mb: usize,
    /// Tasks run at once by the in-process worker.
    #[arg(long, default_value_t = 20, env = "WARREN_WORKER_CONCURRENCY")]
    pub worker_concurrency: usize,
    /// Seconds a worker receive keeps gathering messages to fill a batch of
    /// ten (the SQS event source's MaximumBatchingWindowInSeconds). 0 runs
    /// each message at once; more saves queue requests under light load.
    #[arg(long, default_value_t = 0, env = "WARREN_BATCH_WINDOW")]
    pub batch_window: u64,
    /// Timeout of tasks that set no `timeout_seconds`.
    #[arg(long, default_value_t = 300, env = "WARREN_TASK_TIMEOUT")]
    pub task_timeout: u64,
    /// Seconds between scheduler ticks.
    #[arg(long, default_value_t = 1.0, env = "WARREN_SCHEDULER_INTERVAL")]
    pub scheduler_interval: f64,
    /// Seconds an `expired` task stays readable before it is deleted.
    #[arg(long, default_value_t = 3600, env = "WARREN_EXPIRED_RETENTION")]
    pub expired_retention: u64,
    /// Seconds after which a pending task not yet started is re-sent.
    #[arg(long, default_value_t = 600, env = "WARREN_REDISPATCH_AFTER")]
    pub redispatch_after: u64,
    /// Private networks outgoing calls (http tasks, webhooks) may reach,
    /// e.g. `127.0.0.1/32,10.0.0.0/8`. Everything private is refused otherwise.
    #[arg(long, default_value = "", env = "WARREN_OUTBOUND_ALLOW")]
    pub outbound_allow: String,
    /// Secret that signs task webhooks (`whsec_...`). Default: one
    /// generated and kept in `<data-dir>/webhook-secret`.
    #[arg(long, env = "WARREN_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// Secret that signs pipeline `http` steps (`whsec_...`), never the
    /// webhook one. Default: one generated and kept in
    /// `<data-dir>/step-secret`.
    #[arg(long, env = "WARREN_STEP_SECRET", hide_env_values = true)]
    pub step_secret: Option<String>,
    /// A bootstrap key (X-API-Key or Bearer) that acts as an admin of its
    /// own, besides users' keys, sessions and JWTs. lapinq's
    /// `LAPINQ_API_KEY` is read when neither this nor WARREN_API_KEY is set.
    #[arg(long, env = "WARREN_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// No credentials needed: a request without any acts as an admin.
    /// Loopback only, for development; credentials sent are still checked.
    #[arg(long, env = "WARREN_OPEN")]
    pub open: bool,
    /// The first admin's password, when no user exists yet (default: a
    /// random one, printed once).
    #[arg(long, env = "WARREN_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// Seconds a login session lasts.
    #[arg(long, default_value_t = 12 * 3600, env = "WARREN_SESSION_TTL")]
    pub session_ttl: u64,
    /// The OIDC issuer whose JWT bearer tokens are accepted (`iss`), e.g.
    /// `https://cognito-idp.<region>.amazonaws.com/<pool id>`.
    #[arg(long, env = "WARREN_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// The audience the tokens must name (`aud`).
    #[arg(long, env = "WARREN_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Where the issuer's signing keys are (default:
    /// `<issuer>/.well-known/jwks.json`).
    #[arg(long, env = "WARREN_JWT_JWKS_URL")]
    pub jwt_jwks_url: Option<String>,
    /// The claim that names the user's role (e.g. `cognito:groups`).
    #[arg(long, env = "WARREN_JWT_ROLE_CLAIM")]
    pub jwt_role_claim: Option<String>,
    /// The role of a token user the claims give none.
    #[arg(long, default_value = "user", env = "WARREN_JWT_DEFAULT_ROLE")]
    pub jwt_default_role: String,
    /// The key that seals stored secrets (base64, 32 bytes). Default: one
    /// generated and kept in `<data-dir>/secrets-key`.
    #[arg(long, env = "WARREN_SECRETS_KEY", hide_env_values = true)]
    pub secrets_key: Option<String>,
    /// Origins browsers may call the API from (comma-separated, `*` for
    /// any): CORS answers, preflights included. Default: none.
    #[arg(long, env = "WARREN_CORS_ORIGIN", value_delimiter = ',')]
    pub cors_origin: Vec<String>,
    /// Requests per minute per principal (per client address without
    /// credentials) on the API (429 past it); 0 is no limit. lapinq's `LAPINQ_RATE_LIMIT` is read when neither this
    /// nor WARREN_RATE_LIMIT is set.
    #[arg(long, env = "WARREN_RATE_LIMIT")]
    pub rate_limit: Option<u32>,
    /// The pipeline `POST /events` runs when the request names none
    /// (`?workflow=`).
    #[arg(long, env = "WARREN_DEFAULT_WORKFLOW")]
    pub default_workflow: Option<uuid::Uuid>,
    /// The key `GET /metrics` requires (Authorization: Bearer, or
    /// X-API-Key). Default: /metrics is public.
    #[arg(long, env = "WARREN_METRICS_KEY", hide_env_values = true)]
    pub metrics_key: Option<String>,
    /// The URL clients reach this API at, for the links it hands out (a
    /// webhook trigger's URL). Default: the Host the request named.
    #[arg(long, env = "WARREN_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Shortest interval, in seconds, between two fires of a schedule trigger.
    #[arg(long, default_value_t = 60, env = "WARREN_MIN_SCHEDULE_INTERVAL")]
    pub min_schedule_interval: u64,
    /// Seconds a finished pipeline execution (and its event) stays readable
    /// before it is deleted (default 30 days).
    #[arg(long, default_value_t = 30 * 86_400, env = "WARREN_EXECUTION_RETENTION")]
    pub execution_retention: u64,
    /// Serve the API only: no worker, no topic dispatcher.
    #[arg(long)]
    pub no_worker: bool,
    /// Log lines for people (`text`, coloured on a terminal) or one JSON
    /// object per line for a log pipeline (`json`).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "WARREN_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Where state lives: `embedded` (redb under --data-dir, in-process
    /// queue) or `aws` (DynamoDB + SQS at AWS_ENDPOINT_URL or in AWS;
    /// create them first with `warren provision`).
    #[arg(long, value_enum, default_value_t = Backend::Embedded, env = "WARREN_BACKEND")]
    pub backend: Backend,
    /// The DynamoDB table (`--backend aws`).
    #[arg(long, env = "WARREN_TABLE", default_value = "warren")]
    pub table: String,
    /// The task queue, a name or URL (`--backend aws`).
    #[arg(long, env = "WARREN_TASK_QUEUE", default_value = "warren-tasks")]
    pub task_queue: String,
    /// The topic ingress queue, a name or URL (`--backend aws`): producers
    /// may send to it straight, with the message attribute `topic`.
    #[arg(long, env = "WARREN_TOPIC_QUEUE", default_value = "warren-topics")]
    pub topic_queue: String,
    /// Where queue counts are kept (`--backend aws`): `inline`, in each
    /// status change's transaction; `stream`, from the table's change
    /// stream, which this process reads (a quarter of the write units, counts
    /// a moment behind).
    #[arg(long, env = "WARREN_COUNTS", default_value = "inline")]
    pub counts: String,
}

/// The shortest key accepted on a non-loopback address.
const MIN_KEY_CHARS: usize = 16;

/// Receives of one message before the embedded queue dead-letters it
/// (template.yaml's `maxReceiveCount`).
const MAX_RECEIVES: u32 = 5;

/// Topic messages dispatched at once: one SQS batch. Dispatching only
/// writes and queues executions (the worker runs them), so one batch keeps up.
const DISPATCH_CONCURRENCY: usize = 10;

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Aws,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DurabilityArg {
    Sync,
    Relaxed,
}

pub async fn run(opts: DevOptions) -> anyhow::Result<()> {
    let started = Instant::now();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // A log line that cannot be written (stderr a file on a full disk)
        // is dropped: the fallback, eprintln!, panics the thread that logged.
        .log_internal_errors(false);
    match opts.log_format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => logs.json().with_current_span(true).init(),
    }

    let spans = crate::otel::start_from_env()?;
    let ip = resolve_host(&opts.host)?;
    // lapinq's names, so a lapinq deployment moves over by its URL alone.
    let lapinq = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let mut opts = opts;
    opts.api_key = opts.api_key.clone().or_else(|| lapinq("LAPINQ_API_KEY"));
    opts.rate_limit = match (opts.rate_limit, lapinq("LAPINQ_RATE_LIMIT")) {
        (Some(n), _) => Some(n),
        (None, Some(n)) => Some(
            n.parse()
                .with_context(|| format!("LAPINQ_RATE_LIMIT: `{n}` is not a number"))?,
        ),
        (None, None) => None,
    };
    let keyed = opts.api_key.as_deref().is_some_and(|k| !k.is_empty());
    if opts.open {
        if keyed {
            bail!(
                "--open serves without credentials; it makes no sense with WARREN_API_KEY: choose one"
            );
        }
        if !ip.is_loopback() {
            bail!(
                "refusing to serve an open API on {ip}: drop --open (users sign in), or bind a loopback address"
            );
        }
        tracing::warn!("--open: the API needs no credentials (loopback only)");
    }
    for (name, key) in [
        ("WARREN_API_KEY", &opts.api_key),
        ("WARREN_METRICS_KEY", &opts.metrics_key),
    ] {
        let chars = key.as_deref().map_or(0, |k| k.chars().count());
        if (1..MIN_KEY_CHARS).contains(&chars) && !ip.is_loopback() {
            bail!(
                "{name} is {chars} characters; one served beyond loopback needs at least {MIN_KEY_CHARS}"
            );
        }
    }
    std::fs::create_dir_all(&opts.data_dir)
        .with_context(|| format!("creating data directory {}", opts.data_dir.display()))?;
    let config = Config::from_settings(&settings(&opts)?).map_err(|e| anyhow::anyhow!("{e}"))?;
    let http = runtime::http_client(&settings(&opts)?).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (deps, embedded) = match opts.backend {
        Backend::Embedded => {
            let durability = match opts.durability {
                DurabilityArg::Sync => Durability::Sync,
                DurabilityArg::Relaxed => Durability::Relaxed,
            };
            // A file-size limit (ulimit -f, systemd's LimitFSIZE) then fails
            // the write that passes it with EFBIG, answered 507 like a full
            // disk, instead of killing the process with SIGXFSZ.
            // SAFETY: setting a signal's disposition to SIG_IGN installs no
            // handler and touches no memory.
            unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
            let store = Arc::new(
                EmbeddedStore::open_cached(
                    &opts.data_dir.join("warren.redb"),
                    durability,
                    opts.store_cache_mb.saturating_mul(1 << 20),
                )
                .map_err(|e| match e {
                    // Its own line names the file and what to do.
                    StoreError::Unavailable(why) => anyhow::anyhow!("{why}"),
                    e => anyhow::anyhow!("{e}"),
                })?,
            );
            // As template.yaml's redrive policy: a message that fails five
            // receives in a row goes to `<queue>-dlq`, not round forever.
            let queue = Arc::new(MemoryQueue::with_redrive(MAX_RECEIVES));
            let deps = runtime::embedded(config, http, store.clone(), queue);
            (deps, Some(store))
        }
        Backend::Aws => {
            let resources = Resources {
                table: opts.table.clone(),
                task_queue: opts.task_queue.clone(),
                topic_queue: opts.topic_queue.clone(),
            };
            (runtime::aws(config, http, &resources, None).await, None)
        }
    };
    // What `GET /metrics` serves beside the store's counts.
    let deps = Deps {
        metrics: Arc::new(Metrics::prometheus()),
        ..deps
    };

    if embedded.is_some() {
        // The in-process queue starts empty: refill it from the store.
        let (resent, rescued) = recovery::recover_exclusive(&deps)
            .await
            .map_err(|e| anyhow::anyhow!("recovering tasks: {e}"))?;
        if resent + rescued > 0 {
            tracing::info!(resent, rescued, "recovered tasks from the store");
        }
    }

    let (stop_tx, stop) = watch::channel(false);
    let worker = (!opts.no_worker).then(|| {
        tokio::spawn(worker::poll(
            deps.clone(),
            opts.worker_concurrency,
            Duration::from_secs(opts.batch_window),
            stop.clone(),
        ))
    });
    // On the embedded backend a publish dispatches in the request
    // (`dispatch_inline`): its in-process topic queue carries nothing to poll.
    let dispatcher = (!opts.no_worker && embedded.is_none()).then(|| {
        tokio::spawn(dispatcher::poll(
            deps.clone(),
            DISPATCH_CONCURRENCY,
            stop.clone(),
        ))
    });
    // On AWS the `counts` function keeps the counts from the table's stream
    // (`WARREN_COUNTS=stream`); here this process does.
    if embedded.is_none() && deps.config.counts_from_stream {
        runtime::stream_counts::spawn(deps.clone(), opts.table.clone(), stop.clone());
    }
    let interval = Duration::from_secs_f64(opts.scheduler_interval.max(0.05));
    let ticker = tokio::spawn(scheduler::run_every(deps.clone(), interval, stop.clone()));
    // Histogram samples wait in the registry until drained into buckets:
    // drain them even when nobody scrapes /metrics.
    let metrics = deps.metrics.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            metrics.upkeep();
        }
    });
    tokio::spawn(warren::runtime::idle::watch());

    let listener = tokio::net::TcpListener::bind(SocketAddr::new(ip, opts.port))
        .await
        .with_context(|| format!("binding {}:{}", ip, opts.port))?;
    let addr = listener.local_addr()?;
    let gateway = crate::Gateway {
        cors_origins: opts
            .cors_origin
            .iter()
            .map(|o| o.trim().to_string())
            .filter(|o| !o.is_empty())
            .collect(),
        open: opts.open,
    };
    first_admin(&deps, opts.admin_password.clone()).await?;
    let app = warren_cli_app(deps.clone(), &gateway);
    println!("warren listening on http://{addr}");
    tracing::info!(
        %addr,
        backend = ?opts.backend,
        data_dir = %opts.data_dir.display(),
        durability = ?opts.durability,
        ready_ms = started.elapsed().as_millis() as u64,
        "warren dev is ready"
    );

    let mut shutdown = stop.clone();
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = shutdown_signal() => {}
                _ = shutdown.changed() => {}
            }
        })
        .await?;
    tracing::info!("shutting down: finishing running tasks");
    let _ = stop_tx.send(true);
    if let Some(w) = worker {
        let _ = tokio::time::timeout(Duration::from_secs(30), w).await;
    }
    if let Some(d) = dispatcher {
        let _ = tokio::time::timeout(Duration::from_secs(30), d).await;
    }
    let _ = ticker.await;
    if let Some(store) = embedded {
        store
            .flush()
            .await
            .map_err(|e| anyhow::anyhow!("final flush: {e}"))?;
    }
    if let Some(spans) = spans {
        spans.shutdown(Duration::from_secs(5)).await;
    }
    Ok(())
}

fn warren_cli_app(deps: Deps, gateway: &crate::Gateway) -> axum::Router {
    // Spans name the path without its secrets (a hook's token is its credential).
    let trace = tower_http::trace::TraceLayer::new_for_http().make_span_with(
        |req: &axum::http::Request<axum::body::Body>| {
            tracing::debug_span!(
                "request",
                method = %req.method(),
                path = %warren::http::redacted_path(req.uri().path()),
            )
        },
    );
    crate::gateway(deps, gateway).layer(trace)
}

fn resolve_host(host: &str) -> anyhow::Result<IpAddr> {
    if host == "localhost" {
        return Ok(IpAddr::from([127, 0, 0, 1]));
    }
    host.parse()
        .with_context(|| format!("--host must be an IP address (or localhost), got `{host}`"))
}

/// The engine's settings as the command line gave them (clap has read the
/// environment behind each option already), with the signing secrets
/// generated into the data directory when none is given.
fn settings(opts: &DevOptions) -> anyhow::Result<Overrides> {
    let mut s = Overrides::default();
    s.set("WARREN_TASK_TIMEOUT", Some(opts.task_timeout))
        .set("WARREN_EXPIRED_RETENTION", Some(opts.expired_retention))
        .set("WARREN_REDISPATCH_AFTER", Some(opts.redispatch_after))
        .set(
            "WARREN_MIN_SCHEDULE_INTERVAL",
            Some(opts.min_schedule_interval),
        )
        .set("WARREN_EXECUTION_RETENTION", Some(opts.execution_retention))
        .set("WARREN_OUTBOUND_ALLOW", Some(&opts.outbound_allow))
        .set("WARREN_API_KEY", opts.api_key.as_ref())
        .set("WARREN_AUTH", opts.open.then_some("disabled"))
        .set("WARREN_RATE_LIMIT", opts.rate_limit)
        .set("WARREN_SESSION_TTL", Some(opts.session_ttl))
        .set("WARREN_JWT_ISSUER", opts.jwt_issuer.as_ref())
        .set("WARREN_JWT_AUDIENCE", opts.jwt_audience.as_ref())
        .set("WARREN_JWT_JWKS_URL", opts.jwt_jwks_url.as_ref())
        .set("WARREN_JWT_ROLE_CLAIM", opts.jwt_role_claim.as_ref())
        .set("WARREN_JWT_DEFAULT_ROLE", Some(&opts.jwt_default_role))
        .set(
            "WARREN_SECRETS_KEY",
            Some(secrets_key(opts.secrets_key.as_deref(), &opts.data_dir)?),
        )
        .set("WARREN_METRICS_KEY", opts.metrics_key.as_ref())
        .set("WARREN_DEFAULT_WORKFLOW", opts.default_workflow)
        .set("WARREN_PUBLIC_URL", opts.public_url.as_ref())
        .set("WARREN_COUNTS", Some(&opts.counts))
        .set(
            "WARREN_WEBHOOK_SECRET",
            Some(signing_secret(
                opts.webhook_secret.as_deref(),
                &opts.data_dir,
                "webhook-secret",
            )?),
        )
        .set(
            "WARREN_STEP_SECRET",
            Some(signing_secret(
                opts.step_secret.as_deref(),
                &opts.data_dir,
                "step-secret",
            )?),
        );
    Ok(s)
}

/// Make the first admin when no user exists, and say so once: the
/// password goes to the terminal (stdout) only when it was generated.
pub async fn first_admin(deps: &Deps, password: Option<String>) -> anyhow::Result<()> {
    let given = password.is_some();
    let made = warren::service::identity::users::ensure_first_admin(deps, password)
        .await
        .map_err(|e| anyhow::anyhow!("creating the first admin: {e}"))?;
    if let Some((username, password)) = made {
        match given {
            true => println!(
                "warren: created the first admin `{username}` with the password in WARREN_ADMIN_PASSWORD"
            ),
            false => println!(
                "warren: created the first admin `{username}`, password `{password}` (shown once: sign in at /login and change it with POST /account/password)"
            ),
        }
    }
    Ok(())
}

/// The key that seals stored secrets: given, or generated once into the
/// data directory.
fn secrets_key(given: Option<&str>, data_dir: &Path) -> anyhow::Result<String> {
    if let Some(k) = given {
        return Ok(k.to_string());
    }
    let path = data_dir.join("secrets-key");
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(s.trim().to_string()),
        Err(_) => {
            let key = warren::keys::sealing::MasterKey::generate().to_base64();
            write_private(&path, &key)?;
            tracing::info!(path = %path.display(), "generated the key that seals stored secrets");
            Ok(key)
        }
    }
}

/// A signing key (`whsec_...`): given, or generated once and kept beside
/// the data in `file`.
fn signing_secret(given: Option<&str>, data_dir: &Path, file: &str) -> anyhow::Result<String> {
    if let Some(s) = given {
        return Ok(s.to_string());
    }
    let path = data_dir.join(file);
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(s.trim().to_string()),
        Err(_) => {
            let s = keys::generate_secret();
            write_private(&path, &s)?;
            tracing::info!(path = %path.display(), "generated a signing secret");
            Ok(s)
        }
    }
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
