//! AVX2 + FMA vectors for x86_64: [`Lanes`] for 8 × f32 and 4 × f64, and the kernels compiled
//! for them (modules `kernels_f32` and `kernels_f64`).

use std::arch::x86_64::*;

use super::lanes::{self, ExpConstants, Lanes};

#[derive(Clone, Copy)]
pub(crate) struct F32x8(__m256);

#[derive(Clone, Copy)]
pub(crate) struct F64x4(__m256d);

unsafe impl Lanes for F32x8 {
    type Elem = f32;
    type Acc = [__m256d; 2];
    const WIDTH: usize = 8;

    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        Self(_mm256_set1_ps(x))
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        Self(_mm256_loadu_ps(p))
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        _mm256_storeu_ps(p, self.0)
    }
    #[inline(always)]
    unsafe fn add(self, o: Self) -> Self {
        Self(_mm256_add_ps(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn sub(self, o: Self) -> Self {
        Self(_mm256_sub_ps(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn mul(self, o: Self) -> Self {
        Self(_mm256_mul_ps(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn div(self, o: Self) -> Self {
        Self(_mm256_div_ps(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn sqrt(self) -> Self {
        Self(_mm256_sqrt_ps(self.0))
    }
    #[inline(always)]
    unsafe fn neg(self) -> Self {
        Self(_mm256_xor_ps(self.0, _mm256_set1_ps(-0.0)))
    }

    #[inline(always)]
    unsafe fn mul_add(self, a: Self, b: Self) -> Self {
        Self(_mm256_fmadd_ps(self.0, a.0, b.0))
    }
    #[inline(always)]
    unsafe fn neg_mul_add(self, a: Self, b: Self) -> Self {
        Self(_mm256_fnmadd_ps(self.0, a.0, b.0))
    }
    #[inline(always)]
    unsafe fn clamp(self, lo: Self, hi: Self) -> Self {
        // max/min return their second operand when either is NaN: keep `self` second.
        Self(_mm256_min_ps(hi.0, _mm256_max_ps(lo.0, self.0)))
    }
    #[inline(always)]
    unsafe fn abs(self) -> Self {
        Self(_mm256_andnot_ps(_mm256_set1_ps(-0.0), self.0))
    }
    #[inline(always)]
    unsafe fn select_negative(self, if_negative: Self, otherwise: Self) -> Self {
        Self(_mm256_blendv_ps(otherwise.0, if_negative.0, self.0))
    }
    #[inline(always)]
    unsafe fn greater_mask(self, o: Self) -> u32 {
        _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(self.0, o.0)) as u32
    }
    #[inline(always)]
    unsafe fn max_over(self, o: Self) -> Self {
        // max returns its second operand unless the first is greater (NaN included).
        Self(_mm256_max_ps(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn positive_step(self) -> Self {
        let positive = _mm256_cmp_ps::<_CMP_GT_OQ>(self.0, _mm256_setzero_ps());
        Self(_mm256_and_ps(positive, _mm256_set1_ps(1.0)))
    }
    #[inline(always)]
    unsafe fn ldexp(self, n: Self) -> Self {
        // 2^n as 2^{n1} · 2^{n2}, n1 = ⌊n/2⌋, each a normal number built from its exponent bits.
        let n = _mm256_cvtps_epi32(_mm256_floor_ps(n.0));
        let n1 = _mm256_srai_epi32::<1>(n);
        let n2 = _mm256_sub_epi32(n, n1);
        let bias = _mm256_set1_epi32(127);
        let s1 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(n1, bias)));
        let s2 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(n2, bias)));
        Self(_mm256_mul_ps(_mm256_mul_ps(self.0, s1), s2))
    }
    const EXP_TABLE_BITS: u32 = 3;
    #[inline(always)]
    unsafe fn exp2_fraction(index: Self) -> (Self, Self) {
        // `vpermps` reads the low 3 bits of each index; `2^{j/8}` is every other `2^{i/16}`.
        let index = _mm256_castps_si256(index.0);
        let (h, l) = (f32::EXP2_HI, f32::EXP2_LO);
        let hi = _mm256_setr_ps(h[0], h[2], h[4], h[6], h[8], h[10], h[12], h[14]);
        let lo = _mm256_setr_ps(l[0], l[2], l[4], l[6], l[8], l[10], l[12], l[14]);
        (Self(_mm256_permutevar8x32_ps(hi, index)), Self(_mm256_permutevar8x32_ps(lo, index)))
    }

    #[inline(always)]
    unsafe fn acc_zero() -> Self::Acc {
        [_mm256_setzero_pd(); 2]
    }
    #[inline(always)]
    unsafe fn acc_add(acc: Self::Acc, v: Self) -> Self::Acc {
        let (lo, hi) = widen(v.0);
        [_mm256_add_pd(acc[0], lo), _mm256_add_pd(acc[1], hi)]
    }
    #[inline(always)]
    unsafe fn acc_sum(acc: Self::Acc) -> f64 {
        horizontal_sum(_mm256_add_pd(acc[0], acc[1]))
    }
    #[inline(always)]
    unsafe fn add_to_f64(v: Self, sums: *mut f64) {
        let (lo, hi) = widen(v.0);
        _mm256_storeu_pd(sums, _mm256_add_pd(_mm256_loadu_pd(sums), lo));
        _mm256_storeu_pd(sums.add(4), _mm256_add_pd(_mm256_loadu_pd(sums.add(4)), hi));
    }
}

/// Lanes 0..4 and 4..8 of `v`, converted to f64.
#[inline(always)]
unsafe fn widen(v: __m256) -> (__m256d, __m256d) {
    (_mm256_cvtps_pd(_mm256_castps256_ps128(v)), _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v)))
}

/// `2^n` for integral `n` with a normal result (`|n| ≤ 1022`): `n` lands in the low mantissa
/// bits of `n + 1.5·2^52`, whence the exponent field.
#[inline(always)]
unsafe fn pow2(n: __m256d) -> __m256d {
    const MAGIC: f64 = 6_755_399_441_055_744.0;
    let n_int = _mm256_sub_epi64(
        _mm256_castpd_si256(_mm256_add_pd(n, _mm256_set1_pd(MAGIC))),
        _mm256_castpd_si256(_mm256_set1_pd(MAGIC)),
    );
    _mm256_castsi256_pd(_mm256_slli_epi64::<52>(_mm256_add_epi64(n_int, _mm256_set1_epi64x(1023))))
}

#[inline(always)]
unsafe fn horizontal_sum(v: __m256d) -> f64 {
    let pair = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd::<1>(v));
    _mm_cvtsd_f64(_mm_add_sd(pair, _mm_unpackhi_pd(pair, pair)))
}

unsafe impl Lanes for F64x4 {
    type Elem = f64;
    type Acc = __m256d;
    const WIDTH: usize = 4;

    #[inline(always)]
    unsafe fn splat(x: f64) -> Self {
        Self(_mm256_set1_pd(x))
    }
    #[inline(always)]
    unsafe fn load(p: *const f64) -> Self {
        Self(_mm256_loadu_pd(p))
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f64) {
        _mm256_storeu_pd(p, self.0)
    }
    #[inline(always)]
    unsafe fn add(self, o: Self) -> Self {
        Self(_mm256_add_pd(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn sub(self, o: Self) -> Self {
        Self(_mm256_sub_pd(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn mul(self, o: Self) -> Self {
        Self(_mm256_mul_pd(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn div(self, o: Self) -> Self {
        Self(_mm256_div_pd(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn sqrt(self) -> Self {
        Self(_mm256_sqrt_pd(self.0))
    }
    #[inline(always)]
    unsafe fn neg(self) -> Self {
        Self(_mm256_xor_pd(self.0, _mm256_set1_pd(-0.0)))
    }

    #[inline(always)]
    unsafe fn mul_add(self, a: Self, b: Self) -> Self {
        Self(_mm256_fmadd_pd(self.0, a.0, b.0))
    }
    #[inline(always)]
    unsafe fn neg_mul_add(self, a: Self, b: Self) -> Self {
        Self(_mm256_fnmadd_pd(self.0, a.0, b.0))
    }
    #[inline(always)]
    unsafe fn clamp(self, lo: Self, hi: Self) -> Self {
        Self(_mm256_min_pd(hi.0, _mm256_max_pd(lo.0, self.0)))
    }
    #[inline(always)]
    unsafe fn abs(self) -> Self {
        Self(_mm256_andnot_pd(_mm256_set1_pd(-0.0), self.0))
    }
    #[inline(always)]
    unsafe fn select_negative(self, if_negative: Self, otherwise: Self) -> Self {
        Self(_mm256_blendv_pd(otherwise.0, if_negative.0, self.0))
    }
    #[inline(always)]
    unsafe fn greater_mask(self, o: Self) -> u32 {
        _mm256_movemask_pd(_mm256_cmp_pd::<_CMP_GT_OQ>(self.0, o.0)) as u32
    }
    #[inline(always)]
    unsafe fn max_over(self, o: Self) -> Self {
        // max returns its second operand unless the first is greater (NaN included).
        Self(_mm256_max_pd(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn positive_step(self) -> Self {
        let positive = _mm256_cmp_pd::<_CMP_GT_OQ>(self.0, _mm256_setzero_pd());
        Self(_mm256_and_pd(positive, _mm256_set1_pd(1.0)))
    }
    #[inline(always)]
    unsafe fn ldexp(self, n: Self) -> Self {
        // No 64-bit arithmetic shift in AVX2: split n in floating point, where it is exact.
        let n = _mm256_floor_pd(n.0);
        let n1 = _mm256_floor_pd(_mm256_mul_pd(n, _mm256_set1_pd(0.5)));
        let n2 = _mm256_sub_pd(n, n1);
        Self(_mm256_mul_pd(_mm256_mul_pd(self.0, pow2(n1)), pow2(n2)))
    }
    // No table (the trait's default): with four doubles to a register, a table of 2^{j/4}
    // (`vpermps` on pairs of indices, built by integer shuffles) would save four terms of the
    // polynomial for as many instructions spent on the look-up.

    #[inline(always)]
    unsafe fn acc_zero() -> Self::Acc {
        _mm256_setzero_pd()
    }
    #[inline(always)]
    unsafe fn acc_add(acc: Self::Acc, v: Self) -> Self::Acc {
        _mm256_add_pd(acc, v.0)
    }
    #[inline(always)]
    unsafe fn acc_sum(acc: Self::Acc) -> f64 {
        horizontal_sum(acc)
    }
    #[inline(always)]
    unsafe fn add_to_f64(v: Self, sums: *mut f64) {
        _mm256_storeu_pd(sums, _mm256_add_pd(_mm256_loadu_pd(sums), v.0));
    }
}

lanes::kernel_table!(kernels_f32, "avx2,fma", F32x8, f32, super::super::Isa::Avx2Fma);
lanes::kernel_table!(kernels_f64, "avx2,fma", F64x4, f64, super::super::Isa::Avx2Fma);
