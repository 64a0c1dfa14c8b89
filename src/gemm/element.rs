//! The element types of the GEMMs (f32 and f64): their micro-kernels and their bindings to the
//! other back-ends' routines.

use super::microkernel::{self, MicroKernel};
use super::view::{MatMut, MatRef};
use crate::kernels::Isa;

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// An element type every GEMM back-end multiplies: f32 or f64.
pub trait Element:
    num_traits::Float + bytemuck::Pod + Send + Sync + std::fmt::Debug + 'static + sealed::Sealed
{
    /// The native micro-kernel of `isa` for this type, `None` when the CPU does not support
    /// `isa`.
    fn micro_kernel(isa: Isa) -> Option<MicroKernel<Self>>;

    /// `matrixmultiply`'s `sgemm`/`dgemm`.
    ///
    /// # Safety
    /// As `matrixmultiply::sgemm`: the pointers and strides address valid matrices, `C` does
    /// not alias `A` or `B`.
    #[allow(clippy::too_many_arguments)]
    #[doc(hidden)]
    unsafe fn matrixmultiply_raw(
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

    /// CBLAS column-major `cblas_sgemm`/`cblas_dgemm`.
    ///
    /// # Safety
    /// As the CBLAS routine.
    #[cfg(feature = "openblas")]
    #[allow(clippy::too_many_arguments)]
    #[doc(hidden)]
    unsafe fn cblas_raw(
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

macro_rules! impl_element {
    ($t:ty, $scalar:ident, $avx2:ident, $avx512:ident, $mm:ident, $cblas:ident) => {
        impl Element for $t {
            fn micro_kernel(isa: Isa) -> Option<MicroKernel<Self>> {
                if !isa.is_supported() {
                    return None;
                }
                match isa {
                    Isa::Scalar => Some(microkernel::$scalar()),
                    // SAFETY: the CPU supports `isa`, checked above.
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2Fma => Some(unsafe { microkernel::x86::$avx2() }),
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx512 => Some(unsafe { microkernel::x86::$avx512() }),
                    #[cfg(not(target_arch = "x86_64"))]
                    _ => None,
                }
            }

            unsafe fn matrixmultiply_raw(
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
            unsafe fn cblas_raw(
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

impl_element!(f32, scalar_f32, avx2_f32, avx512_f32, sgemm, cblas_sgemm);
impl_element!(f64, scalar_f64, avx2_f64, avx512_f64, dgemm, cblas_dgemm);

/// `C ← α A B + β C` by `matrixmultiply` (shapes checked by the caller).
pub(super) fn matrixmultiply<T: Element>(alpha: T, a: MatRef<'_, T>, b: MatRef<'_, T>, beta: T, mut c: MatMut<'_, T>) {
    let (rsa, csa) = a.strides();
    let (rsb, csb) = b.strides();
    let (rsc, csc) = c.strides();
    let stride = |s: usize| isize::try_from(s).expect("stride fits isize");
    // SAFETY: the views were bounds-checked on construction, `c` is a unique borrow whose
    // elements are distinct (checked by `MatMut::new`), so it aliases neither `a` nor `b`;
    // the shapes were checked by the caller.
    unsafe {
        T::matrixmultiply_raw(
            c.rows(),
            a.cols(),
            c.cols(),
            alpha,
            a.as_ptr(),
            stride(rsa),
            stride(csa),
            b.as_ptr(),
            stride(rsb),
            stride(csb),
            beta,
            c.as_mut_ptr(),
            stride(rsc),
            stride(csc),
        )
    }
}

#[cfg(feature = "openblas")]
pub(super) use openblas::gemm as openblas;

#[cfg(feature = "openblas")]
mod openblas {
    use std::sync::Once;

    use cblas_sys::CBLAS_TRANSPOSE::{self, CblasNoTrans, CblasTrans};

    use super::{Element, MatMut, MatRef};

    extern "C" {
        fn openblas_set_num_threads(num_threads: std::os::raw::c_int);
    }

    fn dim(d: usize) -> i32 {
        i32::try_from(d).expect("matrix dimension fits i32")
    }

    /// The leading dimension of a column-major matrix with `rows` rows stored at column stride
    /// `stride`. CBLAS reads column `j` at `j·ld`, so `ld` must be the true stride; a stride
    /// below `rows` (a self-overlapping view) cannot be passed to BLAS at all.
    fn leading_dimension(stride: usize, rows: usize, cols: usize) -> i32 {
        if cols <= 1 {
            // The stride is never used; BLAS only asks for ld ≥ max(1, rows).
            return dim(rows.max(1));
        }
        assert!(stride >= rows.max(1), "BLAS needs a leading dimension ≥ the rows ({rows}); got stride {stride}");
        dim(stride)
    }

    /// How CBLAS (column-major) sees a view: its transpose flag and leading dimension.
    fn operand<T>(x: &MatRef<'_, T>) -> (CBLAS_TRANSPOSE, i32) {
        let (rs, cs) = x.strides();
        if rs == 1 || x.rows() == 1 {
            (CblasNoTrans, leading_dimension(cs, x.rows(), x.cols()))
        } else {
            assert!(cs == 1 || x.cols() == 1, "BLAS needs a unit stride; got strides ({rs}, {cs})");
            (CblasTrans, leading_dimension(rs, x.cols(), x.rows()))
        }
    }

    pub(in super::super) fn gemm<T: Element>(
        alpha: T,
        a: MatRef<'_, T>,
        b: MatRef<'_, T>,
        beta: T,
        mut c: MatMut<'_, T>,
    ) {
        static SINGLE_THREADED: Once = Once::new();
        // SAFETY: plain setter of OpenBLAS's global thread count.
        SINGLE_THREADED.call_once(|| unsafe { openblas_set_num_threads(1) });

        let (rsc, csc) = c.strides();
        // Column-major C: C = A B. Row-major C: compute Cᵀ = Bᵀ Aᵀ instead.
        let (a, b, rows, cols, ldc) = if rsc == 1 || c.rows() == 1 {
            (a, b, c.rows(), c.cols(), leading_dimension(csc, c.rows(), c.cols()))
        } else {
            assert!(csc == 1 || c.cols() == 1, "BLAS needs a unit stride in C");
            (b.t(), a.t(), c.cols(), c.rows(), leading_dimension(rsc, c.cols(), c.rows()))
        };
        let (transa, lda) = operand(&a);
        let (transb, ldb) = operand(&b);
        // SAFETY: every leading dimension is the view's true stride (asserted ≥ its rows), so
        // BLAS addresses exactly the views' elements, which were bounds-checked on
        // construction; shapes checked by the caller; C uniquely borrowed.
        unsafe {
            T::cblas_raw(
                transa,
                transb,
                dim(rows),
                dim(cols),
                dim(a.cols()),
                alpha,
                a.as_ptr(),
                lda,
                b.as_ptr(),
                ldb,
                beta,
                c.as_mut_ptr(),
                ldc,
            )
        }
    }
}
