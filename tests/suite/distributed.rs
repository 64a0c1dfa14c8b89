//! The objective on a data set split across processes: with 1, 2 and 3 processes (here
//! threads, summing through a shared table in rank order) it equals the one-process objective
//! on the whole data, for uneven splits and ranks without examples, for the variants whose
//! terms are split differently (tied weights, denoising, the contractive penalty); L-BFGS on
//! it follows the one-process run, and a stop one process asks for stops all together.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::common::*;
use sae::data::npy_source::NpyFileSource;
use sae::model::{Corruption, HyperParams};
use sae::objective::distributed::{agree, in_whole, rows_of, Collective, DistributedObjective};
use sae::objective::{StreamMode, StreamingObjective};
use sae::optim::{LbfgsOptions, Stop};
use sae::train::Trainer;
use sae::{Dataset, Error, Objective, Parameters, Real};

/// `size` threads as processes: each writes its values into its slot, and every one sums all
/// the slots in rank order once all have written. A process that waits more than ten seconds
/// for the others panics: a sum one process skips fails the test instead of hanging it.
pub(crate) struct Threads {
    rank: usize,
    size: usize,
    shared: Arc<(Mutex<Table>, Condvar)>,
}

/// The slots of the sum under way, and how many processes have reached each of the two
/// meeting points of `Threads::sum`.
#[derive(Default)]
struct Table {
    slots: Vec<Vec<f64>>,
    arrived: [usize; 2],
    rounds: [usize; 2],
}

impl Threads {
    pub(crate) fn group(size: usize) -> Vec<Threads> {
        let table = Table { slots: vec![Vec::new(); size], ..Table::default() };
        let shared = Arc::new((Mutex::new(table), Condvar::new()));
        (0..size).map(|rank| Threads { rank, size, shared: shared.clone() }).collect()
    }

    /// Waits until every process has reached meeting point `point` as often as this one.
    fn meet<'t>(
        &'t self,
        mut table: std::sync::MutexGuard<'t, Table>,
        point: usize,
    ) -> std::sync::MutexGuard<'t, Table> {
        let round = table.rounds[point];
        table.arrived[point] += 1;
        if table.arrived[point] == self.size {
            table.arrived[point] = 0;
            table.rounds[point] += 1;
            self.shared.1.notify_all();
            return table;
        }
        let (table, timeout) =
            self.shared.1.wait_timeout_while(table, Duration::from_secs(10), |t| t.rounds[point] == round).unwrap();
        assert!(!timeout.timed_out(), "rank {} waited 10 s for the others: a sum not every process made", self.rank);
        table
    }
}

impl Collective for Threads {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn sum(&self, values: &[f64], sums: &mut [f64]) -> sae::error::Result<()> {
        let mut table = self.shared.0.lock().unwrap();
        table.slots[self.rank] = values.to_vec();
        let table = self.meet(table, 0);
        // Processes that make different sums here are out of step (MPI would fail or hang).
        let lengths: Vec<usize> = table.slots.iter().map(Vec::len).collect();
        assert!(lengths.iter().all(|&l| l == values.len()), "sums of different lengths: {lengths:?}");
        sums.fill(0.0);
        for slot in &table.slots {
            sums.iter_mut().zip(slot).for_each(|(s, v)| *s += v);
        }
        // Nobody writes the next sum's values before everyone has read these.
        drop(self.meet(table, 1));
        Ok(())
    }
    /// Summed in float32, in rank order, as an MPI library sums float32 values.
    fn sum_f32(&self, values: &[f32], sums: &mut [f32]) -> sae::error::Result<()> {
        let mut table = self.shared.0.lock().unwrap();
        table.slots[self.rank] = values.iter().map(|&v| f64::from(v)).collect();
        let table = self.meet(table, 0);
        let lengths: Vec<usize> = table.slots.iter().map(Vec::len).collect();
        assert!(lengths.iter().all(|&l| l == values.len()), "sums of different lengths: {lengths:?}");
        sums.fill(0.0);
        for slot in &table.slots {
            sums.iter_mut().zip(slot).for_each(|(s, &v)| *s += v as f32);
        }
        drop(self.meet(table, 1));
        Ok(())
    }
}

/// Each process's cost and gradient on its rows of `values` (`m×n`), in `T`.
fn distributed<T: Real>(
    hyper: HyperParams,
    values: &[f64],
    m: usize,
    theta: &[f64],
    size: usize,
) -> Vec<(f64, Vec<f64>)> {
    let n = hyper.visible();
    let values: Vec<T> = values.iter().map(|&v| T::cast(v)).collect();
    let theta: Vec<T> = theta.iter().map(|&v| T::cast(v)).collect();
    std::thread::scope(|scope| {
        let workers: Vec<_> = Threads::group(size)
            .into_iter()
            .map(|collective| {
                let (values, theta) = (&values, &theta);
                scope.spawn(move || {
                    let rows = rows_of(collective.rank(), size, m);
                    let data = (!rows.is_empty()).then(|| {
                        Dataset::examples_by_features(&values[rows.start * n..rows.end * n], rows.len(), n).unwrap()
                    });
                    let mut objective = DistributedObjective::new(hyper, data, rows.start, collective).unwrap();
                    let mut grad = vec![T::zero(); theta.len()];
                    let cost = objective.evaluate(theta, &mut grad).unwrap();
                    assert_eq!(objective.examples(), m);
                    (cost, grad.iter().map(|g| g.as_f64()).collect())
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    })
}

fn single<T: Real>(hyper: HyperParams, values: &[f64], m: usize, theta: &[f64]) -> (f64, Vec<f64>) {
    let values: Vec<T> = values.iter().map(|&v| T::cast(v)).collect();
    let theta: Vec<T> = theta.iter().map(|&v| T::cast(v)).collect();
    let data = Dataset::examples_by_features(&values, m, hyper.visible()).unwrap();
    let mut grad = vec![T::zero(); theta.len()];
    let cost = Objective::new(hyper, data).unwrap().evaluate(&theta, &mut grad).unwrap();
    (cost, grad.iter().map(|g| g.as_f64()).collect())
}

fn check<T: Real>(hyper: HyperParams, m: usize, tolerance: f64) {
    let (n, h) = (hyper.visible(), hyper.hidden());
    let values = uniform_data(m, n, 11);
    let theta = theta(n, h, 12);
    let (cost, grad) = single::<T>(hyper, &values, m, &theta);
    for size in [1, 2, 3] {
        for (rank, (c, g)) in distributed::<T>(hyper, &values, m, &theta, size).into_iter().enumerate() {
            let what = format!("m = {m}, {size} processes, rank {rank}");
            assert!((c - cost).abs() <= tolerance * cost.abs(), "{what}: cost {c} against {cost}");
            let error = relative_error(&g, &grad);
            assert!(error <= tolerance, "{what}: gradient off by {error:e}");
        }
    }
}

#[test]
fn the_processes_shares_split_the_examples_in_order() {
    for (m, size) in [(10, 3), (2, 3), (0, 2), (101, 4), (7, 1)] {
        let ranges: Vec<_> = (0..size).map(|r| rows_of(r, size, m)).collect();
        assert_eq!(ranges[0].start, 0);
        assert_eq!(ranges[size - 1].end, m);
        for pair in ranges.windows(2) {
            assert_eq!(pair[0].end, pair[1].start);
        }
        let (least, most) = (ranges.iter().map(|r| r.len()).min(), ranges.iter().map(|r| r.len()).max());
        assert!(most.unwrap() - least.unwrap() <= 1, "{m} over {size}: {ranges:?}");
    }
    assert_eq!(rows_of(0, 3, 2), 0..0, "a rank without examples");
}

#[test]
fn split_evaluations_equal_the_whole_in_f64_and_f32() {
    for m in [101, 3, 2] {
        check::<f64>(hyper(9, 5), m, 1e-12);
        check::<f32>(hyper(9, 5), m, 1e-5);
    }
}

#[test]
fn variants_whose_terms_split_differently_still_sum_to_the_whole() {
    let base = || HyperParams::builder(8, 4).lambda(3e-3).beta(3.0).rho(0.1);
    let variants = [
        base().tied(true).build().unwrap(),
        base().corruption(Corruption::Masking { probability: 0.3 }, 5).build().unwrap(),
        base().contractive(0.1).build().unwrap(),
        base().penalty(sae::model::SparsityPenalty::L1).build().unwrap(),
    ];
    for hyper in variants {
        check::<f64>(hyper, 37, 1e-12);
    }
}

#[test]
fn a_failure_on_one_process_reaches_every_process() {
    std::thread::scope(|scope| {
        let workers: Vec<_> = Threads::group(3)
            .into_iter()
            .map(|collective| {
                scope.spawn(move || {
                    let outcome = if collective.rank() == 1 {
                        Err(Error::EmptyData { what: "this rank's shard" })
                    } else {
                        Ok(())
                    };
                    agree(&collective, outcome, "reading its data").map_err(|e| e.to_string())
                })
            })
            .collect();
        let outcomes: Vec<_> = workers.into_iter().map(|w| w.join().unwrap()).collect();
        assert!(outcomes[1].as_ref().unwrap_err().contains("this rank's shard"));
        for rank in [0, 2] {
            let message = outcomes[rank].as_ref().unwrap_err();
            assert!(message.contains("rank 1") && message.contains("reading its data"), "{message}");
        }
    });
}

/// L-BFGS for `iterations` iterations on `size` processes (threads), each process's curve and
/// stop; process `stopper` asks to stop after its iteration `stop_after`, if given.
fn train_split(size: usize, iterations: usize, stop_after: Option<(usize, usize)>) -> Vec<(Vec<(usize, f64)>, Stop)> {
    let (m, n, h) = (60, 8, 4);
    let values = uniform_data(m, n, 21);
    let options = LbfgsOptions { max_iterations: iterations, ..LbfgsOptions::MINFUNC };
    std::thread::scope(|scope| {
        let workers: Vec<_> = Threads::group(size)
            .into_iter()
            .map(|collective| {
                let values = &values;
                scope.spawn(move || {
                    let rank = collective.rank();
                    let rows = rows_of(rank, size, m);
                    let data =
                        Dataset::examples_by_features(&values[rows.start * n..rows.end * n], rows.len(), n).unwrap();
                    let (requested, agreed) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
                    let mut objective = DistributedObjective::new(hyper(n, h), Some(data), rows.start, collective)
                        .unwrap()
                        .synchronize_stop(requested.clone(), agreed.clone());
                    let trainer = Trainer::new(options).stop_when(agreed);
                    let init = Parameters::init(n, h, 3);
                    let trained = trainer
                        .fit(&mut objective, &init, |step| {
                            if stop_after.is_some_and(|(stopper, after)| stopper == rank && step.iteration == after) {
                                requested.store(true, Ordering::Relaxed);
                            }
                        })
                        .unwrap();
                    (trained.curve, trained.stop)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    })
}

#[test]
fn lbfgs_on_two_and_three_processes_follows_one() {
    // One process: the plain objective on the whole data.
    let (m, n, h) = (60, 8, 4);
    let values = uniform_data(m, n, 21);
    let mut objective = Objective::new(hyper(n, h), Dataset::examples_by_features(&values, m, n).unwrap()).unwrap();
    let options = LbfgsOptions { max_iterations: 50, ..LbfgsOptions::MINFUNC };
    let one = Trainer::new(options).fit(&mut objective, &Parameters::init(n, h, 3), |_| {}).unwrap().curve;
    assert_eq!(one.len(), 51, "50 iterations after the start");
    for size in [1, 2, 3] {
        for (rank, (curve, _)) in train_split(size, 50, None).into_iter().enumerate() {
            assert_eq!(curve.len(), one.len(), "{size} processes, rank {rank}");
            for ((i, cost), (j, reference)) in curve.iter().zip(&one) {
                assert_eq!(i, j);
                assert!(
                    (cost - reference).abs() <= 1e-10 * reference.abs(),
                    "{size} processes, rank {rank}, iteration {i}"
                );
            }
        }
    }
}

#[test]
fn a_stop_one_process_asks_for_stops_every_process_at_the_same_iteration() {
    let runs = train_split(3, 50, Some((2, 7)));
    for (rank, (curve, stop)) in runs.iter().enumerate() {
        assert_eq!(*stop, Stop::Interrupted, "rank {rank}");
        assert_eq!(curve.len(), runs[0].0.len(), "rank {rank} stopped with the others");
        assert!(curve.len() <= 10, "stopped soon after iteration 7: {} points", curve.len());
    }
}

#[test]
fn the_gradient_on_two_processes_passes_the_central_difference_check() {
    use sae::objective::gradcheck::{numerical_gradient, relative_difference};
    let (m, n, h) = (31, 6, 3);
    let values = uniform_data(m, n, 31);
    let theta = theta(n, h, 32);
    std::thread::scope(|scope| {
        for collective in Threads::group(2) {
            let (values, theta) = (&values, &theta);
            scope.spawn(move || {
                let rows = rows_of(collective.rank(), 2, m);
                let data = Dataset::examples_by_features(&values[rows.start * n..rows.end * n], rows.len(), n).unwrap();
                let mut objective = DistributedObjective::new(hyper(n, h), Some(data), rows.start, collective).unwrap();
                let mut analytic = vec![0.0; theta.len()];
                objective.evaluate(theta, &mut analytic).unwrap();
                // Every process evaluates the same points in the same order: each is collective.
                let mut scratch = vec![0.0; theta.len()];
                let numeric = numerical_gradient(|t| objective.evaluate(t, &mut scratch).unwrap(), theta, 1e-4);
                let difference = relative_difference(&numeric, &analytic);
                assert!(difference < 1e-9, "{difference:e}");
            });
        }
    });
}

/// Each process's cost and gradient streaming its rows of the `.npy` file at `path` (`m` rows)
/// in chunks of 7, in `mode`.
fn streamed(
    path: &std::path::Path,
    hyper: HyperParams,
    m: usize,
    theta: &[f64],
    size: usize,
    mode: StreamMode,
) -> Vec<Result<(f64, Vec<f64>), String>> {
    std::thread::scope(|scope| {
        let workers: Vec<_> = Threads::group(size)
            .into_iter()
            .map(|collective| {
                scope.spawn(move || {
                    let rows = rows_of(collective.rank(), size, m);
                    let source = NpyFileSource::<f64>::open(path).unwrap().restrict(rows.clone()).unwrap();
                    let mut objective =
                        StreamingObjective::new(hyper, source, 7, mode).unwrap().split(collective, rows.start);
                    let mut grad = vec![0.0; theta.len()];
                    let cost = objective.evaluate(theta, &mut grad).map_err(|e| e.to_string())?;
                    Ok((cost, grad))
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    })
}

#[test]
fn each_process_streaming_its_rows_equals_the_whole_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let (m, n, h) = (53, 9, 5);
    let values = uniform_data(m, n, 41);
    let path = dir.path().join("data.npy");
    sae::data::npy::write_matrix(&path, &ndarray::Array2::from_shape_vec((m, n), values.clone()).unwrap()).unwrap();
    let theta = theta(n, h, 42);
    for hyper in [
        hyper(n, h),
        HyperParams::builder(n, h).corruption(Corruption::Masking { probability: 0.2 }, 3).build().unwrap(),
    ] {
        let (cost, grad) = single::<f64>(hyper, &values, m, &theta);
        for mode in [StreamMode::OnePass, StreamMode::TwoPass] {
            for size in [1, 2, 3] {
                for (rank, result) in streamed(&path, hyper, m, &theta, size, mode).into_iter().enumerate() {
                    let (c, g) = result.unwrap();
                    assert!(
                        (c - cost).abs() <= 1e-12 * cost,
                        "{mode:?}, {size} processes, rank {rank}: {c} against {cost}"
                    );
                    assert!(relative_error(&g, &grad) <= 1e-12, "{mode:?}, {size} processes, rank {rank}");
                }
            }
        }
    }
}

#[test]
fn a_bad_value_in_one_process_stream_fails_every_process_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (m, n, h) = (30, 4, 2);
    let mut values = uniform_data(m, n, 43);
    values[27 * n + 1] = f64::NAN; // row 27: the third process's
    let path = dir.path().join("bad.npy");
    sae::data::npy::write_matrix(&path, &ndarray::Array2::from_shape_vec((m, n), values).unwrap()).unwrap();
    let theta = theta(n, h, 44);
    for mode in [StreamMode::OnePass, StreamMode::TwoPass] {
        let outcomes = streamed(&path, hyper(n, h), m, &theta, 3, mode);
        let own = outcomes[2].as_ref().unwrap_err();
        assert!(own.contains("row 27, column 1"), "{mode:?}: {own}");
        for rank in [0, 1] {
            let other = outcomes[rank].as_ref().unwrap_err();
            assert!(other.contains("rank 2 of the distributed job failed"), "{mode:?}, rank {rank}: {other}");
        }
    }
}

#[test]
fn a_process_streaming_no_rows_takes_its_part_in_the_sums() {
    let dir = tempfile::tempdir().unwrap();
    let (m, n, h) = (2, 5, 3);
    let values = uniform_data(m, n, 51);
    let path = dir.path().join("two.npy");
    sae::data::npy::write_matrix(&path, &ndarray::Array2::from_shape_vec((m, n), values.clone()).unwrap()).unwrap();
    let theta = theta(n, h, 52);
    let (cost, grad) = single::<f64>(hyper(n, h), &values, m, &theta);
    for mode in [StreamMode::OnePass, StreamMode::TwoPass] {
        // Three processes, two rows: rank 0 holds none.
        for (rank, result) in streamed(&path, hyper(n, h), m, &theta, 3, mode).into_iter().enumerate() {
            let (c, g) = result.unwrap();
            assert!((c - cost).abs() <= 1e-12 * cost, "{mode:?}, rank {rank}");
            assert!(relative_error(&g, &grad) <= 1e-12, "{mode:?}, rank {rank}");
        }
    }
}

#[test]
fn processes_whose_parameters_differ_are_told_so() {
    let (m, n, h) = (20, 4, 2);
    let values = uniform_data(m, n, 61);
    let theta = theta(n, h, 62);
    std::thread::scope(|scope| {
        let workers: Vec<_> = Threads::group(2)
            .into_iter()
            .map(|collective| {
                let (values, mut theta) = (&values, theta.clone());
                scope.spawn(move || {
                    let rank = collective.rank();
                    if rank == 1 {
                        theta[3] += 1e-12; // a last-bit drift
                    }
                    let rows = rows_of(rank, 2, m);
                    let data =
                        Dataset::examples_by_features(&values[rows.start * n..rows.end * n], rows.len(), n).unwrap();
                    let mut objective =
                        DistributedObjective::new(hyper(n, h), Some(data), rows.start, collective).unwrap();
                    let mut grad = vec![0.0; theta.len()];
                    objective.evaluate(&theta, &mut grad).unwrap_err().to_string()
                })
            })
            .collect();
        for (rank, worker) in workers.into_iter().enumerate() {
            let message = worker.join().unwrap();
            assert!(message.contains("rank 1's parameters differ from rank 0's"), "rank {rank}: {message}");
        }
    });
}

#[test]
fn errors_in_a_process_part_name_the_row_of_the_whole_data_set() {
    let (m, n) = (10, 3);
    let mut values = uniform_data(m, n, 71);
    values[8 * n + 2] = 1.5; // outside [0, 1], where the cross-entropy is defined
    let rows = rows_of(1, 2, m); // 5..10
    let part = Dataset::examples_by_features(&values[rows.start * n..rows.end * n], rows.len(), n).unwrap();
    let hyper =
        HyperParams::builder(n, 2).reconstruction(sae::model::Reconstruction::SigmoidCrossEntropy).build().unwrap();
    let error =
        DistributedObjective::new(hyper, Some(part), rows.start, sae::objective::distributed::Alone).unwrap_err();
    assert!(error.to_string().contains("row 8, column 2"), "{error}");
    values[8 * n + 2] = f64::NAN;
    let error = Dataset::examples_by_features(&values[rows.start * n..rows.end * n], rows.len(), n).unwrap_err();
    assert!(in_whole(error, rows.start).to_string().contains("row 8, column 2"));
}

/// A process's final parameters and its `(epoch, mean cost)` curve.
type Run = (Vec<f64>, Vec<(usize, f64)>);

/// Minibatch training of `rule` over `size` processes (threads) for two epochs of minibatches
/// of 16 (the last of each epoch short): each process's run.
fn minibatch_split(size: usize, rule: sae::optim::StepRule) -> Vec<Run> {
    minibatch_split_of(71, size, rule, None)
}

/// [`minibatch_split`] on `m` examples; process `stopper` asks to stop after its step `after`,
/// if given.
fn minibatch_split_of(m: usize, size: usize, rule: sae::optim::StepRule, stop: Option<(usize, u64)>) -> Vec<Run> {
    use sae::objective::distributed::{Part, Split};
    use sae::train::{MinibatchOptions, MinibatchTrainer};
    let (n, h) = (8, 4);
    let values = uniform_data(m, n, 81);
    let options = MinibatchOptions { rule, batch_size: 16, epochs: 2, ..MinibatchOptions::default() };
    let trainer = MinibatchTrainer::new(hyper(n, h), options).unwrap();
    std::thread::scope(|scope| {
        let workers: Vec<_> = Threads::group(size)
            .into_iter()
            .map(|collective| {
                let (values, trainer) = (&values, &trainer);
                scope.spawn(move || {
                    let rows = rows_of(collective.rank(), size, m);
                    let data = (!rows.is_empty()).then(|| {
                        Dataset::examples_by_features(&values[rows.start * n..rows.end * n], rows.len(), n).unwrap()
                    });
                    let part = Part { data: data.as_ref(), first_example: rows.start, examples: m };
                    let rank = collective.rank();
                    let asks = |step: &sae::train::MinibatchStep| {
                        let asked = stop.is_some_and(|(stopper, after)| stopper == rank && step.step == after);
                        if asked {
                            std::ops::ControlFlow::Break(())
                        } else {
                            std::ops::ControlFlow::Continue(())
                        }
                    };
                    let trained = trainer
                        .fit_split(part, &mut Split::new(collective), None, &Parameters::init(n, h, 5), asks)
                        .unwrap();
                    (trained.state.x, trained.curve)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    })
}

#[test]
fn adam_and_sgd_on_two_and_three_processes_follow_one() {
    use sae::optim::StepRule;
    for rule in [StepRule::adam(0.01), StepRule::sgd(0.5, 0.9)] {
        // One process: the trainer on the whole data.
        let (one, one_curve) = minibatch_split(1, rule).remove(0);
        let (m, n, h) = (71, 8, 4);
        let values = uniform_data(m, n, 81);
        let data = Dataset::examples_by_features(&values, m, n).unwrap();
        let options = sae::train::MinibatchOptions { rule, batch_size: 16, epochs: 2, ..Default::default() };
        let whole = sae::train::MinibatchTrainer::new(hyper(n, h), options)
            .unwrap()
            .fit(&data, &Parameters::init(n, h, 5), |_| {})
            .unwrap();
        assert_eq!(whole.state.x, one, "{rule:?}: one process of a split is the plain trainer");
        assert_eq!(one_curve.len(), 2);
        for size in [2, 3] {
            for (rank, (x, curve)) in minibatch_split(size, rule).into_iter().enumerate() {
                let error = relative_error(&x, &one);
                assert!(error <= 1e-10, "{rule:?}, {size} processes, rank {rank}: parameters off by {error:e}");
                for ((e, cost), (f, reference)) in curve.iter().zip(&one_curve) {
                    assert_eq!(e, f);
                    assert!((cost - reference).abs() <= 1e-10 * reference, "{rule:?}, {size} processes, epoch {e}");
                }
            }
        }
    }
}

#[test]
fn minibatch_training_with_processes_holding_no_rows_follows_one() {
    use sae::optim::StepRule;
    // Two examples, three processes: rank 0 holds none of any minibatch.
    let (one, _) = minibatch_split_of(2, 1, StepRule::adam(0.01), None).remove(0);
    for (rank, (x, _)) in minibatch_split_of(2, 3, StepRule::adam(0.01), None).into_iter().enumerate() {
        assert!(relative_error(&x, &one) <= 1e-10, "rank {rank}");
    }
}

#[test]
fn a_stop_one_process_asks_for_ends_every_process_minibatch_run_at_the_same_step() {
    use sae::optim::StepRule;
    let runs = minibatch_split_of(71, 3, StepRule::adam(0.01), Some((1, 3)));
    let (all, _) = minibatch_split_of(71, 1, StepRule::adam(0.01), None).remove(0);
    for (rank, (x, _)) in runs.iter().enumerate() {
        assert_eq!(x, &runs[0].0, "rank {rank} stopped with the others");
    }
    assert!(relative_error(&runs[0].0, &all) > 1e-6, "stopped before the end");
}

/// Adam over `size` processes (threads) each streaming its rows of the `.npy` file at `path`
/// (`m×8`) in windows of blocks: each process's final parameters, or its error.
fn streamed_minibatch_split(path: &std::path::Path, m: usize, size: usize) -> Vec<sae::Result<Vec<f64>>> {
    use sae::objective::distributed::Split;
    use sae::train::{MinibatchTrainer, StreamedPart};
    let (n, h) = (8, 4);
    let trainer = MinibatchTrainer::new(hyper(n, h), streamed_options()).unwrap();
    std::thread::scope(|scope| {
        let workers: Vec<_> = Threads::group(size)
            .into_iter()
            .map(|collective| {
                let trainer = &trainer;
                scope.spawn(move || {
                    let rows = rows_of(collective.rank(), size, m);
                    let source = NpyFileSource::<f64>::open(path).unwrap().restrict(rows.clone()).unwrap();
                    let part = StreamedPart::new(source, rows.start, m).unwrap();
                    let init = Parameters::init(n, h, 5);
                    let trained = trainer.fit_streamed(part, &mut Split::new(collective), None, &init, |_| {});
                    trained.map(|t| t.state.x)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    })
}

/// Two epochs of Adam on minibatches of 16, blocks of 5 three to a window.
fn streamed_options() -> sae::train::MinibatchOptions {
    use sae::train::{MinibatchOptions, Shuffle};
    let rule = sae::optim::StepRule::adam(0.01);
    MinibatchOptions {
        rule,
        batch_size: 16,
        epochs: 2,
        shuffle: Shuffle::Blocks { block: 5, window: 3 },
        ..Default::default()
    }
}

#[test]
fn processes_streaming_their_rows_by_blocks_follow_one_process_in_memory() {
    let (m, n, h) = (71, 8, 4);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.npy");
    let values = uniform_data(m, n, 82);
    sae::data::npy::write_matrix(&path, &ndarray::Array2::from_shape_vec((m, n), values.clone()).unwrap()).unwrap();
    let data = Dataset::examples_by_features(&values, m, n).unwrap();
    let one = sae::train::MinibatchTrainer::new(hyper(n, h), streamed_options())
        .unwrap()
        .fit(&data, &Parameters::init(n, h, 5), |_| {})
        .unwrap()
        .state
        .x;
    for size in [1, 2, 3] {
        for (rank, x) in streamed_minibatch_split(&path, m, size).into_iter().enumerate() {
            let error = relative_error(&x.unwrap(), &one);
            assert!(error <= 1e-10, "{size} processes, rank {rank}: parameters off by {error:e}");
        }
    }
}

#[test]
fn a_bad_value_in_one_process_streamed_block_fails_every_process_naming_it() {
    let (m, n) = (71, 8);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.npy");
    let mut values = uniform_data(m, n, 83);
    values[60 * n + 1] = f64::INFINITY;
    sae::data::npy::write_matrix(&path, &ndarray::Array2::from_shape_vec((m, n), values).unwrap()).unwrap();
    let outcomes = streamed_minibatch_split(&path, m, 3);
    // Row 60 is the last process's (rows 47..71).
    for (rank, outcome) in outcomes.into_iter().enumerate() {
        match (rank, outcome) {
            (2, Err(Error::NonFiniteData { row: 60, column: 1, .. })) => {}
            (_, Err(Error::OtherRankFailed { rank: 2, .. })) => {}
            (rank, other) => panic!("rank {rank}: {other:?}"),
        }
    }
}

#[test]
fn processes_streaming_by_blocks_stopped_mid_epoch_resume_bit_for_bit() {
    use sae::objective::distributed::Split;
    use sae::train::{MinibatchTrainer, StreamedPart};
    use std::ops::ControlFlow;
    let (m, n, h, size) = (71, 8, 4, 2);
    let dir = tempfile::tempdir().unwrap();
    let (path, checkpoint) = (dir.path().join("data.npy"), dir.path().join("run.ckpt"));
    let values = uniform_data(m, n, 84);
    sae::data::npy::write_matrix(&path, &ndarray::Array2::from_shape_vec((m, n), values).unwrap()).unwrap();
    let uninterrupted = streamed_minibatch_split(&path, m, size);
    let part = |rank: usize| {
        let rows = rows_of(rank, size, m);
        StreamedPart::new(NpyFileSource::<f64>::open(&path).unwrap().restrict(rows.clone()).unwrap(), rows.start, m)
            .unwrap()
    };
    // Rank 1 asks to stop after step 6 (of 5 per epoch): all stop after step 7, mid-epoch 2;
    // rank 0 writes the checkpoint.
    let trainer = |rank: usize| {
        let trainer = MinibatchTrainer::new(hyper(n, h), streamed_options()).unwrap();
        if rank == 0 {
            trainer.checkpoint_to(&checkpoint, 100)
        } else {
            trainer
        }
    };
    let stopped: Vec<(usize, usize)> = std::thread::scope(|scope| {
        let workers: Vec<_> = Threads::group(size)
            .into_iter()
            .map(|collective| {
                let (trainer, part) = (&trainer, &part);
                scope.spawn(move || {
                    let rank = collective.rank();
                    let asks = |step: &sae::train::MinibatchStep| match (rank, step.step) {
                        (1, 6) => ControlFlow::Break(()),
                        _ => ControlFlow::Continue(()),
                    };
                    let init = Parameters::init(n, h, 5);
                    let trained =
                        trainer(rank).fit_streamed(part(rank), &mut Split::new(collective), None, &init, asks).unwrap();
                    (trained.state.epoch, trained.state.batch)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    assert_eq!(stopped, vec![(1, 2); size], "every process stopped after step 7");
    let resumed: Vec<Vec<f64>> = std::thread::scope(|scope| {
        let workers: Vec<_> = Threads::group(size)
            .into_iter()
            .map(|collective| {
                let (trainer, part, checkpoint) = (&trainer, &part, &checkpoint);
                scope.spawn(move || {
                    let rank = collective.rank();
                    let (trainer, mut part) = (trainer(rank), part(rank));
                    let mut split = Split::new(collective);
                    let saved = trainer.load_checkpoint_streamed(&mut part, &split, checkpoint).unwrap();
                    trainer
                        .resume_streamed(part, &mut split, saved, None, |_| ControlFlow::Continue(()))
                        .unwrap()
                        .state
                        .x
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    for (rank, (x, reference)) in resumed.iter().zip(&uninterrupted).enumerate() {
        assert_eq!(x, reference.as_ref().unwrap(), "rank {rank}");
    }
}
