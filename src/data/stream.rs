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

/// An [`ExampleSource`] that can also go to any example of a pass: what minibatch training
/// streamed from disk needs, reading the data set's blocks in a shuffled order (see
/// [`crate::train::Shuffle`]).
pub trait SeekableSource<T: Real>: ExampleSource<T> {
    /// Goes to example `example` of a pass (0 goes to the first, as
    /// [`rewind`](ExampleSource::rewind) does; `m` to the end): the next
    /// [`read_chunk`](ExampleSource::read_chunk) starts there. Fails when `example` is past
    /// the end, or when the storage changed since it was opened.
    fn seek(&mut self, example: usize) -> Result<()>;

    /// Fills all of `buffer` (whole examples) from example `first` on; fails when the data
    /// ends before.
    fn read_exact_at(&mut self, first: usize, buffer: &mut [T]) -> Result<()> {
        self.seek(first)?;
        let n = self.features();
        let wanted = buffer.len() / n;
        let mut filled = 0;
        while filled < wanted {
            let read = self.read_chunk(&mut buffer[filled * n..wanted * n])?;
            if read == 0 || read > wanted - filled {
                return Err(Error::shape_mismatch(
                    "examples read by ExampleSource::read_chunk",
                    format!("{} from example {}", wanted - filled, first + filled),
                    read,
                ));
            }
            filled += read;
        }
        Ok(())
    }
}

/// The example past the end of a source of `examples` examples, refused by name.
pub(crate) fn check_seek(example: usize, examples: usize) -> Result<()> {
    match example <= examples {
        true => Ok(()),
        false => Err(Error::shape_mismatch("example sought", format!("at most the source's {examples}"), example)),
    }
}

impl<T: Real, S: ExampleSource<T> + ?Sized> ExampleSource<T> for &mut S {
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

impl<T: Real, S: SeekableSource<T> + ?Sized> SeekableSource<T> for &mut S {
    fn seek(&mut self, example: usize) -> Result<()> {
        (**self).seek(example)
    }

    fn read_exact_at(&mut self, first: usize, buffer: &mut [T]) -> Result<()> {
        (**self).read_exact_at(first, buffer)
    }
}

impl<T: Real, S: SeekableSource<T> + ?Sized> SeekableSource<T> for Box<S> {
    fn seek(&mut self, example: usize) -> Result<()> {
        (**self).seek(example)
    }

    fn read_exact_at(&mut self, first: usize, buffer: &mut [T]) -> Result<()> {
        (**self).read_exact_at(first, buffer)
    }
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

impl<T: Real> SeekableSource<T> for SliceSource<'_, T> {
    fn seek(&mut self, example: usize) -> Result<()> {
        check_seek(example, self.values.len() / self.features)?;
        self.position = example * self.features;
        Ok(())
    }
}
