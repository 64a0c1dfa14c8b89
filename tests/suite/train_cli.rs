//! `sae train` and the commands that use its models, end to end: the embedded default run,
//! data files, a run killed mid-way and resumed bit-for-bit, a full disk during a checkpoint,
//! and bad files named in the error.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;
use sae::data::npy;
use sae::model::ModelFile;
use sae::Dataset;

fn sae(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sae")).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).to_str().unwrap().to_string()
}

#[test]
fn train_without_arguments_learns_on_the_embedded_patches_and_writes_model_and_picture() {
    let dir = tempfile::tempdir().unwrap();
    let (model, picture) = (path(dir.path(), "m.safetensors"), path(dir.path(), "f.png"));
    let (ok, stdout, stderr) = sae(&["train", "--iterations", "30", "-o", &model, "--features", &picture]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("embedded") && stdout.contains("after 30 iterations"), "{stdout}");
    let loaded = ModelFile::<f64>::load(Path::new(&model)).unwrap();
    assert_eq!((loaded.hyper.visible(), loaded.hyper.hidden(), loaded.hyper.rho()), (64, 25, 0.01));
    assert_eq!(loaded.metadata["iterations"], "30");
    assert!(std::fs::metadata(&picture).unwrap().len() > 100);
}

#[test]
fn encode_and_reconstruct_apply_a_model_trained_on_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let (m, n) = (500, 16);
    let values = uniform_data(m, n, 9);
    let data = path(dir.path(), "x.npy");
    npy::write_matrix(Path::new(&data), &ndarray::Array2::from_shape_vec((m, n), values.clone()).unwrap()).unwrap();
    let model = path(dir.path(), "m.safetensors");
    let (ok, _, stderr) = sae(&[
        "train",
        "--data",
        &data,
        "--hidden",
        "5",
        "--rho",
        "0.1",
        "--iterations",
        "20",
        "-o",
        &model,
        "--no-features",
    ]);
    assert!(ok, "{stderr}");
    let encoded = path(dir.path(), "h.npy");
    let (ok, _, stderr) = sae(&["encode", &model, "--data", &data, "--stream", "--chunk", "77", "-o", &encoded]);
    assert!(ok, "{stderr}");
    let (ok, stdout, stderr) = sae(&["reconstruct", &model, "--data", &data, "-o", &path(dir.path(), "r.npy")]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("mean ½‖x̂ − x‖²"), "{stdout}");

    let loaded = ModelFile::<f64>::load(Path::new(&model)).unwrap();
    let mut expected = vec![0.0; m * 5];
    loaded.forward().encode(&Dataset::examples_by_features(&values, m, n).unwrap(), &mut expected).unwrap();
    let written: ndarray::Array2<f64> = npy::read_matrix(Path::new(&encoded)).unwrap();
    assert_eq!(written.dim(), (m, 5));
    // Chunks of 77 examples against one block of all: equal up to the GEMM's summation order.
    let difference = relative_error(written.as_slice().unwrap(), &expected);
    assert!(difference < 1e-14, "{difference:e}");
}

/// The weights of a model file, as stored.
fn weights(path: &str) -> Vec<f64> {
    ModelFile::<f64>::load(Path::new(path)).unwrap().parameters.into_theta()
}

#[test]
fn a_run_killed_mid_way_and_resumed_ends_bit_for_bit_where_an_uninterrupted_run_ends() {
    let dir = tempfile::tempdir().unwrap();
    let common = ["train", "--iterations", "150", "--threads", "2", "--no-features"];
    let full = path(dir.path(), "full.safetensors");
    let (ok, _, stderr) = sae(&[&common[..], &["-o", &full]].concat());
    assert!(ok, "{stderr}");

    let checkpoint = path(dir.path(), "run.ckpt");
    let killed = path(dir.path(), "killed.safetensors");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sae"))
        .args([&common[..], &["-o", &killed, "--checkpoint", &checkpoint, "--checkpoint-every", "1"]].concat())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let killed_at = loop {
        std::thread::sleep(Duration::from_millis(2));
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        if let Ok(saved) = ModelFile::<f64>::load(Path::new(&checkpoint)) {
            let iteration: usize = saved.metadata["lbfgs.iteration"].parse().unwrap();
            if iteration >= 20 {
                child.kill().unwrap();
                child.wait().unwrap();
                break iteration;
            }
        }
    };
    assert!(!Path::new(&killed).exists(), "killed at iteration {killed_at}, before the end");

    let resumed = path(dir.path(), "resumed.safetensors");
    let (ok, stdout, stderr) = sae(&[&common[..], &["-o", &resumed, "--resume", &checkpoint]].concat());
    assert!(ok, "{stderr}");
    assert!(stdout.contains("resuming"), "{stdout}");
    assert_eq!(weights(&resumed), weights(&full), "resumed from iteration ≥ {killed_at}");
}

#[test]
fn a_full_disk_during_a_checkpoint_fails_clearly_and_keeps_the_previous_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = path(dir.path(), "run.ckpt");
    let (ok, _, stderr) = sae(&[
        "train",
        "--iterations",
        "3",
        "--checkpoint",
        &checkpoint,
        "--no-features",
        "-o",
        &path(dir.path(), "a.safetensors"),
    ]);
    assert!(ok, "{stderr}");
    let before = std::fs::read(&checkpoint).unwrap();

    // A 1 MB file-size limit (EFBIG past it, with SIGXFSZ ignored) stands in for a full disk:
    // the checkpoint of iteration 30 holds 30 correction pairs of 3 289 doubles each, 1.6 MB.
    let script = format!(
        "trap '' XFSZ; ulimit -f 1024; exec {} train --iterations 100 --resume {checkpoint} --checkpoint {checkpoint} --checkpoint-every 30 --no-features -o {}",
        env!("CARGO_BIN_EXE_sae"),
        path(dir.path(), "b.safetensors")
    );
    let out = Command::new("bash").args(["-c", &script]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("run.ckpt") && stderr.contains("File too large"), "{stderr}");
    assert_eq!(std::fs::read(&checkpoint).unwrap(), before, "the previous checkpoint is intact");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.contains(".sae-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn a_missing_data_file_or_a_corrupted_checkpoint_is_named() {
    let dir = tempfile::tempdir().unwrap();
    // (Every output in the test's own folder: a run in the working directory would share its
    // default outputs, and their write locks, with any other test doing the same.)
    let model = path(dir.path(), "m.safetensors");
    let (ok, _, stderr) = sae(&["train", "--data", "/no/such/x.npy", "--no-features", "-o", &model]);
    assert!(!ok && stderr.contains("/no/such/x.npy"), "{stderr}");
    let corrupt = path(dir.path(), "bad.ckpt");
    std::fs::write(&corrupt, b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage").unwrap();
    let (ok, _, stderr) =
        sae(&["train", "--resume", &corrupt, "--no-features", "-o", &path(dir.path(), "m.safetensors")]);
    assert!(!ok && stderr.contains("bad.ckpt"), "{stderr}");
}

#[test]
fn info_describes_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = path(dir.path(), "run.ckpt");
    let (ok, _, stderr) = sae(&[
        "train",
        "--iterations",
        "2",
        "--checkpoint",
        &checkpoint,
        "--no-features",
        "-o",
        &path(dir.path(), "m.safetensors"),
    ]);
    assert!(ok, "{stderr}");
    let (ok, stdout, stderr) = sae(&["info", &checkpoint]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("n = 64 inputs, h = 25 hidden units") && stdout.contains("lbfgs.iteration: 2"), "{stdout}");
}

#[test]
fn train_with_adam_runs_epochs_of_minibatches() {
    let dir = tempfile::tempdir().unwrap();
    let model = path(dir.path(), "m.safetensors");
    let (ok, stdout, stderr) = sae(&[
        "train",
        "--optimizer",
        "adam",
        "--epochs",
        "3",
        "--batch-size",
        "500",
        "--learning-rate",
        "0.01",
        "--no-features",
        "-o",
        &model,
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("3 epochs, 60 steps"), "{stdout}");
    assert_eq!(ModelFile::<f64>::load(Path::new(&model)).unwrap().metadata["optimizer"], "adam");
}

#[test]
fn the_learning_rate_schedule_is_printed_recorded_and_refused_with_l_bfgs() {
    let dir = tempfile::tempdir().unwrap();
    let model = path(dir.path(), "m.safetensors");
    let schedule = ["--lr-warmup", "10", "--lr-decay", "cosine", "--lr-decay-start", "0.5"];
    let mut args = vec!["train", "--optimizer", "sgd", "--epochs", "2", "--batch-size", "500", "--no-features", "-o"];
    args.push(&model);
    let (ok, stdout, stderr) = sae(&[&args[..], &schedule].concat());
    assert!(ok, "{stderr}");
    let described = "cosine decay from 0.5 of the steps, 10 warm-up steps";
    assert!(stdout.contains(&format!("Sgd ({described}) over 2 epochs")), "{stdout}");
    assert_eq!(ModelFile::<f64>::load(Path::new(&model)).unwrap().metadata["lr_schedule"], described);

    let topk = ["train", "--hidden-layer", "topk", "--k", "4", "--hidden", "32", "--epochs", "1", "--no-features"];
    let topk_model = path(dir.path(), "topk.safetensors");
    let (ok, stdout, stderr) = sae(&[&topk[..], &["-o", &topk_model], &schedule].concat());
    assert!(ok, "{stderr}");
    assert!(stdout.contains(&format!("adam at 0.001 ({described}) over 1 epochs")), "{stdout}");

    let (ok, _, stderr) = sae(&["train", "--iterations", "5", "--lr-decay", "linear", "-o", &model]);
    assert!(!ok && stderr.contains("L-BFGS has no learning rate"), "{stderr}");
    for (extra, named) in [
        (&["--optimizer", "adam", "--lr-decay", "linear", "--lr-decay-start", "1"][..], "--lr-decay-start 1:"),
        (&["--optimizer", "adam", "--lr-decay-start", "0.5"][..], "give --lr-decay"),
        (&["--lr-decay-start", "0.5"][..], "L-BFGS has no learning rate"),
    ] {
        let (ok, _, stderr) = sae(&[&["train", "-o", &model][..], extra].concat());
        assert!(!ok && stderr.contains(named), "{extra:?}: {stderr}");
    }
}

#[test]
fn minibatch_training_streams_shards_takes_the_steps_of_the_same_shuffle_in_memory_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (m, n) = (300, 16);
    let values = crate::common::uniform_data(m, n, 9);
    let array = |rows: std::ops::Range<usize>| {
        ndarray::Array2::from_shape_vec((rows.len(), n), values[rows.start * n..rows.end * n].to_vec()).unwrap()
    };
    let data = path(dir.path(), "x.npy");
    npy::write_matrix(Path::new(&data), &array(0..m)).unwrap();
    let shards = dir.path().join("shards");
    std::fs::create_dir(&shards).unwrap();
    for (i, rows) in [0..100, 100..230, 230..m].into_iter().enumerate() {
        npy::write_matrix(&shards.join(format!("{i}.npy")), &array(rows)).unwrap();
    }
    let shards = shards.to_str().unwrap();
    let common = [
        "train",
        "--optimizer",
        "adam",
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--hidden",
        "4",
        "--learning-rate",
        "0.01",
        "--shuffle-block",
        "16",
        "--shuffle-window",
        "3",
        "--no-features",
    ];
    let run = |extra: &[&str]| {
        let (ok, stdout, stderr) = sae(&[&common[..], extra].concat());
        assert!(ok, "{extra:?}: {stderr}");
        stdout
    };
    let (in_memory, streamed) = (path(dir.path(), "memory.safetensors"), path(dir.path(), "streamed.safetensors"));
    run(&["--data", &data, "-o", &in_memory]);
    let stdout = run(&["--data", shards, "--stream", "-o", &streamed]);
    assert!(stdout.contains("2 epochs, 20 steps") && stdout.contains("peak RSS"), "{stdout}");
    assert_eq!(weights(&streamed), weights(&in_memory));
    let saved = ModelFile::<f64>::load(Path::new(&streamed)).unwrap();
    assert_eq!(saved.metadata["optimizer"], "adam");

    // Stopped after its first step (mid-epoch) by the time limit, and resumed.
    let (checkpoint, resumed) = (path(dir.path(), "run.ckpt"), path(dir.path(), "resumed.safetensors"));
    let stopped = path(dir.path(), "stopped.safetensors");
    run(&["--data", shards, "--stream", "-o", &stopped, "--checkpoint", &checkpoint, "--max-time", "0"]);
    assert_eq!(ModelFile::<f64>::load(Path::new(&checkpoint)).unwrap().metadata["minibatch.batch"], "1");
    let stdout = run(&["--data", shards, "--stream", "-o", &resumed, "--resume", &checkpoint]);
    assert!(stdout.contains("resuming"), "{stdout}");
    assert_eq!(weights(&resumed), weights(&streamed));

    // Blocks order minibatches, not L-BFGS's full batches.
    let (ok, _, stderr) = sae(&["train", "--data", &data, "--shuffle-block", "16", "-o", &stopped]);
    assert!(!ok && stderr.contains("--shuffle-block"), "{stderr}");
}

#[test]
fn train_with_the_l1_penalty_records_it_in_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = path(dir.path(), "m.safetensors");
    let (ok, stdout, stderr) =
        sae(&["train", "--penalty", "l1", "--beta", "0.1", "--iterations", "10", "--no-features", "-o", &model]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("l1 penalty"), "{stdout}");
    let (ok, stdout, _) = sae(&["info", &model]);
    assert!(ok && stdout.contains("l1 sparsity penalty"), "{stdout}");
}

#[test]
fn train_records_the_variant_it_was_given_and_keeps_tied_weights_tied() {
    let dir = tempfile::tempdir().unwrap();
    let model = path(dir.path(), "m.safetensors");
    let args =
        ["--activation", "tanh", "--tied", "--contractive", "0.1", "--denoise", "masking:0.3", "--noise-seed", "5"];
    let (ok, stdout, stderr) =
        sae(&[&["train", "--iterations", "10", "--no-features", "-o", &model][..], &args].concat());
    assert!(ok, "{stderr}");
    assert!(stdout.contains("tanh units") && stdout.contains("tied weights"), "{stdout}");
    let loaded = ModelFile::<f64>::load(Path::new(&model)).unwrap();
    let hyper = loaded.hyper;
    assert_eq!(hyper.activation(), sae::model::Activation::Tanh);
    assert!(hyper.tied() && hyper.contractive() == 0.1 && hyper.corruption_seed() == 5);
    assert_eq!(hyper.corruption(), sae::model::Corruption::Masking { probability: 0.3 });
    let p = &loaded.parameters;
    assert!((0..25).all(|j| (0..64).all(|k| p.w1().get(j, k) == p.w2().get(k, j))));
}

#[test]
fn cross_entropy_with_linear_output_units_is_refused_naming_the_flags() {
    let dir = tempfile::tempdir().unwrap();
    let model = path(dir.path(), "m.safetensors");
    let (ok, _, stderr) =
        sae(&["train", "--loss", "cross-entropy", "--output-units", "linear", "--no-features", "-o", &model]);
    assert!(!ok && stderr.contains("--output-units"), "{stderr}");
}

#[test]
fn an_unknown_corruption_is_refused_naming_it() {
    let (ok, _, stderr) = sae(&["train", "--denoise", "salt:0.1"]);
    assert!(!ok && stderr.contains("salt"), "{stderr}");
}

#[test]
fn max_time_gtol_and_ftol_stop_a_run_that_is_written_as_finished() {
    let dir = tempfile::tempdir().unwrap();
    let model = path(dir.path(), "m.safetensors");
    let (ok, stdout, stderr) = sae(&["train", "--max-time", "0", "-o", &model, "--no-features"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("reached the time limit") && stdout.contains("after 1 iterations"), "{stdout}");
    let loaded = ModelFile::<f64>::load(Path::new(&model)).unwrap();
    assert_eq!(loaded.metadata["stop"], "time-limit");
    assert!(!loaded.metadata.contains_key("unfinished"));

    let (ok, stdout, stderr) = sae(&["train", "--gtol", "1e-3", "-o", &model, "--no-features"]);
    assert!(ok, "{stderr}");
    assert_eq!(ModelFile::<f64>::load(Path::new(&model)).unwrap().metadata["stop"], "gradient-tolerance", "{stdout}");
    let (ok, _, stderr) = sae(&["train", "--ftol", "1e-2", "-o", &model, "--no-features"]);
    assert!(ok, "{stderr}");
    // --ftol bounds the change of the step as well as of the cost (minFunc's progTol).
    let loaded = ModelFile::<f64>::load(Path::new(&model)).unwrap();
    assert!(["step-size", "function-change"].contains(&loaded.metadata["stop"].as_str()), "{:?}", loaded.metadata);
    assert!(loaded.metadata["iterations"].parse::<usize>().unwrap() < 400);

    let (ok, stdout, stderr) =
        sae(&["train", "--optimizer", "adam", "--epochs", "3", "--max-time", "0", "-o", &model, "--no-features"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("reached the time limit") && stdout.contains("1 steps"), "{stdout}");
    assert_eq!(ModelFile::<f64>::load(Path::new(&model)).unwrap().metadata["stop"], "time-limit");
}

#[test]
fn bad_stopping_rules_are_refused_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let model = path(dir.path(), "m.safetensors");
    for (args, flag) in [
        (vec!["--max-time", "-1"], "--max-time"),
        (vec!["--max-time", "soon"], "--max-time"),
        (vec!["--gtol", "-1"], "gradient tolerance"),
        (vec!["--optimizer", "adam", "--gtol", "1e-3"], "--gtol"),
    ] {
        let mut all = vec!["train", "-o", &model, "--no-features"];
        all.extend(&args);
        let (ok, _, stderr) = sae(&all);
        assert!(!ok && stderr.contains(flag), "{args:?}: {stderr}");
    }
    assert!(!Path::new(&model).exists(), "nothing written");
}

#[test]
fn init_continues_from_a_model_of_the_same_shape_and_refuses_another() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (path(dir.path(), "a.safetensors"), path(dir.path(), "b.safetensors"));
    let (ok, _, stderr) = sae(&["train", "--optimizer", "adam", "--epochs", "2", "-o", &first, "--no-features"]);
    assert!(ok, "{stderr}");
    let adam = ModelFile::<f64>::load(Path::new(&first)).unwrap();
    // L-BFGS after Adam: its first cost is the Adam model's, evaluated on the same data.
    let (ok, stdout, stderr) = sae(&["train", "--init", &first, "--iterations", "5", "-o", &second, "--no-features"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains(&format!("starting from {first}")), "{stdout}");
    let continued = ModelFile::<f64>::load(Path::new(&second)).unwrap();
    assert_eq!(continued.metadata["init"], first);
    assert_eq!(continued.metadata["iterations"], "5");
    let (patches, m, n) = sae::data::images::embedded_patches(1);
    let data = Dataset::examples_by_features(&patches, m, n).unwrap();
    let theta = adam.parameters.theta();
    let start =
        sae::Objective::new(continued.hyper, data).unwrap().evaluate(theta, &mut vec![0.0; theta.len()]).unwrap();
    assert!(
        stdout.contains(&format!("from {start:.6e}")),
        "the run starts at the Adam model's cost {start:.6e}: {stdout}"
    );

    // A start that is already an optimum to the tolerances is kept, not refused as unlearned.
    let (ok, _, stderr) = sae(&["train", "--gtol", "1e-3", "-o", &second, "--no-features"]);
    assert!(ok, "{stderr}");
    let third = path(dir.path(), "c.safetensors");
    let (ok, stdout, stderr) = sae(&["train", "--init", &second, "--gtol", "1e-3", "-o", &third, "--no-features"]);
    assert!(ok && stdout.contains("after 0 iterations"), "{stdout}{stderr}");
    let (ok, _, stderr) = sae(&["train", "--init", &first, "--hidden", "30", "-o", &second, "--no-features"]);
    assert!(!ok && stderr.contains("h (--hidden): 25 in the model, 30 in this run"), "{stderr}");
    let (ok, _, stderr) = sae(&["train", "--init", &first, "--tied", "-o", &second, "--no-features"]);
    assert!(!ok && stderr.contains("tied weights"), "{stderr}");
    let (ok, _, stderr) = sae(&["train", "--init", &first, "--resume", &first, "-o", &second, "--no-features"]);
    assert!(!ok && stderr.contains("--resume"), "{stderr}");
}

fn sae_with_env(env: (&str, &str), args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sae")).env(env.0, env.1).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn progress_goes_to_stderr_as_plain_lines_and_quiet_silences_it() {
    let dir = tempfile::tempdir().unwrap();
    let model = path(dir.path(), "m.safetensors");
    // stderr is a pipe here, not a terminal: plain lines, at least the last one.
    let (ok, stdout, stderr) = sae(&["train", "--iterations", "12", "-o", &model, "--no-features"]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("iteration 12/12") && stderr.contains("evaluations/s"), "{stderr}");
    assert!(!stdout.contains("iteration 12/12"), "progress is not on stdout: {stdout}");
    let (ok, _, stderr) = sae(&["train", "--optimizer", "adam", "--epochs", "2", "-o", &model, "--no-features"]);
    assert!(ok && stderr.contains("step 80/80") && stderr.contains("steps/s"), "{stderr}");
    let (ok, stdout, stderr) = sae(&["train", "-q", "--iterations", "12", "-o", &model, "--no-features"]);
    assert!(ok && stderr.is_empty(), "{stderr}");
    // A run stopped from outside still ends on its latest progress line.
    let (ok, _, stderr) = sae(&["train", "--iterations", "400", "--max-time", "0.2", "-o", &model, "--no-features"]);
    let last = stderr.lines().rfind(|line| line.starts_with("iteration ")).unwrap_or_default().to_string();
    let stopped_at = ModelFile::<f64>::load(Path::new(&model)).unwrap().metadata["iterations"].clone();
    assert!(ok && last.starts_with(&format!("iteration {stopped_at}/400")), "{stderr}");
    assert!(stdout.contains("after 12 iterations"), "the results are still printed: {stdout}");
}

#[test]
fn the_library_logs_to_stderr_with_verbose_or_rust_log() {
    let dir = tempfile::tempdir().unwrap();
    let (model, checkpoint) = (path(dir.path(), "m.safetensors"), path(dir.path(), "c.ckpt"));
    let args = ["train", "--iterations", "4", "-o", &model, "--no-features", "--checkpoint", &checkpoint];
    let (_, _, quiet) = sae(&args);
    assert!(!quiet.contains("L-BFGS stopped"), "not by default: {quiet}");
    let verbose: Vec<&str> = ["-v"].into_iter().chain(args).collect();
    let (ok, _, stderr) = sae(&verbose);
    assert!(
        ok && stderr.contains("L-BFGS stopped after 4 iterations") && stderr.contains("checkpoint of iteration 4"),
        "{stderr}"
    );
    let (ok, _, stderr) = sae_with_env(("RUST_LOG", "sae=debug"), &args);
    assert!(ok && stderr.contains("L-BFGS iteration 3: cost"), "{stderr}");
    // The one warning the kernels emit reaches the user.
    let (ok, _, stderr) = sae_with_env(("SAE_ISA", "avx9000"), &["objective", "--repeat", "1"]);
    assert!(ok && stderr.contains("SAE_ISA=avx9000 is not a supported instruction set"), "{stderr}");
}

#[test]
fn log_json_writes_one_parsable_line_per_iteration_or_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let (model, log) = (path(dir.path(), "m.safetensors"), path(dir.path(), "run.jsonl"));
    let (ok, _, stderr) = sae(&["train", "--iterations", "9", "-o", &model, "--no-features", "--log-json", &log]);
    assert!(ok, "{stderr}");
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(lines.len(), 9);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["iteration"], i + 1);
        for key in ["cost", "gradient_norm", "step", "evaluations", "seconds", "examples_per_second"] {
            assert!(line[key].is_number(), "{key} in {line}");
        }
    }
    let model_cost: f64 = ModelFile::<f64>::load(Path::new(&model)).unwrap().metadata["cost"].parse().unwrap();
    assert_eq!(lines[8]["cost"].as_f64().unwrap(), model_cost, "the last line is the model's cost");

    let (ok, _, stderr) =
        sae(&["train", "--optimizer", "sgd", "--epochs", "3", "-o", &model, "--no-features", "--log-json", &log]);
    assert!(ok, "{stderr}");
    let epochs: Vec<serde_json::Value> =
        std::fs::read_to_string(&log).unwrap().lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(epochs.iter().map(|line| line["epoch"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(epochs[2]["steps"], 120);

    // The log is an output like any other: it may not replace the data.
    let (ok, _, stderr) = sae(&["train", "--data", &model, "-o", &model, "--log-json", &model]);
    assert!(!ok && stderr.contains("--log-json"), "{stderr}");
}

#[test]
fn a_model_file_records_what_reproduces_its_run() {
    let dir = tempfile::tempdir().unwrap();
    let model = path(dir.path(), "with space.safetensors");
    let (ok, _, stderr) =
        sae(&["train", "--iterations", "3", "--seed", "7", "-o", &model, "--no-features", "--threads", "1"]);
    assert!(ok, "{stderr}");
    let metadata = ModelFile::<f64>::load(Path::new(&model)).unwrap().metadata;
    assert_eq!(metadata["seed"], "7");
    assert_eq!(metadata["threads"], "1");
    assert_eq!(metadata["backend"], "native");
    assert!(["scalar", "avx2", "avx512"].contains(&metadata["isa"].as_str()));
    assert!(
        metadata["command"].ends_with(&format!("train --iterations 3 --seed 7 -o '{model}' --no-features --threads 1"))
    );
    assert!(metadata["created"].starts_with("20") && metadata["created"].ends_with('Z'), "{}", metadata["created"]);
    let (patches, m, n) = sae::data::images::embedded_patches(7);
    let fingerprint = sae::train::DataFingerprint::of_dataset(&Dataset::examples_by_features(&patches, m, n).unwrap());
    assert_eq!(metadata["data.examples"], m.to_string());
    assert_eq!(metadata["data.fnv1a64"], format!("{:016x}", fingerprint.hash));
    // `sae info` shows them.
    let (ok, stdout, _) = sae(&["info", &model]);
    assert!(ok && stdout.contains("seed: 7") && stdout.contains("data.fnv1a64: "), "{stdout}");
}

#[test]
fn common_slips_get_a_hint_not_a_parser_error() {
    let dir = tempfile::tempdir().unwrap();
    let (data, model) = (path(dir.path(), "x.npy"), path(dir.path(), "m.safetensors"));
    npy::write_matrix(Path::new(&data), &ndarray::Array2::from_shape_vec((20, 4), uniform_data(20, 4, 1)).unwrap())
        .unwrap();
    // A negative number is a value, so the error is the value's.
    let (ok, _, stderr) = sae(&["train", "--lambda", "-1", "-o", &model]);
    assert!(!ok && stderr.contains("`lambda` = -1"), "{stderr}");
    // A data file without --data.
    let (ok, _, stderr) = sae(&["train", &data, "-o", &model]);
    assert!(!ok && stderr.contains(&format!("the data is given with --data (--data {data})")), "{stderr}");
    let (ok, _, stderr) = sae(&["objective", &data]);
    assert!(!ok && stderr.contains("the data is given with --data"), "{stderr}");
    // A folder of shards without --stream.
    let (ok, _, stderr) = sae(&["train", "--data", dir.path().to_str().unwrap(), "-o", &model]);
    assert!(!ok && stderr.contains("a directory of shards is read with --stream"), "{stderr}");
    assert!(!Path::new(&model).exists());
}

#[test]
fn encode_reads_a_chunk_at_a_time_with_or_without_stream_files_or_shards() {
    let dir = tempfile::tempdir().unwrap();
    let (m, n) = (300, 16);
    let values = uniform_data(m, n, 4);
    let data = path(dir.path(), "x.npy");
    npy::write_matrix(Path::new(&data), &ndarray::Array2::from_shape_vec((m, n), values.clone()).unwrap()).unwrap();
    let shards = dir.path().join("shards");
    std::fs::create_dir(&shards).unwrap();
    for (k, rows) in values.chunks(100 * n).enumerate() {
        let shard = ndarray::Array2::from_shape_vec((100, n), rows.to_vec()).unwrap();
        npy::write_matrix(&shards.join(format!("{k}.npy")), &shard).unwrap();
    }
    let model = path(dir.path(), "m.safetensors");
    let train =
        ["train", "--data", &data, "--hidden", "5", "--rho", "0.1", "--iterations", "5", "-o", &model, "--no-features"];
    assert!(sae(&train).0);
    let encoded = |args: &[&str]| {
        let out = path(dir.path(), "e.npy");
        let _ = std::fs::remove_file(&out);
        let (ok, stdout, stderr) =
            sae(&[&["encode", &model, "-o", &out, "--chunk", "64", "--stream"][..], args].concat());
        assert!(ok, "{stderr}");
        assert!(stdout.contains("streamed"), "{stdout}");
        npy::read_matrix::<f64>(Path::new(&out)).unwrap()
    };
    let from_file = encoded(&["--data", &data]);
    assert_eq!(from_file.dim(), (m, 5));
    assert_eq!(encoded(&["--data", shards.to_str().unwrap()]), from_file);
    let (ok, stdout, stderr) = sae(&["encode", &model, "--data", &data, "-o", &path(dir.path(), "f.npy")]);
    assert!(ok && stdout.contains("streamed"), "without --stream too: {stdout}{stderr}");
}

#[test]
fn info_describes_every_kind_of_model_the_tool_writes() {
    use sae::model::stack::StackModel;
    use sae::model::vae::{VaeDecoder, VaeModel, VaeShape};
    use sae::model::Activation;
    use sae::objective::StackShape;
    let dir = tempfile::tempdir().unwrap();
    let vae = path(dir.path(), "vae.safetensors");
    let shape =
        VaeShape { visible: 16, hidden: 8, latent: 2, activation: Activation::Relu, decoder: VaeDecoder::Bernoulli };
    let metadata = vec![("epochs".to_string(), "3".to_string())];
    VaeModel { shape, theta: shape.init::<f32>(1), metadata: metadata.clone() }.save(Path::new(&vae)).unwrap();
    let (ok, stdout, stderr) = sae(&["info", &vae]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("variational autoencoder") && stdout.contains("d = 2 latent") && stdout.contains("epochs: 3"),
        "{stdout}"
    );

    let stack = path(dir.path(), "stack.safetensors");
    let shape = StackShape { sizes: vec![16, 6, 4], classes: 3 };
    let theta = vec![0.5f64; shape.len()];
    StackModel { shape, theta, metadata }.save(Path::new(&stack)).unwrap();
    let (ok, stdout, stderr) = sae(&["info", &stack]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("stacked autoencoder") && stdout.contains("layers 16-6-4, 3 classes"), "{stdout}");
}

#[test]
fn validation_is_logged_printed_and_recorded_and_early_stopping_keeps_the_best_model() {
    let dir = tempfile::tempdir().unwrap();
    let (model, log) = (path(dir.path(), "m.safetensors"), path(dir.path(), "run.jsonl"));
    let (ok, stdout, stderr) = sae(&[
        "train",
        "--iterations",
        "12",
        "--validation-fraction",
        "0.2",
        "--validate-every",
        "4",
        "--early-stopping",
        "5",
        "-o",
        &model,
        "--no-features",
        "--log-json",
        &log,
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("held out: 2000 examples chosen by seed 1, 8000 left"), "{stdout}");
    assert!(stderr.contains("held-out"), "progress shows the held-out cost: {stderr}");
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(&log).unwrap().lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    let validated: Vec<u64> =
        lines.iter().filter(|l| l["validation_cost"].is_number()).map(|l| l["iteration"].as_u64().unwrap()).collect();
    assert_eq!(validated, [4, 8, 12]);
    assert!(lines.iter().all(|l| l["validation_cost"].is_null() == l["validation_reconstruction"].is_null()));
    let metadata = ModelFile::<f64>::load(Path::new(&model)).unwrap().metadata;
    let curve: Vec<(usize, f64, f64)> = serde_json::from_str(&metadata["curve.validation"]).unwrap();
    let best = curve.iter().min_by(|a, b| a.2.total_cmp(&b.2)).unwrap();
    assert_eq!(metadata["validation.best_at"], best.0.to_string());
    assert!(stdout.contains(&format!("after iteration {}; the model is its", best.0)), "{stdout}");
    assert_eq!(metadata["data.examples"], "8000", "the fingerprint is of the data trained on");

    // A held-out file of another width, a fraction with streamed data, a patience without
    // held-out data: each refused naming the flag.
    let wrong = path(dir.path(), "wrong.npy");
    npy::write_matrix(Path::new(&wrong), &ndarray::Array2::from_elem((5, 3), 0.5)).unwrap();
    let (ok, _, stderr) = sae(&["train", "--validation", &wrong, "-o", &model, "--no-features"]);
    assert!(!ok && stderr.contains("--validation") && stderr.contains("3 features, the data has 64"), "{stderr}");
    let (ok, _, stderr) = sae(&["train", "--data", &wrong, "--stream", "--validation-fraction", "0.5", "-o", &model]);
    assert!(!ok && stderr.contains("--validation-fraction"), "{stderr}");
    let (ok, _, stderr) = sae(&["train", "--early-stopping", "3", "-o", &model]);
    assert!(!ok && stderr.contains("--early-stopping"), "{stderr}");
    let (ok, _, stderr) = sae(&["train", "--validation-fraction", "1.5", "-o", &model]);
    assert!(!ok && stderr.contains("held-out fraction"), "{stderr}");
}

#[cfg(unix)]
#[test]
fn a_command_line_that_is_not_utf8_is_recorded_lossily() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join(std::ffi::OsStr::from_bytes(b"m\xff.safetensors"));
    let out = Command::new(env!("CARGO_BIN_EXE_sae"))
        .args(["train", "--iterations", "2", "--no-features", "-o"])
        .arg(&model)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let metadata = ModelFile::<f64>::load(&model).unwrap().metadata;
    assert!(metadata["command"].ends_with("m\u{fffd}.safetensors'"), "{}", metadata["command"]);
}

#[test]
fn plot_draws_the_recorded_curves_and_refuses_a_model_without_them() {
    let dir = tempfile::tempdir().unwrap();
    let (model, picture) = (path(dir.path(), "m.safetensors"), path(dir.path(), "curves.png"));
    let (ok, _, stderr) =
        sae(&["train", "--iterations", "8", "--validation-fraction", "0.1", "-o", &model, "--no-features"]);
    assert!(ok, "{stderr}");
    let (ok, stdout, stderr) = sae(&["plot", &model, "-o", &picture, "--size", "640", "300"]);
    assert!(ok && stdout.contains("640×300"), "{stderr}");
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&picture).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((info.width, info.height, info.color_type), (640, 300, png::ColorType::Rgb));
    let colours: std::collections::HashSet<&[u8]> = pixels.chunks(3).collect();
    for (name, colour) in [("training", [0, 0, 255]), ("held-out", [230, 120, 0]), ("target ρ", [255, 0, 0])] {
        assert!(colours.contains(&colour[..]), "the {name} line is drawn");
    }

    // A model file without the recorded run (another tool's, or an older one's).
    let mut bare = ModelFile::<f64>::load(Path::new(&model)).unwrap();
    bare.metadata.retain(|key, _| !key.starts_with("curve."));
    let older = path(dir.path(), "older.safetensors");
    bare.save(Path::new(&older)).unwrap();
    let (ok, _, stderr) = sae(&["plot", &older, "-o", &picture]);
    assert!(!ok && stderr.contains("curve.training"), "{stderr}");
    let (ok, _, stderr) = sae(&["plot", &model, "-o", &model]);
    assert!(!ok && stderr.contains("--output"), "the picture may not replace the model: {stderr}");
    assert!(ModelFile::<f64>::load(Path::new(&model)).is_ok());
}

#[test]
fn chunk_is_refused_for_data_read_whole_and_taken_without_stream_by_encode() {
    let dir = tempfile::tempdir().unwrap();
    let model = path(dir.path(), "m.safetensors");
    let (ok, _, stderr) = sae(&["train", "--chunk", "100", "-o", &model]);
    assert!(!ok && stderr.contains("--chunk") && stderr.contains("--stream"), "{stderr}");
    assert!(!Path::new(&model).exists());
}

#[test]
fn help_is_grouped_under_headings_and_completions_and_manual_pages_are_generated() {
    let (ok, help, _) = sae(&["train", "--help"]);
    assert!(ok);
    let headings: Vec<&str> = help.lines().filter(|l| l.ends_with(':') && !l.starts_with(' ')).collect();
    for heading in ["Data:", "Engine:", "Model:", "Optimiser:", "Stopping:", "Precision:", "Output:", "Validation:"] {
        assert!(headings.contains(&heading), "{heading} in {headings:?}");
    }
    let options = help.lines().skip_while(|l| *l != "Options:").skip(1).take_while(|l| !l.ends_with(':'));
    let flags: Vec<&str> = options.filter(|l| l.trim_start().starts_with('-')).collect();
    assert_eq!(flags.len(), 3, "only -v, -q and -h left under Options: {flags:?}");

    for shell in ["bash", "zsh", "fish"] {
        let (ok, script, stderr) = sae(&["completions", shell]);
        assert!(ok && script.contains("validation-fraction") && script.contains("train-vae"), "{shell}: {stderr}");
    }
    let (ok, page, _) = sae(&["man"]);
    assert!(ok && page.starts_with(".ie") && page.contains(".TH sae 1"), "{page}");
    let dir = tempfile::tempdir().unwrap();
    let (ok, stdout, stderr) = sae(&["man", "-o", dir.path().to_str().unwrap()]);
    assert!(ok && stdout.contains("manual pages written"), "{stderr}");
    let train = std::fs::read_to_string(dir.path().join("sae-train.1")).unwrap();
    assert!(train.contains(".TH sae-train 1") && train.contains("early\\-stopping"), "{train}");
    assert!(dir.path().join("sae-plot.1").exists() && !dir.path().join("sae-help.1").exists());
}

#[test]
fn every_training_command_takes_the_same_precision_flags() {
    for command in ["train", "train-vae", "train-stacked", "objective"] {
        let (ok, help, _) = sae(&[command, "--help"]);
        assert!(ok && help.contains("--f32") && help.contains("--f64"), "{command}: {help}");
        let (ok, _, stderr) = sae(&[command, "--f32", "--f64"]);
        assert!(!ok && stderr.contains("cannot be used with"), "{command}: {stderr}");
    }
    let (ok, help, _) = sae(&["exercise", "self-taught", "--help"]);
    assert!(ok && help.contains("--f32") && help.contains("--f64"), "{help}");
}

#[test]
fn a_checkpoint_records_what_reproduces_its_run_and_its_resumption_keeps_the_held_out_data() {
    let dir = tempfile::tempdir().unwrap();
    let (model, checkpoint) = (path(dir.path(), "m.safetensors"), path(dir.path(), "run.ckpt"));
    let run = |extra: &[&str]| {
        let base =
            ["train", "--validation-fraction", "0.2", "-o", &model, "--no-features", "--checkpoint", &checkpoint];
        sae(&[&base[..], extra].concat())
    };
    let (ok, _, stderr) = run(&["--iterations", "4", "--threads", "1"]);
    assert!(ok, "{stderr}");
    let saved = ModelFile::<f64>::load(Path::new(&checkpoint)).unwrap().metadata;
    for key in ["seed", "threads", "backend", "isa", "command", "validation.data.fnv1a64", "curve.validation"] {
        assert!(saved.contains_key(key), "{key} in the checkpoint");
    }
    assert_eq!(saved["threads"], "1");

    // Without its held-out data the run would lose its early stopping: refused.
    let (ok, _, stderr) = sae(&["train", "--iterations", "8", "-o", &model, "--no-features", "--resume", &checkpoint]);
    assert!(!ok && stderr.contains("--validation"), "{stderr}");
    // On other threads it goes on, warned that it is not bit-for-bit.
    let (ok, _, stderr) = run(&["--iterations", "8", "--threads", "2", "--resume", &checkpoint]);
    assert!(ok && stderr.contains("threads = 1, this run has 2"), "{stderr}");

    let (ok, _, stderr) = sae(&["train", "--validate-every", "5", "-o", &model]);
    assert!(!ok && stderr.contains("--validate-every"), "{stderr}");
}

#[test]
fn a_checkpoint_that_cannot_be_written_stops_lbfgs_and_adam_keeping_their_models() {
    let dir = tempfile::tempdir().unwrap();
    let (checkpoint, model) = (path(dir.path(), "run.ckpt"), path(dir.path(), "m.safetensors"));
    // A 1 MB file-size limit (EFBIG past it, SIGXFSZ ignored) stands in for a full disk: the
    // model (400 hidden units of 64 inputs: 0.4 MB) fits, its checkpoint (L-BFGS' history, or
    // Adam's parameters and two moments) does not.
    for (run, stopped_at) in [
        ("--iterations 10 --checkpoint-every 3", ("iterations", "3")),
        // The checkpoint of the run's end, the only one.
        ("--iterations 2 --checkpoint-every 100", ("iterations", "2")),
        ("--optimizer adam --batch-size 1000 --epochs 3 --checkpoint-every 4", ("steps", "4")),
    ] {
        let script = format!(
            "trap '' XFSZ; ulimit -f 1024; exec {} train --hidden 400 {run} --no-features --checkpoint {checkpoint} \
             -o {model}",
            env!("CARGO_BIN_EXE_sae")
        );
        let out = Command::new("bash").args(["-c", &script]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{run}");
        assert!(
            stderr.contains("run.ckpt") && stderr.contains("File too large") && stderr.contains("m.safetensors"),
            "{run}: {stderr}"
        );
        let kept = ModelFile::<f64>::load(Path::new(&model)).unwrap();
        assert_eq!(kept.metadata["stop"], "checkpoint-failed", "{run}");
        assert_eq!(kept.metadata[stopped_at.0], stopped_at.1, "{run}: the model of the step whose checkpoint failed");
        assert!(!Path::new(&checkpoint).exists(), "{run}: no partial checkpoint");
        std::fs::remove_file(&model).unwrap();
    }
}

#[test]
fn a_disk_that_refuses_both_the_checkpoint_and_the_model_has_both_named() {
    let dir = tempfile::tempdir().unwrap();
    let (checkpoint, model) = (path(dir.path(), "run.ckpt"), path(dir.path(), "m.safetensors"));
    // A 64 KB file-size limit: neither the checkpoint nor the model (0.4 MB) fits.
    let script = format!(
        "trap '' XFSZ; ulimit -f 64; exec {} train --hidden 400 --iterations 4 --checkpoint-every 2 --no-features \
         --checkpoint {checkpoint} -o {model}",
        env!("CARGO_BIN_EXE_sae")
    );
    let out = Command::new("bash").args(["-c", &script]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("run.ckpt")
            && stderr.contains("m.safetensors")
            && stderr.contains("writing its model failed too"),
        "{stderr}"
    );
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|entry| entry.unwrap().file_name()).collect();
    assert!(left.is_empty(), "no partial or temporary file: {left:?}");
}
