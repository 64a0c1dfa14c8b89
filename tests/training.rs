//! The trainer: L-BFGS on the objective, checkpoints that resume bit-for-bit, and checkpoints
//! that do not belong to the run refused.

mod common;

use common::*;
use sae::model::ModelFile;
use sae::optim::{LbfgsOptions, Stop};
use sae::train::Trainer;
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
fn resuming_from_a_checkpoint_of_other_hyper_parameters_is_refused() {
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
    assert!(matches!(&err, Error::BadFile { reason, .. } if reason.contains("another model")), "{err}");
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
