//! `sae export` and `sae import`: models in other tools' layouts (SAELens's folder of
//! `sae_weights.safetensors` and `cfg.json`; sparsify's of `sae.safetensors` and `cfg.json`),
//! in the model's own precision: the ReLU autoencoder as SAELens's standard SAE, a TopK model
//! as SAELens's or sparsify's TopK SAE.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::CliResult;
use sae::dictionary::interop::{self as topk_interop, Folder};
use sae::dictionary::{Selection, TopKModel};
use sae::files::FilePlan;
use sae::model::saelens::{self, CONFIG_FILE, WEIGHTS_FILE};
use sae::model::ModelFile;
use sae::Real;

/// The layouts a model is exported to or imported from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// SAELens: `sae_weights.safetensors` (W_enc, b_enc, W_dec, b_dec) and `cfg.json` in a
    /// folder; the "standard" architecture (ReLU hidden units, linear decoder) or "topk".
    Saelens,
    /// EleutherAI sparsify: `sae.safetensors` (encoder.weight, encoder.bias, W_dec, b_dec) and
    /// `cfg.json` in a folder; TopK models only.
    Sparsify,
}

impl Format {
    fn layout(self) -> Folder {
        match self {
            Format::Saelens => Folder::Saelens,
            Format::Sparsify => Folder::Sparsify,
        }
    }
}

/// Whether the model file at `path` holds a TopK model (its metadata's objective).
fn is_topk(path: &std::path::Path) -> CliResult<bool> {
    Ok(ModelFile::<f64>::read_metadata(path)?.get("objective").map(String::as_str) == Some(sae::dictionary::OBJECTIVE))
}

/// The two files of a folder in `layout`, as outputs or inputs of a plan.
fn folder_files(layout: Folder, dir: &std::path::Path) -> [std::path::PathBuf; 2] {
    [dir.join(layout.weights_file()), dir.join(layout.config_file())]
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
    let f32 = ModelFile::<f64>::read_metadata(&args.model)?.get("dtype").map(String::as_str) == Some("f32");
    match (is_topk(&args.model)?, f32) {
        (true, true) => export_topk::<f32>(&args),
        (true, false) => export_topk::<f64>(&args),
        (false, _) if args.format == Format::Sparsify => Err(format!(
            "{}: sparsify's layout holds TopK models (sae train --hidden-layer topk); this one is a sparse \
             autoencoder: --format saelens",
            args.model.display()
        )
        .into()),
        (false, true) => export_in::<f32>(&args),
        (false, false) => export_in::<f64>(&args),
    }
}

fn export_topk<T: Real>(args: &ExportArgs) -> CliResult<()> {
    let model = TopKModel::<T>::load(&args.model)?;
    let layout = args.format.layout();
    // Refused before anything is made.
    topk_interop::check_exportable(&model, layout)?;
    std::fs::create_dir_all(&args.output).map_err(|e| format!("--output {}: {e}", args.output.display()))?;
    let [weights, config] = folder_files(layout, &args.output);
    let _locks =
        FilePlan::new().input("MODEL", &args.model).output("--output", weights).output("--output", config).check()?;
    topk_interop::export(&model, layout, &args.output)?;
    println!(
        "wrote {} ({}, {}): {:?} {}, d_in = {}, {} latents{}, {}",
        args.output.display(),
        layout.weights_file(),
        layout.config_file(),
        args.format,
        model.architecture().describe(),
        model.visible(),
        model.latents(),
        // (A ReLU model has no k of its own: every positive latent is active.)
        match model.architecture().selection {
            Selection::All => String::new(),
            _ => format!(", k = {}", model.k()),
        },
        T::NAME
    );
    Ok(())
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
    let layout = args.format.layout();
    // Both kinds of SAELens folder hold the same two files: checked before either is read.
    let [weights, config] = folder_files(layout, &args.folder);
    let plan = FilePlan::new().input("FOLDER", weights).input("FOLDER", config).output("--output", &args.output);
    let _locks = plan.check()?;
    if args.format == Format::Sparsify || topk_interop::describes_topk(&args.folder, layout)? {
        return if topk_interop::is_float32(&args.folder, layout) {
            import_topk::<f32>(&args, layout)
        } else {
            import_topk::<f64>(&args, layout)
        };
    }
    if saelens::is_float32(&args.folder) {
        import_in::<f32>(&args)
    } else {
        import_in::<f64>(&args)
    }
}

fn import_topk<T: Real>(args: &ImportArgs, layout: Folder) -> CliResult<()> {
    let model = topk_interop::import::<T>(&args.folder, layout)?;
    model.save(&args.output)?;
    println!(
        "wrote {}: {}, n = {}, {} latents, k = {}, {}",
        args.output.display(),
        model.architecture().describe(),
        model.visible(),
        model.latents(),
        model.k(),
        T::NAME
    );
    Ok(())
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
