//! The order in which an epoch of minibatch training visits the examples: a function of the
//! seed and the epoch alone, so that a run is reproducible and resumes mid-epoch bit for bit,
//! in memory as streamed.
//!
//! [`Shuffle::Full`] is a uniformly random permutation of all `m` examples. It needs the data
//! in memory (or a random read per example).
//!
//! [`Shuffle::Blocks`] is the scheme for data read from disk. The examples are cut into
//! `B = ⌈m / block⌉` blocks of `block` consecutive examples (the last one shorter), across
//! shard boundaries. Epoch `e`:
//!
//! 1. permutes the blocks (random generator seeded from `(seed, e)`);
//! 2. takes them `window` at a time in that order: window `w` holds the examples of its blocks,
//!    one block after another;
//! 3. permutes each window's examples (generator seeded from `(seed, e, w)`, so that a
//!    window's order is known without drawing the windows before it).
//!
//! The epoch's order is the windows' orders one after another. Streamed, a window is one read
//! of each of its blocks into a buffer of `window · block` examples (the next window is read
//! into a second buffer meanwhile): memory is two windows and one index per block (8 bytes per
//! `block` examples: 31 MB for 10⁹ examples in blocks of 256), never the examples.
//!
//! Each minibatch draws from the `window` random blocks of its window: with the default 64
//! blocks of 256 examples, a minibatch of 256 draws from 64 places of the data set spread
//! uniformly, and each example lands in a random position among 16 384.

use std::ops::Range;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::error::{Error, Result};

/// How each epoch orders the examples: a function of the seed and the epoch alone, so that a
/// run is reproducible and resumes mid-epoch bit for bit, in memory as streamed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Shuffle {
    /// A uniformly random permutation of all the examples.
    #[default]
    Full,
    /// Blocks of `block` consecutive examples in a random order, read `window` blocks at a
    /// time into a buffer whose examples are put in a random order: the scheme for data read
    /// from disk (memory: two windows, and one index per block — never the examples). With the
    /// defaults a minibatch of 256 draws from 64 places of the data set, and each example lands
    /// in a random position among 16 384.
    Blocks { block: usize, window: usize },
}

impl Shuffle {
    /// Examples per block of the default block shuffle.
    pub const DEFAULT_BLOCK: usize = 256;
    /// Blocks per window of the default block shuffle.
    pub const DEFAULT_WINDOW: usize = 64;
    /// Blocks of 256 examples, 64 of them in the buffer.
    pub const STREAMED: Shuffle = Shuffle::Blocks { block: Self::DEFAULT_BLOCK, window: Self::DEFAULT_WINDOW };

    /// Fails, naming the parameter, for a block or window of 0.
    pub fn check(&self) -> Result<()> {
        match *self {
            Shuffle::Blocks { block: 0, .. } => Err(Error::InvalidHyperParameter {
                name: "shuffle block",
                value: 0.0,
                reason: "must be at least 1 example",
            }),
            Shuffle::Blocks { window: 0, .. } => Err(Error::InvalidHyperParameter {
                name: "shuffle window",
                value: 0.0,
                reason: "must be at least 1 block",
            }),
            _ => Ok(()),
        }
    }

    /// The order of epoch `epoch` of `m` examples: a permutation of `0..m`.
    pub fn epoch_order(&self, m: usize, seed: u64, epoch: usize) -> Vec<usize> {
        match *self {
            Shuffle::Full => {
                // The generator of the first releases, whose checkpoints resume on it.
                let mut rng =
                    Xoshiro256PlusPlus::seed_from_u64(seed ^ (epoch as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                let mut order: Vec<usize> = (0..m).collect();
                order.shuffle(&mut rng);
                order
            }
            Shuffle::Blocks { .. } => {
                let blocks = BlockOrder::new(*self, m, seed, epoch);
                let mut order = Vec::with_capacity(m);
                for w in 0..blocks.windows() {
                    let rows = blocks.window_rows(w);
                    order.extend(blocks.window_permutation(w).into_iter().map(|k| rows[k]));
                }
                order
            }
        }
    }
}

impl std::fmt::Display for Shuffle {
    /// As checkpoints record it: `full`, or `blocks of B, window of W`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shuffle::Full => f.write_str("full"),
            Shuffle::Blocks { block, window } => write!(f, "blocks of {block}, window of {window}"),
        }
    }
}

/// Epoch `epoch`'s order of the blocks of a [`Shuffle::Blocks`], and its windows.
#[derive(Debug, Clone)]
pub(crate) struct BlockOrder {
    block: usize,
    window: usize,
    m: usize,
    seed: u64,
    epoch: usize,
    /// The blocks in the epoch's order.
    blocks: Vec<usize>,
    /// Window `w`'s examples are the positions `starts[w]..starts[w + 1]` of the epoch.
    starts: Vec<usize>,
}

impl BlockOrder {
    /// The order of epoch `epoch` of `m` examples; `shuffle` is a checked `Blocks`.
    pub(crate) fn new(shuffle: Shuffle, m: usize, seed: u64, epoch: usize) -> Self {
        let Shuffle::Blocks { block, window } = shuffle else {
            unreachable!("a block order of a full shuffle");
        };
        let mut blocks: Vec<usize> = (0..m.div_ceil(block)).collect();
        blocks.shuffle(&mut Xoshiro256PlusPlus::seed_from_u64(stream_seed(seed, epoch, 0)));
        let mut starts = vec![0];
        for window_blocks in blocks.chunks(window) {
            let len: usize = window_blocks.iter().map(|&b| (b * block..((b + 1) * block).min(m)).len()).sum();
            starts.push(starts.last().expect("starts at 0") + len);
        }
        BlockOrder { block, window, m, seed, epoch, blocks, starts }
    }

    pub(crate) fn epoch(&self) -> usize {
        self.epoch
    }

    pub(crate) fn windows(&self) -> usize {
        self.starts.len() - 1
    }

    /// The positions of the epoch that window `w` covers.
    pub(crate) fn window_positions(&self, w: usize) -> Range<usize> {
        self.starts[w]..self.starts[w + 1]
    }

    /// The window covering position `position` (below `m`) of the epoch.
    pub(crate) fn window_of(&self, position: usize) -> usize {
        self.starts.partition_point(|&start| start <= position) - 1
    }

    /// The examples of window `w`'s blocks, as ranges of rows, in the epoch's order.
    pub(crate) fn window_blocks(&self, w: usize) -> impl Iterator<Item = Range<usize>> + '_ {
        let (block, m) = (self.block, self.m);
        self.blocks.chunks(self.window).nth(w).unwrap_or(&[]).iter().map(move |&b| b * block..((b + 1) * block).min(m))
    }

    /// The rows of window `w`'s blocks, one block after another.
    fn window_rows(&self, w: usize) -> Vec<usize> {
        self.window_blocks(w).flatten().collect()
    }

    /// Window `w`'s order: position `p` of the window holds its `permutation[p]`-th example
    /// (counting its blocks' examples one block after another).
    pub(crate) fn window_permutation(&self, w: usize) -> Vec<usize> {
        let mut permutation: Vec<usize> = (0..self.window_positions(w).len()).collect();
        let stream = (w as u64).wrapping_add(1);
        permutation.shuffle(&mut Xoshiro256PlusPlus::seed_from_u64(stream_seed(self.seed, self.epoch, stream)));
        permutation
    }
}

/// The seed of random stream `stream` of epoch `epoch`: SplitMix64's finaliser applied in
/// turn to the seed, the epoch and the stream, so that nearby inputs give unrelated seeds.
fn stream_seed(seed: u64, epoch: usize, stream: u64) -> u64 {
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    mix(mix(mix(seed) ^ epoch as u64) ^ stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_permutation(order: &[usize], m: usize) -> bool {
        let mut sorted = order.to_vec();
        sorted.sort_unstable();
        sorted == (0..m).collect::<Vec<_>>()
    }

    #[test]
    fn every_order_is_a_permutation_of_the_examples() {
        for shuffle in [
            Shuffle::Full,
            Shuffle::Blocks { block: 1, window: 1 },
            Shuffle::Blocks { block: 7, window: 3 },
            Shuffle::Blocks { block: 100, window: 100 },
        ] {
            for m in [1, 2, 20, 21, 103] {
                let order = shuffle.epoch_order(m, 5, 2);
                assert!(is_permutation(&order, m), "{shuffle} m = {m}: {order:?}");
            }
        }
    }

    #[test]
    fn orders_change_with_the_epoch_and_the_seed_only() {
        let shuffle = Shuffle::Blocks { block: 4, window: 3 };
        let order = shuffle.epoch_order(50, 9, 1);
        assert_eq!(order, shuffle.epoch_order(50, 9, 1));
        assert_ne!(order, shuffle.epoch_order(50, 9, 2));
        assert_ne!(order, shuffle.epoch_order(50, 10, 1));
    }

    #[test]
    fn a_window_holds_the_examples_of_its_blocks_only() {
        let (block, window, m) = (4, 3, 50);
        let shuffle = Shuffle::Blocks { block, window };
        let blocks = BlockOrder::new(shuffle, m, 3, 0);
        let order = shuffle.epoch_order(m, 3, 0);
        assert_eq!(blocks.windows(), m.div_ceil(block).div_ceil(window));
        for w in 0..blocks.windows() {
            let positions = blocks.window_positions(w);
            let mut held: Vec<usize> = order[positions.clone()].to_vec();
            held.sort_unstable();
            let mut rows = blocks.window_rows(w);
            rows.sort_unstable();
            assert_eq!(held, rows, "window {w}");
            assert!(positions.clone().all(|p| blocks.window_of(p) == w));
            // Whole blocks of consecutive rows.
            for range in blocks.window_blocks(w) {
                assert_eq!(range.start % block, 0);
                assert!(range.len() == block || range.end == m);
            }
        }
    }

    #[test]
    fn blocks_and_windows_of_zero_are_refused_by_name() {
        let message = |s: Shuffle| s.check().unwrap_err().to_string();
        assert!(message(Shuffle::Blocks { block: 0, window: 4 }).contains("shuffle block"));
        assert!(message(Shuffle::Blocks { block: 4, window: 0 }).contains("shuffle window"));
        assert!(Shuffle::STREAMED.check().is_ok());
    }
}
