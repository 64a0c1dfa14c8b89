//! How a caller steers a run: the value its progress callback returns, and a time limit.
//!
//! A callback may return `()` (the run goes on) or a [`ControlFlow`]: `Break` ends the run
//! after the step the callback saw, as a finished run — the model of that point is returned
//! (and written by the command line) like that of a run that reached its budget, with the
//! stop recorded as `requested` (unless the run stopped on its own at that very step: its own
//! stop is recorded). The same holds for the time limit (`time-limit`).
//!
//! ```
//! use std::ops::ControlFlow;
//! use sae::optim::{LbfgsOptions, Stop};
//! use sae::train::Trainer;
//! use sae::{Dataset, HyperParams, Objective, Parameters};
//!
//! let (m, n, h) = (100, 16, 4);
//! let values: Vec<f64> = (0..m * n).map(|i| 0.1 + 0.8 * ((i * 7919) % 101) as f64 / 100.0).collect();
//! let mut objective = Objective::new(HyperParams::builder(n, h).build()?, Dataset::examples_by_features(&values, m, n)?)?;
//! // Stop once the cost is below a target, or after ten iterations.
//! let trained = Trainer::new(LbfgsOptions::default()).fit(&mut objective, &Parameters::init(n, h, 1), |it| {
//!     if it.f < 0.5 || it.iteration == 10 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
//! })?;
//! assert_eq!(trained.stop, Stop::Requested);
//! # Ok::<(), sae::Error>(())
//! ```

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a training callback returns: `()`, or a [`ControlFlow`] whose `Break` stops the run.
pub trait Control {
    /// Whether the run is to stop after this step.
    fn stops(self) -> bool;
}

impl Control for () {
    fn stops(self) -> bool {
        false
    }
}

impl Control for ControlFlow<()> {
    fn stops(self) -> bool {
        self.is_break()
    }
}

/// The moment a run with a time limit must stop by: checked between steps, so a run ends at
/// the first step that finishes after it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline(Option<Instant>);

impl Deadline {
    /// `limit` from now, or never.
    pub(crate) fn after(limit: Option<Duration>) -> Self {
        // A limit beyond what an `Instant` can hold is no limit.
        Deadline(limit.and_then(|limit| Instant::now().checked_add(limit)))
    }

    pub(crate) fn passed(&self) -> bool {
        self.0.is_some_and(|deadline| Instant::now() >= deadline)
    }
}

/// A stop from outside the optimiser, in the order they are checked after each step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outside {
    /// The caller's flag was set.
    Interrupted,
    /// The callback returned `Break`.
    Requested,
    /// The deadline passed.
    TimeLimit,
}

/// Everything that can end a run from outside the optimiser: the caller's flag (see
/// [`interrupted`]), the callback's answer, the deadline.
pub(crate) fn outside_stop(flag: &Option<Arc<AtomicBool>>, requested: bool, deadline: &Deadline) -> Option<Outside> {
    if interrupted(flag) {
        Some(Outside::Interrupted)
    } else if requested {
        Some(Outside::Requested)
    } else if deadline.passed() {
        Some(Outside::TimeLimit)
    } else {
        None
    }
}

/// Whether the caller has asked the run to stop. The flag carries no data, so the load needs
/// no ordering.
pub(crate) fn interrupted(flag: &Option<Arc<AtomicBool>>) -> bool {
    flag.as_ref().is_some_and(|flag| flag.load(Ordering::Relaxed))
}
