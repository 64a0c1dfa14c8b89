//! Fine-tuning a stack of sigmoid layers with a softmax classifier on top (UFLDL's stacked
//! autoencoder exercise, `stackedAECost`): with `a_0 = x`,
//! `a_l = σ(W_l a_{l−1} + b_l)` for `l = 1..L`, and softmax parameters `θ: k×h_L`,
//!
//! `J = −(1/m) Σ_i log p(y_i | a_L(x_i)) + (λ/2) ‖θ‖²`
//!
//! (weight decay on `θ` only, as the exercise), and by backpropagation
//! `∇θ = (1/m)(P − Y) a_Lᵀ + λθ`, `δ_L = θᵀ(P − Y) ⊙ a_L(1 − a_L)`,
//! `δ_{l−1} = W_lᵀ δ_l ⊙ a_{l−1}(1 − a_{l−1})`, `∇W_l = (1/m) δ_l a_{l−1}ᵀ`,
//! `∇b_l = (1/m) Σ δ_l`.
//!
//! Parameters are UFLDL's `[θ(:); W_1(:); b_1; W_2(:); b_2; …]`, matrices column-major. The
//! examples are cut into one range per thread; each range runs every layer with its own
//! scratch (`O(range × Σ h_l)`) and gradient, and the ranges' gradients are summed in order.

use rayon::prelude::*;

use super::softmax::{log_softmax_columns, most_probable, softmax_columns, softmax_minus_one_hot};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::gemm::{gemm, Backend, MatMut, MatRef};
use crate::kernels::Kernels;
use crate::model::Activation;
use crate::optim::Differentiable;
use crate::real::Real;

/// The shapes of a stacked network: `sizes = [n, h_1, …, h_L]` and `classes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackShape {
    pub sizes: Vec<usize>,
    pub classes: usize,
}

impl StackShape {
    /// Offsets of `θ`, then of each layer's `W_l` and `b_l`, in the parameter vector.
    pub(crate) fn offsets(&self) -> (usize, Vec<(usize, usize)>) {
        let top = *self.sizes.last().expect("at least one layer");
        let mut at = self.classes * top;
        let layers = self
            .sizes
            .windows(2)
            .map(|w| {
                let (w_at, b_at) = (at, at + w[1] * w[0]);
                at = b_at + w[1];
                (w_at, b_at)
            })
            .collect();
        (at, layers)
    }

    /// The length of the parameter vector (see [`checked_len`](Self::checked_len)).
    pub fn len(&self) -> usize {
        self.offsets().0
    }

    /// The length of the parameter vector, `None` when it does not fit a `usize`: the check
    /// to make on any shape not known to be small (every other method assumes it passed).
    pub fn checked_len(&self) -> Option<usize> {
        let top = *self.sizes.last()?;
        let softmax = self.classes.checked_mul(top)?;
        self.sizes
            .windows(2)
            .try_fold(softmax, |total, w| total.checked_add(w[1].checked_mul(w[0])?.checked_add(w[1])?))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `J` and its gradient for fine-tuning a stack on labelled data in memory.
#[derive(Debug)]
pub struct StackedObjective<'d, T: Real> {
    data: Dataset<'d, T>,
    labels: &'d [u8],
    shape: StackShape,
    lambda: f64,
    kernels: Kernels<T>,
    backend: Backend,
}

/// One range's results: its share of `m · J` (before the weight decay) and of `m · ∇J`.
struct RangeResult<T> {
    log_loss: f64,
    grad: Vec<T>,
}

impl<'d, T: Real> StackedObjective<'d, T> {
    pub fn new(data: Dataset<'d, T>, labels: &'d [u8], shape: StackShape, lambda: f64) -> Result<Self> {
        if shape.sizes.len() < 2 || shape.sizes.contains(&0) || shape.classes < 2 || shape.checked_len().is_none() {
            return Err(Error::shape_mismatch(
                "stack shape",
                "[n, h_1, …] with at least one hidden layer, no empty layer, two classes or more, and a \
                 parameter count that fits in memory",
                format!("{:?} with {} classes", shape.sizes, shape.classes),
            ));
        }
        if data.features() != shape.sizes[0] {
            return Err(Error::shape_mismatch("data features", shape.sizes[0].to_string(), data.features()));
        }
        if labels.len() != data.examples() {
            return Err(Error::shape_mismatch("labels", data.examples(), labels.len()));
        }
        if let Some(i) = labels.iter().position(|&l| l as usize >= shape.classes) {
            return Err(Error::shape_mismatch(
                "label",
                format!("below {}", shape.classes),
                format!("{} at example {i}", labels[i]),
            ));
        }
        if !(lambda >= 0.0 && lambda.is_finite()) {
            return Err(Error::InvalidHyperParameter {
                name: "lambda",
                value: lambda,
                reason: "must be finite and ≥ 0",
            });
        }
        Ok(StackedObjective { data, labels, shape, lambda, kernels: Kernels::detect(), backend: Backend::preferred() })
    }

    /// `a_1 … a_L` (each `h_l × width`, column-major) for the examples `x` (`n × width`).
    fn forward(
        shape: &StackShape,
        theta: &[T],
        x: MatRef<'_, T>,
        kernels: &Kernels<T>,
        backend: Backend,
    ) -> Vec<Vec<T>> {
        let (_, layers) = shape.offsets();
        let width = x.cols();
        let mut activations: Vec<Vec<T>> = Vec::with_capacity(layers.len());
        for (l, &(w_at, b_at)) in layers.iter().enumerate() {
            let (rows, cols) = (shape.sizes[l + 1], shape.sizes[l]);
            let mut a = vec![T::zero(); rows * width];
            for column in a.chunks_exact_mut(rows) {
                column.copy_from_slice(&theta[b_at..b_at + rows]);
            }
            let input = if l == 0 { x } else { MatRef::col_major(&activations[l - 1], cols, width) };
            let w = MatRef::col_major(&theta[w_at..w_at + rows * cols], rows, cols);
            gemm(backend, T::one(), w, input, T::one(), MatMut::col_major(&mut a, rows, width));
            (kernels.hidden(Activation::Sigmoid).activate_sum)(&mut a, T::zero());
            activations.push(a);
        }
        activations
    }

    /// The top layer's activations `a_L` of every example of `data` under the stack's
    /// parameters `theta`: the features the softmax classifies, as `m` rows of `h_L` values.
    pub fn features(shape: &StackShape, theta: &[T], data: &Dataset<'_, T>) -> Vec<T> {
        let mut activations = Self::forward(shape, theta, data.x(), &Kernels::detect(), Backend::preferred());
        activations.pop().expect("at least one layer")
    }

    /// The most probable class of every example of `data` under the stack's parameters
    /// `theta` (in the layout of [`StackedObjective`]).
    pub fn predict(shape: &StackShape, theta: &[T], data: &Dataset<'_, T>) -> Vec<u8> {
        most_probable(&Self::scores(shape, theta, data), shape.classes)
    }

    /// `p(y = j | x)` for every example of `data` under the stack's parameters `theta`: `m`
    /// rows of `classes` values, each row summing to 1 (to `T`'s rounding).
    pub fn probabilities(shape: &StackShape, theta: &[T], data: &Dataset<'_, T>) -> Vec<T> {
        let mut scores = Self::scores(shape, theta, data);
        softmax_columns(&mut scores, shape.classes);
        scores
    }

    /// `log p(y = j | x) = z_j − log Σ_l e^{z_l}`, laid out as
    /// [`probabilities`](Self::probabilities): finite where a probability rounds to 0.
    pub fn log_probabilities(shape: &StackShape, theta: &[T], data: &Dataset<'_, T>) -> Vec<T> {
        let mut scores = Self::scores(shape, theta, data);
        log_softmax_columns(&mut scores, shape.classes);
        scores
    }

    /// The softmax's scores `θ a_L` of every example of `data`: `k×m`, column-major.
    fn scores(shape: &StackShape, theta: &[T], data: &Dataset<'_, T>) -> Vec<T> {
        let activations = Self::forward(shape, theta, data.x(), &Kernels::detect(), Backend::preferred());
        let (k, top, m) = (shape.classes, *shape.sizes.last().expect("layers"), data.examples());
        let mut scores = vec![T::zero(); k * m];
        let a_top = MatRef::col_major(activations.last().expect("layers"), top, m);
        let softmax = MatRef::col_major(&theta[..k * top], k, top);
        gemm(Backend::preferred(), T::one(), softmax, a_top, T::zero(), MatMut::col_major(&mut scores, k, m));
        scores
    }

    /// Runs the network on examples `start..start + width` and backpropagates.
    fn range(&self, theta: &[T], start: usize, width: usize) -> RangeResult<T> {
        let (sizes, k) = (&self.shape.sizes, self.shape.classes);
        let (_, layers) = self.shape.offsets();
        let (one, zero) = (T::one(), T::zero());
        let x = self.data.x().columns(start, width);
        let activations = Self::forward(&self.shape, theta, x, &self.kernels, self.backend);
        let top = *sizes.last().expect("validated");
        let a_top = MatRef::col_major(activations.last().expect("validated"), top, width);
        let softmax = MatRef::col_major(&theta[..k * top], k, top);
        let mut scores = vec![zero; k * width];
        gemm(self.backend, one, softmax, a_top, zero, MatMut::col_major(&mut scores, k, width));
        let log_loss = softmax_minus_one_hot(&mut scores, k, &self.labels[start..start + width]);
        // Backward, in m·∇J units (scaled by 1/m when the ranges are summed).
        let mut grad = vec![zero; theta.len()];
        let difference = MatRef::col_major(&scores, k, width);
        gemm(self.backend, one, difference, a_top.t(), zero, MatMut::col_major(&mut grad[..k * top], k, top));
        let mut delta = vec![zero; top * width];
        gemm(self.backend, one, softmax.t(), difference, zero, MatMut::col_major(&mut delta, top, width));
        for l in (0..layers.len()).rev() {
            let (rows, cols) = (sizes[l + 1], sizes[l]);
            for (d, &a) in delta.iter_mut().zip(&activations[l]) {
                *d = *d * a * (one - a);
            }
            let (w_at, b_at) = layers[l];
            let d = MatRef::col_major(&delta, rows, width);
            let input = if l == 0 { x } else { MatRef::col_major(&activations[l - 1], cols, width) };
            gemm(
                self.backend,
                one,
                d,
                input.t(),
                zero,
                MatMut::col_major(&mut grad[w_at..w_at + rows * cols], rows, cols),
            );
            for (j, g) in grad[b_at..b_at + rows].iter_mut().enumerate() {
                *g = T::cast(delta.iter().skip(j).step_by(rows).map(|v| v.as_f64()).sum());
            }
            if l > 0 {
                let w = MatRef::col_major(&theta[w_at..w_at + rows * cols], rows, cols);
                let mut below = vec![zero; cols * width];
                gemm(self.backend, one, w.t(), d, zero, MatMut::col_major(&mut below, cols, width));
                delta = below;
            }
        }
        RangeResult { log_loss, grad }
    }
}

impl<T: Real> Differentiable<T> for StackedObjective<'_, T> {
    fn dimension(&self) -> usize {
        self.shape.len()
    }

    fn evaluate(&mut self, theta: &[T], grad: &mut [T]) -> Result<f64> {
        let len = self.shape.len();
        for (what, got) in [("stack parameters", theta.len()), ("stack gradient", grad.len())] {
            if got != len {
                return Err(Error::shape_mismatch(what, len, got));
            }
        }
        let m = self.data.examples();
        let ranges = rayon::current_num_threads().min(m);
        let results: Vec<RangeResult<T>> = (0..ranges)
            .into_par_iter()
            .map(|r| {
                let (start, end) = (m * r / ranges, m * (r + 1) / ranges);
                self.range(theta, start, end - start)
            })
            .collect();
        let inv_m = T::cast(1.0 / m as f64);
        grad.fill(T::zero());
        for result in &results {
            for (g, &p) in grad.iter_mut().zip(&result.grad) {
                *g = *g + p;
            }
        }
        grad.iter_mut().for_each(|g| *g = *g * inv_m);
        let softmax_len = self.shape.classes * self.shape.sizes.last().expect("validated");
        let lambda = T::cast(self.lambda);
        for (g, &t) in grad[..softmax_len].iter_mut().zip(&theta[..softmax_len]) {
            *g = *g + lambda * t;
        }
        let decay = 0.5 * self.lambda * theta[..softmax_len].iter().map(|t| t.as_f64().powi(2)).sum::<f64>();
        let log_loss: f64 = results.iter().map(|r| r.log_loss).sum();
        Ok(log_loss / m as f64 + decay)
    }
}
