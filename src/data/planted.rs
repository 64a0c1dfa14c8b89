//! Planted-dictionary data: data whose dictionary is known, so that what a dictionary-learning
//! model (a TopK or L1 sparse autoencoder) recovers can be measured.
//!
//! The dictionary is `F` directions `d_1 … d_F` in `ℝⁿ`, each a standard normal vector scaled to
//! unit length. Each example is `x = Σ_{j ∈ S} a_j d_j + ε`: `S` is `k` of the `F` directions
//! chosen uniformly without replacement, each magnitude `a_j` uniform in `[lo, hi]`, and `ε`
//! has independent `N(0, σ²)` components. The directions come from the seed alone (their own
//! random stream), so a data set and its dictionary can be made apart and still match.
//!
//! A learned dictionary (the decoder's `h` columns, or any `h×n` rows of directions) recovers a
//! planted direction when one of its directions has cosine at least a threshold with it
//! ([`recovery`]).

use std::path::Path;

use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::data::npy::NpyRowWriter;
use crate::error::{Error, Result};
use crate::real::Real;

/// The distribution of planted-dictionary data (see the [module documentation](self)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlantedDictionary {
    /// `n`, the dimension of the examples.
    pub features: usize,
    /// `F`, the planted directions.
    pub atoms: usize,
    /// `k`, the directions of each example.
    pub active: usize,
    /// `[lo, hi]` of each direction's magnitude.
    pub magnitudes: (f64, f64),
    /// `σ` of the Gaussian noise.
    pub noise: f64,
}

impl Default for PlantedDictionary {
    /// 4 of 512 directions in 128 dimensions, magnitudes in [0.5, 2.5], noise σ = 0.01 (the
    /// recovery benchmark of issue 16).
    fn default() -> Self {
        PlantedDictionary { features: 128, atoms: 512, active: 4, magnitudes: (0.5, 2.5), noise: 0.01 }
    }
}

/// How well a learned dictionary recovers the planted one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Recovery {
    /// The fraction of planted directions with a learned direction at cosine ≥ the threshold.
    pub recovered: f64,
    /// The mean over planted directions of their largest cosine with a learned direction.
    pub mean_max_cosine: f64,
}

impl PlantedDictionary {
    /// Fails, naming the parameter, when no data can be drawn: no features or atoms, more
    /// active directions than atoms, magnitudes not an ordered pair of finite numbers, a
    /// negative or non-finite noise.
    pub fn check(&self) -> Result<()> {
        let invalid = |name, value, reason| Err(Error::InvalidHyperParameter { name, value, reason });
        let (lo, hi) = self.magnitudes;
        if self.features == 0 {
            return invalid("planted features", 0.0, "must be at least 1");
        }
        if self.atoms == 0 {
            return invalid("planted atoms", 0.0, "must be at least 1");
        }
        if self.active == 0 || self.active > self.atoms {
            return invalid("planted active directions", self.active as f64, "must be between 1 and the atoms");
        }
        if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
            return invalid("planted magnitudes", hi - lo, "must be finite, the lower at most the upper");
        }
        if !(self.noise.is_finite() && self.noise >= 0.0) {
            return invalid("planted noise", self.noise, "must be finite and at least 0");
        }
        Ok(())
    }

    /// The planted directions of `seed`: `F×n`, one unit-length direction per row.
    pub fn directions(&self, seed: u64) -> Result<Vec<f64>> {
        self.check()?;
        let n = self.features;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x5eed_d1c7_0000_0001);
        let mut directions: Vec<f64> = (0..self.atoms * n).map(|_| rng.sample(StandardNormal)).collect();
        for direction in directions.chunks_exact_mut(n) {
            let norm = direction.iter().map(|v| v * v).sum::<f64>().sqrt();
            // A zero vector has probability 0; were it drawn, it stays zero rather than NaN.
            if norm > 0.0 {
                direction.iter_mut().for_each(|v| *v /= norm);
            }
        }
        Ok(directions)
    }

    /// `m` examples of `seed` (`m×n`, one per row) in memory.
    pub fn examples<T: Real>(&self, m: usize, seed: u64) -> Result<Vec<T>> {
        let mut values = Vec::with_capacity(m * self.features);
        self.draw(m, seed, |example, _| {
            values.extend(example.iter().map(|&v| T::cast(v)));
            Ok(())
        })?;
        Ok(values)
    }

    /// The codes of the `m` examples of `seed`: for each, its `k` directions (indices into
    /// [`directions`](Self::directions)) with their magnitudes, in the order drawn.
    pub fn codes(&self, m: usize, seed: u64) -> Result<Vec<Vec<(usize, f64)>>> {
        let mut codes = Vec::with_capacity(m);
        self.draw(m, seed, |_, code| {
            codes.push(code.to_vec());
            Ok(())
        })?;
        Ok(codes)
    }

    /// The same `m` examples written to an `.npy` file a block of rows at a time (any `m`,
    /// beyond memory), atomically.
    pub fn write_npy<T: Real>(&self, path: &Path, m: usize, seed: u64) -> Result<()> {
        const ROWS_PER_WRITE: usize = 4096;
        let mut writer = NpyRowWriter::<T>::create(path, m, self.features)?;
        let mut block = Vec::with_capacity(ROWS_PER_WRITE.min(m) * self.features);
        self.draw(m, seed, |example, _| {
            block.extend(example.iter().map(|&v| T::cast(v)));
            if block.len() == ROWS_PER_WRITE * self.features {
                writer.write_rows(&block)?;
                block.clear();
            }
            Ok(())
        })?;
        writer.write_rows(&block)?;
        writer.finish()
    }

    /// Draws the `m` examples of `seed` in order, handing each to `row` with its code; stops at
    /// `row`'s first error.
    fn draw(&self, m: usize, seed: u64, mut row: impl FnMut(&[f64], &[(usize, f64)]) -> Result<()>) -> Result<()> {
        let directions = self.directions(seed)?;
        let (n, (lo, hi)) = (self.features, self.magnitudes);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x5eed_e7a3_0000_0002);
        let (mut example, mut code) = (vec![0.0f64; n], Vec::with_capacity(self.active));
        for _ in 0..m {
            for v in example.iter_mut() {
                *v = self.noise * rng.sample::<f64, _>(StandardNormal);
            }
            code.clear();
            for atom in sample(&mut rng, self.atoms, self.active) {
                let magnitude = if lo == hi { lo } else { rng.gen_range(lo..hi) };
                let direction = &directions[atom * n..(atom + 1) * n];
                example.iter_mut().zip(direction).for_each(|(v, d)| *v += magnitude * d);
                code.push((atom, magnitude));
            }
            row(&example, &code)?;
        }
        Ok(())
    }
}

/// How well `learned` (`h×n`, a direction per row, of any length) recovers `planted` (`F×n`,
/// unit rows): for each planted direction its largest cosine with a learned one, recovered at
/// `threshold` or above. A learned direction of length 0 matches nothing.
pub fn recovery(planted: &[f64], learned: &[f64], n: usize, threshold: f64) -> Result<Recovery> {
    if n == 0 || planted.is_empty() || !planted.len().is_multiple_of(n) || !learned.len().is_multiple_of(n) {
        return Err(Error::shape_mismatch(
            "planted and learned directions",
            format!("whole rows of n = {n}, at least one planted"),
            format!("{} and {} values", planted.len(), learned.len()),
        ));
    }
    let unit: Vec<f64> = learned
        .chunks_exact(n)
        .flat_map(|direction| {
            let norm = direction.iter().map(|v| v * v).sum::<f64>().sqrt();
            direction.iter().map(move |v| if norm > 0.0 { v / norm } else { 0.0 })
        })
        .collect();
    let best: Vec<f64> = planted
        .chunks_exact(n)
        .map(|target| {
            unit.chunks_exact(n)
                .map(|candidate| candidate.iter().zip(target).map(|(a, b)| a * b).sum::<f64>())
                .fold(f64::NEG_INFINITY, f64::max)
        })
        .collect();
    let atoms = best.len() as f64;
    Ok(Recovery {
        recovered: best.iter().filter(|&&cosine| cosine >= threshold).count() as f64 / atoms,
        mean_max_cosine: best.iter().sum::<f64>() / atoms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: PlantedDictionary =
        PlantedDictionary { features: 16, atoms: 24, active: 3, magnitudes: (0.5, 2.5), noise: 0.0 };

    #[test]
    fn directions_are_unit_rows_of_the_seed() {
        let directions = SMALL.directions(3).unwrap();
        assert_eq!(directions.len(), 24 * 16);
        for row in directions.chunks_exact(16) {
            let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
            assert!((norm - 1.0).abs() < 1e-12);
        }
        assert_eq!(directions, SMALL.directions(3).unwrap());
        assert_ne!(directions, SMALL.directions(4).unwrap());
    }

    #[test]
    fn without_noise_each_example_is_its_code_of_k_distinct_directions_in_range() {
        let directions = SMALL.directions(5).unwrap();
        let (examples, codes) = (SMALL.examples::<f64>(200, 5).unwrap(), SMALL.codes(200, 5).unwrap());
        let mut used = [false; 24];
        for (example, code) in examples.chunks_exact(16).zip(&codes) {
            let mut atoms: Vec<usize> = code.iter().map(|&(atom, _)| atom).collect();
            atoms.sort_unstable();
            atoms.dedup();
            assert_eq!(atoms.len(), 3, "k distinct directions: {code:?}");
            let mut rebuilt = [0.0; 16];
            for &(atom, magnitude) in code {
                assert!((0.5..2.5).contains(&magnitude), "{magnitude}");
                rebuilt.iter_mut().zip(&directions[atom * 16..(atom + 1) * 16]).for_each(|(r, d)| *r += magnitude * d);
                used[atom] = true;
            }
            assert!(rebuilt.iter().zip(example).all(|(a, b)| (a - b).abs() < 1e-12));
        }
        assert!(used.iter().all(|&u| u), "200 examples of 3 draw every one of 24 directions");
    }

    #[test]
    fn examples_are_reproducible_and_written_as_drawn() {
        let dir = tempfile::tempdir().unwrap();
        let planted = PlantedDictionary { noise: 0.01, ..SMALL };
        let in_memory = planted.examples::<f32>(5000, 9).unwrap();
        assert_eq!(in_memory, planted.examples::<f32>(5000, 9).unwrap());
        let path = dir.path().join("planted.npy");
        planted.write_npy::<f32>(&path, 5000, 9).unwrap();
        let read = crate::data::npy::read_matrix::<f32>(&path).unwrap();
        assert_eq!(read.dim(), (5000, 16));
        assert_eq!(read.iter().copied().collect::<Vec<_>>(), in_memory);
    }

    #[test]
    fn the_planted_dictionary_recovers_itself_and_a_random_one_does_not() {
        let planted = SMALL.directions(1).unwrap();
        let itself = recovery(&planted, &planted, 16, 0.9).unwrap();
        assert_eq!(itself.recovered, 1.0);
        assert!((itself.mean_max_cosine - 1.0).abs() < 1e-12);
        // Scaled and reordered rows are the same directions.
        let mut shuffled: Vec<f64> = planted.chunks_exact(16).rev().flatten().map(|v| 3.0 * v).collect();
        assert_eq!(recovery(&planted, &shuffled, 16, 0.9).unwrap().recovered, 1.0);
        shuffled.truncate(12 * 16);
        assert_eq!(recovery(&planted, &shuffled, 16, 0.9).unwrap().recovered, 0.5);
        let other = SMALL.directions(2).unwrap();
        assert!(recovery(&planted, &other, 16, 0.9).unwrap().recovered < 0.2);
    }

    #[test]
    fn impossible_distributions_are_refused_by_name() {
        for (planted, name) in [
            (PlantedDictionary { active: 25, ..SMALL }, "active"),
            (PlantedDictionary { atoms: 0, ..SMALL }, "atoms"),
            (PlantedDictionary { magnitudes: (2.0, 1.0), ..SMALL }, "magnitudes"),
            (PlantedDictionary { noise: -1.0, ..SMALL }, "noise"),
        ] {
            let err = planted.check().unwrap_err().to_string();
            assert!(err.contains(name), "{err}");
        }
        assert!(recovery(&[1.0; 16], &[1.0; 15], 16, 0.9).is_err());
    }
}
