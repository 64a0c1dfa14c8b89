//! The generic bodies of the vector kernels, written once over [`Lanes`], a SIMD vector of
//! `WIDTH` elements. Each instruction set implements `Lanes` for f32 and f64 and wraps these
//! bodies in `#[target_feature]` functions; the bodies are `#[inline(always)]` so that they are
//! compiled with that instruction set enabled.
//!
//! Reductions are accumulated in f64 lanes whatever the element type.

use crate::real::Real;

/// A SIMD vector of `WIDTH` values of `Elem`, and an f64 accumulator for its sums.
///
/// # Safety
/// Implementations use instructions that the CPU must support: every method may only be called
/// from a function compiled for (and run on a CPU with) the implementation's instruction set.
/// `load`/`store` read and write `WIDTH` elements at the pointer.
pub(crate) unsafe trait Lanes: Copy {
    type Elem: Real;
    /// f64 partial sums of vectors of `Self`.
    type Acc: Copy;
    const WIDTH: usize;

    unsafe fn splat(x: Self::Elem) -> Self;
    unsafe fn load(p: *const Self::Elem) -> Self;
    unsafe fn store(self, p: *mut Self::Elem);
    unsafe fn add(self, o: Self) -> Self;
    unsafe fn sub(self, o: Self) -> Self;
    unsafe fn mul(self, o: Self) -> Self;
    unsafe fn div(self, o: Self) -> Self;
    unsafe fn neg(self) -> Self;
    /// `e^x`, to a few ulp, saturating to 0 and +inf; NaN propagates.
    unsafe fn exp(self) -> Self;

    unsafe fn acc_zero() -> Self::Acc;
    unsafe fn acc_add(acc: Self::Acc, v: Self) -> Self::Acc;
    unsafe fn acc_sum(acc: Self::Acc) -> f64;
    /// `sums[0..WIDTH] += v` in f64.
    unsafe fn add_to_f64(v: Self, sums: *mut f64);
}

#[inline(always)]
unsafe fn sigmoid<V: Lanes>(z: V) -> V {
    let one = V::splat(<V::Elem as num_traits::One>::one());
    one.div(one.add(z.neg().exp()))
}

// No closures below: a closure is compiled as a function of its own, without the caller's
// `#[target_feature]`, and the intrinsics inside it would not be inlined.

/// Loads `src` (shorter than `WIDTH`) into the low lanes of a vector, zeros above.
#[inline(always)]
unsafe fn load_partial<V: Lanes>(src: &[V::Elem]) -> V {
    let mut buf = [<V::Elem as Default>::default(); MAX_WIDTH];
    buf[..src.len()].copy_from_slice(src);
    V::load(buf.as_ptr())
}

/// Stores the low `dst.len()` lanes of `v` into `dst`.
#[inline(always)]
unsafe fn store_partial<V: Lanes>(v: V, dst: &mut [V::Elem]) {
    let mut buf = [<V::Elem as Default>::default(); MAX_WIDTH];
    v.store(buf.as_mut_ptr());
    dst.copy_from_slice(&buf[..dst.len()]);
}

/// The widest vector of the supported instruction sets, in elements.
const MAX_WIDTH: usize = 16;

/// Adds the first `valid` lanes of `v` to `acc`.
#[inline(always)]
unsafe fn accumulate_partial<V: Lanes>(acc: V::Acc, v: V, valid: usize) -> V::Acc {
    let mut lanes = [<V::Elem as Default>::default(); MAX_WIDTH];
    v.store(lanes.as_mut_ptr());
    lanes[valid..V::WIDTH].fill(<V::Elem as Default>::default());
    V::acc_add(acc, V::load(lanes.as_ptr()))
}

#[inline(always)]
pub(crate) unsafe fn exp<V: Lanes>(v: &mut [V::Elem]) {
    let body = v.len() - v.len() % V::WIDTH;
    let p = v.as_mut_ptr();
    for i in (0..body).step_by(V::WIDTH) {
        V::load(p.add(i)).exp().store(p.add(i));
    }
    let tail = &mut v[body..];
    if !tail.is_empty() {
        store_partial(load_partial::<V>(tail).exp(), tail);
    }
}

#[inline(always)]
pub(crate) unsafe fn sigmoid_sum<V: Lanes>(z: &mut [V::Elem]) -> f64 {
    let mut sum = V::acc_zero();
    let body = z.len() - z.len() % V::WIDTH;
    let p = z.as_mut_ptr();
    for i in (0..body).step_by(V::WIDTH) {
        let a = sigmoid(V::load(p.add(i)));
        a.store(p.add(i));
        sum = V::acc_add(sum, a);
    }
    let tail = &mut z[body..];
    if !tail.is_empty() {
        let a = sigmoid(load_partial::<V>(tail));
        store_partial(a, tail);
        sum = accumulate_partial(sum, a, tail.len());
    }
    V::acc_sum(sum)
}

/// `(delta3, a3 − x)` for `z3`, `x`.
#[inline(always)]
unsafe fn output_delta<V: Lanes>(z: V, x: V) -> (V, V) {
    let one = V::splat(<V::Elem as num_traits::One>::one());
    let a = sigmoid(z);
    let diff = a.sub(x);
    (diff.mul(a).mul(one.sub(a)), diff)
}

#[inline(always)]
pub(crate) unsafe fn output_delta_row<V: Lanes>(z: &mut [V::Elem], x: &[V::Elem]) -> (f64, f64) {
    assert_eq!(z.len(), x.len());
    let (mut squared_error, mut delta_sum) = (V::acc_zero(), V::acc_zero());
    let body = z.len() - z.len() % V::WIDTH;
    let (pz, px) = (z.as_mut_ptr(), x.as_ptr());
    for i in (0..body).step_by(V::WIDTH) {
        let (delta, diff) = output_delta(V::load(pz.add(i)), V::load(px.add(i)));
        delta.store(pz.add(i));
        squared_error = V::acc_add(squared_error, diff.mul(diff));
        delta_sum = V::acc_add(delta_sum, delta);
    }
    let tail = &mut z[body..];
    if !tail.is_empty() {
        let (delta, diff) = output_delta(load_partial::<V>(tail), load_partial::<V>(&x[body..]));
        store_partial(delta, tail);
        squared_error = accumulate_partial(squared_error, diff.mul(diff), tail.len());
        delta_sum = accumulate_partial(delta_sum, delta, tail.len());
    }
    (V::acc_sum(squared_error), V::acc_sum(delta_sum))
}

#[inline(always)]
pub(crate) unsafe fn output_delta_col<V: Lanes>(z: &mut [V::Elem], x: &[V::Elem], delta_sums: &mut [f64]) -> f64 {
    assert!(z.len() == x.len() && z.len() == delta_sums.len());
    let mut squared_error = V::acc_zero();
    let body = z.len() - z.len() % V::WIDTH;
    let (pz, px, ps) = (z.as_mut_ptr(), x.as_ptr(), delta_sums.as_mut_ptr());
    for i in (0..body).step_by(V::WIDTH) {
        let (delta, diff) = output_delta(V::load(pz.add(i)), V::load(px.add(i)));
        delta.store(pz.add(i));
        squared_error = V::acc_add(squared_error, diff.mul(diff));
        V::add_to_f64(delta, ps.add(i));
    }
    let tail = &mut z[body..];
    if !tail.is_empty() {
        let (delta, diff) = output_delta(load_partial::<V>(tail), load_partial::<V>(&x[body..]));
        store_partial(delta, tail);
        squared_error = accumulate_partial(squared_error, diff.mul(diff), tail.len());
        for (sum, d) in delta_sums[body..].iter_mut().zip(tail.iter()) {
            *sum += d.as_f64();
        }
    }
    V::acc_sum(squared_error)
}

#[inline(always)]
pub(crate) unsafe fn hidden_delta_sum<V: Lanes>(p: &mut [V::Elem], a2: &[V::Elem]) -> f64 {
    assert_eq!(p.len(), a2.len());
    let one = V::splat(<V::Elem as num_traits::One>::one());
    let mut sum = V::acc_zero();
    let body = p.len() - p.len() % V::WIDTH;
    let (pp, pa) = (p.as_mut_ptr(), a2.as_ptr());
    for i in (0..body).step_by(V::WIDTH) {
        let a = V::load(pa.add(i));
        let delta = V::load(pp.add(i)).mul(a).mul(one.sub(a));
        delta.store(pp.add(i));
        sum = V::acc_add(sum, delta);
    }
    let tail = &mut p[body..];
    if !tail.is_empty() {
        let a = load_partial::<V>(&a2[body..]);
        let delta = load_partial::<V>(tail).mul(a).mul(one.sub(a));
        store_partial(delta, tail);
        sum = accumulate_partial(sum, delta, tail.len());
    }
    V::acc_sum(sum)
}
