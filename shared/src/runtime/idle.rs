//! Giving memory back once a long-running process goes quiet.
//!
//! Allocators keep freed memory for reuse, per thread: after a burst of load
//! `warren dev` stayed 80 MiB above its working set (docs/RELIABILITY.md,
//! "Memory"). The binary that picks the allocator registers how to trim it
//! ([`set_trim`]); [`watch`] notices when the process has used almost no CPU
//! for a few seconds after being busy and opens a new quiet period; each
//! thread that reaches [`on_park`] (tokio's workers as they park, the store
//! writer while it waits) then trims its own heap once in that period. A
//! busy process never trims, so the hot paths pay nothing.

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

static TRIM: OnceLock<fn()> = OnceLock::new();
static QUIET_PERIOD: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static TRIMMED_IN: Cell<u64> = const { Cell::new(0) };
}

/// How this process gives a thread's free memory back to the system (e.g.
/// mimalloc's forced collect). Only the first call counts.
pub fn set_trim(trim: fn()) {
    let _ = TRIM.set(trim);
}

/// Called by a thread about to wait: trims its heap if a quiet period began
/// since it last did.
pub fn on_park() {
    let period = QUIET_PERIOD.load(Ordering::Relaxed);
    if period == 0 || TRIMMED_IN.get() == period {
        return;
    }
    TRIMMED_IN.set(period);
    if let Some(trim) = TRIM.get() {
        trim();
    }
}

/// How often [`watch`] samples the process's CPU time.
const SAMPLE: Duration = Duration::from_secs(1);
/// CPU time per sample below which the process counts as quiet (2 %).
const QUIET_CPU: Duration = Duration::from_millis(20);
/// Quiet samples in a row that make a quiet period.
const QUIET_SAMPLES: u32 = 3;

/// Opens a quiet period each time the process, after being busy, has used
/// under 2 % of a core for three seconds. Runs until the runtime stops.
pub async fn watch() {
    let mut quiet = Quiet::default();
    let mut last = cpu_time();
    let mut ticks = tokio::time::interval(SAMPLE);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let now = cpu_time();
        if quiet.sample(now.saturating_sub(last)) {
            QUIET_PERIOD.fetch_add(1, Ordering::Relaxed);
            // This task's own thread is about to park: it trims there.
        }
        last = now;
    }
}

/// The quiet-period detector, apart from the clock and the process.
#[derive(Default)]
struct Quiet {
    busy_since_trim: bool,
    quiet_samples: u32,
}

impl Quiet {
    /// Takes the CPU time of one sample; true when a quiet period begins.
    fn sample(&mut self, used: Duration) -> bool {
        if used >= QUIET_CPU {
            self.busy_since_trim = true;
            self.quiet_samples = 0;
            return false;
        }
        self.quiet_samples += 1;
        if self.busy_since_trim && self.quiet_samples >= QUIET_SAMPLES {
            self.busy_since_trim = false;
            return true;
        }
        false
    }
}

/// User plus system CPU time of the whole process so far.
fn cpu_time() -> Duration {
    // SAFETY: rusage is plain integers, for which all zeroes is valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes the struct we own.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let of = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    of(usage.ru_utime) + of(usage.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUSY: Duration = Duration::from_millis(300);
    const IDLE: Duration = Duration::from_millis(1);

    #[test]
    fn a_quiet_period_follows_work_once() {
        let mut quiet = Quiet::default();
        // Quiet from the start: nothing to give back yet.
        assert!(![IDLE; 5].into_iter().any(|cpu| quiet.sample(cpu)));
        assert!(!quiet.sample(BUSY));
        assert!(!quiet.sample(IDLE));
        assert!(!quiet.sample(IDLE));
        assert!(quiet.sample(IDLE), "the third quiet second after work");
        assert!(
            ![IDLE; 10].into_iter().any(|cpu| quiet.sample(cpu)),
            "once per period"
        );
        // Work interrupts a count already under way.
        assert!(!quiet.sample(BUSY));
        assert!(!quiet.sample(IDLE));
        assert!(!quiet.sample(BUSY));
        assert!(!quiet.sample(IDLE));
        assert!(!quiet.sample(IDLE));
        assert!(quiet.sample(IDLE));
    }

    #[test]
    fn each_thread_trims_once_per_quiet_period() {
        thread_local! {
            static TRIMS: Cell<u32> = const { Cell::new(0) };
        }
        set_trim(|| TRIMS.set(TRIMS.get() + 1));
        QUIET_PERIOD.fetch_add(1, Ordering::Relaxed);
        on_park();
        on_park();
        assert_eq!(TRIMS.get(), 1);
        let elsewhere = std::thread::spawn(|| {
            on_park();
            TRIMS.get()
        });
        assert_eq!(
            elsewhere.join().unwrap(),
            1,
            "another thread trims its own heap"
        );
        QUIET_PERIOD.fetch_add(1, Ordering::Relaxed);
        on_park();
        assert_eq!(TRIMS.get(), 2, "and again in the next quiet period");
    }
}
