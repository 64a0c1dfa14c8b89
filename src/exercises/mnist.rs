//! The MNIST exercises: softmax regression on raw pixels (UFLDL's softmax exercise) and
//! self-taught learning (UFLDL's `stlExercise`).

use std::path::{Path, PathBuf};

use super::{accuracy, train_softmax};
use crate::data::{mnist, Dataset};
use crate::error::{Error, Result};
use crate::model::stack::StackModel;
use crate::model::{Forward, HyperParams, Parameters};
use crate::optim::LbfgsOptions;
use crate::train::Trainer;
use crate::Objective;

/// The four MNIST files of a directory, by their published names.
#[derive(Debug, Clone)]
pub struct MnistFiles {
    pub train_images: PathBuf,
    pub train_labels: PathBuf,
    pub test_images: PathBuf,
    pub test_labels: PathBuf,
}

impl MnistFiles {
    pub fn in_dir(dir: &Path) -> Self {
        MnistFiles {
            train_images: dir.join("train-images-idx3-ubyte.gz"),
            train_labels: dir.join("train-labels-idx1-ubyte.gz"),
            test_images: dir.join("t10k-images-idx3-ubyte.gz"),
            test_labels: dir.join("t10k-labels-idx1-ubyte.gz"),
        }
    }
}

/// Digits read from an images file and its labels file, one label per image.
pub(super) struct Digits {
    pub images: Vec<f64>,
    pub count: usize,
    pub pixels: usize,
    pub labels: Vec<u8>,
}

impl Digits {
    /// Reads both files; fails, naming the labels file, unless it has one label per image.
    pub(super) fn read(images: &Path, labels: &Path) -> Result<Self> {
        let (values, count, pixels) = mnist::read_images(images)?;
        let labels_read = mnist::read_labels(labels)?;
        if labels_read.len() != count {
            return Err(Error::bad_file(
                labels,
                format!("{} labels for the {count} images of {}", labels_read.len(), images.display()),
            ));
        }
        Ok(Digits { images: values, count, pixels, labels: labels_read })
    }

    /// The test digits of `files`; fails, naming the test images, unless they have the
    /// training images' `pixels`.
    pub(super) fn read_test(files: &MnistFiles, pixels: usize) -> Result<Self> {
        let test = Digits::read(&files.test_images, &files.test_labels)?;
        if test.pixels != pixels {
            return Err(Error::bad_file(
                &files.test_images,
                format!("images of {} pixels, the training images have {pixels}", test.pixels),
            ));
        }
        Ok(test)
    }
}

/// What the softmax exercise measured.
#[derive(Debug, Clone, Copy)]
pub struct SoftmaxDigits {
    pub train_examples: usize,
    pub test_examples: usize,
    pub test_accuracy: f64,
}

/// UFLDL's softmax exercise: ten classes on the raw pixels of the 60 000 training images,
/// λ = 1e-4, `iterations` L-BFGS iterations (100 in the notes); accuracy on the 10 000 test
/// images.
pub fn softmax_on_digits(files: &MnistFiles, iterations: usize) -> Result<SoftmaxDigits> {
    let Digits { images: train, count: m, pixels: n, labels: train_labels } =
        Digits::read(&files.train_images, &files.train_labels)?;
    let Digits { images: test, count: m_test, labels: test_labels, .. } = Digits::read_test(files, n)?;
    let theta = train_softmax(&Dataset::examples_by_features(&train, m, n)?, &train_labels, 10, 1e-4, iterations)?;
    let test_accuracy = accuracy(&theta, 10, &Dataset::examples_by_features(&test, m_test, n)?, &test_labels);
    Ok(SoftmaxDigits { train_examples: m, test_examples: m_test, test_accuracy })
}

/// UFLDL's vectorisation exercise: the sparse autoencoder (h = 196, ρ = 0.1, λ = 3e-3, β = 3,
/// `iterations` L-BFGS iterations, 400 in the notes) on the first 10 000 training images,
/// whose features look like pen strokes. Trains in `T`; returns the model and its final cost.
pub fn mnist_vectorization<T: crate::Real>(
    files: &MnistFiles,
    iterations: usize,
) -> Result<(crate::model::ModelFile<T>, f64)> {
    const EXAMPLES: usize = 10_000;
    let (images, m, n) = mnist::read_images(&files.train_images)?;
    if m < EXAMPLES {
        return Err(Error::bad_file(
            &files.train_images,
            format!("{m} images: the exercise trains on the first {EXAMPLES}"),
        ));
    }
    let values: Vec<T> = images[..EXAMPLES * n].iter().map(|&v| T::cast(v)).collect();
    let hyper = HyperParams::builder(n, 196).lambda(3e-3).beta(3.0).rho(0.1).build()?;
    let mut objective = Objective::new(hyper, Dataset::examples_by_features(&values, EXAMPLES, n)?)?;
    let options = LbfgsOptions { max_iterations: iterations, ..LbfgsOptions::MINFUNC };
    let trained = Trainer::new(options).fit(&mut objective, &Parameters::<T>::init(n, 196, 1), |_| {})?;
    Ok((trained.model, trained.cost))
}

/// What self-taught learning measured.
#[derive(Debug, Clone, Copy)]
pub struct SelfTaught {
    pub unlabeled: usize,
    pub train: usize,
    pub test: usize,
    /// The sparse autoencoder's final cost.
    pub autoencoder_cost: f64,
    /// Softmax on the learned features.
    pub features_accuracy: f64,
    /// Softmax on the raw pixels, for comparison.
    pub raw_accuracy: f64,
}

/// UFLDL's `stlExercise`: a sparse autoencoder (h = 200, ρ = 0.1, λ = 3e-3, β = 3,
/// `iterations` L-BFGS iterations, 400 in the notes) trained on the training digits 5–9 as
/// unlabeled data; the digits 0–4 split in file order into halves (15 298 train, 15 298
/// test); softmax (λ = 1e-4, 400 iterations) on their hidden activations and on their
/// pixels. The autoencoder trains in `T` (f32 is twice as fast and as accurate here).
pub fn self_taught_learning<T: crate::Real>(files: &MnistFiles, iterations: usize) -> Result<SelfTaught> {
    let Digits { images, pixels: n, labels, .. } = Digits::read(&files.train_images, &files.train_labels)?;
    let rows = |keep: &dyn Fn(u8) -> bool| -> Vec<usize> { (0..labels.len()).filter(|&i| keep(labels[i])).collect() };
    let gather = |indices: &[usize]| -> Vec<f64> {
        indices.iter().flat_map(|&i| images[i * n..(i + 1) * n].iter().copied()).collect()
    };
    let unlabeled_rows = rows(&|l| l >= 5);
    let labeled_rows = rows(&|l| l < 5);
    let half = (labeled_rows.len() as f64 / 2.0).round() as usize;
    let (train_rows, test_rows) = labeled_rows.split_at(half);

    let unlabeled: Vec<T> = gather(&unlabeled_rows).into_iter().map(T::cast).collect();
    let hyper = HyperParams::builder(n, 200).lambda(3e-3).beta(3.0).rho(0.1).build()?;
    let mut objective = Objective::new(hyper, Dataset::examples_by_features(&unlabeled, unlabeled_rows.len(), n)?)?;
    let options = LbfgsOptions { max_iterations: iterations, ..LbfgsOptions::MINFUNC };
    let trained = Trainer::new(options).fit(&mut objective, &Parameters::<T>::init(n, 200, 1), |_| {})?;
    let theta64: Vec<f64> = trained.model.parameters.theta().iter().map(|v| v.as_f64()).collect();
    let parameters = Parameters::from_theta(n, 200, theta64)?;

    let features = |rows: &[usize]| -> Result<Vec<f64>> {
        let pixels = gather(rows);
        let mut hidden = vec![0.0; rows.len() * 200];
        Forward::new(&hyper, &parameters)?
            .encode(&Dataset::examples_by_features(&pixels, rows.len(), n)?, &mut hidden)?;
        Ok(hidden)
    };
    let label_of = |rows: &[usize]| -> Vec<u8> { rows.iter().map(|&i| labels[i]).collect() };
    let (train_labels, test_labels) = (label_of(train_rows), label_of(test_rows));
    let (train_features, test_features) = (features(train_rows)?, features(test_rows)?);
    let (m_train, m_test) = (train_rows.len(), test_rows.len());
    let theta =
        train_softmax(&Dataset::examples_by_features(&train_features, m_train, 200)?, &train_labels, 5, 1e-4, 400)?;
    let features_accuracy =
        accuracy(&theta, 5, &Dataset::examples_by_features(&test_features, m_test, 200)?, &test_labels);

    let (train_pixels, test_pixels) = (gather(train_rows), gather(test_rows));
    let theta = train_softmax(&Dataset::examples_by_features(&train_pixels, m_train, n)?, &train_labels, 5, 1e-4, 400)?;
    let raw_accuracy = accuracy(&theta, 5, &Dataset::examples_by_features(&test_pixels, m_test, n)?, &test_labels);
    Ok(SelfTaught {
        unlabeled: unlabeled_rows.len(),
        train: m_train,
        test: m_test,
        autoencoder_cost: trained.cost,
        features_accuracy,
        raw_accuracy,
    })
}

/// What the stacked autoencoder exercise measured, and the fine-tuned stack.
#[derive(Debug, Clone)]
pub struct StackedDigits {
    /// On the MNIST test set, softmax on the top layer's features.
    pub before_fine_tuning: f64,
    /// After backpropagation through the whole stack.
    pub after_fine_tuning: f64,
    pub model: StackModel<f64>,
}

/// UFLDL's stacked autoencoder exercise with hidden layers of `layers` units (the exercise's
/// are `[200, 200]`): sparse autoencoders (ρ = 0.1, λ = 3e-3, β = 3, `iterations` L-BFGS
/// iterations each), each on the features of the one below, all 60 000 training digits;
/// softmax (λ = 1e-4, 100 iterations) on the top layer's features; then fine-tuning of the
/// whole stack with softmax (λ = 1e-4, `iterations` iterations). Accuracy on the 10 000 test
/// digits before and after fine-tuning. Trains in `T`.
pub fn stacked_autoencoder<T: crate::Real>(
    files: &MnistFiles,
    layers: &[usize],
    iterations: usize,
) -> Result<StackedDigits> {
    use crate::objective::StackedObjective;
    use crate::optim::Lbfgs;
    if layers.is_empty() || layers.contains(&0) {
        return Err(Error::InvalidHyperParameter {
            name: "layers",
            value: 0.0,
            reason: "need at least one layer, each of at least 1 unit",
        });
    }
    let Digits { images, count: m, pixels: n, labels } = Digits::read(&files.train_images, &files.train_labels)?;
    let Digits { images: test, count: m_test, labels: test_labels, .. } = Digits::read_test(files, n)?;
    let options = LbfgsOptions { max_iterations: iterations, ..LbfgsOptions::MINFUNC };

    // Greedy layer-wise pretraining: each layer a sparse autoencoder on the layer below.
    let mut trained_layers: Vec<Parameters<f64>> = Vec::new();
    let mut features: Vec<f64> = Vec::new();
    let mut width = n;
    for (layer, &hidden) in layers.iter().enumerate() {
        let input: &[f64] = if layer == 0 { &images } else { &features };
        let values: Vec<T> = input.iter().map(|&v| T::cast(v)).collect();
        let hyper = HyperParams::builder(width, hidden).lambda(3e-3).beta(3.0).rho(0.1).build()?;
        let mut objective = Objective::new(hyper, Dataset::examples_by_features(&values, m, width)?)?;
        let init = Parameters::<T>::init(width, hidden, 1 + layer as u64);
        let trained = Trainer::new(options).fit(&mut objective, &init, |_| {})?;
        let theta: Vec<f64> = trained.model.parameters.theta().iter().map(|v| v.as_f64()).collect();
        let parameters = Parameters::from_theta(width, hidden, theta)?;
        let mut encoded = vec![0.0; m * hidden];
        Forward::new(&hyper, &parameters)?.encode(&Dataset::examples_by_features(input, m, width)?, &mut encoded)?;
        trained_layers.push(parameters);
        features = encoded;
        width = hidden;
    }
    let softmax = train_softmax(&Dataset::examples_by_features(&features, m, width)?, &labels, 10, 1e-4, 100)?;

    let pretrained = StackModel::from_pretrained(10, &softmax, &trained_layers.iter().collect::<Vec<_>>())?;
    let (shape, stack) = (pretrained.shape, pretrained.theta);
    let test_data = Dataset::examples_by_features(&test, m_test, n)?;
    let before = stack_accuracy(&stack, &shape, &test_data, &test_labels);

    let values: Vec<T> = images.iter().map(|&v| T::cast(v)).collect();
    let mut objective =
        StackedObjective::new(Dataset::examples_by_features(&values, m, n)?, &labels, shape.clone(), 1e-4)?;
    let start: Vec<T> = stack.iter().map(|&v| T::cast(v)).collect();
    let mut lbfgs = Lbfgs::start(options, &start, &mut objective)?;
    lbfgs.run(&mut objective, |_| {})?;
    let theta = lbfgs.into_state().x;
    let after = stack_accuracy(&theta, &shape, &test_data, &test_labels);
    let metadata = vec![
        (
            "pretraining".to_string(),
            format!("sparse autoencoders, ρ = 0.1, λ = 3e-3, β = 3, {iterations} L-BFGS iterations"),
        ),
        ("fine_tuning".to_string(), format!("softmax λ = 1e-4, {iterations} L-BFGS iterations")),
        ("test_accuracy_before_fine_tuning".to_string(), before.to_string()),
        ("test_accuracy".to_string(), after.to_string()),
    ];
    Ok(StackedDigits {
        before_fine_tuning: before,
        after_fine_tuning: after,
        model: StackModel { shape, theta, metadata },
    })
}

/// The fraction of `labels` a stack (UFLDL's layout) predicts for `data`.
fn stack_accuracy(stack: &[f64], shape: &crate::objective::StackShape, data: &Dataset<'_, f64>, labels: &[u8]) -> f64 {
    super::fraction_right(&crate::objective::StackedObjective::predict(shape, stack, data), labels)
}
