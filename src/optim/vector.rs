//! The vector arithmetic of the optimisers: the SIMD `dot` and `axpy` kernels, split over the
//! rayon pool in fixed chunks when a vector is long enough that memory bandwidth rather than
//! the call dominates (L-BFGS's correction pairs of a large model are hundreds of megabytes
//! read every iteration). Partial sums are added in chunk order, so results do not depend on
//! the thread count.

use rayon::prelude::*;

use crate::kernels::Kernels;

/// Elements per parallel task, and four times this the shortest vector split at all.
const CHUNK: usize = 16 * 1024;

/// `dot` and `axpy` over f64 slices.
#[derive(Debug, Clone, Copy)]
pub struct VectorOps {
    kernels: Kernels<f64>,
}

impl VectorOps {
    pub fn new(kernels: Kernels<f64>) -> Self {
        VectorOps { kernels }
    }

    /// `Σ a_i b_i`
    pub fn dot(&self, a: &[f64], b: &[f64]) -> f64 {
        let dot = self.kernels.dot;
        if a.len() <= 4 * CHUNK {
            return dot(a, b);
        }
        let partial: Vec<f64> = a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)).map(|(a, b)| dot(a, b)).collect();
        partial.iter().sum()
    }

    /// `y ← α x + y`
    pub fn axpy(&self, alpha: f64, x: &[f64], y: &mut [f64]) {
        let axpy = self.kernels.axpy;
        if x.len() <= 4 * CHUNK {
            return axpy(alpha, x, y);
        }
        y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(y, x)| axpy(alpha, x, y));
    }
}

/// `max_i |x_i|`
pub fn max_abs(x: &[f64]) -> f64 {
    x.iter().fold(0.0, |m, v| m.max(v.abs()))
}
