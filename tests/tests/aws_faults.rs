//! Faults on the AWS wire: `warren dev --backend aws` talks to the emulator
//! through [`FaultProxy`], which answers a seeded share of every DynamoDB and
//! SQS call with a throttle, a 500, a cancelled transaction, a connection
//! reset before or after the call reached the emulator, a delay, a
//! swallowed or failed delete, or a message received twice. Through it run
//! single and batch enqueues, tasks that fail and retry, delayed tasks,
//! webhooks and a 3-step pipeline fed by topic messages; then, with the
//! faults off, the test checks that every task ended as its own policy says,
//! that no attempt called out twice, that no finished pipeline step ran
//! again, that the failed list is exactly the tasks whose attempts ran out,
//! and what every API answer was.
//!
//! The test command runs 500 tasks and 50 executions at 5 %; the full run is
//! `WARREN_FAULT_TASKS=5000 WARREN_FAULT_EXECUTIONS=500 cargo nextest run
//! --workspace -E 'binary(aws_faults)' --no-capture` (with the emulator at
//! `AWS_ENDPOINT_URL`, as `scripts/test` starts it). `WARREN_FAULT_RATE`
//! sets the share of faulted calls, `WARREN_FAULT_SEED=N` replays the
//! faults of a run (it prints its seed), and `WARREN_FAULT_STALL=S` how
//! long the wait for the end may see nothing end (240 s by default).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use warren::adapters::aws::{AwsClients, lambda_sdk_config, sdk_config};
use warren_tests::aws::{Provisioned, sha256_hex};
use warren_tests::faults::FaultProxy;
use warren_tests::lambda::{LambdaFunction, http_event, sqs_deliveries_event};
use warren_tests::*;

/// What the test's clients were answered, by route and status, with the
/// body of every 5xx.
#[derive(Default)]
struct Seen {
    statuses: Mutex<BTreeMap<(String, u16), u64>>,
    errors: Mutex<Vec<String>>,
}

impl Seen {
    fn record(&self, route: &str, r: &Resp) {
        *self
            .statuses
            .lock()
            .unwrap()
            .entry((route.to_string(), r.status))
            .or_default() += 1;
        if r.status >= 500 {
            self.errors
                .lock()
                .unwrap()
                .push(format!("{route}: {} {}", r.status, r.text));
        }
    }
}

/// A server for `http` tasks: `/ok/..` answers 200, `/fail/..` 500, and
/// `/flaky/..` 500 to a path's first call and 200 after; every call is
/// recorded by path, with its time.
struct Calls {
    base: String,
    got: Arc<Mutex<HashMap<String, Vec<Instant>>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Calls {
    async fn start() -> Calls {
        let got: Arc<Mutex<HashMap<String, Vec<Instant>>>> = Arc::default();
        let record = got.clone();
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
            let record = record.clone();
            async move {
                let path = uri.path().to_string();
                let mut got = record.lock().unwrap();
                let calls = got.entry(path.clone()).or_default();
                calls.push(Instant::now());
                let fails =
                    path.starts_with("/fail/") || (path.starts_with("/flaky/") && calls.len() == 1);
                if fails {
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    axum::http::StatusCode::OK
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Calls { base, got, server }
    }

    fn of(&self, path: &str) -> Vec<Instant> {
        self.got
            .lock()
            .unwrap()
            .get(path)
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Calls {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The kinds of task, by index: each says how it must end.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// Calls out once, completes.
    Ok,
    /// Its call always fails: failed after exactly `max_retries + 1` attempts.
    Failing,
    /// Its first call fails, the retry completes.
    Flaky,
    /// Due a few seconds after it is enqueued, then calls out and completes.
    Delayed,
    /// Completes and sends a webhook.
    Webhook,
}

const KINDS: [Kind; 5] = [
    Kind::Ok,
    Kind::Failing,
    Kind::Flaky,
    Kind::Delayed,
    Kind::Webhook,
];
const FAILING_RETRIES: u64 = 2;

/// Every item of a paged list (following `X-Next-Cursor`).
async fn list_all(w: &Warren, path: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = match &cursor {
            Some(c) => format!("{path}{sep}limit=100&cursor={}", enc(c)),
            None => format!("{path}{sep}limit=100"),
        };
        let r = w.get(&url).await;
        r.expect(200);
        let page = r.json.as_array().expect("a list").clone();
        let next = r.header("x-next-cursor").map(String::from);
        let empty = page.is_empty();
        all.extend(page);
        match next {
            Some(c) if !empty => cursor = Some(c),
            _ => return all,
        }
    }
}

/// Send until warren answers something other than a 5xx (a client's
/// retry: safe for single enqueues, which carry an idempotency key, and
/// counted for the rest); every answer is recorded.
async fn until_not_5xx<F, Fut>(seen: &Seen, route: &'static str, mut send: F) -> Resp
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Resp>,
{
    for _ in 0..20 {
        let r = send().await;
        seen.record(route, &r);
        if r.status < 500 {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{route}: 5xx twenty times in a row");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_five_percent_faults_on_every_aws_call_nothing_is_lost_run_twice_or_misjudged() {
    let tasks = setting("WARREN_FAULT_TASKS", 500) as usize;
    let executions = setting("WARREN_FAULT_EXECUTIONS", 50) as usize;
    let rate = std::env::var("WARREN_FAULT_RATE")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.05);
    let seed = setting(
        "WARREN_FAULT_SEED",
        Utc::now().timestamp_nanos_opt().unwrap_or(1) as u64,
    );
    eprintln!(
        "aws faults: {tasks} tasks, {executions} executions, {:.1} % of AWS calls faulted; \
         replay with WARREN_FAULT_SEED={seed}",
        rate * 100.0
    );
    let aws = Provisioned::new();
    let upstream = std::env::var("AWS_ENDPOINT_URL").unwrap();
    // No faults while warren starts and the pipeline is set up: the run is
    // what is measured.
    let proxy = FaultProxy::start(&upstream, seed, 0.0).await;
    let calls = Calls::start().await;
    let rx = Receiver::ok().await;
    let clock = WallClock::now();
    let w = Arc::new(
        Warren::start(
            aws.dev()
                .allow_loopback()
                .env("AWS_ENDPOINT_URL", &proxy.url)
                .args(["--worker-concurrency", "20"]),
        )
        .await,
    );
    let pipeline = w
        .create_pipeline(&json!({"name": "faults", "options": {"event": "faults"}, "steps": [
            {"name": "tell", "kind": "http", "url": rx.url("/step")},
            {"name": "work", "kind": "enqueue", "task_name": "echo", "queue_name": "faultsteps"},
            {"name": "end", "kind": "transform", "expression": "steps.tell.status"}
        ]}))
        .await;
    w.post_empty(&format!("/api/v1/events/{pipeline}"))
        .await
        .expect(200);

    proxy.set_rate(rate);
    let seen = Arc::new(Seen::default());
    let begun = Instant::now();
    let base = calls.base.clone();
    let hooks_at = rx.base.clone();
    let spec = move |i: usize, try_: usize| -> Value {
        let kind = KINDS[i % KINDS.len()];
        // The client's try is in the path: a task a failed request left
        // behind has side effects of its own.
        let url = |what: &str| format!("{base}/{what}/{i}/{try_}");
        let http = |what: &str| json!({"url": url(what), "method": "POST", "body": {"i": i}});
        match kind {
            Kind::Ok => json!({"task_name": "http", "kwargs": http("ok"), "max_retries": 3}),
            Kind::Failing => json!({"task_name": "http", "kwargs": http("fail"),
                "max_retries": FAILING_RETRIES, "retry_delay": 0.2}),
            Kind::Flaky => json!({"task_name": "http", "kwargs": http("flaky"),
                "max_retries": 3, "retry_delay": 0.2}),
            Kind::Delayed => json!({"task_name": "http", "kwargs": http("ok"), "max_retries": 3,
                "scheduled_at": (Utc::now() + chrono::Duration::seconds(1 + (i % 4) as i64)).to_rfc3339()}),
            Kind::Webhook => json!({"task_name": "echo", "args": [i], "max_retries": 3,
                "webhook_url": format!("{hooks_at}/hook/{i}")}),
        }
    };
    let spec = Arc::new(spec);

    // Tasks in chunks of 50: even chunks as one batch, odd ones as single
    // enqueues ten at a time; then the topic messages, ten at a time.
    let mut ids: Vec<Option<String>> = vec![None; tasks];
    let mut retried_batches = 0;
    for (c, chunk) in (0..tasks).collect::<Vec<_>>().chunks(50).enumerate() {
        if c % 2 == 0 {
            let mut try_ = 0;
            let r = until_not_5xx(&seen, "POST /api/v1/enqueue/batch", || {
                try_ += 1;
                let items: Vec<Value> = chunk
                    .iter()
                    .map(|&i| {
                        let mut t = spec(i, try_);
                        t["queue_name"] = json!("faults");
                        t
                    })
                    .collect();
                let w = w.clone();
                async move { w.post("/api/v1/enqueue/batch", &Value::Array(items)).await }
            })
            .await;
            retried_batches += try_ - 1;
            r.expect(201);
            for (&i, id) in chunk.iter().zip(r.json["task_ids"].as_array().unwrap()) {
                ids[i] = Some(id.as_str().unwrap().to_string());
            }
        } else {
            let mut running = tokio::task::JoinSet::new();
            for &i in chunk {
                let (w, seen, spec) = (w.clone(), seen.clone(), spec.clone());
                running.spawn(async move {
                    let mut t = spec(i, 0);
                    t["queue_name"] = json!("faults");
                    t["idempotency_key"] = json!(format!("faults-{seed}-{i}"));
                    let r = until_not_5xx(&seen, "POST /api/v1/enqueue", || {
                        let (w, t) = (w.clone(), t.clone());
                        async move { w.post("/api/v1/enqueue", &t).await }
                    })
                    .await;
                    // 200 for a retry the key answered with the first task.
                    assert!(
                        r.status == 201 || r.status == 200,
                        "enqueue {i}: {} {}",
                        r.status,
                        r.text
                    );
                    (i, r.json["task_id"].as_str().unwrap().to_string())
                });
                if running.len() >= 10 {
                    let (i, id) = running.join_next().await.unwrap().unwrap();
                    ids[i] = Some(id);
                }
            }
            while let Some(done) = running.join_next().await {
                let (i, id) = done.unwrap();
                ids[i] = Some(id);
            }
        }
    }
    let ids: Vec<String> = ids.into_iter().map(Option::unwrap).collect();
    let mut messages: Vec<String> = Vec::with_capacity(executions);
    let mut publishes = tokio::task::JoinSet::new();
    for n in 0..executions {
        let (w, seen) = (w.clone(), seen.clone());
        publishes.spawn(async move {
            let r = until_not_5xx(&seen, "POST /api/v1/topics/faults/messages", || {
                let w = w.clone();
                async move {
                    w.post("/api/v1/topics/faults/messages", &json!({"n": n}))
                        .await
                }
            })
            .await;
            r.expect(202);
            r.json["message_id"].as_str().unwrap().to_string()
        });
        if publishes.len() >= 10 {
            messages.push(publishes.join_next().await.unwrap().unwrap());
        }
    }
    while let Some(done) = publishes.join_next().await {
        messages.push(done.unwrap());
    }
    eprintln!("sent in {:?}", begun.elapsed());

    // Everything ends, faults still on (the polling reads meet them too).
    // A message whose handling failed comes back after its 60 s visibility
    // timeout, and the emulator slows as its table grows, so the wait is
    // for progress, not for a total time: it fails once nothing has ended
    // for `WARREN_FAULT_STALL` seconds (240 by default). A task whose
    // message is lost waits for its 600 s re-dispatch timer, past that.
    let stall = secs(setting("WARREN_FAULT_STALL", 240));
    let (mut progress, mut last_ended) = (Instant::now(), 0);
    loop {
        let r = w.get("/api/v1/queues").await;
        seen.record("GET /api/v1/queues", &r);
        let of = |q: &str, s: &str| {
            r.json
                .as_array()
                .and_then(|qs| qs.iter().find(|x| x["queue_name"] == q))
                .map_or(0, |x| x[s].as_u64().unwrap_or(0))
        };
        let ended = of("faults", "completed") + of("faults", "failed");
        let steps = of("faultsteps", "completed");
        if r.status == 200 && ended >= tasks as u64 && steps >= executions as u64 {
            break;
        }
        if ended + steps > last_ended {
            (progress, last_ended) = (Instant::now(), ended + steps);
        }
        if progress.elapsed() >= stall {
            let stuck = w.get("/api/v1/tasks?status=pending&limit=20").await;
            panic!(
                "nothing ended for {stall:?}: {}\nstill pending: {}\nfaults: {:?}\n{}",
                r.text,
                stuck.text,
                proxy.tally(),
                w.log_tail(40)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The executions' last writes come after their tasks' ends.
    wait_until("every execution to end", secs(60), async || {
        let r = w
            .get(&format!(
                "/api/v1/pipelines/{pipeline}/executions?limit=100"
            ))
            .await;
        seen.record("GET /api/v1/pipelines/{id}/executions", &r);
        (r.status == 200
            && r.json
                .as_array()
                .is_some_and(|es| es.iter().all(|e| e["status"] != "running")))
        .then_some(())
    })
    .await;
    let elapsed = begun.elapsed();
    proxy.set_rate(0.0);
    // Settle: a message made visible again late may still be running.
    tokio::time::sleep(secs(2)).await;
    // A webhook whose delivery met a fault is owed, and the scheduler sends
    // it again later (after its task ended): give those time to come. One
    // that never does fails the verdict below.
    let hooked: Vec<String> = (0..ids.len())
        .filter(|i| KINDS[i % KINDS.len()] == Kind::Webhook)
        .map(|i| format!("/hook/{i}"))
        .collect();
    let webhooks_due = Instant::now() + secs(120);
    while Instant::now() < webhooks_due {
        let came: HashSet<String> = rx.requests().iter().map(|r| r.uri.clone()).collect();
        if hooked.iter().all(|h| came.contains(h)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "{tasks} tasks and {executions} executions ended {elapsed:?} after the first was sent"
    );

    // ----- with the faults off, the verdict -----
    let listed = list_all(&w, "/api/v1/tasks?queue=faults").await;
    let by_id: HashMap<&str, &Value> = listed
        .iter()
        .map(|t| (t["id"].as_str().unwrap(), t))
        .collect();
    let ours: HashSet<&str> = ids.iter().map(String::as_str).collect();
    // Tasks of batch requests whose answer was a 5xx (the client retried).
    let orphans: Vec<&&Value> = by_id
        .iter()
        .filter(|(id, _)| !ours.contains(*id))
        .map(|(_, t)| t)
        .collect();
    assert!(
        orphans.is_empty() || retried_batches > 0,
        "tasks nobody enqueued: {orphans:?}"
    );

    let mut failed_expected: HashSet<String> = HashSet::new();
    let mut attempts_total = 0;
    let mut unran_attempts = 0;
    let check = |t: &Value, i: usize| -> (u64, usize) {
        let kind = KINDS[i % KINDS.len()];
        let attempts = t["attempts"].as_u64().unwrap();
        let url = t["kwargs"]["url"].as_str().unwrap_or_default();
        let path = url.strip_prefix(calls.base.as_str()).unwrap_or_default();
        let made = calls.of(path);
        match kind {
            Kind::Failing => {
                assert_eq!(t["status"], "failed", "{t}");
                assert_eq!(
                    attempts,
                    FAILING_RETRIES + 1,
                    "failed after its attempts: {t}"
                );
            }
            _ => assert_eq!(t["status"], "completed", "{t}"),
        }
        if kind == Kind::Webhook {
            return (attempts, 0);
        }
        assert!(
            !made.is_empty() && made.len() as u64 <= attempts,
            "task {} called out {} times in {attempts} attempts: {t}",
            t["id"],
            made.len()
        );
        if kind == Kind::Flaky {
            assert!(attempts >= 2, "{t}");
        }
        if kind == Kind::Delayed {
            let due = time_of(&t["scheduled_at"]);
            assert!(
                clock.at(made[0]) + CLOCK_SLACK >= due,
                "task {} ran before it was due at {due}",
                t["id"]
            );
        }
        if t["status"] == "completed" {
            let checkpoint = time_of(&t["completed_at"]);
            assert!(
                made.iter()
                    .all(|at| clock.at(*at) <= checkpoint + CLOCK_SLACK),
                "task {} called out after it completed at {checkpoint}",
                t["id"]
            );
        }
        (attempts, attempts as usize - made.len())
    };
    for (i, id) in ids.iter().enumerate() {
        let t = by_id
            .get(id.as_str())
            .unwrap_or_else(|| panic!("task {i} ({id}) is not listed"));
        let (attempts, unran) = check(t, i);
        attempts_total += attempts;
        unran_attempts += unran;
        if KINDS[i % KINDS.len()] == Kind::Failing {
            failed_expected.insert(id.clone());
        }
        if KINDS[i % KINDS.len()] == Kind::Webhook {
            let hooks = rx
                .requests()
                .iter()
                .filter(|r| r.uri == format!("/hook/{i}"))
                .count();
            assert!(hooks >= 1, "task {id}'s webhook never came");
        }
    }
    for t in &orphans {
        let i = t["kwargs"]["body"]["i"]
            .as_u64()
            .or(t["args"][0].as_u64())
            .unwrap() as usize;
        let (attempts, unran) = check(t, i);
        attempts_total += attempts;
        unran_attempts += unran;
        if KINDS[i % KINDS.len()] == Kind::Failing {
            failed_expected.insert(t["id"].as_str().unwrap().to_string());
        }
    }

    // The failed list is exactly the tasks whose attempts ran out.
    let failed: HashSet<String> = list_all(&w, "/api/v1/tasks/failed?queue=faults")
        .await
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(failed, failed_expected, "the failed list");
    // The counters equal the tasks' own states.
    let q = w.queue("faults").await.expect("the queue is listed");
    let all = tasks + orphans.len();
    assert_eq!(
        (
            q["completed"].as_u64(),
            q["failed"].as_u64(),
            q["pending"].as_u64(),
            q["running"].as_u64()
        ),
        (
            Some((all - failed_expected.len()) as u64),
            Some(failed_expected.len() as u64),
            Some(0),
            Some(0)
        ),
        "{q}"
    );

    // Every accepted message ran its pipeline once, each step once past
    // its checkpoint.
    let runs = list_all(&w, &format!("/api/v1/pipelines/{pipeline}/executions")).await;
    let mut by_message: HashMap<&str, Vec<&Value>> = HashMap::new();
    for e in &runs {
        by_message
            .entry(e["trigger_id"].as_str().unwrap_or_default())
            .or_default()
            .push(e);
    }
    let mut step_calls: HashMap<String, Vec<Instant>> = HashMap::new();
    for r in rx.requests().into_iter().filter(|r| r.uri == "/step") {
        step_calls
            .entry(r.header("webhook-id").unwrap_or("?").to_string())
            .or_default()
            .push(r.at);
    }
    for m in &messages {
        let runs = by_message.get(m.as_str()).map_or(&[][..], Vec::as_slice);
        assert_eq!(runs.len(), 1, "message {m} ran {} times", runs.len());
        let e = runs[0];
        assert_eq!(e["status"], "success", "{e}");
        let step = &e["steps"][0];
        let made = step_calls
            .get(&format!("msg_{}_tell", e["id"].as_str().unwrap()))
            .map_or(&[][..], Vec::as_slice);
        let attempts = step["attempts"].as_u64().unwrap() as usize;
        assert!(
            !made.is_empty() && made.len() <= attempts,
            "execution {}'s http step called out {} times in {attempts} attempts",
            e["id"],
            made.len()
        );
        let checkpoint = time_of(&step["completed_at"]);
        assert!(
            made.iter()
                .all(|at| clock.at(*at) <= checkpoint + CLOCK_SLACK),
            "execution {}'s http step called out after its checkpoint",
            e["id"]
        );
    }
    let steps_enqueued = w.count("faultsteps", "completed").await;
    assert_eq!(
        steps_enqueued,
        runs.len() as u64,
        "one task per execution's enqueue step"
    );
    let hooks = rx
        .requests()
        .iter()
        .filter(|r| r.uri.starts_with("/hook/"))
        .count();

    // What the clients saw.
    let statuses = seen.statuses.lock().unwrap().clone();
    let errors = seen.errors.lock().unwrap().clone();
    let tally = proxy.tally();
    let (mut aws_calls, mut faults) = (0, 0);
    for (k, n) in &tally {
        if k.contains(' ') {
            faults += n;
        } else {
            aws_calls += n;
        }
    }
    eprintln!("AWS calls {aws_calls}, faults injected {faults}:");
    for (k, n) in &tally {
        eprintln!("  {k}: {n}");
    }
    eprintln!("answers to the test's clients:");
    for ((route, status), n) in &statuses {
        eprintln!("  {route} {status}: {n}");
    }
    eprintln!(
        "attempts {attempts_total} ({unran_attempts} counted without a call), \
         webhooks {hooks} for {} tasks, executions {}, extra tasks of retried batches {}",
        tasks / KINDS.len(),
        runs.len(),
        orphans.len()
    );
    for e in &errors {
        eprintln!("  5xx: {e}");
    }
    // A 5xx is a structured 503 only: the SDK's retries (three tries per
    // call) ran out on the backend; never a 500.
    for e in &errors {
        assert!(e.contains(": 503 ") && e.contains("\"code\""), "{e}");
    }
    assert!(faults > 0, "no fault was injected");
    proxy.assert_sound();
}

/// What Lambda's SQS event source mapping does for the worker function:
/// receive batches of 10 straight from the emulator (this is AWS's side, not
/// warren's, so it goes around the proxy), invoke the function, and delete
/// the messages it did not report as failed; a failed invocation deletes
/// nothing, and its messages come back after their visibility timeout.
async fn event_source_mapping(
    mut worker: LambdaFunction,
    queue: String,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> LambdaFunction {
    use std::sync::atomic::Ordering;
    let sqs = AwsClients::new(&sdk_config().await, None).queue();
    let arn = format!("arn:aws:sqs:us-east-1:000000000000:{queue}");
    while !stop.load(Ordering::Relaxed) {
        let batch = sqs
            .receive(&queue, 10, Duration::from_secs(20), Duration::from_secs(1))
            .await
            .expect("the emulator answers a receive");
        if batch.is_empty() {
            continue;
        }
        let Ok(answer) = worker.invoke(sqs_deliveries_event(&arn, &batch)).await else {
            continue;
        };
        let failed: HashSet<&str> = answer["batchItemFailures"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|f| f["itemIdentifier"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        let done: Vec<String> = batch
            .iter()
            .filter(|d| !failed.contains(d.message_id.as_str()))
            .map(|d| d.receipt.clone())
            .collect();
        sqs.delete_batch(&queue, done)
            .await
            .expect("the emulator answers a delete");
    }
    worker
}

/// One EventBridge tick of the scheduler function (its answer does not
/// matter: a faulted tick is retried by the next).
async fn tick(scheduler: &mut LambdaFunction) {
    let _ = scheduler
        .invoke(json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}))
        .await;
}

/// The Lambda binaries themselves (enqueue, enqueue-batch, worker,
/// scheduler) under the Runtime API harness, every AWS call of theirs
/// through the fault proxy at 5 %: every task ends as its policy says and
/// the counters agree. The batches' tasks share chunks (the worker holds
/// their leases by message, as template.yaml sets it up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_binaries_at_five_percent_faults_lose_nothing() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let tasks = setting("WARREN_FAULT_LAMBDA_TASKS", 200) as usize;
    let seed = setting(
        "WARREN_FAULT_SEED",
        Utc::now().timestamp_nanos_opt().unwrap_or(1) as u64,
    );
    eprintln!("lambda faults: {tasks} tasks; replay with WARREN_FAULT_SEED={seed}");
    let aws = Provisioned::new();
    let upstream = std::env::var("AWS_ENDPOINT_URL").unwrap();
    let proxy = FaultProxy::start(&upstream, seed, 0.0).await;
    const KEY: &str = "lambda-faults-key";
    const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let hash = sha256_hex(KEY);
    let mut env = aws.function_env(&hash, WEBHOOK_SECRET);
    env.push(("AWS_ENDPOINT_URL", &proxy.url));
    let mut enqueue = LambdaFunction::start("enqueue", &env).await;
    let mut enqueue_batch = LambdaFunction::start("enqueue-batch", &env).await;
    let mut scheduler = LambdaFunction::start("scheduler", &env).await;
    let worker = LambdaFunction::start("worker", &env).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mapping = tokio::spawn(event_source_mapping(
        worker,
        aws.task_queue.clone(),
        stop.clone(),
    ));
    proxy.set_rate(0.05);

    // Every third task fails each of its 3 attempts; the rest echo.
    let failing = |i: usize| i.is_multiple_of(3);
    let auth = [("x-api-key", KEY)];
    let mut statuses: BTreeMap<u64, u64> = BTreeMap::new();
    let mut ids = Vec::with_capacity(tasks);
    let mut ticked = Instant::now();
    for i in 0..tasks {
        let body = if failing(i) {
            json!({"task_name": "fail", "queue_name": "lambdafaults", "max_retries": 2,
                   "retry_delay": 0.2, "idempotency_key": format!("lf-{seed}-{i}")})
        } else {
            json!({"task_name": "echo", "queue_name": "lambdafaults", "args": [i],
                   "max_retries": 3, "idempotency_key": format!("lf-{seed}-{i}")})
        };
        let event = http_event("POST", "/api/v1/enqueue", &auth, Some(&body));
        let mut id = None;
        for _ in 0..20 {
            let answer = enqueue
                .invoke(event.clone())
                .await
                .expect("enqueue answers");
            let status = answer["statusCode"].as_u64().unwrap_or(0);
            *statuses.entry(status).or_default() += 1;
            if status < 500 {
                assert!(status == 201 || status == 200, "enqueue {i}: {answer}");
                let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
                id = Some(body["task_id"].as_str().unwrap().to_string());
                break;
            }
            let body: Value = serde_json::from_str(answer["body"].as_str().unwrap_or("null"))
                .unwrap_or(Value::Null);
            assert_eq!(status, 503, "a 5xx other than 503: {answer}");
            assert!(
                body["code"].is_string(),
                "a 503 without a JSON code: {answer}"
            );
        }
        ids.push((i, id.expect("enqueued within 20 tries")));
        if ticked.elapsed() > Duration::from_secs(2) {
            tick(&mut scheduler).await;
            ticked = Instant::now();
        }
    }
    // Batches of echo tasks (numbered on from `tasks`), each sent again
    // after a 5xx: a try whose answer was lost may have stored its tasks
    // all the same, which then run too (`orphans`).
    let batches = setting("WARREN_FAULT_LAMBDA_BATCHES", 4) as usize;
    let mut retried_batches = 0;
    for b in 0..batches {
        let numbers: Vec<usize> = (tasks + b * 25..tasks + (b + 1) * 25).collect();
        let items: Vec<Value> = numbers
            .iter()
            .map(|i| json!({"task_name": "echo", "queue_name": "lambdafaults", "args": [i], "max_retries": 3}))
            .collect();
        let event = http_event("POST", "/api/v1/enqueue/batch", &auth, Some(&json!(items)));
        let mut created = None;
        for _ in 0..20 {
            let answer = enqueue_batch
                .invoke(event.clone())
                .await
                .expect("enqueue-batch answers");
            let status = answer["statusCode"].as_u64().unwrap_or(0);
            *statuses.entry(status).or_default() += 1;
            if status < 500 {
                assert_eq!(status, 201, "batch {b}: {answer}");
                let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
                created = Some(body["task_ids"].as_array().unwrap().clone());
                break;
            }
            retried_batches += 1;
        }
        let created = created.expect("a batch enqueued within 20 tries");
        for (i, id) in numbers.iter().zip(created) {
            ids.push((*i, id.as_str().unwrap().to_string()));
        }
    }
    let expected_failed = (0..tasks).filter(|&i| failing(i)).count() as u64;
    let expected_completed = (tasks + batches * 25) as u64 - expected_failed;

    // Until everything ended; the scheduler ticks as EventBridge would.
    // The reads go around the proxy: they are the test's, not the run's.
    let mut query =
        LambdaFunction::start("task-query", &aws.function_env(&hash, WEBHOOK_SECRET)).await;
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        tick(&mut scheduler).await;
        let queues = query
            .invoke(http_event("GET", "/api/v1/queues", &auth, None))
            .await
            .expect("task-query answers");
        let queues: Value = serde_json::from_str(queues["body"].as_str().unwrap()).unwrap();
        let q = queues
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["queue_name"] == "lambdafaults")
            .cloned()
            .unwrap_or(json!({}));
        let open = q["pending"].as_u64().unwrap_or(1) + q["running"].as_u64().unwrap_or(0);
        if open == 0 {
            proxy.set_rate(0.0);
            let completed = q["completed"].as_u64().unwrap_or(0);
            assert_eq!(
                q["failed"].as_u64(),
                Some(expected_failed),
                "the counters: {q}"
            );
            // Orphans of retried batches complete too.
            assert!(
                completed == expected_completed
                    || retried_batches > 0 && completed > expected_completed,
                "the counters: {q} ({retried_batches} batch tries answered 5xx)"
            );
            for (i, id) in &ids {
                let got = query
                    .invoke(http_event(
                        "GET",
                        &format!("/api/v1/tasks/{id}"),
                        &auth,
                        None,
                    ))
                    .await
                    .expect("task-query answers");
                let task: Value = serde_json::from_str(got["body"].as_str().unwrap()).unwrap();
                if *i < tasks && failing(*i) {
                    assert_eq!(
                        (task["status"].as_str(), task["attempts"].as_u64()),
                        (Some("failed"), Some(3)),
                        "task {i}: {task}"
                    );
                } else {
                    assert_eq!(task["status"], "completed", "task {i}: {task}");
                    assert_eq!(result_json(&task)["args"], json!([i]), "task {i}: {task}");
                }
            }
            break;
        }
        if Instant::now() >= deadline {
            let open = query
                .invoke(http_event(
                    "GET",
                    "/api/v1/tasks?queue=lambdafaults&status=pending",
                    &auth,
                    None,
                ))
                .await
                .expect("task-query answers");
            stop.store(true, Ordering::Relaxed);
            let worker = mapping.await.unwrap();
            let ids: Vec<String> =
                serde_json::from_str::<Value>(open["body"].as_str().unwrap_or("[]"))
                    .unwrap_or_default()
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t["id"].as_str().map(str::to_string))
                    .collect();
            let about = |log: String| -> String {
                log.lines()
                    .filter(|l| {
                        ids.iter().any(|id| l.contains(id.as_str()))
                            || l.contains("ERROR")
                            || l.contains("WARN")
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            panic!(
                "tasks still open 240 s after the last enqueue: {q}\n{}\nworker:\n{}\nscheduler:\n{}\nfaults {:?}",
                open["body"],
                about(worker.log()),
                about(scheduler.log()),
                proxy.tally()
            );
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    stop.store(true, Ordering::Relaxed);
    mapping.await.unwrap();
    proxy.assert_sound();
    eprintln!("enqueue answers by status: {statuses:?}");
    eprintln!(
        "faults injected: {:?}",
        proxy
            .tally()
            .iter()
            .filter(|(k, _)| k.contains(' '))
            .collect::<Vec<_>>()
    );
}

/// A fresh table's DynamoDB store, every call through a proxy that faults
/// only what a test forces.
async fn store_behind_quiet_proxy() -> (Arc<dyn warren::ports::Store>, FaultProxy) {
    let aws = Provisioned::new();
    let upstream = std::env::var("AWS_ENDPOINT_URL").unwrap();
    let proxy = FaultProxy::start(&upstream, 1, 0.0).await;
    // Built from the variables alone: aws-config's provider chain would let
    // `AWS_ENDPOINT_URL` win over an endpoint set in code.
    let sdk = lambda_sdk_config()
        .expect("the emulator's settings")
        .to_builder()
        .endpoint_url(&proxy.url)
        .build();
    (AwsClients::new(&sdk, None).store(&aws.table), proxy)
}

/// The DynamoDB store behind the proxy, with scripted faults: a conditional
/// put whose first try lands but whose answer is lost (the connection reset
/// after the emulator wrote) is tried again by the SDK, and that retry fails
/// its condition on the put's own write. The store reports the write done,
/// as it is. A retry that meets someone else's write still conflicts, and so
/// does a first try that finds an identical item (two writers may build the
/// same item; only a retry can meet its own).
#[tokio::test(flavor = "multi_thread")]
async fn a_retried_put_that_landed_is_not_its_own_conflict() {
    use warren::ports::{Condition, Item, Key, WriteOp};
    use warren_tests::faults::Fault;

    let (store, proxy) = store_behind_quiet_proxy().await;
    let key = Key::new("SELF#conflict", "item");
    let item = |version: u64, by: &str| {
        let attrs = serde_json::json!({"version": version, "by": by});
        Item::new(key.clone(), attrs.as_object().cloned().unwrap_or_default())
    };
    let put = |item: Item, cond: Condition| vec![WriteOp::Put { item, cond }];
    store
        .transact(put(item(1, "a"), Condition::Absent { now: 0 }))
        .await
        .expect("the first version");

    proxy.force("DynamoDB.PutItem", Fault::ResetAfter);
    store
        .transact(put(item(2, "a"), Condition::version(1)))
        .await
        .expect("a retried put whose first try landed is done, not a conflict");
    assert_eq!(store.get(&key).await.unwrap(), Some(item(2, "a")));

    let again = store
        .transact(put(item(2, "a"), Condition::version(1)))
        .await;
    assert!(
        again.as_ref().is_err_and(|e| e.is_conflict()),
        "a first try that finds an identical item conflicts: {again:?}"
    );

    proxy.force("DynamoDB.PutItem", Fault::ResetAfter);
    let other = store
        .transact(put(item(2, "b"), Condition::version(1)))
        .await;
    assert!(
        other.as_ref().is_err_and(|e| e.is_conflict()),
        "a retry that meets another write conflicts: {other:?}"
    );
    assert_eq!(store.get(&key).await.unwrap(), Some(item(2, "a")));

    let tally = proxy.tally();
    assert_eq!(
        tally.get("DynamoDB.PutItem ResetAfter"),
        Some(&2),
        "{tally:?}"
    );
    assert_eq!(
        tally.get("DynamoDB.PutItem"),
        Some(&6),
        "each reset put was tried twice: {tally:?}"
    );
}

/// Two workers claim one execution at the same instant (a message handed
/// twice; an injected clock makes the instant exact). One claim's put is
/// reset before it reaches DynamoDB, and the SDK's retry is held until the
/// other claim has landed (it is held 0.3 s; the retry 2 s). If the two
/// claims were the same item, the retry would take the other's write for
/// its own earlier try, and both workers would run the step. A claim carries
/// a random token, so the step runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_claims_of_one_execution_at_once_run_its_step_once() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use warren::adapters::clock::ManualClock;
    use warren::domain::execution::{ExecutionStatus, TriggerType};
    use warren::handlers::Registry;
    use warren::service::{executions, pipelines};
    use warren_tests::faults::Fault;

    let (store, proxy) = store_behind_quiet_proxy().await;
    // The step outlasts the held retry, so the winner's checkpoint comes
    // after it: the retry meets the winner's claim.
    let runs = Arc::new(AtomicUsize::new(0));
    let mut registry = Registry::standard();
    let counted = runs.clone();
    registry.register("count", move |_| {
        let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            tokio::time::sleep(Duration::from_secs(4)).await;
            Ok(json!(n))
        }
    });
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let mut deps = warren::testing::memory_deps(clock, registry);
    deps.store = store;
    let spec = serde_json::from_value(json!({
        "name": "once",
        "steps": [{"name": "a", "kind": "task", "task_name": "count"}]
    }))
    .unwrap();
    let p = pipelines::create(&deps, spec).await.unwrap();
    let e = executions::run_pipeline(&deps, &p, TriggerType::Manual, None, json!({}))
        .await
        .unwrap();

    for fault in [Fault::ResetBefore, Fault::Pause(300), Fault::Pause(2_000)] {
        proxy.force("DynamoDB.PutItem", fault);
    }
    let (a, b) = tokio::join!(executions::run(&deps, e.id), executions::run(&deps, e.id));
    a.unwrap();
    b.unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the step ran twice");
    let done = executions::get(&deps, e.id).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Success, "{done:?}");
    let tally = proxy.tally();
    for fault in ["ResetBefore", "Pause(300)", "Pause(2000)"] {
        let met = tally.get(&format!("DynamoDB.PutItem {fault}"));
        assert_eq!(met, Some(&1), "{fault}: {tally:?}");
    }
}
