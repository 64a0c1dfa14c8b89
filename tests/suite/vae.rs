//! The variational autoencoder: the fast minibatch objective equals the per-example reference
//! for every decoder and activation, passes the central-difference check, runs in f32 within
//! 1e-4 of f64, draws its ε reproducibly, and its model files round-trip.

use crate::common::*;
use sae::model::vae::{VaeDecoder, VaeModel, VaeShape};
use sae::model::Activation;
use sae::objective::gradcheck::{numerical_gradient, relative_difference};
use sae::objective::{reference, VaeObjective};
use sae::Dataset;

fn shape(activation: Activation, decoder: VaeDecoder) -> VaeShape {
    VaeShape::new(12, 7, 3, activation, decoder).unwrap()
}

fn shapes() -> Vec<VaeShape> {
    let mut all = Vec::new();
    for decoder in [VaeDecoder::Bernoulli, VaeDecoder::Gaussian] {
        for activation in Activation::ALL {
            all.push(shape(activation, decoder));
        }
    }
    all
}

#[test]
fn the_fast_objective_equals_the_per_example_reference() {
    let m = 70;
    let values = uniform_data(m, 12, 1);
    let data = Dataset::examples_by_features(&values, m, 12).unwrap();
    for shape in shapes() {
        let theta = shape.init::<f64>(2);
        let ((reconstruction, kl), grad) = reference::vae_cost_and_gradient(&shape, &data, &theta, 5, 3).unwrap();
        // One range and, on a pool of three threads, three.
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut objective = VaeObjective::<f64>::new(shape, 100, 5).unwrap();
            let mut fast = vec![0.0; theta.len()];
            let cost = pool.install(|| objective.evaluate(&theta, &mut fast, &data, 3)).unwrap();
            assert!((cost.reconstruction - reconstruction).abs() <= 1e-12 * reconstruction.abs(), "{shape:?}");
            assert!((cost.kl - kl).abs() <= 1e-12 * kl.abs().max(1e-3), "{shape:?}");
            assert!(relative_error(&fast, &grad) <= 1e-11, "{shape:?}: {:e}", relative_error(&fast, &grad));
        }
    }
}

#[test]
fn the_gradient_passes_the_central_difference_check() {
    let m = 20;
    let values = uniform_data(m, 12, 3);
    let data = Dataset::examples_by_features(&values, m, 12).unwrap();
    for decoder in [VaeDecoder::Bernoulli, VaeDecoder::Gaussian] {
        let shape = shape(Activation::Tanh, decoder);
        let theta = shape.init::<f64>(4);
        let mut objective = VaeObjective::<f64>::new(shape, m, 9).unwrap();
        let mut analytic = vec![0.0; theta.len()];
        objective.evaluate(&theta, &mut analytic, &data, 0).unwrap();
        let mut scratch = vec![0.0; theta.len()];
        // ε = 1e-5, not SPEC's 1e-4: σ = e^{½ ln σ²} gives this cost third derivatives large
        // enough that the central difference's own O(ε²) error reaches 1e-9 at 1e-4.
        let numeric =
            numerical_gradient(|t| objective.evaluate(t, &mut scratch, &data, 0).unwrap().total(), &theta, 1e-5);
        let difference = relative_difference(&numeric, &analytic);
        assert!(difference < 1e-9, "{decoder:?}: {difference:e}");
    }
}

#[test]
fn f32_is_within_1e_4_of_f64() {
    let m = 64;
    let values = uniform_data(m, 12, 5);
    let values32: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    let rounded: Vec<f64> = values32.iter().map(|&v| v.into()).collect();
    for shape in shapes() {
        let theta32 = shape.init::<f32>(6);
        let theta: Vec<f64> = theta32.iter().map(|&v| v.into()).collect();
        let mut grad = vec![0.0; theta.len()];
        let data = Dataset::examples_by_features(&rounded, m, 12).unwrap();
        let cost = VaeObjective::<f64>::new(shape, m, 1).unwrap().evaluate(&theta, &mut grad, &data, 0).unwrap();
        let mut grad32 = vec![0.0f32; theta.len()];
        let data32 = Dataset::examples_by_features(&values32, m, 12).unwrap();
        let cost32 =
            VaeObjective::<f32>::new(shape, m, 1).unwrap().evaluate(&theta32, &mut grad32, &data32, 0).unwrap();
        let grad32: Vec<f64> = grad32.iter().map(|&g| g.into()).collect();
        assert!((cost32.total() - cost.total()).abs() <= 1e-4 * cost.total().abs(), "{shape:?}");
        assert!(relative_error(&grad32, &grad) <= 1e-4, "{shape:?}: {:e}", relative_error(&grad32, &grad));
    }
}

#[test]
fn epsilon_is_a_function_of_seed_epoch_and_example() {
    let m = 40;
    let values = uniform_data(m, 12, 7);
    let data = Dataset::examples_by_features(&values, m, 12).unwrap();
    let shape = shape(Activation::Relu, VaeDecoder::Bernoulli);
    let theta = shape.init::<f64>(1);
    let mut grad = vec![0.0; theta.len()];
    let mut cost = |seed: u64, epoch: u64| {
        VaeObjective::<f64>::new(shape, m, seed).unwrap().evaluate(&theta, &mut grad, &data, epoch).unwrap().total()
    };
    assert_eq!(cost(1, 2), cost(1, 2));
    assert_ne!(cost(1, 2), cost(1, 3));
    assert_ne!(cost(1, 2), cost(4, 2));
}

#[test]
fn the_negative_elbo_of_a_data_set_is_the_minibatch_cost_of_the_same_examples() {
    let m = 90;
    let values = uniform_data(m, 12, 8);
    let data = Dataset::examples_by_features(&values, m, 12).unwrap();
    let shape = shape(Activation::Sigmoid, VaeDecoder::Gaussian);
    let theta = shape.init::<f64>(3);
    let mut grad = vec![0.0; theta.len()];
    let whole = VaeObjective::<f64>::new(shape, m, 2).unwrap().evaluate(&theta, &mut grad, &data, 1).unwrap();
    // In chunks of 32 examples: the same ε for each example, the same mean.
    let chunked = VaeObjective::<f64>::new(shape, 32, 2).unwrap().negative_elbo(&theta, &data, 1).unwrap();
    assert!((chunked.total() - whole.total()).abs() <= 1e-12 * whole.total());
}

#[test]
fn a_model_file_round_trips_and_a_sparse_autoencoder_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vae.safetensors");
    let shape = shape(Activation::Tanh, VaeDecoder::Gaussian);
    let model = VaeModel { shape, theta: shape.init::<f64>(9), metadata: vec![("epochs".into(), "3".into())] };
    model.save(&path).unwrap();
    assert_eq!(VaeModel::<f64>::load(&path).unwrap(), model);

    let other = dir.path().join("sae.safetensors");
    sae::model::ModelFile::new(hyper(4, 2), sae::Parameters::<f64>::init(4, 2, 1)).save(&other).unwrap();
    let error = VaeModel::<f64>::load(&other).unwrap_err().to_string();
    assert!(error.contains("sae.safetensors") && error.contains("variational-autoencoder"), "{error}");
}

#[test]
fn adam_training_lowers_the_negative_elbo_reproducibly() {
    use sae::train::{VaeOptions, VaeTrainer};
    let m = 300;
    let values = uniform_data(m, 12, 10);
    let data = Dataset::examples_by_features(&values, m, 12).unwrap();
    let shape = shape(Activation::Relu, VaeDecoder::Bernoulli);
    let init = shape.init::<f64>(2);
    let options = VaeOptions { batch_size: 32, epochs: 5, ..VaeOptions::default() };
    let mut costs = Vec::new();
    let trained = VaeTrainer::new(shape, options).unwrap().fit(&data, &init, |e| costs.push(e.cost.total())).unwrap();
    assert_eq!(costs.len(), 5);
    assert!(costs[4] < costs[0] - 0.1, "{costs:?}");
    let again = VaeTrainer::new(shape, options).unwrap().fit(&data, &init, |_| {}).unwrap();
    assert_eq!(again.theta, trained.theta);
}
