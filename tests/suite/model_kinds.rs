//! Every kind of model file `sae` writes — the sparse autoencoder, the variational
//! autoencoder, the stacked autoencoder — through the commands that use a model: `info`,
//! `encode`, `reconstruct`, `visualize` and (the VAE) `sample`, each result against the
//! library's own computation.

use std::path::Path;
use std::process::Command;

use crate::common::*;
use sae::data::npy;
use sae::model::stack::StackModel;
use sae::model::vae::{VaeDecoder, VaeModel, VaeShape};
use sae::model::{Activation, ModelFile};
use sae::objective::{StackShape, StackedObjective, VaeObjective};
use sae::{Dataset, Parameters};

const M: usize = 37;
const N: usize = 16;

fn sae(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sae")).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).to_str().unwrap().to_string()
}

/// The data file: `M×N` values in (0, 1).
fn data(dir: &Path) -> (String, Vec<f64>) {
    let values = uniform_data(M, N, 4);
    let file = path(dir, "x.npy");
    npy::write_matrix(Path::new(&file), &ndarray::Array2::from_shape_vec((M, N), values.clone()).unwrap()).unwrap();
    (file, values)
}

fn read(file: &str) -> (Vec<f64>, (usize, usize)) {
    let array = npy::read_matrix::<f64>(Path::new(file)).unwrap();
    let dim = array.dim();
    (array.iter().copied().collect(), dim)
}

fn vae(dir: &Path) -> (String, VaeModel<f64>) {
    let shape = VaeShape::new(N, 8, 3, Activation::Relu, VaeDecoder::Bernoulli).unwrap();
    let model = VaeModel { shape, theta: shape.init(5), metadata: vec![("optimizer".into(), "adam".into())] };
    let file = path(dir, "vae.safetensors");
    model.save(Path::new(&file)).unwrap();
    (file, model)
}

fn stack(dir: &Path) -> (String, StackModel<f64>) {
    let shape = StackShape { sizes: vec![N, 9, 4], classes: 3 };
    let theta = uniform_data(1, shape.len(), 6).into_iter().map(|v| v - 0.5).collect();
    let model = StackModel { shape, theta, metadata: Vec::new() };
    let file = path(dir, "stack.safetensors");
    model.save(Path::new(&file)).unwrap();
    (file, model)
}

/// `a` and `b` agree to rounding (the command runs the same kernels on other chunk sizes).
fn assert_close(a: &[f64], b: &[f64]) {
    assert_eq!(a.len(), b.len());
    let error = relative_error(a, b);
    assert!(error < 1e-12, "relative error {error}");
}

#[test]
fn a_sparse_autoencoder_encodes_reconstructs_and_is_described() {
    let dir = tempfile::tempdir().unwrap();
    let (x, values) = data(dir.path());
    let model = ModelFile::new(hyper(N, 5), Parameters::<f64>::init(N, 5, 3));
    let file = path(dir.path(), "m.safetensors");
    model.save(Path::new(&file)).unwrap();
    let (codes, output) = (path(dir.path(), "codes.npy"), path(dir.path(), "out.npy"));
    let dataset = Dataset::examples_by_features(&values, M, N).unwrap();
    let mut hidden = vec![0.0; M * 5];
    model.forward().encode(&dataset, &mut hidden).unwrap();
    let mut reconstruction = vec![0.0; M * N];
    model.forward().decode(&hidden, &mut reconstruction).unwrap();

    let (ok, _, stderr) = sae(&["encode", &file, "--data", &x, "-o", &codes, "--chunk", "10", "--stream"]);
    assert!(ok, "{stderr}");
    let (got, dim) = read(&codes);
    assert_eq!(dim, (M, 5));
    assert_close(&got, &hidden);
    let (ok, stdout, stderr) = sae(&["reconstruct", &file, "--data", &x, "-o", &output]);
    assert!(ok && stdout.contains("mean ½‖x̂ − x‖²"), "{stderr}");
    assert_close(&read(&output).0, &reconstruction);
    let (ok, stdout, _) = sae(&["info", &file]);
    assert!(ok && stdout.contains("autoencoder") && stdout.contains("h = 5 hidden units"), "{stdout}");
    let (ok, stdout, stderr) = sae(&["visualize", &file, "-o", &path(dir.path(), "f.png")]);
    assert!(ok && stdout.contains("5 hidden units"), "{stderr}");
}

#[test]
fn a_vae_encodes_to_its_latent_mean_reconstructs_through_it_and_samples_its_prior() {
    let dir = tempfile::tempdir().unwrap();
    let (x, values) = data(dir.path());
    let (file, model) = vae(dir.path());
    let objective = VaeObjective::<f64>::new(model.shape, 1, 0).unwrap();
    let mean = objective.encode(&model.theta, &values).unwrap();
    let reconstruction = objective.decode(&model.theta, &mean).unwrap();

    let (codes, output) = (path(dir.path(), "codes.npy"), path(dir.path(), "out.npy"));
    let (ok, stdout, stderr) = sae(&["encode", &file, "--data", &x, "-o", &codes, "--chunk", "8"]);
    assert!(ok && stdout.contains(&format!("({M} × 3)")), "{stderr}");
    assert_close(&read(&codes).0, &mean);
    let (ok, _, stderr) = sae(&["reconstruct", &file, "--data", &x, "-o", &output]);
    assert!(ok, "{stderr}");
    let (got, dim) = read(&output);
    assert_eq!(dim, (M, N));
    assert_close(&got, &reconstruction);
    assert!(got.iter().all(|p| (0.0..=1.0).contains(p)), "Bernoulli means");

    let (samples, picture) = (path(dir.path(), "s.npy"), path(dir.path(), "s.png"));
    let (ok, _, stderr) = sae(&["sample", &file, "-o", &samples, "--count", "5", "--seed", "9", "--picture", &picture]);
    assert!(ok, "{stderr}");
    let (got, dim) = read(&samples);
    assert_eq!(dim, (5, N));
    assert_eq!(got, objective.sample(&model.theta, 0..5, 9).unwrap(), "the seed decides");
    assert_ne!(got, objective.sample(&model.theta, 0..5, 10).unwrap());
    assert_eq!(objective.sample(&model.theta, 3..5, 9).unwrap(), got[3 * N..], "each sample drawn on its own");
    assert!(std::fs::metadata(&picture).unwrap().len() > 50);

    let (ok, stdout, _) = sae(&["info", &file]);
    assert!(ok && stdout.contains("variational autoencoder") && stdout.contains("d = 3 latent"), "{stdout}");
    let (ok, stdout, stderr) = sae(&["visualize", &file, "-o", &path(dir.path(), "f.png")]);
    assert!(ok && stdout.contains("8 encoder units"), "{stderr}");
}

#[test]
fn a_stack_encodes_to_its_top_features_and_refuses_to_reconstruct_or_sample() {
    let dir = tempfile::tempdir().unwrap();
    let (x, values) = data(dir.path());
    let (file, model) = stack(dir.path());
    let dataset = Dataset::examples_by_features(&values, M, N).unwrap();
    let features = StackedObjective::features(&model.shape, &model.theta, &dataset);

    let codes = path(dir.path(), "codes.npy");
    let (ok, _, stderr) = sae(&["encode", &file, "--data", &x, "-o", &codes]);
    assert!(ok, "{stderr}");
    let (got, dim) = read(&codes);
    assert_eq!(dim, (M, 4));
    assert_close(&got, &features);
    assert!(got.iter().all(|a| (0.0..=1.0).contains(a)), "sigmoid activations");

    let (ok, _, stderr) = sae(&["reconstruct", &file, "--data", &x, "-o", &path(dir.path(), "out.npy")]);
    assert!(!ok && stderr.contains("no decoder"), "{stderr}");
    let (ok, _, stderr) = sae(&["sample", &file, "-o", &path(dir.path(), "s.npy")]);
    assert!(!ok && stderr.contains("not a variational autoencoder"), "{stderr}");
    let (ok, stdout, _) = sae(&["info", &file]);
    assert!(ok && stdout.contains("layers 16-9-4, 3 classes"), "{stdout}");
    let (ok, stdout, stderr) = sae(&["visualize", &file, "-o", &path(dir.path(), "f.png")]);
    assert!(ok && stdout.contains("9 first-layer units"), "{stderr}");
}

#[test]
fn data_of_another_width_is_refused_for_every_kind() {
    let dir = tempfile::tempdir().unwrap();
    let narrow = path(dir.path(), "narrow.npy");
    npy::write_matrix(Path::new(&narrow), &ndarray::Array2::from_elem((4, N - 1), 0.5)).unwrap();
    for (file, _) in [vae(dir.path()).0, stack(dir.path()).0].iter().map(|f| (f, ())) {
        let (ok, _, stderr) = sae(&["encode", file, "--data", &narrow, "-o", &path(dir.path(), "c.npy")]);
        assert!(!ok && stderr.contains(&format!("the data has {} features, the model {N} inputs", N - 1)), "{stderr}");
    }
}
