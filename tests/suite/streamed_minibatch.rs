//! Minibatch training streamed from disk: the same steps as in memory with the same block
//! shuffle, whatever the files' layout; mid-epoch resumption bit for bit; bad data named by its
//! row; a full shuffle refused.

use std::ops::ControlFlow;
use std::path::Path;

use crate::common::*;
use ndarray::Array2;
use sae::data::npy;
use sae::data::npy_source::{NpyFileSource, ShardSource};
use sae::data::stream::SliceSource;
use sae::objective::distributed::{Alone, Split};
use sae::optim::{Schedule, StepRule};
use sae::train::{MinibatchOptions, MinibatchTrained, MinibatchTrainer, Shuffle, StreamedPart};
use sae::{Dataset, Error, Parameters};

const M: usize = 203;
const N: usize = 8;
const H: usize = 5;

/// Blocks of 7 (the last of 0), three to a window, minibatches of 16 across windows.
const OPTIONS: MinibatchOptions = MinibatchOptions {
    schedule: Schedule::CONSTANT,
    rule: StepRule::Adam { learning_rate: 0.01, beta1: 0.9, beta2: 0.999, epsilon: 1e-8 },
    batch_size: 16,
    epochs: 3,
    rho_momentum: 0.9,
    seed: 11,
    shuffle: Shuffle::Blocks { block: 7, window: 3 },
};

fn write(path: &Path, values: &[f64], m: usize) {
    npy::write_matrix(path, &Array2::from_shape_vec((m, N), values.to_vec()).unwrap()).unwrap();
}

fn in_memory(values: &[f64], options: MinibatchOptions) -> MinibatchTrained<f64> {
    let data = Dataset::examples_by_features(values, M, N).unwrap();
    MinibatchTrainer::new(hyper(N, H), options).unwrap().fit(&data, &Parameters::init(N, H, 2), |_| {}).unwrap()
}

fn streamed<S: sae::data::stream::SeekableSource<f64> + Send>(
    source: S,
    options: MinibatchOptions,
) -> sae::Result<MinibatchTrained<f64>> {
    MinibatchTrainer::new(hyper(N, H), options).unwrap().fit_streamed(
        StreamedPart::whole(source)?,
        &mut Split::new(Alone),
        None,
        &Parameters::init(N, H, 2),
        |_| {},
    )
}

#[test]
fn streamed_adam_takes_the_steps_of_adam_in_memory_with_the_same_shuffle() {
    let dir = tempfile::tempdir().unwrap();
    let values = uniform_data(M, N, 4);
    let file = dir.path().join("data.npy");
    write(&file, &values, M);
    // Shards whose boundaries fall inside blocks.
    let shards = dir.path().join("shards");
    std::fs::create_dir(&shards).unwrap();
    for (i, rows) in [0..10, 10..11, 11..150, 150..M].into_iter().enumerate() {
        write(&shards.join(format!("{i}.npy")), &values[rows.start * N..rows.end * N], rows.len());
    }
    for options in [OPTIONS, MinibatchOptions { shuffle: Shuffle::Blocks { block: 1, window: 1 }, ..OPTIONS }] {
        let reference = in_memory(&values, options);
        for (what, run) in [
            ("a file", streamed(NpyFileSource::<f64>::open(&file).unwrap(), options).unwrap()),
            ("shards", streamed(ShardSource::<f64>::from_dir(&shards).unwrap(), options).unwrap()),
            ("a slice", streamed(SliceSource::new(&values, N).unwrap(), options).unwrap()),
        ] {
            assert_eq!(run.state, reference.state, "{what}, {:?}", options.shuffle);
            assert_eq!(run.curve, reference.curve, "{what}");
            assert_eq!(run.steps, 3 * M.div_ceil(16) as u64);
            let cost = |t: &MinibatchTrained<f64>| t.model.metadata["cost"].parse::<f64>().unwrap();
            assert!((cost(&run) - cost(&reference)).abs() <= 1e-12 * cost(&reference), "{what}: the final cost");
        }
    }
    // Not the full shuffle's steps: the order is the blocks'.
    assert_ne!(
        in_memory(&values, MinibatchOptions { shuffle: Shuffle::Full, ..OPTIONS }).state,
        in_memory(&values, OPTIONS).state
    );
}

#[test]
fn a_streamed_run_resumed_mid_epoch_ends_bit_for_bit_where_an_uninterrupted_run_ends() {
    let dir = tempfile::tempdir().unwrap();
    let values = uniform_data(M, N, 5);
    let file = dir.path().join("data.npy");
    write(&file, &values, M);
    let uninterrupted = streamed(NpyFileSource::<f64>::open(&file).unwrap(), OPTIONS).unwrap();

    let checkpoint = dir.path().join("run.ckpt");
    let trainer = MinibatchTrainer::new(hyper(N, H), OPTIONS).unwrap().checkpoint_to(&checkpoint, 4);
    let part = || StreamedPart::whole(NpyFileSource::<f64>::open(&file).unwrap()).unwrap();
    // Step 20 is minibatch 7 of epoch 2, in its second window.
    let stopped = trainer
        .fit_streamed(part(), &mut Split::new(Alone), None, &Parameters::init(N, H, 2), |step| match step.step {
            20 => ControlFlow::Break(()),
            _ => ControlFlow::Continue(()),
        })
        .unwrap();
    assert_eq!((stopped.state.epoch, stopped.state.batch), (1, 7));
    let mut part = part();
    let saved = trainer.load_checkpoint_streamed(&mut part, &Split::new(Alone), &checkpoint).unwrap();
    let resumed =
        trainer.resume_streamed(part, &mut Split::new(Alone), saved, None, |_| ControlFlow::Continue(())).unwrap();
    assert_eq!(resumed.state, uninterrupted.state);
    assert_eq!(resumed.curve, uninterrupted.curve);

    // The checkpoint continues in memory as well, with the same shuffle, and not with another.
    let data = Dataset::examples_by_features(&values, M, N).unwrap();
    let in_memory = MinibatchTrainer::new(hyper(N, H), OPTIONS).unwrap().resume(&data, &checkpoint, |_| {}).unwrap();
    assert_eq!(in_memory.state, uninterrupted.state);
    let full = MinibatchOptions { shuffle: Shuffle::Full, ..OPTIONS };
    let err = MinibatchTrainer::new(hyper(N, H), full).unwrap().resume(&data, &checkpoint, |_| {}).unwrap_err();
    assert!(err.to_string().contains("minibatch.shuffle"), "{err}");
    assert!(err.to_string().contains("blocks of 7, window of 3"), "{err}");
}

#[test]
fn a_bad_value_in_a_streamed_block_is_named_by_its_row_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut values = uniform_data(M, N, 6);
    values[150 * N + 3] = f64::NAN;
    let file = dir.path().join("data.npy");
    write(&file, &values, M);
    let err = streamed(NpyFileSource::<f64>::open(&file).unwrap(), OPTIONS).unwrap_err();
    assert!(matches!(err, Error::NonFiniteData { row: 150, column: 3, .. }), "{err}");
}

#[test]
fn streamed_data_is_not_shuffled_one_example_at_a_time() {
    let values = uniform_data(M, N, 7);
    let full = MinibatchOptions { shuffle: Shuffle::Full, ..OPTIONS };
    let err = streamed(SliceSource::new(&values, N).unwrap(), full).unwrap_err();
    assert!(err.to_string().contains("shuffle"), "{err}");
    // A final evaluation in chunks of 0 is refused before training, not after it.
    let err = StreamedPart::whole(SliceSource::new(&values, N).unwrap()).unwrap().with_chunk(0).unwrap_err();
    assert!(err.to_string().contains("chunk"), "{err}");
    for shuffle in [Shuffle::Blocks { block: 0, window: 1 }, Shuffle::Blocks { block: 1, window: 0 }] {
        let err = MinibatchTrainer::new(hyper(N, H), MinibatchOptions { shuffle, ..OPTIONS }).unwrap_err();
        assert!(err.to_string().contains("shuffle"), "{err}");
    }
}
