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

#[test]
fn log_probabilities_stay_finite_where_probabilities_round_to_zero() {
    let (n, k) = (3, 2);
    let shape = StackShape { sizes: vec![n, 2], classes: k };
    // Softmax weights (2×2 column-major) far apart: class 0 is e^{−1000 (a_1 + a_2)} as likely
    // as class 1, below the smallest f64.
    let mut theta = vec![0.0, 1000.0, 0.0, 1000.0];
    theta.extend([1.0; 6]); // W1 (2×3)
    theta.extend([0.5, 0.5]); // b1
    let values = uniform_data(4, n, 9);
    let data = Dataset::examples_by_features(&values, 4, n).unwrap();
    let probabilities = StackedObjective::probabilities(&shape, &theta, &data);
    let logs = StackedObjective::log_probabilities(&shape, &theta, &data);
    for (p, l) in probabilities.iter().zip(&logs) {
        assert!(l.is_finite() && *l <= 0.0, "{l}");
        if *p > 1e-300 {
            assert!((p.ln() - l).abs() < 1e-12 * l.abs().max(1.0), "{p} {l}");
        }
    }
    assert!(probabilities.iter().step_by(2).all(|&p| p == 0.0), "class 0 rounds to 0 here");
}

#[test]
fn shapes_whose_parameter_count_overflows_or_weight_decay_is_bad_are_refused() {
    let huge = StackShape { sizes: vec![2, 1 << 62, 1 << 62], classes: 2 };
    assert_eq!(huge.checked_len(), None);
    let values = uniform_data(2, 2, 1);
    let data = || Dataset::examples_by_features(&values, 2, 2).unwrap();
    let err = StackedObjective::new(data(), &[0, 1], huge, 1e-4).unwrap_err();
    assert!(err.to_string().contains("fits in memory"), "{err}");
    let shape = StackShape { sizes: vec![2, 3], classes: 2 };
    for lambda in [-1.0, f64::NAN, f64::INFINITY] {
        let err = StackedObjective::new(data(), &[0, 1], shape.clone(), lambda).unwrap_err();
        assert!(err.to_string().contains("lambda"), "{err}");
    }
}

#[test]
fn pretrained_layers_stack_in_ufldls_layout() {
    use sae::model::stack::StackModel;
    use sae::Parameters;
    let (first, second) = (Parameters::<f64>::init(7, 5, 1), Parameters::<f64>::init(5, 4, 2));
    let softmax: Vec<f64> = (0..3 * 4).map(|i| i as f64).collect();
    let stack = StackModel::from_pretrained(3, &softmax, &[&first, &second]).unwrap();
    assert_eq!(stack.shape, StackShape { sizes: vec![7, 5, 4], classes: 3 });
    let (end, layers) = (stack.shape.len(), [(12, 47), (52, 72)]);
    assert_eq!(end, stack.theta.len());
    assert_eq!(&stack.theta[..12], &softmax[..]);
    for ((w, b), layer) in layers.into_iter().zip([&first, &second]) {
        let hn = layer.w1().rows() * layer.w1().cols();
        assert_eq!(&stack.theta[w..w + hn], &layer.theta()[..hn]);
        assert_eq!(&stack.theta[b..b + layer.b1().len()], layer.b1());
    }
    let err = StackModel::from_pretrained(3, &softmax, &[&second, &first]).unwrap_err();
    assert!(err.to_string().contains("layer 2"), "{err}");
    let err = StackModel::from_pretrained(2, &softmax, &[&first, &second]).unwrap_err();
    assert!(err.to_string().contains("softmax weights"), "{err}");
}
