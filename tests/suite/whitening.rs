//! PCA and ZCA whitening: whitened data has the identity covariance (ε = 0), ZCA stays
//! closest to the data, and the variance kept by k components is what the eigenvalues say.

use crate::common::*;
use sae::data::whitening::Whitening;

/// `m` examples of 6 correlated features: a random mixing of uniform sources plus an offset.
fn correlated(m: usize) -> Vec<f64> {
    let sources = uniform_data(m, 6, 1);
    let mixing = uniform_data(6, 6, 2);
    (0..m)
        .flat_map(|i| {
            let s = &sources[i * 6..(i + 1) * 6];
            let mixing = &mixing;
            (0..6).map(move |j| 3.0 + (0..6).map(|k| mixing[j * 6 + k] * s[k] * (k + 1) as f64).sum::<f64>())
        })
        .collect()
}

fn covariance(values: &[f64], n: usize) -> Vec<f64> {
    let m = values.len() / n;
    let mean: Vec<f64> = (0..n).map(|j| values.iter().skip(j).step_by(n).sum::<f64>() / m as f64).collect();
    let mut c = vec![0.0; n * n];
    for row in values.chunks_exact(n) {
        for a in 0..n {
            for b in 0..n {
                c[a * n + b] += (row[a] - mean[a]) * (row[b] - mean[b]) / m as f64;
            }
        }
    }
    c
}

fn assert_identity(c: &[f64], n: usize, tolerance: f64) {
    for a in 0..n {
        for b in 0..n {
            let expected = if a == b { 1.0 } else { 0.0 };
            assert!((c[a * n + b] - expected).abs() < tolerance, "covariance[{a}][{b}] = {}", c[a * n + b]);
        }
    }
}

#[test]
fn pca_and_zca_whitened_data_have_the_identity_covariance() {
    let values = correlated(2000);
    let whitening = Whitening::fit(&values, 2000, 6).unwrap();
    assert_identity(&covariance(&whitening.pca_white(&values, 6, 0.0).unwrap(), 6), 6, 1e-9);
    assert_identity(&covariance(&whitening.zca_white(&values, 0.0).unwrap(), 6), 6, 1e-9);
}

#[test]
fn the_eigenvalues_are_the_variances_along_the_axes_in_decreasing_order() {
    let values = correlated(2000);
    let whitening = Whitening::fit(&values, 2000, 6).unwrap();
    let l = whitening.eigenvalues();
    assert!(l.windows(2).all(|w| w[0] >= w[1]));
    let trace: f64 = (0..6).map(|j| covariance(&values, 6)[j * 7]).sum();
    assert!((l.iter().sum::<f64>() - trace).abs() < 1e-9 * trace);
    let k = whitening.components_for_variance(0.99);
    assert!(l[..k].iter().sum::<f64>() >= 0.99 * trace && (k == 1 || l[..k - 1].iter().sum::<f64>() < 0.99 * trace));
}

#[test]
fn regularisation_shrinks_the_weak_directions() {
    let values = correlated(2000);
    let whitening = Whitening::fit(&values, 2000, 6).unwrap();
    let epsilon = whitening.eigenvalues()[5] * 10.0;
    let c = covariance(&whitening.pca_white(&values, 6, epsilon).unwrap(), 6);
    for (k, &l) in whitening.eigenvalues().iter().enumerate() {
        assert!((c[k * 7] - l / (l + epsilon)).abs() < 1e-9, "component {k}");
    }
}
