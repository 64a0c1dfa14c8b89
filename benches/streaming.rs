//! Streaming versus in-memory on S3 (SPEC §3: n = 784, h = 196, m = 60 000), f32 and f64, one
//! and two threads: the in-memory objective, and the streaming objective in both modes reading
//! a page-cached `.npy` file of the same data (written before timing, of the working dtype).
//!
//! The `S3-minibatch` group times one epoch of Adam (minibatches of 256) the same three ways:
//! in memory with the full shuffle and with the block shuffle, and streamed from the file with
//! the block shuffle (the same steps as the second).
//!
//! `cargo bench --bench streaming [-- FILTER]`, e.g. `-- f32/t1`. `SAE_STREAM_CHUNK` sets the
//! chunk (default 4096 examples, as `sae objective --stream`).

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput};
use sae::data::generated::ProblemShape;
use sae::data::npy_source::NpyFileSource;
use sae::objective::distributed::{Alone, Split};
use sae::objective::{StreamMode, StreamingObjective};
use sae::train::{MinibatchOptions, MinibatchTrainer, Shuffle, StreamedPart};
use sae::{Dataset, Objective, Parameters, Real};

const SEED: u64 = 2024;

fn bench_dtype<T: Real>(c: &mut Criterion, dir: &std::path::Path, chunk: usize) {
    let shape = ProblemShape::named("S3").unwrap();
    let path = dir.join(format!("s3-{}.npy", T::NAME));
    shape.write_uniform_npy::<T>(&path, shape.examples, SEED).unwrap();
    let values = shape.uniform_data::<T>(SEED);
    let hyper = shape.hyper().unwrap();
    let theta = Parameters::<T>::init(shape.visible, shape.hidden, 1);
    let mut grad = vec![T::zero(); theta.theta().len()];

    let mut group = c.benchmark_group("S3-stream");
    group.throughput(Throughput::Elements(shape.examples as u64));
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(8));
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let id = |what: &str| BenchmarkId::new(format!("{}/t{threads}", T::NAME), what);

        let data = Dataset::examples_by_features(&values, shape.examples, shape.visible).unwrap();
        let mut objective = Objective::new(hyper, data).unwrap();
        group.bench_function(id("in_memory"), |b| {
            b.iter(|| pool.install(|| objective.evaluate(theta.theta(), &mut grad).unwrap()))
        });
        for (mode, name) in [(StreamMode::OnePass, "one_pass"), (StreamMode::TwoPass, "two_pass")] {
            let source = NpyFileSource::<T>::open(&path).unwrap();
            let mut streaming = StreamingObjective::new(hyper, source, chunk, mode).unwrap();
            group.bench_function(id(name), |b| {
                b.iter(|| pool.install(|| streaming.evaluate(theta.theta(), &mut grad).unwrap()))
            });
        }
    }
    group.finish();

    let mut group = c.benchmark_group("S3-minibatch");
    group.throughput(Throughput::Elements(shape.examples as u64));
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(10));
    let epoch = |shuffle| MinibatchOptions { epochs: 1, shuffle, ..MinibatchOptions::default() };
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let id = |what: &str| BenchmarkId::new(format!("{}/t{threads}", T::NAME), what);
        let data = Dataset::examples_by_features(&values, shape.examples, shape.visible).unwrap();
        for (shuffle, name) in [(Shuffle::Full, "in_memory_full_shuffle"), (Shuffle::STREAMED, "in_memory_blocks")] {
            let trainer = MinibatchTrainer::new(hyper, epoch(shuffle)).unwrap();
            group.bench_function(id(name), |b| {
                b.iter_custom(|runs| {
                    until_last_step(runs, |on_step| {
                        pool.install(|| trainer.fit(&data, &theta, on_step).unwrap());
                    })
                })
            });
        }
        let trainer = MinibatchTrainer::new(hyper, epoch(Shuffle::STREAMED)).unwrap();
        group.bench_function(id("streamed_blocks"), |b| {
            b.iter_custom(|runs| {
                until_last_step(runs, |on_step| {
                    let part = StreamedPart::whole(NpyFileSource::<T>::open(&path).unwrap()).unwrap();
                    pool.install(|| trainer.fit_streamed(part, &mut Split::new(Alone), None, &theta, on_step).unwrap());
                })
            })
        });
    }
    group.finish();
}

/// The time of `runs` runs of `fit` from its start to its last step, leaving out the model's
/// evaluation on all the data that follows (the epoch is what is compared).
fn until_last_step(runs: u64, mut fit: impl FnMut(&mut (dyn FnMut(&sae::train::MinibatchStep) + Send))) -> Duration {
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            let mut last = start;
            fit(&mut |_| last = Instant::now());
            last - start
        })
        .sum()
}

fn benches(c: &mut Criterion) {
    let chunk = std::env::var("SAE_STREAM_CHUNK").ok().and_then(|v| v.parse().ok()).unwrap_or(4096);
    let dir = tempfile::tempdir().unwrap();
    bench_dtype::<f32>(c, dir.path(), chunk);
    bench_dtype::<f64>(c, dir.path(), chunk);
}

criterion_group!(streaming, benches);
criterion_main!(streaming);
