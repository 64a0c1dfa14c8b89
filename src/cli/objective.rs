//! `sae objective`: one evaluation of `J(theta)` and `∇J(theta)`, for checking the engine
//! against one's own implementation (npy in and out, UFLDL theta layout).

use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, ValueEnum};

use crate::data::generated::ProblemShape;
use crate::data::npy;
use crate::objective::{gradcheck, reference};
use crate::{Backend, Dataset, HyperParams, Objective, Parameters, Real};

#[derive(Debug, Args)]
pub struct ObjectiveArgs {
    /// Data as an m×n .npy array (float32 or float64), one example per row. Default: the
    /// --shape problem's generated data, uniform in [0.1, 0.9].
    #[arg(long)]
    data: Option<PathBuf>,
    /// A SPEC §3 problem (S1 patches, S2 MNIST-10k, S3 MNIST-60k, S4 wide): its generated data
    /// when there is no --data, and its h, λ, β and ρ unless given.
    #[arg(long, default_value = "S1", value_parser = parse_shape)]
    shape: ProblemShape,
    /// Theta as a .npy vector in the UFLDL layout [W1(:); W2(:); b1; b2] (column-major
    /// flattening). Default: the UFLDL initialisation from --seed.
    #[arg(long)]
    theta: Option<PathBuf>,
    /// h, the number of hidden units [default: from --shape]
    #[arg(long)]
    hidden: Option<usize>,
    /// λ, the weight decay [default: from --shape]
    #[arg(long)]
    lambda: Option<f64>,
    /// β, the weight of the sparsity penalty [default: from --shape]
    #[arg(long)]
    beta: Option<f64>,
    /// ρ, the sparsity target [default: from --shape]
    #[arg(long)]
    rho: Option<f64>,
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
    /// Examples per column block (default: the engine's choice).
    #[arg(long)]
    block_size: Option<usize>,
    /// Evaluations to time (the median is printed).
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// Also compute the cost and gradient with the plain per-example reference implementation
    /// (f64, slow) and print the relative differences.
    #[arg(long)]
    check: bool,
}

fn parse_shape(name: &str) -> Result<ProblemShape, String> {
    ProblemShape::named(name).ok_or_else(|| format!("unknown shape {name:?}: expected S1, S2, S3 or S4"))
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

pub fn run(args: ObjectiveArgs) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // The whole command runs inside the pool (as the benchmarks do), so the engine's serial
    // steps run on a worker beside its parallel ones rather than on the main thread.
    let pool = rayon::ThreadPoolBuilder::new().num_threads(args.threads.unwrap_or(0)).build()?;
    pool.install(|| if args.f32 { evaluate::<f32>(&args) } else { evaluate::<f64>(&args) })
}

fn evaluate<T: Real>(args: &ObjectiveArgs) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
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
            let shape = &args.shape;
            println!(
                "data: generated {} problem, {} examples × {} features, uniform in [0.1, 0.9]",
                shape.name, shape.examples, shape.visible
            );
            (shape.uniform_data(args.seed), shape.examples, shape.visible)
        }
    };
    let hidden = args.hidden.unwrap_or(args.shape.hidden);
    let lambda = args.lambda.unwrap_or(args.shape.lambda);
    let beta = args.beta.unwrap_or(args.shape.beta);
    let rho = args.rho.unwrap_or(args.shape.rho);
    let hyper = HyperParams::builder(n, hidden).lambda(lambda).beta(beta).rho(rho).build()?;
    let theta = match &args.theta {
        Some(path) => Parameters::from_theta(n, hidden, npy::read_vector::<T>(path)?)
            .map_err(|e| format!("{}: {e}", path.display()))?,
        None => Parameters::<T>::init(n, hidden, args.seed),
    };
    let data = Dataset::examples_by_features(&values, m, n)?;
    let mut objective = Objective::new(hyper, data)?;
    if let Some(backend) = args.backend {
        objective = objective.with_backend(backend.resolve()?);
    }
    if let Some(block_size) = args.block_size {
        objective = objective.with_block_size(block_size)?;
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
        "problem: n = {n}, h = {hidden}, m = {m}, λ = {lambda}, β = {beta}, ρ = {rho}, {}, {} GEMMs, {:?} kernels, {} threads",
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
