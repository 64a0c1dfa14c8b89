//! Input files as every reader of the crate opens them: regular files only, with their size
//! known before a byte is read, so that no header can claim more data than the file holds and
//! no read runs on without end (`/dev/zero`, a FIFO, a directory are refused, naming the file).

use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A regular file opened for reading, and its size in bytes when it was opened.
#[derive(Debug)]
pub struct InputFile {
    path: PathBuf,
    file: File,
    size: u64,
}

/// Fails, naming the file and what it is, unless `meta` describes a regular file.
fn refuse_unless_regular(path: &Path, meta: &Metadata) -> Result<()> {
    if meta.is_file() {
        return Ok(());
    }
    let what = crate::files::kind_of(&meta.file_type());
    Err(Error::bad_file(path, format!("{what}, not a regular file: only regular files are read")))
}

impl InputFile {
    /// Opens `path` (following symbolic links) when it is a regular file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let io = |source| Error::Io { path: path.clone(), source };
        // Looked at before opening, because opening a FIFO waits for a writer.
        refuse_unless_regular(&path, &std::fs::metadata(&path).map_err(io)?)?;
        let file = File::open(&path).map_err(io)?;
        // And the file opened, which is not necessarily the one looked at.
        let meta = file.metadata().map_err(io)?;
        refuse_unless_regular(&path, &meta)?;
        Ok(InputFile { size: meta.len(), path, file })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    /// The size in bytes when the file was opened.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The whole file: exactly [`size`](Self::size) bytes, or an error if it changed size
    /// while being read (it is never read beyond one byte more than that).
    pub fn read_all(&self) -> Result<Vec<u8>> {
        let size = usize::try_from(self.size)
            .map_err(|_| Error::bad_file(&self.path, format!("{} bytes do not fit in memory", self.size)))?;
        let mut bytes = Vec::with_capacity(size);
        (&self.file).take(self.size + 1).read_to_end(&mut bytes).map_err(|e| self.read_error(e))?;
        if bytes.len() != size {
            return Err(Error::bad_file(
                &self.path,
                format!("changed size while being read: {} bytes when opened, {} read", self.size, bytes.len()),
            ));
        }
        Ok(bytes)
    }

    /// Fills `buffer` from `offset`; reading past the end is an error saying the file is
    /// truncated.
    pub fn read_exact_at(&self, buffer: &mut [u8], offset: u64) -> Result<()> {
        self.file.read_exact_at(buffer, offset).map_err(|e| self.read_error(e))
    }

    /// An I/O error while reading, as the crate's error naming the file.
    pub fn read_error(&self, error: std::io::Error) -> Error {
        match error.kind() {
            std::io::ErrorKind::UnexpectedEof => Error::bad_file(&self.path, "truncated while being read"),
            _ => Error::Io { path: self.path.clone(), source: error },
        }
    }
}
