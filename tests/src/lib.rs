//! End-to-end test support: start the built `warren` binary as `warren dev`
//! on a free port with a fresh data directory, drive its API over HTTP,
//! kill -9 it and restart it on the same data, and receive the webhooks and
//! `http` task calls it makes.
//!
//! The binary is not built by the tests: run `cargo build --bin warren`
//! first (`scripts/test` does). `WARREN_BIN` overrides its path.

pub mod aws;
pub mod faults;
pub mod lambda;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
pub use reqwest::header::HeaderMap;
pub use serde_json::{Value, json};
use sha2::Sha256;

/// How long `warren dev` may take to print its listening line.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The line `warren dev` prints on stdout once it serves requests.
const LISTENING: &str = "warren listening on http://";

/// Extra command-line arguments and environment of one `warren dev`.
#[derive(Clone, Debug, Default)]
pub struct Opts {
    args: Vec<String>,
    env: Vec<(String, String)>,
    api_key: Option<String>,
    /// Serve with users only: no `--open`, no bootstrap key.
    signed_in: bool,
}

impl Opts {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add command-line arguments (after `dev --port 0 --data-dir <tmp>`).
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Set an environment variable of the server process.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Serve with `WARREN_API_KEY=key`; the harness's helpers then send
    /// `X-API-Key: key` (the `*_raw` ones do not).
    pub fn api_key(mut self, key: &str) -> Self {
        self.env.push(("WARREN_API_KEY".into(), key.into()));
        self.api_key = Some(key.into());
        self
    }

    /// The client sends this key without the server being told about it
    /// (e.g. when the key is passed with `--api-key`).
    pub fn client_key(mut self, key: &str) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// Serve as a deployment does: neither `--open` nor a bootstrap key, so
    /// every API call needs a user's credentials (the harness's helpers
    /// send none: use the `*_raw` ones).
    pub fn signed_in(mut self) -> Self {
        self.signed_in = true;
        self
    }

    /// `--no-worker`: nothing runs, tasks stay pending.
    pub fn no_worker(self) -> Self {
        self.args(["--no-worker"])
    }

    /// `--outbound-allow 127.0.0.1/32`: http tasks and webhooks may call the
    /// test's local receiver.
    pub fn allow_loopback(self) -> Self {
        self.args(["--outbound-allow", "127.0.0.1/32"])
    }
}

/// Path of the `warren` binary next to the test executable.
pub fn warren_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("WARREN_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test>-<hash> → target/<profile>/warren
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let bin = profile_dir.join(format!("warren{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        panic!(
            "{} does not exist: run `cargo build --bin warren` first",
            bin.display()
        );
    }
    bin
}

/// A fresh directory under the system temp dir, removed by its owner.
fn fresh_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("warren-e2e-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// `warren dev` with the given extra args, and every inherited `WARREN_*`
/// variable removed so the machine's environment cannot change a test.
fn command(data_dir: &Path, opts: &Opts) -> Command {
    let mut cmd = Command::new(warren_bin());
    cmd.arg("dev")
        .arg("--port")
        .arg("0")
        .arg("--data-dir")
        .arg(data_dir)
        .args(&opts.args);
    // Without a key the API is served open (loopback), as tests drive it.
    if opts.api_key.is_none() && !opts.signed_in {
        cmd.arg("--open");
    }
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("WARREN_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in &opts.env {
        cmd.env(k, v);
    }
    cmd
}

/// One HTTP answer: status, headers, the raw text and its JSON (Null when
/// the body is not JSON).
#[derive(Clone, Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Panic (showing the body) unless the status is `status`.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(
            self.status, status,
            "expected HTTP {status}, got {} with body {}",
            self.status, self.text
        );
        self
    }

    /// Assert a JSON error answer `{"error": "...", "code": "..."}` with this
    /// status (and this code, when given).
    #[track_caller]
    pub fn expect_error(&self, status: u16, code: Option<&str>) -> &Self {
        self.expect(status);
        assert!(
            self.header("content-type")
                .unwrap_or("")
                .starts_with("application/json"),
            "error answer is not JSON: {:?} {}",
            self.header("content-type"),
            self.text
        );
        let error = self.json["error"].as_str();
        assert!(
            error.is_some_and(|e| !e.is_empty()),
            "error answer lacks a string `error`: {}",
            self.text
        );
        assert!(
            self.json["code"].as_str().is_some_and(|c| !c.is_empty()),
            "error answer lacks a string `code`: {}",
            self.text
        );
        if let Some(code) = code {
            assert_eq!(self.json["code"], code, "error code of {}", self.text);
        }
        self
    }

    /// The `error` message of an error answer.
    pub fn message(&self) -> &str {
        self.json["error"].as_str().unwrap_or("")
    }
}

/// A running `warren dev` on its own data directory.
pub struct Warren {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub addr: SocketAddr,
    root: PathBuf,
    data_dir: PathBuf,
    log: PathBuf,
    opts: Opts,
    client: reqwest::Client,
    starts: u32,
    /// What the last start printed on stdout before it listened.
    pub started_stdout: Vec<String>,
}

/// An HTTP client that never uses a proxy and follows no redirect (a
/// sign-in's 303 and its cookie are what a test looks at).
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .expect("build reqwest client")
}

impl Warren {
    /// Start `warren dev --port 0 --data-dir <fresh temp dir>` plus `opts`
    /// and wait (≤ 30 s) for it to listen.
    pub async fn start(opts: Opts) -> Warren {
        let root = fresh_dir();
        let data_dir = root.join("data");
        let mut w = Warren {
            child: None,
            base: String::new(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log: root.join("stderr.log"),
            root,
            data_dir,
            opts,
            client: client(),
            starts: 0,
            started_stdout: Vec::new(),
        };
        w.spawn().await;
        w
    }

    /// Start with default options.
    pub async fn default() -> Warren {
        Warren::start(Opts::new()).await
    }

    async fn spawn(&mut self) {
        self.starts += 1;
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open stderr log");
        use std::io::Write;
        let _ = writeln!(log, "===== start #{} =====", self.starts);
        let mut child = command(&self.data_dir, &self.opts)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", warren_bin().display()));
        let stdout = child.stdout.take().expect("piped stdout");
        self.child = Some(child);

        // Read stdout on a thread for the whole life of the process (so the
        // pipe never fills), forwarding lines until the listening one.
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let found = tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + START_TIMEOUT;
            let mut seen = Vec::new();
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(line) => {
                        if let Some(addr) = line.trim().strip_prefix(LISTENING) {
                            return Ok((addr.trim_end_matches('/').to_string(), seen));
                        }
                        seen.push(line);
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        return Err(format!(
                            "no `{LISTENING}...` line within {START_TIMEOUT:?}; stdout: {seen:?}"
                        ));
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        return Err(format!("warren exited before listening; stdout: {seen:?}"));
                    }
                }
            }
        })
        .await
        .expect("join stdout reader");
        let addr = match found {
            Ok((a, seen)) => {
                self.started_stdout = seen;
                a
            }
            Err(e) => {
                self.stop();
                panic!("{e}\nstderr:\n{}", self.log_tail(80));
            }
        };
        let mut addr: SocketAddr = addr
            .parse()
            .unwrap_or_else(|_| panic!("unparseable listening address `{addr}`"));
        if addr.ip().is_unspecified() {
            addr.set_ip([127, 0, 0, 1].into());
        }
        self.addr = addr;
        self.base = format!("http://{addr}");
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGKILL the server (no graceful shutdown) and reap it.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("warren is not running");
        child.kill().expect("SIGKILL warren");
        child.wait().expect("reap warren");
    }

    /// Start again on the same data directory (on a new port).
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    /// Start again on the same data directory with other options.
    pub async fn restart_with(&mut self, opts: Opts) {
        self.stop();
        self.opts = opts;
        self.spawn().await;
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("warren is running").id()
    }

    /// The most memory the server has held resident so far, in MiB (its
    /// high-water mark, VmHWM).
    pub fn peak_rss_mib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/<pid>/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kib| kib / 1024)
            .expect("VmHWM in /proc/<pid>/status")
    }

    /// Stop the server and start it again on the same data, then check it
    /// serves: health, and every list that reads past stored records.
    pub async fn restarts_and_serves(&mut self) {
        self.restart().await;
        self.get("/health").await.expect(200);
        for list in [
            "/api/v1/tasks?limit=1000",
            "/api/v1/queues",
            "/api/v1/pipelines?limit=1000",
        ] {
            self.get(list).await.expect(200);
        }
    }

    /// The data directory (`--data-dir`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The last `n` lines the server wrote on stderr.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    // ----- HTTP -----

    /// Send a request with exactly these headers (no API key added).
    pub async fn send_raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Resp {
        let url = format!("{}{}", self.base, path);
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.client.request(method.clone(), &url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req.send().await.unwrap_or_else(|e| {
            panic!("{method} {url}: {e}\nserver stderr:\n{}", self.log_tail(40))
        });
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: reading body: {e}"));
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            text,
            json,
        }
    }

    /// Send a request, adding the API key when the options set one.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Resp {
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(k) = &self.opts.api_key {
            all.push(("x-api-key", k));
        }
        self.send_raw(method, path, &all, body).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send("GET", path, &[], None).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send("DELETE", path, &[], None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        self.send(
            "POST",
            path,
            &[("content-type", "application/json")],
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    pub async fn post_empty(&self, path: &str) -> Resp {
        self.send("POST", path, &[], None).await
    }

    /// POST raw bytes as `application/json` (for malformed bodies).
    pub async fn post_bytes(&self, path: &str, body: impl Into<Vec<u8>>) -> Resp {
        self.send(
            "POST",
            path,
            &[("content-type", "application/json")],
            Some(body.into()),
        )
        .await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Resp {
        self.send(
            "PUT",
            path,
            &[("content-type", "application/json")],
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Resp {
        self.send(
            "PATCH",
            path,
            &[("content-type", "application/json")],
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    // ----- task API shortcuts -----

    /// POST /api/v1/enqueue, asserting 201; the task id.
    #[track_caller]
    pub fn enqueue<'a>(
        &'a self,
        body: &'a Value,
    ) -> impl std::future::Future<Output = String> + 'a {
        let caller = std::panic::Location::caller();
        async move {
            let r = self.post("/api/v1/enqueue", body).await;
            assert_eq!(
                r.status, 201,
                "enqueue {body} (at {caller}): {} {}",
                r.status, r.text
            );
            r.json["task_id"]
                .as_str()
                .unwrap_or_else(|| panic!("no task_id in {}", r.text))
                .to_string()
        }
    }

    /// POST /api/v1/enqueue/batch, asserting 201; the task ids.
    pub async fn enqueue_batch(&self, items: &Value) -> Vec<String> {
        let r = self.post("/api/v1/enqueue/batch", items).await;
        assert_eq!(r.status, 201, "batch enqueue: {} {}", r.status, r.text);
        r.json["task_ids"]
            .as_array()
            .unwrap_or_else(|| panic!("no task_ids in {}", r.text))
            .iter()
            .map(|v| v.as_str().expect("task id string").to_string())
            .collect()
    }

    /// GET /api/v1/tasks/{id}, asserting 200.
    pub async fn task(&self, id: &str) -> Value {
        let r = self.get(&format!("/api/v1/tasks/{id}")).await;
        assert_eq!(r.status, 200, "GET task {id}: {} {}", r.status, r.text);
        r.json
    }

    /// Poll GET /api/v1/tasks/{id} until its status is `status`; the task.
    pub async fn wait_for_status(&self, id: &str, status: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.get(&format!("/api/v1/tasks/{id}")).await;
            if r.status == 200 && r.json["status"] == status {
                return r.json;
            }
            if Instant::now() >= deadline {
                panic!(
                    "task {id} not `{status}` within {timeout:?}; last answer {} {}\nserver stderr:\n{}",
                    r.status,
                    r.text,
                    self.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Poll GET /api/v1/tasks/{id} until `pred` holds for the task; the task.
    pub async fn wait_for_status_where(
        &self,
        id: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.get(&format!("/api/v1/tasks/{id}")).await;
            if r.status == 200 && pred(&r.json) {
                return r.json;
            }
            if Instant::now() >= deadline {
                panic!(
                    "task {id}: condition not met within {timeout:?}; last answer {} {}",
                    r.status, r.text
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Poll until GET /api/v1/tasks/{id} answers 404.
    pub async fn wait_for_gone(&self, id: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.get(&format!("/api/v1/tasks/{id}")).await;
            if r.status == 404 {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "task {id} still there after {timeout:?}: {} {}",
                    r.status, r.text
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// GET /api/v1/queues, asserting 200 and an array.
    pub async fn queues(&self) -> Vec<Value> {
        let r = self.get("/api/v1/queues").await;
        assert_eq!(r.status, 200, "GET queues: {}", r.text);
        r.json
            .as_array()
            .unwrap_or_else(|| panic!("queues is not an array: {}", r.text))
            .clone()
    }

    /// The stats object of one queue, if it is listed.
    pub async fn queue(&self, name: &str) -> Option<Value> {
        self.queues()
            .await
            .into_iter()
            .find(|q| q["queue_name"] == name)
    }

    /// One status count of one queue (0 when the queue is not listed).
    pub async fn count(&self, queue: &str, status: &str) -> u64 {
        self.queue(queue)
            .await
            .map(|q| q[status].as_u64().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Every task counted by GET /api/v1/queues, all queues and statuses.
    pub async fn total_counted(&self) -> u64 {
        self.queues()
            .await
            .iter()
            .map(|q| {
                STATUSES
                    .iter()
                    .map(|s| q[*s].as_u64().unwrap_or(0))
                    .sum::<u64>()
            })
            .sum()
    }

    /// GET /api/v1/tasks?<query>, asserting 200; the array.
    pub async fn list(&self, query: &str) -> Vec<Value> {
        let r = self.get(&format!("/api/v1/tasks?{query}")).await;
        assert_eq!(r.status, 200, "list ?{query}: {} {}", r.status, r.text);
        r.json
            .as_array()
            .unwrap_or_else(|| panic!("list is not an array: {}", r.text))
            .clone()
    }

    /// Create a pipeline from `spec`; its id.
    pub async fn create_pipeline(&self, spec: &Value) -> String {
        let r = self.post("/api/v1/pipelines", spec).await;
        r.expect(201);
        r.json["id"].as_str().expect("pipeline id").to_string()
    }

    /// The first page of a pipeline's executions, newest first.
    pub async fn executions(&self, pipeline: &str) -> Vec<Value> {
        let r = self
            .get(&format!("/api/v1/pipelines/{pipeline}/executions"))
            .await;
        r.expect(200);
        r.json.as_array().expect("an array of executions").clone()
    }

    /// Every task of GET /api/v1/tasks?<query>, following X-Next-Cursor.
    pub async fn list_all(&self, query: &str) -> Vec<Value> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..10_000 {
            let q = match &cursor {
                Some(c) => format!("{query}&cursor={}", enc(c)),
                None => query.to_string(),
            };
            let r = self.get(&format!("/api/v1/tasks?{q}")).await;
            assert_eq!(r.status, 200, "list ?{q}: {} {}", r.status, r.text);
            let page = r
                .json
                .as_array()
                .unwrap_or_else(|| panic!("list is not an array: {}", r.text));
            all.extend(page.iter().cloned());
            match r.header("x-next-cursor") {
                Some(c) if !page.is_empty() => cursor = Some(c.to_string()),
                _ => return all,
            }
        }
        panic!("list ?{query} never ended");
    }
}

impl Drop for Warren {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "----- warren stderr (last 60 lines, {}) -----\n{}",
                self.log.display(),
                self.log_tail(60)
            );
        }
        if std::env::var_os("WARREN_E2E_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// The task statuses, as GET /api/v1/queues counts them.
pub const STATUSES: [&str; 6] = [
    "pending",
    "running",
    "completed",
    "failed",
    "cancelled",
    "expired",
];

/// Percent-encode a query parameter value.
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Poll `check` every 50 ms until it yields a value, or panic after `timeout`
/// naming `what`.
pub async fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The execution `id` once it is no longer running (within 20 s).
pub async fn finished_execution(w: &Warren, id: &str) -> Value {
    wait_until("the execution to finish", secs(20), async || {
        let e = w.get(&format!("/api/v1/executions/{id}")).await.json;
        (e["status"] != "running").then_some(e)
    })
    .await
}

/// Run `warren dev` (fresh data dir, port 0, plus `args`/`env`) expecting it
/// to exit by itself within `timeout`: its exit status, stdout and stderr
/// (None as status when it had to be killed).
pub fn run_to_exit(
    args: &[&str],
    env: &[(&str, &str)],
    timeout: Duration,
) -> (Option<ExitStatus>, String, String) {
    let root = fresh_dir();
    // Exactly the arguments given (no `--open` added).
    let mut opts = Opts::new().signed_in().args(args.iter().copied());
    for (k, v) in env {
        opts = opts.env(k, v);
    }
    let out_path = root.join("stdout.log");
    let err_path = root.join("stderr.log");
    let mut child = command(&root.join("data"), &opts)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("spawn warren");
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break Some(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&root);
    (status, stdout, stderr)
}

// ----- a local HTTP receiver for webhooks and `http` tasks -----

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub at: Instant,
    pub method: String,
    /// Path and query.
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "received body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

struct ReceiverState {
    /// Status of the n-th answer; the last one repeats (200 when empty).
    statuses: Vec<u16>,
    got: Vec<Received>,
}

/// A tiny axum server on 127.0.0.1:0 recording every request. It answers
/// with the configured statuses, a JSON body `{"received": n}` and the header
/// `x-receiver: warren-tests`; a request's `Authorization` is echoed back
/// (`"authorization"` in the body, `x-echo-authorization`), as some
/// endpoints do.
pub struct Receiver {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    state: Arc<Mutex<ReceiverState>>,
    server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// A receiver answering 200 to everything.
    pub async fn ok() -> Receiver {
        Receiver::start(vec![200]).await
    }

    /// A receiver answering `statuses[n]` to its n-th request (the last one
    /// repeats).
    pub async fn start(statuses: Vec<u16>) -> Receiver {
        use axum::body::Bytes;
        use axum::http::{HeaderMap as AxHeaders, Method, StatusCode, Uri};
        use axum::response::IntoResponse;

        let state = Arc::new(Mutex::new(ReceiverState {
            statuses,
            got: Vec::new(),
        }));
        let s = state.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: AxHeaders, body: Bytes| {
                let s = s.clone();
                async move {
                    let mut st = s.lock().unwrap();
                    let n = st.got.len();
                    let echo = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let status = st
                        .statuses
                        .get(n)
                        .or(st.statuses.last())
                        .copied()
                        .unwrap_or(200);
                    st.got.push(Received {
                        at: Instant::now(),
                        method: method.to_string(),
                        uri: uri.to_string(),
                        headers,
                        body: body.to_vec(),
                    });
                    let mut body = json!({ "received": n + 1 });
                    let mut answer = (
                        StatusCode::from_u16(status).unwrap(),
                        [
                            ("content-type", "application/json"),
                            ("x-receiver", "warren-tests"),
                        ],
                    )
                        .into_response();
                    if let Some(echo) = echo {
                        body["authorization"] = json!(echo);
                        answer.headers_mut().insert(
                            "x-echo-authorization",
                            axum::http::HeaderValue::from_str(&echo).unwrap(),
                        );
                    }
                    *answer.body_mut() = axum::body::Body::from(body.to_string());
                    answer
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            base: format!("http://{addr}"),
            state,
            server,
        }
    }

    /// A URL on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Everything received so far.
    pub fn requests(&self) -> Vec<Received> {
        self.state.lock().unwrap().got.clone()
    }

    /// Wait until at least `n` requests arrived; all of them.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.requests();
            if got.len() >= n {
                return got;
            }
            if Instant::now() >= deadline {
                panic!(
                    "receiver got {} requests, expected {n} within {timeout:?}",
                    got.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

// ----- webhook signatures (Standard Webhooks) -----

/// A webhook secret `whsec_<base64>` for a key, and the key.
pub fn webhook_secret(key: &[u8]) -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

/// `v1,<base64(HMAC-SHA256(key, "<id>.<timestamp>.<body>"))>`
pub fn webhook_signature(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("hmac key");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// Parse an RFC 3339 timestamp of the API.
#[track_caller]
pub fn ts(v: &Value) -> chrono::DateTime<chrono::Utc> {
    let s = v.as_str().unwrap_or_else(|| panic!("not a timestamp: {v}"));
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("`{s}` is not RFC 3339: {e}"))
        .with_timezone(&chrono::Utc)
}

/// Parse the `result` of a task: a string holding JSON text.
#[track_caller]
pub fn result_json(task: &Value) -> Value {
    let s = task["result"]
        .as_str()
        .unwrap_or_else(|| panic!("`result` is not a string: {task}"));
    serde_json::from_str(s).unwrap_or_else(|e| panic!("`result` is not JSON text ({e}): {s}"))
}

/// Seconds as a Duration, for readability.
pub const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

// ----- long runs: sizes from the environment, times compared across clocks -----

/// A whole-number setting of a long-running test from the environment.
pub fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Turns this process's instants into wall-clock time, comparable with the
/// times warren records.
pub struct WallClock(Instant, chrono::DateTime<chrono::Utc>);

impl WallClock {
    pub fn now() -> WallClock {
        WallClock(Instant::now(), chrono::Utc::now())
    }

    pub fn at(&self, instant: Instant) -> chrono::DateTime<chrono::Utc> {
        self.1 + chrono::Duration::from_std(instant - self.0).unwrap()
    }
}

/// A time warren wrote (RFC 3339).
pub fn time_of(v: &Value) -> chrono::DateTime<chrono::Utc> {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a time: {v}"))
}

/// A side effect seen after the checkpoint it precedes would be a re-run;
/// one machine's two clocks agree far better than this.
pub const CLOCK_SLACK: chrono::Duration = chrono::Duration::milliseconds(20);
