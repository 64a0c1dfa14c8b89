//! Portable scalar twins of the SIMD kernels: the standard library's `exp`, one element at a
//! time, f64 accumulation. They define what the vector kernels must compute.

use crate::real::Real;

/// `σ(z) = 1 / (1 + e^{-z})`, exact to the standard library's `exp`; saturates to 0 and 1.
#[inline]
pub fn sigmoid<T: Real>(z: T) -> T {
    T::one() / (T::one() + (-z).exp())
}

/// `v ← e^v`, elementwise.
pub fn exp<T: Real>(v: &mut [T]) {
    for x in v {
        *x = x.exp();
    }
}

/// `z ← σ(z)` in place; returns `Σ σ(z)`.
pub fn sigmoid_sum<T: Real>(z: &mut [T]) -> f64 {
    let mut sum = 0.0;
    for zi in z {
        *zi = sigmoid(*zi);
        sum += zi.as_f64();
    }
    sum
}

/// One output unit over a run of examples (a row segment of `z3`, `X`):
/// `a3 = σ(z3)`, `z3 ← delta3 = (a3 − x) a3 (1 − a3)`; returns `(Σ (a3 − x)², Σ delta3)`.
pub fn output_delta_row<T: Real>(z: &mut [T], x: &[T]) -> (f64, f64) {
    assert_eq!(z.len(), x.len());
    let (mut squared_error, mut delta_sum) = (0.0, 0.0);
    for (zi, &xi) in z.iter_mut().zip(x) {
        let a = sigmoid(*zi);
        let diff = a - xi;
        let delta = diff * a * (T::one() - a);
        *zi = delta;
        squared_error += diff.as_f64() * diff.as_f64();
        delta_sum += delta.as_f64();
    }
    (squared_error, delta_sum)
}

/// One example over all output units (a column of `z3`, `X`): as [`output_delta_row`], but
/// `delta_sums[k] += delta3[k]`; returns `Σ (a3 − x)²`.
pub fn output_delta_col<T: Real>(z: &mut [T], x: &[T], delta_sums: &mut [f64]) -> f64 {
    assert!(z.len() == x.len() && z.len() == delta_sums.len());
    let mut squared_error = 0.0;
    for ((zi, &xi), sum) in z.iter_mut().zip(x).zip(delta_sums) {
        let a = sigmoid(*zi);
        let diff = a - xi;
        let delta = diff * a * (T::one() - a);
        *zi = delta;
        squared_error += diff.as_f64() * diff.as_f64();
        *sum += delta.as_f64();
    }
    squared_error
}

/// One hidden unit over a run of examples: `p ← delta2 = p a2 (1 − a2)`; returns `Σ delta2`.
pub fn hidden_delta_sum<T: Real>(p: &mut [T], a2: &[T]) -> f64 {
    assert_eq!(p.len(), a2.len());
    let mut sum = 0.0;
    for (pi, &a) in p.iter_mut().zip(a2) {
        *pi = *pi * a * (T::one() - a);
        sum += pi.as_f64();
    }
    sum
}

/// One hidden unit's run with the sparsity delta deferred (SPEC §2.2):
/// `f ← F = a2 (1 − a2)`, `p ← P = p F` (`p` holds `W2ᵀ delta3`); returns `(Σ P, Σ F)`.
pub fn hidden_delta_deferred<T: Real>(p: &mut [T], a2: &[T], f: &mut [T]) -> (f64, f64) {
    assert!(p.len() == a2.len() && p.len() == f.len());
    let (mut p_sum, mut f_sum) = (0.0, 0.0);
    for ((pi, &a), fi) in p.iter_mut().zip(a2).zip(f) {
        *fi = a * (T::one() - a);
        *pi = *pi * *fi;
        p_sum += pi.as_f64();
        f_sum += fi.as_f64();
    }
    (p_sum, f_sum)
}

/// `Σ a_i b_i`, accumulated in f64.
pub fn dot<T: Real>(a: &[T], b: &[T]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| x.as_f64() * y.as_f64()).sum()
}

/// `y ← α x + y`.
pub fn axpy<T: Real>(alpha: T, x: &[T], y: &mut [T]) {
    assert_eq!(x.len(), y.len());
    for (y, &x) in y.iter_mut().zip(x) {
        *y = alpha.mul_add(x, *y);
    }
}
