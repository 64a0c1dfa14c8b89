//! What the elementwise kernels are generic over: the hidden units' nonlinearity `f` (a
//! [`Unit`]) and the output layer's reconstruction loss (a [`Reconstruction`]). Each is written twice, for one scalar and for a
//! SIMD vector of [`Lanes`]; the kernels are compiled once per part, so the choice costs nothing
//! inside a pass (the engine picks a kernel table entry once per evaluation). These are the
//! kernel side of the model's parts (see `crate::objective::parts`).
//!
//! [`ByActivation`] and [`ByReconstruction`] are the one place a model's
//! [`Activation`](ActivationKind) or [`Reconstruction`](ReconstructionKind) meets its type here:
//! every kernel table (the scalar set, each instruction set's) is built through them.
//!
//! Derivatives are expressed through the activation `a = f(z)`, which the engine keeps, never
//! through `z`, which it overwrites.

use num_traits::{Float, One, Zero};

use super::lanes::{exp_lanes, log1p_lanes, ExpConstants, Lanes};
use crate::model::{Activation as ActivationKind, Reconstruction as ReconstructionKind};
use crate::real::Real;

/// The maker of a kernel table's entry for any hidden-unit nonlinearity.
pub(crate) trait UnitEntry {
    type Entry;
    fn build<U: Unit>(&self) -> Self::Entry;
}

/// The maker of a kernel table's entry for any reconstruction.
pub(crate) trait ReconstructionEntry {
    type Entry;
    fn build<R: Reconstruction>(&self) -> Self::Entry;
}

/// One table entry per [`ActivationKind`], by name.
#[derive(Clone, Copy)]
pub(crate) struct ByActivation<K> {
    sigmoid: K,
    tanh: K,
    relu: K,
}

impl<K: Copy> ByActivation<K> {
    /// The entries `maker` builds for each activation's unit.
    pub(crate) fn build<M: UnitEntry<Entry = K>>(maker: &M) -> Self {
        ByActivation { sigmoid: maker.build::<Sigmoid>(), tanh: maker.build::<Tanh>(), relu: maker.build::<Relu>() }
    }

    pub(crate) fn get(&self, activation: ActivationKind) -> K {
        match activation {
            ActivationKind::Sigmoid => self.sigmoid,
            ActivationKind::Tanh => self.tanh,
            ActivationKind::Relu => self.relu,
        }
    }
}

/// One table entry per [`ReconstructionKind`], by name.
#[derive(Clone, Copy)]
pub(crate) struct ByReconstruction<K> {
    sigmoid_squared_error: K,
    linear_squared_error: K,
    sigmoid_cross_entropy: K,
}

impl<K: Copy> ByReconstruction<K> {
    /// The entries `maker` builds for each reconstruction.
    pub(crate) fn build<M: ReconstructionEntry<Entry = K>>(maker: &M) -> Self {
        ByReconstruction {
            sigmoid_squared_error: maker.build::<SigmoidSquaredError>(),
            linear_squared_error: maker.build::<LinearSquaredError>(),
            sigmoid_cross_entropy: maker.build::<SigmoidCrossEntropy>(),
        }
    }

    pub(crate) fn get(&self, reconstruction: ReconstructionKind) -> K {
        match reconstruction {
            ReconstructionKind::SigmoidSquaredError => self.sigmoid_squared_error,
            ReconstructionKind::LinearSquaredError => self.linear_squared_error,
            ReconstructionKind::SigmoidCrossEntropy => self.sigmoid_cross_entropy,
        }
    }
}

/// A hidden-unit nonlinearity `a = f(z)`.
pub(crate) trait Unit {
    /// `f(z)`.
    fn activate<T: Real>(z: T) -> T;
    /// `f'(z)`, from `a`.
    fn derivative<T: Real>(a: T) -> T;
    /// `f''(z)`, from `a` and `d = f'(z)`.
    fn curvature<T: Real>(a: T, d: T) -> T;

    /// # Safety
    /// As every [`Lanes`] method: the caller is compiled for `V`'s instruction set.
    unsafe fn activate_lanes<V: Lanes>(z: V) -> V
    where
        V::Elem: ExpConstants;
    /// # Safety
    /// As [`Unit::activate_lanes`].
    unsafe fn derivative_lanes<V: Lanes>(a: V) -> V;
    /// # Safety
    /// As [`Unit::activate_lanes`].
    unsafe fn curvature_lanes<V: Lanes>(a: V, d: V) -> V;
}

fn two<T: Real>() -> T {
    T::one() + T::one()
}

/// `σ(z) = 1/(1 + e^{−z})`: `f' = a(1 − a)`, `f'' = f'(1 − 2a)`.
pub(crate) struct Sigmoid;

/// `tanh z = 2σ(2z) − 1` (computed so, sharing the sigmoid's `exp`): `f' = 1 − a²`,
/// `f'' = −2a f'`.
pub(crate) struct Tanh;

/// `max(z, 0)`: `f' = 1` where `a > 0`, else 0 (the derivative at 0 taken as 0); `f'' = 0`.
pub(crate) struct Relu;

impl Unit for Sigmoid {
    fn activate<T: Real>(z: T) -> T {
        super::scalar::sigmoid(z)
    }
    fn derivative<T: Real>(a: T) -> T {
        a * (T::one() - a)
    }
    fn curvature<T: Real>(a: T, d: T) -> T {
        d * (T::one() - two::<T>() * a)
    }
    #[inline(always)]
    unsafe fn activate_lanes<V: Lanes>(z: V) -> V
    where
        V::Elem: ExpConstants,
    {
        sigmoid_lanes(z)
    }
    #[inline(always)]
    unsafe fn derivative_lanes<V: Lanes>(a: V) -> V {
        a.mul(splat_one::<V>().sub(a))
    }
    #[inline(always)]
    unsafe fn curvature_lanes<V: Lanes>(a: V, d: V) -> V {
        let two = V::splat(two());
        d.mul(a.neg_mul_add(two, splat_one()))
    }
}

impl Unit for Tanh {
    fn activate<T: Real>(z: T) -> T {
        two::<T>() * super::scalar::sigmoid(two::<T>() * z) - T::one()
    }
    fn derivative<T: Real>(a: T) -> T {
        T::one() - a * a
    }
    fn curvature<T: Real>(a: T, d: T) -> T {
        -(two::<T>() * a * d)
    }
    #[inline(always)]
    unsafe fn activate_lanes<V: Lanes>(z: V) -> V
    where
        V::Elem: ExpConstants,
    {
        let two = V::splat(two());
        sigmoid_lanes(z.mul(two)).mul_add(two, splat_one::<V>().neg())
    }
    #[inline(always)]
    unsafe fn derivative_lanes<V: Lanes>(a: V) -> V {
        a.neg_mul_add(a, splat_one())
    }
    #[inline(always)]
    unsafe fn curvature_lanes<V: Lanes>(a: V, d: V) -> V {
        a.mul(d).mul(V::splat(-two::<V::Elem>()))
    }
}

impl Unit for Relu {
    fn activate<T: Real>(z: T) -> T {
        // `z < 0` is false for NaN, which passes through as the vector version's clamp does.
        if z < T::zero() {
            T::zero()
        } else {
            z
        }
    }
    fn derivative<T: Real>(a: T) -> T {
        if a > T::zero() {
            T::one()
        } else {
            T::zero()
        }
    }
    fn curvature<T: Real>(_a: T, _d: T) -> T {
        T::zero()
    }
    #[inline(always)]
    unsafe fn activate_lanes<V: Lanes>(z: V) -> V
    where
        V::Elem: ExpConstants,
    {
        z.clamp(V::splat(V::Elem::zero()), V::splat(V::Elem::infinity()))
    }
    #[inline(always)]
    unsafe fn derivative_lanes<V: Lanes>(a: V) -> V {
        a.positive_step()
    }
    #[inline(always)]
    unsafe fn curvature_lanes<V: Lanes>(_a: V, _d: V) -> V {
        V::splat(V::Elem::zero())
    }
}

/// The output layer and its loss for one output value `z3` against its target `x`:
/// `delta3 = ∂loss/∂z3` and the loss, to be scaled by the objective (`1/(2m)` for squared
/// error, `1/m` for cross-entropy).
pub(crate) trait Reconstruction {
    /// `(delta3, loss)`.
    fn delta_loss<T: Real>(z: T, x: T) -> (T, T);
    /// # Safety
    /// As [`Unit::activate_lanes`].
    unsafe fn delta_loss_lanes<V: Lanes>(z: V, x: V) -> (V, V)
    where
        V::Elem: ExpConstants;
}

/// `a3 = σ(z3)`, loss `(a3 − x)²`, `delta3 = (a3 − x) a3 (1 − a3)` (UFLDL's).
pub(crate) struct SigmoidSquaredError;

/// `a3 = z3`, loss `(a3 − x)²`, `delta3 = a3 − x` (for unbounded data).
pub(crate) struct LinearSquaredError;

/// `a3 = σ(z3)`, loss `−x ln a3 − (1 − x) ln(1 − a3) = max(z3, 0) − x z3 + ln(1 + e^{−|z3|})`
/// (the stable form: no logarithm of a rounded `a3`), `delta3 = a3 − x`.
pub(crate) struct SigmoidCrossEntropy;

impl Reconstruction for SigmoidSquaredError {
    fn delta_loss<T: Real>(z: T, x: T) -> (T, T) {
        let a = super::scalar::sigmoid(z);
        let diff = a - x;
        (diff * a * (T::one() - a), diff * diff)
    }
    #[inline(always)]
    unsafe fn delta_loss_lanes<V: Lanes>(z: V, x: V) -> (V, V)
    where
        V::Elem: ExpConstants,
    {
        let a = sigmoid_lanes(z);
        let diff = a.sub(x);
        (diff.mul(a).mul(splat_one::<V>().sub(a)), diff.mul(diff))
    }
}

impl Reconstruction for LinearSquaredError {
    fn delta_loss<T: Real>(z: T, x: T) -> (T, T) {
        let diff = z - x;
        (diff, diff * diff)
    }
    #[inline(always)]
    unsafe fn delta_loss_lanes<V: Lanes>(z: V, x: V) -> (V, V)
    where
        V::Elem: ExpConstants,
    {
        let diff = z.sub(x);
        (diff, diff.mul(diff))
    }
}

impl Reconstruction for SigmoidCrossEntropy {
    fn delta_loss<T: Real>(z: T, x: T) -> (T, T) {
        let t = (-z.abs()).exp();
        let a = if z.is_sign_negative() { t / (T::one() + t) } else { T::one() / (T::one() + t) };
        (a - x, z.max(T::zero()) - x * z + t.ln_1p())
    }
    #[inline(always)]
    unsafe fn delta_loss_lanes<V: Lanes>(z: V, x: V) -> (V, V)
    where
        V::Elem: ExpConstants,
    {
        // One exp for both: t = e^{−|z|}, σ(z) = 1/(1 + t) for z ≥ 0 and t/(1 + t) below.
        let one = splat_one::<V>();
        let t = exp_lanes(z.abs().neg());
        let inverse = one.div(one.add(t));
        let a = z.select_negative(t.mul(inverse), inverse);
        let positive_part = z.clamp(V::splat(V::Elem::zero()), V::splat(V::Elem::infinity()));
        let loss = x.neg_mul_add(z, positive_part).add(log1p_lanes(t));
        (a.sub(x), loss)
    }
}

#[inline(always)]
unsafe fn splat_one<V: Lanes>() -> V {
    V::splat(V::Elem::one())
}

/// `σ(z) = 1/(1 + e^{−z})`.
#[inline(always)]
pub(crate) unsafe fn sigmoid_lanes<V: Lanes>(z: V) -> V
where
    V::Elem: ExpConstants,
{
    let one = splat_one::<V>();
    one.div(one.add(exp_lanes(z.neg())))
}
