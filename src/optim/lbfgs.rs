//! Limited-memory BFGS (Nocedal & Wright, Algorithm 7.5) with the defaults of minFunc, the
//! optimiser of the UFLDL exercises: 100 correction pairs, a strong-Wolfe line search with
//! cubic interpolation (`c1 = 1e-4`, `c2 = 0.9`), first step `min(1, 1/‖g‖₁)`, and minFunc's
//! stopping tests.
//!
//! The state after each iteration ([`LbfgsState`]) is everything the next iteration reads,
//! so a run restored from it continues exactly as an uninterrupted run would.

use super::line_search::{strong_wolfe, WolfeConditions};
use super::vector::{max_abs, VectorOps};
use super::Differentiable;
use crate::error::{Error, Result};
use crate::kernels::Kernels;
use crate::real::Real;

/// When to stop, and the line search's constants. The defaults are minFunc's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LbfgsOptions {
    /// Iterations (each one line search) before stopping.
    pub max_iterations: usize,
    /// Function evaluations before stopping.
    pub max_evaluations: usize,
    /// Correction pairs kept (`m` of L-BFGS; minFunc's `Corr`).
    pub history: usize,
    /// Stop when `max_i |∇f_i| ≤` this (minFunc's `optTol`).
    pub gradient_tolerance: f64,
    /// Stop when `f` or the step changes by less than this (minFunc's `progTol`).
    pub progress_tolerance: f64,
    /// Sufficient-decrease constant of the line search.
    pub c1: f64,
    /// Curvature constant of the line search.
    pub c2: f64,
    /// Evaluations per line search before it gives up.
    pub max_line_search_evaluations: usize,
}

impl LbfgsOptions {
    /// minFunc's defaults, with UFLDL's 400 iterations.
    pub const MINFUNC: LbfgsOptions = LbfgsOptions {
        max_iterations: 400,
        max_evaluations: 1000,
        history: 100,
        gradient_tolerance: 1e-5,
        progress_tolerance: 1e-9,
        c1: 1e-4,
        c2: 0.9,
        max_line_search_evaluations: 25,
    };
}

impl Default for LbfgsOptions {
    fn default() -> Self {
        Self::MINFUNC
    }
}

/// Why a run stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    MaxIterations,
    MaxEvaluations,
    /// `max_i |∇f_i| ≤ gradient_tolerance`
    GradientTolerance,
    /// `|f_k − f_{k−1}| < progress_tolerance`
    FunctionChange,
    /// `max_i |t d_i| < progress_tolerance`
    StepSize,
    /// `∇fᵀ d > −progress_tolerance`: no descent along the search direction.
    DirectionalDerivative,
    /// The line search found no decrease.
    LineSearchFailed,
    /// The caller asked the run to stop between iterations (see
    /// [`Trainer::stop_when`](crate::train::Trainer::stop_when)).
    Interrupted,
    /// The training callback returned `ControlFlow::Break` (see [`crate::train::Control`]).
    Requested,
    /// The run's time limit passed (see
    /// [`Trainer::time_limit`](crate::train::Trainer::time_limit)).
    TimeLimit,
    /// The held-out cost did not improve for the patience of a
    /// [`Validation`](crate::train::Validation); the model is the best validated one.
    EarlyStopping,
    /// A checkpoint could not be written (a full disk, say), whatever other stop was due: the
    /// run stopped with its model of that moment (with held-out data, the best validated one),
    /// the error kept in [`Trained::checkpoint_error`](crate::train::Trained), any checkpoint
    /// written before intact.
    CheckpointFailed,
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stop::MaxIterations => "reached the iteration limit",
            Stop::MaxEvaluations => "reached the evaluation limit",
            Stop::GradientTolerance => "converged: the gradient is below the tolerance",
            Stop::FunctionChange => "converged: the cost changes by less than the tolerance",
            Stop::StepSize => "converged: the step is below the tolerance",
            Stop::DirectionalDerivative => "converged: no descent direction left at this precision",
            Stop::LineSearchFailed => {
                "the line search found no lower cost (the cost may be NaN or infinite along the \
                 search direction); the model is the last point with a finite, lower cost"
            }
            Stop::Interrupted => "interrupted: the model so far is kept, and the run can be resumed",
            Stop::Requested => "stopped by the training callback",
            Stop::TimeLimit => "reached the time limit",
            Stop::EarlyStopping => {
                "stopped early: the held-out cost stopped improving; the model is the best validated one"
            }
            Stop::CheckpointFailed => {
                "a checkpoint could not be written: the model so far is kept, and any checkpoint written before is intact"
            }
        })
    }
}

impl Stop {
    /// Every stop, in declaration order.
    pub const ALL: [Stop; 12] = [
        Stop::MaxIterations,
        Stop::MaxEvaluations,
        Stop::GradientTolerance,
        Stop::FunctionChange,
        Stop::StepSize,
        Stop::DirectionalDerivative,
        Stop::LineSearchFailed,
        Stop::Interrupted,
        Stop::Requested,
        Stop::TimeLimit,
        Stop::EarlyStopping,
        Stop::CheckpointFailed,
    ];

    /// The name model files and checkpoints record it by (metadata `stop`).
    pub fn name(self) -> &'static str {
        match self {
            Stop::MaxIterations => "max-iterations",
            Stop::MaxEvaluations => "max-evaluations",
            Stop::GradientTolerance => "gradient-tolerance",
            Stop::FunctionChange => "function-change",
            Stop::StepSize => "step-size",
            Stop::DirectionalDerivative => "directional-derivative",
            Stop::LineSearchFailed => "line-search-failed",
            Stop::Interrupted => "interrupted",
            Stop::Requested => "requested",
            Stop::TimeLimit => "time-limit",
            Stop::EarlyStopping => "early-stopping",
            Stop::CheckpointFailed => "checkpoint-failed",
        }
    }

    /// The stop of [`name`](Self::name) `name`.
    pub fn from_name(name: &str) -> Option<Stop> {
        Stop::ALL.into_iter().find(|stop| stop.name() == name)
    }

    /// Whether a run that stopped so goes on when resumed: it ran out of a budget or was
    /// stopped from outside, rather than converged or broke down.
    pub fn resumable(self) -> bool {
        matches!(
            self,
            Stop::MaxIterations
                | Stop::MaxEvaluations
                | Stop::Interrupted
                | Stop::Requested
                | Stop::TimeLimit
                | Stop::CheckpointFailed
        )
    }

    /// Whether the stop means the optimum was reached (to the tolerances), rather than a
    /// budget ran out or the search broke down.
    pub fn converged(self) -> bool {
        matches!(self, Stop::GradientTolerance | Stop::FunctionChange | Stop::StepSize | Stop::DirectionalDerivative)
    }
}

/// Everything an L-BFGS run carries from one iteration to the next.
#[derive(Debug, Clone, PartialEq)]
pub struct LbfgsState {
    /// The current point `x_k`.
    pub x: Vec<f64>,
    /// `f(x_k)`
    pub f: f64,
    /// `∇f(x_k)`
    pub g: Vec<f64>,
    /// Correction pairs `s_i = x_{i+1} − x_i`, one after another in a ring of slots: the
    /// oldest pair is in slot `oldest`, the next in the slot after it, cyclically.
    pub s: Vec<f64>,
    /// `y_i = ∇f_{i+1} − ∇f_i`, in the slots of `s`.
    pub y: Vec<f64>,
    /// `yᵀs` of each slot.
    pub ys: Vec<f64>,
    /// The slot of the oldest pair.
    pub oldest: usize,
    /// The scale `γ = yᵀs / yᵀy` of the initial inverse Hessian `γ I`.
    pub gamma: f64,
    /// Iterations completed.
    pub iteration: usize,
    /// Function evaluations made, including the first.
    pub evaluations: usize,
    /// Set when the run has stopped.
    pub stopped: Option<Stop>,
}

impl LbfgsState {
    /// Correction pairs held.
    pub fn pairs(&self) -> usize {
        self.ys.len()
    }
}

/// What one iteration did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Iteration {
    pub iteration: usize,
    pub f: f64,
    /// `‖∇f‖₂` at the new point.
    pub gradient_norm: f64,
    /// The step length `t` of the line search.
    pub step: f64,
    /// Evaluations made by this iteration's line search.
    pub evaluations: usize,
    /// Why the run stopped after this iteration, if it did.
    pub stopped: Option<Stop>,
}

/// An L-BFGS run, advanced one iteration at a time (so a caller can report progress and
/// checkpoint between iterations) or run to the end.
#[derive(Debug)]
pub struct Lbfgs<T> {
    options: LbfgsOptions,
    /// `dot` and `axpy` for this CPU.
    ops: VectorOps,
    state: LbfgsState,
    /// The search direction.
    d: Vec<f64>,
    /// Two-loop coefficients, newest pair first.
    alpha: Vec<f64>,
    trial_grad: Vec<f64>,
    best_grad: Vec<f64>,
    /// The trial point and its gradient in the function's precision.
    x_t: Vec<T>,
    g_t: Vec<T>,
}

impl<T: Real> Lbfgs<T> {
    /// Starts at `x0`: evaluates `f` there once.
    pub fn start(options: LbfgsOptions, x0: &[T], fun: &mut impl Differentiable<T>) -> Result<Self> {
        check_options(&options)?;
        let len = fun.dimension();
        if x0.len() != len {
            return Err(Error::shape_mismatch("starting point", format!("the function's dimension {len}"), x0.len()));
        }
        let mut g_t = vec![T::zero(); len];
        let f = fun.evaluate(x0, &mut g_t)?;
        if !f.is_finite() {
            return Err(Error::NonFiniteCost { iteration: 0, value: f });
        }
        let state = LbfgsState {
            x: x0.iter().map(|v| v.as_f64()).collect(),
            f,
            g: g_t.iter().map(|v| v.as_f64()).collect(),
            s: Vec::new(),
            y: Vec::new(),
            ys: Vec::new(),
            oldest: 0,
            gamma: 1.0,
            iteration: 0,
            evaluations: 1,
            stopped: None,
        };
        Self::resume(options, state)
    }

    /// Continues a run from a state saved after some iteration. A run that had stopped on
    /// its iteration or evaluation budget goes on under the budgets of `options`, and an
    /// interrupted run goes on.
    pub fn resume(options: LbfgsOptions, mut state: LbfgsState) -> Result<Self> {
        if state.stopped.is_some_and(Stop::resumable) {
            state.stopped = None;
        }
        check_options(&options)?;
        let len = state.x.len();
        let pairs = state.ys.len();
        let consistent = state.g.len() == len
            && state.s.len() == pairs * len
            && state.y.len() == pairs * len
            && (pairs == 0 || state.oldest < pairs)
            && pairs <= options.history;
        if !consistent {
            return Err(Error::shape_mismatch(
                "L-BFGS state",
                format!(
                    "x and g of one length, s and y of {pairs} pairs of that length, at most {} pairs",
                    options.history
                ),
                format!(
                    "x {}, g {}, s {}, y {}, oldest slot {}",
                    len,
                    state.g.len(),
                    state.s.len(),
                    state.y.len(),
                    state.oldest
                ),
            ));
        }
        if pairs < options.history && state.oldest != 0 {
            // A ring saved full under a shorter history: new pairs are appended after the
            // last slot, so the oldest must come first.
            state.s.rotate_left(state.oldest * len);
            state.y.rotate_left(state.oldest * len);
            state.ys.rotate_left(state.oldest);
            state.oldest = 0;
        }
        Ok(Lbfgs {
            options,
            ops: VectorOps::new(Kernels::detect()),
            d: vec![0.0; len],
            alpha: Vec::new(),
            trial_grad: vec![0.0; len],
            best_grad: vec![0.0; len],
            x_t: vec![T::zero(); len],
            g_t: vec![T::zero(); len],
            state,
        })
    }

    pub fn state(&self) -> &LbfgsState {
        &self.state
    }

    pub fn into_state(self) -> LbfgsState {
        self.state
    }

    pub fn options(&self) -> &LbfgsOptions {
        &self.options
    }

    /// Stops the run where it is, between iterations, with `stop` (unless it has stopped
    /// already; returns the stop that holds). A run stopped from outside ([`Stop::resumable`])
    /// goes on when [`resume`](Self::resume)d from its state.
    pub fn stop_with(&mut self, stop: Stop) -> Stop {
        *self.state.stopped.get_or_insert(stop)
    }

    /// The current point rounded to `T`.
    pub fn x(&self) -> Vec<T> {
        self.state.x.iter().map(|&v| T::cast(v)).collect()
    }

    /// Runs iterations until a stopping test holds; `on_iteration` sees each one.
    pub fn run(&mut self, fun: &mut impl Differentiable<T>, mut on_iteration: impl FnMut(&Iteration)) -> Result<Stop> {
        loop {
            let iteration = self.iterate(fun)?;
            on_iteration(&iteration);
            if let Some(stop) = iteration.stopped {
                return Ok(stop);
            }
        }
    }

    /// One iteration: direction, line search, update of the correction pairs, stopping
    /// tests (minFunc's, in its order). After a stop, returns the stop again without work.
    pub fn iterate(&mut self, fun: &mut impl Differentiable<T>) -> Result<Iteration> {
        let options = self.options;
        if let Some(stop) = self.state.stopped {
            return Ok(self.report(0.0, 0, Some(stop)));
        }
        if max_abs(&self.state.g) <= options.gradient_tolerance {
            return Ok(self.stop(0.0, 0, Stop::GradientTolerance));
        }
        if self.state.iteration >= options.max_iterations {
            return Ok(self.stop(0.0, 0, Stop::MaxIterations));
        }
        self.direction();
        let ops = self.ops;
        let slope = ops.dot(&self.state.g, &self.d);
        if slope > -options.progress_tolerance {
            return Ok(self.stop(0.0, 0, Stop::DirectionalDerivative));
        }
        let t_init = if self.state.iteration == 0 {
            1f64.min(1.0 / self.state.g.iter().map(|v| v.abs()).sum::<f64>())
        } else {
            1.0
        };
        let conditions = WolfeConditions {
            c1: options.c1,
            c2: options.c2,
            max_evaluations: options.max_line_search_evaluations,
            progress_tolerance: options.progress_tolerance,
            ops,
        };
        let (state, d, x_t, g_t) = (&self.state, &self.d, &mut self.x_t, &mut self.g_t);
        let phi = |t: f64, grad: &mut [f64]| -> Result<f64> {
            for ((xt, &x), &d) in x_t.iter_mut().zip(&state.x).zip(d) {
                *xt = T::cast(x + t * d);
            }
            let f = match fun.evaluate(x_t, g_t) {
                Ok(f) => f,
                // The KL term is infinite where a unit saturates: too long a step.
                Err(Error::SaturatedActivation { .. }) => return Ok(f64::INFINITY),
                Err(e) => return Err(e),
            };
            for (g, &gt) in grad.iter_mut().zip(g_t.iter()) {
                *g = gt.as_f64();
            }
            Ok(f)
        };
        let (step, evaluations) =
            strong_wolfe(phi, state.f, slope, t_init, d, &conditions, &mut self.trial_grad, &mut self.best_grad)?;
        self.state.evaluations += evaluations;
        let Some(step) = step else {
            return Ok(self.stop(0.0, evaluations, Stop::LineSearchFailed));
        };

        let f_old = self.state.f;
        self.update(step.t, step.f);
        self.state.iteration += 1;
        let state = &self.state;
        let stop = if max_abs(&state.g) <= options.gradient_tolerance {
            Some(Stop::GradientTolerance)
        } else if step.t * max_abs(&self.d) <= options.progress_tolerance {
            Some(Stop::StepSize)
        } else if (state.f - f_old).abs() < options.progress_tolerance {
            Some(Stop::FunctionChange)
        } else if state.evaluations >= options.max_evaluations {
            Some(Stop::MaxEvaluations)
        } else if state.iteration >= options.max_iterations {
            Some(Stop::MaxIterations)
        } else {
            None
        };
        self.state.stopped = stop;
        Ok(self.report(step.t, evaluations, stop))
    }

    fn stop(&mut self, step: f64, evaluations: usize, stop: Stop) -> Iteration {
        self.state.stopped = Some(stop);
        self.report(step, evaluations, Some(stop))
    }

    fn report(&self, step: f64, evaluations: usize, stopped: Option<Stop>) -> Iteration {
        Iteration {
            iteration: self.state.iteration,
            f: self.state.f,
            gradient_norm: self.ops.dot(&self.state.g, &self.state.g).sqrt(),
            step,
            evaluations,
            stopped,
        }
    }

    /// `d = −H g` by the two-loop recursion over the correction pairs, with `H_0 = γ I`;
    /// `d = −g` before the first pair:
    ///
    /// ```text
    /// newest to oldest:  α_k = s_kᵀ d / y_kᵀ s_k,  d ← d − α_k y_k
    /// d ← γ d
    /// oldest to newest:  β_k = y_kᵀ d / y_kᵀ s_k,  d ← d + (α_k − β_k) s_k
    /// ```
    ///
    /// Each loop is one [`sweep`] over the pairs, whose updates are fused with the next
    /// pair's inner product: `d` is read once a pair rather than twice, and the pair's two
    /// vectors (100 pairs in minFunc's default, 5 MB at S1) stream side by side.
    fn direction(&mut self) {
        let LbfgsState { g, s, y, ys, oldest, gamma, .. } = &self.state;
        let (len, pairs) = (g.len(), ys.len());
        debug_assert!(s.len() == pairs * len && y.len() == pairs * len);
        // Slots from the oldest pair to the newest.
        let slots = (0..pairs).map(|i| (oldest + i) % pairs);
        let d = &mut self.d;
        d.iter_mut().zip(g).for_each(|(d, g)| *d = -g);
        let alpha = &mut self.alpha;
        alpha.clear();
        sweep(self.ops, d, len, slots.clone().rev(), s, y, |k, sd| {
            let alpha_k = sd / ys[k];
            alpha.push(alpha_k);
            -alpha_k
        });
        d.iter_mut().for_each(|d| *d *= gamma);
        let mut alphas = alpha.iter().rev();
        sweep(self.ops, d, len, slots, y, s, |k, yd| alphas.next().expect("one α per pair") - yd / ys[k]);
    }

    /// Moves to `x + t d` (whose gradient the line search left in `best_grad`) and records
    /// the correction pair, over the oldest once `history` pairs are held. A pair without
    /// clearly positive curvature, `yᵀs ≤ ε yᵀy`, is skipped (as L-BFGS-B does; minFunc's
    /// absolute `yᵀs ≤ 1e-10` would also drop the small but valid pairs of the last
    /// iterations of a run to tight tolerances).
    fn update(&mut self, t: f64, f: f64) {
        let ops = self.ops;
        let state = &mut self.state;
        let len = state.x.len();
        // trial_grad ← y = g_new − g_old; d ← s = t d.
        for ((y, new), old) in self.trial_grad.iter_mut().zip(&self.best_grad).zip(&state.g) {
            *y = new - old;
        }
        self.d.iter_mut().for_each(|d| *d *= t);
        ops.axpy(1.0, &self.d, &mut state.x);
        std::mem::swap(&mut state.g, &mut self.best_grad);
        state.f = f;
        let ys = ops.dot(&self.trial_grad, &self.d);
        let yy = ops.dot(&self.trial_grad, &self.trial_grad);
        if ys > f64::EPSILON * yy {
            if state.ys.len() < self.options.history {
                state.s.extend_from_slice(&self.d);
                state.y.extend_from_slice(&self.trial_grad);
                state.ys.push(ys);
            } else {
                let k = state.oldest;
                state.s[k * len..(k + 1) * len].copy_from_slice(&self.d);
                state.y[k * len..(k + 1) * len].copy_from_slice(&self.trial_grad);
                state.ys[k] = ys;
                state.oldest = (k + 1) % state.ys.len();
            }
            state.gamma = ys / yy;
        }
    }
}

/// One loop of the two-loop recursion: for each slot `k` of `slots` in turn,
/// `d ← d + c_k v_k` with `c_k = coefficient(k, u_kᵀ d)`, `u_k` and `v_k` the `k`-th vectors of
/// `len` values in `u` and `v`. Each update is applied in the pass that computes the next
/// slot's `u_kᵀ d`, so the result is the same as updating first, to the bit.
fn sweep(
    ops: VectorOps,
    d: &mut [f64],
    len: usize,
    slots: impl Iterator<Item = usize>,
    u: &[f64],
    v: &[f64],
    mut coefficient: impl FnMut(usize, f64) -> f64,
) {
    fn vector(all: &[f64], len: usize, k: usize) -> &[f64] {
        &all[k * len..(k + 1) * len]
    }
    // The update `(c, k)` computed but not applied yet.
    let mut pending: Option<(f64, usize)> = None;
    for k in slots {
        let inner = match pending {
            Some((c, j)) => ops.axpy_dot(c, vector(v, len, j), d, vector(u, len, k)),
            None => ops.dot(vector(u, len, k), d),
        };
        pending = Some((coefficient(k, inner), k));
    }
    if let Some((c, j)) = pending {
        ops.axpy(c, vector(v, len, j), d);
    }
}

fn check_options(options: &LbfgsOptions) -> Result<()> {
    let invalid = |name, value: f64, reason| Err(Error::InvalidHyperParameter { name, value, reason });
    if options.history == 0 {
        return invalid("history", 0.0, "must be at least 1");
    }
    if !(options.c1 > 0.0 && options.c1 < options.c2 && options.c2 < 1.0) {
        return invalid("c1, c2", options.c1, "need 0 < c1 < c2 < 1");
    }
    if options.max_line_search_evaluations == 0 {
        return invalid("max_line_search_evaluations", 0.0, "must be at least 1");
    }
    for (name, value) in
        [("gradient tolerance", options.gradient_tolerance), ("progress tolerance", options.progress_tolerance)]
    {
        if !(value >= 0.0 && value.is_finite()) {
            return invalid(name, value, "must be a finite number at least 0");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two-loop recursion as the textbooks write it: an inner product, then an update.
    fn textbook_direction(state: &LbfgsState, ops: VectorOps) -> Vec<f64> {
        let (len, pairs) = (state.g.len(), state.ys.len());
        let slots: Vec<usize> = (0..pairs).map(|i| (state.oldest + i) % pairs).collect();
        let (s, y) = (|k: usize| &state.s[k * len..(k + 1) * len], |k: usize| &state.y[k * len..(k + 1) * len]);
        let mut d: Vec<f64> = state.g.iter().map(|g| -g).collect();
        let mut alphas = Vec::new();
        for &k in slots.iter().rev() {
            let alpha = ops.dot(s(k), &d) / state.ys[k];
            ops.axpy(-alpha, y(k), &mut d);
            alphas.push(alpha);
        }
        d.iter_mut().for_each(|d| *d *= state.gamma);
        for (&k, alpha) in slots.iter().zip(alphas.iter().rev()) {
            let beta = ops.dot(y(k), &d) / state.ys[k];
            ops.axpy(alpha - beta, s(k), &mut d);
        }
        d
    }

    #[test]
    fn the_fused_two_loop_recursion_gives_the_textbook_direction_to_the_bit() {
        let (len, history) = (37, 5);
        let value = |i: usize| ((i * 7919) % 1009) as f64 / 1009.0 - 0.5;
        for pairs in 0..=history {
            for oldest in 0..pairs.max(1) {
                let state = LbfgsState {
                    x: vec![0.0; len],
                    f: 0.0,
                    g: (0..len).map(value).collect(),
                    s: (0..pairs * len).map(|i| value(i + 100)).collect(),
                    y: (0..pairs * len).map(|i| value(i + 5000)).collect(),
                    ys: (0..pairs).map(|k| 0.5 + k as f64).collect(),
                    oldest,
                    gamma: 0.75,
                    iteration: 0,
                    evaluations: 1,
                    stopped: None,
                };
                // A full ring: `resume` lays a partial one out from slot 0.
                let options = LbfgsOptions { history: pairs.max(1), ..LbfgsOptions::default() };
                let mut lbfgs = Lbfgs::<f64>::resume(options, state.clone()).unwrap();
                lbfgs.direction();
                let want = textbook_direction(&state, lbfgs.ops);
                assert!(
                    lbfgs.d.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{pairs} pairs from slot {oldest}"
                );
            }
        }
    }
}
