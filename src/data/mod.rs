//! Data sets: borrowed views of `m` examples of `n` features in either memory layout, and
//! `.npy` files.

pub mod generated;
#[cfg(feature = "exercises")]
pub mod images;
pub mod input;
#[cfg(feature = "exercises")]
pub mod mat;
#[cfg(feature = "exercises")]
pub mod mnist;
pub mod npy;
pub mod npy_source;
pub mod planted;
pub mod split;
pub mod stream;
#[cfg(feature = "exercises")]
pub mod whitening;

use ndarray::ArrayView2;

use crate::error::{Error, Result};
use crate::gemm::MatRef;
use crate::real::Real;

/// How the values of a data set are laid out in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `m×n` row-major: each example is a contiguous row (numpy's usual `X[example, feature]`;
    /// also MATLAB's `n×m` column-major).
    ExamplesByFeatures,
    /// `n×m` row-major: each feature is a contiguous row, examples are columns as in SPEC §1.
    FeaturesByExamples,
}

/// A borrowed data set: `m` examples of `n` features, finite, non-empty. Seen by the engine as
/// SPEC's `X: n×m` (columns are examples), whatever the layout, without a copy.
#[derive(Debug, Clone, Copy)]
pub struct Dataset<'a, T> {
    values: &'a [T],
    examples: usize,
    features: usize,
    layout: Layout,
}

impl<'a, T: Real> Dataset<'a, T> {
    /// `values` holds `examples` rows of `features` values each (`m×n` row-major).
    pub fn examples_by_features(values: &'a [T], examples: usize, features: usize) -> Result<Self> {
        Self::new(values, examples, features, Layout::ExamplesByFeatures)
    }

    /// `values` holds `features` rows of `examples` values each (`n×m` row-major).
    pub fn features_by_examples(values: &'a [T], features: usize, examples: usize) -> Result<Self> {
        Self::new(values, examples, features, Layout::FeaturesByExamples)
    }

    /// An `m×n` array whose rows are examples, in C or Fortran order (no copy). Any other
    /// memory order is an error: make the array contiguous first.
    pub fn from_rows(rows: ArrayView2<'a, T>) -> Result<Self> {
        let (examples, features) = rows.dim();
        if let Some(values) = rows.to_slice() {
            return Self::examples_by_features(values, examples, features);
        }
        if let Some(values) = rows.reversed_axes().to_slice() {
            return Self::features_by_examples(values, features, examples);
        }
        Err(Error::shape_mismatch("data array", "C- or Fortran-contiguous memory", "a strided view"))
    }

    /// As [`examples_by_features`](Self::examples_by_features) or
    /// [`features_by_examples`](Self::features_by_examples) for `layout`, without the scan for
    /// non-finite values (a pass over all of them): for a caller that evaluates the same values
    /// many times and has scanned them once with [`check_finite`](Self::check_finite), and that
    /// scans again when a result comes out non-finite (or a unit saturated) to say why: on
    /// non-finite values the engine's cost is NaN or infinite, or a unit saturates.
    pub fn unscanned(values: &'a [T], examples: usize, features: usize, layout: Layout) -> Result<Self> {
        if examples == 0 {
            return Err(Error::EmptyData { what: "no examples (m = 0)" });
        }
        if features == 0 {
            return Err(Error::EmptyData { what: "no features (n = 0)" });
        }
        if Some(values.len()) != examples.checked_mul(features) {
            return Err(Error::shape_mismatch("data values", format!("m·n = {examples}·{features}"), values.len()));
        }
        Ok(Dataset { values, examples, features, layout })
    }

    fn new(values: &'a [T], examples: usize, features: usize, layout: Layout) -> Result<Self> {
        let data = Self::unscanned(values, examples, features, layout)?;
        data.check_finite()?;
        Ok(data)
    }

    /// An error naming the row and column of the first value that is NaN or infinite, if any.
    pub fn check_finite(&self) -> Result<()> {
        let Some(index) = self.values.iter().position(|v| !v.is_finite()) else {
            return Ok(());
        };
        let width = match self.layout {
            Layout::ExamplesByFeatures => self.features,
            Layout::FeaturesByExamples => self.examples,
        };
        Err(Error::NonFiniteData {
            what: "data",
            row: index / width,
            column: index % width,
            value: self.values[index].as_f64(),
        })
    }

    /// `m`.
    pub fn examples(&self) -> usize {
        self.examples
    }

    /// `n`.
    pub fn features(&self) -> usize {
        self.features
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The values in memory order.
    pub fn values(&self) -> &'a [T] {
        self.values
    }

    /// SPEC's `X: n×m` as a strided view of the caller's memory.
    pub fn x(&self) -> MatRef<'a, T> {
        match self.layout {
            Layout::ExamplesByFeatures => MatRef::col_major(self.values, self.features, self.examples),
            Layout::FeaturesByExamples => MatRef::row_major(self.values, self.features, self.examples),
        }
    }
}
