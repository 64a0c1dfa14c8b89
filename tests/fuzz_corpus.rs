//! The fuzz targets' inputs, replayed as ordinary tests: every file of the seed corpus
//! (`fuzz/corpus/<target>/`, valid files of each format) and every input a fuzzer found to crash
//! a reader (`fuzz/regressions/<target>/`) is read by every reader of its kind, which returns a
//! typed outcome, never panics.

mod input_files;

use std::path::{Path, PathBuf};

use input_files::{gzip, idx_images, idx_labels, mat_file, MatValues};
use ndarray::{Array2, ShapeBuilder};
use sae::data::npy;
use sae::fuzzing::TARGETS;
use sae::model::stack::StackModel;
use sae::model::vae::{VaeDecoder, VaeModel, VaeShape};
use sae::model::{Activation, ModelFile};
use sae::objective::StackShape;
use sae::optim::LbfgsOptions;
use sae::train::{MinibatchOptions, MinibatchTrainer, Trainer};
use sae::{Dataset, HyperParams, Objective, Parameters};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `dir`, sorted; none when it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

#[test]
fn every_seed_is_a_valid_file_that_some_reader_of_its_kind_reads() {
    for (target, body) in TARGETS {
        let seeds = files(&fuzz_dir().join("corpus").join(target));
        assert!(!seeds.is_empty(), "no seed corpus for {target}");
        for seed in seeds {
            let outcomes = body(&std::fs::read(&seed).unwrap());
            assert!(outcomes.iter().any(Result::is_ok), "{}: {outcomes:?}", seed.display());
        }
    }
}

#[test]
fn every_input_a_fuzzer_found_is_read_to_a_typed_outcome() {
    for (target, body) in TARGETS {
        for input in files(&fuzz_dir().join("regressions").join(target)) {
            let outcomes = body(&std::fs::read(&input).unwrap());
            println!("{target} {}: {outcomes:?}", input.display());
        }
    }
}

/// Writes the seed corpus: `cargo test --release --test fuzz_corpus -- --ignored`.
#[test]
#[ignore = "writes the seed corpus of fuzz/corpus"]
fn write_the_seed_corpus() {
    let corpus = fuzz_dir().join("corpus");
    let dir = |target: &str| {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    };
    let matrix = Array2::from_shape_fn((4, 3), |(i, j)| 0.1 + (3 * i + j) as f64 / 20.0);
    for target in ["npy", "npy_source"] {
        let dir = dir(target);
        npy::write_matrix(&dir.join("c_f64.npy"), &matrix).unwrap();
        let mut fortran = Array2::<f32>::zeros((4, 3).f());
        fortran.assign(&matrix.mapv(|v| v as f32));
        npy::write_matrix(&dir.join("fortran_f32.npy"), &fortran).unwrap();
    }
    npy::write_vector(&dir("npy").join("vector_f64.npy"), &[0.5, 0.25, 0.125]).unwrap();

    let hyper = HyperParams::builder(3, 2).build().unwrap();
    let models = dir("model_file");
    ModelFile::new(hyper, Parameters::<f64>::init(3, 2, 1)).save(&models.join("sae_f64.safetensors")).unwrap();
    ModelFile::new(hyper, Parameters::<f32>::init(3, 2, 1)).save(&models.join("sae_f32.safetensors")).unwrap();
    let shape = VaeShape::new(3, 2, 1, Activation::Sigmoid, VaeDecoder::Bernoulli).unwrap();
    let vae = VaeModel::<f64> { shape, theta: shape.init(1), metadata: Vec::new() };
    vae.save(&models.join("vae.safetensors")).unwrap();
    let shape = StackShape { sizes: vec![3, 2], classes: 2 };
    let stack = StackModel::<f64> { theta: vec![0.25; shape.len()], shape, metadata: Vec::new() };
    stack.save(&models.join("stack.safetensors")).unwrap();

    let checkpoints = dir("checkpoint");
    let values: Vec<f64> = (0..24).map(|i| 0.1 + (i % 7) as f64 / 10.0).collect();
    let data = Dataset::examples_by_features(&values, 8, 3).unwrap();
    let mut objective = Objective::new(hyper, data).unwrap();
    let options = LbfgsOptions { max_iterations: 2, ..LbfgsOptions::MINFUNC };
    Trainer::new(options)
        .checkpoint_to(checkpoints.join("lbfgs.ckpt"), 1)
        .fit(&mut objective, &Parameters::init(3, 2, 1), |_| {})
        .unwrap();
    let values = sae::fuzzing::checkpoint_data(3);
    let data = Dataset::examples_by_features(&values, sae::fuzzing::CHECKPOINT_EXAMPLES, 3).unwrap();
    MinibatchTrainer::new(hyper, MinibatchOptions { epochs: 1, ..MinibatchOptions::default() })
        .unwrap()
        .checkpoint_to(checkpoints.join("minibatch.ckpt"), 1)
        .fit(&data, &Parameters::init(3, 2, 1), |_| {})
        .unwrap();

    let idx = dir("idx");
    std::fs::write(idx.join("images.idx"), idx_images(3, 2, 2)).unwrap();
    std::fs::write(idx.join("images.idx.gz"), gzip(&idx_images(3, 2, 2))).unwrap();
    std::fs::write(idx.join("labels.idx"), idx_labels(5)).unwrap();
    std::fs::write(idx.join("labels.idx.gz"), gzip(&idx_labels(5))).unwrap();

    let mat = dir("mat");
    let doubles = MatValues::Double((0..32).map(|i| i as f64 / 32.0).collect());
    std::fs::write(mat.join("double.mat"), mat_file("IMAGES", &[4, 4, 2], doubles, false)).unwrap();
    let bytes = MatValues::UInt8((0..32).collect());
    std::fs::write(mat.join("uint8_compressed.mat"), mat_file("IMAGESr", &[4, 4, 2], bytes, true)).unwrap();
}
