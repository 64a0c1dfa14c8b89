//! A line search along a descent direction `d` for a step `t` satisfying the strong Wolfe
//! conditions (Nocedal & Wright, Algorithms 3.5 and 3.6; as minFunc's `WolfeLineSearch`
//! with cubic interpolation):
//!
//! - sufficient decrease: `φ(t) ≤ φ(0) + c1 t φ'(0)`,
//! - curvature: `|φ'(t)| ≤ c2 |φ'(0)|`,
//!
//! where `φ(t) = f(x + t d)` and `φ'(t) = ∇f(x + t d)ᵀ d`.

use super::vector::{max_abs, VectorOps};
use crate::error::Result;

/// The line search's constants.
#[derive(Debug, Clone, Copy)]
pub(super) struct WolfeConditions {
    pub c1: f64,
    pub c2: f64,
    /// Evaluations before giving up (returning the best point found, if it decreased `f`).
    pub max_evaluations: usize,
    /// A bracket narrower than this, measured as `width · max |d_i|`, ends the search.
    pub progress_tolerance: f64,
    /// The inner product.
    pub ops: VectorOps,
}

/// One evaluated point of `φ`.
#[derive(Debug, Clone, Copy)]
struct Point {
    t: f64,
    f: f64,
    /// `φ'(t)`
    slope: f64,
}

/// The step found, with `f(x + t d)`; its gradient is left in the `best_grad` buffer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Step {
    pub t: f64,
    pub f: f64,
}

/// Minimiser of the cubic interpolating `φ` and `φ'` at `a` and `b`, clamped to `[lo, hi]`;
/// the midpoint of `[lo, hi]` when the cubic has no minimiser.
fn cubic_minimizer(a: Point, b: Point, lo: f64, hi: f64) -> f64 {
    let d1 = a.slope + b.slope - 3.0 * (a.f - b.f) / (a.t - b.t);
    let discriminant = d1 * d1 - a.slope * b.slope;
    if discriminant >= 0.0 {
        let d2 = (b.t - a.t).signum() * discriminant.sqrt();
        let t = b.t - (b.t - a.t) * (b.slope + d2 - d1) / (b.slope - a.slope + 2.0 * d2);
        if t.is_finite() {
            return t.clamp(lo, hi);
        }
    }
    0.5 * (lo + hi)
}

/// Searches `φ(t) = f(x + t d)` from `t_init`. `phi(t, grad)` returns `f(x + t d)` and writes
/// its gradient to `grad`; a non-finite value counts as a failed sufficient decrease, so
/// the search backs off from steps where `f` overflows or the model saturates.
///
/// Returns the step (`None` when no step decreased `f` within the budget) and the number of
/// evaluations made.
#[allow(clippy::too_many_arguments)]
pub(super) fn strong_wolfe(
    mut phi: impl FnMut(f64, &mut [f64]) -> Result<f64>,
    f0: f64,
    slope0: f64,
    t_init: f64,
    d: &[f64],
    conditions: &WolfeConditions,
    trial_grad: &mut Vec<f64>,
    best_grad: &mut Vec<f64>,
) -> Result<(Option<Step>, usize)> {
    let &WolfeConditions { c1, c2, max_evaluations, progress_tolerance, ops } = conditions;
    let d_scale = max_abs(d);
    let origin = Point { t: 0.0, f: f0, slope: slope0 };
    let mut evaluations = 0;
    let mut evaluate = |t: f64, grad: &mut Vec<f64>| -> Result<Point> {
        let f = phi(t, grad)?;
        let slope = ops.dot(grad, d);
        Ok(if f.is_finite() && slope.is_finite() {
            Point { t, f, slope }
        } else {
            Point { t, f: f64::INFINITY, slope: f64::NAN }
        })
    };
    let decreases = |p: Point| p.f <= f0 + c1 * p.t * slope0;
    let curvature_holds = |p: Point| p.slope.abs() <= -c2 * slope0;

    // Bracketing: grow t until the interval [previous, t] must contain an acceptable step.
    // `best_grad` holds the gradient of `previous` once it is not the origin.
    let mut previous = origin;
    let mut t = t_init;
    let (mut lo, mut hi) = loop {
        let trial = evaluate(t, trial_grad)?;
        evaluations += 1;
        if !trial.f.is_finite() {
            if evaluations >= max_evaluations {
                return Ok((accepted(previous), evaluations));
            }
            t = previous.t + 0.5 * (t - previous.t);
            continue;
        }
        if !decreases(trial) || (previous.t > 0.0 && trial.f >= previous.f) {
            break (previous, trial);
        }
        if curvature_holds(trial) {
            std::mem::swap(trial_grad, best_grad);
            return Ok((accepted(trial), evaluations));
        }
        std::mem::swap(trial_grad, best_grad);
        if trial.slope >= 0.0 {
            break (trial, previous);
        }
        if evaluations >= max_evaluations {
            return Ok((accepted(trial), evaluations));
        }
        let next = cubic_minimizer(previous, trial, t + 0.01 * (t - previous.t), 10.0 * t);
        previous = trial;
        t = next;
    };

    // Zoom: shrink [lo, hi] (lo: the lowest sufficient-decrease point, its gradient in
    // `best_grad` unless it is the origin) until a point satisfies both conditions.
    loop {
        if evaluations >= max_evaluations || (hi.t - lo.t).abs() * d_scale < progress_tolerance {
            return Ok((accepted(lo), evaluations));
        }
        let (left, right) = (lo.t.min(hi.t), lo.t.max(hi.t));
        // Stay a tenth of the bracket away from its ends, so it shrinks by that much at least.
        let margin = 0.1 * (right - left);
        let t =
            if hi.f.is_finite() { cubic_minimizer(lo, hi, left + margin, right - margin) } else { 0.5 * (lo.t + hi.t) };
        let trial = evaluate(t, trial_grad)?;
        evaluations += 1;
        if !decreases(trial) || trial.f >= lo.f {
            hi = trial;
            continue;
        }
        std::mem::swap(trial_grad, best_grad);
        if curvature_holds(trial) {
            return Ok((accepted(trial), evaluations));
        }
        if trial.slope * (hi.t - lo.t) >= 0.0 {
            hi = lo;
        }
        lo = trial;
    }
}

/// `point` as the search's result if it moved from the origin.
fn accepted(point: Point) -> Option<Step> {
    (point.t > 0.0).then_some(Step { t: point.t, f: point.f })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conditions() -> WolfeConditions {
        WolfeConditions {
            c1: 1e-4,
            c2: 0.9,
            max_evaluations: 25,
            progress_tolerance: 1e-12,
            ops: VectorOps::new(crate::kernels::Kernels::scalar()),
        }
    }

    /// Searches `f` (1-D, with derivative `df`) from 0 along `d = 1`, from `t_init`.
    fn search(f: impl Fn(f64) -> f64, df: impl Fn(f64) -> f64, t_init: f64) -> Option<Step> {
        let phi = |t: f64, grad: &mut [f64]| {
            grad[0] = df(t);
            Ok(f(t))
        };
        let (mut trial, mut best) = (vec![0.0], vec![0.0]);
        let (step, _) =
            strong_wolfe(phi, f(0.0), df(0.0), t_init, &[1.0], &conditions(), &mut trial, &mut best).unwrap();
        if let Some(step) = step {
            assert_eq!(best[0], df(step.t), "the accepted step's gradient is left in best_grad");
        }
        step
    }

    fn assert_strong_wolfe(f: impl Fn(f64) -> f64, df: impl Fn(f64) -> f64, t: f64) {
        assert!(f(t) <= f(0.0) + conditions().c1 * t * df(0.0), "sufficient decrease fails at t = {t}");
        assert!(df(t).abs() <= -conditions().c2 * df(0.0), "curvature fails at t = {t}: φ' = {}", df(t));
    }

    #[test]
    fn accepted_steps_satisfy_the_strong_wolfe_conditions_from_short_and_long_starts() {
        let f = |t: f64| (t - 3.0).powi(4) + t * t;
        let df = |t: f64| 4.0 * (t - 3.0).powi(3) + 2.0 * t;
        for t_init in [1e-3, 0.1, 1.0, 2.0, 10.0, 1e3] {
            let step = search(f, df, t_init).expect("a step");
            assert_strong_wolfe(f, df, step.t);
        }
    }

    #[test]
    fn a_non_finite_value_makes_the_search_back_off() {
        let f = |t: f64| if t > 1.5 { f64::NAN } else { (t - 1.4).powi(2) };
        let df = |t: f64| if t > 1.5 { f64::NAN } else { 2.0 * (t - 1.4) };
        let step = search(f, df, 100.0).expect("a step");
        assert!(step.t <= 1.5 && step.f.is_finite());
        assert_strong_wolfe(f, df, step.t);
    }

    #[test]
    fn no_step_is_returned_when_nothing_decreases() {
        // An ascent "direction" with a consistent (positive) slope: every trial fails.
        let step = search(|t| t * t + t, |t| 2.0 * t + 1.0, 1.0);
        assert!(step.is_none());
    }
}
