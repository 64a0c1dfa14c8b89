//! UFLDL's exercises on the real data sets of `../shared/datasets/`: the readers agree with the
//! data sets' published facts, and the models learn what the notes say they learn.

mod common;

use std::path::{Path, PathBuf};

use sae::data::{mat, mnist};
use sae::exercises::{self, MnistFiles};

fn datasets() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets");
    assert!(dir.is_dir(), "these tests read the real data sets of {}: put shared/ beside the project", dir.display());
    dir
}

#[test]
fn mnist_files_read_as_published() {
    let files = MnistFiles::in_dir(&datasets().join("mnist"));
    let (images, count, pixels) = mnist::read_images(&files.train_images).unwrap();
    assert_eq!((count, pixels), (60_000, 784));
    let mean = images.iter().sum::<f64>() / images.len() as f64;
    assert!((mean - 0.13066).abs() < 1e-5, "pixel mean {mean}");
    let labels = mnist::read_labels(&files.train_labels).unwrap();
    assert_eq!(&labels[..10], &[5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
    let counts: Vec<usize> = (0..10).map(|d| labels.iter().filter(|&&l| l == d).count()).collect();
    assert_eq!(counts, [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]);
    assert_eq!(&mnist::read_labels(&files.test_labels).unwrap()[..10], &[7, 2, 1, 0, 4, 1, 4, 9, 5, 9]);
}

#[test]
fn malformed_mnist_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let source = std::fs::read(datasets().join("mnist/t10k-labels-idx1-ubyte.gz")).unwrap();
    let truncated = dir.path().join("truncated.gz");
    std::fs::write(&truncated, &source[..source.len() / 2]).unwrap();
    assert!(matches!(mnist::read_labels(&truncated), Err(sae::Error::BadFile { path, .. }) if path == truncated));

    let wrong_magic = dir.path().join("images-as-labels");
    std::fs::write(&wrong_magic, [0, 0, 8, 3, 0, 0, 0, 0]).unwrap();
    let err = mnist::read_labels(&wrong_magic).unwrap_err().to_string();
    assert!(err.contains("magic number 2051") && err.contains("2049"), "{err}");

    let short = dir.path().join("short");
    std::fs::write(&short, [0, 0, 8, 1, 0, 0, 0, 3, 1, 2]).unwrap();
    assert!(mnist::read_labels(&short).unwrap_err().to_string().contains("2 labels for a header of 3"));

    let not_digits = dir.path().join("not-digits");
    std::fs::write(&not_digits, [0, 0, 8, 1, 0, 0, 0, 2, 1, 12]).unwrap();
    assert!(mnist::read_labels(&not_digits).unwrap_err().to_string().contains("label 12 at index 1"));
}

#[test]
fn the_natural_image_mat_files_read_as_scipy_reads_them() {
    let images = mat::read_images(&datasets().join("natural/IMAGES.mat"), None).unwrap();
    assert_eq!((images.len(), images[0].side), (10, 512));
    // scipy.io.loadmat(...)["IMAGES"][r, c, 0] for (r, c) = (0, 0), (1, 0), (2, 0).
    assert_eq!(
        (images[0].at(0, 0), images[0].at(1, 0), images[0].at(2, 0)),
        (0.915558216856828, 0.9920550377773598, 0.2354536430218555)
    );
    let variance = images[3].pixels.iter().map(|p| p * p).sum::<f64>() / (512.0 * 512.0);
    assert!((variance - 0.1).abs() < 0.01, "whitened to variance 0.1: {variance}");

    let raw = mat::read_images(&datasets().join("natural/IMAGES_RAW.mat"), Some("IMAGESr")).unwrap();
    assert_eq!(raw.len(), 10);
    assert_eq!(raw[0].at(0, 0), 200.0 / 255.0);
}

#[test]
fn malformed_mat_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(datasets().join("natural/IMAGES_RAW.mat")).unwrap();
    let truncated = dir.path().join("truncated.mat");
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    assert!(matches!(mat::read_images(&truncated, None), Err(sae::Error::BadFile { path, .. }) if path == truncated));
    let text = dir.path().join("text.mat");
    std::fs::write(&text, "not a mat file at all").unwrap();
    assert!(matches!(mat::read_images(&text, None), Err(sae::Error::BadFile { .. })));
    let err = mat::read_images(&datasets().join("natural/IMAGES.mat"), Some("IMAGESr")).unwrap_err();
    assert!(err.to_string().contains("no array named \"IMAGESr\""), "{err}");
}

#[test]
#[cfg_attr(
    not(feature = "slow-tests"),
    ignore = "trains on a real data set for minutes: cargo test --release --features slow-tests"
)]
fn softmax_on_all_ten_digits_reaches_the_ufldl_accuracy() {
    let result = exercises::softmax_on_digits(&MnistFiles::in_dir(&datasets().join("mnist")), 100).unwrap();
    println!("{result:?}");
    // UFLDL's softmax exercise: about 92.2–92.6 % after 100 iterations.
    assert!(result.test_accuracy >= 0.92, "{result:?}");
}

#[test]
#[cfg_attr(
    not(feature = "slow-tests"),
    ignore = "trains on a real data set for minutes: cargo test --release --features slow-tests"
)]
fn self_taught_learning_reaches_the_ufldl_accuracy() {
    let result = exercises::self_taught_learning::<f32>(&MnistFiles::in_dir(&datasets().join("mnist")), 400).unwrap();
    println!("{result:?}");
    assert_eq!((result.unlabeled, result.train, result.test), (29_404, 15_298, 15_298));
    // UFLDL: 98.3 % on the learned features, about 96 % on the raw pixels.
    assert!(result.features_accuracy >= 0.98, "{result:?}");
    assert!(result.features_accuracy > result.raw_accuracy, "{result:?}");
}

/// The shape of every hidden unit's filter (row of `W1`) of an 8×8-patch model.
fn shapes(parameters: &sae::Parameters<f64>) -> Vec<exercises::FilterShape> {
    let w1 = parameters.w1();
    (0..w1.rows()).map(|i| exercises::filter_shape(&(0..64).map(|j| w1.get(i, j)).collect::<Vec<_>>(), 8)).collect()
}

fn fraction(values: impl Iterator<Item = f64>, above: f64) -> f64 {
    let values: Vec<f64> = values.collect();
    values.iter().filter(|&&v| v > above).count() as f64 / values.len() as f64
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[test]
#[cfg_attr(
    not(feature = "slow-tests"),
    ignore = "trains on a real data set for minutes: cargo test --release --features slow-tests"
)]
fn the_natural_image_exercise_learns_oriented_localized_edge_detectors() {
    let result = exercises::natural_image_features(&datasets().join("natural/IMAGES.mat"), 400, 1).unwrap();
    assert_eq!(result.iterations, 400);
    let learned = shapes(&result.model.parameters);
    let random = shapes(&sae::Parameters::<f64>::init(64, 25, 1));
    // Oriented: most learned filters have a dominant orientation in their spectrum (anisotropy
    // above 0.5); random filters do not (their largest is about 0.35).
    let oriented = fraction(learned.iter().map(|s| s.orientation), 0.5);
    assert!(oriented >= 0.8, "{oriented} of the learned filters oriented");
    assert!(fraction(random.iter().map(|s| s.orientation), 0.5) <= 0.2);
    // Localized: the typical learned filter keeps more of its energy in a quarter of the patch
    // than any random filter does.
    let learned_localization = median(learned.iter().map(|s| s.localization));
    let random_localization = median(random.iter().map(|s| s.localization));
    assert!(
        learned_localization > 0.45 && random_localization < 0.4,
        "{learned_localization} vs {random_localization}"
    );
}

#[test]
fn the_embedded_natural_image_data_also_yields_oriented_localized_features() {
    let (patches, m, n) = sae::data::images::embedded_patches(1);
    let hyper = sae::HyperParams::builder(n, 25).lambda(1e-4).beta(3.0).rho(0.01).build().unwrap();
    let mut objective =
        sae::Objective::new(hyper, sae::Dataset::examples_by_features(&patches, m, n).unwrap()).unwrap();
    let trained = sae::train::Trainer::new(sae::optim::LbfgsOptions::default())
        .fit(&mut objective, &sae::Parameters::init(n, 25, 1), |_| {})
        .unwrap();
    let learned = shapes(&trained.model.parameters);
    let random = shapes(&sae::Parameters::<f64>::init(64, 25, 1));
    // Weaker than on photographs (whose filters are straighter: see the test above), but
    // clearly apart from random weights on both measures.
    let orientation = median(learned.iter().map(|s| s.orientation));
    let random_orientation = median(random.iter().map(|s| s.orientation));
    let localization = median(learned.iter().map(|s| s.localization));
    assert!(orientation > 2.0 * random_orientation, "median orientation {orientation} vs random {random_orientation}");
    assert!(localization > 0.45, "median localization {localization}");
}

#[test]
fn mnist_files_read_the_same_gzipped_or_not() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let gz = datasets().join("mnist/t10k-labels-idx1-ubyte.gz");
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&gz).unwrap()).read_to_end(&mut plain).unwrap();
    let path = dir.path().join("t10k-labels-idx1-ubyte");
    std::fs::write(&path, plain).unwrap();
    assert_eq!(mnist::read_labels(&path).unwrap(), mnist::read_labels(&gz).unwrap());
}

/// About three and a half minutes of training, so it runs in the default-back-end pass of CI
/// only; the OpenBLAS pass runs the same code through the other exercises.
#[cfg(not(feature = "openblas"))]
#[test]
#[cfg_attr(
    not(feature = "slow-tests"),
    ignore = "trains on a real data set for minutes: cargo test --release --features slow-tests"
)]
fn stacked_autoencoders_reach_the_ufldl_accuracy_before_and_after_fine_tuning() {
    let result =
        exercises::stacked_autoencoder::<f32>(&MnistFiles::in_dir(&datasets().join("mnist")), &[200, 200], 400)
            .unwrap();
    println!("{result:?}");
    // UFLDL's stacked autoencoder exercise: about 87.7 % before fine-tuning, 97.6 % after.
    assert!(result.before_fine_tuning >= 0.877, "{result:?}");
    assert!(result.after_fine_tuning >= 0.976, "{result:?}");
}

#[test]
#[cfg_attr(
    not(feature = "slow-tests"),
    ignore = "trains on a real data set for minutes: cargo test --release --features slow-tests"
)]
fn train_vae_on_mnist_reaches_the_elbo_of_the_same_model_in_pytorch() {
    // PyTorch, same architecture, optimiser and epochs (benches/peers/vae_torch.py): a test
    // −ELBO of 105.66 nats per image; seeds move either by a few tenths.
    let dir = tempfile::tempdir().unwrap();
    let (model, samples) = (dir.path().join("vae.safetensors"), dir.path().join("samples.png"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sae"))
        .args(["train-vae", "--mnist", datasets().join("mnist").to_str().unwrap(), "--epochs", "10"])
        .args(["-o", model.to_str().unwrap(), "--samples", samples.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = stdout.lines().find(|l| l.starts_with("test set")).unwrap_or_else(|| panic!("{stdout}"));
    let elbo: f64 = line.split("−ELBO ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(elbo < 106.5, "{line}");
    let loaded = sae::model::vae::VaeModel::<f64>::load(&model).unwrap();
    assert_eq!((loaded.shape.visible, loaded.shape.hidden, loaded.shape.latent), (784, 400, 20));
    let picture = std::fs::read(&samples).unwrap();
    assert_eq!(&picture[1..4], b"PNG");
}

#[test]
#[cfg_attr(
    not(feature = "slow-tests"),
    ignore = "trains on a real data set for minutes: cargo test --release --features slow-tests"
)]
fn train_stacked_fine_tunes_a_stack_of_any_sizes_and_writes_it() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("stack.safetensors");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sae"))
        .args(["train-stacked", "--mnist", datasets().join("mnist").to_str().unwrap()])
        .args(["--layers", "50,20", "--iterations", "30", "-o", model.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = stdout.lines().find(|l| l.starts_with("test accuracy")).unwrap_or_else(|| panic!("{stdout}"));
    let percents: Vec<f64> = line.split(" % ").filter_map(|part| part.rsplit(' ').next()?.parse().ok()).collect();
    // 30 iterations leave the greedy features weak; fine-tuning the whole stack fixes them.
    assert!(percents.len() == 2 && percents[1] > 90.0 && percents[1] > percents[0], "{line}");
    let loaded = sae::model::stack::StackModel::<f64>::load(&model).unwrap();
    assert_eq!((loaded.shape.sizes.as_slice(), loaded.shape.classes), (&[784, 50, 20][..], 10));
    let (test, m, n) = mnist::read_images(&MnistFiles::in_dir(&datasets().join("mnist")).test_images).unwrap();
    let labels = mnist::read_labels(&MnistFiles::in_dir(&datasets().join("mnist")).test_labels).unwrap();
    let predicted = sae::objective::StackedObjective::predict(
        &loaded.shape,
        &loaded.theta,
        &sae::Dataset::examples_by_features(&test, m, n).unwrap(),
    );
    let right = predicted.iter().zip(&labels).filter(|(p, l)| p == l).count() as f64 / m as f64;
    assert!((100.0 * right - percents[1]).abs() < 0.006, "the stored stack predicts {right} vs {line}");
}

#[test]
#[cfg_attr(
    not(feature = "slow-tests"),
    ignore = "trains on a real data set for minutes: cargo test --release --features slow-tests"
)]
fn validation_on_mnist_sees_overfitting_and_early_stopping_keeps_the_best_model() {
    use sae::optim::{LbfgsOptions, Stop};
    use sae::train::{Trainer, Validation};
    use sae::{Dataset, HyperParams, Objective, Parameters};
    // 400 training digits for 196 hidden units without weight decay: the model learns them
    // by heart, and the held-out digits show it.
    let files = MnistFiles::in_dir(&datasets().join("mnist"));
    let (images, _, n) = mnist::read_images(&files.train_images).unwrap();
    let (train, held_out) = (&images[..400 * n], &images[400 * n..2400 * n]);
    let hyper = HyperParams::builder(n, 196).lambda(0.0).beta(3.0).rho(0.1).build().unwrap();
    let mut objective = Objective::new(hyper, Dataset::examples_by_features(train, 400, n).unwrap()).unwrap();
    let held_out_objective = Objective::new(hyper, Dataset::examples_by_features(held_out, 2000, n).unwrap()).unwrap();
    let mut validation = Validation::new(held_out_objective).every(10).early_stopping(5);
    let options = LbfgsOptions { max_iterations: 1000, ..LbfgsOptions::default() };
    let trained = Trainer::new(options)
        .fit_validated(&mut objective, Some(&mut validation), &Parameters::init(n, 196, 1), |_| {})
        .unwrap();
    let (best_at, best_cost) = validation.best().unwrap();
    let curve = validation.curve();
    assert_eq!(trained.stop, Stop::EarlyStopping, "the held-out cost rose while the training cost fell");
    assert_eq!(trained.iterations, best_at + 50, "five evaluations, ten iterations apart, after the best");
    assert!(curve.last().unwrap().cost > best_cost && trained.cost < trained.curve[best_at].1);

    // The model is the best validated one: its held-out cost is the best.
    let mut check = Objective::new(hyper, Dataset::examples_by_features(held_out, 2000, n).unwrap()).unwrap();
    let theta = trained.model.parameters.theta();
    assert_eq!(check.evaluate(theta, &mut vec![0.0; theta.len()]).unwrap(), best_cost);
}

#[test]
#[cfg_attr(
    not(feature = "slow-tests"),
    ignore = "trains on a real data set for minutes: cargo test --release --features slow-tests"
)]
fn a_k_sparse_autoencoder_on_mnist_classifies_within_a_quarter_point_of_the_paper() {
    let options = exercises::KSparseDigitsOptions::default();
    let result = exercises::k_sparse_digits(&MnistFiles::in_dir(&datasets().join("mnist")), &options).unwrap();
    println!("test error {:.4}, FVU {:.4}, dead {:.4}", result.test_error, result.fvu, result.dead);
    assert_eq!(result.model.architecture(), sae::dictionary::Architecture::K_SPARSE);
    assert_eq!((result.model.latents(), result.model.k()), (1000, 25));
    // Makhzani & Frey report 1.35 %. This recipe measured 1.46–1.53 % over three seeds, 1.53 %
    // with this one (PERF.md); the test holds it within a quarter point of the paper.
    assert!(result.test_error <= 0.016, "test error {:.2} %", 100.0 * result.test_error);
    assert!(result.dead <= 0.01 && result.fvu < 0.15, "dead {}, FVU {}", result.dead, result.fvu);
}
