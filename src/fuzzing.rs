//! The bodies of the fuzz targets of `fuzz/` (`cargo fuzz run <target>`), shared with
//! `tests/fuzz_corpus.rs`, which replays their seed corpora and every input a fuzzer found: each
//! reads arbitrary bytes as one kind of input file with every reader of that kind, and must
//! return an outcome per reader, never panic nor allocate much beyond the bytes given.
//!
//! Not part of the crate's API: hidden from its documentation and free to change.

use std::io::Write;
use std::path::Path;

use crate::data::npy_source::NpyFileSource;
use crate::data::stream::ExampleSource;
use crate::data::{mat, mnist, npy, Dataset};
use crate::error::Result;
use crate::model::stack::StackModel;
use crate::model::vae::VaeModel;
use crate::model::ModelFile;
use crate::train::{lbfgs_state, MinibatchOptions, MinibatchTrainer};

/// A fuzz target's body: the outcome of each reader it runs on the bytes.
pub type Body = fn(&[u8]) -> Vec<Result<()>>;

/// The fuzz targets by name, each with its body.
pub const TARGETS: [(&str, Body); 6] = [
    ("npy", npy),
    ("npy_source", npy_source),
    ("model_file", model_file),
    ("checkpoint", checkpoint),
    ("idx", idx),
    ("mat", mat),
];

/// Runs `read` on `bytes` written to a temporary file (in memory, under `/dev/shm`, when the
/// system has it), for the readers that take a path.
fn with_file(bytes: &[u8], read: impl FnOnce(&Path) -> Vec<Result<()>>) -> Vec<Result<()>> {
    let shm = Path::new("/dev/shm");
    let file = if shm.is_dir() { tempfile::NamedTempFile::new_in(shm) } else { tempfile::NamedTempFile::new() };
    let mut file = file.expect("a temporary file");
    file.write_all(bytes).expect("a temporary file written");
    read(file.path())
}

/// `.npy` in memory: the header alone and the whole array, in both precisions, as a matrix
/// and as a vector. What is read agrees with the header.
pub fn npy(bytes: &[u8]) -> Vec<Result<()>> {
    with_file(bytes, |path| {
        let info = npy::inspect(path);
        let matrix = npy::read_matrix::<f64>(path);
        if let (Ok(info), Ok(matrix)) = (&info, &matrix) {
            assert_eq!(info.shape, matrix.shape(), "the header read alone and with the data agree");
        }
        let vector = npy::read_vector::<f32>(path);
        if let (Ok(info), Ok(vector)) = (&info, &vector) {
            assert_eq!(info.values(), vector.len(), "a vector holds every value the header describes");
        }
        vec![info.map(drop), matrix.map(drop), npy::read_matrix::<f32>(path).map(drop), vector.map(drop)]
    })
}

/// Every row of a streamed `.npy` file, twice (a rewind between), in chunks of 3 rows.
fn stream_twice<T: crate::Real>(path: &Path) -> Result<()> {
    let mut source = NpyFileSource::<T>::open(path)?;
    let mut buffer = vec![T::zero(); 3 * source.features()];
    for _ in 0..2 {
        source.rewind()?;
        let mut rows = 0;
        loop {
            let read = source.read_chunk(&mut buffer)?;
            if read == 0 {
                break;
            }
            rows += read;
        }
        assert_eq!(rows, source.examples(), "a pass reads every example once");
    }
    Ok(())
}

/// The streaming `.npy` reader, in both precisions.
pub fn npy_source(bytes: &[u8]) -> Vec<Result<()>> {
    with_file(bytes, |path| vec![stream_twice::<f32>(path), stream_twice::<f64>(path)])
}

/// Safetensors model files: the autoencoder's (both precisions), the variational
/// autoencoder's and the stack's.
pub fn model_file(bytes: &[u8]) -> Vec<Result<()>> {
    with_file(bytes, |path| {
        vec![
            ModelFile::<f64>::load(path).map(drop),
            ModelFile::<f32>::load(path).map(drop),
            VaeModel::<f64>::load(path).map(drop),
            StackModel::<f64>::load(path).map(drop),
        ]
    })
}

/// Checkpoints: the L-BFGS state and the minibatch state of a model file (the latter for a
/// run of the default minibatch options).
pub fn checkpoint(bytes: &[u8]) -> Vec<Result<()>> {
    with_file(bytes, |path| {
        let model = match ModelFile::<f64>::load(path) {
            Ok(model) => model,
            Err(e) => return vec![Err(e)],
        };
        // The checkpoint's fingerprint and positions are checked against this data set.
        let values = checkpoint_data(model.hyper.visible());
        let minibatch =
            Dataset::examples_by_features(&values, CHECKPOINT_EXAMPLES, model.hyper.visible()).and_then(|data| {
                MinibatchTrainer::new(model.hyper, MinibatchOptions::default())?.load_checkpoint(&data, path)
            });
        vec![lbfgs_state(&model, path).map(drop), minibatch.map(drop)]
    })
}

/// Examples of the data set a fuzzed minibatch checkpoint is resumed on.
pub const CHECKPOINT_EXAMPLES: usize = 4;

/// The data set a fuzzed minibatch checkpoint is resumed on: [`CHECKPOINT_EXAMPLES`] examples
/// of `features` values, all 0.5 (the seed corpus's checkpoints are written training on it).
pub fn checkpoint_data(features: usize) -> Vec<f64> {
    vec![0.5; CHECKPOINT_EXAMPLES * features]
}

/// IDX files, gzipped or not, as MNIST images and as labels.
pub fn idx(bytes: &[u8]) -> Vec<Result<()>> {
    with_file(bytes, |path| vec![mnist::read_images(path).map(drop), mnist::read_labels(path).map(drop)])
}

/// `.mat` files: the only array, and the array named `IMAGES`.
pub fn mat(bytes: &[u8]) -> Vec<Result<()>> {
    with_file(bytes, |path| {
        vec![mat::read_images(path, None).map(drop), mat::read_images(path, Some("IMAGES")).map(drop)]
    })
}
