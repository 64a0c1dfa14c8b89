//! The parts the engine composes into one member of the dense autoencoder family (SPEC §1 and
//! its variants), each with its math in one place:
//!
//! * the hidden units' activation and the reconstruction — their kernels
//!   ([`crate::kernels::HiddenKernels`], [`crate::kernels::OutputKernels`]), chosen once;
//! * [`SparsityTerm`]: `rho_hat` from the activation sums, the sparsity penalty's cost and its
//!   delta `s`;
//! * [`ContractivePenalty`]: the Jacobian's squared norm, its share of `delta2` and its direct
//!   decay of `W1`;
//! * [`EncoderInput`]: the data, or its corruption `x̃` made a block at a time (denoising);
//! * [`WeightTying`]: untied weights, or `W2 = W1ᵀ` evaluated as the symmetrised `theta` with
//!   the gradient folded back.
//!
//! The engine calls each part at the same points whatever it is (a part that is absent does
//! nothing there), so a variant adds no test of its own to the engine, and the hot loops stay
//! the kernels chosen once per evaluation.

mod contractive;
pub(crate) mod corruption;
pub(crate) mod sparsity;
mod tying;

pub(crate) use contractive::ContractivePenalty;
pub(crate) use corruption::EncoderInput;
pub(crate) use sparsity::SparsityTerm;
pub(crate) use tying::WeightTying;
