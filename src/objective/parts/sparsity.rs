//! The sparsity penalty (SPEC §1): the KL divergence of one hidden unit and its derivative,
//! and [`SparsityTerm`], the penalty as the engine applies it to the whole hidden layer.

use crate::error::{Error, Result};
use crate::model::{HyperParams, SparsityPenalty};
use crate::real::Real;

/// `KL(ρ ‖ q) = ρ log(ρ/q) + (1−ρ) log((1−ρ)/(1−q))`.
pub fn kl_divergence(rho: f64, q: f64) -> f64 {
    rho * (rho / q).ln() + (1.0 - rho) * ((1.0 - rho) / (1.0 - q)).ln()
}

/// The sparsity delta `s = β (−ρ/q + (1−ρ)/(1−q))`: `∂/∂q` of `β KL(ρ ‖ q)`.
pub fn sparsity_delta(beta: f64, rho: f64, q: f64) -> f64 {
    beta * (-rho / q + (1.0 - rho) / (1.0 - q))
}

/// The sparsity term of a model: from the hidden layer's activation sums, `rho_hat`, the
/// penalty's cost and its delta `s` (see [`SparsityPenalty`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SparsityTerm {
    penalty: SparsityPenalty,
    beta: f64,
    rho: f64,
    /// The activity the penalty measures is `scale · a + offset` (see
    /// [`crate::model::Activation::sparsity_map`]): in `[0, 1]` for every activation the
    /// penalties accept, which L1's `Σ rho_hat_j` relies on.
    scale: f64,
    offset: f64,
}

impl SparsityTerm {
    pub(crate) fn new(hyper: &HyperParams) -> Self {
        let (scale, offset) = hyper.activation().sparsity_map();
        SparsityTerm { penalty: hyper.penalty(), beta: hyper.beta(), rho: hyper.rho(), scale, offset }
    }

    /// `rho_hat_j = scale · (total_j/m) + offset`: the mean activity of each unit from the
    /// sums of its activations over `examples` examples.
    pub(crate) fn rho_hat(&self, totals: &[f64], examples: usize, rho_hat: &mut [f64]) {
        let (scale, offset) = (self.scale, self.offset);
        for (r, total) in rho_hat.iter_mut().zip(totals) {
            *r = scale * (total / examples as f64) + offset;
        }
    }

    /// The penalty's cost at `rho_hat`, and its delta `s_j` with respect to each unit's
    /// activation `a` into `delta`: for KL `β Σ_j KL(ρ ‖ rho_hat_j)` and
    /// `s_j = scale · β (−ρ/rho_hat_j + (1 − ρ)/(1 − rho_hat_j))`, which needs every
    /// `rho_hat_j` in `(0, 1)`; for L1 `β Σ_j rho_hat_j` and `s_j = scale · β`.
    pub(crate) fn cost_and_delta<T: Real>(&self, rho_hat: &[f64], delta: &mut [T]) -> Result<f64> {
        let (beta, rho, scale) = (self.beta, self.rho, self.scale);
        if beta == 0.0 {
            delta.fill(T::zero());
            return Ok(0.0);
        }
        match self.penalty {
            SparsityPenalty::Kl => {
                if let Some(unit) = rho_hat.iter().position(|&r| r <= 0.0 || r >= 1.0) {
                    return Err(Error::SaturatedActivation { unit, rho_hat: rho_hat[unit] });
                }
                let mut kl = 0.0;
                for (&r, s) in rho_hat.iter().zip(delta) {
                    kl += kl_divergence(rho, r);
                    *s = T::cast(scale * sparsity_delta(beta, rho, r));
                }
                Ok(beta * kl)
            }
            SparsityPenalty::L1 => {
                delta.fill(T::cast(scale * beta));
                Ok(beta * rho_hat.iter().sum::<f64>())
            }
        }
    }
}
