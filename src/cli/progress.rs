//! Training progress: an indicatif bar (iteration, cost, gradient norm, rate, ETA) when stderr
//! is a terminal; otherwise plain lines on stderr: the first, then at most one every two
//! seconds, and the last; nothing with `--quiet`. Optionally one JSON object per iteration or epoch (`--log-json`).

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Set by `--quiet`: no bar and no progress lines.
static QUIET: AtomicBool = AtomicBool::new(false);

/// The least time between two plain progress lines.
const LINE_INTERVAL: Duration = Duration::from_secs(2);

/// Silences (or not) every progress report of this process.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Reports the iterations of one run.
pub struct Progress {
    bar: Option<ProgressBar>,
    /// Plain lines when there is no bar (and not quiet).
    lines: bool,
    start: Instant,
    /// When the last plain line was printed (the first update prints one at once).
    last_line: std::cell::Cell<Option<Instant>>,
    /// The latest update not printed yet, printed by `finish` (a run stopped from outside
    /// ends on it).
    pending: std::cell::RefCell<Option<String>>,
    total: usize,
    first: usize,
    /// What is counted: "iteration" or "epoch".
    unit: &'static str,
    /// What the rate counts: "evaluations" or "steps".
    work: &'static str,
    /// The latest held-out cost, shown until the next.
    held_out: std::cell::Cell<Option<f64>>,
}

impl Progress {
    /// A run of iterations (or epochs: `unit`) `first + 1 ..= total`, whose rate counts `work`.
    pub fn new(first: usize, total: usize, unit: &'static str, work: &'static str) -> Self {
        let quiet = QUIET.load(Ordering::Relaxed);
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let style =
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg} (ETA {eta})")
                    .expect("a valid template");
            let bar = ProgressBar::new(total as u64).with_style(style);
            bar.set_position(first as u64);
            bar
        });
        let start = Instant::now();
        let lines = !quiet && bar.is_none();
        let (last_line, pending) = (std::cell::Cell::new(None), std::cell::RefCell::new(None));
        let held_out = std::cell::Cell::new(None);
        Progress { bar, lines, start, last_line, pending, total, first, unit, work, held_out }
    }

    /// A held-out cost, shown with the updates from now on.
    pub fn validated(&self, cost: f64) {
        self.held_out.set(Some(cost));
    }

    /// After an iteration (or epoch): its number, the cost and gradient norm (NaN when not
    /// known), and the evaluations (or steps) so far in this run.
    pub fn update(&self, iteration: usize, cost: f64, gradient_norm: f64, work: usize, last: bool) {
        let now = Instant::now();
        let seconds = (now - self.start).as_secs_f64();
        let rate = work as f64 / seconds.max(1e-9);
        let gradient = if gradient_norm.is_nan() { String::new() } else { format!("  ‖∇‖ {gradient_norm:.3e}") };
        let held_out = self.held_out.get().map_or(String::new(), |cost| format!("  held-out {cost:.6e}"));
        let message = format!("cost {cost:.6e}{gradient}{held_out}  {rate:.1} {}/s", self.work);
        if let Some(bar) = &self.bar {
            bar.set_position(iteration as u64);
            bar.set_message(message);
        } else if self.lines {
            let done = (iteration - self.first) as f64;
            let left = self.total.saturating_sub(iteration) as f64;
            let eta = if done > 0.0 { seconds / done * left } else { 0.0 };
            let line = format!("{} {iteration}/{}  {message}  ETA {eta:.1} s", self.unit, self.total);
            if last || self.last_line.get().is_none_or(|printed| now - printed >= LINE_INTERVAL) {
                self.last_line.set(Some(now));
                self.pending.replace(None);
                eprintln!("{line}");
            } else {
                self.pending.replace(Some(line));
            }
        }
    }

    /// Ends the report: the bar, or the latest plain line if it was not printed.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
        if let Some(line) = self.pending.take() {
            eprintln!("{line}");
        }
    }
}

/// `--log-json`: one JSON object per line, flushed as it is written so that a dashboard can
/// follow the file. A failed write does not stop the run: the first error is kept and
/// reported when the run ends.
pub struct JsonLog {
    path: PathBuf,
    out: BufWriter<File>,
    error: Option<std::io::Error>,
    start: Instant,
}

impl JsonLog {
    /// Creates (or truncates) the log at `path`, or `None` without a path.
    pub fn create(path: Option<&Path>) -> std::io::Result<Option<Self>> {
        path.map(|path| {
            let out = BufWriter::new(File::create(path)?);
            Ok(JsonLog { path: path.to_path_buf(), out, error: None, start: Instant::now() })
        })
        .transpose()
    }

    /// Writes `counts` (always JSON integers), `measures` (always JSON floats; non-finite ones,
    /// which JSON cannot hold, as `null`) and the seconds since the log was created as one
    /// line: each key keeps one type from line to line.
    pub fn record(&mut self, counts: &[(&str, u64)], measures: &[(&str, f64)]) {
        if self.error.is_some() {
            return;
        }
        let mut line = serde_json::Map::new();
        for &(key, count) in counts {
            line.insert(key.to_string(), count.into());
        }
        let seconds = self.start.elapsed().as_secs_f64();
        for &(key, value) in measures.iter().chain(&[("seconds", seconds)]) {
            let value = serde_json::Number::from_f64(value).map_or(serde_json::Value::Null, serde_json::Value::Number);
            line.insert(key.to_string(), value);
        }
        let written = serde_json::to_writer(&mut self.out, &line)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(self.out))
            .and_then(|()| self.out.flush());
        if let Err(e) = written {
            self.error = Some(e);
        }
    }

    /// Reports a failed write, if there was one, as a warning.
    pub fn finish(self) {
        if let Some(e) = self.error {
            log::warn!("--log-json {}: {e}; the lines after it are missing", self.path.display());
        }
    }
}
