//! Data sets read in chunks of whole examples, for data that does not fit in memory.

use crate::error::{Error, Result};
use crate::real::Real;

/// A data set read in order, a chunk of whole examples at a time, from the first example again
/// after each [`rewind`](ExampleSource::rewind). Implement it to feed the streaming objective
/// from your own storage.
pub trait ExampleSource<T: Real> {
    /// `n`, the number of features of every example.
    fn features(&self) -> usize;

    /// Goes back to the first example.
    fn rewind(&mut self) -> Result<()>;

    /// `m`, the number of examples of a whole pass, when the source knows it in advance.
    fn examples_hint(&self) -> Option<usize> {
        None
    }

    /// Fills the front of `buffer` with the next examples, one after another (`n` values
    /// each, examples-by-features), as many as fit in whole; returns how many were read, 0 at
    /// the end of the data.
    fn read_chunk(&mut self, buffer: &mut [T]) -> Result<usize>;
}

impl<T: Real, S: ExampleSource<T> + ?Sized> ExampleSource<T> for Box<S> {
    fn features(&self) -> usize {
        (**self).features()
    }

    fn examples_hint(&self) -> Option<usize> {
        (**self).examples_hint()
    }

    fn rewind(&mut self) -> Result<()> {
        (**self).rewind()
    }

    fn read_chunk(&mut self, buffer: &mut [T]) -> Result<usize> {
        (**self).read_chunk(buffer)
    }
}

/// An [`ExampleSource`] over an `m×n` examples-by-features slice in memory.
#[derive(Debug, Clone)]
pub struct SliceSource<'a, T> {
    values: &'a [T],
    features: usize,
    position: usize,
}

impl<'a, T: Real> SliceSource<'a, T> {
    /// `values` holds whole examples of `features` values each.
    pub fn new(values: &'a [T], features: usize) -> Result<Self> {
        if features == 0 {
            return Err(Error::EmptyData { what: "no features (n = 0)" });
        }
        if !values.len().is_multiple_of(features) {
            return Err(Error::shape_mismatch("data values", format!("a multiple of n = {features}"), values.len()));
        }
        Ok(SliceSource { values, features, position: 0 })
    }
}

impl<T: Real> ExampleSource<T> for SliceSource<'_, T> {
    fn features(&self) -> usize {
        self.features
    }

    fn examples_hint(&self) -> Option<usize> {
        Some(self.values.len() / self.features)
    }

    fn rewind(&mut self) -> Result<()> {
        self.position = 0;
        Ok(())
    }

    fn read_chunk(&mut self, buffer: &mut [T]) -> Result<usize> {
        let n = self.features;
        let remaining = &self.values[self.position..];
        let len = (buffer.len() / n).min(remaining.len() / n) * n;
        buffer[..len].copy_from_slice(&remaining[..len]);
        self.position += len;
        Ok(len / n)
    }
}
