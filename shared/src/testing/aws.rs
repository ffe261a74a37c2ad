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

/// Every change `table`'s stream holds so far, as the records of the event
/// Lambda's DynamoDB Streams mapping hands a function (`{"Records": [...]}`
/// items, in stream order per shard).
pub async fn stream_records(table: &str) -> Vec<serde_json::Value> {
    use aws_sdk_dynamodbstreams::types::ShardIteratorType;
    let sdk = emulator().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let arn = crate::adapters::streams::stream_arn(&dynamodb, table)
        .await
        .unwrap_or_else(|e| panic!("the stream of {table}: {e}"));
    let streams = aws_sdk_dynamodbstreams::Client::new(&sdk);
    let shards = streams
        .describe_stream()
        .stream_arn(&arn)
        .send()
        .await
        .expect("DescribeStream")
        .stream_description
        .and_then(|d| d.shards)
        .unwrap_or_default();
    let mut records = Vec::new();
    for shard in shards {
        let mut iterator = streams
            .get_shard_iterator()
            .stream_arn(&arn)
            .shard_id(shard.shard_id.unwrap_or_default())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("GetShardIterator")
            .shard_iterator;
        while let Some(at) = iterator {
            let page = streams
                .get_records()
                .shard_iterator(at)
                .send()
                .await
                .expect("GetRecords");
            let got = page.records.unwrap_or_default();
            if got.is_empty() {
                break;
            }
            records.extend(got.into_iter().map(|r| lambda_record(r, &arn)));
            iterator = page.next_shard_iterator;
        }
    }
    records
}

/// A stream record as Lambda's mapping delivers it.
fn lambda_record(record: aws_sdk_dynamodbstreams::types::Record, arn: &str) -> serde_json::Value {
    let change = record
        .dynamodb
        .unwrap_or_else(|| panic!("a record without its change"));
    let image = |i: Option<std::collections::HashMap<_, _>>| {
        serde_json::to_value(serde_dynamo::Item::from(i.unwrap_or_default())).expect("an image")
    };
    let mut dynamodb = serde_json::json!({
        "Keys": image(change.keys),
        "SequenceNumber": change.sequence_number,
        "SizeBytes": change.size_bytes,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    });
    for (name, i) in [
        ("OldImage", change.old_image),
        ("NewImage", change.new_image),
    ] {
        if i.as_ref().is_some_and(|i| !i.is_empty()) {
            dynamodb[name] = image(i);
        }
    }
    serde_json::json!({
        "eventID": record.event_id,
        "eventName": record.event_name.map(|n| n.as_str().to_string()),
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": record.aws_region,
        "eventSourceARN": arn,
        "dynamodb": dynamodb,
    })
}
