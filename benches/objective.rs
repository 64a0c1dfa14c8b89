//! Cost+gradient of the SPEC §3 shapes, f32 and f64, every compiled GEMM back-end, one thread
//! and all cores; in the same run the five GEMMs of each shape alone (`gemm_bound`, so the
//! engine's overhead is a ratio of two figures measured together) and the FMA peak of one core
//! (`peak`), so that every engine figure is also printed as a fraction of that peak:
//!
//! ```text
//! S2/f32/native/t1: 10·h·n·m = 15.4 GFLOP in 98.1 ms = 156.7 GFLOP/s = 0.74 of the f32 peak
//! ```
//!
//! `cargo bench --bench objective [-- FILTER]`, e.g. `-- S1/` or `-- f32/native/t1`.
//! `SAE_BENCH_SHAPES=S1,S2` restricts the shapes, `SAE_BENCH_THREADS=1,2` the thread counts
//! (default: 1 and all cores). The CPU model and instruction set are printed first.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput};
use rayon::prelude::*;
use sae::data::generated::{ProblemShape, SPEC_SHAPES};
use sae::gemm::{gemm, peak, Backend, MatMut, MatRef};
use sae::{Dataset, Isa, Objective, Parameters, Real};

/// Buffers of the five whole-shape GEMMs.
struct GemmBound<T> {
    w1: Vec<T>,
    w2: Vec<T>,
    a2: Vec<T>,
    z3: Vec<T>,
    p: Vec<T>,
    grads: Vec<Vec<T>>,
}

impl<T: Real> GemmBound<T> {
    fn new(shape: &ProblemShape, threads: usize) -> Self {
        let (n, h, m) = (shape.visible, shape.hidden, shape.examples);
        let fill = |len: usize, v: f64| vec![T::cast(v); len];
        GemmBound {
            w1: fill(h * n, 0.01),
            w2: fill(n * h, 0.01),
            a2: fill(h * m, 0.5),
            z3: fill(n * m, 0.1),
            p: fill(h * m, 0.1),
            grads: (0..threads).map(|_| fill(2 * h * n, 0.0)).collect(),
        }
    }

    /// The five GEMMs of SPEC §2.1 on the whole shape, the examples split into one slab per
    /// thread (the ideal division of the work), nothing else.
    fn run(&mut self, backend: Backend, shape: &ProblemShape, x: &[T]) {
        let (n, h, m) = (shape.visible, shape.hidden, shape.examples);
        let slabs = self.grads.len();
        let one = T::one();
        let (w1, w2) = (MatRef::col_major(&self.w1, h, n), MatRef::col_major(&self.w2, n, h));
        let x = MatRef::col_major(x, n, m);
        let bounds: Vec<(usize, usize)> = (0..slabs).map(|s| (m * s / slabs, m * (s + 1) / slabs)).collect();
        let a2_slabs = split_columns(&mut self.a2, h, &bounds);
        let z3_slabs = split_columns(&mut self.z3, n, &bounds);
        let p_slabs = split_columns(&mut self.p, h, &bounds);
        a2_slabs
            .into_par_iter()
            .zip(z3_slabs)
            .zip(p_slabs)
            .zip(self.grads.par_iter_mut())
            .zip(bounds.par_iter())
            .for_each(|((((a2, z3), p), grad), &(start, end))| {
                let w = end - start;
                let xs = x.columns(start, w);
                let (g1, g2) = grad.split_at_mut(h * n);
                gemm(backend, one, w1, xs, T::zero(), MatMut::col_major(&mut *a2, h, w));
                let a2 = MatRef::col_major(a2, h, w);
                gemm(backend, one, w2, a2, T::zero(), MatMut::col_major(&mut *z3, n, w));
                let z3 = MatRef::col_major(z3, n, w);
                gemm(backend, one, z3, a2.t(), one, MatMut::col_major(g2, n, h));
                gemm(backend, one, w2.t(), z3, T::zero(), MatMut::col_major(&mut *p, h, w));
                gemm(backend, one, MatRef::col_major(p, h, w), xs.t(), one, MatMut::col_major(g1, h, n));
            });
    }
}

/// Disjoint column-major slabs of a `rows×m` column-major buffer.
fn split_columns<'a, T>(mut buf: &'a mut [T], rows: usize, bounds: &[(usize, usize)]) -> Vec<&'a mut [T]> {
    let mut out = Vec::new();
    for &(start, end) in bounds {
        let (head, tail) = buf.split_at_mut((end - start) * rows);
        out.push(head);
        buf = tail;
    }
    out
}

/// The thread counts to run: `SAE_BENCH_THREADS`, or 1 and all cores.
fn thread_counts() -> Vec<usize> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    match std::env::var("SAE_BENCH_THREADS") {
        Ok(list) => list
            .split(',')
            .map(|t| t.trim().parse().expect("SAE_BENCH_THREADS: a comma-separated list of counts"))
            .collect(),
        Err(_) if cores > 1 => vec![1, cores],
        Err(_) => vec![1],
    }
}

/// The FMA peak of one core in flop/s for `T` on the detected instruction set: the median of
/// nine timed runs of 16 GFLOP each (0.1–0.2 s on a CPU with AVX-512, long enough for the clock
/// to settle).
fn measured_peak<T: Real>(isa: Isa) -> f64 {
    let trips = 16_000_000_000 / peak::flops_per_trip(isa, std::mem::size_of::<T>());
    let mut rates: Vec<f64> = (0..9)
        .map(|_| {
            let start = Instant::now();
            let flops = peak::run::<T>(isa, trips).expect("the detected set is supported");
            flops / start.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

fn bench_peak<T: Real>(c: &mut Criterion, isa: Isa) {
    let trips = 1 << 20;
    let mut group = c.benchmark_group("peak");
    group.throughput(Throughput::Elements(
        peak::run::<T>(isa, 0).map_or(0, |_| (trips * peak::flops_per_trip(isa, std::mem::size_of::<T>())) as u64),
    ));
    group.bench_function(format!("{}/{}", T::NAME, isa.name()), |b| b.iter(|| peak::run::<T>(isa, trips)));
    group.finish();
}

fn bench_shape<T: Real>(c: &mut Criterion, shape: &ProblemShape, peak_flops: f64) {
    let values = shape.uniform_data::<T>(2024);
    let hyper = shape.hyper().unwrap();
    let theta = Parameters::<T>::init(shape.visible, shape.hidden, 1);
    let mut grad = vec![T::zero(); theta.theta().len()];

    let mut group = c.benchmark_group(shape.name);
    group.throughput(Throughput::Elements(shape.examples as u64));
    let big = shape.gemm_flops() > 1e10;
    let samples = if big { 10 } else { 30 };
    group.sample_size(samples);
    if big {
        // One evaluation per sample: criterion's default linear sampling would run 55.
        group.sampling_mode(SamplingMode::Flat);
    }
    group.warm_up_time(Duration::from_secs(if big { 1 } else { 2 }));
    group.measurement_time(Duration::from_secs(if big { 10 } else { 5 }));
    for &backend in Backend::ALL {
        for threads in thread_counts() {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let name = format!("{}/{}/t{threads}", T::NAME, backend.name());
            let id = |what: &str| BenchmarkId::new(name.clone(), what);

            let data = Dataset::examples_by_features(&values, shape.examples, shape.visible).unwrap();
            let mut objective = Objective::new(hyper, data).unwrap().with_backend(backend);
            // Every sample's time per evaluation, for the fraction of the peak printed below.
            let per_evaluation = Mutex::new(Vec::new());
            // The sample's evaluations run inside one `install`, as a training run's do: one per
            // evaluation would time the pool's wake-up too (tens of µs on a shared machine,
            // some percent of S1).
            group.bench_function(id("engine"), |b| {
                b.iter_custom(|iterations| {
                    let start = Instant::now();
                    pool.install(|| {
                        for _ in 0..iterations {
                            objective.evaluate(theta.theta(), &mut grad).unwrap();
                        }
                    });
                    let elapsed = start.elapsed();
                    per_evaluation.lock().unwrap().push(elapsed.as_secs_f64() / iterations as f64);
                    elapsed
                })
            });
            // Criterion calls the routine during its warm-up too: keep the measured samples, the
            // last `samples` calls.
            let mut times = per_evaluation.into_inner().unwrap();
            times.drain(..times.len().saturating_sub(samples));
            if !times.is_empty() {
                times.sort_by(f64::total_cmp);
                let median = times[times.len() / 2];
                let rate = shape.gemm_flops() / median;
                println!(
                    "{}/{name}: 10·h·n·m = {:.3} GFLOP in {:.3} ms = {:.1} GFLOP/s = {:.2} of the {} peak of one core{}",
                    shape.name,
                    shape.gemm_flops() / 1e9,
                    median * 1e3,
                    rate / 1e9,
                    rate / peak_flops / threads as f64,
                    T::NAME,
                    if threads > 1 { format!(" (per thread, {threads} threads)") } else { String::new() },
                );
            }

            let mut bound = GemmBound::<T>::new(shape, threads);
            group.bench_function(id("gemm_bound"), |b| {
                b.iter_custom(|iterations| {
                    let start = Instant::now();
                    pool.install(|| (0..iterations).for_each(|_| bound.run(backend, shape, &values)));
                    start.elapsed()
                })
            });
        }
    }
    group.finish();
}

/// The CPU's model name, from `/proc/cpuinfo` where there is one.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn benches(c: &mut Criterion) {
    let isa = Isa::detect();
    let (peak32, peak64) = (measured_peak::<f32>(isa), measured_peak::<f64>(isa));
    println!(
        "CPU: {} ({} cores), instruction set {}; FMA peak of one core: f32 {:.1} GFLOP/s, f64 {:.1} GFLOP/s",
        cpu_model(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        isa.name(),
        peak32 / 1e9,
        peak64 / 1e9
    );
    bench_peak::<f32>(c, isa);
    bench_peak::<f64>(c, isa);
    let only = std::env::var("SAE_BENCH_SHAPES").ok();
    for shape in &SPEC_SHAPES {
        if only.as_deref().is_some_and(|list| !list.split(',').any(|s| s == shape.name)) {
            continue;
        }
        bench_shape::<f32>(c, shape, peak32);
        bench_shape::<f64>(c, shape, peak64);
    }
}

criterion_group!(objective, benches);
criterion_main!(objective);
