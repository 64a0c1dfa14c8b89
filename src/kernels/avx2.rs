//! AVX2 + FMA vectors for x86_64: [`Lanes`] for 8 × f32 and 4 × f64, with a vectorised `exp`,
//! and the `#[target_feature]` entry points of the kernels.
//!
//! `exp(x)`: `x = n ln2 + r` with `n = round(x / ln2)` (round-to-nearest by the 1.5·2^p "magic
//! number" add, which also leaves `n` in the low mantissa bits), `|r| ≤ ln2/2` after a two-part
//! (Cody–Waite) `ln2`; `e^r` by its Taylor polynomial (degree 7 for f32, 13 for f64, truncation
//! error below 0.1 ulp); then `2^n` applied as `2^{n1} · 2^{n2}`, `n1 = ⌊n/2⌋`, so that results
//! near overflow and in the subnormal range are rounded by the IEEE multiply like any other.
//! Inputs are clamped first to a range just wider than the one where `e^x` is finite and
//! nonzero, so ±inf and huge `|x|` give +inf and 0; NaN passes through the clamp and propagates.

use std::arch::x86_64::*;

use super::lanes::{self, Lanes};

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
    unsafe fn neg(self) -> Self {
        Self(_mm256_xor_ps(self.0, _mm256_set1_ps(-0.0)))
    }

    #[inline(always)]
    unsafe fn exp(self) -> Self {
        const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23
        const LN2_HI: f32 = 0.693_359_375; // exact in 9 bits, so n · LN2_HI is exact
        const LN2_LO: f32 = -2.121_944_4e-4;
        // e^-104 < half the smallest subnormal; e^89 > f32::MAX.
        let x = _mm256_min_ps(_mm256_set1_ps(89.0), _mm256_max_ps(_mm256_set1_ps(-104.0), self.0));
        let t = _mm256_fmadd_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E), _mm256_set1_ps(MAGIC));
        let n = _mm256_sub_ps(t, _mm256_set1_ps(MAGIC));
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
        let mut p = _mm256_set1_ps(1.0 / 5040.0);
        for c in [1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
        }
        let n_int = _mm256_sub_epi32(_mm256_castps_si256(t), _mm256_castps_si256(_mm256_set1_ps(MAGIC)));
        let n1 = _mm256_srai_epi32::<1>(n_int);
        let n2 = _mm256_sub_epi32(n_int, n1);
        let bias = _mm256_set1_epi32(127);
        let s1 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(n1, bias)));
        let s2 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(n2, bias)));
        Self(_mm256_mul_ps(_mm256_mul_ps(p, s1), s2))
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

/// `1/k!` for `k = 0..=12`: the Taylor coefficients of `e^r` below the leading `1/13!`.
const INV_FACTORIALS: [f64; 13] = [
    1.0,
    1.0,
    1.0 / 2.0,
    1.0 / 6.0,
    1.0 / 24.0,
    1.0 / 120.0,
    1.0 / 720.0,
    1.0 / 5040.0,
    1.0 / 40_320.0,
    1.0 / 362_880.0,
    1.0 / 3_628_800.0,
    1.0 / 39_916_800.0,
    1.0 / 479_001_600.0,
];

/// `2^n` for integral `n` with a normal result (`|n| ≤ 1022`).
#[inline(always)]
unsafe fn pow2(n: __m256d) -> __m256d {
    const MAGIC: f64 = 6_755_399_441_055_744.0;
    // bits(n + MAGIC) = bits(MAGIC) + n, exactly, for |n| < 2^51.
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
    unsafe fn neg(self) -> Self {
        Self(_mm256_xor_pd(self.0, _mm256_set1_pd(-0.0)))
    }

    #[inline(always)]
    unsafe fn exp(self) -> Self {
        const MAGIC: f64 = 6_755_399_441_055_744.0; // 1.5 · 2^52
        const LN2_HI: f64 = 6.931_457_519_531_25e-1; // 21 significant bits: n · LN2_HI is exact
        const LN2_LO: f64 = 1.428_606_820_309_417_232_12e-6;
        // e^-746 < half the smallest subnormal; e^710 > f64::MAX.
        let x = _mm256_min_pd(_mm256_set1_pd(710.0), _mm256_max_pd(_mm256_set1_pd(-746.0), self.0));
        let t = _mm256_fmadd_pd(x, _mm256_set1_pd(std::f64::consts::LOG2_E), _mm256_set1_pd(MAGIC));
        let n = _mm256_sub_pd(t, _mm256_set1_pd(MAGIC));
        let r = _mm256_fnmadd_pd(n, _mm256_set1_pd(LN2_HI), x);
        let r = _mm256_fnmadd_pd(n, _mm256_set1_pd(LN2_LO), r);
        let mut p = _mm256_set1_pd(1.0 / 6_227_020_800.0); // 1/13!
        for &c in INV_FACTORIALS.iter().rev() {
            p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(c));
        }
        // No 64-bit arithmetic shift in AVX2: split n in floating point, where it is exact.
        let n1 = _mm256_floor_pd(_mm256_mul_pd(n, _mm256_set1_pd(0.5)));
        let n2 = _mm256_sub_pd(n, n1);
        Self(_mm256_mul_pd(_mm256_mul_pd(p, pow2(n1)), pow2(n2)))
    }

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

/// The `#[target_feature]` entry points: each instantiates a generic body of [`lanes`] with
/// AVX2 and FMA enabled.
macro_rules! entry_points {
    ($lanes:ty, $t:ty, $exp:ident, $sigmoid_sum:ident, $row:ident, $col:ident, $hidden:ident) => {
        /// # Safety
        /// The CPU must support AVX2 and FMA.
        #[target_feature(enable = "avx2,fma")]
        pub(crate) unsafe fn $exp(v: &mut [$t]) {
            lanes::exp::<$lanes>(v)
        }
        /// # Safety
        /// The CPU must support AVX2 and FMA.
        #[target_feature(enable = "avx2,fma")]
        pub(crate) unsafe fn $sigmoid_sum(z: &mut [$t]) -> f64 {
            lanes::sigmoid_sum::<$lanes>(z)
        }
        /// # Safety
        /// The CPU must support AVX2 and FMA.
        #[target_feature(enable = "avx2,fma")]
        pub(crate) unsafe fn $row(z: &mut [$t], x: &[$t]) -> (f64, f64) {
            lanes::output_delta_row::<$lanes>(z, x)
        }
        /// # Safety
        /// The CPU must support AVX2 and FMA.
        #[target_feature(enable = "avx2,fma")]
        pub(crate) unsafe fn $col(z: &mut [$t], x: &[$t], delta_sums: &mut [f64]) -> f64 {
            lanes::output_delta_col::<$lanes>(z, x, delta_sums)
        }
        /// # Safety
        /// The CPU must support AVX2 and FMA.
        #[target_feature(enable = "avx2,fma")]
        pub(crate) unsafe fn $hidden(p: &mut [$t], a2: &[$t]) -> f64 {
            lanes::hidden_delta_sum::<$lanes>(p, a2)
        }
    };
}

entry_points!(F32x8, f32, exp_f32, sigmoid_sum_f32, output_delta_row_f32, output_delta_col_f32, hidden_delta_sum_f32);
entry_points!(F64x4, f64, exp_f64, sigmoid_sum_f64, output_delta_row_f64, output_delta_col_f64, hidden_delta_sum_f64);
