//! A forced instruction set is the one whose GEMM micro-kernels run. In a test binary of its
//! own: the products counters are per process, and no other test may run native products
//! beside this one.

use sae::gemm::products_run;
use sae::{Isa, Objective};

mod common;

#[test]
fn a_forced_instruction_set_is_the_one_whose_micro_kernels_run() {
    let (n, h, m, block) = (20, 7, 300, 100);
    let values = common::uniform_data(m, n, 5);
    let data = sae::Dataset::examples_by_features(&values, m, n).unwrap();
    let theta = common::theta(n, h, 1);
    let mut grad = vec![0.0; theta.len()];
    let supported: Vec<Isa> = Isa::ALL.into_iter().filter(|isa| isa.is_supported()).collect();
    for &isa in &supported {
        let mut objective =
            Objective::new(common::hyper(n, h), data).unwrap().with_isa(isa).unwrap().with_block_size(block).unwrap();
        let before: Vec<u64> = supported.iter().map(|&other| products_run(other)).collect();
        objective.evaluate(&theta, &mut grad).unwrap();
        for (&other, before) in supported.iter().zip(before) {
            // Five products a block of examples, all on the forced set and none on another.
            let expected = if other == isa { 5 * m.div_ceil(block) as u64 } else { 0 };
            assert_eq!(products_run(other) - before, expected, "{isa:?} forced: products on {other:?}");
        }
    }
}
