//! The objective on a data set held in memory (SPEC §2.1): the whole data set is one chunk of
//! the [`Engine`].

use super::engine::Engine;
use super::CostTerms;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::gemm::Backend;
use crate::kernels::Isa;
use crate::model::HyperParams;
use crate::real::Real;

/// The objective `J(theta)` of a sparse autoencoder on one data set in memory, with the
/// workspace that makes repeated evaluations allocation-free.
#[derive(Debug)]
pub struct Objective<'d, T: Real> {
    engine: Engine<T>,
    data: Dataset<'d, T>,
}

impl<'d, T: Real> Objective<'d, T> {
    /// The objective of `hyper` on `data`; fails when the data's feature count is not `n`, or
    /// when the model's loss is not defined on some value (cross-entropy outside [0, 1]).
    /// Uses the preferred GEMM back-end and the best kernels for this CPU.
    pub fn new(hyper: HyperParams, data: Dataset<'d, T>) -> Result<Self> {
        UnboundObjective { engine: Engine::new(hyper) }.bind(data)
    }

    /// The objective without its data, keeping its settings and its workspace, to be bound to
    /// other data (or to the same data borrowed again) without allocating anew: for a caller
    /// that cannot keep the borrow between evaluations (e.g. an array owned by Python).
    pub fn unbind(self) -> UnboundObjective<T> {
        UnboundObjective { engine: self.engine }
    }

    /// Uses `backend` for the GEMMs.
    pub fn with_backend(mut self, backend: Backend) -> Self {
        self.engine.set_backend(backend);
        self
    }

    /// Uses the kernels of `isa`; fails when this CPU does not support it.
    pub fn with_isa(mut self, isa: Isa) -> Result<Self> {
        self.engine.set_isa(isa)?;
        Ok(self)
    }

    /// Sets `B`, the number of examples per column block (at least 1; default
    /// [`default_block_size`](super::default_block_size)).
    pub fn with_block_size(mut self, block_size: usize) -> Result<Self> {
        self.engine.set_block_size(block_size)?;
        Ok(self)
    }

    pub fn hyper(&self) -> &HyperParams {
        self.engine.hyper()
    }

    pub fn data(&self) -> &Dataset<'d, T> {
        &self.data
    }

    /// The length of `theta` and of the gradient.
    pub fn theta_len(&self) -> usize {
        self.engine.layout().len()
    }

    pub fn backend(&self) -> Backend {
        self.engine.backend()
    }

    pub fn isa(&self) -> Isa {
        self.engine.isa()
    }

    /// `rho_hat` of the last evaluation that completed its forward pass (empty before the
    /// first): after an [`Error::SaturatedActivation`], the values that caused it.
    pub fn rho_hat(&self) -> &[f64] {
        self.engine.rho_hat()
    }

    /// The terms of the cost the last successful evaluation returned (all zero before the
    /// first).
    pub fn terms(&self) -> CostTerms {
        self.engine.terms()
    }

    /// Draws the corruption noise of `epoch` (default 0): the noise of example `i` is a
    /// function of the corruption seed, the epoch and `i`, so a fixed epoch makes `J` a
    /// deterministic function of `theta` (as L-BFGS needs). No effect without corruption.
    pub fn set_corruption_epoch(&mut self, epoch: u64) {
        self.engine.set_corruption_epoch(epoch);
    }

    /// `J(theta)`, returned in f64, and `∇J(theta)` written to `grad` (same layout as theta).
    ///
    /// Runs on the current rayon pool, one range of blocks per thread. Fails, leaving `grad`
    /// unspecified, when theta or grad has the wrong length, theta is not finite, or some
    /// `rho_hat_j` is 0 or 1 in the working precision ([`Error::SaturatedActivation`]: the KL
    /// term and its gradient are infinite there).
    pub fn evaluate(&mut self, theta: &[T], grad: &mut [T]) -> Result<f64> {
        let m = self.data.examples();
        self.engine.begin(theta, grad, m)?;
        self.engine.forward(theta, &self.data, 0);
        self.engine.accumulate_activations();
        let sparsity_cost = self.engine.sparsity(m)?;
        self.engine.backward(theta, &self.data, 0);
        Ok(self.engine.finish(theta, grad, m, sparsity_cost))
    }
}

/// An [`Objective`] without its data ([`Objective::unbind`]): its settings and workspace.
#[derive(Debug)]
pub struct UnboundObjective<T: Real> {
    engine: Engine<T>,
}

impl<T: Real> UnboundObjective<T> {
    /// The objective on `data`; fails, as [`Objective::new`] does, when the data's feature
    /// count is not `n` or the model's loss is not defined on some value.
    pub fn bind<'d>(self, data: Dataset<'d, T>) -> Result<Objective<'d, T>> {
        let hyper = *self.engine.hyper();
        if data.features() != hyper.visible() {
            return Err(Error::shape_mismatch(
                "data features (columns of an examples-by-features array)",
                format!("n = {}", hyper.visible()),
                data.features(),
            ));
        }
        super::check_data(hyper.reconstruction(), &data)?;
        Ok(Objective { engine: self.engine, data })
    }

    pub fn hyper(&self) -> &HyperParams {
        self.engine.hyper()
    }
}
