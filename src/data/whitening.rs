//! PCA and ZCA whitening (UFLDL's PCA exercise), for raw images: with `μ` the mean of each
//! feature over the examples and `Σ = (1/m) Σ_i (x_i − μ)(x_i − μ)ᵀ = U diag(λ) Uᵀ` (the
//! symmetric eigendecomposition, through `nalgebra`, eigenvalues in decreasing order),
//!
//! - PCA whitening: `x_PCAwhite = diag(1/√(λ_k + ε)) Uᵀ (x − μ)`, optionally keeping only the
//!   first `k` components;
//! - ZCA whitening: `x_ZCAwhite = U x_PCAwhite` (all components),
//!
//! where the regularisation `ε` keeps the division by small eigenvalues from amplifying noise.

use nalgebra::{DMatrix, SymmetricEigen};

use crate::error::{Error, Result};
use crate::gemm::{gemm, Backend, MatMut, MatRef};

/// The mean and principal axes of a data set.
#[derive(Debug, Clone)]
pub struct Whitening {
    features: usize,
    mean: Vec<f64>,
    /// `U`: `n×n`, column `k` the `k`-th principal axis, column-major.
    axes: Vec<f64>,
    /// `λ`, decreasing.
    eigenvalues: Vec<f64>,
}

impl Whitening {
    /// Fits `m` examples of `n` values (one per row).
    pub fn fit(values: &[f64], m: usize, n: usize) -> Result<Self> {
        if m < 2 || n == 0 || values.len() != m * n {
            return Err(Error::shape_mismatch(
                "data to whiten",
                "at least two examples of at least one value, m·n values",
                format!("m = {m}, n = {n}, {} values", values.len()),
            ));
        }
        let mut mean = vec![0.0; n];
        for row in values.chunks_exact(n) {
            mean.iter_mut().zip(row).for_each(|(s, v)| *s += v);
        }
        mean.iter_mut().for_each(|s| *s /= m as f64);
        let centered: Vec<f64> =
            values.chunks_exact(n).flat_map(|row| row.iter().zip(&mean).map(|(v, u)| v - u)).collect();
        // Σ = Xcᵀ Xc / m, with Xc: m×n row-major (n×m column-major).
        let mut covariance = vec![0.0; n * n];
        let xt = MatRef::col_major(&centered, n, m);
        gemm(Backend::preferred(), 1.0 / m as f64, xt, xt.t(), 0.0, MatMut::col_major(&mut covariance, n, n));
        let eigen = SymmetricEigen::new(DMatrix::from_column_slice(n, n, &covariance));
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| eigen.eigenvalues[b].total_cmp(&eigen.eigenvalues[a]));
        let eigenvalues = order.iter().map(|&k| eigen.eigenvalues[k].max(0.0)).collect();
        let axes =
            order.iter().flat_map(|&k| eigen.eigenvectors.column(k).iter().copied().collect::<Vec<_>>()).collect();
        Ok(Whitening { features: n, mean, axes, eigenvalues })
    }

    /// `λ`, decreasing.
    pub fn eigenvalues(&self) -> &[f64] {
        &self.eigenvalues
    }

    /// The fewest leading components that keep at least `fraction` of the variance.
    pub fn components_for_variance(&self, fraction: f64) -> usize {
        let total: f64 = self.eigenvalues.iter().sum();
        let mut kept = 0.0;
        for (k, &l) in self.eigenvalues.iter().enumerate() {
            kept += l;
            if kept >= fraction * total {
                return k + 1;
            }
        }
        self.eigenvalues.len()
    }

    /// PCA-whitens `m` examples (rows of `values`) onto the first `components` axes: `m ×
    /// components`, one example per row.
    pub fn pca_white(&self, values: &[f64], components: usize, epsilon: f64) -> Result<Vec<f64>> {
        let n = self.features;
        if components == 0 || components > n || !values.len().is_multiple_of(n) {
            return Err(Error::shape_mismatch(
                "PCA whitening",
                format!("1 ≤ components ≤ {n}, rows of {n} values"),
                format!("{components} components, {} values", values.len()),
            ));
        }
        let m = values.len() / n;
        let centered: Vec<f64> =
            values.chunks_exact(n).flat_map(|row| row.iter().zip(&self.mean).map(|(v, u)| v - u)).collect();
        // out (components×m column-major) = U_kᵀ Xc.
        let mut out = vec![0.0; components * m];
        let axes = MatRef::col_major(&self.axes[..n * components], n, components);
        gemm(
            Backend::preferred(),
            1.0,
            axes.t(),
            MatRef::col_major(&centered, n, m),
            0.0,
            MatMut::col_major(&mut out, components, m),
        );
        for example in out.chunks_exact_mut(components) {
            for (v, &l) in example.iter_mut().zip(&self.eigenvalues) {
                *v /= (l + epsilon).sqrt();
            }
        }
        Ok(out)
    }

    /// ZCA-whitens `m` examples: `m×n`, one example per row.
    pub fn zca_white(&self, values: &[f64], epsilon: f64) -> Result<Vec<f64>> {
        let n = self.features;
        let white = self.pca_white(values, n, epsilon)?;
        let m = white.len() / n;
        let mut out = vec![0.0; n * m];
        gemm(
            Backend::preferred(),
            1.0,
            MatRef::col_major(&self.axes, n, n),
            MatRef::col_major(&white, n, m),
            0.0,
            MatMut::col_major(&mut out, n, m),
        );
        Ok(out)
    }
}
