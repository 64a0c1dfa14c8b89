//! A TopK sparse autoencoder: its parameters, their flat layout, and its file.
//!
//! For `n` inputs and `h` latents, `k` of them active per example:
//!
//! ```text
//! z = W_enc (x − b_dec) + b_enc          W_enc: h×n, b_enc: h
//! a = z on the k largest positive z_j, 0 elsewhere
//! x̂ = b_dec + W_decᵀ a                   W_dec: h×n (row j: latent j's direction), b_dec: n
//! ```
//!
//! A BatchTopK model keeps the `k·B` largest `z_j` of a training minibatch of `B` examples, and
//! after training every `z_j > θ`, its threshold; a ReLU model every `z_j > 0` (see
//! [`Selection`]).
//!
//! Makhzani & Frey's k-sparse autoencoder is the same model with linear units (`a = z` on the
//! `k` largest `z_j`, whatever their sign) and tied weights (`W_dec = W_enc`): see
//! [`Architecture`]. Their encoder reads `x` itself, `z = W_enc x + b_enc`; both encoders are
//! the same family of functions (`b_enc ↔ b_enc − W_enc b_dec`) but not the same parameters to
//! train, and [`Architecture::K_SPARSE`] keeps the pre-encoder bias, which trained better here
//! (PERF.md); `pre_encoder_bias: false` is theirs.
//!
//! Both weight matrices are stored latent-major (row `j` of each is latent `j`'s), so that
//! the sparse kernels read and write whole contiguous rows for the active latents. That is
//! EleutherAI sparsify's layout (`encoder.weight`, `encoder.bias`, `W_dec`, `b_dec`), which the
//! model file uses under those names.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;
use safetensors::tensor::SafeTensors;

use super::select::{Selection, Units};
use crate::data::input::InputFile;
use crate::error::{Error, Result};
use crate::kernels::{AdamStep, Kernels};
use crate::model::{FORMAT, FORMAT_VERSION};
use crate::optim::{in_parallel_chunks, StepRule, StepState, StepUpdate};
use crate::real::Real;

/// The `objective` metadata of a TopK model file.
pub const OBJECTIVE: &str = "topk-sparse-autoencoder";

/// Where each parameter block sits in the flat vector `[W_enc | b_enc | W_dec | b_dec]` that
/// the optimiser steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DictionaryLayout {
    visible: usize,
    latents: usize,
}

/// The four blocks of a flat parameter (or gradient) vector.
#[derive(Debug)]
pub struct Blocks<S> {
    /// `h×n`, row-major: row `j` is latent `j`'s encoder weights.
    pub w_enc: S,
    pub b_enc: S,
    /// `h×n`, row-major: row `j` is latent `j`'s decoder direction.
    pub w_dec: S,
    pub b_dec: S,
}

impl DictionaryLayout {
    pub fn new(visible: usize, latents: usize) -> Self {
        DictionaryLayout { visible, latents }
    }

    /// `n`.
    pub fn visible(&self) -> usize {
        self.visible
    }

    /// `h`.
    pub fn latents(&self) -> usize {
        self.latents
    }

    /// `2hn + h + n`.
    pub fn len(&self) -> usize {
        2 * self.latents * self.visible + self.latents + self.visible
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn ranges(&self) -> [Range<usize>; 4] {
        let (n, h) = (self.visible, self.latents);
        let hn = h * n;
        [0..hn, hn..hn + h, hn + h..2 * hn + h, 2 * hn + h..2 * hn + h + n]
    }

    /// The blocks of `p` (of [`len`](Self::len) values).
    pub fn split<'a, T>(&self, p: &'a [T]) -> Blocks<&'a [T]> {
        assert_eq!(p.len(), self.len(), "dictionary parameters: {} values for {} expected", p.len(), self.len());
        let [w_enc, b_enc, w_dec, b_dec] = self.ranges();
        Blocks { w_enc: &p[w_enc], b_enc: &p[b_enc], w_dec: &p[w_dec], b_dec: &p[b_dec] }
    }

    /// The blocks of `p`, writable.
    pub fn split_mut<'a, T>(&self, p: &'a mut [T]) -> Blocks<&'a mut [T]> {
        assert_eq!(p.len(), self.len(), "dictionary parameters: {} values for {} expected", p.len(), self.len());
        let hn = self.latents * self.visible;
        let (w_enc, rest) = p.split_at_mut(hn);
        let (b_enc, rest) = rest.split_at_mut(self.latents);
        let (w_dec, b_dec) = rest.split_at_mut(hn);
        Blocks { w_enc, b_enc, w_dec, b_dec }
    }

    /// One step of `rule` on a dictionary whose decoder rows stay on the unit sphere: the rule's
    /// plain step on `W_enc`, `b_enc` and `b_dec`, and for each decoder row `w = W_dec[j]`
    /// (unit) and its gradient `g` (both `n`):
    ///
    /// ```text
    /// g ← g − (g·w) w       the radial part removed
    /// w ← w − step(g)       the rule, with the row's moments
    /// w ← w / ‖w‖           back on the sphere (a row the step left at zero stays zero)
    /// ```
    ///
    /// For plain gradient descent the step is then tangent to the sphere; with momentum or
    /// Adam's per-value scaling only roughly, and the renormalisation corrects the rest. Each
    /// decoder row is read and written once, with its gradient and moments, while it is in
    /// cache: three passes over the `h×n` decoder otherwise (the rule's step as
    /// [`StepState::step`] takes it, bit for bit). `grad`'s decoder block is left with the
    /// radial parts removed.
    pub fn unit_norm_step<T: Real>(&self, state: &mut StepState<T>, rule: &StepRule, params: &mut [T], grad: &mut [T]) {
        let n = self.visible;
        let (update, first, second) = state.begin_step(rule);
        let step = RowStep::new(update, true, Kernels::<T>::detect());
        let (x, g) = (self.split_mut(params), self.split_mut(grad));
        let (first, second) = (self.split_mut(first), self.split_mut(second));
        x.w_dec
            .par_chunks_mut(n)
            .zip(g.w_dec.par_chunks_mut(n))
            .zip(first.w_dec.par_chunks_mut(n))
            .zip(second.w_dec.par_chunks_mut(n))
            .with_min_len(64)
            .for_each(|(((w, g), first), second)| step.decoder_row(w, first, second, g));
        step.in_parallel(x.w_enc, first.w_enc, second.w_enc, g.w_enc);
        step.in_parallel(x.b_enc, first.b_enc, second.b_enc, g.b_enc);
        step.in_parallel(x.b_dec, first.b_dec, second.b_dec, g.b_dec);
    }

    /// The block, row and column of flat index `index`, for error messages.
    pub fn locate(&self, index: usize) -> (&'static str, usize, usize) {
        let names = ["W_enc", "b_enc", "W_dec", "b_dec"];
        let (block, range) =
            self.ranges().into_iter().enumerate().find(|(_, r)| r.contains(&index)).expect("index within the layout");
        let offset = index - range.start;
        match block {
            0 | 2 => (names[block], offset / self.visible, offset % self.visible),
            _ => (names[block], offset, 0),
        }
    }
}

/// One step of a rule on a dictionary's parameters, taken row by row: what
/// [`DictionaryLayout::unit_norm_step`] (with `unit_norm_decoder`) or [`StepState::step`] does to
/// the whole vector, bit for bit, for a caller that has the gradient one latent's rows at a
/// time (the objective's backward pass, which then never stores it). Adam's arithmetic runs on
/// the vector kernel.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowStep<T: Real> {
    update: StepUpdate,
    /// Adam's constants (`None`: SGD).
    adam: Option<AdamStep<T>>,
    /// Decoder rows kept on the unit sphere.
    unit_norm_decoder: bool,
    kernels: Kernels<T>,
}

impl<T: Real> RowStep<T> {
    pub fn new(update: StepUpdate, unit_norm_decoder: bool, kernels: Kernels<T>) -> Self {
        RowStep { update, adam: update.adam(), unit_norm_decoder, kernels }
    }

    /// A decoder row `w` with its moments and its gradient `g` (`n` each): with
    /// `unit_norm_decoder`, `g` loses its radial part, `w` takes the step and is renormalised
    /// (see [`DictionaryLayout::unit_norm_step`]); without, the rule's plain step.
    pub fn decoder_row(&self, w: &mut [T], first: &mut [T], second: &mut [T], g: &mut [T]) {
        let kernels = &self.kernels;
        if self.unit_norm_decoder {
            (kernels.axpy)(T::cast(-(kernels.dot)(g, w)), w, g);
        }
        self.other(w, first, second, g);
        if self.unit_norm_decoder {
            let norm = (kernels.dot)(w, w).sqrt();
            if norm > 0.0 {
                let scale = T::cast(1.0 / norm);
                w.iter_mut().for_each(|v| *v = *v * scale);
            }
        }
    }

    /// Any other parameters: the rule's plain step.
    pub fn other(&self, x: &mut [T], first: &mut [T], second: &mut [T], g: &[T]) {
        match &self.adam {
            Some(step) => (self.kernels.adam)(x, first, second, g, step),
            None => self.update.apply(x, first, second, g),
        }
    }

    /// [`other`](Self::other) on chunks of a long vector in parallel.
    pub fn in_parallel(&self, x: &mut [T], first: &mut [T], second: &mut [T], g: &[T]) {
        in_parallel_chunks(x, first, second, g, |x, first, second, g| self.other(x, first, second, g));
    }
}

/// What a dictionary model's selected units output, over what they are selected, whether its
/// decoder is its encoder, and whether its encoder reads `x − b_dec` or `x`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Architecture {
    pub units: Units,
    pub selection: Selection,
    /// `z = W_enc (x − b_dec) + b_enc` (TopK SAEs) rather than `z = W_enc x + b_enc`.
    pub pre_encoder_bias: bool,
    /// `W_dec = W_enc`. The flat layout keeps both blocks (so that one layout, one file and the
    /// same interchange formats serve every dictionary model): the objective reads only
    /// `W_enc`, gives it the whole gradient (`W_dec`'s block gets 0), and the trainer copies
    /// it into `W_dec` after each step.
    pub tied: bool,
}

impl Architecture {
    /// What the model is, for people: `"TopK sparse autoencoder"`, `"k-sparse autoencoder"`,
    /// or its parts when it is neither.
    pub fn describe(self) -> String {
        match self {
            Architecture::TOPK => "TopK sparse autoencoder".to_string(),
            Architecture::K_SPARSE => "k-sparse autoencoder".to_string(),
            Architecture::BATCH_TOPK => "BatchTopK sparse autoencoder".to_string(),
            Architecture::RELU => "ReLU sparse autoencoder".to_string(),
            Architecture { units, selection, pre_encoder_bias, tied } => format!(
                "dictionary autoencoder ({} units, {}, {}, {})",
                units.name(),
                match selection {
                    Selection::PerExample => "k per example",
                    Selection::Batch => "k per example on average over a batch",
                    Selection::All => "every selectable latent",
                },
                if pre_encoder_bias { "b_dec subtracted before encoding" } else { "z = W_enc x + b_enc" },
                if tied { "tied weights" } else { "an encoder and a decoder" }
            ),
        }
    }

    /// A TopK sparse autoencoder: ReLU units, an encoder and a decoder of their own.
    pub const TOPK: Architecture =
        Architecture { units: Units::Relu, selection: Selection::PerExample, pre_encoder_bias: true, tied: false };
    /// Makhzani & Frey's k-sparse autoencoder: linear units, tied weights (with the pre-encoder
    /// bias, see the module's documentation).
    pub const K_SPARSE: Architecture =
        Architecture { units: Units::Linear, selection: Selection::PerExample, pre_encoder_bias: true, tied: true };
    /// A BatchTopK sparse autoencoder: a TopK one whose `k` is the batch's mean (see
    /// [`Selection::Batch`]).
    pub const BATCH_TOPK: Architecture = Architecture { selection: Selection::Batch, ..Architecture::TOPK };
    /// A ReLU sparse autoencoder (every positive latent active; trained with an L1 penalty
    /// weighted by the decoder rows' norms, see [`Selection::All`]).
    pub const RELU: Architecture = Architecture { selection: Selection::All, ..Architecture::TOPK };
}

/// A TopK sparse autoencoder (see the module's documentation). A data set's codes:
/// [`encode`](Self::encode) (with [`Codes`](super::Codes), in `codes.rs`).
#[derive(Debug, Clone, PartialEq)]
pub struct TopKModel<T> {
    layout: DictionaryLayout,
    k: usize,
    architecture: Architecture,
    /// With [`Selection::Batch`], the inference threshold: a latent is active on an example
    /// when `z_j` exceeds it (0 for the other selections, which do not read it).
    threshold: f64,
    params: Vec<T>,
}

impl<T: Real> TopKModel<T> {
    /// A fresh model: each decoder row a random unit direction (Gaussian, normalised), the
    /// encoder its transpose (`W_enc = W_dec`, as OpenAI's and sparsify's TopK models start),
    /// both biases 0 (see [`with_decoder_bias`](Self::with_decoder_bias)).
    pub fn init(visible: usize, latents: usize, k: usize, seed: u64) -> Result<Self> {
        check_shape(visible, latents, k)?;
        let layout = DictionaryLayout::new(visible, latents);
        let mut params = vec![T::zero(); layout.len()];
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let blocks = layout.split_mut(&mut params);
        for row in blocks.w_dec.chunks_exact_mut(visible) {
            let direction: Vec<f64> = (0..visible).map(|_| StandardNormal.sample(&mut rng)).collect();
            let norm = direction.iter().map(|v| v * v).sum::<f64>().sqrt().max(f64::MIN_POSITIVE);
            for (w, v) in row.iter_mut().zip(direction) {
                *w = T::cast(v / norm);
            }
        }
        blocks.w_enc.copy_from_slice(blocks.w_dec);
        Ok(TopKModel { layout, k, architecture: Architecture::TOPK, threshold: 0.0, params })
    }

    /// A TopK model of the flat parameters `params` (`[W_enc | b_enc | W_dec | b_dec]`); fails on
    /// a wrong length or a non-finite value, naming its block, row and column.
    pub fn from_params(visible: usize, latents: usize, k: usize, params: Vec<T>) -> Result<Self> {
        check_shape(visible, latents, k)?;
        let layout = DictionaryLayout::new(visible, latents);
        if params.len() != layout.len() {
            return Err(Error::shape_mismatch("TopK parameters", layout.len(), params.len()));
        }
        if let Some(index) = params.iter().position(|v| !v.is_finite()) {
            let (block, row, column) = layout.locate(index);
            return Err(Error::NonFiniteTheta { index, block, row, column, value: params[index].as_f64() });
        }
        Ok(TopKModel { layout, k, architecture: Architecture::TOPK, threshold: 0.0, params })
    }

    /// This model with `architecture`; fails for tied weights unless `W_dec = W_enc` already,
    /// naming the first entry that differs.
    pub fn with_architecture(mut self, architecture: Architecture) -> Result<Self> {
        if architecture.tied {
            let blocks = self.blocks();
            if let Some(index) = blocks.w_enc.iter().zip(blocks.w_dec).position(|(e, d)| e != d) {
                let n = self.visible();
                return Err(Error::InvalidOption {
                    name: "tied",
                    reason: format!("tied weights, but W_dec[{}, {}] differs from W_enc's", index / n, index % n),
                });
            }
        }
        self.architecture = architecture;
        Ok(self)
    }

    /// This model with the inference threshold `threshold` (see [`Selection::Batch`]); fails
    /// unless it is finite.
    pub fn with_threshold(mut self, threshold: f64) -> Result<Self> {
        if !threshold.is_finite() {
            return Err(Error::InvalidHyperParameter { name: "threshold", value: threshold, reason: "must be finite" });
        }
        self.threshold = threshold;
        Ok(self)
    }

    /// This model with the decoder bias `b_dec` (the data's geometric median, say).
    pub fn with_decoder_bias(mut self, b_dec: &[T]) -> Result<Self> {
        let blocks = self.layout.split_mut(&mut self.params);
        if b_dec.len() != blocks.b_dec.len() {
            return Err(Error::shape_mismatch("b_dec", blocks.b_dec.len(), b_dec.len()));
        }
        blocks.b_dec.copy_from_slice(b_dec);
        Ok(self)
    }

    /// This model selecting `k` latents per example (Makhzani & Frey encode with `α k`, more
    /// than in training); fails unless `1 ≤ k ≤ h`.
    pub fn with_k(mut self, k: usize) -> Result<Self> {
        check_shape(self.visible(), self.latents(), k)?;
        self.k = k;
        Ok(self)
    }

    pub fn layout(&self) -> DictionaryLayout {
        self.layout
    }

    /// `n`.
    pub fn visible(&self) -> usize {
        self.layout.visible
    }

    /// `h`.
    pub fn latents(&self) -> usize {
        self.layout.latents
    }

    /// Latents active per example.
    pub fn k(&self) -> usize {
        self.k
    }

    pub fn architecture(&self) -> Architecture {
        self.architecture
    }

    /// The inference threshold of [`Selection::Batch`] (0 for the other selections).
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// The flat parameters `[W_enc | b_enc | W_dec | b_dec]`.
    pub fn params(&self) -> &[T] {
        &self.params
    }

    pub fn blocks(&self) -> Blocks<&[T]> {
        self.layout.split(&self.params)
    }

    /// `out ← x̂` of `m = out.len() / n` examples from their codes (the same number of slots
    /// each, as [`TopKObjective::codes`](super::TopKObjective::codes) gives them): `x̂ = b_dec +
    /// Σ_s values[s] W_dec[indices[s]]`, `m×n` row-major; unused slots are skipped.
    pub fn decode(&self, indices: &[u32], values: &[T], out: &mut [T]) -> Result<()> {
        let n = self.visible();
        let m = out.len() / n;
        let k = indices.len().checked_div(m).unwrap_or(0);
        if out.len() != m * n || indices.len() != m * k || values.len() != indices.len() || (m > 0 && k == 0) {
            return Err(Error::shape_mismatch(
                "codes and reconstruction",
                format!("the same number of slots for each example and {n} values"),
                format!("{} indices, {} values, {} outputs", indices.len(), values.len(), out.len()),
            ));
        }
        if m == 0 {
            return Ok(());
        }
        let (kernels, blocks) = (Kernels::<T>::detect(), self.blocks());
        for ((x, slots), activations) in
            out.chunks_exact_mut(n).zip(indices.chunks_exact(k)).zip(values.chunks_exact(k))
        {
            x.copy_from_slice(blocks.b_dec);
            for (&j, &a) in slots.iter().zip(activations).filter(|(&j, _)| j != super::select::INACTIVE) {
                let row = blocks
                    .w_dec
                    .get(j as usize * n..(j as usize + 1) * n)
                    .ok_or_else(|| Error::shape_mismatch("latent index", format!("below {}", self.latents()), j))?;
                (kernels.axpy)(a, row, x);
            }
        }
        Ok(())
    }

    /// Writes the model atomically: safetensors with sparsify's tensor names (`encoder.weight`
    /// `h×n`, `encoder.bias`, `W_dec` `h×n`, `b_dec`) in the working dtype, and metadata
    /// `objective`, `visible`, `latents`, `k`, `units`, `selection`, `pre_encoder_bias`,
    /// `tied` (and `threshold` with batch selection).
    pub fn save(&self, path: &Path) -> Result<()> {
        self.save_with_metadata(path, std::iter::empty())
    }

    /// [`save`](Self::save) with free-form string metadata besides (how the model was trained,
    /// say); fails on a key the file sets itself.
    pub fn save_with_metadata(&self, path: &Path, extra: impl IntoIterator<Item = (String, String)>) -> Result<()> {
        self.save_with_tensors(path, extra, &[], &[])
    }

    /// [`save_with_metadata`](Self::save_with_metadata) with tensors besides the model's (a
    /// training run's state, say), each `(name, shape, values)`: `wide` in float64, `own` in
    /// the model's dtype.
    pub(crate) fn save_with_tensors(
        &self,
        path: &Path,
        extra: impl IntoIterator<Item = (String, String)>,
        wide: &[(String, Vec<usize>, Vec<f64>)],
        own: &[(String, Vec<usize>, &[T])],
    ) -> Result<()> {
        let (n, h) = (self.visible(), self.latents());
        let blocks = self.blocks();
        let mut own_tensors = vec![
            crate::model::tensor_out("encoder.weight", vec![h, n], blocks.w_enc),
            crate::model::tensor_out("encoder.bias", vec![h], blocks.b_enc),
            crate::model::tensor_out("W_dec", vec![h, n], blocks.w_dec),
            crate::model::tensor_out("b_dec", vec![n], blocks.b_dec),
        ];
        let extra_tensors = wide
            .iter()
            .map(|(name, shape, values)| crate::model::tensor_out(name, shape.clone(), values))
            .chain(own.iter().map(|(name, shape, values)| crate::model::tensor_out(name, shape.clone(), values)));
        for tensor in extra_tensors {
            if own_tensors.iter().any(|own| own.name == tensor.name) {
                return Err(Error::bad_file(path, format!("tensor name {:?} is reserved", tensor.name)));
            }
            own_tensors.push(tensor);
        }
        let tensors = own_tensors;
        let mut own = vec![
            ("format", FORMAT.to_string()),
            ("format_version", FORMAT_VERSION.to_string()),
            ("sae_version", env!("CARGO_PKG_VERSION").to_string()),
            ("dtype", T::NAME.to_string()),
            ("objective", OBJECTIVE.to_string()),
            ("visible", n.to_string()),
            ("latents", h.to_string()),
            ("k", self.k.to_string()),
            ("units", self.architecture.units.name().to_string()),
            ("selection", self.architecture.selection.name().to_string()),
            ("pre_encoder_bias", self.architecture.pre_encoder_bias.to_string()),
            ("tied", self.architecture.tied.to_string()),
        ];
        if self.architecture.selection == Selection::Batch {
            // Rust prints the shortest decimal that reads back as the same f64.
            own.push(("threshold", self.threshold.to_string()));
        }
        let mut metadata = BTreeMap::new();
        for (key, value) in extra {
            if own.iter().any(|(reserved, _)| *reserved == key) {
                return Err(Error::bad_file(path, format!("metadata key {key:?} is reserved")));
            }
            metadata.insert(key, value);
        }
        metadata.extend(own.into_iter().map(|(key, value)| (key.to_string(), value)));
        crate::model::save_safetensors(path, tensors, metadata)
    }

    /// Reads a file written by [`save`](Self::save) (of either dtype; values convert to `T`);
    /// fails, naming the file, on anything else.
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_with_tensors(path, "").map(|(model, _, _)| model)
    }

    /// [`load`](Self::load), with the file's metadata and its tensors whose names start with
    /// `prefix` (as float64; an empty prefix takes none).
    #[allow(clippy::type_complexity)]
    pub(crate) fn load_with_tensors(
        path: &Path,
        prefix: &str,
    ) -> Result<(Self, BTreeMap<String, String>, BTreeMap<String, (Vec<usize>, Vec<f64>)>)> {
        let bytes = InputFile::open(path)?.read_all()?;
        let bad = |reason: String| Error::bad_file(path, reason);
        let (_, header) =
            SafeTensors::read_metadata(&bytes).map_err(|e| bad(format!("not a readable safetensors file: {e}")))?;
        let file =
            SafeTensors::deserialize(&bytes).map_err(|e| bad(format!("not a readable safetensors file: {e}")))?;
        let metadata = header.metadata().clone().unwrap_or_default();
        let get = |key: &str| metadata.get(key).ok_or_else(|| bad(format!("no {key:?} in the metadata")));
        if get("format")? != FORMAT || get("format_version")? != FORMAT_VERSION {
            return Err(bad(format!("not an sae model file of format version {FORMAT_VERSION}")));
        }
        let objective = get("objective")?;
        if objective != OBJECTIVE {
            return Err(bad(format!(
                "a model of objective {objective:?}, not a TopK sparse autoencoder ({OBJECTIVE})"
            )));
        }
        let count = |key: &str| -> Result<usize> {
            get(key)?.parse().map_err(|_| bad(format!("metadata {key} {:?} is not a count", metadata[key])))
        };
        let (n, h, k) = (count("visible")?, count("latents")?, count("k")?);
        check_shape(n, h, k).map_err(|e| bad(format!("metadata: {e}")))?;
        let mut params = Vec::new();
        for (name, shape) in
            [("encoder.weight", vec![h, n]), ("encoder.bias", vec![h]), ("W_dec", vec![h, n]), ("b_dec", vec![n])]
        {
            let view = file.tensor(name).map_err(|_| bad(format!("no tensor {name:?}")))?;
            if view.shape() != shape.as_slice() {
                return Err(bad(format!("tensor {name} has shape {:?}, expected {shape:?}", view.shape())));
            }
            let values = crate::model::decode_tensor(view.dtype(), view.data())
                .ok_or_else(|| bad(format!("tensor {name} has dtype {:?}, expected F32 or F64", view.dtype())))?;
            params.extend(values.into_iter().map(T::cast));
        }
        // Files written before k-sparse models have none of these keys: they are TopK models.
        let units = match metadata.get("units") {
            None => Units::Relu,
            Some(name) => {
                Units::from_name(name).ok_or_else(|| bad(format!("metadata units {name:?} is not relu or linear")))?
            }
        };
        let flag = |key: &str, absent: bool| match metadata.get(key).map(String::as_str) {
            None => Ok(absent),
            Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => Err(bad(format!("metadata {key} {other:?} is not true or false"))),
        };
        let (pre_encoder_bias, tied) = (flag("pre_encoder_bias", true)?, flag("tied", false)?);
        let selection = match metadata.get("selection") {
            None => Selection::PerExample,
            Some(name) => Selection::from_name(name)
                .ok_or_else(|| bad(format!("metadata selection {name:?} is not example, batch or all")))?,
        };
        let threshold = match selection {
            Selection::PerExample | Selection::All => 0.0,
            Selection::Batch => {
                get("threshold")?.parse::<f64>().ok().filter(|threshold| threshold.is_finite()).ok_or_else(|| {
                    bad(format!("metadata threshold {:?} is not a finite number", metadata["threshold"]))
                })?
            }
        };
        let model = TopKModel::from_params(n, h, k, params)
            .and_then(|model| model.with_architecture(Architecture { units, selection, pre_encoder_bias, tied }))
            .and_then(|model| model.with_threshold(threshold))
            .map_err(|e| bad(format!("invalid model: {e}")))?;
        let mut tensors = BTreeMap::new();
        for (name, view) in
            file.tensors().into_iter().filter(|(name, _)| !prefix.is_empty() && name.starts_with(prefix))
        {
            let values = crate::model::decode_tensor(view.dtype(), view.data())
                .ok_or_else(|| bad(format!("tensor {name} has dtype {:?}, expected F32 or F64", view.dtype())))?;
            tensors.insert(name, (view.shape().to_vec(), values));
        }
        Ok((model, metadata.into_iter().collect(), tensors))
    }
}

/// Spreads codes (`k` slots per example, as
/// [`TopKObjective::codes`](super::TopKObjective::codes) gives them) into the dense activations
/// `out`, `m×h` row-major (zero off each example's active slots), converted to `U`.
pub fn spread_codes<T: Real, U: Real>(indices: &[u32], values: &[T], k: usize, out: &mut [U]) {
    let examples = indices.len() / k.max(1);
    let h = out.len() / examples.max(1);
    out.fill(U::zero());
    for ((row, slots), activations) in out.chunks_exact_mut(h).zip(indices.chunks_exact(k)).zip(values.chunks_exact(k))
    {
        for (&j, &a) in slots.iter().zip(activations).filter(|(&j, _)| j != super::select::INACTIVE) {
            row[j as usize] = U::cast(a.as_f64());
        }
    }
}

/// Checks the shape of a TopK model: at least one input and one latent, `1 ≤ k ≤ h`, `h`
/// below `u32::MAX` (latents are indexed by `u32`), and `2hn + h + n` parameters addressable.
pub(crate) fn check_shape(visible: usize, latents: usize, k: usize) -> Result<()> {
    let invalid = |name, value: usize, reason| Err(Error::InvalidHyperParameter { name, value: value as f64, reason });
    let len =
        latents.checked_mul(visible).and_then(|hn| hn.checked_mul(2)).and_then(|w| w.checked_add(latents + visible));
    if len.is_none_or(|len| len > isize::MAX as usize / 8) {
        return invalid("latents", latents, "2 × latents × visible parameters are more than memory can address");
    }
    if visible == 0 {
        return invalid("visible", visible, "must be at least 1");
    }
    if latents == 0 || latents >= u32::MAX as usize {
        return invalid("latents", latents, "must be at least 1 and below 2³² − 1");
    }
    if k == 0 || k > latents {
        return invalid("k", k, "must be at least 1 and at most the number of latents");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_model_has_unit_decoder_rows_and_the_encoder_equal_to_the_decoder() {
        let model = TopKModel::<f64>::init(7, 11, 3, 4).unwrap();
        let blocks = model.blocks();
        for row in blocks.w_dec.chunks_exact(7) {
            let norm: f64 = row.iter().map(|v| v * v).sum::<f64>().sqrt();
            assert!((norm - 1.0).abs() < 1e-12, "decoder row norm {norm}");
        }
        assert_eq!(blocks.w_enc, blocks.w_dec);
        assert!(blocks.b_enc.iter().chain(blocks.b_dec).all(|&v| v == 0.0));
        assert_eq!(model, TopKModel::init(7, 11, 3, 4).unwrap(), "the seed fixes the model");
    }

    #[test]
    fn a_unit_norm_step_removes_the_radial_gradient_steps_and_puts_the_decoder_rows_back_on_the_sphere() {
        // 37 inputs: whole vectors and a partial one in each row.
        let n = 37;
        let model = TopKModel::<f64>::init(n, 5, 2, 8).unwrap();
        let layout = model.layout();
        let kernels = Kernels::<f64>::detect();
        let zero_row = 3 * n..4 * n;
        for rule in [StepRule::adam(0.05), StepRule::sgd(0.1, 0.9)] {
            let mut params = model.params().to_vec();
            // A zero decoder row (with no gradient) stays zero.
            layout.split_mut(&mut params).w_dec[zero_row.clone()].fill(0.0);
            let (mut state, mut expected_state) = (StepState::new(params.len()), StepState::new(params.len()));
            let mut expected = params.clone();
            for step in 0..3 {
                let mut grad: Vec<f64> =
                    (0..params.len()).map(|i| ((i * 7919 + step * 31) % 13) as f64 - 6.0).collect();
                layout.split_mut(&mut grad).w_dec[zero_row.clone()].fill(0.0);
                // The reference: the three passes in turn, with the same kernels.
                let mut projected = grad.clone();
                let (p, w) = (layout.split_mut(&mut projected), layout.split(&expected));
                for (g, w) in p.w_dec.chunks_exact_mut(n).zip(w.w_dec.chunks_exact(n)) {
                    (kernels.axpy)(-(kernels.dot)(g, w), w, g);
                }
                expected_state.step(&rule, &mut expected, &projected);
                for row in layout.split_mut(&mut expected).w_dec.chunks_exact_mut(n) {
                    let norm = (kernels.dot)(row, row).sqrt();
                    if norm > 0.0 {
                        row.iter_mut().for_each(|v| *v *= 1.0 / norm);
                    }
                }

                layout.unit_norm_step(&mut state, &rule, &mut params, &mut grad);
                assert_eq!(params, expected, "{rule:?}, step {step}: the parameters, bit for bit");
                assert_eq!(state, expected_state, "{rule:?}, step {step}: the moments and the step count");
                assert_eq!(grad, projected, "the gradient is left with its radial parts removed");
                for (j, row) in layout.split(&params).w_dec.chunks_exact(n).enumerate() {
                    let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
                    let expected_norm = if j == 3 { 0.0 } else { 1.0 };
                    assert!((norm - expected_norm).abs() < 1e-12, "{rule:?}, row {j}: norm {norm}");
                }
            }
        }
    }

    #[test]
    fn bad_shapes_and_values_are_named() {
        for (n, h, k, name) in [(0, 4, 1, "visible"), (3, 0, 1, "latents"), (3, 4, 0, "k"), (3, 4, 5, "k")] {
            match TopKModel::<f32>::init(n, h, k, 1) {
                Err(Error::InvalidHyperParameter { name: got, .. }) => assert_eq!(got, name),
                other => panic!("({n}, {h}, {k}): {other:?}"),
            }
        }
        let layout = DictionaryLayout::new(3, 4);
        let mut params = vec![0.0f64; layout.len()];
        params[2 * 12 + 4 + 1] = f64::NAN;
        match TopKModel::from_params(3, 4, 2, params) {
            Err(Error::NonFiniteTheta { block: "b_dec", row: 1, .. }) => {}
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            TopKModel::<f64>::from_params(3, 4, 2, vec![0.0; 5]),
            Err(Error::ShapeMismatch { what: "TopK parameters", .. })
        ));
    }

    #[test]
    fn files_round_trip_in_either_dtype_with_sparsify_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("topk.safetensors");
        let model = TopKModel::<f32>::init(5, 9, 2, 3).unwrap().with_decoder_bias(&[0.5, -1.0, 2.0, 0.0, 1.5]).unwrap();
        model.save_with_metadata(&path, [("seed".to_string(), "3".to_string())]).unwrap();
        assert_eq!(TopKModel::<f32>::load(&path).unwrap(), model);
        assert_eq!(crate::model::ModelFile::<f32>::read_metadata(&path).unwrap()["seed"], "3");
        assert!(model.save_with_metadata(&path, [("k".to_string(), "9".to_string())]).is_err(), "reserved key");
        let wide = TopKModel::<f64>::load(&path).unwrap();
        assert!(wide.params().iter().zip(model.params()).all(|(a, &b)| *a == f64::from(b)));
        let k_sparse_path = dir.path().join("k-sparse.safetensors");
        for architecture in [Architecture::K_SPARSE, Architecture { pre_encoder_bias: false, ..Architecture::K_SPARSE }]
        {
            let k_sparse = TopKModel::<f64>::init(5, 9, 2, 3).unwrap().with_architecture(architecture).unwrap();
            k_sparse.save(&k_sparse_path).unwrap();
            assert_eq!(TopKModel::<f64>::load(&k_sparse_path).unwrap(), k_sparse, "the architecture is kept");
        }
        let batch_path = dir.path().join("batch-topk.safetensors");
        let batch = TopKModel::<f32>::init(5, 9, 2, 3)
            .unwrap()
            .with_architecture(Architecture::BATCH_TOPK)
            .unwrap()
            .with_threshold(0.1 + 0.2)
            .unwrap();
        batch.save(&batch_path).unwrap();
        let loaded = TopKModel::<f32>::load(&batch_path).unwrap();
        assert_eq!(loaded, batch, "the selection and the threshold are kept");
        assert_eq!(loaded.threshold(), 0.1 + 0.2, "to the last bit");
        // Metadata values that are not the architecture's are named.
        let k_sparse = TopKModel::<f64>::init(5, 9, 2, 3).unwrap();
        for (key, value) in [
            ("units", "sigmoid"),
            ("tied", "yes"),
            ("pre_encoder_bias", "1"),
            ("selection", "token"),
            ("threshold", "inf"),
        ] {
            let bytes = std::fs::read(&k_sparse_path).unwrap();
            let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
            let mut metadata = header.metadata().clone().unwrap();
            metadata.insert(key.to_string(), value.to_string());
            if key == "threshold" {
                metadata.insert("selection".to_string(), "batch".to_string());
            }
            let blocks = k_sparse.blocks();
            let tensors = vec![
                crate::model::tensor_out("encoder.weight", vec![9, 5], blocks.w_enc),
                crate::model::tensor_out("encoder.bias", vec![9], blocks.b_enc),
                crate::model::tensor_out("W_dec", vec![9, 5], blocks.w_dec),
                crate::model::tensor_out("b_dec", vec![5], blocks.b_dec),
            ];
            let bad = dir.path().join("bad.safetensors");
            crate::model::save_safetensors(&bad, tensors, metadata.into_iter().collect()).unwrap();
            match TopKModel::<f64>::load(&bad) {
                Err(Error::BadFile { reason, .. }) => {
                    assert!(reason.contains(key) && reason.contains(value), "{reason}")
                }
                other => panic!("{key} {value}: {other:?}"),
            }
        }
        let bytes = std::fs::read(&path).unwrap();
        let file = SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(file.tensor("encoder.weight").unwrap().shape(), [9, 5]);
        assert_eq!(file.tensor("W_dec").unwrap().shape(), [9, 5]);
        assert_eq!(file.tensor("b_dec").unwrap().shape(), [5]);
    }

    #[test]
    fn tied_weights_need_equal_blocks() {
        let model = TopKModel::<f64>::init(4, 6, 2, 1).unwrap();
        let mut params = model.params().to_vec();
        let layout = model.layout();
        layout.split_mut(&mut params).w_dec[4 * 2 + 3] += 1.0;
        let changed = TopKModel::from_params(4, 6, 2, params).unwrap();
        match changed.with_architecture(Architecture::K_SPARSE) {
            Err(Error::InvalidOption { name: "tied", reason }) => assert!(reason.contains("W_dec[2, 3]"), "{reason}"),
            other => panic!("{other:?}"),
        }
        let untied = Architecture { tied: false, ..Architecture::K_SPARSE };
        assert_eq!(model.with_architecture(untied).unwrap().architecture(), untied);
    }

    #[test]
    fn a_file_of_another_model_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kl.safetensors");
        let hyper = crate::HyperParams::builder(4, 3).build().unwrap();
        crate::model::ModelFile::new(hyper, crate::Parameters::<f64>::init(4, 3, 1)).save(&path).unwrap();
        match TopKModel::<f64>::load(&path) {
            Err(Error::BadFile { reason, .. }) => assert!(reason.contains("not a TopK"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }
}
