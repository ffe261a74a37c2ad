//! Deterministic simulation of the task engine: the services run against
//! the in-memory store and queue on a paused clock, one port call at a
//! time, in an order, with faults and crashes, all drawn from one seed.
//! After each run drains, the invariants of `check` must hold.
//!
//! `WARREN_SIM_SEEDS=N` runs seeds 0..N (default 1000), `WARREN_SIM_SEED=S`
//! replays seed S alone. A failing seed prints the command that replays it;
//! `WARREN_SIM_SHOW=N` prints the violations of the first N failing seeds
//! (10), after the count of seeds that broke each invariant.

mod check;
mod gate;
mod ports;
mod rng;
mod world;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ports::Tally;

fn replay(seed: u64) -> String {
    format!(
        "WARREN_SIM_SEED={seed} cargo nextest run -p warren -E 'binary(simulation)' --no-capture"
    )
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not `{v}`")),
    )
}

fn seeds() -> Vec<u64> {
    if let Some(seed) = env_u64("WARREN_SIM_SEED") {
        return vec![seed];
    }
    (0..env_u64("WARREN_SIM_SEEDS").unwrap_or(1000)).collect()
}

/// Run `seeds` on every core; the reports of the ones that broke an invariant.
fn run_all(seeds: &[u64]) -> (Vec<(u64, world::Report)>, Totals) {
    let next = AtomicUsize::new(0);
    let failed = Mutex::new(Vec::new());
    let totals = Mutex::new(Totals::default());
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&seed) = seeds.get(i) else { return };
                    let report = world::run(seed);
                    let mut t = totals.lock().unwrap();
                    t.tally += report.tally;
                    t.tasks += report.tasks as u64;
                    t.chunked += report.chunked as u64;
                    t.attempts += report.attempts;
                    t.executions += report.executions as u64;
                    t.step_runs += report.step_runs as u64;
                    t.cancelled += report.cancelled as u64;
                    t.keyed += report.keyed as u64;
                    t.requeues += report.requeues;
                    t.expired += report.expired;
                    t.removed += report.removed;
                    t.hooks += report.hooks;
                    t.simulated += report.simulated;
                    drop(t);
                    if !report.violations.is_empty() {
                        failed.lock().unwrap().push((seed, report));
                    }
                }
            });
        }
    });
    let mut failed = failed.into_inner().unwrap();
    failed.sort_by_key(|(seed, _)| *seed);
    (failed, totals.into_inner().unwrap())
}

#[derive(Default)]
struct Totals {
    tally: Tally,
    tasks: u64,
    chunked: u64,
    attempts: u64,
    executions: u64,
    step_runs: u64,
    cancelled: u64,
    keyed: u64,
    requeues: u64,
    expired: u64,
    removed: u64,
    hooks: u64,
    simulated: Duration,
}

fn fail_with(failed: &[(u64, world::Report)], of: usize) -> ! {
    let mut text = format!("{} of {of} seeds broke an invariant\n", failed.len());
    // Which invariants, and the seeds that broke each.
    let mut kinds: std::collections::BTreeMap<&str, Vec<u64>> = Default::default();
    for (seed, report) in failed {
        for v in &report.violations {
            let kind = v.split(':').next().unwrap_or(v);
            let seeds = kinds.entry(kind).or_default();
            if seeds.last() != Some(seed) {
                seeds.push(*seed);
            }
        }
    }
    for (kind, seeds) in &kinds {
        let shown: Vec<String> = seeds.iter().take(30).map(u64::to_string).collect();
        let more = if seeds.len() > 30 { ", ..." } else { "" };
        text += &format!(
            "  {kind}: {} seeds ({}{more})\n",
            seeds.len(),
            shown.join(", ")
        );
    }
    // `WARREN_SIM_SHOW=N`: the violations of the first N seeds (10).
    let show = env_u64("WARREN_SIM_SHOW").unwrap_or(10) as usize;
    for (seed, report) in failed.iter().take(show) {
        text += &format!("\nseed {seed} ({:?}):\n", report.plan);
        for v in report.violations.iter().take(5) {
            text += &format!("  {v}\n");
        }
        text += &format!("  replay: {}\n", replay(*seed));
    }
    panic!("{text}");
}

#[test]
fn every_seed_keeps_the_invariants() {
    let seeds = seeds();
    let began = Instant::now();
    let (failed, t) = run_all(&seeds);
    eprintln!(
        "simulation: {} seeds in {:.1} s: {} tasks ({} in chunks), {} handler runs, {} executions, {} pipeline step runs, {} cancels, {} keyed enqueues, {} requeues, {} expired and {} removed at their TTL, {} webhook deliveries, {:.0} simulated hours; injected {} crashes, {} lost, {} duplicated, {} delayed messages, {} queue and {} store errors, {} failed webhook deliveries, {} clock jumps",
        seeds.len(),
        began.elapsed().as_secs_f64(),
        t.tasks,
        t.chunked,
        t.attempts,
        t.executions,
        t.step_runs,
        t.cancelled,
        t.keyed,
        t.requeues,
        t.expired,
        t.removed,
        t.hooks,
        t.simulated.as_secs_f64() / 3600.0,
        t.tally.crashes,
        t.tally.lost,
        t.tally.duplicated,
        t.tally.delayed,
        t.tally.queue_errors,
        t.tally.store_errors,
        t.tally.hook_errors,
        t.tally.clock_jumps,
    );
    if !failed.is_empty() {
        fail_with(&failed, seeds.len());
    }
}

#[test]
fn a_seed_replays_exactly() {
    let seeds = env_u64("WARREN_SIM_SEED").map_or((0..12).collect(), |s| vec![s]);
    for seed in seeds {
        let a = world::run(seed);
        if world::tracing() {
            eprintln!("---- second run");
        }
        let b = world::run(seed);
        assert_eq!(
            a.digest, b.digest,
            "seed {seed} took another course on its second run"
        );
        assert_eq!(a.tally.crashes, b.tally.crashes);
    }
}
