//! `sae objective`: one evaluation of `J(theta)` and `∇J(theta)`, for checking the engine
//! against one's own implementation (npy in and out, UFLDL theta layout).

use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, ValueEnum};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::data::npy;
use crate::objective::{gradcheck, reference};
use crate::{Backend, Dataset, HyperParams, Objective, Parameters, Real};

#[derive(Debug, Args)]
pub struct ObjectiveArgs {
    /// Data as an m×n .npy array (float32 or float64), one example per row. Default:
    /// generated S1 data, uniform in [0.1, 0.9].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Theta as a .npy vector in the UFLDL layout [W1(:); W2(:); b1; b2] (column-major
    /// flattening). Default: the UFLDL initialisation from --seed.
    #[arg(long)]
    theta: Option<PathBuf>,
    /// h, the number of hidden units.
    #[arg(long, default_value_t = 25)]
    hidden: usize,
    /// λ, the weight decay.
    #[arg(long, default_value_t = 1e-4)]
    lambda: f64,
    /// β, the weight of the sparsity penalty.
    #[arg(long, default_value_t = 3.0)]
    beta: f64,
    /// ρ, the sparsity target.
    #[arg(long, default_value_t = 0.01)]
    rho: f64,
    /// Compute in f32 (default f64).
    #[arg(long)]
    f32: bool,
    /// Write the gradient to this .npy file (UFLDL layout).
    #[arg(long)]
    grad_out: Option<PathBuf>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// GEMM back-end (default: openblas when compiled in).
    #[arg(long, value_enum)]
    backend: Option<BackendArg>,
    /// Seed of the generated data and of the initial theta.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Evaluations to time (the median is printed).
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// Also compute the cost and gradient with the plain per-example reference implementation
    /// (f64, slow) and print the relative differences.
    #[arg(long)]
    check: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum BackendArg {
    Matrixmultiply,
    Openblas,
}

impl BackendArg {
    fn resolve(self) -> Result<Backend, String> {
        match self {
            BackendArg::Matrixmultiply => Ok(Backend::MatrixMultiply),
            #[cfg(feature = "openblas")]
            BackendArg::Openblas => Ok(Backend::OpenBlas),
            #[cfg(not(feature = "openblas"))]
            BackendArg::Openblas => {
                Err("this build has no OpenBLAS back-end: rebuild with `--features openblas`".into())
            }
        }
    }
}

pub fn run(args: ObjectiveArgs) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(threads) = args.threads {
        rayon::ThreadPoolBuilder::new().num_threads(threads).build_global()?;
    }
    if args.f32 {
        evaluate::<f32>(&args)
    } else {
        evaluate::<f64>(&args)
    }
}

/// SPEC S1's shape for the generated default problem.
const GENERATED_EXAMPLES: usize = 10_000;
const GENERATED_FEATURES: usize = 64;

fn evaluate<T: Real>(args: &ObjectiveArgs) -> Result<(), Box<dyn std::error::Error>> {
    let (values, m, n) = match &args.data {
        Some(path) => {
            let array = npy::read_matrix::<T>(path)?;
            let (m, n) = array.dim();
            let values = if array.is_standard_layout() {
                array.into_raw_vec_and_offset().0
            } else {
                array.iter().copied().collect()
            };
            (values, m, n)
        }
        None => {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(args.seed);
            let values =
                (0..GENERATED_EXAMPLES * GENERATED_FEATURES).map(|_| T::cast(rng.gen_range(0.1..0.9))).collect();
            println!(
                "data: generated, {GENERATED_EXAMPLES} examples × {GENERATED_FEATURES} features, uniform in [0.1, 0.9]"
            );
            (values, GENERATED_EXAMPLES, GENERATED_FEATURES)
        }
    };
    let hyper = HyperParams::builder(n, args.hidden).lambda(args.lambda).beta(args.beta).rho(args.rho).build()?;
    let theta = match &args.theta {
        Some(path) => Parameters::from_theta(n, args.hidden, npy::read_vector::<T>(path)?)
            .map_err(|e| format!("{}: {e}", path.display()))?,
        None => Parameters::<T>::init(n, args.hidden, args.seed),
    };
    let data = Dataset::examples_by_features(&values, m, n)?;
    let mut objective = Objective::new(hyper, data)?;
    if let Some(backend) = args.backend {
        objective = objective.with_backend(backend.resolve()?);
    }
    let mut grad = vec![T::zero(); theta.theta().len()];

    let mut times = Vec::new();
    let mut cost = 0.0;
    for _ in 0..args.repeat.max(1) {
        let start = Instant::now();
        cost = objective.evaluate(theta.theta(), &mut grad)?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let grad_norm = grad.iter().map(|g| g.as_f64() * g.as_f64()).sum::<f64>().sqrt();
    let (rho_min, rho_max) =
        objective.rho_hat().iter().fold((f64::MAX, f64::MIN), |(lo, hi), &r| (lo.min(r), hi.max(r)));
    println!(
        "problem: n = {n}, h = {}, m = {m}, λ = {}, β = {}, ρ = {}, {}, {} GEMMs, {:?} kernels, {} threads",
        args.hidden,
        args.lambda,
        args.beta,
        args.rho,
        T::NAME,
        objective.backend().name(),
        objective.isa(),
        rayon::current_num_threads()
    );
    println!("cost      = {cost:.17e}");
    println!("‖grad‖₂   = {grad_norm:.17e}");
    println!("rho_hat   in [{rho_min:.6e}, {rho_max:.6e}]");
    println!("time      = {:.3} ms (median of {})", times[times.len() / 2] * 1e3, times.len());

    if args.check {
        let values64: Vec<f64> = values.iter().map(|v| v.as_f64()).collect();
        let theta64: Vec<f64> = theta.theta().iter().map(|v| v.as_f64()).collect();
        let data64 = Dataset::examples_by_features(&values64, m, n)?;
        let (ref_cost, ref_grad) = reference::cost_and_gradient(&hyper, &data64, &theta64)?;
        let grad64: Vec<f64> = grad.iter().map(|g| g.as_f64()).collect();
        println!(
            "reference cost = {ref_cost:.17e} (relative difference {:.3e})",
            (cost - ref_cost).abs() / ref_cost.abs()
        );
        println!(
            "reference grad: ‖ref − grad‖/‖ref + grad‖ = {:.3e}",
            gradcheck::relative_difference(&ref_grad, &grad64)
        );
    }
    if let Some(path) = &args.grad_out {
        npy::write_vector(path, &grad)?;
        println!("gradient written to {}", path.display());
    }
    Ok(())
}
