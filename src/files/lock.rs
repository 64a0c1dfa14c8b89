//! Advisory locks on the files a run writes, so that two runs given the same output path do
//! not interleave their writes (a model from one run beside a checkpoint from the other).
//!
//! The lock on `path` is an exclusive `flock` on `.{name}.sae-lock` beside its destination,
//! which holds the owner's process id (for the error message). The lock file is removed when
//! the lock is released; one left by a killed run is unlocked and is taken over by the next.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::atomic::{destination, split};
use crate::error::{Error, Result};

/// The right to write one path, held until dropped.
#[derive(Debug)]
pub struct WriteLock {
    lock_path: PathBuf,
    file: File,
}

impl WriteLock {
    /// Takes the lock on writing `path`, or fails at once with [`Error::InUse`] when another
    /// run holds it.
    pub fn acquire(path: &Path) -> Result<WriteLock> {
        let destination = destination(path)?;
        let (folder, name) = split(&destination)?;
        let mut lock_name = std::ffi::OsString::from(".");
        lock_name.push(name);
        lock_name.push(".sae-lock");
        let lock_path = folder.join(lock_name);
        let io = |source| Error::Io { path: path.to_path_buf(), source };
        loop {
            // Never through a symbolic link: the lock file is truncated once locked.
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o666)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&lock_path)
                .map_err(io)?;
            if file.try_lock().is_err() {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(Error::InUse { path: path.to_path_buf(), holder: holder.trim().parse().ok() });
            }
            // The previous owner may have removed the file between our open and our lock: the
            // lock is only ours if the path still names the file we locked.
            let same = match (fs::symlink_metadata(&lock_path), file.metadata()) {
                (Ok(on_disk), Ok(ours)) => on_disk.dev() == ours.dev() && on_disk.ino() == ours.ino(),
                _ => false,
            };
            if !same {
                continue;
            }
            file.set_len(0).and_then(|_| file.seek(SeekFrom::Start(0))).map_err(io)?;
            write!(file, "{}", std::process::id()).map_err(io)?;
            return Ok(WriteLock { lock_path, file });
        }
    }
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        // Removed while still locked, so that no one takes a lock on a file about to vanish.
        let _ = fs::remove_file(&self.lock_path);
        let _ = self.file.unlock();
    }
}
