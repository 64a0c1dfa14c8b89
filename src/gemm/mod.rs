//! GEMM back-ends behind one convention: `C ← α A B + β C` (BLAS order of α and β), on strided
//! matrix views. The pure-Rust back-end (`matrixmultiply`) is always built; system OpenBLAS is
//! added by the `openblas` feature. Every call is single-threaded: the objective parallelises
//! over column blocks itself.

mod view;

pub use view::{MatMut, MatRef};

use crate::real::Real;

/// Which library multiplies the matrices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `matrixmultiply` (pure Rust, runtime-detected AVX2/FMA micro-kernels).
    MatrixMultiply,
    /// System OpenBLAS through CBLAS, pinned to one thread per call.
    #[cfg(feature = "openblas")]
    OpenBlas,
}

impl Backend {
    /// Every back-end compiled into this build.
    pub const ALL: &'static [Backend] = &[
        Backend::MatrixMultiply,
        #[cfg(feature = "openblas")]
        Backend::OpenBlas,
    ];

    /// OpenBLAS when compiled in, else `matrixmultiply`.
    pub fn preferred() -> Backend {
        *Self::ALL.last().expect("at least one back-end")
    }

    /// A short name for reports: `matrixmultiply` or `openblas`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::MatrixMultiply => "matrixmultiply",
            #[cfg(feature = "openblas")]
            Backend::OpenBlas => "openblas",
        }
    }
}

impl Default for Backend {
    fn default() -> Self {
        Self::preferred()
    }
}

/// `C ← α A B + β C`, `A: m×k`, `B: k×n`, `C: m×n`. When `β = 0`, `C` is not read.
///
/// Panics when the shapes do not agree (a programmer error).
pub fn gemm<T: Real>(backend: Backend, alpha: T, a: MatRef<'_, T>, b: MatRef<'_, T>, beta: T, c: MatMut<'_, T>) {
    assert!(
        a.rows() == c.rows() && b.cols() == c.cols() && a.cols() == b.rows(),
        "gemm shapes: A {}×{}, B {}×{}, C {}×{}",
        a.rows(),
        a.cols(),
        b.rows(),
        b.cols(),
        c.rows(),
        c.cols()
    );
    if c.rows() == 0 || c.cols() == 0 {
        return;
    }
    match backend {
        Backend::MatrixMultiply => matrixmultiply_gemm(alpha, a, b, beta, c),
        #[cfg(feature = "openblas")]
        Backend::OpenBlas => openblas::gemm(alpha, a, b, beta, c),
    }
}

fn matrixmultiply_gemm<T: Real>(alpha: T, a: MatRef<'_, T>, b: MatRef<'_, T>, beta: T, mut c: MatMut<'_, T>) {
    let (rsa, csa) = a.strides();
    let (rsb, csb) = b.strides();
    let (rsc, csc) = c.strides();
    // SAFETY: the views were bounds-checked on construction, `c` is a unique borrow so it
    // aliases neither `a` nor `b`, and the shapes were checked by `gemm`.
    unsafe {
        T::matrixmultiply_gemm(
            c.rows(),
            a.cols(),
            c.cols(),
            alpha,
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            beta,
            c.as_mut_ptr(),
            rsc as isize,
            csc as isize,
        )
    }
}

#[cfg(feature = "openblas")]
mod openblas {
    use std::sync::Once;

    use cblas_sys::CBLAS_TRANSPOSE::{self, CblasNoTrans, CblasTrans};

    use super::{MatMut, MatRef};
    use crate::real::Real;

    extern "C" {
        fn openblas_set_num_threads(num_threads: std::os::raw::c_int);
    }

    /// How CBLAS (column-major) sees a view: its transpose flag and leading dimension.
    /// Views with neither stride 1 are not produced by this crate.
    fn operand<T>(x: &MatRef<'_, T>) -> (CBLAS_TRANSPOSE, i32) {
        let (rs, cs) = x.strides();
        let ld = |stride: usize, min: usize| i32::try_from(stride.max(min).max(1)).expect("leading dimension fits i32");
        if rs == 1 || x.rows() == 1 {
            (CblasNoTrans, ld(cs, x.rows()))
        } else {
            assert!(cs == 1 || x.cols() == 1, "BLAS needs a unit stride; got strides ({rs}, {cs})");
            (CblasTrans, ld(rs, x.cols()))
        }
    }

    pub(super) fn gemm<T: Real>(alpha: T, a: MatRef<'_, T>, b: MatRef<'_, T>, beta: T, mut c: MatMut<'_, T>) {
        static SINGLE_THREADED: Once = Once::new();
        // SAFETY: plain setter of OpenBLAS's global thread count.
        SINGLE_THREADED.call_once(|| unsafe { openblas_set_num_threads(1) });

        let (rsc, csc) = c.strides();
        let dim = |d: usize| i32::try_from(d).expect("matrix dimension fits i32");
        // Column-major C: C = A B. Row-major C: compute Cᵀ = Bᵀ Aᵀ instead.
        let (a, b, rows, cols, ldc) = if rsc == 1 || c.rows() == 1 {
            (a, b, c.rows(), c.cols(), csc.max(c.rows()))
        } else {
            assert!(csc == 1 || c.cols() == 1, "BLAS needs a unit stride in C");
            (b.t(), a.t(), c.cols(), c.rows(), rsc.max(c.cols()))
        };
        let (transa, lda) = operand(&a);
        let (transb, ldb) = operand(&b);
        // SAFETY: bounds-checked views, shapes checked by the caller, C uniquely borrowed.
        unsafe {
            T::cblas_gemm(
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
                dim(ldc.max(1)),
            )
        }
    }
}
