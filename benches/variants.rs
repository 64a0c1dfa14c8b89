//! Cost+gradient of every member of the autoencoder family on S2, beside the KL-sparse sigmoid
//! model (`ufldl`) in the same run, so each variant's cost is a ratio of two figures measured
//! together (issue 6's target: within 1.3×). One thread, the default GEMM back-end.
//!
//! `cargo bench --bench variants [-- FILTER]`, e.g. `-- f32/`.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sae::data::generated::SPEC_SHAPES;
use sae::model::{Activation, Corruption, HyperParamsBuilder, Reconstruction, SparsityPenalty};
use sae::{Dataset, Objective, Parameters, Real};

/// The variants, each one change from S2's UFLDL model.
fn family(builder: HyperParamsBuilder) -> Vec<(&'static str, HyperParamsBuilder)> {
    vec![
        ("ufldl", builder),
        ("tanh", builder.activation(Activation::Tanh)),
        ("relu_l1", builder.activation(Activation::Relu).penalty(SparsityPenalty::L1)),
        ("l1", builder.penalty(SparsityPenalty::L1)),
        ("linear_decoder", builder.reconstruction(Reconstruction::LinearSquaredError)),
        ("cross_entropy", builder.reconstruction(Reconstruction::SigmoidCrossEntropy)),
        ("tied", builder.tied(true)),
        ("contractive_tied", builder.contractive(0.1).tied(true)),
        ("masking", builder.corruption(Corruption::Masking { probability: 0.3 }, 1)),
        ("gaussian", builder.corruption(Corruption::Gaussian { std_dev: 0.1 }, 1)),
    ]
}

fn bench_variants<T: Real>(c: &mut Criterion) {
    let shape = &SPEC_SHAPES[1];
    let values = shape.uniform_data::<T>(2024);
    let theta = Parameters::<T>::init(shape.visible, shape.hidden, 1);
    let mut grad = vec![T::zero(); theta.theta().len()];
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();

    let mut group = c.benchmark_group("S2");
    group.throughput(Throughput::Elements(shape.examples as u64));
    group.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    let builder =
        sae::HyperParams::builder(shape.visible, shape.hidden).lambda(shape.lambda).beta(shape.beta).rho(shape.rho);
    for (name, builder) in family(builder) {
        let data = Dataset::examples_by_features(&values, shape.examples, shape.visible).unwrap();
        let mut objective = Objective::new(builder.build().unwrap(), data).unwrap();
        // A sample's evaluations run inside one `install`, as a training run's do (and the
        // `objective` bench's): one per evaluation would time the pool's wake-up too.
        group.bench_function(BenchmarkId::new(format!("{}/t1", T::NAME), name), |b| {
            b.iter_custom(|iterations| {
                pool.install(|| {
                    let start = Instant::now();
                    for _ in 0..iterations {
                        objective.evaluate(theta.theta(), &mut grad).unwrap();
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    bench_variants::<f32>(c);
    bench_variants::<f64>(c);
}

criterion_group!(variants, benches);
criterion_main!(variants);
