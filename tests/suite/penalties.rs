//! The L1 sparsity penalty (`β · mean ‖a2‖₁`): the fast path, streamed or not, equals the
//! per-example reference, its gradient passes the central-difference check, and model files
//! keep it.

use crate::common::*;
use sae::data::stream::SliceSource;
use sae::model::{ModelFile, SparsityPenalty};
use sae::objective::gradcheck::{numerical_gradient, relative_difference};
use sae::objective::{reference, StreamMode, StreamingObjective};
use sae::{Dataset, HyperParams, Objective, Parameters};

fn l1(n: usize, h: usize) -> HyperParams {
    HyperParams::builder(n, h).lambda(3e-3).beta(0.5).rho(0.1).penalty(SparsityPenalty::L1).build().unwrap()
}

#[test]
fn the_l1_penalty_fast_path_equals_the_per_example_reference() {
    let (m, n, h) = (301, 13, 7);
    let values = uniform_data(m, n, 1);
    let theta = theta(n, h, 2);
    let data = Dataset::examples_by_features(&values, m, n).unwrap();
    let (cost, grad) = reference::cost_and_gradient(&l1(n, h), &data, &theta).unwrap();
    let mut fast = vec![0.0; theta.len()];
    let fast_cost = Objective::new(l1(n, h), data).unwrap().evaluate(&theta, &mut fast).unwrap();
    assert!((fast_cost - cost).abs() <= 1e-12 * cost);
    assert!(relative_error(&fast, &grad) <= 1e-12);
    // And it is not the KL objective.
    let (kl_cost, _) = reference::cost_and_gradient(&hyper(n, h), &data, &theta).unwrap();
    assert!((kl_cost - cost).abs() > 1e-3);
}

#[test]
fn the_l1_gradient_passes_the_central_difference_check() {
    let (m, n, h) = (50, 8, 5);
    let values = uniform_data(m, n, 3);
    let theta = theta(n, h, 4);
    let mut objective = Objective::new(l1(n, h), Dataset::examples_by_features(&values, m, n).unwrap()).unwrap();
    let mut analytic = vec![0.0; theta.len()];
    objective.evaluate(&theta, &mut analytic).unwrap();
    let mut scratch = vec![0.0; theta.len()];
    let numeric = numerical_gradient(|t| objective.evaluate(t, &mut scratch).unwrap(), &theta, 1e-4);
    assert!(relative_difference(&numeric, &analytic) < 1e-9);
}

#[test]
fn streaming_with_the_l1_penalty_equals_in_memory_in_both_modes() {
    let (m, n, h) = (500, 9, 4);
    let values = uniform_data(m, n, 5);
    let theta = theta(n, h, 6);
    let mut grad = vec![0.0; theta.len()];
    let data = Dataset::examples_by_features(&values, m, n).unwrap();
    let cost = Objective::new(l1(n, h), data).unwrap().evaluate(&theta, &mut grad).unwrap();
    for mode in [StreamMode::OnePass, StreamMode::TwoPass] {
        let source = SliceSource::new(&values, n).unwrap();
        let mut streaming = StreamingObjective::new(l1(n, h), source, 64, mode).unwrap();
        let mut streamed = vec![0.0; theta.len()];
        let streamed_cost = streaming.evaluate(&theta, &mut streamed).unwrap();
        assert!((streamed_cost - cost).abs() <= 1e-10 * cost, "{mode:?}");
        assert!(relative_error(&streamed, &grad) <= 1e-10, "{mode:?}");
    }
}

#[test]
fn a_model_file_keeps_its_penalty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l1.safetensors");
    ModelFile::new(l1(6, 3), Parameters::<f64>::init(6, 3, 1)).save(&path).unwrap();
    let loaded = ModelFile::<f64>::load(&path).unwrap();
    assert_eq!(loaded.hyper.penalty(), SparsityPenalty::L1);
    assert_eq!(loaded.hyper, l1(6, 3));
}
