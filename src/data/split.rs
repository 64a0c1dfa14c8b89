//! A seeded split of a data set in memory into training and held-out examples.

use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::error::{Error, Result};

/// Moves `round(fraction · m)` examples, chosen at random by `seed`, out of the `m×n`
/// row-major `values` (`n = features`) and returns them, `k×n` row-major; both parts keep
/// their rows in the order they had. The choice depends on `m`, `fraction` and `seed` alone.
/// Only the held-out rows are copied: memory grows by `k·n` values, not by the data set.
///
/// Fails unless `0 < fraction < 1` and both parts get at least one example.
pub fn hold_out<T: Copy>(values: &mut Vec<T>, features: usize, fraction: f64, seed: u64) -> Result<Vec<T>> {
    let invalid = |reason| Error::InvalidHyperParameter { name: "held-out fraction", value: fraction, reason };
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(invalid("must be in (0, 1)"));
    }
    if features == 0 || !values.len().is_multiple_of(features) {
        return Err(Error::shape_mismatch(
            "values to split",
            format!("whole examples of {features} features"),
            format!("{} values", values.len()),
        ));
    }
    let m = values.len() / features;
    let k = (fraction * m as f64).round() as usize;
    if k == 0 || k == m {
        return Err(invalid("leaves no example on one side of the split"));
    }
    // A stream of its own: the same seed also draws the initial weights.
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x4e1d_0a7a_5eed_0001);
    let mut held = rand::seq::index::sample(&mut rng, m, k).into_vec();
    held.sort_unstable();
    let mut held_out = Vec::with_capacity(k * features);
    let (mut kept, mut next_held) = (0, held.iter().peekable());
    for row in 0..m {
        let range = row * features..(row + 1) * features;
        if next_held.next_if_eq(&&row).is_some() {
            held_out.extend_from_slice(&values[range]);
        } else {
            values.copy_within(range, kept * features);
            kept += 1;
        }
    }
    values.truncate(kept * features);
    Ok(held_out)
}
