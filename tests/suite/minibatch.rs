//! Minibatch training: the minibatch objective and its running rho_hat, Adam and SGD lowering
//! the full-batch cost, reproducibility from a seed, resumption mid-epoch, divergence stopped.

use std::ops::ControlFlow;

use crate::common::*;
use sae::model::ModelFile;
use sae::objective::MinibatchObjective;
use sae::optim::{Decay, Schedule, StepRule};
use sae::train::{MinibatchOptions, MinibatchStop, MinibatchTrainer, Shuffle};
use sae::{Dataset, Error, Objective, Parameters};

const M: usize = 1000;
const N: usize = 16;
const H: usize = 6;

fn full_cost(values: &[f64], theta: &[f64]) -> f64 {
    let data = Dataset::examples_by_features(values, M, N).unwrap();
    let mut grad = vec![0.0; theta.len()];
    Objective::new(hyper(N, H), data).unwrap().evaluate(theta, &mut grad).unwrap()
}

#[test]
fn one_batch_of_everything_without_averaging_is_the_full_objective() {
    let values = uniform_data(M, N, 1);
    let theta = theta(N, H, 1);
    let data = Dataset::examples_by_features(&values, M, N).unwrap();
    let mut minibatch = MinibatchObjective::new(hyper(N, H), M, 0.0).unwrap();
    let (mut g1, mut g2) = (vec![0.0; theta.len()], vec![0.0; theta.len()]);
    let cost = minibatch.evaluate(&theta, &mut g1, &data).unwrap();
    let full = Objective::new(hyper(N, H), data).unwrap().evaluate(&theta, &mut g2).unwrap();
    assert_eq!(cost, full);
    assert_eq!(g1, g2);
}

#[test]
fn the_running_rho_hat_is_an_exponential_moving_average_of_the_batches() {
    let values = uniform_data(M, N, 2);
    let theta = theta(N, H, 2);
    let (first, second) = values.split_at(500 * N);
    let mut objective = MinibatchObjective::new(hyper(N, H), 500, 0.75).unwrap();
    let mut grad = vec![0.0; theta.len()];
    let batch_rho_hat = |values: &[f64]| {
        let mut alone = MinibatchObjective::new(hyper(N, H), 500, 0.0).unwrap();
        alone
            .evaluate(&theta, &mut vec![0.0; theta.len()], &Dataset::examples_by_features(values, 500, N).unwrap())
            .unwrap();
        alone.running_rho_hat().to_vec()
    };
    objective.evaluate(&theta, &mut grad, &Dataset::examples_by_features(first, 500, N).unwrap()).unwrap();
    assert_eq!(objective.running_rho_hat(), &batch_rho_hat(first)[..], "the first batch uses its own");
    objective.evaluate(&theta, &mut grad, &Dataset::examples_by_features(second, 500, N).unwrap()).unwrap();
    for ((r, a), b) in objective.running_rho_hat().iter().zip(batch_rho_hat(first)).zip(batch_rho_hat(second)) {
        assert!((r - (0.75 * a + 0.25 * b)).abs() < 1e-15);
    }
}

fn train(rule: StepRule, epochs: usize, seed: u64) -> Vec<f64> {
    let values = uniform_data(M, N, 3);
    let data = Dataset::examples_by_features(&values, M, N).unwrap();
    let options = MinibatchOptions {
        schedule: Schedule::CONSTANT,
        rule,
        batch_size: 100,
        epochs,
        rho_momentum: 0.9,
        seed,
        shuffle: Shuffle::Full,
    };
    let trained =
        MinibatchTrainer::new(hyper(N, H), options).unwrap().fit(&data, &Parameters::init(N, H, 4), |_| {}).unwrap();
    assert_eq!((trained.epochs, trained.steps), (epochs, 10 * epochs as u64));
    trained.model.parameters.into_theta()
}

#[test]
fn adam_and_sgd_lower_the_full_batch_cost() {
    let values = uniform_data(M, N, 3);
    let initial = full_cost(&values, Parameters::<f64>::init(N, H, 4).theta());
    for rule in [StepRule::adam(0.02), StepRule::sgd(0.005, 0.9)] {
        let after = full_cost(&values, &train(rule, 40, 1));
        assert!(after < 0.3 * initial, "{rule:?}: {after} from {initial}");
    }
}

#[test]
fn a_seed_fixes_the_run_and_another_seed_changes_it() {
    let rule = StepRule::adam(0.01);
    assert_eq!(train(rule, 3, 7), train(rule, 3, 7));
    assert_ne!(train(rule, 3, 7), train(rule, 3, 8));
}

#[test]
fn a_run_resumed_mid_epoch_ends_bit_for_bit_where_an_uninterrupted_run_ends() {
    let dir = tempfile::tempdir().unwrap();
    let values = uniform_data(M, N, 3);
    let data = Dataset::examples_by_features(&values, M, N).unwrap();
    let options = MinibatchOptions {
        schedule: Schedule::CONSTANT,
        rule: StepRule::adam(0.01),
        batch_size: 100,
        epochs: 4,
        rho_momentum: 0.9,
        seed: 5,
        shuffle: Shuffle::Full,
    };
    let init = Parameters::init(N, H, 6);
    let uninterrupted = MinibatchTrainer::new(hyper(N, H), options).unwrap().fit(&data, &init, |_| {}).unwrap();

    let (checkpoint, saved) = (dir.path().join("run.ckpt"), dir.path().join("step17.ckpt"));
    MinibatchTrainer::new(hyper(N, H), options)
        .unwrap()
        .checkpoint_to(&checkpoint, 1)
        .fit(&data, &init, |step| {
            // The file holds the previous step's state: step 17 is mid-way through epoch 2.
            if step.step == 18 {
                std::fs::copy(&checkpoint, &saved).unwrap();
            }
        })
        .unwrap();
    assert_eq!(ModelFile::<f64>::load(&saved).unwrap().metadata["minibatch.batch"], "7");
    let resumed = MinibatchTrainer::new(hyper(N, H), options).unwrap().resume(&data, &saved, |_| {}).unwrap();
    assert_eq!(resumed.model.parameters, uninterrupted.model.parameters);
    assert_eq!(resumed.steps, 40);
}

#[test]
fn a_scheduled_run_resumed_mid_epoch_takes_the_rates_of_the_uninterrupted_run_and_refuses_another_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let values = uniform_data(M, N, 3);
    let data = Dataset::examples_by_features(&values, M, N).unwrap();
    let options = MinibatchOptions {
        rule: StepRule::adam(0.01),
        schedule: Schedule { warmup_steps: 5, decay: Decay::Cosine, decay_start: 0.5 },
        batch_size: 100,
        epochs: 4,
        ..MinibatchOptions::default()
    };
    let init = Parameters::init(N, H, 6);
    let uninterrupted = MinibatchTrainer::new(hyper(N, H), options).unwrap().fit(&data, &init, |_| {}).unwrap();
    let constant = MinibatchOptions { schedule: Schedule::CONSTANT, ..options };
    let unscheduled = MinibatchTrainer::new(hyper(N, H), constant).unwrap().fit(&data, &init, |_| {}).unwrap();
    assert_ne!(uninterrupted.model.parameters, unscheduled.model.parameters);
    assert_eq!(uninterrupted.model.metadata["lr_schedule"], "cosine decay from 0.5 of the steps, 5 warm-up steps");

    // Stopped after step 23, in the decay.
    let checkpoint = dir.path().join("run.ckpt");
    let stopped = MinibatchTrainer::new(hyper(N, H), options)
        .unwrap()
        .checkpoint_to(&checkpoint, 1)
        .fit(&data, &init, |step| if step.step == 23 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) })
        .unwrap();
    assert_eq!(stopped.steps, 23);
    let resumed = MinibatchTrainer::new(hyper(N, H), options).unwrap().resume(&data, &checkpoint, |_| {}).unwrap();
    assert_eq!(resumed.model.parameters, uninterrupted.model.parameters);

    let err = MinibatchTrainer::new(hyper(N, H), constant).unwrap().resume(&data, &checkpoint, |_| {}).unwrap_err();
    assert!(err.to_string().contains("minibatch.schedule"), "{err}");
    // Nor with another length: the schedule's rates would change.
    let longer = MinibatchOptions { epochs: 5, ..options };
    let err = MinibatchTrainer::new(hyper(N, H), longer).unwrap().resume(&data, &checkpoint, |_| {}).unwrap_err();
    assert!(err.to_string().contains("minibatch.epochs"), "{err}");
}

#[test]
fn a_run_continued_from_its_final_state_in_memory_is_the_longer_run() {
    let values = uniform_data(M, N, 3);
    let data = Dataset::examples_by_features(&values, M, N).unwrap();
    let options = |epochs| MinibatchOptions {
        schedule: Schedule::CONSTANT,
        rule: StepRule::adam(0.01),
        batch_size: 100,
        epochs,
        rho_momentum: 0.9,
        seed: 5,
        shuffle: Shuffle::Full,
    };
    let init = Parameters::init(N, H, 6);
    let three = MinibatchTrainer::new(hyper(N, H), options(3)).unwrap().fit(&data, &init, |_| {}).unwrap();
    let one = MinibatchTrainer::new(hyper(N, H), options(1)).unwrap().fit(&data, &init, |_| {}).unwrap();
    assert_eq!(one.state.epoch, 1);
    let continued = MinibatchTrainer::new(hyper(N, H), options(3))
        .unwrap()
        .resume_from(&data, one.state.into(), None, |_| {})
        .unwrap();
    assert_eq!(continued.model.parameters, three.model.parameters);
    assert_eq!((continued.epochs, continued.steps), (3, 30));
    assert_eq!(continued.state, three.state);
}

#[test]
fn divergence_stops_with_a_clear_error_and_the_last_good_checkpoint_kept() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("run.ckpt");
    let values = uniform_data(M, N, 3);
    let data = Dataset::examples_by_features(&values, M, N).unwrap();
    let options = MinibatchOptions {
        schedule: Schedule::CONSTANT,
        rule: StepRule::sgd(1e9, 0.9),
        batch_size: 100,
        epochs: 5,
        rho_momentum: 0.9,
        seed: 1,
        shuffle: Shuffle::Full,
    };
    let err = MinibatchTrainer::new(hyper(N, H), options)
        .unwrap()
        .checkpoint_to(&checkpoint, 1)
        .fit(&data, &Parameters::init(N, H, 1), |_| {})
        .unwrap_err();
    assert!(matches!(err, Error::NonFiniteCost { .. } | Error::SaturatedActivation { .. }), "{err}");
    assert!(err.to_string().contains("iteration") || err.to_string().contains("saturated"), "{err}");
    let kept = ModelFile::<f64>::load(&checkpoint).expect("the first step's checkpoint");
    assert!(kept.parameters.theta().iter().all(|v| v.is_finite()));
}

#[test]
fn resuming_with_another_batch_size_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("run.ckpt");
    let values = uniform_data(M, N, 3);
    let data = Dataset::examples_by_features(&values, M, N).unwrap();
    let options = MinibatchOptions { epochs: 1, batch_size: 100, ..MinibatchOptions::default() };
    MinibatchTrainer::new(hyper(N, H), options)
        .unwrap()
        .checkpoint_to(&checkpoint, 5)
        .fit(&data, &Parameters::init(N, H, 1), |_| {})
        .unwrap();
    let other = MinibatchOptions { batch_size: 50, ..options };
    let err = MinibatchTrainer::new(hyper(N, H), other).unwrap().resume(&data, &checkpoint, |_| {}).unwrap_err();
    assert!(err.to_string().contains("batch_size"), "{err}");
}

#[test]
fn adam_trains_a_tied_denoising_tanh_model_reproducibly_keeping_its_weights_tied() {
    use sae::model::{Activation, Corruption};
    let values = uniform_data(M, N, 5);
    let data = Dataset::examples_by_features(&values, M, N).unwrap();
    let hyper = sae::HyperParams::builder(N, H)
        .lambda(3e-3)
        .beta(0.5)
        .rho(0.1)
        .activation(Activation::Tanh)
        .tied(true)
        .corruption(Corruption::Masking { probability: 0.2 }, 3)
        .build()
        .unwrap();
    let options = MinibatchOptions {
        schedule: Schedule::CONSTANT,
        rule: StepRule::adam(1e-2),
        batch_size: 100,
        epochs: 5,
        rho_momentum: 0.9,
        seed: 2,
        shuffle: Shuffle::Full,
    };
    let fit = || MinibatchTrainer::new(hyper, options).unwrap().fit(&data, &Parameters::init(N, H, 4), |_| {}).unwrap();
    let (first, again) = (fit(), fit());
    assert_eq!(first.model.parameters, again.model.parameters);
    let p = &first.model.parameters;
    assert!((0..H).all(|j| (0..N).all(|k| p.w1().get(j, k) == p.w2().get(k, j))), "weights stay tied");
    // The denoising objective (at the noise of epoch 0) is lower than at the start.
    let cost = |theta: &[f64]| {
        let mut grad = vec![0.0; theta.len()];
        Objective::new(hyper, data).unwrap().evaluate(theta, &mut grad).unwrap()
    };
    let mut start = Parameters::<f64>::init(N, H, 4);
    start.tie();
    assert!(cost(p.theta()) < cost(start.theta()) - 1e-3);
}

/// The field named by a [`Error::BadCheckpoint`], and why.
fn refused(err: Error) -> (&'static str, String) {
    match err {
        Error::BadCheckpoint { field, reason, .. } => (field, reason),
        other => panic!("expected a refused checkpoint, got {other}"),
    }
}

const OPTIONS: MinibatchOptions = MinibatchOptions {
    schedule: Schedule::CONSTANT,
    rule: StepRule::Adam { learning_rate: 0.01, beta1: 0.9, beta2: 0.999, epsilon: 1e-8 },
    batch_size: 100,
    epochs: 4,
    rho_momentum: 0.9,
    seed: 5,
    shuffle: Shuffle::Full,
};

/// The checkpoint of step 17 (mid-way through epoch 2) of a run on `M` examples, changed by
/// `corrupt`, resumed on `values`; the result arrives within a minute, or the test fails.
fn resume_corrupted_on(values: Vec<f64>, corrupt: impl FnOnce(&mut ModelFile<f64>)) -> Result<u64, Error> {
    let dir = tempfile::tempdir().unwrap();
    let (every_step, checkpoint) = (dir.path().join("run.ckpt"), dir.path().join("step17.ckpt"));
    let original = uniform_data(M, N, 3);
    let data = Dataset::examples_by_features(&original, M, N).unwrap();
    MinibatchTrainer::new(hyper(N, H), OPTIONS)
        .unwrap()
        .checkpoint_to(&every_step, 1)
        .fit(&data, &Parameters::init(N, H, 6), |step| {
            // The file holds the previous step's state.
            if step.step == 18 {
                std::fs::copy(&every_step, &checkpoint).unwrap();
            }
        })
        .unwrap();
    let mut saved = ModelFile::load(&checkpoint).unwrap();
    assert_eq!((saved.metadata["minibatch.epoch"].as_str(), saved.metadata["minibatch.batch"].as_str()), ("1", "7"));
    corrupt(&mut saved);
    saved.save(&checkpoint).unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let m = values.len() / N;
        let data = Dataset::examples_by_features(&values, m, N).unwrap();
        let resumed = MinibatchTrainer::new(hyper(N, H), OPTIONS).unwrap().resume(&data, &checkpoint, |_| {});
        sender.send(resumed.map(|trained| trained.steps)).unwrap();
    });
    receiver.recv_timeout(std::time::Duration::from_secs(60)).expect("resuming hangs")
}

fn resume_corrupted(corrupt: impl FnOnce(&mut ModelFile<f64>)) -> (&'static str, String) {
    refused(resume_corrupted_on(uniform_data(M, N, 3), corrupt).unwrap_err())
}

#[test]
fn resuming_a_mid_epoch_checkpoint_on_smaller_data_is_an_error_not_a_hang() {
    let smaller = uniform_data(M, N, 3)[..300 * N].to_vec();
    let (field, reason) = refused(resume_corrupted_on(smaller, |_| {}).unwrap_err());
    assert_eq!(field, "data.examples", "{reason}");
    assert!(reason.contains("1000") && reason.contains("300"), "{reason}");
}

#[test]
fn resuming_on_other_data_of_the_same_shape_is_refused() {
    let (field, _) = refused(resume_corrupted_on(uniform_data(M, N, 4), |_| {}).unwrap_err());
    assert_eq!(field, "data.fnv1a64");
    assert_eq!(resume_corrupted_on(uniform_data(M, N, 3), |_| {}).unwrap(), 40, "the same data resumes");
}

#[test]
fn a_checkpoint_position_past_the_data_or_the_run_is_refused_naming_the_field() {
    let set = |key: &'static str, value: &'static str| {
        move |saved: &mut ModelFile<f64>| {
            saved.metadata.insert(key.into(), value.into());
        }
    };
    assert_eq!(resume_corrupted(set("minibatch.batch", "10")).0, "minibatch.batch", "an epoch has 10 minibatches");
    assert_eq!(resume_corrupted(set("minibatch.epoch", "5")).0, "minibatch.epoch", "the run asks for 4");
    assert_eq!(resume_corrupted(set("minibatch.steps", "18")).0, "minibatch.steps", "epoch 1, minibatch 7 is step 17");
    for (key, value) in
        [("minibatch.batch", "7.0"), ("minibatch.steps", "-17"), ("minibatch.epoch", "99999999999999999999")]
    {
        assert_eq!(resume_corrupted(set(key, value)).0, key, "{value}");
    }
}

#[test]
fn checkpoint_state_that_is_not_finite_or_out_of_range_is_refused_naming_the_field() {
    for key in ["minibatch.x", "minibatch.first", "minibatch.second", "minibatch.rho_hat"] {
        let (field, reason) = resume_corrupted(|saved| saved.extra.get_mut(key).unwrap().1[1] = f64::INFINITY);
        assert_eq!(field, key, "{reason}");
    }
    let (field, _) = resume_corrupted(|saved| saved.extra.get_mut("minibatch.second").unwrap().1[0] = -1e-3);
    assert_eq!(field, "minibatch.second", "Adam's second moment is a mean of squares");
    for rho_hat in [0.0, 1.0, -0.5] {
        let (field, _) = resume_corrupted(|saved| saved.extra.get_mut("minibatch.rho_hat").unwrap().1[2] = rho_hat);
        assert_eq!(field, "minibatch.rho_hat", "{rho_hat} is outside (0, 1)");
    }
    let (field, _) = resume_corrupted(|saved| {
        let (shape, values) = saved.extra.get_mut("minibatch.rho_hat").unwrap();
        values.pop();
        shape[0] -= 1;
    });
    assert_eq!(field, "minibatch.rho_hat", "one value per hidden unit");
}

#[test]
fn a_state_past_the_last_minibatch_is_an_error_not_a_hang() {
    let values = uniform_data(M, N, 3);
    let data = Dataset::examples_by_features(&values, M, N).unwrap();
    let trainer = MinibatchTrainer::new(hyper(N, H), OPTIONS).unwrap();
    let x = Parameters::<f64>::init(N, H, 1).into_theta();
    let rule_state = sae::optim::StepState::new(x.len());
    let state = sae::train::MinibatchState { x, rule_state, running_rho_hat: Vec::new(), epoch: 1, batch: 10 };
    assert!(matches!(trainer.resume_from(&data, state.into(), None, |_| {}), Err(Error::ShapeMismatch { .. })));
}

#[test]
fn an_interrupted_run_ends_normally_checkpointed_and_resumes_bit_for_bit() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("run.ckpt");
    let values = uniform_data(M, N, 3);
    let data = Dataset::examples_by_features(&values, M, N).unwrap();
    let init = Parameters::init(N, H, 6);
    let uninterrupted = MinibatchTrainer::new(hyper(N, H), OPTIONS).unwrap().fit(&data, &init, |_| {}).unwrap();
    assert_eq!(uninterrupted.stop, MinibatchStop::MaxEpochs);
    assert_eq!(uninterrupted.model.metadata["stop"], "max-epochs");

    let flag = std::sync::Arc::new(AtomicBool::new(false));
    let trainer = MinibatchTrainer::new(hyper(N, H), OPTIONS).unwrap().checkpoint_to(&checkpoint, 100);
    let interrupted = trainer
        .stop_when(flag.clone())
        .fit(&data, &init, |step| {
            if step.step == 23 {
                flag.store(true, Ordering::Relaxed);
            }
        })
        .unwrap();
    assert_eq!(interrupted.stop, MinibatchStop::Interrupted);
    assert_eq!((interrupted.steps, interrupted.epochs), (23, 2));
    assert_eq!(interrupted.model.metadata["stop"], "interrupted");
    let saved = ModelFile::<f64>::load(&checkpoint).unwrap();
    assert_eq!(saved.metadata["minibatch.steps"], "23", "checkpointed where it stopped");
    assert_eq!(saved.parameters, interrupted.model.parameters);

    let resumed = MinibatchTrainer::new(hyper(N, H), OPTIONS).unwrap().resume(&data, &checkpoint, |_| {}).unwrap();
    assert_eq!(resumed.stop, MinibatchStop::MaxEpochs);
    assert_eq!(resumed.steps, 40);
    assert_eq!(resumed.model.parameters, uninterrupted.model.parameters);
}

#[test]
fn a_callback_that_breaks_ends_the_run_after_that_step_with_its_model() {
    use std::ops::ControlFlow;
    let values = uniform_data(M, N, 3);
    let data = Dataset::examples_by_features(&values, M, N).unwrap();
    let init = Parameters::init(N, H, 6);
    let trainer = MinibatchTrainer::new(hyper(N, H), OPTIONS).unwrap();
    let stopped = trainer
        .fit(&data, &init, |step| if step.step == 7 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) })
        .unwrap();
    assert_eq!((stopped.stop, stopped.steps, stopped.epochs), (MinibatchStop::Requested, 7, 0));
    assert_eq!(stopped.model.metadata["stop"], "requested");
    // The model of step 7: the one a run cancelled by its flag at that step ends with.
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cancelled = MinibatchTrainer::new(hyper(N, H), OPTIONS)
        .unwrap()
        .stop_when(flag.clone())
        .fit(&data, &init, |step| {
            if step.step == 7 {
                flag.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        })
        .unwrap();
    assert_eq!(cancelled.steps, 7);
    assert_eq!(stopped.model.parameters, cancelled.model.parameters);
}

#[test]
fn a_time_limit_ends_the_run_after_the_step_that_passes_it() {
    let values = uniform_data(M, N, 3);
    let data = Dataset::examples_by_features(&values, M, N).unwrap();
    let trainer = MinibatchTrainer::new(hyper(N, H), OPTIONS).unwrap().time_limit(std::time::Duration::ZERO);
    let stopped = trainer.fit(&data, &Parameters::init(N, H, 6), |_| {}).unwrap();
    assert_eq!((stopped.stop, stopped.steps), (MinibatchStop::TimeLimit, 1));
    assert_eq!(stopped.model.metadata["stop"], "time-limit");
}

#[test]
fn a_flag_set_from_another_thread_cancels_the_run() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let values = uniform_data(M, N, 3);
    let data = Dataset::examples_by_features(&values, M, N).unwrap();
    let flag = Arc::new(AtomicBool::new(false));
    let many = MinibatchOptions { epochs: 1_000_000, ..OPTIONS };
    let trainer = MinibatchTrainer::new(hyper(N, H), many).unwrap().stop_when(flag.clone());
    let canceller = std::thread::spawn({
        let flag = flag.clone();
        move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            flag.store(true, Ordering::Relaxed);
        }
    });
    let stopped = trainer.fit(&data, &Parameters::init(N, H, 6), |_| {}).unwrap();
    canceller.join().unwrap();
    assert_eq!(stopped.stop, MinibatchStop::Interrupted);
    assert!(stopped.steps >= 1 && stopped.epochs < 1_000_000);
}

#[test]
fn a_checkpoint_that_cannot_be_written_stops_the_run_keeping_its_model() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-folder").join("run.ckpt");
    let values = uniform_data(M, N, 3);
    let data = Dataset::examples_by_features(&values, M, N).unwrap();
    let options = MinibatchOptions {
        schedule: Schedule::CONSTANT,
        rule: StepRule::adam(0.01),
        batch_size: 100,
        epochs: 4,
        rho_momentum: 0.9,
        seed: 5,
        shuffle: Shuffle::Full,
    };
    let init = Parameters::init(N, H, 6);
    let trainer = MinibatchTrainer::new(hyper(N, H), options).unwrap();
    let trained = trainer.clone().checkpoint_to(&missing, 7).fit(&data, &init, |_| {}).unwrap();
    // The first checkpoint, after step 7 (within the first epoch of 10 steps), failed: the
    // run stopped there with the model of that step.
    assert_eq!((trained.stop, trained.steps, trained.epochs), (MinibatchStop::CheckpointFailed, 7, 0));
    let error = trained.checkpoint_error.expect("the checkpoint's error");
    assert!(error.to_string().contains("no-such-folder"), "{error}");
    assert_eq!(trained.model.metadata["stop"], "checkpoint-failed");
    let stop_at_seven = |step: &sae::train::MinibatchStep| match step.step {
        7 => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    };
    let seven = trainer.fit(&data, &init, stop_at_seven).unwrap();
    assert_eq!((seven.stop, seven.steps), (MinibatchStop::Requested, 7));
    assert_eq!(seven.model.parameters.theta(), trained.model.parameters.theta());
    assert!(!missing.parent().unwrap().exists());
}
