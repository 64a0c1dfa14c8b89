//! Softmax regression: its gradient passes the central-difference check, and it classifies.

use crate::common::*;
use sae::objective::gradcheck::{numerical_gradient, relative_difference};
use sae::objective::SoftmaxObjective;
use sae::optim::Differentiable;
use sae::Dataset;

#[test]
fn the_softmax_gradient_passes_the_central_difference_check() {
    let (m, n, k) = (60, 8, 4);
    let values = uniform_data(m, n, 1);
    let labels: Vec<u8> = (0..m).map(|i| (i * 7 % k) as u8).collect();
    let data = Dataset::examples_by_features(&values, m, n).unwrap();
    let mut objective = SoftmaxObjective::new(data, &labels, k, 1e-3).unwrap();
    let theta: Vec<f64> = uniform_data(1, k * n, 2).iter().map(|v| v - 0.5).collect();
    let mut analytic = vec![0.0; k * n];
    objective.evaluate(&theta, &mut analytic).unwrap();
    let mut scratch = vec![0.0; k * n];
    let numeric = numerical_gradient(|t| objective.evaluate(t, &mut scratch).unwrap(), &theta, 1e-4);
    let difference = relative_difference(&numeric, &analytic);
    assert!(difference < 1e-9, "{difference:e}");
}

#[test]
fn softmax_learns_a_separable_problem() {
    // Class j: feature j is high.
    let (m, k) = (300, 3);
    let labels: Vec<u8> = (0..m).map(|i| (i % k) as u8).collect();
    let noise = uniform_data(m, k, 3);
    let values: Vec<f64> =
        (0..m * k).map(|i| noise[i] + if i % k == labels[i / k] as usize { 1.0 } else { 0.0 }).collect();
    let data = Dataset::examples_by_features(&values, m, k).unwrap();
    let theta = sae::exercises::train_softmax(&data, &labels, k, 1e-4, 100).unwrap();
    assert_eq!(sae::exercises::accuracy(&theta, k, &data, &labels), 1.0);
}

#[test]
fn labels_beyond_the_classes_are_refused() {
    let values = uniform_data(2, 3, 4);
    let data = Dataset::examples_by_features(&values, 2, 3).unwrap();
    let err = SoftmaxObjective::new(data, &[0, 5], 3, 1e-4).unwrap_err();
    assert!(err.to_string().contains("5 at example 1"), "{err}");
}
