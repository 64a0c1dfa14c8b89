//! Repeated evaluations reuse the objective's workspace: after the first, the engine allocates
//! nothing, with or without a corrupted input (whose scratch the forward pass's tasks borrow). (`matrixmultiply` allocates its own packing buffer inside each GEMM call; that is
//! the only allocation allowed, at most one per GEMM. The native GEMM packs into buffers that
//! each thread keeps.)
//!
//! The pool's worker threads allocate now and then on their own (rayon grows a work-stealing
//! deque when a thread first steals), whatever the task. The engine's code does the same work
//! on every evaluation, so the test takes the fewest allocations seen in several evaluations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use sae::model::Corruption;
use sae::{Backend, Dataset, HyperParams, Objective, Parameters};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn evaluations_after_the_first_allocate_nothing_beyond_the_gemm_back_end() {
    let (n, h, m, block) = (40, 12, 3000, 128);
    let values: Vec<f32> = (0..m * n).map(|i| 0.1 + 0.8 * ((i * 7919) % 997) as f32 / 997.0).collect();
    let data = Dataset::examples_by_features(&values, m, n).unwrap();
    let plain = HyperParams::builder(n, h).rho(0.1).build().unwrap();
    let denoising = HyperParams::builder(n, h).rho(0.1).corruption(Corruption::Masking { probability: 0.25 }, 7);
    let theta = Parameters::<f32>::init(n, h, 3);
    let mut grad = vec![0.0; theta.theta().len()];
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    for (hyper, &backend) in
        [plain, denoising.build().unwrap()].into_iter().flat_map(|h| Backend::ALL.iter().map(move |b| (h, b)))
    {
        let mut objective = Objective::new(hyper, data).unwrap().with_backend(backend).with_block_size(block).unwrap();
        let gemm_calls = 5 * m.div_ceil(block);
        let allowed = match backend {
            Backend::Native => 0,
            Backend::MatrixMultiply => gemm_calls,
            #[cfg(feature = "openblas")]
            Backend::OpenBlas => 0,
        };
        let fewest = pool.install(|| {
            objective.evaluate(theta.theta(), &mut grad).unwrap();
            (0..5)
                .map(|_| {
                    let before = ALLOCATIONS.load(Ordering::SeqCst);
                    objective.evaluate(theta.theta(), &mut grad).unwrap();
                    ALLOCATIONS.load(Ordering::SeqCst) - before
                })
                .min()
                .unwrap()
        });
        let what = if hyper.corruption() == Corruption::None { "plain" } else { "denoising" };
        assert!(fewest <= allowed, "{what}, {backend:?}: {fewest} allocations in an evaluation, {allowed} allowed");
    }
}
