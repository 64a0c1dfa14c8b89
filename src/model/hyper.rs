//! Hyper-parameters of the UFLDL sparse autoencoder (SPEC §1), validated on construction.

use crate::error::{Error, Result};

/// The penalty that makes the hidden layer sparse, weighted by `β`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SparsityPenalty {
    /// `β Σ_j KL(ρ ‖ rho_hat_j)` (UFLDL's), with sparsity delta
    /// `s_j = β (−ρ/rho_hat_j + (1 − ρ)/(1 − rho_hat_j))`.
    #[default]
    Kl,
    /// `β (1/m) Σ_i ‖a2_i‖₁ = β Σ_j rho_hat_j` (the activations of sigmoid units are
    /// positive), with the constant sparsity delta `s_j = β`; `ρ` is not used.
    L1,
}

impl SparsityPenalty {
    /// `"kl"` or `"l1"`, as the command line and model files spell it.
    pub fn name(self) -> &'static str {
        match self {
            SparsityPenalty::Kl => "kl",
            SparsityPenalty::L1 => "l1",
        }
    }
}

/// Validated hyper-parameters: `n` visible units, `h` hidden units, weight decay `λ`, sparsity
/// weight `β`, sparsity target `ρ` and the sparsity penalty. Build with
/// [`HyperParams::builder`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HyperParams {
    visible: usize,
    hidden: usize,
    lambda: f64,
    beta: f64,
    rho: f64,
    penalty: SparsityPenalty,
}

/// Builder of [`HyperParams`]; unset values take the UFLDL natural-image defaults
/// (`λ = 1e-4`, `β = 3`, `ρ = 0.01`).
#[derive(Debug, Clone, Copy)]
pub struct HyperParamsBuilder {
    visible: usize,
    hidden: usize,
    lambda: f64,
    beta: f64,
    rho: f64,
    penalty: SparsityPenalty,
}

impl HyperParams {
    /// Starts a builder for `visible` (`n`) inputs and `hidden` (`h`) hidden units.
    pub fn builder(visible: usize, hidden: usize) -> HyperParamsBuilder {
        HyperParamsBuilder { visible, hidden, lambda: 1e-4, beta: 3.0, rho: 0.01, penalty: SparsityPenalty::Kl }
    }

    /// `n`, the number of visible (input and output) units.
    pub fn visible(&self) -> usize {
        self.visible
    }

    /// `h`, the number of hidden units.
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// `λ`, the weight-decay coefficient.
    pub fn lambda(&self) -> f64 {
        self.lambda
    }

    /// `β`, the weight of the KL sparsity penalty.
    pub fn beta(&self) -> f64 {
        self.beta
    }

    /// `ρ`, the target average activation of each hidden unit.
    pub fn rho(&self) -> f64 {
        self.rho
    }

    pub fn penalty(&self) -> SparsityPenalty {
        self.penalty
    }
}

impl HyperParamsBuilder {
    /// `λ ≥ 0`, the weight-decay coefficient.
    pub fn lambda(mut self, lambda: f64) -> Self {
        self.lambda = lambda;
        self
    }

    /// `β ≥ 0`, the weight of the sparsity penalty.
    pub fn beta(mut self, beta: f64) -> Self {
        self.beta = beta;
        self
    }

    /// `0 < ρ < 1`, the sparsity target.
    pub fn rho(mut self, rho: f64) -> Self {
        self.rho = rho;
        self
    }

    /// The sparsity penalty (default KL).
    pub fn penalty(mut self, penalty: SparsityPenalty) -> Self {
        self.penalty = penalty;
        self
    }

    /// Checks every value; the error names the first one at fault.
    pub fn build(self) -> Result<HyperParams> {
        let invalid = |name, value, reason| Err(Error::InvalidHyperParameter { name, value, reason });
        if self.visible == 0 {
            return invalid("visible", 0.0, "must be at least 1");
        }
        if self.hidden == 0 {
            return invalid("hidden", 0.0, "must be at least 1");
        }
        if !(self.lambda.is_finite() && self.lambda >= 0.0) {
            return invalid("lambda", self.lambda, "must be finite and ≥ 0");
        }
        if !(self.beta.is_finite() && self.beta >= 0.0) {
            return invalid("beta", self.beta, "must be finite and ≥ 0");
        }
        if !(self.rho > 0.0 && self.rho < 1.0) {
            return invalid("rho", self.rho, "must lie strictly between 0 and 1");
        }
        let HyperParamsBuilder { visible, hidden, lambda, beta, rho, penalty } = self;
        Ok(HyperParams { visible, hidden, lambda, beta, rho, penalty })
    }
}
