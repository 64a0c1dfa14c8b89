//! `sae export` and `sae import`: models in other tools' layouts (SAELens's folder of
//! `sae_weights.safetensors` and `cfg.json`), in the model's own precision.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::CliResult;
use sae::files::FilePlan;
use sae::model::saelens::{self, CONFIG_FILE, WEIGHTS_FILE};
use sae::model::ModelFile;
use sae::Real;

/// The layouts a model is exported to or imported from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// SAELens: `sae_weights.safetensors` (W_enc, b_enc, W_dec, b_dec) and `cfg.json` in a
    /// folder; the "standard" architecture (ReLU hidden units, linear decoder).
    Saelens,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The model file (written by `sae train`).
    model: PathBuf,
    /// The layout to write.
    #[arg(long, value_enum, default_value = "saelens")]
    format: Format,
    /// The folder to write into (made if missing; its two files are written atomically).
    #[arg(short, long)]
    output: PathBuf,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The folder to read.
    folder: PathBuf,
    /// The layout it is in.
    #[arg(long, value_enum, default_value = "saelens")]
    format: Format,
    /// The model file to write (atomically).
    #[arg(short, long)]
    output: PathBuf,
}

pub fn export(args: ExportArgs) -> CliResult<()> {
    let Format::Saelens = args.format;
    match ModelFile::<f64>::read_metadata(&args.model)?.get("dtype").map(String::as_str) {
        Some("f32") => export_in::<f32>(&args),
        _ => export_in::<f64>(&args),
    }
}

fn export_in<T: Real>(args: &ExportArgs) -> CliResult<()> {
    let model = ModelFile::<T>::load(&args.model)?;
    // Refused before anything is made.
    if let Some(reason) = saelens::unrepresentable(&model.hyper) {
        return Err(format!("{}: cannot be written for SAELens: {reason}", args.model.display()).into());
    }
    std::fs::create_dir_all(&args.output).map_err(|e| format!("--output {}: {e}", args.output.display()))?;
    let plan = FilePlan::new()
        .input("MODEL", &args.model)
        .output("--output", args.output.join(WEIGHTS_FILE))
        .output("--output", args.output.join(CONFIG_FILE));
    let _locks = plan.check()?;
    saelens::export(&model, &args.output)?;
    println!(
        "wrote {} ({WEIGHTS_FILE}, {CONFIG_FILE}): SAELens standard SAE, d_in = {}, d_sae = {}, {}",
        args.output.display(),
        model.hyper.visible(),
        model.hyper.hidden(),
        T::NAME
    );
    Ok(())
}

pub fn import(args: ImportArgs) -> CliResult<()> {
    let Format::Saelens = args.format;
    let plan = FilePlan::new()
        .input("FOLDER", args.folder.join(WEIGHTS_FILE))
        .input("FOLDER", args.folder.join(CONFIG_FILE))
        .output("--output", &args.output);
    let _locks = plan.check()?;
    if saelens::is_float32(&args.folder) {
        import_in::<f32>(&args)
    } else {
        import_in::<f64>(&args)
    }
}

fn import_in<T: Real>(args: &ImportArgs) -> CliResult<()> {
    let model = saelens::import::<T>(&args.folder)?;
    model.save(&args.output)?;
    println!(
        "wrote {}: n = {}, h = {}, ReLU hidden units, linear outputs, {}",
        args.output.display(),
        model.hyper.visible(),
        model.hyper.hidden(),
        T::NAME
    );
    Ok(())
}
