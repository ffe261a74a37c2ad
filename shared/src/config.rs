//! The engine's settings, one struct for every runtime.

use std::time::Duration;

use crate::domain::identity::Role;
use crate::jwt::JwtSettings;
use crate::keys::ApiKey;
use crate::keys::sealing::MasterKey;

/// Settings of the task engine (not of any backend).
#[derive(Clone, Debug)]
pub struct Config {
    /// The queue that carries task messages.
    pub task_queue: String,
    /// The topic ingress queue: messages published on topics, fanned out
    /// by the dispatcher to the pipelines whose event trigger is started.
    pub topic_queue: String,
    /// Task messages carry the whole task, so the worker starts it without
    /// reading it (one request less per task on DynamoDB). Off where store
    /// reads are cheap and serialising costs more (the embedded runtime:
    /// 10-15 % of batch enqueue throughput, docs/BENCHMARKS.md).
    pub snapshot_messages: bool,
    /// The task queue keeps every message it accepts until a worker
    /// deletes it (SQS), so an enqueue sends its task's message first and
    /// stores the task after, with no re-dispatch timer: a message whose
    /// record is not there yet waits for it (`service::worker`). Off where
    /// the queue dies with the process (the embedded runtime, the
    /// simulator), whose pending tasks keep the timer that re-sends them.
    pub send_first: bool,
    /// Publish dispatches at once instead of through `topic_queue`: set
    /// where that queue does not outlive the process (the embedded
    /// runtime), so a 202 always means the executions are stored.
    pub dispatch_inline: bool,
    /// Run CPU-bound step work (an expression, a schema check) on the
    /// calling task instead of a blocking thread: for the simulator, whose
    /// paused clock runs ahead of work on other threads.
    pub cpu_inline: bool,
    /// Timeout of a task that names none.
    pub default_timeout: Duration,
    /// A running attempt is presumed lost this long after its timeout.
    pub lease_grace: Duration,
    /// A pending task whose message has not started it by then is re-sent
    /// (the message may have been lost between store and queue).
    pub redispatch_after: Duration,
    /// How long an `expired` task stays readable before it is deleted.
    pub expired_retention: chrono::Duration,
    /// How long a received message stays hidden while its task runs.
    pub visibility: Duration,
    /// The secret that signs task webhooks (Standard Webhooks, `whsec_…`).
    pub webhook_secret: Vec<u8>,
    /// The secret that signs pipeline `http` steps. Never the webhook one: a
    /// hook caller chooses what a step sends, so with one key warren would
    /// sign a forged `task.completed` for whoever asked.
    pub step_secret: Vec<u8>,
    /// Attempts of one webhook delivery before it is recorded as failed.
    pub webhook_attempts: u32,
    /// The bootstrap key (hashed): an admin that is no user, so a
    /// deployment works before its first user exists.
    pub api_key: ApiKey,
    /// No credentials needed: a request without any acts as the deployment
    /// (an admin). Only for loopback development (`warren dev --open`) or
    /// `WARREN_AUTH=disabled`.
    pub open: bool,
    /// JWT bearer tokens from an OIDC issuer, when one is configured.
    pub jwt: Option<JwtConfig>,
    /// How long a login session lasts.
    pub session_ttl: Duration,
    /// Browsers reach this API over HTTPS only (Lambda behind API Gateway):
    /// session cookies are marked `Secure`.
    pub secure_cookies: bool,
    /// Requests per minute per principal (per client address when
    /// unauthenticated) on the API; 0: no limit.
    pub rate_limit: u32,
    /// Count requests, login failures and runs in the table, so the limits
    /// hold across processes (Lambda); else requests are counted in memory.
    pub shared_limits: bool,
    /// Queue counts are kept by the consumer of the table's change stream
    /// (`WARREN_COUNTS=stream`: AWS, with the `counts` function deployed),
    /// not in each status change's transaction, so each change is one
    /// single-item write: a quarter of the write units. Counts then lag by
    /// the stream's batch window.
    pub counts_from_stream: bool,
    /// The key that seals stored secrets; `None` with no parameter: storing
    /// secrets is refused.
    pub secrets_key: Option<MasterKey>,
    /// An SSM SecureString holding the secrets key (base64), read on first
    /// use (AWS).
    pub secrets_key_parameter: Option<String>,
    /// The key `GET /metrics` requires (hashed); disabled: public.
    pub metrics_key: ApiKey,
    /// The pipeline that processes `POST /events` when the request names none.
    pub default_workflow: Option<uuid::Uuid>,
    /// The shortest interval between two fires of a schedule trigger.
    pub min_schedule_interval: Duration,
    /// How long a finished execution (and its event) stays readable.
    pub execution_retention: chrono::Duration,
    /// The URL clients reach this API at (`https://api.example.com`), for
    /// the links it hands out (a webhook trigger's URL); else the request's
    /// own Host.
    pub public_url: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            task_queue: "warren-tasks".into(),
            topic_queue: "warren-topics".into(),
            default_timeout: Duration::from_secs(300),
            lease_grace: Duration::from_secs(30),
            redispatch_after: Duration::from_secs(600),
            expired_retention: chrono::Duration::hours(1),
            visibility: Duration::from_secs(60),
            webhook_secret: Vec::new(),
            step_secret: Vec::new(),
            webhook_attempts: 4,
            api_key: ApiKey::default(),
            open: false,
            jwt: None,
            session_ttl: Duration::from_secs(12 * 3600),
            secure_cookies: false,
            rate_limit: 0,
            shared_limits: false,
            counts_from_stream: false,
            secrets_key: None,
            secrets_key_parameter: None,
            metrics_key: ApiKey::default(),
            default_workflow: None,
            min_schedule_interval: Duration::from_secs(60),
            execution_retention: chrono::Duration::days(30),
            public_url: None,
            dispatch_inline: false,
            cpu_inline: false,
            snapshot_messages: true,
            send_first: false,
        }
    }
}

/// How JWT bearer tokens are checked and whom they make.
#[derive(Clone, Debug)]
pub struct JwtConfig {
    pub settings: JwtSettings,
    /// The claim that names the user's role (`admin`, `user`, `viewer`; a
    /// string, or an array whose first known role counts, as Cognito's
    /// `cognito:groups`); else `default_role`.
    pub role_claim: Option<String>,
    /// The role of a user the token's claims give none.
    pub default_role: Role,
}
