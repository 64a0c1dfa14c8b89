//! The generic bodies of the vector kernels, written once over [`Lanes`], a SIMD vector of
//! `WIDTH` elements. Each instruction set implements `Lanes` for f32 and f64 and wraps these
//! bodies in `#[target_feature]` functions; the bodies are `#[inline(always)]` so that they are
//! compiled with that instruction set enabled.
//!
//! Reductions are accumulated in f64 lanes whatever the element type.

use super::units::{Reconstruction, Unit};
use super::{AdamStep, COLLECT_GROUP};
use crate::gemm::{MatMut, MatRef};
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
    /// `√self`, correctly rounded (as the scalar `sqrt`).
    unsafe fn sqrt(self) -> Self;
    unsafe fn neg(self) -> Self;
    /// `self · a + b`, fused.
    unsafe fn mul_add(self, a: Self, b: Self) -> Self;
    /// `−(self · a) + b`, fused.
    unsafe fn neg_mul_add(self, a: Self, b: Self) -> Self;
    /// `min(max(self, lo), hi)`, with NaN passing through.
    unsafe fn clamp(self, lo: Self, hi: Self) -> Self;
    /// `|self|`.
    unsafe fn abs(self) -> Self;
    /// `if_negative` in the lanes where `self`'s sign bit is set (−0 included), else
    /// `otherwise`.
    unsafe fn select_negative(self, if_negative: Self, otherwise: Self) -> Self;
    /// 1 in the lanes where `self > 0`, else 0 (NaN included).
    unsafe fn positive_step(self) -> Self;
    /// Bit `i` set where lane `i` of `self` is greater than lane `i` of `o` (false for NaN).
    unsafe fn greater_mask(self, o: Self) -> u32;
    /// `self` in the lanes where it is greater than `o`, else `o` (so a NaN in `self` is
    /// never taken).
    unsafe fn max_over(self, o: Self) -> Self;
    /// `self · 2^⌊n⌋` for `−2044 ≤ n ≤ 2046` (`−252 ≤ n ≤ 254` in f32), rounded once or twice
    /// by IEEE multiplication (so overflow gives inf and subnormal results are kept).
    unsafe fn ldexp(self, n: Self) -> Self;
    /// `b`: the [`exp_lanes`] of this instruction set looks `2^{j/N}` up in a table of
    /// `N = 2^b` entries held in registers (0, the default: no table).
    const EXP_TABLE_BITS: u32 = 0;
    /// `(hi, lo)` with `hi + lo = 2^{j/N}` to twice the element precision, `j` the low
    /// `EXP_TABLE_BITS` bits of each lane's bit pattern (`N = 2^EXP_TABLE_BITS`); by default,
    /// the table of one entry, `2^0 = 1 + 0`.
    unsafe fn exp2_fraction(_index: Self) -> (Self, Self) {
        (Self::splat(<Self::Elem as num_traits::One>::one()), Self::splat(<Self::Elem as num_traits::Zero>::zero()))
    }

    unsafe fn acc_zero() -> Self::Acc;
    unsafe fn acc_add(acc: Self::Acc, v: Self) -> Self::Acc;
    unsafe fn acc_sum(acc: Self::Acc) -> f64;
    /// `sums[0..WIDTH] += v` in f64.
    unsafe fn add_to_f64(v: Self, sums: *mut f64);
}

/// The constants of the vectorised `exp` for one element type.
pub(crate) trait ExpConstants: Real {
    /// Clamp bounds just beyond where `e^x` underflows to 0 and overflows to inf.
    const LO: Self;
    const HI: Self;
    /// `1.5 · 2^p` (`p` the mantissa width): adding it rounds to an integer.
    const MAGIC: Self;
    /// `ln 2 = LN2_HI + LN2_LO`, `LN2_HI` with few enough bits that `n · LN2_HI` is exact
    /// for `|n| ≤ 16 · 1100`.
    const LN2_HI: Self;
    const LN2_LO: Self;
    /// Taylor coefficients `1/k!` of `e^r`, highest degree first, down to `k = 0`, as many as
    /// [`taylor_degree`] asks for without a table (`|r| ≤ ln2/2`; checked at compile time).
    const TAYLOR: &'static [Self];
    /// The bits of the significand (24 and 53).
    const SIGNIFICAND_BITS: u32;
    /// `2^{j/16} = EXP2_HI[j] + EXP2_LO[j]`, to twice the element precision; a table of
    /// `N < 16` entries takes every `16/N`-th.
    const EXP2_HI: [Self; 16];
    const EXP2_LO: [Self; 16];
    /// `1/(2k + 1)`, highest `k` first, down to `k = 0`: the series of `atanh u / u` in `u²`,
    /// long enough for 0.1 ulp at `u ≤ 1/3` (see [`log1p_lanes`]).
    const ATANH_SERIES: &'static [Self];
}

impl ExpConstants for f32 {
    const LO: f32 = -104.0;
    const HI: f32 = 89.0;
    const MAGIC: f32 = 12_582_912.0;
    const LN2_HI: f32 = 355.0 / 512.0;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const TAYLOR: &'static [f32] = &[1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0];
    const SIGNIFICAND_BITS: u32 = f32::MANTISSA_DIGITS;
    const EXP2_HI: [f32; 16] = [
        1.0,
        1.044_273_7,
        1.090_507_7,
        1.138_788_6,
        1.189_207_1,
        1.241_857_8,
        1.296_839_6,
        1.354_255_6,
        std::f32::consts::SQRT_2,
        1.476_826_2,
        1.542_210_8,
        1.610_490_3,
        1.681_792_9,
        1.756_252_2,
        1.834_008_1,
        1.915_206_6,
    ];
    const EXP2_LO: [f32; 16] = [
        0.0,
        4.833_47e-8,
        -1.307_754e-8,
        5.386_222_3e-8,
        3.797_635_3e-8,
        4.496_838e-8,
        -4.018_999_5e-8,
        -1.012_334_9e-8,
        2.420_323_5e-8,
        -4.500_899e-8,
        8.070_905e-9,
        9.836_217e-9,
        -2.475_532_7e-8,
        -9.235_77e-9,
        -1.123_927_8e-8,
        9.845_328e-9,
    ];
    const ATANH_SERIES: &'static [f32] =
        &[1.0 / 15.0, 1.0 / 13.0, 1.0 / 11.0, 1.0 / 9.0, 1.0 / 7.0, 1.0 / 5.0, 1.0 / 3.0, 1.0];
}

impl ExpConstants for f64 {
    const LO: f64 = -746.0;
    const HI: f64 = 710.0;
    const MAGIC: f64 = 6_755_399_441_055_744.0;
    const LN2_HI: f64 = 6.931_457_519_531_25e-1;
    const LN2_LO: f64 = 1.428_606_820_309_417_3e-6;
    const TAYLOR: &'static [f64] = &[
        1.0 / 6_227_020_800.0,
        1.0 / 479_001_600.0,
        1.0 / 39_916_800.0,
        1.0 / 3_628_800.0,
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ];
    const SIGNIFICAND_BITS: u32 = f64::MANTISSA_DIGITS;
    const EXP2_HI: [f64; 16] = [
        1.0,
        1.044_273_782_427_413_8,
        1.090_507_732_665_257_7,
        1.138_788_634_756_691_6,
        1.189_207_115_002_721,
        1.241_857_812_073_484,
        1.296_839_554_651_009_6,
        1.354_255_546_936_892_7,
        std::f64::consts::SQRT_2,
        1.476_826_145_939_499_3,
        1.542_210_825_407_940_7,
        1.610_490_331_949_254_3,
        1.681_792_830_507_429,
        1.756_252_160_373_299_5,
        1.834_008_086_409_342_4,
        1.915_206_561_397_147_4,
    ];
    const EXP2_LO: [f64; 16] = [
        0.0,
        8.551_889_705_537_965e-17,
        -3.046_782_079_812_471e-17,
        8.912_812_676_025_408e-17,
        3.982_015_231_465_646e-17,
        4.658_027_591_836_937e-17,
        2.538_250_279_488_831_5e-17,
        7.700_948_379_802_99e-17,
        -9.667_293_313_452_913e-17,
        -3.483_994_556_892_796e-17,
        7.949_834_809_697_621e-17,
        2.470_719_256_979_788_8e-17,
        8.199_010_020_581_497e-17,
        2.960_140_695_448_873e-17,
        3.283_107_224_245_627e-17,
        -1.061_994_605_619_596_3e-16,
    ];
    const ATANH_SERIES: &'static [f64] = &[
        1.0 / 31.0,
        1.0 / 29.0,
        1.0 / 27.0,
        1.0 / 25.0,
        1.0 / 23.0,
        1.0 / 21.0,
        1.0 / 19.0,
        1.0 / 17.0,
        1.0 / 15.0,
        1.0 / 13.0,
        1.0 / 11.0,
        1.0 / 9.0,
        1.0 / 7.0,
        1.0 / 5.0,
        1.0 / 3.0,
        1.0,
    ];
}

/// `e^x`, within 1 ulp of the standard library (measured by `src/kernels/tests.rs`), saturating
/// to 0 and +inf; NaN propagates.
///
/// `x = (n/N) ln2 + r` with `n = round(x N / ln2)` (rounded by adding and subtracting `MAGIC`,
/// which leaves `n` in the low mantissa bits of the sum), `|r| ≤ ln2/(2N)` after the two-part
/// (Cody–Waite) `ln2`; then `e^x = 2^⌊n/N⌋ · 2^{j/N} · e^r` with `j = n mod N` looked up in the
/// instruction set's table of `N = 2^EXP_TABLE_BITS` entries (16 on AVX-512: degree 7 rather
/// than 13 in f64). `2^{j/N} e^r` is summed as `hi + (hi (e^r − 1) + lo)`, so the table's
/// rounding stays below the final one. The clamp first makes ±inf and huge `|x|` land on 0
/// and +inf.
#[inline(always)]
pub(crate) unsafe fn exp_lanes<V: Lanes>(x: V) -> V
where
    V::Elem: ExpConstants,
{
    let c = |v: V::Elem| V::splat(v);
    let cast = <V::Elem as Real>::cast;
    let entries = f64::from(1u32 << V::EXP_TABLE_BITS);
    let x = x.clamp(c(V::Elem::LO), c(V::Elem::HI));
    let shifted = x.mul_add(c(cast(std::f64::consts::LOG2_E * entries)), c(V::Elem::MAGIC));
    let n = shifted.sub(c(V::Elem::MAGIC));
    // Dividing the parts of ln 2 by a power of two is exact.
    let r = n.neg_mul_add(c(V::Elem::LN2_HI * cast(1.0 / entries)), x);
    let r = n.neg_mul_add(c(V::Elem::LN2_LO * cast(1.0 / entries)), r);
    let first_term = const {
        let degree = taylor_degree(V::EXP_TABLE_BITS, V::Elem::SIGNIFICAND_BITS);
        assert!(degree < V::Elem::TAYLOR.len(), "TAYLOR holds the terms up to the degree needed");
        V::Elem::TAYLOR.len() - 1 - degree
    };
    let taylor = &V::Elem::TAYLOR[first_term..];
    let (leading, rest) = taylor.split_first().expect("a polynomial");
    let mut p = c(*leading);
    if V::EXP_TABLE_BITS == 0 {
        // Without a table the polynomial's last step, `p r + 1`, is fused.
        for &k in rest {
            p = p.mul_add(r, c(k));
        }
        return p.ldexp(n);
    }
    for &k in &rest[..rest.len() - 1] {
        p = p.mul_add(r, c(k));
    }
    let expm1_r = p.mul(r);
    let (hi, lo) = V::exp2_fraction(shifted);
    hi.add(hi.mul_add(expm1_r, lo)).ldexp(n.mul(c(cast(1.0 / entries))))
}

/// The least degree `d` of the Taylor polynomial of `e^r` whose relative truncation error is
/// below `0.1 · 2^{−p}` (`p = significand_bits`: a tenth of the rounding error's bound) on
/// `|r| ≤ ln2/(2N)`, `N = 2^table_bits`: where `r^{d+1}/(d+1)! < 0.1 · 2^{−p}` at the end of
/// the range.
const fn taylor_degree(table_bits: u32, significand_bits: u32) -> usize {
    let r = std::f64::consts::LN_2 / 2.0 / (1u64 << table_bits) as f64;
    let bound = 0.1 / (1u64 << significand_bits) as f64;
    // `term = r^{d+1}/(d+1)!`.
    let (mut degree, mut term) = (1, r * r / 2.0);
    while term >= bound {
        degree += 1;
        term = term * r / (degree + 1) as f64;
    }
    degree
}

/// `ln(1 + t)` for `0 ≤ t ≤ 1` (the range the cross-entropy needs): with `u = t/(2 + t) ≤ 1/3`,
/// `ln(1 + t) = 2 atanh u = 2u Σ_k u^{2k}/(2k + 1)`, whose terms shrink ninefold each.
#[inline(always)]
pub(crate) unsafe fn log1p_lanes<V: Lanes>(t: V) -> V
where
    V::Elem: ExpConstants,
{
    let c = |v: V::Elem| V::splat(v);
    let two = <V::Elem as Real>::cast(2.0);
    let u = t.div(t.add(c(two)));
    let u2 = u.mul(u);
    let (leading, rest) = V::Elem::ATANH_SERIES.split_first().expect("a series");
    let mut p = c(*leading);
    for &k in rest {
        p = p.mul_add(u2, c(k));
    }
    p.mul(u).mul(c(two))
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
pub(crate) unsafe fn exp<V: Lanes>(v: &mut [V::Elem])
where
    V::Elem: ExpConstants,
{
    let body = v.len() - v.len() % V::WIDTH;
    let p = v.as_mut_ptr();
    for i in (0..body).step_by(V::WIDTH) {
        exp_lanes(V::load(p.add(i))).store(p.add(i));
    }
    let tail = &mut v[body..];
    if !tail.is_empty() {
        store_partial(exp_lanes(load_partial::<V>(tail)), tail);
    }
}

#[inline(always)]
pub(crate) unsafe fn activate_sum<V: Lanes, U: Unit>(z: &mut [V::Elem], bias: V::Elem) -> f64
where
    V::Elem: ExpConstants,
{
    let mut sum = V::acc_zero();
    let bias = V::splat(bias);
    let body = z.len() - z.len() % V::WIDTH;
    let p = z.as_mut_ptr();
    for i in (0..body).step_by(V::WIDTH) {
        let a = U::activate_lanes(V::load(p.add(i)).add(bias));
        a.store(p.add(i));
        sum = V::acc_add(sum, a);
    }
    let tail = &mut z[body..];
    if !tail.is_empty() {
        let a = U::activate_lanes(load_partial::<V>(tail).add(bias));
        store_partial(a, tail);
        sum = accumulate_partial(sum, a, tail.len());
    }
    V::acc_sum(sum)
}

/// Columns of the output block summed in the element type before their sums go to f64: short
/// enough that the f32 rounding of so few terms stays within about 16 ulp of their sum (well
/// inside the f32 tolerance of the gradient), long enough to spread the conversions to f64
/// over many vectors.
const COLUMNS_PER_FLUSH: usize = 16;

/// The output layer on a block of `z3` (see [`super::OutputKernels::delta`]): dispatches on
/// the block's layout.
///
/// # Safety
/// As every [`Lanes`] method: the caller is compiled for `V`'s instruction set.
#[inline(always)]
pub(crate) unsafe fn output_delta<V: Lanes, R: Reconstruction>(
    mut z: MatMut<'_, V::Elem>,
    x: MatRef<'_, V::Elem>,
    b: &[V::Elem],
    sums: &mut [f64],
) -> f64
where
    V::Elem: ExpConstants,
{
    let by_columns = super::check_output_block(&z, &x, b, sums);
    let (rows, cols) = (z.rows(), z.cols());
    if rows == 0 || cols == 0 {
        return 0.0;
    }
    let ((zr, zc), (xr, xc)) = (z.strides(), x.strides());
    // Every element (i, j) of either view lies inside its slice (checked when the views were
    // made), so every offset read or written below is in bounds (the stride of a dimension of
    // one element is never used); `z` is a unique borrow, so `x` does not alias it. The lines
    // asked for ahead are addressed by wrapping arithmetic and may lie anywhere.
    let (pz, px) = (z.as_mut_ptr(), x.as_ptr());
    if by_columns {
        output_delta_columns::<V, R>(pz, zc, px, xc, rows, cols, b, sums)
    } else {
        output_delta_rows::<V, R>(pz, zr, px, xr, cols, b, sums)
    }
}

/// [`output_delta`] on column `j` at `pz + j·ldz` (and `px + j·ldx`), one example each: the
/// row sums of `delta3` stay in registers for up to [`COLUMNS_PER_FLUSH`] columns.
///
/// The pass reads those columns side by side, as many streams at once as it has columns in a
/// group, which the hardware prefetcher does not follow: `x` comes from memory and `z3`, just
/// written by its GEMM, from L2 or L3. So it asks for each line of the next group while it
/// computes this one (S2 f64: the pass 13.6–23.8 → 7.1–9.2 ms an evaluation, PERF.md). A
/// group of S2 is 200 KB of `x` and `z3` in f64, more than L1: the lines asked for mostly wait
/// in L2, which is what the pass needed — them out of memory. (With 32-byte vectors each line
/// is asked for twice; the second request costs an issue slot.)
///
/// # Safety
/// As [`output_delta`]'s, with `pz + i + j·ldz` and `px + i + j·ldx` readable (and `z`'s
/// writable) for `i < rows`, `j < cols`, the two blocks apart.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn output_delta_columns<V: Lanes, R: Reconstruction>(
    pz: *mut V::Elem,
    ldz: usize,
    px: *const V::Elem,
    ldx: usize,
    rows: usize,
    cols: usize,
    b: &[V::Elem],
    sums: &mut [f64],
) -> f64
where
    V::Elem: ExpConstants,
{
    let zero = V::splat(<V::Elem as Default>::default());
    let mut loss = V::acc_zero();
    let body = rows - rows % V::WIDTH;
    let tail = rows - body;
    for first in (0..cols).step_by(COLUMNS_PER_FLUSH) {
        let columns = first..(first + COLUMNS_PER_FLUSH).min(cols);
        // The next group of columns is asked for while this one is computed. The last group
        // asks for its own lines again; the one before it, when the last is shorter, for a
        // few columns past the block, which are not read (a prefetch never faults).
        let ahead = if columns.end < cols { COLUMNS_PER_FLUSH } else { 0 };
        for i in (0..body).step_by(V::WIDTH) {
            let bias = V::load(b.as_ptr().add(i));
            let (mut delta_sum, mut loss_sum) = (zero, zero);
            for j in columns.clone() {
                let zp = pz.add(i + j * ldz);
                prefetch_line(px.wrapping_add(i + (j + ahead) * ldx));
                prefetch_line(pz.wrapping_add(i + (j + ahead) * ldz));
                let (delta, l) = R::delta_loss_lanes(V::load(zp).add(bias), V::load(px.add(i + j * ldx)));
                delta.store(zp);
                delta_sum = delta_sum.add(delta);
                loss_sum = loss_sum.add(l);
            }
            V::add_to_f64(delta_sum, sums.as_mut_ptr().add(i));
            loss = V::acc_add(loss, loss_sum);
        }
        if tail > 0 {
            let bias = load_partial::<V>(&b[body..]);
            let (mut delta_sum, mut loss_sum) = (zero, zero);
            for j in columns {
                let z = std::slice::from_raw_parts_mut(pz.add(body + j * ldz), tail);
                let x = std::slice::from_raw_parts(px.add(body + j * ldx), tail);
                let (delta, l) = R::delta_loss_lanes(load_partial::<V>(z).add(bias), load_partial::<V>(x));
                store_partial(delta, z);
                // Lanes past `tail` hold the delta of zeros: never read below.
                delta_sum = delta_sum.add(delta);
                loss_sum = loss_sum.add(l);
            }
            let mut lanes = [<V::Elem as Default>::default(); MAX_WIDTH];
            delta_sum.store(lanes.as_mut_ptr());
            for (sum, d) in sums[body..].iter_mut().zip(&lanes[..tail]) {
                *sum += d.as_f64();
            }
            loss = accumulate_partial(loss, loss_sum, tail);
        }
    }
    V::acc_sum(loss)
}

/// How many rows ahead [`output_delta_rows`] asks for its operands: a row of a block of 256
/// examples is 1–2 KB, so two rows leave several hundred cycles for the lines to arrive (the only
/// distance measured, against none: PERF.md, 2026-12-02).
const ROWS_AHEAD: usize = 2;

/// [`output_delta`] on row `i` at `pz + i·ldz` (and `px + i·ldx`), one output unit each.
///
/// A block's row of `x` is a short run (the block's width) inside a row of the data: each
/// row is a new stream for the hardware prefetcher, so the pass asks for the lines of the row
/// [`ROWS_AHEAD`] below while it computes this one (past the last row, lines it does not read).
///
/// # Safety
/// As [`output_delta`]'s, with `pz + i·ldz + j` and `px + i·ldx + j` readable (and `z`'s
/// writable) for `i < b.len()`, `j < cols`, the two blocks apart.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn output_delta_rows<V: Lanes, R: Reconstruction>(
    pz: *mut V::Elem,
    ldz: usize,
    px: *const V::Elem,
    ldx: usize,
    cols: usize,
    b: &[V::Elem],
    sums: &mut [f64],
) -> f64
where
    V::Elem: ExpConstants,
{
    let mut loss = V::acc_zero();
    let body = cols - cols % V::WIDTH;
    for (i, (&bias, sum)) in b.iter().zip(sums.iter_mut()).enumerate() {
        let (z, x) = (pz.add(i * ldz), px.add(i * ldx));
        let bias = V::splat(bias);
        let mut delta_sum = V::acc_zero();
        for j in (0..body).step_by(V::WIDTH) {
            prefetch_line(x.wrapping_add(j + ROWS_AHEAD * ldx));
            prefetch_line(z.wrapping_add(j + ROWS_AHEAD * ldz));
            let (delta, l) = R::delta_loss_lanes(V::load(z.add(j)).add(bias), V::load(x.add(j)));
            delta.store(z.add(j));
            loss = V::acc_add(loss, l);
            delta_sum = V::acc_add(delta_sum, delta);
        }
        if body < cols {
            let tail = std::slice::from_raw_parts_mut(z.add(body), cols - body);
            let x = std::slice::from_raw_parts(x.add(body), cols - body);
            let (delta, l) = R::delta_loss_lanes(load_partial::<V>(tail).add(bias), load_partial::<V>(x));
            store_partial(delta, tail);
            loss = accumulate_partial(loss, l, tail.len());
            delta_sum = accumulate_partial(delta_sum, delta, tail.len());
        }
        *sum += V::acc_sum(delta_sum);
    }
    V::acc_sum(loss)
}

#[inline(always)]
pub(crate) unsafe fn hidden_delta_sum<V: Lanes, U: Unit>(p: &mut [V::Elem], a2: &[V::Elem], s: V::Elem) -> f64 {
    assert_eq!(p.len(), a2.len());
    let mut sum = V::acc_zero();
    let s = V::splat(s);
    let body = p.len() - p.len() % V::WIDTH;
    let (pp, pa) = (p.as_mut_ptr(), a2.as_ptr());
    for i in (0..body).step_by(V::WIDTH) {
        let delta = V::load(pp.add(i)).add(s).mul(U::derivative_lanes(V::load(pa.add(i))));
        delta.store(pp.add(i));
        sum = V::acc_add(sum, delta);
    }
    let tail = &mut p[body..];
    if !tail.is_empty() {
        let delta = load_partial::<V>(tail).add(s).mul(U::derivative_lanes(load_partial::<V>(&a2[body..])));
        store_partial(delta, tail);
        sum = accumulate_partial(sum, delta, tail.len());
    }
    V::acc_sum(sum)
}

#[inline(always)]
pub(crate) unsafe fn hidden_delta_deferred<V: Lanes, U: Unit>(
    p: &mut [V::Elem],
    a2: &[V::Elem],
    f: &mut [V::Elem],
) -> (f64, f64) {
    assert!(p.len() == a2.len() && p.len() == f.len());
    let (mut p_sum, mut f_sum) = (V::acc_zero(), V::acc_zero());
    let body = p.len() - p.len() % V::WIDTH;
    let (pp, pa, pf) = (p.as_mut_ptr(), a2.as_ptr(), f.as_mut_ptr());
    for i in (0..body).step_by(V::WIDTH) {
        let derivative = U::derivative_lanes(V::load(pa.add(i)));
        let delta = V::load(pp.add(i)).mul(derivative);
        derivative.store(pf.add(i));
        delta.store(pp.add(i));
        p_sum = V::acc_add(p_sum, delta);
        f_sum = V::acc_add(f_sum, derivative);
    }
    let tail = p.len() - body;
    if tail > 0 {
        let derivative = U::derivative_lanes(load_partial::<V>(&a2[body..]));
        let delta = load_partial::<V>(&p[body..]).mul(derivative);
        store_partial(derivative, &mut f[body..]);
        store_partial(delta, &mut p[body..]);
        p_sum = accumulate_partial(p_sum, delta, tail);
        f_sum = accumulate_partial(f_sum, derivative, tail);
    }
    (V::acc_sum(p_sum), V::acc_sum(f_sum))
}

#[inline(always)]
pub(crate) unsafe fn contractive_delta<V: Lanes, U: Unit>(p: &mut [V::Elem], a2: &[V::Elem], c: V::Elem) -> (f64, f64) {
    assert_eq!(p.len(), a2.len());
    let (mut added_sum, mut squared_sum) = (V::acc_zero(), V::acc_zero());
    let c = V::splat(c);
    let body = p.len() - p.len() % V::WIDTH;
    let (pp, pa) = (p.as_mut_ptr(), a2.as_ptr());
    for i in (0..body).step_by(V::WIDTH) {
        let a = V::load(pa.add(i));
        let d = U::derivative_lanes(a);
        let added = c.mul(d).mul(U::curvature_lanes(a, d));
        V::load(pp.add(i)).add(added).store(pp.add(i));
        added_sum = V::acc_add(added_sum, added);
        squared_sum = V::acc_add(squared_sum, d.mul(d));
    }
    let tail = p.len() - body;
    if tail > 0 {
        let a = load_partial::<V>(&a2[body..]);
        let d = U::derivative_lanes(a);
        let added = c.mul(d).mul(U::curvature_lanes(a, d));
        store_partial(load_partial::<V>(&p[body..]).add(added), &mut p[body..]);
        added_sum = accumulate_partial(added_sum, added, tail);
        squared_sum = accumulate_partial(squared_sum, d.mul(d), tail);
    }
    (V::acc_sum(added_sum), V::acc_sum(squared_sum))
}

/// `Σ a_i b_i`: four vectors of partial sums in the element type (fused multiply-adds, four
/// independent chains), summed in f64 at the end.
#[inline(always)]
pub(crate) unsafe fn dot<V: Lanes>(a: &[V::Elem], b: &[V::Elem]) -> f64 {
    assert_eq!(a.len(), b.len());
    let zero = V::splat(<V::Elem as Default>::default());
    let mut partial = [zero; 4];
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let stride = 4 * V::WIDTH;
    let body = a.len() - a.len() % stride;
    for i in (0..body).step_by(stride) {
        for (k, sum) in partial.iter_mut().enumerate() {
            let offset = i + k * V::WIDTH;
            *sum = V::load(pa.add(offset)).mul_add(V::load(pb.add(offset)), *sum);
        }
    }
    let mut i = body;
    while i < a.len() {
        let width = V::WIDTH.min(a.len() - i);
        partial[0] = load_partial::<V>(&a[i..i + width]).mul_add(load_partial::<V>(&b[i..i + width]), partial[0]);
        i += width;
    }
    let mut acc = V::acc_zero();
    for sum in partial {
        acc = V::acc_add(acc, sum);
    }
    V::acc_sum(acc)
}

/// `y ← α x + y`, fused.
#[inline(always)]
pub(crate) unsafe fn axpy<V: Lanes>(alpha: V::Elem, x: &[V::Elem], y: &mut [V::Elem]) {
    assert_eq!(x.len(), y.len());
    let alpha = V::splat(alpha);
    let body = x.len() - x.len() % V::WIDTH;
    let (px, py) = (x.as_ptr(), y.as_mut_ptr());
    for i in (0..body).step_by(V::WIDTH) {
        V::load(px.add(i)).mul_add(alpha, V::load(py.add(i))).store(py.add(i));
    }
    let tail = &mut y[body..];
    if !tail.is_empty() {
        store_partial(load_partial::<V>(&x[body..]).mul_add(alpha, load_partial::<V>(tail)), tail);
    }
}

/// `y ← α x + y`, then `Σ z_i y_i` of the updated `y`: [`axpy`] and [`dot`] in one pass, with
/// the same operations in the same order as the two (so the same results to the bit).
#[inline(always)]
pub(crate) unsafe fn axpy_dot<V: Lanes>(alpha: V::Elem, x: &[V::Elem], y: &mut [V::Elem], z: &[V::Elem]) -> f64 {
    assert!(x.len() == y.len() && z.len() == y.len());
    let alpha = V::splat(alpha);
    let zero = V::splat(<V::Elem as Default>::default());
    let mut partial = [zero; 4];
    let (px, py, pz) = (x.as_ptr(), y.as_mut_ptr(), z.as_ptr());
    let stride = 4 * V::WIDTH;
    let body = y.len() - y.len() % stride;
    for i in (0..body).step_by(stride) {
        for (k, sum) in partial.iter_mut().enumerate() {
            let offset = i + k * V::WIDTH;
            let updated = V::load(px.add(offset)).mul_add(alpha, V::load(py.add(offset)));
            updated.store(py.add(offset));
            *sum = V::load(pz.add(offset)).mul_add(updated, *sum);
        }
    }
    let mut i = body;
    while i < y.len() {
        let width = V::WIDTH.min(y.len() - i);
        let tail = &mut y[i..i + width];
        store_partial(load_partial::<V>(&x[i..i + width]).mul_add(alpha, load_partial::<V>(tail)), tail);
        // The stored values, reloaded: the lanes past the tail must be 0 as `dot` reads them
        // (`0 α + 0` is NaN for an infinite `α`).
        partial[0] = load_partial::<V>(&z[i..i + width]).mul_add(load_partial::<V>(tail), partial[0]);
        i += width;
    }
    let mut acc = V::acc_zero();
    for sum in partial {
        acc = V::acc_add(acc, sum);
    }
    V::acc_sum(acc)
}

/// `y ← α x + y`, and `Σ z_i x_i` of the `x` it reads: [`axpy`] and [`dot`]`(z, x)` in one pass
/// over `x`'s whole blocks of four vectors (the rest, fewer than `4·WIDTH` values, is read
/// twice), with the same operations in the same order as the two (so the same results to the
/// bit).
#[inline(always)]
pub(crate) unsafe fn axpy_and_dot<V: Lanes>(alpha: V::Elem, x: &[V::Elem], y: &mut [V::Elem], z: &[V::Elem]) -> f64 {
    assert!(x.len() == y.len() && z.len() == x.len());
    let alphas = V::splat(alpha);
    let zero = V::splat(<V::Elem as Default>::default());
    let mut partial = [zero; 4];
    let (px, py, pz) = (x.as_ptr(), y.as_mut_ptr(), z.as_ptr());
    let stride = 4 * V::WIDTH;
    let body = x.len() - x.len() % stride;
    for i in (0..body).step_by(stride) {
        for (k, sum) in partial.iter_mut().enumerate() {
            let offset = i + k * V::WIDTH;
            let read = V::load(px.add(offset));
            read.mul_add(alphas, V::load(py.add(offset))).store(py.add(offset));
            *sum = V::load(pz.add(offset)).mul_add(read, *sum);
        }
    }
    // The rest, fewer than four vectors: `axpy` on it (from a whole vector, so cut as `axpy`
    // cuts it), and `dot`'s tail into the first partial sum.
    axpy::<V>(alpha, &x[body..], &mut y[body..]);
    let mut i = body;
    while i < x.len() {
        let width = V::WIDTH.min(x.len() - i);
        partial[0] = load_partial::<V>(&z[i..i + width]).mul_add(load_partial::<V>(&x[i..i + width]), partial[0]);
        i += width;
    }
    let mut acc = V::acc_zero();
    for sum in partial {
        acc = V::acc_add(acc, sum);
    }
    V::acc_sum(acc)
}

/// Appends `(values[i] + shift[i], from + i)` for each `i` where the sum is greater than
/// `threshold`, in order, [`COLLECT_GROUP`] positions at a time, stopping before a group when
/// fewer than `COLLECT_GROUP` slots of `collected` are left; returns the positions scanned and
/// the candidates appended. A vector add and compare per `WIDTH` values, the sums never stored:
/// the scan of the top-k selection, which mostly finds nothing once its threshold has risen.
///
/// # Safety
/// As every [`Lanes`] method: the caller is compiled for `V`'s instruction set.
#[inline(always)]
pub(crate) unsafe fn collect_above<V: Lanes>(
    values: &[V::Elem],
    shift: &[V::Elem],
    threshold: V::Elem,
    from: u32,
    collected: &mut [(V::Elem, u32)],
) -> (usize, usize)
where
    V::Elem: PartialOrd + std::ops::Add<Output = V::Elem>,
{
    assert_eq!(values.len(), shift.len());
    assert!(u32::try_from(values.len()).is_ok_and(|len| from.checked_add(len).is_some()), "collect_above: positions");
    const { assert!(COLLECT_GROUP.is_multiple_of(V::WIDTH)) };
    let limit = V::splat(threshold);
    let groups = values.len() - values.len() % COLLECT_GROUP;
    let (p, q) = (values.as_ptr(), shift.as_ptr());
    let (mut i, mut count) = (0, 0);
    while i < groups && collected.len() - count >= COLLECT_GROUP {
        for first in (i..i + COLLECT_GROUP).step_by(V::WIDTH) {
            // SAFETY: `first + WIDTH ≤ i + COLLECT_GROUP ≤ groups ≤ len` (the group is whole
            // vectors), so both loads read inside `values` and `shift`.
            let mut mask = V::load(p.add(first)).add(V::load(q.add(first))).greater_mask(limit);
            while mask != 0 {
                let at = first + mask.trailing_zeros() as usize;
                // SAFETY: `at < first + WIDTH ≤ len`; at most COLLECT_GROUP values are appended
                // in this group, and at least that many slots were free at its start, so
                // `count < collected.len()`.
                *collected.get_unchecked_mut(count) = (*p.add(at) + *q.add(at), from + at as u32);
                count += 1;
                mask &= mask - 1;
            }
        }
        i += COLLECT_GROUP;
    }
    if i == groups && collected.len() - count >= COLLECT_GROUP {
        for at in groups..values.len() {
            let value = values[at] + shift[at];
            if value > threshold {
                collected[count] = (value, from + at as u32);
                count += 1;
            }
        }
        i = values.len();
    }
    (i, count)
}

/// The largest `values[i] + shift[i]`, NaN never taken; −∞ when there is none (no values, or
/// only NaN and −∞). Four vectors of running maxima, no branch: the first pass of the top-k
/// selection, which bounds the `k`-th largest value from below.
///
/// # Safety
/// As every [`Lanes`] method: the caller is compiled for `V`'s instruction set.
#[inline(always)]
pub(crate) unsafe fn max_sum<V: Lanes>(values: &[V::Elem], shift: &[V::Elem]) -> V::Elem
where
    V::Elem: PartialOrd + std::ops::Add<Output = V::Elem>,
{
    assert_eq!(values.len(), shift.len());
    const { assert!(V::WIDTH <= 64) };
    let (p, q) = (values.as_ptr(), shift.as_ptr());
    let sum = |i: usize| V::load(p.add(i)).add(V::load(q.add(i)));
    let lowest: V::Elem = num_traits::Float::neg_infinity();
    let mut maxima = [V::splat(lowest); 4];
    let unrolled = values.len() - values.len() % (4 * V::WIDTH);
    for i in (0..unrolled).step_by(4 * V::WIDTH) {
        for (vector, maximum) in maxima.iter_mut().enumerate() {
            // SAFETY: `i + 4·WIDTH ≤ unrolled ≤ len`: every load reads inside both slices.
            *maximum = sum(i + vector * V::WIDTH).max_over(*maximum);
        }
    }
    let whole = values.len() - values.len() % V::WIDTH;
    for i in (unrolled..whole).step_by(V::WIDTH) {
        // SAFETY: `i + WIDTH ≤ whole ≤ len`.
        maxima[0] = sum(i).max_over(maxima[0]);
    }
    let combined = maxima[0].max_over(maxima[1]).max_over(maxima[2].max_over(maxima[3]));
    let mut stored = [lowest; 64];
    // SAFETY: `WIDTH ≤ 64` (asserted above) elements of `stored` are written.
    combined.store(stored.as_mut_ptr());
    let tail = values[whole..].iter().zip(&shift[whole..]).map(|(&v, &s)| v + s);
    stored[..V::WIDTH].iter().copied().chain(tail).fold(lowest, |max, v| if v > max { v } else { max })
}

/// Adam's step on every element, as [`super::scalar::adam`] takes it (the same operations in
/// the same order, none fused: the same bits), whole vectors first, the scalar twin on the
/// tail.
///
/// # Safety
/// As every [`Lanes`] method: the caller is compiled for `V`'s instruction set.
#[inline(always)]
pub(crate) unsafe fn adam<V: Lanes>(
    x: &mut [V::Elem],
    m: &mut [V::Elem],
    v: &mut [V::Elem],
    g: &[V::Elem],
    step: &AdamStep<V::Elem>,
) {
    let len = x.len();
    assert!(m.len() == len && v.len() == len && g.len() == len, "Adam: slices of different lengths");
    let one = <V::Elem as num_traits::One>::one();
    let (beta1, beta2) = (V::splat(step.beta1), V::splat(step.beta2));
    let (one_minus_beta1, one_minus_beta2) = (V::splat(one - step.beta1), V::splat(one - step.beta2));
    let (learning_rate, epsilon) = (V::splat(step.learning_rate), V::splat(step.epsilon));
    let (c1, c2) = (V::splat(step.c1), V::splat(step.c2));
    let whole = len - len % V::WIDTH;
    let (px, pm, pv, pg) = (x.as_mut_ptr(), m.as_mut_ptr(), v.as_mut_ptr(), g.as_ptr());
    for i in (0..whole).step_by(V::WIDTH) {
        // SAFETY: `i + WIDTH ≤ whole ≤ len`: every load and store is inside the four slices.
        let gradient = V::load(pg.add(i));
        let first = beta1.mul(V::load(pm.add(i))).add(one_minus_beta1.mul(gradient));
        let second = beta2.mul(V::load(pv.add(i))).add(one_minus_beta2.mul(gradient).mul(gradient));
        let moved = learning_rate.mul(first.div(c1)).div(second.div(c2).sqrt().add(epsilon));
        V::load(px.add(i)).sub(moved).store(px.add(i));
        first.store(pm.add(i));
        second.store(pv.add(i));
    }
    super::scalar::adam(&mut x[whole..], &mut m[whole..], &mut v[whole..], &g[whole..], step);
}

/// Asks for every cache line of `values` to be brought into L1 (`prefetcht0`): one request per
/// 64 bytes from the first, and one for the line of the last byte, which a slice that does not
/// start on a line boundary reaches into.
///
/// The same instruction serves every vector set, whose tables point here.
#[cfg(target_arch = "x86_64")]
pub(crate) fn prefetch<T>(values: &[T]) {
    const LINE: usize = 64;
    let (start, bytes) = (values.as_ptr().cast::<u8>(), std::mem::size_of_val(values));
    if bytes == 0 {
        return;
    }
    for offset in (0..bytes).step_by(LINE) {
        prefetch_line(start.wrapping_add(offset));
    }
    prefetch_line(start.wrapping_add(bytes - 1));
}

/// Asks for the cache line holding `p` to be brought into L1 (`prefetcht0`). A hint, which
/// never faults: `p` may point anywhere, past its allocation too.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn prefetch_line<T>(p: *const T) {
    use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    // SAFETY: SSE is part of every x86-64 CPU, and a prefetch never faults, whatever the
    // address.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast()) }
}

/// No prefetch instruction is used off x86-64.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
pub(crate) fn prefetch_line<T>(_p: *const T) {}

/// Instantiates every generic body above for one instruction set and element type, as module
/// `$module` with `#[target_feature]` entry points and `table()`, their [`Kernels`] set: the
/// hidden-unit kernels once per [`Unit`], the output kernels once per [`Reconstruction`].
///
/// [`Kernels`]: super::Kernels
macro_rules! kernel_table {
    ($module:ident, $features:literal, $lanes:ty, $t:ty, $isa:expr) => {
        pub(crate) mod $module {
            use super::super::lanes;
            use super::super::units::{
                ByActivation, ByReconstruction, Reconstruction, ReconstructionEntry, Unit, UnitEntry,
            };
            use super::super::{AdamStep, HiddenKernels, Kernels, OutputKernels};
            use super::*;
            use crate::gemm::{MatMut, MatRef};

            #[target_feature(enable = $features)]
            unsafe fn exp(v: &mut [$t]) {
                lanes::exp::<$lanes>(v)
            }
            #[target_feature(enable = $features)]
            unsafe fn activate_sum<U: Unit>(z: &mut [$t], bias: $t) -> f64 {
                lanes::activate_sum::<$lanes, U>(z, bias)
            }
            #[target_feature(enable = $features)]
            unsafe fn output_delta<R: Reconstruction>(
                z: MatMut<'_, $t>,
                x: MatRef<'_, $t>,
                b: &[$t],
                sums: &mut [f64],
            ) -> f64 {
                lanes::output_delta::<$lanes, R>(z, x, b, sums)
            }
            #[target_feature(enable = $features)]
            unsafe fn hidden_delta_sum<U: Unit>(p: &mut [$t], a2: &[$t], s: $t) -> f64 {
                lanes::hidden_delta_sum::<$lanes, U>(p, a2, s)
            }
            #[target_feature(enable = $features)]
            unsafe fn hidden_delta_deferred<U: Unit>(p: &mut [$t], a2: &[$t], f: &mut [$t]) -> (f64, f64) {
                lanes::hidden_delta_deferred::<$lanes, U>(p, a2, f)
            }
            #[target_feature(enable = $features)]
            unsafe fn contractive_delta<U: Unit>(p: &mut [$t], a2: &[$t], c: $t) -> (f64, f64) {
                lanes::contractive_delta::<$lanes, U>(p, a2, c)
            }
            #[target_feature(enable = $features)]
            unsafe fn dot(a: &[$t], b: &[$t]) -> f64 {
                lanes::dot::<$lanes>(a, b)
            }
            #[target_feature(enable = $features)]
            unsafe fn axpy(alpha: $t, x: &[$t], y: &mut [$t]) {
                lanes::axpy::<$lanes>(alpha, x, y)
            }
            #[target_feature(enable = $features)]
            unsafe fn axpy_dot(alpha: $t, x: &[$t], y: &mut [$t], z: &[$t]) -> f64 {
                lanes::axpy_dot::<$lanes>(alpha, x, y, z)
            }
            #[target_feature(enable = $features)]
            unsafe fn axpy_and_dot(alpha: $t, x: &[$t], y: &mut [$t], z: &[$t]) -> f64 {
                lanes::axpy_and_dot::<$lanes>(alpha, x, y, z)
            }
            #[target_feature(enable = $features)]
            unsafe fn max_sum(values: &[$t], shift: &[$t]) -> $t {
                lanes::max_sum::<$lanes>(values, shift)
            }
            #[target_feature(enable = $features)]
            unsafe fn adam(x: &mut [$t], m: &mut [$t], v: &mut [$t], g: &[$t], step: &AdamStep<$t>) {
                lanes::adam::<$lanes>(x, m, v, g, step)
            }
            #[target_feature(enable = $features)]
            unsafe fn collect_above(
                values: &[$t],
                shift: &[$t],
                threshold: $t,
                from: u32,
                collected: &mut [($t, u32)],
            ) -> (usize, usize) {
                lanes::collect_above::<$lanes>(values, shift, threshold, from, collected)
            }

            // SAFETY (of each wrapper below, and of `Entries`, which only makes them): private
            // to this module, they are reached only through `table`, whose caller has checked
            // the CPU.
            fn hidden<U: Unit>() -> HiddenKernels<$t> {
                HiddenKernels {
                    activate_sum: |z, bias| unsafe { activate_sum::<U>(z, bias) },
                    delta_sum: |p, a2, s| unsafe { hidden_delta_sum::<U>(p, a2, s) },
                    delta_deferred: |p, a2, f| unsafe { hidden_delta_deferred::<U>(p, a2, f) },
                    contractive_delta: |p, a2, c| unsafe { contractive_delta::<U>(p, a2, c) },
                }
            }
            fn output<R: Reconstruction>() -> OutputKernels<$t> {
                OutputKernels { delta: |z, x, b, sums| unsafe { output_delta::<R>(z, x, b, sums) } }
            }

            /// The maker of this set's table entries (only `table` makes one).
            struct Entries;
            impl UnitEntry for Entries {
                type Entry = HiddenKernels<$t>;
                fn build<U: Unit>(&self) -> HiddenKernels<$t> {
                    hidden::<U>()
                }
            }
            impl ReconstructionEntry for Entries {
                type Entry = OutputKernels<$t>;
                fn build<R: Reconstruction>(&self) -> OutputKernels<$t> {
                    output::<R>()
                }
            }

            /// The kernel set of this instruction set, as safe function pointers.
            ///
            /// # Safety
            /// The CPU must support the target features of this module: the pointers call
            /// code compiled for them without checking again.
            pub(crate) unsafe fn table() -> Kernels<$t> {
                Kernels {
                    isa: $isa,
                    exp: |v| unsafe { exp(v) },
                    hidden: ByActivation::build(&Entries),
                    output: ByReconstruction::build(&Entries),
                    dot: |a, b| unsafe { dot(a, b) },
                    axpy: |alpha, x, y| unsafe { axpy(alpha, x, y) },
                    axpy_dot: |alpha, x, y, z| unsafe { axpy_dot(alpha, x, y, z) },
                    axpy_and_dot: |alpha, x, y, z| unsafe { axpy_and_dot(alpha, x, y, z) },
                    collect_above: |values, shift, threshold, from, collected| unsafe {
                        collect_above(values, shift, threshold, from, collected)
                    },
                    max_sum: |values, shift| unsafe { max_sum(values, shift) },
                    prefetch: lanes::prefetch::<$t>,
                    adam: |x, m, v, g, step| unsafe { adam(x, m, v, g, step) },
                }
            }
        }
    };
}
pub(crate) use kernel_table;
