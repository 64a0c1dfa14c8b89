//! AVX-512F vectors for x86_64: [`Lanes`] for 16 × f32 and 8 × f64, and the kernels compiled
//! for them (modules `kernels_f32` and `kernels_f64`). Twice the width of AVX2 per
//! instruction; on CPUs with full-width 512-bit units (e.g. AMD Zen 5) close to twice the
//! throughput. `ldexp` is one `vscalefps`/`vscalefpd`, exact over the whole range, and `exp`'s
//! table of `2^{j/16}` is one or two registers per part, read by one permutation.

use std::arch::x86_64::*;

use super::lanes::{self, ExpConstants, Lanes};

#[derive(Clone, Copy)]
pub(crate) struct F32x16(__m512);

#[derive(Clone, Copy)]
pub(crate) struct F64x8(__m512d);

unsafe impl Lanes for F32x16 {
    type Elem = f32;
    type Acc = [__m512d; 2];
    const WIDTH: usize = 16;

    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        Self(_mm512_set1_ps(x))
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        Self(_mm512_loadu_ps(p))
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        _mm512_storeu_ps(p, self.0)
    }
    #[inline(always)]
    unsafe fn add(self, o: Self) -> Self {
        Self(_mm512_add_ps(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn sub(self, o: Self) -> Self {
        Self(_mm512_sub_ps(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn mul(self, o: Self) -> Self {
        Self(_mm512_mul_ps(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn div(self, o: Self) -> Self {
        Self(_mm512_div_ps(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn sqrt(self) -> Self {
        Self(_mm512_sqrt_ps(self.0))
    }
    #[inline(always)]
    unsafe fn neg(self) -> Self {
        let sign = _mm512_set1_epi32(i32::MIN);
        Self(_mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(self.0), sign)))
    }

    #[inline(always)]
    unsafe fn mul_add(self, a: Self, b: Self) -> Self {
        Self(_mm512_fmadd_ps(self.0, a.0, b.0))
    }
    #[inline(always)]
    unsafe fn neg_mul_add(self, a: Self, b: Self) -> Self {
        Self(_mm512_fnmadd_ps(self.0, a.0, b.0))
    }
    #[inline(always)]
    unsafe fn clamp(self, lo: Self, hi: Self) -> Self {
        // max/min return their second operand when either is NaN: keep `self` second.
        Self(_mm512_min_ps(hi.0, _mm512_max_ps(lo.0, self.0)))
    }
    #[inline(always)]
    unsafe fn abs(self) -> Self {
        Self(_mm512_abs_ps(self.0))
    }
    #[inline(always)]
    unsafe fn select_negative(self, if_negative: Self, otherwise: Self) -> Self {
        let sign = _mm512_test_epi32_mask(_mm512_castps_si512(self.0), _mm512_set1_epi32(i32::MIN));
        Self(_mm512_mask_blend_ps(sign, otherwise.0, if_negative.0))
    }
    #[inline(always)]
    unsafe fn greater_mask(self, o: Self) -> u32 {
        u32::from(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn max_over(self, o: Self) -> Self {
        // max returns its second operand unless the first is greater (NaN included).
        Self(_mm512_max_ps(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn positive_step(self) -> Self {
        let positive = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(self.0, _mm512_setzero_ps());
        Self(_mm512_maskz_mov_ps(positive, _mm512_set1_ps(1.0)))
    }
    #[inline(always)]
    unsafe fn ldexp(self, n: Self) -> Self {
        Self(_mm512_scalef_ps(self.0, n.0))
    }
    const EXP_TABLE_BITS: u32 = 4;
    #[inline(always)]
    unsafe fn exp2_fraction(index: Self) -> (Self, Self) {
        // `vpermps` reads the low 4 bits of each index.
        let index = _mm512_castps_si512(index.0);
        let (hi, lo): (&'static [f32; 16], &'static [f32; 16]) = (&f32::EXP2_HI, &f32::EXP2_LO);
        // SAFETY: each load reads the 16 values of one table.
        let hi = _mm512_permutexvar_ps(index, _mm512_loadu_ps(hi.as_ptr()));
        let lo = _mm512_permutexvar_ps(index, _mm512_loadu_ps(lo.as_ptr()));
        (Self(hi), Self(lo))
    }

    #[inline(always)]
    unsafe fn acc_zero() -> Self::Acc {
        [_mm512_setzero_pd(); 2]
    }
    #[inline(always)]
    unsafe fn acc_add(acc: Self::Acc, v: Self) -> Self::Acc {
        let (lo, hi) = widen(v.0);
        [_mm512_add_pd(acc[0], lo), _mm512_add_pd(acc[1], hi)]
    }
    #[inline(always)]
    unsafe fn acc_sum(acc: Self::Acc) -> f64 {
        _mm512_reduce_add_pd(_mm512_add_pd(acc[0], acc[1]))
    }
    #[inline(always)]
    unsafe fn add_to_f64(v: Self, sums: *mut f64) {
        let (lo, hi) = widen(v.0);
        _mm512_storeu_pd(sums, _mm512_add_pd(_mm512_loadu_pd(sums), lo));
        _mm512_storeu_pd(sums.add(8), _mm512_add_pd(_mm512_loadu_pd(sums.add(8)), hi));
    }
}

/// Lanes 0..8 and 8..16 of `v`, converted to f64.
#[inline(always)]
unsafe fn widen(v: __m512) -> (__m512d, __m512d) {
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
    (_mm512_cvtps_pd(_mm512_castps512_ps256(v)), _mm512_cvtps_pd(hi))
}

unsafe impl Lanes for F64x8 {
    type Elem = f64;
    type Acc = __m512d;
    const WIDTH: usize = 8;

    #[inline(always)]
    unsafe fn splat(x: f64) -> Self {
        Self(_mm512_set1_pd(x))
    }
    #[inline(always)]
    unsafe fn load(p: *const f64) -> Self {
        Self(_mm512_loadu_pd(p))
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f64) {
        _mm512_storeu_pd(p, self.0)
    }
    #[inline(always)]
    unsafe fn add(self, o: Self) -> Self {
        Self(_mm512_add_pd(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn sub(self, o: Self) -> Self {
        Self(_mm512_sub_pd(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn mul(self, o: Self) -> Self {
        Self(_mm512_mul_pd(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn div(self, o: Self) -> Self {
        Self(_mm512_div_pd(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn sqrt(self) -> Self {
        Self(_mm512_sqrt_pd(self.0))
    }
    #[inline(always)]
    unsafe fn neg(self) -> Self {
        let sign = _mm512_set1_epi64(i64::MIN);
        Self(_mm512_castsi512_pd(_mm512_xor_si512(_mm512_castpd_si512(self.0), sign)))
    }

    #[inline(always)]
    unsafe fn mul_add(self, a: Self, b: Self) -> Self {
        Self(_mm512_fmadd_pd(self.0, a.0, b.0))
    }
    #[inline(always)]
    unsafe fn neg_mul_add(self, a: Self, b: Self) -> Self {
        Self(_mm512_fnmadd_pd(self.0, a.0, b.0))
    }
    #[inline(always)]
    unsafe fn clamp(self, lo: Self, hi: Self) -> Self {
        Self(_mm512_min_pd(hi.0, _mm512_max_pd(lo.0, self.0)))
    }
    #[inline(always)]
    unsafe fn abs(self) -> Self {
        Self(_mm512_abs_pd(self.0))
    }
    #[inline(always)]
    unsafe fn select_negative(self, if_negative: Self, otherwise: Self) -> Self {
        let sign = _mm512_test_epi64_mask(_mm512_castpd_si512(self.0), _mm512_set1_epi64(i64::MIN));
        Self(_mm512_mask_blend_pd(sign, otherwise.0, if_negative.0))
    }
    #[inline(always)]
    unsafe fn greater_mask(self, o: Self) -> u32 {
        u32::from(_mm512_cmp_pd_mask::<_CMP_GT_OQ>(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn max_over(self, o: Self) -> Self {
        // max returns its second operand unless the first is greater (NaN included).
        Self(_mm512_max_pd(self.0, o.0))
    }
    #[inline(always)]
    unsafe fn positive_step(self) -> Self {
        let positive = _mm512_cmp_pd_mask::<_CMP_GT_OQ>(self.0, _mm512_setzero_pd());
        Self(_mm512_maskz_mov_pd(positive, _mm512_set1_pd(1.0)))
    }
    #[inline(always)]
    unsafe fn ldexp(self, n: Self) -> Self {
        Self(_mm512_scalef_pd(self.0, n.0))
    }
    const EXP_TABLE_BITS: u32 = 4;
    #[inline(always)]
    unsafe fn exp2_fraction(index: Self) -> (Self, Self) {
        // `vpermt2pd` reads the low 4 bits of each index: 3 for the lane, 1 for the register.
        let index = _mm512_castpd_si512(index.0);
        let (hi, lo): (&'static [f64; 16], &'static [f64; 16]) = (&f64::EXP2_HI, &f64::EXP2_LO);
        // SAFETY: each load reads 8 values of a table of 16, from its start or its middle.
        let hi = _mm512_permutex2var_pd(_mm512_loadu_pd(hi.as_ptr()), index, _mm512_loadu_pd(hi[8..].as_ptr()));
        let lo = _mm512_permutex2var_pd(_mm512_loadu_pd(lo.as_ptr()), index, _mm512_loadu_pd(lo[8..].as_ptr()));
        (Self(hi), Self(lo))
    }

    #[inline(always)]
    unsafe fn acc_zero() -> Self::Acc {
        _mm512_setzero_pd()
    }
    #[inline(always)]
    unsafe fn acc_add(acc: Self::Acc, v: Self) -> Self::Acc {
        _mm512_add_pd(acc, v.0)
    }
    #[inline(always)]
    unsafe fn acc_sum(acc: Self::Acc) -> f64 {
        _mm512_reduce_add_pd(acc)
    }
    #[inline(always)]
    unsafe fn add_to_f64(v: Self, sums: *mut f64) {
        _mm512_storeu_pd(sums, _mm512_add_pd(_mm512_loadu_pd(sums), v.0));
    }
}

lanes::kernel_table!(kernels_f32, "avx512f", F32x16, f32, super::super::Isa::Avx512);
lanes::kernel_table!(kernels_f64, "avx512f", F64x8, f64, super::super::Isa::Avx512);
