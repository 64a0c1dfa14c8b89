//! `.npy` files in and out: float32 or float64 in C or Fortran order on input, converted to
//! the working precision; atomic writes (a temporary file in the same directory, then rename),
//! so an interrupted write never leaves a truncated file in place of a good one.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayD, Ix2};
use ndarray_npy::npy::header::{Header, Layout};
use ndarray_npy::{ReadNpyError, ReadNpyExt, WriteNpyExt};
use py_literal::Value as PyValue;

use crate::error::{Error, Result};
use crate::files::Staged;
use crate::real::Real;

/// Reads a float32 or float64 array of any shape and converts it to `T`.
fn read_any<T: Real>(path: &Path) -> Result<ArrayD<T>> {
    let open = || File::open(path).map(BufReader::new).map_err(|source| Error::Io { path: path.to_path_buf(), source });
    let describe = |e: ReadNpyError| match e {
        ReadNpyError::WrongDescriptor(d) => {
            Error::bad_file(path, format!("unsupported dtype {d}: expected float32 or float64 ('<f4' or '<f8')"))
        }
        ReadNpyError::MissingData => {
            Error::bad_file(path, "truncated: the file holds fewer values than its header's shape")
        }
        ReadNpyError::ExtraBytes(n) => Error::bad_file(path, format!("{n} bytes after the data its header describes")),
        other => Error::bad_file(path, format!("not a valid .npy file: {other}")),
    };
    // The file's own dtype first, so that no converted copy is made when it is already `T`.
    match ArrayD::<T>::read_npy(open()?) {
        Err(ReadNpyError::WrongDescriptor(_)) => {}
        other => return other.map_err(describe),
    }
    if T::NAME == "f32" {
        ArrayD::<f64>::read_npy(open()?).map(|a| a.mapv(T::cast)).map_err(describe)
    } else {
        ArrayD::<f32>::read_npy(open()?).map(|a| a.mapv(|v| T::cast(v as f64))).map_err(describe)
    }
}

/// A 2-D array (e.g. `m×n`, rows are examples) from a float32/float64 `.npy` file.
pub fn read_matrix<T: Real>(path: &Path) -> Result<Array2<T>> {
    let array = read_any::<T>(path)?;
    let shape = array.shape().to_vec();
    array
        .into_dimensionality::<Ix2>()
        .map_err(|_| Error::bad_file(path, format!("expected a 2-D array, found shape {shape:?}")))
}

/// A vector from a float32/float64 `.npy` file: 1-D, or 2-D with a single column or row
/// (as MATLAB or numpy code often saves `theta`).
pub fn read_vector<T: Real>(path: &Path) -> Result<Vec<T>> {
    let array = read_any::<T>(path)?;
    let shape = array.shape().to_vec();
    let is_vector = shape.len() == 1 || (shape.len() == 2 && (shape[0] == 1 || shape[1] == 1));
    if !is_vector {
        return Err(Error::bad_file(
            path,
            format!("expected a vector (1-D, or 2-D with one column), found shape {shape:?}"),
        ));
    }
    Ok(array.iter().copied().collect())
}

/// Writes `values` as a 1-D `.npy` file, atomically.
pub fn write_vector<T: Real>(path: &Path, values: &[T]) -> Result<()> {
    crate::files::write_with(path, |w| ndarray::aview1(values).write_npy(w).map_err(|e| e.to_string()))
}

/// Writes a 2-D array as a `.npy` file, atomically.
pub fn write_matrix<T: Real>(path: &Path, array: &Array2<T>) -> Result<()> {
    crate::files::write_with(path, |w| array.write_npy(w).map_err(|e| e.to_string()))
}

/// An `m×n` C-order `.npy` file written a block of rows at a time, for arrays too large to
/// hold in memory; it appears at its path, complete, only when [`finish`](Self::finish)
/// succeeds (until then it is a temporary file beside it). Or the same bytes streamed to
/// standard output.
#[derive(Debug)]
pub struct NpyRowWriter<T> {
    path: PathBuf,
    out: BufWriter<Sink>,
    rows: usize,
    columns: usize,
    written: usize,
    _values: std::marker::PhantomData<T>,
}

impl<T: Real> NpyRowWriter<T> {
    /// Starts a file of `rows × columns` values of `T` (float32 or float64).
    pub fn create(path: impl AsRef<Path>, rows: usize, columns: usize) -> Result<Self> {
        let path = path.as_ref();
        Self::start(path.to_path_buf(), Sink::File(Staged::beside(path)?), rows, columns)
    }

    /// Starts the same bytes on standard output.
    pub fn to_stdout(rows: usize, columns: usize) -> Result<Self> {
        Self::start(PathBuf::from("<standard output>"), Sink::Stdout(std::io::stdout()), rows, columns)
    }

    fn start(path: PathBuf, sink: Sink, rows: usize, columns: usize) -> Result<Self> {
        let descriptor = if T::NAME == "f32" { "<f4" } else { "<f8" };
        let header = Header {
            type_descriptor: PyValue::String(descriptor.into()),
            layout: Layout::Standard,
            shape: vec![rows, columns],
        };
        let bytes = header.to_bytes().map_err(|e| Error::bad_file(&path, format!("cannot format the header: {e}")))?;
        let mut out = BufWriter::with_capacity(1 << 20, sink);
        out.write_all(&bytes).map_err(|source| Error::Io { path: path.clone(), source })?;
        Ok(NpyRowWriter { path, out, rows, columns, written: 0, _values: std::marker::PhantomData })
    }

    /// Appends whole rows (`columns` values each).
    pub fn write_rows(&mut self, values: &[T]) -> Result<()> {
        let rows = values.len() / self.columns;
        if rows * self.columns != values.len() || self.written + rows > self.rows {
            return Err(Error::ShapeMismatch {
                what: "rows written to an .npy file",
                expected: format!("{} rows of {} values in all", self.rows, self.columns),
                got: format!("{} values after {} rows", values.len(), self.written),
            });
        }
        let io = |source| Error::Io { path: self.path.clone(), source };
        for value in values {
            self.out.write_all(value.to_le_bytes().as_ref()).map_err(io)?;
        }
        self.written += rows;
        Ok(())
    }

    /// Checks that every row was written, then syncs the file and renames it into place (or
    /// flushes standard output).
    pub fn finish(self) -> Result<()> {
        if self.written != self.rows {
            return Err(Error::ShapeMismatch {
                what: "rows written to an .npy file",
                expected: self.rows.to_string(),
                got: self.written.to_string(),
            });
        }
        let path = self.path;
        let io = |source| Error::Io { path: path.clone(), source };
        match self.out.into_inner().map_err(|e| io(e.into_error()))? {
            Sink::File(staged) => staged.commit(),
            Sink::Stdout(mut stdout) => stdout.flush().map_err(io),
        }
    }
}

/// Where an [`NpyRowWriter`] writes.
#[derive(Debug)]
enum Sink {
    File(Staged),
    Stdout(std::io::Stdout),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::File(file) => file.write(buf),
            Sink::Stdout(stdout) => stdout.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::File(file) => file.flush(),
            Sink::Stdout(stdout) => stdout.flush(),
        }
    }
}
