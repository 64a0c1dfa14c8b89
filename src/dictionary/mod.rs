//! Dictionary-style sparse autoencoders: a wide ReLU layer kept sparse by keeping only the `k`
//! largest activations of each example (TopK; Makhzani & Frey's k-sparse autoencoders, and
//! the TopK SAEs trained on neural-network activations), on sparse kernels: with `k` of `h`
//! latents active, everything but the encoder's forward product touches `k·n` weights per
//! example, not `h·n`.
//!
//! [`TopKModel`] holds a model and its file, and encodes data sets into [`Codes`];
//! [`TopKObjective`] its loss and gradient on a minibatch; [`select`] the top-k selection
//! kernel; training is `crate::train::TopKTrainer`.

mod codes;
pub mod interop;
mod median;
mod model;
mod objective;
pub mod select;

pub use codes::{Codes, ENCODE_CHUNK};
pub use median::{geometric_median, geometric_median_summed};
pub use model::{spread_codes, Architecture, Blocks, DictionaryLayout, TopKModel, OBJECTIVE};
pub use objective::{AuxK, BatchStats, TopKObjective};
pub use select::{Selection, Units};
