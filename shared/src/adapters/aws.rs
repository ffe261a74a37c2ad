//! What the DynamoDB and SQS adapters share: one SDK configuration per
//! process (cold start pays for it once), on a single TLS stack (rustls +
//! ring). The endpoint, region and credentials come from the SDK's own
//! environment (`AWS_ENDPOINT_URL`, `AWS_REGION`, ...): no emulator branches.
//! Locally ([`sdk_config`]) that is aws-config's whole provider chain
//! (profiles, web identity, container and instance metadata); a Lambda function
//! ([`lambda_sdk_config`]) reads the variables its runtime sets, and so
//! links none of the chain (0.3 MB of its bootstrap, the STS client among
//! it) and resolves nothing at cold start.

use std::sync::Arc;

use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::config::{Credentials, Region, SharedCredentialsProvider};
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};

pub use crate::adapters::requests::RequestCounter;

use crate::adapters::capacity::CapacityMeter;
use crate::adapters::dynamodb::DynamoStore;
use crate::adapters::sqs::SqsQueue;
use crate::ports::{Queue, Store};

/// The SDK configuration from the environment, by aws-config's provider chain.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(https())
        .load()
        .await
}

/// The SDK configuration of a Lambda function: region and credentials from
/// the variables the Lambda runtime sets (`AWS_REGION`, `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`; they last as long as the
/// execution environment), `AWS_ENDPOINT_URL` if set, and aws-config's
/// default connect timeout.
pub fn lambda_sdk_config() -> Result<SdkConfig, String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let need = |name: &str| var(name).ok_or_else(|| format!("{name} is not set"));
    let credentials = Credentials::new(
        need("AWS_ACCESS_KEY_ID")?,
        need("AWS_SECRET_ACCESS_KEY")?,
        var("AWS_SESSION_TOKEN"),
        None,
        "lambda-environment",
    );
    let mut config = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(need("AWS_REGION")?))
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_millis(3100))
                .build(),
        )
        .http_client(https());
    if let Some(url) = var("AWS_ENDPOINT_URL") {
        config = config.endpoint_url(url);
    }
    Ok(config.build())
}

fn https() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// What `warren cost` attaches to the clients: every request counted by
/// operation, and DynamoDB's capacity units by its billing rules.
#[derive(Clone, Debug, Default)]
pub struct Meters {
    pub requests: RequestCounter,
    pub capacity: CapacityMeter,
}

impl Meters {
    /// Start counting afresh.
    pub fn reset(&self) {
        self.requests.reset();
        self.capacity.reset();
    }
}

/// The DynamoDB and SQS clients of a process, built once from one SDK
/// configuration (optionally metered).
#[derive(Clone, Debug)]
pub struct AwsClients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
}

impl AwsClients {
    /// Clients on one SDK configuration, measured by `meters` if given.
    pub fn new(config: &SdkConfig, meters: Option<&Meters>) -> Self {
        let mut dynamodb = aws_sdk_dynamodb::config::Builder::from(config);
        let mut sqs = aws_sdk_sqs::config::Builder::from(config);
        if let Some(meters) = meters {
            dynamodb = dynamodb
                .interceptor(meters.requests.clone())
                .interceptor(meters.capacity.clone());
            sqs = sqs.interceptor(meters.requests.clone());
        }
        AwsClients {
            dynamodb: aws_sdk_dynamodb::Client::from_conf(dynamodb.build()),
            sqs: aws_sdk_sqs::Client::from_conf(sqs.build()),
        }
    }

    /// The DynamoDB store port on `table`.
    pub fn store(&self, table: &str) -> Arc<dyn Store> {
        Arc::new(DynamoStore::new(self.dynamodb.clone(), table.to_owned()))
    }

    /// The SQS queue port on these clients.
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
    /// The names from `WARREN_TABLE`, `WARREN_TASK_QUEUE` and `WARREN_TOPIC_QUEUE`.
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
