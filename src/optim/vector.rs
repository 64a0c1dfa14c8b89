//! The vector arithmetic of the optimisers beyond the SIMD kernels (`dot`, `axpy` of
//! [`Kernels`](crate::kernels::Kernels)).

/// `max_i |x_i|`
pub fn max_abs(x: &[f64]) -> f64 {
    x.iter().fold(0.0, |m, v| m.max(v.abs()))
}
