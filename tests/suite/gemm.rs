//! The GEMM layer: every back-end, and the native one on every instruction set the CPU has,
//! computes `C ← α A B + β C` as a plain triple loop does, for every layout of every operand,
//! shapes that cut through the cache blocks and the register tiles, and packed operands in the
//! role they were packed for and in the other one.

use sae::gemm::{Backend, Gemm, MatMut, MatRef, Order, PackBuffer};
use sae::{Isa, Real};

/// Every back-end × instruction set to test: the native GEMM on each supported set, the others
/// once.
fn gemms() -> Vec<Gemm> {
    let mut all = Vec::new();
    for &backend in Backend::ALL {
        match backend {
            Backend::Native => all.extend(
                Isa::ALL.into_iter().filter(|isa| isa.is_supported()).map(|isa| Gemm::new(backend, isa).unwrap()),
            ),
            _ => all.push(Gemm::detect(backend)),
        }
    }
    all
}

/// A matrix's storage: `rows × cols` with the given strides, inside a buffer with a guard of
/// NaNs around and between its elements.
#[derive(Clone, Copy, Debug)]
enum Storage {
    ColMajor,
    RowMajor,
    /// Column-major with a leading dimension of `rows + 3`.
    Padded,
    /// Neither stride 1: every other element of a column, columns `2·rows + 1` apart.
    Strided,
}

impl Storage {
    const ALL: [Storage; 4] = [Storage::ColMajor, Storage::RowMajor, Storage::Padded, Storage::Strided];

    fn strides(self, rows: usize, cols: usize) -> (usize, usize) {
        match self {
            Storage::ColMajor => (1, rows.max(1)),
            Storage::RowMajor => (cols.max(1), 1),
            Storage::Padded => (1, rows + 3),
            Storage::Strided => (2, 2 * rows + 1),
        }
    }

    /// The buffer holding `value(i, j)` at `(i, j)` and NaN everywhere else.
    fn fill<T: Real>(self, rows: usize, cols: usize, value: impl Fn(usize, usize) -> f64) -> (Vec<T>, (usize, usize)) {
        let (rs, cs) = self.strides(rows, cols);
        let len = if rows == 0 || cols == 0 { 1 } else { (rows - 1) * rs + (cols - 1) * cs + 1 };
        let mut data = vec![T::nan(); len];
        for i in 0..rows {
            for j in 0..cols {
                data[i * rs + j * cs] = T::cast(value(i, j));
            }
        }
        (data, (rs, cs))
    }
}

// Small integers: every product and sum below stays under 2^24, so it is exact in f32 and f64
// in any order of summation, and every back-end must give exactly the same C.
fn a_value(i: usize, p: usize) -> f64 {
    ((i * 31 + p * 17) % 23) as f64 - 11.0
}

fn b_value(p: usize, j: usize) -> f64 {
    ((p * 13 + j * 7) % 19) as f64 - 9.0
}

fn c_value(i: usize, j: usize) -> f64 {
    ((i * 5 + j * 3) % 11) as f64 - 5.0
}

/// `α A B + β C` in f64 by the definition (C not read when β = 0).
fn expected(m: usize, k: usize, n: usize, alpha: f64, beta: f64) -> Vec<f64> {
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let product: f64 = (0..k).map(|p| a_value(i, p) * b_value(p, j)).sum();
            let c = if beta == 0.0 { 0.0 } else { beta * c_value(i, j) };
            out[i + j * m] = alpha * product + c;
        }
    }
    out
}

/// Runs one product with the given storages and checks every element of `C` (and that the
/// guard values between them were not written).
#[allow(clippy::too_many_arguments)]
fn check_product<T: Real>(
    gemm: Gemm,
    (m, k, n): (usize, usize, usize),
    storages: [Storage; 3],
    alpha: f64,
    beta: f64,
    packed: Option<Order>,
) {
    let [sa, sb, sc] = storages;
    let (a, (rsa, csa)) = sa.fill::<T>(m, k, a_value);
    let (b, (rsb, csb)) = sb.fill::<T>(k, n, b_value);
    // With β = 0, C starts as NaN: the product must not read it.
    let (mut c, (rsc, csc)) = sc.fill::<T>(m, n, |i, j| if beta == 0.0 { f64::NAN } else { c_value(i, j) });
    let a_view = MatRef::new(&a, m, k, rsa, csa);
    let b_view = MatRef::new(&b, k, n, rsb, csb);
    let c_view = MatMut::new(&mut c, m, n, rsc, csc);
    let (mut left, mut right) = (PackBuffer::default(), PackBuffer::default());
    match packed {
        None => gemm.product(T::cast(alpha), a_view, b_view, T::cast(beta), c_view),
        Some(order) => {
            let a_packed = gemm.pack_left(a_view, order, &mut left);
            let b_packed = gemm.pack_right(b_view, order, &mut right);
            gemm.product(T::cast(alpha), &a_packed, &b_packed, T::cast(beta), c_view);
        }
    }
    let want = expected(m, k, n, alpha, beta);
    let what = format!("{gemm:?} {} m={m} k={k} n={n} {storages:?} α={alpha} β={beta} packed for {packed:?}", T::NAME);
    for i in 0..m {
        for j in 0..n {
            let got = c[i * rsc + j * csc].as_f64();
            assert_eq!(got, want[i + j * m], "{what}: C[{i},{j}]");
        }
    }
    let written: std::collections::HashSet<usize> =
        (0..m).flat_map(|i| (0..n).map(move |j| i * rsc + j * csc)).collect();
    for (index, value) in c.iter().enumerate() {
        assert!(written.contains(&index) || value.is_nan(), "{what}: wrote outside C at {index}");
    }
}

/// Shapes around every edge: single elements, partial register tiles, one or two columns past
/// whole tiles (the wide tiles: 13 = 12 + 1, 25, 26, 38 = 36 + 2, in both orders of `C`, and
/// over several depth blocks), last panels of exactly half a tile's rows (20 = 2·8 + 4 for
/// MR = 8, 48 = 32 + 16 for MR = 32 when `C` is row-major: the half-height tiles written in
/// place), several depth blocks (KC ≤ 384), several row blocks (MC ≤ 512), and a product of
/// depth 0.
const SHAPES: [(usize, usize, usize); 12] = [
    (20, 7, 48),
    (38, 40, 26),
    (26, 800, 13),
    (1, 1, 1),
    (3, 5, 2),
    (33, 17, 13),
    (64, 64, 25),
    (25, 64, 200),
    (70, 800, 29),
    (530, 40, 30),
    (7, 0, 5),
    (96, 9, 1),
];

/// The storages a back-end takes: BLAS needs a unit stride in every operand (the adapter refuses
/// any other view, and the engine makes none).
fn storages(gemm: Gemm) -> Vec<Storage> {
    let blas = gemm.backend().name() == "openblas";
    Storage::ALL.into_iter().filter(|s| !(blas && matches!(s, Storage::Strided))).collect()
}

fn every_product<T: Real>() {
    for gemm in gemms() {
        for shape in SHAPES {
            for &sa in &storages(gemm) {
                for &sb in &storages(gemm) {
                    for &sc in &storages(gemm) {
                        check_product::<T>(gemm, shape, [sa, sb, sc], 1.0, 0.0, None);
                    }
                }
            }
            for (alpha, beta) in [(0.5, 2.0), (-1.0, 1.0), (0.0, 0.5), (0.0, 0.0)] {
                check_product::<T>(
                    gemm,
                    shape,
                    [Storage::ColMajor, Storage::RowMajor, Storage::ColMajor],
                    alpha,
                    beta,
                    None,
                );
                check_product::<T>(
                    gemm,
                    shape,
                    [Storage::RowMajor, Storage::ColMajor, Storage::RowMajor],
                    alpha,
                    beta,
                    None,
                );
            }
        }
    }
}

#[test]
fn every_back_end_and_instruction_set_computes_the_product_in_f64() {
    every_product::<f64>();
}

#[test]
fn every_back_end_and_instruction_set_computes_the_product_in_f32() {
    every_product::<f32>();
}

#[test]
fn packed_operands_give_the_same_product_in_their_own_role_and_in_the_other() {
    for gemm in gemms() {
        // (530, 800, 30): a prepacked operand read at a later row block and a later, shorter,
        // depth block together.
        for shape in SHAPES.into_iter().chain([(530, 800, 30)]) {
            for order in [Order::ColMajor, Order::RowMajor] {
                for sc in storages(gemm) {
                    for (alpha, beta) in [(1.0, 0.0), (0.5, 1.0)] {
                        check_product::<f64>(
                            gemm,
                            shape,
                            [Storage::RowMajor, Storage::ColMajor, sc],
                            alpha,
                            beta,
                            Some(order),
                        );
                        check_product::<f32>(
                            gemm,
                            shape,
                            [Storage::ColMajor, Storage::Padded, sc],
                            alpha,
                            beta,
                            Some(order),
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn an_instruction_set_the_cpu_lacks_is_an_error() {
    for isa in Isa::ALL.into_iter().filter(|isa| !isa.is_supported()) {
        assert!(Gemm::new(Backend::Native, isa).is_err());
    }
}

#[test]
#[should_panic(expected = "would write some elements twice")]
fn a_mutable_view_whose_elements_overlap_is_refused() {
    let mut data = vec![0.0f64; 10];
    MatMut::new(&mut data, 3, 3, 1, 2);
}

#[test]
#[should_panic(expected = "reaches past")]
fn a_view_whose_last_offset_overflows_is_refused() {
    let data = vec![0.0f64; 10];
    MatRef::new(&data, 2, 2, usize::MAX / 2 + 1, 1);
}

#[test]
#[should_panic(expected = "columns")]
fn columns_past_the_end_are_refused_without_overflow() {
    let data = vec![0.0f64; 6];
    MatRef::new(&data, 1, 3, 1, 2).columns(1 << 63, (1 << 63) + 1);
}

#[test]
fn dense_and_degenerate_mutable_views_are_accepted() {
    let mut empty: [f64; 0] = [];
    MatMut::col_major(&mut empty, 0, 5);
    MatMut::row_major(&mut empty, 5, 0);
    let mut data = vec![0.0f64; 12];
    MatMut::new(&mut data, 3, 4, 1, 3);
    MatMut::new(&mut data, 3, 4, 4, 1);
    MatMut::new(&mut data, 1, 5, 0, 2);
    MatMut::new(&mut data, 6, 1, 2, 0);
    MatMut::new(&mut data, 2, 2, 1, 5);
}

/// A broadcast view (stride 0) is a legal operand of the native GEMM, which reads it through
/// its strides; BLAS cannot take it, and the adapter refuses it instead of reading past it.
#[test]
fn a_broadcast_operand_is_read_through_its_strides() {
    let a = [2.0f64, 3.0];
    let b = [1.0f64, 1.0, 1.0];
    let a_view = MatRef::new(&a, 4, 2, 0, 1); // every row is [2, 3]
    let b_view = MatRef::new(&b, 2, 1, 1, 1);
    for gemm in gemms() {
        #[cfg(feature = "openblas")]
        if gemm.backend() == Backend::OpenBlas {
            let result = std::panic::catch_unwind(|| {
                let mut c = [0.0f64; 4];
                gemm.product(1.0, a_view, b_view, 0.0, MatMut::col_major(&mut c, 4, 1));
            });
            assert!(result.is_err(), "OpenBLAS was handed a leading dimension below its rows");
            continue;
        }
        let mut c = [0.0f64; 4];
        gemm.product(1.0, a_view, b_view, 0.0, MatMut::col_major(&mut c, 4, 1));
        assert_eq!(c, [5.0; 4], "{gemm:?}");
    }
}

/// `SAE_ISA` forces the command line's instruction set, and the tool reports how many native
/// products ran on it: a forced set that did not run shows 0 and fails here.
#[test]
fn sae_isa_forces_the_micro_kernels_of_the_command_line() {
    for isa in Isa::ALL.into_iter().filter(|isa| isa.is_supported()) {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_sae"))
            .args(["objective", "--shape", "S1", "--f32", "--threads", "1", "--repeat", "1"])
            .env("SAE_ISA", isa.name())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
        let marker = format!(" products on {}), {} kernels", isa.name(), isa.name());
        let line =
            stdout.lines().find(|line| line.contains(&marker)).unwrap_or_else(|| panic!("no {marker:?} in {stdout}"));
        let count: u64 = line[..line.find(&marker).unwrap()].rsplit('(').next().unwrap().parse().unwrap();
        assert!(count > 0, "{isa:?} forced, but no product ran on it: {line}");
    }
}
