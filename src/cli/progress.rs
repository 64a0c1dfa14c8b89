//! Training progress: an indicatif bar (iteration, cost, gradient norm, evaluations per
//! second, ETA) on a terminal; plain log lines, every few iterations, when stdout is a file
//! or a pipe.

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

/// Reports the iterations of one run.
pub struct Progress {
    bar: Option<ProgressBar>,
    start: Instant,
    total: usize,
    first: usize,
    /// Plain lines: one every this many iterations.
    every: usize,
    /// What is counted: "iteration" or "epoch".
    unit: &'static str,
}

impl Progress {
    /// A run of iterations (or epochs: `unit`) `first + 1 ..= total`.
    pub fn new(first: usize, total: usize, unit: &'static str) -> Self {
        let bar = std::io::stdout().is_terminal().then(|| {
            let style =
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg} (ETA {eta})")
                    .expect("a valid template");
            let bar = ProgressBar::new(total as u64).with_style(style);
            bar.set_position(first as u64);
            bar
        });
        Progress { bar, start: Instant::now(), total, first, every: (total / 40).max(1), unit }
    }

    /// After an iteration (or epoch): its number, the cost and gradient norm (NaN when not
    /// known), and the evaluations so far in this run.
    pub fn update(&self, iteration: usize, cost: f64, gradient_norm: f64, evaluations: usize, last: bool) {
        let seconds = self.start.elapsed().as_secs_f64();
        let rate = evaluations as f64 / seconds.max(1e-9);
        let gradient = if gradient_norm.is_nan() { String::new() } else { format!("  ‖∇‖ {gradient_norm:.3e}") };
        let message = format!("cost {cost:.6e}{gradient}  {rate:.1} evaluations/s");
        match &self.bar {
            Some(bar) => {
                bar.set_position(iteration as u64);
                bar.set_message(message);
            }
            None if last || iteration.is_multiple_of(self.every) => {
                let done = (iteration - self.first) as f64;
                let left = self.total.saturating_sub(iteration) as f64;
                let eta = if done > 0.0 { seconds / done * left } else { 0.0 };
                println!("{} {iteration}/{}  {message}  ETA {eta:.1} s", self.unit, self.total);
            }
            None => {}
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}
