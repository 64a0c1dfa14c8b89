//! The training curve: the cost after each iteration (L-BFGS, the full objective) or epoch
//! (minibatch training, the mean of the epoch's minibatch costs), kept in model files and
//! checkpoints as the metadata `curve.training`, a JSON array of `[at, cost]`.

use super::checkpoint::Saved;
use crate::error::Result;
use crate::model::ModelFile;
use crate::real::Real;

/// The metadata key of the training curve.
const KEY: &str = "curve.training";

/// `(iteration or epoch, cost)` pairs in order, the start as iteration or epoch 0 where known.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct TrainingCurve(pub Vec<(usize, f64)>);

impl TrainingCurve {
    pub fn push(&mut self, at: usize, cost: f64) {
        self.0.push((at, cost));
    }

    /// Records the curve in `model`'s metadata.
    pub fn describe(&self, model: &mut ModelFile<impl Real>) {
        model.metadata.insert(KEY.into(), serde_json::to_string(&self.0).expect("numbers serialise"));
    }

    /// The curve a checkpoint recorded (empty when it recorded none: an older checkpoint).
    pub fn restore<T: Real>(saved: &Saved<'_, T>) -> Result<Self> {
        let Some(text) = saved.model.metadata.get(KEY) else {
            return Ok(TrainingCurve::default());
        };
        match serde_json::from_str::<Vec<(usize, f64)>>(text) {
            Ok(points) if points.iter().all(|(_, cost)| cost.is_finite()) => Ok(TrainingCurve(points)),
            _ => Err(saved.bad(KEY, "is not a JSON array of [at, cost] with finite costs")),
        }
    }
}
