//! GEMM back-ends behind one convention: `C ← α A B + β C` (BLAS order of α and β), on strided
//! matrix views. The engine's own GEMM ([`Backend::Native`], module `native`) is the default:
//! packed operands, cache blocking and register-blocked micro-kernels for AVX-512, AVX2+FMA
//! and portable Rust, chosen at run time like the elementwise kernels. `matrixmultiply` is
//! always built as a second back-end, system OpenBLAS with the `openblas` feature. Every call
//! is single-threaded: the objective parallelises over column blocks itself.
//!
//! A [`Gemm`] is a back-end and an instruction set; [`Gemm::pack_left`] and
//! [`Gemm::pack_right`] pack an operand once for many products (the weights of one evaluation).

mod element;
mod microkernel;
mod native;
mod pack;
pub mod peak;
mod view;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

pub use element::Element;
pub(crate) use microkernel::MicroKernel;
pub use native::{Operand, Packed};
pub use pack::PackBuffer;
pub use view::{MatMut, MatRef};

use crate::error::{Error, Result};
use crate::kernels::Isa;

/// Which library multiplies the matrices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The engine's own GEMM (this module), on the instruction set of the [`Gemm`].
    Native,
    /// `matrixmultiply` (pure Rust, runtime-detected AVX2/FMA micro-kernels).
    MatrixMultiply,
    /// System OpenBLAS through CBLAS, pinned to one thread per call.
    #[cfg(feature = "openblas")]
    OpenBlas,
}

impl Backend {
    /// Every back-end compiled into this build, the default first.
    pub const ALL: &'static [Backend] = &[
        Backend::Native,
        Backend::MatrixMultiply,
        #[cfg(feature = "openblas")]
        Backend::OpenBlas,
    ];

    /// The default: the engine's own GEMM.
    pub fn preferred() -> Backend {
        Backend::Native
    }

    /// A short name for reports and `--backend`: `native`, `matrixmultiply` or `openblas`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Native => "native",
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

/// The layout of the output `C` a packed operand will be multiplied into: the native GEMM
/// computes a product into a row-major `C` as `Cᵀ = Bᵀ Aᵀ`, which swaps the roles of the
/// operands and so their packing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Unit row stride (Fortran order).
    ColMajor,
    /// Unit column stride (C order).
    RowMajor,
}

/// A GEMM back-end and the instruction set of its kernels (used by [`Backend::Native`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gemm {
    backend: Backend,
    isa: Isa,
}

impl Gemm {
    /// `backend` on `isa`; an error when the CPU does not support `isa`.
    pub fn new(backend: Backend, isa: Isa) -> Result<Gemm> {
        if !isa.is_supported() {
            return Err(Error::UnsupportedIsa { isa: isa.name() });
        }
        Ok(Gemm { backend, isa })
    }

    /// `backend` on [`Isa::detect`] (read once per process).
    pub fn detect(backend: Backend) -> Gemm {
        static DETECTED: OnceLock<Isa> = OnceLock::new();
        Gemm { backend, isa: *DETECTED.get_or_init(Isa::detect) }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// The same back-end on another instruction set.
    pub fn with_isa(self, isa: Isa) -> Result<Gemm> {
        Gemm::new(self.backend, isa)
    }

    /// `C ← α A B + β C`, `A: m×k`, `B: k×n`, `C: m×n`. When `β = 0`, `C` is not read.
    ///
    /// Panics when the shapes do not agree (a programmer error).
    pub fn product<'a, 'b, T>(
        &self,
        alpha: T,
        a: impl Into<Operand<'a, T>>,
        b: impl Into<Operand<'b, T>>,
        beta: T,
        c: MatMut<'_, T>,
    ) where
        T: Element + 'a + 'b,
    {
        let (a, b) = (a.into(), b.into());
        let (av, bv) = (a.view(), b.view());
        assert!(
            av.rows() == c.rows() && bv.cols() == c.cols() && av.cols() == bv.rows(),
            "gemm shapes: A {}×{}, B {}×{}, C {}×{}",
            av.rows(),
            av.cols(),
            bv.rows(),
            bv.cols(),
            c.rows(),
            c.cols()
        );
        if c.rows() == 0 || c.cols() == 0 {
            return;
        }
        match self.backend {
            Backend::Native => {
                let kernel = self.kernel::<T>();
                count_product(kernel.isa);
                native::gemm(&kernel, alpha, a, b, beta, c)
            }
            Backend::MatrixMultiply => element::matrixmultiply(alpha, av, bv, beta, c),
            #[cfg(feature = "openblas")]
            Backend::OpenBlas => element::openblas(alpha, av, bv, beta, c),
        }
    }

    /// The micro-kernel the native back-end uses for `T`.
    pub(crate) fn kernel<T: Element>(&self) -> MicroKernel<T> {
        T::micro_kernel(self.isa).expect("a Gemm's instruction set is supported (checked when it was made)")
    }

    /// Packs `a` once as the left operand of products `α A B + β C` into outputs of layout
    /// `output`, in `buffer` (reused across calls); products with another layout still work
    /// (they pack `a` again). Back-ends other than the native one pack nothing.
    pub fn pack_left<'a, T: Element>(
        &self,
        a: MatRef<'a, T>,
        output: Order,
        buffer: &'a mut PackBuffer<T>,
    ) -> Packed<'a, T> {
        // Into a row-major C, A is the right side of Cᵀ = Bᵀ Aᵀ, whose Mᵀ-panels are A's rows.
        self.pack(a, false, output == Order::RowMajor, a.cols(), buffer)
    }

    /// As [`Gemm::pack_left`], for the right operand `B`.
    pub fn pack_right<'a, T: Element>(
        &self,
        b: MatRef<'a, T>,
        output: Order,
        buffer: &'a mut PackBuffer<T>,
    ) -> Packed<'a, T> {
        // Into a column-major C the right side is cut into panels of Bᵀ's rows; into a
        // row-major one B is the left side of Cᵀ = Bᵀ Aᵀ, cut into the same rows of Bᵀ.
        self.pack(b, true, output == Order::ColMajor, b.rows(), buffer)
    }

    /// Packs `source` (transposed or not) in panels of the kernel's `NR` (`right_side`) or
    /// `MR`, blocked for a product of depth `k`.
    fn pack<'a, T: Element>(
        &self,
        source: MatRef<'a, T>,
        transposed: bool,
        right_side: bool,
        k: usize,
        buffer: &'a mut PackBuffer<T>,
    ) -> Packed<'a, T> {
        if self.backend != Backend::Native {
            return Packed { source, packing: None };
        }
        let kernel = self.kernel::<T>();
        let (left, right) = native::formats(&kernel, k);
        let format = if right_side { right } else { left };
        let data = pack::pack_whole(if transposed { source.t() } else { source }, format, kernel.transposes, buffer);
        Packed { source, packing: Some(native::Packing { transposed, format, data }) }
    }
}

/// `C ← α A B + β C`, `A: m×k`, `B: k×n`, `C: m×n`, with `backend` on the detected
/// instruction set. When `β = 0`, `C` is not read.
///
/// Panics when the shapes do not agree (a programmer error).
pub fn gemm<T: Element>(backend: Backend, alpha: T, a: MatRef<'_, T>, b: MatRef<'_, T>, beta: T, c: MatMut<'_, T>) {
    Gemm::detect(backend).product(alpha, a, b, beta, c)
}

/// Native products run per instruction set, in `Isa::ALL` order.
static PRODUCTS: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

fn product_counter(isa: Isa) -> &'static AtomicU64 {
    match isa {
        Isa::Scalar => &PRODUCTS[0],
        Isa::Avx2Fma => &PRODUCTS[1],
        Isa::Avx512 => &PRODUCTS[2],
    }
}

fn count_product(isa: Isa) {
    product_counter(isa).fetch_add(1, Ordering::Relaxed);
}

/// How many products the native back-end has run on `isa`'s micro-kernels in this process:
/// the proof, for tests and benchmarks, that a forced instruction set really ran.
pub fn products_run(isa: Isa) -> u64 {
    product_counter(isa).load(Ordering::Relaxed)
}
