//! `warren provision`: create what warren needs on AWS (or on an emulator
//! through `AWS_ENDPOINT_URL`), idempotently: the table with its indexes and
//! TTL, the task queue and the topic ingress queue, each with its
//! dead-letter queue and a redrive policy; and the first admin, when the
//! table has no user yet.

use std::time::Duration;

use clap::Args;
use warren::adapters::aws::{AwsClients, Resources, sdk_config};
use warren::adapters::http::GuardedHttpClient;
use warren::adapters::{dynamodb, sqs};

#[derive(Args, Debug, Clone)]
pub struct ProvisionOptions {
    /// The DynamoDB table.
    #[arg(long, env = "WARREN_TABLE", default_value = "warren")]
    pub table: String,
    /// The task queue (its dead-letter queue is `<name>-dlq`).
    #[arg(long, env = "WARREN_TASK_QUEUE", default_value = "warren-tasks")]
    pub task_queue: String,
    /// The topic ingress queue (its dead-letter queue is `<name>-dlq`).
    #[arg(long, env = "WARREN_TOPIC_QUEUE", default_value = "warren-topics")]
    pub topic_queue: String,
    /// Visibility timeout of the queues, in seconds: at least the longest
    /// task timeout (the worker's Lambda timeout in AWS).
    #[arg(long, default_value_t = 960)]
    pub visibility: u64,
    /// The first admin's password, when the table has no user yet
    /// (default: a random one, printed once).
    #[arg(long, env = "WARREN_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
}

impl ProvisionOptions {
    pub fn resources(&self) -> Resources {
        Resources {
            table: self.table.clone(),
            task_queue: self.task_queue.clone(),
            topic_queue: self.topic_queue.clone(),
        }
    }
}

/// Provision and say what was there already; make the first admin when
/// the table has no user.
pub async fn run(opts: ProvisionOptions) -> anyhow::Result<()> {
    let clients = AwsClients::new(&sdk_config().await, None);
    let resources = opts.resources();
    ensure(&clients, &resources, Duration::from_secs(opts.visibility)).await?;
    let http = GuardedHttpClient::new(Vec::new()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let deps = warren::runtime::aws(warren::Config::default(), http, &resources, None).await;
    crate::dev::first_admin(&deps, opts.admin_password).await
}

/// Create whatever of `resources` is missing.
pub async fn ensure(
    clients: &AwsClients,
    resources: &Resources,
    visibility: Duration,
) -> anyhow::Result<()> {
    // Creating a table waits for it to become active: seconds on AWS.
    let waiting = crate::progress::spinner(&format!("table {}", resources.table));
    let created = dynamodb::provision_table(&clients.dynamodb, &resources.table).await;
    waiting.finish_and_clear();
    let created = created.map_err(|e| anyhow::anyhow!("table {}: {e}", resources.table))?;
    println!(
        "table {}: {}",
        resources.table,
        if created { "created" } else { "ready" }
    );
    for queue in [&resources.task_queue, &resources.topic_queue] {
        let url = sqs::provision_queue(&clients.sqs, queue, visibility)
            .await
            .map_err(|e| anyhow::anyhow!("queue {queue}: {e}"))?;
        println!("queue {queue}: ready at {url} (dead letters: {queue}-dlq)");
    }
    Ok(())
}
