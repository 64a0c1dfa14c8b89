//! The selection of a TopK hidden layer: the `k` largest pre-activations of one example
//! (positive ones only for ReLU units), without sorting the `h` values.
//!
//! The scan is the vector kernel `Kernels::collect_above`: it appends the values above a
//! threshold to a buffer of candidates, and when the buffer is full the `k` strongest are kept
//! (a `select_nth`) and the threshold rises to the weakest of them. Once the threshold has risen
//! past most values, a row of `h` values costs about `h / WIDTH` vector compares and a few
//! appends (`O(k log(h/k))` of them for values in random order). A min-heap updated at each
//! candidate, with the scan restarted after each, was about 1.15× slower at the shape
//! (`h = 16 384`, `k = 32`).
//!
//! On long rows (`h ≥ 256 k`) the scan starts from a lower bound of the `k`-th largest value
//! instead of the floor: the least of the maxima of `k` groups of the row (`Kernels::max_sum`,
//! a pass without branches) — `k` distinct values reach it, so no value below it can be among
//! the `k` largest. The scan then meets few candidates (107 a row at the shape, about
//! `3k`) and one or two cuts, and so mispredicts few branches: 4096 rows at the shape, from
//! memory, took 68–70 ms instead of 84–89 (PERF.md).
//!
//! Ties are broken by position: a value must be strictly greater than the threshold to enter,
//! so of equal values the first ones are kept. NaN never enters, nor does −∞. The result does
//! not depend on the instruction set.

use std::cmp::Ordering;

use crate::kernels::{Candidate, Kernels, COLLECT_GROUP};
use crate::real::Real;

/// The index of a slot that holds no latent: fewer than `k` pre-activations could be selected.
pub const INACTIVE: u32 = u32::MAX;

/// What a selected latent outputs, and so which pre-activations the selection may keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Units {
    /// `a = max(z, 0)` on the selection: only positive values are kept (TopK SAEs, whose
    /// selection is followed by a ReLU).
    Relu,
    /// `a = z` on the selection: the `k` largest values whatever their sign (Makhzani & Frey's
    /// k-sparse autoencoder, whose units are linear).
    Linear,
}

impl Units {
    /// The name in model files and from Python.
    pub fn name(self) -> &'static str {
        match self {
            Units::Relu => "relu",
            Units::Linear => "linear",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [Units::Relu, Units::Linear].into_iter().find(|units| units.name() == name)
    }

    /// The value a candidate must exceed to be selected at all.
    pub(crate) fn floor<T: Real>(self) -> T {
        match self {
            Units::Relu => T::zero(),
            Units::Linear => T::neg_infinity(),
        }
    }
}

/// Over what the `k` largest values are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// Each example's `k` largest (TopK, k-sparse).
    PerExample,
    /// The `k·B` largest of a minibatch of `B` examples, `k` per example on average (BatchTopK,
    /// Bussmann et al. 2024); at inference, every value above a threshold: the training
    /// batches' smallest selected value, as a running mean.
    Batch,
    /// Every value the units may keep, `k` unused: a ReLU sparse autoencoder, kept sparse by a
    /// penalty (L1 on the activations weighted by the decoder rows' norms) rather than by a
    /// selection.
    All,
}

impl Selection {
    /// The name in model files.
    pub fn name(self) -> &'static str {
        match self {
            Selection::PerExample => "example",
            Selection::Batch => "batch",
            Selection::All => "all",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [Selection::PerExample, Selection::Batch, Selection::All].into_iter().find(|selection| selection.name() == name)
    }
}

/// The top-k selection and its buffer of candidates, reused from one example to the next.
#[derive(Debug, Default, Clone)]
pub struct Selector<T> {
    /// `(z_j + bias_j, j)` of the values above the threshold since the last cut.
    candidates: Vec<Candidate<T>>,
}

impl<T: Real> Selector<T> {
    pub fn new() -> Self {
        Selector { candidates: Vec::new() }
    }

    /// Selects the `k = indices.len()` largest values of `z + bias` that `units` may keep (`h <
    /// u32::MAX` values; the sum is formed as it is scanned, never stored): on return slot `s`
    /// holds a latent `j = indices[s]` and its activation `values[s] = z[j] + bias[j]`, the
    /// active slots first in increasing latent order, then the unused ones (index
    /// [`INACTIVE`], value 0). Returns the number of active slots.
    pub fn top_k(
        &mut self,
        kernels: &Kernels<T>,
        units: Units,
        z: &[T],
        bias: &[T],
        indices: &mut [u32],
        values: &mut [T],
    ) -> usize {
        self.top_k_above(kernels, units.floor(), z, bias, indices, values)
    }

    /// [`top_k`](Self::top_k) of the values above `floor` (an inference threshold, say: then
    /// the slots hold every value above it unless they are all active).
    pub fn top_k_above(
        &mut self,
        kernels: &Kernels<T>,
        floor: T,
        z: &[T],
        bias: &[T],
        indices: &mut [u32],
        values: &mut [T],
    ) -> usize {
        let k = indices.len();
        assert_eq!(values.len(), k, "top_k: {} indices, {} values", k, values.len());
        assert_eq!(bias.len(), z.len(), "top_k: {} values, {} biases", z.len(), bias.len());
        assert!(u32::try_from(z.len()).is_ok_and(|h| h < INACTIVE), "top_k: {} values", z.len());
        indices.fill(INACTIVE);
        values.fill(T::zero());
        if k == 0 {
            return 0;
        }
        // Room for k kept and k more (at least a few groups): a cut every k or so candidates.
        let capacity = k + k.max(3 * COLLECT_GROUP);
        let candidates = &mut self.candidates;
        candidates.resize(capacity, (T::zero(), 0));
        let threshold = match lower_bound(kernels, z, bias, k) {
            // Values equal to the bound may be kept: the scan takes those above the value just
            // below it.
            Some(bound) if bound > floor => bound.next_below(),
            _ => floor,
        };
        let (mut threshold, mut count, mut at) = (threshold, 0, 0);
        loop {
            let (scanned, found) =
                (kernels.collect_above)(&z[at..], &bias[at..], threshold, at as u32, &mut candidates[count..]);
            (at, count) = (at + scanned, count + found);
            if at == z.len() {
                break;
            }
            // Full: keep the k strongest; only values above the weakest of them can enter now.
            candidates[..count].select_nth_unstable_by(k - 1, stronger_first);
            count = k;
            threshold = candidates[k - 1].0;
        }
        if count > k {
            candidates[..count].select_nth_unstable_by(k - 1, stronger_first);
            count = k;
        }
        // By latent (the decoder then reads its rows in memory order).
        let kept = &mut candidates[..count];
        kept.sort_unstable_by_key(|&(_, j)| j);
        for ((index, value), &(v, j)) in indices.iter_mut().zip(values.iter_mut()).zip(kept.iter()) {
            (*index, *value) = (j, v);
        }
        count
    }
}

/// The values per group below which [`lower_bound`] is not worth its pass.
const BOUND_GROUP: usize = 256;

/// A lower bound of the `k`-th largest value of `z + bias` (NaN aside) on a row long enough for
/// it: the least of the maxima of `k` groups that cover the row. Each maximum is a distinct
/// value of the row, so at least `k` values reach the least of them. `None` on a short row or
/// when a group has no value above −∞.
fn lower_bound<T: Real>(kernels: &Kernels<T>, z: &[T], bias: &[T], k: usize) -> Option<T> {
    let group = z.len() / k;
    if group < BOUND_GROUP {
        return None;
    }
    // The last group takes the remainder.
    let bound = (0..k)
        .map(|g| {
            let range = g * group..if g + 1 == k { z.len() } else { (g + 1) * group };
            (kernels.max_sum)(&z[range.clone()], &bias[range])
        })
        .fold(T::infinity(), |least, max| if max < least { max } else { least });
    (bound > T::neg_infinity()).then_some(bound)
}

/// The order of strength of `(value, position)` pairs, strongest first: a larger value, or an
/// equal value at an earlier position.
fn stronger_first<T: Real>(a: &Candidate<T>, b: &Candidate<T>) -> Ordering {
    b.0.partial_cmp(&a.0).unwrap_or(Ordering::Equal).then(a.1.cmp(&b.1))
}

/// What [`keep_batch_top`] kept.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchCut<T> {
    /// The smallest value kept (`None`: none was).
    pub smallest: Option<T>,
    /// The active candidates there were.
    pub candidates: usize,
    /// Whether the values kept are the batch's largest of all its pre-activations, not only of
    /// the candidates: false when an example's candidates were all active, all at least the
    /// smallest value kept, and fewer than its latents — it may have had more to give, and
    /// the selection must be made again with more candidates.
    pub complete: bool,
}

/// Keeps the `keep` largest values of a batch's candidates — `width` slots per example, each
/// example's largest as [`Selector::top_k`] leaves them (active slots first, by latent), of `latents`
/// pre-activations — and makes the others unused slots (each example's kept ones still first,
/// by latent). Of equal values, those of the earlier example, then of the earlier latent, are
/// kept. `keys` is scratch space.
pub fn keep_batch_top<T: Real>(
    indices: &mut [u32],
    values: &mut [T],
    width: usize,
    keep: usize,
    latents: usize,
    keys: &mut Vec<(T, u32)>,
) -> BatchCut<T> {
    assert!(width > 0 && indices.len().is_multiple_of(width) && values.len() == indices.len(), "keep_batch_top: slots");
    assert!(u32::try_from(indices.len()).is_ok(), "keep_batch_top: {} slots", indices.len());
    keys.clear();
    keys.extend(
        indices
            .iter()
            .zip(values.iter())
            .enumerate()
            .filter(|(_, (&j, _))| j != INACTIVE)
            .map(|(slot, (_, &v))| (v, slot as u32)),
    );
    // The keep-th largest (value, then earliest slot): the cut.
    let cut = (keys.len() > keep).then(|| {
        if keep == 0 {
            return None;
        }
        keys.select_nth_unstable_by(keep - 1, stronger_first);
        Some(keys[keep - 1])
    });
    let kept = |value: T, slot: usize| match cut {
        None => true,
        Some(None) => false,
        Some(Some((at, at_slot))) => value > at || (value == at && slot <= at_slot as usize),
    };
    let smallest = match cut {
        None => keys.iter().map(|key| key.0).reduce(|a, b| if b < a { b } else { a }),
        Some(cut) => cut.map(|key| key.0),
    };
    let mut complete = true;
    for (e, (slots, activations)) in indices.chunks_exact_mut(width).zip(values.chunks_exact_mut(width)).enumerate() {
        let active = slots.partition_point(|&j| j != INACTIVE);
        let weakest = activations[..active].iter().copied().reduce(|a, b| if b < a { b } else { a });
        if active == width && width < latents && weakest.is_some_and(|weakest| smallest.is_some_and(|s| weakest >= s)) {
            complete = false;
        }
        let mut next = 0;
        for s in 0..active {
            if kept(activations[s], e * width + s) {
                slots[next] = slots[s];
                activations[next] = activations[s];
                next += 1;
            }
        }
        slots[next..].fill(INACTIVE);
        activations[next..].fill(T::zero());
    }
    BatchCut { smallest, candidates: keys.len(), complete }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::Isa;
    use rand::{Rng, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;

    /// The plain definition: sort the values `units` may keep by (value descending, position),
    /// keep k.
    fn by_sorting(z: &[f64], units: Units, k: usize) -> Vec<(u32, f64)> {
        let floor = match units {
            Units::Relu => 0.0,
            Units::Linear => f64::NEG_INFINITY,
        };
        by_sorting_above(z, floor, k)
    }

    /// [`by_sorting`] of the values above `floor`.
    fn by_sorting_above(z: &[f64], floor: f64, k: usize) -> Vec<(u32, f64)> {
        let mut positive: Vec<(u32, f64)> =
            z.iter().enumerate().filter(|(_, v)| **v > floor).map(|(i, &v)| (i as u32, v)).collect();
        positive.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        positive.truncate(k);
        positive.sort_by_key(|&(i, _)| i);
        positive
    }

    fn check_all_sets<T: Real>() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
        // One selector for every case: what one selection leaves in it must not reach the next.
        let mut selector = Selector::new();
        for isa in Isa::ALL {
            let Some(kernels) = Kernels::<T>::for_isa(isa) else { continue };
            // (Many cuts of the candidates: k = 1 among thousands, and round 3's rising values.)
            for (h, k) in [
                (0, 3),
                (1, 1),
                (5, 0),
                (7, 3),
                (17, 16),
                (33, 40),
                (100, 8),
                (1000, 32),
                (4099, 64),
                (3001, 1),
                (600, 200),
                // Long rows, scanned from the bound of the k-th value: groups of 512, of 300,
                // and of 2733 with a longer last one.
                (16_384, 32),
                (9000, 30),
                (8200, 3),
            ] {
                for round in 0..5 {
                    // Round 1 has many ties; round 2 mostly negative values; round 3 rising;
                    // round 4 only negative sums (ReLU keeps none, though long rows have a
                    // bound of the k-th value: below the floor).
                    let z: Vec<T> = (0..h)
                        .map(|i| match round {
                            0 => T::cast(rng.gen_range(-1.0..1.0)),
                            1 => T::cast(f64::from(rng.gen_range(-2..4))),
                            2 => T::cast(rng.gen_range(-1.0..0.01)),
                            3 => T::cast(i as f64),
                            _ => T::cast(rng.gen_range(-2.0..-0.5)),
                        })
                        .collect();
                    // A bias of exact small values, so that z + bias is exact in either type.
                    let bias: Vec<T> = (0..h).map(|i| T::cast(f64::from((i % 5) as u8) / 8.0 - 0.25)).collect();
                    let wide: Vec<f64> = z.iter().zip(&bias).map(|(v, b)| (*v + *b).as_f64()).collect();
                    for units in [Units::Relu, Units::Linear] {
                        let (mut indices, mut values) = (vec![7; k], vec![T::one(); k]);
                        let active = selector.top_k(&kernels, units, &z, &bias, &mut indices, &mut values);
                        let want = by_sorting(&wide, units, k);
                        let got: Vec<(u32, f64)> =
                            indices[..active].iter().zip(&values[..active]).map(|(&i, v)| (i, v.as_f64())).collect();
                        assert_eq!(got, want, "{isa:?} {} {units:?}: h {h}, k {k}, round {round}", T::NAME);
                        assert!(indices[active..].iter().all(|&i| i == INACTIVE), "{isa:?}: unused slots marked");
                        assert!(values[active..].iter().all(|v| *v == T::zero()), "{isa:?}: unused slots zero");
                    }
                }
            }
        }
    }

    #[test]
    fn top_k_keeps_the_k_largest_selectable_values_and_the_first_of_ties_on_every_isa() {
        check_all_sets::<f32>();
        check_all_sets::<f64>();
    }

    /// Slots as `top_k` leaves them, `width` per example, from `(latent, value)` lists.
    fn candidates(width: usize, examples: &[&[(u32, f64)]]) -> (Vec<u32>, Vec<f64>) {
        let (mut indices, mut values) = (vec![INACTIVE; width * examples.len()], vec![0.0; width * examples.len()]);
        for (e, slots) in examples.iter().enumerate() {
            for (s, &(j, v)) in slots.iter().enumerate() {
                indices[e * width + s] = j;
                values[e * width + s] = v;
            }
        }
        (indices, values)
    }

    #[test]
    fn the_batch_cut_keeps_the_largest_the_earlier_of_ties_and_says_when_candidates_ran_short() {
        let mut keys = Vec::new();
        // Three examples of 3 candidates among 10 latents; keep 4: 5.0, 4.0 and the two earlier
        // of the three 2.0s (example 0's latent 7, then example 1's latent 2).
        let (mut indices, mut values) =
            candidates(3, &[&[(1, 5.0), (7, 2.0)], &[(2, 2.0), (4, 1.0)], &[(0, 2.0), (3, 4.0), (9, 0.5)]]);
        let cut = keep_batch_top(&mut indices, &mut values, 3, 4, 10, &mut keys);
        assert_eq!(indices, [1, 7, INACTIVE, 2, INACTIVE, INACTIVE, 3, INACTIVE, INACTIVE]);
        assert_eq!(values, [5.0, 2.0, 0.0, 2.0, 0.0, 0.0, 4.0, 0.0, 0.0]);
        // Example 2 was full, but its weakest candidate (0.5) was cut: nothing it left out
        // could have been kept.
        assert_eq!(cut, BatchCut { smallest: Some(2.0), candidates: 7, complete: true });

        // A full example whose every candidate is kept may have had more above the cut...
        let (mut indices, mut values) = candidates(2, &[&[(1, 5.0), (3, 4.0)], &[(0, 1.0)]]);
        let cut = keep_batch_top(&mut indices, &mut values, 2, 2, 10, &mut keys);
        assert_eq!(cut, BatchCut { smallest: Some(4.0), candidates: 3, complete: false });
        // ...unless its candidates were all its latents.
        let (mut indices, mut values) = candidates(2, &[&[(0, 5.0), (1, 4.0)], &[(0, 1.0)]]);
        assert!(keep_batch_top(&mut indices, &mut values, 2, 2, 2, &mut keys).complete);
        // Fewer candidates than the batch keeps: all kept, and a full example is short of them.
        let (mut indices, mut values) = candidates(2, &[&[(1, 5.0), (3, 4.0)], &[(0, 1.0)]]);
        let cut = keep_batch_top(&mut indices, &mut values, 2, 6, 10, &mut keys);
        assert_eq!(
            (indices, cut),
            (vec![1, 3, 0, INACTIVE], BatchCut { smallest: Some(1.0), candidates: 3, complete: false })
        );
        // No candidate at all.
        let (mut indices, mut values) = candidates(2, &[&[], &[]]);
        assert_eq!(
            keep_batch_top(&mut indices, &mut values, 2, 2, 10, &mut keys),
            BatchCut { smallest: None, candidates: 0, complete: true }
        );
    }

    #[test]
    fn nan_is_never_selected() {
        let kernels = Kernels::<f64>::detect();
        let z = [f64::NAN, 0.5, f64::NAN, 0.25, -1.0];
        let (mut indices, mut values) = ([0; 3], [0.0; 3]);
        let mut selector = Selector::new();
        assert_eq!(selector.top_k(&kernels, Units::Relu, &z, &[0.0; 5], &mut indices, &mut values), 2);
        assert_eq!(indices, [1, 3, INACTIVE]);
        assert_eq!(values, [0.5, 0.25, 0.0]);
        let z = [f64::NAN, 0.5, f64::NEG_INFINITY, -0.25, f64::NAN];
        let (mut indices, mut values) = ([0; 4], [0.0; 4]);
        assert_eq!(selector.top_k(&kernels, Units::Linear, &z, &[0.0; 5], &mut indices, &mut values), 2);
        assert_eq!(indices, [1, 3, INACTIVE, INACTIVE]);
        assert_eq!(values, [0.5, -0.25, 0.0, 0.0]);
    }

    #[test]
    fn long_rows_with_nan_and_infinities_select_as_the_definition_does_on_every_isa() {
        let mut selector = Selector::new();
        let (h, k) = (8192, 8);
        let bias = vec![0.0f32; h];
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(8);
        let noise = |rng: &mut Xoshiro256PlusPlus| -> Vec<f32> { (0..h).map(|_| rng.gen_range(-1.0..1.0)).collect() };
        // A group of NaN only (no bound: scanned from the floor); NaN and −∞ scattered; more
        // +∞ than k (the bound is +∞); ties at the bound (each group's maximum the same).
        let mut all_nan_group = noise(&mut rng);
        all_nan_group[2048..3072].fill(f32::NAN);
        let mut scattered = noise(&mut rng);
        for i in (0..h).step_by(7) {
            scattered[i] = if i % 2 == 0 { f32::NAN } else { f32::NEG_INFINITY };
        }
        let mut infinite = noise(&mut rng);
        for i in (5..h).step_by(600) {
            infinite[i] = f32::INFINITY;
        }
        let mut ties = noise(&mut rng);
        for i in (3..h).step_by(100) {
            ties[i] = 2.0;
        }
        let rows = [("a NaN group", all_nan_group), ("NaN and −∞", scattered), ("+∞", infinite), ("ties", ties)];
        for isa in Isa::ALL {
            let Some(kernels) = Kernels::<f32>::for_isa(isa) else { continue };
            for (what, z) in &rows {
                let wide: Vec<f64> = z.iter().map(|&v| f64::from(v)).collect();
                // The units' floors, and floors between the bound and the row's largest values
                // (an inference threshold): the scan starts from the floor there.
                for floor in [0.0, f32::NEG_INFINITY, 0.999, 1.5] {
                    let (mut indices, mut values) = (vec![0; k], vec![0.0; k]);
                    let active = selector.top_k_above(&kernels, floor, z, &bias, &mut indices, &mut values);
                    let got: Vec<(u32, f64)> =
                        indices[..active].iter().zip(&values[..active]).map(|(&i, &v)| (i, f64::from(v))).collect();
                    assert_eq!(got, by_sorting_above(&wide, f64::from(floor), k), "{isa:?}: {what}, floor {floor}");
                }
            }
        }
    }

    #[test]
    fn units_and_selections_have_names() {
        for units in [Units::Relu, Units::Linear] {
            assert_eq!(Units::from_name(units.name()), Some(units));
        }
        assert_eq!(Units::from_name("sigmoid"), None);
        for selection in [Selection::PerExample, Selection::Batch, Selection::All] {
            assert_eq!(Selection::from_name(selection.name()), Some(selection));
        }
        assert_eq!(Selection::from_name("token"), None);
    }
}
