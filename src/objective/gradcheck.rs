//! Central-difference gradient checking (SPEC §4, UFLDL's `computeNumericalGradient`).

/// `g_i = (f(θ + ε e_i) − f(θ − ε e_i)) / 2ε` for every coordinate of `theta`.
pub fn numerical_gradient(mut f: impl FnMut(&[f64]) -> f64, theta: &[f64], epsilon: f64) -> Vec<f64> {
    let mut probe = theta.to_vec();
    (0..theta.len())
        .map(|i| {
            probe[i] = theta[i] + epsilon;
            let plus = f(&probe);
            probe[i] = theta[i] - epsilon;
            let minus = f(&probe);
            probe[i] = theta[i];
            (plus - minus) / (2.0 * epsilon)
        })
        .collect()
}

/// `‖a − b‖ / ‖a + b‖`, the UFLDL criterion (below 1e-9 for a correct f64 gradient).
/// Zero when both are zero.
pub fn relative_difference(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let diff: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let sum: f64 = a.iter().zip(b).map(|(x, y)| (x + y) * (x + y)).sum();
    if sum == 0.0 {
        diff.sqrt()
    } else {
        (diff / sum).sqrt()
    }
}
