//! Resampling of dead latents (after Bricken et al. 2023, "Towards Monosemanticity"): each
//! dead latent is restarted on an input the model reconstructs badly.
//!
//! For a minibatch with residuals `r_e = x̂_e − x_e`, each dead latent `j` draws an example `e`
//! with probability `‖r_e‖² / Σ ‖r‖²` — without replacement, so that two latents do not restart
//! as copies while other examples are left (once every example with a residual is drawn, the
//! draws start over) — and takes the direction `d = −r_e / ‖r_e‖` (what the model misses there):
//!
//! ```text
//! W_dec[j] = d          W_enc[j] = mean_{i alive} ‖W_enc[i]‖ · d          b_enc[j] = 0
//! ```
//!
//! (tied weights: `W[j] = mean_{i alive} ‖W[i]‖ · d`, the row being both; norm 1 when every
//! latent is dead), and the optimiser's moments of those parameters restart from zero (with
//! Adam's bias correction near 1 late in a run, a restarted parameter's first steps are then a
//! few learning rates long). Bricken et al. scale the encoder row by 0.2 of the alive ones'
//! norm, which suits their L1 penalty, under which a small latent still fires; a TopK latent
//! must win the selection to be trained at all: at 0.2 the restarted latents lost it at once,
//! at the alive ones' norm they win it for a while (on the problem measured, most lose it again
//! later: PERF.md, "Resampling dead latents").

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

    // The weights of the examples not drawn yet.
    let (mut left, mut left_total) = (weights.clone(), total);
    let mut restarted = 0;
    for j in (0..h).filter(|&j| dead[j]) {
        // (Rounding may leave a sum above zero when every weight is drawn: the weights tell.)
        if !left.iter().any(|&w| w > 0.0) {
            (left, left_total) = (weights.clone(), total);
        }
        // The example: the first whose running sum of weights passes a uniform draw (the last
        // with a weight, should rounding leave the draw unspent).
        let mut target = rng.gen::<f64>() * left_total;
        let e = left.iter().position(|&w| {
            target -= w;
            target < 0.0 && w > 0.0
        });
        let e = e.unwrap_or_else(|| left.iter().rposition(|&w| w > 0.0).expect("a weight left"));
        left_total -= left[e];
        left[e] = 0.0;
        let r = &residuals[e * n..][..n];
        let norm = weights[e].sqrt();
        let blocks = layout.split_mut(params);
        for ((dec, enc), &r) in blocks.w_dec[j * n..][..n].iter_mut().zip(&mut blocks.w_enc[j * n..][..n]).zip(r) {
            let d = -r.as_f64() / norm;
            *dec = T::cast(if architecture.tied { alive_norm * d } else { d });
            *enc = T::cast(alive_norm * d);
        }
        blocks.b_enc[j] = T::zero();
        for moments in [&mut state.first, &mut state.second] {
            let blocks = layout.split_mut(moments);
            blocks.w_enc[j * n..][..n].fill(T::zero());
            blocks.w_dec[j * n..][..n].fill(T::zero());
            blocks.b_enc[j] = T::zero();
        }
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

    #[test]
    fn a_tied_row_is_both_the_encoder_and_the_decoder_at_the_alive_norm() {
        let (n, h) = (3, 4);
        let model = TopKModel::<f32>::init(n, h, 2, 3).unwrap().with_architecture(Architecture::K_SPARSE).unwrap();
        let (layout, mut params) = (model.layout(), model.params().to_vec());
        let mut state = StepState::<f32>::new(params.len());
        let dead = [true, false, false, false];
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
        let residuals = [0.0, -2.0, 0.0];
        assert_eq!(resample(layout, Architecture::K_SPARSE, &mut params, &mut state, &dead, &residuals, &mut rng), 1);
        let blocks = layout.split(&params);
        // The initial rows are unit: the alive norm is 1.
        assert_eq!(&blocks.w_enc[..n], &blocks.w_dec[..n]);
        for (v, want) in blocks.w_enc[..n].iter().zip([0.0, 1.0, 0.0]) {
            assert!((v - want).abs() < 1e-6, "{v} against {want}");
        }
    }

    /// Which example's direction latent `j` took, of `directions` (unit rows).
    fn drawn(layout: DictionaryLayout, params: &[f64], j: usize, directions: &[[f64; 2]]) -> usize {
        let row = &layout.split(params).w_dec[j * 2..][..2];
        directions.iter().position(|d| d[0] == row[0] && d[1] == row[1]).expect("a drawn direction")
    }

    #[test]
    fn examples_are_drawn_by_their_squared_error_and_not_twice_while_others_are_left() {
        let model = TopKModel::<f64>::init(2, 3, 1, 1).unwrap();
        let layout = model.layout();
        // Residual norms 1 and 3: drawn with probabilities 0.1 and 0.9.
        let residuals = [-1.0, 0.0, 0.0, -3.0];
        let directions = [[1.0, 0.0], [0.0, 1.0]];
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        let mut second = 0;
        for _ in 0..4000 {
            let (mut params, mut state) = (model.params().to_vec(), StepState::new(layout.len()));
            resample(layout, Architecture::TOPK, &mut params, &mut state, &[true, false, false], &residuals, &mut rng);
            second += drawn(layout, &params, 0, &directions);
        }
        let fraction = second as f64 / 4000.0;
        assert!((fraction - 0.9).abs() < 0.02, "the larger error drawn {fraction} of the time");
        // Two dead latents, two examples: one each, whatever the weights.
        for _ in 0..50 {
            let (mut params, mut state) = (model.params().to_vec(), StepState::new(layout.len()));
            resample(layout, Architecture::TOPK, &mut params, &mut state, &[true, true, false], &residuals, &mut rng);
            assert_ne!(drawn(layout, &params, 0, &directions), drawn(layout, &params, 1, &directions));
        }
    }
}
