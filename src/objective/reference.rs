//! The plain reference implementation: one example at a time, no GEMM, no SIMD, f64. It is the
//! oracle every fast path is tested against (SPEC §4), written to be obviously the math of
//! SPEC §1 and of each variant of [`HyperParams`] rather than fast: the activations, losses,
//! penalties, corruption and tied weights are each taken literally, per example.

use super::parts::corruption::Noise;
use super::parts::sparsity::{kl_divergence, sparsity_delta};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::model::vae::{VaeDecoder, VaeShape};
use crate::model::{Activation, Corruption, HyperParams, Reconstruction, SparsityPenalty, ThetaLayout};

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// `f(z)`, `f'(z)` and `f''(z)` of a hidden unit.
fn hidden_unit(activation: Activation, z: f64) -> (f64, f64, f64) {
    match activation {
        Activation::Sigmoid => {
            let a = sigmoid(z);
            let d = a * (1.0 - a);
            (a, d, d * (1.0 - 2.0 * a))
        }
        Activation::Tanh => {
            let a = z.tanh();
            let d = 1.0 - a * a;
            (a, d, -2.0 * a * d)
        }
        Activation::Relu if z > 0.0 => (z, 1.0, 0.0),
        Activation::Relu => (0.0, 0.0, 0.0),
    }
}

/// One output value's loss (before the `1/2` of squared error) and `∂loss/∂z3`.
fn output_loss(reconstruction: Reconstruction, z: f64, x: f64) -> (f64, f64) {
    match reconstruction {
        Reconstruction::SigmoidSquaredError => {
            let a = sigmoid(z);
            ((a - x).powi(2), (a - x) * a * (1.0 - a))
        }
        Reconstruction::LinearSquaredError => ((z - x).powi(2), z - x),
        Reconstruction::SigmoidCrossEntropy => {
            let a = sigmoid(z);
            (-(x * a.ln() + (1.0 - x) * (1.0 - a).ln()), a - x)
        }
    }
}

/// `J(theta)` and `∇J(theta)` for the whole data set, by two loops over the examples: the first
/// finds `rho_hat`, the second backpropagates each example.
pub fn cost_and_gradient(hyper: &HyperParams, data: &Dataset<'_, f64>, theta: &[f64]) -> Result<(f64, Vec<f64>)> {
    let (n, h, m) = (hyper.visible(), hyper.hidden(), data.examples());
    if data.features() != n {
        return Err(Error::shape_mismatch("data features", n, data.features()));
    }
    let layout = ThetaLayout::new(n, h);
    layout.check(theta, "theta")?;
    // Tied weights: J(W, Wᵀ) at W = (W1 + W2ᵀ)/2.
    let tied = hyper.tied();
    let w1 = |j: usize, k: usize| {
        if tied {
            (theta[j + k * h] + theta[h * n + k + j * n]) / 2.0
        } else {
            theta[j + k * h]
        }
    };
    let w2 = |k: usize, j: usize| if tied { w1(j, k) } else { theta[h * n + k + j * n] };
    let b1 = layout.b1(theta);
    let b2 = layout.b2(theta);
    let activation = hyper.activation();
    let noise = Noise { corruption: hyper.corruption(), seed: hyper.corruption_seed(), epoch: 0 };

    let input = |i: usize| -> Vec<f64> {
        let mut x = vec![0.0; n];
        if hyper.corruption() == Corruption::None {
            for (k, x) in x.iter_mut().enumerate() {
                *x = data.x().get(k, i);
            }
        } else {
            noise.corrupt_block(data, i, 1, 0, &mut x);
        }
        x
    };
    // (a2, f'(z2), f''(z2)) of example i.
    let hidden_layer = |x: &[f64]| -> Vec<(f64, f64, f64)> {
        (0..h).map(|j| hidden_unit(activation, b1[j] + (0..n).map(|k| w1(j, k) * x[k]).sum::<f64>())).collect()
    };

    // The activity the penalty measures: a for sigmoid and ReLU, (a + 1)/2 for tanh.
    let (scale, offset) = activation.sparsity_map();
    let mut rho_hat = vec![0.0; h];
    for i in 0..m {
        for (r, (a, _, _)) in rho_hat.iter_mut().zip(hidden_layer(&input(i))) {
            *r += (scale * a + offset) / m as f64;
        }
    }
    let (beta, kl_penalty) = (hyper.beta(), hyper.penalty() == SparsityPenalty::Kl);
    if let Some(unit) = rho_hat.iter().position(|&r| beta > 0.0 && kl_penalty && (r <= 0.0 || r >= 1.0)) {
        return Err(Error::SaturatedActivation { unit, rho_hat: rho_hat[unit] });
    }
    let s: Vec<f64> = rho_hat.iter().map(|&r| sparsity_delta(beta, hyper.rho(), r)).collect();
    let mut l1 = 0.0;
    let contractive = hyper.contractive();
    let row_norm = |j: usize| (0..n).map(|k| w1(j, k).powi(2)).sum::<f64>();
    let mut contractive_cost = 0.0;

    // The gradient with respect to the weights used (W1, W2), folded for tied weights below.
    let mut grad = vec![0.0; layout.len()];
    let mut loss = 0.0;
    for i in 0..m {
        let x_in = input(i);
        let hidden = hidden_layer(&x_in);
        let z3: Vec<f64> = (0..n).map(|k| b2[k] + (0..h).map(|j| w2(k, j) * hidden[j].0).sum::<f64>()).collect();
        let mut delta3 = vec![0.0; n];
        for k in 0..n {
            let (value_loss, delta) = output_loss(hyper.reconstruction(), z3[k], data.x().get(k, i));
            loss += value_loss;
            delta3[k] = delta;
        }
        // L1: β Σ_j |q_j| per example (q the mapped activity), its derivative β sign(q_j)
        // taken literally.
        l1 += hidden.iter().map(|(a, _, _)| (scale * a + offset).abs()).sum::<f64>() / m as f64;
        let sparsity = |j: usize| match hyper.penalty() {
            SparsityPenalty::Kl => scale * s[j],
            SparsityPenalty::L1 => scale * beta * (scale * hidden[j].0 + offset).signum(),
        };
        // The contractive penalty λ_c ‖∂a2/∂x‖²_F = λ_c Σ_j f'_j² ‖W1_j‖², per example.
        contractive_cost += contractive * (0..h).map(|j| hidden[j].1.powi(2) * row_norm(j)).sum::<f64>() / m as f64;
        let delta2: Vec<f64> = (0..h)
            .map(|j| {
                let (_, d, curvature) = hidden[j];
                let backpropagated = (0..n).map(|k| w2(k, j) * delta3[k]).sum::<f64>();
                let sparsity = if beta > 0.0 { sparsity(j) } else { 0.0 };
                (backpropagated + sparsity) * d + contractive * row_norm(j) * 2.0 * d * curvature
            })
            .collect();
        for k in 0..n {
            for j in 0..h {
                let contractive_direct = contractive * hidden[j].1.powi(2) * 2.0 * w1(j, k);
                grad[j + k * h] += (delta2[j] * x_in[k] + contractive_direct) / m as f64;
                grad[h * n + k + j * n] += delta3[k] * hidden[j].0 / m as f64;
            }
        }
        for j in 0..h {
            grad[2 * h * n + j] += delta2[j] / m as f64;
        }
        for k in 0..n {
            grad[2 * h * n + h + k] += delta3[k] / m as f64;
        }
    }

    let lambda = hyper.lambda();
    let mut weight_norm = 0.0;
    for j in 0..h {
        for k in 0..n {
            let (w1, w2) = (w1(j, k), w2(k, j));
            grad[j + k * h] += lambda * w1;
            grad[h * n + k + j * n] += lambda * w2;
            weight_norm += if tied { w1 * w1 } else { w1 * w1 + w2 * w2 };
        }
    }
    if tied {
        // ∂J/∂W1 = ∂J/∂W2ᵀ = (∇_W J)/2 with ∇_W J = ∇W1 + ∇W2ᵀ, whose weight decay λW came
        // from both copies: counted once.
        for j in 0..h {
            for k in 0..n {
                let g = (grad[j + k * h] + grad[h * n + k + j * n] - lambda * w1(j, k)) / 2.0;
                grad[j + k * h] = g;
                grad[h * n + k + j * n] = g;
            }
        }
    }
    let penalty = match (beta > 0.0, hyper.penalty()) {
        (false, _) => 0.0,
        (true, SparsityPenalty::Kl) => beta * rho_hat.iter().map(|&r| kl_divergence(hyper.rho(), r)).sum::<f64>(),
        (true, SparsityPenalty::L1) => beta * l1,
    };
    let loss = hyper.reconstruction().loss_scale() * loss / m as f64;
    Ok((loss + lambda / 2.0 * weight_norm + penalty + contractive_cost, grad))
}

/// The variational autoencoder's `−ELBO` (mean per example, as `(reconstruction, KL)`) and its
/// gradient, one example at a time with the `ε` that [`crate::objective::VaeObjective`] draws
/// for `(seed, epoch)`: every layer a plain loop, every derivative by the chain rule written
/// out.
pub fn vae_cost_and_gradient(
    shape: &VaeShape,
    data: &Dataset<'_, f64>,
    theta: &[f64],
    seed: u64,
    epoch: u64,
) -> Result<((f64, f64), Vec<f64>)> {
    let (n, h, d, m) = (shape.visible, shape.hidden, shape.latent, data.examples());
    let l = shape.layout();
    if theta.len() != l.len || data.features() != n {
        return Err(Error::shape_mismatch(
            "theta and data of the variational autoencoder",
            format!("{} values, {n} features", l.len),
            format!("{} values, {} features", theta.len(), data.features()),
        ));
    }
    // Column-major `rows×cols` matrix at `offset`: entry (r, c).
    let at = |offset: usize, rows: usize, r: usize, c: usize| offset + r + c * rows;
    let dense = |w: usize, b: usize, rows: usize, input: &[f64]| -> Vec<f64> {
        (0..rows)
            .map(|r| theta[b + r] + input.iter().enumerate().map(|(c, v)| theta[at(w, rows, r, c)] * v).sum::<f64>())
            .collect()
    };
    let mut grad = vec![0.0; l.len];
    let (mut reconstruction, mut kl) = (0.0, 0.0);
    for i in 0..m {
        let x: Vec<f64> = (0..n).map(|k| data.x().get(k, i)).collect();
        let h1: Vec<(f64, f64, f64)> =
            dense(l.w1, l.b1, h, &x).into_iter().map(|z| hidden_unit(shape.activation, z)).collect();
        let a1: Vec<f64> = h1.iter().map(|u| u.0).collect();
        let latent = dense(l.we, l.be, 2 * d, &a1);
        let (mean, log_variance) = latent.split_at(d);
        let mut rng = super::parts::corruption::example_generator(seed, epoch, i as u64);
        let epsilon: Vec<f64> = (0..d).map(|_| rand::Rng::sample(&mut rng, rand_distr::StandardNormal)).collect();
        let z: Vec<f64> = (0..d).map(|k| mean[k] + (log_variance[k] / 2.0).exp() * epsilon[k]).collect();
        kl += (0..d).map(|k| -0.5 * (1.0 + log_variance[k] - mean[k].powi(2) - log_variance[k].exp())).sum::<f64>();
        let h2: Vec<(f64, f64, f64)> =
            dense(l.w3, l.b3, h, &z).into_iter().map(|z| hidden_unit(shape.activation, z)).collect();
        let a2: Vec<f64> = h2.iter().map(|u| u.0).collect();
        let y = dense(l.w4, l.b4, n, &a2);
        let mut delta_y = vec![0.0; n];
        for k in 0..n {
            let (nats, delta) = match shape.decoder {
                VaeDecoder::Bernoulli => output_loss(Reconstruction::SigmoidCrossEntropy, y[k], x[k]),
                VaeDecoder::Gaussian => {
                    ((y[k] - x[k]).powi(2) / 2.0 + 0.5 * (2.0 * std::f64::consts::PI).ln(), y[k] - x[k])
                }
            };
            reconstruction += nats;
            delta_y[k] = delta;
        }
        // Backward, layer by layer.
        let delta_h2: Vec<f64> =
            (0..h).map(|j| (0..n).map(|k| theta[at(l.w4, n, k, j)] * delta_y[k]).sum::<f64>() * h2[j].1).collect();
        let delta_z: Vec<f64> = (0..d).map(|k| (0..h).map(|j| theta[at(l.w3, h, j, k)] * delta_h2[j]).sum()).collect();
        let mut delta_latent = vec![0.0; 2 * d];
        for k in 0..d {
            let sigma = (log_variance[k] / 2.0).exp();
            delta_latent[k] = delta_z[k] + mean[k];
            delta_latent[d + k] = delta_z[k] * epsilon[k] * sigma / 2.0 + (sigma * sigma - 1.0) / 2.0;
        }
        let delta_h1: Vec<f64> = (0..h)
            .map(|j| (0..2 * d).map(|r| theta[at(l.we, 2 * d, r, j)] * delta_latent[r]).sum::<f64>() * h1[j].1)
            .collect();
        let mut add = |w: usize, b: usize, rows: usize, delta: &[f64], input: &[f64]| {
            for (r, &dr) in delta.iter().enumerate().take(rows) {
                grad[b + r] += dr / m as f64;
                for (c, &v) in input.iter().enumerate() {
                    grad[at(w, rows, r, c)] += dr * v / m as f64;
                }
            }
        };
        add(l.w4, l.b4, n, &delta_y, &a2);
        add(l.w3, l.b3, h, &delta_h2, &z);
        add(l.we, l.be, 2 * d, &delta_latent, &a1);
        add(l.w1, l.b1, h, &delta_h1, &x);
    }
    Ok(((reconstruction / m as f64, kl / m as f64), grad))
}
