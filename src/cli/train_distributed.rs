//! `mpirun -np N sae train --distributed …`: full-batch L-BFGS, Adam and SGD, or a dictionary
//! layer (`--hidden-layer topk|batch-topk|relu|k-sparse`), on a data set split across the
//! processes of an MPI job. Each process reads its own contiguous rows of the data (of the
//! `.npy` file or of the shards taken together, with positioned reads of those rows only, into
//! memory or with `--stream` a chunk at a time; of the embedded data set, generated whole and
//! cut), evaluates its share of the cost and gradient, and the shares are summed
//! ([`DistributedObjective`], [`StreamingObjective::split`]): every process holds the same
//! gradient and takes the same L-BFGS steps; with Adam or SGD, and for a dictionary layer
//! ([`sae::train::TopKTrainer::fit_split`]), each minibatch of the whole data set's order is
//! evaluated by the processes holding its rows (streamed, each reads its rows of each window
//! of blocks). The first process (rank 0) alone prints, logs, writes checkpoints and the
//! model; the others' standard output is silenced. Ctrl-C (which `mpirun` passes on to every
//! process) stops them all after the same iteration.
//!
//! A process that fails before training (its rows cannot be read, say) ends every process with
//! an error naming it; a process that dies ends the job (MPI aborts it).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use mpi::topology::SimpleCommunicator;
use sae::data::npy_source::{NpyFileSource, ShardSource};
use sae::data::stream::{ExampleSource, SeekableSource};
use sae::mpi::World;
use sae::objective::distributed::{agree, in_whole, rows_of, DistributedObjective};

use super::*;

/// Runs `sae train --distributed` on this process of the MPI job.
pub(super) fn run(args: TrainArgs) -> CliResult<()> {
    in_job(args, run_on)
}

/// Runs `sae train --distributed --hidden-layer topk|batch-topk|relu|k-sparse` on this process
/// of the MPI job: each process holds its rows (in memory or streamed) and evaluates its rows
/// of each minibatch, and one sum per step gives every process the same step (see
/// [`sae::train::TopKTrainer::fit_split`]).
pub(super) fn run_topk(args: TrainArgs) -> CliResult<()> {
    in_job(args, run_topk_on)
}

/// Runs `body` as this process of the MPI job: the others' standard output silenced, and a
/// failure of this process alone ending the job.
fn in_job(mut args: TrainArgs, body: fn(&TrainArgs, &SimpleCommunicator) -> CliResult<()>) -> CliResult<()> {
    let world = World::initialize().ok_or("MPI was initialised already in this process")?;
    let processes = world.communicator();
    let rank = processes.rank();
    args.processes = Some(processes.size());
    if rank != 0 {
        super::super::progress::set_quiet(true);
    }
    // Dropped (and the output restored) when the run ends, before the error is printed.
    let silenced = if rank == 0 { Ok(None) } else { gag::Gag::stdout().map(Some) };
    let outcome = silenced.map_err(Into::into).and_then(|silenced| {
        let outcome = body(&args, &processes);
        drop(silenced);
        outcome
    });
    match outcome {
        Err(e) if processes.size() > 1 && !e.is::<Interrupted>() => {
            // A failure of this process alone would leave the others waiting for it in a sum
            // (or in MPI's finalisation): end the job. Another process's failure is that
            // process's to report.
            if !matches!(e.downcast_ref(), Some(sae::Error::OtherRankFailed { .. })) {
                eprintln!("error: rank {rank}: {e}");
            }
            world.abort(2)
        }
        outcome => outcome,
    }
}

fn run_on(args: &TrainArgs, processes: &SimpleCommunicator) -> CliResult<()> {
    refuse_unsupported(args)?;
    prepared(args, processes, |precision, why, requested| match precision {
        Precision::F32 => train::<f32>(args, why, processes, requested),
        Precision::F64 => train::<f64>(args, why, processes, requested),
    })
}

fn run_topk_on(args: &TrainArgs, processes: &SimpleCommunicator) -> CliResult<()> {
    let refused = [
        (args.validation_fraction.is_some(), "--validation-fraction (give the held-out data as a file, --validation)"),
        (
            args.resample_every.is_some() && processes.size() > 1,
            "--resample-every on several processes (AuxK, --auxk-alpha, revives dead latents)",
        ),
    ];
    if let Some((_, what)) = refused.iter().find(|(given, _)| *given) {
        return Err(format!("--distributed does not support {what}").into());
    }
    prepared(args, processes, |precision, why, requested| match precision {
        Precision::F32 => train_topk::<f32>(args, why, processes, &requested),
        Precision::F64 => train_topk::<f64>(args, why, processes, &requested),
    })
}

/// Runs `train` once the run is set up alike on every process: the outputs checked and locked
/// by the first process (theirs alone), the precision chosen (and why), Ctrl-C watched (the
/// flag it sets), the thread pool made.
fn prepared(
    args: &TrainArgs,
    processes: &SimpleCommunicator,
    train: impl FnOnce(Precision, &str, Arc<AtomicBool>) -> CliResult<()>,
) -> CliResult<()> {
    let root = processes.rank() == 0;
    let locks = if root { files(args).check().map(Some) } else { Ok(None) };
    let _locks = agree(processes, locks, "checking the files it writes")?;
    let (precision, why) = match &args.resume {
        Some(checkpoint) if !args.precision.f32 && !args.precision.f64 => checkpoint_precision(checkpoint)?,
        _ => args.precision.resolve(args.data.data.as_deref())?,
    };
    let requested = interrupt::on_signal()?;
    args.engine.global_pool()?;
    train(precision, why, requested)
}

fn train_topk<T: Real>(
    args: &TrainArgs,
    precision_from: &str,
    processes: &SimpleCommunicator,
    requested: &Arc<AtomicBool>,
) -> CliResult<()> {
    let (rank, size) = (processes.rank(), processes.size());
    let share = agree(processes, read_share::<T>(args, rank, size), "reading its part of the data")?;
    let Share { values, rows, examples, features, description } = share;
    println!("data: {description}, split over {size} processes ({} examples on rank 0)", rows.len());
    // Every process reads the held-out data (the first measures it); a failure is every one's.
    let held_out = match &args.validation {
        Some(path) => {
            let read = sae::data::npy::read_matrix::<T>(path).and_then(|array| match array.ncols() == features {
                true => Ok(array.iter().copied().collect::<Vec<T>>()),
                false => Err(sae::Error::ShapeMismatch {
                    what: "--validation features (those of the data)",
                    expected: features.to_string(),
                    got: array.ncols().to_string(),
                }),
            });
            Some(agree(processes, read, "reading the held-out data")?)
        }
        None => None,
    };
    let data = match values {
        Local::Values(values) => Data::Values { values, examples: rows.len(), features },
        Local::Source(source) => Data::Source(source),
    };
    let workers = format!("{size} processes × {} threads", rayon::current_num_threads());
    let rows = topk::Rows { data, first: rows.start, examples };
    topk::train_on(args, precision_from, requested, rows, held_out, processes, &workers)
}

/// What a distributed run does not do yet: refused alike by every process.
fn refuse_unsupported(args: &TrainArgs) -> CliResult<()> {
    let refused = [
        (
            args.optimizer() != OptimizerArg::Lbfgs && args.variant.denoise.is_some(),
            "--denoise with --optimizer adam/sgd",
        ),
        (
            args.validation.is_some() || args.validation_fraction.is_some(),
            "held-out data (--validation, --validation-fraction)",
        ),
        (args.max_time.is_some(), "--max-time (the processes' clocks would stop them apart)"),
    ];
    match refused.iter().find(|(given, _)| *given) {
        Some((_, what)) => Err(format!("--distributed does not support {what}").into()),
        None => Ok(()),
    }
}

fn train<T: Real>(
    args: &TrainArgs,
    precision_from: &str,
    processes: &SimpleCommunicator,
    requested: Arc<AtomicBool>,
) -> CliResult<()> {
    let (rank, size) = (processes.rank(), processes.size());
    let share = agree(processes, read_share::<T>(args, rank, size), "reading its part of the data")?;
    let Share { values, rows, examples, features: n, description } = share;
    println!("data: {description}, split over {size} processes ({} examples on rank 0)", rows.len());
    let workers = format!("{size} processes × {} threads", rayon::current_num_threads());
    let hyper = model::<T>(args, n, precision_from, &workers)?;
    let agreed = Arc::new(AtomicBool::new(false));
    let outcome = match values {
        Local::Values(values) if args.optimizer() != OptimizerArg::Lbfgs => {
            let data = match rows.len() {
                0 => Ok(None),
                local => {
                    Dataset::examples_by_features(&values, local, n).map(Some).map_err(|e| in_whole(e, rows.start))
                }
            };
            let data = agree(processes, data, "checking its part of the data")?;
            let part = Part { data: data.as_ref(), first_example: rows.start, examples };
            let mut split = Split::new(processes).synchronize_stop(requested, agreed.clone());
            fit_minibatch(args, hyper, MinibatchPart::InMemory(part), &mut split, None, &agreed, rank == 0)?
        }
        Local::Values(values) => {
            let objective = match rows.len() {
                0 => Ok(None),
                local => {
                    Dataset::examples_by_features(&values, local, n).map(Some).map_err(|e| in_whole(e, rows.start))
                }
            }
            .and_then(|data| DistributedObjective::new(hyper, data, rows.start, processes));
            let mut objective = agree(processes, objective, "checking its part of the data")?
                .with_backend(args.engine.backend()?)
                .synchronize_stop(requested, agreed.clone());
            fit(args, hyper, &mut objective, None, examples, None, &agreed, rank == 0)?
        }
        Local::Source(source) if args.optimizer() != OptimizerArg::Lbfgs => {
            let part =
                StreamedPart::new(source, rows.start, examples).and_then(|part| part.with_chunk(args.data.chunk()));
            let part = agree(processes, part, "checking its part of the data")?;
            let mut split = Split::new(processes).synchronize_stop(requested, agreed.clone());
            fit_minibatch(args, hyper, MinibatchPart::Streamed(part), &mut split, None, &agreed, rank == 0)?
        }
        Local::Source(source) => {
            let objective = StreamingObjective::new(hyper, source, args.data.chunk(), args.data.stream_mode);
            let objective = agree(processes, objective, "checking its part of the data")?;
            let objective = match args.engine.backend()? {
                Some(backend) => objective.with_backend(backend),
                None => objective,
            };
            let mut objective = objective.split(processes, rows.start).synchronize_stop(requested, agreed.clone());
            fit(args, hyper, &mut objective, None, examples, None, &agreed, rank == 0)?
        }
    };
    if rank != 0 {
        return Ok(());
    }
    save(args, outcome, provenance(args, args.engine.backend()?))
}

/// This process's rows of the data set (`rows` of its `examples`), and what the data is.
struct Share<T> {
    values: Local<T>,
    rows: std::ops::Range<usize>,
    examples: usize,
    features: usize,
    description: String,
}

/// This process's rows: their values (`rows.len() × features`), or (`--stream`) a source
/// reading them a chunk at a time.
enum Local<T> {
    Values(Vec<T>),
    Source(Box<dyn SeekableSource<T> + Send>),
}

fn read_share<T: Real>(args: &TrainArgs, rank: usize, size: usize) -> sae::Result<Share<T>> {
    let Some(path) = &args.data.data else {
        let (patches, m, n) = embedded_patches(args.seed);
        let rows = rows_of(rank, size, m);
        let values = patches[rows.start * n..rows.end * n].iter().map(|&v| T::cast(v)).collect();
        let description = embedded_description(m);
        return Ok(Share { values: Local::Values(values), rows, examples: m, features: n, description });
    };
    if path.is_dir() {
        if !args.data.stream {
            let reason = "a directory of shards is read with --stream (a chunk at a time)".to_string();
            return Err(sae::Error::BadFile { path: path.clone(), reason });
        }
        let shards = ShardSource::<T>::from_dir(path)?;
        let (examples, features) = (shards.examples(), shards.features());
        let rows = rows_of(rank, size, examples);
        let description = format!(
            "{} ({} shards, {examples} examples × {features}, streamed)",
            path.display(),
            shards.shards().len()
        );
        let values = Local::Source(Box::new(shards.restrict(rows.clone())?));
        return Ok(Share { values, rows, examples, features, description });
    }
    let source = NpyFileSource::<T>::open(path)?;
    let (examples, features) = (source.examples(), source.features());
    let rows = rows_of(rank, size, examples);
    let mut source = source.restrict(rows.clone())?;
    if args.data.stream {
        let description = format!("{} ({examples} examples × {features}, streamed)", path.display());
        return Ok(Share { values: Local::Source(Box::new(source)), rows, examples, features, description });
    }
    let mut values = vec![T::zero(); rows.len() * features];
    let mut read = 0;
    while read < rows.len() {
        let count = source.read_chunk(&mut values[read * features..])?;
        if count == 0 {
            let reason = format!("ended after {read} of rows {}..{}", rows.start, rows.end);
            return Err(sae::Error::BadFile { path: path.clone(), reason });
        }
        read += count;
    }
    let description = format!("{} ({examples} examples × {features})", path.display());
    Ok(Share { values: Local::Values(values), rows, examples, features, description })
}
