//! The composition root: how a process turns its settings into the
//! [`Deps`] every use case takes. Every Lambda function, `warren dev` and
//! `warren cost` build theirs here, from the same settings with the same
//! names (`template.yaml`'s environment variables), so no runtime
//! assembles the engine a second way. [`consumer`] is how a runtime
//! consumes a queue.

pub mod consumer;
pub mod idle;
pub mod stream_counts;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_smithy_runtime_api::box_error::BoxError;

use crate::adapters::aws::{AwsClients, Meters, Resources, lambda_sdk_config, sdk_config};
use crate::adapters::http::{GuardedHttpClient, parse_allow_list};
use crate::config::JwtConfig;
use crate::domain::identity::Role;
use crate::handlers::Registry;
use crate::jwt::JwtSettings;
use crate::keys::sealing::MasterKey;
use crate::keys::{ApiKey, decode_secret};
use crate::ports::{HttpClient, Queue, Store};
use crate::service::Metrics;
use crate::{Config, Deps};
use aws_types::SdkConfig;

/// Where settings come from: a name (`WARREN_TASK_TIMEOUT`, ...) to its
/// value, `None` when unset.
pub trait Settings {
    /// The value of `name`, `None` when it is unset or blank.
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct Env;

impl Settings for Env {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
    }
}

/// Values gathered some other way (a command line that already read the
/// environment, generated files), under the same names.
#[derive(Clone, Debug, Default)]
pub struct Overrides(pub BTreeMap<&'static str, String>);

impl Overrides {
    /// Set `name` to `value` when there is one.
    pub fn set(&mut self, name: &'static str, value: Option<impl ToString>) -> &mut Self {
        if let Some(v) = value {
            self.0.insert(name, v.to_string());
        }
        self
    }
}

impl Settings for Overrides {
    fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).filter(|v| !v.trim().is_empty()).cloned()
    }
}

/// A setting that failed to read: its name and why.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {why}")]
pub struct SettingError {
    pub name: &'static str,
    pub why: String,
}

fn bad(name: &'static str, why: impl Into<String>) -> SettingError {
    SettingError {
        name,
        why: why.into(),
    }
}

/// Seconds, as a whole number; `default` when unset.
fn seconds(
    s: &dyn Settings,
    name: &'static str,
    default: Duration,
) -> Result<Duration, SettingError> {
    match s.get(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse::<u64>()
            .map(|n| Duration::from_secs(n.min(100 * 365 * 86_400)))
            .map_err(|_| bad(name, format!("`{v}` is not a number of seconds"))),
    }
}

/// A key given in plain (`<NAME>`) or by its SHA-256 (`<NAME>_SHA256`), so
/// a deployment need never hold the key itself.
fn key(
    s: &dyn Settings,
    plain: &'static str,
    hashed: &'static str,
) -> Result<ApiKey, SettingError> {
    if let Some(hex) = s.get(hashed) {
        return ApiKey::from_sha256_hex(&hex).map_err(|e| bad(hashed, e));
    }
    Ok(ApiKey::new(s.get(plain).as_deref()))
}

/// A signing secret, or none (a process that never signs: empty).
fn secret(s: &dyn Settings, name: &'static str) -> Result<Vec<u8>, SettingError> {
    match s.get(name) {
        Some(value) => decode_secret(&value).map_err(|e| bad(name, e)),
        None => Ok(Vec::new()),
    }
}

/// `WARREN_AUTH`: `required` (the default) or `disabled` (no credentials
/// needed: loopback development only).
fn auth_disabled(s: &dyn Settings) -> Result<bool, SettingError> {
    match s.get("WARREN_AUTH").as_deref().map(str::trim) {
        None | Some("required") => Ok(false),
        Some("disabled") => Ok(true),
        Some(other) => Err(bad(
            "WARREN_AUTH",
            format!("must be `required` or `disabled`, not `{other}`"),
        )),
    }
}

/// JWT bearer tokens, when `WARREN_JWT_ISSUER` is set: with
/// `WARREN_JWT_AUDIENCE` and `WARREN_JWT_JWKS_URL` (default
/// `<issuer>/.well-known/jwks.json`), `WARREN_JWT_ROLE_CLAIM`,
/// `WARREN_JWT_DEFAULT_ROLE` (`user`) and `WARREN_JWT_LEEWAY` (seconds, 60).
fn jwt(s: &dyn Settings) -> Result<Option<JwtConfig>, SettingError> {
    let Some(issuer) = s.get("WARREN_JWT_ISSUER") else {
        return Ok(None);
    };
    let issuer = issuer.trim().to_string();
    let audience = s.get("WARREN_JWT_AUDIENCE").ok_or_else(|| {
        bad(
            "WARREN_JWT_AUDIENCE",
            "required with WARREN_JWT_ISSUER (the audience tokens are issued for)",
        )
    })?;
    let jwks_url = s
        .get("WARREN_JWT_JWKS_URL")
        .unwrap_or_else(|| format!("{}/.well-known/jwks.json", issuer.trim_end_matches('/')));
    match reqwest::Url::parse(&jwks_url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {}
        _ => {
            return Err(bad(
                "WARREN_JWT_JWKS_URL",
                format!("must be an http(s) URL, got `{jwks_url}`"),
            ));
        }
    }
    let default_role = match s.get("WARREN_JWT_DEFAULT_ROLE") {
        Some(r) => r.parse().map_err(|e| bad("WARREN_JWT_DEFAULT_ROLE", e))?,
        None => Role::User,
    };
    Ok(Some(JwtConfig {
        settings: JwtSettings {
            issuer,
            audience: audience.trim().to_string(),
            jwks_url,
            leeway: seconds(s, "WARREN_JWT_LEEWAY", Duration::from_secs(60))?,
        },
        role_claim: s.get("WARREN_JWT_ROLE_CLAIM"),
        default_role,
    }))
}

impl Config {
    /// The engine's settings from the environment (see [`Config::from_settings`]).
    pub fn from_env() -> Result<Config, SettingError> {
        Config::from_settings(&Env)
    }

    /// The engine's settings: `WARREN_TASK_QUEUE`, `WARREN_TOPIC_QUEUE`,
    /// `WARREN_TASK_TIMEOUT`, `WARREN_EXPIRED_RETENTION`,
    /// `WARREN_REDISPATCH_AFTER`, `WARREN_MIN_SCHEDULE_INTERVAL`,
    /// `WARREN_EXECUTION_RETENTION`, `WARREN_VISIBILITY` (seconds: how long
    /// a received task message stays hidden; the queue's visibility timeout
    /// where the queue, not warren, receives, as Lambda's event source
    /// mapping does), `WARREN_WEBHOOK_SECRET` and
    /// `WARREN_STEP_SECRET` (different; only a process that signs needs them,
    /// see [`require_signing`]), `WARREN_API_KEY[_SHA256]`
    /// and `WARREN_METRICS_KEY[_SHA256]` (optional here: each runtime decides
    /// whether it may serve without), `WARREN_DEFAULT_WORKFLOW`,
    /// `WARREN_PUBLIC_URL`; identity and access: `WARREN_AUTH`, the
    /// `WARREN_JWT_*` settings, `WARREN_SESSION_TTL`, `WARREN_RATE_LIMIT`,
    /// `WARREN_SECRETS_KEY` (base64) or `WARREN_SECRETS_KEY_PARAMETER` (an
    /// SSM SecureString). A malformed setting is refused with its name.
    pub fn from_settings(s: &dyn Settings) -> Result<Config, SettingError> {
        let defaults = Config::default();
        let webhook_secret = secret(s, "WARREN_WEBHOOK_SECRET")?;
        let step_secret = secret(s, "WARREN_STEP_SECRET")?;
        if !step_secret.is_empty() && step_secret == webhook_secret {
            return Err(bad(
                "WARREN_STEP_SECRET",
                "must differ from the webhook secret",
            ));
        }
        let default_workflow = match s.get("WARREN_DEFAULT_WORKFLOW") {
            Some(w) => Some(w.trim().parse().map_err(|_| {
                bad(
                    "WARREN_DEFAULT_WORKFLOW",
                    format!("`{w}` is not a pipeline id"),
                )
            })?),
            None => None,
        };
        let public_url = match s.get("WARREN_PUBLIC_URL") {
            Some(u) => match reqwest::Url::parse(&u) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                    Some(u)
                }
                _ => {
                    return Err(bad(
                        "WARREN_PUBLIC_URL",
                        format!("must be an absolute http(s) URL, got `{u}`"),
                    ));
                }
            },
            None => None,
        };
        let retention = |name, default: chrono::Duration| {
            seconds(s, name, default.to_std().unwrap_or_default())
                .map(|d| chrono::Duration::from_std(d).unwrap_or(default))
        };
        Ok(Config {
            task_queue: s.get("WARREN_TASK_QUEUE").unwrap_or(defaults.task_queue),
            topic_queue: s.get("WARREN_TOPIC_QUEUE").unwrap_or(defaults.topic_queue),
            default_timeout: seconds(s, "WARREN_TASK_TIMEOUT", defaults.default_timeout)?,
            expired_retention: retention("WARREN_EXPIRED_RETENTION", defaults.expired_retention)?,
            redispatch_after: seconds(s, "WARREN_REDISPATCH_AFTER", defaults.redispatch_after)?,
            min_schedule_interval: seconds(
                s,
                "WARREN_MIN_SCHEDULE_INTERVAL",
                defaults.min_schedule_interval,
            )?,
            execution_retention: retention(
                "WARREN_EXECUTION_RETENTION",
                defaults.execution_retention,
            )?,
            webhook_secret,
            step_secret,
            api_key: key(s, "WARREN_API_KEY", "WARREN_API_KEY_SHA256")?,
            metrics_key: key(s, "WARREN_METRICS_KEY", "WARREN_METRICS_KEY_SHA256")?,
            open: auth_disabled(s)?,
            jwt: jwt(s)?,
            session_ttl: seconds(s, "WARREN_SESSION_TTL", defaults.session_ttl)?,
            rate_limit: match s.get("WARREN_RATE_LIMIT") {
                Some(v) => v.trim().parse().map_err(|_| {
                    bad(
                        "WARREN_RATE_LIMIT",
                        format!("`{v}` is not a number of requests per minute"),
                    )
                })?,
                None => 0,
            },
            secrets_key: match s.get("WARREN_SECRETS_KEY") {
                Some(v) => {
                    Some(MasterKey::from_base64(&v).map_err(|e| bad("WARREN_SECRETS_KEY", e))?)
                }
                None => None,
            },
            secrets_key_parameter: s.get("WARREN_SECRETS_KEY_PARAMETER"),
            counts_from_stream: match s.get("WARREN_COUNTS").as_deref().map(str::trim) {
                None | Some("inline") => false,
                Some("stream") => true,
                Some(other) => {
                    return Err(bad(
                        "WARREN_COUNTS",
                        format!("`{other}` is neither `inline` nor `stream`"),
                    ));
                }
            },
            visibility: seconds(s, "WARREN_VISIBILITY", defaults.visibility)?,
            default_workflow,
            public_url,
            ..defaults
        })
    }
}

impl Deps {
    /// The dependencies of a running process (`warren dev`, a Lambda
    /// function, `warren cost`): the system clock, the registered task
    /// handlers and fresh metrics around the given backends.
    pub fn live(
        store: Arc<dyn Store>,
        queue: Arc<dyn Queue>,
        http: Arc<dyn HttpClient>,
        config: Config,
    ) -> Deps {
        Deps {
            store,
            queue,
            clock: Arc::new(crate::adapters::clock::SystemClock),
            http,
            handlers: Arc::new(Registry::standard()),
            metrics: Default::default(),
            config: Arc::new(config),
            identity: Default::default(),
        }
    }
}

/// Outgoing HTTP with the SSRF guard, reaching beyond public addresses only
/// the networks `WARREN_OUTBOUND_ALLOW` names.
pub fn http_client(s: &dyn Settings) -> Result<GuardedHttpClient, SettingError> {
    let allow = parse_allow_list(&s.get("WARREN_OUTBOUND_ALLOW").unwrap_or_default())
        .map_err(|e| bad("WARREN_OUTBOUND_ALLOW", e))?;
    GuardedHttpClient::new(allow).map_err(|e| bad("WARREN_OUTBOUND_ALLOW", e.to_string()))
}

/// The dependencies of a process on DynamoDB and SQS (the tables and queues
/// `resources` names), optionally metering its AWS requests.
pub async fn aws(
    config: Config,
    http: GuardedHttpClient,
    resources: &Resources,
    meters: Option<&Meters>,
) -> Deps {
    on_aws(&sdk_config().await, config, http, resources, meters)
}

/// [`aws`] on the SDK configuration `sdk`.
fn on_aws(
    sdk: &SdkConfig,
    config: Config,
    http: GuardedHttpClient,
    resources: &Resources,
    meters: Option<&Meters>,
) -> Deps {
    let clients = AwsClients::new(sdk, meters);
    Deps::live(
        clients.store(&resources.table),
        clients.queue(),
        Arc::new(http),
        Config {
            task_queue: resources.task_queue.clone(),
            topic_queue: resources.topic_queue.clone(),
            snapshot_messages: true,
            send_first: true,
            dispatch_inline: false,
            // Many processes (Lambda containers) share the limits.
            shared_limits: true,
            ..config
        },
    )
}

/// The dependencies of a process that holds its store and queue itself
/// (the embedded runtime): the queue dies with the process, so publishes
/// dispatch at once and task messages carry only ids (a read is cheap).
pub fn embedded(
    config: Config,
    http: GuardedHttpClient,
    store: Arc<dyn Store>,
    queue: Arc<dyn Queue>,
) -> Deps {
    Deps::live(
        store,
        queue,
        Arc::new(http),
        Config {
            snapshot_messages: false,
            dispatch_inline: true,
            shared_limits: false,
            // No change stream: counts change with the tasks.
            counts_from_stream: false,
            ..config
        },
    )
}

/// What every Lambda function of warren starts with: logging for
/// CloudWatch, then [`Config::from_env`] on DynamoDB and SQS (`WARREN_TABLE`
/// and the queues), and metrics as CloudWatch EMF (namespace
/// `WARREN_METRICS_NAMESPACE`, default `warren`; none with
/// `WARREN_METRICS=off`) written after each invocation by [`serve_http`] or
/// the event mains. Callers authenticate as
/// users (keys, sessions, JWTs) or with the bootstrap key, unless
/// `WARREN_AUTH=disabled`. A missing or malformed setting fails the cold
/// start with its name.
pub async fn lambda() -> Result<Deps, BoxError> {
    // The runtime's subscriber: JSON lines carrying the invocation's
    // `requestId` when the function's log format is JSON
    // (`AWS_LAMBDA_LOG_FORMAT`), level from `AWS_LAMBDA_LOG_LEVEL` or
    // `RUST_LOG`; CloudWatch stamps the time.
    lambda_http::tracing::init_default_subscriber();
    let config = Config {
        // API Gateway and function URLs serve HTTPS only.
        secure_cookies: true,
        ..Config::from_settings(&Layered(&signing_secrets(&Env).await?, &Env))?
    };
    if config.open {
        tracing::warn!("WARREN_AUTH=disabled: the API is open to anyone who can reach it");
    }
    let http = http_client(&Env)?;
    let sdk = lambda_sdk_config()?;
    let mut deps = on_aws(&sdk, config, http, &Resources::from_env(), None);
    deps.metrics = Arc::new(match Env.get("WARREN_METRICS").as_deref() {
        None | Some("emf") => {
            let namespace = Env
                .get("WARREN_METRICS_NAMESPACE")
                .unwrap_or_else(|| "warren".into());
            let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_default();
            Metrics::emf(&namespace, &function)?
        }
        Some("off") => Metrics::off(),
        Some(other) => return Err(format!("WARREN_METRICS: `{other}` is not emf or off").into()),
    });
    Ok(deps)
}

/// The settings of `first`, then those of `then`.
struct Layered<'a>(&'a Overrides, &'a dyn Settings);

impl Settings for Layered<'_> {
    fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).or_else(|| self.1.get(name))
    }
}

/// Each signing secret of `s` that is given as the name of an SSM
/// SecureString (`WARREN_WEBHOOK_SECRET_PARAMETER`,
/// `WARREN_STEP_SECRET_PARAMETER`), read from SSM: so the secrets reach only
/// the functions that sign, and never sit in their configuration.
async fn signing_secrets(s: &dyn Settings) -> Result<Overrides, BoxError> {
    let mut settings = Overrides::default();
    for (secret, parameter) in [
        ("WARREN_WEBHOOK_SECRET", "WARREN_WEBHOOK_SECRET_PARAMETER"),
        ("WARREN_STEP_SECRET", "WARREN_STEP_SECRET_PARAMETER"),
    ] {
        if let (None, Some(name)) = (s.get(secret), s.get(parameter)) {
            let value = crate::adapters::ssm::secure_parameter(&name)
                .await
                .map_err(|e| format!("{parameter}: {e}"))?;
            settings.set(secret, Some(value));
        }
    }
    Ok(settings)
}

/// Fail the start of a process that signs (the worker: webhooks and
/// pipeline `http` steps) unless it has both signing secrets.
pub fn require_signing(deps: &Deps) -> Result<(), BoxError> {
    for (secret, name) in [
        (&deps.config.webhook_secret, "WARREN_WEBHOOK_SECRET"),
        (&deps.config.step_secret, "WARREN_STEP_SECRET"),
    ] {
        if secret.is_empty() {
            return Err(format!(
                "{name} (or {name}_PARAMETER, an SSM SecureString): not set; this function signs with it"
            )
            .into());
        }
    }
    Ok(())
}

/// Serve an HTTP function's router on the Lambda runtime, writing the
/// metrics each request counted (EMF) before its answer goes back.
pub async fn serve_http(router: axum::Router, metrics: Arc<Metrics>) -> Result<(), BoxError> {
    use lambda_http::RequestExt;
    use tower::ServiceExt;
    let service = tower::service_fn(move |request: lambda_http::Request| {
        let id = request.lambda_context_ref().map(|c| c.request_id.clone());
        let (router, metrics) = (router.clone(), metrics.clone());
        async move {
            let answer = router.oneshot(request).await;
            metrics.flush(id.as_deref());
            answer
        }
    });
    lambda_http::run(service).await
}
