//! The SAELens layout: a ReLU model exported and read back is the same model, its files read
//! by another reader (the `safetensors` crate) reproduce its encodings by SAELens's formula,
//! either setting of `apply_b_dec_to_input` reads as the same function, and models SAELens
//! cannot compute are refused with the reason.

use crate::common::*;
use sae::model::saelens::{self, CONFIG_FILE, WEIGHTS_FILE};
use sae::model::{Activation, HyperParams, ModelFile, Parameters, Reconstruction, SparsityPenalty};
use sae::{Dataset, Real};
use safetensors::SafeTensors;

const N: usize = 12;
const H: usize = 20;

fn relu_model<T: Real>() -> ModelFile<T> {
    let hyper = HyperParams::builder(N, H)
        .activation(Activation::Relu)
        .reconstruction(Reconstruction::LinearSquaredError)
        .penalty(SparsityPenalty::L1)
        .build()
        .unwrap();
    let theta: Vec<T> = theta(N, H, 7).into_iter().map(T::cast).collect();
    ModelFile::new(hyper, Parameters::from_theta(N, H, theta).unwrap())
}

/// The hidden activations of `model` for the rows of `x`.
fn encode<T: Real>(model: &ModelFile<T>, x: &[T], m: usize) -> Vec<T> {
    let mut hidden = vec![T::zero(); m * H];
    let data = Dataset::examples_by_features(x, m, N).unwrap();
    model.forward().encode(&data, &mut hidden).unwrap();
    hidden
}

fn read(tensors: &SafeTensors<'_>, name: &str) -> (Vec<usize>, Vec<f64>) {
    let view = tensors.tensor(name).unwrap();
    let values = view.data().chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap())).collect();
    (view.shape().to_vec(), values)
}

#[test]
fn an_exported_model_reads_back_as_itself_in_either_precision() {
    let dir = tempfile::tempdir().unwrap();
    let model = relu_model::<f64>();
    saelens::export(&model, dir.path()).unwrap();
    assert_eq!(saelens::import::<f64>(dir.path()).unwrap().parameters, model.parameters);
    let single = relu_model::<f32>();
    saelens::export(&single, &dir.path().join("f32")).unwrap();
    assert_eq!(saelens::import::<f32>(&dir.path().join("f32")).unwrap().parameters, single.parameters);
}

#[test]
fn the_exported_files_reproduce_the_encodings_by_saelens_formula() {
    let dir = tempfile::tempdir().unwrap();
    let model = relu_model::<f64>();
    saelens::export(&model, dir.path()).unwrap();
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join(CONFIG_FILE)).unwrap()).unwrap();
    assert_eq!(
        (config["architecture"].as_str(), config["d_in"].as_u64(), config["d_sae"].as_u64()),
        (Some("standard"), Some(12), Some(20))
    );
    assert_eq!(config["dtype"], "float64");
    let bytes = std::fs::read(dir.path().join(WEIGHTS_FILE)).unwrap();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    let ((enc_shape, w_enc), (_, b_enc)) = (read(&tensors, "W_enc"), read(&tensors, "b_enc"));
    let ((dec_shape, w_dec), (_, b_dec)) = (read(&tensors, "W_dec"), read(&tensors, "b_dec"));
    assert_eq!((enc_shape, dec_shape), (vec![N, H], vec![H, N]));

    // f = relu(x W_enc + b_enc), x̂ = f W_dec + b_dec, row by row.
    let m = 9;
    let x = uniform_data(m, N, 3);
    let hidden = encode(&model, &x, m);
    for (example, expected) in x.chunks_exact(N).zip(hidden.chunks_exact(H)) {
        let f: Vec<f64> =
            (0..H).map(|j| (b_enc[j] + (0..N).map(|i| example[i] * w_enc[i * H + j]).sum::<f64>()).max(0.0)).collect();
        assert!(f.iter().zip(expected).all(|(a, b)| (a - b).abs() <= 1e-12), "{f:?} against {expected:?}");
        let decoded: Vec<f64> =
            (0..N).map(|i| b_dec[i] + (0..H).map(|j| f[j] * w_dec[j * N + i]).sum::<f64>()).collect();
        let mut output = vec![0.0; N];
        model.forward().decode(expected, &mut output).unwrap();
        assert!(decoded.iter().zip(&output).all(|(a, b)| (a - b).abs() <= 1e-12));
    }
}

#[test]
fn a_folder_that_applies_the_decoder_bias_to_the_input_reads_as_the_same_function() {
    let dir = tempfile::tempdir().unwrap();
    let model = relu_model::<f64>();
    saelens::export(&model, dir.path()).unwrap();
    // The same SAE with b_enc' = b_enc + W_encᵀ b_dec and the bias subtracted from the input.
    let p = &model.parameters;
    let shifted: Vec<f64> =
        (0..H).map(|j| p.b1()[j] + (0..N).map(|i| p.w1().get(j, i) * p.b2()[i]).sum::<f64>()).collect();
    let shifted_model = {
        let mut theta = p.theta().to_vec();
        let offset = 2 * N * H;
        theta[offset..offset + H].copy_from_slice(&shifted);
        ModelFile::new(model.hyper, Parameters::from_theta(N, H, theta).unwrap())
    };
    saelens::export(&shifted_model, dir.path()).unwrap();
    let config_path = dir.path().join(CONFIG_FILE);
    let config = std::fs::read_to_string(&config_path)
        .unwrap()
        .replace("\"apply_b_dec_to_input\": false", "\"apply_b_dec_to_input\": true");
    std::fs::write(&config_path, config).unwrap();
    let read = saelens::import::<f64>(dir.path()).unwrap();
    let x = uniform_data(7, N, 4);
    let (a, b) = (encode(&read, &x, 7), encode(&model, &x, 7));
    assert!(a.iter().zip(&b).all(|(a, b)| (a - b).abs() <= 1e-12));
}

#[test]
fn models_saelens_cannot_compute_and_folders_this_crate_cannot_read_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let sigmoid = ModelFile::new(HyperParams::builder(N, H).build().unwrap(), Parameters::<f64>::init(N, H, 1));
    let err = saelens::export(&sigmoid, dir.path()).unwrap_err().to_string();
    assert!(err.contains("ReLU") && err.contains("sigmoid"), "{err}");
    assert!(!dir.path().join(WEIGHTS_FILE).exists());

    saelens::export(&relu_model::<f64>(), dir.path()).unwrap();
    let config_path = dir.path().join(CONFIG_FILE);
    let standard = std::fs::read_to_string(&config_path).unwrap();
    for (from, to, named) in [
        ("\"architecture\": \"standard\"", "\"architecture\": \"topk\"", "architecture"),
        (
            "\"normalize_activations\": \"none\"",
            "\"normalize_activations\": \"expected_average_only_in\"",
            "normalize_activations",
        ),
        ("\"d_sae\": 20", "\"d_sae\": 21", "W_enc"),
    ] {
        std::fs::write(&config_path, standard.replace(from, to)).unwrap();
        let err = saelens::import::<f64>(dir.path()).unwrap_err().to_string();
        assert!(err.contains(named), "{err}");
    }
}

#[test]
fn sae_export_and_import_round_trip_a_model_file_and_refuse_a_sigmoid_one() {
    let dir = tempfile::tempdir().unwrap();
    let (model_path, folder, back) =
        (dir.path().join("relu.safetensors"), dir.path().join("saelens"), dir.path().join("back.safetensors"));
    let model = relu_model::<f32>();
    model.save(&model_path).unwrap();
    let sae = |args: &[&std::path::Path]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_sae"));
        command.args(args).output().unwrap()
    };
    let exported = sae(&["export".as_ref(), &model_path, "-o".as_ref(), &folder]);
    assert!(exported.status.success(), "{}", String::from_utf8_lossy(&exported.stderr));
    let config = std::fs::read_to_string(folder.join(CONFIG_FILE)).unwrap();
    assert!(config.contains("\"dtype\": \"float32\""), "{config}");
    let imported = sae(&["import".as_ref(), &folder, "-o".as_ref(), &back]);
    assert!(imported.status.success(), "{}", String::from_utf8_lossy(&imported.stderr));
    assert_eq!(ModelFile::<f32>::load(&back).unwrap().parameters, model.parameters);

    let sigmoid = ModelFile::new(HyperParams::builder(N, H).build().unwrap(), Parameters::<f64>::init(N, H, 1));
    sigmoid.save(&model_path).unwrap();
    let refused = sae(&["export".as_ref(), &model_path, "-o".as_ref(), &dir.path().join("no")]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("ReLU"), "{stderr}");
    assert!(!dir.path().join("no").exists(), "nothing made for a refused model");
}
