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

use std::collections::HashMap;
use std::path::Path;

use rand::distributions::{Distribution, Uniform};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::Activation;
use crate::error::{Error, Result};
use crate::real::Real;

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
    pub fn name(self) -> &'static str {
        match self {
            VaeDecoder::Bernoulli => "bernoulli",
            VaeDecoder::Gaussian => "gaussian",
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

/// The tensors of a model: name, rows, columns (1 for a bias), offset in `theta`.
type TensorSpec = (&'static str, usize, usize, usize);

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

    fn tensors(&self) -> [TensorSpec; 8] {
        let (n, h, d, l) = (self.visible, self.hidden, self.latent, self.layout());
        [
            ("encoder.weight", h, n, l.w1),
            ("encoder.bias", h, 1, l.b1),
            ("latent.weight", 2 * d, h, l.we),
            ("latent.bias", 2 * d, 1, l.be),
            ("decoder.weight", h, d, l.w3),
            ("decoder.bias", h, 1, l.b3),
            ("output.weight", n, h, l.w4),
            ("output.bias", n, 1, l.b4),
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
    /// Writes the model atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let shape = self.shape;
        let buffers: Vec<(&str, Vec<usize>, Vec<u8>)> = shape
            .tensors()
            .iter()
            .map(|&(name, rows, cols, offset)| {
                let mut bytes = Vec::with_capacity(rows * cols * 8);
                // Column-major in theta, row-major in the file.
                for r in 0..rows {
                    for c in 0..cols {
                        bytes.extend_from_slice(&self.theta[offset + r + c * rows].as_f64().to_le_bytes());
                    }
                }
                let dims = if cols == 1 { vec![rows] } else { vec![rows, cols] };
                (name, dims, bytes)
            })
            .collect();
        let views: Vec<(&str, TensorView<'_>)> = buffers
            .iter()
            .map(|(name, dims, bytes)| (*name, TensorView::new(Dtype::F64, dims.clone(), bytes).expect("sized")))
            .collect();
        let mut metadata: HashMap<String, String> = self.metadata.iter().cloned().collect();
        for (key, value) in [
            ("format", super::FORMAT.to_string()),
            ("format_version", super::FORMAT_VERSION.to_string()),
            ("objective", VAE_OBJECTIVE.to_string()),
            ("visible", shape.visible.to_string()),
            ("hidden", shape.hidden.to_string()),
            ("latent", shape.latent.to_string()),
            ("activation", shape.activation.name().to_string()),
            ("decoder", shape.decoder.name().to_string()),
        ] {
            metadata.insert(key.to_string(), value);
        }
        crate::atomic::replace_with(path, |tmp| {
            safetensors::serialize_to_file(views, Some(metadata), tmp).map_err(|e| e.to_string())
        })
    }

    /// Reads a model written by [`save`](Self::save); fails naming the file on anything else.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        let bad = |reason: String| Error::bad_file(path, reason);
        let file =
            SafeTensors::deserialize(&bytes).map_err(|e| bad(format!("not a readable safetensors file: {e}")))?;
        let (_, header) =
            SafeTensors::read_metadata(&bytes).map_err(|e| bad(format!("not a readable safetensors file: {e}")))?;
        let mut metadata = header.metadata().clone().unwrap_or_default();
        let mut take = |key: &str| metadata.remove(key).ok_or_else(|| bad(format!("no {key:?} in the metadata")));
        if take("objective")? != VAE_OBJECTIVE {
            return Err(bad(format!("not a {VAE_OBJECTIVE} model")));
        }
        let size = |key: &str, value: String| value.parse::<usize>().map_err(|_| bad(format!("{key} = {value:?}")));
        let (visible, hidden, latent) =
            (size("visible", take("visible")?)?, size("hidden", take("hidden")?)?, size("latent", take("latent")?)?);
        let activation_name = take("activation")?;
        let activation = Activation::ALL
            .into_iter()
            .find(|a| a.name() == activation_name)
            .ok_or_else(|| bad(format!("unknown activation {activation_name:?}")))?;
        let decoder = match take("decoder")?.as_str() {
            "bernoulli" => VaeDecoder::Bernoulli,
            "gaussian" => VaeDecoder::Gaussian,
            other => return Err(bad(format!("unknown decoder {other:?}"))),
        };
        metadata.remove("format");
        metadata.remove("format_version");
        let shape = VaeShape::new(visible, hidden, latent, activation, decoder)?;
        let mut theta = vec![T::zero(); shape.theta_len()];
        for (name, rows, cols, offset) in shape.tensors() {
            let view = file.tensor(name).map_err(|_| bad(format!("no tensor {name:?}")))?;
            let expected = if cols == 1 { vec![rows] } else { vec![rows, cols] };
            if view.shape() != expected || view.dtype() != Dtype::F64 {
                return Err(bad(format!(
                    "tensor {name} is {:?} {:?}, expected F64 {expected:?}",
                    view.dtype(),
                    view.shape()
                )));
            }
            for (i, chunk) in view.data().chunks_exact(8).enumerate() {
                let value = f64::from_le_bytes(chunk.try_into().expect("8 bytes"));
                if !value.is_finite() {
                    return Err(bad(format!("tensor {name} holds {value} at {i}")));
                }
                theta[offset + i / cols + (i % cols) * rows] = T::cast(value);
            }
        }
        let mut metadata: Vec<(String, String)> = metadata.into_iter().collect();
        metadata.sort();
        Ok(VaeModel { shape, theta, metadata })
    }
}
