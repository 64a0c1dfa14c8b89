//! The plain reference implementation: one example at a time, no GEMM, no SIMD, f64. It is the
//! oracle every fast path is tested against (SPEC §4), written to be obviously the math of
//! SPEC §1 rather than fast.

use super::sparsity::{kl_divergence, sparsity_delta};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::model::{HyperParams, SparsityPenalty, ThetaLayout};

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// `J(theta)` and `∇J(theta)` for the whole data set, by two loops over the examples: the first
/// finds `rho_hat`, the second backpropagates each example.
pub fn cost_and_gradient(hyper: &HyperParams, data: &Dataset<'_, f64>, theta: &[f64]) -> Result<(f64, Vec<f64>)> {
    let (n, h, m) = (hyper.visible(), hyper.hidden(), data.examples());
    if data.features() != n {
        return Err(Error::ShapeMismatch {
            what: "data features",
            expected: n.to_string(),
            got: data.features().to_string(),
        });
    }
    let layout = ThetaLayout::new(n, h);
    layout.check(theta, "theta")?;
    let x = data.x();
    let w1 = |j: usize, k: usize| theta[j + k * h];
    let w2 = |k: usize, j: usize| theta[h * n + k + j * n];
    let b1 = layout.b1(theta);
    let b2 = layout.b2(theta);

    let hidden_activation = |i: usize| -> Vec<f64> {
        (0..h).map(|j| sigmoid(b1[j] + (0..n).map(|k| w1(j, k) * x.get(k, i)).sum::<f64>())).collect()
    };

    let mut rho_hat = vec![0.0; h];
    for i in 0..m {
        for (r, a) in rho_hat.iter_mut().zip(hidden_activation(i)) {
            *r += a / m as f64;
        }
    }
    let kl_penalty = hyper.penalty() == SparsityPenalty::Kl;
    if let Some(unit) = rho_hat.iter().position(|&r| kl_penalty && (r <= 0.0 || r >= 1.0)) {
        return Err(Error::SaturatedActivation { unit, rho_hat: rho_hat[unit] });
    }
    let s: Vec<f64> = rho_hat.iter().map(|&r| sparsity_delta(hyper.beta(), hyper.rho(), r)).collect();
    // L1: β Σ_j |a2_j| per example, whose derivative is β sign(a2_j), taken literally.
    let mut l1 = 0.0;

    let mut grad = vec![0.0; layout.len()];
    let mut squared_error = 0.0;
    for i in 0..m {
        let a2 = hidden_activation(i);
        let a3: Vec<f64> = (0..n).map(|k| sigmoid(b2[k] + (0..h).map(|j| w2(k, j) * a2[j]).sum::<f64>())).collect();
        let delta3: Vec<f64> = (0..n).map(|k| -(x.get(k, i) - a3[k]) * a3[k] * (1.0 - a3[k])).collect();
        squared_error += (0..n).map(|k| (a3[k] - x.get(k, i)).powi(2)).sum::<f64>();
        l1 += a2.iter().map(|a| a.abs()).sum::<f64>() / m as f64;
        let sparsity = |j: usize| if kl_penalty { s[j] } else { hyper.beta() * a2[j].signum() };
        let delta2: Vec<f64> = (0..h)
            .map(|j| ((0..n).map(|k| w2(k, j) * delta3[k]).sum::<f64>() + sparsity(j)) * a2[j] * (1.0 - a2[j]))
            .collect();
        for k in 0..n {
            for j in 0..h {
                grad[j + k * h] += delta2[j] * x.get(k, i) / m as f64;
                grad[h * n + k + j * n] += delta3[k] * a2[j] / m as f64;
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
    for (g, &w) in grad.iter_mut().zip(theta).take(2 * h * n) {
        *g += lambda * w;
        weight_norm += w * w;
    }
    let penalty = if kl_penalty {
        hyper.beta() * rho_hat.iter().map(|&r| kl_divergence(hyper.rho(), r)).sum::<f64>()
    } else {
        hyper.beta() * l1
    };
    let cost = squared_error / (2.0 * m as f64) + lambda / 2.0 * weight_norm + penalty;
    Ok((cost, grad))
}
