//! Weight tying: the decoder's weights free (`W1`, `W2`), or tied, `W2 = W1ᵀ`.
//!
//! With tied weights the objective is `J(W, Wᵀ)` at `W = (W1 + W2ᵀ)/2`, a function of the whole
//! `theta` whose gradient has `∇W2 = ∇W1ᵀ`; so an optimiser started from tied weights keeps them
//! tied exactly (every update is a combination of such gradients). The engine evaluates the
//! symmetrised `theta` as if untied, and folds the gradient back onto `W`.

use crate::model::ThetaLayout;
use crate::real::Real;

/// Untied weights, or tied ones with the symmetrised `theta` of the current evaluation.
#[derive(Debug)]
pub(crate) struct WeightTying<T> {
    tied: bool,
    /// With tied weights, `theta` with `W = (W1 + W2ᵀ)/2` in place of `W1` and `Wᵀ` of `W2`.
    symmetrised: Vec<T>,
}

impl<T: Real> WeightTying<T> {
    pub(crate) fn new(tied: bool) -> Self {
        WeightTying { tied, symmetrised: Vec::new() }
    }

    /// Starts an evaluation at `theta`.
    pub(crate) fn prepare(&mut self, layout: ThetaLayout, theta: &[T]) {
        if self.tied {
            self.symmetrised.clear();
            self.symmetrised.extend_from_slice(theta);
            layout.average_w1_with_w2_transposed(&mut self.symmetrised);
        }
    }

    /// `theta` as the engine evaluates it: itself, or with tied weights the symmetrised copy
    /// made by the last [`prepare`](Self::prepare).
    pub(crate) fn theta<'a>(&'a self, theta: &'a [T]) -> &'a [T] {
        if self.tied {
            &self.symmetrised
        } else {
            theta
        }
    }

    /// The weight decay's `λ` on each of `W1` and `W2` as the engine evaluates them: with tied
    /// weights `λ/2` on each copy, which is `λ/2 ‖W‖²` once.
    pub(crate) fn lambda_per_copy(&self, lambda: f64) -> f64 {
        if self.tied {
            lambda / 2.0
        } else {
            lambda
        }
    }

    /// Turns the gradient with respect to the weights evaluated (`W1`, `W2`) into the gradient
    /// with respect to `theta`: with tied weights `G/2` and `Gᵀ/2`, where `G = ∇W1 + ∇W2ᵀ` is
    /// the gradient with respect to `W`.
    pub(crate) fn fold_gradient(&self, layout: ThetaLayout, grad: &mut [T]) {
        if self.tied {
            layout.average_w1_with_w2_transposed(grad);
        }
    }
}
