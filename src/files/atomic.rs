//! Atomic file replacement, the way a careful Unix tool does it.
//!
//! A file is written to a temporary file beside its destination, named
//! `.{name}.sae-tmp.{pid}.{n}` and locked (`flock`) by the writing process; it is synced,
//! renamed over the destination, and the folder is synced before the write is reported done.
//! A failure at any point (a full disk, an error of the writer) removes the temporary file and
//! leaves the previous file intact; a killed process leaves its temporary file unlocked, and the
//! next write to the same destination removes it.
//!
//! Modes are those of any Unix tool: a new file gets `0666 & !umask` (the temporary file is
//! created with mode 0666 and the kernel applies the umask), a replaced file keeps its mode.
//! The destination must be a regular file or absent; a symbolic link is written through (its
//! target is replaced, the link stays); directories, devices, FIFOs and sockets are refused.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// The infix of every temporary file this module creates.
const TEMPORARY: &str = ".sae-tmp.";

/// Where a write to `path` really goes: `path` itself when it is a regular file or absent,
/// the target of a symbolic link to a regular file; any other kind of file is an error.
pub fn destination(path: &Path) -> Result<PathBuf> {
    let refuse = |reason: &str| Error::BadOutput { path: path.to_path_buf(), reason: reason.to_string() };
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(path.to_path_buf()),
        Err(source) => Err(Error::Io { path: path.to_path_buf(), source }),
        Ok(meta) if meta.file_type().is_symlink() => {
            let target = fs::canonicalize(path).map_err(|_| refuse("a symbolic link to a missing file"))?;
            match fs::metadata(&target) {
                Ok(meta) if meta.is_file() => Ok(target),
                Ok(meta) => Err(refuse(&format!("a symbolic link to {}", kind_of(&meta.file_type())))),
                Err(source) => Err(Error::Io { path: target, source }),
            }
        }
        Ok(meta) if meta.is_file() => Ok(path.to_path_buf()),
        Ok(meta) => Err(refuse(&format!("{}, not a regular file", kind_of(&meta.file_type())))),
    }
}

/// What kind of file, in words, for errors.
pub(crate) fn kind_of(kind: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_dir() {
        "a directory"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_symlink() {
        "a symbolic link"
    } else {
        "a regular file"
    }
}

/// The folder of `path` (`.` for a bare file name) and its file name.
pub(crate) fn split(path: &Path) -> Result<(&Path, &std::ffi::OsStr)> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::BadOutput { path: path.to_path_buf(), reason: "not a file name".into() })?;
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Ok((folder, name))
}

/// A file being written: a locked temporary file beside its destination, renamed over the
/// destination by [`commit`](Self::commit) and removed if dropped before.
#[derive(Debug)]
pub struct Staged {
    destination: PathBuf,
    temporary: PathBuf,
    file: Option<File>,
}

impl Staged {
    /// Starts writing `path` (see `destination`): removes the temporaries that killed
    /// writers left for it, then creates and locks a new one.
    pub fn beside(path: &Path) -> Result<Staged> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let destination = destination(path)?;
        let (folder, name) = split(&destination)?;
        let io = |source| Error::Io { path: path.to_path_buf(), source };
        remove_abandoned(folder, name);
        let mut temp_name = std::ffi::OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!("{TEMPORARY}{}.{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
        let temporary = folder.join(temp_name);
        // A replaced file keeps its mode, set once the file is private to us (it may be more
        // restrictive than the umask's); a new file gets 0666 less the umask from the kernel.
        let replaced = fs::metadata(&destination).ok().map(|meta| meta.permissions().mode() & 0o7777);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(if replaced.is_some() { 0o600 } else { 0o666 })
            .open(&temporary)
            .map_err(io)?;
        let staged = Staged { destination, temporary, file: Some(file) };
        let file = staged.file.as_ref().expect("just opened");
        // Locked while this process lives: the next writer knows the file is not abandoned.
        file.try_lock().map_err(|e| io(io::Error::other(e.to_string())))?;
        if let Some(mode) = replaced {
            file.set_permissions(fs::Permissions::from_mode(mode)).map_err(io)?;
        }
        Ok(staged)
    }

    /// The temporary file, to write to.
    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("present until committed")
    }

    /// Syncs the file, renames it over the destination and syncs the folder.
    pub fn commit(mut self) -> Result<()> {
        let destination = self.destination.clone();
        let io = |source| Error::Io { path: destination.clone(), source };
        // Until the rename succeeds the file stays ours, so that dropping `self` on an error
        // removes it.
        self.file().sync_all().map_err(io)?;
        fs::rename(&self.temporary, &self.destination).map_err(io)?;
        drop(self.file.take());
        let (folder, _) = split(&self.destination)?;
        File::open(folder).and_then(|dir| dir.sync_all()).map_err(io)
    }
}

/// Writes go to the temporary file.
impl Write for Staged {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file().flush()
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.temporary);
        }
    }
}

/// Removes the temporary files for `name` in `folder` that no live process holds: those of
/// writers that were killed. Best effort: a file that cannot be checked is left alone.
fn remove_abandoned(folder: &Path, name: &std::ffi::OsStr) {
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(name);
    prefix.push(TEMPORARY);
    let (Some(prefix), Ok(entries)) = (prefix.to_str(), fs::read_dir(folder)) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(pid) = file_name.to_str().and_then(|n| n.strip_prefix(prefix)).and_then(|rest| rest.split('.').next())
        else {
            continue;
        };
        // Not opened unless a regular file (opening a FIFO would wait), and never a file of a
        // live process, which may have created it and not locked it yet.
        if !entry.file_type().is_ok_and(|kind| kind.is_file()) || Path::new("/proc").join(pid).exists() {
            continue;
        }
        let Ok(file) = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(entry.path()) else {
            continue;
        };
        if file.try_lock().is_ok() {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Writes through `write` (buffered) into a temporary file, then replaces `path` with it.
pub fn write_with(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<&mut File>) -> std::result::Result<(), String>,
) -> Result<()> {
    let mut staged = Staged::beside(path)?;
    {
        let mut w = BufWriter::with_capacity(1 << 20, staged.file());
        write(&mut w)
            .map_err(|reason| Error::BadFile { path: path.to_path_buf(), reason: format!("write failed: {reason}") })?;
        w.flush().map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    }
    staged.commit()
}
