//! The element types the engine computes in: f32 and f64.

use std::fmt::{Debug, Display};

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// A floating-point element type of the engine (f32 or f64). Its GEMM micro-kernels and its
/// elementwise kernels are found through the supertraits [`crate::gemm::Element`] and
/// `KernelElement` (private to the crate: the kernels' tables).
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
    + crate::gemm::Element
    + crate::kernels::KernelElement
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

    /// The largest value below this one (−∞ stays −∞, NaN stays NaN): for `v > −∞`,
    /// `x > v.next_below()` is `x ≥ v` for every `x`.
    fn next_below(self) -> Self;
}

macro_rules! impl_real {
    ($t:ty, $name:literal) => {
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

            #[inline(always)]
            fn next_below(self) -> Self {
                self.next_down()
            }
        }
    };
}

impl_real!(f32, "f32");
impl_real!(f64, "f64");
