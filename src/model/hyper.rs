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
    pub const ALL: [SparsityPenalty; 2] = [SparsityPenalty::Kl, SparsityPenalty::L1];

    /// The penalty of [`name`](Self::name) `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// `"kl"` or `"l1"`, as the command line and model files spell it.
    pub fn name(self) -> &'static str {
        match self {
            SparsityPenalty::Kl => "kl",
            SparsityPenalty::L1 => "l1",
        }
    }

    /// The penalty in a line, for help texts.
    pub fn summary(self) -> &'static str {
        match self {
            SparsityPenalty::Kl => "β Σ KL(ρ ‖ rho_hat_j), UFLDL's",
            SparsityPenalty::L1 => "β times the mean L1 norm of the hidden activations (ρ unused)",
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

    /// The activation of [`name`](Self::name) `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// `"sigmoid"`, `"tanh"` or `"relu"`, as the command line and model files spell it.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::Relu => "relu",
        }
    }

    /// The activation in a line, for help texts.
    pub fn summary(self) -> &'static str {
        match self {
            Activation::Sigmoid => "σ(z), UFLDL's",
            Activation::Tanh => "tanh z",
            Activation::Relu => "max(z, 0)",
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

    /// The reconstruction of [`name`](Self::name) `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.name() == name)
    }

    /// `"sigmoid-squared-error"`, `"linear-squared-error"` or `"sigmoid-cross-entropy"`.
    pub fn name(self) -> &'static str {
        match self {
            Reconstruction::SigmoidSquaredError => "sigmoid-squared-error",
            Reconstruction::LinearSquaredError => "linear-squared-error",
            Reconstruction::SigmoidCrossEntropy => "sigmoid-cross-entropy",
        }
    }

    /// The reconstruction of output units `units` and loss `loss` (as
    /// [`output_units`](Self::output_units) and [`loss`](Self::loss) spell them), if there is one.
    pub fn from_units_and_loss(units: &str, loss: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.output_units() == units && r.loss() == loss)
    }

    /// The output units, `"sigmoid"` or `"linear"`, as the command line and Python spell them.
    pub fn output_units(self) -> &'static str {
        if self.is_linear() {
            "linear"
        } else {
            "sigmoid"
        }
    }

    /// The loss, `"squared"` or `"cross-entropy"`, as the command line and Python spell it.
    pub fn loss(self) -> &'static str {
        match self {
            Reconstruction::SigmoidSquaredError | Reconstruction::LinearSquaredError => "squared",
            Reconstruction::SigmoidCrossEntropy => "cross-entropy",
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
    /// The name of each kind of corruption, as [`name`](Self::name) spells it.
    pub const NAMES: [&'static str; 3] = ["none", "masking", "gaussian"];

    /// The corruption of kind `name` at `level` (see [`level`](Self::level)).
    pub fn from_name(name: &str, level: f64) -> Option<Self> {
        match name {
            "none" => Some(Corruption::None),
            "masking" => Some(Corruption::Masking { probability: level }),
            "gaussian" => Some(Corruption::Gaussian { std_dev: level }),
            _ => None,
        }
    }

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
/// (`λ = 1e-4`, `β = 3`, `ρ = 0.01`). It holds the values to check, as the model will.
#[derive(Debug, Clone, Copy)]
pub struct HyperParamsBuilder(HyperParams);

impl HyperParams {
    /// Starts a builder for `visible` (`n`) inputs and `hidden` (`h`) hidden units.
    pub fn builder(visible: usize, hidden: usize) -> HyperParamsBuilder {
        HyperParamsBuilder(HyperParams {
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
        })
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

    /// The mean activity `ρ` each hidden unit is pulled towards, when the sparsity penalty has
    /// such a target: KL with `β > 0` (whose cost is finite only for `rho_hat` inside
    /// `(0, 1)`); `None` for L1 or `β = 0`.
    pub fn sparsity_target(&self) -> Option<f64> {
        (self.penalty == SparsityPenalty::Kl && self.beta > 0.0).then_some(self.rho)
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
        self.0.lambda = lambda;
        self
    }

    /// `β ≥ 0`, the weight of the sparsity penalty.
    pub fn beta(mut self, beta: f64) -> Self {
        self.0.beta = beta;
        self
    }

    /// `0 < ρ < 1`, the sparsity target.
    pub fn rho(mut self, rho: f64) -> Self {
        self.0.rho = rho;
        self
    }

    /// The sparsity penalty (default KL).
    pub fn penalty(mut self, penalty: SparsityPenalty) -> Self {
        self.0.penalty = penalty;
        self
    }

    pub fn activation(mut self, activation: Activation) -> Self {
        self.0.activation = activation;
        self
    }

    pub fn reconstruction(mut self, reconstruction: Reconstruction) -> Self {
        self.0.reconstruction = reconstruction;
        self
    }

    /// `λ_c ≥ 0`, the weight of the contractive penalty (default 0).
    pub fn contractive(mut self, contractive: f64) -> Self {
        self.0.contractive = contractive;
        self
    }

    /// Tied weights, `W2 = W1ᵀ` (default untied).
    pub fn tied(mut self, tied: bool) -> Self {
        self.0.tied = tied;
        self
    }

    /// Corrupts the input with `corruption`, its noise drawn from `seed` (default none).
    pub fn corruption(mut self, corruption: Corruption, seed: u64) -> Self {
        self.0.corruption = corruption;
        self.0.corruption_seed = seed;
        self
    }

    /// Checks every value; the error names the first one at fault.
    pub fn build(self) -> Result<HyperParams> {
        let hyper = self.0;
        let invalid = |name, value, reason| Err(Error::InvalidHyperParameter { name, value, reason });
        if hyper.visible == 0 {
            return invalid("visible", 0.0, "must be at least 1");
        }
        if hyper.hidden == 0 {
            return invalid("hidden", 0.0, "must be at least 1");
        }
        if !(hyper.lambda.is_finite() && hyper.lambda >= 0.0) {
            return invalid("lambda", hyper.lambda, "must be finite and ≥ 0");
        }
        if !(hyper.beta.is_finite() && hyper.beta >= 0.0) {
            return invalid("beta", hyper.beta, "must be finite and ≥ 0");
        }
        if !(hyper.rho > 0.0 && hyper.rho < 1.0) {
            return invalid("rho", hyper.rho, "must lie strictly between 0 and 1");
        }
        if hyper.activation == Activation::Relu && hyper.penalty == SparsityPenalty::Kl && hyper.beta > 0.0 {
            return invalid(
                "beta",
                hyper.beta,
                "the KL penalty needs a mean activation in (0, 1), which ReLU units do not bound: \
                 use the L1 penalty or β = 0",
            );
        }
        if !(hyper.contractive.is_finite() && hyper.contractive >= 0.0) {
            return invalid("contractive", hyper.contractive, "must be finite and ≥ 0");
        }
        match hyper.corruption {
            Corruption::Masking { probability } if !(0.0..1.0).contains(&probability) => {
                return invalid("masking probability", probability, "must lie in [0, 1)");
            }
            Corruption::Gaussian { std_dev } if !(std_dev.is_finite() && std_dev >= 0.0) => {
                return invalid("noise standard deviation", std_dev, "must be finite and ≥ 0");
            }
            _ => {}
        }
        Ok(hyper)
    }
}

/// The model-file keys of the hyper-parameters, in the order [`HyperParams::file_metadata`]
/// gives them, each with the text that stands for UFLDL's model when it is absent (files
/// written before the variants hold none of those keys), or `None` when it is required.
const METADATA_KEYS: [(&str, Option<&str>); 13] = [
    ("objective", None),
    ("visible", None),
    ("hidden", None),
    ("lambda", None),
    ("beta", None),
    ("rho", None),
    ("activation", Some("sigmoid")),
    ("reconstruction", Some("sigmoid-squared-error")),
    ("contractive", Some("0")),
    ("tied", Some("false")),
    ("corruption", Some("none")),
    ("corruption_level", Some("0")),
    ("corruption_seed", Some("0")),
];

/// What is wrong with one hyper-parameter's metadata.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MetadataFault {
    pub key: &'static str,
    pub reason: String,
}

impl HyperParams {
    /// Whether `key` is one of the metadata keys of the hyper-parameters.
    pub(crate) fn is_metadata_key(key: &str) -> bool {
        METADATA_KEYS.iter().any(|&(k, _)| k == key)
    }

    /// Every hyper-parameter as its model file records it, by key (exact: `f64`'s `Display`
    /// round trips). The penalty is the `objective`: `sparse-autoencoder-kl` or `-l1`.
    pub(crate) fn file_metadata(&self) -> [(&'static str, String); 13] {
        let values = [
            format!("sparse-autoencoder-{}", self.penalty.name()),
            self.visible.to_string(),
            self.hidden.to_string(),
            self.lambda.to_string(),
            self.beta.to_string(),
            self.rho.to_string(),
            self.activation.name().to_string(),
            self.reconstruction.name().to_string(),
            self.contractive.to_string(),
            self.tied.to_string(),
            self.corruption.name().to_string(),
            self.corruption.level().to_string(),
            self.corruption_seed.to_string(),
        ];
        let mut values = values.into_iter();
        METADATA_KEYS.map(|(key, _)| (key, values.next().expect("a value per key")))
    }

    /// The hyper-parameters of a model file, `take(key)` giving (and consuming) the text of
    /// each key; each value read strictly, then all checked as [`HyperParamsBuilder::build`]
    /// does. The fault names the key.
    pub(crate) fn from_metadata(
        mut take: impl FnMut(&str) -> Option<String>,
    ) -> std::result::Result<HyperParams, MetadataFault> {
        let [objective, visible, hidden, lambda, beta, rho, activation, reconstruction, contractive, tied, corruption, level, seed] =
            METADATA_KEYS.map(|(key, absent)| (key, take(key).or(absent.map(str::to_string))));
        type Entry = (&'static str, Option<String>);
        fn fault(key: &'static str, reason: String) -> MetadataFault {
            MetadataFault { key, reason }
        }
        fn parsed<V>((key, value): Entry, what: &str, parse: impl Fn(&str) -> Option<V>) -> Result<V, MetadataFault> {
            let value = value.ok_or_else(|| fault(key, "is missing: not an sae model file".into()))?;
            parse(&value).ok_or_else(|| fault(key, format!("= {value:?} is not {what}")))
        }
        let count = |entry| parsed(entry, "a count", super::metadata::count::<u64>);
        let size = |entry| parsed(entry, "a count", super::metadata::count::<usize>);
        let number = |entry| parsed(entry, "a finite number", super::metadata::finite);
        let penalty = parsed(objective, "a sparse autoencoder's objective", |name| {
            name.strip_prefix("sparse-autoencoder-").and_then(SparsityPenalty::from_name)
        })?;
        let (visible, hidden) = (size(visible)?, size(hidden)?);
        let level = number(level)?;
        let hyper = HyperParams::builder(visible, hidden)
            .lambda(number(lambda)?)
            .beta(number(beta)?)
            .rho(number(rho)?)
            .penalty(penalty)
            .activation(parsed(activation, "a known activation", Activation::from_name)?)
            .reconstruction(parsed(reconstruction, "a known reconstruction", Reconstruction::from_name)?)
            .contractive(number(contractive)?)
            .tied(parsed(tied, "true or false", |name| name.parse::<bool>().ok())?)
            .corruption(
                parsed(corruption, "a known corruption", |name| Corruption::from_name(name, level))?,
                count(seed)?,
            );
        hyper.build().map_err(|e| match e {
            // The builder names its values as the file does, but for the corruption's level.
            Error::InvalidHyperParameter { name, .. } => {
                let key =
                    METADATA_KEYS.iter().map(|&(key, _)| key).find(|&key| key == name).unwrap_or("corruption_level");
                fault(key, format!("is invalid: {e}"))
            }
            e => fault("objective", format!("holds invalid hyper-parameters: {e}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every model the variants can make, each a valid one.
    fn every_variant() -> Vec<HyperParams> {
        let mut all = Vec::new();
        for penalty in SparsityPenalty::ALL {
            for activation in Activation::ALL {
                for reconstruction in Reconstruction::ALL {
                    for (corruption, tied) in [
                        (Corruption::None, false),
                        (Corruption::Masking { probability: 0.25 }, true),
                        (Corruption::Gaussian { std_dev: 0.1 }, false),
                    ] {
                        let built = HyperParams::builder(7, 3)
                            .lambda(1.5e-4)
                            .beta(if activation == Activation::Relu && penalty == SparsityPenalty::Kl {
                                0.0
                            } else {
                                2.5
                            })
                            .rho(0.05)
                            .penalty(penalty)
                            .activation(activation)
                            .reconstruction(reconstruction)
                            .contractive(0.125)
                            .tied(tied)
                            .corruption(corruption, 11)
                            .build();
                        all.push(built.unwrap());
                    }
                }
            }
        }
        all
    }

    #[test]
    fn every_hyper_parameter_round_trips_through_its_metadata() {
        for hyper in every_variant() {
            let metadata = hyper.file_metadata();
            assert_eq!(metadata.clone().map(|(key, _)| key), METADATA_KEYS.map(|(key, _)| key));
            let mut stored: std::collections::BTreeMap<&str, String> = metadata.into_iter().collect();
            let read = HyperParams::from_metadata(|key| stored.remove(key)).unwrap();
            assert_eq!(read, hyper);
            assert!(stored.is_empty(), "every key read");
        }
    }

    #[test]
    fn absent_variant_keys_read_as_ufldls_model_and_a_missing_or_bad_value_is_named() {
        let hyper = HyperParams::builder(7, 3).build().unwrap();
        let ufldl: Vec<(&str, String)> = hyper.file_metadata().into_iter().take(6).collect();
        let read = HyperParams::from_metadata(|key| ufldl.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone()));
        assert_eq!(read.unwrap(), hyper);

        let without_rho = |key: &str| ufldl.iter().find(|(k, _)| *k == key && key != "rho").map(|(_, v)| v.clone());
        assert_eq!(HyperParams::from_metadata(without_rho).unwrap_err().key, "rho");
        for (key, bad) in
            [("objective", "sparse-autoencoder-l2"), ("hidden", "2.5"), ("tied", "yes"), ("lambda", "NaN")]
        {
            let fault = HyperParams::from_metadata(|k| {
                if k == key {
                    Some(bad.to_string())
                } else {
                    ufldl.iter().find(|(k2, _)| *k2 == k).map(|(_, v)| v.clone())
                }
            })
            .unwrap_err();
            assert_eq!(fault.key, key, "{fault:?}");
            assert!(fault.reason.contains(bad), "{fault:?}");
        }
    }

    #[test]
    fn each_reconstruction_is_named_by_its_output_units_and_loss_and_no_other_pair_is() {
        for reconstruction in Reconstruction::ALL {
            let (units, loss) = (reconstruction.output_units(), reconstruction.loss());
            assert_eq!(Reconstruction::from_units_and_loss(units, loss), Some(reconstruction));
        }
        assert_eq!(Reconstruction::from_units_and_loss("linear", "cross-entropy"), None);
        assert_eq!(Reconstruction::from_units_and_loss("tanh", "squared"), None);
    }

    #[test]
    fn only_a_weighted_kl_penalty_pulls_towards_rho() {
        let with = |penalty, beta| HyperParams::builder(7, 3).rho(0.05).penalty(penalty).beta(beta).build().unwrap();
        assert_eq!(with(SparsityPenalty::Kl, 3.0).sparsity_target(), Some(0.05));
        assert_eq!(with(SparsityPenalty::Kl, 0.0).sparsity_target(), None);
        assert_eq!(with(SparsityPenalty::L1, 3.0).sparsity_target(), None);
    }

    #[test]
    fn corruption_names_are_the_kinds_from_name_knows() {
        for name in Corruption::NAMES {
            assert_eq!(Corruption::from_name(name, 0.25).map(Corruption::name), Some(name));
        }
        assert_eq!(Corruption::from_name("salt", 0.25), None);
    }
}
