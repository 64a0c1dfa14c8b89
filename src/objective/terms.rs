//! The objective's cost by its terms (SPEC §1).

/// `J = reconstruction + weight decay + sparsity + contractive`, each term as it enters `J`:
///
/// - `reconstruction`: the mean over the `m` examples of the reconstruction loss,
///   `(1/m) Σ_i ½‖x̂_i − x_i‖²` for squared error (`(1/m) Σ_i Σ_k` of the cross-entropy);
/// - `weight_decay`: `λ/2 (‖W1‖² + ‖W2‖²)`, and with tied weights (`W1 = W2ᵀ = W`) `λ/2 ‖W‖²`,
///   the decay of the one matrix;
/// - `sparsity`: `β Σ_j KL(ρ ‖ rho_hat_j)` (`β Σ_j rho_hat_j` for the L1 penalty);
/// - `contractive`: `λ_c/m Σ_i ‖∂a2_i/∂x_i‖²_F`.
///
/// On held-out data, `reconstruction` is the error to watch; `total` is the objective the
/// model was trained on, evaluated there.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CostTerms {
    pub reconstruction: f64,
    pub weight_decay: f64,
    pub sparsity: f64,
    pub contractive: f64,
}

impl CostTerms {
    /// `J`, the sum of the terms.
    pub fn total(&self) -> f64 {
        self.reconstruction + self.weight_decay + self.sparsity + self.contractive
    }
}
