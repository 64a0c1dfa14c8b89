//! `sae train --hidden-layer topk` end to end: planted-dictionary data from `sae generate`,
//! trained in memory and streamed, the model file read back, and the options a TopK layer has
//! no use for refused by name.

use std::path::Path;
use std::process::Command;

use sae::data::npy;
use sae::data::planted::recovery;
use sae::dictionary::TopKModel;

fn sae(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sae")).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).to_str().unwrap().to_string()
}

#[test]
fn a_topk_model_trained_from_the_command_line_finds_the_planted_directions_in_memory_and_streamed() {
    let dir = tempfile::tempdir().unwrap();
    let (data, atoms) = (path(dir.path(), "planted.npy"), path(dir.path(), "atoms.npy"));
    let generate =
        ["generate", "--planted", "--features", "24", "--atoms", "32", "--active", "2", "--examples", "12000"];
    let (ok, _, stderr) = sae(&[&generate[..], &["--f32", "-o", &data, "--dictionary", &atoms]].concat());
    assert!(ok, "{stderr}");
    let planted: Vec<f64> = npy::read_matrix::<f64>(Path::new(&atoms)).unwrap().iter().copied().collect();
    let mut models = Vec::new();
    for streamed in [false, true] {
        let (model, histogram) = (path(dir.path(), &format!("topk{streamed}.safetensors")), path(dir.path(), "f.png"));
        let mut args = vec!["train", "--hidden-layer", "topk", "--k", "4", "--hidden", "64", "--epochs", "25"];
        args.extend(["--auxk-alpha", "0.03125"]);
        args.extend([
            "--batch-size",
            "128",
            "--shuffle-block",
            "64",
            "--data",
            &data,
            "-o",
            &model,
            "--features",
            &histogram,
        ]);
        if streamed {
            args.push("--stream");
        }
        let (ok, stdout, stderr) = sae(&args);
        assert!(ok, "{stderr}");
        assert!(stdout.contains("epoch   25") && stdout.contains("FVU") && stdout.contains("L0 4.00"), "{stdout}");
        assert!(std::fs::metadata(&histogram).unwrap().len() > 1000, "the histogram is drawn");
        let trained = TopKModel::<f32>::load(Path::new(&model)).unwrap();
        assert_eq!((trained.visible(), trained.latents(), trained.k()), (24, 64, 4));
        let decoder: Vec<f64> = trained.blocks().w_dec.iter().map(|&v| f64::from(v)).collect();
        let found = recovery(&planted, &decoder, 24, 0.9).unwrap();
        assert!(found.recovered >= 0.9, "streamed {streamed}: recovered {:.3}", found.recovered);
        models.push(trained);
    }
    assert_eq!(models[0], models[1], "the same block shuffle streamed and in memory takes the same steps");
}

#[test]
fn options_a_topk_layer_does_not_use_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let model = path(dir.path(), "m.safetensors");
    let topk = ["train", "--hidden-layer", "topk", "-o", &model, "--epochs", "1"];
    for (extra, named) in [
        (&[][..], "--k"),
        (&["--k", "3", "--optimizer", "lbfgs"][..], "--optimizer adam"),
        (&["--k", "3", "--beta", "1"][..], "--beta"),
        (&["--k", "3", "--activation", "tanh"][..], "variant"),
        (&["--k", "3", "--validate-every", "2"][..], "--validate-every"),
        (&["--k", "3", "--init", "m0.safetensors"][..], "--init"),
        (&["--k", "30", "--hidden", "20"][..], "k"),
        (&["--k", "3", "--k-aux", "4"][..], "--auxk-alpha"),
        (&["--k", "3", "--dead-after", "40"][..], "--resample-every"),
        (&["--k", "3", "--resample-every", "0"][..], "resample_every"),
        (&["--k", "3", "--auxk-alpha", "-1"][..], "AuxK alpha"),
    ] {
        let (ok, _, stderr) = sae(&[&topk[..], extra].concat());
        assert!(!ok && stderr.contains(named), "{extra:?}: {stderr}");
    }
    for flag in ["--k", "--dead-after"] {
        let (ok, _, stderr) = sae(&["train", flag, "3", "-o", &model]);
        assert!(!ok && stderr.contains("--hidden-layer topk"), "{stderr}");
    }
    assert!(!Path::new(&model).exists(), "nothing written");
}

#[test]
fn a_topk_model_round_trips_through_the_saelens_and_sparsify_folders() {
    let dir = tempfile::tempdir().unwrap();
    let model = path(dir.path(), "topk.safetensors");
    let (ok, _, stderr) = sae(&[
        "train",
        "--hidden-layer",
        "topk",
        "--k",
        "4",
        "--hidden",
        "32",
        "--epochs",
        "1",
        "--f32",
        "--no-features",
        "-o",
        &model,
    ]);
    assert!(ok, "{stderr}");
    let trained = TopKModel::<f32>::load(Path::new(&model)).unwrap();
    for (format, weights) in [("saelens", "sae_weights.safetensors"), ("sparsify", "sae.safetensors")] {
        let (folder, back) = (path(dir.path(), format), path(dir.path(), &format!("{format}.safetensors")));
        let (ok, stdout, stderr) = sae(&["export", &model, "--format", format, "-o", &folder]);
        assert!(ok && stdout.contains("TopK sparse autoencoder") && stdout.contains("k = 4"), "{stdout}{stderr}");
        assert!(Path::new(&folder).join(weights).exists() && Path::new(&folder).join("cfg.json").exists());
        let (ok, _, stderr) = sae(&["import", &folder, "--format", format, "-o", &back]);
        assert!(ok, "{stderr}");
        assert_eq!(TopKModel::<f32>::load(Path::new(&back)).unwrap(), trained, "{format}");
    }
    // A sparse autoencoder has no sparsify form.
    let kl = path(dir.path(), "kl.safetensors");
    assert!(sae(&["train", "--iterations", "2", "--no-features", "-o", &kl]).0);
    let (ok, _, stderr) = sae(&["export", &kl, "--format", "sparsify", "-o", &path(dir.path(), "nope")]);
    assert!(!ok && stderr.contains("TopK models"), "{stderr}");
}

#[test]
fn info_metrics_encode_reconstruct_and_visualize_read_a_topk_model() {
    let dir = tempfile::tempdir().unwrap();
    let (model, data) = (path(dir.path(), "topk.safetensors"), path(dir.path(), "data.npy"));
    let (ok, _, stderr) = sae(&[
        "train",
        "--hidden-layer",
        "topk",
        "--k",
        "3",
        "--hidden",
        "20",
        "--epochs",
        "2",
        "--no-features",
        "-o",
        &model,
    ]);
    assert!(ok, "{stderr}");
    assert!(sae(&["generate", "--shape", "S1", "--examples", "300", "-o", &data]).0);
    let (ok, stdout, stderr) = sae(&["info", &model]);
    assert!(ok && stdout.contains("TopK") && stdout.contains("20 latents, k = 3"), "{stdout}{stderr}");
    for recorded in ["stop: max-epochs", "epochs: 2", "seed: 1", "command: ", "fvu: "] {
        assert!(stdout.contains(recorded), "{recorded} not in {stdout}");
    }
    let (ok, stdout, stderr) = sae(&["metrics", &model, "--data", &data, "--chunk", "64"]);
    assert!(ok && stdout.contains("FVU") && stdout.contains("L0                    3.000"), "{stdout}{stderr}");
    let loss: f64 =
        stdout.lines().find(|l| l.starts_with("loss")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();

    let (codes, reconstructed) = (path(dir.path(), "codes.npy"), path(dir.path(), "rec.npy"));
    let (ok, _, stderr) = sae(&["encode", &model, "--data", &data, "-o", &codes]);
    assert!(ok, "{stderr}");
    let codes: ndarray::Array2<f64> = npy::read_matrix(Path::new(&codes)).unwrap();
    assert_eq!(codes.dim(), (300, 20));
    assert!(codes
        .rows()
        .into_iter()
        .all(|row| row.iter().filter(|&&v| v != 0.0).count() <= 3 && row.iter().all(|&v| v >= 0.0)));
    let (ok, stdout, stderr) = sae(&["reconstruct", &model, "--data", &data, "-o", &reconstructed]);
    assert!(ok, "{stderr}");
    let reported: f64 = stdout.rsplit("= ").next().unwrap().trim().parse().unwrap();
    assert!((reported - loss).abs() <= 1e-9 * loss, "reconstruct's ½‖x̂ − x‖² {reported} against metrics' loss {loss}");
    let (ok, stdout, stderr) = sae(&["visualize", &model, "-o", &path(dir.path(), "atoms.png")]);
    assert!(ok && stdout.contains("20 decoder directions"), "{stdout}{stderr}");

    // metrics is a TopK model's.
    let kl = path(dir.path(), "kl.safetensors");
    assert!(sae(&["train", "--iterations", "2", "--no-features", "-o", &kl]).0);
    let (ok, _, stderr) = sae(&["metrics", &kl, "--data", &data]);
    assert!(!ok && stderr.contains("a TopK or k-sparse model's"), "{stderr}");
}

#[test]
fn a_k_sparse_autoencoder_trains_encodes_with_more_latents_and_is_not_exported() {
    let dir = tempfile::tempdir().unwrap();
    let (model, data) = (path(dir.path(), "k-sparse.safetensors"), path(dir.path(), "planted.npy"));
    let generate = ["generate", "--planted", "--features", "16", "--atoms", "24", "--active", "2"];
    assert!(sae(&[&generate[..], &["--examples", "3000", "-o", &data]].concat()).0);
    let train = ["train", "--hidden-layer", "k-sparse", "--k", "2", "--hidden", "48", "--data", &data];
    let options = ["--epochs", "6", "--batch-size", "50", "--learning-rate", "5e-3", "--no-features", "-o", &model];
    let options = [&options[..], &["--resample-every", "30", "--dead-after", "600"]].concat();
    let (ok, stdout, stderr) = sae(&[&train[..], &options[..]].concat());
    assert!(ok, "{stderr}");
    assert!(stdout.contains("model: k-sparse autoencoder") && stdout.contains("k = 2 (from 8)"), "{stdout}");
    assert!(!stdout.contains("unit-norm decoder") && stdout.contains("resampled every 30 steps"), "{stdout}");
    assert!(stdout.contains("epoch    6") && stdout.contains("L0 2.00"), "{stdout}");
    let trained = TopKModel::<f64>::load(Path::new(&model)).unwrap();
    assert_eq!(trained.architecture(), sae::dictionary::Architecture::K_SPARSE);
    assert_eq!(trained.blocks().w_enc, trained.blocks().w_dec);
    let (ok, stdout, _) = sae(&["info", &model]);
    assert!(
        ok && stdout.contains("k-sparse autoencoder: linear latents") && stdout.contains("tied weights"),
        "{stdout}"
    );
    assert!(stdout.contains("k_start: 8") && stdout.contains("resample_every: 30"), "{stdout}");

    // Encoding with 3k latents: six per example, of either sign.
    let codes = path(dir.path(), "codes.npy");
    let (ok, _, stderr) = sae(&["encode", &model, "--data", &data, "--k", "6", "-o", &codes]);
    assert!(ok, "{stderr}");
    let codes: ndarray::Array2<f64> = npy::read_matrix(Path::new(&codes)).unwrap();
    assert_eq!(codes.dim(), (3000, 48));
    assert!(codes.rows().into_iter().all(|row| row.iter().filter(|&&v| v != 0.0).count() == 6));
    let (ok, _, stderr) = sae(&["encode", &model, "--data", &data, "--k", "49", "-o", &path(dir.path(), "no.npy")]);
    assert!(!ok && stderr.contains("--k 49"), "{stderr}");

    let (ok, _, stderr) = sae(&["export", &model, "--format", "saelens", "-o", &path(dir.path(), "saelens")]);
    assert!(!ok && stderr.contains("linear"), "{stderr}");
    let (ok, _, stderr) = sae(&[&train[..], &["--k-start", "1", "-o", &path(dir.path(), "no.safetensors")]].concat());
    assert!(!ok && stderr.contains("--k-start 1"), "{stderr}");
    let kl = path(dir.path(), "kl.safetensors");
    assert!(sae(&["train", "--iterations", "2", "--no-features", "-o", &kl]).0);
    let (ok, _, stderr) = sae(&["encode", &kl, "--data", &data, "--k", "3", "-o", &path(dir.path(), "no.npy")]);
    assert!(!ok && stderr.contains("--k applies"), "{stderr}");
}

#[test]
fn a_batch_topk_model_trains_encodes_by_its_threshold_and_exports_to_saelens_as_jumprelu() {
    let dir = tempfile::tempdir().unwrap();
    let (model, data) = (path(dir.path(), "batch.safetensors"), path(dir.path(), "planted.npy"));
    let generate = ["generate", "--planted", "--features", "16", "--atoms", "24", "--active", "2"];
    assert!(sae(&[&generate[..], &["--examples", "4000", "-o", &data]].concat()).0);
    let train = ["train", "--hidden-layer", "batch-topk", "--k", "2", "--hidden", "48", "--data", &data];
    let options = ["--epochs", "8", "--batch-size", "100", "--no-features", "-o", &model];
    let (ok, stdout, stderr) = sae(&[&train[..], &options[..]].concat());
    assert!(ok, "{stderr}");
    assert!(stdout.contains("model: BatchTopK sparse autoencoder") && stdout.contains("L0 2.00"), "{stdout}");
    let trained = TopKModel::<f64>::load(Path::new(&model)).unwrap();
    assert_eq!(trained.architecture(), sae::dictionary::Architecture::BATCH_TOPK);
    assert!(trained.threshold() > 0.0);
    let (ok, stdout, _) = sae(&["info", &model]);
    assert!(ok && stdout.contains(&format!("threshold {} after", trained.threshold())), "{stdout}");

    // Encoded by the threshold: a varying number of latents per example, about k on average,
    // each above the threshold.
    let codes = path(dir.path(), "codes.npy");
    let (ok, _, stderr) = sae(&["encode", &model, "--data", &data, "-o", &codes]);
    assert!(ok, "{stderr}");
    let codes: ndarray::Array2<f64> = npy::read_matrix(Path::new(&codes)).unwrap();
    let active = codes.iter().filter(|&&v| v != 0.0).count() as f64 / 4000.0;
    assert!((active - 2.0).abs() < 0.5, "{active} latents per example");
    assert!(codes.iter().all(|&v| v == 0.0 || v > trained.threshold()));
    let (ok, _, stderr) = sae(&["encode", &model, "--data", &data, "--k", "3", "-o", &path(dir.path(), "no.npy")]);
    assert!(!ok && stderr.contains("threshold"), "{stderr}");

    let saelens = path(dir.path(), "saelens");
    let (ok, _, stderr) = sae(&["export", &model, "--format", "saelens", "-o", &saelens]);
    assert!(ok, "{stderr}");
    let config = std::fs::read_to_string(Path::new(&saelens).join("cfg.json")).unwrap();
    assert!(config.contains("\"jumprelu\""), "{config}");
    let back = path(dir.path(), "back.safetensors");
    let (ok, stdout, stderr) = sae(&["import", &saelens, "--format", "saelens", "-o", &back]);
    assert!(ok && stdout.contains("BatchTopK"), "{stdout}{stderr}");
    let back = TopKModel::<f64>::load(Path::new(&back)).unwrap();
    assert_eq!((back.architecture(), back.threshold(), back.k()), (trained.architecture(), trained.threshold(), 2));
    let (ok, _, stderr) = sae(&["export", &model, "--format", "sparsify", "-o", &path(dir.path(), "sparsify")]);
    assert!(!ok && stderr.contains("threshold"), "{stderr}");
}

#[test]
fn a_relu_sparse_autoencoder_trains_with_its_l1_penalty_and_keeps_every_positive_latent() {
    let dir = tempfile::tempdir().unwrap();
    let (model, data) = (path(dir.path(), "relu.safetensors"), path(dir.path(), "planted.npy"));
    let generate = ["generate", "--planted", "--features", "16", "--atoms", "24", "--active", "2"];
    assert!(sae(&[&generate[..], &["--examples", "3000", "-o", &data]].concat()).0);
    let train = ["train", "--hidden-layer", "relu", "--hidden", "48", "--data", &data, "--no-features"];
    let (ok, stdout, stderr) = sae(&[
        &train[..],
        &["--l1-coefficient", "0.2", "--epochs", "10", "--batch-size", "100", "-o", &model],
    ]
    .concat());
    assert!(ok, "{stderr}");
    assert!(stdout.contains("model: ReLU sparse autoencoder") && stdout.contains("L1 λ = 0.2"), "{stdout}");
    assert!(!stdout.contains("unit-norm decoder"), "{stdout}");
    let trained = TopKModel::<f64>::load(Path::new(&model)).unwrap();
    assert_eq!(trained.architecture(), sae::dictionary::Architecture::RELU);
    let (ok, stdout, _) = sae(&["info", &model]);
    assert!(ok && stdout.contains("every positive one kept") && stdout.contains("l1_coefficient: 0.2"), "{stdout}");
    // Encoded: every positive pre-activation, as many per example as there are.
    let codes = path(dir.path(), "codes.npy");
    assert!(sae(&["encode", &model, "--data", &data, "-o", &codes]).0);
    let codes: ndarray::Array2<f64> = npy::read_matrix(Path::new(&codes)).unwrap();
    let blocks = trained.blocks();
    let x: ndarray::Array2<f64> = npy::read_matrix(Path::new(&data)).unwrap();
    for (e, row) in codes.rows().into_iter().enumerate().take(50) {
        for (j, &a) in row.iter().enumerate() {
            let z = blocks.b_enc[j]
                + (0..16).map(|f| blocks.w_enc[j * 16 + f] * (x[[e, f]] - blocks.b_dec[f])).sum::<f64>();
            assert!((a - z.max(0.0)).abs() < 1e-9, "example {e}, latent {j}: {a} against relu(z) {}", z.max(0.0));
        }
    }
    for (extra, message) in [
        (&["--k", "4", "--l1-coefficient", "0.2"][..], "every positive latent"),
        (&[][..], "needs --l1-coefficient"),
        (&["--l1-coefficient", "-1"][..], "l1 coefficient"),
    ] {
        let (ok, _, stderr) = sae(&[&train[..], extra, &["-o", &path(dir.path(), "no.safetensors")]].concat());
        assert!(!ok && stderr.contains(message), "{extra:?}: {stderr}");
    }
    let (ok, _, stderr) = sae(&["export", &model, "--format", "sparsify", "-o", &path(dir.path(), "sparsify")]);
    assert!(!ok && stderr.contains("every positive"), "{stderr}");
    let (ok, stdout, stderr) = sae(&["export", &model, "--format", "saelens", "-o", &path(dir.path(), "saelens")]);
    assert!(ok && stdout.contains("ReLU sparse autoencoder") && !stdout.contains("k = "), "{stdout}{stderr}");
    let config = std::fs::read_to_string(dir.path().join("saelens").join("cfg.json")).unwrap();
    assert!(config.contains("\"standard\""), "{config}");
    let k_sparse = ["train", "--hidden-layer", "k-sparse", "--k", "2", "--hidden", "48", "--data", &data];
    let (ok, _, stderr) = sae(&[&k_sparse[..], &["--l1-coefficient", "0.1", "-o", &path(dir.path(), "no")]].concat());
    assert!(!ok && stderr.contains("linear"), "{stderr}");
}

#[test]
fn held_out_data_is_measured_after_every_epoch_of_a_topk_run() {
    let dir = tempfile::tempdir().unwrap();
    let (model, data, log) =
        (path(dir.path(), "topk.safetensors"), path(dir.path(), "planted.npy"), path(dir.path(), "log.jsonl"));
    let generate = ["generate", "--planted", "--features", "16", "--atoms", "24", "--active", "2"];
    assert!(sae(&[&generate[..], &["--examples", "3000", "-o", &data]].concat()).0);
    let train = ["train", "--hidden-layer", "topk", "--k", "2", "--hidden", "48", "--data", &data, "--no-features"];
    let options = ["--epochs", "3", "--batch-size", "100", "--validation-fraction", "0.2", "--log-json", &log];
    let (ok, stdout, stderr) = sae(&[&train[..], &options[..], &["-o", &model]].concat());
    assert!(ok, "{stderr}");
    assert!(stdout.contains("held out: 600 examples") && stdout.contains("held-out FVU"), "{stdout}");
    let lines = std::fs::read_to_string(&log).unwrap();
    let last: serde_json::Value = serde_json::from_str(lines.lines().last().unwrap()).unwrap();
    let fvu = last["held_out_fvu"].as_f64().expect("the held-out FVU is logged");
    assert!(fvu > 0.0 && fvu < 1.0, "{last}");

    // Early stopping writes the model of the lowest held-out FVU, and says which: few training
    // rows, many latents and a large rate make the held-out FVU turn up.
    let (small, validation) = (path(dir.path(), "small.npy"), path(dir.path(), "validation.npy"));
    assert!(sae(&[&generate[..], &["--examples", "150", "--seed", "17", "-o", &small]].concat()).0);
    assert!(sae(&[&generate[..], &["--examples", "1000", "--seed", "18", "-o", &validation]].concat()).0);
    let overfit = [
        "train",
        "--hidden-layer",
        "topk",
        "--k",
        "4",
        "--hidden",
        "96",
        "--data",
        &small,
        "--no-features",
        "--epochs",
        "80",
        "--batch-size",
        "50",
        "--learning-rate",
        "0.03",
        "--validation",
        &validation,
        "--early-stopping",
        "3",
        "--log-json",
        &log,
        "-o",
        &model,
    ];
    let (ok, stdout, stderr) = sae(&overfit);
    assert!(ok, "{stderr}");
    let held_out: Vec<f64> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()["held_out_fvu"].as_f64().unwrap())
        .collect();
    let lowest = 1 + (0..held_out.len()).min_by(|&a, &b| held_out[a].total_cmp(&held_out[b])).unwrap();
    assert!(stdout.contains("stopped early") && held_out.len() == lowest + 3, "{stdout}");
    assert!(stdout.contains(&format!("model of epoch {lowest}, the lowest held-out FVU")), "{stdout}");
    let metadata = sae::model::ModelFile::<f32>::read_metadata(Path::new(&model)).unwrap();
    assert_eq!(metadata["chosen_epoch"], lowest.to_string());
    let (ok, _, stderr) = sae(&[&train[..], &["--validation-fraction", "0.2", "--validate-every", "2"]].concat());
    assert!(!ok && stderr.contains("--validate-every"), "{stderr}");
}

/// The arrays of an `.npz` (a zip of `.npy` files), each as f64 with its shape.
fn read_npz(path: &str) -> std::collections::BTreeMap<String, (Vec<usize>, Vec<f64>)> {
    use ndarray_npy::ReadNpyExt;
    use std::io::Read;
    let mut archive = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut arrays = std::collections::BTreeMap::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).unwrap();
        let name = entry.name().unwrap().trim_end_matches(".npy").to_string();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        let array = match name.as_str() {
            "format" => {
                // A 0-d array of one 3-byte string, as scipy writes it.
                assert!(String::from_utf8_lossy(&bytes).contains("'descr': '|S3'") && bytes.ends_with(b"csr"));
                assert!(String::from_utf8_lossy(&bytes).contains("'shape': ()"));
                continue;
            }
            "indices" => ndarray::ArrayD::<i32>::read_npy(&bytes[..]).unwrap().mapv(f64::from),
            "indptr" | "shape" => ndarray::ArrayD::<i64>::read_npy(&bytes[..]).unwrap().mapv(|v| v as f64),
            _ => ndarray::ArrayD::<f64>::read_npy(&bytes[..]).unwrap(),
        };
        arrays.insert(name, (array.shape().to_vec(), array.iter().copied().collect()));
    }
    arrays
}

#[test]
fn sparse_encoding_writes_the_dense_codes_as_a_scipy_csr_matrix_a_chunk_at_a_time() {
    use ndarray_npy::ReadNpyExt;
    let dir = tempfile::tempdir().unwrap();
    let data = path(dir.path(), "planted.npy");
    let generate = ["generate", "--planted", "--features", "16", "--atoms", "24", "--active", "2"];
    assert!(sae(&[&generate[..], &["--examples", "1000", "-o", &data]].concat()).0);
    let (m, h) = (1000, 48);
    for (layer, extra) in
        [("topk", &["--k", "3"][..]), ("batch-topk", &["--k", "3"][..]), ("relu", &["--l1-coefficient", "0.1"][..])]
    {
        let model = path(dir.path(), &format!("{layer}.safetensors"));
        let train = ["train", "--hidden-layer", layer, "--hidden", "48", "--epochs", "2", "--batch-size", "100"];
        let (ok, _, stderr) = sae(&[&train[..], extra, &["--data", &data, "--no-features", "-o", &model]].concat());
        assert!(ok, "{layer}: {stderr}");
        let (dense, sparse) = (path(dir.path(), "dense.npy"), path(dir.path(), "codes.npz"));
        assert!(sae(&["encode", &model, "--data", &data, "-o", &dense]).0);
        // Chunks of 300: the last one short, the workspace made for the first reused.
        let (ok, stdout, stderr) =
            sae(&["encode", &model, "--data", &data, "--chunk", "300", "--sparse", "-o", &sparse]);
        assert!(ok && stdout.contains("CSR"), "{layer}: {stdout}{stderr}");
        let dense = ndarray::Array2::<f64>::read_npy(std::fs::File::open(&dense).unwrap()).unwrap();
        let csr = read_npz(&sparse);
        assert_eq!(csr["shape"].1, [m as f64, h as f64]);
        let (indptr, indices, values) = (&csr["indptr"].1, &csr["indices"].1, &csr["data"].1);
        assert_eq!(indptr.len(), m + 1);
        let mut from_csr = ndarray::Array2::<f64>::zeros((m, h));
        for e in 0..m {
            let row = indptr[e] as usize..indptr[e + 1] as usize;
            assert!(indices[row.clone()].windows(2).all(|w| w[0] < w[1]), "{layer}: latents increasing in a row");
            for k in row {
                from_csr[[e, indices[k] as usize]] = values[k];
            }
        }
        assert_eq!(from_csr, dense, "{layer}: the CSR matrix is the dense codes");
        // Only the active latents are stored.
        assert!(values.iter().all(|&v| v > 0.0) && values.len() < m * h, "{layer}");
    }
    let model = path(dir.path(), "topk.safetensors");
    for (args, message) in [
        (vec!["encode", &model, "--data", &data, "--sparse", "-o", "-"], "-o FILE"),
        (vec!["reconstruct", &model, "--data", &data, "--sparse", "-o", "r.npz"], "-o FILE"),
    ] {
        let (ok, _, stderr) = sae(&args);
        assert!(!ok && stderr.contains(message), "{stderr}");
    }
    let kl = path(dir.path(), "kl.safetensors");
    assert!(sae(&["train", "--iterations", "2", "--hidden", "8", "--data", &data, "--no-features", "-o", &kl]).0);
    let out = path(dir.path(), "kl.npz");
    let (ok, _, stderr) = sae(&["encode", &kl, "--data", &data, "--sparse", "-o", &out]);
    assert!(!ok && stderr.contains("dictionary model"), "{stderr}");
    assert!(!Path::new(&out).exists(), "nothing written");
}

#[test]
fn a_streamed_topk_run_checkpoints_and_a_resumed_run_takes_the_uninterrupted_runs_steps() {
    let dir = tempfile::tempdir().unwrap();
    let data = path(dir.path(), "planted.npy");
    let generate = ["generate", "--planted", "--features", "16", "--atoms", "24", "--active", "2", "--f32"];
    assert!(sae(&[&generate[..], &["--examples", "2000", "-o", &data]].concat()).0);
    let train = [
        "train",
        "--hidden-layer",
        "batch-topk",
        "--k",
        "3",
        "--hidden",
        "48",
        "--data",
        &data,
        "--stream",
        "--batch-size",
        "100",
        "--normalize-inputs",
        "--no-features",
    ];
    let (straight, checkpoint, resumed) = (
        path(dir.path(), "straight.safetensors"),
        path(dir.path(), "run.ckpt"),
        path(dir.path(), "resumed.safetensors"),
    );
    let (ok, _, stderr) = sae(&[&train[..], &["--epochs", "3", "-o", &straight]].concat());
    assert!(ok, "{stderr}");
    // Two epochs checkpointed, then the third from the checkpoint (a constant learning rate
    // lets a run grow).
    let first = ["--epochs", "2", "--checkpoint", &checkpoint, "--checkpoint-every", "7", "-o", &resumed];
    let (ok, _, stderr) = sae(&[&train[..], &first[..]].concat());
    assert!(ok, "{stderr}");
    let more = ["--epochs", "3", "--resume", &checkpoint, "--checkpoint", &checkpoint, "-o", &resumed];
    let (ok, stdout, stderr) = sae(&[&train[..], &more[..]].concat());
    assert!(ok && stdout.contains("after 2 epochs"), "{stdout}{stderr}");
    assert_eq!(
        TopKModel::<f32>::load(Path::new(&resumed)).unwrap(),
        TopKModel::<f32>::load(Path::new(&straight)).unwrap()
    );
    // On another number of threads the run goes on, warned that it is not bit for bit the
    // uninterrupted one.
    let threads = (std::thread::available_parallelism().map_or(1, |n| n.get()) + 1).to_string();
    let again = ["--epochs", "3", "--threads", &threads, "--resume", &checkpoint, "-o", &resumed];
    let (ok, _, stderr) = sae(&[&train[..], &again[..]].concat());
    assert!(ok && stderr.contains("written with threads") && stderr.contains("not bit-for-bit"), "{stderr}");
    // Another seed is another run.
    let other = ["--epochs", "3", "--seed", "2", "--resume", &checkpoint, "-o", &resumed];
    let (ok, _, stderr) = sae(&[&train[..], &other[..]].concat());
    assert!(!ok && stderr.contains("topk.option.seed"), "{stderr}");
}

#[test]
fn a_checkpoint_that_cannot_be_written_stops_the_run_keeping_its_model() {
    let dir = tempfile::tempdir().unwrap();
    let data = path(dir.path(), "planted.npy");
    let generate = ["generate", "--planted", "--features", "16", "--atoms", "24", "--active", "2", "--f32"];
    assert!(sae(&[&generate[..], &["--examples", "500", "-o", &data]].concat()).0);
    let (checkpoint, model) = (path(dir.path(), "run.ckpt"), path(dir.path(), "m.safetensors"));
    // A 1 MB file-size limit (EFBIG past it, SIGXFSZ ignored) stands in for a full disk: the
    // model (4096 latents of 16 inputs, f32: 0.5 MB) fits, its checkpoint (the model, the
    // parameters and Adam's two moments: 2 MB) does not.
    let script = format!(
        "trap '' XFSZ; ulimit -f 1024; exec {} train --hidden-layer topk --k 3 --hidden 4096 --data {data} \
         --batch-size 100 --epochs 3 --no-features --checkpoint {checkpoint} --checkpoint-every 2 -o {model}",
        env!("CARGO_BIN_EXE_sae")
    );
    let out = Command::new("bash").args(["-c", &script]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("run.ckpt") && stderr.contains("File too large") && stderr.contains("m.safetensors"),
        "{stderr}"
    );
    let kept = sae::model::ModelFile::<f64>::read_metadata(Path::new(&model)).unwrap();
    assert_eq!(kept.get("stop").map(String::as_str), Some("checkpoint-failed"));
    assert_eq!(kept.get("steps").map(String::as_str), Some("2"), "the model of the step whose checkpoint failed");
    assert!(TopKModel::<f32>::load(Path::new(&model)).is_ok());
    assert!(!Path::new(&checkpoint).exists(), "no partial checkpoint");
}
