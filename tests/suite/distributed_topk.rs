//! Dictionary layers trained across processes (threads here, summing through the shared table
//! of `distributed::Threads`): TopK, k-sparse and ReLU + L1 on two and three processes take
//! the steps of one process and report its metrics; BatchTopK selects per process; a stop,
//! a failure or a refusal on one process reaches every process, as does a run given to one
//! process unlike the others'; streamed parts follow the parts in memory; a checkpoint of two
//! processes resumes bit for bit, at an epoch's end or within one, and one that cannot be
//! written stops every process.

use std::ops::ControlFlow;
use std::time::Duration;

use crate::common::*;
use crate::distributed::Threads;
use sae::data::npy_source::NpyFileSource;
use sae::data::planted::PlantedDictionary;
use sae::data::Layout;
use sae::dictionary::{Architecture, TopKModel};
use sae::objective::distributed::{rows_of, Collective, Part};
use sae::optim::StepRule;
use sae::train::{MinibatchStop, Shuffle, StreamedPart, TopKEpoch, TopKOptions, TopKTrained, TopKTrainer};
use sae::{Dataset, Error};

const N: usize = 16;

/// `m` planted-dictionary examples of `N` values (32 directions, 3 active).
fn planted(m: usize, seed: u64) -> Vec<f64> {
    let planted = PlantedDictionary { features: N, atoms: 32, active: 3, magnitudes: (0.5, 2.5), noise: 0.01 };
    planted.examples::<f64>(m, seed).unwrap()
}

/// What one process of a run returned.
type Outcome = sae::Result<(TopKTrained<f64>, Vec<TopKEpoch>)>;

/// A run of `size` processes (threads), each holding its rows of `values` (`m×N`) in memory;
/// `trainer_of(rank)` is the trainer of each, and `stop_after(rank, epoch)` whether a
/// process's callback asks to stop after an epoch.
fn split_run(
    values: &[f64],
    size: usize,
    init: &TopKModel<f64>,
    held_out: Option<&[f64]>,
    trainer_of: impl Fn(usize) -> TopKTrainer + Sync,
    stop_after: impl Fn(usize, usize) -> bool + Sync,
) -> Vec<Outcome> {
    let m = values.len() / N;
    std::thread::scope(|scope| {
        let workers: Vec<_> = Threads::group(size)
            .into_iter()
            .map(|collective| {
                let (trainer_of, stop_after) = (&trainer_of, &stop_after);
                scope.spawn(move || {
                    let rank = collective.rank();
                    let rows = rows_of(rank, size, m);
                    // (Scanned by the trainer, which tells every process of a bad value.)
                    let rows_values = &values[rows.start * N..rows.end * N];
                    let data = (!rows.is_empty())
                        .then(|| Dataset::unscanned(rows_values, rows.len(), N, Layout::ExamplesByFeatures))
                        .transpose()?;
                    let part = Part { data: data.as_ref(), first_example: rows.start, examples: m };
                    let mut seen = Vec::new();
                    let trained = trainer_of(rank).fit_split(part, held_out, &collective, init.clone(), |epoch| {
                        seen.push(epoch.clone());
                        if stop_after(rank, epoch.epoch) {
                            ControlFlow::Break(())
                        } else {
                            ControlFlow::Continue(())
                        }
                    })?;
                    Ok((trained, seen))
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    })
}

/// A run of `size` processes (threads), each streaming its rows of the `.npy` file at `path`
/// (`m×N`) with `trainer`.
fn streamed_split_run(
    path: &std::path::Path,
    m: usize,
    size: usize,
    trainer: &TopKTrainer,
    init: &TopKModel<f64>,
) -> Vec<Outcome> {
    std::thread::scope(|scope| {
        let workers: Vec<_> = Threads::group(size)
            .into_iter()
            .map(|collective| {
                scope.spawn(move || {
                    let rows = rows_of(collective.rank(), size, m);
                    let source = NpyFileSource::<f64>::open(path)?.restrict(rows.clone())?;
                    let part = StreamedPart::new(source, rows.start, m)?;
                    let mut seen = Vec::new();
                    let trained =
                        trainer.fit_streamed_split(part, None, &collective, init.clone(), |e| seen.push(e.clone()))?;
                    Ok((trained, seen))
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    })
}

fn never(_: usize, _: usize) -> bool {
    false
}

fn params(trained: &TopKTrained<f64>) -> &[f64] {
    trained.model.params()
}

/// Asserts that `run` (a process's outcome) is the one-process run `one`, to `tolerance`.
fn assert_follows(run: &(TopKTrained<f64>, Vec<TopKEpoch>), one: &(TopKTrained<f64>, Vec<TopKEpoch>), what: &str) {
    let tolerance = 1e-9;
    let ((trained, seen), (one, one_seen)) = (run, one);
    assert_eq!((trained.steps, trained.stop, trained.chosen_epoch), (one.steps, one.stop, one.chosen_epoch), "{what}");
    let error = relative_error(params(trained), params(one));
    assert!(error <= tolerance, "{what}: parameters off by {error:e}");
    assert!((trained.model.threshold() - one.model.threshold()).abs() <= tolerance, "{what}: threshold");
    assert_eq!(seen.len(), one_seen.len(), "{what}: epochs seen");
    for (epoch, one_epoch) in seen.iter().zip(one_seen) {
        for (metrics, one_metrics) in
            [(&epoch.metrics, &one_epoch.metrics)].into_iter().chain(epoch.held_out.iter().zip(&one_epoch.held_out))
        {
            for (name, a, b) in [
                ("loss", metrics.loss, one_metrics.loss),
                ("fvu", metrics.fvu, one_metrics.fvu),
                ("l0", metrics.l0, one_metrics.l0),
                ("dead", metrics.dead, one_metrics.dead),
            ] {
                assert!(
                    (a - b).abs() <= tolerance * b.abs().max(1.0),
                    "{what}, epoch {}: {name} {a} against {b}",
                    epoch.epoch
                );
            }
            assert_eq!(metrics.frequencies, one_metrics.frequencies, "{what}, epoch {}", epoch.epoch);
        }
        assert_eq!(epoch.held_out.is_some(), one_epoch.held_out.is_some());
    }
}

/// The three layers with their practice: TopK with AuxK, normalised inputs, a schedule of `k`
/// and early stopping on held-out data; k-sparse (tied, linear units); ReLU + L1.
fn layers() -> Vec<(&'static str, TopKModel<f64>, TopKOptions)> {
    let base = TopKOptions { batch_size: 64, epochs: 4, rule: StepRule::adam(3e-3), seed: 9, ..TopKOptions::default() };
    let topk = TopKOptions {
        auxk_alpha: 1.0 / 32.0,
        dead_after: Some(200),
        normalize_inputs: true,
        k_start: Some(8),
        early_stopping: Some(1),
        ..base
    };
    let k_sparse = TopKOptions { epochs: 3, ..TopKOptions { rule: base.rule, ..TopKOptions::k_sparse(12) } };
    let k_sparse = TopKOptions { batch_size: 64, seed: 9, ..k_sparse };
    let relu = TopKOptions { epochs: 3, batch_size: 64, seed: 9, rule: base.rule, ..TopKOptions::relu(0.05) };
    let model = |k: usize, architecture: Architecture| {
        TopKModel::<f64>::init(N, 48, k, 4).unwrap().with_architecture(architecture).unwrap()
    };
    vec![
        ("topk", model(4, Architecture::TOPK), topk),
        ("k-sparse", model(4, Architecture::K_SPARSE), k_sparse),
        ("relu", model(48, Architecture::RELU), relu),
    ]
}

#[test]
fn dictionary_layers_on_two_and_three_processes_take_the_steps_of_one() {
    // 300 examples in minibatches of 64: the last of each epoch short, and every minibatch's
    // rows spread over the processes by the shuffle.
    let values = planted(300, 3);
    let held_out = planted(50, 4);
    for (name, init, options) in layers() {
        let trainer = TopKTrainer::new(options).unwrap();
        let held_out = options.early_stopping.map(|_| held_out.as_slice());
        let one = split_run(&values, 1, &init, held_out, |_| trainer.clone(), never).remove(0).unwrap();
        assert_eq!(one.1.len(), one.0.epochs.len());
        for size in [2, 3] {
            for (rank, run) in split_run(&values, size, &init, held_out, |_| trainer.clone(), never).iter().enumerate()
            {
                let run = run.as_ref().unwrap();
                assert_follows(run, &one, &format!("{name}, {size} processes, rank {rank}"));
            }
        }
    }
}

#[test]
fn a_float32_model_on_two_processes_sums_in_float32_and_follows_one_process_to_its_precision() {
    let values: Vec<f32> = planted(300, 3).iter().map(|&v| v as f32).collect();
    let init = TopKModel::<f32>::init(N, 48, 4, 4).unwrap();
    let options =
        TopKOptions { batch_size: 64, epochs: 3, rule: StepRule::adam(3e-3), seed: 9, ..TopKOptions::default() };
    let trainer = TopKTrainer::new(options).unwrap();
    let m = values.len() / N;
    let run = |size: usize| -> Vec<TopKTrained<f32>> {
        std::thread::scope(|scope| {
            let workers: Vec<_> = Threads::group(size)
                .into_iter()
                .map(|collective| {
                    let (values, trainer, init) = (&values, &trainer, &init);
                    scope.spawn(move || {
                        let rows = rows_of(collective.rank(), size, m);
                        let data = Dataset::examples_by_features(&values[rows.start * N..rows.end * N], rows.len(), N)?;
                        let part = Part { data: Some(&data), first_example: rows.start, examples: m };
                        trainer.fit_split(part, None, &collective, init.clone(), |_| ControlFlow::Continue(()))
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap().unwrap()).collect()
        })
    };
    let one = run(1).remove(0);
    let two = run(2);
    // Both processes hold one model: the same sums, bit for bit.
    assert_eq!(two[0].model.params(), two[1].model.params());
    // Each step's gradient rounds differently (a sum in float32 of the processes' shares), and
    // 15 Adam steps carry that to a few float32 units in the last place of the parameters.
    let widen = |p: &[f32]| p.iter().map(|&v| f64::from(v)).collect::<Vec<_>>();
    let error = relative_error(&widen(two[0].model.params()), &widen(one.model.params()));
    assert!(error <= 1e-5, "parameters off by {error:e}");
    assert_eq!((two[0].steps, two[0].stop), (one.steps, one.stop));
}

#[test]
fn a_process_holding_no_rows_takes_its_part_in_every_sum() {
    // Two examples, three processes: rank 0 holds none.
    let values = planted(2, 5);
    let (_, init, options) = layers().remove(0);
    let options = TopKOptions { batch_size: 2, epochs: 3, early_stopping: None, ..options };
    let trainer = TopKTrainer::new(options).unwrap();
    let one = split_run(&values, 1, &init, None, |_| trainer.clone(), never).remove(0).unwrap();
    for (rank, run) in split_run(&values, 3, &init, None, |_| trainer.clone(), never).iter().enumerate() {
        assert_follows(run.as_ref().unwrap(), &one, &format!("rank {rank}"));
    }
}

#[test]
fn batch_topk_selects_within_each_process_and_every_process_keeps_the_same_model() {
    let values = planted(600, 6);
    let init = TopKModel::<f64>::init(N, 48, 3, 4).unwrap().with_architecture(Architecture::BATCH_TOPK).unwrap();
    let options = TopKOptions { batch_size: 100, epochs: 3, seed: 2, ..TopKOptions::default() };
    let trainer = TopKTrainer::new(options).unwrap();
    let runs = split_run(&values, 2, &init, None, |_| trainer.clone(), never);
    let (first, _) = runs[0].as_ref().unwrap();
    for run in &runs {
        let (trained, _) = run.as_ref().unwrap();
        assert_eq!(params(trained), params(first), "the processes' models");
        assert_eq!(trained.model.threshold(), first.model.threshold());
    }
    // Each process kept k of each of its rows on average: k per example in all.
    let l0 = first.epochs.last().unwrap().metrics.l0;
    assert!((l0 - 3.0).abs() < 1e-9, "L0 in training {l0}");
    assert!(first.model.threshold() > 0.0, "a threshold for inference: {}", first.model.threshold());
}

#[test]
fn a_stop_one_process_is_asked_for_ends_every_process_after_the_same_step() {
    let values = planted(300, 3);
    let (_, init, options) = layers().remove(0);
    let options = TopKOptions { early_stopping: None, ..options };
    let trainer = TopKTrainer::new(options).unwrap();
    // Rank 1's clock: a time limit of zero, reached after its first step.
    let timed = |rank: usize| match rank {
        1 => trainer.clone().time_limit(Duration::ZERO),
        _ => trainer.clone(),
    };
    for run in split_run(&values, 3, &init, None, timed, never) {
        let (trained, _) = run.unwrap();
        assert_eq!((trained.steps, trained.stop), (1, MinibatchStop::TimeLimit));
    }
    // Rank 2's callback, after the second epoch.
    let runs = split_run(&values, 3, &init, None, |_| trainer.clone(), |rank, epoch| rank == 2 && epoch == 2);
    let (first, _) = runs[0].as_ref().unwrap();
    for run in &runs {
        let (trained, seen) = run.as_ref().unwrap();
        assert_eq!((trained.epochs_completed, trained.stop, seen.len()), (2, MinibatchStop::Requested, 2));
        assert_eq!(params(trained), params(first));
    }
}

#[test]
fn a_bad_value_in_one_process_rows_fails_every_process_naming_its_row_in_the_whole() {
    let mut values = planted(300, 3);
    // Row 170 is rank 1's of two (rows 150..300).
    values[170 * N + 5] = f64::NAN;
    let (_, init, options) = layers().remove(0);
    let trainer = TopKTrainer::new(TopKOptions { early_stopping: None, ..options }).unwrap();
    let runs = split_run(&values, 2, &init, None, |_| trainer.clone(), never);
    let error = runs[1].as_ref().unwrap_err().to_string();
    assert!(error.contains("row 170, column 5"), "{error}");
    assert!(matches!(runs[0], Err(Error::OtherRankFailed { rank: 1, .. })), "{:?}", runs[0].as_ref().err());
}

#[test]
fn resampling_across_processes_is_refused_by_name_on_every_process() {
    let values = planted(100, 3);
    let (_, init, options) = layers().remove(0);
    let options = TopKOptions { resample_every: Some(10), early_stopping: None, ..options };
    let trainer = TopKTrainer::new(options).unwrap();
    for run in split_run(&values, 2, &init, None, |_| trainer.clone(), never) {
        let error = run.unwrap_err().to_string();
        assert!(error.contains("resample_every"), "{error}");
    }
}

#[test]
fn processes_streaming_their_rows_by_blocks_take_the_steps_of_their_rows_in_memory() {
    let m = 300;
    let values = planted(m, 3);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.npy");
    sae::data::npy::write_matrix(&path, &ndarray::Array2::from_shape_vec((m, N), values.clone()).unwrap()).unwrap();
    let (_, init, options) = layers().remove(0);
    let options = TopKOptions { shuffle: Shuffle::Blocks { block: 20, window: 3 }, early_stopping: None, ..options };
    let trainer = TopKTrainer::new(options).unwrap();
    let one = split_run(&values, 1, &init, None, |_| trainer.clone(), never).remove(0).unwrap();
    let streamed = streamed_split_run(&path, m, 3, &trainer, &init);
    for (rank, run) in streamed.iter().enumerate() {
        assert_follows(run.as_ref().unwrap(), &one, &format!("streamed, rank {rank}"));
    }
}

#[test]
fn a_checkpoint_of_two_processes_resumes_bit_for_bit() {
    let values = planted(300, 3);
    let (_, init, options) = layers().remove(0);
    let options = TopKOptions { early_stopping: None, ..options };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.safetensors");
    let trainer = TopKTrainer::new(options).unwrap();
    let uninterrupted = split_run(&values, 2, &init, None, |_| trainer.clone(), never).remove(0).unwrap();
    // Stopped after epoch 2 by rank 1's callback; the first process writes the checkpoint.
    let checkpointed = trainer.clone().checkpoint_to(&path, 1000);
    let stopped = split_run(&values, 2, &init, None, |_| checkpointed.clone(), |rank, epoch| rank == 1 && epoch == 2);
    assert!(stopped.iter().all(|run| run.as_ref().is_ok_and(|(t, _)| t.stop == MinibatchStop::Requested)));
    let resumed_trainer = checkpointed.clone().resuming_from(&path);
    for (rank, run) in split_run(&values, 2, &init, None, |_| resumed_trainer.clone(), never).iter().enumerate() {
        let (resumed, seen) = run.as_ref().unwrap();
        assert_eq!((resumed.steps, resumed.epochs_completed, seen.len()), (uninterrupted.0.steps, 4, 2));
        assert_eq!(params(resumed), params(&uninterrupted.0), "rank {rank}");
        assert_eq!(seen[1], uninterrupted.1[3], "rank {rank}: the last epoch");
    }
    // The checkpoint is of this split of the data: on three processes it is refused.
    let other_split = split_run(&values, 3, &init, None, |_| resumed_trainer.clone(), never);
    let error = other_split[0].as_ref().unwrap_err().to_string();
    assert!(error.contains("topk.processes") && error.contains("written by a run on 2 process(es)"), "{error}");
}

/// [`split_run`] whose processes hold the rows `parts(rank)` and start from `init_of(rank)`.
fn split_run_of(
    values: &[f64],
    size: usize,
    parts: impl Fn(usize) -> std::ops::Range<usize> + Sync,
    init_of: impl Fn(usize) -> TopKModel<f64> + Sync,
    trainer: &TopKTrainer,
) -> Vec<sae::Result<TopKTrained<f64>>> {
    let m = values.len() / N;
    std::thread::scope(|scope| {
        let workers: Vec<_> = Threads::group(size)
            .into_iter()
            .map(|collective| {
                let (parts, init_of) = (&parts, &init_of);
                scope.spawn(move || {
                    let rows = parts(collective.rank());
                    let data = Dataset::examples_by_features(&values[rows.start * N..rows.end * N], rows.len(), N)?;
                    let part = Part { data: Some(&data), first_example: rows.start, examples: m };
                    trainer.fit_split(part, None, &collective, init_of(collective.rank()), |_| ())
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    })
}

#[test]
fn processes_given_unlike_runs_are_refused_by_every_process_naming_the_difference() {
    let values = planted(100, 3);
    let (_, init, options) = layers().remove(0);
    let trainer = TopKTrainer::new(TopKOptions { early_stopping: None, ..options }).unwrap();
    let halves = |rank: usize| rows_of(rank, 2, 100);
    // Another seed's model on rank 1.
    let other_init = |rank: usize| if rank == 1 { TopKModel::<f64>::init(N, 48, 4, 5).unwrap() } else { init.clone() };
    for run in split_run_of(&values, 2, halves, other_init, &trainer) {
        let error = run.unwrap_err().to_string();
        assert!(error.contains("rank 1") && error.contains("initial parameters"), "{error}");
    }
    // Both processes holding the first half: the second half is no one's.
    for run in split_run_of(&values, 2, |_| 0..50, |_| init.clone(), &trainer) {
        let error = run.unwrap_err().to_string();
        assert!(error.contains("rank 1: its rows start at row 0 of the data set, not at row 50"), "{error}");
    }
    // Another learning rate on rank 0.
    let other = TopKTrainer::new(TopKOptions { rule: StepRule::adam(1e-2), early_stopping: None, ..options }).unwrap();
    let trainer_of = |rank: usize| if rank == 0 { other.clone() } else { trainer.clone() };
    let runs = split_run(&values, 2, &init, None, trainer_of, never);
    for run in runs {
        let error = run.unwrap_err().to_string();
        assert!(error.contains("rank 1: its options"), "{error}");
    }
}

#[test]
fn a_checkpoint_the_first_process_cannot_write_stops_every_process_with_its_model() {
    let values = planted(300, 3);
    let (_, init, options) = layers().remove(0);
    let dir = tempfile::tempdir().unwrap();
    let trainer = TopKTrainer::new(TopKOptions { early_stopping: None, ..options })
        .unwrap()
        .checkpoint_to(dir.path().join("missing").join("run.safetensors"), 3);
    let runs = split_run(&values, 2, &init, None, |_| trainer.clone(), never);
    let (first, second) = (&runs[0].as_ref().unwrap().0, &runs[1].as_ref().unwrap().0);
    for trained in [first, second] {
        assert_eq!((trained.stop, trained.steps), (MinibatchStop::CheckpointFailed, 3));
    }
    assert_eq!(params(first), params(second));
    let written = first.checkpoint_error.as_ref().unwrap().to_string();
    assert!(written.contains("run.safetensors"), "{written}");
    assert!(matches!(second.checkpoint_error, Some(Error::OtherRankFailed { rank: 0, .. })));
}

#[test]
fn a_run_of_two_processes_stopped_within_an_epoch_resumes_bit_for_bit() {
    let values = planted(300, 3);
    let (_, init, options) = layers().remove(0);
    let options = TopKOptions { early_stopping: None, ..options };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.safetensors");
    let trainer = TopKTrainer::new(options).unwrap();
    let (uninterrupted, _) = split_run(&values, 2, &init, None, |_| trainer.clone(), never).remove(0).unwrap();
    // Rank 1's time limit ends the run after the first step, in the first epoch.
    let checkpointed = trainer.clone().checkpoint_to(&path, 1000);
    let timed = |rank: usize| match rank {
        1 => checkpointed.clone().time_limit(Duration::ZERO),
        _ => checkpointed.clone(),
    };
    for run in split_run(&values, 2, &init, None, timed, never) {
        assert_eq!(run.unwrap().0.steps, 1);
    }
    let resumed = checkpointed.resuming_from(&path);
    for run in split_run(&values, 2, &init, None, |_| resumed.clone(), never) {
        let (trained, _) = run.unwrap();
        assert_eq!(trained.steps, uninterrupted.steps);
        assert_eq!(params(&trained), params(&uninterrupted));
    }
}

#[test]
fn a_bad_value_one_process_streams_in_a_later_step_fails_every_process_at_that_step() {
    let m = 300;
    let mut values = planted(m, 3);
    // Row 250 is rank 2's of three (rows 200..300); its block is read after the first step.
    values[250 * N + 7] = f64::INFINITY;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.npy");
    sae::data::npy::write_matrix(&path, &ndarray::Array2::from_shape_vec((m, N), values).unwrap()).unwrap();
    let (_, init, options) = layers().remove(0);
    let options = TopKOptions { shuffle: Shuffle::Blocks { block: 20, window: 3 }, early_stopping: None, ..options };
    let trainer = TopKTrainer::new(options).unwrap();
    let outcomes = streamed_split_run(&path, m, 3, &trainer, &init);
    let error = outcomes[2].as_ref().unwrap_err().to_string();
    assert!(error.contains("row 250, column 7"), "{error}");
    for outcome in &outcomes[..2] {
        match outcome {
            Err(Error::OtherRankFailed { rank: 2, reason }) => {
                assert_eq!(*reason, "reading or evaluating its rows of a minibatch", "failed in a step's sum")
            }
            other => panic!("{:?}", other.as_ref().err()),
        }
    }
}
