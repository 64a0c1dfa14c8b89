//! A fast CPU engine for the UFLDL sparse autoencoder (see `SPEC.md` of the project): the
//! whole-data-set cost and gradient as five GEMMs per column block with SIMD elementwise
//! kernels, in f32 or f64.
//!
//! ```
//! use sae::{Dataset, HyperParams, Objective, Parameters};
//!
//! let (m, n, h) = (100, 16, 4);
//! let values: Vec<f64> = (0..m * n).map(|i| 0.1 + 0.8 * ((i * 7919) % 101) as f64 / 100.0).collect();
//! let data = Dataset::examples_by_features(&values, m, n)?;
//! let hyper = HyperParams::builder(n, h).lambda(1e-4).beta(3.0).rho(0.01).build()?;
//! let theta = Parameters::<f64>::init(n, h, 42);
//! let mut objective = Objective::new(hyper, data)?;
//! let mut grad = vec![0.0; theta.theta().len()];
//! let cost = objective.evaluate(theta.theta(), &mut grad)?;
//! assert!(cost > 0.0);
//! # Ok::<(), sae::Error>(())
//! ```

#[cfg(feature = "openblas")]
extern crate blas_src;

pub mod data;
pub mod dictionary;
pub mod error;
#[cfg(feature = "exercises")]
pub mod exercises;
pub mod files;
#[cfg(feature = "exercises")]
#[doc(hidden)]
pub mod fuzzing;
pub mod gemm;
mod kernels;
pub mod model;
#[cfg(feature = "mpi")]
pub mod mpi;
pub mod objective;
pub mod optim;
pub mod real;
pub mod train;

pub use data::{Dataset, Layout};
pub use error::{Error, Result};
pub use gemm::Backend;
pub use kernels::Isa;
pub use model::{HyperParams, Parameters, ThetaLayout};
pub use objective::Objective;
pub use real::Real;
