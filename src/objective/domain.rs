//! The data a reconstruction loss is defined on. Cross-entropy treats each value as the
//! probability of a Bernoulli target, so it needs data in [0, 1]: outside, its "cost" can be
//! negative and has no minimum, and training on it means nothing.

use crate::data::{Dataset, Layout};
use crate::error::{Error, Result};
use crate::model::Reconstruction;
use crate::real::Real;

/// Fails on the first value of `data` outside the domain of `reconstruction`'s loss, naming
/// its row and column in the caller's layout.
pub(crate) fn check_data<T: Real>(reconstruction: Reconstruction, data: &Dataset<'_, T>) -> Result<()> {
    if reconstruction != Reconstruction::SigmoidCrossEntropy {
        return Ok(());
    }
    let outside = |v: &T| !(T::zero()..=T::one()).contains(v);
    let Some(index) = data.values().iter().position(outside) else {
        return Ok(());
    };
    let width = match data.layout() {
        Layout::ExamplesByFeatures => data.features(),
        Layout::FeaturesByExamples => data.examples(),
    };
    Err(Error::DataOutOfRange {
        what: "data",
        row: index / width,
        column: index % width,
        value: data.values()[index].as_f64(),
        reason: "cross-entropy reconstruction needs values in [0, 1]",
    })
}
