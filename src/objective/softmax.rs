//! Softmax regression (UFLDL's softmax exercise), the classifier on top of learned features:
//! `k` classes, parameters `θ: k×n` (flattened column-major, as UFLDL's `theta(:)`),
//!
//! `p(y = j | x) = e^{θ_j x} / Σ_l e^{θ_l x}`,
//! `J(θ) = −(1/m) Σ_i log p(y_i | x_i) + (λ/2) ‖θ‖²`,
//! `∇J = (1/m) (P − Y) Xᵀ + λ θ`
//!
//! with `P: k×m` the probabilities and `Y` the one-hot labels: two GEMMs and a column-wise
//! softmax (shifted by each column's maximum, so `exp` never overflows, and computed in f64
//! whatever the element type).

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::gemm::{gemm, Backend, MatMut, MatRef};
use crate::optim::Differentiable;
use crate::real::Real;

/// `J` and `∇J` of softmax regression on labelled data in memory, in `T`.
#[derive(Debug)]
pub struct SoftmaxObjective<'d, T: Real> {
    data: Dataset<'d, T>,
    labels: &'d [u8],
    classes: usize,
    lambda: f64,
    backend: Backend,
    /// `θ X`, then `P − Y`: `k×m` column-major.
    scores: Vec<T>,
}

impl<'d, T: Real> SoftmaxObjective<'d, T> {
    /// `classes` classes (labels `0..classes`), weight decay `lambda`.
    pub fn new(data: Dataset<'d, T>, labels: &'d [u8], classes: usize, lambda: f64) -> Result<Self> {
        if labels.len() != data.examples() {
            return Err(Error::shape_mismatch("labels", format!("one per example, {}", data.examples()), labels.len()));
        }
        if let Some(i) = labels.iter().position(|&l| l as usize >= classes) {
            return Err(Error::shape_mismatch(
                "label",
                format!("below the number of classes, {classes}"),
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
        let scores = vec![T::zero(); classes * data.examples()];
        Ok(SoftmaxObjective { data, labels, classes, lambda, backend: Backend::preferred(), scores })
    }

    /// `kn`, the length of `θ`.
    pub fn theta_len(&self) -> usize {
        self.classes * self.data.features()
    }

    /// The most probable class of every example of `data` under `θ`.
    pub fn predict(theta: &[T], classes: usize, data: &Dataset<'_, T>) -> Vec<u8> {
        let (n, m) = (data.features(), data.examples());
        let mut scores = vec![T::zero(); classes * m];
        let out = MatMut::col_major(&mut scores, classes, m);
        gemm(Backend::preferred(), T::one(), MatRef::col_major(theta, classes, n), data.x(), T::zero(), out);
        most_probable(&scores, classes)
    }
}

/// Turns the scores `θ a` of labelled examples (`k×m`, column-major) into `P − Y`; returns
/// `−Σ_i log p(y_i | x_i)`, each term as `log Σ_j e^{z_j} − z_{y_i}` (finite even where
/// `p(y_i | x_i)` rounds to 0).
pub(crate) fn softmax_minus_one_hot<T: Real>(scores: &mut [T], classes: usize, labels: &[u8]) -> f64 {
    let mut log_loss = 0.0;
    for (column, &label) in scores.chunks_exact_mut(classes).zip(labels) {
        let score = column[label as usize].as_f64();
        log_loss += softmax_in_place(column) - score;
        column[label as usize] = column[label as usize] - T::one();
    }
    log_loss
}

/// Turns each column of scores (`k×m`, column-major) into its probabilities.
pub(crate) fn softmax_columns<T: Real>(scores: &mut [T], classes: usize) {
    scores.chunks_exact_mut(classes).for_each(|column| {
        softmax_in_place(column);
    });
}

/// Turns each column of scores (`k×m`, column-major) into its log-probabilities
/// `z_j − log Σ_l e^{z_l}`.
pub(crate) fn log_softmax_columns<T: Real>(scores: &mut [T], classes: usize) {
    for column in scores.chunks_exact_mut(classes) {
        let max = column.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b.as_f64()));
        let log_total = max + column.iter().map(|z| (z.as_f64() - max).exp()).sum::<f64>().ln();
        column.iter_mut().for_each(|z| *z = T::cast(z.as_f64() - log_total));
    }
}

/// Replaces the scores `z` of one example by `e^{z_j} / Σ_l e^{z_l}`, shifted by their maximum
/// so that `exp` never overflows; returns `log Σ_l e^{z_l}`.
fn softmax_in_place<T: Real>(column: &mut [T]) -> f64 {
    let max = column.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b.as_f64()));
    let total: f64 = column.iter().map(|z| (z.as_f64() - max).exp()).sum();
    for z in column.iter_mut() {
        *z = T::cast((z.as_f64() - max).exp() / total);
    }
    max + total.ln()
}

/// The index of the largest score of each column (`k×m`, column-major).
pub(crate) fn most_probable<T: Real>(scores: &[T], classes: usize) -> Vec<u8> {
    scores
        .chunks_exact(classes)
        .map(|column| {
            let best =
                column.iter().enumerate().fold((0, T::neg_infinity()), |b, (j, &v)| if v > b.1 { (j, v) } else { b });
            best.0 as u8
        })
        .collect()
}

impl<T: Real> Differentiable<T> for SoftmaxObjective<'_, T> {
    fn dimension(&self) -> usize {
        self.theta_len()
    }

    fn evaluate(&mut self, theta: &[T], grad: &mut [T]) -> Result<f64> {
        let (k, n, m) = (self.classes, self.data.features(), self.data.examples());
        for (what, len) in [("softmax theta", theta.len()), ("softmax gradient", grad.len())] {
            if len != k * n {
                return Err(Error::shape_mismatch(what, k * n, len));
            }
        }
        let scores = MatMut::col_major(&mut self.scores, k, m);
        gemm(self.backend, T::one(), MatRef::col_major(theta, k, n), self.data.x(), T::zero(), scores);
        let log_loss = softmax_minus_one_hot(&mut self.scores, k, self.labels);
        grad.copy_from_slice(theta);
        let difference = MatRef::col_major(&self.scores, k, m);
        let out = MatMut::col_major(grad, k, n);
        let (inv_m, lambda) = (T::cast(1.0 / m as f64), T::cast(self.lambda));
        gemm(self.backend, inv_m, difference, self.data.x().t(), lambda, out);
        let decay = 0.5 * self.lambda * theta.iter().map(|t| t.as_f64().powi(2)).sum::<f64>();
        Ok(log_loss / m as f64 + decay)
    }
}
