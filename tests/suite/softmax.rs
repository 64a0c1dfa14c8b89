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

#[test]
fn the_float32_softmax_gradient_agrees_with_float64() {
    let (m, n, k) = (50, 6, 3);
    let values = uniform_data(m, n, 5);
    let labels: Vec<u8> = (0..m).map(|i| (i * 5 % k) as u8).collect();
    let theta: Vec<f64> = uniform_data(1, k * n, 6).iter().map(|v| v - 0.5).collect();
    let mut grad = vec![0.0; k * n];
    let cost = SoftmaxObjective::new(Dataset::examples_by_features(&values, m, n).unwrap(), &labels, k, 1e-3)
        .unwrap()
        .evaluate(&theta, &mut grad)
        .unwrap();
    let values32: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    let theta32: Vec<f32> = theta.iter().map(|&v| v as f32).collect();
    let mut grad32 = vec![0.0f32; k * n];
    let cost32 = SoftmaxObjective::new(Dataset::examples_by_features(&values32, m, n).unwrap(), &labels, k, 1e-3)
        .unwrap()
        .evaluate(&theta32, &mut grad32)
        .unwrap();
    assert!((cost32 - cost).abs() < 1e-5 * cost, "{cost32} against {cost}");
    let grad32: Vec<f64> = grad32.iter().map(|&g| g as f64).collect();
    assert!(relative_difference(&grad32, &grad) < 1e-5);
}

#[test]
fn a_confidently_wrong_example_costs_its_margin_not_infinity() {
    // Scores (0, 2000): p(class 0) = e^{−2000} rounds to 0, its log does not need to.
    let values = [1.0];
    let data = Dataset::examples_by_features(&values, 1, 1).unwrap();
    let mut objective = SoftmaxObjective::new(data, &[0], 2, 0.0).unwrap();
    let mut grad = vec![0.0; 2];
    let cost = objective.evaluate(&[0.0, 2000.0], &mut grad).unwrap();
    assert!((cost - 2000.0).abs() < 1e-9, "{cost}");
    assert_eq!(grad, [-1.0, 1.0]);
}
