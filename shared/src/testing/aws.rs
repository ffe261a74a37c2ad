//! Support for tests on the AWS wire. They run against the emulator that the
//! test command starts (`scripts/test` sets `AWS_ENDPOINT_URL`); without one
//! they fail, never skip.

use std::sync::atomic::{AtomicU32, Ordering};

use aws_config::SdkConfig;

/// The SDK configuration for the emulator; panics when none is configured.
pub async fn emulator() -> SdkConfig {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    assert!(
        !endpoint.is_empty(),
        "AWS_ENDPOINT_URL is not set: AWS-wire tests need the emulator that scripts/test starts"
    );
    crate::adapters::aws::sdk_config().await
}

/// A table or queue name no other test of this process (or an earlier run
/// against the same emulator) uses.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{n}-{nanos}", std::process::id())
}

/// Store `value` as the SecureString parameter `name` (overwriting it), as
/// an operator would with `aws ssm put-parameter --type SecureString`.
pub async fn put_secure_parameter(name: &str, value: &str) {
    let body = serde_json::json!({
        "Name": name, "Value": value, "Type": "SecureString", "Overwrite": true
    });
    crate::adapters::ssm::call("PutParameter", &body)
        .await
        .unwrap_or_else(|e| panic!("SSM PutParameter {name}: {e}"));
}
