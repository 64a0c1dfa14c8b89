//! Softmax regression (UFLDL's softmax exercise), the classifier on top of learned features:
//! `k` classes, parameters `θ: k×n` (flattened column-major, as UFLDL's `theta(:)`),
//!
//! `p(y = j | x) = e^{θ_j x} / Σ_l e^{θ_l x}`,
//! `J(θ) = −(1/m) Σ_i log p(y_i | x_i) + (λ/2) ‖θ‖²`,
//! `∇J = (1/m) (P − Y) Xᵀ + λ θ`
//!
//! with `P: k×m` the probabilities and `Y` the one-hot labels: two GEMMs and a column-wise
//! softmax (shifted by each column's maximum, so `exp` never overflows).

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::gemm::{gemm, Backend, MatMut, MatRef};
use crate::optim::Differentiable;
use crate::real::Real;

/// `J` and `∇J` of softmax regression on labelled data in memory (f64).
#[derive(Debug)]
pub struct SoftmaxObjective<'d> {
    data: Dataset<'d, f64>,
    labels: &'d [u8],
    classes: usize,
    lambda: f64,
    backend: Backend,
    /// `θ X`, then `P − Y`: `k×m` column-major.
    scores: Vec<f64>,
}

impl<'d> SoftmaxObjective<'d> {
    /// `classes` classes (labels `0..classes`), weight decay `lambda`.
    pub fn new(data: Dataset<'d, f64>, labels: &'d [u8], classes: usize, lambda: f64) -> Result<Self> {
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
        let scores = vec![0.0; classes * data.examples()];
        Ok(SoftmaxObjective { data, labels, classes, lambda, backend: Backend::preferred(), scores })
    }

    /// `kn`, the length of `θ`.
    pub fn theta_len(&self) -> usize {
        self.classes * self.data.features()
    }

    /// The most probable class of every example of `data` under `θ`.
    pub fn predict(theta: &[f64], classes: usize, data: &Dataset<'_, f64>) -> Vec<u8> {
        let (n, m) = (data.features(), data.examples());
        let mut scores = vec![0.0; classes * m];
        let out = MatMut::col_major(&mut scores, classes, m);
        gemm(Backend::preferred(), 1.0, MatRef::col_major(theta, classes, n), data.x(), 0.0, out);
        most_probable(&scores, classes)
    }
}

/// Turns the scores `θ a` of labelled examples (`k×m`, column-major) into `P − Y`, each
/// column's softmax shifted by its maximum so that `exp` never overflows; returns
/// `−Σ_i log p(y_i | x_i)`.
pub(crate) fn softmax_minus_one_hot<T: Real>(scores: &mut [T], classes: usize, labels: &[u8]) -> f64 {
    let mut log_loss = 0.0;
    for (column, &label) in scores.chunks_exact_mut(classes).zip(labels) {
        let max = column.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b.as_f64()));
        let total: f64 = column.iter().map(|z| (z.as_f64() - max).exp()).sum();
        for z in column.iter_mut() {
            *z = T::cast((z.as_f64() - max).exp() / total);
        }
        log_loss -= column[label as usize].as_f64().ln();
        column[label as usize] = column[label as usize] - T::one();
    }
    log_loss
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

impl Differentiable<f64> for SoftmaxObjective<'_> {
    fn dimension(&self) -> usize {
        self.theta_len()
    }

    fn evaluate(&mut self, theta: &[f64], grad: &mut [f64]) -> Result<f64> {
        let (k, n, m) = (self.classes, self.data.features(), self.data.examples());
        for (what, len) in [("softmax theta", theta.len()), ("softmax gradient", grad.len())] {
            if len != k * n {
                return Err(Error::shape_mismatch(what, k * n, len));
            }
        }
        let scores = MatMut::col_major(&mut self.scores, k, m);
        gemm(self.backend, 1.0, MatRef::col_major(theta, k, n), self.data.x(), 0.0, scores);
        let log_loss = softmax_minus_one_hot(&mut self.scores, k, self.labels);
        grad.copy_from_slice(theta);
        let difference = MatRef::col_major(&self.scores, k, m);
        let out = MatMut::col_major(grad, k, n);
        gemm(self.backend, 1.0 / m as f64, difference, self.data.x().t(), self.lambda, out);
        let decay = 0.5 * self.lambda * theta.iter().map(|t| t * t).sum::<f64>();
        Ok(log_loss / m as f64 + decay)
    }
}
