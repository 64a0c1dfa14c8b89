//! The variational autoencoder's objective on a minibatch: the mean over its examples of
//! `−ELBO(x) = −ln p(x|z) + KL(q(z|x) ‖ N(0, I))` with one reparameterised sample
//! `z = μ + σ ⊙ ε` per example (see [`crate::model::vae`]), and its gradient.
//!
//! Every layer of a range of examples is one GEMM (examples as columns, each example's vector
//! contiguous), the activations and the output loss are the engine's SIMD kernels; the
//! examples are split into one range per thread, each accumulating its own gradient. The
//! backward pass (with `δ = ∂(−ELBO)/∂·`):
//!
//! ```text
//! δy  = σ(y) − x (Bernoulli) or y − x (Gaussian)         ∇W4 = δy h2ᵀ
//! δh2 = (W4ᵀ δy) ⊙ f'                                    ∇W3 = δh2 zᵀ
//! δz  = W3ᵀ δh2
//! δμ  = δz + μ      δ ln σ² = ½ δz ⊙ σ ⊙ ε + ½ (σ² − 1)   ∇We = [δμ; δ ln σ²] h1ᵀ
//! δh1 = (Weᵀ [δμ; δ ln σ²]) ⊙ f'                         ∇W1 = δh1 xᵀ
//! ```
//!
//! `ε` of example `i` is drawn from its own generator seeded by `(seed, epoch, i)`, so a
//! minibatch's objective is a deterministic function of `theta` for a given epoch.

use rand::Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;

use super::parts::corruption::example_generator;
use crate::data::{Dataset, Layout};
use crate::error::{Error, Result};
use crate::gemm::{gemm, Backend, MatMut, MatRef};
use crate::kernels::{HiddenKernels, Kernels, OutputKernels};
use crate::model::vae::{VaeDecoder, VaeLayout, VaeShape};
use crate::model::{Activation, Reconstruction};
use crate::real::Real;

/// The two terms of `−ELBO`, each a mean over the examples, in nats.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct VaeCost {
    /// `−ln p(x|z)`.
    pub reconstruction: f64,
    /// `KL(q(z|x) ‖ p(z))`.
    pub kl: f64,
}

impl VaeCost {
    /// `−ELBO`, the minimised cost.
    pub fn total(&self) -> f64 {
        self.reconstruction + self.kl
    }
}

/// The objective of one [`VaeShape`] on minibatches of at most `max_batch` examples, with its
/// workspace.
#[derive(Debug)]
pub struct VaeObjective<T: Real> {
    shape: VaeShape,
    layout: VaeLayout,
    max_batch: usize,
    seed: u64,
    backend: Backend,
    hidden_kernels: HiddenKernels<T>,
    output_kernels: OutputKernels<T>,
    output_sigmoid: fn(&mut [T], T) -> f64,
    ranges: Vec<RangeScratch<T>>,
}

/// One thread's range of examples: activations, deltas and gradient sums.
#[derive(Debug, Default)]
struct RangeScratch<T> {
    h1: Vec<T>,
    /// `[μ; ln σ²]`, `2d×w`; then its delta.
    latent: Vec<T>,
    epsilon: Vec<T>,
    z: Vec<T>,
    h2: Vec<T>,
    /// `y`, then `δy`.
    y: Vec<T>,
    /// `δh2`, then `δh1`.
    hidden_delta: Vec<T>,
    latent_delta: Vec<T>,
    /// The weight gradients' sums (`theta`'s layout; the bias entries unused).
    grad: Vec<T>,
    /// The bias gradients' sums, in f64: `b1`, `be`, `b3`, `b4` one after another.
    bias_sums: Vec<f64>,
    reconstruction: f64,
    kl: f64,
    /// The examples of the range's last forward pass.
    examples: usize,
}

/// The parameters' views.
struct Weights<'a, T> {
    w1: MatRef<'a, T>,
    b1: &'a [T],
    we: MatRef<'a, T>,
    be: &'a [T],
    w3: MatRef<'a, T>,
    b3: &'a [T],
    w4: MatRef<'a, T>,
    b4: &'a [T],
}

impl<T: Real> VaeObjective<T> {
    /// The objective of `shape` on minibatches of at most `max_batch` examples, its `ε`
    /// drawn from `seed`.
    pub fn new(shape: VaeShape, max_batch: usize, seed: u64) -> Result<Self> {
        if max_batch == 0 {
            return Err(Error::InvalidHyperParameter { name: "batch size", value: 0.0, reason: "must be at least 1" });
        }
        let kernels = Kernels::<T>::detect();
        let reconstruction = match shape.decoder {
            VaeDecoder::Bernoulli => Reconstruction::SigmoidCrossEntropy,
            VaeDecoder::Gaussian => Reconstruction::LinearSquaredError,
        };
        Ok(VaeObjective {
            shape,
            layout: shape.layout(),
            max_batch,
            seed,
            backend: Backend::preferred(),
            hidden_kernels: kernels.hidden(shape.activation),
            output_kernels: kernels.output(reconstruction),
            output_sigmoid: kernels.hidden(Activation::Sigmoid).activate_sum,
            ranges: Vec::new(),
        })
    }

    pub fn shape(&self) -> VaeShape {
        self.shape
    }

    fn weights<'a>(&self, theta: &'a [T]) -> Weights<'a, T> {
        let (n, h, d, l) = (self.shape.visible, self.shape.hidden, self.shape.latent, self.layout);
        Weights {
            w1: MatRef::col_major(&theta[l.w1..l.b1], h, n),
            b1: &theta[l.b1..l.we],
            we: MatRef::col_major(&theta[l.we..l.be], 2 * d, h),
            be: &theta[l.be..l.w3],
            w3: MatRef::col_major(&theta[l.w3..l.b3], h, d),
            b3: &theta[l.b3..l.w4],
            w4: MatRef::col_major(&theta[l.w4..l.b4], n, h),
            b4: &theta[l.b4..l.len],
        }
    }

    fn check(&self, theta: &[T], data: &Dataset<'_, T>) -> Result<()> {
        let mismatch = |what, expected: String, got: String| Err(Error::shape_mismatch(what, expected, got));
        if theta.len() != self.layout.len {
            return mismatch(
                "theta of the variational autoencoder",
                self.layout.len.to_string(),
                theta.len().to_string(),
            );
        }
        if let Some(index) = theta.iter().position(|v| !v.is_finite()) {
            return mismatch("a finite theta", "finite values".into(), format!("{} at index {index}", theta[index]));
        }
        if data.features() != self.shape.visible {
            return mismatch("data features", self.shape.visible.to_string(), data.features().to_string());
        }
        if data.layout() != Layout::ExamplesByFeatures {
            return mismatch("data layout", "examples by features".into(), "features by examples".into());
        }
        Ok(())
    }

    /// Sizes one scratch per range for ranges of at most `width` examples.
    fn prepare(&mut self, ranges: usize, width: usize) {
        let (n, h, d) = (self.shape.visible, self.shape.hidden, self.shape.latent);
        let len = self.layout.len;
        self.ranges.resize_with(ranges, RangeScratch::default);
        for r in &mut self.ranges {
            r.h1.resize(h * width, T::zero());
            r.latent.resize(2 * d * width, T::zero());
            r.epsilon.resize(d * width, T::zero());
            r.z.resize(d * width, T::zero());
            r.h2.resize(h * width, T::zero());
            r.y.resize(n * width, T::zero());
            r.hidden_delta.resize(h * width, T::zero());
            r.latent_delta.resize(2 * d * width, T::zero());
            r.grad.resize(len, T::zero());
            r.bias_sums.resize(2 * h + 2 * d + n, 0.0);
        }
    }

    /// The ranges of `m` examples: one per thread, at least 16 examples each.
    fn split(m: usize) -> Vec<std::ops::Range<usize>> {
        let ranges = rayon::current_num_threads().min(m.div_ceil(16)).max(1);
        (0..ranges).map(|r| m * r / ranges..m * (r + 1) / ranges).collect()
    }

    /// `−ELBO` of `batch` (a mean per example) at `theta` with the `ε` of `epoch`, and its
    /// gradient in `grad`.
    pub fn evaluate(&mut self, theta: &[T], grad: &mut [T], batch: &Dataset<'_, T>, epoch: u64) -> Result<VaeCost> {
        self.check(theta, batch)?;
        if grad.len() != theta.len() {
            return Err(Error::shape_mismatch("grad", theta.len(), grad.len()));
        }
        let m = batch.examples();
        if m > self.max_batch || m == 0 {
            return Err(Error::shape_mismatch("minibatch examples", format!("1 to {}", self.max_batch), m));
        }
        let ranges = Self::split(m);
        self.prepare(ranges.len(), ranges.iter().map(|r| r.len()).max().unwrap_or(0));
        let pass = self.pass(theta, batch, epoch);
        self.ranges.par_iter_mut().zip(ranges).for_each(|(scratch, range)| {
            scratch.grad.fill(T::zero());
            scratch.bias_sums.fill(0.0);
            pass.forward(range.clone(), scratch);
            pass.backward(range, scratch);
        });
        self.sum_gradient(grad, m);
        Ok(self.cost(m))
    }

    /// `−ELBO` of every example of `data` (a mean per example), forward passes only, `max_batch`
    /// examples at a time; example `i` of the data draws its `ε` as example `i` of `epoch`.
    pub fn negative_elbo(&mut self, theta: &[T], data: &Dataset<'_, T>, epoch: u64) -> Result<VaeCost> {
        self.check(theta, data)?;
        let (n, m) = (self.shape.visible, data.examples());
        if m == 0 {
            return Err(Error::EmptyData { what: "no examples to evaluate" });
        }
        let mut total = VaeCost::default();
        for start in (0..m).step_by(self.max_batch) {
            let width = self.max_batch.min(m - start);
            let chunk = Dataset::examples_by_features(&data.values()[start * n..(start + width) * n], width, n)?;
            let ranges = Self::split(width);
            self.prepare(ranges.len(), ranges.iter().map(|r| r.len()).max().unwrap_or(0));
            let pass = Pass { first_example: start, ..self.pass(theta, &chunk, epoch) };
            self.ranges.par_iter_mut().zip(ranges).for_each(|(scratch, range)| pass.forward(range, scratch));
            let cost = self.cost(1);
            total.reconstruction += cost.reconstruction;
            total.kl += cost.kl;
        }
        Ok(VaeCost { reconstruction: total.reconstruction / m as f64, kl: total.kl / m as f64 })
    }

    /// The encoder's mean `μ(x)` of `q(z|x)` for each example of `x` (`k` rows of `n`
    /// values), as `k` rows of `d` values: the deterministic latent code of each example.
    pub fn encode(&self, theta: &[T], x: &[T]) -> Result<Vec<T>> {
        let (n, h, d) = (self.shape.visible, self.shape.hidden, self.shape.latent);
        if theta.len() != self.layout.len || !x.len().is_multiple_of(n) {
            return Err(Error::shape_mismatch(
                "theta and examples",
                format!("{} values and a multiple of n = {n}", self.layout.len),
                format!("{} and {}", theta.len(), x.len()),
            ));
        }
        let k = x.len() / n;
        let w = self.weights(theta);
        let mut h1 = vec![T::zero(); h * k];
        layer(self.backend, w.w1, w.b1, MatRef::col_major(x, n, k), &mut h1);
        (self.hidden_kernels.activate_sum)(&mut h1, T::zero());
        let mut latent = vec![T::zero(); 2 * d * k];
        layer(self.backend, w.we, w.be, MatRef::col_major(&h1, h, k), &mut latent);
        // Each column is [μ; ln σ²]: keep μ.
        Ok(latent.chunks_exact(2 * d).flat_map(|column| column[..d].iter().copied()).collect())
    }

    /// Samples `samples` of the model (e.g. `0..64`): the decoder's means `E[x|z_i]` for
    /// `z_i ~ N(0, I)`, each drawn from its own generator seeded by `(seed, i)`, so that any
    /// range of samples can be drawn on its own; as one row of `n` values per sample.
    pub fn sample(&self, theta: &[T], samples: std::ops::Range<usize>, seed: u64) -> Result<Vec<T>> {
        let d = self.shape.latent;
        let mut z = Vec::with_capacity(samples.len() * d);
        for i in samples {
            let mut rng = example_generator(seed, u64::MAX, i as u64);
            z.extend((0..d).map(|_| T::cast(rng.sample::<f64, _>(StandardNormal))));
        }
        self.decode(theta, &z)
    }

    /// The decoder's mean `E[x|z]` (`σ(y)` or `y`) for each latent vector of `z` (`d×k`, one
    /// vector after another), as `k` rows of `n` values.
    pub fn decode(&self, theta: &[T], z: &[T]) -> Result<Vec<T>> {
        let (n, h, d) = (self.shape.visible, self.shape.hidden, self.shape.latent);
        if theta.len() != self.layout.len || !z.len().is_multiple_of(d) {
            return Err(Error::shape_mismatch(
                "theta and latent vectors",
                format!("{} values and a multiple of d = {d}", self.layout.len),
                format!("{} and {}", theta.len(), z.len()),
            ));
        }
        let k = z.len() / d;
        let w = self.weights(theta);
        let mut h2 = vec![T::zero(); h * k];
        layer(self.backend, w.w3, w.b3, MatRef::col_major(z, d, k), &mut h2);
        (self.hidden_kernels.activate_sum)(&mut h2, T::zero());
        let mut y = vec![T::zero(); n * k];
        layer(self.backend, w.w4, w.b4, MatRef::col_major(&h2, h, k), &mut y);
        if self.shape.decoder == VaeDecoder::Bernoulli {
            (self.output_sigmoid)(&mut y, T::zero());
        }
        Ok(y)
    }

    fn pass<'a>(&self, theta: &'a [T], data: &'a Dataset<'a, T>, epoch: u64) -> Pass<'a, T> {
        Pass {
            shape: self.shape,
            weights: self.weights(theta),
            data,
            first_example: 0,
            seed: self.seed,
            epoch,
            backend: self.backend,
            hidden_kernels: self.hidden_kernels,
            output_kernels: self.output_kernels,
        }
    }

    /// The ranges' gradient sums, in range order, divided by `m`.
    fn sum_gradient(&self, grad: &mut [T], m: usize) {
        let l = self.layout;
        let inv_m = T::cast(1.0 / m as f64);
        for (start, end) in [(l.w1, l.b1), (l.we, l.be), (l.w3, l.b3), (l.w4, l.b4)] {
            grad[start..end].par_chunks_mut(4096).enumerate().for_each(|(c, g)| {
                let offset = start + c * 4096;
                g.fill(T::zero());
                for r in &self.ranges {
                    for (g, &p) in g.iter_mut().zip(&r.grad[offset..]) {
                        *g = *g + p;
                    }
                }
                g.iter_mut().for_each(|g| *g = *g * inv_m);
            });
        }
        let biases = [(l.b1, l.we), (l.be, l.w3), (l.b3, l.w4), (l.b4, l.len)];
        let mut sum_offset = 0;
        for (start, end) in biases {
            for (i, g) in grad[start..end].iter_mut().enumerate() {
                let sum: f64 = self.ranges.iter().map(|r| r.bias_sums[sum_offset + i]).sum();
                *g = T::cast(sum / m as f64);
            }
            sum_offset += end - start;
        }
    }

    /// The ranges' cost sums divided by `m`.
    fn cost(&self, m: usize) -> VaeCost {
        let n = self.shape.visible as f64;
        let (mut reconstruction, mut kl) = (0.0, 0.0);
        let mut examples = 0.0;
        for r in &self.ranges {
            reconstruction += r.reconstruction;
            kl += r.kl;
            examples += r.examples as f64;
        }
        if self.shape.decoder == VaeDecoder::Gaussian {
            // ½ ‖x − y‖² (the kernel's loss is ‖x − y‖²) plus the normalising constant.
            reconstruction = 0.5 * reconstruction + examples * 0.5 * n * (2.0 * std::f64::consts::PI).ln();
        }
        VaeCost { reconstruction: reconstruction / m as f64, kl: kl / m as f64 }
    }
}

/// `out = W input + b 1ᵀ` (`out` column-major, the bias prefilled).
fn layer<T: Real>(backend: Backend, w: MatRef<'_, T>, b: &[T], input: MatRef<'_, T>, out: &mut [T]) {
    let (rows, cols) = (w.rows(), input.cols());
    for column in out[..rows * cols].chunks_exact_mut(rows) {
        column.copy_from_slice(b);
    }
    gemm(backend, T::one(), w, input, T::one(), MatMut::col_major(&mut out[..rows * cols], rows, cols));
}

/// Adds each column of `m` (`rows×cols`, column-major) to `sums`.
fn add_columns<T: Real>(m: &[T], rows: usize, sums: &mut [f64]) {
    for column in m.chunks_exact(rows) {
        for (s, &v) in sums.iter_mut().zip(column) {
            *s += v.as_f64();
        }
    }
}

/// Everything one evaluation reads, shared by the threads.
struct Pass<'a, T> {
    shape: VaeShape,
    weights: Weights<'a, T>,
    data: &'a Dataset<'a, T>,
    /// The index of the data's first example among those drawing `ε` in this epoch.
    first_example: usize,
    seed: u64,
    epoch: u64,
    backend: Backend,
    hidden_kernels: HiddenKernels<T>,
    output_kernels: OutputKernels<T>,
}

impl<T: Real> Pass<'_, T> {
    /// The forward pass of the examples `range`: activations, the sample `z`, the output
    /// layer's `δy` (in `y`), the losses and `∇b4`'s sums.
    fn forward(&self, range: std::ops::Range<usize>, s: &mut RangeScratch<T>) {
        let (n, h, d, w) = (self.shape.visible, self.shape.hidden, self.shape.latent, range.len());
        let Weights { w1, b1, we, be, w3, b3, w4, b4 } = &self.weights;
        let x = self.data.x().columns(range.start, w);
        layer(self.backend, *w1, b1, x, &mut s.h1);
        (self.hidden_kernels.activate_sum)(&mut s.h1[..h * w], T::zero());
        layer(self.backend, *we, be, MatRef::col_major(&s.h1[..h * w], h, w), &mut s.latent);

        // z = μ + σ ε, and KL = −½ Σ (1 + ln σ² − μ² − σ²).
        let mut kl = 0.0;
        for (i, ((latent, epsilon), z)) in s
            .latent
            .chunks_exact(2 * d)
            .zip(s.epsilon.chunks_exact_mut(d))
            .zip(s.z.chunks_exact_mut(d))
            .take(w)
            .enumerate()
        {
            let mut rng = example_generator(self.seed, self.epoch, (self.first_example + range.start + i) as u64);
            let (mean, log_variance) = latent.split_at(d);
            for k in 0..d {
                let e: f64 = rng.sample(StandardNormal);
                let (mu, lv) = (mean[k].as_f64(), log_variance[k].as_f64());
                epsilon[k] = T::cast(e);
                z[k] = T::cast(mu + (0.5 * lv).exp() * e);
                kl -= 0.5 * (1.0 + lv - mu * mu - lv.exp());
            }
        }
        s.kl = kl;
        s.examples = w;

        layer(self.backend, *w3, b3, MatRef::col_major(&s.z[..d * w], d, w), &mut s.h2);
        (self.hidden_kernels.activate_sum)(&mut s.h2[..h * w], T::zero());
        // The decoder's output, its bias added by the output kernel.
        let mut y = MatMut::col_major(&mut s.y[..n * w], n, w);
        gemm(self.backend, T::one(), *w4, MatRef::col_major(&s.h2[..h * w], h, w), T::zero(), y.reborrow());
        let x = MatRef::col_major(&self.data.values()[range.start * n..range.end * n], n, w);
        s.reconstruction = (self.output_kernels.delta)(y, x, b4, &mut s.bias_sums[2 * h + 2 * d..]);
    }

    /// The backward pass of the examples `range` after their `forward`: adds their gradient to
    /// the range's sums.
    fn backward(&self, range: std::ops::Range<usize>, s: &mut RangeScratch<T>) {
        let (n, h, d, w) = (self.shape.visible, self.shape.hidden, self.shape.latent, range.len());
        let Weights { we, w3, w4, .. } = &self.weights;
        let one = T::one();
        let l = self.shape.layout();
        let (grad, bias_sums) = (&mut s.grad, &mut s.bias_sums);
        let (b1_sums, rest) = bias_sums.split_at_mut(h);
        let (be_sums, rest) = rest.split_at_mut(2 * d);
        let b3_sums = &mut rest[..h];
        let delta_y = MatRef::col_major(&s.y[..n * w], n, w);
        let h2 = MatRef::col_major(&s.h2[..h * w], h, w);

        gemm(self.backend, one, delta_y, h2.t(), one, MatMut::col_major(&mut grad[l.w4..l.b4], n, h));
        let delta_h2 = &mut s.hidden_delta[..h * w];
        gemm(self.backend, one, w4.t(), delta_y, T::zero(), MatMut::col_major(&mut *delta_h2, h, w));
        (self.hidden_kernels.delta_sum)(delta_h2, &s.h2[..h * w], T::zero());
        add_columns(delta_h2, h, b3_sums);
        let delta_h2 = MatRef::col_major(&s.hidden_delta[..h * w], h, w);
        gemm(
            self.backend,
            one,
            delta_h2,
            MatRef::col_major(&s.z[..d * w], d, w).t(),
            one,
            MatMut::col_major(&mut grad[l.w3..l.b3], h, d),
        );

        // δz = W3ᵀ δh2, into the first d rows of each latent delta column; then δμ, δ ln σ².
        let latent_delta = &mut s.latent_delta[..2 * d * w];
        gemm(self.backend, one, w3.t(), delta_h2, T::zero(), MatMut::new(&mut *latent_delta, d, w, 1, 2 * d));
        for ((delta, latent), epsilon) in
            latent_delta.chunks_exact_mut(2 * d).zip(s.latent.chunks_exact(2 * d)).zip(s.epsilon.chunks_exact(d))
        {
            let (mean, log_variance) = latent.split_at(d);
            let (delta_mean, delta_log_variance) = delta.split_at_mut(d);
            for k in 0..d {
                let (dz, lv) = (delta_mean[k], log_variance[k].as_f64());
                let sigma = (0.5 * lv).exp();
                delta_mean[k] = dz + mean[k];
                delta_log_variance[k] =
                    T::cast(0.5 * dz.as_f64() * sigma * epsilon[k].as_f64() + 0.5 * (sigma * sigma - 1.0));
            }
        }
        add_columns(latent_delta, 2 * d, be_sums);
        let latent_delta = MatRef::col_major(&s.latent_delta[..2 * d * w], 2 * d, w);
        let h1 = MatRef::col_major(&s.h1[..h * w], h, w);
        gemm(self.backend, one, latent_delta, h1.t(), one, MatMut::col_major(&mut grad[l.we..l.be], 2 * d, h));

        let delta_h1 = &mut s.hidden_delta[..h * w];
        gemm(self.backend, one, we.t(), latent_delta, T::zero(), MatMut::col_major(&mut *delta_h1, h, w));
        (self.hidden_kernels.delta_sum)(delta_h1, &s.h1[..h * w], T::zero());
        add_columns(delta_h1, h, b1_sums);
        let x = self.data.x().columns(range.start, w);
        let delta_h1 = MatRef::col_major(&s.hidden_delta[..h * w], h, w);
        gemm(self.backend, one, delta_h1, x.t(), one, MatMut::col_major(&mut grad[l.w1..l.b1], h, n));
    }
}
