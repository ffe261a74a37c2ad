//! A Lambda Runtime API on loopback: it spawns a real function binary (the
//! one `cargo lambda build` ships as `bootstrap`), hands it events through
//! `GET /2018-06-01/runtime/invocation/next` and collects what it answers,
//! the way the Lambda service does. So the `lambda_http` and SQS-event code
//! paths run for real, not only the routers behind them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use warren::ports::Delivery;

/// How long one invocation may take before the harness gives up.
const INVOKE_TIMEOUT: Duration = Duration::from_secs(60);

type Answer = Result<Value, Value>;

struct Shared {
    events: tokio::sync::Mutex<mpsc::UnboundedReceiver<(String, Value)>>,
    waiting: Mutex<HashMap<String, oneshot::Sender<Answer>>>,
    /// When the function first asked for work: the end of its cold start.
    first_poll: Mutex<Option<Instant>>,
    init_error: Mutex<Option<Value>>,
}

/// One function process and the Runtime API it polls.
pub struct LambdaFunction {
    name: String,
    /// The function's stdout and stderr (its log lines and EMF metrics).
    log: PathBuf,
    child: Child,
    spawned: Instant,
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<(String, Value)>,
    next_id: u64,
    server: tokio::task::JoinHandle<()>,
}

/// Path of a function binary built beside the test executable
/// (`target/<profile>/<name>`).
pub fn function_bin(name: &str) -> PathBuf {
    let bin = crate::warren_bin().with_file_name(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} does not exist: run `cargo build --workspace --bins` first",
        bin.display()
    );
    bin
}

impl LambdaFunction {
    /// Start the Runtime API on a free port and spawn `function_bin(name)`
    /// against it with `env` (plus what the Lambda service always sets).
    pub async fn start(name: &str, env: &[(&str, &str)]) -> LambdaFunction {
        Self::start_bin(name, &function_bin(name), env).await
    }

    pub async fn start_bin(name: &str, bin: &Path, env: &[(&str, &str)]) -> LambdaFunction {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            events: tokio::sync::Mutex::new(rx),
            waiting: Mutex::new(HashMap::new()),
            first_poll: Mutex::new(None),
            init_error: Mutex::new(None),
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind runtime API");
        let addr = listener.local_addr().expect("runtime API address");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });

        let log = std::env::temp_dir().join(format!(
            "warren-lambda-{name}-{}.log",
            uuid::Uuid::now_v7().simple()
        ));
        let mut cmd = Command::new(bin);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("WARREN_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .stdin(Stdio::null());
        // Lambda sends both streams to CloudWatch Logs; so does the harness,
        // to one file.
        let file = std::fs::File::create(&log).expect("create function log");
        cmd.stdout(Stdio::from(file.try_clone().expect("clone log handle")))
            .stderr(Stdio::from(file));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let spawned = Instant::now();
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", bin.display()));
        LambdaFunction {
            name: name.into(),
            log,
            child,
            spawned,
            shared,
            events: tx,
            next_id: 0,
            server,
        }
    }

    /// Hand `event` to the function and wait for its answer: `Ok` with the
    /// response payload, `Err` with the error payload it reported.
    pub async fn invoke(&mut self, event: Value) -> Answer {
        self.next_id += 1;
        let id = format!("{}-{}", self.name, self.next_id);
        let (tx, rx) = oneshot::channel();
        self.shared.waiting.lock().unwrap().insert(id.clone(), tx);
        self.events.send((id, event)).expect("runtime API is gone");
        match tokio::time::timeout(INVOKE_TIMEOUT, rx).await {
            Ok(Ok(answer)) => answer,
            _ => {
                let init = self.shared.init_error.lock().unwrap().clone();
                let status = self.child.try_wait().ok().flatten();
                panic!(
                    "{}: no answer within {INVOKE_TIMEOUT:?} (exit status {status:?}, init error {init:?})\nlog:\n{}",
                    self.name,
                    self.log()
                )
            }
        }
    }

    /// What the function wrote so far (stdout and stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait up to `timeout` for the process to exit (a failed start).
    pub async fn exit_status(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// Time from spawning the process to its first request for work.
    pub fn cold_start(&self) -> Option<Duration> {
        self.shared
            .first_poll
            .lock()
            .unwrap()
            .map(|t| t.duration_since(self.spawned))
    }
}

impl Drop for LambdaFunction {
    fn drop(&mut self) {
        // A function polls forever; the Lambda service freezes or kills it.
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.server.abort();
        let _ = std::fs::remove_file(&self.log);
    }
}

async fn next(State(shared): State<Arc<Shared>>) -> Response {
    shared
        .first_poll
        .lock()
        .unwrap()
        .get_or_insert_with(Instant::now);
    let Some((id, event)) = shared.events.lock().await.recv().await else {
        return StatusCode::GONE.into_response();
    };
    let deadline = std::time::SystemTime::now() + INVOKE_TIMEOUT;
    let deadline_ms = deadline
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let mut headers = HeaderMap::new();
    let mut set = |k: &'static str, v: String| {
        headers.insert(k, HeaderValue::from_str(&v).expect("header value"));
    };
    set("lambda-runtime-aws-request-id", id);
    set("lambda-runtime-deadline-ms", deadline_ms.to_string());
    set(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:000000000000:function:test".into(),
    );
    set(
        "lambda-runtime-trace-id",
        "Root=1-00000000-000000000000000000000000".into(),
    );
    (headers, axum::Json(event)).into_response()
}

fn settle(shared: &Shared, id: &str, answer: Answer) -> StatusCode {
    match shared.waiting.lock().unwrap().remove(id) {
        Some(tx) => {
            let _ = tx.send(answer);
            StatusCode::ACCEPTED
        }
        None => StatusCode::NOT_FOUND,
    }
}

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_string()))
}

async fn response(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    body: String,
) -> StatusCode {
    settle(&shared, &id, Ok(parse(&body)))
}

async fn error(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    body: String,
) -> StatusCode {
    settle(&shared, &id, Err(parse(&body)))
}

async fn init_error(State(shared): State<Arc<Shared>>, body: String) -> StatusCode {
    *shared.init_error.lock().unwrap() = Some(parse(&body));
    StatusCode::ACCEPTED
}

/// An API Gateway HTTP API (payload 2.0) event for `method path` with a JSON
/// body and headers, as the gateway sends it to a function.
pub fn http_event(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Value {
    let (raw_path, query) = path.split_once('?').unwrap_or((path, ""));
    let mut h = serde_json::Map::new();
    h.insert("content-type".into(), "application/json".into());
    for (k, v) in headers {
        h.insert(k.to_ascii_lowercase(), Value::String((*v).into()));
    }
    serde_json::json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": query,
        "headers": h,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "warren",
            "domainName": "warren.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "warren",
            "http": {
                "method": method,
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "warren-tests"
            },
            "requestId": "req",
            "routeKey": "$default",
            "stage": "$default",
            "time": "25/Nov/2026:00:00:00 +0000",
            "timeEpoch": 0
        },
        "body": body.map(|b| b.to_string()),
        "isBase64Encoded": false
    })
}

/// An SQS event (what the event source mapping hands the worker) carrying
/// `(message_id, body)` records.
pub fn sqs_event(records: &[(&str, &str)]) -> Value {
    let records: Vec<_> = records
        .iter()
        .map(|(id, body)| (*id, *body, &[][..]))
        .collect();
    sqs_event_with_attributes(&records)
}

/// String message attributes of a record: `(name, value)`.
pub type Attributes<'a> = &'a [(&'a str, &'a str)];

/// An SQS event of `(message_id, body, string message attributes)` records,
/// the attributes shaped as the event source mapping sends them.
pub fn sqs_event_with_attributes(records: &[(&str, &str, Attributes)]) -> Value {
    let deliveries: Vec<Delivery> = records
        .iter()
        .map(|(id, body, attributes)| Delivery {
            message_id: id.to_string(),
            receipt: format!("receipt-{id}"),
            body: body.to_string(),
            receive_count: 1,
            attributes: attributes
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        })
        .collect();
    sqs_deliveries_event(
        "arn:aws:sqs:us-east-1:000000000000:warren-tasks",
        &deliveries,
    )
}

/// The SQS event the event source mapping hands a function for messages
/// received from the queue `queue_arn` (their receipts are real, so the
/// function can change their visibility).
pub fn sqs_deliveries_event(queue_arn: &str, deliveries: &[Delivery]) -> Value {
    let records: Vec<Value> = deliveries
        .iter()
        .map(|d| {
            let attributes: serde_json::Map<String, Value> = d
                .attributes
                .iter()
                .map(|(name, value)| {
                    let attribute = serde_json::json!({
                        "stringValue": value,
                        "stringListValues": [],
                        "binaryListValues": [],
                        "dataType": "String"
                    });
                    (name.clone(), attribute)
                })
                .collect();
            serde_json::json!({
                "messageId": d.message_id,
                "receiptHandle": d.receipt,
                "body": d.body,
                "attributes": {"ApproximateReceiveCount": d.receive_count.to_string()},
                "messageAttributes": attributes,
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    serde_json::json!({ "Records": records })
}
