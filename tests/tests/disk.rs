//! Disks that fail warren dev: a store file that is damaged, foreign, a
//! directory or unreadable gives one line at start and a non-zero exit;
//! a disk that fills while it runs answers 507 JSON, writes nothing half,
//! and serves again once space returns, without a restart; the worker
//! holds the tasks and pipeline checkpoints it has in hand meanwhile.
//!
//! The full disk is a real kernel fault without mounting anything: the
//! server's file-size limit (RLIMIT_FSIZE, set from outside with
//! prlimit(2)) is lowered to the store file's size, so the next write that
//! grows it fails with EFBIG, as a full disk fails it with ENOSPC (warren
//! answers both 507; the store's unit tests inject ENOSPC itself).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use warren_tests::*;

/// A fresh directory for one start-up case, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        let dir =
            std::env::temp_dir().join(format!("warren-disk-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Dir(dir)
    }

    fn store(&self) -> PathBuf {
        self.0.join("warren.redb")
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `warren dev` on `data_dir` (as `uid` if given) and expects it to
/// refuse to start: a non-zero exit within 30 s, and a last stderr line
/// naming the store file with `says` in it, without a panic. Returns that line.
fn refuses_to_start(data_dir: &Path, uid: Option<u32>, says: &str) -> String {
    let mut cmd = Command::new(warren_bin());
    cmd.args(["dev", "--port", "0", "--open", "--data-dir"])
        .arg(data_dir)
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("WARREN_") {
            cmd.env_remove(k);
        }
    }
    if let Some(uid) = uid {
        use std::os::unix::process::CommandExt;
        cmd.uid(uid).gid(uid);
    }
    let mut child = cmd.spawn().expect("spawn warren dev");
    let deadline = Instant::now() + secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for warren") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "warren dev on {} did not exit within 30 s",
                data_dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().expect("collect output");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        !status.success(),
        "warren started on a bad store file; stderr:\n{stderr}"
    );
    assert_eq!(
        status.code(),
        Some(1),
        "an error exit, not a panic (101) or a signal; stderr:\n{stderr}"
    );
    for bad in ["panicked", "backtrace", "RUST_BACKTRACE"] {
        assert!(
            !stderr.contains(bad),
            "stderr shows a panic ({bad}):\n{stderr}"
        );
    }
    assert!(!stdout.contains("listening"), "it served: {stdout}");
    let line = stderr.lines().last().unwrap_or_default().to_string();
    let file = data_dir.join("warren.redb").display().to_string();
    assert!(
        line.starts_with(&format!("warren: store file {file} ")),
        "the last line names the file: {line}"
    );
    assert!(line.contains(says), "the last line says `{says}`: {line}");
    eprintln!("{line}");
    line
}

/// A real store file of a stopped warren holding a few tasks.
async fn real_store() -> Vec<u8> {
    let w = Warren::start(Opts::new().no_worker()).await;
    for i in 0..20 {
        w.enqueue(&json!({"task_name": "echo", "args": [i]})).await;
    }
    // A clean stop (SIGINT), so the file's pages are where a damaged page
    // below is read at open, not skipped by a repair.
    let pid = w.pid();
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) }, 0);
    wait_until("warren stopped", secs(30), async || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.split(") ").nth(1)?.starts_with('Z').then_some(())
    })
    .await;
    std::fs::read(w.data_dir().join("warren.redb")).expect("read the store file")
}

#[test]
fn random_bytes_are_refused_with_one_line() {
    let dir = Dir::new();
    let bytes: Vec<u8> = (0..100_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(dir.store(), bytes).expect("write");
    let line = refuses_to_start(&dir.0, None, "is damaged or not a warren store");
    assert!(
        line.contains("move it away (or restore a backup)"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_or_overwritten_real_store_is_refused_with_one_line() {
    let real = real_store().await;
    assert!(real.len() > 8192, "the store file is {} bytes", real.len());
    // Cut short: in its header, and past it. (A cut that keeps every page
    // in use is no damage: redb opens such a file.)
    for len in [100, 4096] {
        let dir = Dir::new();
        std::fs::write(dir.store(), &real[..len]).expect("write");
        refuses_to_start(&dir.0, None, "is damaged or not a warren store");
    }
    // Every page past the header overwritten: redb panics reading them
    // (where it could say `Corrupted`); warren reports it.
    let dir = Dir::new();
    let mut bytes = real.clone();
    bytes[4096..].fill(0xAA);
    std::fs::write(dir.store(), bytes).expect("write");
    refuses_to_start(&dir.0, None, "is damaged or not a warren store");
}

#[test]
fn a_redb_file_of_another_program_is_refused_not_adopted() {
    let dir = Dir::new();
    {
        let db = redb::Database::create(dir.store()).expect("create a redb file");
        let tx = db.begin_write().expect("write");
        {
            const OTHER: redb::TableDefinition<u64, &str> = redb::TableDefinition::new("invoices");
            tx.open_table(OTHER)
                .expect("table")
                .insert(1, "paid")
                .expect("insert");
        }
        tx.commit().expect("commit");
    }
    refuses_to_start(
        &dir.0,
        None,
        "is a redb database of another program (its tables: invoices)",
    );
    {
        // Its data is as it was, and no table of warren's was added.
        const OTHER: redb::TableDefinition<u64, &str> = redb::TableDefinition::new("invoices");
        let db = redb::Database::open(dir.store()).expect("the foreign file still opens");
        let tx = redb::ReadableDatabase::begin_read(&db).expect("read");
        let table = tx.open_table(OTHER).expect("its table");
        let row = redb::ReadableTable::get(&table, 1)
            .expect("get")
            .expect("row 1");
        assert_eq!(row.value(), "paid");
        let names: Vec<String> = tx
            .list_tables()
            .expect("tables")
            .map(|t| redb::TableHandle::name(&t).to_string())
            .collect();
        assert_eq!(names, ["invoices"], "warren added tables to a foreign file");
    }

    // One with warren's table names but other types is foreign too.
    let dir = Dir::new();
    {
        let db = redb::Database::create(dir.store()).expect("create a redb file");
        let tx = db.begin_write().expect("write");
        {
            const ITEMS: redb::TableDefinition<u64, u64> = redb::TableDefinition::new("items");
            const META: redb::TableDefinition<u64, u64> = redb::TableDefinition::new("meta");
            tx.open_table(ITEMS)
                .expect("table")
                .insert(1, 2)
                .expect("insert");
            tx.open_table(META)
                .expect("table")
                .insert(1, 2)
                .expect("insert");
        }
        tx.commit().expect("commit");
    }
    refuses_to_start(&dir.0, None, "is a redb database of another program");
}

#[test]
fn a_directory_in_place_of_the_store_file_is_refused() {
    let dir = Dir::new();
    std::fs::create_dir_all(dir.store()).expect("mkdir");
    refuses_to_start(&dir.0, None, "is a directory: move it away");
}

/// Root reads any file whatever its mode, so as root the server runs as
/// `nobody` (65534) over a data dir it owns, with the store file mode 000.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_store_file_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let real = real_store().await;
    let dir = Dir::new();
    std::fs::write(dir.store(), &real).expect("write");
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let uid = root.then_some(65_534);
    if let Some(uid) = uid {
        std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        for entry in [dir.0.clone(), dir.store()] {
            std::os::unix::fs::chown(&entry, Some(uid), Some(uid)).expect("chown to nobody");
        }
        // nobody must reach the data dir and the binary.
        let mut up = dir.0.parent();
        while let Some(p) = up {
            let mode = std::fs::metadata(p).expect("stat").permissions().mode();
            assert!(
                mode & 0o001 != 0,
                "{} is not searchable by nobody",
                p.display()
            );
            up = p.parent();
        }
    }
    std::fs::set_permissions(dir.store(), std::fs::Permissions::from_mode(0o000))
        .expect("chmod 000");
    refuses_to_start(
        &dir.0,
        uid,
        "cannot be opened for reading and writing (permission denied)",
    );
}

/// Sets the file-size limit of process `pid` (soft and hard; root raises
/// the hard one back).
fn limit_file_size(pid: u32, bytes: u64) {
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: `limit` is a valid rlimit and the old-limit pointer may be null.
    let r = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_FSIZE,
            &limit,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(r, 0, "prlimit: {}", std::io::Error::last_os_error());
}

fn task(i: usize, pad: &str) -> Value {
    json!({"task_name": "echo", "queue_name": "disk", "args": [i, pad], "max_retries": 3})
}

/// Every counter of queue `disk` equals the number of its listed tasks in
/// that state, and the listed ids are `ids`.
async fn counts_match_tasks(w: &Warren, ids: &HashSet<String>) {
    let all = w.list_all("queue=disk&limit=100").await;
    let listed: HashSet<String> = all
        .iter()
        .map(|t| t["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(listed.len(), all.len(), "a task is listed twice");
    assert_eq!(&listed, ids, "the stored tasks are the acknowledged ones");
    let mut states: BTreeMap<String, u64> = BTreeMap::new();
    for t in &all {
        *states
            .entry(t["status"].as_str().expect("status").to_string())
            .or_default() += 1;
    }
    let q = w.queue("disk").await.expect("queue disk listed");
    for s in [
        "pending",
        "running",
        "completed",
        "failed",
        "cancelled",
        "expired",
    ] {
        assert_eq!(
            q[s].as_u64(),
            Some(states.get(s).copied().unwrap_or(0)),
            "{s}: counters {q} vs tasks {states:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_507_writes_nothing_half_and_recovers_without_a_restart() {
    // No worker: what is checked is the API's answers and the store's
    // atomicity (a worker's writes on a full disk are redelivered by the
    // queue, see docs/RELIABILITY.md).
    let mut w = Warren::start(Opts::new().no_worker()).await;
    let pad = "x".repeat(4_000);
    let mut ids = HashSet::new();
    for i in 0..50 {
        ids.insert(w.enqueue(&task(i, &pad)).await);
    }
    let store = w.data_dir().join("warren.redb");
    let size = std::fs::metadata(&store).expect("stat").len();
    limit_file_size(w.pid(), size);
    eprintln!("file size limited to {size} bytes");

    // Single and batch enqueues until the disk has refused 100 writes.
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    let mut i = 50;
    let mut refused = 0;
    while refused < 100 {
        assert!(i < 5_000, "the store never filled: {statuses:?}");
        let r = if i % 5 == 0 {
            let batch: Vec<Value> = (0..10).map(|k| task(i * 100 + k, &pad)).collect();
            w.post("/api/v1/enqueue/batch", &Value::Array(batch)).await
        } else {
            w.post("/api/v1/enqueue", &task(i, &pad)).await
        };
        *statuses.entry(r.status).or_default() += 1;
        match r.status {
            201 if r.json["task_id"].is_string() => {
                ids.insert(r.json["task_id"].as_str().expect("id").to_string());
            }
            201 => {
                for id in r.json["task_ids"]
                    .as_array()
                    .unwrap_or_else(|| panic!("batch ids in {}", r.text))
                {
                    ids.insert(id.as_str().expect("id").to_string());
                }
            }
            507 => {
                refused += 1;
                assert_eq!(r.json["code"], "insufficient_storage", "{}", r.text);
                assert!(r.message().contains("disk is full"), "{}", r.text);
            }
            other => panic!(
                "enqueue on a full disk answered {other}: {}\n{}",
                r.text,
                w.log_tail(20)
            ),
        }
        i += 1;
    }
    eprintln!("on the full disk: {statuses:?}");
    // Reads work while it is full, once the writer has reopened the file
    // after the last refused write (until then they are refused too).
    wait_until("reads work on the full disk", secs(5), async || {
        let r = w.get("/api/v1/queues").await;
        assert!(matches!(r.status, 200 | 507), "{} {}", r.status, r.text);
        (r.status == 200).then_some(())
    })
    .await;

    // Space returns: writes work again, with no restart.
    limit_file_size(w.pid(), libc::RLIM_INFINITY);
    let begun = Instant::now();
    let id = wait_until("an enqueue succeeds again", secs(10), async || {
        let r = w.post("/api/v1/enqueue", &task(9_999_999, "back")).await;
        (r.status == 201)
            .then(|| r.json["task_id"].as_str().map(str::to_string))
            .flatten()
    })
    .await;
    eprintln!(
        "writes accepted again {:?} after space returned",
        begun.elapsed()
    );
    ids.insert(id);

    // Every acknowledged task is pending, once; no refused one appears.
    let q = w.queue("disk").await.expect("queue disk");
    assert_eq!(q["pending"].as_u64(), Some(ids.len() as u64), "{q}");
    counts_match_tasks(&w, &ids).await;
    // The file is sound: a restart reads the same.
    w.restarts_and_serves().await;
    counts_match_tasks(&w, &ids).await;
    eprintln!(
        "{} acknowledged tasks, all stored once; statuses on the full disk {statuses:?}",
        ids.len()
    );
}

/// The worker on a full disk: a task whose start or finish cannot be
/// written holds its message and tries the write again, so once space
/// returns every task goes on within seconds (not after its lease, its
/// message's visibility or the re-dispatch timer), each after exactly one
/// attempt: no outcome is lost and no attempt runs again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_the_worker_holds_tasks_until_space_returns() {
    let w = Warren::start(Opts::new()).await;
    let pad = "x".repeat(4_000);
    let mut ids = HashSet::new();
    for i in 0..40 {
        ids.insert(w.enqueue(&task(i, &pad)).await);
    }
    for id in &ids {
        w.wait_for_status(id, "completed", secs(30)).await;
    }
    // Running when the disk fills: their outcomes are written on it.
    let mut running = Vec::new();
    for i in 0..8 {
        let sleeper = json!({"task_name": "sleep", "queue_name": "disk",
            "kwargs": {"seconds": 3, "pad": pad, "i": i}});
        running.push(w.enqueue(&sleeper).await);
    }
    for id in &running {
        w.wait_for_status(id, "running", secs(10)).await;
    }
    // Due while the disk is full: their starts are written on it.
    let due = chrono::Utc::now() + chrono::Duration::seconds(2);
    for i in 0..24 {
        let mut later = task(100 + i, &pad);
        later["scheduled_at"] = json!(due.to_rfc3339());
        ids.insert(w.enqueue(&later).await);
    }
    ids.extend(running.iter().cloned());

    let store = w.data_dir().join("warren.redb");
    limit_file_size(w.pid(), std::fs::metadata(&store).expect("stat").len());
    // Until the disk refuses a write, what it still takes is a task too.
    wait_until("the disk refuses a write", secs(10), async || {
        let r = w.post("/api/v1/enqueue", &task(1_000, &pad)).await;
        match r.status {
            507 => Some(()),
            201 => {
                ids.insert(r.json["task_id"].as_str().expect("id").to_string());
                None
            }
            other => panic!("enqueue on a full disk answered {other}: {}", r.text),
        }
    })
    .await;
    // The sleepers finish and the delayed tasks come due on the full disk.
    tokio::time::sleep(secs(6)).await;
    let held = w
        .log_tail(100_000)
        .matches("store unavailable; trying again")
        .count();
    assert!(
        held > 0,
        "no start or finish met the full disk:\n{}",
        w.log_tail(30)
    );

    limit_file_size(w.pid(), libc::RLIM_INFINITY);
    let begun = Instant::now();
    for id in &ids {
        let t = w.wait_for_status(id, "completed", secs(30)).await;
        assert_eq!(t["attempts"], 1, "task {id} ran again: {t}");
    }
    eprintln!(
        "{} tasks completed {:?} after space returned, each after one attempt; \
         {held} writes were tried again on the full disk",
        ids.len(),
        begun.elapsed()
    );
    counts_match_tasks(&w, &ids).await;
}

/// GIVEN pipeline executions whose first step (a 5 s task) is under way
/// WHEN the disk fills before that step ends, and space returns later
/// THEN the worker holds each finished step's checkpoint until it can be
/// written: every execution succeeds, its first step finished before space
/// returned (it did not run again), no worker was presumed lost, and the
/// step after it called out once per execution.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_a_pipeline_holds_its_checkpoints_until_space_returns() {
    let rx = Receiver::ok().await;
    let w = Warren::start(
        Opts::new()
            .allow_loopback()
            .args(["--worker-concurrency", "8"]),
    )
    .await;
    let pad = "x".repeat(4_000);
    let pipeline = w
        .create_pipeline(&json!({"name": "disk", "steps": [
            {"name": "work", "kind": "task", "task_name": "sleep", "kwargs": {"seconds": 5}},
            {"name": "tell", "kind": "http", "url": rx.url("/step")}
        ]}))
        .await;
    let begun = Instant::now();
    let mut executions = Vec::new();
    for n in 0..6 {
        let r = w
            .post(
                &format!("/api/v1/pipelines/{pipeline}/run"),
                &json!({"n": n}),
            )
            .await;
        r.expect(202);
        executions.push(r.json["execution_id"].as_str().expect("id").to_string());
    }
    // Claimed by the worker (a write) before the disk fills.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let store = w.data_dir().join("warren.redb");
    limit_file_size(w.pid(), std::fs::metadata(&store).expect("stat").len());
    wait_until("the disk refuses a write", secs(10), async || {
        let r = w.post("/api/v1/enqueue", &task(1_000, &pad)).await;
        match r.status {
            507 => Some(()),
            201 => None,
            other => panic!("enqueue on a full disk answered {other}: {}", r.text),
        }
    })
    .await;
    let full_after = begun.elapsed();
    assert!(
        full_after < secs(4),
        "the disk took {full_after:?} to fill: the steps may have ended before it did"
    );
    // The first steps end on the full disk.
    tokio::time::sleep(secs(8).saturating_sub(begun.elapsed())).await;
    let log = w.log_tail(100_000);
    let held: Vec<&String> = executions
        .iter()
        .filter(|id| {
            log.lines()
                .any(|l| l.contains("store unavailable; trying again") && l.contains(id.as_str()))
        })
        .collect();
    assert!(
        !held.is_empty(),
        "no checkpoint met the full disk:\n{}",
        w.log_tail(30)
    );

    let returned = chrono::Utc::now();
    limit_file_size(w.pid(), libc::RLIM_INFINITY);
    for id in &executions {
        let e = finished_execution(&w, id).await;
        assert_eq!(e["status"], "success", "execution {id}: {e}");
        let work = &e["steps"][0];
        let finished: chrono::DateTime<chrono::Utc> =
            serde_json::from_value(work["completed_at"].clone()).expect("completed_at");
        assert!(
            finished < returned,
            "execution {id}'s first step ran again after space returned: {e}\n{}",
            w.log_tail(40)
        );
        assert_eq!(work["attempts"], 1, "execution {id}: {e}");
        assert_eq!(work["lost_workers"], 0, "execution {id}: {e}");
    }
    let calls = rx.wait_for(executions.len(), secs(5)).await;
    tokio::time::sleep(secs(1)).await;
    assert_eq!(
        rx.requests().len(),
        executions.len(),
        "the step after the held checkpoint called out more than once per execution: {calls:?}"
    );
    eprintln!(
        "{} executions succeeded, {} of them after holding a checkpoint on the full disk",
        executions.len(),
        held.len()
    );
}
