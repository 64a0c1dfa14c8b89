//! Elementwise kernels of the objective: the passes between the GEMMs (SPEC §2.1), each a
//! small function over slices, in a portable scalar version and vector versions chosen at run
//! time. A [`Kernels`] table holds one complete set; the objective picks the best the CPU
//! supports once, and tests can force any set.

#[cfg(target_arch = "x86_64")]
mod avx2;
mod lanes;
pub mod scalar;

use crate::real::Real;

/// An instruction set that has a complete set of kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// Portable Rust, one element at a time, the standard library's `exp`.
    Scalar,
    /// x86_64 AVX2 with FMA: 8 × f32 or 4 × f64 per instruction.
    Avx2Fma,
}

impl Isa {
    /// Every instruction set this build knows, supported by the CPU or not.
    pub const ALL: [Isa; 2] = [Isa::Scalar, Isa::Avx2Fma];

    /// `scalar` or `avx2`, as `SAE_ISA` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2Fma => "avx2",
        }
    }

    /// Whether the running CPU can execute this set.
    pub fn is_supported(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(not(target_arch = "x86_64"))]
            Isa::Avx2Fma => false,
        }
    }

    /// The fastest supported set, unless the environment variable `SAE_ISA` (`scalar` or
    /// `avx2`) asks for a particular one, for testing and comparison.
    pub fn detect() -> Isa {
        let best = if Isa::Avx2Fma.is_supported() { Isa::Avx2Fma } else { Isa::Scalar };
        match std::env::var("SAE_ISA").as_deref() {
            Ok("scalar") => Isa::Scalar,
            Ok("avx2") if Isa::Avx2Fma.is_supported() => Isa::Avx2Fma,
            Ok(other) => {
                log::warn!("SAE_ISA={other} is not a supported instruction set; using {best:?}");
                best
            }
            Err(_) => best,
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
    /// `z ← a = σ(z)`; returns `Σ a`. Forward pass of the hidden layer, one unit's run: the sum
    /// is that unit's share of `m · rho_hat_j`.
    pub sigmoid_sum: fn(&mut [T]) -> f64,
    /// One output unit's run `(z3, x)`: `a3 = σ(z3)`, `z3 ← delta3 = (a3 − x) a3 (1 − a3)`;
    /// returns `(Σ (a3 − x)², Σ delta3)`.
    pub output_delta_row: fn(&mut [T], &[T]) -> (f64, f64),
    /// One example's column `(z3, x)` over all output units: as `output_delta_row`, with
    /// `delta_sums[k] += delta3[k]` (for `∇b2`); returns `Σ (a3 − x)²`.
    pub output_delta_col: fn(&mut [T], &[T], &mut [f64]) -> f64,
    /// One hidden unit's run `(p, a2)`: `p ← delta2 = p a2 (1 − a2)`; returns `Σ delta2`
    /// (for `∇b1`). `p` holds `W2ᵀ delta3 + s` on entry.
    pub hidden_delta_sum: fn(&mut [T], &[T]) -> f64,
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
            sigmoid_sum: scalar::sigmoid_sum,
            output_delta_row: scalar::output_delta_row,
            output_delta_col: scalar::output_delta_col,
            hidden_delta_sum: scalar::hidden_delta_sum,
        }
    }

    /// The set for `isa`, or `None` when the CPU does not support it.
    pub fn for_isa(isa: Isa) -> Option<Self> {
        if !isa.is_supported() {
            return None;
        }
        match isa {
            Isa::Scalar => Some(Self::scalar()),
            Isa::Avx2Fma => T::avx2_fma_kernels(),
        }
    }

    /// The set for [`Isa::detect`].
    pub fn detect() -> Self {
        Self::for_isa(Isa::detect()).unwrap_or_else(Self::scalar)
    }
}

/// Safe wrappers of the AVX2 entry points. They are reachable only through the tables built by
/// [`avx2_fma_f32`] and [`avx2_fma_f64`], which [`Kernels::for_isa`] hands out only after it has
/// detected AVX2 and FMA: that is what makes calling them sound.
#[cfg(target_arch = "x86_64")]
macro_rules! avx2_table {
    ($name:ident, $t:ty, $exp:ident, $sigmoid_sum:ident, $row:ident, $col:ident, $hidden:ident) => {
        pub(crate) fn $name() -> Kernels<$t> {
            fn exp(v: &mut [$t]) {
                unsafe { avx2::$exp(v) }
            }
            fn sigmoid_sum(z: &mut [$t]) -> f64 {
                unsafe { avx2::$sigmoid_sum(z) }
            }
            fn output_delta_row(z: &mut [$t], x: &[$t]) -> (f64, f64) {
                unsafe { avx2::$row(z, x) }
            }
            fn output_delta_col(z: &mut [$t], x: &[$t], delta_sums: &mut [f64]) -> f64 {
                unsafe { avx2::$col(z, x, delta_sums) }
            }
            fn hidden_delta_sum(p: &mut [$t], a2: &[$t]) -> f64 {
                unsafe { avx2::$hidden(p, a2) }
            }
            Kernels { isa: Isa::Avx2Fma, exp, sigmoid_sum, output_delta_row, output_delta_col, hidden_delta_sum }
        }
    };
}

#[cfg(target_arch = "x86_64")]
avx2_table!(
    avx2_fma_f32,
    f32,
    exp_f32,
    sigmoid_sum_f32,
    output_delta_row_f32,
    output_delta_col_f32,
    hidden_delta_sum_f32
);
#[cfg(target_arch = "x86_64")]
avx2_table!(
    avx2_fma_f64,
    f64,
    exp_f64,
    sigmoid_sum_f64,
    output_delta_row_f64,
    output_delta_col_f64,
    hidden_delta_sum_f64
);
