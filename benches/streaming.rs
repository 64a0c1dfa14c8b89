//! Streaming versus in-memory on S3 (SPEC §3: n = 784, h = 196, m = 60 000), f32 and f64, one
//! and two threads: the in-memory objective, and the streaming objective in both modes reading
//! a page-cached `.npy` file of the same data (written before timing, of the working dtype).
//!
//! `cargo bench --bench streaming [-- FILTER]`, e.g. `-- f32/t1`. `SAE_STREAM_CHUNK` sets the
//! chunk (default 4096 examples, as `sae objective --stream`).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput};
use sae::data::generated::ProblemShape;
use sae::data::npy_source::NpyFileSource;
use sae::objective::{StreamMode, StreamingObjective};
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
}

fn benches(c: &mut Criterion) {
    let chunk = std::env::var("SAE_STREAM_CHUNK").ok().and_then(|v| v.parse().ok()).unwrap_or(4096);
    let dir = tempfile::tempdir().unwrap();
    bench_dtype::<f32>(c, dir.path(), chunk);
    bench_dtype::<f64>(c, dir.path(), chunk);
}

criterion_group!(streaming, benches);
criterion_main!(streaming);
