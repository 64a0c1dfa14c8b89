//! The standard benchmark problems of SPEC §3 and their seeded timing data.

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use std::path::Path;

use crate::data::npy::NpyRowWriter;
use crate::error::Result;
use crate::model::HyperParams;
use crate::real::Real;

/// One of SPEC §3's problem shapes with its hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProblemShape {
    pub name: &'static str,
    /// `n`
    pub visible: usize,
    /// `h`
    pub hidden: usize,
    /// `m`
    pub examples: usize,
    pub lambda: f64,
    pub beta: f64,
    pub rho: f64,
}

/// S1 ufldl-patches, S2 mnist-10k, S3 mnist-60k, S4 wide.
pub const SPEC_SHAPES: [ProblemShape; 4] = [
    ProblemShape { name: "S1", visible: 64, hidden: 25, examples: 10_000, lambda: 1e-4, beta: 3.0, rho: 0.01 },
    ProblemShape { name: "S2", visible: 784, hidden: 196, examples: 10_000, lambda: 3e-3, beta: 3.0, rho: 0.1 },
    ProblemShape { name: "S3", visible: 784, hidden: 196, examples: 60_000, lambda: 3e-3, beta: 3.0, rho: 0.1 },
    ProblemShape { name: "S4", visible: 1024, hidden: 2048, examples: 8_192, lambda: 1e-4, beta: 3.0, rho: 0.05 },
];

impl ProblemShape {
    /// The SPEC shape called `name` (`S1` … `S4`).
    pub fn named(name: &str) -> Option<ProblemShape> {
        SPEC_SHAPES.iter().copied().find(|s| s.name.eq_ignore_ascii_case(name))
    }

    pub fn hyper(&self) -> Result<HyperParams> {
        HyperParams::builder(self.visible, self.hidden).lambda(self.lambda).beta(self.beta).rho(self.rho).build()
    }

    /// The flops of the five GEMMs of one evaluation: each is `2·h·n·m`.
    pub fn gemm_flops(&self) -> f64 {
        10.0 * (self.hidden * self.visible * self.examples) as f64
    }

    /// SPEC §3 timing data: `m×n` (examples as rows), uniform in [0.1, 0.9], from Xoshiro256++
    /// seeded with `seed`.
    pub fn uniform_data<T: Real>(&self, seed: u64) -> Vec<T> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        (0..self.examples * self.visible).map(|_| uniform(&mut rng)).collect()
    }

    /// The same data for `examples` rows (any number, e.g. more than memory holds), written
    /// to an `.npy` file a block of rows at a time; its first rows are those of
    /// [`uniform_data`](Self::uniform_data) with the same seed.
    pub fn write_uniform_npy<T: Real>(&self, path: &Path, examples: usize, seed: u64) -> Result<()> {
        const ROWS_PER_WRITE: usize = 4096;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut writer = NpyRowWriter::<T>::create(path, examples, self.visible)?;
        let mut rows = Vec::with_capacity(ROWS_PER_WRITE * self.visible);
        for start in (0..examples).step_by(ROWS_PER_WRITE) {
            let count = ROWS_PER_WRITE.min(examples - start);
            rows.clear();
            rows.extend((0..count * self.visible).map(|_| uniform::<T>(&mut rng)));
            writer.write_rows(&rows)?;
        }
        writer.finish()
    }
}

/// One value uniform in [0.1, 0.9], drawn in f64 and rounded to `T`.
fn uniform<T: Real>(rng: &mut Xoshiro256PlusPlus) -> T {
    T::cast(rng.gen_range(0.1..0.9))
}
