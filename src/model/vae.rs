//! The variational autoencoder (Kingma & Welling's, as the notes describe it): a Gaussian
//! encoder `q(z|x) = N(μ(x), diag σ²(x))`, the standard normal prior `p(z) = N(0, I)`, and a
//! Bernoulli or unit-variance Gaussian decoder `p(x|z)`:
//!
//! ```text
//! h1 = f(W1 x + b1)                 W1: h×n
//! [μ; log σ²] = We h1 + be          We: 2d×h
//! z = μ + σ ⊙ ε,  ε ~ N(0, I)       (the reparameterisation)
//! h2 = f(W3 z + b3)                 W3: h×d
//! y = W4 h2 + b4                    W4: n×h   (Bernoulli: logits; Gaussian: the mean)
//! −ELBO(x) = −ln p(x|z) + KL(q(z|x) ‖ p(z)),  KL = −½ Σ (1 + ln σ² − μ² − σ²)
//! ```
//!
//! Parameters are one vector `theta = [W1(:); b1; We(:); be; W3(:); b3; W4(:); b4]`, matrices
//! column-major as in [`ThetaLayout`](super::ThetaLayout); files store them row-major by name.

use std::path::Path;

use super::tensors::{self, NamedMatrix};
use super::Activation;
use crate::error::{Error, Result};
use crate::gemm::MatRef;
use crate::real::Real;
use rand::distributions::{Distribution, Uniform};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

/// The decoder's distribution `p(x|z)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VaeDecoder {
    /// Independent Bernoulli pixels with probabilities `σ(y)`, for data in [0, 1]:
    /// `−ln p(x|z) = Σ_k [softplus(y_k) − x_k y_k]`.
    #[default]
    Bernoulli,
    /// `N(y, I)`: `−ln p(x|z) = ½ ‖x − y‖² + (n/2) ln 2π`.
    Gaussian,
}

impl VaeDecoder {
    pub const ALL: [VaeDecoder; 2] = [VaeDecoder::Bernoulli, VaeDecoder::Gaussian];

    /// `"bernoulli"` or `"gaussian"`, as the command line and model files spell it.
    pub fn name(self) -> &'static str {
        match self {
            VaeDecoder::Bernoulli => "bernoulli",
            VaeDecoder::Gaussian => "gaussian",
        }
    }

    /// The decoder of [`name`](Self::name) `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == name)
    }

    /// The decoder in a line, for help texts.
    pub fn summary(self) -> &'static str {
        match self {
            VaeDecoder::Bernoulli => "pixels in [0, 1] as probabilities, p(x|z) Bernoulli(σ(y))",
            VaeDecoder::Gaussian => "p(x|z) = N(y, I), for unbounded data",
        }
    }
}

/// The sizes and units of a variational autoencoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VaeShape {
    /// `n`, the data's dimension.
    pub visible: usize,
    /// `h`, the units of the encoder's and the decoder's hidden layer.
    pub hidden: usize,
    /// `d`, the latent dimension.
    pub latent: usize,
    pub activation: Activation,
    pub decoder: VaeDecoder,
}

/// Where each tensor lives in `theta`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct VaeLayout {
    pub w1: usize,
    pub b1: usize,
    pub we: usize,
    pub be: usize,
    pub w3: usize,
    pub b3: usize,
    pub w4: usize,
    pub b4: usize,
    pub len: usize,
}

impl VaeShape {
    /// Checks the sizes; the error names the first at fault.
    pub fn new(
        visible: usize,
        hidden: usize,
        latent: usize,
        activation: Activation,
        decoder: VaeDecoder,
    ) -> Result<Self> {
        for (name, value) in [("visible", visible), ("hidden", hidden), ("latent", latent)] {
            if value == 0 {
                return Err(Error::InvalidHyperParameter { name, value: 0.0, reason: "must be at least 1" });
            }
        }
        Ok(VaeShape { visible, hidden, latent, activation, decoder })
    }

    pub(crate) fn layout(&self) -> VaeLayout {
        let (n, h, d) = (self.visible, self.hidden, self.latent);
        let w1 = 0;
        let b1 = w1 + h * n;
        let we = b1 + h;
        let be = we + 2 * d * h;
        let w3 = be + 2 * d;
        let b3 = w3 + h * d;
        let w4 = b3 + h;
        let b4 = w4 + n * h;
        VaeLayout { w1, b1, we, be, w3, b3, w4, b4, len: b4 + n }
    }

    /// The length of `theta`.
    pub fn theta_len(&self) -> usize {
        self.layout().len
    }

    fn tensors(&self) -> [NamedMatrix; 8] {
        let (n, h, d, l) = (self.visible, self.hidden, self.latent, self.layout());
        [
            NamedMatrix::new("encoder.weight", h, n, l.w1),
            NamedMatrix::new("encoder.bias", h, 1, l.b1),
            NamedMatrix::new("latent.weight", 2 * d, h, l.we),
            NamedMatrix::new("latent.bias", 2 * d, 1, l.be),
            NamedMatrix::new("decoder.weight", h, d, l.w3),
            NamedMatrix::new("decoder.bias", h, 1, l.b3),
            NamedMatrix::new("output.weight", n, h, l.w4),
            NamedMatrix::new("output.bias", n, 1, l.b4),
        ]
    }

    /// Initial parameters as PyTorch's `nn.Linear` draws them (weights and biases uniform in
    /// `±1/√fan_in`), from a seeded generator.
    pub fn init<T: Real>(&self, seed: u64) -> Vec<T> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut theta = vec![T::zero(); self.theta_len()];
        let (n, h, d, l) = (self.visible, self.hidden, self.latent, self.layout());
        for (start, end, fan_in) in [(l.w1, l.we, n), (l.we, l.w3, h), (l.w3, l.w4, d), (l.w4, l.len, h)] {
            let bound = 1.0 / (fan_in as f64).sqrt();
            let uniform = Uniform::new_inclusive(-bound, bound);
            for v in &mut theta[start..end] {
                *v = T::cast(uniform.sample(&mut rng));
            }
        }
        theta
    }
}

/// The `objective` metadata of variational autoencoder files.
pub const VAE_OBJECTIVE: &str = "variational-autoencoder";

/// A trained variational autoencoder as stored: safetensors with one tensor per layer
/// (`encoder`, `latent` = [μ; ln σ²], `decoder`, `output`; weights row-major `out×in` as
/// PyTorch's `state_dict`), its shape and free-form metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct VaeModel<T> {
    pub shape: VaeShape,
    pub theta: Vec<T>,
    pub metadata: Vec<(String, String)>,
}

impl<T: Real> VaeModel<T> {
    /// The encoder's first weights `W1` (`h×n`, column-major in `theta`): what each encoder
    /// unit looks for in its inputs.
    pub fn encoder_weights(&self) -> MatRef<'_, T> {
        let (layout, shape) = (self.shape.layout(), self.shape);
        MatRef::col_major(&self.theta[layout.w1..layout.b1], shape.hidden, shape.visible)
    }

    /// Writes the model atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let shape = self.shape;
        let recorded = [
            ("visible", shape.visible.to_string()),
            ("hidden", shape.hidden.to_string()),
            ("latent", shape.latent.to_string()),
            ("activation", shape.activation.name().to_string()),
            ("decoder", shape.decoder.name().to_string()),
        ];
        tensors::save(path, &self.theta, &shape.tensors(), VAE_OBJECTIVE, &recorded, &self.metadata)
    }

    /// Reads a model written by [`save`](Self::save); fails naming the file on anything else.
    pub fn load(path: &Path) -> Result<Self> {
        let file = tensors::open(path, VAE_OBJECTIVE)?;
        let bad = |reason: String| Error::bad_file(path, reason);
        let text =
            |key: &str| file.metadata.get(key).cloned().ok_or_else(|| bad(format!("no {key:?} in the metadata")));
        let activation_name = text("activation")?;
        let activation = Activation::from_name(&activation_name)
            .ok_or_else(|| bad(format!("unknown activation {activation_name:?}")))?;
        let decoder_name = text("decoder")?;
        let decoder =
            VaeDecoder::from_name(&decoder_name).ok_or_else(|| bad(format!("unknown decoder {decoder_name:?}")))?;
        let (visible, hidden, latent) =
            (file.count(path, "visible")?, file.count(path, "hidden")?, file.count(path, "latent")?);
        let shape = VaeShape::new(visible, hidden, latent, activation, decoder)?;
        let weights = [(hidden, visible), (latent.saturating_mul(2), hidden), (hidden, latent), (visible, hidden)];
        if !weights.into_iter().all(|(rows, cols)| file.holds(rows, cols)) {
            return Err(bad(format!("sizes {visible}, {hidden}, {latent}: more parameters than the file holds")));
        }
        let theta = file.theta(path, shape.theta_len(), &shape.tensors())?;
        let metadata = file.free_metadata(&["visible", "hidden", "latent", "activation", "decoder"]);
        Ok(VaeModel { shape, theta, metadata })
    }
}
