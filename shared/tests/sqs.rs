//! The SQS queue against the AWS emulator (`AWS_ENDPOINT_URL`): the same
//! conformance suite as the in-process queue, each check on a fresh queue.

use std::sync::Arc;
use std::time::Duration;

use warren::adapters::sqs::{SqsQueue, provision_queue};
use warren::ports::{OutgoingMessage, Queue};
use warren::testing::aws::{emulator, unique_name};

#[tokio::test(flavor = "multi_thread")]
async fn sqs_queue_conforms() {
    let client = aws_sdk_sqs::Client::new(&emulator().await);
    warren::testing::queue::run_all(|| {
        let client = client.clone();
        // The suite names a fresh queue per check: create each on first use.
        async move {
            Arc::new(SqsQueue::new(client).create_missing(Duration::from_secs(30)))
                as Arc<dyn Queue>
        }
    })
    .await;
}

/// Provisioning twice is harmless, wires the dead-letter queue, and a queue
/// can then be used by name and by URL alike.
#[tokio::test(flavor = "multi_thread")]
async fn provisioned_queue_has_a_dead_letter_queue_and_answers_by_name_and_url() {
    use aws_sdk_sqs::types::QueueAttributeName;

    let client = aws_sdk_sqs::Client::new(&emulator().await);
    let name = unique_name("q");
    let url = provision_queue(&client, &name, Duration::from_secs(120))
        .await
        .expect("provisioning");
    let again = provision_queue(&client, &name, Duration::from_secs(90))
        .await
        .expect("provisioning again");
    assert_eq!(url, again, "the same queue");
    let attrs = client
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .expect("attributes")
        .attributes
        .unwrap_or_default();
    assert_eq!(
        attrs
            .get(&QueueAttributeName::VisibilityTimeout)
            .map(String::as_str),
        Some("90"),
        "re-provisioning applies the new visibility"
    );
    let redrive = attrs
        .get(&QueueAttributeName::RedrivePolicy)
        .expect("a redrive policy");
    assert!(
        redrive.contains(&format!("{name}-dlq")) && redrive.contains("maxReceiveCount"),
        "redrive to {name}-dlq: {redrive}"
    );

    let by_name = SqsQueue::new(client.clone());
    let message = OutgoingMessage::new;
    by_name
        .send_batch(&name, vec![message("by name")])
        .await
        .expect("send by name");
    let got = by_name
        .receive(&url, 10, Duration::from_secs(30), Duration::from_secs(5))
        .await
        .expect("receive by url");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, "by name");

    let missing = SqsQueue::new(client)
        .send_batch(&unique_name("absent"), vec![message("x")])
        .await
        .expect_err("an unknown queue is not created by default");
    assert!(
        missing.to_string().contains("warren provision"),
        "the error says what to do: {missing}"
    );
}
