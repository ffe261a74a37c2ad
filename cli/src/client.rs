//! The verbs a user runs day to day against a running warren (`warren dev`
//! or a deployment): enqueue, list and steer tasks, watch them, run
//! pipelines, publish on topics. Human tables by default, `--json` for
//! scripts; the API's own errors are shown as it words them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

/// Where warren is and who is asking.
#[derive(Args, Clone, Debug)]
pub struct Target {
    /// warren's base URL.
    #[arg(long, env = "WARREN_URL", default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// An API key (a user's `wk_…` key or the bootstrap key).
    #[arg(long, env = "WARREN_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `warren enqueue`.
#[derive(Args, Debug)]
pub struct EnqueueOptions {
    #[command(flatten)]
    pub target: Target,
    /// The task's name (its handler).
    pub task_name: String,
    /// Positional arguments, a JSON array.
    #[arg(long, default_value = "[]")]
    pub args: String,
    /// Keyword arguments, a JSON object.
    #[arg(long, default_value = "{}")]
    pub kwargs: String,
    #[arg(long, default_value = "default")]
    pub queue: String,
    /// Higher runs first.
    #[arg(long, default_value_t = 0)]
    pub priority: i32,
    /// Wait until the task finishes and print its result; a task that does
    /// not complete exits with status 1.
    #[arg(long)]
    pub wait: bool,
    /// Seconds `--wait` waits at most.
    #[arg(long, default_value_t = 300)]
    pub wait_timeout: u64,
}

/// `warren tasks …`.
#[derive(Subcommand, Debug)]
pub enum TasksCommand {
    /// List tasks, newest first.
    Ls {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        queue: Option<String>,
        /// pending, running, completed, failed, cancelled or expired.
        #[arg(long)]
        status: Option<String>,
        /// Tasks whose name contains this.
        #[arg(long)]
        name: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Show one task.
    Get {
        #[command(flatten)]
        target: Target,
        id: String,
    },
    /// Cancel a pending task.
    Cancel {
        #[command(flatten)]
        target: Target,
        id: String,
    },
    /// Requeue a failed task with a fresh attempt budget.
    Requeue {
        #[command(flatten)]
        target: Target,
        id: String,
    },
}

/// `warren pipelines …`.
#[derive(Subcommand, Debug)]
pub enum PipelinesCommand {
    /// List the pipelines the caller sees.
    Ls {
        #[command(flatten)]
        target: Target,
    },
    /// Run a pipeline on an input and print the execution's id.
    Run {
        #[command(flatten)]
        target: Target,
        id: String,
        /// The input, a JSON value.
        #[arg(long, default_value = "{}")]
        input: String,
    },
}

/// `warren events …`.
#[derive(Subcommand, Debug)]
pub enum EventsCommand {
    /// Publish a message on a topic (its started event triggers run).
    Publish {
        #[command(flatten)]
        target: Target,
        topic: String,
        /// The message, a JSON value.
        #[arg(long, default_value = "{}")]
        data: String,
    },
}

/// `warren tail`.
#[derive(Args, Debug)]
pub struct TailOptions {
    #[command(flatten)]
    pub target: Target,
    #[arg(long)]
    pub queue: Option<String>,
    /// Seconds between looks.
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
}

/// An HTTP client of one warren.
struct Client {
    http: reqwest::Client,
    target: Target,
}

impl Client {
    fn new(target: &Target) -> anyhow::Result<Client> {
        // reqwest is built without a default TLS provider: ring, as elsewhere.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Client {
            http,
            target: target.clone(),
        })
    }

    /// The answer's JSON, or the API's error (`error` and `code`) as ours.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.target.url.trim_end_matches('/'));
        let mut request = self.http.request(method, &url);
        if let Some(key) = &self.target.api_key {
            request = request.header("x-api-key", key);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let answer = request
            .send()
            .await
            .with_context(|| format!("cannot reach warren at {}", self.target.url))?;
        let status = answer.status();
        let text = answer.text().await?;
        let parsed: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            let message = parsed["error"].as_str().unwrap_or("").to_string();
            let code = parsed["code"].as_str().unwrap_or("");
            bail!("{status}: {message} ({code})");
        }
        Ok(parsed)
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(Method::GET, path, None).await
    }

    /// Print `value` as JSON when asked, else as `human` renders it.
    fn show(&self, value: &Value, human: impl FnOnce(&Value) -> String) {
        match self.target.json {
            true => println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_default()
            ),
            false => print!("{}", human(value)),
        }
    }
}

/// A JSON argument, named in the error when it is not JSON.
fn json_arg(name: &str, text: &str) -> anyhow::Result<Value> {
    serde_json::from_str(text).with_context(|| format!("--{name} must be JSON"))
}

/// `text` safe as one path segment.
fn segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Columns padded to their widest cell.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(headers.iter().map(|h| h.to_uppercase()).collect());
    for row in rows {
        out.push_str(&line(row.clone()));
    }
    out
}

/// A field as a table cell: strings bare, absent as `-`.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn task_rows(tasks: &[Value]) -> String {
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            [
                "id",
                "queue_name",
                "task_name",
                "status",
                "attempts",
                "created_at",
            ]
            .iter()
            .map(|f| cell(&t[*f]))
            .collect()
        })
        .collect();
    table(
        &["id", "queue", "task", "status", "attempts", "created"],
        &rows,
    )
}

fn task_detail(t: &Value) -> String {
    let fields = [
        "id",
        "task_name",
        "queue_name",
        "status",
        "priority",
        "attempts",
        "max_retries",
        "args",
        "kwargs",
        "result",
        "error",
        "progress",
        "created_at",
        "started_at",
        "completed_at",
        "webhook_url",
    ];
    let width = fields.iter().map(|f| f.len()).max().unwrap_or(0);
    fields
        .iter()
        .filter(|f| !t[**f].is_null())
        .map(|f| format!("{f:<width$}  {}\n", cell(&t[*f])))
        .collect()
}

fn finished(status: &str) -> bool {
    matches!(status, "completed" | "failed" | "cancelled" | "expired")
}

/// `warren enqueue`.
pub async fn enqueue(opts: EnqueueOptions) -> anyhow::Result<()> {
    let client = Client::new(&opts.target)?;
    let body = json!({
        "task_name": opts.task_name,
        "queue_name": opts.queue,
        "args": json_arg("args", &opts.args)?,
        "kwargs": json_arg("kwargs", &opts.kwargs)?,
        "priority": opts.priority,
    });
    let created = client
        .call(Method::POST, "/api/v1/enqueue", Some(&body))
        .await?;
    let id = created["task_id"].as_str().unwrap_or_default().to_string();
    if !opts.wait || id.is_empty() {
        client.show(&created, |_| format!("{id}\n"));
        return Ok(());
    }
    let deadline = Instant::now() + Duration::from_secs(opts.wait_timeout);
    let waiting = crate::progress::spinner(&format!("task {id}"));
    let task = loop {
        let task = client.get(&format!("/api/v1/tasks/{id}")).await?;
        let status = task["status"].as_str().unwrap_or("");
        waiting.set_message(format!("task {id}: {status}"));
        if finished(status) {
            waiting.finish_and_clear();
            break task;
        }
        if Instant::now() >= deadline {
            waiting.finish_and_clear();
            bail!(
                "task {id} is still {} after {} s",
                task["status"],
                opts.wait_timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    client.show(&task, task_detail);
    match task["status"].as_str() {
        Some("completed") => Ok(()),
        Some(status) => Err(anyhow!("task {id} {status}: {}", cell(&task["error"]))),
        None => Err(anyhow!("task {id} has no status")),
    }
}

/// `warren tasks …`.
pub async fn tasks(command: TasksCommand) -> anyhow::Result<()> {
    match command {
        TasksCommand::Ls {
            target,
            queue,
            status,
            name,
            limit,
        } => {
            let client = Client::new(&target)?;
            let mut query = vec![format!("limit={limit}")];
            for (key, value) in [("queue", queue), ("status", status), ("task_name", name)] {
                if let Some(v) = value {
                    query.push(format!("{key}={}", segment(&v)));
                }
            }
            let listed = client
                .get(&format!("/api/v1/tasks?{}", query.join("&")))
                .await?;
            client.show(&listed, |v| task_rows(v.as_array().map_or(&[], |a| a)));
        }
        TasksCommand::Get { target, id } => {
            let client = Client::new(&target)?;
            let task = client
                .get(&format!("/api/v1/tasks/{}", segment(&id)))
                .await?;
            client.show(&task, task_detail);
        }
        TasksCommand::Cancel { target, id } => {
            let client = Client::new(&target)?;
            let path = format!("/api/v1/tasks/{}", segment(&id));
            let done = client.call(Method::DELETE, &path, None).await?;
            client.show(&done, |_| format!("cancelled {id}\n"));
        }
        TasksCommand::Requeue { target, id } => {
            let client = Client::new(&target)?;
            let path = format!("/api/v1/tasks/{}/requeue", segment(&id));
            let done = client.call(Method::POST, &path, None).await?;
            client.show(&done, |_| format!("requeued {id}\n"));
        }
    }
    Ok(())
}

/// `warren queues`.
pub async fn queues(target: Target) -> anyhow::Result<()> {
    let client = Client::new(&target)?;
    let listed = client.get("/api/v1/queues").await?;
    let columns = [
        "queue_name",
        "pending",
        "running",
        "completed",
        "failed",
        "cancelled",
        "expired",
    ];
    client.show(&listed, |v| {
        let rows: Vec<Vec<String>> = v
            .as_array()
            .map_or(&[][..], |a| a)
            .iter()
            .map(|q| columns.iter().map(|c| cell(&q[*c])).collect())
            .collect();
        let mut headers = columns;
        headers[0] = "queue";
        table(&headers, &rows)
    });
    Ok(())
}

/// `warren pipelines …`.
pub async fn pipelines(command: PipelinesCommand) -> anyhow::Result<()> {
    match command {
        PipelinesCommand::Ls { target } => {
            let client = Client::new(&target)?;
            let listed = client.get("/api/v1/pipelines").await?;
            client.show(&listed, |v| {
                let rows: Vec<Vec<String>> = v
                    .as_array()
                    .map_or(&[][..], |a| a)
                    .iter()
                    .map(|p| {
                        let steps = p["steps"].as_array().map_or(0, Vec::len);
                        vec![
                            cell(&p["id"]),
                            cell(&p["name"]),
                            cell(&p["version"]),
                            steps.to_string(),
                        ]
                    })
                    .collect();
                table(&["id", "name", "version", "steps"], &rows)
            });
        }
        PipelinesCommand::Run { target, id, input } => {
            let client = Client::new(&target)?;
            let path = format!("/api/v1/pipelines/{}/run", segment(&id));
            let started = client
                .call(Method::POST, &path, Some(&json_arg("input", &input)?))
                .await?;
            client.show(&started, |v| format!("{}\n", cell(&v["execution_id"])));
        }
    }
    Ok(())
}

/// `warren events …`.
pub async fn events(command: EventsCommand) -> anyhow::Result<()> {
    let EventsCommand::Publish {
        target,
        topic,
        data,
    } = command;
    let client = Client::new(&target)?;
    let path = format!("/api/v1/topics/{}/messages", segment(&topic));
    let published = client
        .call(Method::POST, &path, Some(&json_arg("data", &data)?))
        .await?;
    client.show(&published, |v| format!("{}\n", cell(&v["message_id"])));
    Ok(())
}

/// `warren tail`: a line per task that appears or changes status, until
/// interrupted. It looks at the newest 200 tasks each time.
pub async fn tail(opts: TailOptions) -> anyhow::Result<()> {
    let client = Client::new(&opts.target)?;
    let mut path = "/api/v1/tasks?limit=200".to_string();
    if let Some(q) = &opts.queue {
        path.push_str(&format!("&queue={}", segment(q)));
    }
    let interval = Duration::from_secs_f64(opts.interval.clamp(0.1, 3600.0));
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut first = true;
    loop {
        let listed = client.get(&path).await?;
        // Oldest first, so lines come in the order things happened.
        for t in listed.as_array().map_or(&[][..], |a| a).iter().rev() {
            let id = cell(&t["id"]);
            let status = cell(&t["status"]);
            if seen.get(&id) == Some(&status) {
                continue;
            }
            seen.insert(id.clone(), status.clone());
            if first {
                continue; // what was there before: not news
            }
            match opts.target.json {
                true => println!("{t}"),
                false => println!(
                    "{}  {:<10} {:<9} {}  {}  attempt {}",
                    chrono::Local::now().format("%H:%M:%S"),
                    cell(&t["queue_name"]),
                    status,
                    id,
                    cell(&t["task_name"]),
                    cell(&t["attempts"]),
                ),
            }
        }
        if first {
            eprintln!(
                "watching {} ({} tasks already there); Ctrl-C to stop",
                opts.target.url,
                seen.len()
            );
            first = false;
        }
        // Bounded: forget what fell out of the window.
        if seen.len() > 10_000 {
            seen.clear();
            first = true;
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_to_the_widest_cell() {
        let out = table(
            &["id", "status"],
            &[
                vec!["a".into(), "pending".into()],
                vec!["bbb".into(), "-".into()],
            ],
        );
        assert_eq!(out, "ID   STATUS\na    pending\nbbb  -\n");
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(segment("orders/eu 1"), "orders%2Feu%201");
        assert_eq!(segment("a-b_c.d~"), "a-b_c.d~");
    }
}
