//! Progress of long command-line work, drawn on stderr when it is a
//! terminal (indicatif hides it otherwise, so scripts and logs see only the
//! final lines).

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `len` items of `what` (tasks, requests), with rate and ETA.
pub fn items(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len).with_message(what.to_string());
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} ({per_sec}, {eta} left)")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// A bar over a fixed span of time (a timed benchmark run), moving by
/// itself until finished.
pub fn timed(span: Duration, what: &str) -> ProgressBar {
    let len = span.as_secs().max(1);
    let bar = ProgressBar::new(len).with_message(what.to_string());
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos} of {len} s")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let clock = bar.clone();
    tokio::spawn(async move {
        let start = std::time::Instant::now();
        while !clock.is_finished() {
            clock.set_position(start.elapsed().as_secs().min(len));
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    bar
}

/// A spinner for work of unknown length; its message says what is going on.
pub fn spinner(what: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner().with_message(what.to_string());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("a valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}
