//! `mpirun -np N sae train --distributed`, run as a user runs it (needs OpenMPI's `mpirun` on
//! the path; CI installs it): on 1, 2 and 3 processes it trains the model one process trains,
//! a resumed run continues bit for bit (dense layers and dictionary layers alike), and a
//! process that fails or dies ends the whole job with an error naming it, within seconds.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ndarray::Array2;
use sae::data::npy;
use sae::model::ModelFile;

const SAE: &str = env!("CARGO_BIN_EXE_sae");

fn mpirun(processes: usize, args: &[&str]) -> Output {
    Command::new("mpirun")
        .args(["--allow-run-as-root", "--oversubscribe", "-np", &processes.to_string(), SAE])
        .args(args)
        .output()
        .expect("mpirun (OpenMPI) on the path")
}

fn sae(args: &[&str]) -> Output {
    Command::new(SAE).args(args).output().unwrap()
}

fn succeeded(output: &Output) {
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn theta(path: &Path) -> (Vec<f64>, f64) {
    let model = ModelFile::<f64>::load(path).unwrap();
    let cost = model.metadata["cost"].parse().unwrap();
    (model.parameters.theta().to_vec(), cost)
}

/// The model at `path` follows `reference` (its parameters and cost): the cost to 1e-10
/// relative, the parameters to `tolerance` of their largest.
fn follows(path: &Path, reference: &(Vec<f64>, f64), tolerance: f64, what: &str) {
    let ((theta, cost), (reference, reference_cost)) = (theta(path), reference);
    assert!((cost - reference_cost).abs() <= 1e-10 * reference_cost, "{what}: {cost} against {reference_cost}");
    let scale = reference.iter().fold(0.0f64, |s, v| s.max(v.abs()));
    let error = theta.iter().zip(reference).fold(0.0f64, |e, (a, b)| e.max((a - b).abs())) / scale;
    assert!(error <= tolerance, "{what}: parameters off by {error:e}");
}

/// `m` rows of S1's data (64 features) in `dir`.
fn data(dir: &Path, m: usize) -> PathBuf {
    let path = dir.join("data.npy");
    succeeded(&sae(&["generate", "--shape", "S1", "--examples", &m.to_string(), "-o", path.to_str().unwrap()]));
    path
}

#[test]
fn training_on_one_two_and_three_processes_follows_one_process() {
    let dir = tempfile::tempdir().unwrap();
    // 1001 rows: no two processes hold as many.
    let data = data(dir.path(), 1001);
    let common = ["train", "--data", data.to_str().unwrap(), "--iterations", "40", "--no-features", "--quiet"];
    let one = dir.path().join("one.safetensors");
    succeeded(&sae(&[&common[..], &["-o", one.to_str().unwrap()]].concat()));
    let reference = theta(&one);
    for processes in [1, 2, 3] {
        let out = dir.path().join(format!("{processes}.safetensors"));
        let output = mpirun(processes, &[&common[..], &["--distributed", "-o", out.to_str().unwrap()]].concat());
        succeeded(&output);
        follows(&out, &reference, 1e-8, &format!("{processes} processes"));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(stdout.matches("model written to").count(), 1, "only the first process writes:\n{stdout}");
    }
}

#[test]
fn streaming_each_process_shards_follows_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let shards = dir.path().join("shards");
    std::fs::create_dir(&shards).unwrap();
    for (i, rows) in [200, 1, 150].iter().enumerate() {
        let path = shards.join(format!("part-{i}.npy"));
        let seed = (i + 1).to_string();
        let args = ["generate", "--shape", "S1", "--seed", &seed, "--examples", &rows.to_string(), "-o"];
        succeeded(&sae(&[&args[..], &[path.to_str().unwrap()]].concat()));
    }
    let common = [
        "train",
        "--data",
        shards.to_str().unwrap(),
        "--stream",
        "--chunk",
        "64",
        "--iterations",
        "25",
        "--no-features",
        "--quiet",
    ];
    let one = dir.path().join("one.safetensors");
    succeeded(&sae(&[&common[..], &["-o", one.to_str().unwrap()]].concat()));
    let (_, reference) = theta(&one);
    for (processes, mode) in [(2, "one-pass"), (3, "two-pass")] {
        let out = dir.path().join(format!("{processes}.safetensors"));
        let args = ["--distributed", "--stream-mode", mode, "-o", out.to_str().unwrap()];
        succeeded(&mpirun(processes, &[&common[..], &args[..]].concat()));
        let (_, cost) = theta(&out);
        assert!(
            (cost - reference).abs() <= 1e-10 * reference,
            "{processes} processes, {mode}: {cost} against {reference}"
        );
    }
}

#[test]
fn adam_on_two_and_three_processes_follows_one_process_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = data(dir.path(), 499);
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let common = ["train", "--data", data.to_str().unwrap(), "--optimizer", "adam", "--batch-size", "64"];
    let quiet = ["--no-features", "--quiet"];
    succeeded(&sae(&[&common[..], &quiet, &["--epochs", "2", "-o", &path("one.safetensors")]].concat()));
    let reference = theta(Path::new(&path("one.safetensors")));
    for processes in [2, 3] {
        let out = path(&format!("{processes}.safetensors"));
        let args = ["--distributed", "--epochs", "2", "-o", &out];
        succeeded(&mpirun(processes, &[&common[..], &quiet, &args].concat()));
        follows(Path::new(&out), &reference, 1e-9, &format!("{processes} processes"));
    }
    // One epoch with checkpoints, then resumed to two: the two-epoch run, bit for bit.
    let first = ["--distributed", "--epochs", "1", "--checkpoint", &path("adam.ckpt"), "-o", &path("half.safetensors")];
    succeeded(&mpirun(2, &[&common[..], &quiet, &first].concat()));
    let second = ["--distributed", "--epochs", "2", "--resume", &path("adam.ckpt"), "-o", &path("resumed.safetensors")];
    succeeded(&mpirun(2, &[&common[..], &quiet, &second].concat()));
    assert_eq!(theta(Path::new(&path("resumed.safetensors"))), theta(Path::new(&path("2.safetensors"))));
}

#[test]
fn streamed_adam_on_two_and_three_processes_follows_one_process_in_memory_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = data(dir.path(), 499);
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let common = [
        "train",
        "--data",
        data.to_str().unwrap(),
        "--optimizer",
        "adam",
        "--batch-size",
        "64",
        "--shuffle-block",
        "20",
        "--shuffle-window",
        "4",
        "--no-features",
        "--quiet",
    ];
    let streamed = ["--distributed", "--stream"];
    succeeded(&sae(&[&common[..], &["--epochs", "2", "-o", &path("one.safetensors")]].concat()));
    let reference = theta(Path::new(&path("one.safetensors")));
    for processes in [2, 3] {
        let out = path(&format!("{processes}.safetensors"));
        succeeded(&mpirun(processes, &[&common[..], &streamed, &["--epochs", "2", "-o", &out]].concat()));
        follows(Path::new(&out), &reference, 1e-9, &format!("{processes} processes"));
    }
    // One epoch with checkpoints, then resumed to two: the two-epoch run, bit for bit.
    let first = ["--epochs", "1", "--checkpoint", &path("adam.ckpt"), "-o", &path("half.safetensors")];
    succeeded(&mpirun(2, &[&common[..], &streamed, &first].concat()));
    let second = ["--epochs", "2", "--resume", &path("adam.ckpt"), "-o", &path("resumed.safetensors")];
    succeeded(&mpirun(2, &[&common[..], &streamed, &second].concat()));
    assert_eq!(theta(Path::new(&path("resumed.safetensors"))), theta(Path::new(&path("2.safetensors"))));
}

#[test]
fn float32_training_on_two_processes_follows_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let data = data(dir.path(), 301);
    let common = ["train", "--f32", "--data", data.to_str().unwrap(), "--iterations", "20", "--no-features", "--quiet"];
    let (one, two) = (dir.path().join("one.safetensors"), dir.path().join("two.safetensors"));
    succeeded(&sae(&[&common[..], &["-o", one.to_str().unwrap()]].concat()));
    succeeded(&mpirun(2, &[&common[..], &["--distributed", "-o", two.to_str().unwrap()]].concat()));
    let cost = |path: &Path| -> f64 { ModelFile::<f32>::load(path).unwrap().metadata["cost"].parse().unwrap() };
    let (a, b) = (cost(&one), cost(&two));
    assert!((a - b).abs() <= 1e-5 * a, "{b} against {a}");
}

#[test]
fn a_resumed_distributed_run_continues_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let common = ["train", "--distributed", "--no-features", "--quiet"];
    succeeded(&mpirun(2, &[&common[..], &["--iterations", "20", "-o", &path("whole.safetensors")]].concat()));
    let first = ["--iterations", "10", "--checkpoint", &path("run.ckpt"), "--checkpoint-every", "5"];
    succeeded(&mpirun(2, &[&common[..], &first, &["-o", &path("half.safetensors")]].concat()));
    let second = ["--iterations", "20", "--resume", &path("run.ckpt"), "-o", &path("resumed.safetensors")];
    succeeded(&mpirun(2, &[&common[..], &second[..]].concat()));
    assert_eq!(theta(Path::new(&path("resumed.safetensors"))), theta(Path::new(&path("whole.safetensors"))));
    // On another number of processes, each one's part of the data would differ.
    let output = mpirun(3, &[&common[..], &second[..]].concat());
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("written by a run on 2 process(es), this one has 3"), "{stderr}");
    let alone = sae(&[&["train", "--no-features", "--quiet"][..], &second[..]].concat());
    assert!(String::from_utf8_lossy(&alone.stderr).contains("on 2 process(es), this one has 1"));
}

#[test]
fn a_topk_layer_on_two_and_three_processes_follows_one_process_streamed_or_not_and_resumes() {
    use sae::dictionary::TopKModel;
    let dir = tempfile::tempdir().unwrap();
    let data = data(dir.path(), 701);
    let held_out = dir.path().join("held.npy");
    let generate = ["generate", "--shape", "S1", "--examples", "97", "--seed", "2", "-o", held_out.to_str().unwrap()];
    succeeded(&sae(&generate));
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let params = |name: &str| TopKModel::<f64>::load(Path::new(&path(name))).unwrap().params().to_vec();
    let common = [
        "train",
        "--hidden-layer",
        "topk",
        "--k",
        "6",
        "--hidden",
        "96",
        "--data",
        data.to_str().unwrap(),
        "--validation",
        held_out.to_str().unwrap(),
        "--batch-size",
        "100",
        "--auxk-alpha",
        "0.03125",
        "--normalize-inputs",
        "--shuffle-block",
        "25",
        "--no-features",
        "--quiet",
    ];
    succeeded(&sae(&[&common[..], &["--epochs", "3", "-o", &path("one.safetensors")]].concat()));
    let one = params("one.safetensors");
    for (processes, stream) in [(2, false), (3, false), (2, true), (3, true)] {
        let name = format!("{processes}-{stream}.safetensors");
        let streamed: &[&str] = if stream { &["--stream"] } else { &[] };
        let out = path(&name);
        succeeded(&mpirun(
            processes,
            &[&common[..], streamed, &["--distributed", "--epochs", "3", "-o", &out]].concat(),
        ));
        let error = one.iter().zip(params(&name)).fold(0.0f64, |e, (a, b)| e.max((a - b).abs()));
        assert!(error <= 1e-9, "{processes} processes (streamed: {stream}): parameters off by {error:e}");
        let metadata = ModelFile::<f64>::read_metadata(Path::new(&path(&name))).unwrap();
        assert_eq!(metadata["processes"], processes.to_string());
    }
    // Two epochs with checkpoints, then resumed to three: the three-epoch run, bit for bit.
    let distributed = ["--distributed", "--checkpoint", &path("topk.ckpt")];
    succeeded(&mpirun(2, &[&common[..], &distributed, &["--epochs", "2", "-o", &path("half.safetensors")]].concat()));
    let resumed = ["--resume", &path("topk.ckpt"), "--epochs", "3", "-o", &path("resumed.safetensors")];
    succeeded(&mpirun(2, &[&common[..], &distributed, &resumed].concat()));
    assert_eq!(params("resumed.safetensors"), params("2-false.safetensors"));
    // On another number of processes the checkpoint is refused, naming the cause.
    let output = mpirun(3, &[&common[..], &distributed, &resumed].concat());
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("written by a run on 2 process(es), this one has 3"), "{stderr}");
}

#[test]
fn a_float32_topk_layer_on_two_processes_sums_in_float32_and_follows_one_process() {
    use sae::dictionary::TopKModel;
    let dir = tempfile::tempdir().unwrap();
    let data = data(dir.path(), 701);
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let params = |name: &str| TopKModel::<f32>::load(Path::new(&path(name))).unwrap().params().to_vec();
    let (data, one_path, two_path) = (data.to_str().unwrap(), path("one.safetensors"), path("two.safetensors"));
    let common = ["train", "--hidden-layer", "topk", "--f32", "--k", "6", "--hidden", "96", "--data", data];
    let options = ["--batch-size", "100", "--epochs", "3", "--no-features", "--quiet"];
    succeeded(&sae(&[&common[..], &options, &["-o", &one_path]].concat()));
    succeeded(&mpirun(2, &[&common[..], &options, &["--distributed", "-o", &two_path]].concat()));
    // The gradient summed in float32 rounds differently from one process's: a few units in
    // float32's last place after 24 Adam steps.
    let (one, two) = (params("one.safetensors"), params("two.safetensors"));
    let scale = one.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let error = one.iter().zip(&two).fold(0.0f32, |e, (a, b)| e.max((a - b).abs()));
    assert!(error <= 1e-5 * scale, "parameters off by {error:e} (largest {scale})");
}

#[test]
fn resampling_dead_latents_runs_on_one_process_of_a_job_and_is_refused_on_two() {
    let dir = tempfile::tempdir().unwrap();
    let data = data(dir.path(), 301);
    let out = dir.path().join("model.safetensors");
    let args = [
        "train",
        "--distributed",
        "--hidden-layer",
        "topk",
        "--k",
        "3",
        "--hidden",
        "32",
        "--epochs",
        "2",
        "--batch-size",
        "50",
        "--resample-every",
        "4",
        "--dead-after",
        "100",
        "--data",
        data.to_str().unwrap(),
        "--no-features",
        "--quiet",
        "-o",
        out.to_str().unwrap(),
    ];
    succeeded(&mpirun(1, &args));
    assert!(out.exists());
    let output = mpirun(2, &args);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--resample-every on several processes"), "{stderr}");
}

#[test]
fn a_process_that_cannot_use_its_rows_ends_every_process_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (m, n) = (100, 64);
    let mut values = Array2::from_elem((m, n), 0.5);
    values[[90, 3]] = f64::NAN; // in the second process's half
    let path = dir.path().join("bad.npy");
    npy::write_matrix(&path, &values).unwrap();
    let started = Instant::now();
    let output = mpirun(2, &["train", "--distributed", "--data", path.to_str().unwrap(), "--no-features", "--quiet"]);
    assert!(!output.status.success());
    assert!(started.elapsed() < Duration::from_secs(30), "no process waits for the failed one");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("error: rank 1: non-finite value NaN in data at row 90, column 3"), "{stderr}");
    assert!(!stderr.contains("rank 0:"), "the failed process alone reports:\n{stderr}");
    assert!(!dir.path().join("model.safetensors").exists());
}

#[test]
fn a_killed_process_ends_the_job_within_seconds() {
    /// Kills the job if the test fails before it ended: no run of a hundred million
    /// iterations is left behind.
    struct Job(std::process::Child);
    impl Drop for Job {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model.safetensors");
    let args = ["train", "--distributed", "--iterations", "100000000", "--gtol", "0", "--ftol", "0", "--no-features"];
    let mut job = Job(Command::new("mpirun")
        .args(["--allow-run-as-root", "--oversubscribe", "-np", "2", SAE])
        .args(args)
        .args(["-o", out.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap());
    // The processes are mpirun's children (OpenMPI starts them directly on one machine).
    let children = |job: &Job| -> Vec<u32> {
        let listed = Command::new("pgrep").args(["-P", &job.0.id().to_string()]).output().unwrap();
        String::from_utf8_lossy(&listed.stdout).split_whitespace().filter_map(|p| p.parse().ok()).collect()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut pids = children(&job);
    while pids.len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        pids = children(&job);
    }
    assert_eq!(pids.len(), 2, "two processes started");
    std::thread::sleep(Duration::from_secs(1));
    assert!(job.0.try_wait().unwrap().is_none(), "the job was training when a process was killed");
    Command::new("kill").args(["-9", &pids[1].to_string()]).status().unwrap();
    let killed = Instant::now();
    let status = loop {
        if let Some(status) = job.0.try_wait().unwrap() {
            break status;
        }
        assert!(killed.elapsed() < Duration::from_secs(20), "the job outlived its killed process");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(job.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("signal 9"), "mpirun names the killed process and its signal:\n{stderr}");
}
