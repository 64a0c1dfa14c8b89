//! Training benchmarks (issue "Training and the `sae` tool"):
//!
//! - `ufldl_exercise`: the whole UFLDL sparse autoencoder exercise — S1 (n = 64, h = 25,
//!   10 000 patches, ρ = 0.01, λ = 1e-4, β = 3), 400 L-BFGS iterations with minFunc's
//!   settings, f64 — on the embedded natural-image patches, 1 and 2 threads;
//! - `lbfgs_overhead`: one L-BFGS iteration with a full history of 100 pairs (minFunc's) and of
//!   10 (scipy's default) on a function of S1's dimension (3 289) that costs almost nothing,
//!   i.e. the optimiser's own work per iteration, beside one S1 evaluation in the same run
//!   (`s1_evaluation`) for the ratio.
//!
//! `cargo bench --bench training`. `SAE_EXERCISE_DATA=patches.npy` writes the exercise's
//! data for the scipy comparison in PERF.md.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode};
use sae::data::images::embedded_patches;
use sae::optim::{Differentiable, Lbfgs, LbfgsOptions};
use sae::train::Trainer;
use sae::{Dataset, HyperParams, Objective, Parameters};

fn ufldl_hyper() -> HyperParams {
    HyperParams::builder(64, 25).lambda(1e-4).beta(3.0).rho(0.01).build().unwrap()
}

fn ufldl_exercise(c: &mut Criterion) {
    let (patches, m, n) = embedded_patches(1);
    if let Ok(path) = std::env::var("SAE_EXERCISE_DATA") {
        let array = ndarray::Array2::from_shape_vec((m, n), patches.clone()).unwrap();
        sae::data::npy::write_matrix(std::path::Path::new(&path), &array).unwrap();
    }
    let hyper = ufldl_hyper();
    let init = Parameters::<f64>::init(n, 25, 1);
    let mut group = c.benchmark_group("ufldl_exercise");
    group.sample_size(10).sampling_mode(SamplingMode::Flat).warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(12));
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        group.bench_function(BenchmarkId::new("f64", format!("t{threads}")), |b| {
            b.iter(|| {
                pool.install(|| {
                    let data = Dataset::examples_by_features(&patches, m, n).unwrap();
                    let mut objective = Objective::new(hyper, data).unwrap();
                    let trained = Trainer::new(LbfgsOptions::MINFUNC).fit(&mut objective, &init, |_| {}).unwrap();
                    assert_eq!(trained.iterations, 400);
                    trained.cost
                })
            })
        });
    }
    group.finish();
}

/// `½ Σ d_i x_i²` with `d_i` spread over six decades: cheap to evaluate, and ill-conditioned
/// enough that L-BFGS does not converge during the measurement.
struct CheapQuadratic {
    diagonal: Vec<f64>,
}

impl Differentiable<f64> for CheapQuadratic {
    fn dimension(&self) -> usize {
        self.diagonal.len()
    }

    fn evaluate(&mut self, x: &[f64], grad: &mut [f64]) -> sae::Result<f64> {
        let mut f = 0.0;
        for ((g, &x), &d) in grad.iter_mut().zip(x).zip(&self.diagonal) {
            *g = d * x;
            f += 0.5 * d * x * x;
        }
        Ok(f)
    }
}

fn lbfgs_overhead(c: &mut Criterion) {
    let hyper = ufldl_hyper();
    let len = sae::ThetaLayout::new(64, 25).len();
    let mut group = c.benchmark_group("lbfgs_overhead");
    group.sample_size(30);

    for history in [100, 10] {
        let mut fun = CheapQuadratic { diagonal: (0..len).map(|i| 10f64.powf(6.0 * i as f64 / len as f64)).collect() };
        let x0: Vec<f64> = (0..len).map(|i| 1.0 + (i % 7) as f64).collect();
        let options = LbfgsOptions {
            max_iterations: usize::MAX,
            max_evaluations: usize::MAX,
            gradient_tolerance: 0.0,
            progress_tolerance: 0.0,
            history,
            ..LbfgsOptions::MINFUNC
        };
        let mut lbfgs = Lbfgs::start(options, &x0, &mut fun).unwrap();
        while lbfgs.state().pairs() < history {
            lbfgs.iterate(&mut fun).unwrap();
        }
        // Iterations go on from a full history; a run that converges starts again from the
        // saved state, untimed, with one untimed iteration to touch its buffers.
        let saved = lbfgs.state().clone();
        group.bench_function(format!("iteration_with_{history}_pairs/d{len}"), |b| {
            b.iter_custom(|iterations| {
                let mut timed = Duration::ZERO;
                for _ in 0..iterations {
                    if lbfgs.state().stopped.is_some() {
                        lbfgs = Lbfgs::resume(options, saved.clone()).unwrap();
                        lbfgs.iterate(&mut fun).unwrap();
                    }
                    let start = Instant::now();
                    lbfgs.iterate(&mut fun).unwrap();
                    timed += start.elapsed();
                }
                timed
            })
        });
    }

    let (patches, m, n) = embedded_patches(1);
    let theta = Parameters::<f64>::init(n, 25, 1);
    let mut grad = vec![0.0; len];
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let mut objective = Objective::new(hyper, Dataset::examples_by_features(&patches, m, n).unwrap()).unwrap();
        // A sample's evaluations inside one `install`, as the trainer's are (see the objective
        // bench).
        group.bench_function(BenchmarkId::new("s1_evaluation/f64", format!("t{threads}")), |b| {
            b.iter_custom(|iterations| {
                let start = Instant::now();
                pool.install(|| {
                    for _ in 0..iterations {
                        objective.evaluate(theta.theta(), &mut grad).unwrap();
                    }
                });
                start.elapsed()
            })
        });
    }
    group.finish();
}

criterion_group!(training, lbfgs_overhead, ufldl_exercise);
criterion_main!(training);
