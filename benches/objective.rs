//! Cost+gradient of the SPEC §3 shapes, f32 and f64, 1 and 2 threads, every compiled GEMM
//! back-end; and, in the same run, the five GEMMs of each shape alone (`gemm_bound`), so the
//! engine's overhead is a ratio of two figures measured together.
//!
//! `cargo bench --bench objective [-- FILTER]`, e.g. `-- S1/` or `-- f32/openblas/t1`.
//! `SAE_BENCH_SHAPES=S1,S2` restricts the shapes.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput};
use rayon::prelude::*;
use sae::data::generated::{ProblemShape, SPEC_SHAPES};
use sae::gemm::{gemm, Backend, MatMut, MatRef};
use sae::{Dataset, Objective, Parameters, Real};

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

fn bench_shape<T: Real>(c: &mut Criterion, shape: &ProblemShape) {
    let values = shape.uniform_data::<T>(2024);
    let hyper = shape.hyper().unwrap();
    let theta = Parameters::<T>::init(shape.visible, shape.hidden, 1);
    let mut grad = vec![T::zero(); theta.theta().len()];

    let mut group = c.benchmark_group(shape.name);
    group.throughput(Throughput::Elements(shape.examples as u64));
    let big = shape.gemm_flops() > 1e10;
    group.sample_size(if big { 10 } else { 30 });
    if big {
        // One evaluation per sample: criterion's default linear sampling would run 55.
        group.sampling_mode(SamplingMode::Flat);
    }
    group.warm_up_time(Duration::from_secs(if big { 1 } else { 2 }));
    group.measurement_time(Duration::from_secs(if big { 10 } else { 5 }));
    for &backend in Backend::ALL {
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let id = |what: &str| BenchmarkId::new(format!("{}/{}/t{threads}", T::NAME, backend.name()), what);

            let data = Dataset::examples_by_features(&values, shape.examples, shape.visible).unwrap();
            let mut objective = Objective::new(hyper, data).unwrap().with_backend(backend);
            group.bench_function(id("engine"), |b| {
                b.iter(|| pool.install(|| objective.evaluate(theta.theta(), &mut grad).unwrap()))
            });

            let mut bound = GemmBound::<T>::new(shape, threads);
            group.bench_function(id("gemm_bound"), |b| b.iter(|| pool.install(|| bound.run(backend, shape, &values))));
        }
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    let only = std::env::var("SAE_BENCH_SHAPES").ok();
    for shape in &SPEC_SHAPES {
        if only.as_deref().is_some_and(|list| !list.split(',').any(|s| s == shape.name)) {
            continue;
        }
        bench_shape::<f32>(c, shape);
        bench_shape::<f64>(c, shape);
    }
}

criterion_group!(objective, benches);
criterion_main!(objective);
