//! The sparse autoencoder objective `J(theta)` and its gradient over a whole data set
//! (SPEC §1), its fast batched evaluation (SPEC §2.1), a plain per-example reference and
//! finite-difference gradient checking.

mod batched;
pub mod gradcheck;
pub mod reference;
mod sparsity;

pub use batched::{default_block_size, Objective};
pub use sparsity::{kl_divergence, sparsity_delta};
