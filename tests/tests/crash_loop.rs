//! kill -9 again and again while tasks and pipeline executions run, restarting
//! on the same data each time: every acknowledged task and execution ends,
//! no attempt calls out twice, and nothing calls out again once its
//! checkpoint is written.
//!
//! The test command runs a small loop (500 tasks, 50 executions, 5 kills);
//! the long one is
//! `WARREN_CRASH_TASKS=5000 WARREN_CRASH_EXECUTIONS=500 WARREN_CRASH_KILLS=20
//! cargo nextest run --workspace -E 'binary(crash_loop)' --no-capture`, and
//! `WARREN_CRASH_SEED=N` replays the moments of one run.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use warren_tests::*;

/// xorshift64*: the kill moments, reproducible from the seed printed.
struct Moments(u64);

impl Moments {
    fn between(&mut self, low: Duration, high: Duration) -> Duration {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let r = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
        low + (high - low).mul_f64(r as f64 / (1u64 << 53) as f64)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_again_and_again_loses_nothing_and_reruns_nothing_past_its_checkpoint() {
    let tasks = setting("WARREN_CRASH_TASKS", 500) as usize;
    let executions = setting("WARREN_CRASH_EXECUTIONS", 50) as usize;
    let kills = setting("WARREN_CRASH_KILLS", 5) as usize;
    let seed = setting(
        "WARREN_CRASH_SEED",
        Utc::now().timestamp_nanos_opt().unwrap_or(1) as u64 | 1,
    );
    eprintln!(
        "crash loop: {tasks} tasks, {executions} executions, {kills} kills; \
         replay with WARREN_CRASH_SEED={seed}"
    );
    let mut moments = Moments(seed);
    let clock = WallClock::now();
    let rx = Receiver::ok().await;
    let opts = Opts::new()
        .allow_loopback()
        .args(["--worker-concurrency", "8"]);
    let mut w = Warren::start(opts).await;
    let pipeline = w
        .create_pipeline(&json!({"name": "crashloop", "steps": [
            {"name": "tell", "kind": "http", "url": rx.url("/step")},
            {"name": "wait", "kind": "task", "task_name": "sleep", "kwargs": {"seconds": 0.05}},
            {"name": "end", "kind": "transform", "expression": "steps.tell.status"}
        ]}))
        .await;

    // Work arrives in as many parts as there are kills, one part after each
    // restart, so every kill lands on work in flight.
    let mut task_ids: Vec<String> = Vec::with_capacity(tasks);
    let mut execution_ids: Vec<String> = Vec::with_capacity(executions);
    let begun = Instant::now();
    for round in 0..kills {
        let (t_from, t_to) = (tasks * round / kills, tasks * (round + 1) / kills);
        for chunk in (t_from..t_to).collect::<Vec<_>>().chunks(100) {
            let items: Vec<Value> = chunk
                .iter()
                .map(|i| match i % 2 {
                    // Calls out: each call is counted against its attempts.
                    0 => json!({"task_name": "http", "queue_name": "crashloop",
                        "kwargs": {"url": rx.url(&format!("/task/{i}")), "method": "POST", "body": {"n": i}},
                        "max_retries": 5, "timeout_seconds": 10}),
                    // Runs long enough to be running when the kill comes.
                    _ => json!({"task_name": "sleep", "queue_name": "crashloop",
                        "kwargs": {"seconds": 0.1}, "max_retries": 5, "timeout_seconds": 10}),
                })
                .collect();
            task_ids.extend(w.enqueue_batch(&Value::Array(items)).await);
        }
        let (e_from, e_to) = (executions * round / kills, executions * (round + 1) / kills);
        for n in e_from..e_to {
            let r = w
                .post(
                    &format!("/api/v1/pipelines/{pipeline}/run"),
                    &json!({"n": n}),
                )
                .await;
            r.expect(202);
            execution_ids.push(r.json["execution_id"].as_str().unwrap().to_string());
        }
        tokio::time::sleep(moments.between(ms(20), ms(600))).await;
        let q = w.queue("crashloop").await.unwrap_or_default();
        w.kill9();
        eprintln!(
            "kill {}: {} completed, {} running",
            round + 1,
            q["completed"],
            q["running"]
        );
        w.restart().await;
    }
    assert_eq!(task_ids.len(), tasks);
    assert_eq!(execution_ids.len(), executions);

    // Everything ends, without failures.
    let deadline = Instant::now() + secs(180);
    loop {
        let q = w.queue("crashloop").await.expect("the queue is listed");
        assert_eq!(q["failed"], 0, "tasks failed: {q}\n{}", w.log_tail(30));
        if q["completed"] == tasks as u64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every task completed within 180 s of the last restart: {q}\n{}",
            w.log_tail(30)
        );
        tokio::time::sleep(ms(200)).await;
    }
    let mut finished = HashMap::new();
    for id in &execution_ids {
        let e = finished_execution(&w, id).await;
        assert_eq!(e["status"], "success", "{e}");
        finished.insert(id.clone(), e);
    }
    eprintln!(
        "{tasks} tasks and {executions} executions ended {:?} after the first was sent",
        begun.elapsed()
    );

    // The counts equal the tasks' own states, and the list holds exactly them.
    assert_eq!(
        w.total_counted().await,
        tasks as u64,
        "{:?}",
        w.queues().await
    );
    let listed = w.list_all("queue=crashloop&limit=100").await;
    let by_id: HashMap<&str, &Value> = listed
        .iter()
        .map(|t| (t["id"].as_str().unwrap(), t))
        .collect();
    assert_eq!(by_id.len(), tasks, "the list holds {} tasks", by_id.len());

    let mut calls: HashMap<String, Vec<DateTime<Utc>>> = HashMap::new();
    for r in rx.requests() {
        let who = match r.uri.strip_prefix("/task/") {
            Some(i) => format!("task {i}"),
            None => r.header("webhook-id").unwrap_or("?").to_string(),
        };
        calls.entry(who).or_default().push(clock.at(r.at));
    }
    let mut rerun_attempts = 0;
    for (i, id) in task_ids.iter().enumerate() {
        let t = by_id
            .get(id.as_str())
            .unwrap_or_else(|| panic!("task {id} is not listed"));
        assert_eq!(t["status"], "completed", "{t}");
        let attempts = t["attempts"].as_u64().unwrap() as usize;
        rerun_attempts += attempts - 1;
        if i % 2 == 1 {
            continue;
        }
        let made = calls
            .get(&format!("task {i}"))
            .map_or(&[][..], Vec::as_slice);
        assert!(
            !made.is_empty() && made.len() <= attempts,
            "task {id} called out {} times in {attempts} attempts",
            made.len()
        );
        let checkpoint = time_of(&t["completed_at"]);
        assert!(
            made.iter().all(|at| *at <= checkpoint + CLOCK_SLACK),
            "task {id} called out after it completed at {checkpoint}: {made:?}"
        );
    }
    for (id, e) in &finished {
        let step = &e["steps"][0];
        let made = calls
            .get(&format!("msg_{id}_tell"))
            .map_or(&[][..], Vec::as_slice);
        // A worker killed between the call and the checkpoint is counted
        // as a lost worker when the run is resumed (the attempt count is
        // that of the run that finished the step): the step was not
        // finished, so calling again is at least once, not a re-run.
        let attempts = step["attempts"].as_u64().unwrap() as usize;
        let lost = step["lost_workers"].as_u64().unwrap() as usize;
        assert!(
            !made.is_empty() && made.len() <= attempts + lost,
            "execution {id}'s http step called out {} times in {attempts} attempts \
             and {lost} lost workers: {step}",
            made.len()
        );
        let checkpoint = time_of(&step["completed_at"]);
        assert!(
            made.iter().all(|at| *at <= checkpoint + CLOCK_SLACK),
            "execution {id}'s http step called out after its checkpoint at {checkpoint}: {made:?}"
        );
    }
    eprintln!("attempts beyond the first, forced by the kills: {rerun_attempts}");
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
