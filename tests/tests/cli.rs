//! The user's verbs of the `warren` binary (`enqueue`, `tasks`, `queues`,
//! `tail`, `pipelines`, `events`) against a running `warren dev`, with an
//! API key as a deployment has one.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use warren_tests::{Opts, Warren, wait_until, warren_bin};

const KEY: &str = "cli-test-bootstrap-key-0123456789";

async fn deployment() -> Warren {
    Warren::start(Opts::new().api_key(KEY)).await
}

/// Run `warren ARGS…` against `w` (the URL and key from the environment,
/// as a user sets them) and wait for it to exit.
fn warren(w: &Warren, args: &[&str]) -> Output {
    Command::new(warren_bin())
        .args(args)
        .env("WARREN_URL", &w.base)
        .env("WARREN_API_KEY", KEY)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run warren")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_wait_prints_the_result_and_a_failure_exits_1() {
    let w = deployment().await;
    let done = tokio::task::block_in_place(|| {
        warren(
            &w,
            &[
                "enqueue",
                "echo",
                "--args",
                r#"[1, "a"]"#,
                "--queue",
                "cli",
                "--wait",
            ],
        )
    });
    assert!(done.status.success(), "{}", stderr(&done));
    let out = stdout(&done);
    assert!(
        out.contains("completed") && out.contains(r#"{"args":[1,"a"],"kwargs":{}}"#),
        "{out}"
    );

    let failed =
        tokio::task::block_in_place(|| warren(&w, &["enqueue", "fail", "--wait", "--json"]));
    assert_eq!(failed.status.code(), Some(1), "{}", stdout(&failed));
    let task: Value = serde_json::from_str(&stdout(&failed)).expect("--json prints the task");
    assert_eq!(task["status"], "failed");
    // One line, no backtrace: the API's error as it says it.
    let err = stderr(&failed);
    assert!(
        err.starts_with("warren: task ") && err.lines().count() == 1,
        "{err}"
    );

    // Bad input is refused before any request, naming the flag.
    let bad = tokio::task::block_in_place(|| warren(&w, &["enqueue", "echo", "--args", "nope"]));
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("--args must be JSON"),
        "{}",
        stderr(&bad)
    );
    assert_eq!(
        w.total_counted().await,
        2,
        "the refused enqueue stored nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_and_queues_list_show_cancel_and_requeue() {
    let w = Warren::start(Opts::new().api_key(KEY).no_worker()).await;
    let id = w
        .enqueue(&json!({"task_name": "echo", "queue_name": "cli"}))
        .await;
    let listed = tokio::task::block_in_place(|| warren(&w, &["tasks", "ls", "--queue", "cli"]));
    let table = stdout(&listed);
    assert!(table.starts_with("ID"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("pending")),
        "{table}"
    );

    let queues = tokio::task::block_in_place(|| warren(&w, &["queues", "--json"]));
    let queues: Value = serde_json::from_str(&stdout(&queues)).unwrap();
    assert_eq!(queues[0]["queue_name"], "cli");
    assert_eq!(queues[0]["pending"], 1);

    let cancelled = tokio::task::block_in_place(|| warren(&w, &["tasks", "cancel", &id]));
    assert!(cancelled.status.success(), "{}", stderr(&cancelled));
    assert_eq!(w.task(&id).await["status"], "cancelled");
    let shown = tokio::task::block_in_place(|| warren(&w, &["tasks", "get", &id]));
    assert!(
        stdout(&shown)
            .lines()
            .any(|l| l.starts_with("status") && l.ends_with("cancelled"))
    );

    // Requeueing a task that has not failed is refused as the API words it.
    let refused = tokio::task::block_in_place(|| warren(&w, &["tasks", "requeue", &id]));
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("(task_not_failed)"),
        "{}",
        stderr(&refused)
    );

    // A wrong key is the API's 401.
    let denied = tokio::task::block_in_place(|| {
        Command::new(warren_bin())
            .args(["queues", "--url", &w.base, "--api-key", "wrong"])
            .output()
            .unwrap()
    });
    assert_eq!(denied.status.code(), Some(1));
    assert!(stderr(&denied).contains("401"), "{}", stderr(&denied));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_prints_a_line_as_tasks_start_and_finish() {
    let w = deployment().await;
    let mut tail = Command::new(warren_bin())
        .args(["tail", "--interval", "0.2"])
        .env("WARREN_URL", &w.base)
        .env("WARREN_API_KEY", KEY)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // It says when it is watching; only then is a task news.
    let mut err = BufReader::new(tail.stderr.take().unwrap());
    let mut first = String::new();
    tokio::task::block_in_place(|| err.read_line(&mut first)).unwrap();
    assert!(first.starts_with("watching"), "{first}");
    let id = w
        .enqueue(&json!({"task_name": "sleep", "kwargs": {"seconds": 0.5}}))
        .await;
    let out = tail.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .take_while(|l| !l.contains("completed"))
            .chain(std::iter::once("completed".to_string()))
            .collect::<Vec<_>>()
    });
    let lines = tokio::time::timeout(Duration::from_secs(20), lines)
        .await
        .expect("tail shows the task finish")
        .unwrap();
    let _ = tail.kill();
    let _ = tail.wait();
    assert!(
        lines.iter().any(|l| l.contains(&id) && l.contains("sleep")),
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_run_and_events_publish() {
    let w = deployment().await;
    let spec = json!({"name": "from-cli", "options": {"event": "cli-orders"},
        "steps": [{"name": "t", "kind": "transform", "expression": "{got: event}"}]});
    let pid = w.create_pipeline(&spec).await;
    let listed = tokio::task::block_in_place(|| warren(&w, &["pipelines", "ls"]));
    assert!(
        stdout(&listed)
            .lines()
            .any(|l| l.starts_with(&pid) && l.contains("from-cli"))
    );

    let run = tokio::task::block_in_place(|| {
        warren(&w, &["pipelines", "run", &pid, "--input", r#"{"n": 1}"#])
    });
    assert!(run.status.success(), "{}", stderr(&run));
    let execution = stdout(&run).trim().to_string();
    let e = warren_tests::finished_execution(&w, &execution).await;
    assert_eq!(e["output"], json!({"got": {"n": 1}}));

    w.post_empty(&format!("/api/v1/events/{pid}"))
        .await
        .expect(200);
    let published = tokio::task::block_in_place(|| {
        warren(
            &w,
            &["events", "publish", "cli-orders", "--data", r#"{"n": 2}"#],
        )
    });
    assert!(published.status.success(), "{}", stderr(&published));
    assert!(
        !stdout(&published).trim().is_empty(),
        "prints the message id"
    );
    let runs = wait_until(
        "the published message's run",
        Duration::from_secs(10),
        async || {
            let runs = w.executions(&pid).await;
            (runs.len() == 2).then_some(runs)
        },
    )
    .await;
    assert!(
        runs.iter().any(|r| r["trigger_type"] == "event"),
        "{runs:?}"
    );
}

#[test]
fn completions_are_printed_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(warren_bin())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        assert!(
            script.contains("enqueue") && script.contains("tail"),
            "{shell}: {script}"
        );
    }
}
