//! `sae generate`: a SPEC problem's timing data written to an `.npy` file of any size, a
//! block of rows at a time (for trying streaming on data larger than memory).

use std::path::PathBuf;

use clap::Args;

use super::args::parse_shape;
use super::CliResult;
use sae::data::generated::ProblemShape;
use sae::files::FilePlan;

#[derive(Debug, Args)]
#[command(allow_negative_numbers = true)]
pub struct GenerateArgs {
    /// The SPEC §3 problem whose width (n) and data distribution to use.
    #[arg(long, default_value = "S3", value_parser = parse_shape)]
    shape: ProblemShape,
    /// Rows (examples) to write [default: the shape's m].
    #[arg(long)]
    examples: Option<usize>,
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
