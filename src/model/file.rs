//! Model files: safetensors with the tensors `W1` (`h×n`), `W2` (`n×h`), `b1` (`h`), `b2`
//! (`n`) in row-major order and the working dtype, so that
//! `safetensors.numpy.load_file(path)["W1"]` is UFLDL's `W1`; string metadata records the
//! format, objective, hyper-parameters and dtype, and the model's variant (activation,
//! reconstruction, contractive weight, tied weights, corruption; absent in files of UFLDL's
//! model, which read as its defaults). Checkpoints add the optimiser's state as
//! float64 tensors and metadata under their own names.
//!
//! Writes are atomic (see [`crate::files::write_with`]): a failed write (a full disk) leaves the
//! previous file intact.

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors};

use super::safetensors_writer::TensorOut;

use super::{HyperParams, Parameters, ThetaLayout};
use crate::data::input::InputFile;
use crate::error::{Error, Result};
use crate::gemm::MatRef;
use crate::real::Real;

/// The `format` metadata of files written by this crate.
pub const FORMAT: &str = "sae";
/// The `format_version` this crate writes and reads.
pub const FORMAT_VERSION: &str = "1";
/// The `objective` metadata of the sigmoid sparse autoencoder with the KL penalty; with the L1
/// penalty it is `sparse-autoencoder-l1`.
pub const OBJECTIVE: &str = "sparse-autoencoder-kl";

/// Metadata keys this module sets itself, besides the hyper-parameters'
/// ([`HyperParams::file_metadata`]).
const RESERVED: [&str; 4] = ["format", "format_version", "sae_version", "dtype"];
const WEIGHTS: [&str; 4] = ["W1", "W2", "b1", "b2"];

/// A model as stored: hyper-parameters and parameters, with free-form metadata (e.g. how it
/// was trained) and extra float64 tensors (e.g. optimiser state in a checkpoint).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelFile<T> {
    pub hyper: HyperParams,
    pub parameters: Parameters<T>,
    /// Metadata beyond what this module records itself.
    pub metadata: BTreeMap<String, String>,
    /// Tensors beyond the weights: name → (shape, values).
    pub extra: BTreeMap<String, (Vec<usize>, Vec<f64>)>,
}

fn dtype_of<R: Real>() -> Dtype {
    if R::NAME == "f32" {
        Dtype::F32
    } else {
        Dtype::F64
    }
}

/// `values` as a tensor of `shape`.
pub(crate) fn tensor_out<'a, R: Real>(name: &str, shape: Vec<usize>, values: &'a [R]) -> TensorOut<'a> {
    TensorOut {
        name: name.to_string(),
        dtype: dtype_of::<R>(),
        shape,
        bytes: Box::new(move |out| values.iter().try_for_each(|v| out.write_all(v.to_le_bytes().as_ref()))),
    }
}

/// A matrix view as a row-major tensor.
fn matrix<'a, R: Real>(name: &str, m: MatRef<'a, R>) -> TensorOut<'a> {
    let (rows, cols) = (m.rows(), m.cols());
    TensorOut {
        name: name.to_string(),
        dtype: dtype_of::<R>(),
        shape: vec![rows, cols],
        bytes: Box::new(move |out| {
            (0..rows * cols).try_for_each(|k| out.write_all(m.get(k / cols, k % cols).to_le_bytes().as_ref()))
        }),
    }
}

impl<T: Real> ModelFile<T> {
    /// A model file of `parameters` without extra metadata or tensors.
    pub fn new(hyper: HyperParams, parameters: Parameters<T>) -> Self {
        ModelFile { hyper, parameters, metadata: BTreeMap::new(), extra: BTreeMap::new() }
    }

    /// Writes the file atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let (n, h) = (self.hyper.visible(), self.hyper.hidden());
        let mut tensors = vec![
            matrix("W1", self.parameters.w1()),
            matrix("W2", self.parameters.w2()),
            tensor_out("b1", vec![h], self.parameters.b1()),
            tensor_out("b2", vec![n], self.parameters.b2()),
        ];
        for (name, (shape, values)) in &self.extra {
            if WEIGHTS.contains(&name.as_str()) {
                return Err(Error::bad_file(path, format!("extra tensor {name:?} would overwrite a weight")));
            }
            if shape.iter().product::<usize>() != values.len() {
                return Err(Error::bad_file(
                    path,
                    format!("extra tensor {name:?} has {} values for shape {shape:?}", values.len()),
                ));
            }
            tensors.push(tensor_out(name, shape.clone(), values));
        }
        let mut metadata: BTreeMap<String, String> = BTreeMap::new();
        for (key, value) in &self.metadata {
            if RESERVED.contains(&key.as_str()) || HyperParams::is_metadata_key(key) {
                return Err(Error::bad_file(path, format!("metadata key {key:?} is reserved")));
            }
            metadata.insert(key.clone(), value.clone());
        }
        let standard = [
            ("format", FORMAT.to_string()),
            ("format_version", FORMAT_VERSION.to_string()),
            ("sae_version", env!("CARGO_PKG_VERSION").to_string()),
            ("dtype", T::NAME.to_string()),
        ];
        for (key, value) in standard.into_iter().chain(self.hyper.file_metadata()) {
            metadata.insert(key.into(), value);
        }
        super::safetensors_writer::save(path, tensors, metadata)
    }

    /// The string metadata of the safetensors file at `path`, read from its header alone (a
    /// checkpoint's history is not read).
    pub fn read_metadata(path: &Path) -> Result<BTreeMap<String, String>> {
        let input = InputFile::open(path)?;
        let bad = |reason: String| Error::bad_file(path, reason);
        let mut length = [0u8; 8];
        if input.size() < 8 {
            return Err(bad("not a readable safetensors file: shorter than its header length".into()));
        }
        input.read_exact_at(&mut length, 0)?;
        let length = u64::from_le_bytes(length);
        if length > input.size() - 8 {
            return Err(bad(format!("not a readable safetensors file: a header of {length} bytes")));
        }
        let mut header = vec![0u8; length as usize];
        input.read_exact_at(&mut header, 8)?;
        let header: serde_json::Value =
            serde_json::from_slice(&header).map_err(|e| bad(format!("not a readable safetensors file: {e}")))?;
        match header.get("__metadata__") {
            None => Ok(BTreeMap::new()),
            Some(metadata) => {
                serde_json::from_value(metadata.clone()).map_err(|e| bad(format!("metadata that is not strings: {e}")))
            }
        }
    }

    /// Reads a model file written by [`save`](Self::save) (of either dtype; values convert to
    /// `T`). Fails, naming the file, on anything else: not safetensors, another objective or
    /// format version, missing or misshapen tensors, non-finite weights.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = InputFile::open(path)?.read_all()?;
        let file = SafeTensors::deserialize(&bytes)
            .map_err(|e| Error::bad_file(path, format!("not a readable safetensors file: {e}")))?;
        let (_, header) = SafeTensors::read_metadata(&bytes)
            .map_err(|e| Error::bad_file(path, format!("not a readable safetensors file: {e}")))?;
        let mut metadata: BTreeMap<String, String> =
            header.metadata().clone().unwrap_or_default().into_iter().collect();
        // Which build wrote the file does not matter once its format version is known.
        metadata.remove("sae_version");
        let mut take = |key: &str| {
            metadata
                .remove(key)
                .ok_or_else(|| Error::bad_file(path, format!("no {key:?} in the metadata: not an sae model file")))
        };
        let format = take("format")?;
        let version = take("format_version")?;
        if format != FORMAT || version != FORMAT_VERSION {
            return Err(Error::bad_file(
                path,
                format!("format {format} version {version}; this build reads {FORMAT} version {FORMAT_VERSION}"),
            ));
        }
        take("dtype")?;
        let hyper = HyperParams::from_metadata(|key| metadata.remove(key))
            .map_err(|fault| Error::bad_file(path, format!("metadata {} {}", fault.key, fault.reason)))?;
        let (visible, hidden) = (hyper.visible(), hyper.hidden());

        let (n, h) = (visible, hidden);
        let tensor = |name: &str, shape: &[usize]| -> Result<Vec<f64>> {
            let view = file.tensor(name).map_err(|_| Error::bad_file(path, format!("no tensor {name:?}")))?;
            if view.shape() != shape {
                return Err(Error::bad_file(
                    path,
                    format!("tensor {name} has shape {:?}, expected {shape:?}", view.shape()),
                ));
            }
            decode(view.dtype(), view.data()).ok_or_else(|| {
                Error::bad_file(path, format!("tensor {name} has dtype {:?}, expected F32 or F64", view.dtype()))
            })
        };
        let (w1, w2) = (tensor("W1", &[h, n])?, tensor("W2", &[n, h])?);
        let (b1, b2) = (tensor("b1", &[h])?, tensor("b2", &[n])?);
        let layout = ThetaLayout::new(n, h);
        let mut theta = vec![T::zero(); layout.len()];
        let hn = layout.weights_len();
        // Row-major in the file, column-major in theta.
        for i in 0..h {
            for j in 0..n {
                theta[j * h + i] = T::cast(w1[i * n + j]);
                theta[hn + i * n + j] = T::cast(w2[j * h + i]);
            }
        }
        for (t, &v) in theta[2 * hn..].iter_mut().zip(b1.iter().chain(&b2)) {
            *t = T::cast(v);
        }
        let parameters =
            Parameters::from_theta(n, h, theta).map_err(|e| Error::bad_file(path, format!("invalid weights: {e}")))?;

        let mut extra = BTreeMap::new();
        for name in file.names() {
            if WEIGHTS.contains(&name) {
                continue;
            }
            let view = file.tensor(name).expect("listed by names()");
            let values = decode(view.dtype(), view.data()).ok_or_else(|| {
                Error::bad_file(path, format!("tensor {name} has dtype {:?}, expected F32 or F64", view.dtype()))
            })?;
            extra.insert(name.to_string(), (view.shape().to_vec(), values));
        }
        Ok(ModelFile { hyper, parameters, metadata, extra })
    }
}

/// Little-endian F32 or F64 bytes as f64 values; `None` for another dtype.
pub(crate) fn decode(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f64>> {
    match dtype {
        Dtype::F32 => {
            Some(bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")) as f64).collect())
        }
        Dtype::F64 => Some(bytes.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes"))).collect()),
        _ => None,
    }
}
