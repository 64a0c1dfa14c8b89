//! `sae generate`: a SPEC problem's timing data, or planted-dictionary data (whose dictionary
//! is known, for measuring what a sparse dictionary learns), written to an `.npy` file of any
//! size, a block of rows at a time (for trying streaming on data larger than memory).

use std::path::PathBuf;

use clap::Args;

use super::args::parse_shape;
use super::CliResult;
use sae::data::generated::ProblemShape;
use sae::data::planted::PlantedDictionary;
use sae::files::FilePlan;

#[derive(Debug, Args)]
#[command(allow_negative_numbers = true)]
pub struct GenerateArgs {
    /// The SPEC §3 problem whose width (n) and data distribution to use.
    #[arg(long, default_value = "S3", value_parser = parse_shape)]
    shape: ProblemShape,
    /// Rows (examples) to write [default: the shape's m; 100 000 planted].
    #[arg(long)]
    examples: Option<usize>,
    /// Planted-dictionary data instead of a shape's: each example the sum of --active of
    /// --atoms random unit directions in --features dimensions, with magnitudes uniform in
    /// [0.5, 2.5], plus Gaussian noise of standard deviation --noise.
    #[arg(long, conflicts_with = "shape")]
    planted: bool,
    /// Planted data: the dimension n of the examples.
    #[arg(long, requires = "planted", default_value_t = 128)]
    features: usize,
    /// Planted data: the number of planted directions.
    #[arg(long, requires = "planted", default_value_t = 512)]
    atoms: usize,
    /// Planted data: the directions summed in each example.
    #[arg(long, requires = "planted", default_value_t = 4)]
    active: usize,
    /// Planted data: the standard deviation of the noise.
    #[arg(long, requires = "planted", default_value_t = 0.01)]
    noise: f64,
    /// Planted data: also write the planted directions (atoms × features, unit rows, float64)
    /// to this .npy file.
    #[arg(long, requires = "planted", value_name = "FILE")]
    dictionary: Option<PathBuf>,
    /// Write float32 (default float64).
    #[arg(long)]
    f32: bool,
    /// Seed of the data (the first rows equal `sae objective --shape S --seed SEED`'s data).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The .npy file to write (atomically).
    #[arg(short, long)]
    output: PathBuf,
}

pub fn run(args: GenerateArgs) -> CliResult<()> {
    if args.planted {
        return planted(&args);
    }
    let _locks = FilePlan::new().output("--output", &args.output).check()?;
    let examples = args.examples.unwrap_or(args.shape.examples);
    if args.f32 {
        args.shape.write_uniform_npy::<f32>(&args.output, examples, args.seed)?;
    } else {
        args.shape.write_uniform_npy::<f64>(&args.output, examples, args.seed)?;
    }
    let bytes = std::fs::metadata(&args.output).map(|m| m.len()).unwrap_or(0);
    println!(
        "wrote {}: {examples} × {} {}, {:.2} GB",
        args.output.display(),
        args.shape.visible,
        if args.f32 { "float32" } else { "float64" },
        bytes as f64 / 1e9
    );
    Ok(())
}

/// `sae generate --planted`.
fn planted(args: &GenerateArgs) -> CliResult<()> {
    let mut plan = FilePlan::new().output("--output", &args.output);
    if let Some(dictionary) = &args.dictionary {
        plan = plan.output("--dictionary", dictionary);
    }
    let _locks = plan.check()?;
    let planted = PlantedDictionary {
        features: args.features,
        atoms: args.atoms,
        active: args.active,
        noise: args.noise,
        ..PlantedDictionary::default()
    };
    planted.check()?;
    let examples = args.examples.unwrap_or(100_000);
    if args.f32 {
        planted.write_npy::<f32>(&args.output, examples, args.seed)?;
    } else {
        planted.write_npy::<f64>(&args.output, examples, args.seed)?;
    }
    println!(
        "wrote {}: {examples} × {} {}, each the sum of {} of {} planted unit directions (magnitudes in [{}, {}]) \
         plus noise of σ = {}",
        args.output.display(),
        planted.features,
        if args.f32 { "float32" } else { "float64" },
        planted.active,
        planted.atoms,
        planted.magnitudes.0,
        planted.magnitudes.1,
        planted.noise
    );
    if let Some(path) = &args.dictionary {
        let directions = planted.directions(args.seed)?;
        let array = ndarray::Array2::from_shape_vec((planted.atoms, planted.features), directions)
            .expect("atoms × features values");
        sae::data::npy::write_matrix(path, &array)?;
        println!("wrote {}: the {} planted directions", path.display(), planted.atoms);
    }
    Ok(())
}
