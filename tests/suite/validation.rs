//! Held-out data during training: the cost by its terms, the seeded split, the validation
//! curve, early stopping keeping the best validated model, and runs with validation resuming
//! from their checkpoints bit-for-bit.

use std::collections::VecDeque;
use std::ops::ControlFlow;

use crate::common::*;
use sae::data::split::hold_out;
use sae::model::{ModelFile, Reconstruction, ThetaLayout};
use sae::objective::{kl_divergence, CostTerms};
use sae::optim::{Differentiable, LbfgsOptions, StepRule, Stop};
use sae::train::{
    AutoencoderObjective, DataFingerprint, MinibatchOptions, MinibatchStop, MinibatchTrainer, Trained, Trainer,
    Validation,
};
use sae::{Dataset, Error, HyperParams, Objective, Parameters, Result};

const N: usize = 12;
const H: usize = 5;

fn options(max_iterations: usize) -> LbfgsOptions {
    LbfgsOptions { max_iterations, history: 7, ..LbfgsOptions::default() }
}

/// A held-out objective whose costs are given in advance: early stopping seen exactly.
struct Scripted {
    hyper: HyperParams,
    costs: VecDeque<f64>,
    last: f64,
}

impl Scripted {
    fn new(costs: &[f64]) -> Self {
        Scripted { hyper: hyper(N, H), costs: costs.iter().copied().collect(), last: f64::NAN }
    }
}

impl Differentiable<f64> for Scripted {
    fn dimension(&self) -> usize {
        ThetaLayout::new(N, H).len()
    }

    /// A scripted NaN stands for a saturated unit on the held-out data.
    fn evaluate(&mut self, _: &[f64], grad: &mut [f64]) -> Result<f64> {
        grad.fill(0.0);
        self.last = self.costs.pop_front().expect("evaluated no more often than scripted");
        if self.last.is_nan() {
            return Err(Error::SaturatedActivation { unit: 0, rho_hat: 1.0 });
        }
        Ok(self.last)
    }
}

impl AutoencoderObjective<f64> for Scripted {
    fn hyper(&self) -> &HyperParams {
        &self.hyper
    }

    fn data_fingerprint(&mut self) -> Result<DataFingerprint> {
        Ok(DataFingerprint { examples: 1, features: N, dtype: "f64", hash: 0 })
    }

    fn terms(&self) -> CostTerms {
        CostTerms { reconstruction: self.last / 2.0, ..CostTerms::default() }
    }

    fn rho_hat(&self) -> &[f64] {
        &[]
    }
}

#[test]
fn the_cost_is_the_sum_of_its_terms_each_by_its_formula() {
    let (m, n, h) = (40, 9, 4);
    let values = uniform_data(m, n, 3);
    let theta = theta(n, h, 3);
    for reconstruction in Reconstruction::ALL {
        let hyper =
            HyperParams::builder(n, h).lambda(0.01).beta(2.0).rho(0.1).reconstruction(reconstruction).build().unwrap();
        let data = Dataset::examples_by_features(&values, m, n).unwrap();
        let mut objective = Objective::new(hyper, data).unwrap();
        assert_eq!(objective.terms(), CostTerms::default(), "nothing before the first evaluation");
        let cost = objective.evaluate(&theta, &mut vec![0.0; theta.len()]).unwrap();
        let terms = objective.terms();
        assert!((terms.total() - cost).abs() <= 1e-14 * cost, "{terms:?} against {cost}");

        let parameters = Parameters::from_theta(n, h, theta.clone()).unwrap();
        let model = ModelFile::new(hyper, parameters);
        let (mut hidden, mut output) = (vec![0.0; m * h], vec![0.0; m * n]);
        model.forward().encode(&data, &mut hidden).unwrap();
        model.forward().decode(&hidden, &mut output).unwrap();
        let loss: f64 = output
            .iter()
            .zip(&values)
            .map(|(&y, &x)| match reconstruction {
                Reconstruction::SigmoidCrossEntropy => -(x * y.ln() + (1.0 - x) * (1.0 - y).ln()),
                _ => 0.5 * (y - x) * (y - x),
            })
            .sum();
        assert!((terms.reconstruction - loss / m as f64).abs() <= 1e-12 * terms.reconstruction);
        let squares: f64 = theta[..2 * h * n].iter().map(|w| w * w).sum();
        assert!((terms.weight_decay - 0.01 / 2.0 * squares).abs() <= 1e-14 * terms.weight_decay);
        let kl: f64 =
            (0..h).map(|j| kl_divergence(0.1, hidden.iter().skip(j).step_by(h).sum::<f64>() / m as f64)).sum();
        assert!((terms.sparsity - 2.0 * kl).abs() <= 1e-12 * terms.sparsity, "{} vs {}", terms.sparsity, 2.0 * kl);
        assert_eq!(terms.contractive, 0.0);
    }
}

#[test]
fn a_held_out_split_moves_a_seeded_fraction_of_rows_keeping_their_order() {
    let (m, n) = (50, 3);
    let original: Vec<f64> = (0..m * n).map(|i| i as f64).collect();
    let mut training = original.clone();
    let held_out = hold_out(&mut training, n, 0.2, 7).unwrap();
    assert_eq!((training.len(), held_out.len()), (40 * n, 10 * n));
    let rows = |values: &[f64]| values.chunks(n).map(|row| row[0] as usize / n).collect::<Vec<_>>();
    let (kept, held) = (rows(&training), rows(&held_out));
    assert!(kept.windows(2).all(|w| w[0] < w[1]) && held.windows(2).all(|w| w[0] < w[1]), "in order");
    let mut all: Vec<usize> = kept.iter().chain(&held).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..m).collect::<Vec<_>>(), "every row on exactly one side, whole");
    for row in training.chunks(n).chain(held_out.chunks(n)) {
        assert_eq!(row, &original[row[0] as usize..row[0] as usize + n]);
    }

    let again = hold_out(&mut original.clone(), n, 0.2, 7).unwrap();
    let other_seed = hold_out(&mut original.clone(), n, 0.2, 8).unwrap();
    assert_eq!(again, held_out, "the seed decides");
    assert_ne!(other_seed, held_out);
}

#[test]
fn a_split_that_leaves_a_side_empty_or_a_fraction_outside_the_unit_interval_is_refused() {
    for (m, fraction) in [(10, 0.0), (10, 1.0), (10, -0.5), (10, f64::NAN), (10, 0.01), (10, 0.99), (1, 0.5)] {
        let mut values = vec![0.5; m * 2];
        let err = hold_out(&mut values, 2, fraction, 1).unwrap_err();
        assert!(matches!(err, Error::InvalidHyperParameter { name: "held-out fraction", .. }), "{m} {fraction}: {err}");
        assert_eq!(values.len(), m * 2, "untouched");
    }
    let err = hold_out(&mut vec![0.5; 7], 2, 0.5, 1).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
}

/// The run, the validation curve's costs and the best point.
type ScriptedRun = (Trained<f64>, Vec<(usize, f64)>, Option<(usize, f64)>);

/// Trains on `uniform_data` with the scripted held-out costs.
fn scripted_run(costs: &[f64], every: usize, patience: Option<usize>, iterations: usize) -> ScriptedRun {
    let values = uniform_data(200, N, 5);
    let mut objective = Objective::new(hyper(N, H), Dataset::examples_by_features(&values, 200, N).unwrap()).unwrap();
    let mut validation = Validation::new(Scripted::new(costs)).every(every);
    if let Some(patience) = patience {
        validation = validation.early_stopping(patience);
    }
    let mut seen = Vec::new();
    let trained = Trainer::new(options(iterations))
        .fit_validated(&mut objective, Some(&mut validation), &Parameters::init(N, H, 1), |step| {
            if let Some(point) = step.validation {
                seen.push((point.at, point.cost));
                assert_eq!(point.reconstruction, point.cost / 2.0, "the held-out objective's term");
            }
        })
        .unwrap();
    let curve: Vec<_> = validation.curve().iter().map(|p| (p.at, p.cost)).collect();
    assert_eq!(curve, seen, "the callback sees each evaluation");
    let best = validation.best();
    (trained, curve, best)
}

#[test]
fn early_stopping_stops_after_the_patience_without_improvement_and_keeps_the_best_model() {
    // Evaluated after iterations 2, 4, ...: the best at 6, then three without a lower cost.
    let costs = [5.0, 4.0, 3.0, 3.0, 3.5, 3.1, 9.0];
    let (trained, curve, best) = scripted_run(&costs, 2, Some(3), 50);
    assert_eq!(curve, vec![(2, 5.0), (4, 4.0), (6, 3.0), (8, 3.0), (10, 3.5), (12, 3.1)]);
    assert_eq!(best, Some((6, 3.0)), "an equal cost is no improvement");
    assert_eq!((trained.stop, trained.iterations), (Stop::EarlyStopping, 12));
    assert_eq!(trained.model.metadata["stop"], "early-stopping");
    assert_eq!(trained.model.metadata["validation.best_at"], "6");

    // The model is the iterate of iteration 6: the same as a run stopped there.
    let (at_six, ..) = scripted_run(&costs[..3], 2, None, 6);
    assert_eq!(trained.model.parameters, at_six.model.parameters);
    assert_ne!(trained.cost, at_six.cost, "the run went on past it");
}

#[test]
fn without_early_stopping_the_model_is_the_last_iterate_and_the_last_iteration_is_validated() {
    let (trained, curve, best) = scripted_run(&[3.0, 4.0, 5.0, 6.0], 3, None, 10);
    assert_eq!(curve, vec![(3, 3.0), (6, 4.0), (9, 5.0), (10, 6.0)], "every third, and the last");
    assert_eq!(best, Some((3, 3.0)));
    assert_eq!((trained.stop, trained.iterations), (Stop::MaxIterations, 10));
    let (plain, ..) = scripted_run(&[1.0], 100, None, 10);
    assert_eq!(trained.model.parameters, plain.model.parameters, "validation does not change the run");
    let recorded: Vec<(usize, f64, f64)> = serde_json::from_str(&trained.model.metadata["curve.validation"]).unwrap();
    assert_eq!(recorded, vec![(3, 1.5, 3.0), (6, 2.0, 4.0), (9, 2.5, 5.0), (10, 3.0, 6.0)]);
}

#[test]
fn the_model_records_its_training_curve_and_its_rho_hat_on_the_training_data() {
    let values = uniform_data(200, N, 5);
    let data = Dataset::examples_by_features(&values, 200, N).unwrap();
    let mut costs = Vec::new();
    let trained = Trainer::new(options(8))
        .fit(&mut Objective::new(hyper(N, H), data).unwrap(), &Parameters::init(N, H, 1), |it| costs.push(it.f))
        .unwrap();
    let curve: Vec<(usize, f64)> = serde_json::from_str(&trained.model.metadata["curve.training"]).unwrap();
    assert_eq!(curve, trained.curve);
    assert_eq!(curve[0], (0, trained.initial_cost));
    assert_eq!(curve[1..].iter().map(|&(_, c)| c).collect::<Vec<_>>(), costs);
    let rho_hat: Vec<f64> = serde_json::from_str(&trained.model.metadata["rho_hat"]).unwrap();
    let mut objective = Objective::new(hyper(N, H), data).unwrap();
    objective.evaluate(trained.model.parameters.theta(), &mut vec![0.0; objective.theta_len()]).unwrap();
    assert_eq!(rho_hat, objective.rho_hat());
}

#[test]
fn a_held_out_objective_of_another_model_is_refused() {
    let values = uniform_data(200, N, 5);
    let data = Dataset::examples_by_features(&values, 200, N).unwrap();
    let other = HyperParams::builder(N, H).beta(1.0).build().unwrap();
    let mut validation = Validation::new(Objective::new(other, data).unwrap());
    let err = Trainer::new(options(3))
        .fit_validated(
            &mut Objective::new(hyper(N, H), data).unwrap(),
            Some(&mut validation),
            &Parameters::init(N, H, 1),
            |_| {},
        )
        .unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { what: "model of the held-out objective", .. }), "{err}");
}

/// A held-out objective on real held-out data: `values` split 3:1.
fn held_out_halves(seed: u64) -> (Vec<f64>, Vec<f64>) {
    let mut values = uniform_data(400, N, seed);
    let held_out = hold_out(&mut values, N, 0.25, seed).unwrap();
    (values, held_out)
}

#[test]
fn an_lbfgs_run_with_early_stopping_resumed_from_its_checkpoint_ends_bit_for_bit_as_one_run() {
    // Evaluated after iterations 2, 4, ...: the best at 6, before the interruption at 7, and
    // the patience runs out after it, at 12.
    let costs = [5.0, 4.0, 3.0, 3.5, 3.2, 3.1, 9.0];
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("run.ckpt");
    let values = uniform_data(200, N, 5);
    let objective = || Objective::new(hyper(N, H), Dataset::examples_by_features(&values, 200, N).unwrap()).unwrap();
    let validation = |costs: &[f64]| Validation::new(Scripted::new(costs)).every(2).early_stopping(3);
    let init = Parameters::init(N, H, 3);
    let mut whole = validation(&costs);
    let uninterrupted =
        Trainer::new(options(40)).fit_validated(&mut objective(), Some(&mut whole), &init, |_| {}).unwrap();
    assert_eq!((uninterrupted.stop, uninterrupted.iterations), (Stop::EarlyStopping, 12));

    let mut first = validation(&costs[..3]);
    Trainer::new(options(40))
        .checkpoint_to(&checkpoint, 100)
        .fit_validated(&mut objective(), Some(&mut first), &init, |it| {
            if it.iteration == 7 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    let trainer = Trainer::new(options(40));
    let resumed_checkpoint = trainer.load_checkpoint(&mut objective(), &checkpoint).unwrap();
    assert_eq!(resumed_checkpoint.state.iteration, 7);
    let mut second = validation(&costs[3..]);
    let resumed = trainer.resume_from(&mut objective(), resumed_checkpoint, Some(&mut second), |_| {}).unwrap();
    assert_eq!((resumed.stop, resumed.iterations), (Stop::EarlyStopping, 12), "the patience spans the interruption");
    assert_eq!(resumed.model.parameters, uninterrupted.model.parameters, "the best point, from the checkpoint");
    assert_eq!(resumed.curve, uninterrupted.curve, "the training curve continues the checkpoint's");
    assert_eq!(second.curve(), whole.curve(), "and so does the validation curve");
    assert_eq!(resumed.model.metadata["curve.validation"], uninterrupted.model.metadata["curve.validation"]);
}

#[test]
fn minibatch_training_validates_at_epoch_ends_stops_early_and_resumes_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("run.ckpt");
    let (training, held_out) = held_out_halves(12);
    let hyper = hyper(N, H);
    let data = Dataset::examples_by_features(&training, 300, N).unwrap();
    let validation = |patience| {
        let objective = Objective::new(hyper, Dataset::examples_by_features(&held_out, 100, N).unwrap()).unwrap();
        Validation::new(objective).every(2).early_stopping(patience)
    };
    let options =
        MinibatchOptions { rule: StepRule::adam(0.02), batch_size: 64, epochs: 12, ..MinibatchOptions::default() };
    let trainer = MinibatchTrainer::new(hyper, options).unwrap();
    let init = Parameters::init(N, H, 4);

    let mut whole = validation(100);
    let mut at_epoch_ends = Vec::new();
    let uninterrupted = trainer
        .fit_validated(&data, Some(&mut whole), &init, |step| {
            if let Some(point) = step.validation {
                assert!(step.epoch_end);
                at_epoch_ends.push(point.at);
            }
        })
        .unwrap();
    assert_eq!(at_epoch_ends, vec![2, 4, 6, 8, 10, 12]);
    assert_eq!(uninterrupted.curve.len(), 12, "one point per epoch");
    let best = whole.best().unwrap();
    assert_eq!(uninterrupted.model.metadata["validation.best_at"], best.0.to_string());

    let mut first = validation(100);
    let stopped = trainer
        .clone()
        .checkpoint_to(&checkpoint, 1000)
        .fit_validated(&data, Some(&mut first), &init, |step| {
            if step.step == 17 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert_eq!(stopped.stop, MinibatchStop::Requested);
    let mut second = validation(100);
    let resumed = trainer
        .resume_from(&data, trainer.load_checkpoint(&data, &checkpoint).unwrap(), Some(&mut second), |_| {})
        .unwrap();
    assert_eq!(resumed.model.parameters, uninterrupted.model.parameters);
    assert_eq!(resumed.curve, uninterrupted.curve, "the epoch mean spans the interruption");
    assert_eq!(second.curve(), whole.curve());

    // On this data the held-out cost rises after epoch 4: a patience of one stops at 6, with
    // the model of epoch 4.
    let mut impatient = validation(1);
    let early = trainer.fit_validated(&data, Some(&mut impatient), &init, |_| {}).unwrap();
    assert_eq!((early.stop, early.epochs), (MinibatchStop::EarlyStopping, 6));
    assert_eq!(impatient.best().unwrap().0, 4);
    let four = MinibatchOptions { epochs: 4, ..options };
    let at_four = MinibatchTrainer::new(hyper, four).unwrap().fit(&data, &init, |_| {}).unwrap();
    assert_eq!(early.model.parameters, at_four.model.parameters);
}

#[test]
fn a_unit_saturated_on_the_held_out_data_is_an_infinite_cost_not_the_end_of_the_run() {
    // NaN: the held-out objective fails with a saturated unit.
    let (trained, curve, best) = scripted_run(&[f64::NAN, 4.0, f64::NAN, 5.0, 6.0], 1, Some(3), 20);
    assert_eq!(curve.iter().map(|p| p.0).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    assert!(curve[0].1.is_infinite() && curve[2].1.is_infinite());
    assert_eq!(best, Some((2, 4.0)), "an infinite cost is never the best");
    assert_eq!((trained.stop, trained.iterations), (Stop::EarlyStopping, 5));
    let recorded: Vec<(usize, Option<f64>, Option<f64>)> =
        serde_json::from_str(&trained.model.metadata["curve.validation"]).unwrap();
    assert_eq!(recorded[0], (1, None, None), "JSON has no infinity: null");
}

#[test]
fn a_validation_used_again_starts_its_own_curve() {
    let values = uniform_data(200, N, 5);
    let mut objective = Objective::new(hyper(N, H), Dataset::examples_by_features(&values, 200, N).unwrap()).unwrap();
    let mut validation = Validation::new(Scripted::new(&[1.0, 2.0, 3.0, 9.0, 8.0, 7.0])).early_stopping(5);
    let trainer = Trainer::new(options(3));
    let init = Parameters::init(N, H, 1);
    trainer.fit_validated(&mut objective, Some(&mut validation), &init, |_| {}).unwrap();
    let second = trainer.fit_validated(&mut objective, Some(&mut validation), &init, |_| {}).unwrap();
    assert_eq!(validation.curve().iter().map(|p| p.cost).collect::<Vec<_>>(), [9.0, 8.0, 7.0]);
    assert_eq!(validation.best(), Some((3, 7.0)), "not the first run's 1.0");
    assert_eq!(second.model.metadata["validation.best_at"], "3");
}

#[test]
fn early_stopping_wins_over_a_stop_from_outside_at_the_same_step_and_a_resumed_run_stays_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("run.ckpt");
    let values = uniform_data(200, N, 5);
    let objective = || Objective::new(hyper(N, H), Dataset::examples_by_features(&values, 200, N).unwrap()).unwrap();
    let init = Parameters::init(N, H, 3);
    // The patience runs out after iteration 3, where the callback also asks to stop.
    let mut validation = Validation::new(Scripted::new(&[3.0, 4.0, 5.0])).early_stopping(2);
    let stopped = Trainer::new(options(40))
        .checkpoint_to(&checkpoint, 100)
        .fit_validated(&mut objective(), Some(&mut validation), &init, |it| {
            if it.iteration == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert_eq!((stopped.stop, stopped.iterations), (Stop::EarlyStopping, 3));

    // Resumed with its validation: it ends at once, with the same model.
    let trainer = Trainer::new(options(40));
    let resumed_checkpoint = trainer.load_checkpoint(&mut objective(), &checkpoint).unwrap();
    let mut again = Validation::new(Scripted::new(&[])).early_stopping(2);
    let resumed = trainer.resume_from(&mut objective(), resumed_checkpoint, Some(&mut again), |_| {}).unwrap();
    assert_eq!((resumed.stop, resumed.iterations), (Stop::EarlyStopping, 3));
    assert_eq!(resumed.model.parameters, stopped.model.parameters);
}

#[test]
fn a_checkpoint_resumed_with_other_held_out_data_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("run.ckpt");
    let (training, held_out) = held_out_halves(13);
    let hyper = hyper(N, H);
    let objective = || Objective::new(hyper, Dataset::examples_by_features(&training, 300, N).unwrap()).unwrap();
    fn validation(hyper: sae::HyperParams, values: &[f64]) -> Validation<'_, f64> {
        Validation::new(Objective::new(hyper, Dataset::examples_by_features(values, 100, N).unwrap()).unwrap())
    }
    let init = Parameters::init(N, H, 3);
    let mut first = validation(hyper, &held_out);
    let trainer = Trainer::new(options(4)).checkpoint_to(&checkpoint, 2);
    trainer.fit_validated(&mut objective(), Some(&mut first), &init, |_| {}).unwrap();

    let other: Vec<f64> = held_out.iter().map(|v| v * 0.5).collect();
    let resumed_checkpoint = Trainer::new(options(8)).load_checkpoint(&mut objective(), &checkpoint).unwrap();
    let mut second = validation(hyper, &other);
    let err = Trainer::new(options(8))
        .resume_from(&mut objective(), resumed_checkpoint, Some(&mut second), |_| {})
        .unwrap_err();
    match err {
        Error::BadCheckpoint { field, reason, .. } => {
            assert_eq!(field, "curve.validation");
            assert!(reason.contains("data.fnv1a64 of the held-out data"), "{reason}");
        }
        other => panic!("{other}"),
    }
}
