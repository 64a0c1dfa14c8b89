//! Register-blocked micro-kernels: the innermost loop of the GEMM, one `MR×NR` tile of `C`
//! from an `MR`-row panel of `A` and an `NR`-column panel of `B`, both packed (see
//! [`super::pack`]):
//!
//! ```text
//! C[i + j·ldc] ← α Σ_p a[p·lda + i] · b[p·ldb + j] + β C[i + j·ldc]     i < MR, j < NR, p < k
//! ```
//!
//! A packed panel has `lda = MR` (`ldb = NR`); an operand whose panel rows are already
//! contiguous is read in place with its own stride. A *wide* tile, `MR×(NR + R)` with `R` of 1
//! or 2, takes its last `R` columns from the next panel of `B`: the last panel of a column block
//! whose width is one or two past a multiple of `NR` (S1's `h = 25 = 12 + 13`) is then computed
//! with the one before it, not as a mostly empty edge tile.
//!
//! The `MR×(NR + R)` sums live in `(NR + R)·MR/WIDTH` vector registers for the whole `k` loop;
//! each step loads `MR/WIDTH` vectors of `A` and broadcasts `NR + R` values of `B`, so the loads
//! never limit the FMAs. With `β = 0`, `C` is not read (so NaNs already there do not propagate,
//! as BLAS specifies).
//!
//! One generic body ([`tile`]) is written over [`Lanes`] and instantiated per instruction set;
//! [`scalar_tile`] is its portable twin, the kernel of [`Isa::Scalar`] and the reference the
//! vector kernels are tested against.

use super::pack::Transpose;
use crate::kernels::lanes::Lanes;
use crate::kernels::Isa;

/// The signature of a micro-kernel: `(k, α, a, lda, b, ldb, extra, ld_extra, β, c, ldc)`.
/// A tile's columns come from one panel of `B` (`b`, `NR` columns) and, for a wide tile, the
/// first `R` columns of the next (`extra`): column `NR + j` of the tile reads
/// `extra[p·ld_extra + j]`. Kernels with `R = 0` never read `extra`.
///
/// # Safety
/// `a + p·lda + i`, `b + p·ldb + j` and `extra + p·ld_extra + r` are readable for `p < k`,
/// `i < MR`, `j < NR`, `r < R`; `c + i + j·ldc` is valid for reads and writes for every
/// `i < MR`, `j < NR + R`, and aliases none of the operands; the CPU supports the kernel's
/// instruction set.
pub(crate) type TileFn<T> = unsafe fn(usize, T, *const T, usize, *const T, usize, *const T, usize, T, *mut T, usize);

/// A narrower kernel for the last, partial panel of `B`: the first `cols` columns of an
/// `MR×NR` tile, reading the same `NR`-wide panels.
#[derive(Clone, Copy)]
pub(crate) struct EdgeKernel<T> {
    pub cols: usize,
    pub run: TileFn<T>,
}

/// The kernels of the tiles `NR + 1` and `NR + 2` columns wide (`run[r − 1]` for `NR + r`):
/// the last two panels of `B` as one tile when the last holds one or two live columns (e.g.
/// `h = 25 = 12 + 13`), which then costs `r/NR` of a tile instead of a whole edge tile and its
/// copy through a buffer. They need `V·(NR + 2) + V` vector registers: AVX-512's 32, not AVX2's
/// 16.
#[derive(Clone, Copy)]
pub(crate) struct WideKernels<T> {
    pub run: [TileFn<T>; 2],
}

impl<T> WideKernels<T> {
    /// The kernel of a tile `NR + r` wide, if there is one.
    pub fn with_extra_columns(&self, r: usize) -> Option<TileFn<T>> {
        r.checked_sub(1).and_then(|i| self.run.get(i)).copied()
    }
}

/// One micro-kernel and the cache blocking it is used with.
#[derive(Clone, Copy)]
pub struct MicroKernel<T: 'static> {
    /// The instruction set of `run`.
    pub isa: Isa,
    /// Rows of the tile: the panel width of packed `A`.
    pub mr: usize,
    /// Columns of the tile: the panel width of packed `B`.
    pub nr: usize,
    /// Depth of one block of `k`: an `NR×KC` panel of `B` stays in L1 while every `A` panel of
    /// a block passes by.
    pub kc: usize,
    /// Rows of one block of `A` (`MC×KC`, kept in L2).
    pub mc: usize,
    /// Columns of one block of `B` (`KC×NC`).
    pub nc: usize,
    pub(crate) run: TileFn<T>,
    /// The vector transposes packing uses on this instruction set, largest first: a panel's
    /// rows go through the largest that fits what is left of them (12 = 8 + 4).
    pub(crate) transposes: &'static [Transpose<T>],
    /// The kernel for a last panel of at most `cols` live columns (e.g. `h = 196 = 16·12 + 4`),
    /// which would otherwise compute a whole tile of zeros beside them.
    pub(crate) edge: Option<EdgeKernel<T>>,
    /// The kernels that take a thin last panel into the tile beside it.
    pub(crate) wide: Option<WideKernels<T>>,
    /// The kernel of a tile exactly `MR/2` rows high and `NR` wide (the full tile's columns), for
    /// a last panel of `A` of at most `MR/2` live rows (e.g. `h = 196 = 6·32 + 4` in f32, or
    /// `n = 784 = 24·32 + 16`), which the full tile would compute at twice the cost. It reads the
    /// first `MR/2` rows of the same `MR`-wide panels.
    pub(crate) half: TileFn<T>,
}

impl<T: 'static> std::fmt::Debug for MicroKernel<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MicroKernel({:?}, {}×{}, kc {}, mc {}, nc {})",
            self.isa, self.mr, self.nr, self.kc, self.mc, self.nc
        )
    }
}

/// The portable micro-kernel: the same sums in the same order as [`tile`] (one product
/// `a·b` added per step of `p`), one element at a time, each rounded twice where the vector
/// kernels' FMAs round once (a software `fma` would be many times slower).
///
/// # Safety
/// As [`TileFn`] with `MR`, `NR`, `R`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn scalar_tile<T: num_traits::Float, const MR: usize, const NR: usize, const R: usize>(
    k: usize,
    alpha: T,
    a: *const T,
    lda: usize,
    b: *const T,
    ldb: usize,
    extra: *const T,
    ld_extra: usize,
    beta: T,
    c: *mut T,
    ldc: usize,
) {
    let mut acc = [[T::zero(); MR]; NR];
    let mut acc_extra = [[T::zero(); MR]; R];
    for p in 0..k {
        let a = std::slice::from_raw_parts(a.add(p * lda), MR);
        let b = std::slice::from_raw_parts(b.add(p * ldb), NR);
        let b_extra = if R == 0 { &[][..] } else { std::slice::from_raw_parts(extra.add(p * ld_extra), R) };
        for (acc, &b) in acc.iter_mut().chain(acc_extra.iter_mut()).zip(b.iter().chain(b_extra)) {
            for (acc, &a) in acc.iter_mut().zip(a) {
                *acc = a * b + *acc;
            }
        }
    }
    for (j, acc) in acc.iter().chain(&acc_extra).enumerate() {
        let column = c.add(j * ldc);
        for (i, &acc) in acc.iter().enumerate() {
            let c = column.add(i);
            *c = if beta == T::zero() { alpha * acc } else { alpha * acc + beta * *c };
        }
    }
}

/// The vector micro-kernel: an `MR×(NR + R)` tile with `MR = V·L::WIDTH`, in `V·(NR + R)`
/// accumulators, reading panel rows `lda`, `ldb` and `ld_extra` apart.
///
/// # Safety
/// As [`TileFn`] with `MR = V·L::WIDTH`, `NR`, `R`; called only from a function compiled for
/// `L`'s instruction set.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn tile<L: Lanes, const V: usize, const NR: usize, const R: usize>(
    k: usize,
    alpha: L::Elem,
    a: *const L::Elem,
    lda: usize,
    b: *const L::Elem,
    ldb: usize,
    extra: *const L::Elem,
    ld_extra: usize,
    beta: L::Elem,
    c: *mut L::Elem,
    ldc: usize,
) {
    let zero = L::splat(<L::Elem as num_traits::Zero>::zero());
    let mut acc = [[zero; V]; NR];
    let mut acc_extra = [[zero; V]; R];
    debug_assert!(R == 0 || !extra.is_null());
    let (mut a, mut b, mut extra) = (a, b, extra);
    // Four steps per trip: the loop's own additions and branch would otherwise take issue
    // slots from the FMAs on the ports they share. The pointers move by wrapping arithmetic:
    // after the last step they may point past their operands (an operand read in place ends
    // with its last panel's last step), and with `R = 0` `extra` may be null; neither is read.
    for _ in 0..k / 4 {
        for _ in 0..4 {
            step::<L, V, NR, R>(&mut acc, &mut acc_extra, a, b, extra);
            a = a.wrapping_add(lda);
            b = b.wrapping_add(ldb);
            extra = extra.wrapping_add(ld_extra);
        }
    }
    for _ in 0..k % 4 {
        step::<L, V, NR, R>(&mut acc, &mut acc_extra, a, b, extra);
        a = a.wrapping_add(lda);
        b = b.wrapping_add(ldb);
        extra = extra.wrapping_add(ld_extra);
    }
    store_columns::<L, V, NR>(&acc, alpha, beta, c, ldc);
    if R > 0 {
        store_columns::<L, V, R>(&acc_extra, alpha, beta, c.add(NR * ldc), ldc);
    }
}

/// `C[:, j] ← α acc[j] + β C[:, j]` for the `N` columns of `acc` (`C` not read when `β = 0`).
///
/// # Safety
/// `c + i + j·ldc` valid for reads and writes for `i < V·L::WIDTH`, `j < N`; called only from
/// a function compiled for `L`'s instruction set.
#[inline(always)]
unsafe fn store_columns<L: Lanes, const V: usize, const N: usize>(
    acc: &[[L; V]; N],
    alpha: L::Elem,
    beta: L::Elem,
    c: *mut L::Elem,
    ldc: usize,
) {
    let alpha = L::splat(alpha);
    if beta == <L::Elem as num_traits::Zero>::zero() {
        for (j, acc) in acc.iter().enumerate() {
            for (v, &acc) in acc.iter().enumerate() {
                acc.mul(alpha).store(c.add(j * ldc + v * L::WIDTH));
            }
        }
    } else {
        let beta = L::splat(beta);
        for (j, acc) in acc.iter().enumerate() {
            for (v, &acc) in acc.iter().enumerate() {
                let c = c.add(j * ldc + v * L::WIDTH);
                acc.mul_add(alpha, L::load(c).mul(beta)).store(c);
            }
        }
    }
}

/// One step of `p`: `acc[j][v] += a[v] · b[j]`, `acc_extra[r][v] += a[v] · extra[r]`.
///
/// # Safety
/// `a + i` (`i < V·L::WIDTH`), `b + j` (`j < NR`) and `extra + r` (`r < R`) are readable;
/// called only from a function compiled for `L`'s instruction set.
#[inline(always)]
unsafe fn step<L: Lanes, const V: usize, const NR: usize, const R: usize>(
    acc: &mut [[L; V]; NR],
    acc_extra: &mut [[L; V]; R],
    a: *const L::Elem,
    b: *const L::Elem,
    extra: *const L::Elem,
) {
    let mut column = [acc[0][0]; V];
    for (v, column) in column.iter_mut().enumerate() {
        *column = L::load(a.add(v * L::WIDTH));
    }
    for (j, acc) in acc.iter_mut().enumerate() {
        let b = L::splat(*b.add(j));
        for (acc, &a) in acc.iter_mut().zip(&column) {
            *acc = a.mul_add(b, *acc);
        }
    }
    for (r, acc) in acc_extra.iter_mut().enumerate() {
        let b = L::splat(*extra.add(r));
        for (acc, &a) in acc.iter_mut().zip(&column) {
            *acc = a.mul_add(b, *acc);
        }
    }
}

/// Instantiates [`tile`] for one instruction set and element type as `#[target_feature]`
/// functions (the full tile, the edge tile, the half-height tile, and with `wide` the tiles one
/// and two columns wider), and a constructor of its [`MicroKernel`].
macro_rules! micro_kernel {
    ($name:ident, $features:literal, $lanes:ty, $t:ty, $v:literal, $nr:literal, edge $edge:literal, wide $wide:tt, $isa:expr, kc $kc:literal, mc $mc:literal, $transposes:expr) => {
        /// The micro-kernel and its blocking.
        ///
        /// # Safety
        /// The CPU must support the kernel's target features.
        pub(crate) unsafe fn $name() -> MicroKernel<$t> {
            /// `tile::<V, NR, R>` compiled for the set.
            macro_rules! instance {
                ($fn_name:ident, $vectors:expr, $cols:expr, $extra:literal) => {
                    #[target_feature(enable = $features)]
                    #[allow(clippy::too_many_arguments)]
                    unsafe fn $fn_name(
                        k: usize,
                        alpha: $t,
                        a: *const $t,
                        lda: usize,
                        b: *const $t,
                        ldb: usize,
                        extra: *const $t,
                        ld_extra: usize,
                        beta: $t,
                        c: *mut $t,
                        ldc: usize,
                    ) {
                        tile::<$lanes, { $vectors }, { $cols }, $extra>(
                            k, alpha, a, lda, b, ldb, extra, ld_extra, beta, c, ldc,
                        )
                    }
                };
            }
            /// The wide tiles, for a set with the registers for them.
            macro_rules! wide {
                (true) => {{
                    instance!(wide_1, $v, $nr, 1);
                    instance!(wide_2, $v, $nr, 2);
                    Some(WideKernels { run: [wide_1, wide_2] })
                }};
                (false) => {
                    None
                };
            }
            instance!(run, $v, $nr, 0);
            instance!(edge, $v, $edge, 0);
            instance!(half, $v / 2, $nr, 0);
            const MR: usize = $v * <$lanes as Lanes>::WIDTH;
            // Blocks of rows and columns start on whole panels (see `pack::block_of`).
            const { assert!($mc % MR == 0 && MR * ($nr + 2) <= super::super::native::MAX_TILE) };
            // The half tile is `V/2` vectors, `MR/2` rows: the driver relies on it.
            const { assert!($v % 2 == 0) };
            MicroKernel {
                isa: $isa,
                mr: MR,
                nr: $nr,
                kc: $kc,
                mc: $mc,
                nc: 4096 / $nr * $nr,
                run,
                transposes: $transposes,
                edge: Some(EdgeKernel { cols: $edge, run: edge }),
                wide: wide!($wide),
                half,
            }
        }
    };
}

/// The kernels of the scalar set: small tiles that the compiler keeps in registers. Their wide
/// and half tiles are there less for speed than so that the GEMM's paths through them run, and
/// are tested, on every CPU.
pub(crate) fn scalar_f32() -> MicroKernel<f32> {
    MicroKernel {
        isa: Isa::Scalar,
        mr: 8,
        nr: 4,
        kc: 256,
        mc: 128,
        nc: 4096,
        run: scalar_tile::<f32, 8, 4, 0>,
        transposes: &[],
        edge: None,
        wide: Some(WideKernels { run: [scalar_tile::<f32, 8, 4, 1>, scalar_tile::<f32, 8, 4, 2>] }),
        half: scalar_tile::<f32, 4, 4, 0>,
    }
}

pub(crate) fn scalar_f64() -> MicroKernel<f64> {
    MicroKernel {
        isa: Isa::Scalar,
        mr: 8,
        nr: 4,
        kc: 256,
        mc: 128,
        nc: 4096,
        run: scalar_tile::<f64, 8, 4, 0>,
        transposes: &[],
        edge: None,
        wide: Some(WideKernels { run: [scalar_tile::<f64, 8, 4, 1>, scalar_tile::<f64, 8, 4, 2>] }),
        half: scalar_tile::<f64, 4, 4, 0>,
    }
}

// Tile shapes: AVX-512 has 32 vector registers, so 24 accumulators (2 vectors × 12 columns)
// leave room for the two A vectors; AVX2 has 16, so 12 accumulators (2 × 6). The blocking keeps
// an NR×KC panel of B within half of a 32–48 KiB L1 and an MC×KC block of A within half of
// L2 (1–2 MiB on CPUs with AVX-512, 256 KiB–1 MiB with AVX2 only).
//
// Packing an operand whose rows are contiguous transposes it, in the largest tiles that fit the
// panels: 16×16 f32 and 8×8 f64 in 512-bit registers, 8×8 f32 and 4×4 f64 in 256-bit ones,
// 4×4 f32 in 128-bit ones (the last four rows of a 12-wide panel, or of AVX2's 6-wide ones).
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use std::arch::x86_64::*;

    use super::{tile, EdgeKernel, Lanes, MicroKernel, Transpose, WideKernels};
    use crate::kernels::avx2::{F32x8, F64x4};
    use crate::kernels::avx512::{F32x16, F64x8};
    use crate::kernels::Isa;

    const F32_16: Transpose<f32> = Transpose { size: 16, run: transpose_f32_16 };
    const F32_8: Transpose<f32> = Transpose { size: 8, run: transpose_f32_8 };
    const F32_4: Transpose<f32> = Transpose { size: 4, run: transpose_f32_4 };
    const F64_8: Transpose<f64> = Transpose { size: 8, run: transpose_f64_8 };
    const F64_4: Transpose<f64> = Transpose { size: 4, run: transpose_f64_4 };

    micro_kernel!(avx512_f32, "avx512f", F32x16, f32, 2, 12, edge 4, wide true, Isa::Avx512, kc 384, mc 512, &[F32_16, F32_8, F32_4]);
    micro_kernel!(avx512_f64, "avx512f", F64x8, f64, 2, 12, edge 4, wide true, Isa::Avx512, kc 256, mc 384, &[F64_8, F64_4]);
    micro_kernel!(avx2_f32, "avx2,fma", F32x8, f32, 2, 6, edge 2, wide false, Isa::Avx2Fma, kc 256, mc 192, &[F32_8, F32_4]);
    micro_kernel!(avx2_f64, "avx2,fma", F64x4, f64, 2, 6, edge 2, wide false, Isa::Avx2Fma, kc 256, mc 96, &[F64_4]);

    /// `dst[t·ds + s] = src[s·rs + t]`, `s, t < 16`: four rounds of 16 two-source shuffles
    /// (pairs of rows interleaved, then quadruples, then 128-bit lanes twice).
    ///
    /// # Safety
    /// As [`super::super::pack::TransposeFn`], on a CPU with AVX-512F.
    #[target_feature(enable = "avx512f")]
    unsafe fn transpose_f32_16(src: *const f32, rs: usize, dst: *mut f32, ds: usize) {
        let mut r = [_mm512_setzero_ps(); 16];
        for (s, r) in r.iter_mut().enumerate() {
            *r = _mm512_loadu_ps(src.add(s * rs));
        }
        let mut t = [_mm512_setzero_ps(); 16];
        for q in 0..8 {
            t[2 * q] = _mm512_unpacklo_ps(r[2 * q], r[2 * q + 1]);
            t[2 * q + 1] = _mm512_unpackhi_ps(r[2 * q], r[2 * q + 1]);
        }
        // Within each 128-bit lane, row s of a group of four now holds its element t.
        for q in 0..4 {
            let (a, b, c, d) = (t[4 * q], t[4 * q + 1], t[4 * q + 2], t[4 * q + 3]);
            r[4 * q] = _mm512_shuffle_ps::<0x44>(a, c);
            r[4 * q + 1] = _mm512_shuffle_ps::<0xEE>(a, c);
            r[4 * q + 2] = _mm512_shuffle_ps::<0x44>(b, d);
            r[4 * q + 3] = _mm512_shuffle_ps::<0xEE>(b, d);
        }
        // 128-bit lanes: even lanes of groups (0, 1) and (2, 3), then across the halves.
        for q in 0..4 {
            t[q] = _mm512_shuffle_f32x4::<0x88>(r[q], r[4 + q]);
            t[4 + q] = _mm512_shuffle_f32x4::<0xDD>(r[q], r[4 + q]);
            t[8 + q] = _mm512_shuffle_f32x4::<0x88>(r[8 + q], r[12 + q]);
            t[12 + q] = _mm512_shuffle_f32x4::<0xDD>(r[8 + q], r[12 + q]);
        }
        for q in 0..4 {
            r[q] = _mm512_shuffle_f32x4::<0x88>(t[q], t[8 + q]);
            r[8 + q] = _mm512_shuffle_f32x4::<0xDD>(t[q], t[8 + q]);
            r[4 + q] = _mm512_shuffle_f32x4::<0x88>(t[4 + q], t[12 + q]);
            r[12 + q] = _mm512_shuffle_f32x4::<0xDD>(t[4 + q], t[12 + q]);
        }
        for (u, r) in r.iter().enumerate() {
            _mm512_storeu_ps(dst.add(u * ds), *r);
        }
    }

    /// `dst[t·ds + s] = src[s·rs + t]`, `s, t < 8`.
    ///
    /// # Safety
    /// As [`super::super::pack::TransposeFn`], on a CPU with AVX.
    #[target_feature(enable = "avx")]
    unsafe fn transpose_f32_8(src: *const f32, rs: usize, dst: *mut f32, ds: usize) {
        let r = |s: usize| _mm256_loadu_ps(src.add(s * rs));
        let (r0, r1, r2, r3, r4, r5, r6, r7) = (r(0), r(1), r(2), r(3), r(4), r(5), r(6), r(7));
        // Pairs of rows interleaved, then quadruples, then the 128-bit halves exchanged.
        let (t0, t1) = (_mm256_unpacklo_ps(r0, r1), _mm256_unpackhi_ps(r0, r1));
        let (t2, t3) = (_mm256_unpacklo_ps(r2, r3), _mm256_unpackhi_ps(r2, r3));
        let (t4, t5) = (_mm256_unpacklo_ps(r4, r5), _mm256_unpackhi_ps(r4, r5));
        let (t6, t7) = (_mm256_unpacklo_ps(r6, r7), _mm256_unpackhi_ps(r6, r7));
        let (u0, u1) = (_mm256_shuffle_ps::<0x44>(t0, t2), _mm256_shuffle_ps::<0xEE>(t0, t2));
        let (u2, u3) = (_mm256_shuffle_ps::<0x44>(t1, t3), _mm256_shuffle_ps::<0xEE>(t1, t3));
        let (u4, u5) = (_mm256_shuffle_ps::<0x44>(t4, t6), _mm256_shuffle_ps::<0xEE>(t4, t6));
        let (u6, u7) = (_mm256_shuffle_ps::<0x44>(t5, t7), _mm256_shuffle_ps::<0xEE>(t5, t7));
        let w = |t: usize, v: __m256| _mm256_storeu_ps(dst.add(t * ds), v);
        w(0, _mm256_permute2f128_ps::<0x20>(u0, u4));
        w(1, _mm256_permute2f128_ps::<0x20>(u1, u5));
        w(2, _mm256_permute2f128_ps::<0x20>(u2, u6));
        w(3, _mm256_permute2f128_ps::<0x20>(u3, u7));
        w(4, _mm256_permute2f128_ps::<0x31>(u0, u4));
        w(5, _mm256_permute2f128_ps::<0x31>(u1, u5));
        w(6, _mm256_permute2f128_ps::<0x31>(u2, u6));
        w(7, _mm256_permute2f128_ps::<0x31>(u3, u7));
    }

    /// `dst[t·ds + s] = src[s·rs + t]`, `s, t < 4`, in 128-bit registers.
    ///
    /// # Safety
    /// As [`super::super::pack::TransposeFn`], on a CPU with SSE (every x86-64).
    #[target_feature(enable = "sse")]
    unsafe fn transpose_f32_4(src: *const f32, rs: usize, dst: *mut f32, ds: usize) {
        let r = |s: usize| _mm_loadu_ps(src.add(s * rs));
        let (r0, r1, r2, r3) = (r(0), r(1), r(2), r(3));
        let (t0, t1) = (_mm_unpacklo_ps(r0, r1), _mm_unpacklo_ps(r2, r3));
        let (t2, t3) = (_mm_unpackhi_ps(r0, r1), _mm_unpackhi_ps(r2, r3));
        _mm_storeu_ps(dst, _mm_movelh_ps(t0, t1));
        _mm_storeu_ps(dst.add(ds), _mm_movehl_ps(t1, t0));
        _mm_storeu_ps(dst.add(2 * ds), _mm_movelh_ps(t2, t3));
        _mm_storeu_ps(dst.add(3 * ds), _mm_movehl_ps(t3, t2));
    }

    /// `dst[t·ds + s] = src[s·rs + t]`, `s, t < 8`, in 512-bit registers: pairs of rows
    /// interleaved, then the 128-bit lanes transposed in two rounds.
    ///
    /// # Safety
    /// As [`super::super::pack::TransposeFn`], on a CPU with AVX-512F.
    #[target_feature(enable = "avx512f")]
    unsafe fn transpose_f64_8(src: *const f64, rs: usize, dst: *mut f64, ds: usize) {
        let mut r = [_mm512_setzero_pd(); 8];
        for (s, r) in r.iter_mut().enumerate() {
            *r = _mm512_loadu_pd(src.add(s * rs));
        }
        // t[2q + c] holds, in 128-bit lane l, rows 2q and 2q + 1 of column 2l + c.
        let mut t = [_mm512_setzero_pd(); 8];
        for q in 0..4 {
            t[2 * q] = _mm512_unpacklo_pd(r[2 * q], r[2 * q + 1]);
            t[2 * q + 1] = _mm512_unpackhi_pd(r[2 * q], r[2 * q + 1]);
        }
        for c in 0..2 {
            r[c] = _mm512_shuffle_f64x2::<0x88>(t[c], t[2 + c]);
            r[2 + c] = _mm512_shuffle_f64x2::<0xDD>(t[c], t[2 + c]);
            r[4 + c] = _mm512_shuffle_f64x2::<0x88>(t[4 + c], t[6 + c]);
            r[6 + c] = _mm512_shuffle_f64x2::<0xDD>(t[4 + c], t[6 + c]);
        }
        for c in 0..2 {
            _mm512_storeu_pd(dst.add(c * ds), _mm512_shuffle_f64x2::<0x88>(r[c], r[4 + c]));
            _mm512_storeu_pd(dst.add((4 + c) * ds), _mm512_shuffle_f64x2::<0xDD>(r[c], r[4 + c]));
            _mm512_storeu_pd(dst.add((2 + c) * ds), _mm512_shuffle_f64x2::<0x88>(r[2 + c], r[6 + c]));
            _mm512_storeu_pd(dst.add((6 + c) * ds), _mm512_shuffle_f64x2::<0xDD>(r[2 + c], r[6 + c]));
        }
    }

    /// `dst[t·ds + s] = src[s·rs + t]`, `s, t < 4`.
    ///
    /// # Safety
    /// As [`super::super::pack::TransposeFn`], on a CPU with AVX.
    #[target_feature(enable = "avx")]
    unsafe fn transpose_f64_4(src: *const f64, rs: usize, dst: *mut f64, ds: usize) {
        let r = |s: usize| _mm256_loadu_pd(src.add(s * rs));
        let (r0, r1, r2, r3) = (r(0), r(1), r(2), r(3));
        let (t0, t1) = (_mm256_unpacklo_pd(r0, r1), _mm256_unpackhi_pd(r0, r1));
        let (t2, t3) = (_mm256_unpacklo_pd(r2, r3), _mm256_unpackhi_pd(r2, r3));
        _mm256_storeu_pd(dst, _mm256_permute2f128_pd::<0x20>(t0, t2));
        _mm256_storeu_pd(dst.add(ds), _mm256_permute2f128_pd::<0x20>(t1, t3));
        _mm256_storeu_pd(dst.add(2 * ds), _mm256_permute2f128_pd::<0x31>(t0, t2));
        _mm256_storeu_pd(dst.add(3 * ds), _mm256_permute2f128_pd::<0x31>(t1, t3));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::Element;

    /// The scalar twin of a tile `mr` high, `cols` wide from its first panel and `extra` from
    /// the next.
    fn twin<T: num_traits::Float>(mr: usize, cols: usize, extra: usize) -> TileFn<T> {
        match (mr, cols, extra) {
            (4, 4, 0) => scalar_tile::<T, 4, 4, 0>,
            (4, 6, 0) => scalar_tile::<T, 4, 6, 0>,
            (8, 12, 0) => scalar_tile::<T, 8, 12, 0>,
            (8, 4, 0) => scalar_tile::<T, 8, 4, 0>,
            (8, 4, 1) => scalar_tile::<T, 8, 4, 1>,
            (8, 4, 2) => scalar_tile::<T, 8, 4, 2>,
            (16, 6, 0) => scalar_tile::<T, 16, 6, 0>,
            (16, 2, 0) => scalar_tile::<T, 16, 2, 0>,
            (8, 6, 0) => scalar_tile::<T, 8, 6, 0>,
            (8, 2, 0) => scalar_tile::<T, 8, 2, 0>,
            (32, 12, 0) => scalar_tile::<T, 32, 12, 0>,
            (32, 12, 1) => scalar_tile::<T, 32, 12, 1>,
            (32, 12, 2) => scalar_tile::<T, 32, 12, 2>,
            (32, 4, 0) => scalar_tile::<T, 32, 4, 0>,
            (16, 12, 0) => scalar_tile::<T, 16, 12, 0>,
            (16, 12, 1) => scalar_tile::<T, 16, 12, 1>,
            (16, 12, 2) => scalar_tile::<T, 16, 12, 2>,
            (16, 4, 0) => scalar_tile::<T, 16, 4, 0>,
            shape => panic!("no scalar twin for a {shape:?} tile"),
        }
    }

    /// Every tile of every kernel (full, half, edge, wide) against its scalar twin: depths around
    /// the four-step unrolling, `α` and `β` with and without reading `C`, panels further
    /// apart than the tile (as an operand read in place has them) and a second panel with its
    /// own stride.
    fn vector_kernels_match_their_scalar_twins<T: Element>(tolerance: f64) {
        for isa in Isa::ALL {
            let Some(kernel) = T::micro_kernel(isa) else { continue };
            let (mr, nr) = (kernel.mr, kernel.nr);
            let mut tiles = vec![(mr, nr, 0, kernel.run), (mr / 2, nr, 0, kernel.half)];
            tiles.extend(kernel.edge.map(|edge| (mr, edge.cols, 0, edge.run)));
            if let Some(wide) = kernel.wide {
                tiles.extend((1..=2).map(|r| (mr, nr, r, wide.with_extra_columns(r).expect("a wide kernel"))));
                assert!(wide.with_extra_columns(0).is_none() && wide.with_extra_columns(3).is_none());
            }
            for (k, &(rows, cols, extra, run)) in
                [0, 1, 3, 4, 7, 64, 385].into_iter().flat_map(|k| tiles.iter().map(move |t| (k, t)))
            {
                let (lda, ldb, ld_extra) = (mr + 3, nr + 5, 7);
                let value = |i: usize, m: usize, n: usize| T::from((i * m % n) as f64 / n as f64 - 0.5).unwrap();
                let a: Vec<T> = (0..k * lda).map(|i| value(i, 37, 101)).collect();
                let b: Vec<T> = (0..k * ldb).map(|i| value(i, 53, 97)).collect();
                let b_extra: Vec<T> = (0..k * ld_extra).map(|i| value(i, 29, 89)).collect();
                for (alpha, beta) in [(1.0, 0.0), (0.5, -2.0)] {
                    let ldc = mr + 5;
                    let start: Vec<T> = (0..ldc * (nr + 2)).map(|i| T::from((i % 13) as f64 / 13.0).unwrap()).collect();
                    let (mut got, mut want) = (start.clone(), start.clone());
                    let (alpha, beta) = (T::from(alpha).unwrap(), T::from(beta).unwrap());
                    let (a, b, b_extra) = (a.as_ptr(), b.as_ptr(), b_extra.as_ptr());
                    // SAFETY: `a`, `b` and `b_extra` hold k·lda, k·ldb and k·7 values (lda ≥ mr,
                    // ldb ≥ nr ≥ cols, 7 ≥ extra), both C buffers mr + 5 rows × nr + 2 columns;
                    // `micro_kernel` checked the CPU.
                    unsafe {
                        run(k, alpha, a, lda, b, ldb, b_extra, ld_extra, beta, got.as_mut_ptr(), ldc);
                        let twin = twin(rows, cols, extra);
                        twin(k, alpha, a, lda, b, ldb, b_extra, ld_extra, beta, want.as_mut_ptr(), ldc);
                    }
                    for (index, (g, w)) in got.iter().zip(&want).enumerate() {
                        let (g, w) = (g.to_f64().unwrap(), w.to_f64().unwrap());
                        assert!(
                            (g - w).abs() <= tolerance * (1.0 + k as f64),
                            "{kernel:?} ({rows} × {cols} + {extra}) k={k} at {index}: {g} vs {w}"
                        );
                    }
                    // Nothing past the tile's columns is written.
                    assert_eq!(got[ldc * (cols + extra)..], start[ldc * (cols + extra)..]);
                }
            }
        }
    }

    #[test]
    fn vector_kernels_match_their_scalar_twins_in_f32() {
        vector_kernels_match_their_scalar_twins::<f32>(1e-6);
    }

    #[test]
    fn vector_kernels_match_their_scalar_twins_in_f64() {
        vector_kernels_match_their_scalar_twins::<f64>(1e-14);
    }

    /// Each of `kernel`'s vector transposes, of one tile from rows of 19 values into rows of 17.
    fn check_transposes<T: Element>(kernel: MicroKernel<T>) {
        assert!(!kernel.transposes.is_empty(), "{kernel:?} has vector transposes");
        for t in kernel.transposes {
            let src: Vec<T> = (0..t.size * 19).map(|i| T::from(i).unwrap()).collect();
            let mut dst = vec![-T::one(); t.size * 17];
            // SAFETY: `t.size ≤ 16` rows of 19 and of 17 values; `micro_kernel` checked the CPU.
            unsafe { (t.run)(src.as_ptr(), 19, dst.as_mut_ptr(), 17) };
            for s in 0..t.size {
                for u in 0..t.size {
                    assert_eq!(dst[u * 17 + s], src[s * 19 + u], "{kernel:?}, {0}×{0}", t.size);
                }
            }
            assert!(
                dst.chunks(17).all(|row| row[t.size..].iter().all(|&v| v == -T::one())),
                "{kernel:?} wrote past its tile"
            );
        }
    }

    #[test]
    fn transposes_match_the_definition() {
        for isa in [Isa::Avx2Fma, Isa::Avx512] {
            if let Some(kernel) = f32::micro_kernel(isa) {
                check_transposes(kernel);
            }
            if let Some(kernel) = f64::micro_kernel(isa) {
                check_transposes(kernel);
            }
        }
    }
}
