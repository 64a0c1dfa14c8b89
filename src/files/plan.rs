//! A command's files, checked before it starts: every output is a regular file (or absent) in
//! an existing, writable folder, names no input and no other output, and is locked against
//! other runs — so a typo costs seconds, not a training run, and no output replaces an input.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::atomic::{destination, split, Staged};
use super::lock::WriteLock;
use crate::error::{Error, Result};

/// What makes two paths the same file.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Identity {
    /// An existing file: its device and inode (whatever links or names lead to it).
    Inode(u64, u64),
    /// A file not yet there: its canonical folder and name.
    Path(PathBuf),
}

/// The inputs and outputs of a command, each with the option that named it (`--data`, `-o`).
#[derive(Debug, Clone, Default)]
pub struct FilePlan {
    inputs: Vec<Input>,
    outputs: Vec<(String, PathBuf)>,
}

#[derive(Debug, Clone)]
struct Input {
    option: String,
    path: PathBuf,
    /// The output option allowed to replace this input (a checkpoint resumed and updated).
    replaced_by: Option<String>,
}

impl FilePlan {
    pub fn new() -> Self {
        FilePlan::default()
    }

    /// A file (or folder of shards) the command reads.
    pub fn input(mut self, option: &str, path: impl AsRef<Path>) -> Self {
        self.inputs.push(Input { option: option.to_string(), path: path.as_ref().to_path_buf(), replaced_by: None });
        self
    }

    /// A file the command reads and that the output `output_option` may replace: the
    /// checkpoint a run resumes from and goes on writing.
    pub fn input_replaced_by(mut self, option: &str, path: impl AsRef<Path>, output_option: &str) -> Self {
        self.inputs.push(Input {
            option: option.to_string(),
            path: path.as_ref().to_path_buf(),
            replaced_by: Some(output_option.to_string()),
        });
        self
    }

    /// A file the command writes.
    pub fn output(mut self, option: &str, path: impl AsRef<Path>) -> Self {
        self.outputs.push((option.to_string(), path.as_ref().to_path_buf()));
        self
    }

    /// Checks every output (see the module's documentation) and locks them all for the
    /// caller, who holds the locks as long as it writes.
    pub fn check(&self) -> Result<Vec<WriteLock>> {
        let mut outputs: Vec<(String, Identity)> = Vec::with_capacity(self.outputs.len());
        for (option, path) in &self.outputs {
            let identity = writable(option, path)?;
            if let Some((other, _)) = outputs.iter().find(|(_, seen)| *seen == identity) {
                return Err(Error::FileClash { option: option.clone(), other: other.clone(), path: path.clone() });
            }
            outputs.push((option.clone(), identity));
        }
        for Input { option: input_option, path: input, replaced_by } in &self.inputs {
            let Ok(meta) = fs::metadata(input) else {
                continue; // Reading it will say what is wrong.
            };
            let identity = Identity::Inode(meta.dev(), meta.ino());
            for ((option, path), (_, output)) in self.outputs.iter().zip(&outputs) {
                if *output == identity && replaced_by.as_ref() != Some(option) {
                    return Err(Error::FileClash {
                        option: option.clone(),
                        other: format!("the input {input_option}"),
                        path: path.clone(),
                    });
                }
                let resolved = destination(path)?;
                if meta.is_dir() && is_npy(&resolved) && folder_identity(&resolved).as_ref() == Some(&identity) {
                    return Err(Error::BadOutput {
                        path: path.clone(),
                        reason: format!(
                            "{option} would write an .npy file into the folder of shards {input_option} {}",
                            input.display()
                        ),
                    });
                }
            }
        }
        self.outputs.iter().map(|(_, path)| WriteLock::acquire(path)).collect()
    }
}

/// Checks that `path` can be written (a regular file or absent, in a writable folder, which
/// is proven by creating and removing a temporary file there) and returns what identifies it.
fn writable(option: &str, path: &Path) -> Result<Identity> {
    let destination = destination(path).map_err(|e| with_option(e, option))?;
    let (folder, name) = split(&destination)?;
    match fs::metadata(folder) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(bad_output(option, path, format!("{} is not a folder", folder.display()))),
        Err(_) => return Err(bad_output(option, path, format!("the folder {} does not exist", folder.display()))),
    }
    drop(Staged::beside(&destination).map_err(|e| match e {
        Error::Io { source, .. } => {
            bad_output(option, path, format!("cannot create a file in {}: {source}", folder.display()))
        }
        other => other,
    })?);
    Ok(match fs::metadata(&destination) {
        Ok(meta) => Identity::Inode(meta.dev(), meta.ino()),
        Err(_) => {
            let folder = fs::canonicalize(folder).map_err(|source| Error::Io { path: folder.to_path_buf(), source })?;
            Identity::Path(folder.join(name))
        }
    })
}

/// The identity of the folder `path` is in.
fn folder_identity(path: &Path) -> Option<Identity> {
    let (folder, _) = split(path).ok()?;
    let meta = fs::metadata(folder).ok()?;
    Some(Identity::Inode(meta.dev(), meta.ino()))
}

fn is_npy(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy"))
}

fn bad_output(option: &str, path: &Path, reason: String) -> Error {
    Error::BadOutput { path: path.to_path_buf(), reason: format!("{option}: {reason}") }
}

/// `error` with the option that named its path.
fn with_option(error: Error, option: &str) -> Error {
    match error {
        Error::BadOutput { path, reason } => Error::BadOutput { path, reason: format!("{option}: {reason}") },
        other => other,
    }
}
