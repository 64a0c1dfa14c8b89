//! The contractive penalty (Rifai et al. 2011): `λ_c/m Σ_i ‖∂a2/∂x (x_i)‖²_F`, which for the
//! layer `a2 = f(W1 x + b1)` is `λ_c/m Σ_i Σ_j f'(z2_ij)² w_j`, `w_j = ‖W1_j‖²` the squared norm
//! of hidden unit `j`'s weights.
//!
//! Its gradient has two parts: through `f'(z2)`, the share `c_j f'_ij f''_ij` of `delta2` with
//! `c_j = 2 λ_c w_j` (added to each block's hidden delta, [`add_delta`]); and directly in `W1`,
//! `2 λ_c (Σ_i f'_ij²/m) W1_j`, a decay of each row of `W1` added to the weight decay's `λ`
//! ([`row_decay`]).
//!
//! [`add_delta`]: ContractivePenalty::add_delta
//! [`row_decay`]: ContractivePenalty::row_decay_and_cost

use crate::kernels::ContractiveDeltaKernel;
use crate::real::Real;

/// The penalty at weight `λ_c`, with what it needs of the current evaluation's `W1`. At
/// `λ_c = 0` there is no penalty, and every method leaves its outputs as they would be without.
#[derive(Debug)]
pub(crate) struct ContractivePenalty<T> {
    weight: f64,
    /// `w_j = ‖W1_j‖²`, the squared norm of each unit's weights, `h` values.
    squared_norms: Vec<f64>,
    /// `c_j = 2 λ_c w_j`, in the working precision (the kernel's operand).
    c: Vec<T>,
}

impl<T: Real> ContractivePenalty<T> {
    /// The penalty of weight `λ_c = weight` (0: none).
    pub(crate) fn new(weight: f64) -> Self {
        ContractivePenalty { weight, squared_norms: Vec::new(), c: Vec::new() }
    }

    /// Starts an evaluation at `w1`: `h×n` column-major, as in `theta`.
    pub(crate) fn prepare(&mut self, w1: &[T], h: usize) {
        if self.weight == 0.0 {
            return;
        }
        self.squared_norms.clear();
        self.squared_norms.resize(h, 0.0);
        for column in w1.chunks_exact(h) {
            for (norm, &w) in self.squared_norms.iter_mut().zip(column) {
                *norm += w.as_f64() * w.as_f64();
            }
        }
        let twice_weight = 2.0 * self.weight;
        self.c.clear();
        self.c.extend(self.squared_norms.iter().map(|&w| T::cast(twice_weight * w)));
    }

    /// One block's share of `delta2`: `p ← p + c_j f' f''` on unit `j`'s run of `hidden`
    /// (`h×width` row-major, `a2` alike, `kernel` the hidden units'); adds `Σ c_j f' f''` to
    /// `b1_sums[j]` (for `∇b1`) and `Σ f'²` to `squared_sums[j]` (for [`row_decay_and_cost`](Self::row_decay_and_cost)).
    pub(crate) fn add_delta(
        &self,
        kernel: ContractiveDeltaKernel<T>,
        hidden: &mut [T],
        a2: &[T],
        width: usize,
        b1_sums: &mut [f64],
        squared_sums: &mut [f64],
    ) {
        if self.weight == 0.0 {
            return;
        }
        debug_assert_eq!(self.c.len(), b1_sums.len(), "prepare ran for this layer");
        let rows = hidden.chunks_exact_mut(width).zip(a2.chunks_exact(width));
        for (((p, a), &c), (b1_sum, squared)) in rows.zip(&self.c).zip(b1_sums.iter_mut().zip(squared_sums)) {
            let (added, derivative_squared) = kernel(p, a, c);
            *b1_sum += added;
            *squared += derivative_squared;
        }
    }

    /// The decay of each row `j` of `W1` into `row_decay` (`h` values): `λ`, plus
    /// `2 λ_c (Σ_i f'_ij²/m)`, with `derivative_squared_sum(j)` the sum over all `m` examples
    /// of `f'_ij²` (the blocks' [`add_delta`](Self::add_delta) sums). Returns the penalty's
    /// cost, `λ_c/m Σ_j w_j Σ_i f'_ij²`.
    pub(crate) fn row_decay_and_cost(
        &self,
        lambda: f64,
        derivative_squared_sum: impl Fn(usize) -> f64,
        m: f64,
        row_decay: &mut [T],
    ) -> f64 {
        if self.weight == 0.0 {
            row_decay.fill(T::cast(lambda));
            return 0.0;
        }
        let mut cost = 0.0;
        for (j, decay) in row_decay.iter_mut().enumerate() {
            let mean_squared = derivative_squared_sum(j) / m;
            cost += self.weight * mean_squared * self.squared_norms[j];
            *decay = T::cast(lambda + 2.0 * self.weight * mean_squared);
        }
        cost
    }
}
