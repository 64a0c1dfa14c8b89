//! Resampling of dead latents (after Bricken et al. 2023, "Towards Monosemanticity"): each
//! dead latent is restarted on an input the model reconstructs badly.
//!
//! For a minibatch with residuals `r_e = x̂_e − x_e`, each dead latent `j` draws an example `e`
//! with probability `‖r_e‖² / Σ ‖r‖²` and takes the direction `d = −r_e / ‖r_e‖` (what the model
//! misses there):
//!
//! ```text
//! W_dec[j] = d          W_enc[j] = mean_{i alive} ‖W_enc[i]‖ · d          b_enc[j] = 0
//! ```
//!
//! (tied weights: `W[j] = mean_{i alive} ‖W[i]‖ · d`, the row being both), and the optimiser's
//! moments of those parameters restart from zero. Bricken et al. scale the encoder row by 0.2
//! of the alive ones' norm, which suits their L1 penalty, under which a small latent still
//! fires; a TopK latent must win the selection to be trained at all, and at 0.2 the restarted
//! latents lost it and died again (more latents were dead at the end than without resampling,
//! `train::topk::tests`); at the alive ones' norm they fire on the inputs they were drawn from.

use rand::Rng;
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::dictionary::{Architecture, DictionaryLayout};
use crate::optim::StepState;
use crate::real::Real;

/// Restarts the latents marked in `dead` (see the module's documentation) from the batch whose
/// residuals (any positive multiple of `x̂ − x`, `B×n` row-major) are `residuals`. Returns how
/// many were restarted: none when no example has a residual.
pub(super) fn resample<T: Real>(
    layout: DictionaryLayout,
    architecture: Architecture,
    params: &mut [T],
    state: &mut StepState<T>,
    dead: &[bool],
    residuals: &[T],
    rng: &mut Xoshiro256PlusPlus,
) -> usize {
    let (n, h) = (layout.visible(), layout.latents());
    let weights: Vec<f64> =
        residuals.chunks_exact(n).map(|r| r.iter().map(|v| v.as_f64() * v.as_f64()).sum()).collect();
    let total: f64 = weights.iter().sum();
    if !(total > 0.0 && total.is_finite() && dead.contains(&true)) {
        return 0;
    }
    let row_norm = |row: &[T]| row.iter().map(|v| v.as_f64() * v.as_f64()).sum::<f64>().sqrt();
    let alive: Vec<f64> = {
        let w_enc = layout.split(params).w_enc;
        (0..h).filter(|&j| !dead[j]).map(|j| row_norm(&w_enc[j * n..][..n])).collect()
    };
    let alive_norm = if alive.is_empty() { 1.0 } else { alive.iter().sum::<f64>() / alive.len() as f64 };

    let [w_enc_block, b_enc_block, w_dec_block, _] = layout.ranges();
    let (w_enc_start, b_enc_start, w_dec_start) = (w_enc_block.start, b_enc_block.start, w_dec_block.start);
    let mut restarted = 0;
    for j in (0..h).filter(|&j| dead[j]) {
        // The example: the first whose running sum of weights passes a uniform draw.
        let mut target = rng.gen::<f64>() * total;
        let e = weights.iter().position(|&w| {
            target -= w;
            target < 0.0
        });
        let e = e.unwrap_or_else(|| weights.iter().rposition(|&w| w > 0.0).expect("a positive weight"));
        let r = &residuals[e * n..][..n];
        let norm = weights[e].sqrt();
        let blocks = layout.split_mut(params);
        for ((dec, enc), &r) in blocks.w_dec[j * n..][..n].iter_mut().zip(&mut blocks.w_enc[j * n..][..n]).zip(r) {
            let d = -r.as_f64() / norm;
            *dec = T::cast(if architecture.tied { alive_norm * d } else { d });
            *enc = T::cast(alive_norm * d);
        }
        blocks.b_enc[j] = T::zero();
        for range in [w_enc_start + j * n..w_enc_start + (j + 1) * n, w_dec_start + j * n..w_dec_start + (j + 1) * n] {
            state.first[range.clone()].fill(T::zero());
            state.second[range].fill(T::zero());
        }
        state.first[b_enc_start + j] = T::zero();
        state.second[b_enc_start + j] = T::zero();
        restarted += 1;
    }
    restarted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dictionary::TopKModel;
    use rand::SeedableRng;

    #[test]
    fn dead_latents_restart_on_the_residual_of_a_badly_reconstructed_example_with_fresh_moments() {
        let (n, h) = (3, 5);
        let model = TopKModel::<f64>::init(n, h, 2, 1).unwrap();
        let (layout, mut params) = (model.layout(), model.params().to_vec());
        let mut state = StepState::<f64>::new(params.len());
        state.first.fill(1.0);
        state.second.fill(2.0);
        // Only the second example has a residual: every dead latent draws it.
        let residuals = [0.0, 0.0, 0.0, 3.0, 0.0, -4.0];
        let dead = [false, true, false, true, false];
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let alive_norm = {
            let w = layout.split(&params).w_enc;
            [0, 2, 4].iter().map(|&j| w[j * n..][..n].iter().map(|v| v * v).sum::<f64>().sqrt()).sum::<f64>() / 3.0
        };
        let before = params.clone();
        assert_eq!(resample(layout, Architecture::TOPK, &mut params, &mut state, &dead, &residuals, &mut rng), 2);
        let (blocks, old) = (layout.split(&params), layout.split(&before));
        for j in [1, 3] {
            assert_eq!(&blocks.w_dec[j * n..][..n], &[-0.6, 0.0, 0.8]);
            for (enc, want) in blocks.w_enc[j * n..][..n].iter().zip([-0.6, 0.0, 0.8]) {
                assert!((enc - alive_norm * want).abs() < 1e-15);
            }
            assert_eq!(blocks.b_enc[j], 0.0);
        }
        for j in [0, 2, 4] {
            assert_eq!(&blocks.w_dec[j * n..][..n], &old.w_dec[j * n..][..n], "alive latents keep their rows");
        }
        // The moments of exactly the restarted parameters are zero.
        let mut restarted = vec![false; params.len()];
        for j in [1, 3] {
            restarted[j * n..(j + 1) * n].fill(true);
            restarted[h * n + j] = true;
            restarted[h * n + h + j * n..h * n + h + (j + 1) * n].fill(true);
        }
        for (i, &r) in restarted.iter().enumerate() {
            assert_eq!((state.first[i], state.second[i]), if r { (0.0, 0.0) } else { (1.0, 2.0) }, "{i}");
        }
        // No residual, or no dead latent: nothing to do.
        assert_eq!(resample(layout, Architecture::TOPK, &mut params, &mut state, &dead, &[0.0; 6], &mut rng), 0);
        assert_eq!(resample(layout, Architecture::TOPK, &mut params, &mut state, &[false; 5], &residuals, &mut rng), 0);
    }
}
