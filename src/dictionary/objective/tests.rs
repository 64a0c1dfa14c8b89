//! The sparse evaluation against the per-example definition, by central differences, on every
//! instruction set, and independent of the thread count.

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::*;
use crate::dictionary::model::TopKModel;
use crate::dictionary::{Selection, Units};
use crate::kernels::Isa;

/// TopK, BatchTopK, ReLU, k-sparse, and each of their parts changed alone.
const ARCHITECTURES: [Architecture; 8] = [
    Architecture::TOPK,
    Architecture::BATCH_TOPK,
    Architecture::RELU,
    Architecture::K_SPARSE,
    Architecture { units: Units::Linear, ..Architecture::TOPK },
    Architecture { tied: true, ..Architecture::TOPK },
    Architecture { pre_encoder_bias: false, ..Architecture::K_SPARSE },
    Architecture { selection: Selection::Batch, ..Architecture::K_SPARSE },
];

/// The definition in f64, with the selection by a full sort (of each example's values, ties to
/// the earlier latent; or of the whole batch's, ties to the earlier example, then latent):
/// `(L, ∇L)`; with tied weights `∇W` in `W_enc`'s block.
fn reference(model: &TopKModel<f64>, x: &[f64], examples: usize) -> (f64, Vec<f64>) {
    reference_with(model, x, examples, None, 0.0)
}

/// The definition with the auxiliary loss, `(dead, k_aux, α s)`, and the L1 penalty's `λ`.
fn reference_with(
    model: &TopKModel<f64>,
    x: &[f64],
    examples: usize,
    aux: Option<(&[bool], usize, f64)>,
    l1: f64,
) -> (f64, Vec<f64>) {
    let (n, h, k) = (model.visible(), model.latents(), model.k());
    let p = model.blocks();
    // (With tied weights W_dec is W_enc: the decoder's gradient is folded into W_enc's block
    // at the end.)
    let layout = model.layout();
    let Architecture { units, selection, pre_encoder_bias, tied } = model.architecture();
    let shift = if pre_encoder_bias { 1.0 } else { 0.0 };
    let mut grad = vec![0.0; layout.len()];
    let mut loss = 0.0;
    let scale = 1.0 / examples as f64;
    let xcs: Vec<Vec<f64>> =
        (0..examples).map(|e| (0..n).map(|f| x[e * n + f] - shift * p.b_dec[f]).collect()).collect();
    let zs: Vec<Vec<f64>> = xcs
        .iter()
        .map(|xc| (0..h).map(|j| p.b_enc[j] + (0..n).map(|f| p.w_enc[j * n + f] * xc[f]).sum::<f64>()).collect())
        .collect();
    let selectable = |e: usize, j: usize| units == Units::Linear || zs[e][j] > 0.0;
    let larger_first = |a: &(usize, usize), b: &(usize, usize)| zs[b.0][b.1].total_cmp(&zs[a.0][a.1]).then(a.cmp(b));
    let orders: Vec<Vec<usize>> = match selection {
        Selection::PerExample => (0..examples)
            .map(|e| {
                let mut order: Vec<(usize, usize)> = (0..h).filter(|&j| selectable(e, j)).map(|j| (e, j)).collect();
                order.sort_by(larger_first);
                order.truncate(k);
                order.into_iter().map(|(_, j)| j).collect()
            })
            .collect(),
        Selection::All => (0..examples).map(|e| (0..h).filter(|&j| selectable(e, j)).collect()).collect(),
        Selection::Batch => {
            let mut order: Vec<(usize, usize)> =
                (0..examples).flat_map(|e| (0..h).map(move |j| (e, j))).filter(|&(e, j)| selectable(e, j)).collect();
            order.sort_by(larger_first);
            order.truncate(k * examples);
            (0..examples).map(|e| order.iter().filter(|s| s.0 == e).map(|s| s.1).collect()).collect()
        }
    };
    for e in 0..examples {
        let (xc, z, order) = (&xcs[e], &zs[e], &orders[e]);
        let r: Vec<f64> = (0..n)
            .map(|f| order.iter().map(|&j| z[j] * p.w_dec[j * n + f]).sum::<f64>() + p.b_dec[f] - x[e * n + f])
            .collect();
        loss += 0.5 * scale * r.iter().map(|v| v * v).sum::<f64>();
        let g = layout.split_mut(&mut grad);
        for &j in order {
            // λ/B a_j ‖d_j‖: its derivative λ/B ‖d_j‖ in a_j, λ/B a_j d_j/‖d_j‖ in d_j.
            let norm = (0..n).map(|f| p.w_dec[j * n + f].powi(2)).sum::<f64>().sqrt();
            loss += l1 * scale * z[j] * norm;
            for f in 0..n {
                g.w_dec[j * n + f] += l1 * scale * z[j] * p.w_dec[j * n + f] / norm;
            }
            let dz: f64 = (0..n).map(|f| p.w_dec[j * n + f] * r[f] * scale).sum::<f64>() + l1 * scale * norm;
            for f in 0..n {
                g.w_dec[j * n + f] += z[j] * r[f] * scale;
                g.w_enc[j * n + f] += dz * xc[f];
                // x̂ − x depends on b_dec directly and, with the pre-encoder bias, through z.
                g.b_dec[f] -= shift * dz * p.w_enc[j * n + f];
            }
            g.b_enc[j] += dz;
        }
        for (b, r) in g.b_dec.iter_mut().zip(&r) {
            *b += r * scale;
        }
        if let Some((dead, k_aux, weight)) = aux {
            let mut chosen: Vec<usize> = (0..h).filter(|&j| dead[j] && z[j] > 0.0).collect();
            chosen.sort_by(|&a, &b| z[b].total_cmp(&z[a]).then(a.cmp(&b)));
            chosen.truncate(k_aux);
            // q = ê + r, with r a constant.
            let q: Vec<f64> =
                (0..n).map(|f| r[f] + chosen.iter().map(|&j| z[j] * p.w_dec[j * n + f]).sum::<f64>()).collect();
            loss += 0.5 * weight * scale * q.iter().map(|v| v * v).sum::<f64>();
            for &j in &chosen {
                let dz: f64 = (0..n).map(|f| p.w_dec[j * n + f] * q[f] * weight * scale).sum();
                for f in 0..n {
                    g.w_dec[j * n + f] += z[j] * q[f] * weight * scale;
                    g.w_enc[j * n + f] += dz * xc[f];
                    g.b_dec[f] -= shift * dz * p.w_enc[j * n + f];
                }
                g.b_enc[j] += dz;
            }
        }
    }
    if tied {
        let g = layout.split_mut(&mut grad);
        for (e, d) in g.w_enc.iter_mut().zip(g.w_dec.iter_mut()) {
            *e += *d;
            *d = 0.0;
        }
    }
    (loss, grad)
}

/// A TopK model with random biases (so that some examples have fewer than k positive latents)
/// and data around a random offset.
fn problem(n: usize, h: usize, k: usize, m: usize, seed: u64) -> (TopKModel<f64>, Vec<f64>) {
    problem_of(Architecture::TOPK, n, h, k, m, seed)
}

/// [`problem`] for a model of `architecture` (tied: the perturbed encoder is the decoder).
fn problem_of(
    architecture: Architecture,
    n: usize,
    h: usize,
    k: usize,
    m: usize,
    seed: u64,
) -> (TopKModel<f64>, Vec<f64>) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let model = TopKModel::<f64>::init(n, h, k, seed).unwrap();
    let mut params = model.params().to_vec();
    let layout = model.layout();
    let blocks = layout.split_mut(&mut params);
    for v in blocks.b_enc.iter_mut() {
        *v = rng.gen_range(-0.6..0.2);
    }
    for v in blocks.b_dec.iter_mut() {
        *v = rng.gen_range(-0.5..0.5);
    }
    for v in blocks.w_enc.iter_mut() {
        *v += rng.gen_range(-0.3..0.3);
    }
    if architecture.tied {
        blocks.w_dec.copy_from_slice(blocks.w_enc);
    }
    let model = TopKModel::from_params(n, h, k, params).unwrap().with_architecture(architecture).unwrap();
    let x = (0..m * n).map(|_| rng.gen_range(-1.0..1.5)).collect();
    (model, x)
}

fn evaluate<T: Real>(objective: &mut TopKObjective<T>, params: &[T], x: &[T], m: usize) -> (f64, Vec<T>, BatchStats) {
    let n = objective.layout().visible();
    let data = Dataset::examples_by_features(x, m, n).unwrap();
    let mut grad = vec![T::cast(f64::NAN); params.len()];
    let (loss, stats) = objective.evaluate(params, &mut grad, &data).unwrap();
    (loss, grad, stats)
}

/// `(L(p + s e_i) − L(p − s e_i)) / 2s` for the step `s = 1e-6`, and whether both evaluations
/// selected as `codes` says (`None`: do not check).
fn central_difference(
    objective: &mut TopKObjective<f64>,
    params: &[f64],
    x: &[f64],
    m: usize,
    i: usize,
    codes: Option<&[u32]>,
) -> f64 {
    const STEP: f64 = 1e-6;
    let mut shifted = params.to_vec();
    let mut loss_at = |value: f64| {
        shifted[i] = value;
        let (loss, _, _) = evaluate(objective, &shifted, x, m);
        if let Some(codes) = codes {
            assert_eq!(objective.codes().0, codes, "a step of {STEP:e} changed the selection");
        }
        loss
    };
    (loss_at(params[i] + STEP) - loss_at(params[i] - STEP)) / (2.0 * STEP)
}

fn max_difference(a: &[f64], b: &[f64]) -> (f64, usize) {
    a.iter()
        .zip(b)
        .enumerate()
        .map(|(i, (a, b))| ((a - b).abs(), i))
        .fold((0.0, 0), |w, d| if d.0 > w.0 { d } else { w })
}

#[test]
fn the_sparse_evaluation_matches_the_per_example_definition_on_every_isa() {
    // Shapes around the vector widths and the block size, k from 1 to h.
    for architecture in ARCHITECTURES {
        for (n, h, k, m, seed) in
            [(1, 1, 1, 1, 1), (7, 17, 3, 5, 2), (16, 33, 33, 20, 3), (9, 70, 8, 300, 4), (33, 40, 5, 517, 5)]
        {
            let (model, x) = problem_of(architecture, n, h, k, m, seed);
            let (want_loss, want_grad) = reference(&model, &x, m);
            for isa in Isa::ALL {
                let Some(kernels) = Kernels::<f64>::for_isa(isa) else { continue };
                let mut objective = TopKObjective::new(n, h, k, m)
                    .unwrap()
                    .with_architecture(architecture)
                    .with_kernels(kernels)
                    .unwrap();
                let (loss, grad, stats) = evaluate(&mut objective, model.params(), &x, m);
                let case = format!("{isa:?} {architecture:?} ({n}, {h}, {k}, {m})");
                assert!((loss - want_loss).abs() <= 1e-12 * want_loss.max(1.0), "{case}: loss {loss} vs {want_loss}");
                let (worst, at) = max_difference(&grad, &want_grad);
                let scale = want_grad.iter().fold(1.0f64, |s, g| s.max(g.abs()));
                assert!(worst <= 1e-12 * scale, "{case}: gradient off by {worst:e} at {:?}", model.layout().locate(at));
                assert!((stats.squared_error - 2.0 * m as f64 * loss).abs() <= 1e-9 * stats.squared_error.max(1.0));
                match (architecture.units, architecture.selection) {
                    (_, Selection::All) => {}
                    (Units::Relu, _) => assert!(stats.active <= m * k),
                    // Linear units select k of every example's (finite) values.
                    (Units::Linear, _) => assert_eq!(stats.active, m * k, "{case}"),
                }
            }
        }
    }
}

#[test]
fn the_gradient_matches_central_differences_with_the_selection_held() {
    for architecture in ARCHITECTURES {
        central_differences(architecture);
    }
}

fn central_differences(architecture: Architecture) {
    let (n, h, k, m) = (6, 24, 4, 40);
    let (model, x) = problem_of(architecture, n, h, k, m, 9);
    let mut objective = TopKObjective::new(n, h, k, m).unwrap().with_architecture(architecture);
    let (_, grad, _) = evaluate(&mut objective, model.params(), &x, m);
    let base_codes = objective.codes().0.to_vec();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let layout = model.layout();
    // Every bias and a sample of the weights.
    let coordinates: Vec<usize> =
        (2 * h * n..layout.len()).chain((0..60).map(|_| rng.gen_range(0..2 * h * n + h))).collect();
    for i in coordinates {
        let numeric = central_difference(&mut objective, model.params(), &x, m, i, Some(&base_codes));
        assert!(
            (numeric - grad[i]).abs() <= 1e-7 * (1.0 + grad[i].abs()),
            "{architecture:?} {:?}: analytic {:e}, central difference {numeric:e}",
            layout.locate(i),
            grad[i]
        );
    }
}

#[test]
fn f32_agrees_with_f64_and_the_thread_count_does_not_change_the_result() {
    let (n, h, k, m) = (24, 96, 6, 600);
    let (model, x) = problem(n, h, k, m, 12);
    let mut wide = TopKObjective::new(n, h, k, m).unwrap();
    let (want_loss, want_grad, _) = evaluate(&mut wide, model.params(), &x, m);
    let narrow: Vec<f32> = model.params().iter().map(|&v| v as f32).collect();
    let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let mut objective = TopKObjective::<f32>::new(n, h, k, m).unwrap();
            evaluate(&mut objective, &narrow, &x32, m)
        })
    };
    let (loss, grad, _) = run(1);
    assert!((loss - want_loss).abs() <= 1e-5 * want_loss, "f32 loss {loss} vs f64 {want_loss}");
    let wide_grad: Vec<f64> = grad.iter().map(|&g| f64::from(g)).collect();
    let (worst, _) = max_difference(&wide_grad, &want_grad);
    assert!(worst <= 1e-4, "f32 gradient off by {worst:e}");
    for threads in [2, 3] {
        let (other_loss, other_grad, _) = run(threads);
        assert_eq!(other_loss, loss, "{threads} threads");
        assert!(other_grad == grad, "{threads} threads: gradient differs");
    }
}

#[test]
fn each_residual_is_its_examples_own_axpys_in_latent_order_bit_for_bit_whatever_the_threads() {
    // The decoding goes latent by latent over a range of examples; each example must still get
    // `b_dec − x`, then its slots' AXPYs in increasing latent order, then the scale `1/B`.
    let (n, h, k) = (20, 600, 5);
    let kernels = Kernels::<f32>::detect();
    for architecture in ARCHITECTURES {
        // 2 examples: fewer than some of the thread counts.
        for m in [70, 2] {
            let (model, x) = problem_of(architecture, n, h, k, m, 31);
            let params: Vec<f32> = model.params().iter().map(|&v| v as f32).collect();
            let x: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            let blocks = model.layout().split(&params);
            let decoder = if architecture.tied { blocks.w_enc } else { blocks.w_dec };
            for threads in [1, 2, 3] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                pool.install(|| {
                    let mut objective = TopKObjective::<f32>::for_architecture(architecture, n, h, k, m).unwrap();
                    evaluate(&mut objective, &params, &x, m);
                    let (indices, values) = objective.codes();
                    let width = objective.slots_per_example();
                    for e in 0..m {
                        let mut want: Vec<f32> =
                            blocks.b_dec.iter().zip(&x[e * n..][..n]).map(|(&b, &x)| b - x).collect();
                        let slots = &indices[e * width..][..width];
                        let active = slots.partition_point(|&j| j != INACTIVE);
                        assert!(slots[active..].iter().all(|&j| j == INACTIVE), "active slots first");
                        assert!(slots[..active].windows(2).all(|w| w[0] < w[1]), "active slots by latent");
                        for (&j, &a) in slots[..active].iter().zip(&values[e * width..]) {
                            (kernels.axpy)(a, &decoder[j as usize * n..][..n], &mut want);
                        }
                        want.iter_mut().for_each(|r| *r *= (1.0 / m as f64) as f32);
                        assert!(
                            objective.residuals()[e * n..][..n] == want[..],
                            "{architecture:?}, {m} examples, {threads} threads, example {e}"
                        );
                    }
                });
            }
        }
    }
}

#[test]
fn bad_batches_are_refused_by_name() {
    let mut objective = TopKObjective::<f64>::new(3, 5, 2, 4).unwrap();
    let params = TopKModel::<f64>::init(3, 5, 2, 1).unwrap().params().to_vec();
    let mut grad = vec![0.0; params.len()];
    let wide = vec![0.0; 4 * 4];
    let too_many = vec![0.0; 5 * 3];
    let cases = [
        (Dataset::examples_by_features(&wide, 4, 4).unwrap(), "data features"),
        (Dataset::examples_by_features(&too_many, 5, 3).unwrap(), "minibatch examples"),
    ];
    for (data, what) in cases {
        match objective.evaluate(&params, &mut grad, &data) {
            Err(Error::ShapeMismatch { what: got, .. }) => assert_eq!(got, what),
            other => panic!("{what}: {other:?}"),
        }
    }
    assert!(matches!(
        objective.evaluate(&params[1..], &mut grad, &Dataset::examples_by_features(&wide[..3], 1, 3).unwrap()),
        Err(Error::ShapeMismatch { what: "TopK parameters", .. })
    ));
    assert!(matches!(
        TopKObjective::<f32>::new(3, 5, 2, 0),
        Err(Error::InvalidHyperParameter { name: "batch size", .. })
    ));
}

/// The latents no example of `x` selects in training: dead, as far as this batch goes.
fn unselected(objective: &mut TopKObjective<f64>, model: &TopKModel<f64>, x: &[f64], m: usize) -> Vec<bool> {
    evaluate(objective, model.params(), x, m);
    let mut dead = vec![true; model.latents()];
    for &j in objective.codes().0.iter().filter(|&&j| j != crate::dictionary::select::INACTIVE) {
        dead[j as usize] = false;
    }
    dead
}

#[test]
fn the_auxiliary_loss_matches_its_definition_and_central_differences_on_the_dead_latents() {
    // (A ReLU model selects every positive latent: the batch leaves none unselected to call
    // dead.)
    for architecture in ARCHITECTURES.into_iter().filter(|a| a.selection != Selection::All) {
        auxiliary_loss(architecture);
    }
}

fn auxiliary_loss(architecture: Architecture) {
    let (n, h, k, m) = (8, 60, 2, 30);
    let (model, x) = problem_of(architecture, n, h, k, m, 21);
    for isa in Isa::ALL {
        let Some(kernels) = Kernels::<f64>::for_isa(isa) else { continue };
        let mut objective = TopKObjective::for_model(&model, m).unwrap().with_kernels(kernels).unwrap();
        let dead = unselected(&mut objective, &model, &x, m);
        let dead_count = dead.iter().filter(|&&d| d).count();
        assert!(dead_count > 10, "the problem leaves latents unselected");
        // k_aux above the dead count is cut to it; fewer dead latents than asked scale α by s.
        for aux in [AuxK { k_aux: 3, alpha: 0.5 }, AuxK { k_aux: 2 * h, alpha: 1.0 / 32.0 }] {
            objective.set_aux(Some(aux), &dead).unwrap();
            let (loss, grad, stats) = evaluate(&mut objective, model.params(), &x, m);
            let (k_aux, s) = (aux.k_aux.min(dead_count), (dead_count as f64 / aux.k_aux as f64).min(1.0));
            let (want_loss, want_grad) = reference_with(&model, &x, m, Some((&dead, k_aux, aux.alpha * s)), 0.0);
            assert!(stats.aux_squared_error > 0.0);
            let case = format!("{isa:?} {architecture:?} {aux:?}");
            assert!((loss - want_loss).abs() <= 1e-12 * want_loss, "{case}: loss {loss} vs {want_loss}");
            let (worst, at) = max_difference(&grad, &want_grad);
            assert!(worst <= 1e-12, "{case}: gradient off by {worst:e} at {:?}", model.layout().locate(at));
            // The dead latents' parameters move only the auxiliary term (r does not depend on
            // them): there the gradient is the loss's derivative.
            let layout = model.layout();
            let dead_latents: Vec<usize> = (0..h).filter(|&j| dead[j]).take(4).collect();
            for &j in &dead_latents {
                // W_enc[j][0], W_enc[j][3], W_dec[j][1], b_enc[j].
                for i in [j * n, j * n + 3, h * n + h + j * n + 1, h * n + j] {
                    let numeric = central_difference(&mut objective, model.params(), &x, m, i, None);
                    assert!(
                        (numeric - grad[i]).abs() <= 1e-7 * (1.0 + grad[i].abs()),
                        "{case} {:?}: {} vs {numeric}",
                        layout.locate(i),
                        grad[i]
                    );
                }
            }
        }
        // With the L1 penalty as well (ReLU units), which the auxiliary slots do not pay.
        if architecture.units == Units::Relu {
            objective.set_aux(Some(AuxK { k_aux: 3, alpha: 0.5 }), &dead).unwrap();
            objective.set_l1(0.2).unwrap();
            let (loss, grad, _) = evaluate(&mut objective, model.params(), &x, m);
            let (want_loss, want_grad) = reference_with(&model, &x, m, Some((&dead, 3, 0.5)), 0.2);
            let case = format!("{isa:?} {architecture:?} with the L1 penalty");
            assert!((loss - want_loss).abs() <= 1e-12 * want_loss, "{case}: loss {loss} vs {want_loss}");
            let (worst, at) = max_difference(&grad, &want_grad);
            assert!(worst <= 1e-12, "{case}: gradient off by {worst:e} at {:?}", model.layout().locate(at));
            objective.set_l1(0.0).unwrap();
        }
        // Off again: the plain loss.
        objective.set_aux(None, &dead).unwrap();
        let (loss, _, stats) = evaluate(&mut objective, model.params(), &x, m);
        assert_eq!(stats.aux_squared_error, 0.0);
        assert!((loss - reference(&model, &x, m).0).abs() <= 1e-12 * loss);
    }
}

#[test]
fn changing_k_is_the_objective_of_the_new_k() {
    let (n, h, m) = (7, 30, 25);
    let (model, x) = problem_of(Architecture::K_SPARSE, n, h, 9, m, 31);
    let mut objective = TopKObjective::new(n, h, 9, m).unwrap().with_architecture(Architecture::K_SPARSE);
    for k in [3, 12, 9] {
        objective.set_k(k).unwrap();
        let (loss, grad, _) = evaluate(&mut objective, model.params(), &x, m);
        let mut fresh = TopKObjective::new(n, h, k, m).unwrap().with_architecture(Architecture::K_SPARSE);
        let (want_loss, want_grad, _) = evaluate(&mut fresh, model.params(), &x, m);
        assert_eq!(loss, want_loss, "k = {k}");
        assert!(grad == want_grad, "k = {k}: gradient differs");
        assert_eq!(objective.codes().0.len(), m * k);
    }
    for k in [0, h + 1] {
        assert!(matches!(objective.set_k(k), Err(Error::InvalidHyperParameter { name: "k", .. })), "k = {k}");
    }
}

#[test]
fn a_batch_selection_takes_more_candidates_when_one_example_holds_the_batchs_largest_values() {
    let (n, h, k, m) = (6, 64, 2, 10);
    let (model, mut x) = problem_of(Architecture::BATCH_TOPK, n, h, k, m, 41);
    // Example 3 far from the data: its pre-activations are the batch's largest, and all k·B
    // = 20 selected latents are its, more than the 4k = 8 candidates an example starts with.
    x[3 * n..4 * n].iter_mut().for_each(|v| *v *= 200.0);
    let (want_loss, want_grad) = reference(&model, &x, m);
    for isa in Isa::ALL {
        let Some(kernels) = Kernels::<f64>::for_isa(isa) else { continue };
        let mut objective = TopKObjective::for_model(&model, m).unwrap().with_kernels(kernels).unwrap();
        assert_eq!(objective.slots_per_example(), 4 * k);
        let (loss, grad, stats) = evaluate(&mut objective, model.params(), &x, m);
        assert!(objective.slots_per_example() >= 20, "{isa:?}: {} slots", objective.slots_per_example());
        let (indices, _) = objective.codes();
        let width = objective.slots_per_example();
        let of_example_3 = indices[3 * width..4 * width].iter().filter(|&&j| j != INACTIVE).count();
        assert_eq!((of_example_3, stats.active), (20, 20), "{isa:?}");
        assert!((loss - want_loss).abs() <= 1e-12 * want_loss, "{isa:?}: loss {loss} vs {want_loss}");
        let (worst, at) = max_difference(&grad, &want_grad);
        let scale = want_grad.iter().fold(1.0f64, |s, g| s.max(g.abs()));
        assert!(worst <= 1e-12 * scale, "{isa:?}: gradient off by {worst:e} at {:?}", model.layout().locate(at));
    }
}

#[test]
fn the_batch_selections_smallest_value_is_the_batchs_kb_th_largest() {
    let (n, h, k, m) = (9, 50, 3, 40);
    let (model, x) = problem_of(Architecture::BATCH_TOPK, n, h, k, m, 43);
    let mut objective = TopKObjective::for_model(&model, m).unwrap();
    let (_, _, stats) = evaluate(&mut objective, model.params(), &x, m);
    let p = model.blocks();
    let mut all: Vec<f64> = (0..m)
        .flat_map(|e| {
            let (x, p) = (&x, &p);
            (0..h).map(move |j| {
                p.b_enc[j] + (0..n).map(|f| p.w_enc[j * n + f] * (x[e * n + f] - p.b_dec[f])).sum::<f64>()
            })
        })
        .filter(|&z| z > 0.0)
        .collect();
    all.sort_by(|a, b| b.total_cmp(a));
    assert!(all.len() > k * m, "more positive values than the batch keeps");
    let smallest = stats.smallest_selected.expect("a batch selection reports its threshold");
    assert!((smallest - all[k * m - 1]).abs() <= 1e-12, "{smallest} vs {}", all[k * m - 1]);
    // A per-example selection has no batch threshold.
    let (topk, _) = problem(n, h, k, m, 43);
    let mut per_example = TopKObjective::for_model(&topk, m).unwrap();
    assert_eq!(evaluate(&mut per_example, topk.params(), &x, m).2.smallest_selected, None);
}

#[test]
fn at_inference_a_batch_selection_keeps_every_latent_above_the_threshold() {
    let (n, h, k, m) = (7, 90, 2, 25);
    let (model, x) = problem_of(Architecture::BATCH_TOPK, n, h, k, m, 47);
    let p = model.blocks();
    let z =
        |e: usize, j: usize| p.b_enc[j] + (0..n).map(|f| p.w_enc[j * n + f] * (x[e * n + f] - p.b_dec[f])).sum::<f64>();
    // Thresholds that keep fewer, and many more (some example more than the 4k candidates),
    // latents than k; a negative one keeps the positive ones (the units are ReLUs).
    for threshold in [0.9, 0.3, 0.05, -1.0] {
        let model = model.clone().with_threshold(threshold).unwrap();
        for isa in Isa::ALL {
            let Some(kernels) = Kernels::<f64>::for_isa(isa) else { continue };
            let mut objective = TopKObjective::for_model(&model, m).unwrap().with_kernels(kernels).unwrap();
            let data = Dataset::examples_by_features(&x, m, n).unwrap();
            let (loss, stats) = objective.measure(model.params(), &data).unwrap();
            let (indices, values) = objective.codes();
            let width = objective.slots_per_example();
            let mut squared_error = 0.0;
            for e in 0..m {
                let want: Vec<u32> = (0..h).filter(|&j| z(e, j) > threshold.max(0.0)).map(|j| j as u32).collect();
                let slots = &indices[e * width..(e + 1) * width];
                let active = slots.partition_point(|&j| j != INACTIVE);
                assert_eq!(&slots[..active], want.as_slice(), "{isa:?} threshold {threshold}: example {e}");
                assert!(slots[active..].iter().all(|&j| j == INACTIVE));
                for (s, &j) in slots[..active].iter().enumerate() {
                    assert!((values[e * width + s] - z(e, j as usize)).abs() <= 1e-12);
                }
                let r: Vec<f64> = (0..n)
                    .map(|f| {
                        want.iter().map(|&j| z(e, j as usize) * p.w_dec[j as usize * n + f]).sum::<f64>() + p.b_dec[f]
                            - x[e * n + f]
                    })
                    .collect();
                squared_error += r.iter().map(|v| v * v).sum::<f64>();
            }
            assert!((stats.squared_error - squared_error).abs() <= 1e-10 * squared_error, "{isa:?} {threshold}");
            assert!((loss - squared_error / (2.0 * m as f64)).abs() <= 1e-10 * loss);
            assert_eq!(stats.smallest_selected, None, "inference keeps no batch threshold");
        }
    }
}

#[test]
fn a_batch_cut_far_below_the_last_ones_is_found_by_selecting_again_from_every_value() {
    let (n, h, k, m) = (8, 40, 3, 30);
    let (model, x) = problem_of(Architecture::BATCH_TOPK, n, h, k, m, 53);
    let mut objective = TopKObjective::for_model(&model, m).unwrap();
    let (_, _, first) = evaluate(&mut objective, model.params(), &x, m);
    // The next evaluation's candidates start a quarter below that cut; lowering every b_enc
    // by half of it puts the new cut below that floor.
    let mut params = model.params().to_vec();
    let shift = 0.5 * first.smallest_selected.unwrap();
    model.layout().split_mut(&mut params).b_enc.iter_mut().for_each(|b| *b -= shift);
    let lowered = TopKModel::from_params(n, h, k, params).unwrap().with_architecture(Architecture::BATCH_TOPK).unwrap();
    let (want_loss, want_grad) = reference(&lowered, &x, m);
    let (loss, grad, stats) = evaluate(&mut objective, lowered.params(), &x, m);
    assert_eq!(stats.active, k * m);
    assert!((stats.smallest_selected.unwrap() - (first.smallest_selected.unwrap() - shift)).abs() < 1e-12);
    assert!((loss - want_loss).abs() <= 1e-12 * want_loss, "loss {loss} vs {want_loss}");
    let (worst, at) = max_difference(&grad, &want_grad);
    assert!(worst <= 1e-12, "gradient off by {worst:e} at {:?}", model.layout().locate(at));
    // And back: the same batch and model give the same result whatever the floor was.
    let (again, again_grad, _) = evaluate(&mut objective, model.params(), &x, m);
    let mut fresh = TopKObjective::for_model(&model, m).unwrap();
    let (want, want_grad, _) = evaluate(&mut fresh, model.params(), &x, m);
    assert_eq!(again, want);
    assert!(again_grad == want_grad);
}

#[test]
fn the_l1_penalty_weighted_by_the_decoder_norms_matches_its_definition_and_central_differences() {
    let (n, h, k, m) = (6, 20, 3, 25);
    for architecture in [Architecture::RELU, Architecture::TOPK, Architecture { tied: true, ..Architecture::RELU }] {
        let (model, x) = problem_of(architecture, n, h, k, m, 61);
        // Decoder rows of several norms, so that the weighting matters.
        let mut params = model.params().to_vec();
        let layout = model.layout();
        let blocks = layout.split_mut(&mut params);
        for (j, row) in blocks.w_dec.chunks_exact_mut(n).enumerate() {
            row.iter_mut().for_each(|v| *v *= 0.5 + (j % 4) as f64 * 0.5);
        }
        if architecture.tied {
            blocks.w_enc.copy_from_slice(blocks.w_dec);
        }
        let model = TopKModel::from_params(n, h, k, params).unwrap().with_architecture(architecture).unwrap();
        let lambda = 0.3;
        let (want_loss, want_grad) = reference_with(&model, &x, m, None, lambda);
        for isa in Isa::ALL {
            let Some(kernels) = Kernels::<f64>::for_isa(isa) else { continue };
            let mut objective = TopKObjective::for_model(&model, m).unwrap().with_kernels(kernels).unwrap();
            objective.set_l1(lambda).unwrap();
            let (loss, grad, stats) = evaluate(&mut objective, model.params(), &x, m);
            let case = format!("{isa:?} {architecture:?}");
            assert!(stats.l1_penalty > 0.0, "{case}");
            assert!((loss - want_loss).abs() <= 1e-12 * want_loss, "{case}: loss {loss} vs {want_loss}");
            let (worst, at) = max_difference(&grad, &want_grad);
            let scale = want_grad.iter().fold(1.0f64, |s, g| s.max(g.abs()));
            assert!(worst <= 1e-12 * scale, "{case}: gradient off by {worst:e} at {:?}", layout.locate(at));
            // A trained model's metrics leave the penalty out.
            let data = Dataset::examples_by_features(&x, m, n).unwrap();
            let (measured, _) = objective.measure(model.params(), &data).unwrap();
            assert!((measured - reference(&model, &x, m).0).abs() <= 1e-12 * measured);
        }
        let mut objective = TopKObjective::for_model(&model, m).unwrap();
        objective.set_l1(lambda).unwrap();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
        for i in (0..30).map(|_| rng.gen_range(0..layout.len())) {
            let numeric = central_difference(&mut objective, model.params(), &x, m, i, None);
            assert!(
                (numeric - want_grad[i]).abs() <= 1e-7 * (1.0 + want_grad[i].abs()),
                "{architecture:?} {:?}: {} vs {numeric}",
                layout.locate(i),
                want_grad[i]
            );
        }
    }
    let mut objective = TopKObjective::<f64>::new(3, 5, 2, 4).unwrap();
    for lambda in [-1.0, f64::NAN, f64::INFINITY] {
        assert!(matches!(objective.set_l1(lambda), Err(Error::InvalidHyperParameter { name: "l1 coefficient", .. })));
    }
    // Linear units' activations may be negative: an L1 penalty on them would reward them.
    let mut linear = TopKObjective::<f64>::for_architecture(Architecture::K_SPARSE, 3, 5, 2, 4).unwrap();
    assert!(matches!(linear.set_l1(0.1), Err(Error::InvalidOption { name: "l1 coefficient", .. })));
    assert!(linear.set_l1(0.0).is_ok());
}

#[test]
fn evaluating_and_stepping_in_one_pass_is_evaluate_then_the_step_bit_for_bit() {
    // Fewer latents than a group of the backward pass, one group, one and a bit, and several
    // with the last one partial; each architecture with the auxiliary loss (a third of its
    // latents dead) when it selects, the L1 penalty when its units are ReLU, or both.
    let (n, m) = (20, 300);
    for (case, architecture) in ARCHITECTURES.into_iter().enumerate() {
        for h in [3, 64, 65, 600] {
            let k = h.min(5);
            let (model, x) = problem_of(architecture, n, h, k, m, 70 + case as u64);
            let layout = model.layout();
            let start: Vec<f32> = model.params().iter().map(|&v| v as f32).collect();
            let model = TopKModel::from_params(n, h, k, start).unwrap().with_architecture(architecture).unwrap();
            let x: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            let data = Dataset::examples_by_features(&x, m, n).unwrap();
            let dead: Vec<bool> = (0..h).map(|j| j % 3 == 0).collect();
            let objective = || {
                let mut objective = TopKObjective::for_model(&model, m).unwrap();
                if architecture.units == Units::Relu {
                    objective.set_l1(0.01).unwrap();
                }
                if architecture.selection != Selection::All {
                    objective.set_aux(Some(AuxK { k_aux: 7.min(h), alpha: 0.5 }), &dead).unwrap();
                }
                objective
            };
            for rule in [StepRule::adam(1e-2), StepRule::sgd(0.05, 0.9)] {
                for unit_norm_decoder in [true, false] {
                    // Three steps: each one's loss, then the parameters and moments after all three.
                    let run = |fused: bool, threads: usize| {
                        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                        pool.install(|| {
                            let mut objective = objective();
                            let (mut params, mut state) =
                                (model.params().to_vec(), StepState::<f32>::new(layout.len()));
                            let mut grad = vec![f32::NAN; layout.len()];
                            let mut step = || match fused {
                                true => {
                                    objective.evaluate_step(&mut params, &data, &mut state, &rule, unit_norm_decoder)
                                }
                                false => {
                                    let evaluated = objective.evaluate(&params, &mut grad, &data);
                                    match unit_norm_decoder {
                                        true => layout.unit_norm_step(&mut state, &rule, &mut params, &mut grad),
                                        false => state.step(&rule, &mut params, &grad),
                                    }
                                    evaluated
                                }
                            };
                            let losses: Vec<f64> = (0..3).map(|_| step().unwrap().0).collect();
                            (losses, [params, state.first, state.second], state.steps)
                        })
                    };
                    let apart = run(false, 1);
                    assert!(apart.1[0] != model.params(), "the steps moved nothing");
                    for threads in [1, 3] {
                        let fused = run(true, threads);
                        let case = format!(
                            "{architecture:?}, h = {h}, {rule:?}, unit norm {unit_norm_decoder}, {threads} threads"
                        );
                        assert_eq!(fused.0, apart.0, "{case}: losses");
                        assert_eq!(fused.2, apart.2, "{case}: steps counted");
                        for (what, fused, apart) in ["parameters", "first moments", "second moments"]
                            .into_iter()
                            .zip(&fused.1)
                            .zip(&apart.1)
                            .map(|((what, fused), apart)| (what, fused, apart))
                        {
                            if let Some(i) = (0..fused.len()).find(|&i| fused[i].to_bits() != apart[i].to_bits()) {
                                panic!("{case}: {what} differ at {:?}: {} vs {}", layout.locate(i), fused[i], apart[i]);
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn a_step_whose_loss_is_not_finite_is_not_taken() {
    let (n, h, k, m) = (4, 12, 2, 6);
    let (model, mut x) = problem(n, h, k, m, 5);
    x[7] = f64::INFINITY;
    let data = Dataset::unscanned(&x, m, n, Layout::ExamplesByFeatures).unwrap();
    let mut objective = TopKObjective::for_model(&model, m).unwrap();
    let (mut params, mut state) = (model.params().to_vec(), StepState::<f64>::new(model.layout().len()));
    let (loss, _) = objective.evaluate_step(&mut params, &data, &mut state, &StepRule::adam(1e-3), true).unwrap();
    assert!(!loss.is_finite());
    assert!(params == model.params() && state.steps == 0);
    assert!(state.first.iter().chain(&state.second).all(|&v| v == 0.0));
    // Moments of another model are refused by name.
    let mut short = StepState::<f64>::new(params.len() - 1);
    let refused = objective.evaluate_step(&mut params, &data, &mut short, &StepRule::adam(1e-3), true);
    assert!(matches!(refused, Err(Error::ShapeMismatch { what: "optimiser moments", .. })), "{refused:?}");
}
