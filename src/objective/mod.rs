//! The sparse autoencoder objective `J(theta)` and its gradient over a whole data set
//! (SPEC §1): its fast evaluation in memory (SPEC §2.1) and streamed in chunks (SPEC §2.2), a
//! plain per-example reference, and finite-difference gradient checking.

pub mod distributed;
mod domain;
mod engine;
pub mod gradcheck;
mod in_memory;
mod minibatch;
pub(crate) mod normal;
mod parts;
pub mod reference;
mod softmax;
mod stacked;
mod streaming;
mod terms;
mod vae;

pub(crate) use domain::check_data;
pub use engine::default_block_size;
pub use in_memory::{Objective, UnboundObjective};
pub use minibatch::MinibatchObjective;
pub use parts::sparsity::{kl_divergence, sparsity_delta};
pub use softmax::SoftmaxObjective;
pub use stacked::{StackShape, StackedObjective};
pub use streaming::{StreamMode, StreamingObjective};
pub use terms::CostTerms;
pub use vae::{VaeCost, VaeObjective};
