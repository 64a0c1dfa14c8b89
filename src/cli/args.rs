//! Arguments and steps shared by the subcommands: where the data comes from, the engine's
//! threads and back-end.

use std::path::{Path, PathBuf};

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, ValueEnum};

use super::CliResult;
use sae::data::generated::ProblemShape;
use sae::data::npy::{self, NpyDtype};
use sae::data::npy_source::{NpyFileSource, ShardSource};
use sae::data::stream::{ExampleSource, SeekableSource};
use sae::exercises::MnistFiles;
use sae::files::FilePlan;
use sae::model::{Activation, Corruption, HyperParamsBuilder, Reconstruction, SparsityPenalty};
use sae::objective::StreamMode;
use sae::optim::{Decay, Schedule};
use sae::{Backend, Real};

/// Where the data set comes from, and whether to stream it.
#[derive(Debug, Args)]
#[command(next_help_heading = "Data")]
pub struct DataArgs {
    /// Data as an m×n .npy array (float32 or float64, C or Fortran order), one example per
    /// row; with --stream also a directory of such .npy shards, read in name order.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Read the data a chunk at a time instead of loading it; memory stays bounded by
    /// --chunk whatever the size of the data.
    #[arg(long)]
    pub stream: bool,
    /// Examples per chunk when streaming (and in encode and reconstruct, which always read a
    /// chunk at a time) [default: 4096].
    #[arg(long)]
    chunk: Option<usize>,
    /// How to stream: one read of the data with the sparsity term deferred, or the UFLDL
    /// notes' two passes.
    #[arg(long, value_parser = by_name(&StreamMode::ALL, StreamMode::name, StreamMode::summary),
          default_value = "one-pass", requires = "stream")]
    pub stream_mode: StreamMode,
    /// A data file given without --data: refused with a hint rather than clap's "unexpected
    /// argument".
    #[arg(hide = true, value_name = "DATA")]
    pub positional: Option<PathBuf>,
}

/// The data set as a command got it: values in memory, or a file source to stream.
pub enum Data<T> {
    Values { values: Vec<T>, examples: usize, features: usize },
    Source(Box<dyn SeekableSource<T> + Send>),
}

impl DataArgs {
    /// `plan` with --data as an input.
    pub fn read_by(&self, plan: FilePlan) -> FilePlan {
        match &self.data {
            Some(path) => plan.input("--data", path),
            None => plan,
        }
    }

    /// `--chunk`, or its default.
    pub fn chunk(&self) -> usize {
        self.chunk.unwrap_or(4096)
    }

    /// Opens --data, or takes `default()` (values, m, n, description) without it; returns it
    /// with a description of what it got. Fails when --chunk is given for data read whole.
    pub fn load<T: Real>(
        &self,
        default: impl FnOnce() -> CliResult<(Vec<T>, usize, usize, String)>,
    ) -> CliResult<(Data<T>, String)> {
        self.refuse_positional()?;
        if self.chunk.is_some() && !self.stream {
            return Err("--chunk is the size of the chunks of --stream: add --stream, or drop --chunk".into());
        }
        Ok(match &self.data {
            Some(path) if path.is_dir() && !self.stream => {
                return Err(format!(
                    "--data {}: a directory of shards is read with --stream (a chunk at a time)",
                    path.display()
                )
                .into())
            }
            Some(path) if self.stream => {
                let (source, description) = stream(path)?;
                (Data::Source(source), description)
            }
            Some(path) => {
                let (values, examples, features) = read_examples::<T>(path)?;
                let description = format!("{} ({examples} examples × {features})", path.display());
                (Data::Values { values, examples, features }, description)
            }
            None => {
                let (values, examples, features, description) = default()?;
                (Data::Values { values, examples, features }, description)
            }
        })
    }

    /// Opens --data (required) to be read a chunk at a time whether --stream was given or not:
    /// for commands that never need more than a chunk in memory.
    pub fn open_stream<T: Real>(&self) -> CliResult<(Box<dyn SeekableSource<T> + Send>, String)> {
        self.refuse_positional()?;
        stream(self.data.as_ref().ok_or("--data is required")?)
    }

    /// A data file given without --data is an error with the hint.
    fn refuse_positional(&self) -> CliResult<()> {
        match &self.positional {
            Some(path) => Err(format!("{}: the data is given with --data (--data {0})", path.display()).into()),
            None => Ok(()),
        }
    }
}

/// The m×n array of the `.npy` file at `path` in memory, row-major whatever the file's order,
/// with m and n.
pub fn read_examples<T: Real>(path: &Path) -> CliResult<(Vec<T>, usize, usize)> {
    let array = npy::read_matrix::<T>(path)?;
    let (examples, features) = array.dim();
    let values =
        if array.is_standard_layout() { array.into_raw_vec_and_offset().0 } else { array.iter().copied().collect() };
    Ok((values, examples, features))
}

/// A source reading `path` a chunk at a time: a directory of shards or one `.npy` file.
fn stream<T: Real>(path: &Path) -> CliResult<(Box<dyn SeekableSource<T> + Send>, String)> {
    if path.is_dir() {
        let shards = ShardSource::from_dir(path)?;
        let description = format!(
            "{} shards in {} ({} examples × {}), streamed",
            shards.shards().len(),
            path.display(),
            shards.examples(),
            shards.features()
        );
        return Ok((Box::new(shards), description));
    }
    let file = NpyFileSource::open(path)?;
    let description = format!("{} ({} examples × {}), streamed", path.display(), file.examples(), file.features());
    Ok((Box::new(file), description))
}

impl<T: Real> Data<T> {
    /// `n`
    pub fn features(&self) -> usize {
        match self {
            Data::Values { features, .. } => *features,
            Data::Source(source) => source.features(),
        }
    }
}

/// The learning rate's schedule of minibatch training ([`Schedule`]).
#[derive(Debug, Args)]
pub struct ScheduleArgs {
    /// Minibatch training: raise the learning rate linearly over this many first steps (the
    /// first at 1/STEPS of it).
    #[arg(help_heading = "Optimiser", long, value_name = "STEPS", default_value_t = 0)]
    pub lr_warmup: u64,
    /// Minibatch training: lower the learning rate towards 0 at the run's end, from
    /// --lr-decay-start on.
    #[arg(help_heading = "Optimiser", long, value_enum, default_value_t = DecayArg::None)]
    pub lr_decay: DecayArg,
    /// Minibatch training: where --lr-decay starts, as a fraction of the run's steps (of all
    /// its --epochs, those before a --resume included) [default: 0.8].
    #[arg(help_heading = "Optimiser", long, value_name = "FRACTION")]
    pub lr_decay_start: Option<f64>,
}

/// [`Decay`]'s shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DecayArg {
    None,
    Linear,
    Cosine,
}

impl ScheduleArgs {
    pub fn schedule(&self) -> Schedule {
        let decay = match self.lr_decay {
            DecayArg::None => Decay::None,
            DecayArg::Linear => Decay::Linear,
            DecayArg::Cosine => Decay::Cosine,
        };
        let decay_start = self.lr_decay_start.unwrap_or(Schedule::CONSTANT.decay_start);
        Schedule { warmup_steps: self.lr_warmup, decay, decay_start }
    }

    /// Refuses, by flag, a schedule that cannot be (`minibatch`: whether the run has a
    /// learning rate to schedule).
    pub fn check(&self, minibatch: bool) -> CliResult<()> {
        let given = self.lr_warmup > 0 || self.lr_decay != DecayArg::None || self.lr_decay_start.is_some();
        if given && !minibatch {
            return Err("--lr-warmup, --lr-decay and --lr-decay-start shape the learning rate of minibatch training \
                        (--optimizer adam or sgd): L-BFGS has no learning rate"
                .into());
        }
        match self.lr_decay_start {
            Some(_) if self.lr_decay == DecayArg::None => {
                Err("--lr-decay-start: where --lr-decay starts; give --lr-decay linear or cosine".into())
            }
            Some(start) if !(0.0..1.0).contains(&start) => {
                Err(format!("--lr-decay-start {start}: a fraction of the run's steps, in [0, 1)").into())
            }
            _ => Ok(()),
        }
    }
}

/// The working precision: asked for, or the data file's own; data without a float dtype (the
/// embedded patches, MNIST's bytes) has the command's default.
#[derive(Debug, Args)]
#[command(next_help_heading = "Precision")]
pub struct PrecisionArgs {
    /// Compute in f32 [default: the data file's dtype; without one, f64 for the UFLDL-sized
    /// commands (train's embedded patches, objective's problems) and f32 for MNIST's].
    #[arg(long, conflicts_with = "f64")]
    pub f32: bool,
    /// Compute in f64 (an f32 data file then takes twice its size in memory).
    #[arg(long)]
    pub f64: bool,
}

/// A working precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    F32,
    F64,
}

impl PrecisionArgs {
    /// The precision asked for, else f32: for MNIST's bytes, which have no float dtype of their
    /// own (f32 holds `k/255` to 7 digits, and runs twice as fast).
    pub fn resolve_mnist(&self) -> (Precision, &'static str) {
        if self.f64 {
            (Precision::F64, "--f64")
        } else if self.f32 {
            (Precision::F32, "--f32")
        } else {
            (Precision::F32, "the default for MNIST")
        }
    }

    /// The precision asked for, else that of `data`'s file (the first shard of a folder),
    /// else f64; with the reason, for the run's header.
    pub fn resolve(&self, data: Option<&Path>) -> CliResult<(Precision, &'static str)> {
        if self.f32 {
            return Ok((Precision::F32, "--f32"));
        }
        if self.f64 {
            return Ok((Precision::F64, "--f64"));
        }
        let Some(path) = data else {
            return Ok((Precision::F64, "the default"));
        };
        let file = if path.is_dir() { first_npy(path)? } else { Some(path.to_path_buf()) };
        let Some(file) = file else {
            return Ok((Precision::F64, "the default"));
        };
        Ok(match npy::inspect(&file)?.dtype {
            NpyDtype::F32 => (Precision::F32, "the data's dtype"),
            NpyDtype::F64 => (Precision::F64, "the data's dtype"),
        })
    }
}

/// The first `.npy` file of a folder in name order (the first shard read).
fn first_npy(dir: &Path) -> CliResult<Option<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> =
        entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "npy")).collect();
    files.sort();
    Ok(files.into_iter().next())
}

/// The engine's threads and GEMM back-end.
#[derive(Debug, Args)]
#[command(next_help_heading = "Engine")]
pub struct EngineArgs {
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// GEMM back-end: the engine's own (`native`, the default), `matrixmultiply`, or `openblas`
    /// when compiled in.
    #[arg(long, value_enum)]
    pub backend: Option<BackendArg>,
}

impl EngineArgs {
    /// The rayon pool to run a command in. Running the whole command inside it (as the
    /// benchmarks do) puts the engine's serial steps on a worker beside its parallel ones.
    pub fn pool(&self) -> CliResult<rayon::ThreadPool> {
        Ok(rayon::ThreadPoolBuilder::new().num_threads(self.threads.unwrap_or(0)).build()?)
    }

    /// Makes the global pool `--threads` threads (all cores without it), for a command whose
    /// work cannot move to another pool's thread (an MPI process's communicator stays on the
    /// thread that made it).
    #[cfg(feature = "mpi")]
    pub fn global_pool(&self) -> CliResult<()> {
        Ok(rayon::ThreadPoolBuilder::new().num_threads(self.threads.unwrap_or(0)).build_global()?)
    }

    /// The back-end asked for, if any.
    pub fn backend(&self) -> Result<Option<Backend>, String> {
        self.backend.map(BackendArg::resolve).transpose()
    }
}

pub fn parse_shape(name: &str) -> Result<ProblemShape, String> {
    ProblemShape::named(name).ok_or_else(|| format!("unknown shape {name:?}: expected S1, S2, S3 or S4"))
}

/// A clap parser of a library enum by the names files and the command line spell it with
/// (`name`), each listed in --help with its `summary`: the enum itself is the one definition.
pub fn by_name<E: Copy + Send + Sync + 'static>(
    all: &'static [E],
    name: fn(E) -> &'static str,
    summary: fn(E) -> &'static str,
) -> impl TypedValueParser<Value = E> {
    let values = all.iter().map(move |&value| PossibleValue::new(name(value)).help(summary(value)));
    PossibleValuesParser::new(values)
        .map(move |text| *all.iter().find(|&&value| name(value) == text).expect("one of the possible values"))
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BackendArg {
    Native,
    Matrixmultiply,
    Openblas,
}

impl BackendArg {
    fn resolve(self) -> Result<Backend, String> {
        match self {
            BackendArg::Native => Ok(Backend::Native),
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

/// Which member of the autoencoder family: units, loss, penalties, tying and corruption.
#[derive(Debug, Args)]
#[command(next_help_heading = "Model")]
pub struct VariantArgs {
    /// The sparsity penalty.
    #[arg(long, value_parser = by_name(&SparsityPenalty::ALL, SparsityPenalty::name, SparsityPenalty::summary),
          default_value = "kl")]
    pub penalty: SparsityPenalty,
    /// The hidden units' activation (tanh: the sparsity penalty acts on (a + 1)/2; relu: only
    /// with --penalty l1 or --beta 0).
    #[arg(long, value_parser = by_name(&Activation::ALL, Activation::name, Activation::summary),
          default_value = "sigmoid")]
    pub activation: Activation,
    /// The output units: sigmoid (data in [0, 1]) or linear (unbounded data).
    #[arg(long, value_enum, default_value = "sigmoid")]
    pub output_units: OutputArg,
    /// The reconstruction loss (cross-entropy needs sigmoid output units).
    #[arg(long, value_enum, default_value = "squared")]
    pub loss: LossArg,
    /// λ_c, the weight of the contractive penalty λ_c ‖∂a2/∂x‖²_F (best with --tied).
    #[arg(long, default_value_t = 0.0)]
    pub contractive: f64,
    /// Tie the decoder's weights to the encoder's: W2 = W1ᵀ.
    #[arg(long)]
    pub tied: bool,
    /// Denoising: corrupt the input with `masking:P` (each value zeroed with probability P) or
    /// `gaussian:S` (additive noise of standard deviation S); the loss compares with the clean
    /// input.
    #[arg(long, value_parser = parse_corruption)]
    pub denoise: Option<Corruption>,
    /// Seed of the corruption noise.
    #[arg(long, default_value_t = 1)]
    pub noise_seed: u64,
}

impl VariantArgs {
    /// The reconstruction of `--output-units` and `--loss`, looked up by their names.
    fn reconstruction(&self) -> CliResult<Reconstruction> {
        let name = |value: Option<PossibleValue>| value.expect("no value is skipped").get_name().to_owned();
        let (units, loss) = (name(self.output_units.to_possible_value()), name(self.loss.to_possible_value()));
        Reconstruction::from_units_and_loss(&units, &loss).ok_or_else(|| {
            let with_loss: Vec<_> =
                Reconstruction::ALL.into_iter().filter(|r| r.loss() == loss).map(|r| r.output_units()).collect();
            format!("--loss {loss} needs --output-units {}", with_loss.join(" or ")).into()
        })
    }

    /// `builder` with this variant; fails on a combination that does not exist.
    pub fn apply(&self, builder: HyperParamsBuilder) -> CliResult<HyperParamsBuilder> {
        let reconstruction = self.reconstruction()?;
        Ok(builder
            .penalty(self.penalty)
            .activation(self.activation)
            .reconstruction(reconstruction)
            .contractive(self.contractive)
            .tied(self.tied)
            .corruption(self.denoise.unwrap_or_default(), self.noise_seed))
    }
}

/// `masking:P` or `gaussian:S` (read by [`Corruption::from_name`], as model files are).
fn parse_corruption(text: &str) -> Result<Corruption, String> {
    let (kind, level) = text.split_once(':').ok_or("expected masking:P or gaussian:S, e.g. masking:0.3")?;
    let level: f64 = level.parse().map_err(|_| format!("{level:?} is not a number"))?;
    match Corruption::from_name(kind, level) {
        Some(Corruption::None) | None => {
            let kinds = Corruption::NAMES.into_iter().filter(|&name| name != Corruption::None.name());
            Err(format!("unknown corruption {kind:?}: expected {}", kinds.collect::<Vec<_>>().join(" or ")))
        }
        Some(corruption) => Ok(corruption),
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OutputArg {
    Sigmoid,
    Linear,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LossArg {
    /// 1/(2m) Σ ‖a3 − x‖².
    Squared,
    /// −1/m Σ [x ln a3 + (1 − x) ln(1 − a3)].
    CrossEntropy,
}

/// `plan` with the four MNIST files of `--mnist` as inputs.
pub fn mnist_inputs(plan: FilePlan, files: &MnistFiles) -> FilePlan {
    plan.input("--mnist", &files.train_images)
        .input("--mnist", &files.train_labels)
        .input("--mnist", &files.test_images)
        .input("--mnist", &files.test_labels)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Variant {
        #[command(flatten)]
        variant: VariantArgs,
        #[command(flatten)]
        data: DataArgs,
    }

    #[test]
    fn every_name_of_the_library_enums_is_a_value_of_its_flag() {
        let parse = |args: &[&str]| Variant::try_parse_from([&["sae"], args].concat()).unwrap();
        for activation in Activation::ALL {
            assert_eq!(parse(&["--activation", activation.name()]).variant.activation, activation);
        }
        for penalty in SparsityPenalty::ALL {
            assert_eq!(parse(&["--penalty", penalty.name()]).variant.penalty, penalty);
        }
        for mode in StreamMode::ALL {
            assert_eq!(parse(&["--stream", "--stream-mode", mode.name()]).data.stream_mode, mode);
        }
        let defaults = parse(&[]);
        assert_eq!((defaults.variant.activation, defaults.variant.penalty), (Activation::Sigmoid, SparsityPenalty::Kl));
        assert!(Variant::try_parse_from(["sae", "--activation", "swish"]).is_err());
    }

    #[test]
    fn the_corruption_flag_reads_the_names_model_files_use() {
        assert_eq!(parse_corruption("masking:0.25"), Ok(Corruption::Masking { probability: 0.25 }));
        assert_eq!(parse_corruption("gaussian:0.5"), Ok(Corruption::Gaussian { std_dev: 0.5 }));
        for bad in ["none:0", "salt:0.1", "masking", "masking:x"] {
            assert!(parse_corruption(bad).is_err(), "{bad}");
        }
    }
}
