//! Portable scalar twins of the SIMD kernels: the standard library's `exp`, one element at a
//! time, f64 accumulation. They define what the vector kernels must compute.

use std::marker::PhantomData;

use super::units::{Reconstruction, ReconstructionEntry, Unit, UnitEntry};
use super::{AdamStep, HiddenKernels, OutputKernels, COLLECT_GROUP};
use crate::gemm::{MatMut, MatRef};
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

/// The maker of this set's table entries for element type `T`.
pub(crate) struct Entries<T>(PhantomData<T>);

impl<T> Entries<T> {
    pub(crate) fn new() -> Self {
        Entries(PhantomData)
    }
}

impl<T: Real> UnitEntry for Entries<T> {
    type Entry = HiddenKernels<T>;
    fn build<U: Unit>(&self) -> HiddenKernels<T> {
        hidden::<U, T>()
    }
}

impl<T: Real> ReconstructionEntry for Entries<T> {
    type Entry = OutputKernels<T>;
    fn build<R: Reconstruction>(&self) -> OutputKernels<T> {
        output::<R, T>()
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
    OutputKernels { delta: output_delta::<R, T> }
}

/// `z ← f(z + bias)` in place; returns the sum of the activations.
fn activate_sum<U: Unit, T: Real>(z: &mut [T], bias: T) -> f64 {
    let mut sum = 0.0;
    for zi in z {
        *zi = U::activate(*zi + bias);
        sum += zi.as_f64();
    }
    sum
}

/// The output layer on a block of `z3` against `x` (see [`OutputKernels::delta`]), one
/// element at a time: `z3 ← delta3` at `z3 + b2 1ᵀ`, `delta_sums[k] += Σ_j delta3[k, j]`;
/// returns `Σ loss`.
fn output_delta<R: Reconstruction, T: Real>(mut z: MatMut<'_, T>, x: MatRef<'_, T>, b: &[T], sums: &mut [f64]) -> f64 {
    super::check_output_block(&z, &x, b, sums);
    let (rows, cols) = (z.rows(), z.cols());
    let ((zr, zc), (xr, xc)) = (z.strides(), x.strides());
    let (z, x) = (z.as_mut_slice(), x.as_slice());
    let mut loss = 0.0;
    for j in 0..cols {
        for (i, (&bias, sum)) in b.iter().zip(sums.iter_mut()).enumerate().take(rows) {
            let z = &mut z[i * zr + j * zc];
            let (delta, l) = R::delta_loss(*z + bias, x[i * xr + j * xc]);
            *z = delta;
            loss += l.as_f64();
            *sum += delta.as_f64();
        }
    }
    loss
}

/// One hidden unit over a run of examples: `p ← delta2 = (p + s) f'`; returns `Σ delta2`.
fn hidden_delta_sum<U: Unit, T: Real>(p: &mut [T], a2: &[T], s: T) -> f64 {
    assert_eq!(p.len(), a2.len());
    let mut sum = 0.0;
    for (pi, &a) in p.iter_mut().zip(a2) {
        *pi = (*pi + s) * U::derivative(a);
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

/// `y ← α x + y`, then `Σ z_i y_i` of the updated `y`.
pub fn axpy_dot<T: Real>(alpha: T, x: &[T], y: &mut [T], z: &[T]) -> f64 {
    axpy(alpha, x, y);
    dot(z, y)
}

/// `y ← α x + y`, and `Σ z_i x_i` of the `x` it reads.
pub fn axpy_and_dot<T: Real>(alpha: T, x: &[T], y: &mut [T], z: &[T]) -> f64 {
    axpy(alpha, x, y);
    dot(z, x)
}

/// Appends `(values[i] + shift[i], from + i)` for each `i` where the sum is greater than
/// `threshold`, in order, [`COLLECT_GROUP`] positions at a time, stopping before a group when
/// fewer than `COLLECT_GROUP` slots of `collected` are left; returns the positions scanned and
/// the candidates appended.
pub fn collect_above<T: Real>(
    values: &[T],
    shift: &[T],
    threshold: T,
    from: u32,
    collected: &mut [(T, u32)],
) -> (usize, usize) {
    assert_eq!(values.len(), shift.len());
    assert!(u32::try_from(values.len()).is_ok_and(|len| from.checked_add(len).is_some()), "collect_above: positions");
    let (mut scanned, mut count) = (0, 0);
    for (group, (values, shift)) in values.chunks(COLLECT_GROUP).zip(shift.chunks(COLLECT_GROUP)).enumerate() {
        if collected.len() - count < COLLECT_GROUP {
            break;
        }
        for (i, (&v, &s)) in values.iter().zip(shift).enumerate() {
            if v + s > threshold {
                collected[count] = (v + s, from + (group * COLLECT_GROUP + i) as u32);
                count += 1;
            }
        }
        scanned += values.len();
    }
    (scanned, count)
}

/// The largest `values[i] + shift[i]`, NaN never taken; −∞ when there is none.
pub fn max_sum<T: Real>(values: &[T], shift: &[T]) -> T {
    assert_eq!(values.len(), shift.len());
    values.iter().zip(shift).map(|(&v, &s)| v + s).fold(T::neg_infinity(), |max, v| if v > max { v } else { max })
}

/// Adam's step on every element, with its first and second moments `m`, `v` and gradient `g`:
///
/// ```text
/// m ← β1 m + (1 − β1) g        v ← β2 v + ((1 − β2) g) g        x ← x − (η (m / c1)) / (√(v / c2) + ε)
/// ```
///
/// each operation rounded once, in this order and without fused multiply-adds — the one
/// definition of the arithmetic, which the vector kernels and [`crate::optim::StepUpdate`]
/// follow to the bit.
pub fn adam<T: num_traits::Float>(x: &mut [T], m: &mut [T], v: &mut [T], g: &[T], step: &AdamStep<T>) {
    assert!(m.len() == x.len() && v.len() == x.len() && g.len() == x.len(), "Adam: slices of different lengths");
    let (one_minus_beta1, one_minus_beta2) = (T::one() - step.beta1, T::one() - step.beta2);
    for (((x, m), v), &g) in x.iter_mut().zip(m).zip(v).zip(g) {
        *m = step.beta1 * *m + one_minus_beta1 * g;
        *v = step.beta2 * *v + one_minus_beta2 * g * g;
        *x = *x - step.learning_rate * (*m / step.c1) / ((*v / step.c2).sqrt() + step.epsilon);
    }
}

/// Nothing: a portable program has no way to ask for cache lines, and needs none to be right.
pub fn prefetch<T>(_values: &[T]) {}

/// `y ← α x + y`.
pub fn axpy<T: Real>(alpha: T, x: &[T], y: &mut [T]) {
    assert_eq!(x.len(), y.len());
    for (y, &x) in y.iter_mut().zip(x) {
        *y = alpha.mul_add(x, *y);
    }
}
