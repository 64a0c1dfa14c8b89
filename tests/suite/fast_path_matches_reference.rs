//! The batched objective agrees with the per-example reference (SPEC §4) on shapes that do not
//! divide the block size or the SIMD width, for both layouts, back-ends, kernel sets and
//! precisions.

use crate::common::*;
use sae::objective::reference;
use sae::{Backend, Dataset, Isa, Objective};

struct Case {
    n: usize,
    h: usize,
    m: usize,
}

const CASES: &[Case] = &[
    Case { n: 37, h: 53, m: 1001 },
    Case { n: 8, h: 5, m: 1 },
    Case { n: 20, h: 1, m: 300 },
    Case { n: 1, h: 3, m: 17 },
    Case { n: 64, h: 25, m: 513 },
];

fn reference_result(case: &Case, values: &[f64], theta: &[f64]) -> (f64, Vec<f64>) {
    let data = Dataset::examples_by_features(values, case.m, case.n).unwrap();
    reference::cost_and_gradient(&hyper(case.n, case.h), &data, theta).unwrap()
}

fn fast_f64(
    case: &Case,
    data: Dataset<'_, f64>,
    theta: &[f64],
    backend: Backend,
    isa: Isa,
    block: usize,
) -> (f64, Vec<f64>) {
    let mut objective = Objective::new(hyper(case.n, case.h), data)
        .unwrap()
        .with_backend(backend)
        .with_isa(isa)
        .unwrap()
        .with_block_size(block)
        .unwrap();
    let mut grad = vec![f64::NAN; theta.len()];
    let cost = objective.evaluate(theta, &mut grad).unwrap();
    (cost, grad)
}

fn supported_isas() -> impl Iterator<Item = Isa> {
    Isa::ALL.into_iter().filter(|isa| isa.is_supported())
}

#[test]
fn f64_matches_reference_to_1e_12_for_every_layout_backend_and_isa() {
    for case in CASES {
        let values = uniform_data(case.m, case.n, 7);
        let transposed = transpose(&values, case.m, case.n);
        let theta = theta(case.n, case.h, 11);
        let (ref_cost, ref_grad) = reference_result(case, &values, &theta);
        for &backend in Backend::ALL {
            for isa in supported_isas() {
                for block in [8, 100, 256] {
                    for data in [
                        Dataset::examples_by_features(&values, case.m, case.n).unwrap(),
                        Dataset::features_by_examples(&transposed, case.n, case.m).unwrap(),
                    ] {
                        let (cost, grad) = fast_f64(case, data, &theta, backend, isa, block);
                        let cost_error = (cost - ref_cost).abs() / ref_cost.abs();
                        let grad_error = relative_error(&grad, &ref_grad);
                        let context = format!(
                            "n={} h={} m={} {backend:?} {isa:?} block={block} {:?}",
                            case.n,
                            case.h,
                            case.m,
                            data.layout()
                        );
                        assert!(cost_error <= 1e-12, "{context}: cost error {cost_error:e}");
                        assert!(grad_error <= 1e-12, "{context}: gradient error {grad_error:e}");
                    }
                }
            }
        }
    }
}

#[test]
fn f32_matches_f64_reference_to_1e_4() {
    for case in CASES {
        let values = uniform_data(case.m, case.n, 3);
        let theta = theta(case.n, case.h, 5);
        let (ref_cost, ref_grad) = reference_result(case, &values, &theta);
        let values32: Vec<f32> = values.iter().map(|&v| v as f32).collect();
        let theta32: Vec<f32> = theta.iter().map(|&v| v as f32).collect();
        for &backend in Backend::ALL {
            for isa in supported_isas() {
                let data = Dataset::examples_by_features(&values32, case.m, case.n).unwrap();
                let mut objective =
                    Objective::new(hyper(case.n, case.h), data).unwrap().with_backend(backend).with_isa(isa).unwrap();
                let mut grad = vec![f32::NAN; theta.len()];
                let cost = objective.evaluate(&theta32, &mut grad).unwrap();
                let grad: Vec<f64> = grad.iter().map(|&g| g as f64).collect();
                let cost_error = (cost - ref_cost).abs() / ref_cost.abs();
                let grad_error = relative_error(&grad, &ref_grad);
                let context = format!("n={} h={} m={} {backend:?} {isa:?}", case.n, case.h, case.m);
                assert!(cost_error <= 1e-4, "{context}: cost error {cost_error:e}");
                assert!(grad_error <= 1e-4, "{context}: gradient error {grad_error:e}");
            }
        }
    }
}
