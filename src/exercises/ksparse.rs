//! Makhzani & Frey's k-sparse autoencoder on MNIST ("k-Sparse Autoencoders", ICLR 2014, §5):
//! 1000 linear hidden units with tied weights, `k = 25` selected per example in training (`k`
//! lowered from 100 over the first half of the epochs), the digits encoded with the top
//! `α k = 75` units, and softmax regression on those codes. The paper reports 1.35 % test
//! error.

use super::mnist::{Digits, MnistFiles};
use super::{accuracy, train_softmax};
use crate::data::Dataset;
use crate::dictionary::{Architecture, TopKModel};
use crate::error::{Error, Result};
use crate::optim::{Schedule, StepRule};
use crate::train::{TopKOptions, TopKTrainer};

/// The exercise's settings; [`Default`] is the paper's model with this crate's training: Adam
/// 1e-3 on minibatches of 256 for 20 epochs (the best of the settings measured in PERF.md), `b_dec`
/// at the geometric median, softmax with λ = 3e-5 and 400 L-BFGS iterations (λ chosen, as the
/// paper chose its settings, on a held-out 10 000 of the training digits: PERF.md).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KSparseDigitsOptions {
    pub hidden: usize,
    /// Latents per example at the end of training.
    pub k: usize,
    /// Latents per example at the start of training.
    pub k_start: usize,
    /// The codes fed to softmax keep the top `alpha · k` units.
    pub alpha: usize,
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    /// How the learning rate moves over the run.
    pub schedule: Schedule,
    /// SGD with this momentum (Makhzani & Frey's optimiser) instead of Adam.
    pub momentum: Option<f64>,
    /// Softmax regression's weight decay and L-BFGS iterations.
    pub softmax_lambda: f64,
    pub softmax_iterations: usize,
    pub seed: u64,
    /// [`Architecture::K_SPARSE`], or Makhzani & Frey's own encoder `z = W x + b` (false).
    pub pre_encoder_bias: bool,
}

impl Default for KSparseDigitsOptions {
    fn default() -> Self {
        KSparseDigitsOptions {
            hidden: 1000,
            k: 25,
            k_start: 100,
            alpha: 3,
            epochs: 20,
            batch_size: 256,
            learning_rate: 1e-3,
            schedule: Schedule::CONSTANT,
            momentum: None,
            softmax_lambda: 3e-5,
            softmax_iterations: 400,
            seed: 1,
            pre_encoder_bias: true,
        }
    }
}

/// What the exercise measured.
#[derive(Debug, Clone)]
pub struct KSparseDigits {
    /// Softmax on the codes, on the 10 000 test digits.
    pub test_error: f64,
    /// The autoencoder's fraction of variance unexplained in its last epoch.
    pub fvu: f64,
    /// Latents that never fired in the last epoch.
    pub dead: f64,
    pub model: TopKModel<f32>,
}

/// Trains the autoencoder (in f32) on the 60 000 training digits, then softmax on their codes;
/// the test error of softmax on the test digits' codes.
pub fn k_sparse_digits(files: &MnistFiles, options: &KSparseDigitsOptions) -> Result<KSparseDigits> {
    if options.alpha == 0 {
        return Err(Error::InvalidHyperParameter {
            name: "alpha",
            value: 0.0,
            reason: "the codes keep alpha·k units: at least 1",
        });
    }
    let Digits { images, count: m, pixels: n, labels } = Digits::read(&files.train_images, &files.train_labels)?;
    let Digits { images: test, count: m_test, labels: test_labels, .. } = Digits::read_test(files, n)?;
    let values: Vec<f32> = images.iter().map(|&v| v as f32).collect();
    let init = TopKModel::<f32>::init(n, options.hidden, options.k, options.seed)?
        .with_architecture(Architecture { pre_encoder_bias: options.pre_encoder_bias, ..Architecture::K_SPARSE })?;
    let training = TopKOptions {
        rule: match options.momentum {
            Some(momentum) => StepRule::sgd(options.learning_rate, momentum),
            None => StepRule::adam(options.learning_rate),
        },
        schedule: options.schedule,
        batch_size: options.batch_size,
        epochs: options.epochs,
        seed: options.seed,
        ..TopKOptions::k_sparse(options.k_start)
    };
    let data = Dataset::examples_by_features(&values, m, n)?;
    let trained = TopKTrainer::new(training)?.fit(&data, init, |epoch| {
        log::info!(
            "k-sparse epoch {}: FVU {:.4}, L0 {:.1}, dead {:.3}",
            epoch.epoch,
            epoch.metrics.fvu,
            epoch.metrics.l0,
            epoch.metrics.dead
        );
    })?;
    let last = trained.epochs.last().map(|epoch| &epoch.metrics);
    let (fvu, dead) = last.map_or((f64::NAN, f64::NAN), |metrics| (metrics.fvu, metrics.dead));
    let model = trained.model;
    let codes_k = options.alpha.saturating_mul(options.k).min(options.hidden);
    let train_codes: Vec<f64> = model.encode(&data, codes_k)?.dense();
    let test_values: Vec<f32> = test.iter().map(|&v| v as f32).collect();
    let test_codes: Vec<f64> = model.encode(&Dataset::examples_by_features(&test_values, m_test, n)?, codes_k)?.dense();
    let h = options.hidden;
    let theta = train_softmax(
        &Dataset::examples_by_features(&train_codes, m, h)?,
        &labels,
        10,
        options.softmax_lambda,
        options.softmax_iterations,
    )?;
    let test_accuracy = accuracy(&theta, 10, &Dataset::examples_by_features(&test_codes, m_test, h)?, &test_labels);
    Ok(KSparseDigits { test_error: 1.0 - test_accuracy, fvu, dead, model })
}
