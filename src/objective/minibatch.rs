//! The objective on one minibatch at a time, for stochastic training (Adam, SGD): the same
//! engine, with `rho_hat` tracked across minibatches.
//!
//! The KL penalty needs every hidden unit's average activation over the data, which one
//! minibatch estimates poorly. As is usual for KL sparsity with minibatches, `rho_hat` is an
//! exponential moving average over the minibatches seen:
//! `rho_hat ← μ rho_hat + (1 − μ) rho_hat_batch`, and the batch's cost and sparsity delta
//! `s_j = β (−ρ/rho_hat_j + (1 − ρ)/(1 − rho_hat_j))` use that average (the first batch
//! uses its own). The gradient is then the full-batch gradient's formula with `s` from the
//! average and the other terms from the batch — an estimate of the full-batch gradient that
//! does not inherit the batch's noisy `rho_hat`. The average is part of the training state
//! (checkpointed with it).

use super::distributed::{Alone, Collective, Split};
use super::engine::{default_block_size, Engine};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::model::HyperParams;
use crate::real::Real;

/// `J` and its gradient on minibatches of at most `batch` examples, with a running `rho_hat`.
#[derive(Debug)]
pub struct MinibatchObjective<T: Real> {
    engine: Engine<T>,
    batch: usize,
    momentum: f64,
    running: Vec<f64>,
}

impl<T: Real> MinibatchObjective<T> {
    /// Minibatches of at most `batch` examples; `momentum` `μ ∈ [0, 1)` of the running
    /// `rho_hat`. Made on the rayon pool it will run on: its blocks are cut for that pool's
    /// threads (results are bit-for-bit the same for the same thread count).
    pub fn new(hyper: HyperParams, batch: usize, momentum: f64) -> Result<Self> {
        if batch == 0 {
            return Err(Error::InvalidHyperParameter { name: "batch size", value: 0.0, reason: "must be at least 1" });
        }
        if !(0.0..1.0).contains(&momentum) {
            return Err(Error::InvalidHyperParameter {
                name: "rho_hat momentum",
                value: momentum,
                reason: "must be in [0, 1)",
            });
        }
        let mut engine = Engine::new(hyper);
        // The engine's threads take a block of examples each: a minibatch no larger than a
        // block is cut into one block per thread of the pool it is made on (of 16 examples at
        // least, below which the GEMMs' tiles would run mostly empty).
        let per_thread = batch.div_ceil(rayon::current_num_threads()).max(16);
        if per_thread < default_block_size::<T>(hyper.visible(), hyper.hidden()) {
            engine.set_block_size(per_thread)?;
        }
        Ok(MinibatchObjective { engine, batch, momentum, running: Vec::new() })
    }

    pub fn theta_len(&self) -> usize {
        self.engine.layout().len()
    }

    /// The running `rho_hat` (empty before the first minibatch).
    pub fn running_rho_hat(&self) -> &[f64] {
        &self.running
    }

    /// Restores a running `rho_hat` (from a checkpoint); empty starts afresh.
    pub fn set_running_rho_hat(&mut self, running: Vec<f64>) -> Result<()> {
        let h = self.engine.hyper().hidden();
        if !running.is_empty() && running.len() != h {
            return Err(Error::shape_mismatch("running rho_hat", h, running.len()));
        }
        self.running = running;
        Ok(())
    }

    /// Draws the corruption noise of `epoch` for the next minibatches (a denoising model's
    /// trainer passes the step number, so that each step sees fresh noise).
    pub fn set_corruption_epoch(&mut self, epoch: u64) {
        self.engine.set_corruption_epoch(epoch);
    }

    /// `J` on `batch` (with the running `rho_hat`, which it then updates) and its gradient.
    /// Fails when the batch is too large, or when the model's loss is not defined on one of
    /// its values (cross-entropy outside [0, 1]; the row is the batch's).
    pub fn evaluate(&mut self, theta: &[T], grad: &mut [T], batch: &Dataset<'_, T>) -> Result<f64> {
        self.evaluate_part(theta, grad, Some(batch), &mut Split::new(Alone))
    }

    /// [`evaluate`](Self::evaluate) on a minibatch split across the processes of `split`, this
    /// process holding `batch` (none of it: `None`): the running `rho_hat` is updated from the
    /// whole minibatch's, and every process gets the whole minibatch's cost and gradient.
    /// Collective (see [`super::distributed`]).
    pub fn evaluate_part<C: Collective>(
        &mut self,
        theta: &[T],
        grad: &mut [T],
        batch: Option<&Dataset<'_, T>>,
        split: &mut Split<C>,
    ) -> Result<f64> {
        self.evaluate_loaded(theta, grad, Ok(batch.copied()), split)
    }

    /// [`evaluate_part`](Self::evaluate_part) of this process's part of the minibatch as it
    /// was read: a failure to read it fails the evaluation on every process.
    pub(crate) fn evaluate_loaded<C: Collective>(
        &mut self,
        theta: &[T],
        grad: &mut [T],
        batch: Result<Option<Dataset<'_, T>>>,
        split: &mut Split<C>,
    ) -> Result<f64> {
        let (batch, read) = match batch {
            Ok(batch) => (batch, Ok(())),
            Err(error) => (None, Err(error)),
        };
        let batch = batch.as_ref();
        let local = batch.map_or(0, |b| b.examples());
        let reconstruction = self.engine.hyper().reconstruction();
        // Any failure of this process's part goes through the first sum, so that every
        // process fails alike.
        let checked = read.and_then(|()| {
            batch.map_or(Ok(()), |batch| {
                if local > self.batch {
                    return Err(Error::shape_mismatch("minibatch examples", format!("at most {}", self.batch), local));
                }
                super::check_data(reconstruction, batch)
            })
        });
        self.engine.set_counts_weight_decay(split.counts_global_terms());
        self.engine.begin(theta, grad, self.batch)?;
        if let (Some(batch), Ok(())) = (batch, &checked) {
            self.engine.forward(theta, batch, 0);
            self.engine.accumulate_activations();
        }
        let m = split.activations(&mut self.engine, theta, checked.map(|()| local))?;
        let sparsity_cost = self.engine.sparsity_with_running_average(m, &mut self.running, self.momentum)?;
        if let Some(batch) = batch {
            self.engine.backward(theta, batch, 0);
        }
        let counted_sparsity = if split.counts_global_terms() { sparsity_cost } else { 0.0 };
        self.engine.finish(theta, grad, m, counted_sparsity);
        Ok(split.results(&self.engine, grad, Ok(()))?.total())
    }
}
