//! The model: hyper-parameters and the parameter vector `theta` in the UFLDL layout.

mod file;
mod forward;
mod hyper;
pub(crate) mod metadata;
pub mod picture;
pub mod saelens;
mod safetensors_writer;
pub mod stack;
mod tensors;
mod theta;
pub mod vae;

pub(crate) use file::{decode as decode_tensor, tensor_out};
pub use file::{ModelFile, FORMAT, FORMAT_VERSION, OBJECTIVE};
pub use forward::Forward;
pub use hyper::{Activation, Corruption, HyperParams, HyperParamsBuilder, Reconstruction, SparsityPenalty};
pub(crate) use safetensors_writer::save as save_safetensors;
pub use theta::{Parameters, ThetaLayout};
