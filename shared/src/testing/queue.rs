//! The [`Queue`] conformance suite.
//!
//! Every check holds an adapter to the port's contract only, so the same
//! suite runs unchanged against the in-process queue and against SQS (on an
//! emulator or for real). Hence:
//! - durations are whole seconds (SQS rounds visibility, delay and wait to
//!   seconds) and long polls wait at most 20 s (SQS's limit);
//! - no check asserts priority or FIFO order (SQS standard queues order only
//!   approximately), nor that one receive returns every visible message (SQS
//!   samples a subset of its servers): checks receive in loops until the
//!   expected messages arrive, within a bounded deadline;
//! - each check works on its own fresh queue name, so checks never see each
//!   other's messages, even against a shared backend.
//!
//! A failed check panics with a message naming the broken behaviour.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::ports::{
    Delivery, MAX_DELAY, MAX_MESSAGE_ATTRIBUTES, MAX_MESSAGE_BYTES, MAX_RECEIVE, OutgoingMessage,
    Queue, QueueError,
};

/// Runs every check, each on a queue from `make` and a fresh queue name.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Queue>>,
{
    sent_message_is_received_with_its_body(make().await).await;
    largest_allowed_message_is_accepted(make().await).await;
    redelivery_increments_receive_count(make().await).await;
    received_message_is_hidden_until_its_visibility_passes(make().await).await;
    deleted_message_is_never_redelivered(make().await).await;
    zero_visibility_makes_message_visible_at_once(make().await).await;
    delayed_message_is_held_back_until_its_delay(make().await).await;
    oversized_body_rejects_the_whole_batch(make().await).await;
    excessive_delay_rejects_the_whole_batch(make().await).await;
    receive_max_outside_range_is_invalid(make().await).await;
    unknown_receipts_are_ignored(make().await).await;
    a_receipt_given_twice_is_deleted_once(make().await).await;
    long_poll_returns_as_soon_as_a_message_arrives(make().await).await;
    large_batch_is_received_exactly_once(make().await).await;
    concurrent_receivers_never_share_a_message(make().await).await;
    attributes_travel_with_the_message(make().await).await;
    attribute_bytes_count_toward_the_size_limit(make().await).await;
    malformed_attributes_reject_the_whole_batch(make().await).await;
}

/// A visibility long enough that nothing is redelivered while a check runs.
const HOLD: Duration = Duration::from_secs(60);
/// The long poll of receive loops: short, so deadlines are checked often.
const POLL: Duration = Duration::from_secs(1);

/// A fresh queue name, valid for SQS (≤ 80 characters of `[A-Za-z0-9_-]`).
fn fresh_queue(check: &str) -> String {
    format!("conf-{check}-{}", uuid::Uuid::now_v7().simple())
}

fn message(body: impl Into<String>) -> OutgoingMessage {
    OutgoingMessage::new(body)
}

async fn send(q: &dyn Queue, queue: &str, messages: Vec<OutgoingMessage>) {
    let n = messages.len();
    if let Err(e) = q.send_batch(queue, messages).await {
        panic!("send_batch of {n} valid messages to {queue} failed: {e}");
    }
}

async fn receive(
    q: &dyn Queue,
    queue: &str,
    max: usize,
    visibility: Duration,
    wait: Duration,
) -> Vec<Delivery> {
    match q.receive(queue, max, visibility, wait).await {
        Ok(d) => d,
        Err(e) => panic!("receive(max {max}) from {queue} failed: {e}"),
    }
}

async fn delete(q: &dyn Queue, queue: &str, receipts: Vec<String>) {
    if let Err(e) = q.delete_batch(queue, receipts).await {
        panic!("delete_batch on {queue} failed: {e}");
    }
}

/// Receives (long polling in steps of [`POLL`]) until `want` messages came
/// or `within` passed; returns what came, in arrival order.
async fn receive_at_least(
    q: &dyn Queue,
    queue: &str,
    want: usize,
    visibility: Duration,
    within: Duration,
) -> Vec<Delivery> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < want && Instant::now() < deadline {
        got.extend(receive(q, queue, MAX_RECEIVE, visibility, POLL).await);
    }
    got
}

/// Receives (as [`receive_at_least`], within 10 s) exactly `want` messages,
/// hidden for `visibility`; else the check fails with `what`.
async fn received(
    q: &dyn Queue,
    queue: &str,
    want: usize,
    visibility: Duration,
    what: &str,
) -> Vec<Delivery> {
    let got = receive_at_least(q, queue, want, visibility, Duration::from_secs(10)).await;
    assert_eq!(got.len(), want, "{what}, got {got:?}");
    got
}

/// Receives for `during`, returning everything that came. Used to show that
/// nothing (or nothing more) is delivered.
async fn receive_during(
    q: &dyn Queue,
    queue: &str,
    visibility: Duration,
    during: Duration,
) -> Vec<Delivery> {
    let deadline = Instant::now() + during;
    let mut got = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return got;
        }
        // Whole seconds for SQS, never past the deadline.
        let wait = Duration::from_secs(left.as_secs().min(POLL.as_secs()));
        got.extend(receive(q, queue, MAX_RECEIVE, visibility, wait).await);
        if wait.is_zero() {
            return got;
        }
    }
}

fn expect_invalid<T: std::fmt::Debug>(what: &str, result: Result<T, QueueError>) {
    match result {
        Err(QueueError::Invalid(_)) => {}
        other => panic!("{what}: expected QueueError::Invalid, got {other:?}"),
    }
}

/// GIVEN a message sent to an empty queue
/// WHEN it is received
/// THEN its body is the one sent, its receive count is 1, and it carries a
/// message id and a receipt.
pub async fn sent_message_is_received_with_its_body(q: Arc<dyn Queue>) {
    let queue = fresh_queue("roundtrip");
    let body = r#"{"task":"échantillon ✓","n":1}"#;
    send(&*q, &queue, vec![message(body)]).await;
    let got = received(
        &*q,
        &queue,
        1,
        HOLD,
        "roundtrip: expected exactly the one sent message",
    )
    .await;
    assert_eq!(got[0].body, body, "roundtrip: body changed in transit");
    assert_eq!(
        got[0].receive_count, 1,
        "roundtrip: first receive must have receive_count 1"
    );
    assert!(!got[0].message_id.is_empty(), "roundtrip: empty message_id");
    assert!(!got[0].receipt.is_empty(), "roundtrip: empty receipt");
    delete(&*q, &queue, vec![got[0].receipt.clone()]).await;
}

/// GIVEN a body of exactly MAX_MESSAGE_BYTES and a delay of exactly MAX_DELAY
/// WHEN they are sent
/// THEN both are accepted (the limits are inclusive) and the large body is
/// received intact.
pub async fn largest_allowed_message_is_accepted(q: Arc<dyn Queue>) {
    let queue = fresh_queue("largest");
    let big = "x".repeat(MAX_MESSAGE_BYTES);
    let longest = OutgoingMessage {
        delay: MAX_DELAY,
        ..message("held for the longest delay")
    };
    send(&*q, &queue, vec![message(big.clone()), longest]).await;
    let got = received(
        &*q,
        &queue,
        1,
        HOLD,
        "largest: expected only the undelayed message",
    )
    .await;
    assert!(
        got[0].body == big,
        "largest: a body of MAX_MESSAGE_BYTES came back altered ({} bytes)",
        got[0].body.len()
    );
    delete(&*q, &queue, vec![got[0].receipt.clone()]).await;
}

/// GIVEN a message received with a 1 s visibility and not deleted
/// WHEN its visibility passes and it is received again
/// THEN it is the same message with receive_count 2 and a new receipt.
pub async fn redelivery_increments_receive_count(q: Arc<dyn Queue>) {
    let queue = fresh_queue("recount");
    send(&*q, &queue, vec![message("again")]).await;
    let first = received(
        &*q,
        &queue,
        1,
        Duration::from_secs(1),
        "recount: message not received",
    )
    .await;
    assert_eq!(
        first[0].receive_count, 1,
        "recount: first receive must count 1"
    );
    let second = received(
        &*q,
        &queue,
        1,
        HOLD,
        "recount: message not redelivered after its visibility passed",
    )
    .await;
    assert_eq!(
        second[0].message_id, first[0].message_id,
        "recount: a different message came back"
    );
    assert_eq!(second[0].body, "again");
    assert_eq!(
        second[0].receive_count, 2,
        "recount: redelivery must count 2"
    );
    assert_ne!(
        second[0].receipt, first[0].receipt,
        "recount: redelivery must carry a fresh receipt"
    );
    delete(&*q, &queue, vec![second[0].receipt.clone()]).await;
}

/// GIVEN a message received with a 1 s visibility
/// WHEN another receive runs at once
/// THEN it does not get the message; after the visibility passes the message
/// comes back.
pub async fn received_message_is_hidden_until_its_visibility_passes(q: Arc<dyn Queue>) {
    let queue = fresh_queue("hidden");
    send(&*q, &queue, vec![message("hide me")]).await;
    let first = received(
        &*q,
        &queue,
        1,
        Duration::from_secs(1),
        "hidden: message not received",
    )
    .await;
    let received_at = Instant::now();
    let other = receive(&*q, &queue, MAX_RECEIVE, HOLD, Duration::ZERO).await;
    if received_at.elapsed() < Duration::from_millis(800) {
        assert!(
            other.is_empty(),
            "hidden: a message in flight was delivered to a second receiver: {other:?}"
        );
    }
    let back = received(
        &*q,
        &queue,
        1,
        HOLD,
        "hidden: message did not come back after its visibility passed",
    )
    .await;
    assert_eq!(back[0].message_id, first[0].message_id);
    assert!(
        received_at.elapsed() >= Duration::from_millis(500),
        "hidden: message came back after {:?}, before its 1 s visibility passed",
        received_at.elapsed()
    );
    delete(&*q, &queue, vec![back[0].receipt.clone()]).await;
}

/// GIVEN a message received with a 1 s visibility
/// WHEN it is deleted with its receipt
/// THEN it is never delivered again, even after the visibility passes.
pub async fn deleted_message_is_never_redelivered(q: Arc<dyn Queue>) {
    let queue = fresh_queue("delete");
    send(&*q, &queue, vec![message("done")]).await;
    let got = received(
        &*q,
        &queue,
        1,
        Duration::from_secs(1),
        "delete: message not received",
    )
    .await;
    delete(&*q, &queue, vec![got[0].receipt.clone()]).await;
    let again = receive_during(&*q, &queue, HOLD, Duration::from_secs(3)).await;
    assert!(
        again.is_empty(),
        "delete: an acknowledged message was redelivered: {again:?}"
    );
}

/// GIVEN a message received with a long visibility
/// WHEN its visibility is changed to 0
/// THEN it can be received again at once (well before the long visibility).
pub async fn zero_visibility_makes_message_visible_at_once(q: Arc<dyn Queue>) {
    let queue = fresh_queue("release");
    send(&*q, &queue, vec![message("release me")]).await;
    let got = received(&*q, &queue, 1, HOLD, "release: message not received").await;
    if let Err(e) = q
        .change_visibility(&queue, &got[0].receipt, Duration::ZERO)
        .await
    {
        panic!("release: change_visibility to 0 failed: {e}");
    }
    let again = received(
        &*q,
        &queue,
        1,
        HOLD,
        "release: message not visible again after change_visibility to 0",
    )
    .await;
    assert_eq!(again[0].message_id, got[0].message_id);
    assert_eq!(
        again[0].receive_count, 2,
        "release: the second receive must count 2"
    );
    delete(&*q, &queue, vec![again[0].receipt.clone()]).await;
}

/// GIVEN a message sent with a 2 s delay
/// WHEN receives run during the first second
/// THEN they get nothing; after the delay the message is received.
pub async fn delayed_message_is_held_back_until_its_delay(q: Arc<dyn Queue>) {
    let queue = fresh_queue("delay");
    let sent_at = Instant::now();
    let delayed = OutgoingMessage {
        delay: Duration::from_secs(2),
        ..message("later")
    };
    send(&*q, &queue, vec![delayed]).await;
    let early = receive(&*q, &queue, MAX_RECEIVE, HOLD, Duration::from_secs(1)).await;
    assert!(
        early.is_empty(),
        "delay: a message delayed 2 s was received after {:?}",
        sent_at.elapsed()
    );
    let got = received(
        &*q,
        &queue,
        1,
        HOLD,
        "delay: delayed message not received after its delay",
    )
    .await;
    assert_eq!(got[0].body, "later");
    assert!(
        sent_at.elapsed() >= Duration::from_millis(1500),
        "delay: a message delayed 2 s was received after {:?}",
        sent_at.elapsed()
    );
    delete(&*q, &queue, vec![got[0].receipt.clone()]).await;
}

/// GIVEN a batch of valid messages and one body of MAX_MESSAGE_BYTES + 1
/// WHEN the batch is sent
/// THEN the send is Invalid and none of the messages, not even the valid
/// ones, is ever received.
pub async fn oversized_body_rejects_the_whole_batch(q: Arc<dyn Queue>) {
    let queue = fresh_queue("oversize");
    let batch = vec![
        message("valid before"),
        message("x".repeat(MAX_MESSAGE_BYTES + 1)),
        message("valid after"),
    ];
    expect_invalid(
        "oversize: body over MAX_MESSAGE_BYTES",
        q.send_batch(&queue, batch).await,
    );
    let got = receive_during(&*q, &queue, HOLD, Duration::from_secs(2)).await;
    assert!(
        got.is_empty(),
        "oversize: a rejected batch still sent messages: {:?}",
        bodies(&got)
    );
}

/// GIVEN a batch of valid messages and one delayed by MAX_DELAY + 1 s
/// WHEN the batch is sent
/// THEN the send is Invalid and none of the messages is ever received.
pub async fn excessive_delay_rejects_the_whole_batch(q: Arc<dyn Queue>) {
    let queue = fresh_queue("overdelay");
    let too_late = OutgoingMessage {
        delay: MAX_DELAY + Duration::from_secs(1),
        ..message("too late")
    };
    let batch = vec![message("valid before"), too_late, message("valid after")];
    expect_invalid(
        "overdelay: delay over MAX_DELAY",
        q.send_batch(&queue, batch).await,
    );
    let got = receive_during(&*q, &queue, HOLD, Duration::from_secs(2)).await;
    assert!(
        got.is_empty(),
        "overdelay: a rejected batch still sent messages: {:?}",
        bodies(&got)
    );
}

/// GIVEN a queue
/// WHEN a receive asks for 0 or MAX_RECEIVE + 1 messages
/// THEN it is Invalid (and returns no message).
pub async fn receive_max_outside_range_is_invalid(q: Arc<dyn Queue>) {
    let queue = fresh_queue("maxrange");
    send(&*q, &queue, vec![message("waiting")]).await;
    expect_invalid(
        "maxrange: receive of 0",
        q.receive(&queue, 0, HOLD, Duration::ZERO).await,
    );
    expect_invalid(
        "maxrange: receive of MAX_RECEIVE + 1",
        q.receive(&queue, MAX_RECEIVE + 1, HOLD, Duration::ZERO)
            .await,
    );
    // The message is untouched by the refused receives.
    let got = received(
        &*q,
        &queue,
        1,
        HOLD,
        "maxrange: message lost after refused receives",
    )
    .await;
    assert_eq!(
        got[0].receive_count, 1,
        "maxrange: a refused receive counted as a receive"
    );
    delete(&*q, &queue, vec![got[0].receipt.clone()]).await;
}

/// GIVEN a message in flight
/// WHEN receipts that were never issued are deleted or have their visibility
/// changed
/// THEN the calls succeed and do nothing.
pub async fn unknown_receipts_are_ignored(q: Arc<dyn Queue>) {
    let queue = fresh_queue("unknown");
    send(&*q, &queue, vec![message("keep")]).await;
    let got = received(&*q, &queue, 1, HOLD, "unknown: message not received").await;
    let bogus = format!("{}-not-a-receipt", got[0].receipt);
    if let Err(e) = q.delete_batch(&queue, vec![bogus.clone()]).await {
        panic!("unknown: delete_batch with an unknown receipt must be ignored, got {e}");
    }
    if let Err(e) = q.change_visibility(&queue, &bogus, Duration::ZERO).await {
        panic!("unknown: change_visibility with an unknown receipt must be ignored, got {e}");
    }
    let none = receive(&*q, &queue, MAX_RECEIVE, HOLD, Duration::ZERO).await;
    assert!(
        none.is_empty(),
        "unknown: an unknown receipt made the message visible: {none:?}"
    );
    delete(&*q, &queue, vec![got[0].receipt.clone()]).await;
}

/// GIVEN two received messages
/// WHEN one batch deletes the first with its receipt given twice (a receive
/// can hand a message twice) and the second once
/// THEN the call succeeds and neither message is delivered again.
pub async fn a_receipt_given_twice_is_deleted_once(q: Arc<dyn Queue>) {
    let queue = fresh_queue("twice");
    send(&*q, &queue, vec![message("first"), message("second")]).await;
    let got = received(
        &*q,
        &queue,
        2,
        Duration::from_secs(1),
        "twice: messages not received",
    )
    .await;
    let (first, second) = (got[0].receipt.clone(), got[1].receipt.clone());
    if let Err(e) = q
        .delete_batch(&queue, vec![first.clone(), first, second])
        .await
    {
        panic!("twice: delete_batch with a receipt given twice must delete it, got {e}");
    }
    let again = receive_during(&*q, &queue, HOLD, Duration::from_secs(3)).await;
    assert!(
        again.is_empty(),
        "twice: a message deleted in that batch was redelivered: {again:?}"
    );
}

/// GIVEN a receive long polling an empty queue for 10 s
/// WHEN a message is sent 1 s into the wait
/// THEN the receive returns it well before the wait ends.
pub async fn long_poll_returns_as_soon_as_a_message_arrives(q: Arc<dyn Queue>) {
    let queue = fresh_queue("longpoll");
    let wait = Duration::from_secs(10);
    let started = Instant::now();
    let (got, ()) = tokio::join!(receive(&*q, &queue, MAX_RECEIVE, HOLD, wait), async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        send(&*q, &queue, vec![message("wake up")]).await;
    });
    let took = started.elapsed();
    assert_eq!(
        got.len(),
        1,
        "longpoll: the long poll ended after {took:?} without the message sent during it"
    );
    assert_eq!(got[0].body, "wake up");
    assert!(
        took < Duration::from_secs(6),
        "longpoll: the long poll took {took:?}: it did not return when the message arrived"
    );
    delete(&*q, &queue, vec![got[0].receipt.clone()]).await;
}

/// GIVEN 25 messages sent in one send_batch (more than one backend batch)
/// WHEN receives run with a visibility longer than the check
/// THEN every message is received exactly once.
pub async fn large_batch_is_received_exactly_once(q: Arc<dyn Queue>) {
    let queue = fresh_queue("batch25");
    let sent: Vec<String> = (0..25).map(|i| format!("batch message {i}")).collect();
    send(&*q, &queue, sent.iter().cloned().map(message).collect()).await;
    let got = receive_at_least(&*q, &queue, sent.len(), HOLD, Duration::from_secs(30)).await;
    assert_no_duplicates("batch25", &got);
    let mut received = bodies(&got);
    received.sort();
    let mut expected = sent.clone();
    expected.sort();
    assert_eq!(
        received, expected,
        "batch25: received bodies differ from the 25 sent"
    );
    // Nothing more arrives: none was delivered twice.
    let extra = receive_during(&*q, &queue, HOLD, Duration::from_secs(1)).await;
    assert!(
        extra.is_empty(),
        "batch25: messages delivered again while in flight: {:?}",
        bodies(&extra)
    );
    for chunk in got.chunks(MAX_RECEIVE) {
        delete(
            &*q,
            &queue,
            chunk.iter().map(|d| d.receipt.clone()).collect(),
        )
        .await;
    }
}

/// GIVEN 100 messages
/// WHEN 4 receivers receive concurrently, each deleting what it gets
/// THEN every message is delivered, and none to two receivers.
pub async fn concurrent_receivers_never_share_a_message(q: Arc<dyn Queue>) {
    let queue = fresh_queue("concurrent");
    let sent: Vec<String> = (0..100)
        .map(|i| format!("concurrent message {i}"))
        .collect();
    send(&*q, &queue, sent.iter().cloned().map(message).collect()).await;

    let seen: Arc<Mutex<HashSet<String>>> = Arc::default();
    let deadline = Instant::now() + Duration::from_secs(60);
    let receivers: Vec<_> = (0..4)
        .map(|_| {
            let (q, queue, seen) = (q.clone(), queue.clone(), seen.clone());
            tokio::spawn(async move {
                let mut mine = Vec::new();
                while seen.lock().unwrap().len() < 100 && Instant::now() < deadline {
                    let got = receive(&*q, &queue, MAX_RECEIVE, HOLD, POLL).await;
                    if !got.is_empty() {
                        seen.lock()
                            .unwrap()
                            .extend(got.iter().map(|d| d.message_id.clone()));
                        delete(&*q, &queue, got.iter().map(|d| d.receipt.clone()).collect()).await;
                        mine.extend(got);
                    }
                    // Let the other receivers in even when receive never waits.
                    tokio::task::yield_now().await;
                }
                mine
            })
        })
        .collect();

    let mut all = Vec::new();
    for (i, r) in receivers.into_iter().enumerate() {
        match r.await {
            Ok(mine) => all.extend(mine),
            Err(e) => std::panic::resume_unwind(
                e.try_into_panic()
                    .unwrap_or_else(|e| Box::new(format!("concurrent: receiver {i} failed: {e}"))),
            ),
        }
    }
    assert_no_duplicates("concurrent", &all);
    let mut received = bodies(&all);
    received.sort();
    let mut expected = sent;
    expected.sort();
    assert_eq!(
        received.len(),
        expected.len(),
        "concurrent: {} of 100 messages delivered within the deadline",
        received.len()
    );
    assert_eq!(
        received, expected,
        "concurrent: received bodies differ from the 100 sent"
    );
}

/// GIVEN a message sent with string attributes (non-ASCII value included)
/// and one sent without
/// WHEN both are received (and the first again after a redelivery)
/// THEN each carries exactly the attributes it was sent with.
pub async fn attributes_travel_with_the_message(q: Arc<dyn Queue>) {
    let queue = fresh_queue("attrs");
    let with = message("with")
        .with_attribute("topic", "orders.fifo")
        .with_attribute("trace-id_2.x", "échantillon ✓");
    let expected = with.attributes.clone();
    send(&*q, &queue, vec![with, message("without")]).await;
    let got = received(&*q, &queue, 2, HOLD, "attrs: expected both messages").await;
    for d in &got {
        match d.body.as_str() {
            "with" => assert_eq!(
                d.attributes, expected,
                "attrs: attributes changed in transit"
            ),
            _ => assert!(
                d.attributes.is_empty(),
                "attrs: a message sent without attributes came with {:?}",
                d.attributes
            ),
        }
    }
    // Made visible again: the redelivery carries the attributes too.
    let with = got
        .iter()
        .find(|d| d.body == "with")
        .expect("checked above");
    if let Err(e) = q
        .change_visibility(&queue, &with.receipt, Duration::ZERO)
        .await
    {
        panic!("attrs: change_visibility failed: {e}");
    }
    let again = receive_at_least(&*q, &queue, 1, HOLD, Duration::from_secs(10)).await;
    assert_eq!(
        again.first().map(|d| (&d.body, &d.attributes)),
        Some((&with.body, &expected)),
        "attrs: a redelivered message lost its attributes: {again:?}"
    );
    let receipts = got
        .iter()
        .chain(&again)
        .map(|d| d.receipt.clone())
        .collect();
    delete(&*q, &queue, receipts).await;
}

/// GIVEN a body that fills MAX_MESSAGE_BYTES together with one attribute
/// (its name, the type `String` and its value count, as SQS counts them)
/// WHEN it is sent, and then one byte more
/// THEN the first is accepted and received intact, the second is Invalid.
pub async fn attribute_bytes_count_toward_the_size_limit(q: Arc<dyn Queue>) {
    let queue = fresh_queue("attrsize");
    let fits = |extra: usize| {
        let overhead = "topic".len() + "String".len() + "t".len();
        message("x".repeat(MAX_MESSAGE_BYTES - overhead + extra)).with_attribute("topic", "t")
    };
    expect_invalid(
        "attrsize: body + attribute one byte over MAX_MESSAGE_BYTES",
        q.send_batch(&queue, vec![fits(1)]).await,
    );
    let exact = fits(0);
    assert_eq!(exact.size(), MAX_MESSAGE_BYTES);
    send(&*q, &queue, vec![exact.clone()]).await;
    let got = received(
        &*q,
        &queue,
        1,
        HOLD,
        "attrsize: the fitting message was not received",
    )
    .await;
    assert!(
        got[0].body == exact.body && got[0].attributes == exact.attributes,
        "attrsize: a message of exactly MAX_MESSAGE_BYTES came back altered"
    );
    delete(&*q, &queue, vec![got[0].receipt.clone()]).await;
}

/// GIVEN batches with one message whose attributes SQS refuses (an empty
/// value, a malformed or reserved name, too many attributes)
/// WHEN each is sent
/// THEN each send is Invalid and nothing is ever received.
pub async fn malformed_attributes_reject_the_whole_batch(q: Arc<dyn Queue>) {
    let queue = fresh_queue("badattrs");
    let too_many = (0..=MAX_MESSAGE_ATTRIBUTES).fold(message("many"), |m, i| {
        m.with_attribute(format!("a{i}"), "v")
    });
    let bad = [
        ("empty value", message("m").with_attribute("topic", "")),
        ("space in name", message("m").with_attribute("to pic", "v")),
        ("double dot", message("m").with_attribute("a..b", "v")),
        ("leading dot", message("m").with_attribute(".a", "v")),
        ("AWS. prefix", message("m").with_attribute("AWS.topic", "v")),
        ("too many", too_many),
    ];
    for (what, m) in bad {
        expect_invalid(
            &format!("badattrs: {what}"),
            q.send_batch(&queue, vec![message("valid"), m]).await,
        );
    }
    let got = receive_during(&*q, &queue, HOLD, Duration::from_secs(2)).await;
    assert!(
        got.is_empty(),
        "badattrs: a rejected batch still sent messages: {:?}",
        bodies(&got)
    );
}

fn bodies(deliveries: &[Delivery]) -> Vec<String> {
    deliveries.iter().map(|d| d.body.clone()).collect()
}

/// Panics if a message id was delivered more than once.
fn assert_no_duplicates(check: &str, deliveries: &[Delivery]) {
    let mut count: HashMap<&str, usize> = HashMap::new();
    for d in deliveries {
        *count.entry(&d.message_id).or_default() += 1;
    }
    let twice: Vec<_> = count.into_iter().filter(|&(_, n)| n > 1).collect();
    assert!(
        twice.is_empty(),
        "{check}: messages delivered more than once while in flight: {twice:?}"
    );
}
