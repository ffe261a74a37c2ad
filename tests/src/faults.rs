//! A fault-injecting HTTP proxy between warren and the AWS emulator.
//!
//! It speaks plain HTTP/1.1 on its own socket (so it can reset a connection
//! at any moment, which no HTTP server framework lets a handler do), tells
//! DynamoDB from SQS calls by their `X-Amz-Target` header (both speak the
//! AWS JSON protocol), and for a seeded share of the calls answers with a
//! fault instead of, before or after forwarding them:
//!
//! - DynamoDB: `ProvisionedThroughputExceededException` and
//!   `ThrottlingException` (400), `InternalServerError` (500), and for
//!   TransactWriteItems a `TransactionCanceledException` whose reason is
//!   `ThrottlingError` or `TransactionConflict`, in the exact shapes AWS
//!   sends (`__type`, `message`, `x-amzn-ErrorType`);
//! - SQS: `InternalError` (500) and `RequestThrottled` (400, with the
//!   `x-amzn-query-error` header the SDK reads the code from);
//! - both: the connection reset before the request reaches the emulator, or
//!   after (the write happened, its answer is lost), or a delay before or
//!   after it;
//! - SQS deliveries: a DeleteMessage(Batch) swallowed (answered as done,
//!   never forwarded) or failed entry by entry, and a ReceiveMessage
//!   answering one message twice. A swallowed delete or a lost receive
//!   answer makes its messages visible again at once, as their visibility
//!   timeout passing would, only sooner.
//!
//! Like DynamoDB, the proxy honours a TransactWriteItems
//! `ClientRequestToken`: a retry of a transaction whose answer it dropped
//! gets the first answer again (moto has no idempotency tokens).
//!
//! The fault stream is one seeded generator drawn per call in arrival
//! order: the same seed gives the same faults, though thread timing decides
//! which call meets which.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What one call meets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// DynamoDB 400 `ProvisionedThroughputExceededException`.
    ThroughputExceeded,
    /// 400 `ThrottlingException` (DynamoDB), `RequestThrottled` (SQS).
    Throttled,
    /// 500 `InternalServerError` (DynamoDB), `InternalError` (SQS).
    Internal,
    /// TransactWriteItems cancelled for `ThrottlingError`.
    CancelledThrottling,
    /// TransactWriteItems cancelled for `TransactionConflict`.
    CancelledConflict,
    /// Connection reset before forwarding: nothing happened.
    ResetBefore,
    /// Forwarded, then the connection reset: it happened, the answer is lost.
    ResetAfter,
    /// A pause before forwarding.
    DelayBefore,
    /// A pause between the emulator's answer and passing it on.
    DelayAfter,
    /// A pause of exactly this many milliseconds before forwarding (only
    /// [`FaultProxy::force`] gives it): for tests that order two writers.
    Pause(u64),
    /// DeleteMessage(Batch) answered as done but never forwarded.
    DeleteSwallowed,
    /// DeleteMessageBatch answered with every entry failed (server side).
    DeleteFailed,
    /// ReceiveMessage answered with its first message twice.
    ReceivedTwice,
}

/// The faults one call may meet.
fn menu(service: &str, op: &str) -> &'static [Fault] {
    use Fault::*;
    match (service, op) {
        ("DynamoDB", "TransactWriteItems") => &[
            ThroughputExceeded,
            Throttled,
            Internal,
            CancelledThrottling,
            CancelledConflict,
            ResetBefore,
            ResetAfter,
            DelayBefore,
            DelayAfter,
        ],
        ("DynamoDB", _) => &[
            ThroughputExceeded,
            Throttled,
            Internal,
            ResetBefore,
            ResetAfter,
            DelayBefore,
            DelayAfter,
        ],
        ("SQS", "DeleteMessageBatch") => &[
            Throttled,
            Internal,
            ResetBefore,
            ResetAfter,
            DeleteSwallowed,
            DeleteFailed,
        ],
        ("SQS", "DeleteMessage") => &[Throttled, Internal, ResetBefore, DeleteSwallowed],
        ("SQS", "ReceiveMessage") => &[
            Throttled,
            Internal,
            ResetBefore,
            ResetAfter,
            DelayBefore,
            ReceivedTwice,
        ],
        ("SQS", _) => &[
            Throttled,
            Internal,
            ResetBefore,
            ResetAfter,
            DelayBefore,
            DelayAfter,
        ],
        _ => &[],
    }
}

/// One request as read off the socket.
struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `("DynamoDB", "PutItem")`, `("SQS", "ReceiveMessage")`, or `None`.
    fn operation(&self) -> Option<(&'static str, String)> {
        let target = self.header("x-amz-target")?;
        let (prefix, op) = target.split_once('.')?;
        match prefix {
            p if p.starts_with("DynamoDB_") => Some(("DynamoDB", op.to_string())),
            "AmazonSQS" => Some(("SQS", op.to_string())),
            _ => None,
        }
    }
}

/// An answer to write back.
#[derive(Clone)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

struct Shared {
    upstream: String,
    client: reqwest::Client,
    seed: u64,
    /// The fault rate in millionths (so it can change while serving).
    rate_ppm: AtomicU64,
    calls: AtomicU64,
    /// Calls and faults, by `Service.Operation` and what they met.
    tally: Mutex<BTreeMap<String, u64>>,
    /// Answers of transactions whose answer was dropped, by client token.
    tokens: Mutex<HashMap<String, Answer>>,
    /// Faults the next calls of an operation meet whatever the rate, by
    /// `Service.Operation`: a test's script.
    forced: Mutex<HashMap<String, VecDeque<Fault>>>,
    /// What the proxy itself failed to do (a test of warren must not pass
    /// or fail because of its harness).
    own_errors: Mutex<Vec<String>>,
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`: what `AWS_ENDPOINT_URL` should be.
    pub url: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// A proxy to `upstream` (the emulator's URL) injecting faults into a
    /// `rate` share of the AWS calls, drawn from `seed`.
    pub async fn start(upstream: &str, seed: u64, rate: f64) -> FaultProxy {
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            client: crate::client(),
            seed,
            rate_ppm: AtomicU64::new(ppm(rate)),
            calls: AtomicU64::new(0),
            tally: Mutex::default(),
            tokens: Mutex::default(),
            forced: Mutex::default(),
            own_errors: Mutex::default(),
        });
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fault proxy");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let serving = shared.clone();
        let server = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(connection(socket, serving.clone()));
            }
        });
        FaultProxy {
            url,
            shared,
            server,
        }
    }

    /// Change the share of calls that meet a fault (0 to stop injecting).
    pub fn set_rate(&self, rate: f64) {
        self.shared.rate_ppm.store(ppm(rate), Ordering::Relaxed);
    }

    /// Make the next call of `call` (`Service.Operation`, e.g.
    /// `DynamoDB.PutItem`) meet `fault`, whatever the rate; several queue up.
    pub fn force(&self, call: &str, fault: Fault) {
        let mut forced = self.shared.forced.lock().unwrap();
        forced.entry(call.to_string()).or_default().push_back(fault);
    }

    /// Calls (`Service.Operation`) and the faults met
    /// (`Service.Operation Fault`), counted so far.
    pub fn tally(&self) -> BTreeMap<String, u64> {
        self.shared.tally.lock().unwrap().clone()
    }

    /// Fail the test if the proxy could not do its own part (such as
    /// making messages visible again): its faults were then not the ones
    /// it claims.
    pub fn assert_sound(&self) {
        let errors = self.shared.own_errors.lock().unwrap();
        assert!(
            errors.is_empty(),
            "the fault proxy failed itself: {errors:?}"
        );
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn ppm(rate: f64) -> u64 {
    (rate.clamp(0.0, 1.0) * 1e6) as u64
}

/// splitmix64: the n-th draw of the seeded stream.
fn draw(seed: u64, n: u64) -> u64 {
    let mut z = seed.wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Shared {
    fn count(&self, key: String) {
        *self.tally.lock().unwrap().entry(key).or_default() += 1;
    }

    /// The fault (if any) this call meets, and a second draw for its details.
    fn pick(&self, service: &str, op: &str) -> (Option<Fault>, u64) {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        let (roll, detail) = (draw(self.seed, 2 * n), draw(self.seed, 2 * n + 1));
        let call = format!("{service}.{op}");
        if let Some(fault) = self
            .forced
            .lock()
            .unwrap()
            .get_mut(&call)
            .and_then(VecDeque::pop_front)
        {
            return (Some(fault), detail);
        }
        let menu = menu(service, op);
        let hit = roll % 1_000_000 < self.rate_ppm.load(Ordering::Relaxed) && !menu.is_empty();
        let fault = hit.then(|| menu[(roll / 1_000_000) as usize % menu.len()]);
        (fault, detail)
    }

    async fn forward(&self, req: &Request) -> Option<Answer> {
        let method = reqwest::Method::from_bytes(req.method.as_bytes()).ok()?;
        let mut call = self
            .client
            .request(method, format!("{}{}", self.upstream, req.target));
        for (k, v) in &req.headers {
            if !is_hop_by_hop(k) {
                call = call.header(k, v);
            }
        }
        let response = call.body(req.body.clone()).send().await.ok()?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter(|(k, _)| !is_hop_by_hop(k.as_str()))
            .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let body = response.bytes().await.ok()?.to_vec();
        Some(Answer {
            status,
            headers,
            body,
        })
    }

    /// Make these messages of `queue_url` visible again now (what their
    /// visibility timeout passing would do), straight on the emulator.
    async fn make_visible(&self, queue_url: &str, receipts: &[String]) {
        let entries: Vec<Value> = receipts
            .iter()
            .enumerate()
            .map(|(i, r)| json!({"Id": i.to_string(), "ReceiptHandle": r, "VisibilityTimeout": 0}))
            .collect();
        if entries.is_empty() {
            return;
        }
        let body = json!({"QueueUrl": queue_url, "Entries": entries});
        let answer = self
            .client
            .post(format!("{}/", self.upstream))
            .header("x-amz-target", "AmazonSQS.ChangeMessageVisibilityBatch")
            .header("content-type", "application/x-amz-json-1.0")
            // The emulator routes a call by the service in the credential
            // scope; without one it took this for S3 and changed nothing.
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/sqs/aws4_request, \
                 SignedHeaders=host, Signature=0",
            )
            .body(body.to_string())
            .send()
            .await;
        let changed = match answer {
            Ok(a) => a
                .bytes()
                .await
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok()),
            Err(_) => None,
        };
        // An entry may fail for a receipt gone stale meanwhile (the message
        // deleted or received again); a call the emulator did not take as
        // this one is the proxy's own failure.
        if changed.as_ref().is_none_or(|c| !c["Successful"].is_array()) {
            self.own_errors.lock().unwrap().push(format!(
                "could not make {} messages visible again: {changed:?}",
                receipts.len()
            ));
        }
    }

    /// Serve one call: the answer to write back, or `None` to reset the
    /// connection.
    async fn serve(&self, req: &Request) -> Option<Answer> {
        let Some((service, op)) = req.operation() else {
            return self.forward(req).await;
        };
        let name = format!("{service}.{op}");
        self.count(name.clone());
        let token = (op == "TransactWriteItems")
            .then(|| {
                body_json(&req.body)["ClientRequestToken"]
                    .as_str()
                    .map(String::from)
            })
            .flatten();
        if let Some(answer) = token
            .as_ref()
            .and_then(|t| self.tokens.lock().unwrap().get(t).cloned())
        {
            self.count(format!("{name} replayed by its ClientRequestToken"));
            return Some(answer);
        }
        let (fault, detail) = self.pick(service, &op);
        let Some(fault) = fault else {
            return self.forward(req).await;
        };
        self.count(format!("{name} {fault:?}"));
        let pause = Duration::from_millis(20 + detail % 480);
        use Fault::*;
        match fault {
            ThroughputExceeded => Some(dynamodb_error(
                400,
                "ProvisionedThroughputExceededException",
                "The level of configured provisioned throughput for the table was exceeded. \
                 Consider increasing your provisioning level with the UpdateTable API.",
            )),
            Throttled if service == "DynamoDB" => Some(dynamodb_error(
                400,
                "ThrottlingException",
                "Throughput exceeds the current capacity for one or more global secondary indexes.",
            )),
            Throttled => Some(sqs_error(
                400,
                "RequestThrottled",
                "Sender",
                "Rate exceeded",
            )),
            Internal if service == "DynamoDB" => Some(dynamodb_error(
                500,
                "InternalServerError",
                "Internal server error",
            )),
            Internal => Some(sqs_error(
                500,
                "InternalError",
                "Receiver",
                "We encountered an internal error. Please try again.",
            )),
            CancelledThrottling | CancelledConflict => {
                let items = body_json(&req.body)["TransactItems"]
                    .as_array()
                    .map_or(1, Vec::len)
                    .max(1);
                let (code, message) = if fault == CancelledThrottling {
                    (
                        "ThrottlingError",
                        "Throughput exceeds the current capacity of your table or index.",
                    )
                } else {
                    ("TransactionConflict", "Transaction is ongoing for the item")
                };
                let at = detail as usize % items;
                let reasons: Vec<Value> = (0..items)
                    .map(|i| {
                        if i == at {
                            json!({"Code": code, "Message": message})
                        } else {
                            json!({"Code": "None"})
                        }
                    })
                    .collect();
                let list: Vec<&str> = (0..items)
                    .map(|i| if i == at { code } else { "None" })
                    .collect();
                let mut answer = dynamodb_error(
                    400,
                    "TransactionCanceledException",
                    &format!(
                        "Transaction cancelled, please refer cancellation reasons for specific reasons [{}]",
                        list.join(", ")
                    ),
                );
                let mut body = body_json(&answer.body);
                body["CancellationReasons"] = Value::Array(reasons);
                answer.body = body.to_string().into_bytes();
                Some(answer)
            }
            ResetBefore => None,
            ResetAfter => {
                let answer = self.forward(req).await?;
                if let Some(t) = token {
                    self.tokens.lock().unwrap().insert(t, answer.clone());
                }
                if op == "ReceiveMessage" {
                    let got = body_json(&answer.body);
                    let receipts = receipts_in(&got["Messages"]);
                    let url = body_json(&req.body)["QueueUrl"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    self.make_visible(&url, &receipts).await;
                }
                None
            }
            DelayBefore => {
                tokio::time::sleep(pause).await;
                self.forward(req).await
            }
            Pause(ms) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                self.forward(req).await
            }
            DelayAfter => {
                let answer = self.forward(req).await;
                tokio::time::sleep(pause).await;
                answer
            }
            DeleteSwallowed => {
                let sent = body_json(&req.body);
                let url = sent["QueueUrl"].as_str().unwrap_or_default().to_string();
                let (answer, receipts) = if op == "DeleteMessage" {
                    let receipt = sent["ReceiptHandle"].as_str().unwrap_or_default();
                    (json!({}), vec![receipt.to_string()])
                } else {
                    let entries = sent["Entries"].as_array().cloned().unwrap_or_default();
                    let ok: Vec<Value> = entries.iter().map(|e| json!({"Id": e["Id"]})).collect();
                    (
                        json!({"Successful": ok, "Failed": []}),
                        receipts_in(&sent["Entries"]),
                    )
                };
                self.make_visible(&url, &receipts).await;
                Some(sqs_answer(answer))
            }
            DeleteFailed => {
                let entries = body_json(&req.body)["Entries"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let failed: Vec<Value> = entries
                    .iter()
                    .map(|e| {
                        json!({"Id": e["Id"], "SenderFault": false, "Code": "InternalError",
                            "Message": "We encountered an internal error. Please try again."})
                    })
                    .collect();
                Some(sqs_answer(json!({"Successful": [], "Failed": failed})))
            }
            ReceivedTwice => {
                let mut answer = self.forward(req).await?;
                let sent = body_json(&req.body);
                let max = sent["MaxNumberOfMessages"].as_u64().unwrap_or(1) as usize;
                let mut got = body_json(&answer.body);
                let mut bumped = Vec::new();
                if let Some(messages) = got["Messages"].as_array_mut()
                    && let Some(first) = messages.first().cloned()
                {
                    // Never more than asked for, as SQS: a full answer gives
                    // up its last message (visible again at once) for the copy.
                    if messages.len() >= max {
                        bumped = receipts_in(&Value::Array(messages.split_off(max - 1)));
                    }
                    messages.push(first);
                    answer.body = got.to_string().into_bytes();
                }
                let url = sent["QueueUrl"].as_str().unwrap_or_default();
                self.make_visible(url, &bumped).await;
                Some(answer)
            }
        }
    }
}

fn body_json(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or(Value::Null)
}

fn receipts_in(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|l| {
            l.iter()
                .filter_map(|m| m["ReceiptHandle"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn is_hop_by_hop(name: &str) -> bool {
    [
        "connection",
        "content-length",
        "transfer-encoding",
        "keep-alive",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// A DynamoDB error answer, as AWS shapes it.
fn dynamodb_error(status: u16, code: &str, message: &str) -> Answer {
    Answer {
        status,
        headers: vec![
            ("content-type".into(), "application/x-amz-json-1.0".into()),
            ("x-amzn-errortype".into(), code.into()),
            ("x-amzn-requestid".into(), uuid::Uuid::now_v7().to_string()),
        ],
        body: json!({
            "__type": format!("com.amazonaws.dynamodb.v20120810#{code}"),
            "message": message,
        })
        .to_string()
        .into_bytes(),
    }
}

/// An SQS error answer (JSON protocol, with the query-compatible code).
fn sqs_error(status: u16, code: &str, fault: &str, message: &str) -> Answer {
    Answer {
        status,
        headers: vec![
            ("content-type".into(), "application/x-amz-json-1.0".into()),
            ("x-amzn-query-error".into(), format!("{code};{fault}")),
            ("x-amzn-requestid".into(), uuid::Uuid::now_v7().to_string()),
        ],
        body: json!({"__type": format!("com.amazonaws.sqs#{code}"), "message": message})
            .to_string()
            .into_bytes(),
    }
}

fn sqs_answer(body: Value) -> Answer {
    Answer {
        status: 200,
        headers: vec![
            ("content-type".into(), "application/x-amz-json-1.0".into()),
            ("x-amzn-requestid".into(), uuid::Uuid::now_v7().to_string()),
        ],
        body: body.to_string().into_bytes(),
    }
}

/// One client connection: requests in turn (HTTP/1.1 keep-alive) until the
/// client closes it or a fault resets it.
async fn connection(mut socket: TcpStream, shared: Arc<Shared>) {
    let _ = socket.set_nodelay(true);
    let mut buffer = Vec::new();
    while let Some(req) = read_request(&mut socket, &mut buffer).await {
        let Some(answer) = shared.serve(&req).await else {
            // SO_LINGER 0: closing sends a RST, not a FIN (and, with a zero
            // linger, never blocks, which the deprecation warns of).
            #[allow(deprecated)]
            let _ = socket.set_linger(Some(Duration::ZERO));
            return;
        };
        let mut head = format!("HTTP/1.1 {} {}\r\n", answer.status, reason(answer.status));
        for (k, v) in &answer.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!("content-length: {}\r\n\r\n", answer.body.len()));
        // One write: head and body in two would wait out the client's
        // delayed ACK (Nagle), 40 ms a call.
        let mut whole = head.into_bytes();
        whole.extend_from_slice(&answer.body);
        if socket.write_all(&whole).await.is_err() {
            return;
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        500 => "Internal Server Error",
        _ => "Status",
    }
}

/// Read one request (headers and a `content-length` body); `None` at the
/// connection's end or on anything this small parser does not take.
async fn read_request(socket: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Request> {
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        if !read_more(socket, buffer).await {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, target) = (first.next()?.to_string(), first.next()?.to_string());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map_or(Some(0), |(_, v)| v.parse().ok())?;
    // A chunked request body is not something the SDK sends these calls with.
    if headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("transfer-encoding"))
    {
        return None;
    }
    let start = head_end + 4;
    while buffer.len() < start + length {
        if !read_more(socket, buffer).await {
            return None;
        }
    }
    let body = buffer[start..start + length].to_vec();
    buffer.drain(..start + length);
    Some(Request {
        method,
        target,
        headers,
        body,
    })
}

async fn read_more(socket: &mut TcpStream, buffer: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match socket.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buffer.extend_from_slice(&chunk[..n]);
            true
        }
    }
}
