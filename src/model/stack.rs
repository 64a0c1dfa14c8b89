//! Model files of a fine-tuned stack of autoencoder layers with a softmax classifier on top
//! ([`StackedObjective`](crate::objective::StackedObjective)'s parameters): the tensors
//! `softmax.weight` (`k×h_L`) and `layer{l}.weight` (`h_l×h_{l−1}`), `layer{l}.bias`, row-major
//! float64, `l = 1..L`.

use std::path::Path;

use super::tensors::{self, NamedMatrix};
use crate::error::{Error, Result};
use crate::gemm::MatRef;
use crate::model::Parameters;
use crate::objective::StackShape;
use crate::real::Real;

/// The `objective` metadata of stack files.
pub const STACK_OBJECTIVE: &str = "stacked-autoencoder";

/// A stack as stored: its shape, its parameters (UFLDL's layout, see
/// [`StackShape`]) and free-form metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct StackModel<T> {
    pub shape: StackShape,
    pub theta: Vec<T>,
    pub metadata: Vec<(String, String)>,
}

fn matrices(shape: &StackShape) -> Vec<NamedMatrix> {
    let top = *shape.sizes.last().expect("at least one layer");
    let (_, layers) = shape.offsets();
    let mut all = vec![NamedMatrix::new("softmax.weight", shape.classes, top, 0)];
    for (l, ((w, b), sizes)) in layers.into_iter().zip(shape.sizes.windows(2)).enumerate() {
        all.push(NamedMatrix::new(format!("layer{}.weight", l + 1), sizes[1], sizes[0], w));
        all.push(NamedMatrix::new(format!("layer{}.bias", l + 1), sizes[1], 1, b));
    }
    all
}

impl<T: Real> StackModel<T> {
    /// The stack of pretrained autoencoder `layers` (each one's encoder `W1`, `b1`; the
    /// decoders are dropped) with a softmax of `classes` whose weights `softmax`
    /// (`classes×h_L`, column-major) classify the top layer's features: the parameters of
    /// greedy layer-wise pretraining, in [`StackedObjective`](crate::objective::StackedObjective)'s
    /// layout, ready for fine-tuning. Fails when a layer's input is not the layer below's
    /// output or `softmax` has the wrong length.
    pub fn from_pretrained(classes: usize, softmax: &[T], layers: &[&Parameters<T>]) -> Result<Self> {
        let Some(first) = layers.first() else {
            return Err(Error::shape_mismatch("stack layers", "at least one", 0));
        };
        let mut sizes = vec![first.w1().cols()];
        let mut theta = softmax.to_vec();
        for (l, layer) in layers.iter().enumerate() {
            let (hidden, visible) = (layer.w1().rows(), layer.w1().cols());
            let below = *sizes.last().expect("the input size");
            if visible != below {
                return Err(Error::shape_mismatch(
                    "layer inputs",
                    format!("layer {}: the {below} outputs of the layer below", l + 1),
                    visible,
                ));
            }
            sizes.push(hidden);
            theta.extend_from_slice(&layer.theta()[..hidden * visible]);
            theta.extend_from_slice(layer.b1());
        }
        let top = *sizes.last().expect("at least one layer");
        if Some(softmax.len()) != classes.checked_mul(top) {
            return Err(Error::shape_mismatch("softmax weights", format!("{classes}×{top}"), softmax.len()));
        }
        Ok(StackModel { shape: StackShape { sizes, classes }, theta, metadata: Vec::new() })
    }

    /// The first layer's weights `W1` (`h₁×n`, column-major in `theta`): what each of its
    /// units looks for in the inputs.
    pub fn first_layer_weights(&self) -> MatRef<'_, T> {
        let (n, h) = (self.shape.sizes[0], self.shape.sizes[1]);
        let (_, layers) = self.shape.offsets();
        let at = layers[0].0;
        MatRef::col_major(&self.theta[at..at + h * n], h, n)
    }

    /// Writes the model atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let sizes: Vec<String> = self.shape.sizes.iter().map(|s| s.to_string()).collect();
        let recorded = [("sizes", sizes.join(",")), ("classes", self.shape.classes.to_string())];
        tensors::save(path, &self.theta, &matrices(&self.shape), STACK_OBJECTIVE, &recorded, &self.metadata)
    }

    /// Reads a model written by [`save`](Self::save); fails naming the file on anything else.
    pub fn load(path: &Path) -> Result<Self> {
        let file = tensors::open(path, STACK_OBJECTIVE)?;
        let sizes_text = file.metadata.get("sizes").cloned().unwrap_or_default();
        let sizes: Vec<usize> = sizes_text
            .split(',')
            .map(super::metadata::count::<usize>)
            .collect::<Option<Vec<usize>>>()
            .filter(|sizes: &Vec<usize>| sizes.len() >= 2 && !sizes.contains(&0))
            .ok_or_else(|| Error::bad_file(path, format!("metadata sizes = {sizes_text:?}: expected n,h1,…")))?;
        let classes = file.count(path, "classes")?;
        let top = *sizes.last().expect("at least two sizes");
        let layers_fit = sizes.windows(2).all(|w| file.holds(w[1], w[0]));
        if classes == 0 || !file.holds(classes, top) || !layers_fit {
            return Err(Error::bad_file(
                path,
                format!("sizes {sizes_text} with {classes} classes: more parameters than the file holds"),
            ));
        }
        let shape = StackShape { sizes, classes };
        // The classes are predicted as u8.
        if !(2..=256).contains(&classes) || shape.checked_len().is_none() {
            return Err(Error::bad_file(path, format!("{classes} classes: a stack classifies into 2 to 256")));
        }
        let theta = file.theta(path, shape.len(), &matrices(&shape))?;
        let metadata = file.free_metadata(&["sizes", "classes"]);
        Ok(StackModel { shape, theta, metadata })
    }
}
