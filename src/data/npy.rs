//! `.npy` files in and out: float32 or float64 in C or Fortran order on input, converted to
//! the working precision; atomic writes (a temporary file in the same directory, then rename),
//! so an interrupted write never leaves a truncated file in place of a good one.
//!
//! Every reader, in memory or streaming, trusts a header only after checking it against the
//! file's size ([`NpyInfo`]): no allocation is made for data the file does not hold.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use ndarray::{Array2, ShapeBuilder};
use ndarray_npy::npy::header::{Header, Layout};
use ndarray_npy::WriteNpyExt;
use py_literal::Value as PyValue;

use super::input::InputFile;
use crate::error::{Error, Result};
use crate::files::Staged;
use crate::real::Real;

/// The element type of the `.npy` files this crate reads: little-endian floats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NpyDtype {
    /// `'<f4'`.
    F32,
    /// `'<f8'`.
    F64,
}

impl NpyDtype {
    /// Bytes per value.
    pub fn size(self) -> usize {
        match self {
            NpyDtype::F32 => 4,
            NpyDtype::F64 => 8,
        }
    }

    /// `"f32"` or `"f64"`, as [`Real::NAME`] of the type it holds.
    pub fn name(self) -> &'static str {
        match self {
            NpyDtype::F32 => "f32",
            NpyDtype::F64 => "f64",
        }
    }
}

/// A `.npy` file's header, checked: a float dtype this crate reads, and exactly as many bytes
/// of data after it as its shape describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyInfo {
    pub dtype: NpyDtype,
    pub shape: Vec<usize>,
    /// Column-major values (numpy's `fortran_order`).
    pub fortran_order: bool,
    /// Where the data starts: the length of the preamble and header.
    pub data_offset: u64,
}

/// The largest header read, numpy's own limit (`max_header_size`): float arrays need about 128
/// bytes.
const MAX_HEADER_LEN: usize = 10_000;
/// The deepest nesting of brackets read in a header (an array's header has 2), so that the
/// recursive parser of the header's Python literal never runs out of stack.
const MAX_HEADER_NESTING: usize = 8;

impl NpyInfo {
    /// The number of values, the product of the shape (validated not to overflow).
    pub fn values(&self) -> usize {
        self.shape.iter().product()
    }

    /// Reads and checks the header of `input` against its size, reading no data.
    pub(crate) fn read(input: &InputFile) -> Result<Self> {
        let path = input.path();
        let bad = |reason: String| Error::bad_file(path, reason);
        let size = input.size();
        // Preamble: magic (6 bytes), version (2), header length (2 in version 1, 4 after).
        let mut preamble = [0u8; 12];
        let readable = (preamble.len() as u64).min(size) as usize;
        input.read_exact_at(&mut preamble[..readable], 0)?;
        if readable < 10 || &preamble[..6] != b"\x93NUMPY" {
            return Err(bad("not a valid .npy file: no .npy magic string".into()));
        }
        let (prefix, header_len) = match preamble[6] {
            1 => (10, u16::from_le_bytes([preamble[8], preamble[9]]) as usize),
            2 | 3 if readable == 12 => (12, u32::from_le_bytes(preamble[8..12].try_into().expect("4 bytes")) as usize),
            version => return Err(bad(format!("not a valid .npy file: format version {version}"))),
        };
        if header_len > MAX_HEADER_LEN {
            return Err(bad(format!("a header of {header_len} bytes, more than the {MAX_HEADER_LEN} read")));
        }
        let data_offset = (prefix + header_len) as u64;
        if data_offset > size {
            return Err(bad(format!("truncated: a header of {header_len} bytes in a file of {size}")));
        }
        let mut bytes = vec![0u8; prefix + header_len];
        input.read_exact_at(&mut bytes, 0)?;
        if nesting(&bytes[prefix..]) > MAX_HEADER_NESTING {
            return Err(bad(format!("not a valid .npy file: brackets nested deeper than {MAX_HEADER_NESTING}")));
        }
        let header = Header::from_reader(&mut &bytes[..]).map_err(|e| bad(format!("not a valid .npy file: {e}")))?;
        let dtype = match header.type_descriptor.as_string().map(String::as_str) {
            Some("<f4") => NpyDtype::F32,
            Some("<f8") => NpyDtype::F64,
            _ => {
                return Err(bad(format!(
                    "unsupported dtype {}: expected little-endian float32 or float64 ('<f4' or '<f8')",
                    header.type_descriptor
                )))
            }
        };
        let data_len = header
            .shape
            .iter()
            .try_fold(dtype.size(), |bytes, &d| bytes.checked_mul(d))
            .and_then(|bytes| u64::try_from(bytes).ok())
            .and_then(|bytes| bytes.checked_add(data_offset))
            .ok_or_else(|| bad(format!("shape {:?} overflows", header.shape)))?;
        let expected = data_len;
        if size < expected {
            return Err(bad(format!(
                "truncated: the header describes {:?} values of {} bytes ({expected} bytes with the header), the file has {size}",
                header.shape,
                dtype.size()
            )));
        }
        if size > expected {
            return Err(bad(format!("{} bytes after the data its header describes", size - expected)));
        }
        let fortran_order = header.layout == Layout::Fortran;
        Ok(NpyInfo { dtype, shape: header.shape, fortran_order, data_offset })
    }
}

/// The deepest nesting of `(`, `[` and `{` in `text`, outside quoted strings.
fn nesting(text: &[u8]) -> usize {
    let (mut depth, mut deepest, mut quote) = (0usize, 0, None);
    for &byte in text {
        match (quote, byte) {
            (Some(q), _) if byte == q => quote = None,
            (Some(_), _) => {}
            (None, b'\'' | b'"') => quote = Some(byte),
            (None, b'(' | b'[' | b'{') => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            (None, b')' | b']' | b'}') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// The header of the `.npy` file at `path`, checked against the file's size, without reading
/// its data: what [`read_matrix`] and [`read_vector`] would read, at the cost of one small read.
pub fn inspect(path: &Path) -> Result<NpyInfo> {
    NpyInfo::read(&InputFile::open(path)?)
}

/// Decodes little-endian `dtype` values from `raw` into `out`, one per element of `out`,
/// the `k`-th going to `out[k * stride]`.
pub(crate) fn decode<T: Real>(dtype: NpyDtype, raw: &[u8], out: &mut [T], stride: usize) {
    match dtype {
        NpyDtype::F32 => {
            for (bytes, value) in raw.chunks_exact(4).zip(out.iter_mut().step_by(stride)) {
                *value = T::cast(f32::from_le_bytes(bytes.try_into().expect("4 bytes")) as f64);
            }
        }
        NpyDtype::F64 => {
            for (bytes, value) in raw.chunks_exact(8).zip(out.iter_mut().step_by(stride)) {
                *value = T::cast(f64::from_le_bytes(bytes.try_into().expect("8 bytes")));
            }
        }
    }
}

/// The values of `input` (described by `info`) in file order, converted to `T`.
fn read_values<T: Real>(input: &InputFile, info: &NpyInfo) -> Result<Vec<T>> {
    // The header was checked against the file's size: this is the data the file holds.
    let mut values = vec![T::zero(); info.values()];
    let size = info.dtype.size();
    if cfg!(target_endian = "little") && size == std::mem::size_of::<T>() {
        // The file holds exactly `T`'s bytes: read them straight into place.
        input.read_exact_at(bytemuck::cast_slice_mut(&mut values), info.data_offset)?;
        return Ok(values);
    }
    const CHUNK: usize = 1 << 16;
    let mut raw = vec![0u8; CHUNK.min(values.len()) * size];
    let mut offset = info.data_offset;
    for chunk in values.chunks_mut(CHUNK) {
        let raw = &mut raw[..chunk.len() * size];
        input.read_exact_at(raw, offset)?;
        decode(info.dtype, raw, chunk, 1);
        offset += raw.len() as u64;
    }
    Ok(values)
}

/// A 2-D array (e.g. `m×n`, rows are examples) from a float32/float64 `.npy` file, in the
/// file's memory order (C or Fortran).
pub fn read_matrix<T: Real>(path: &Path) -> Result<Array2<T>> {
    let input = InputFile::open(path)?;
    let info = NpyInfo::read(&input)?;
    let &[rows, columns] = &info.shape[..] else {
        return Err(Error::bad_file(path, format!("expected a 2-D array, found shape {:?}", info.shape)));
    };
    let values = read_values(&input, &info)?;
    let array = if info.fortran_order {
        Array2::from_shape_vec((rows, columns).f(), values)
    } else {
        Array2::from_shape_vec((rows, columns), values)
    };
    array.map_err(|e| Error::bad_file(path, format!("shape {:?}: {e}", info.shape)))
}

/// A vector from a float32/float64 `.npy` file: 1-D, or 2-D with a single column or row
/// (as MATLAB or numpy code often saves `theta`).
pub fn read_vector<T: Real>(path: &Path) -> Result<Vec<T>> {
    let input = InputFile::open(path)?;
    let info = NpyInfo::read(&input)?;
    let shape = &info.shape;
    let is_vector = shape.len() == 1 || (shape.len() == 2 && (shape[0] == 1 || shape[1] == 1));
    if !is_vector {
        return Err(Error::bad_file(
            path,
            format!("expected a vector (1-D, or 2-D with one column), found shape {shape:?}"),
        ));
    }
    // One row or one column: the values are in the same order in either memory layout.
    read_values(&input, &info)
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
            return Err(Error::shape_mismatch(
                "rows written to an .npy file",
                format!("{} rows of {} values in all", self.rows, self.columns),
                format!("{} values after {} rows", values.len(), self.written),
            ));
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
            return Err(Error::shape_mismatch("rows written to an .npy file", self.rows, self.written));
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
