//! The model: hyper-parameters and the parameter vector `theta` in the UFLDL layout.

mod hyper;
mod theta;

pub use hyper::{HyperParams, HyperParamsBuilder};
pub use theta::{Parameters, ThetaLayout};
