//! L-BFGS finds the minimisers of classic test functions and of the sparse autoencoder
//! objective, stops by minFunc's tests, and continues bit-for-bit from a saved state.

use crate::common::*;
use sae::optim::{Differentiable, Lbfgs, LbfgsOptions, LbfgsState, Stop};
use sae::{Dataset, Error, Objective, Result};

/// The extended Rosenbrock function: `Σ 100 (x_{2i+1} − x_{2i}²)² + (1 − x_{2i})²`,
/// minimum 0 at all ones.
struct Rosenbrock {
    dimension: usize,
    evaluations: usize,
}

impl Differentiable<f64> for Rosenbrock {
    fn dimension(&self) -> usize {
        self.dimension
    }

    fn evaluate(&mut self, x: &[f64], grad: &mut [f64]) -> Result<f64> {
        self.evaluations += 1;
        let mut f = 0.0;
        for i in (0..x.len()).step_by(2) {
            let (a, b) = (x[i], x[i + 1]);
            f += 100.0 * (b - a * a).powi(2) + (1.0 - a).powi(2);
            grad[i] = -400.0 * a * (b - a * a) - 2.0 * (1.0 - a);
            grad[i + 1] = 200.0 * (b - a * a);
        }
        Ok(f)
    }
}

/// `½ xᵀ A x − bᵀ x` with `A` diagonal, entries spread over `[1, condition]`.
struct Quadratic {
    diagonal: Vec<f64>,
    b: Vec<f64>,
}

impl Quadratic {
    fn new(dimension: usize, condition: f64) -> Self {
        let diagonal = (0..dimension).map(|i| condition.powf(i as f64 / (dimension - 1) as f64)).collect();
        let b = (0..dimension).map(|i| ((i * 37 % 11) as f64 - 5.0) / 5.0).collect();
        Quadratic { diagonal, b }
    }

    fn minimiser(&self) -> Vec<f64> {
        self.b.iter().zip(&self.diagonal).map(|(b, a)| b / a).collect()
    }
}

impl Differentiable<f64> for Quadratic {
    fn dimension(&self) -> usize {
        self.b.len()
    }

    fn evaluate(&mut self, x: &[f64], grad: &mut [f64]) -> Result<f64> {
        let mut f = 0.0;
        for i in 0..x.len() {
            grad[i] = self.diagonal[i] * x[i] - self.b[i];
            f += 0.5 * self.diagonal[i] * x[i] * x[i] - self.b[i] * x[i];
        }
        Ok(f)
    }
}

/// Tolerances tight enough that a run stops only at the minimiser, to rounding.
const TIGHT: LbfgsOptions =
    LbfgsOptions { gradient_tolerance: 1e-10, progress_tolerance: 1e-16, ..LbfgsOptions::MINFUNC };

#[test]
fn finds_the_minimum_of_the_two_dimensional_rosenbrock_function() {
    let mut fun = Rosenbrock { dimension: 2, evaluations: 0 };
    let mut lbfgs = Lbfgs::start(TIGHT, &[-1.2, 1.0], &mut fun).unwrap();
    let stop = lbfgs.run(&mut fun, |_| {}).unwrap();
    assert_eq!(stop, Stop::GradientTolerance);
    let x = &lbfgs.state().x;
    assert!((x[0] - 1.0).abs() < 1e-9 && (x[1] - 1.0).abs() < 1e-9, "{x:?}");
    assert!(lbfgs.state().iteration < 60, "{} iterations", lbfgs.state().iteration);
    assert_eq!(lbfgs.state().evaluations, fun.evaluations);
}

#[test]
fn finds_the_minimum_of_the_hundred_dimensional_rosenbrock_function() {
    let mut fun = Rosenbrock { dimension: 100, evaluations: 0 };
    let x0: Vec<f64> = (0..100).map(|i| if i % 2 == 0 { -1.2 } else { 1.0 }).collect();
    let mut lbfgs = Lbfgs::start(LbfgsOptions::default(), &x0, &mut fun).unwrap();
    let stop = lbfgs.run(&mut fun, |_| {}).unwrap();
    assert!(stop.converged(), "{stop:?}");
    assert!(lbfgs.state().x.iter().all(|v| (v - 1.0).abs() < 1e-4));
}

#[test]
fn finds_the_minimiser_of_an_ill_conditioned_quadratic() {
    let mut fun = Quadratic::new(50, 1e4);
    let options = LbfgsOptions { gradient_tolerance: 1e-6, ..TIGHT };
    let mut lbfgs = Lbfgs::start(options, &[0.0; 50], &mut fun).unwrap();
    let stop = lbfgs.run(&mut fun, |_| {}).unwrap();
    assert_eq!(stop, Stop::GradientTolerance);
    let error = relative_error(&lbfgs.state().x, &fun.minimiser());
    assert!(error < 1e-6, "{error:e}");
    // scipy's L-BFGS-B (maxcor = 100, gtol = 1e-6) takes 168 iterations on this problem.
    assert!(lbfgs.state().iteration < 250, "{} iterations", lbfgs.state().iteration);
}

#[test]
fn every_iteration_decreases_the_function() {
    let mut fun = Rosenbrock { dimension: 10, evaluations: 0 };
    let mut lbfgs = Lbfgs::start(LbfgsOptions::default(), &[0.5; 10], &mut fun).unwrap();
    let mut previous = lbfgs.state().f;
    lbfgs
        .run(&mut fun, |it| {
            if it.step > 0.0 {
                assert!(it.f < previous, "iteration {}: {} after {previous}", it.iteration, it.f);
                previous = it.f;
            }
        })
        .unwrap();
}

#[test]
fn stops_after_max_iterations_and_keeps_at_most_history_pairs() {
    let mut fun = Rosenbrock { dimension: 20, evaluations: 0 };
    let options = LbfgsOptions { max_iterations: 12, history: 5, ..LbfgsOptions::default() };
    let mut lbfgs = Lbfgs::start(options, &[-1.0; 20], &mut fun).unwrap();
    assert_eq!(lbfgs.run(&mut fun, |_| {}).unwrap(), Stop::MaxIterations);
    assert_eq!(lbfgs.state().iteration, 12);
    assert_eq!(lbfgs.state().pairs(), 5);
}

#[test]
fn stops_at_max_evaluations() {
    let mut fun = Rosenbrock { dimension: 2, evaluations: 0 };
    let options = LbfgsOptions { max_evaluations: 10, ..LbfgsOptions::default() };
    let mut lbfgs = Lbfgs::start(options, &[-1.2, 1.0], &mut fun).unwrap();
    assert_eq!(lbfgs.run(&mut fun, |_| {}).unwrap(), Stop::MaxEvaluations);
    assert!(fun.evaluations >= 10 && fun.evaluations < 10 + 25);
}

/// Runs `iterations` iterations and returns the state.
fn run_for(fun: &mut impl Differentiable<f64>, x0: &[f64], options: LbfgsOptions, iterations: usize) -> LbfgsState {
    let mut lbfgs = Lbfgs::start(options, x0, fun).unwrap();
    for _ in 0..iterations {
        lbfgs.iterate(fun).unwrap();
    }
    lbfgs.into_state()
}

#[test]
fn a_run_resumed_from_a_saved_state_continues_bit_for_bit() {
    let options = LbfgsOptions { history: 4, ..LbfgsOptions::default() };
    let x0 = [-1.2, 1.0, 0.3, -0.5];
    let uninterrupted = run_for(&mut Rosenbrock { dimension: 4, evaluations: 0 }, &x0, options, 25);
    let saved = run_for(&mut Rosenbrock { dimension: 4, evaluations: 0 }, &x0, options, 9);
    let mut fun = Rosenbrock { dimension: 4, evaluations: 0 };
    let mut resumed = Lbfgs::resume(options, saved.clone()).unwrap();
    for _ in 9..25 {
        resumed.iterate(&mut fun).unwrap();
    }
    assert_eq!(resumed.state(), &uninterrupted);
}

#[test]
fn the_ring_of_correction_pairs_is_read_oldest_first_from_any_slot() {
    let options = LbfgsOptions { history: 3, ..LbfgsOptions::default() };
    let x0 = [-1.2, 1.0];
    let mut state = run_for(&mut Rosenbrock { dimension: 2, evaluations: 0 }, &x0, options, 8);
    assert_ne!(state.oldest, 0, "the ring has wrapped");
    let expected = {
        let mut lbfgs = Lbfgs::resume(options, state.clone()).unwrap();
        lbfgs.iterate(&mut Rosenbrock { dimension: 2, evaluations: 0 }).unwrap();
        lbfgs.into_state().x
    };
    // The same pairs laid out from slot 0.
    let (len, k) = (2, state.oldest);
    state.s.rotate_left(k * len);
    state.y.rotate_left(k * len);
    state.ys.rotate_left(k);
    state.oldest = 0;
    let mut lbfgs = Lbfgs::resume(options, state).unwrap();
    lbfgs.iterate(&mut Rosenbrock { dimension: 2, evaluations: 0 }).unwrap();
    assert_eq!(lbfgs.state().x, expected);
}

#[test]
fn minimises_the_sparse_autoencoder_objective_in_f32_and_f64_alike() {
    let (m, n, h) = (500, 16, 6);
    let values = uniform_data(m, n, 3);
    let values32: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    let theta0 = theta(n, h, 4);
    let theta32: Vec<f32> = theta0.iter().map(|&v| v as f32).collect();
    let options = LbfgsOptions { max_iterations: 200, ..LbfgsOptions::default() };

    let mut objective = Objective::new(hyper(n, h), Dataset::examples_by_features(&values, m, n).unwrap()).unwrap();
    let mut lbfgs = Lbfgs::start(options, &theta0, &mut objective).unwrap();
    let start = lbfgs.state().f;
    lbfgs.run(&mut objective, |_| {}).unwrap();
    let (f64_cost, f64_gradient) = (lbfgs.state().f, lbfgs.state().g.clone());
    assert!(f64_cost < 0.5 * start, "{f64_cost} from {start}");
    let norm = |g: &[f64]| g.iter().map(|v| v * v).sum::<f64>().sqrt();
    assert!(norm(&f64_gradient) < 1e-3, "‖g‖ = {}", norm(&f64_gradient));

    let mut objective32 = Objective::new(hyper(n, h), Dataset::examples_by_features(&values32, m, n).unwrap()).unwrap();
    let mut lbfgs32 = Lbfgs::start(options, &theta32, &mut objective32).unwrap();
    lbfgs32.run(&mut objective32, |_| {}).unwrap();
    assert!((lbfgs32.state().f - f64_cost).abs() < 1e-3 * f64_cost, "{} vs {f64_cost}", lbfgs32.state().f);
}

/// Returns NaN from its `nan_from`-th evaluation on.
struct TurnsNan {
    inner: Rosenbrock,
    nan_from: usize,
}

impl Differentiable<f64> for TurnsNan {
    fn dimension(&self) -> usize {
        self.inner.dimension
    }

    fn evaluate(&mut self, x: &[f64], grad: &mut [f64]) -> Result<f64> {
        let f = self.inner.evaluate(x, grad)?;
        Ok(if self.inner.evaluations >= self.nan_from { f64::NAN } else { f })
    }
}

#[test]
fn a_function_turning_nan_stops_the_run_without_moving_it() {
    let mut fun = TurnsNan { inner: Rosenbrock { dimension: 2, evaluations: 0 }, nan_from: 6 };
    let mut lbfgs = Lbfgs::start(LbfgsOptions::default(), &[-1.2, 1.0], &mut fun).unwrap();
    let stop = lbfgs.run(&mut fun, |_| {}).unwrap();
    assert_eq!(stop, Stop::LineSearchFailed);
    assert!(lbfgs.state().f.is_finite() && lbfgs.state().x.iter().all(|v| v.is_finite()));
}

#[test]
fn a_non_finite_cost_at_the_start_is_an_error() {
    let mut fun = TurnsNan { inner: Rosenbrock { dimension: 2, evaluations: 0 }, nan_from: 1 };
    let err = Lbfgs::start(LbfgsOptions::default(), &[0.0, 0.0], &mut fun).unwrap_err();
    assert!(matches!(err, Error::NonFiniteCost { iteration: 0, .. }), "{err}");
}

#[test]
fn a_full_ring_resumed_under_a_longer_history_keeps_its_pairs_in_order() {
    let mut fun = Rosenbrock { dimension: 20, evaluations: 0 };
    let short = LbfgsOptions { max_iterations: 10, history: 3, ..LbfgsOptions::default() };
    let mut lbfgs = Lbfgs::start(short, &[-1.0; 20], &mut fun).unwrap();
    lbfgs.run(&mut fun, |_| {}).unwrap();
    let state = lbfgs.into_state();
    assert!(state.ys.len() == 3 && state.oldest != 0, "the ring has wrapped");
    // The same pairs, oldest first: what the wrapped ring means.
    let (len, k) = (state.x.len(), state.oldest);
    let mut ordered = state.clone();
    ordered.s.rotate_left(k * len);
    ordered.y.rotate_left(k * len);
    ordered.ys.rotate_left(k);
    ordered.oldest = 0;
    let long = LbfgsOptions { max_iterations: 14, history: 6, ..LbfgsOptions::default() };
    let resume = |state: LbfgsState| {
        let mut fun = Rosenbrock { dimension: 20, evaluations: 0 };
        let mut lbfgs = Lbfgs::resume(long, state).unwrap();
        lbfgs.run(&mut fun, |_| {}).unwrap();
        lbfgs.into_state().x
    };
    assert_eq!(resume(state), resume(ordered));
}
