//! `sae objective`: one evaluation of `J(theta)` and `∇J(theta)`, for checking the engine
//! against one's own implementation (npy in and out, UFLDL theta layout).

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use super::args::{parse_shape, Data, DataArgs, EngineArgs, Precision, PrecisionArgs, VariantArgs};
use super::memory::peak_rss_bytes;
use super::CliResult;
use sae::data::generated::ProblemShape;
use sae::data::npy;
use sae::data::stream::{ExampleSource, SliceSource};
use sae::files::FilePlan;
use sae::gemm::products_run;
use sae::objective::{gradcheck, reference, StreamingObjective};
use sae::{Backend, Dataset, HyperParams, Isa, Objective, Parameters, Real};

#[derive(Debug, Args)]
#[command(allow_negative_numbers = true)]
pub struct ObjectiveArgs {
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    engine: EngineArgs,
    /// A SPEC §3 problem (S1 patches, S2 MNIST-10k, S3 MNIST-60k, S4 wide): its generated data
    /// (uniform in [0.1, 0.9]) when there is no --data, and its h, λ, β and ρ unless given.
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
    #[command(flatten)]
    variant: VariantArgs,
    #[command(flatten)]
    precision: PrecisionArgs,
    /// Write the gradient to this .npy file (UFLDL layout).
    #[arg(long)]
    grad_out: Option<PathBuf>,
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

pub fn run(args: ObjectiveArgs) -> CliResult<()> {
    let mut plan = args.data.read_by(FilePlan::new());
    if let Some(path) = &args.theta {
        plan = plan.input("--theta", path);
    }
    if let Some(path) = &args.grad_out {
        plan = plan.output("--grad-out", path);
    }
    let _locks = plan.check()?;
    // The whole command runs inside the pool (as the benchmarks do), so the engine's serial
    // steps run on a worker beside its parallel ones rather than on the main thread.
    let (precision, why) = args.precision.resolve(args.data.data.as_deref())?;
    println!("precision: {} ({why})", if precision == Precision::F32 { "f32" } else { "f64" });
    args.engine.pool()?.install(|| match precision {
        Precision::F32 => evaluate::<f32>(&args),
        Precision::F64 => evaluate::<f64>(&args),
    })
}

/// What one run of evaluations produced.
struct Evaluated<T> {
    cost: f64,
    grad: Vec<T>,
    rho_hat: Vec<f64>,
    examples: usize,
    /// Seconds per evaluation, sorted.
    times: Vec<f64>,
    engine: String,
}

/// Runs `evaluate` `repeat` times (at least once), timing each.
fn timed<T: Real>(
    repeat: usize,
    theta_len: usize,
    mut evaluate: impl FnMut(&mut [T]) -> sae::Result<f64>,
) -> sae::Result<(f64, Vec<T>, Vec<f64>)> {
    let mut grad = vec![T::zero(); theta_len];
    let mut times = Vec::new();
    let mut cost = 0.0;
    for _ in 0..repeat.max(1) {
        let start = Instant::now();
        cost = evaluate(&mut grad)?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok((cost, grad, times))
}

fn evaluate<T: Real>(args: &ObjectiveArgs) -> CliResult<()> {
    if args.data.stream && args.check {
        return Err("--check needs the whole data set in memory: drop --stream".into());
    }
    let shape = args.shape;
    let (data, description) = args.data.load::<T>(|| {
        let description = format!(
            "generated {} problem, {} examples × {} features, uniform in [0.1, 0.9]",
            shape.name, shape.examples, shape.visible
        );
        Ok((shape.uniform_data(args.seed), shape.examples, shape.visible, description))
    })?;
    println!("data: {description}");
    let n = data.features();
    let hidden = args.hidden.unwrap_or(args.shape.hidden);
    let lambda = args.lambda.unwrap_or(args.shape.lambda);
    let beta = args.beta.unwrap_or(args.shape.beta);
    let rho = args.rho.unwrap_or(args.shape.rho);
    let hyper = args.variant.apply(HyperParams::builder(n, hidden).lambda(lambda).beta(beta).rho(rho))?.build()?;
    let theta = match &args.theta {
        Some(path) => Parameters::from_theta(n, hidden, npy::read_vector::<T>(path)?)
            .map_err(|e| format!("{}: {e}", path.display()))?,
        None => Parameters::<T>::init(n, hidden, args.seed),
    };
    let theta = theta.theta();

    let (result, values) = match data {
        Data::Source(source) => (streamed(args, hyper, theta, source)?, None),
        Data::Values { values, examples, .. } => {
            let result = if args.data.stream {
                streamed(args, hyper, theta, SliceSource::new(&values, n)?)?
            } else {
                in_memory(args, hyper, theta, &values, examples)?
            };
            (result, Some(values))
        }
    };
    report::<T>(&hyper, &result);
    if let (true, Some(values)) = (args.check, &values) {
        check(&hyper, values, theta, &result)?;
    }
    if let Some(path) = &args.grad_out {
        npy::write_vector(path, &result.grad)?;
        println!("gradient written to {}", path.display());
    }
    Ok(())
}

fn in_memory<T: Real>(
    args: &ObjectiveArgs,
    hyper: HyperParams,
    theta: &[T],
    values: &[T],
    examples: usize,
) -> CliResult<Evaluated<T>> {
    let data = Dataset::examples_by_features(values, examples, hyper.visible())?;
    let mut objective = Objective::new(hyper, data)?;
    if let Some(backend) = args.engine.backend()? {
        objective = objective.with_backend(backend);
    }
    if let Some(block_size) = args.block_size {
        objective = objective.with_block_size(block_size)?;
    }
    let (cost, grad, times) = timed(args.repeat, theta.len(), |grad| objective.evaluate(theta, grad))?;
    let engine = format!("in memory, {}", kernels_used(objective.backend(), objective.isa()));
    Ok(Evaluated { cost, grad, rho_hat: objective.rho_hat().to_vec(), examples, times, engine })
}

fn streamed<T: Real, S: ExampleSource<T> + Send>(
    args: &ObjectiveArgs,
    hyper: HyperParams,
    theta: &[T],
    source: S,
) -> CliResult<Evaluated<T>> {
    let mode = args.data.stream_mode;
    let mut objective = StreamingObjective::new(hyper, source, args.data.chunk(), mode)?;
    if let Some(backend) = args.engine.backend()? {
        objective = objective.with_backend(backend);
    }
    if let Some(block_size) = args.block_size {
        objective = objective.with_block_size(block_size)?;
    }
    let (cost, grad, times) = timed(args.repeat, theta.len(), |grad| objective.evaluate(theta, grad))?;
    let engine = format!(
        "streamed {mode:?} in chunks of {} examples, {}",
        objective.chunk(),
        kernels_used(objective.backend(), objective.isa())
    );
    Ok(Evaluated { cost, grad, rho_hat: objective.rho_hat().to_vec(), examples: objective.examples(), times, engine })
}

/// The GEMM back-end and instruction set that ran, with the count of native products run on
/// that set (the proof that a forced `SAE_ISA` took effect).
fn kernels_used(backend: Backend, isa: Isa) -> String {
    match backend {
        Backend::Native => {
            format!("native GEMMs ({} products on {}), {} kernels", products_run(isa), isa.name(), isa.name())
        }
        other => format!("{} GEMMs, {} kernels", other.name(), isa.name()),
    }
}

fn report<T: Real>(hyper: &HyperParams, result: &Evaluated<T>) {
    let (n, m) = (hyper.visible(), result.examples);
    let grad_norm = result.grad.iter().map(|g| g.as_f64() * g.as_f64()).sum::<f64>().sqrt();
    let (rho_min, rho_max) = result.rho_hat.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &r| (lo.min(r), hi.max(r)));
    let median = result.times[result.times.len() / 2];
    println!(
        "problem: n = {n}, h = {}, m = {m}, λ = {}, β = {}, ρ = {}, {}, {}, {} threads",
        hyper.hidden(),
        hyper.lambda(),
        hyper.beta(),
        hyper.rho(),
        T::NAME,
        result.engine,
        rayon::current_num_threads()
    );
    println!("cost      = {:.17e}", result.cost);
    println!("‖grad‖₂   = {grad_norm:.17e}");
    println!("rho_hat   in [{rho_min:.6e}, {rho_max:.6e}]");
    println!("time      = {:.3} ms (median of {})", median * 1e3, result.times.len());
    let bytes = (m * n * std::mem::size_of::<T>()) as f64;
    println!("throughput = {:.0} examples/s, {:.2} GB/s of data", m as f64 / median, bytes / median / 1e9);
    if let Some(peak) = peak_rss_bytes() {
        println!("peak RSS  = {:.1} MB", peak as f64 / 1e6);
    }
}

fn check<T: Real>(hyper: &HyperParams, values: &[T], theta: &[T], result: &Evaluated<T>) -> CliResult<()> {
    let (n, m) = (hyper.visible(), result.examples);
    let values64: Vec<f64> = values.iter().map(|v| v.as_f64()).collect();
    let theta64: Vec<f64> = theta.iter().map(|v| v.as_f64()).collect();
    let data64 = Dataset::examples_by_features(&values64, m, n)?;
    let (ref_cost, ref_grad) = reference::cost_and_gradient(hyper, &data64, &theta64)?;
    let grad64: Vec<f64> = result.grad.iter().map(|g| g.as_f64()).collect();
    println!(
        "reference cost = {ref_cost:.17e} (relative difference {:.3e})",
        (result.cost - ref_cost).abs() / ref_cost.abs()
    );
    println!("reference grad: ‖ref − grad‖/‖ref + grad‖ = {:.3e}", gradcheck::relative_difference(&ref_grad, &grad64));
    Ok(())
}
