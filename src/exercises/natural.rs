//! The sparse autoencoder exercise on natural images (UFLDL's `train.m`): 10 000 random 8×8
//! patches of the whitened `IMAGES.mat`, normalised, n = 64, h = 25, ρ = 0.01, λ = 1e-4,
//! β = 3, L-BFGS.

use std::path::Path;

use crate::data::images::{normalize_for_sigmoid, sample_patches};
use crate::data::mat;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::model::{HyperParams, ModelFile, Parameters};
use crate::optim::LbfgsOptions;
use crate::train::Trainer;
use crate::Objective;

/// What the exercise produced.
#[derive(Debug, Clone)]
pub struct NaturalImages {
    pub model: ModelFile<f64>,
    pub cost: f64,
    pub iterations: usize,
}

/// Trains the exercise's sparse autoencoder on patches of the images in the `.mat` file at
/// `path` (its only array, `side×side×count`, images of at least 8×8 pixels), `iterations` L-BFGS iterations (400 in the
/// notes), in f64.
pub fn natural_image_features(path: &Path, iterations: usize, seed: u64) -> Result<NaturalImages> {
    const PATCHES: usize = 10_000;
    let images = mat::read_images(path, None)?;
    let mut patches = sample_patches(&images, PATCHES, 8, seed).map_err(|e| Error::bad_file(path, e.to_string()))?;
    normalize_for_sigmoid(&mut patches, 64);
    let hyper = HyperParams::builder(64, 25).lambda(1e-4).beta(3.0).rho(0.01).build()?;
    let mut objective = Objective::new(hyper, Dataset::examples_by_features(&patches, PATCHES, 64)?)?;
    let options = LbfgsOptions { max_iterations: iterations, ..LbfgsOptions::MINFUNC };
    let trained = Trainer::new(options).fit(&mut objective, &Parameters::init(64, 25, seed), |_| {})?;
    Ok(NaturalImages { cost: trained.cost, iterations: trained.iterations, model: trained.model })
}
