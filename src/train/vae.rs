//! Minibatch training of a variational autoencoder with Adam (or SGD): each epoch visits the
//! examples in a fresh order (a function of the seed and the epoch, as in
//! [`MinibatchTrainer`](super::MinibatchTrainer)), and step `t` draws the `ε` of epoch `t` of
//! the [`VaeObjective`], so a run is reproducible.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use rayon::prelude::*;

use super::control::Control;
use super::minibatch::gather;
use super::Shuffle;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::model::vae::{VaeModel, VaeShape};
use crate::objective::{VaeCost, VaeObjective};
use crate::optim::{StepRule, StepState};
use crate::real::Real;

/// How to train.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VaeOptions {
    pub rule: StepRule,
    pub batch_size: usize,
    pub epochs: usize,
    /// Seed of the example order and of `ε`.
    pub seed: u64,
}

impl Default for VaeOptions {
    /// Kingma & Welling's and PyTorch's example's: Adam at 1e-3, minibatches of 128, 10 epochs.
    fn default() -> Self {
        VaeOptions { rule: StepRule::adam(1e-3), batch_size: 128, epochs: 10, seed: 1 }
    }
}

/// One finished epoch.
#[derive(Debug, Clone, Copy)]
pub struct VaeEpoch {
    /// Epochs completed.
    pub epoch: usize,
    /// The mean of the minibatches' costs over the epoch (the training `−ELBO` per example).
    pub cost: VaeCost,
}

/// Trains one [`VaeShape`] with [`VaeOptions`].
#[derive(Debug, Clone)]
pub struct VaeTrainer {
    shape: VaeShape,
    options: VaeOptions,
    stop: Option<Arc<AtomicBool>>,
}

impl VaeTrainer {
    pub fn new(shape: VaeShape, options: VaeOptions) -> Result<Self> {
        options.rule.check()?;
        if options.batch_size == 0 {
            return Err(Error::InvalidHyperParameter { name: "batch size", value: 0.0, reason: "must be at least 1" });
        }
        Ok(VaeTrainer { shape, options, stop: None })
    }

    /// Ends the run after the current step once `flag` is set (from another thread, e.g. a
    /// signal handler; at an epoch's last step, after that epoch): the model so far is
    /// returned with the metadata `stop = interrupted`.
    pub fn stop_when(mut self, flag: Arc<AtomicBool>) -> Self {
        self.stop = Some(flag);
        self
    }

    fn stop_requested(&self) -> bool {
        super::control::interrupted(&self.stop)
    }

    /// Trains from `init` on `data`; `on_epoch` sees each finished epoch, and may end the run
    /// there (see [`Control`]: the model is then recorded with `stop = requested`). Fails with
    /// [`Error::NonFiniteCost`] when a step diverges.
    pub fn fit<T: Real, C: Control>(
        &self,
        data: &Dataset<'_, T>,
        init: &[T],
        mut on_epoch: impl FnMut(&VaeEpoch) -> C,
    ) -> Result<VaeModel<T>> {
        let (n, m, options) = (self.shape.visible, data.examples(), self.options);
        let mut objective = VaeObjective::<T>::new(self.shape, options.batch_size.min(m), options.seed)?;
        let mut x: Vec<f64> = init.iter().map(|v| v.as_f64()).collect();
        let (mut theta, mut grad_t, mut grad) = (init.to_vec(), vec![T::zero(); x.len()], vec![0.0; x.len()]);
        let mut state = StepState::new(x.len());
        // No minibatch is larger than the data, whatever the option says.
        let mut batch_values = vec![T::zero(); options.batch_size.min(m) * n];
        let (mut epochs, mut requested) = (0, false);
        'epochs: for epoch in 0..options.epochs {
            let order = Shuffle::Full.epoch_order(m, options.seed, epoch);
            let mut total = VaeCost::default();
            for (index, rows) in order.chunks(options.batch_size).enumerate() {
                gather(data, rows, &mut batch_values);
                let batch = Dataset::examples_by_features(&batch_values[..rows.len() * n], rows.len(), n)?;
                let step = state.steps + 1;
                let cost = objective.evaluate(&theta, &mut grad_t, &batch, step)?;
                grad.par_iter_mut().zip(&grad_t).for_each(|(g, &gt)| *g = gt.as_f64());
                if !cost.total().is_finite() || grad.iter().any(|g| !g.is_finite()) {
                    return Err(Error::NonFiniteCost { iteration: step as usize, value: cost.total() });
                }
                state.step(&options.rule, &mut x, &grad);
                theta.par_iter_mut().zip(&x).for_each(|(t, &v)| *t = T::cast(v));
                total.reconstruction += cost.reconstruction * rows.len() as f64;
                total.kl += cost.kl * rows.len() as f64;
                // A stop at an epoch's last step ends the run below, with the epoch counted.
                let last = (index + 1) * options.batch_size >= m;
                if self.stop_requested() && !last {
                    break 'epochs;
                }
            }
            epochs = epoch + 1;
            let cost = VaeCost { reconstruction: total.reconstruction / m as f64, kl: total.kl / m as f64 };
            requested = on_epoch(&VaeEpoch { epoch: epoch + 1, cost }).stops();
            if requested || self.stop_requested() {
                break;
            }
        }
        let stop = if epochs == options.epochs {
            "max-epochs"
        } else if requested {
            "requested"
        } else {
            "interrupted"
        };
        let metadata = vec![
            ("optimizer".to_string(), options.rule.name().to_string()),
            ("stop".to_string(), stop.to_string()),
            ("epochs".to_string(), epochs.to_string()),
            ("batch_size".to_string(), options.batch_size.to_string()),
            ("steps".to_string(), state.steps.to_string()),
        ];
        Ok(VaeModel { shape: self.shape, theta, metadata })
    }
}
