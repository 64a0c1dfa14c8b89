//! Elementwise kernels of the objectives (the passes between the GEMMs, SPEC §2.1), of the
//! sparse TopK objective (its selection's scan, gathered rows) and of Adam's step, each a
//! small function over slices, in a portable scalar version and vector versions chosen at run
//! time. A [`Kernels`] table holds one complete set; the objective picks the best the CPU
//! supports once, and tests can force any set.

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
pub(crate) mod lanes;
pub mod scalar;
mod units;

use units::{ByActivation, ByReconstruction};

use crate::gemm::{MatMut, MatRef};
use crate::model::{Activation, Reconstruction};
use crate::real::Real;

/// The positions [`Kernels::collect_above`] scans at a time (a multiple of every vector width),
/// and so the free slots it needs to scan on.
pub const COLLECT_GROUP: usize = 16;

/// A value found by [`Kernels::collect_above`] and its position.
pub type Candidate<T> = (T, u32);

/// The signature of [`Kernels::collect_above`].
pub type CollectAbove<T> = fn(&[T], &[T], T, u32, &mut [Candidate<T>]) -> (usize, usize);

/// An instruction set that has a complete set of kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// Portable Rust, one element at a time, the standard library's `exp`.
    Scalar,
    /// x86_64 AVX2 with FMA: 8 × f32 or 4 × f64 per instruction.
    Avx2Fma,
    /// x86_64 AVX-512F: 16 × f32 or 8 × f64 per instruction.
    Avx512,
}

impl Isa {
    /// Every instruction set this build knows, supported by the CPU or not.
    pub const ALL: [Isa; 3] = [Isa::Scalar, Isa::Avx2Fma, Isa::Avx512];

    /// `scalar`, `avx2` or `avx512`, as `SAE_ISA` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2Fma => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// Whether the running CPU can execute this set.
    pub fn is_supported(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            Isa::Avx2Fma | Isa::Avx512 => false,
        }
    }

    /// The widest supported set, unless the environment variable `SAE_ISA` (`scalar`, `avx2`
    /// or `avx512`) asks for a particular one, for testing and comparison.
    pub fn detect() -> Isa {
        let best = Isa::ALL.into_iter().rev().find(|isa| isa.is_supported()).unwrap_or(Isa::Scalar);
        match std::env::var("SAE_ISA") {
            Err(_) => best,
            Ok(name) => match Isa::ALL.into_iter().find(|isa| isa.name() == name && isa.is_supported()) {
                Some(isa) => isa,
                None => {
                    log::warn!("SAE_ISA={name} is not a supported instruction set; using {best:?}");
                    best
                }
            },
        }
    }
}

/// One complete set of elementwise kernels for element type `T`.
///
/// Notation of SPEC §1: a "run" is a contiguous slice of one matrix row (one unit over several
/// examples) or of one column (one example over all units). All sums are accumulated in f64.
#[derive(Clone, Copy)]
pub struct Kernels<T> {
    /// The instruction set these kernels use.
    pub isa: Isa,
    /// `v ← e^v`.
    pub exp: fn(&mut [T]),
    /// The hidden-layer kernels of each [`Activation`].
    hidden: ByActivation<HiddenKernels<T>>,
    /// The output-layer kernels of each [`Reconstruction`].
    output: ByReconstruction<OutputKernels<T>>,
    /// `Σ a_i b_i` (the optimisers' inner products; partial sums in `T`, then f64).
    pub dot: fn(&[T], &[T]) -> f64,
    /// `y ← α x + y`.
    pub axpy: fn(T, &[T], &mut [T]),
    /// `(α, x, y, z)`: `y ← α x + y`, then `Σ z_i y_i` of the updated `y` (the two-loop
    /// recursion's update and next inner product in one pass). In the vector sets, the same
    /// results to the bit as `axpy` then `dot`.
    pub axpy_dot: fn(T, &[T], &mut [T], &[T]) -> f64,
    /// `(α, x, y, z)`: `y ← α x + y`, and `Σ z_i x_i` of the `x` it reads (the TopK backward
    /// pass's decoder-gradient update `∇W_dec[j] += a_ej δ_e` and the slot's gradient
    /// `W_dec[j]·δ_e` in one read of `δ_e`). In the vector sets, the same results to the bit as
    /// `axpy` then `dot(z, x)`.
    pub axpy_and_dot: fn(T, &[T], &mut [T], &[T]) -> f64,
    /// `(values, shift, t, from, collected)`: appends `(values[i] + shift[i], from + i)` for
    /// each `i` where the sum is greater than `t` (NaN never is), in order, [`COLLECT_GROUP`]
    /// positions at a time, stopping before a group when fewer than `COLLECT_GROUP` slots of
    /// `collected` are left; returns `(positions scanned, candidates appended)`. The scan of
    /// the top-k selection ([`crate::dictionary::select`]), the encoder's bias added on the fly.
    pub collect_above: CollectAbove<T>,
    /// `(values, shift)`: the largest `values[i] + shift[i]`, NaN never taken; −∞ when there
    /// is none. The top-k selection's bound on its `k`-th value.
    pub max_sum: fn(&[T], &[T]) -> T,
    /// `(values)`: asks for the cache lines of `values` to be brought into the L1 cache, and
    /// returns at once — a hint that they are read soon, with no effect on any result. The
    /// TopK objective's gathers of whole rows (a decoder row per active latent, an example's
    /// rows per active slot) issue it two rows ahead, so that several rows are on their way
    /// from memory at once rather than one after the other. The portable set does nothing.
    pub prefetch: fn(&[T]),
    /// `(x, m, v, g, step)`: Adam's step on every element ([`scalar::adam`] says how), each
    /// operation rounded as the scalar twin rounds it: the same bits, at vector speed.
    pub adam: AdamKernel<T>,
}

/// The signature of [`Kernels::adam`]: `(x, m, v, g, step)`.
pub type AdamKernel<T> = fn(&mut [T], &mut [T], &mut [T], &[T], &AdamStep<T>);

/// The constants of one Adam step in the element type: the rule's, and the bias corrections
/// `c1 = 1 − β1^t`, `c2 = 1 − β2^t` of step `t` (see [`crate::optim::StepUpdate`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamStep<T> {
    pub learning_rate: T,
    pub beta1: T,
    pub beta2: T,
    pub epsilon: T,
    pub c1: T,
    pub c2: T,
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// An element type with elementwise kernels: f32 and f64.
pub trait KernelElement: Sized + sealed::Sealed {
    /// The vector kernel set of `isa` for this type (`None` for `Isa::Scalar` or a set this
    /// build does not have).
    ///
    /// # Safety
    /// The CPU must support `isa`.
    #[doc(hidden)]
    unsafe fn vector_kernels(isa: Isa) -> Option<Kernels<Self>>;
}

macro_rules! impl_element {
    ($t:ty, $kernels:ident) => {
        impl KernelElement for $t {
            unsafe fn vector_kernels(isa: Isa) -> Option<Kernels<Self>> {
                match isa {
                    Isa::Scalar => None,
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2Fma => Some(avx2::$kernels::table()),
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx512 => Some(avx512::$kernels::table()),
                    #[cfg(not(target_arch = "x86_64"))]
                    _ => None,
                }
            }
        }
    };
}

impl_element!(f32, kernels_f32);
impl_element!(f64, kernels_f64);

/// The hidden layer's kernels for one activation `a = f(z)`; `f'` and `f''` are computed from
/// `a`.
#[derive(Clone, Copy)]
pub struct HiddenKernels<T> {
    /// `(z, b)`: `z ← a = f(z + b)`; returns `Σ a`. Forward pass of the hidden layer, one
    /// unit's run (`b` its bias, added here rather than prefilled into the GEMM's output): the
    /// sum is that unit's share of `m · rho_hat_j` (before any mapping of `a` onto `[0, 1]`).
    pub activate_sum: fn(&mut [T], T) -> f64,
    /// One hidden unit's run `(p, a2, s)`: `p ← delta2 = (p + s) f'`; returns `Σ delta2` (for
    /// `∇b1`). `p` holds `W2ᵀ delta3` on entry, `s` is the unit's sparsity delta.
    pub delta_sum: fn(&mut [T], &[T], T) -> f64,
    /// One hidden unit's run `(p, a2, f)` with the sparsity delta deferred (SPEC §2.2):
    /// `f ← F = f'`, `p ← P = p F`; returns `(Σ P, Σ F)`. `p` holds `W2ᵀ delta3` on entry.
    pub delta_deferred: DeferredDeltaKernel<T>,
    /// One hidden unit's run `(p, a2, c)` of the contractive penalty: `p ← p + c f' f''`;
    /// returns `(Σ c f' f'', Σ f'²)`.
    pub contractive_delta: ContractiveDeltaKernel<T>,
}

/// The output layer's kernels for one [`Reconstruction`].
#[derive(Clone, Copy)]
pub struct OutputKernels<T> {
    /// The output layer on a block of examples, `(z3, x, b2, delta_sums)` with `z3`, `x`:
    /// `rows×cols` (one output unit per row, one example per column) and `b2`, `delta_sums`
    /// one value per row: `z3 ← delta3 = ∂loss/∂z3` at `z3 + b2 1ᵀ`, `delta_sums[k] +=
    /// Σ_j delta3[k, j]` (for `∇b2`); returns `Σ loss` (before the objective's `1/(2m)` or
    /// `1/m`). `z3` and `x` both have unit row stride or both unit column stride (a block of
    /// a GEMM's output tile, or of the data in either layout); panics otherwise.
    pub delta: OutputDeltaKernel<T>,
}

/// The signature of [`OutputKernels::delta`]: `(z3, x, b2, delta_sums) → Σ loss`.
pub type OutputDeltaKernel<T> = fn(MatMut<'_, T>, MatRef<'_, T>, &[T], &mut [f64]) -> f64;

/// Checks the shapes and layouts [`OutputKernels::delta`] requires; returns whether the block
/// is to be read by columns (unit row stride) rather than by rows (unit column stride).
fn check_output_block<T>(z: &MatMut<'_, T>, x: &MatRef<'_, T>, b: &[T], sums: &[f64]) -> bool {
    let (rows, cols) = (z.rows(), z.cols());
    assert!(
        x.rows() == rows && x.cols() == cols && b.len() == rows && sums.len() == rows,
        "output block: z3 {rows}×{cols}, x {}×{}, {} biases, {} sums",
        x.rows(),
        x.cols(),
        b.len(),
        sums.len()
    );
    let ((zr, zc), (xr, xc)) = (z.strides(), x.strides());
    // A single row or column is contiguous whatever its other stride says.
    let columns = rows == 1 || (zr == 1 && xr == 1);
    let by_rows = cols == 1 || (zc == 1 && xc == 1);
    assert!(columns || by_rows, "output block: strides {:?} and {:?} have no common unit stride", (zr, zc), (xr, xc));
    columns
}

/// The signature of [`HiddenKernels::delta_deferred`]: `(p, a2, f) → (Σ P, Σ F)`.
pub type DeferredDeltaKernel<T> = fn(&mut [T], &[T], &mut [T]) -> (f64, f64);

/// The signature of [`HiddenKernels::contractive_delta`]: `(p, a2, c) → (Σ c f' f'', Σ f'²)`.
pub type ContractiveDeltaKernel<T> = fn(&mut [T], &[T], T) -> (f64, f64);

impl<T> std::fmt::Debug for HiddenKernels<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HiddenKernels").finish_non_exhaustive()
    }
}

impl<T> std::fmt::Debug for OutputKernels<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputKernels").finish_non_exhaustive()
    }
}

impl<T> std::fmt::Debug for Kernels<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernels").field("isa", &self.isa).finish_non_exhaustive()
    }
}

impl<T: Real> Kernels<T> {
    /// The portable scalar set.
    pub fn scalar() -> Self {
        Kernels {
            isa: Isa::Scalar,
            exp: scalar::exp,
            hidden: ByActivation::build(&scalar::Entries::<T>::new()),
            output: ByReconstruction::build(&scalar::Entries::<T>::new()),
            dot: scalar::dot,
            axpy: scalar::axpy,
            axpy_dot: scalar::axpy_dot,
            axpy_and_dot: scalar::axpy_and_dot,
            collect_above: scalar::collect_above,
            max_sum: scalar::max_sum,
            prefetch: scalar::prefetch,
            adam: scalar::adam,
        }
    }

    /// The hidden-layer kernels of `activation`.
    pub fn hidden(&self, activation: Activation) -> HiddenKernels<T> {
        self.hidden.get(activation)
    }

    /// The output-layer kernels of `reconstruction`.
    pub fn output(&self, reconstruction: Reconstruction) -> OutputKernels<T> {
        self.output.get(reconstruction)
    }

    /// The set for `isa`, or `None` when the CPU does not support it.
    pub fn for_isa(isa: Isa) -> Option<Self> {
        if !isa.is_supported() {
            return None;
        }
        match isa {
            Isa::Scalar => Some(Self::scalar()),
            // SAFETY: the CPU supports `isa`, checked above.
            _ => unsafe { T::vector_kernels(isa) },
        }
    }

    /// The set for [`Isa::detect`].
    pub fn detect() -> Self {
        Self::for_isa(Isa::detect()).unwrap_or_else(Self::scalar)
    }
}

/// The vector kernels against their scalar twins and the standard library, on every
/// instruction set this CPU has.
#[cfg(test)]
mod tests;
