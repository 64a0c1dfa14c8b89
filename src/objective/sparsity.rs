//! The KL sparsity penalty of one hidden unit and its derivative (SPEC §1).

/// `KL(ρ ‖ q) = ρ log(ρ/q) + (1−ρ) log((1−ρ)/(1−q))`.
pub fn kl_divergence(rho: f64, q: f64) -> f64 {
    rho * (rho / q).ln() + (1.0 - rho) * ((1.0 - rho) / (1.0 - q)).ln()
}

/// The sparsity delta `s = β (−ρ/q + (1−ρ)/(1−q))`: `∂/∂q` of `β KL(ρ ‖ q)`.
pub fn sparsity_delta(beta: f64, rho: f64, q: f64) -> f64 {
    beta * (-rho / q + (1.0 - rho) / (1.0 - q))
}
