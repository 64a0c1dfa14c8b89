//! The denoising autoencoder's corrupted input `x̃`, made one column block at a time where the
//! engine reads the block, so that no corrupted copy of the data set exists.
//!
//! The noise of example `i` is drawn from its own generator, seeded by `(seed, epoch, i)`: a
//! block can be corrupted again identically (the backward pass needs the `x̃` the forward pass
//! saw), in any order and on any thread, and the result does not depend on the block size, the
//! chunk size or the thread count.

use rand::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::data::{Dataset, Layout};
use crate::gemm::MatRef;
use crate::model::{Corruption, HyperParams};
use crate::objective::normal::StandardNormal;
use crate::real::Real;

/// What the encoder reads: the data itself, or with corruption (denoising) `x̃`, made again
/// identically wherever a pass reads a block (the forward pass and the backward one's `∇W1`);
/// the loss always compares with the clean `x`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EncoderInput {
    noise: Option<Noise>,
}

impl EncoderInput {
    /// The input of the model of `hyper`, at epoch 0.
    pub(crate) fn new(hyper: &HyperParams) -> Self {
        let noise = match hyper.corruption() {
            Corruption::None => None,
            corruption => Some(Noise { corruption, seed: hyper.corruption_seed(), epoch: 0 }),
        };
        EncoderInput { noise }
    }

    /// Draws the noise of `epoch` from now on; no effect without corruption.
    pub(crate) fn set_epoch(&mut self, epoch: u64) {
        if let Some(noise) = &mut self.noise {
            noise.epoch = epoch;
        }
    }

    /// The scratch [`block`](Self::block) needs for blocks of up to `block` examples of `n`
    /// values: none for the clean data.
    pub(crate) fn scratch_len(&self, n: usize, block: usize) -> usize {
        if self.noise.is_some() {
            n * block
        } else {
            0
        }
    }

    /// The encoder's input for `width` examples of `data` from its `start`-th (`n×width`):
    /// the data's own columns, or `x̃` made in `scratch` ([`scratch_len`](Self::scratch_len)
    /// values). `first_example` is the global index of the data's first example (the chunk's
    /// offset when streaming), on which the noise depends.
    pub(crate) fn block<'a, T: Real>(
        &self,
        data: &Dataset<'a, T>,
        start: usize,
        width: usize,
        first_example: usize,
        scratch: &'a mut [T],
    ) -> MatRef<'a, T> {
        match self.noise {
            None => data.x().columns(start, width),
            Some(noise) => {
                let n = data.features();
                noise.corrupt_block(data, start, width, first_example, scratch);
                MatRef::col_major(&scratch[..n * width], n, width)
            }
        }
    }
}

/// The noise of one data set: what to draw, from which seed, in which epoch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Noise {
    pub corruption: Corruption,
    pub seed: u64,
    pub epoch: u64,
}

/// SplitMix64's output function: a bijective mix of 64 bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The generator of one example's noise: a function of `(seed, epoch, example)` alone.
pub(crate) fn example_generator(seed: u64, epoch: u64, example: u64) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(mix(mix(mix(seed) ^ epoch) ^ example))
}

impl Noise {
    fn generator(&self, example: u64) -> Xoshiro256PlusPlus {
        example_generator(self.seed, self.epoch, example)
    }

    /// `x̃` of `width` examples of `data` from its `start`-th, into `out` (`n×width`,
    /// column-major: one example after another). `first_example` is the global index of the
    /// data's first example (the chunk's offset when streaming).
    pub(crate) fn corrupt_block<T: Real>(
        &self,
        data: &Dataset<'_, T>,
        start: usize,
        width: usize,
        first_example: usize,
        out: &mut [T],
    ) {
        let (n, m) = (data.features(), data.examples());
        let values = data.values();
        for (i, column) in out[..n * width].chunks_exact_mut(n).enumerate() {
            let example = start + i;
            let index = (first_example + example) as u64;
            match data.layout() {
                Layout::ExamplesByFeatures => {
                    let x = &values[example * n..(example + 1) * n];
                    self.corrupt_example(column, |k| x[k], index);
                }
                Layout::FeaturesByExamples => self.corrupt_example(column, |k| values[k * m + example], index),
            }
        }
    }

    /// `out[k] = x̃_k` for one example whose clean values are `x(k)`, read once each.
    fn corrupt_example<T: Real>(&self, out: &mut [T], x: impl Fn(usize) -> T, example: u64) {
        let mut rng = self.generator(example);
        match self.corruption {
            Corruption::None => out.iter_mut().enumerate().for_each(|(k, v)| *v = x(k)),
            Corruption::Masking { probability } => {
                out.iter_mut().enumerate().for_each(|(k, v)| *v = x(k));
                // Two 32-bit uniforms per draw: a value is dropped when its u < p · 2^32. A
                // select, not a branch: the drops are random, a branch would mispredict on a
                // fraction p of them.
                let threshold = (probability * 4_294_967_296.0) as u64;
                let keep = |value: T, u: u64| if u < threshold { T::zero() } else { value };
                let mut pairs = out.chunks_exact_mut(2);
                for pair in &mut pairs {
                    let bits = rng.next_u64();
                    pair[0] = keep(pair[0], bits & 0xffff_ffff);
                    pair[1] = keep(pair[1], bits >> 32);
                }
                if let [last] = pairs.into_remainder() {
                    *last = keep(*last, rng.next_u64() & 0xffff_ffff);
                }
            }
            Corruption::Gaussian { std_dev } => {
                // Two variates per draw, 24 bits each: the noise is the same in f32 and f64.
                let normal = StandardNormal::new();
                let last_index = out.len().saturating_sub(1);
                let mut pairs = out.chunks_exact_mut(2);
                for (pair, k) in (&mut pairs).zip((0..).step_by(2)) {
                    let (a, b) = normal.sample_pair(&mut rng);
                    pair[0] = x(k) + T::cast(std_dev * a);
                    pair[1] = x(k + 1) + T::cast(std_dev * b);
                }
                if let [last] = pairs.into_remainder() {
                    *last = x(last_index) + T::cast(std_dev * normal.sample_pair(&mut rng).0);
                }
            }
        }
    }
}
