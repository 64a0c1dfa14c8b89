//! Portable scalar twins of the SIMD kernels: the standard library's `exp`, one element at a
//! time, f64 accumulation. They define what the vector kernels must compute.

use super::units::{Reconstruction, Unit};
use super::{HiddenKernels, OutputKernels};
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

/// The hidden-layer kernels of unit `U`, as a table entry.
pub(crate) fn hidden<U: Unit, T: Real>() -> HiddenKernels<T> {
    HiddenKernels {
        activate_sum: activate_sum::<U, T>,
        delta_sum: hidden_delta_sum::<U, T>,
        delta_deferred: hidden_delta_deferred::<U, T>,
        contractive_delta: contractive_delta::<U, T>,
    }
}

/// The output-layer kernels of `R`, as a table entry.
pub(crate) fn output<R: Reconstruction, T: Real>() -> OutputKernels<T> {
    OutputKernels { delta_row: output_delta_row::<R, T>, delta_col: output_delta_col::<R, T> }
}

/// `z ← f(z)` in place; returns `Σ f(z)`.
fn activate_sum<U: Unit, T: Real>(z: &mut [T]) -> f64 {
    let mut sum = 0.0;
    for zi in z {
        *zi = U::activate(*zi);
        sum += zi.as_f64();
    }
    sum
}

/// One output unit over a run of examples (a row segment of `z3`, `X`):
/// `z3 ← delta3`; returns `(Σ loss, Σ delta3)`.
fn output_delta_row<R: Reconstruction, T: Real>(z: &mut [T], x: &[T]) -> (f64, f64) {
    assert_eq!(z.len(), x.len());
    let (mut loss, mut delta_sum) = (0.0, 0.0);
    for (zi, &xi) in z.iter_mut().zip(x) {
        let (delta, l) = R::delta_loss(*zi, xi);
        *zi = delta;
        loss += l.as_f64();
        delta_sum += delta.as_f64();
    }
    (loss, delta_sum)
}

/// One example over all output units (a column of `z3`, `X`): as [`output_delta_row`], but
/// `delta_sums[k] += delta3[k]`; returns `Σ loss`.
fn output_delta_col<R: Reconstruction, T: Real>(z: &mut [T], x: &[T], delta_sums: &mut [f64]) -> f64 {
    assert!(z.len() == x.len() && z.len() == delta_sums.len());
    let mut loss = 0.0;
    for ((zi, &xi), sum) in z.iter_mut().zip(x).zip(delta_sums) {
        let (delta, l) = R::delta_loss(*zi, xi);
        *zi = delta;
        loss += l.as_f64();
        *sum += delta.as_f64();
    }
    loss
}

/// One hidden unit over a run of examples: `p ← delta2 = p f'`; returns `Σ delta2`.
fn hidden_delta_sum<U: Unit, T: Real>(p: &mut [T], a2: &[T]) -> f64 {
    assert_eq!(p.len(), a2.len());
    let mut sum = 0.0;
    for (pi, &a) in p.iter_mut().zip(a2) {
        *pi = *pi * U::derivative(a);
        sum += pi.as_f64();
    }
    sum
}

/// One hidden unit's run with the sparsity delta deferred (SPEC §2.2):
/// `f ← F = f'`, `p ← P = p F` (`p` holds `W2ᵀ delta3`); returns `(Σ P, Σ F)`.
fn hidden_delta_deferred<U: Unit, T: Real>(p: &mut [T], a2: &[T], f: &mut [T]) -> (f64, f64) {
    assert!(p.len() == a2.len() && p.len() == f.len());
    let (mut p_sum, mut f_sum) = (0.0, 0.0);
    for ((pi, &a), fi) in p.iter_mut().zip(a2).zip(f) {
        *fi = U::derivative(a);
        *pi = *pi * *fi;
        p_sum += pi.as_f64();
        f_sum += fi.as_f64();
    }
    (p_sum, f_sum)
}

/// One hidden unit's run of the contractive penalty: `p ← p + c f' f''`; returns
/// `(Σ c f' f'', Σ f'²)`.
fn contractive_delta<U: Unit, T: Real>(p: &mut [T], a2: &[T], c: T) -> (f64, f64) {
    assert_eq!(p.len(), a2.len());
    let (mut added_sum, mut squared_sum) = (0.0, 0.0);
    for (pi, &a) in p.iter_mut().zip(a2) {
        let d = U::derivative(a);
        let added = c * d * U::curvature(a, d);
        *pi = *pi + added;
        added_sum += added.as_f64();
        squared_sum += (d * d).as_f64();
    }
    (added_sum, squared_sum)
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
