//! Atomic file replacement: every file this crate writes is written to a temporary file in
//! the destination's directory, flushed and synced, then renamed over the destination. A
//! failure at any point (a full disk, a crash) leaves the previous file intact and removes
//! the temporary one.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use tempfile::NamedTempFile;

use crate::error::{Error, Result};

/// A new temporary file in the directory of `path`, so that renaming it over `path` is atomic.
pub fn temporary_beside(path: &Path) -> Result<NamedTempFile> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    tempfile::Builder::new()
        .prefix(".sae-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|source| Error::Io { path: path.to_path_buf(), source })
}

/// Syncs `tmp` and renames it over `path`.
pub fn persist(tmp: NamedTempFile, path: &Path) -> Result<()> {
    let io = |source| Error::Io { path: path.to_path_buf(), source };
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

/// Writes through `write` (buffered) into a temporary file, then replaces `path` with it.
pub fn write_with(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<&mut File>) -> std::result::Result<(), String>,
) -> Result<()> {
    let mut tmp = temporary_beside(path)?;
    {
        let mut w = BufWriter::new(tmp.as_file_mut());
        write(&mut w)
            .map_err(|reason| Error::BadFile { path: path.to_path_buf(), reason: format!("write failed: {reason}") })?;
        w.flush().map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    }
    persist(tmp, path)
}

/// Has `write` write a temporary file by its path (for writers that open files themselves),
/// then replaces `path` with it.
pub fn replace_with(path: &Path, write: impl FnOnce(&Path) -> std::result::Result<(), String>) -> Result<()> {
    let tmp = temporary_beside(path)?;
    write(tmp.path())
        .map_err(|reason| Error::BadFile { path: path.to_path_buf(), reason: format!("write failed: {reason}") })?;
    persist(tmp, path)
}
