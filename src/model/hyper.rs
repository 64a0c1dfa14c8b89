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

/// The hidden units' nonlinearity `a2 = f(z2)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activation {
    /// `σ(z) = 1/(1 + e^{−z})`, UFLDL's.
    #[default]
    Sigmoid,
    /// `tanh z`, inactive at −1: the sparsity penalties act on `(a + 1)/2` (the notes' mapping).
    Tanh,
    /// `max(z, 0)`; only with the L1 penalty or `β = 0` (its mean activation is unbounded).
    Relu,
}

impl Activation {
    pub const ALL: [Activation; 3] = [Activation::Sigmoid, Activation::Tanh, Activation::Relu];

    /// `"sigmoid"`, `"tanh"` or `"relu"`, as the command line and model files spell it.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::Relu => "relu",
        }
    }

    /// `(scale, offset)` of the map `q = scale · a + offset` onto the activity in `[0, 1]` that
    /// the sparsity penalties measure: `rho_hat = scale · mean(a) + offset`, and the penalty's
    /// delta with respect to `a` is `scale · s`.
    pub fn sparsity_map(self) -> (f64, f64) {
        match self {
            Activation::Tanh => (0.5, 0.5),
            Activation::Sigmoid | Activation::Relu => (1.0, 0.0),
        }
    }
}

/// The output units and the reconstruction loss, with SPEC §1's `1/m` convention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reconstruction {
    /// `a3 = σ(z3)`, `1/(2m) Σ ‖a3 − x‖²` (UFLDL's).
    #[default]
    SigmoidSquaredError,
    /// `a3 = z3`, `1/(2m) Σ ‖a3 − x‖²`, for unbounded data.
    LinearSquaredError,
    /// `a3 = σ(z3)`, `−1/m Σ [x ln a3 + (1 − x) ln(1 − a3)]`, for data in `[0, 1]`.
    SigmoidCrossEntropy,
}

impl Reconstruction {
    pub const ALL: [Reconstruction; 3] =
        [Reconstruction::SigmoidSquaredError, Reconstruction::LinearSquaredError, Reconstruction::SigmoidCrossEntropy];

    /// `"sigmoid-squared-error"`, `"linear-squared-error"` or `"sigmoid-cross-entropy"`.
    pub fn name(self) -> &'static str {
        match self {
            Reconstruction::SigmoidSquaredError => "sigmoid-squared-error",
            Reconstruction::LinearSquaredError => "linear-squared-error",
            Reconstruction::SigmoidCrossEntropy => "sigmoid-cross-entropy",
        }
    }

    /// The factor of the summed per-value loss in the cost: `1/2` for squared error, 1 for
    /// cross-entropy (then divided by `m`).
    pub fn loss_scale(self) -> f64 {
        match self {
            Reconstruction::SigmoidSquaredError | Reconstruction::LinearSquaredError => 0.5,
            Reconstruction::SigmoidCrossEntropy => 1.0,
        }
    }

    /// The output units' activation: the identity for the linear decoder, else the sigmoid.
    pub fn is_linear(self) -> bool {
        self == Reconstruction::LinearSquaredError
    }
}

/// Corruption of the input for a denoising autoencoder: the encoder sees `x̃`, the loss
/// compares the reconstruction with the clean `x`. The noise of example `i` is a function of
/// `(seed, epoch, i)` only (see [`crate::Objective::set_corruption_epoch`]).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Corruption {
    #[default]
    None,
    /// Each input value set to 0 with this probability (Vincent et al.'s masking noise).
    Masking { probability: f64 },
    /// `x̃ = x + σ ε`, `ε ~ N(0, 1)` independently per value.
    Gaussian { std_dev: f64 },
}

impl Corruption {
    /// `"none"`, `"masking"` or `"gaussian"`.
    pub fn name(self) -> &'static str {
        match self {
            Corruption::None => "none",
            Corruption::Masking { .. } => "masking",
            Corruption::Gaussian { .. } => "gaussian",
        }
    }

    /// The masking probability or the standard deviation (0 for none).
    pub fn level(self) -> f64 {
        match self {
            Corruption::None => 0.0,
            Corruption::Masking { probability } => probability,
            Corruption::Gaussian { std_dev } => std_dev,
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
    activation: Activation,
    reconstruction: Reconstruction,
    contractive: f64,
    tied: bool,
    corruption: Corruption,
    corruption_seed: u64,
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
    activation: Activation,
    reconstruction: Reconstruction,
    contractive: f64,
    tied: bool,
    corruption: Corruption,
    corruption_seed: u64,
}

impl HyperParams {
    /// Starts a builder for `visible` (`n`) inputs and `hidden` (`h`) hidden units.
    pub fn builder(visible: usize, hidden: usize) -> HyperParamsBuilder {
        HyperParamsBuilder {
            visible,
            hidden,
            lambda: 1e-4,
            beta: 3.0,
            rho: 0.01,
            penalty: SparsityPenalty::Kl,
            activation: Activation::Sigmoid,
            reconstruction: Reconstruction::SigmoidSquaredError,
            contractive: 0.0,
            tied: false,
            corruption: Corruption::None,
            corruption_seed: 0,
        }
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

    pub fn activation(&self) -> Activation {
        self.activation
    }

    pub fn reconstruction(&self) -> Reconstruction {
        self.reconstruction
    }

    /// `λ_c`, the weight of the contractive penalty `λ_c/m Σ_i ‖∂a2/∂x (x_i)‖²_F` (0: none).
    pub fn contractive(&self) -> f64 {
        self.contractive
    }

    /// Whether the decoder's weights are the encoder's transposed, `W2 = W1ᵀ` (see
    /// [`crate::Parameters::tie`]).
    pub fn tied(&self) -> bool {
        self.tied
    }

    pub fn corruption(&self) -> Corruption {
        self.corruption
    }

    /// The seed of the corruption noise.
    pub fn corruption_seed(&self) -> u64 {
        self.corruption_seed
    }

    /// Whether this is UFLDL's model exactly: sigmoid units, squared error, untied, no
    /// contractive penalty, no corruption (any sparsity penalty).
    pub fn is_plain(&self) -> bool {
        self.activation == Activation::Sigmoid
            && self.reconstruction == Reconstruction::SigmoidSquaredError
            && self.contractive == 0.0
            && !self.tied
            && self.corruption == Corruption::None
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

    pub fn activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    pub fn reconstruction(mut self, reconstruction: Reconstruction) -> Self {
        self.reconstruction = reconstruction;
        self
    }

    /// `λ_c ≥ 0`, the weight of the contractive penalty (default 0).
    pub fn contractive(mut self, contractive: f64) -> Self {
        self.contractive = contractive;
        self
    }

    /// Tied weights, `W2 = W1ᵀ` (default untied).
    pub fn tied(mut self, tied: bool) -> Self {
        self.tied = tied;
        self
    }

    /// Corrupts the input with `corruption`, its noise drawn from `seed` (default none).
    pub fn corruption(mut self, corruption: Corruption, seed: u64) -> Self {
        self.corruption = corruption;
        self.corruption_seed = seed;
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
        if self.activation == Activation::Relu && self.penalty == SparsityPenalty::Kl && self.beta > 0.0 {
            return invalid(
                "beta",
                self.beta,
                "the KL penalty needs a mean activation in (0, 1), which ReLU units do not bound: \
                 use the L1 penalty or β = 0",
            );
        }
        if !(self.contractive.is_finite() && self.contractive >= 0.0) {
            return invalid("contractive", self.contractive, "must be finite and ≥ 0");
        }
        match self.corruption {
            Corruption::Masking { probability } if !(0.0..1.0).contains(&probability) => {
                return invalid("masking probability", probability, "must lie in [0, 1)");
            }
            Corruption::Gaussian { std_dev } if !(std_dev.is_finite() && std_dev >= 0.0) => {
                return invalid("noise standard deviation", std_dev, "must be finite and ≥ 0");
            }
            _ => {}
        }
        let HyperParamsBuilder {
            visible,
            hidden,
            lambda,
            beta,
            rho,
            penalty,
            activation,
            reconstruction,
            contractive,
            tied,
            corruption,
            corruption_seed,
        } = self;
        Ok(HyperParams {
            visible,
            hidden,
            lambda,
            beta,
            rho,
            penalty,
            activation,
            reconstruction,
            contractive,
            tied,
            corruption,
            corruption_seed,
        })
    }
}
