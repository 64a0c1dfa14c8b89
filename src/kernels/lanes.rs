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

/// Runs `body` over `WIDTH`-wide vectors of `a` and, when given, the equal-length `b`; then
/// once over the tail, zero-padded in stack buffers. `body` gets the number of valid lanes; its
/// second pointer is null when `b` is `None`.
#[inline(always)]
unsafe fn for_each_vector<V: Lanes>(
    a: &mut [V::Elem],
    b: Option<&[V::Elem]>,
    mut body: impl FnMut(*mut V::Elem, *const V::Elem, usize),
) {
    let len = a.len();
    debug_assert!(b.is_none_or(|b| b.len() == len));
    let body_len = len - len % V::WIDTH;
    let pa = a.as_mut_ptr();
    let pb = b.map_or(std::ptr::null(), <[V::Elem]>::as_ptr);
    let mut i = 0;
    while i < body_len {
        body(pa.add(i), if pb.is_null() { pb } else { pb.add(i) }, V::WIDTH);
        i += V::WIDTH;
    }
    let tail = len - body_len;
    if tail > 0 {
        // 16 lanes: the widest vector of the supported instruction sets.
        let mut buf_a = [<V::Elem as Default>::default(); 16];
        let mut buf_b = [<V::Elem as Default>::default(); 16];
        buf_a[..tail].copy_from_slice(&a[body_len..]);
        if let Some(b) = b {
            buf_b[..tail].copy_from_slice(&b[body_len..]);
        }
        let pb_tail = if pb.is_null() { pb } else { buf_b.as_ptr() };
        body(buf_a.as_mut_ptr(), pb_tail, tail);
        a[body_len..].copy_from_slice(&buf_a[..tail]);
    }
}

/// Sums the first `valid` lanes of `v` into `acc`: all of them for a full vector.
#[inline(always)]
unsafe fn accumulate<V: Lanes>(acc: V::Acc, v: V, valid: usize) -> V::Acc {
    if valid == V::WIDTH {
        return V::acc_add(acc, v);
    }
    let mut lanes = [<V::Elem as Default>::default(); 16];
    v.store(lanes.as_mut_ptr());
    lanes[valid..V::WIDTH].fill(<V::Elem as Default>::default());
    V::acc_add(acc, V::load(lanes.as_ptr()))
}

#[inline(always)]
pub(crate) unsafe fn exp<V: Lanes>(v: &mut [V::Elem]) {
    let len = v.len();
    let body_len = len - len % V::WIDTH;
    let p = v.as_mut_ptr();
    let mut i = 0;
    while i < body_len {
        V::load(p.add(i)).exp().store(p.add(i));
        i += V::WIDTH;
    }
    for x in &mut v[body_len..] {
        let mut buf = [*x; 16];
        V::load(buf.as_ptr()).exp().store(buf.as_mut_ptr());
        *x = buf[0];
    }
}

#[inline(always)]
pub(crate) unsafe fn sigmoid_sum<V: Lanes>(z: &mut [V::Elem]) -> f64 {
    let mut acc = V::acc_zero();
    for_each_vector::<V>(z, None, |pz, _, valid| {
        let a = sigmoid(V::load(pz));
        a.store(pz);
        acc = accumulate(acc, a, valid);
    });
    V::acc_sum(acc)
}

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
    for_each_vector::<V>(z, Some(x), |pz, px, valid| {
        let (delta, diff) = output_delta(V::load(pz), V::load(px));
        delta.store(pz);
        squared_error = accumulate(squared_error, diff.mul(diff), valid);
        delta_sum = accumulate(delta_sum, delta, valid);
    });
    (V::acc_sum(squared_error), V::acc_sum(delta_sum))
}

#[inline(always)]
pub(crate) unsafe fn output_delta_col<V: Lanes>(
    z: &mut [V::Elem],
    x: &[V::Elem],
    delta_sums: &mut [f64],
) -> f64 {
    assert!(z.len() == x.len() && z.len() == delta_sums.len());
    let mut squared_error = V::acc_zero();
    let sums = delta_sums.as_mut_ptr();
    let mut offset = 0;
    for_each_vector::<V>(z, Some(x), |pz, px, valid| {
        let (delta, diff) = output_delta(V::load(pz), V::load(px));
        delta.store(pz);
        squared_error = accumulate(squared_error, diff.mul(diff), valid);
        if valid == V::WIDTH {
            V::add_to_f64(delta, sums.add(offset));
        } else {
            for k in 0..valid {
                *sums.add(offset + k) += (*pz.add(k)).as_f64();
            }
        }
        offset += valid;
    });
    V::acc_sum(squared_error)
}

#[inline(always)]
pub(crate) unsafe fn hidden_delta_sum<V: Lanes>(p: &mut [V::Elem], a2: &[V::Elem]) -> f64 {
    assert_eq!(p.len(), a2.len());
    let one = V::splat(<V::Elem as num_traits::One>::one());
    let mut sum = V::acc_zero();
    for_each_vector::<V>(p, Some(a2), |pp, pa, valid| {
        let a = V::load(pa);
        let delta = V::load(pp).mul(a).mul(one.sub(a));
        delta.store(pp);
        sum = accumulate(sum, delta, valid);
    });
    V::acc_sum(sum)
}
