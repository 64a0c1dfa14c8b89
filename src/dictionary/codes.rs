//! A data set's codes under a dictionary model, encoded a chunk of examples at a time: what an
//! embedding program, a classifier on the codes or a reconstruction reads.

use super::model::{spread_codes, TopKModel};
use super::objective::TopKObjective;
use super::select::INACTIVE;
use crate::data::{Dataset, Layout};
use crate::error::Result;
use crate::real::Real;

/// The examples [`TopKModel::encode`] encodes at a time: its workspace beyond the codes (the
/// encoder's inputs, residuals and pre-activations) is sized for this many, whatever the data.
pub const ENCODE_CHUNK: usize = 4096;

/// The codes of `m` examples: [`slots`](Self::slots) per example, each slot a latent and its
/// activation — the active slots first, by latent, then unused ones ([`INACTIVE`], 0).
#[derive(Debug, Clone, PartialEq)]
pub struct Codes<T> {
    indices: Vec<u32>,
    values: Vec<T>,
    slots: usize,
    latents: usize,
}

impl<T: Real> Codes<T> {
    pub fn examples(&self) -> usize {
        self.indices.len() / self.slots.max(1)
    }

    /// Slots per example: `k` for a per-example selection; for a batch selection, or every
    /// positive latent ([`Architecture::RELU`](super::Architecture::RELU)), enough for the
    /// example that kept the most.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// `h`, the model's latents: the width of [`dense`](Self::dense).
    pub fn latents(&self) -> usize {
        self.latents
    }

    /// The latent of each slot, `m×slots` row-major.
    pub fn indices(&self) -> &[u32] {
        &self.indices
    }

    /// The activation of each slot, `m×slots` row-major.
    pub fn values(&self) -> &[T] {
        &self.values
    }

    /// The dense activations `a`, `m×h` row-major (zero off the active slots), as `U`.
    pub fn dense<U: Real>(&self) -> Vec<U> {
        let mut dense = vec![U::zero(); self.examples() * self.latents];
        spread_codes(&self.indices, &self.values, self.slots, &mut dense);
        dense
    }

    /// `(indices, values, slots)`.
    pub fn into_parts(self) -> (Vec<u32>, Vec<T>, usize) {
        (self.indices, self.values, self.slots)
    }

    /// Appends the codes of more examples, `width` slots each, widening every example to the
    /// widest.
    fn append(&mut self, indices: &[u32], values: &[T], width: usize) {
        if width > self.slots {
            let (stored_indices, stored_values) = (std::mem::take(&mut self.indices), std::mem::take(&mut self.values));
            let stored_width = std::mem::replace(&mut self.slots, width);
            if stored_width > 0 {
                self.push_rows(&stored_indices, &stored_values, stored_width);
            }
        }
        self.push_rows(indices, values, width);
    }

    /// Pushes rows of `width ≤ slots` slots, each padded with unused ones.
    fn push_rows(&mut self, indices: &[u32], values: &[T], width: usize) {
        let pad = self.slots - width;
        for (row_indices, row_values) in indices.chunks_exact(width).zip(values.chunks_exact(width)) {
            self.indices.extend_from_slice(row_indices);
            self.indices.extend(std::iter::repeat_n(INACTIVE, pad));
            self.values.extend_from_slice(row_values);
            self.values.extend(std::iter::repeat_n(T::zero(), pad));
        }
    }
}

impl<T: Real> TopKModel<T> {
    /// The codes of every example of `data` (`m×n` in either layout; not scanned again for
    /// non-finite values): each example's `k` largest activations with a per-example
    /// selection; with a batch selection those above the model's threshold (`k` only sizes the
    /// first candidates, `4k` per example); with no selection
    /// ([`Architecture::RELU`](super::Architecture::RELU)) every positive one (`k` unused).
    /// Encoded [`ENCODE_CHUNK`] examples at a time, so memory beyond the codes is one chunk's;
    /// a chunk of a features-by-examples data set is first copied into rows. Chunks may keep
    /// different numbers of slots per example (the last two kinds): every example gets the
    /// widest chunk's, the others unused.
    pub fn encode(&self, data: &Dataset<'_, T>, k: usize) -> Result<Codes<T>> {
        let (m, n) = (data.examples(), self.visible());
        let mut objective = TopKObjective::for_model(self, m.min(ENCODE_CHUNK))?;
        objective.set_k(k)?;
        let mut rows_buffer = Vec::new();
        let mut codes = Codes { indices: Vec::new(), values: Vec::new(), slots: 0, latents: self.latents() };
        for first in (0..m).step_by(ENCODE_CHUNK) {
            let count = ENCODE_CHUNK.min(m - first);
            let rows = match data.layout() {
                Layout::ExamplesByFeatures => &data.values()[first * n..(first + count) * n],
                Layout::FeaturesByExamples => {
                    let x = data.x();
                    rows_buffer.clear();
                    rows_buffer.extend((first..first + count).flat_map(|e| (0..n).map(move |f| x.get(f, e))));
                    &rows_buffer[..]
                }
            };
            objective.encode_only(self.params(), &Dataset::unscanned(rows, count, n, Layout::ExamplesByFeatures)?)?;
            let (indices, values) = objective.codes();
            codes.append(indices, values, objective.slots_per_example());
        }
        Ok(codes)
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;

    use super::*;
    use crate::dictionary::Architecture;

    /// Example `e`'s active slots: `(latent, activation)`, by latent.
    fn active<T: Real>(indices: &[u32], values: &[T], slots: usize, e: usize) -> Vec<(u32, T)> {
        let row = e * slots..(e + 1) * slots;
        indices[row.clone()].iter().copied().zip(values[row].iter().copied()).filter(|&(j, _)| j != INACTIVE).collect()
    }

    #[test]
    fn a_data_set_of_several_chunks_has_the_codes_of_one_encoding_of_all_its_examples_in_either_layout() {
        // Three chunks: the first of zeros (no ReLU latent fires, the fewest slots), then
        // random examples (about half the latents fire): the codes widen after the first.
        let (m, n, h, k) = (2 * ENCODE_CHUNK + 808, 6, 200, 3);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
        let x: Vec<f32> =
            (0..m * n).map(|i| if i < ENCODE_CHUNK * n { 0.0 } else { rng.gen_range(-1.0..1.0) }).collect();
        let columns: Vec<f32> = (0..n * m).map(|i| x[(i % m) * n + i / m]).collect();
        for architecture in [Architecture::TOPK, Architecture::K_SPARSE, Architecture::BATCH_TOPK, Architecture::RELU] {
            let model = TopKModel::<f32>::init(n, h, k, 2)
                .unwrap()
                .with_architecture(architecture)
                .unwrap()
                .with_threshold(0.05)
                .unwrap();
            let codes = model.encode(&Dataset::examples_by_features(&x, m, n).unwrap(), k).unwrap();
            let from_columns = model.encode(&Dataset::features_by_examples(&columns, n, m).unwrap(), k).unwrap();
            assert_eq!(codes, from_columns, "{architecture:?}");

            let mut whole = TopKObjective::for_model(&model, m).unwrap();
            whole.set_k(k).unwrap();
            whole.encode_only(model.params(), &Dataset::examples_by_features(&x, m, n).unwrap()).unwrap();
            let (indices, values) = whole.codes();
            let dense: Vec<f64> = codes.dense();
            assert_eq!((codes.examples(), dense.len()), (m, m * h));
            let mut widest = 0;
            for e in 0..m {
                let expected = active(indices, values, whole.slots_per_example(), e);
                let got = active(codes.indices(), codes.values(), codes.slots(), e);
                assert_eq!(got, expected, "{architecture:?}: example {e}");
                // The active slots first, then unused ones holding 0.
                let row = e * codes.slots()..(e + 1) * codes.slots();
                assert!(codes.indices()[row.clone()][got.len()..].iter().all(|&j| j == INACTIVE));
                assert!(codes.values()[row][got.len()..].iter().all(|&v| v == 0.0));
                let spread: Vec<(u32, f64)> = (0..h as u32)
                    .filter(|&j| dense[e * h + j as usize] != 0.0)
                    .map(|j| (j, dense[e * h + j as usize]))
                    .collect();
                let nonzero: Vec<(u32, f64)> =
                    got.iter().filter(|(_, v)| *v != 0.0).map(|&(j, v)| (j, f64::from(v))).collect();
                assert_eq!(spread, nonzero, "{architecture:?}: example {e}'s dense codes");
                widest = widest.max(got.len());
            }
            if architecture == Architecture::RELU {
                assert!(
                    widest > 32 && active(codes.indices(), codes.values(), codes.slots(), 0).is_empty(),
                    "the first chunk kept fewer slots than a later one"
                );
            }
        }
    }
}
