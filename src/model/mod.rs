//! The model: hyper-parameters and the parameter vector `theta` in the UFLDL layout.

mod file;
mod hyper;
mod theta;

pub use file::{ModelFile, FORMAT, FORMAT_VERSION, OBJECTIVE};
pub use hyper::{HyperParams, HyperParamsBuilder};
pub use theta::{Parameters, ThetaLayout};
