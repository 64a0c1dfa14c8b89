//! Every SIMD kernel against its scalar twin, and the vectorised `exp` against the standard
//! library's, over the whole useful range and at the extremes.

use crate::gemm::{MatMut, MatRef};
use crate::kernels::lanes::ExpConstants;
use crate::kernels::scalar::collect_above;
use crate::kernels::{AdamStep, Isa, Kernels, COLLECT_GROUP};
use crate::model::{Activation, Reconstruction};
use crate::Real;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

fn vector_sets<T: Real>() -> Vec<Kernels<T>> {
    Isa::ALL.into_iter().filter(|&isa| isa != Isa::Scalar).filter_map(Kernels::for_isa).collect()
}

/// Distance in units in the last place between two floats given by their `width`-bit
/// patterns: sign-magnitude mapped onto ordered integers (both zeros at 0).
fn ulps(a: u64, b: u64, width: u32) -> u64 {
    let sign = 1u64 << (width - 1);
    let key = |bits: u64| if bits & sign != 0 { -i128::from(bits & !sign) } else { i128::from(bits) };
    (key(a) - key(b)).unsigned_abs() as u64
}

fn ulps_f32(a: f32, b: f32) -> u64 {
    ulps(a.to_bits().into(), b.to_bits().into(), 32)
}

fn ulps_f64(a: f64, b: f64) -> u64 {
    ulps(a.to_bits(), b.to_bits(), 64)
}

#[test]
fn vector_exp_f32_is_within_1_ulp_of_std_over_its_whole_range() {
    for kernels in vector_sets::<f32>() {
        // Every 61st float between the underflow and overflow thresholds: ~36 million inputs
        // (a sparser sweep in unoptimised builds).
        let (lo, hi) = (-104.0f32, 89.0f32);
        let step = if cfg!(debug_assertions) { 997 } else { 61 };
        let mut worst = (0, 0.0f32);
        let mut batch = Vec::with_capacity(1 << 16);
        let flush = |batch: &mut Vec<f32>, worst: &mut (u64, f32)| {
            let mut out = batch.clone();
            (kernels.exp)(&mut out);
            for (&x, &y) in batch.iter().zip(&out) {
                let d = ulps_f32(y, x.exp());
                if d > worst.0 {
                    *worst = (d, x);
                }
            }
            batch.clear();
        };
        for bits in (0..=hi.to_bits()).step_by(step).chain(((-0.0f32).to_bits()..=lo.to_bits()).step_by(step)) {
            batch.push(f32::from_bits(bits));
            if batch.len() == batch.capacity() {
                flush(&mut batch, &mut worst);
            }
        }
        flush(&mut batch, &mut worst);
        println!("{:?} f32 exp: worst error {} ulp at x = {:e}", kernels.isa, worst.0, worst.1);
        assert!(worst.0 <= 1, "{:?}: {} ulp at {:e}", kernels.isa, worst.0, worst.1);
    }
}

#[test]
fn vector_exp_f64_is_within_1_ulp_of_std_over_its_whole_range() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let mut inputs: Vec<f64> = (0..4_000_000).map(|_| rng.gen_range(-746.0..710.0)).collect();
    inputs.extend((0..1_000_000).map(|_| rng.gen_range(-1.0..1.0)));
    for kernels in vector_sets::<f64>() {
        let mut out = inputs.clone();
        (kernels.exp)(&mut out);
        let (worst, at) =
            inputs.iter().zip(&out).map(|(&x, &y)| (ulps_f64(y, x.exp()), x)).max_by_key(|&(d, _)| d).unwrap();
        println!("{:?} f64 exp: worst error {worst} ulp at x = {at:e}", kernels.isa);
        assert!(worst <= 1, "{:?}: {worst} ulp at {at:e}", kernels.isa);
    }
}

/// `exp`'s table: `2^{j/16} = EXP2_HI[j] + EXP2_LO[j]` with `HI` the nearest value and the
/// pair good to about twice the element's precision. f32's against f64's `exp2`; f64's by
/// raising `hi + lo` to the 16th power in double-double arithmetic, which must give `2^j`.
#[test]
fn exp_tables_hold_the_sixteenth_roots_of_powers_of_two_to_twice_the_precision() {
    for j in 0..16 {
        let (hi, lo) = (f32::EXP2_HI[j], f32::EXP2_LO[j]);
        let root = (j as f64 / 16.0).exp2();
        assert!(f64::from(lo).abs() <= 0.5 * f64::from(hi.next_up() - hi), "f32 {j}: {hi} is not the nearest");
        let error = (f64::from(hi) + f64::from(lo) - root).abs() / root;
        assert!(error <= 2f64.powi(-48), "f32 {j}: relative error {error:e}");

        let (mut hi, mut lo) = (f64::EXP2_HI[j], f64::EXP2_LO[j]);
        assert!(lo.abs() <= 0.5 * (hi.next_up() - hi), "f64 {j}: {hi} is not the nearest");
        for _ in 0..4 {
            // (hi + lo)² = hi² + 2 hi lo + lo², hi² split exactly by the FMA.
            let square = hi * hi;
            let error = hi.mul_add(hi, -square) + 2.0 * hi * lo;
            (hi, lo) = (square + error, error - ((square + error) - square));
        }
        let power = 2f64.powi(j as i32);
        let error = ((hi - power) + lo).abs() / power;
        assert!(error <= 2f64.powi(-98), "f64 {j}: (hi + lo)^16 off 2^{j} by {error:e}");
    }
}

#[test]
fn vector_exp_saturates_at_extremes_and_propagates_nan() {
    let inputs = [f64::INFINITY, f64::NEG_INFINITY, 1e4, -1e4, 710.0, -746.0, 0.0];
    let expected = [f64::INFINITY, 0.0, f64::INFINITY, 0.0, f64::INFINITY, 0.0, 1.0];
    for kernels in vector_sets::<f64>() {
        let mut v = inputs.to_vec();
        (kernels.exp)(&mut v);
        assert_eq!(v, expected, "{:?}", kernels.isa);
        let mut nan = [f64::NAN; 5];
        (kernels.exp)(&mut nan);
        assert!(nan.iter().all(|v| v.is_nan()));
    }
    for kernels in vector_sets::<f32>() {
        let mut v: Vec<f32> = inputs.iter().map(|&x| x as f32).collect();
        (kernels.exp)(&mut v);
        let expected: Vec<f32> = [f32::INFINITY, 0.0, f32::INFINITY, 0.0, f32::INFINITY, 0.0, 1.0].to_vec();
        assert_eq!(v, expected, "{:?}", kernels.isa);
        let mut nan = [f32::NAN; 9];
        (kernels.exp)(&mut nan);
        assert!(nan.iter().all(|v| v.is_nan()));
    }
}

/// The largest distance in ulps between the vector sigmoid of each set and the scalar
/// definition `1/(1 + e^{−z})`, over `inputs`.
fn sigmoid_worst_ulps<T: Real + std::fmt::LowerExp>(inputs: &[T], ulps: fn(T, T) -> u64) -> Vec<(Isa, u64, T)> {
    vector_sets::<T>()
        .into_iter()
        .map(|kernels| {
            let mut out = inputs.to_vec();
            (kernels.hidden(Activation::Sigmoid).activate_sum)(&mut out, T::zero());
            let (worst, at) = inputs
                .iter()
                .zip(&out)
                .map(|(&z, &a)| (ulps(a, crate::kernels::scalar::sigmoid(z)), z))
                .fold((0, T::zero()), |w, d| if d.0 > w.0 { d } else { w });
            println!("{:?} {} sigmoid: worst error {worst} ulp at z = {at:e}", kernels.isa, T::NAME);
            (kernels.isa, worst, at)
        })
        .collect()
}

#[test]
fn vector_sigmoid_is_within_4_ulp_of_its_definition_over_its_whole_range() {
    // 4 ulp, not 1: an ulp of `e^{−z}` (the vector `exp`'s error) becomes up to two of
    // `1 + e^{−z}` where the sum rounds, and a relative error at the top of the denominator's
    // binade is twice as many ulps at the bottom of the quotient's (measured: 4 with AVX2 and
    // AVX-512, at the same inputs).
    // Where σ is not 0 or 1 in the type: every 61st f32 (997th unoptimised), and 4 million
    // random f64 with a million more near 0, where σ is steepest.
    let step = if cfg!(debug_assertions) { 997 } else { 61 };
    let f32_inputs: Vec<f32> = (0..=20f32.to_bits())
        .step_by(step)
        .chain(((-0.0f32).to_bits()..=(-104.0f32).to_bits()).step_by(step))
        .map(f32::from_bits)
        .collect();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
    let mut f64_inputs: Vec<f64> = (0..4_000_000).map(|_| rng.gen_range(-746.0..40.0)).collect();
    f64_inputs.extend((0..1_000_000).map(|_| rng.gen_range(-1.0..1.0)));
    for (isa, worst, at) in sigmoid_worst_ulps(&f32_inputs, ulps_f32) {
        assert!(worst <= 4, "{isa:?} f32: {worst} ulp at {at:e}");
    }
    for (isa, worst, at) in sigmoid_worst_ulps(&f64_inputs, ulps_f64) {
        assert!(worst <= 4, "{isa:?} f64: {worst} ulp at {at:e}");
    }
}

#[test]
fn vector_sigmoid_propagates_nan() {
    fn check<T: Real>() {
        for kernels in vector_sets::<T>() {
            let mut z = vec![T::nan(); 19];
            (kernels.hidden(Activation::Sigmoid).activate_sum)(&mut z, T::zero());
            assert!(z.iter().all(|a| a.is_nan()), "{:?} {}", kernels.isa, T::NAME);
        }
    }
    check::<f32>();
    check::<f64>();
}

fn extreme_inputs<T: Real>() -> Vec<T> {
    [1e4, -1e4, f64::INFINITY, f64::NEG_INFINITY, 0.0, 88.5, -88.5, 745.0, -745.0, 40.0, -40.0]
        .iter()
        .map(|&v| T::cast(v))
        .collect()
}

fn sigmoid_saturates<T: Real>() {
    let expected = [1.0, 0.0, 1.0, 0.0, 0.5, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0];
    for kernels in vector_sets::<T>().into_iter().chain([Kernels::scalar()]) {
        let mut z = extreme_inputs::<T>();
        let sum = (kernels.hidden(Activation::Sigmoid).activate_sum)(&mut z, T::zero());
        for (i, (&a, &e)) in z.iter().zip(&expected).enumerate() {
            assert!(!a.is_nan(), "{:?} {}: NaN at {i}", kernels.isa, T::NAME);
            assert!((a.as_f64() - e).abs() < 1e-15, "{:?} {}: σ = {a} at {i}, expected {e}", kernels.isa, T::NAME);
        }
        assert!((sum - 5.5).abs() < 1e-6, "{:?}: sum {sum}", kernels.isa);
    }
}

#[test]
fn sigmoid_saturates_to_0_and_1_never_nan() {
    sigmoid_saturates::<f32>();
    sigmoid_saturates::<f64>();
}

#[test]
fn tanh_saturates_to_minus_1_and_1_never_nan() {
    let expected = [1.0, -1.0, 1.0, -1.0, 0.0, 1.0, -1.0, 1.0, -1.0, 1.0, -1.0];
    for kernels in vector_sets::<f64>().into_iter().chain([Kernels::scalar()]) {
        let mut z = extreme_inputs::<f64>();
        (kernels.hidden(Activation::Tanh).activate_sum)(&mut z, 0.0);
        assert_eq!(z, expected, "{:?}", kernels.isa);
    }
}

#[test]
fn sigmoid_output_deltas_and_losses_are_finite_at_extreme_finite_inputs() {
    for reconstruction in [Reconstruction::SigmoidSquaredError, Reconstruction::SigmoidCrossEntropy] {
        for kernels in vector_sets::<f32>().into_iter().chain([Kernels::scalar()]) {
            // Finite inputs: at z3 = ±inf the cross-entropy of x = 0.5 is infinite.
            let mut z: Vec<f32> = extreme_inputs::<f32>().into_iter().filter(|z| z.is_finite()).collect();
            let x = vec![0.5f32; z.len()];
            let mut sum = [0.0];
            let loss = output_delta_row(kernels, reconstruction, &mut z, &x, &mut sum);
            let finite = loss.is_finite() && sum[0].is_finite() && z.iter().all(|d| d.is_finite());
            assert!(finite, "{reconstruction:?} {:?}", kernels.isa);
        }
    }
}

#[test]
fn cross_entropy_is_exact_where_the_naive_formula_rounds_to_infinity() {
    // z3 = 40: a3 rounds to 1 in f64, so −ln(1 − a3) is infinite; the loss is 40 − 0·40 +
    // ln(1 + e^{−40}) = 40 to every digit.
    for kernels in vector_sets::<f64>().into_iter().chain([Kernels::scalar()]) {
        let mut z = vec![40.0f64, -40.0, 0.0];
        let loss = output_delta_row(kernels, Reconstruction::SigmoidCrossEntropy, &mut z, &[0.0, 1.0, 0.5], &mut [0.0]);
        let expected = 40.0 + 40.0 + 2f64.ln();
        assert!((loss - expected).abs() <= 1e-14 * expected, "{:?}: {loss} vs {expected}", kernels.isa);
    }
}

/// Inputs in the range the objective produces, lengths around the vector widths.
fn random_runs<T: Real>(seed: u64) -> Vec<(Vec<T>, Vec<T>)> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    (0..=41)
        .chain([63, 64, 65, 255, 256, 257, 1000])
        .map(|len| {
            let z = (0..len).map(|_| T::cast(rng.gen_range(-12.0..12.0))).collect();
            let x = (0..len).map(|_| T::cast(rng.gen_range(0.0..1.0))).collect();
            (z, x)
        })
        .collect()
}

/// Relative tolerance of one kernel output against its twin: a few ulp of `exp`, carried.
fn tolerance<T: Real>() -> f64 {
    if T::NAME == "f32" {
        4e-6
    } else {
        1e-14
    }
}

/// Relative error for values above 1, absolute below: the deltas are differences of nearly
/// equal terms (`a3 − x`) scaled by factors at most 1, so their error is absolute.
fn assert_close<T: Real>(what: &str, isa: Isa, got: &[T], want: &[T]) {
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g.as_f64() - w.as_f64()).abs() / w.as_f64().abs().max(1.0);
        assert!(err <= tolerance::<T>(), "{what} {isa:?} {}: [{i}] {g} vs {w}", T::NAME);
    }
}

fn assert_sum_close<T: Real>(what: &str, isa: Isa, got: f64, want: f64, scale: f64) {
    assert!((got - want).abs() <= tolerance::<T>() * scale.max(1e-300), "{what} {isa:?} {}: {got} vs {want}", T::NAME);
}

fn kernels_match_scalar<T: Real>() {
    let scalar = Kernels::<T>::scalar();
    for kernels in vector_sets::<T>() {
        let isa = kernels.isa;
        for (z, x) in random_runs::<T>(17) {
            let scale = z.len() as f64;

            let (mut got, mut want) = (z.clone(), z.clone());
            (kernels.exp)(&mut got);
            (scalar.exp)(&mut want);
            assert_close("exp", isa, &got, &want);

            for activation in Activation::ALL {
                let (fast, twin) = (kernels.hidden(activation), scalar.hidden(activation));
                let (mut got, mut want) = (z.clone(), z.clone());
                // With a bias, as the engine's forward pass calls it.
                let bias = T::cast(0.3);
                let (s_got, s_want) = ((fast.activate_sum)(&mut got, bias), (twin.activate_sum)(&mut want, bias));
                assert_close(&format!("{activation:?} activate_sum"), isa, &got, &want);
                assert_sum_close::<T>(&format!("{activation:?} activate_sum"), isa, s_got, s_want, scale * 12.0);

                // Activations this unit can produce.
                let a = want.clone();
                let (mut got, mut want) = (z.clone(), z.clone());
                let s = T::cast(-0.45);
                let (s_got, s_want) = ((fast.delta_sum)(&mut got, &a, s), (twin.delta_sum)(&mut want, &a, s));
                assert_close(&format!("{activation:?} delta_sum"), isa, &got, &want);
                assert_sum_close::<T>(&format!("{activation:?} delta_sum"), isa, s_got, s_want, scale * 12.0);

                let (mut got, mut want) = (z.clone(), z.clone());
                let (mut f_got, mut f_want) = (vec![T::zero(); z.len()], vec![T::zero(); z.len()]);
                let (p_got, d_got) = (fast.delta_deferred)(&mut got, &a, &mut f_got);
                let (p_want, d_want) = (twin.delta_deferred)(&mut want, &a, &mut f_want);
                assert_close(&format!("{activation:?} delta_deferred P"), isa, &got, &want);
                assert_close(&format!("{activation:?} delta_deferred F"), isa, &f_got, &f_want);
                assert_sum_close::<T>("delta_deferred ΣP", isa, p_got, p_want, scale * 12.0);
                assert_sum_close::<T>("delta_deferred ΣF", isa, d_got, d_want, scale);

                let c = T::cast(0.7);
                let (mut got, mut want) = (z.clone(), z.clone());
                let (added_got, squared_got) = (fast.contractive_delta)(&mut got, &a, c);
                let (added_want, squared_want) = (twin.contractive_delta)(&mut want, &a, c);
                assert_close(&format!("{activation:?} contractive_delta"), isa, &got, &want);
                assert_sum_close::<T>("contractive Σ added", isa, added_got, added_want, scale);
                assert_sum_close::<T>("contractive Σ f'²", isa, squared_got, squared_want, scale);
            }

            // |z x| ≤ 12 per term: the sum's rounding is relative to Σ |z x|.
            let magnitude: f64 = z.iter().zip(&x).map(|(a, b)| (a.as_f64() * b.as_f64()).abs()).sum();
            assert_sum_close::<T>("dot", isa, (kernels.dot)(&z, &x), (scalar.dot)(&z, &x), magnitude * 4.0);

            let alpha = T::cast(-0.37);
            let (mut got, mut want) = (x.clone(), x.clone());
            (kernels.axpy)(alpha, &z, &mut got);
            (scalar.axpy)(alpha, &z, &mut want);
            assert_close("axpy", isa, &got, &want);

            // The fused pass: as the scalar twin, and bit for bit as the set's own two kernels.
            let w: Vec<T> = x.iter().rev().copied().collect();
            let (mut fused, mut twin, mut apart) = (x.clone(), x.clone(), x.clone());
            let sum = (kernels.axpy_dot)(alpha, &z, &mut fused, &w);
            let twin_sum = (scalar.axpy_dot)(alpha, &z, &mut twin, &w);
            assert_close("axpy_dot", isa, &fused, &twin);
            let magnitude: f64 = w.iter().zip(&twin).map(|(w, y)| (w.as_f64() * y.as_f64()).abs()).sum();
            assert_sum_close::<T>("axpy_dot Σ", isa, sum, twin_sum, magnitude * 4.0);
            (kernels.axpy)(alpha, &z, &mut apart);
            assert_eq!(fused, apart, "{isa:?}: axpy_dot's update differs from axpy's");
            assert_eq!(
                sum.to_bits(),
                (kernels.dot)(&w, &apart).to_bits(),
                "{isa:?}: axpy_dot's sum differs from dot's"
            );
            // Its twin over the `x` read: as the scalar twin, and bit for bit as `axpy` then
            // `dot(w, z)`.
            let (mut fused, mut twin, mut apart) = (x.clone(), x.clone(), x.clone());
            let sum = (kernels.axpy_and_dot)(alpha, &z, &mut fused, &w);
            let twin_sum = (scalar.axpy_and_dot)(alpha, &z, &mut twin, &w);
            assert_close("axpy_and_dot", isa, &fused, &twin);
            let magnitude: f64 = w.iter().zip(&z).map(|(w, z)| (w.as_f64() * z.as_f64()).abs()).sum();
            assert_sum_close::<T>("axpy_and_dot Σ", isa, sum, twin_sum, magnitude * 4.0);
            (kernels.axpy)(alpha, &z, &mut apart);
            assert_eq!(fused, apart, "{isa:?}: axpy_and_dot's update differs from axpy's");
            assert_eq!(
                sum.to_bits(),
                (kernels.dot)(&w, &z).to_bits(),
                "{isa:?}: axpy_and_dot's sum differs from dot's"
            );
            // An infinite α makes infinities, not NaN where `dot` of the result has none.
            let (mut fused, mut apart) = (x.clone(), x.clone());
            let sum = (kernels.axpy_dot)(T::infinity(), &x, &mut fused, &x);
            (kernels.axpy)(T::infinity(), &x, &mut apart);
            let want = (kernels.dot)(&x, &apart);
            assert!(sum == want || (sum.is_nan() && want.is_nan()), "{isa:?}, α = ∞: {sum} vs {want}");
        }
    }
}

/// The output kernel on one output unit's row `z` against `x`, without bias.
fn output_delta_row<T: Real>(
    kernels: Kernels<T>,
    reconstruction: Reconstruction,
    z: &mut [T],
    x: &[T],
    sum: &mut [f64],
) -> f64 {
    let len = z.len();
    (kernels.output(reconstruction).delta)(
        MatMut::row_major(z, 1, len),
        MatRef::row_major(x, 1, len),
        &[T::zero()],
        sum,
    )
}

/// Output blocks as the engine makes them: GEMM tiles (up to 32×12, one vector and a tail),
/// whole blocks, one row, one column; `ld` beyond the block's extent as inside a larger `C`.
const OUTPUT_BLOCKS: [(usize, usize); 9] =
    [(1, 1), (1, 37), (37, 1), (5, 3), (16, 12), (32, 12), (33, 17), (21, 16), (70, 40)];

/// The output kernel of every reconstruction on blocks of both layouts (with bias, and
/// padding between rows or columns) against its scalar twin: `delta3`, the loss and `∇b2`'s
/// sums, which start non-zero (the kernel adds to them).
fn output_kernels_match_scalar<T: Real>() {
    let scalar = Kernels::<T>::scalar();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(29);
    for kernels in vector_sets::<T>() {
        for reconstruction in Reconstruction::ALL {
            let (fast, twin) = (kernels.output(reconstruction).delta, scalar.output(reconstruction).delta);
            for (rows, cols) in OUTPUT_BLOCKS {
                for by_columns in [true, false] {
                    let what =
                        format!("{reconstruction:?} {rows}×{cols} by {}", if by_columns { "columns" } else { "rows" });
                    let (inner, outer) = if by_columns { (rows, cols) } else { (cols, rows) };
                    let ld = inner + 3;
                    let len = ld * (outer - 1) + inner;
                    let z: Vec<T> = (0..len).map(|_| T::cast(rng.gen_range(-12.0..12.0))).collect();
                    let x: Vec<T> = (0..len).map(|_| T::cast(rng.gen_range(0.0..1.0))).collect();
                    let b: Vec<T> = (0..rows).map(|_| T::cast(rng.gen_range(-1.0..1.0))).collect();
                    let strides = if by_columns { (1, ld) } else { (ld, 1) };
                    let x_view = MatRef::new(&x, rows, cols, strides.0, strides.1);
                    let (mut got, mut want) = (z.clone(), z.clone());
                    let (mut sums_got, mut sums_want) = (vec![1.0; rows], vec![1.0; rows]);
                    let loss_got =
                        fast(MatMut::new(&mut got, rows, cols, strides.0, strides.1), x_view, &b, &mut sums_got);
                    let loss_want =
                        twin(MatMut::new(&mut want, rows, cols, strides.0, strides.1), x_view, &b, &mut sums_want);
                    assert_close(&what, kernels.isa, &got, &want);
                    // The padding between rows or columns is not touched.
                    assert!(got.iter().zip(&z).enumerate().all(|(k, (g, z))| k % ld < inner || g == z), "{what}");
                    // The loss grows like z² (linear) or |z| (cross-entropy): relative to Σ z².
                    let scale = (rows * cols) as f64;
                    assert_sum_close::<T>(&format!("{what} loss"), kernels.isa, loss_got, loss_want, scale * 169.0);
                    for (g, w) in sums_got.iter().zip(&sums_want) {
                        assert_sum_close::<T>(&format!("{what} sums"), kernels.isa, *g, *w, cols as f64 * 13.0);
                    }
                }
            }
        }
    }
}

#[test]
fn output_kernels_match_their_scalar_twins_on_blocks_of_either_layout() {
    output_kernels_match_scalar::<f32>();
    output_kernels_match_scalar::<f64>();
}

#[test]
fn output_kernel_is_the_formula_of_each_reconstruction() {
    // One column of three output units against x, with b2: z3 + b2 = (0, 2, −1).
    let z = [-0.5f64, 1.5, -2.0];
    let b = [0.5f64, 0.5, 1.0];
    let x = [0.25f64, 1.0, 0.0];
    let sigma = |v: f64| 1.0 / (1.0 + (-v).exp());
    for kernels in vector_sets::<f64>().into_iter().chain([Kernels::scalar()]) {
        for reconstruction in Reconstruction::ALL {
            let (mut delta, mut sums) = (z, [0.0; 3]);
            let loss = (kernels.output(reconstruction).delta)(
                MatMut::col_major(&mut delta, 3, 1),
                MatRef::col_major(&x, 3, 1),
                &b,
                &mut sums,
            );
            let (mut want_loss, mut want) = (0.0, [0.0; 3]);
            for k in 0..3 {
                let v = z[k] + b[k];
                let (d, l) = match reconstruction {
                    Reconstruction::SigmoidSquaredError => {
                        let a = sigma(v);
                        ((a - x[k]) * a * (1.0 - a), (a - x[k]).powi(2))
                    }
                    Reconstruction::LinearSquaredError => (v - x[k], (v - x[k]).powi(2)),
                    Reconstruction::SigmoidCrossEntropy => {
                        let a = sigma(v);
                        (a - x[k], -(x[k] * a.ln() + (1.0 - x[k]) * (1.0 - a).ln()))
                    }
                };
                want[k] = d;
                want_loss += l;
            }
            for k in 0..3 {
                assert!(
                    (delta[k] - want[k]).abs() < 1e-14 && (sums[k] - want[k]).abs() < 1e-14,
                    "{reconstruction:?} {:?}",
                    kernels.isa
                );
            }
            assert!((loss - want_loss).abs() < 1e-13, "{reconstruction:?} {:?}: {loss} vs {want_loss}", kernels.isa);
        }
    }
}

#[test]
#[should_panic(expected = "no common unit stride")]
fn output_kernel_refuses_blocks_of_different_layouts() {
    let (mut z, x) = (vec![0.0f64; 6], vec![0.0f64; 6]);
    let kernels = Kernels::<f64>::scalar();
    (kernels.output(Reconstruction::SigmoidSquaredError).delta)(
        MatMut::col_major(&mut z, 2, 3),
        MatRef::row_major(&x, 2, 3),
        &[0.0; 2],
        &mut [0.0; 2],
    );
}

#[test]
fn vector_kernels_match_their_scalar_twins_f32() {
    kernels_match_scalar::<f32>();
}

#[test]
fn vector_kernels_match_their_scalar_twins_f64() {
    kernels_match_scalar::<f64>();
}

#[test]
fn every_vector_isa_this_cpu_has_is_tested() {
    // On x86_64 CI machines AVX2+FMA is expected; a CPU without it would test the scalar set
    // only, and this test says so rather than passing silently.
    if cfg!(target_arch = "x86_64") && std::env::var_os("SAE_ALLOW_SCALAR_ONLY").is_none() {
        assert!(
            Isa::Avx2Fma.is_supported(),
            "AVX2+FMA not detected: vector kernels untested (set SAE_ALLOW_SCALAR_ONLY=1 to accept)"
        );
    }
}

fn collect_above_agrees_with_scalar<T: Real>() {
    let scalar = Kernels::<T>::scalar();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(11);
    for kernels in vector_sets::<T>() {
        // Every length around the group and vector widths, values above the threshold at
        // every density (NaN among them, never above), and buffers from too small to scan
        // anything to room for every value.
        for len in 0..70 {
            for density in [0.0, 0.1, 0.5, 1.0] {
                let shift: Vec<T> = (0..len).map(|_| T::cast(rng.gen_range(-0.25..0.25))).collect();
                let values: Vec<T> = (0..len)
                    .map(|i| match rng.gen_range(0.0..1.0) {
                        u if u < density => T::cast(0.75) - shift[i],
                        u if u < density + 0.05 => T::cast(f64::NAN),
                        _ => T::cast(rng.gen_range(-1.0..0.5)),
                    })
                    .collect();
                for room in [0, COLLECT_GROUP - 1, COLLECT_GROUP, COLLECT_GROUP + 3, 2 * COLLECT_GROUP + 5, 100] {
                    for threshold in [0.5, -2.0, f64::INFINITY] {
                        let threshold = T::cast(threshold);
                        let (mut got, mut want) = (vec![(T::zero(), 0); room], vec![(T::zero(), 0); room]);
                        let got_counts = (kernels.collect_above)(&values, &shift, threshold, 9, &mut got);
                        let want_counts = (scalar.collect_above)(&values, &shift, threshold, 9, &mut want);
                        let what = format!(
                            "{:?} collect_above: length {len}, room {room}, threshold {threshold:?}",
                            kernels.isa
                        );
                        assert_eq!(got_counts, want_counts, "{what}");
                        assert_eq!(got[..got_counts.1], want[..want_counts.1], "{what}");
                    }
                }
            }
        }
    }
}

#[test]
fn collect_above_appends_the_greater_shifted_values_like_the_scalar_scan() {
    collect_above_agrees_with_scalar::<f32>();
    collect_above_agrees_with_scalar::<f64>();
}

fn max_sum_agrees_with_scalar<T: Real>() {
    let scalar = Kernels::<T>::scalar();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(12);
    for kernels in vector_sets::<T>() {
        // Every length around the unrolled body (4 vectors) and its tail; NaN, infinities and
        // ties among the values; the maximum in the body, in the tail, or nowhere.
        for len in 0..150 {
            for case in 0..5 {
                let shift: Vec<T> = (0..len).map(|_| T::cast(f64::from(rng.gen_range(-2..3)) / 4.0)).collect();
                let values: Vec<T> = (0..len)
                    .map(|_| match (case, rng.gen_range(0..10)) {
                        (0, _) => T::cast(rng.gen_range(-1.0..1.0)),
                        (1, _) => T::cast(f64::from(rng.gen_range(-3..2))),
                        (2, 0) => T::cast(f64::INFINITY),
                        (2, _) | (3, 0..=4) => T::cast(f64::NAN),
                        (3, _) => T::cast(-rng.gen_range(1.0..5.0)),
                        _ => T::cast(f64::NEG_INFINITY),
                    })
                    .collect();
                let (got, want) = ((kernels.max_sum)(&values, &shift), (scalar.max_sum)(&values, &shift));
                assert_eq!(got, want, "{:?} max_sum, length {len}, case {case}", kernels.isa);
            }
        }
    }
}

#[test]
fn max_sum_finds_the_largest_shifted_value_like_the_scalar_fold() {
    max_sum_agrees_with_scalar::<f32>();
    max_sum_agrees_with_scalar::<f64>();
}

#[test]
fn the_scalar_max_sum_never_takes_nan_and_is_minus_infinity_without_a_value() {
    let scalar = Kernels::<f64>::scalar();
    assert_eq!((scalar.max_sum)(&[1.0, f64::NAN, 2.5, -4.0], &[0.5, 0.0, -1.0, 9.0]), 5.0);
    assert_eq!((scalar.max_sum)(&[f64::NAN, f64::NEG_INFINITY], &[0.0, 1.0]), f64::NEG_INFINITY);
    assert_eq!((scalar.max_sum)(&[], &[]), f64::NEG_INFINITY);
    // ∞ − ∞ is NaN, not taken.
    assert_eq!((scalar.max_sum)(&[f64::INFINITY, -3.0], &[f64::NEG_INFINITY, 1.0]), -2.0);
}

#[test]
fn the_scalar_collect_above_appends_every_greater_value_it_has_room_for_by_whole_groups() {
    let values = [0.0, 3.0, f64::NAN, 1.0, -1.0, 2.0];
    let shift = [0.5; 6];
    let mut room = vec![(0.0, 0); COLLECT_GROUP];
    // Room for a group: the whole (short) row, positions counted from `from`.
    assert_eq!(collect_above(&values, &shift, 1.0, 40, &mut room), (6, 3));
    assert_eq!(room[..3], [(3.5, 41), (1.5, 43), (2.5, 45)]);
    // Less than a group's room: nothing scanned.
    assert_eq!(collect_above(&values, &shift, 1.0, 0, &mut room[..COLLECT_GROUP - 1]), (0, 0));
    // Two groups and room for one: the first only.
    let long: Vec<f64> = (0..2 * COLLECT_GROUP).map(|i| i as f64).collect();
    let zero = vec![0.0; long.len()];
    assert_eq!(collect_above(&long, &zero, -1.0, 0, &mut room), (COLLECT_GROUP, COLLECT_GROUP));
}

fn adam_agrees_with_scalar<T: Real>() {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(13);
    let scalar = Kernels::<T>::scalar();
    for kernels in vector_sets::<T>() {
        // Lengths around the vector width; first steps (large corrections) and later ones,
        // zero and tiny gradients, moments of every size.
        for len in 0..70 {
            for t in [1, 2, 50] {
                let step = AdamStep {
                    learning_rate: T::cast(1e-3),
                    beta1: T::cast(0.9),
                    beta2: T::cast(0.999),
                    epsilon: T::cast(1e-8),
                    c1: T::cast(1.0 - 0.9f64.powi(t)),
                    c2: T::cast(1.0 - 0.999f64.powi(t)),
                };
                let draw = |rng: &mut Xoshiro256PlusPlus, scale: f64| -> Vec<T> {
                    (0..len)
                        .map(|i| match i % 7 {
                            0 => T::zero(),
                            1 => T::cast(1e-30 * rng.gen_range(-1.0..1.0)),
                            _ => T::cast(scale * rng.gen_range(-1.0..1.0)),
                        })
                        .collect()
                };
                let (x, m, g) = (draw(&mut rng, 2.0), draw(&mut rng, 0.1), draw(&mut rng, 5.0));
                let v: Vec<T> = draw(&mut rng, 0.3).iter().map(|&v| v * v).collect();
                let mut want = (x.clone(), m.clone(), v.clone());
                (scalar.adam)(&mut want.0, &mut want.1, &mut want.2, &g, &step);
                let mut got = (x, m, v);
                (kernels.adam)(&mut got.0, &mut got.1, &mut got.2, &g, &step);
                let bits = |values: &[T]| values.iter().map(|v| v.as_f64().to_bits()).collect::<Vec<_>>();
                for (what, got, want) in [("x", &got.0, &want.0), ("m", &got.1, &want.1), ("v", &got.2, &want.2)] {
                    assert_eq!(bits(got), bits(want), "{:?} adam {what}, length {len}, step {t}", kernels.isa);
                }
            }
        }
    }
}

#[test]
fn the_vector_adam_step_is_the_scalar_one_bit_for_bit() {
    adam_agrees_with_scalar::<f32>();
    adam_agrees_with_scalar::<f64>();
}
