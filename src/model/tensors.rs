//! Model files of the networks beyond the single autoencoder (the variational autoencoder, the
//! fine-tuned stack): safetensors holding named matrices of one parameter vector, each stored
//! row-major as float64 (`out×in`, as PyTorch's `state_dict`), with string metadata. Writes
//! are atomic.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors};

use super::safetensors_writer::TensorOut;

use crate::data::input::InputFile;
use crate::error::{Error, Result};
use crate::real::Real;

/// One matrix of a parameter vector: `rows×cols` column-major at `offset` (a vector when
/// `cols` is 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NamedMatrix {
    pub name: String,
    pub rows: usize,
    pub cols: usize,
    pub offset: usize,
}

impl NamedMatrix {
    pub fn new(name: impl Into<String>, rows: usize, cols: usize, offset: usize) -> Self {
        NamedMatrix { name: name.into(), rows, cols, offset }
    }

    fn dims(&self) -> Vec<usize> {
        if self.cols == 1 {
            vec![self.rows]
        } else {
            vec![self.rows, self.cols]
        }
    }
}

/// Writes the `matrices` of `theta` to `path`, atomically, with the metadata `format`,
/// `format_version`, `objective`, the model's `recorded` keys and its `free` ones.
pub(crate) fn save<T: Real>(
    path: &Path,
    theta: &[T],
    matrices: &[NamedMatrix],
    objective: &str,
    recorded: &[(&str, String)],
    free: &[(String, String)],
) -> Result<()> {
    let mut metadata: BTreeMap<String, String> = free.iter().cloned().collect();
    let standard = [
        ("format", super::FORMAT.to_string()),
        ("format_version", super::FORMAT_VERSION.to_string()),
        ("objective", objective.to_string()),
    ];
    for (key, value) in standard.iter().chain(recorded) {
        metadata.insert(key.to_string(), value.clone());
    }
    let tensors = matrices
        .iter()
        .map(|m| TensorOut {
            name: m.name.clone(),
            dtype: Dtype::F64,
            shape: m.dims(),
            bytes: Box::new(move |out| {
                (0..m.rows * m.cols).try_for_each(|k| {
                    let (r, c) = (k / m.cols, k % m.cols);
                    out.write_all(&theta[m.offset + r + c * m.rows].as_f64().to_le_bytes())
                })
            }),
        })
        .collect();
    super::safetensors_writer::save(path, tensors, metadata)
}

/// A file read by [`open`]: its bytes and metadata.
pub(crate) struct TensorFile {
    bytes: Vec<u8>,
    pub metadata: HashMap<String, String>,
}

/// Reads the file at `path` and its metadata; fails naming the file when it is not
/// safetensors or when its `objective` metadata is not `objective`.
pub(crate) fn open(path: &Path, objective: &str) -> Result<TensorFile> {
    let bytes = InputFile::open(path)?.read_all()?;
    let (_, header) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| Error::bad_file(path, format!("not a readable safetensors file: {e}")))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let (format, version) = (metadata.get("format"), metadata.get("format_version"));
    if format.map(String::as_str) != Some(super::FORMAT) || version.map(String::as_str) != Some(super::FORMAT_VERSION) {
        let reads = format!("this build reads {} version {}", super::FORMAT, super::FORMAT_VERSION);
        return Err(Error::bad_file(path, format!("format {format:?} version {version:?}; {reads}")));
    }
    match metadata.get("objective") {
        Some(found) if found == objective => Ok(TensorFile { bytes, metadata }),
        found => Err(Error::bad_file(path, format!("not a {objective} model (objective {found:?})"))),
    }
}

impl TensorFile {
    /// Whether the file is large enough to hold `rows×cols` float64 values: sizes read from
    /// the metadata are checked with this before anything is computed or allocated from them.
    pub fn holds(&self, rows: usize, cols: usize) -> bool {
        rows.checked_mul(cols).and_then(|v| v.checked_mul(8)).is_some_and(|bytes| bytes <= self.bytes.len())
    }

    /// The metadata `key` as a count (see [`super::metadata::count`]); fails naming the file
    /// and the key.
    pub fn count(&self, path: &Path, key: &str) -> Result<usize> {
        let value =
            self.metadata.get(key).ok_or_else(|| Error::bad_file(path, format!("no {key:?} in the metadata")))?;
        super::metadata::count(value)
            .ok_or_else(|| Error::bad_file(path, format!("metadata {key} = {value:?} is not a count")))
    }

    /// The free metadata: all but the standard keys and the model's `recorded` ones, sorted by
    /// key.
    pub fn free_metadata(&self, recorded: &[&str]) -> Vec<(String, String)> {
        let standard = ["format", "format_version", "objective"];
        let mut other: Vec<(String, String)> = self
            .metadata
            .iter()
            .filter(|(k, _)| !recorded.contains(&k.as_str()) && !standard.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        other.sort();
        other
    }

    /// The parameter vector of length `len` holding `matrices`, each checked for its shape,
    /// dtype and finite values, and for lying within `len`.
    pub fn theta<T: Real>(&self, path: &Path, len: usize, matrices: &[NamedMatrix]) -> Result<Vec<T>> {
        let bad = |reason: String| Error::bad_file(path, reason);
        let file =
            SafeTensors::deserialize(&self.bytes).map_err(|e| bad(format!("not a readable safetensors file: {e}")))?;
        // Every tensor is checked before `theta` is allocated: the sizes the metadata implies
        // are trusted only once the file is seen to hold them.
        let mut views = Vec::with_capacity(matrices.len());
        let mut held = 0usize;
        for m in matrices {
            let view = file.tensor(&m.name).map_err(|_| bad(format!("no tensor {:?}", m.name)))?;
            if view.shape() != m.dims() || view.dtype() != Dtype::F64 {
                let (dtype, shape) = (view.dtype(), view.shape());
                return Err(bad(format!("tensor {} is {dtype:?} {shape:?}, expected F64 {:?}", m.name, m.dims())));
            }
            let end = m.offset.checked_add(view.data().len() / 8).filter(|&end| end <= len);
            if end.is_none() {
                return Err(bad(format!("tensor {} does not fit in the {len} parameters of the model", m.name)));
            }
            held += view.data().len() / 8;
            views.push(view);
        }
        if held != len {
            return Err(bad(format!("the tensors hold {held} parameters, the model has {len}")));
        }
        let mut theta = vec![T::zero(); len];
        for (m, view) in matrices.iter().zip(views) {
            for (i, chunk) in view.data().chunks_exact(8).enumerate() {
                let value = f64::from_le_bytes(chunk.try_into().expect("8 bytes"));
                if !value.is_finite() {
                    return Err(bad(format!("tensor {} holds {value} at {i}", m.name)));
                }
                theta[m.offset + i / m.cols + (i % m.cols) * m.rows] = T::cast(value);
            }
        }
        Ok(theta)
    }
}
