//! The FMA peak of one core, measured the way SPEC §3 defines it: a register-resident loop of
//! independent fused multiply-adds of the widest vector of an instruction set (12 accumulators:
//! more than the FMA latency times the FMA ports, so the loop is bound by throughput alone).
//! Benchmarks divide the engine's `10·h·n·m` flops per evaluation by its time and by this.

use crate::kernels::lanes::Lanes;
use crate::kernels::Isa;

/// Independent accumulators of the loop.
const CHAINS: usize = 12;

/// The flops of one trip of the loop on `isa` for element size `element_bytes`.
pub fn flops_per_trip(isa: Isa, element_bytes: usize) -> usize {
    let lanes = match isa {
        Isa::Scalar => 1,
        Isa::Avx2Fma => 32 / element_bytes,
        Isa::Avx512 => 64 / element_bytes,
    };
    2 * CHAINS * lanes
}

/// `trips` trips of the loop; returns a value that depends on every FMA (so none is removed).
///
/// # Safety
/// Called only from a function compiled for `L`'s instruction set, on a CPU that has it.
#[inline(always)]
unsafe fn fma_loop<L: Lanes>(trips: usize, start: L::Elem) -> f64 {
    let mut acc = [L::splat(start); CHAINS];
    let (a, b) = (L::splat(<L::Elem as crate::Real>::cast(0.999_999)), L::splat(<L::Elem as crate::Real>::cast(1e-7)));
    for _ in 0..trips {
        for acc in acc.iter_mut() {
            *acc = acc.mul_add(a, b);
        }
    }
    let mut out = [<L::Elem as num_traits::Zero>::zero(); 16];
    let mut sum = 0.0;
    for acc in acc {
        acc.store(out.as_mut_ptr());
        sum += out[..L::WIDTH].iter().map(|&v| crate::Real::as_f64(v)).sum::<f64>();
    }
    sum
}

/// Runs `trips` trips of the FMA loop of `isa` in precision `T` (f32 or f64) and returns the
/// flops done, or `None` when the CPU lacks `isa`.
pub fn run<T: crate::Real>(isa: Isa, trips: usize) -> Option<f64> {
    if !isa.is_supported() {
        return None;
    }
    let start = T::cast(std::hint::black_box(0.5));
    let f32 = std::mem::size_of::<T>() == 4;
    // SAFETY: the CPU supports `isa` (checked above); each arm runs code compiled for it.
    let checksum = unsafe {
        match isa {
            Isa::Scalar => scalar(trips, start),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma if f32 => x86::avx2_f32(trips, start.as_f64() as f32),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => x86::avx2_f64(trips, start.as_f64()),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 if f32 => x86::avx512_f32(trips, start.as_f64() as f32),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => x86::avx512_f64(trips, start.as_f64()),
            #[cfg(not(target_arch = "x86_64"))]
            _ => return None,
        }
    };
    std::hint::black_box(checksum);
    Some((trips * flops_per_trip(isa, std::mem::size_of::<T>())) as f64)
}

/// The loop in portable code, in `T` (the compiler may vectorise it; it is the scalar set's
/// reference, not a measure of the CPU).
fn scalar<T: crate::Real>(trips: usize, start: T) -> f64 {
    let (a, b) = (T::cast(0.999_999), T::cast(1e-7));
    let mut acc = [start; CHAINS];
    for _ in 0..trips {
        for acc in acc.iter_mut() {
            *acc = *acc * a + b;
        }
    }
    acc.iter().map(|v| v.as_f64()).sum()
}

// # Safety (of each function below): the CPU must support its target features.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::fma_loop;
    use crate::kernels::avx2::{F32x8, F64x4};
    use crate::kernels::avx512::{F32x16, F64x8};

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn avx512_f32(trips: usize, start: f32) -> f64 {
        fma_loop::<F32x16>(trips, start)
    }
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn avx512_f64(trips: usize, start: f64) -> f64 {
        fma_loop::<F64x8>(trips, start)
    }
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn avx2_f32(trips: usize, start: f32) -> f64 {
        fma_loop::<F32x8>(trips, start)
    }
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn avx2_f64(trips: usize, start: f64) -> f64 {
        fma_loop::<F64x4>(trips, start)
    }
}
