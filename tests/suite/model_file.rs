//! Model files: safetensors with UFLDL's W1, W2, b1, b2 row-major and the hyper-parameters as
//! metadata; exact round trips; every malformed file an error naming it.

use std::collections::HashMap;
use std::path::Path;

use crate::common::*;
use sae::model::{Activation, Corruption, ModelFile, Reconstruction};
use sae::{Error, Parameters};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

fn model(n: usize, h: usize) -> ModelFile<f64> {
    ModelFile::new(hyper(n, h), Parameters::from_theta(n, h, theta(n, h, 7)).unwrap())
}

fn bad_file_reason(error: Error, path: &Path) -> String {
    match error {
        Error::BadFile { path: at, reason } => {
            assert_eq!(at, path);
            reason
        }
        other => panic!("expected Error::BadFile, got {other:?}"),
    }
}

#[test]
fn a_model_round_trips_exactly_with_its_metadata_and_extra_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let mut saved = model(7, 3);
    saved.metadata.insert("trained_on".into(), "unit test".into());
    saved.extra.insert("state.v".into(), (vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, f64::MIN_POSITIVE]));
    saved.extra.insert("state.empty".into(), (vec![0, 5], vec![]));
    saved.save(&path).unwrap();
    assert_eq!(ModelFile::<f64>::load(&path).unwrap(), saved);
}

#[test]
fn the_weights_are_stored_row_major_as_ufldl_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let (n, h) = (5, 3);
    let saved = model(n, h);
    saved.save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let values = |name: &str| -> Vec<f64> {
        file.tensor(name).unwrap().data().chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap())).collect()
    };
    assert_eq!(file.tensor("W1").unwrap().shape(), &[h, n]);
    assert_eq!(file.tensor("W2").unwrap().shape(), &[n, h]);
    let (w1, w2) = (values("W1"), values("W2"));
    for i in 0..h {
        for j in 0..n {
            assert_eq!(w1[i * n + j], saved.parameters.w1().get(i, j));
            assert_eq!(w2[j * h + i], saved.parameters.w2().get(j, i));
        }
    }
    assert_eq!(values("b1"), saved.parameters.b1());
    assert_eq!(values("b2"), saved.parameters.b2());
}

#[test]
fn an_f32_model_loads_as_f64_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let (n, h) = (6, 2);
    let theta32: Vec<f32> = theta(n, h, 3).iter().map(|&v| v as f32).collect();
    ModelFile::new(hyper(n, h), Parameters::from_theta(n, h, theta32.clone()).unwrap()).save(&path).unwrap();
    let loaded = ModelFile::<f64>::load(&path).unwrap();
    let widened: Vec<f64> = theta32.iter().map(|&v| v as f64).collect();
    assert_eq!(loaded.parameters.theta(), &widened[..]);
}

#[test]
fn corrupted_bytes_are_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    model(4, 2).save(&path).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[12] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let reason = bad_file_reason(ModelFile::<f64>::load(&path).unwrap_err(), &path);
    assert!(reason.contains("safetensors"), "{reason}");
}

#[test]
fn a_truncated_file_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    model(4, 2).save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    bad_file_reason(ModelFile::<f64>::load(&path).unwrap_err(), &path);
}

/// A safetensors file with the given metadata and one tensor per `(name, shape)`.
fn write_raw(path: &Path, metadata: &[(&str, &str)], tensors: &[(&str, Vec<usize>)]) {
    let buffers: Vec<Vec<u8>> = tensors.iter().map(|(_, s)| vec![0u8; s.iter().product::<usize>() * 8]).collect();
    let views: Vec<(&str, TensorView<'_>)> = tensors
        .iter()
        .zip(&buffers)
        .map(|((name, shape), bytes)| (*name, TensorView::new(Dtype::F64, shape.clone(), bytes).unwrap()))
        .collect();
    let metadata: HashMap<String, String> = metadata.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    std::fs::write(path, safetensors::serialize(views, Some(metadata)).unwrap()).unwrap();
}

const METADATA: [(&str, &str); 9] = [
    ("format", "sae"),
    ("format_version", "1"),
    ("objective", "sparse-autoencoder-kl"),
    ("dtype", "f64"),
    ("visible", "4"),
    ("hidden", "2"),
    ("lambda", "0.0001"),
    ("beta", "3"),
    ("rho", "0.01"),
];

fn weights(w1: Vec<usize>) -> Vec<(&'static str, Vec<usize>)> {
    vec![("W1", w1), ("W2", vec![4, 2]), ("b1", vec![2]), ("b2", vec![4])]
}

#[test]
fn a_well_formed_raw_file_loads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raw.safetensors");
    write_raw(&path, &METADATA, &weights(vec![2, 4]));
    let loaded = ModelFile::<f64>::load(&path).unwrap();
    assert_eq!((loaded.hyper.visible(), loaded.hyper.hidden()), (4, 2));
    // Without the variant's keys: UFLDL's model.
    assert!(loaded.hyper.is_plain());
}

#[test]
fn a_model_file_keeps_its_variant() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("variant.safetensors");
    let hyper = sae::HyperParams::builder(6, 3)
        .activation(Activation::Tanh)
        .reconstruction(Reconstruction::SigmoidCrossEntropy)
        .contractive(0.25)
        .tied(true)
        .corruption(Corruption::Gaussian { std_dev: 0.125 }, 99)
        .build()
        .unwrap();
    ModelFile::new(hyper, sae::Parameters::<f64>::init(6, 3, 1)).save(&path).unwrap();
    assert_eq!(ModelFile::<f64>::load(&path).unwrap().hyper, hyper);
}

#[test]
fn an_unknown_activation_is_rejected_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swish.safetensors");
    let mut metadata = METADATA.to_vec();
    metadata.push(("activation", "swish"));
    write_raw(&path, &metadata, &weights(vec![2, 4]));
    let reason = bad_file_reason(ModelFile::<f64>::load(&path).unwrap_err(), &path);
    assert!(reason.contains("activation") && reason.contains("swish"), "{reason}");
}

#[test]
fn a_model_of_another_objective_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vae.safetensors");
    let mut metadata = METADATA;
    metadata[2] = ("objective", "variational-autoencoder");
    write_raw(&path, &metadata, &weights(vec![2, 4]));
    let reason = bad_file_reason(ModelFile::<f64>::load(&path).unwrap_err(), &path);
    assert!(reason.contains("variational-autoencoder"), "{reason}");
}

#[test]
fn a_weight_of_the_wrong_shape_is_rejected_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.safetensors");
    write_raw(&path, &METADATA, &weights(vec![3, 4]));
    let reason = bad_file_reason(ModelFile::<f64>::load(&path).unwrap_err(), &path);
    assert!(reason.contains("W1") && reason.contains("[3, 4]"), "{reason}");
}

#[test]
fn a_file_without_sae_metadata_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.safetensors");
    write_raw(&path, &[], &weights(vec![2, 4]));
    let reason = bad_file_reason(ModelFile::<f64>::load(&path).unwrap_err(), &path);
    assert!(reason.contains("not an sae model file"), "{reason}");
}

#[test]
fn metadata_that_is_not_a_strict_count_or_a_finite_number_is_rejected_naming_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lenient.safetensors");
    let cases = [
        ("hidden", "2.9"),
        ("hidden", "-2"),
        ("visible", "+4"),
        ("visible", "18446744073709551620"),
        ("corruption_seed", "1.5"),
        ("corruption_seed", "-1"),
        ("lambda", "NaN"),
        ("rho", "inf"),
        ("contractive", "NaN"),
    ];
    for (key, value) in cases {
        let mut metadata: Vec<(&str, &str)> = METADATA.iter().copied().filter(|(k, _)| *k != key).collect();
        metadata.push((key, value));
        write_raw(&path, &metadata, &weights(vec![2, 4]));
        let reason = bad_file_reason(ModelFile::<f64>::load(&path).unwrap_err(), &path);
        assert!(reason.contains(key) && reason.contains(value), "{key} = {value}: {reason}");
    }
}

#[test]
fn the_metadata_is_read_from_the_header_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let mut model = ModelFile::new(sae::HyperParams::builder(3, 2).build().unwrap(), Parameters::<f64>::init(3, 2, 1));
    model.metadata.insert("note".into(), "kept".into());
    model.save(&path).unwrap();
    let metadata = ModelFile::<f64>::read_metadata(&path).unwrap();
    assert_eq!((metadata["note"].as_str(), metadata["hidden"].as_str()), ("kept", "2"));
    let claims = dir.path().join("claims.safetensors");
    std::fs::write(&claims, [u64::MAX.to_le_bytes().as_slice(), b"{}"].concat()).unwrap();
    let err = ModelFile::<f64>::read_metadata(&claims).unwrap_err();
    assert!(err.to_string().contains("claims.safetensors"), "{err}");
}

#[test]
fn files_written_by_earlier_builds_still_load() {
    // The seed corpus of the fuzz targets was written by the build of abcbba3 (2026-11-29):
    // no provenance, no recorded curves, checkpoints with the data's fingerprint.
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let model = |name: &str| corpus.join("model_file").join(name);
    for (name, dtype) in [("sae_f32.safetensors", "f32"), ("sae_f64.safetensors", "f64")] {
        let loaded = ModelFile::<f64>::load(&model(name)).unwrap();
        assert_eq!(loaded.metadata.get("dtype").map(String::as_str).unwrap_or(dtype), dtype);
        assert!(!loaded.metadata.contains_key("curve.training"), "from before the curves");
    }
    sae::model::vae::VaeModel::<f64>::load(&model("vae.safetensors")).unwrap();
    sae::model::stack::StackModel::<f64>::load(&model("stack.safetensors")).unwrap();
    for checkpoint in ["lbfgs.ckpt", "minibatch.ckpt"] {
        let loaded = ModelFile::<f64>::load(&corpus.join("checkpoint").join(checkpoint)).unwrap();
        assert!(loaded.metadata.contains_key("data.fnv1a64"), "{checkpoint} is resumable");
    }
}

#[test]
fn a_vae_or_stack_file_of_another_format_version_is_refused() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/model_file");
    let dir = tempfile::tempdir().unwrap();
    for name in ["vae.safetensors", "stack.safetensors"] {
        let bytes = std::fs::read(corpus.join(name)).unwrap();
        let tensors = SafeTensors::deserialize(&bytes).unwrap();
        let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
        let mut metadata: HashMap<String, String> = header.metadata().clone().unwrap();
        metadata.insert("format_version".into(), "2".into());
        let path = dir.path().join(name);
        safetensors::serialize_to_file(tensors.tensors(), Some(metadata), &path).unwrap();
        let err = match name {
            "vae.safetensors" => sae::model::vae::VaeModel::<f64>::load(&path).map(drop).unwrap_err(),
            _ => sae::model::stack::StackModel::<f64>::load(&path).map(drop).unwrap_err(),
        };
        assert!(err.to_string().contains("version Some(\"2\")"), "{name}: {err}");
    }
}
