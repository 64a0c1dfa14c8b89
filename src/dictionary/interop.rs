//! A TopK model in the layouts of the tools that train and use such models:
//!
//! - **SAELens** (a folder of `sae_weights.safetensors` and `cfg.json`): `W_enc` `n×h`,
//!   `b_enc`, `W_dec` `h×n`, `b_dec`, with `architecture: "topk"`, `k`, and
//!   `apply_b_dec_to_input: true` — SAELens's TopK SAE encodes `topk(relu((x − b_dec) W_enc +
//!   b_enc))` and decodes `f W_dec + b_dec`, this model exactly (`W_enc` transposed). The older
//!   spelling (`activation_fn_str: "topk"`, `activation_fn_kwargs: {k}`) is written beside it
//!   and read too. A BatchTopK model is written as SAELens writes its own, a JumpReLU SAE
//!   (`architecture: "jumprelu"`, a `threshold` tensor of `h` equal values: `relu(z)·(z >
//!   θ)`, the same codes), with its training `k` kept in the configuration; reading one back
//!   needs that `k` and a single threshold for all latents. A ReLU sparse autoencoder (every
//!   positive latent) is SAELens's `"standard"` SAE, written as such (read back as the sparse
//!   autoencoder of `crate::model::saelens`, this crate's dense family).
//! - **EleutherAI sparsify** (a folder of `sae.safetensors` and `cfg.json`): `encoder.weight`
//!   `h×n`, `encoder.bias`, `W_dec` `h×n`, `b_dec`, with `num_latents`, `k`, `d_in`; sparsify
//!   also subtracts `b_dec` before encoding. Its tensors are this crate's own layout.
//!
//! Each file is written atomically; reading checks every shape against the configuration and
//! refuses non-finite weights, naming the file.

use std::path::Path;

use safetensors::tensor::SafeTensors;
use serde_json::{json, Value};

use super::model::{Architecture, TopKModel};
use super::Selection;
use crate::error::{Error, Result};
use crate::real::Real;

/// The tool whose folder layout a TopK model is written in or read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Folder {
    Saelens,
    Sparsify,
}

impl Folder {
    /// The folder's weights file.
    pub fn weights_file(self) -> &'static str {
        match self {
            Folder::Saelens => "sae_weights.safetensors",
            Folder::Sparsify => "sae.safetensors",
        }
    }

    /// The folder's configuration file.
    pub fn config_file(self) -> &'static str {
        "cfg.json"
    }
}

/// Writes `model` into the folder `dir` (made if missing) in `layout`. Both tools apply a ReLU
/// after the selection and subtract `b_dec` before encoding: a model of linear units or whose
/// encoder reads `x` itself (the k-sparse autoencoder) is refused, with the reason. Tied weights
/// are written as the two equal matrices the formats hold.
pub fn export<T: Real>(model: &TopKModel<T>, layout: Folder, dir: &Path) -> Result<()> {
    check_exportable(model, layout)?;
    std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.to_path_buf(), source })?;
    let (n, h, k) = (model.visible(), model.latents(), model.k());
    let blocks = model.blocks();
    let (tensors, config) = match layout {
        Folder::Saelens => {
            // W_enc is n×h in SAELens: the transpose of the latent-major rows.
            let w_enc: Vec<T> = (0..n * h).map(|i| blocks.w_enc[(i % h) * n + i / h]).collect();
            let mut tensors = vec![
                ("W_enc", vec![n, h], w_enc),
                ("b_enc", vec![h], blocks.b_enc.to_vec()),
                ("W_dec", vec![h, n], blocks.w_dec.to_vec()),
                ("b_dec", vec![n], blocks.b_dec.to_vec()),
            ];
            let config = match model.architecture().selection {
                Selection::PerExample => json!({
                    "architecture": "topk",
                    "d_in": n,
                    "d_sae": h,
                    "k": k,
                    "activation_fn_str": "topk",
                    "activation_fn_kwargs": { "k": k },
                    "apply_b_dec_to_input": true,
                }),
                // SAELens's standard SAE is this model: relu((x − b_dec) W_enc + b_enc).
                Selection::All => json!({
                    "architecture": "standard",
                    "d_in": n,
                    "d_sae": h,
                    "activation_fn_str": "relu",
                    "apply_b_dec_to_input": true,
                }),
                Selection::Batch => {
                    // relu(z)·(z > θ) keeps z > max(θ, 0), as the ReLU units of this model do.
                    tensors.push(("threshold", vec![h], vec![T::cast(model.threshold().max(0.0)); h]));
                    json!({
                        "architecture": "jumprelu",
                        "d_in": n,
                        "d_sae": h,
                        "k": k,
                        "activation_fn_str": "relu",
                        "apply_b_dec_to_input": true,
                    })
                }
            };
            (tensors, config)
        }
        Folder::Sparsify => {
            let tensors = vec![
                ("encoder.weight", vec![h, n], blocks.w_enc.to_vec()),
                ("encoder.bias", vec![h], blocks.b_enc.to_vec()),
                ("W_dec", vec![h, n], blocks.w_dec.to_vec()),
                ("b_dec", vec![n], blocks.b_dec.to_vec()),
            ];
            let config = json!({
                "activation": "topk",
                "expansion_factor": h / n.max(1),
                "normalize_decoder": true,
                "num_latents": h,
                "k": k,
                "multi_topk": false,
                "skip_connection": false,
                "transcode": false,
                "d_in": n,
                "written_by": format!("sae {}", env!("CARGO_PKG_VERSION")),
            });
            (tensors, config)
        }
    };
    let out =
        tensors.iter().map(|(name, shape, values)| crate::model::tensor_out(name, shape.clone(), values)).collect();
    crate::model::save_safetensors(&dir.join(layout.weights_file()), out, Default::default())?;
    if layout == Folder::Saelens {
        return crate::model::saelens::write_config::<T>(dir, config);
    }
    let text = serde_json::to_string_pretty(&config).expect("a JSON value serialises");
    crate::files::write_with(&dir.join(layout.config_file()), |out| {
        std::io::Write::write_all(out, text.as_bytes()).map_err(|e| e.to_string())
    })
}

/// Fails, with the reason, for a model `layout` cannot represent (see [`export`]).
pub fn check_exportable<T: Real>(model: &TopKModel<T>, layout: Folder) -> Result<()> {
    let architecture = model.architecture();
    let unrepresentable = if architecture.units != super::Units::Relu {
        Some("keep only positive activations (a ReLU after the selection); this model's units are linear")
    } else if !architecture.pre_encoder_bias {
        Some("subtract b_dec before encoding; this model's encoder reads x itself")
    } else if layout == Folder::Sparsify && architecture.selection == Selection::Batch {
        Some("select k latents per example; this BatchTopK model keeps those above its threshold (SAELens's layout can hold it)")
    } else if layout == Folder::Sparsify && architecture.selection == Selection::All {
        Some("select k latents per example; this ReLU model keeps every positive one (SAELens's layout can hold it)")
    } else {
        None
    };
    if let Some(why) = unrepresentable {
        return Err(Error::InvalidOption { name: "format", reason: format!("{layout:?}'s TopK models {why}") });
    }
    Ok(())
}

/// Whether the configuration of the folder `dir` in `layout` describes a TopK model (false for
/// another architecture: SAELens's standard SAE, say).
pub fn describes_topk(dir: &Path, layout: Folder) -> Result<bool> {
    let (config, _) = read_config(dir, layout)?;
    Ok(topk_k(&config, layout).is_some())
}

/// Whether the folder's weights are float32 (SAELens's configuration's `dtype`; sparsify
/// records none: its weights file's header tells).
pub fn is_float32(dir: &Path, layout: Folder) -> bool {
    match layout {
        Folder::Saelens => crate::model::saelens::is_float32(dir),
        Folder::Sparsify => header_dtype(&dir.join(layout.weights_file()), "W_dec").is_some_and(|dtype| dtype == "F32"),
    }
}

/// The dtype of tensor `name` in the safetensors file at `path`, from its header alone.
fn header_dtype(path: &Path, name: &str) -> Option<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).ok()?;
    let mut length = [0u8; 8];
    file.read_exact(&mut length).ok()?;
    let length = usize::try_from(u64::from_le_bytes(length)).ok().filter(|&l| l <= 100 << 20)?;
    let mut header = vec![0u8; length];
    file.read_exact(&mut header).ok()?;
    let header: Value = serde_json::from_slice(&header).ok()?;
    header.get(name)?.get("dtype")?.as_str().map(str::to_string)
}

fn read_config(dir: &Path, layout: Folder) -> Result<(Value, std::path::PathBuf)> {
    let path = dir.join(layout.config_file());
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Io { path: path.clone(), source })?;
    let config = serde_json::from_str(&text).map_err(|e| Error::bad_file(&path, format!("not JSON: {e}")))?;
    Ok((config, path))
}

/// `k` of a TopK configuration (either SAELens spelling, or sparsify's), or of a SAELens JumpReLU
/// one that records it (a BatchTopK model's).
fn topk_k(config: &Value, layout: Folder) -> Option<u64> {
    let text = |key: &str| config.get(key).and_then(Value::as_str);
    let is_topk = match layout {
        Folder::Saelens => {
            text("architecture") == Some("topk") || text("activation_fn_str") == Some("topk") || is_jumprelu(config)
        }
        Folder::Sparsify => text("activation").is_none_or(|a| a == "topk"),
    };
    let k = config.get("k").or_else(|| config.get("activation_fn_kwargs").and_then(|kw| kw.get("k")));
    k.and_then(Value::as_u64).filter(|_| is_topk)
}

/// Whether a SAELens configuration is a JumpReLU SAE's.
fn is_jumprelu(config: &Value) -> bool {
    config.get("architecture").and_then(Value::as_str) == Some("jumprelu")
}

/// The TopK model of the folder `dir` in `layout`, in `T`.
pub fn import<T: Real>(dir: &Path, layout: Folder) -> Result<TopKModel<T>> {
    let (config, config_path) = read_config(dir, layout)?;
    let bad = |reason: String| Error::bad_file(&config_path, reason);
    let k = topk_k(&config, layout).ok_or_else(|| {
        bad(if layout == Folder::Saelens && is_jumprelu(&config) {
            "a JumpReLU SAE without the k of the BatchTopK training that made it: not read".into()
        } else {
            "not a TopK SAE (no TopK architecture with its k)".into()
        })
    })?;
    let size = |key: &str| config.get(key).and_then(Value::as_u64).ok_or_else(|| bad(format!("no {key}")));
    let (n, h) = match layout {
        Folder::Saelens => (size("d_in")?, size("d_sae")?),
        Folder::Sparsify => (size("d_in")?, size("num_latents")?),
    };
    let (n, h, k) = (n as usize, h as usize, k as usize);
    if layout == Folder::Saelens {
        let applies = config.get("apply_b_dec_to_input").and_then(Value::as_bool).unwrap_or(true);
        let normalization = config.get("normalize_activations").and_then(Value::as_str).unwrap_or("none");
        if !applies {
            return Err(bad("apply_b_dec_to_input false: only TopK SAEs that subtract b_dec are read".into()));
        }
        if normalization != "none" {
            return Err(bad(format!("normalize_activations {normalization:?}: its scaling is not in the folder")));
        }
    }
    if layout == Folder::Sparsify && config.get("skip_connection").and_then(Value::as_bool) == Some(true) {
        return Err(bad("skip_connection: a sparsify transcoder's skip weights have no place in this model".into()));
    }
    let weights_path = dir.join(layout.weights_file());
    let bytes = std::fs::read(&weights_path).map_err(|source| Error::Io { path: weights_path.clone(), source })?;
    let tensors = SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::bad_file(&weights_path, format!("not a safetensors file: {e}")))?;
    let read = |name: &str, shape: Vec<usize>| -> Result<Vec<f64>> {
        let view = tensors.tensor(name).map_err(|_| Error::bad_file(&weights_path, format!("no tensor {name}")))?;
        if view.shape() != shape.as_slice() {
            return Err(Error::bad_file(
                &weights_path,
                format!("{name} has shape {:?}, the config says {shape:?}", view.shape()),
            ));
        }
        crate::model::decode_tensor(view.dtype(), view.data()).ok_or_else(|| {
            Error::bad_file(&weights_path, format!("{name} is {:?}: only float32 and float64 are read", view.dtype()))
        })
    };
    let (w_enc, b_enc, w_dec, b_dec) = match layout {
        Folder::Saelens => {
            let w_enc = read("W_enc", vec![n, h])?;
            let rows: Vec<f64> = (0..h * n).map(|i| w_enc[(i % n) * h + i / n]).collect();
            (rows, read("b_enc", vec![h])?, read("W_dec", vec![h, n])?, read("b_dec", vec![n])?)
        }
        Folder::Sparsify => (
            read("encoder.weight", vec![h, n])?,
            read("encoder.bias", vec![h])?,
            read("W_dec", vec![h, n])?,
            read("b_dec", vec![n])?,
        ),
    };
    // A BatchTopK model's JumpReLU threshold: one value for every latent.
    let threshold = match layout {
        Folder::Saelens if is_jumprelu(&config) => {
            let thresholds = read("threshold", vec![h])?;
            if thresholds.windows(2).any(|pair| pair[0] != pair[1]) {
                return Err(Error::bad_file(
                    &weights_path,
                    "a threshold per latent: this engine's BatchTopK models have one for all latents",
                ));
            }
            thresholds.first().copied()
        }
        _ => None,
    };
    let params = [w_enc, b_enc, w_dec, b_dec].concat().into_iter().map(T::cast).collect();
    let model = TopKModel::from_params(n, h, k, params);
    let model = match threshold {
        None => model,
        Some(threshold) => model
            .and_then(|model| model.with_architecture(Architecture::BATCH_TOPK))
            .and_then(|model| model.with_threshold(threshold)),
    };
    model.map_err(|e| Error::bad_file(&weights_path, format!("invalid model: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Dataset;
    use crate::dictionary::select::INACTIVE;
    use crate::dictionary::{Architecture, TopKObjective};
    use rand::{Rng, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;

    fn model() -> TopKModel<f32> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let base = TopKModel::<f32>::init(6, 10, 3, 2).unwrap();
        let params = base.params().iter().map(|&v| v + rng.gen_range(-0.2f32..0.2)).collect();
        TopKModel::from_params(6, 10, 3, params).unwrap()
    }

    /// The codes of `x` by the formula of each tool, from the folder's raw tensors.
    fn codes_from_files(dir: &Path, layout: Folder, x: &[f64]) -> Vec<Vec<(usize, f64)>> {
        let bytes = std::fs::read(dir.join(layout.weights_file())).unwrap();
        let file = SafeTensors::deserialize(&bytes).unwrap();
        let get = |name: &str| {
            crate::model::decode_tensor(file.tensor(name).unwrap().dtype(), file.tensor(name).unwrap().data()).unwrap()
        };
        let (n, h, k) = (6, 10, 3);
        let (w, b_enc, b_dec) = match layout {
            // relu((x − b_dec) W_enc + b_enc), W_enc n×h.
            Folder::Saelens => (get("W_enc"), get("b_enc"), get("b_dec")),
            // relu(encoder(x − b_dec)), encoder.weight h×n.
            Folder::Sparsify => {
                let rows = get("encoder.weight");
                ((0..n * h).map(|i| rows[(i % h) * n + i / h]).collect(), get("encoder.bias"), get("b_dec"))
            }
        };
        x.chunks(n)
            .map(|x| {
                let z: Vec<f64> =
                    (0..h).map(|j| b_enc[j] + (0..n).map(|i| (x[i] - b_dec[i]) * w[i * h + j]).sum::<f64>()).collect();
                let mut order: Vec<usize> = (0..h).filter(|&j| z[j] > 0.0).collect();
                order.sort_by(|&a, &b| z[b].total_cmp(&z[a]));
                order.truncate(k);
                order.sort();
                order.into_iter().map(|j| (j, z[j])).collect()
            })
            .collect()
    }

    #[test]
    fn both_layouts_round_trip_and_their_formulas_give_the_models_codes() {
        let model = model();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(9);
        let x: Vec<f32> = (0..6 * 20).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let data = Dataset::examples_by_features(&x, 20, 6).unwrap();
        let mut objective = TopKObjective::new(6, 10, 3, 20).unwrap();
        objective.encode_only(model.params(), &data).unwrap();
        let (indices, values) = objective.codes();
        let wide: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
        for layout in [Folder::Saelens, Folder::Sparsify] {
            let dir = tempfile::tempdir().unwrap();
            export(&model, layout, dir.path()).unwrap();
            assert!(describes_topk(dir.path(), layout).unwrap());
            assert!(is_float32(dir.path(), layout));
            assert_eq!(import::<f32>(dir.path(), layout).unwrap(), model, "{layout:?}");
            for (e, codes) in codes_from_files(dir.path(), layout, &wide).into_iter().enumerate() {
                let ours: Vec<(usize, f64)> = indices[e * 3..(e + 1) * 3]
                    .iter()
                    .zip(&values[e * 3..(e + 1) * 3])
                    .filter(|(&j, _)| j != crate::dictionary::select::INACTIVE)
                    .map(|(&j, &v)| (j as usize, f64::from(v)))
                    .collect();
                assert_eq!(ours.len(), codes.len(), "{layout:?} example {e}");
                for ((j, v), (i, w)) in ours.iter().zip(&codes) {
                    assert_eq!(j, i, "{layout:?} example {e}");
                    assert!((v - w).abs() < 1e-5, "{layout:?} example {e}: {v} vs {w}");
                }
            }
        }
    }

    #[test]
    fn a_batch_topk_model_round_trips_through_saelenss_jumprelu_layout_and_its_formula_gives_its_codes() {
        let model = model().with_architecture(Architecture::BATCH_TOPK).unwrap().with_threshold(0.125).unwrap();
        let (n, h, m) = (6, 10, 20);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(11);
        let x: Vec<f32> = (0..n * m).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let mut objective = TopKObjective::for_model(&model, m).unwrap();
        objective.encode_only(model.params(), &Dataset::examples_by_features(&x, m, n).unwrap()).unwrap();
        let (indices, values) = objective.codes();
        let width = objective.slots_per_example();
        let dir = tempfile::tempdir().unwrap();
        export(&model, Folder::Saelens, dir.path()).unwrap();
        assert!(describes_topk(dir.path(), Folder::Saelens).unwrap());
        assert_eq!(import::<f32>(dir.path(), Folder::Saelens).unwrap(), model);
        // SAELens's JumpReLU from the raw tensors: relu(z)·(z > θ), z = (x − b_dec) W_enc + b_enc.
        let bytes = std::fs::read(dir.path().join("sae_weights.safetensors")).unwrap();
        let file = SafeTensors::deserialize(&bytes).unwrap();
        let get = |name: &str| {
            crate::model::decode_tensor(file.tensor(name).unwrap().dtype(), file.tensor(name).unwrap().data()).unwrap()
        };
        let (w, b_enc, b_dec, theta) = (get("W_enc"), get("b_enc"), get("b_dec"), get("threshold"));
        let mut some_active = 0;
        for e in 0..m {
            let z =
                |j: usize| b_enc[j] + (0..n).map(|i| (f64::from(x[e * n + i]) - b_dec[i]) * w[i * h + j]).sum::<f64>();
            let want: Vec<usize> =
                (0..h).filter(|&j| z(j).max(0.0) * f64::from(u8::from(z(j) > theta[j])) != 0.0).collect();
            let ours: Vec<usize> =
                indices[e * width..(e + 1) * width].iter().filter(|&&j| j != INACTIVE).map(|&j| j as usize).collect();
            assert_eq!(ours, want, "example {e}");
            for (s, &j) in ours.iter().enumerate() {
                assert!((f64::from(values[e * width + s]) - z(j)).abs() < 1e-5);
            }
            some_active += ours.len();
        }
        assert!(some_active > 0 && some_active < m * h, "the threshold keeps some latents");
        // Sparsify selects k per example: it cannot hold the model.
        match export(&model, Folder::Sparsify, dir.path().join("sparsify").as_path()) {
            Err(Error::InvalidOption { name: "format", reason }) => assert!(reason.contains("threshold"), "{reason}"),
            other => panic!("{other:?}"),
        }
        // A JumpReLU SAE with a threshold per latent, or without k, is not this engine's.
        let weights = dir.path().join("sae_weights.safetensors");
        let mut tensors: Vec<(String, Vec<usize>, Vec<f64>)> = ["W_enc", "b_enc", "W_dec", "b_dec"]
            .iter()
            .map(|&t| (t.to_string(), file.tensor(t).unwrap().shape().to_vec(), get(t)))
            .collect();
        tensors.push(("threshold".to_string(), vec![h], (0..h).map(|j| j as f64 / 10.0).collect()));
        let out =
            tensors.iter().map(|(name, shape, values)| crate::model::tensor_out(name, shape.clone(), values)).collect();
        crate::model::save_safetensors(&weights, out, Default::default()).unwrap();
        match import::<f32>(dir.path(), Folder::Saelens) {
            Err(Error::BadFile { reason, .. }) => assert!(reason.contains("threshold per latent"), "{reason}"),
            other => panic!("{other:?}"),
        }
        let config = dir.path().join("cfg.json");
        let text = std::fs::read_to_string(&config).unwrap().replace("\"k\": 3,", "");
        std::fs::write(&config, text).unwrap();
        match import::<f32>(dir.path(), Folder::Saelens) {
            Err(Error::BadFile { reason, .. }) => assert!(reason.contains("JumpReLU SAE without the k"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn folders_that_are_not_topk_models_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        export(&model(), Folder::Saelens, dir.path()).unwrap();
        let config = dir.path().join("cfg.json");
        let edit = |from: &str, to: &str| {
            let text = std::fs::read_to_string(&config).unwrap().replace(from, to);
            std::fs::write(&config, text).unwrap();
        };
        edit("\"apply_b_dec_to_input\": true", "\"apply_b_dec_to_input\": false");
        match import::<f32>(dir.path(), Folder::Saelens) {
            Err(Error::BadFile { reason, .. }) => assert!(reason.contains("apply_b_dec_to_input"), "{reason}"),
            other => panic!("{other:?}"),
        }
        edit("\"topk\"", "\"standard\"");
        assert!(!describes_topk(dir.path(), Folder::Saelens).unwrap());
        match import::<f32>(dir.path(), Folder::Saelens) {
            Err(Error::BadFile { reason, .. }) => assert!(reason.contains("not a TopK"), "{reason}"),
            other => panic!("{other:?}"),
        }
        export(&model(), Folder::Sparsify, dir.path()).unwrap();
        std::fs::write(dir.path().join("cfg.json"), r#"{"num_latents": 11, "k": 3, "d_in": 6}"#).unwrap();
        match import::<f32>(dir.path(), Folder::Sparsify) {
            Err(Error::BadFile { reason, .. }) => assert!(reason.contains("shape"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn linear_units_are_refused_and_tied_relu_weights_written_twice() {
        let dir = tempfile::tempdir().unwrap();
        let k_sparse = TopKModel::<f32>::init(6, 10, 3, 2).unwrap().with_architecture(Architecture::K_SPARSE).unwrap();
        for layout in [Folder::Saelens, Folder::Sparsify] {
            match export(&k_sparse, layout, dir.path()) {
                Err(Error::InvalidOption { name: "format", reason }) => assert!(reason.contains("linear"), "{reason}"),
                other => panic!("{layout:?}: {other:?}"),
            }
            assert!(!dir.path().join(layout.weights_file()).exists(), "{layout:?}: nothing written");
        }
        let reads_x = Architecture { pre_encoder_bias: false, ..Architecture::TOPK };
        let model = TopKModel::<f32>::init(6, 10, 3, 2).unwrap().with_architecture(reads_x).unwrap();
        match export(&model, Folder::Sparsify, dir.path()) {
            Err(Error::InvalidOption { name: "format", reason }) => assert!(reason.contains("reads x"), "{reason}"),
            other => panic!("{other:?}"),
        }
        let tied = Architecture { tied: true, ..Architecture::TOPK };
        let tied_relu = TopKModel::<f32>::init(6, 10, 3, 2).unwrap().with_architecture(tied).unwrap();
        export(&tied_relu, Folder::Sparsify, dir.path()).unwrap();
        let back = import::<f32>(dir.path(), Folder::Sparsify).unwrap();
        assert_eq!(back.params(), tied_relu.params());
    }
}
