//! `.npy` files read a chunk of examples at a time: one `m×n` file, or shards of the same `n`
//! read in order. Memory is the caller's chunk buffer plus one chunk of raw bytes, whatever
//! the file size.
//!
//! Files are checked strictly when opened (2-D, little-endian float32 or float64, C or Fortran
//! order, exactly as many bytes as the header describes) and again at every rewind and at the
//! end of every pass: a file whose size or modification time changed is an error, never a
//! silently partial or mixed data set.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::input::InputFile;
use super::npy::{decode, NpyDtype, NpyInfo};
use super::stream::{check_seek, ExampleSource, SeekableSource};
use crate::error::{Error, Result};
use crate::real::Real;

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

/// What identifies one version of a file's contents: its length and modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
}

impl Stamp {
    fn of(file: &File, path: &Path) -> Result<Self> {
        let meta = file.metadata().map_err(io_error(path))?;
        Ok(Stamp { len: meta.len(), modified: meta.modified().ok() })
    }
}

/// The header of a 2-D float `.npy` file, checked against the file's size.
#[derive(Debug, Clone, Copy)]
struct MatrixHeader {
    dtype: NpyDtype,
    fortran: bool,
    rows: usize,
    columns: usize,
    data_offset: u64,
}

impl MatrixHeader {
    fn read(input: &InputFile) -> Result<(Self, Stamp)> {
        let stamp = Stamp::of(input.file(), input.path())?;
        let info = NpyInfo::read(input)?;
        let [rows, columns] = info.shape[..] else {
            return Err(Error::bad_file(
                input.path(),
                format!("expected a 2-D array (examples × features), found shape {:?}", info.shape),
            ));
        };
        let header = MatrixHeader {
            dtype: info.dtype,
            fortran: info.fortran_order,
            rows,
            columns,
            data_offset: info.data_offset,
        };
        Ok((header, stamp))
    }
}

/// One `m×n` `.npy` file (rows are examples), float32 or float64, C or Fortran order, read a
/// chunk at a time with positioned reads and converted to `T`.
#[derive(Debug)]
pub struct NpyFileSource<T> {
    input: InputFile,
    header: MatrixHeader,
    stamp: Stamp,
    /// The rows read: all of the file's, or those [`restrict`](NpyFileSource::restrict) kept.
    rows: std::ops::Range<usize>,
    next_row: usize,
    raw: Vec<u8>,
    _values: std::marker::PhantomData<T>,
}

impl<T: Real> NpyFileSource<T> {
    /// Opens `path` and checks its header and size.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let input = InputFile::open(path)?;
        let (header, stamp) = MatrixHeader::read(&input)?;
        if header.rows == 0 || header.columns == 0 {
            return Err(Error::bad_file(
                input.path(),
                format!("empty array of shape {}×{}", header.rows, header.columns),
            ));
        }
        let rows = 0..header.rows;
        Ok(NpyFileSource {
            input,
            header,
            stamp,
            rows,
            next_row: 0,
            raw: Vec::new(),
            _values: std::marker::PhantomData,
        })
    }

    /// Reads only the file's rows `rows` (a process's share of a data set, say); fails when
    /// they are not rows of the file.
    pub fn restrict(mut self, rows: std::ops::Range<usize>) -> Result<Self> {
        if rows.start > rows.end || rows.end > self.header.rows {
            return Err(Error::bad_file(
                self.path(),
                format!("rows {}..{} asked of a file of {} rows", rows.start, rows.end, self.header.rows),
            ));
        }
        self.next_row = rows.start;
        self.rows = rows;
        Ok(self)
    }

    /// `m`, the number of examples (rows) read: the file's, or those kept by
    /// [`restrict`](Self::restrict).
    pub fn examples(&self) -> usize {
        self.rows.len()
    }

    pub fn path(&self) -> &Path {
        self.input.path()
    }

    /// Fails when the file is no longer the one that was opened.
    fn check_unchanged(&self) -> Result<()> {
        let now = Stamp::of(self.input.file(), self.path())?;
        if now.len != self.stamp.len {
            return Err(Error::bad_file(
                self.path(),
                format!("changed size while being read: {} bytes when opened, now {}", self.stamp.len, now.len),
            ));
        }
        if now.modified != self.stamp.modified {
            return Err(Error::bad_file(self.path(), "modified while being read"));
        }
        Ok(())
    }

    fn read_at(&mut self, len: usize, offset: u64) -> Result<()> {
        self.raw.resize(len, 0);
        self.input.read_exact_at(&mut self.raw, offset)
    }
}

impl<T: Real> ExampleSource<T> for NpyFileSource<T> {
    fn features(&self) -> usize {
        self.header.columns
    }

    fn examples_hint(&self) -> Option<usize> {
        Some(self.rows.len())
    }

    fn rewind(&mut self) -> Result<()> {
        self.check_unchanged()?;
        self.next_row = self.rows.start;
        Ok(())
    }

    fn read_chunk(&mut self, buffer: &mut [T]) -> Result<usize> {
        let MatrixHeader { dtype, fortran, rows, columns: n, data_offset } = self.header;
        let count = (buffer.len() / n).min(self.rows.end - self.next_row);
        if count == 0 {
            self.check_unchanged()?;
            return Ok(0);
        }
        let size = dtype.size();
        if fortran {
            // Column j of the file holds feature j of every example, contiguous: one read per
            // feature, scattered into the examples-by-features buffer.
            for j in 0..n {
                let offset = data_offset + ((j * rows + self.next_row) * size) as u64;
                self.read_at(count * size, offset)?;
                decode(dtype, &self.raw, &mut buffer[j..count * n], n);
            }
        } else {
            let offset = data_offset + (self.next_row * n * size) as u64;
            let native = cfg!(target_endian = "little") && dtype.size() == std::mem::size_of::<T>();
            if native {
                // The file holds exactly `T`'s bytes: read them straight into the buffer.
                let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut buffer[..count * n]);
                self.input.read_exact_at(bytes, offset)?;
            } else {
                self.read_at(count * n * size, offset)?;
                decode(dtype, &self.raw, &mut buffer[..count * n], 1);
            }
        }
        self.next_row += count;
        Ok(count)
    }
}

impl<T: Real> SeekableSource<T> for NpyFileSource<T> {
    fn seek(&mut self, example: usize) -> Result<()> {
        check_seek(example, self.rows.len())?;
        self.check_unchanged()?;
        self.next_row = self.rows.start + example;
        Ok(())
    }
}

/// `.npy` files of the same width read one after another as one data set (e.g. the shards
/// of a data set too large for one file). Each shard is opened when it is reached, so the
/// number of shards is not limited by open files.
#[derive(Debug)]
pub struct ShardSource<T> {
    shards: Vec<PathBuf>,
    stamps: Vec<Stamp>,
    /// Each shard's first row in the whole, and one past its last.
    bounds: Vec<std::ops::Range<usize>>,
    features: usize,
    /// The rows of the whole read: all, or those [`restrict`](ShardSource::restrict) kept.
    rows: std::ops::Range<usize>,
    /// The row of the whole read next.
    position: usize,
    /// The shard open, by its index, reading its rows among `rows`.
    current: Option<(usize, NpyFileSource<T>)>,
}

impl<T: Real> ShardSource<T> {
    /// The shards in the given order; every one must be a valid file of the first one's width.
    pub fn new(shards: Vec<PathBuf>) -> Result<Self> {
        let Some(first) = shards.first() else {
            return Err(Error::EmptyData { what: "no shard files given" });
        };
        let mut features = None;
        let mut examples = 0;
        let mut stamps = Vec::with_capacity(shards.len());
        let mut bounds = Vec::with_capacity(shards.len());
        for path in &shards {
            let shard = NpyFileSource::<T>::open(path)?;
            let width = *features.get_or_insert(shard.features());
            if shard.features() != width {
                return Err(Error::bad_file(
                    path,
                    format!(
                        "has {} features (columns), but the first shard {} has {width}",
                        shard.features(),
                        first.display()
                    ),
                ));
            }
            stamps.push(shard.stamp);
            bounds.push(examples..examples + shard.examples());
            examples += shard.examples();
        }
        let features = features.expect("at least one shard");
        Ok(ShardSource { shards, stamps, bounds, features, rows: 0..examples, position: 0, current: None })
    }

    /// Reads only the rows `rows` of the shards taken together (a process's share of a data
    /// set, say): the shards outside them are not opened, those across their ends are read in
    /// part. Fails when they are not rows of the shards.
    pub fn restrict(mut self, rows: std::ops::Range<usize>) -> Result<Self> {
        let total = self.bounds.last().map_or(0, |last| last.end);
        if rows.start > rows.end || rows.end > total {
            let reason = format!("rows {}..{} asked of shards of {total} rows in all", rows.start, rows.end);
            return Err(Error::bad_file(&self.shards[0], reason));
        }
        self.position = rows.start;
        self.rows = rows;
        self.current = None;
        Ok(self)
    }

    /// Every `*.npy` file of `dir`, in the order of their names.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let mut shards = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
            let path = entry.map_err(io_error(dir))?.path();
            if path.extension().is_some_and(|e| e == "npy") && path.is_file() {
                shards.push(path);
            }
        }
        if shards.is_empty() {
            return Err(Error::bad_file(dir, "holds no .npy files"));
        }
        shards.sort();
        Self::new(shards)
    }

    /// `m`, the examples read: of all shards together, as counted when they were opened, or
    /// those kept by [`restrict`](Self::restrict).
    pub fn examples(&self) -> usize {
        self.rows.len()
    }

    pub fn shards(&self) -> &[PathBuf] {
        &self.shards
    }
}

impl<T: Real> ShardSource<T> {
    /// Opens the shard holding row `self.position` of the whole (which is below `rows.end`),
    /// to read from there to the end of its rows among `rows`; keeps the shard open when it
    /// holds it already.
    fn open_at_position(&mut self) -> Result<()> {
        let position = self.position;
        let index = self.bounds.partition_point(|bounds| bounds.end <= position);
        let bounds = self.bounds[index].clone();
        // Rows of the shard among `rows`, as rows of the shard, and the position among them.
        let kept = self.rows.start.max(bounds.start) - bounds.start..self.rows.end.min(bounds.end) - bounds.start;
        let within = position - bounds.start - kept.start;
        match &mut self.current {
            Some((open, shard)) if *open == index => shard.seek(within),
            _ => {
                let path = &self.shards[index];
                let shard = NpyFileSource::open(path)?;
                if shard.stamp != self.stamps[index] {
                    return Err(Error::bad_file(path, "changed since the shards were opened"));
                }
                let mut shard = shard.restrict(kept)?;
                shard.seek(within)?;
                self.current = Some((index, shard));
                Ok(())
            }
        }
    }
}

impl<T: Real> ExampleSource<T> for ShardSource<T> {
    fn features(&self) -> usize {
        self.features
    }

    fn examples_hint(&self) -> Option<usize> {
        Some(self.rows.len())
    }

    fn rewind(&mut self) -> Result<()> {
        self.position = self.rows.start;
        self.current = None;
        Ok(())
    }

    /// Fills the buffer across shard boundaries, so chunks stay full-sized.
    fn read_chunk(&mut self, buffer: &mut [T]) -> Result<usize> {
        let n = self.features;
        let mut filled = 0;
        while self.position < self.rows.end && filled * n + n <= buffer.len() {
            let read = match &mut self.current {
                Some((_, shard)) => shard.read_chunk(&mut buffer[filled * n..])?,
                None => 0,
            };
            if read == 0 {
                // The open shard's rows are all read (or none is open): the next shard, which
                // holds a row at the position (no shard is empty).
                self.open_at_position()?;
                continue;
            }
            filled += read;
            self.position += read;
        }
        Ok(filled)
    }
}

impl<T: Real> SeekableSource<T> for ShardSource<T> {
    fn seek(&mut self, example: usize) -> Result<()> {
        check_seek(example, self.rows.len())?;
        self.position = self.rows.start + example;
        if self.position < self.rows.end {
            self.open_at_position()?;
        }
        Ok(())
    }
}
