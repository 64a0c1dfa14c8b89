//! The trainer: L-BFGS on the objective, checkpoints that resume bit-for-bit, and checkpoints
//! that do not belong to the run refused.

use crate::common::*;
use sae::model::ModelFile;
use sae::optim::{LbfgsOptions, Stop};
use sae::train::{DataFingerprint, Trainer};
use sae::{Dataset, Error, HyperParams, Objective, Parameters};

const M: usize = 300;
const N: usize = 12;
const H: usize = 5;

fn options(max_iterations: usize) -> LbfgsOptions {
    LbfgsOptions { max_iterations, history: 7, ..LbfgsOptions::default() }
}

fn with_objective<R>(f: impl FnOnce(&mut Objective<'_, f64>) -> R) -> R {
    let values = uniform_data(M, N, 5);
    let mut objective = Objective::new(hyper(N, H), Dataset::examples_by_features(&values, M, N).unwrap()).unwrap();
    f(&mut objective)
}

#[test]
fn training_lowers_the_cost_and_records_the_run_in_the_model() {
    let trained = with_objective(|objective| {
        Trainer::new(options(40)).fit(objective, &Parameters::init(N, H, 1), |_| {}).unwrap()
    });
    assert!(trained.cost < 0.5 * trained.initial_cost, "{} from {}", trained.cost, trained.initial_cost);
    assert_eq!((trained.stop, trained.iterations), (Stop::MaxIterations, 40));
    assert_eq!(trained.model.metadata["iterations"], "40");
    assert_eq!(trained.model.metadata["stop"], "max-iterations");
    let mut grad = vec![0.0; trained.model.parameters.theta().len()];
    let recomputed = with_objective(|o| o.evaluate(trained.model.parameters.theta(), &mut grad).unwrap());
    assert_eq!(recomputed, trained.cost);
}

#[test]
fn a_run_resumed_from_its_checkpoint_ends_bit_for_bit_where_an_uninterrupted_run_ends() {
    let dir = tempfile::tempdir().unwrap();
    let init = Parameters::init(N, H, 2);
    let uninterrupted = with_objective(|o| Trainer::new(options(30)).fit(o, &init, |_| {}).unwrap());

    let checkpoint = dir.path().join("run.ckpt.safetensors");
    with_objective(|o| Trainer::new(options(12)).checkpoint_to(&checkpoint, 5).fit(o, &init, |_| {}).unwrap());
    let resumed = with_objective(|o| Trainer::new(options(30)).resume(o, &checkpoint, |_| {}).unwrap());
    assert_eq!(resumed.iterations, 30);
    assert_eq!(resumed.model.parameters, uninterrupted.model.parameters);
    assert_eq!(resumed.cost.to_bits(), uninterrupted.cost.to_bits());
}

#[test]
fn checkpoints_are_written_every_k_iterations() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("run.ckpt.safetensors");
    let mut seen = Vec::new();
    with_objective(|o| {
        Trainer::new(options(9))
            .checkpoint_to(&checkpoint, 4)
            .fit(o, &Parameters::init(N, H, 3), |it| {
                // The file holds the iteration before this one's checkpoint decision.
                if let Ok(saved) = ModelFile::<f64>::load(&checkpoint) {
                    seen.push((it.iteration, saved.metadata["lbfgs.iteration"].clone()));
                }
            })
            .unwrap()
    });
    assert_eq!(seen.first().map(|(i, s)| (*i, s.as_str())), Some((5, "4")));
    assert_eq!(seen.last().map(|(i, s)| (*i, s.as_str())), Some((9, "8")));
    let last = ModelFile::<f64>::load(&checkpoint).unwrap();
    assert_eq!(last.metadata["lbfgs.iteration"], "9", "the end of the run is checkpointed");
}

#[test]
fn resuming_from_a_checkpoint_of_other_hyper_parameters_is_refused_naming_the_one_that_differs() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("run.ckpt.safetensors");
    with_objective(|o| {
        Trainer::new(options(2)).checkpoint_to(&checkpoint, 1).fit(o, &Parameters::init(N, H, 4), |_| {})
    })
    .unwrap();
    let other = HyperParams::builder(N, H).lambda(1e-2).beta(3.0).rho(0.1).build().unwrap();
    let values = uniform_data(M, N, 5);
    let mut objective = Objective::new(other, Dataset::examples_by_features(&values, M, N).unwrap()).unwrap();
    let err = Trainer::new(options(5)).resume(&mut objective, &checkpoint, |_| {}).unwrap_err();
    let (field, reason) = refused(err, &checkpoint);
    assert_eq!(field, "lambda");
    assert!(reason.contains("0.003") && reason.contains("0.01"), "{reason}");
}

#[test]
fn resuming_from_a_model_without_optimiser_state_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    ModelFile::new(hyper(N, H), Parameters::<f64>::init(N, H, 5)).save(&path).unwrap();
    let err = with_objective(|o| Trainer::new(options(5)).resume(o, &path, |_| {})).unwrap_err();
    assert!(matches!(&err, Error::BadFile { reason, .. } if reason.contains("not a checkpoint")), "{err}");
}

#[test]
fn training_on_streamed_data_follows_the_in_memory_run() {
    let values = uniform_data(M, N, 5);
    let init = Parameters::init(N, H, 6);
    let in_memory = with_objective(|o| Trainer::new(options(15)).fit(o, &init, |_| {}).unwrap());
    let source = sae::data::stream::SliceSource::new(&values, N).unwrap();
    for mode in [sae::objective::StreamMode::OnePass, sae::objective::StreamMode::TwoPass] {
        let mut streaming = sae::objective::StreamingObjective::new(hyper(N, H), source.clone(), 64, mode).unwrap();
        let streamed = Trainer::new(options(15)).fit(&mut streaming, &init, |_| {}).unwrap();
        // The same iterations, the evaluations differing by summation order only.
        assert!((streamed.cost - in_memory.cost).abs() <= 1e-9 * in_memory.cost, "{mode:?}");
        let difference = relative_error(streamed.model.parameters.theta(), in_memory.model.parameters.theta());
        assert!(difference < 1e-7, "{mode:?}: {difference:e}");
    }
}

/// The field named by a [`Error::BadCheckpoint`] of the file at `path`, and why.
fn refused(err: Error, path: &std::path::Path) -> (&'static str, String) {
    match err {
        Error::BadCheckpoint { path: at, field, reason } => {
            assert_eq!(at, path);
            (field, reason)
        }
        other => panic!("expected a refused checkpoint, got {other}"),
    }
}

/// The checkpoint at iteration 6 of a run (history 7), changed by `corrupt`, then resumed on
/// the same data: the field named by the error.
fn resume_corrupted(corrupt: impl FnOnce(&mut ModelFile<f64>)) -> (&'static str, String) {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("run.ckpt");
    with_objective(|o| {
        Trainer::new(options(6)).checkpoint_to(&checkpoint, 1).fit(o, &Parameters::init(N, H, 7), |_| {})
    })
    .unwrap();
    let mut saved = ModelFile::load(&checkpoint).unwrap();
    corrupt(&mut saved);
    saved.save(&checkpoint).unwrap();
    let err = with_objective(|o| Trainer::new(options(10)).resume(o, &checkpoint, |_| {})).unwrap_err();
    refused(err, &checkpoint)
}

fn set(key: &'static str, value: &'static str) -> impl FnOnce(&mut ModelFile<f64>) {
    move |saved| {
        saved.metadata.insert(key.into(), value.into());
    }
}

#[test]
fn checkpoint_counters_that_are_not_strict_counts_are_refused_naming_the_field() {
    for (key, value) in [
        ("lbfgs.iteration", "6.5"),
        ("lbfgs.iteration", "-1"),
        ("lbfgs.iteration", "18446744073709551615"),
        ("lbfgs.evaluations", "99999999999999999999"),
        ("lbfgs.oldest", "+0"),
    ] {
        let (field, reason) = resume_corrupted(set(key, value));
        assert_eq!(field, key, "{value}: {reason}");
    }
}

#[test]
fn checkpoint_counters_that_disagree_are_refused_naming_the_field() {
    let (field, _) = resume_corrupted(set("lbfgs.evaluations", "3"));
    assert_eq!(field, "lbfgs.evaluations", "fewer evaluations than iterations");
    let (field, reason) = resume_corrupted(set("lbfgs.oldest", "6"));
    assert_eq!(field, "lbfgs.oldest", "a slot not held: {reason}");
    let (field, _) = resume_corrupted(set("lbfgs.stopped", "bored"));
    assert_eq!(field, "lbfgs.stopped");
}

#[test]
fn checkpoint_numbers_that_are_not_finite_or_out_of_range_are_refused_naming_the_field() {
    for (key, value) in [("lbfgs.f", "NaN"), ("lbfgs.f", "inf"), ("lbfgs.gamma", "0"), ("lbfgs.gamma", "-1")] {
        let (field, reason) = resume_corrupted(set(key, value));
        assert_eq!(field, key, "{value}: {reason}");
    }
    for key in ["lbfgs.x", "lbfgs.g", "lbfgs.s", "lbfgs.y", "lbfgs.ys"] {
        let (field, reason) = resume_corrupted(|saved| saved.extra.get_mut(key).unwrap().1[0] = f64::NAN);
        assert_eq!(field, key, "{reason}");
    }
    let (field, _) = resume_corrupted(|saved| saved.extra.get_mut("lbfgs.ys").unwrap().1[0] = -1.0);
    assert_eq!(field, "lbfgs.ys", "a pair of negative curvature");
}

#[test]
fn checkpoint_tensors_of_the_wrong_shape_are_refused_naming_the_field() {
    let (field, _) = resume_corrupted(|saved| {
        let (shape, values) = saved.extra.get_mut("lbfgs.s").unwrap();
        values.truncate(values.len() - shape[1]);
        shape[0] -= 1;
    });
    assert_eq!(field, "lbfgs.s", "one pair fewer than ys holds");
    let (field, _) = resume_corrupted(|saved| {
        let (shape, values) = saved.extra.get_mut("lbfgs.g").unwrap();
        values.pop();
        shape[0] -= 1;
    });
    assert_eq!(field, "lbfgs.g");
    let (field, _) = resume_corrupted(|saved| saved.extra.get_mut("lbfgs.ys").unwrap().0 = vec![1, 6]);
    assert_eq!(field, "lbfgs.ys", "a matrix where a vector belongs");
}

#[test]
fn a_checkpoint_whose_weights_were_changed_apart_from_its_state_is_refused() {
    let (field, _) = resume_corrupted(|saved| {
        let mut theta = saved.parameters.theta().to_vec();
        theta[3] += 0.5;
        saved.parameters = Parameters::from_theta(N, H, theta).unwrap();
    });
    assert_eq!(field, "lbfgs.x");
}

#[test]
fn a_checkpoint_with_more_correction_pairs_than_the_run_keeps_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("run.ckpt");
    with_objective(|o| {
        Trainer::new(options(6)).checkpoint_to(&checkpoint, 6).fit(o, &Parameters::init(N, H, 7), |_| {})
    })
    .unwrap();
    let fewer = LbfgsOptions { history: 2, ..options(10) };
    let err = with_objective(|o| Trainer::new(fewer).resume(o, &checkpoint, |_| {})).unwrap_err();
    assert_eq!(refused(err, &checkpoint).0, "lbfgs.ys");
}

#[test]
fn resuming_on_other_data_is_refused_naming_what_differs() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("run.ckpt");
    with_objective(|o| {
        Trainer::new(options(3)).checkpoint_to(&checkpoint, 1).fit(o, &Parameters::init(N, H, 8), |_| {})
    })
    .unwrap();
    let resume_on = |values: &[f64], m: usize| {
        let mut objective = Objective::new(hyper(N, H), Dataset::examples_by_features(values, m, N).unwrap()).unwrap();
        refused(Trainer::new(options(5)).resume(&mut objective, &checkpoint, |_| {}).unwrap_err(), &checkpoint)
    };
    let values = uniform_data(M, N, 5);
    assert_eq!(resume_on(&values[..(M - 1) * N], M - 1).0, "data.examples");
    let mut changed = values.clone();
    changed[7 * N + 3] += 1e-9;
    let (field, reason) = resume_on(&changed, M);
    assert_eq!(field, "data.fnv1a64", "{reason}");
    let f32_values: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    let mut f32_objective =
        Objective::new(hyper(N, H), Dataset::examples_by_features(&f32_values, M, N).unwrap()).unwrap();
    let err = Trainer::new(options(5)).resume(&mut f32_objective, &checkpoint, |_| {}).unwrap_err();
    assert_eq!(refused(err, &checkpoint).0, "data.dtype");
}

#[test]
fn the_fingerprint_of_data_is_that_of_its_values_in_example_order_in_memory_or_streamed() {
    let values = uniform_data(M, N, 5);
    let rows = DataFingerprint::of_dataset(&Dataset::examples_by_features(&values, M, N).unwrap());
    let by_features = transpose(&values, M, N);
    let columns = DataFingerprint::of_dataset(&Dataset::features_by_examples(&by_features, N, M).unwrap());
    let mut source = sae::data::stream::SliceSource::new(&values, N).unwrap();
    let streamed = DataFingerprint::of_source(&mut source).unwrap();
    assert_eq!((rows.examples, rows.features, rows.dtype), (M, N, "f64"));
    assert_eq!(columns, rows, "either layout");
    assert_eq!(streamed, rows, "streamed");
    let mut swapped = values.clone();
    swapped.swap(0, N);
    let other = DataFingerprint::of_dataset(&Dataset::examples_by_features(&swapped, M, N).unwrap());
    assert_ne!(other.hash, rows.hash, "examples in another order");
}

#[test]
fn a_checkpoint_of_an_in_memory_run_resumes_on_the_same_data_streamed() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("run.ckpt");
    with_objective(|o| {
        Trainer::new(options(4)).checkpoint_to(&checkpoint, 4).fit(o, &Parameters::init(N, H, 9), |_| {})
    })
    .unwrap();
    let values = uniform_data(M, N, 5);
    let source = sae::data::stream::SliceSource::new(&values, N).unwrap();
    let mut streaming =
        sae::objective::StreamingObjective::new(hyper(N, H), source, 64, sae::objective::StreamMode::OnePass).unwrap();
    let resumed = Trainer::new(options(8)).resume(&mut streaming, &checkpoint, |_| {}).unwrap();
    assert_eq!(resumed.iterations, 8);
}

#[test]
fn a_fingerprint_the_caller_supplies_is_recorded_and_checked_instead() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("run.ckpt");
    let supplied = DataFingerprint { examples: M, features: N, dtype: "f64", hash: 42 };
    let trainer = |iterations| Trainer::new(options(iterations)).data_fingerprint(supplied);
    with_objective(|o| trainer(3).checkpoint_to(&checkpoint, 3).fit(o, &Parameters::init(N, H, 9), |_| {})).unwrap();
    assert_eq!(ModelFile::<f64>::load(&checkpoint).unwrap().metadata["data.fnv1a64"], "000000000000002a");
    assert_eq!(with_objective(|o| trainer(5).resume(o, &checkpoint, |_| {})).unwrap().iterations, 5);
    let err = with_objective(|o| Trainer::new(options(5)).resume(o, &checkpoint, |_| {})).unwrap_err();
    assert_eq!(refused(err, &checkpoint).0, "data.fnv1a64", "the objective's own fingerprint differs");
}

#[test]
fn an_interrupted_run_ends_normally_checkpointed_and_resumes_bit_for_bit() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("run.ckpt");
    let init = Parameters::init(N, H, 2);
    let uninterrupted = with_objective(|o| Trainer::new(options(30)).fit(o, &init, |_| {}).unwrap());

    let flag = std::sync::Arc::new(AtomicBool::new(false));
    let trainer = Trainer::new(options(30)).checkpoint_to(&checkpoint, 100).stop_when(flag.clone());
    let interrupted = with_objective(|o| {
        trainer.fit(o, &init, |it| {
            if it.iteration == 13 {
                flag.store(true, Ordering::Relaxed);
            }
        })
    })
    .unwrap();
    assert_eq!((interrupted.stop, interrupted.iterations), (Stop::Interrupted, 13));
    assert!(!interrupted.stop.converged());
    assert_eq!(interrupted.model.metadata["stop"], "interrupted");
    let saved = ModelFile::<f64>::load(&checkpoint).unwrap();
    assert_eq!(saved.metadata["lbfgs.iteration"], "13", "checkpointed where it stopped");
    assert_eq!(saved.metadata["lbfgs.stopped"], "interrupted");
    assert_eq!(saved.parameters, interrupted.model.parameters);

    let resumed = with_objective(|o| Trainer::new(options(30)).resume(o, &checkpoint, |_| {}).unwrap());
    assert_eq!((resumed.stop, resumed.iterations), (Stop::MaxIterations, 30));
    assert_eq!(resumed.model.parameters, uninterrupted.model.parameters);
    assert_eq!(resumed.cost.to_bits(), uninterrupted.cost.to_bits());
}

#[test]
fn a_callback_that_breaks_ends_the_run_as_finished_and_it_resumes_bit_for_bit() {
    use std::ops::ControlFlow;
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("run.ckpt");
    let init = Parameters::init(N, H, 2);
    let uninterrupted = with_objective(|o| Trainer::new(options(30)).fit(o, &init, |_| {}).unwrap());

    let mut cost_seen = f64::NAN;
    let trainer = Trainer::new(options(30)).checkpoint_to(&checkpoint, 100);
    let stopped = with_objective(|o| {
        trainer.fit(o, &init, |it| {
            cost_seen = it.f;
            if it.iteration == 11 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
    })
    .unwrap();
    assert_eq!((stopped.stop, stopped.iterations), (Stop::Requested, 11));
    assert_eq!(stopped.cost, cost_seen, "the model is the iterate the callback saw last");
    assert_eq!(stopped.model.metadata["stop"], "requested");
    assert_eq!(ModelFile::<f64>::load(&checkpoint).unwrap().metadata["lbfgs.stopped"], "requested");

    let resumed = with_objective(|o| Trainer::new(options(30)).resume(o, &checkpoint, |_| {}).unwrap());
    assert_eq!((resumed.stop, resumed.iterations), (Stop::MaxIterations, 30));
    assert_eq!(resumed.model.parameters, uninterrupted.model.parameters);
}

#[test]
fn a_time_limit_ends_the_run_after_the_iteration_that_passes_it() {
    let init = Parameters::init(N, H, 2);
    let trainer = Trainer::new(options(30)).time_limit(std::time::Duration::ZERO);
    let stopped = with_objective(|o| trainer.fit(o, &init, |_| {})).unwrap();
    assert_eq!((stopped.stop, stopped.iterations), (Stop::TimeLimit, 1));
    assert!(!stopped.stop.converged() && stopped.stop.resumable());
    assert_eq!(stopped.model.metadata["stop"], "time-limit");
    assert!(stopped.cost < stopped.initial_cost);
}

#[test]
fn tolerances_stop_the_run_and_bad_ones_are_refused_by_name() {
    let init = Parameters::init(N, H, 2);
    let loose = LbfgsOptions { gradient_tolerance: 1e-2, ..options(400) };
    let converged = with_objective(|o| Trainer::new(loose).fit(o, &init, |_| {})).unwrap();
    assert_eq!(converged.stop, Stop::GradientTolerance);
    assert!(converged.iterations < 400);
    for bad in [
        LbfgsOptions { gradient_tolerance: -1.0, ..options(10) },
        LbfgsOptions { progress_tolerance: f64::NAN, ..options(10) },
    ] {
        let err = with_objective(|o| Trainer::new(bad).fit(o, &init, |_| {})).unwrap_err();
        assert!(
            matches!(err, Error::InvalidHyperParameter { name: "gradient tolerance" | "progress tolerance", .. }),
            "{err}"
        );
    }
}

#[test]
fn every_stop_keeps_the_name_checkpoints_record_it_by() {
    // Checkpoints written by earlier versions name their stop so: these names may not change.
    let recorded = [
        (Stop::MaxIterations, "max-iterations"),
        (Stop::MaxEvaluations, "max-evaluations"),
        (Stop::GradientTolerance, "gradient-tolerance"),
        (Stop::FunctionChange, "function-change"),
        (Stop::StepSize, "step-size"),
        (Stop::DirectionalDerivative, "directional-derivative"),
        (Stop::LineSearchFailed, "line-search-failed"),
        (Stop::Interrupted, "interrupted"),
        (Stop::Requested, "requested"),
        (Stop::TimeLimit, "time-limit"),
        (Stop::EarlyStopping, "early-stopping"),
        (Stop::CheckpointFailed, "checkpoint-failed"),
    ];
    // Fails to compile when a stop is added, until it is named here.
    let named = |stop: Stop| match stop {
        Stop::MaxIterations
        | Stop::MaxEvaluations
        | Stop::GradientTolerance
        | Stop::FunctionChange
        | Stop::StepSize
        | Stop::DirectionalDerivative
        | Stop::LineSearchFailed
        | Stop::Interrupted
        | Stop::Requested
        | Stop::TimeLimit
        | Stop::EarlyStopping
        | Stop::CheckpointFailed => recorded.iter().any(|(s, _)| *s == stop),
    };
    for (stop, name) in recorded {
        assert!(named(stop));
        assert_eq!(stop.name(), name);
        assert!(Stop::ALL.contains(&stop), "{stop:?} is in Stop::ALL, which reads names back");
    }
    assert_eq!(Stop::ALL.len(), recorded.len());
}

#[test]
fn the_noise_seed_of_a_model_without_corruption_does_not_refuse_its_checkpoint() {
    use sae::model::Corruption;
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("run.ckpt");
    let values = uniform_data(M, N, 5);
    let data = Dataset::examples_by_features(&values, M, N).unwrap();
    let with_seed = |seed| HyperParams::builder(N, H).corruption(Corruption::None, seed).build().unwrap();
    let init = Parameters::init(N, H, 2);
    let mut objective = Objective::new(with_seed(0), data).unwrap();
    Trainer::new(options(4)).checkpoint_to(&checkpoint, 2).fit(&mut objective, &init, |_| {}).unwrap();
    let mut other_seed = Objective::new(with_seed(1), data).unwrap();
    assert_eq!(Trainer::new(options(6)).resume(&mut other_seed, &checkpoint, |_| {}).unwrap().iterations, 6);

    let other = HyperParams::builder(N, H).beta(0.5).rho(0.2).build().unwrap();
    let mut other_model = Objective::new(other, data).unwrap();
    let err = Trainer::new(options(6)).resume(&mut other_model, &checkpoint, |_| {}).unwrap_err();
    let (field, reason) = refused(err, &checkpoint);
    assert_eq!(field, "beta");
    assert!(reason.contains("rho 0.01 in the checkpoint, 0.2 here"), "every field that differs is named: {reason}");
}

#[test]
fn a_checkpoint_that_cannot_be_written_stops_the_run_keeping_its_model() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-folder").join("run.ckpt");
    let init = Parameters::init(N, H, 1);
    let (trained, four, last) = with_objective(|objective| {
        let trained = Trainer::new(options(40)).checkpoint_to(&missing, 4).fit(objective, &init, |_| {}).unwrap();
        let four = Trainer::new(options(4)).fit(objective, &init, |_| {}).unwrap();
        // The checkpoint of the run's end (its iteration limit) failing: that is the stop.
        let last = Trainer::new(options(4)).checkpoint_to(&missing, 100).fit(objective, &init, |_| {}).unwrap();
        (trained, four, last)
    });
    // The first checkpoint, after iteration 4, failed: the run stopped there with its model.
    assert_eq!((trained.stop, trained.iterations), (Stop::CheckpointFailed, 4));
    let error = trained.checkpoint_error.expect("the checkpoint's error");
    assert!(matches!(error, Error::Io { .. }) && error.to_string().contains("no-such-folder"), "{error}");
    assert_eq!(trained.model.metadata["stop"], "checkpoint-failed");
    assert_eq!(trained.model.parameters.theta(), four.model.parameters.theta());
    assert_eq!((last.stop, last.iterations), (Stop::CheckpointFailed, 4));
    assert!(last.checkpoint_error.is_some());
    assert_eq!(last.model.parameters.theta(), four.model.parameters.theta());
    assert!(!missing.parent().unwrap().exists());
}
