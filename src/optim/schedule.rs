//! The learning rate over a run of minibatch steps: a warm-up, a constant stretch, a decay.

use crate::error::{Error, Result};

/// The shape of the decay at the end of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Decay {
    /// No decay: the learning rate stays at its value to the end.
    #[default]
    None,
    /// Straight down towards 0 at the run's end (the last step at `1/(T − s)` of the rate).
    Linear,
    /// Half a cosine period from the learning rate down towards 0 at the run's end.
    Cosine,
}

impl Decay {
    /// The names the CLI, the Python package and the logs use.
    pub const NAMES: [&'static str; 3] = ["none", "linear", "cosine"];

    /// `"none"`, `"linear"` or `"cosine"`.
    pub fn name(self) -> &'static str {
        match self {
            Decay::None => "none",
            Decay::Linear => "linear",
            Decay::Cosine => "cosine",
        }
    }

    /// The decay of [`name`](Self::name) `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "none" => Some(Decay::None),
            "linear" => Some(Decay::Linear),
            "cosine" => Some(Decay::Cosine),
            _ => None,
        }
    }
}

/// How the learning rate `η` of a [`StepRule`](super::StepRule) moves over a run of `T` steps:
/// step `t` (from 0) is taken at `η·f(t)` with
///
/// - `f(t) = (t + 1)/w` during the warm-up, the first `w` steps;
/// - `f(t) = 1` from there to the decay's start `s = ⌊decay_start · T⌋`;
/// - from `s` on, `f(t) = (T − t)/(T − s)` for a linear decay, `½(1 + cos(π (t − s)/(T − s)))`
///   for a cosine one (the last step is taken at a small positive rate, never at 0);
///
/// the smaller of the warm-up's and the decay's factors where they overlap. The practice of
/// dictionary-learning trainers (a warm-up of a few hundred to a thousand steps against Adam's
/// early, poorly estimated second moments; a linear decay over the last fifth), and the one
/// that settles a model whose codes are read afterwards: the last steps at a large rate leave
/// the parameters wherever the last minibatches pushed them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// `w`, the warm-up's steps (0: none).
    pub warmup_steps: u64,
    pub decay: Decay,
    /// Where the decay starts, as a fraction of the run's steps, in `[0, 1)`.
    pub decay_start: f64,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule::CONSTANT
    }
}

impl Schedule {
    /// The learning rate as given, at every step.
    pub const CONSTANT: Schedule = Schedule { warmup_steps: 0, decay: Decay::None, decay_start: 0.8 };

    /// A decay of shape `decay` over the steps from the fraction `decay_start` of the run on.
    pub fn decaying(decay: Decay, decay_start: f64) -> Self {
        Schedule { decay, decay_start, ..Schedule::CONSTANT }
    }

    pub fn check(&self) -> Result<()> {
        if !(0.0..1.0).contains(&self.decay_start) {
            return Err(Error::InvalidHyperParameter {
                name: "decay_start",
                value: self.decay_start,
                reason: "must be a fraction of the run's steps in [0, 1)",
            });
        }
        Ok(())
    }

    /// Whether the rate changes at all.
    pub fn is_constant(&self) -> bool {
        self.warmup_steps == 0 && self.decay == Decay::None
    }

    /// `f(t)` of step `step` (from 0) of a run of `total` steps; 1 for a constant schedule,
    /// and in `(0, 1]` for any step before `total` (a step past the end is taken at the last
    /// step's rate).
    pub fn factor(&self, step: u64, total: u64) -> f64 {
        let step = step.min(total.saturating_sub(1));
        let warmup = if step < self.warmup_steps { (step + 1) as f64 / self.warmup_steps as f64 } else { 1.0 };
        let start = (self.decay_start * total as f64).floor() as u64;
        let decay = if step < start {
            1.0
        } else {
            let (done, span) = ((step - start) as f64, (total - start) as f64);
            match self.decay {
                Decay::None => 1.0,
                Decay::Linear => (span - done) / span,
                Decay::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * done / span).cos()),
            }
        };
        warmup.min(decay)
    }

    /// `"linear decay from 0.8 of the steps, 100 warm-up steps"`: the schedule, exactly (two
    /// schedules that move the rate alike read the same: `decay_start` is left out without a
    /// decay).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.decay != Decay::None {
            parts.push(format!("{} decay from {} of the steps", self.decay.name(), self.decay_start));
        }
        if self.warmup_steps > 0 {
            parts.push(format!("{} warm-up steps", self.warmup_steps));
        }
        if parts.is_empty() {
            "constant".into()
        } else {
            parts.join(", ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn factors(schedule: Schedule, total: u64) -> Vec<f64> {
        (0..total).map(|t| schedule.factor(t, total)).collect()
    }

    #[test]
    fn a_constant_schedule_keeps_the_rate_at_every_step() {
        assert!(factors(Schedule::CONSTANT, 50).iter().all(|&f| f == 1.0));
        assert!(Schedule::CONSTANT.is_constant());
    }

    #[test]
    fn the_warm_up_rises_linearly_to_the_full_rate() {
        let schedule = Schedule { warmup_steps: 4, ..Schedule::CONSTANT };
        assert_eq!(factors(schedule, 6), [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]);
        assert!(!schedule.is_constant());
    }

    #[test]
    fn a_linear_decay_goes_from_the_full_rate_at_its_start_towards_zero_at_the_end() {
        // 10 steps, decay from step 6: 4/4, 3/4, 2/4, 1/4.
        let schedule = Schedule::decaying(Decay::Linear, 0.6);
        assert_eq!(factors(schedule, 10), [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.75, 0.5, 0.25]);
    }

    #[test]
    fn a_cosine_decay_follows_half_a_period_and_stays_positive() {
        let schedule = Schedule::decaying(Decay::Cosine, 0.5);
        let f = factors(schedule, 100);
        assert!(f[..50].iter().all(|&f| f == 1.0));
        // Half-way through the decay, half the rate.
        assert!((f[75] - 0.5).abs() < 1e-12);
        assert!(f.windows(2).all(|w| w[1] <= w[0]));
        assert!(f[99] > 0.0 && f[99] < 1e-3);
        assert!((f[60] - 0.5 * (1.0 + (std::f64::consts::PI * 10.0 / 50.0).cos())).abs() < 1e-15);
    }

    #[test]
    fn a_step_past_the_end_keeps_the_last_steps_rate() {
        let schedule = Schedule::decaying(Decay::Linear, 0.5);
        assert_eq!(schedule.factor(10, 4), schedule.factor(3, 4));
        assert_eq!(schedule.factor(3, 4), 0.5);
    }

    #[test]
    fn schedules_that_move_the_rate_alike_are_described_alike() {
        let constant = Schedule { decay_start: 0.5, ..Schedule::CONSTANT };
        assert_eq!(constant.describe(), Schedule::CONSTANT.describe());
        assert_eq!(
            Schedule { warmup_steps: 7, ..Schedule::decaying(Decay::Cosine, 0.125) }.describe(),
            "cosine decay from 0.125 of the steps, 7 warm-up steps"
        );
    }

    #[test]
    fn where_warm_up_and_decay_overlap_the_smaller_factor_rules() {
        let schedule = Schedule { warmup_steps: 8, decay: Decay::Linear, decay_start: 0.0 };
        assert_eq!(factors(schedule, 4), [0.125, 0.25, 0.375, 0.25]);
    }

    #[test]
    fn a_decay_start_outside_the_run_is_refused_by_name() {
        for start in [-0.1, 1.0, f64::NAN] {
            let error = Schedule::decaying(Decay::Linear, start).check().unwrap_err();
            assert!(error.to_string().contains("decay_start"), "{error}");
        }
        assert!(Schedule::decaying(Decay::Cosine, 0.0).check().is_ok());
    }

    #[test]
    fn decay_names_round_trip() {
        for name in Decay::NAMES {
            assert_eq!(Decay::from_name(name).unwrap().name(), name);
        }
        assert_eq!(Decay::from_name("exponential"), None);
    }
}
