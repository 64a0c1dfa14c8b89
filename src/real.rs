//! The element types the engine computes in: f32 and f64.

use std::fmt::{Debug, Display};

use crate::kernels::{Isa, Kernels};

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// A floating-point element type of the engine (f32 or f64), with its GEMMs and kernels.
pub trait Real:
    num_traits::Float
    + Default
    + Debug
    + Display
    + Send
    + Sync
    + 'static
    + ndarray_npy::ReadableElement
    + ndarray_npy::WritableElement
    + bytemuck::Pod
    + sealed::Sealed
{
    /// `"f32"` or `"f64"`.
    const NAME: &'static str;

    /// Widens to f64 (exact).
    fn as_f64(self) -> f64;

    /// Rounds an f64 to this type.
    fn cast(x: f64) -> Self;

    /// The little-endian bytes of the value (as `.npy` files store it).
    type LeBytes: AsRef<[u8]>;

    fn to_le_bytes(self) -> Self::LeBytes;

    /// The vector kernel set of `isa` for this type (`None` for `Isa::Scalar` or a set this
    /// build does not have).
    ///
    /// # Safety
    /// The CPU must support `isa`.
    #[doc(hidden)]
    unsafe fn vector_kernels(isa: Isa) -> Option<Kernels<Self>>;

    /// `matrixmultiply`'s GEMM for this type (`sgemm`/`dgemm`): `C ← α A B + β C` with
    /// `A: m×k`, `B: k×n`, `C: m×n` at arbitrary strides.
    ///
    /// # Safety
    /// As `matrixmultiply::sgemm`: the pointers and strides address valid matrices, `C` does
    /// not alias `A` or `B`.
    #[allow(clippy::too_many_arguments)]
    #[doc(hidden)]
    unsafe fn matrixmultiply_gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );

    /// CBLAS column-major GEMM for this type (`cblas_sgemm`/`cblas_dgemm`).
    ///
    /// # Safety
    /// As the CBLAS routine.
    #[cfg(feature = "openblas")]
    #[allow(clippy::too_many_arguments)]
    #[doc(hidden)]
    unsafe fn cblas_gemm(
        transa: cblas_sys::CBLAS_TRANSPOSE,
        transb: cblas_sys::CBLAS_TRANSPOSE,
        m: i32,
        n: i32,
        k: i32,
        alpha: Self,
        a: *const Self,
        lda: i32,
        b: *const Self,
        ldb: i32,
        beta: Self,
        c: *mut Self,
        ldc: i32,
    );
}

macro_rules! impl_real {
    ($t:ty, $name:literal, $mm:ident, $cblas:ident, $kernels:ident) => {
        impl Real for $t {
            const NAME: &'static str = $name;

            #[inline(always)]
            fn as_f64(self) -> f64 {
                self as f64
            }

            #[inline(always)]
            fn cast(x: f64) -> Self {
                x as $t
            }

            type LeBytes = [u8; std::mem::size_of::<$t>()];

            #[inline(always)]
            fn to_le_bytes(self) -> Self::LeBytes {
                <$t>::to_le_bytes(self)
            }

            unsafe fn vector_kernels(isa: Isa) -> Option<Kernels<Self>> {
                match isa {
                    Isa::Scalar => None,
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2Fma => Some(crate::kernels::avx2::$kernels::table()),
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx512 => Some(crate::kernels::avx512::$kernels::table()),
                    #[cfg(not(target_arch = "x86_64"))]
                    _ => None,
                }
            }

            unsafe fn matrixmultiply_gemm(
                m: usize,
                k: usize,
                n: usize,
                alpha: Self,
                a: *const Self,
                rsa: isize,
                csa: isize,
                b: *const Self,
                rsb: isize,
                csb: isize,
                beta: Self,
                c: *mut Self,
                rsc: isize,
                csc: isize,
            ) {
                matrixmultiply::$mm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
            }

            #[cfg(feature = "openblas")]
            unsafe fn cblas_gemm(
                transa: cblas_sys::CBLAS_TRANSPOSE,
                transb: cblas_sys::CBLAS_TRANSPOSE,
                m: i32,
                n: i32,
                k: i32,
                alpha: Self,
                a: *const Self,
                lda: i32,
                b: *const Self,
                ldb: i32,
                beta: Self,
                c: *mut Self,
                ldc: i32,
            ) {
                cblas_sys::$cblas(
                    cblas_sys::CBLAS_LAYOUT::CblasColMajor,
                    transa,
                    transb,
                    m,
                    n,
                    k,
                    alpha,
                    a,
                    lda,
                    b,
                    ldb,
                    beta,
                    c,
                    ldc,
                )
            }
        }
    };
}

impl_real!(f32, "f32", sgemm, cblas_sgemm, kernels_f32);
impl_real!(f64, "f64", dgemm, cblas_dgemm, kernels_f64);
