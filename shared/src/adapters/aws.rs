//! What the DynamoDB and SQS adapters share: one SDK configuration per
//! process (cold start pays for it once), on a single TLS stack (rustls +
//! ring). The endpoint, region and credentials come from the SDK's own
//! environment (`AWS_ENDPOINT_URL`, `AWS_REGION`, ...): no emulator branches.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_dynamodb::config::ConfigBag;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;

use crate::adapters::dynamodb::DynamoStore;
use crate::adapters::http::{GuardedHttpClient, parse_allow_list};
use crate::adapters::sqs::SqsQueue;
use crate::http::ApiKey;
use crate::ports::{Queue, Store};
use crate::service::webhook;
use crate::{Config, Deps};

/// The SDK configuration from the environment.
pub async fn sdk_config() -> SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .load()
        .await
}

/// Counts the requests the SDK sends, by `Service.Operation`, retries
/// included (each attempt is billed). Attach it to the clients to measure
/// what a workload costs.
#[derive(Clone, Debug, Default)]
pub struct RequestCounter(Arc<Mutex<BTreeMap<String, u64>>>);

impl RequestCounter {
    /// Requests so far, by operation.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }

    pub fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }

    pub fn reset(&self) {
        if let Ok(mut m) = self.0.lock() {
            m.clear();
        }
    }
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(meta) = cfg.load::<Metadata>() {
            let key = format!("{}.{}", meta.service(), meta.name());
            if let Ok(mut m) = self.0.lock() {
                *m.entry(key).or_default() += 1;
            }
        }
        Ok(())
    }
}

/// The DynamoDB and SQS clients of a process, built once from one SDK
/// configuration (optionally counting their requests).
#[derive(Clone, Debug)]
pub struct AwsClients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
}

impl AwsClients {
    pub fn new(config: &SdkConfig, counter: Option<&RequestCounter>) -> Self {
        let mut dynamodb = aws_sdk_dynamodb::config::Builder::from(config);
        let mut sqs = aws_sdk_sqs::config::Builder::from(config);
        if let Some(counter) = counter {
            dynamodb = dynamodb.interceptor(counter.clone());
            sqs = sqs.interceptor(counter.clone());
        }
        AwsClients {
            dynamodb: aws_sdk_dynamodb::Client::from_conf(dynamodb.build()),
            sqs: aws_sdk_sqs::Client::from_conf(sqs.build()),
        }
    }

    pub fn store(&self, table: &str) -> Arc<dyn Store> {
        Arc::new(DynamoStore::new(self.dynamodb.clone(), table.to_owned()))
    }

    pub fn queue(&self) -> Arc<dyn Queue> {
        Arc::new(SqsQueue::new(self.sqs.clone()))
    }
}

/// The names of what warren uses on AWS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resources {
    /// The DynamoDB table (`WARREN_TABLE`, default `warren`).
    pub table: String,
    /// The task queue, a name or URL (`WARREN_TASK_QUEUE`, default `warren-tasks`).
    pub task_queue: String,
    /// The topic ingress queue, a name or URL (`WARREN_TOPIC_QUEUE`, default
    /// `warren-topics`).
    pub topic_queue: String,
}

impl Resources {
    pub fn from_env() -> Self {
        Resources {
            table: env_or("WARREN_TABLE", "warren"),
            task_queue: env_or("WARREN_TASK_QUEUE", "warren-tasks"),
            topic_queue: env_or("WARREN_TOPIC_QUEUE", "warren-topics"),
        }
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// What every Lambda function of warren starts with, from its environment:
/// `WARREN_TABLE`, `WARREN_TASK_QUEUE`, `WARREN_TOPIC_QUEUE` (where
/// `POST /api/v1/topics/{topic}/messages` publishes), `WARREN_API_KEY_SHA256` (required
/// unless `WARREN_AUTH=disabled`), `WARREN_WEBHOOK_SECRET` and
/// `WARREN_STEP_SECRET` (required, different: task webhooks and pipeline
/// `http` steps are signed with their own keys),
/// `WARREN_TASK_TIMEOUT` (seconds, default 300), `WARREN_OUTBOUND_ALLOW`,
/// `WARREN_DEFAULT_WORKFLOW` (the pipeline id `POST /events` uses when the
/// request names none), `WARREN_MIN_SCHEDULE_INTERVAL` and
/// `WARREN_EXECUTION_RETENTION` (seconds), `WARREN_METRICS_KEY_SHA256` (the
/// key `/metrics` requires, by hash), `WARREN_PUBLIC_URL`.
/// A missing or malformed setting fails the cold start with its name.
pub async fn lambda_deps() -> Result<Deps, BoxError> {
    init_lambda_logging();
    let api_key = match std::env::var("WARREN_API_KEY_SHA256") {
        Ok(hex) if !hex.trim().is_empty() => {
            ApiKey::from_sha256_hex(&hex).map_err(|e| format!("WARREN_API_KEY_SHA256: {e}"))?
        }
        _ if std::env::var("WARREN_AUTH").as_deref() == Ok("disabled") => {
            tracing::warn!("WARREN_AUTH=disabled: the API is open to anyone who can reach it");
            ApiKey::default()
        }
        _ => {
            return Err(
                "WARREN_API_KEY_SHA256 is not set: give the SHA-256 of the API key (or WARREN_AUTH=disabled)"
                    .into(),
            );
        }
    };
    let secret = |name: &str| -> Result<Vec<u8>, BoxError> {
        let value = std::env::var(name)
            .map_err(|_| format!("{name} is not set (a whsec_... signing secret)"))?;
        Ok(webhook::decode_secret(&value).map_err(|e| format!("{name}: {e}"))?)
    };
    let webhook_secret = secret("WARREN_WEBHOOK_SECRET")?;
    let step_secret = secret("WARREN_STEP_SECRET")?;
    if step_secret == webhook_secret {
        return Err("WARREN_STEP_SECRET must differ from WARREN_WEBHOOK_SECRET".into());
    }
    let default_timeout = match std::env::var("WARREN_TASK_TIMEOUT") {
        Ok(s) => Duration::from_secs(
            s.parse()
                .map_err(|_| format!("WARREN_TASK_TIMEOUT: `{s}` is not a number of seconds"))?,
        ),
        Err(_) => Config::default().default_timeout,
    };
    let allow = parse_allow_list(&std::env::var("WARREN_OUTBOUND_ALLOW").unwrap_or_default())
        .map_err(|e| format!("WARREN_OUTBOUND_ALLOW: {e}"))?;
    let default_workflow = match std::env::var("WARREN_DEFAULT_WORKFLOW") {
        Ok(s) if !s.trim().is_empty() => Some(
            s.trim()
                .parse()
                .map_err(|_| format!("WARREN_DEFAULT_WORKFLOW: `{s}` is not a pipeline id"))?,
        ),
        _ => None,
    };
    let seconds = |name: &str, default: u64| -> Result<u64, BoxError> {
        match std::env::var(name) {
            Ok(s) if !s.trim().is_empty() => Ok(s
                .trim()
                .parse()
                .map_err(|_| format!("{name}: `{s}` is not a number of seconds"))?),
            _ => Ok(default),
        }
    };
    let defaults = Config::default();
    let min_schedule_interval = Duration::from_secs(seconds(
        "WARREN_MIN_SCHEDULE_INTERVAL",
        defaults.min_schedule_interval.as_secs(),
    )?);
    let execution_retention = chrono::Duration::seconds(
        seconds(
            "WARREN_EXECUTION_RETENTION",
            defaults.execution_retention.num_seconds() as u64,
        )?
        .min(100 * 365 * 86_400) as i64,
    );
    let metrics_key = match std::env::var("WARREN_METRICS_KEY_SHA256") {
        Ok(hex) if !hex.trim().is_empty() => {
            ApiKey::from_sha256_hex(&hex).map_err(|e| format!("WARREN_METRICS_KEY_SHA256: {e}"))?
        }
        _ => ApiKey::default(),
    };
    let public_url = std::env::var("WARREN_PUBLIC_URL")
        .ok()
        .filter(|u| !u.trim().is_empty());
    let resources = Resources::from_env();
    let clients = AwsClients::new(&sdk_config().await, None);
    Ok(Deps::live(
        clients.store(&resources.table),
        clients.queue(),
        Arc::new(GuardedHttpClient::new(allow)?),
        Config {
            task_queue: resources.task_queue,
            topic_queue: resources.topic_queue,
            default_timeout,
            webhook_secret,
            step_secret,
            api_key,
            metrics_key,
            default_workflow,
            min_schedule_interval,
            execution_retention,
            public_url,
            ..Config::default()
        },
    ))
}

/// Logs to stdout for CloudWatch, which stamps each line itself: no time,
/// no colour. The level comes from `AWS_LAMBDA_LOG_LEVEL` or `RUST_LOG`.
fn init_lambda_logging() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(level.to_lowercase()))
        .without_time()
        .with_ansi(false)
        .try_init();
}
