//! The SAELens layout of a sparse autoencoder: a folder of `sae_weights.safetensors`
//! (`W_enc` `n×h`, `b_enc` `h`, `W_dec` `h×n`, `b_dec` `n`) and `cfg.json` (`architecture`,
//! `d_in`, `d_sae`, `activation_fn_str`, `apply_b_dec_to_input`, `normalize_activations`,
//! `dtype`, …), which SAELens's `SAE.load_from_disk` reads.
//!
//! SAELens's `"standard"` architecture encodes `f = relu((x − [b_dec]) W_enc + b_enc)` and
//! decodes `x̂ = f W_dec + b_dec`: with ReLU hidden units and linear outputs this crate's model
//! `a2 = relu(W1 x + b1)`, `a3 = W2 a2 + b2` is exactly that, with `W_enc = W1ᵀ`,
//! `b_enc = b1`, `W_dec = W2ᵀ`, `b_dec = b2` and the decoder bias not applied to the input.
//! A model SAELens cannot compute (sigmoid or tanh hidden units, sigmoid outputs) is refused
//! with the reason. Reading accepts either setting of `apply_b_dec_to_input`
//! (`b1 = b_enc − W_encᵀ b_dec` when it is applied).

use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors};

use super::file::{tensor_out, ModelFile};
use super::{Activation, HyperParams, Parameters, Reconstruction, SparsityPenalty};
use crate::error::{Error, Result};
use crate::real::Real;

/// The weights' file of a SAELens folder.
pub const WEIGHTS_FILE: &str = "sae_weights.safetensors";
/// The configuration's file of a SAELens folder.
pub const CONFIG_FILE: &str = "cfg.json";

/// Why `hyper` has no SAELens `"standard"` form, if it has none.
pub fn unrepresentable(hyper: &HyperParams) -> Option<String> {
    if hyper.activation() != Activation::Relu {
        return Some(format!(
            "SAELens's standard SAE has ReLU hidden units; this model's are {}",
            hyper.activation().name()
        ));
    }
    if hyper.reconstruction() != Reconstruction::LinearSquaredError {
        return Some(format!(
            "SAELens's standard SAE decodes linearly; this model's reconstruction is {}",
            hyper.reconstruction().name()
        ));
    }
    None
}

/// Writes `model` to the folder `dir` (made if missing) in the SAELens layout; fails, naming
/// the reason, for a model SAELens cannot compute. Each file is written atomically.
pub fn export<T: Real>(model: &ModelFile<T>, dir: &Path) -> Result<()> {
    if let Some(reason) = unrepresentable(&model.hyper) {
        return Err(Error::InvalidOption { name: "format saelens", reason });
    }
    std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.to_path_buf(), source })?;
    let (n, h) = (model.hyper.visible(), model.hyper.hidden());
    let p = &model.parameters;
    // Row-major `n×h` from `h×n` and back: the transposes of W1 and W2.
    let w_enc: Vec<T> = (0..n * h).map(|k| p.w1().get(k % h, k / h)).collect();
    let w_dec: Vec<T> = (0..h * n).map(|k| p.w2().get(k % n, k / n)).collect();
    let tensors = vec![
        tensor_out("W_enc", vec![n, h], &w_enc),
        tensor_out("b_enc", vec![h], p.b1()),
        tensor_out("W_dec", vec![h, n], &w_dec),
        tensor_out("b_dec", vec![n], p.b2()),
    ];
    super::safetensors_writer::save(&dir.join(WEIGHTS_FILE), tensors, Default::default())?;
    let config = serde_json::json!({
        "architecture": "standard",
        "d_in": n,
        "d_sae": h,
        "activation_fn_str": "relu",
        "activation_fn_kwargs": {},
        "apply_b_dec_to_input": false,
    });
    write_config::<T>(dir, config)
}

/// Writes the SAELens folder's `cfg.json`: the architecture's own fields `specific`, over the
/// fields every SAELens configuration has — the dtype, no activation normalisation, and what
/// this crate does not know (the language model and hook the activations came from) at
/// neutral values.
pub(crate) fn write_config<T: Real>(dir: &Path, specific: serde_json::Value) -> Result<()> {
    let mut config = serde_json::json!({
        "finetuning_scaling_factor": false,
        "normalize_activations": "none",
        "dtype": if T::NAME == "f32" { "float32" } else { "float64" },
        "device": "cpu",
        "context_size": 0,
        "model_name": "",
        "hook_name": "",
        "hook_layer": 0,
        "hook_head_index": null,
        "prepend_bos": false,
        "dataset_path": "",
        "dataset_trust_remote_code": false,
        "sae_lens_training_version": null,
        "model_from_pretrained_kwargs": {},
        "seqpos_slice": [null],
        "neuronpedia_id": null,
        "metadata": { "written_by": format!("sae {}", env!("CARGO_PKG_VERSION")) },
    });
    if let (Some(all), serde_json::Value::Object(own)) = (config.as_object_mut(), specific) {
        all.extend(own);
    }
    let text = serde_json::to_string_pretty(&config).expect("a JSON value serialises");
    crate::files::write_with(&dir.join(CONFIG_FILE), |out| {
        std::io::Write::write_all(out, text.as_bytes()).map_err(|e| e.to_string())
    })
}

/// Whether the SAELens folder `dir` holds float32 weights (its `cfg.json`'s `dtype`): the
/// precision to [`import`] it in without a conversion. `false` when it cannot tell.
pub fn is_float32(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join(CONFIG_FILE))
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .is_some_and(|config| config.get("dtype").and_then(serde_json::Value::as_str) == Some("float32"))
}

/// The model of the SAELens folder `dir` (`"standard"` architecture, ReLU, no activation
/// normalisation), in `T`: ReLU hidden units, linear outputs, the L1 penalty (SAELens's
/// training loss; its weight is not in the folder and is left at its default).
pub fn import<T: Real>(dir: &Path) -> Result<ModelFile<T>> {
    let config_path = dir.join(CONFIG_FILE);
    let text =
        std::fs::read_to_string(&config_path).map_err(|source| Error::Io { path: config_path.clone(), source })?;
    let config: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::bad_file(&config_path, format!("not JSON: {e}")))?;
    let field = |key: &str| config.get(key).filter(|v| !v.is_null());
    let text_of = |key: &str| field(key).and_then(serde_json::Value::as_str);
    let bad = |reason: String| Error::bad_file(&config_path, reason);
    if let Some(architecture) = text_of("architecture").filter(|a| *a != "standard") {
        return Err(bad(format!("architecture {architecture:?}: only \"standard\" SAEs are read")));
    }
    if let Some(activation) = text_of("activation_fn_str").filter(|a| *a != "relu") {
        return Err(bad(format!("activation_fn_str {activation:?}: only ReLU SAEs are read")));
    }
    if let Some(normalization) = text_of("normalize_activations").filter(|a| *a != "none") {
        return Err(bad(format!("normalize_activations {normalization:?}: its scaling is not in the folder")));
    }
    let size = |key: &str| {
        field(key).and_then(serde_json::Value::as_u64).map(|v| v as usize).ok_or_else(|| bad(format!("no {key}")))
    };
    let (n, h) = (size("d_in")?, size("d_sae")?);
    let applies_b_dec = field("apply_b_dec_to_input").and_then(serde_json::Value::as_bool).unwrap_or(false);

    let weights_path = dir.join(WEIGHTS_FILE);
    let bytes = std::fs::read(&weights_path).map_err(|source| Error::Io { path: weights_path.clone(), source })?;
    let tensors = SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::bad_file(&weights_path, format!("not a safetensors file: {e}")))?;
    let read = |name: &str, shape: &[usize]| tensor::<T>(&tensors, &weights_path, name, shape);
    let (w_enc, b_enc) = (read("W_enc", &[n, h])?, read("b_enc", &[h])?);
    let (w_dec, b_dec) = (read("W_dec", &[h, n])?, read("b_dec", &[n])?);

    let hyper = HyperParams::builder(n, h)
        .activation(Activation::Relu)
        .reconstruction(Reconstruction::LinearSquaredError)
        .penalty(SparsityPenalty::L1)
        .build()?;
    // θ = [W1(:); W2(:); b1; b2], W1 = W_encᵀ (h×n) and W2 = W_decᵀ (n×h) column-major, which
    // is W_enc and W_dec row-major.
    let mut theta = Vec::with_capacity(2 * n * h + h + n);
    theta.extend_from_slice(&w_enc);
    theta.extend_from_slice(&w_dec);
    for (j, &b) in b_enc.iter().enumerate() {
        // With the decoder bias applied to the input, relu((x − b_dec) W_enc + b_enc) has
        // b1 = b_enc − W_encᵀ b_dec.
        let shift =
            if applies_b_dec { (0..n).map(|i| w_enc[i * h + j].as_f64() * b_dec[i].as_f64()).sum() } else { 0.0 };
        theta.push(T::cast(b.as_f64() - shift));
    }
    theta.extend_from_slice(&b_dec);
    let mut model = ModelFile::new(hyper, Parameters::from_theta(n, h, theta)?);
    model.metadata.insert("imported_from".into(), format!("SAELens folder {}", dir.display()));
    Ok(model)
}

/// The tensor `name` of `shape`, float32 or float64, as `T`.
fn tensor<T: Real>(tensors: &SafeTensors<'_>, path: &Path, name: &str, shape: &[usize]) -> Result<Vec<T>> {
    let view = tensors.tensor(name).map_err(|_| Error::bad_file(path, format!("no tensor {name}")))?;
    if view.shape() != shape {
        return Err(Error::bad_file(path, format!("{name} has shape {:?}, the config says {shape:?}", view.shape())));
    }
    let data = view.data();
    let values: Vec<T> = match view.dtype() {
        Dtype::F32 => {
            data.chunks_exact(4).map(|b| T::cast(f32::from_le_bytes(b.try_into().expect("4 bytes")) as f64)).collect()
        }
        Dtype::F64 => {
            data.chunks_exact(8).map(|b| T::cast(f64::from_le_bytes(b.try_into().expect("8 bytes")))).collect()
        }
        other => return Err(Error::bad_file(path, format!("{name} is {other:?}: only float32 and float64 are read"))),
    };
    if let Some(k) = values.iter().position(|v| !v.is_finite()) {
        return Err(Error::bad_file(path, format!("{name} holds a non-finite value at {k}")));
    }
    Ok(values)
}
