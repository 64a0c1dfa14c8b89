//! Fingerprints of data sets, recorded in every checkpoint so that a resumed run can tell
//! whether it is given the data it was trained on: the shape, the element type, and the 64-bit
//! FNV-1a hash of the values' little-endian bytes, one example after another (so the same for
//! either memory layout, and for the same values streamed).

use crate::data::stream::ExampleSource;
use crate::data::{Dataset, Layout};
use crate::error::{Error, Result};
use crate::real::Real;

/// What a run is trained on, as far as a checkpoint can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataFingerprint {
    /// `m`
    pub examples: usize,
    /// `n`
    pub features: usize,
    /// The element type, [`Real::NAME`].
    pub dtype: &'static str,
    /// FNV-1a 64 of the values' bytes (see the module documentation).
    pub hash: u64,
}

impl DataFingerprint {
    /// The fingerprint of `data`: one pass over its values.
    pub fn of_dataset<T: Real>(data: &Dataset<'_, T>) -> Self {
        let (m, n) = (data.examples(), data.features());
        let mut hash = Fnv1a::new();
        match data.layout() {
            Layout::ExamplesByFeatures => data.values().iter().for_each(|&v| hash.write(v)),
            Layout::FeaturesByExamples => {
                let x = data.x();
                (0..m).for_each(|example| (0..n).for_each(|feature| hash.write(x.get(feature, example))));
            }
        }
        DataFingerprint { examples: m, features: n, dtype: T::NAME, hash: hash.0 }
    }

    /// The fingerprint of the examples of `source`, read once from its start: the same as
    /// [`of_dataset`](Self::of_dataset) of the same values in memory.
    pub fn of_source<T: Real>(source: &mut impl ExampleSource<T>) -> Result<Self> {
        // About half a megabyte of f64 at a time, in whole examples.
        const VALUES: usize = 1 << 16;
        let n = source.features();
        let mut buffer = vec![T::zero(); VALUES.div_ceil(n.max(1)) * n];
        let (mut examples, mut hash) = (0, Fnv1a::new());
        source.rewind()?;
        loop {
            let read = source.read_chunk(&mut buffer)?;
            if read == 0 {
                break;
            }
            let values = buffer.get(..read * n).ok_or_else(|| {
                Error::shape_mismatch(
                    "examples returned by ExampleSource::read_chunk",
                    format!("at most the buffer's {}", buffer.len() / n),
                    read,
                )
            })?;
            values.iter().for_each(|&v| hash.write(v));
            examples += read;
        }
        Ok(DataFingerprint { examples, features: n, dtype: T::NAME, hash: hash.0 })
    }

    /// The fingerprint of a data set split into `parts` (each part's fingerprint, in order):
    /// the parts' example counts summed, their hashes hashed in order (FNV-1a of each part's
    /// count and hash, little-endian). Not the fingerprint of the parts' values joined: the
    /// same parts in the same order give the same fingerprint, another split another one.
    pub fn of_parts(parts: &[DataFingerprint]) -> Option<Self> {
        let first = parts.first()?;
        let mut hash = Fnv1a::new();
        for part in parts {
            hash.write_bytes(&(part.examples as u64).to_le_bytes());
            hash.write_bytes(&part.hash.to_le_bytes());
        }
        let examples = parts.iter().map(|p| p.examples).sum();
        Some(DataFingerprint { examples, features: first.features, dtype: first.dtype, hash: hash.0 })
    }

    /// The fingerprint of no examples of `features` values of `T`.
    pub fn empty<T: Real>(features: usize) -> Self {
        DataFingerprint { examples: 0, features, dtype: T::NAME, hash: Fnv1a::new().0 }
    }

    /// The fingerprint as checkpoint metadata: `data.examples`, `data.features`, `data.dtype`
    /// and `data.fnv1a64` (16 hexadecimal digits).
    pub fn metadata(&self) -> [(&'static str, String); 4] {
        [
            ("data.examples", self.examples.to_string()),
            ("data.features", self.features.to_string()),
            ("data.dtype", self.dtype.to_string()),
            ("data.fnv1a64", format!("{:016x}", self.hash)),
        ]
    }
}

/// The 64-bit FNV-1a hash of `text`'s bytes.
pub(crate) fn text_hash(text: &str) -> u64 {
    let mut hash = Fnv1a::new();
    hash.write_bytes(text.as_bytes());
    hash.0
}

/// The 64-bit FNV-1a hash (Fowler, Noll, Vo): per byte, `h ← (h ⊕ byte) · 0x100000001b3`,
/// from `h = 0xcbf29ce484222325`.
struct Fnv1a(u64);

impl Fnv1a {
    fn new() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }

    fn write<T: Real>(&mut self, value: T) {
        self.write_bytes(value.to_le_bytes().as_ref());
    }

    fn write_bytes(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_gives_the_published_test_vectors() {
        for (text, expected) in
            [(&b""[..], 0xcbf2_9ce4_8422_2325), (b"a", 0xaf63_dc4c_8601_ec8c), (b"foobar", 0x8594_4171_f739_67e8)]
        {
            let mut hash = Fnv1a::new();
            hash.write_bytes(text);
            assert_eq!(hash.0, expected, "{text:?}");
        }
    }
}
