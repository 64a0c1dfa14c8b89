//! Optimisers of a differentiable function of a flat parameter vector: full-batch L-BFGS with
//! a strong-Wolfe line search (as minFunc, which UFLDL used), and the update rules of
//! minibatch training (Adam, SGD with momentum) and the schedule of their learning rate.
//!
//! They work in f64 whatever the precision of the function: the parameters are rounded to
//! `T` for each evaluation and the gradient widened back, so an f32 objective is optimised
//! with f64 history and line-search arithmetic.

mod lbfgs;
mod line_search;
mod schedule;
mod step;
mod vector;

pub use lbfgs::{Iteration, Lbfgs, LbfgsOptions, LbfgsState, Stop};
pub use schedule::{Decay, Schedule};
pub(crate) use step::in_parallel_chunks;
pub use step::{StepRule, StepState, StepUpdate};
pub(crate) use vector::first_non_finite;

use crate::data::stream::ExampleSource;
use crate::error::Result;
use crate::objective::{Objective, StreamingObjective};
use crate::real::Real;

/// A function `f: ℝᵈ → ℝ` with its gradient, evaluated at parameters of type `T`: the
/// objectives of this crate, or any function an embedding program brings.
pub trait Differentiable<T: Real> {
    /// `d`, the number of parameters.
    fn dimension(&self) -> usize;

    /// `f(x)`, and `∇f(x)` written to `grad` (both of length `d`).
    fn evaluate(&mut self, x: &[T], grad: &mut [T]) -> Result<f64>;
}

impl<T: Real> Differentiable<T> for Objective<'_, T> {
    fn dimension(&self) -> usize {
        self.theta_len()
    }

    fn evaluate(&mut self, x: &[T], grad: &mut [T]) -> Result<f64> {
        Objective::evaluate(self, x, grad)
    }
}

impl<T: Real, S: ExampleSource<T> + Send> Differentiable<T> for StreamingObjective<T, S> {
    fn dimension(&self) -> usize {
        self.theta_len()
    }

    fn evaluate(&mut self, x: &[T], grad: &mut [T]) -> Result<f64> {
        StreamingObjective::evaluate(self, x, grad)
    }
}
