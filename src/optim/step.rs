//! First-order update rules for minibatch training, on parameters of any float type (the
//! sparse autoencoder's trainer keeps f64 parameters; the TopK trainer steps its parameters in
//! their working precision, as PyTorch's optimisers do):
//!
//! - SGD with momentum: `v ← μ v − η g`, `x ← x + v`;
//! - Adam (Kingma & Ba): `m ← β1 m + (1 − β1) g`, `v ← β2 v + (1 − β2) g²`,
//!   `x ← x − η m̂ / (√v̂ + ε)` with the bias corrections `m̂ = m / (1 − β1ᵗ)`,
//!   `v̂ = v / (1 − β2ᵗ)`.

use num_traits::Float;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::kernels::{scalar, AdamStep};

/// An update rule with its hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StepRule {
    Sgd { learning_rate: f64, momentum: f64 },
    Adam { learning_rate: f64, beta1: f64, beta2: f64, epsilon: f64 },
}

impl StepRule {
    /// Adam with Kingma & Ba's defaults and learning rate `learning_rate`.
    pub fn adam(learning_rate: f64) -> Self {
        StepRule::Adam { learning_rate, beta1: 0.9, beta2: 0.999, epsilon: 1e-8 }
    }

    pub fn sgd(learning_rate: f64, momentum: f64) -> Self {
        StepRule::Sgd { learning_rate, momentum }
    }

    /// The same rule at `factor` times its learning rate (a [`Schedule`](super::Schedule)'s
    /// step).
    pub fn scaled(self, factor: f64) -> Self {
        match self {
            StepRule::Sgd { learning_rate, momentum } => {
                StepRule::Sgd { learning_rate: learning_rate * factor, momentum }
            }
            StepRule::Adam { learning_rate, beta1, beta2, epsilon } => {
                StepRule::Adam { learning_rate: learning_rate * factor, beta1, beta2, epsilon }
            }
        }
    }

    /// `"sgd"` or `"adam"`.
    pub fn name(&self) -> &'static str {
        match self {
            StepRule::Sgd { .. } => "sgd",
            StepRule::Adam { .. } => "adam",
        }
    }

    pub fn check(&self) -> Result<()> {
        let invalid = |name, value: f64, reason| Err(Error::InvalidHyperParameter { name, value, reason });
        let fraction = |name, value: f64| {
            if (0.0..1.0).contains(&value) {
                Ok(())
            } else {
                invalid(name, value, "must be in [0, 1)")
            }
        };
        let learning_rate = match *self {
            StepRule::Sgd { learning_rate, momentum } => {
                fraction("momentum", momentum)?;
                learning_rate
            }
            StepRule::Adam { learning_rate, beta1, beta2, epsilon } => {
                fraction("beta1", beta1)?;
                fraction("beta2", beta2)?;
                if epsilon.is_nan() || epsilon <= 0.0 {
                    return invalid("epsilon", epsilon, "must be positive");
                }
                learning_rate
            }
        };
        if !(learning_rate > 0.0 && learning_rate.is_finite()) {
            return invalid("learning rate", learning_rate, "must be positive and finite");
        }
        Ok(())
    }
}

/// The rule's state: the first moment (SGD's velocity, Adam's `m`), Adam's second moment, and
/// the number of steps taken, in the parameters' precision `F`.
#[derive(Debug, Clone, PartialEq)]
pub struct StepState<F = f64> {
    pub first: Vec<F>,
    pub second: Vec<F>,
    pub steps: u64,
}

impl<F: Float + Send + Sync> StepState<F> {
    pub fn new(len: usize) -> Self {
        StepState { first: vec![F::zero(); len], second: vec![F::zero(); len], steps: 0 }
    }

    /// Moves `x` by one step of `rule` for the gradient `g`, in parallel chunks (see
    /// [`StepUpdate::apply_in_parallel`]).
    pub fn step(&mut self, rule: &StepRule, x: &mut [F], g: &[F]) {
        let (update, first, second) = self.begin_step(rule);
        update.apply_in_parallel(x, first, second, g);
    }

    /// Counts one step of `rule` and returns its update with the moments it moves, for a
    /// caller that applies it part by part (e.g. together with a pass of its own over each
    /// part): applied to every element once, it is [`step`](Self::step), bit for bit.
    pub fn begin_step(&mut self, rule: &StepRule) -> (StepUpdate, &mut [F], &mut [F]) {
        self.steps += 1;
        (StepUpdate { rule: *rule, t: self.steps as i32 }, &mut self.first, &mut self.second)
    }
}

/// One step of a rule, at step `t` of its state: see [`StepState::begin_step`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepUpdate {
    rule: StepRule,
    t: i32,
}

impl StepUpdate {
    /// Moves the elements `x` with their moments `first`, `second` (the same positions of
    /// the state's vectors) for their gradient `g`.
    pub fn apply<F: Float>(&self, x: &mut [F], first: &mut [F], second: &mut [F], g: &[F]) {
        let cast = |v: f64| F::from(v).expect("a float converts to f32 or f64");
        match self.rule {
            StepRule::Sgd { learning_rate, momentum } => {
                assert!(first.len() == x.len() && g.len() == x.len(), "SGD: slices of different lengths");
                let (learning_rate, momentum) = (cast(learning_rate), cast(momentum));
                for ((x, v), &g) in x.iter_mut().zip(first).zip(g) {
                    *v = momentum * *v - learning_rate * g;
                    *x = *x + *v;
                }
            }
            StepRule::Adam { .. } => {
                let step = self.adam().expect("an Adam rule has Adam's constants");
                scalar::adam(x, first, second, g, &step);
            }
        }
    }

    /// The constants of this step of Adam in the element type (`None` for SGD), for
    /// [`scalar::adam`] and the vector kernels that follow it.
    pub(crate) fn adam<F: Float>(&self) -> Option<AdamStep<F>> {
        let cast = |v: f64| F::from(v).expect("a float converts to f32 or f64");
        match self.rule {
            StepRule::Sgd { .. } => None,
            StepRule::Adam { learning_rate, beta1, beta2, epsilon } => Some(AdamStep {
                learning_rate: cast(learning_rate),
                beta1: cast(beta1),
                beta2: cast(beta2),
                epsilon: cast(epsilon),
                c1: cast(1.0 - beta1.powi(self.t)),
                c2: cast(1.0 - beta2.powi(self.t)),
            }),
        }
    }

    /// [`apply`](Self::apply) on chunks of long vectors in parallel (every element's update is
    /// independent of the others', so the result does not depend on the thread count).
    pub fn apply_in_parallel<F: Float + Send + Sync>(&self, x: &mut [F], first: &mut [F], second: &mut [F], g: &[F]) {
        in_parallel_chunks(x, first, second, g, |x, first, second, g| self.apply(x, first, second, g));
    }
}

/// `step` on the same chunks of `x`, its moments and its gradient, in parallel: for a step that
/// moves each element on its own, the result does not depend on the thread count.
pub(crate) fn in_parallel_chunks<F: Send + Sync>(
    x: &mut [F],
    first: &mut [F],
    second: &mut [F],
    g: &[F],
    step: impl Fn(&mut [F], &mut [F], &mut [F], &[F]) + Send + Sync,
) {
    const CHUNK: usize = 1 << 14;
    x.par_chunks_mut(CHUNK)
        .zip(first.par_chunks_mut(CHUNK))
        .zip(second.par_chunks_mut(CHUNK))
        .zip(g.par_chunks(CHUNK))
        .for_each(|(((x, first), second), g)| step(x, first, second, g));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_applied_part_by_part_is_the_whole_step_bit_for_bit() {
        let len = 40_000; // more than two of the parallel chunks
        let gradient =
            |step: usize| -> Vec<f32> { (0..len).map(|i| ((i * 37 + step * 11) % 17) as f32 - 8.0).collect() };
        for rule in [StepRule::adam(1e-3), StepRule::sgd(0.01, 0.9)] {
            let mut whole = (vec![0.5f32; len], StepState::<f32>::new(len));
            let mut parts = whole.clone();
            for step in 0..3 {
                let g = gradient(step);
                whole.1.step(&rule, &mut whole.0, &g);
                let (update, first, second) = parts.1.begin_step(&rule);
                let mut at = 0;
                for cut in [1, 700, 20_000, len] {
                    let range = at..cut;
                    update.apply(
                        &mut parts.0[range.clone()],
                        &mut first[range.clone()],
                        &mut second[range.clone()],
                        &g[range],
                    );
                    at = cut;
                }
                assert_eq!(parts, whole, "{rule:?}, step {step}");
            }
            assert_eq!(parts.1.steps, 3);
        }
    }
}
