//! "Your files are safe", end to end through the `sae` command: no output replaces an input or
//! another output, devices and missing folders are refused before any work, files get the
//! usual modes, a killed run leaves nothing behind once rerun, and two runs cannot write the
//! same files.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::uniform_data;
use sae::data::npy;
use sae::files::WriteLock;

fn sae(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sae")).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// A folder with a small data set `x.npy` (200 × 16 in [0.1, 0.9]) and a model `m.safetensors`
/// trained on it.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let values = uniform_data(200, 16, 3);
        npy::write_matrix(&dir.path().join("x.npy"), &ndarray::Array2::from_shape_vec((200, 16), values).unwrap())
            .unwrap();
        let fixture = Fixture { dir };
        let (ok, _, stderr) = sae(&[
            "train",
            "--data",
            &fixture.path("x.npy"),
            "--hidden",
            "4",
            "--rho",
            "0.1",
            "--iterations",
            "5",
            "-o",
            &fixture.path("m.safetensors"),
            "--no-features",
        ]);
        assert!(ok, "{stderr}");
        fixture
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }

    /// A file's bytes; a folder's files' names and bytes.
    fn bytes(&self, name: &str) -> Vec<u8> {
        let path = self.dir.path().join(name);
        if !path.is_dir() {
            return fs::read(path).unwrap();
        }
        let mut files: Vec<PathBuf> = fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        files.iter().flat_map(|f| [f.to_string_lossy().as_bytes().to_vec(), fs::read(f).unwrap()].concat()).collect()
    }

    /// The folder's entries, sorted.
    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

/// Runs `args` (with `{x}`, `{m}` standing for the fixture's data and model) and checks that
/// it fails naming both options and that every file of the folder is unchanged.
fn refused(fixture: &Fixture, args: &[&str], options: [&str; 2]) {
    let before: Vec<(String, Vec<u8>)> =
        fixture.entries().into_iter().map(|e| (e.clone(), fixture.bytes(&e))).collect();
    let args: Vec<String> = args
        .iter()
        .map(|a| a.replace("{x}", &fixture.path("x.npy")).replace("{m}", &fixture.path("m.safetensors")))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, _, stderr) = sae(&args);
    assert!(!ok, "{args:?} succeeded");
    for option in options {
        assert!(stderr.contains(option), "{args:?}: the error does not name {option}: {stderr}");
    }
    let after: Vec<(String, Vec<u8>)> = fixture.entries().into_iter().map(|e| (e.clone(), fixture.bytes(&e))).collect();
    assert_eq!(before, after, "{args:?} changed the folder");
}

#[test]
fn no_command_writes_its_output_over_one_of_its_inputs() {
    let fixture = Fixture::new();
    let cases: &[(&[&str], [&str; 2])] = &[
        (&["encode", "{m}", "--data", "{x}", "-o", "{x}"], ["--output", "--data"]),
        (&["reconstruct", "{m}", "--data", "{x}", "-o", "{x}"], ["--output", "--data"]),
        (&["encode", "{m}", "--data", "{x}", "-o", "{m}"], ["--output", "MODEL"]),
        (&["encode", "{m}", "--data", "{x}", "--stream", "-o", "{x}"], ["--output", "--data"]),
        (&["visualize", "{m}", "-o", "{m}"], ["--output", "MODEL"]),
        (&["train", "--data", "{x}", "-o", "{x}"], ["--output", "--data"]),
        (&["train", "--data", "{x}", "--features", "{x}"], ["--features", "--data"]),
        (&["train", "--data", "{x}", "--no-features", "--checkpoint", "{x}"], ["--checkpoint", "--data"]),
        (&["train", "--data", "{x}", "--no-features", "--resume", "{m}", "-o", "{m}"], ["--output", "--resume"]),
        (&["objective", "--data", "{x}", "--grad-out", "{x}"], ["--grad-out", "--data"]),
    ];
    for (args, options) in cases {
        refused(&fixture, args, *options);
    }
}

#[test]
fn no_command_writes_two_outputs_to_one_file() {
    let fixture = Fixture::new();
    let ck = fixture.path("run.ckpt");
    refused(
        &fixture,
        &["train", "--data", "{x}", "--no-features", "--checkpoint", &ck, "-o", &ck],
        ["--checkpoint", "--output"],
    );
    refused(&fixture, &["train", "--data", "{x}", "-o", &ck, "--features", &ck], ["--features", "--output"]);
}

#[test]
fn training_commands_on_mnist_files_refuse_to_write_over_them() {
    let fixture = Fixture::new();
    let mnist = fixture.dir.path().join("mnist");
    fs::create_dir(&mnist).unwrap();
    let images = mnist.join("train-images-idx3-ubyte.gz");
    fs::write(&images, b"images").unwrap();
    let (mnist, images) = (mnist.to_str().unwrap(), images.to_str().unwrap());
    refused(&fixture, &["train-vae", "--mnist", mnist, "-o", images], ["--output", "--mnist"]);
    refused(&fixture, &["train-stacked", "--mnist", mnist, "-o", images], ["--output", "--mnist"]);
    refused(
        &fixture,
        &["exercise", "vectorization", "--mnist", mnist, "--features", images],
        ["--features", "--mnist"],
    );
    refused(&fixture, &["exercise", "natural", "--images", "{x}", "--output", "{x}"], ["--output", "--images"]);
}

#[test]
fn a_resumed_checkpoint_is_updated_in_place() {
    let fixture = Fixture::new();
    let ck = fixture.path("run.ckpt");
    let (data, output) = (fixture.path("x.npy"), fixture.path("out.safetensors"));
    let train = |extra: &[&str]| {
        let mut args = vec!["train", "--data", &data, "--hidden", "4", "--rho", "0.1"];
        args.extend_from_slice(&["--no-features", "-o", &output, "--checkpoint", &ck]);
        args.extend_from_slice(extra);
        sae(&args)
    };
    let (ok, _, stderr) = train(&["--iterations", "3"]);
    assert!(ok, "{stderr}");
    let (ok, stdout, stderr) = train(&["--iterations", "6", "--resume", &ck]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("resuming"), "{stdout}");
}

#[test]
fn devices_are_refused_as_outputs_and_left_alone() {
    let fixture = Fixture::new();
    let (ok, _, stderr) = sae(&["visualize", &fixture.path("m.safetensors"), "-o", "/dev/null"]);
    assert!(!ok && stderr.contains("/dev/null") && stderr.contains("a character device"), "{stderr}");
    assert!(!fs::metadata("/dev/null").unwrap().is_file());
}

#[test]
fn an_output_in_a_missing_folder_is_refused_before_training_starts() {
    let fixture = Fixture::new();
    let start = Instant::now();
    let output = fixture.path("missing-dir/m.safetensors");
    let (ok, stdout, stderr) =
        sae(&["train", "--data", &fixture.path("x.npy"), "--iterations", "100000", "-o", &output]);
    assert!(!ok && stderr.contains("missing-dir") && stderr.contains("does not exist"), "{stderr}");
    assert!(!stdout.contains("model:"), "training started: {stdout}");
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn encode_writes_to_standard_output_with_messages_on_stderr() {
    let fixture = Fixture::new();
    let out = Command::new(env!("CARGO_BIN_EXE_sae"))
        .args(["encode", &fixture.path("m.safetensors"), "--data", &fixture.path("x.npy"), "-o", "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("200 examples encoded"));
    let piped = fixture.dir.path().join("piped.npy");
    fs::write(&piped, &out.stdout).unwrap();
    let codes = npy::read_matrix::<f64>(&piped).unwrap();
    assert_eq!(codes.dim(), (200, 4));
}

#[test]
fn written_files_get_the_umask_mode_and_replaced_files_keep_theirs() {
    let fixture = Fixture::new();
    let sae_bin = env!("CARGO_BIN_EXE_sae");
    let generate = |umask: &str, name: &str| {
        let script =
            format!("umask {umask}; exec {sae_bin} generate --shape S1 --examples 10 -o {}", fixture.path(name));
        assert!(Command::new("sh").args(["-c", &script]).status().unwrap().success());
        fs::metadata(fixture.dir.path().join(name)).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(generate("022", "a.npy"), 0o644);
    assert_eq!(generate("027", "b.npy"), 0o640);
    fs::set_permissions(fixture.dir.path().join("a.npy"), fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(generate("022", "a.npy"), 0o600);
}

#[test]
fn a_second_run_writing_the_same_checkpoint_is_refused() {
    let fixture = Fixture::new();
    let ck = fixture.path("run.ckpt");
    let _first_run = WriteLock::acquire(Path::new(&ck)).unwrap();
    let output = fixture.path("out.safetensors");
    let (ok, _, stderr) =
        sae(&["train", "--data", &fixture.path("x.npy"), "--no-features", "--checkpoint", &ck, "-o", &output]);
    assert!(!ok && stderr.contains("being written by another sae run") && stderr.contains("run.ckpt"), "{stderr}");
}

#[test]
fn killing_a_run_and_running_it_again_leaves_no_temporary_file() {
    let fixture = Fixture::new();
    let dir = fixture.dir.path();
    let (m, n) = (2000, 256);
    let values = uniform_data(m, n, 5);
    npy::write_matrix(&dir.join("big.npy"), &ndarray::Array2::from_shape_vec((m, n), values).unwrap()).unwrap();
    let args = |iterations: &str| -> Vec<String> {
        let mut args: Vec<String> =
            ["train", "--data", "big.npy", "--hidden", "64", "--rho", "0.1", "--iterations", iterations]
                .map(String::from)
                .to_vec();
        args.extend(
            ["--checkpoint", "run.ckpt", "--checkpoint-every", "1", "-o", "m2.safetensors", "--no-features"]
                .map(String::from),
        );
        args
    };
    for wait_ms in [400, 700, 1000] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sae"))
            .current_dir(dir)
            .args(args("100000"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(wait_ms));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let status = Command::new(env!("CARGO_BIN_EXE_sae"))
        .current_dir(dir)
        .args(args("3"))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let left: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains(".sae-"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Writes `big.npy` (2 000 × 256) into the fixture: a problem on which a run takes long
/// enough to be interrupted.
fn big_data(fixture: &Fixture) -> String {
    let (m, n) = (2000, 256);
    let values = uniform_data(m, n, 5);
    npy::write_matrix(&fixture.dir.path().join("big.npy"), &ndarray::Array2::from_shape_vec((m, n), values).unwrap())
        .unwrap();
    fixture.path("big.npy")
}

/// [`interrupted`] `sae train` on `big.npy` with `extra`.
fn interrupted_run(fixture: &Fixture, extra: &[&str], signal: &str) -> (Option<i32>, String) {
    let data = big_data(fixture);
    let mut args = vec!["train", "--data", &data, "--hidden", "64", "--rho", "0.1", "--no-features"];
    args.extend_from_slice(extra);
    interrupted(&args, signal)
}

/// Runs `sae` with `args`, waits until it has reported progress (a line starting `iteration `,
/// `step ` or `epoch `, on stderr or stdout), sends it `signal`, and returns its exit code and
/// stderr.
fn interrupted(args: &[&str], signal: &str) -> (Option<i32>, String) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_sae"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (progress, reported) = std::sync::mpsc::channel();
    let follow = |stream: Box<dyn std::io::Read + Send>| {
        let progress = progress.clone();
        std::thread::spawn(move || {
            let mut text = String::new();
            for line in BufReader::new(stream).lines() {
                let line = line.unwrap();
                if ["iteration ", "step ", "epoch "].iter().any(|p| line.starts_with(p)) {
                    let _ = progress.send(());
                }
                text += &line;
                text.push('\n');
            }
            text
        })
    };
    let stdout = follow(Box::new(child.stdout.take().unwrap()));
    let stderr = follow(Box::new(child.stderr.take().unwrap()));
    reported.recv_timeout(std::time::Duration::from_secs(120)).expect("progress within two minutes");
    assert!(Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap().success());
    let code = child.wait().unwrap().code();
    stdout.join().unwrap();
    (code, stderr.join().unwrap())
}

#[test]
fn sigint_during_lbfgs_writes_the_model_so_far_marked_unfinished_and_a_checkpoint_that_resumes() {
    let fixture = Fixture::new();
    let (model, ck) = (fixture.path("int.safetensors"), fixture.path("int.ckpt"));
    let (code, stderr) = interrupted_run(
        &fixture,
        &["--iterations", "400", "-o", &model, "--checkpoint", &ck, "--checkpoint-every", "1000"],
        "-INT",
    );
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stderr.contains("interrupted") && stderr.contains("--resume"), "{stderr}");
    let saved = sae::model::ModelFile::<f64>::load(Path::new(&model)).unwrap();
    assert_eq!(saved.metadata["stop"], "interrupted");
    let note = &saved.metadata["unfinished"];
    let at: usize = note.strip_prefix("interrupted at iteration ").unwrap().split(' ').next().unwrap().parse().unwrap();
    let checkpoint = sae::model::ModelFile::<f64>::load(Path::new(&ck)).unwrap();
    assert_eq!(checkpoint.metadata["lbfgs.iteration"], at.to_string(), "the checkpoint is written at the stop");
    let more = (at + 2).to_string();
    let (ok, stdout, stderr) = sae(&[
        "train",
        "--data",
        &fixture.path("big.npy"),
        "--hidden",
        "64",
        "--rho",
        "0.1",
        "--no-features",
        "--iterations",
        &more,
        "--resume",
        &ck,
        "--checkpoint",
        &ck,
        "-o",
        &model,
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains(&format!("resuming {ck} at iteration {at}")), "{stdout}");
    let finished = sae::model::ModelFile::<f64>::load(Path::new(&model)).unwrap();
    assert!(!finished.metadata.contains_key("unfinished"));
    assert!(fixture.entries().iter().all(|e| !e.contains(".sae-")), "{:?}", fixture.entries());
}

#[test]
fn sigterm_during_adam_writes_the_model_so_far_marked_unfinished() {
    let fixture = Fixture::new();
    let model = fixture.path("adam.safetensors");
    let (code, stderr) = interrupted_run(
        &fixture,
        &["--optimizer", "adam", "--epochs", "400", "--batch-size", "16", "-o", &model],
        "-TERM",
    );
    assert_eq!(code, Some(130), "{stderr}");
    let saved = sae::model::ModelFile::<f64>::load(Path::new(&model)).unwrap();
    assert!(saved.metadata["unfinished"].starts_with("interrupted at epoch"), "{:?}", saved.metadata);
}

/// An IDX file of `count` random `side×side` images (MNIST's format, not gzipped).
fn idx_images(count: usize, side: usize) -> Vec<u8> {
    let mut bytes =
        [2051u32, count as u32, side as u32, side as u32].iter().flat_map(|v| v.to_be_bytes()).collect::<Vec<u8>>();
    bytes.extend(uniform_data(count, side * side, 7).iter().map(|v| (v * 255.0) as u8));
    bytes
}

#[test]
fn sigint_during_vae_training_writes_the_model_so_far_marked_unfinished() {
    let fixture = Fixture::new();
    let mnist = fixture.dir.path().join("mnist");
    fs::create_dir(&mnist).unwrap();
    fs::write(mnist.join("train-images-idx3-ubyte.gz"), idx_images(2000, 28)).unwrap();
    fs::write(mnist.join("t10k-images-idx3-ubyte.gz"), idx_images(100, 28)).unwrap();
    for labels in ["train-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz"] {
        fs::write(mnist.join(labels), b"unused").unwrap();
    }
    let (model, samples) = (fixture.path("vae.safetensors"), fixture.path("samples.png"));
    let args = ["train-vae", "--mnist", mnist.to_str().unwrap(), "--epochs", "100000", "--hidden", "32"];
    let (code, stderr) = interrupted(&[&args[..], &["-o", &model, "--samples", &samples]].concat(), "-INT");
    assert_eq!(code, Some(130), "{stderr}");
    let written = sae::model::vae::VaeModel::<f32>::load(Path::new(&model)).unwrap();
    let note = written.metadata.iter().find(|(key, _)| key == "unfinished").map(|(_, value)| value.as_str());
    assert!(note.is_some_and(|n| n.starts_with("interrupted after epoch")), "{:?}", written.metadata);
    assert!(fs::metadata(&samples).unwrap().len() > 100);
}
