//! Shared fixtures: seeded problems in the shapes the tests need.
#![allow(dead_code)]

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use sae::{HyperParams, Parameters};

/// `m×n` values uniform in [0.1, 0.9] (SPEC §3), row-major, examples as rows.
pub fn uniform_data(m: usize, n: usize, seed: u64) -> Vec<f64> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    (0..m * n).map(|_| rng.gen_range(0.1..0.9)).collect()
}

/// `rows×cols` row-major → `cols×rows` row-major.
pub fn transpose(values: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let mut out = vec![0.0; values.len()];
    for i in 0..rows {
        for j in 0..cols {
            out[j * rows + i] = values[i * cols + j];
        }
    }
    out
}

pub fn hyper(n: usize, h: usize) -> HyperParams {
    HyperParams::builder(n, h).lambda(3e-3).beta(3.0).rho(0.1).build().unwrap()
}

/// UFLDL initialisation with nonzero biases, so every term of the gradient is exercised.
pub fn theta(n: usize, h: usize, seed: u64) -> Vec<f64> {
    let mut theta = Parameters::<f64>::init(n, h, seed).into_theta();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0xb1a5);
    for b in &mut theta[2 * n * h..] {
        *b = rng.gen_range(-0.5..0.5);
    }
    theta
}

/// `max_i |a_i − b_i| / max_i |b_i|`: error relative to the scale of the reference.
pub fn relative_error(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0.0f64, |s, v| s.max(v.abs()));
    a.iter().zip(b).fold(0.0f64, |e, (x, y)| e.max((x - y).abs())) / scale
}
