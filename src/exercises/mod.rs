//! UFLDL's exercises end to end on real data (`../shared/datasets/` beside the project): the
//! sparse autoencoder on natural-image patches, MNIST softmax regression, and self-taught
//! learning. Each returns what it measured; `sae exercise …` prints it.

mod filters;
mod ksparse;
mod mnist;
mod natural;

pub use filters::{filter_shape, FilterShape};
pub use ksparse::{k_sparse_digits, KSparseDigits, KSparseDigitsOptions};
pub use mnist::{
    mnist_vectorization, self_taught_learning, softmax_on_digits, stacked_autoencoder, MnistFiles, SelfTaught,
    SoftmaxDigits, StackedDigits,
};
pub use natural::{natural_image_features, NaturalImages};

use crate::data::Dataset;
use crate::error::Result;
use crate::objective::SoftmaxObjective;
use crate::optim::{Lbfgs, LbfgsOptions};

/// Trains softmax regression (`classes` classes, weight decay `lambda`, L-BFGS from θ = 0.005 ·
/// a seeded standard normal draw, as UFLDL's `softmaxTrain`) and returns `θ`.
pub fn train_softmax(
    data: &Dataset<'_, f64>,
    labels: &[u8],
    classes: usize,
    lambda: f64,
    iterations: usize,
) -> Result<Vec<f64>> {
    use rand::SeedableRng;
    let mut objective = SoftmaxObjective::new(*data, labels, classes, lambda)?;
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(1);
    let normal = crate::objective::normal::StandardNormal::new();
    let theta0: Vec<f64> = (0..objective.theta_len()).map(|_| 0.005 * normal.sample(&mut rng)).collect();
    let options = LbfgsOptions { max_iterations: iterations, ..LbfgsOptions::MINFUNC };
    let mut lbfgs = Lbfgs::start(options, &theta0, &mut objective)?;
    lbfgs.run(&mut objective, |_| {})?;
    Ok(lbfgs.into_state().x)
}

/// The fraction of `labels` that `θ` predicts.
pub fn accuracy(theta: &[f64], classes: usize, data: &Dataset<'_, f64>, labels: &[u8]) -> f64 {
    fraction_right(&SoftmaxObjective::predict(theta, classes, data), labels)
}

/// The fraction of `predicted` equal to `labels`.
fn fraction_right(predicted: &[u8], labels: &[u8]) -> f64 {
    predicted.iter().zip(labels).filter(|(p, l)| p == l).count() as f64 / labels.len() as f64
}
