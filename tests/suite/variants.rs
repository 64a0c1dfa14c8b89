//! The autoencoder family on the fast engine: tanh and ReLU hidden units, a linear decoder,
//! cross-entropy, the contractive penalty, tied weights and denoising. Each variant's fast path
//! equals the per-example reference, passes the central-difference check, streams to the same
//! result, and runs in f32 within 1e-4 of the f64 oracle.

use crate::common::*;
use sae::data::stream::SliceSource;
use sae::model::{Activation, Corruption, Reconstruction, SparsityPenalty};
use sae::objective::gradcheck::{numerical_gradient, relative_difference};
use sae::objective::{reference, StreamMode, StreamingObjective};
use sae::optim::LbfgsOptions;
use sae::train::Trainer;
use sae::{Dataset, Error, HyperParams, Objective, Parameters};

fn base(n: usize, h: usize) -> sae::model::HyperParamsBuilder {
    HyperParams::builder(n, h).lambda(3e-3).beta(0.5).rho(0.1)
}

/// Every variant, named; each changes one part of the UFLDL model, and the last all at once.
fn variants(n: usize, h: usize) -> Vec<(&'static str, HyperParams)> {
    let masking = Corruption::Masking { probability: 0.3 };
    let gaussian = Corruption::Gaussian { std_dev: 0.2 };
    [
        ("tanh, KL", base(n, h).activation(Activation::Tanh)),
        ("ReLU, L1", base(n, h).activation(Activation::Relu).penalty(SparsityPenalty::L1)),
        ("ReLU, no sparsity", base(n, h).activation(Activation::Relu).beta(0.0)),
        ("linear decoder", base(n, h).reconstruction(Reconstruction::LinearSquaredError)),
        ("cross-entropy", base(n, h).reconstruction(Reconstruction::SigmoidCrossEntropy)),
        ("tied", base(n, h).tied(true)),
        ("contractive, tied", base(n, h).contractive(0.1).tied(true)),
        ("contractive, tanh", base(n, h).contractive(0.1).activation(Activation::Tanh)),
        ("masking noise", base(n, h).corruption(masking, 7)),
        ("gaussian noise", base(n, h).corruption(gaussian, 8)),
        (
            "all together",
            base(n, h)
                .activation(Activation::Tanh)
                .reconstruction(Reconstruction::SigmoidCrossEntropy)
                .contractive(0.05)
                .tied(true)
                .corruption(masking, 9),
        ),
    ]
    .into_iter()
    .map(|(name, builder)| (name, builder.build().unwrap()))
    .collect()
}

/// Data in (0, 1) for every loss, and a theta whose weights are not already tied.
fn problem(m: usize, n: usize, h: usize) -> (Vec<f64>, Vec<f64>) {
    (uniform_data(m, n, 11), theta(n, h, 12))
}

#[test]
fn every_variant_fast_path_equals_the_per_example_reference() {
    let (m, n, h) = (301, 13, 7);
    let (values, theta) = problem(m, n, h);
    let transposed = transpose(&values, m, n);
    for (name, hyper) in variants(n, h) {
        let data = Dataset::examples_by_features(&values, m, n).unwrap();
        let (cost, grad) = reference::cost_and_gradient(&hyper, &data, &theta).unwrap();
        let layouts = [data, Dataset::features_by_examples(&transposed, n, m).unwrap()];
        for data in layouts {
            let mut fast = vec![0.0; theta.len()];
            let fast_cost =
                Objective::new(hyper, data).unwrap().with_block_size(64).unwrap().evaluate(&theta, &mut fast).unwrap();
            assert!(
                (fast_cost - cost).abs() <= 1e-12 * cost.abs(),
                "{name} {:?}: {fast_cost} vs {cost}",
                data.layout()
            );
            assert!(
                relative_error(&fast, &grad) <= 1e-11,
                "{name} {:?}: {:e}",
                data.layout(),
                relative_error(&fast, &grad)
            );
        }
    }
}

#[test]
fn every_variant_gradient_passes_the_central_difference_check() {
    let (m, n, h) = (40, 8, 5);
    let (values, theta) = problem(m, n, h);
    for (name, hyper) in variants(n, h) {
        let mut objective = Objective::new(hyper, Dataset::examples_by_features(&values, m, n).unwrap()).unwrap();
        let mut analytic = vec![0.0; theta.len()];
        objective.evaluate(&theta, &mut analytic).unwrap();
        let mut scratch = vec![0.0; theta.len()];
        let numeric = numerical_gradient(|t| objective.evaluate(t, &mut scratch).unwrap(), &theta, 1e-4);
        let difference = relative_difference(&numeric, &analytic);
        assert!(difference < 1e-9, "{name}: {difference:e}");
    }
}

#[test]
fn every_variant_streams_to_the_in_memory_result_in_both_modes() {
    let (m, n, h) = (500, 9, 4);
    let (values, theta) = problem(m, n, h);
    for (name, hyper) in variants(n, h) {
        let data = Dataset::examples_by_features(&values, m, n).unwrap();
        let mut grad = vec![0.0; theta.len()];
        let cost = Objective::new(hyper, data).unwrap().evaluate(&theta, &mut grad).unwrap();
        for mode in [StreamMode::OnePass, StreamMode::TwoPass] {
            let source = SliceSource::new(&values, n).unwrap();
            let mut streaming = StreamingObjective::new(hyper, source, 77, mode).unwrap().with_block_size(16).unwrap();
            let mut streamed = vec![0.0; theta.len()];
            let streamed_cost = streaming.evaluate(&theta, &mut streamed).unwrap();
            assert!((streamed_cost - cost).abs() <= 1e-10 * cost.abs(), "{name} {mode:?}");
            assert!(relative_error(&streamed, &grad) <= 1e-10, "{name} {mode:?}");
        }
    }
}

#[test]
fn every_variant_in_f32_is_within_1e_4_of_the_f64_reference() {
    let (m, n, h) = (400, 16, 6);
    let (values, theta) = problem(m, n, h);
    let (values32, theta32): (Vec<f32>, Vec<f32>) =
        (values.iter().map(|&v| v as f32).collect(), theta.iter().map(|&v| v as f32).collect());
    // The f64 oracle at the f32 values, so that only the arithmetic differs.
    let (values_rounded, theta_rounded): (Vec<f64>, Vec<f64>) =
        (values32.iter().map(|&v| v.into()).collect(), theta32.iter().map(|&v| v.into()).collect());
    for (name, hyper) in variants(n, h) {
        let data = Dataset::examples_by_features(&values_rounded, m, n).unwrap();
        let (cost, grad) = reference::cost_and_gradient(&hyper, &data, &theta_rounded).unwrap();
        let mut fast = vec![0.0f32; theta.len()];
        let data32 = Dataset::examples_by_features(&values32, m, n).unwrap();
        let fast_cost = Objective::new(hyper, data32).unwrap().evaluate(&theta32, &mut fast).unwrap();
        let fast: Vec<f64> = fast.iter().map(|&g| g.into()).collect();
        assert!((fast_cost - cost).abs() <= 1e-4 * cost.abs(), "{name}");
        assert!(relative_error(&fast, &grad) <= 1e-4, "{name}: {:e}", relative_error(&fast, &grad));
    }
}

fn denoising(corruption: Corruption) -> HyperParams {
    base(30, 5).corruption(corruption, 3).build().unwrap()
}

fn gradient_at(hyper: HyperParams, values: &[f64], block: usize, epoch: u64) -> Vec<f64> {
    let theta = theta(30, 5, 1);
    let data = Dataset::examples_by_features(values, values.len() / 30, 30).unwrap();
    let mut objective = Objective::new(hyper, data).unwrap().with_block_size(block).unwrap();
    objective.set_corruption_epoch(epoch);
    let mut grad = vec![0.0; theta.len()];
    objective.evaluate(&theta, &mut grad).unwrap();
    grad
}

#[test]
fn the_corruption_depends_on_seed_epoch_and_example_only() {
    let values = uniform_data(700, 30, 2);
    for corruption in [Corruption::Masking { probability: 0.25 }, Corruption::Gaussian { std_dev: 0.3 }] {
        let hyper = denoising(corruption);
        let reference = gradient_at(hyper, &values, 256, 0);
        // Not the block size, nor the thread count (up to the order of the sums).
        assert!(relative_error(&gradient_at(hyper, &values, 33, 0), &reference) <= 1e-13);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        let threaded = pool.install(|| gradient_at(hyper, &values, 33, 0));
        assert!(relative_error(&threaded, &reference) <= 1e-13);
        // But the epoch and the seed.
        assert!(relative_error(&gradient_at(hyper, &values, 256, 1), &reference) > 1e-3);
        let reseeded = base(30, 5).corruption(corruption, 4).build().unwrap();
        assert!(relative_error(&gradient_at(reseeded, &values, 256, 0), &reference) > 1e-3);
    }
}

#[test]
fn zero_noise_is_the_clean_objective() {
    let values = uniform_data(200, 30, 5);
    let clean = gradient_at(base(30, 5).build().unwrap(), &values, 64, 0);
    for corruption in [Corruption::Masking { probability: 0.0 }, Corruption::Gaussian { std_dev: 0.0 }] {
        assert_eq!(gradient_at(denoising(corruption), &values, 64, 0), clean, "{corruption:?}");
    }
}

#[test]
fn masking_drops_the_stated_fraction_and_gaussian_noise_has_the_stated_spread() {
    // With W1 = W2 = I, zero biases, ReLU units and a linear decoder, a3 = x̃ (x̃ ≥ 0 here),
    // so without weight decay or sparsity 2J/n = mean (x̃ − x)² over all values.
    let (m, n) = (4000, 4);
    let values = vec![0.5; m * n];
    let data = Dataset::examples_by_features(&values, m, n).unwrap();
    let mut theta = vec![0.0; Parameters::<f64>::init(n, n, 1).theta().len()];
    for j in 0..n {
        theta[j + j * n] = 1.0;
        theta[n * n + j + j * n] = 1.0;
    }
    // Masking: a quarter of the values become 0, (0 − 0.5)² each; Gaussian: σ².
    for (corruption, expected) in
        [(Corruption::Masking { probability: 0.25 }, 0.25 * 0.25), (Corruption::Gaussian { std_dev: 0.1 }, 0.01)]
    {
        let hyper = HyperParams::builder(n, n)
            .lambda(0.0)
            .activation(Activation::Relu)
            .beta(0.0)
            .reconstruction(Reconstruction::LinearSquaredError)
            .corruption(corruption, 1)
            .build()
            .unwrap();
        let mut grad = vec![0.0; theta.len()];
        let cost = Objective::new(hyper, data).unwrap().evaluate(&theta, &mut grad).unwrap();
        let mean_squared_deviation = 2.0 * cost / n as f64;
        assert!(
            (mean_squared_deviation - expected).abs() < 0.05 * expected,
            "{corruption:?}: {mean_squared_deviation} vs {expected}"
        );
    }
}

#[test]
fn training_with_tied_weights_keeps_them_tied() {
    let (m, n, h) = (200, 10, 4);
    let values = uniform_data(m, n, 3);
    let hyper = base(n, h).tied(true).contractive(0.1).build().unwrap();
    let mut objective = Objective::new(hyper, Dataset::examples_by_features(&values, m, n).unwrap()).unwrap();
    let options = LbfgsOptions { max_iterations: 20, ..LbfgsOptions::default() };
    let trained = Trainer::new(options).fit(&mut objective, &Parameters::init(n, h, 1), |_| {}).unwrap();
    let parameters = &trained.model.parameters;
    for j in 0..h {
        for k in 0..n {
            assert_eq!(parameters.w1().get(j, k), parameters.w2().get(k, j));
        }
    }
    assert!(trained.cost < trained.initial_cost);
}

#[test]
fn tying_does_not_change_the_cost_of_a_tied_objective() {
    let (m, n, h) = (50, 6, 3);
    let values = uniform_data(m, n, 4);
    let hyper = base(n, h).tied(true).build().unwrap();
    let mut objective = Objective::new(hyper, Dataset::examples_by_features(&values, m, n).unwrap()).unwrap();
    let mut parameters = Parameters::<f64>::init(n, h, 2);
    let mut grad = vec![0.0; parameters.theta().len()];
    let before = objective.evaluate(parameters.theta(), &mut grad).unwrap();
    parameters.tie();
    assert_eq!(objective.evaluate(parameters.theta(), &mut grad).unwrap(), before);
}

#[test]
fn relu_units_with_the_kl_penalty_are_refused_naming_beta() {
    let error = base(4, 2).activation(Activation::Relu).build().unwrap_err();
    assert!(matches!(error, Error::InvalidHyperParameter { name: "beta", .. }), "{error}");
}

#[test]
fn a_masking_probability_of_one_is_refused() {
    let error = base(4, 2).corruption(Corruption::Masking { probability: 1.0 }, 1).build().unwrap_err();
    assert!(matches!(error, Error::InvalidHyperParameter { name: "masking probability", .. }), "{error}");
}

#[test]
fn cross_entropy_on_data_outside_the_unit_interval_is_an_error_naming_row_and_column() {
    use sae::objective::MinibatchObjective;
    use sae::train::{MinibatchOptions, MinibatchTrainer};
    let (m, n, h) = (50, 6, 3);
    let hyper = base(n, h).reconstruction(Reconstruction::SigmoidCrossEntropy).build().unwrap();
    let mut values = uniform_data(m, n, 1);
    values[37 * n + 4] = 1.5;
    let at = |err: Error| match err {
        Error::DataOutOfRange { row, column, value, .. } => (row, column, value),
        other => panic!("expected DataOutOfRange, got {other}"),
    };
    let rows = Dataset::examples_by_features(&values, m, n).unwrap();
    assert_eq!(at(Objective::new(hyper, rows).unwrap_err()), (37, 4, 1.5));
    let by_features = transpose(&values, m, n);
    let columns = Dataset::features_by_examples(&by_features, n, m).unwrap();
    assert_eq!(at(Objective::new(hyper, columns).unwrap_err()), (4, 37, 1.5), "in the caller's layout");

    let theta = theta(n, h, 2);
    let mut grad = vec![0.0; theta.len()];
    for mode in [StreamMode::OnePass, StreamMode::TwoPass] {
        let source = SliceSource::new(&values, n).unwrap();
        let mut streaming = StreamingObjective::new(hyper, source, 16, mode).unwrap();
        assert_eq!(at(streaming.evaluate(&theta, &mut grad).unwrap_err()), (37, 4, 1.5), "{mode:?}: the data's row");
    }
    let mut minibatch = MinibatchObjective::new(hyper, 20, 0.9).unwrap();
    let batch = Dataset::examples_by_features(&values[30 * n..50 * n], 20, n).unwrap();
    assert_eq!(at(minibatch.evaluate(&theta, &mut grad, &batch).unwrap_err()), (7, 4, 1.5), "the batch's row");
    let trainer = MinibatchTrainer::new(hyper, MinibatchOptions { batch_size: 20, ..MinibatchOptions::default() });
    let err = trainer
        .unwrap()
        .fit(&rows, &Parameters::init(n, h, 1), |_| -> std::ops::ControlFlow<()> { panic!("no step is taken") })
        .unwrap_err();
    assert_eq!(at(err), (37, 4, 1.5), "the data's row, before any step");

    values[37 * n + 4] = -0.25;
    let squared_error = base(n, h).build().unwrap();
    let rows = Dataset::examples_by_features(&values, m, n).unwrap();
    assert!(Objective::new(squared_error, rows).is_ok(), "squared error is defined on any finite value");
}
