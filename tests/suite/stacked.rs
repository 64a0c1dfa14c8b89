//! Fine-tuning a stack of sigmoid layers with softmax on top: the backpropagated gradient
//! passes the central-difference check, whatever the thread count.

use crate::common::*;
use sae::objective::gradcheck::{numerical_gradient, relative_difference};
use sae::objective::{StackShape, StackedObjective};
use sae::optim::Differentiable;
use sae::Dataset;

#[test]
fn the_stacked_gradient_passes_the_central_difference_check() {
    let (m, n, k) = (40, 7, 3);
    let values = uniform_data(m, n, 1);
    let labels: Vec<u8> = (0..m).map(|i| (i % k) as u8).collect();
    let shape = StackShape { sizes: vec![n, 5, 4], classes: k };
    let theta: Vec<f64> = uniform_data(1, shape.len(), 2).iter().map(|v| 2.0 * v - 1.0).collect();
    for threads in [1, 3] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let data = Dataset::examples_by_features(&values, m, n).unwrap();
            let mut objective = StackedObjective::new(data, &labels, shape.clone(), 1e-3).unwrap();
            let mut analytic = vec![0.0; shape.len()];
            objective.evaluate(&theta, &mut analytic).unwrap();
            let mut scratch = vec![0.0; shape.len()];
            let numeric = numerical_gradient(|t| objective.evaluate(t, &mut scratch).unwrap(), &theta, 1e-4);
            let difference = relative_difference(&numeric, &analytic);
            assert!(difference < 1e-9, "{threads} threads: {difference:e}");
        });
    }
}

#[test]
fn the_parameter_layout_is_ufldls() {
    // [θ(:) (3×4); W1(:) (5×7); b1 (5); W2(:) (4×5); b2 (4)]
    let shape = StackShape { sizes: vec![7, 5, 4], classes: 3 };
    assert_eq!(shape.len(), 12 + 35 + 5 + 20 + 4);
}

#[test]
fn a_one_layer_stack_predicts_as_softmax_on_the_encoded_features() {
    let (m, n, h, k) = (30, 6, 4, 3);
    let values = uniform_data(m, n, 3);
    let shape = StackShape { sizes: vec![n, h], classes: k };
    let stack: Vec<f64> = uniform_data(1, shape.len(), 4).iter().map(|v| 4.0 * v - 2.0).collect();
    let data = Dataset::examples_by_features(&values, m, n).unwrap();
    // The layer as an autoencoder's encoder: W1 and b1 from the stack, the decoder unused.
    let mut theta = vec![0.0; 2 * h * n + h + n];
    theta[..h * n].copy_from_slice(&stack[k * h..k * h + h * n]);
    theta[2 * h * n..2 * h * n + h].copy_from_slice(&stack[k * h + h * n..]);
    let layer = sae::Parameters::from_theta(n, h, theta).unwrap();
    let mut features = vec![0.0; m * h];
    sae::model::Forward::new(&sae::HyperParams::builder(n, h).build().unwrap(), &layer)
        .unwrap()
        .encode(&data, &mut features)
        .unwrap();
    let encoded = Dataset::examples_by_features(&features, m, h).unwrap();
    let expected = sae::objective::SoftmaxObjective::predict(&stack[..k * h], k, &encoded);
    assert_eq!(StackedObjective::predict(&shape, &stack, &data), expected);
}

#[test]
fn the_probabilities_are_the_softmax_of_the_top_layer_and_agree_with_predict() {
    let (m, n, k) = (25, 6, 4);
    let values = uniform_data(m, n, 5);
    let shape = StackShape { sizes: vec![n, 5, 3], classes: k };
    let theta: Vec<f64> = uniform_data(1, shape.len(), 6).iter().map(|v| 6.0 * v - 3.0).collect();
    let data = Dataset::examples_by_features(&values, m, n).unwrap();
    let probabilities = StackedObjective::probabilities(&shape, &theta, &data);
    let features = StackedObjective::features(&shape, &theta, &data);
    let predicted = StackedObjective::predict(&shape, &theta, &data);
    for (i, (row, top)) in probabilities.chunks_exact(k).zip(features.chunks_exact(3)).enumerate() {
        // softmax(θ a_L) by its definition, θ column-major k×3.
        let scores: Vec<f64> = (0..k).map(|j| (0..3).map(|l| theta[j + k * l] * top[l]).sum()).collect();
        let total: f64 = scores.iter().map(|s| s.exp()).sum();
        for (p, s) in row.iter().zip(&scores) {
            assert!((p - s.exp() / total).abs() < 1e-14, "example {i}");
        }
        let best = (0..k).fold(0, |b, j| if row[j] > row[b] { j } else { b });
        assert_eq!(predicted[i] as usize, best, "example {i}");
    }
}
