//! The objective's contract: its gradient is the derivative of its cost, its results do not
//! depend on the thread count beyond rounding, and bad input is a typed error naming the culprit.

use crate::common::*;
use sae::objective::gradcheck::{numerical_gradient, relative_difference};
use sae::{Dataset, Error, HyperParams, Objective};

fn evaluate(objective: &mut Objective<'_, f64>, theta: &[f64]) -> (f64, Vec<f64>) {
    let mut grad = vec![0.0; theta.len()];
    let cost = objective.evaluate(theta, &mut grad).unwrap();
    (cost, grad)
}

#[test]
fn gradient_passes_the_central_difference_check() {
    let (n, h, m) = (9, 5, 60);
    let values = uniform_data(m, n, 1);
    let theta = theta(n, h, 2);
    for data in [
        Dataset::examples_by_features(&values, m, n).unwrap(),
        Dataset::features_by_examples(&transpose(&values, m, n), n, m).unwrap(),
    ] {
        let mut objective = Objective::new(hyper(n, h), data).unwrap().with_block_size(16).unwrap();
        let (_, analytic) = evaluate(&mut objective, &theta);
        let numeric = numerical_gradient(|t| evaluate(&mut objective, t).0, &theta, 1e-4);
        let difference = relative_difference(&numeric, &analytic);
        assert!(difference < 1e-9, "{:?}: ‖num − ana‖/‖num + ana‖ = {difference:e}", data.layout());
    }
}

fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(f)
}

#[test]
fn results_agree_across_thread_counts_to_rounding() {
    let (n, h, m) = (30, 20, 2000);
    let values = uniform_data(m, n, 3);
    let theta = theta(n, h, 4);
    let data = Dataset::examples_by_features(&values, m, n).unwrap();
    let mut objective = Objective::new(hyper(n, h), data).unwrap().with_block_size(64).unwrap();
    let (cost1, grad1) = in_pool(1, || evaluate(&mut objective, &theta));
    for threads in [2, 3, 8] {
        let (cost, grad) = in_pool(threads, || evaluate(&mut objective, &theta));
        assert!((cost - cost1).abs() <= 1e-14 * cost1.abs(), "{threads} threads: cost {cost} vs {cost1}");
        let error = relative_error(&grad, &grad1);
        assert!(error <= 1e-13, "{threads} threads: gradient differs by {error:e}");
    }
}

#[test]
fn repeated_evaluations_with_the_same_thread_count_are_bit_identical() {
    let (n, h, m) = (30, 20, 2000);
    let values = uniform_data(m, n, 5);
    let theta = theta(n, h, 6);
    let data = Dataset::examples_by_features(&values, m, n).unwrap();
    let mut objective = Objective::new(hyper(n, h), data).unwrap().with_block_size(64).unwrap();
    let first = in_pool(2, || evaluate(&mut objective, &theta));
    for _ in 0..5 {
        let again = in_pool(2, || evaluate(&mut objective, &theta));
        assert_eq!(again.0.to_bits(), first.0.to_bits());
        assert!(again.1.iter().zip(&first.1).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}

#[test]
fn rho_hat_is_the_mean_hidden_activation() {
    let (n, h, m) = (6, 3, 10);
    let values = uniform_data(m, n, 8);
    let mut theta = theta(n, h, 9);
    // Zero weights and b1 = 0 give a2 = σ(0) = 1/2 for every example.
    theta[..2 * n * h].fill(0.0);
    theta[2 * n * h..2 * n * h + h].fill(0.0);
    let data = Dataset::examples_by_features(&values, m, n).unwrap();
    let mut objective = Objective::new(hyper(n, h), data).unwrap();
    evaluate(&mut objective, &theta);
    assert_eq!(objective.rho_hat(), &[0.5; 3]);
}

fn small_problem() -> (Vec<f64>, Vec<f64>) {
    (uniform_data(10, 4, 1), theta(4, 3, 1))
}

#[test]
fn theta_of_the_wrong_length_is_rejected() {
    let (values, theta) = small_problem();
    let data = Dataset::examples_by_features(&values, 10, 4).unwrap();
    let mut objective = Objective::new(hyper(4, 3), data).unwrap();
    let mut grad = vec![0.0; theta.len() - 1];
    let err = objective.evaluate(&theta[1..], &mut grad).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { what: "theta", .. }), "{err}");
}

#[test]
fn gradient_buffer_of_the_wrong_length_is_rejected() {
    let (values, theta) = small_problem();
    let data = Dataset::examples_by_features(&values, 10, 4).unwrap();
    let mut objective = Objective::new(hyper(4, 3), data).unwrap();
    let err = objective.evaluate(&theta, &mut [0.0; 3]).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { what: "grad", .. }), "{err}");
}

#[test]
fn non_finite_theta_is_rejected_naming_its_block_and_position() {
    let (values, mut theta) = small_problem();
    // W2 is 4×3 column-major after W1's 12 values: index 12 + 1 + 2·4 is W2[1, 2].
    theta[12 + 1 + 2 * 4] = f64::NAN;
    let data = Dataset::examples_by_features(&values, 10, 4).unwrap();
    let mut objective = Objective::new(hyper(4, 3), data).unwrap();
    let err = objective.evaluate(&theta, &mut vec![0.0; theta.len()]).unwrap_err();
    assert!(matches!(err, Error::NonFiniteTheta { index: 21, block: "W2", row: 1, column: 2, .. }), "{err}");
}

#[test]
fn an_unbound_objective_bound_to_other_data_evaluates_as_a_new_one_would() {
    let (n, h) = (6, 4);
    let theta = theta(n, h, 3);
    let (first, second) = (uniform_data(40, n, 1), uniform_data(25, n, 2));
    let mut objective = Objective::new(hyper(n, h), Dataset::examples_by_features(&first, 40, n).unwrap()).unwrap();
    let on_first = evaluate(&mut objective, &theta);
    let unbound = objective.unbind();
    let second_by_features = transpose(&second, 25, n);
    let other = Dataset::features_by_examples(&second_by_features, n, 25).unwrap();
    let mut rebound = unbound.bind(other).unwrap();
    let on_second = evaluate(&mut rebound, &theta);
    let mut fresh = Objective::new(hyper(n, h), other).unwrap();
    assert_eq!(on_second, evaluate(&mut fresh, &theta));
    assert_ne!(on_first.0, on_second.0);
    // Bound to the first data again: the first result, bit for bit.
    let mut again = rebound.unbind().bind(Dataset::examples_by_features(&first, 40, n).unwrap()).unwrap();
    assert_eq!(evaluate(&mut again, &theta), on_first);
}

#[test]
fn an_unbound_objective_refuses_data_of_another_width() {
    let (values, _) = small_problem();
    let data = Dataset::examples_by_features(&values, 10, 4).unwrap();
    let unbound = Objective::new(hyper(4, 3), data).unwrap().unbind();
    let wider = uniform_data(10, 5, 1);
    let err = unbound.bind(Dataset::examples_by_features(&wider, 10, 5).unwrap()).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
}

#[test]
fn data_with_the_wrong_number_of_features_is_rejected() {
    let (values, _) = small_problem();
    let data = Dataset::examples_by_features(&values, 10, 4).unwrap();
    let err = Objective::new(hyper(5, 3), data).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
    assert!(err.to_string().contains("n = 5"), "{err}");
}

#[test]
fn non_finite_data_is_rejected_naming_row_and_column() {
    let (mut values, _) = small_problem();
    values[2 * 4 + 3] = f64::INFINITY;
    let err = Dataset::examples_by_features(&values, 10, 4).unwrap_err();
    assert!(matches!(err, Error::NonFiniteData { row: 2, column: 3, .. }), "{err}");
    let err = Dataset::features_by_examples(&values, 4, 10).unwrap_err();
    assert!(matches!(err, Error::NonFiniteData { row: 1, column: 1, .. }), "{err}");
}

#[test]
fn empty_data_is_rejected() {
    assert!(matches!(Dataset::<f64>::examples_by_features(&[], 0, 4), Err(Error::EmptyData { .. })));
    assert!(matches!(Dataset::<f64>::examples_by_features(&[], 4, 0), Err(Error::EmptyData { .. })));
}

#[test]
fn data_of_the_wrong_length_is_rejected() {
    let err = Dataset::examples_by_features(&[0.5; 11], 3, 4).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { what: "data values", .. }), "{err}");
}

#[test]
fn out_of_domain_hyper_parameters_are_rejected_by_name() {
    let name = |b: sae::model::HyperParamsBuilder| match b.build() {
        Err(Error::InvalidHyperParameter { name, .. }) => name,
        other => panic!("expected an invalid hyper-parameter, got {other:?}"),
    };
    assert_eq!(name(HyperParams::builder(4, 3).rho(0.0)), "rho");
    assert_eq!(name(HyperParams::builder(4, 3).rho(1.0)), "rho");
    assert_eq!(name(HyperParams::builder(4, 3).rho(f64::NAN)), "rho");
    assert_eq!(name(HyperParams::builder(4, 3).lambda(-1e-4)), "lambda");
    assert_eq!(name(HyperParams::builder(4, 3).beta(-3.0)), "beta");
    assert_eq!(name(HyperParams::builder(4, 3).beta(f64::INFINITY)), "beta");
    assert_eq!(name(HyperParams::builder(0, 3)), "visible");
    assert_eq!(name(HyperParams::builder(4, 0)), "hidden");
}

#[test]
fn zero_block_size_is_rejected() {
    let (values, _) = small_problem();
    let data = Dataset::examples_by_features(&values, 10, 4).unwrap();
    let err = Objective::new(hyper(4, 3), data).unwrap().with_block_size(0).unwrap_err();
    assert!(matches!(err, Error::InvalidHyperParameter { name: "block_size", .. }), "{err}");
}

#[test]
fn saturated_rho_hat_is_an_error_not_nan() {
    let (n, h, m) = (4, 3, 10);
    let values: Vec<f32> = uniform_data(m, n, 1).iter().map(|&v| v as f32).collect();
    let data = Dataset::examples_by_features(&values, m, n).unwrap();
    let mut objective = Objective::new(hyper(n, h), data).unwrap();
    for (bias, saturated_at) in [(60.0f32, 1.0), (-200.0, 0.0)] {
        let mut theta: Vec<f32> = theta(n, h, 1).iter().map(|&v| v as f32).collect();
        theta[2 * n * h + 1] = bias; // b1 of hidden unit 1
        let mut grad = vec![0.0f32; theta.len()];
        let err = objective.evaluate(&theta, &mut grad).unwrap_err();
        match err {
            Error::SaturatedActivation { unit: 1, rho_hat } => assert_eq!(rho_hat, saturated_at),
            other => panic!("expected saturation of unit 1, got {other}"),
        }
    }
}
