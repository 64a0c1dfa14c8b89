//! `sae encode --sparse`: a dictionary's codes as a compressed-sparse-row matrix in the layout
//! of `scipy.sparse.save_npz` — an `.npz` (a zip of `.npy` arrays, stored uncompressed) that
//! `scipy.sparse.load_npz` reads as an `m×h` matrix and `numpy.load` as its arrays:
//!
//! - `data`: the active latents' values, in the model's dtype;
//! - `indices`: their latents (int32), increasing within each example;
//! - `indptr`: int64, `m + 1` offsets, example `i`'s entries at `indptr[i]..indptr[i+1]`;
//! - `shape`: int64 `[m, h]`; `format`: `b"csr"`.
//!
//! The arrays are written to unnamed temporary files beside the output as the chunks are
//! encoded, and copied into the archive at the end: memory is a chunk's codes, whatever the
//! data's size; the output appears whole or not at all.

use std::fs::File;
use std::io::{self, BufWriter, Seek, Write};
use std::path::{Path, PathBuf};

use ndarray_npy::npy::header::{Header, Layout};
use py_literal::Value as PyValue;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use super::CliResult;
use sae::dictionary::select::INACTIVE;
use sae::files::Staged;
use sae::Real;

/// One array of the archive, staged in a temporary file.
struct StagedArray {
    file: BufWriter<File>,
    /// Values written.
    len: u64,
}

impl StagedArray {
    fn beside(path: &Path) -> CliResult<Self> {
        let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let file = tempfile::tempfile_in(folder).map_err(|e| format!("{}: a temporary file: {e}", folder.display()))?;
        Ok(StagedArray { file: BufWriter::with_capacity(1 << 20, file), len: 0 })
    }

    fn push(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.len += 1;
        self.file.write_all(bytes)
    }

    /// Copies the array, with its `.npy` header (`descriptor`, `shape`), to the open archive
    /// entry `out`.
    fn copy_into(self, out: &mut impl Write, descriptor: &str, shape: Vec<usize>) -> CliResult<()> {
        let header = Header { type_descriptor: PyValue::String(descriptor.into()), layout: Layout::Standard, shape };
        out.write_all(&header.to_bytes().map_err(|e| format!("an .npy header: {e}"))?)?;
        let mut file = self.file.into_inner().map_err(|e| e.into_error())?;
        file.rewind()?;
        io::copy(&mut file, out)?;
        Ok(())
    }
}

/// Writes the codes of `sae encode --sparse`, a chunk of examples at a time.
pub struct CsrWriter<T> {
    path: PathBuf,
    latents: usize,
    data: StagedArray,
    indices: StagedArray,
    indptr: StagedArray,
    entries: u64,
    /// One example's (latent, value) pairs, sorted before they are written.
    row: Vec<(u32, T)>,
}

impl<T: Real> CsrWriter<T> {
    /// Starts the codes of a model of `latents` latents, to be written to `path`.
    pub fn create(path: &Path, latents: usize) -> CliResult<Self> {
        if i32::try_from(latents).is_err() {
            return Err(format!("{latents} latents: beyond the int32 indices of a scipy CSR matrix").into());
        }
        let mut indptr = StagedArray::beside(path)?;
        indptr.push(&0i64.to_le_bytes())?;
        Ok(CsrWriter {
            path: path.to_path_buf(),
            latents,
            data: StagedArray::beside(path)?,
            indices: StagedArray::beside(path)?,
            indptr,
            entries: 0,
            row: Vec::new(),
        })
    }

    /// Appends examples whose codes are `slots` (latent, value) slots each, as the encoder
    /// leaves them: the latents `INACTIVE` in unused slots, the values in `values`.
    pub fn push(&mut self, indices: &[u32], values: &[T], slots: usize) -> CliResult<()> {
        for (indices, values) in indices.chunks_exact(slots).zip(values.chunks_exact(slots)) {
            self.row.clear();
            self.row.extend(indices.iter().zip(values).filter(|(&j, _)| j != INACTIVE).map(|(&j, &v)| (j, v)));
            self.row.sort_unstable_by_key(|&(j, _)| j);
            for &(j, v) in &self.row {
                self.indices.push(&(j as i32).to_le_bytes())?;
                self.data.push(v.to_le_bytes().as_ref())?;
            }
            self.entries += self.row.len() as u64;
            self.indptr.push(&(self.entries as i64).to_le_bytes())?;
        }
        Ok(())
    }

    /// Writes the archive beside the output and renames it into place; returns the examples
    /// and the entries written.
    pub fn finish(self) -> CliResult<(u64, u64)> {
        let rows = self.indptr.len - 1;
        let entries = self.entries;
        let mut staged = Staged::beside(&self.path)?;
        let mut zip = ZipWriter::new(io::BufWriter::with_capacity(1 << 20, staged.file()));
        let options = SimpleFileOptions::default().compression_method(CompressionMethod::Stored).large_file(true);
        let float = if T::NAME == "f32" { "<f4" } else { "<f8" };
        let count = |len: u64| usize::try_from(len).map_err(|_| format!("{len} values: beyond this machine's sizes"));
        let (data_len, indices_len, indptr_len) = (count(self.data.len)?, count(self.indices.len)?, count(rows + 1)?);
        let archive_error = |e: zip::result::ZipError| format!("{}: {e}", self.path.display());
        zip.start_file("indices.npy", options).map_err(archive_error)?;
        self.indices.copy_into(&mut zip, "<i4", vec![indices_len])?;
        zip.start_file("indptr.npy", options).map_err(archive_error)?;
        self.indptr.copy_into(&mut zip, "<i8", vec![indptr_len])?;
        zip.start_file("format.npy", options).map_err(archive_error)?;
        small_array(&mut zip, "|S3", vec![], b"csr")?;
        zip.start_file("shape.npy", options).map_err(archive_error)?;
        let shape: Vec<u8> = [rows as i64, self.latents as i64].iter().flat_map(|v| v.to_le_bytes()).collect();
        small_array(&mut zip, "<i8", vec![2], &shape)?;
        zip.start_file("data.npy", options).map_err(archive_error)?;
        self.data.copy_into(&mut zip, float, vec![data_len])?;
        zip.finish().map_err(archive_error)?.flush()?;
        staged.commit()?;
        Ok((rows, entries))
    }
}

/// An `.npy` array of `bytes` (its values, little-endian), shape `shape`, written to `out`.
fn small_array(out: &mut impl Write, descriptor: &str, shape: Vec<usize>, bytes: &[u8]) -> CliResult<()> {
    let header = Header { type_descriptor: PyValue::String(descriptor.into()), layout: Layout::Standard, shape };
    out.write_all(&header.to_bytes().map_err(|e| format!("an .npy header: {e}"))?)?;
    out.write_all(bytes)?;
    Ok(())
}
