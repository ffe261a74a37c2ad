//! End-to-end support on the AWS wire (the emulator at `AWS_ENDPOINT_URL`
//! that `scripts/test` starts): fresh resources made by `warren provision`,
//! and what `warren dev --backend aws` and the Lambda binaries need to use
//! them.

use std::process::Command;

use serde_json::Value;

use crate::{Opts, warren_bin};

/// A table and queues of one test, provisioned under fresh names.
#[derive(Clone, Debug)]
pub struct Provisioned {
    pub table: String,
    pub task_queue: String,
    pub topic_queue: String,
}

impl Provisioned {
    /// Run `warren provision` for fresh names and check it succeeded.
    pub fn new() -> Provisioned {
        assert!(
            std::env::var("AWS_ENDPOINT_URL").is_ok_and(|v| !v.is_empty()),
            "AWS_ENDPOINT_URL is not set: these tests need the emulator scripts/test starts"
        );
        let unique = |prefix: &str| format!("{prefix}-{}", uuid::Uuid::now_v7().simple());
        let p = Provisioned {
            table: unique("warren"),
            task_queue: unique("tasks"),
            topic_queue: unique("topics"),
        };
        let stdout = p.provision();
        assert!(
            stdout.contains(&format!("table {}: created", p.table))
                && stdout.contains(&format!("queue {}: ready", p.topic_queue)),
            "warren provision: {stdout}"
        );
        p
    }

    /// Run `warren provision` on these names (it is idempotent); its output.
    pub fn provision(&self) -> String {
        let out = Command::new(warren_bin())
            .args(["provision", "--table", &self.table])
            .args(["--task-queue", &self.task_queue])
            .args(["--topic-queue", &self.topic_queue])
            .output()
            .expect("run warren provision");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "warren provision failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// `warren dev --backend aws` on these resources.
    pub fn dev(&self) -> Opts {
        Opts::new()
            .args(["--backend", "aws"])
            .env("WARREN_TABLE", &self.table)
            .env("WARREN_TASK_QUEUE", &self.task_queue)
            .env("WARREN_TOPIC_QUEUE", &self.topic_queue)
    }

    /// The environment of a Lambda function on these resources, its API key
    /// given by hash, signing webhooks with `webhook_secret` (and pipeline
    /// steps with [`STEP_SECRET`]).
    pub fn function_env<'a>(
        &'a self,
        key_hash: &'a str,
        webhook_secret: &'a str,
    ) -> Vec<(&'a str, &'a str)> {
        vec![
            ("WARREN_TABLE", &self.table),
            ("WARREN_TASK_QUEUE", &self.task_queue),
            ("WARREN_TOPIC_QUEUE", &self.topic_queue),
            ("WARREN_API_KEY_SHA256", key_hash),
            ("WARREN_WEBHOOK_SECRET", webhook_secret),
            ("WARREN_STEP_SECRET", STEP_SECRET),
            // As template.yaml tells the worker: the task queue's visibility.
            ("WARREN_VISIBILITY", "960"),
        ]
    }
}

impl Default for Provisioned {
    fn default() -> Self {
        Self::new()
    }
}

/// The key that signs pipeline `http` steps in the Lambda tests.
pub const STEP_SECRET: &str = "whsec_c3RlcHMgYXJlIHNpZ25lZCB3aXRoIHRoZWlyIG93biBrZXk=";

/// Hex SHA-256, as `WARREN_API_KEY_SHA256` takes an API key.
pub use warren::keys::sha256_hex;

/// The JSON body of an HTTP function's answer, after checking its status.
#[track_caller]
pub fn answer(response: &Value, status: u64) -> Value {
    assert_eq!(response["statusCode"], status, "{response}");
    serde_json::from_str(response["body"].as_str().unwrap_or("null")).unwrap_or(Value::Null)
}
