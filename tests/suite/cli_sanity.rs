//! No meaningless success: a run that learned nothing fails, data the model cannot represent
//! is flagged, and the working precision follows the data file's.

use std::path::Path;
use std::process::Command;

use crate::common::uniform_data;
use sae::data::npy;

fn sae(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sae")).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// Writes `values` (`m×n`) as float32 or float64 and returns the path as a string.
fn data_file(dir: &Path, name: &str, values: Vec<f64>, m: usize, n: usize, f32: bool) -> String {
    let path = dir.join(name);
    let array = ndarray::Array2::from_shape_vec((m, n), values).unwrap();
    if f32 {
        npy::write_matrix(&path, &array.mapv(|v| v as f32)).unwrap();
    } else {
        npy::write_matrix(&path, &array).unwrap();
    }
    path.to_str().unwrap().to_string()
}

#[test]
fn an_f32_data_file_trains_in_f32_unless_told_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let data = data_file(dir.path(), "x32.npy", uniform_data(100, 8, 1), 100, 8, true);
    let model = dir.path().join("m.safetensors");
    let model = model.to_str().unwrap();
    let train = |extra: &[&str]| {
        let mut args = vec!["train", "--data", &data, "--hidden", "3", "--rho", "0.1", "--iterations", "5"];
        args.extend_from_slice(&["--no-features", "-o", model]);
        args.extend_from_slice(extra);
        sae(&args)
    };
    let (ok, stdout, stderr) = train(&[]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("f32 (the data's dtype)"), "{stdout}");
    let (ok, stdout, stderr) = train(&["--f64"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("f64 (--f64)"), "{stdout}");
    let (ok, _, stderr) = train(&["--f64", "--f32"]);
    assert!(!ok && stderr.contains("cannot be used with"), "{stderr}");
}

#[test]
fn a_run_that_does_not_lower_the_cost_fails_and_writes_no_model() {
    let dir = tempfile::tempdir().unwrap();
    let data = data_file(dir.path(), "x.npy", uniform_data(100, 8, 2), 100, 8, false);
    let model = dir.path().join("m.safetensors");
    let (ok, _, stderr) = sae(&[
        "train",
        "--data",
        &data,
        "--hidden",
        "3",
        "--beta",
        "1e300",
        "--lambda",
        "1e300",
        "--iterations",
        "5",
        "--no-features",
        "-o",
        model.to_str().unwrap(),
    ]);
    assert!(!ok, "{stderr}");
    assert!(stderr.contains("did not decrease") || stderr.contains("cost is"), "{stderr}");
    assert!(!model.exists());
}

#[test]
fn sigmoid_outputs_on_data_outside_the_unit_interval_get_a_warning_saying_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let values: Vec<f64> = uniform_data(100, 8, 3).iter().map(|v| 4.0 * v - 2.0).collect();
    let data = data_file(dir.path(), "x.npy", values, 100, 8, false);
    let model = dir.path().join("m.safetensors");
    let (_, _, stderr) = sae(&[
        "train",
        "--data",
        &data,
        "--hidden",
        "3",
        "--iterations",
        "5",
        "--no-features",
        "-o",
        model.to_str().unwrap(),
    ]);
    assert!(stderr.contains("warning") && stderr.contains("--output-units linear"), "{stderr}");
}

#[test]
fn absurd_sizes_on_the_command_line_are_taken_as_the_whole_data_not_allocated() {
    let dir = tempfile::tempdir().unwrap();
    let data = data_file(dir.path(), "x.npy", uniform_data(100, 8, 4), 100, 8, false);
    let model = dir.path().join("m.safetensors");
    let model = model.to_str().unwrap();
    let huge = "9223372036854775808";
    let common = ["train", "--data", &data, "--hidden", "3", "--rho", "0.1", "--no-features", "-o", model];
    let cases: [&[&str]; 3] = [
        &["--optimizer", "adam", "--epochs", "2", "--batch-size", huge],
        &["--stream", "--chunk", huge, "--iterations", "3"],
        &["--history", huge, "--iterations", "3"],
    ];
    for extra in cases {
        let (ok, _, stderr) = sae(&[&common[..], extra].concat());
        assert!(ok, "{extra:?}: {stderr}");
    }
    let (ok, _, stderr) =
        sae(&["encode", model, "--data", &data, "--stream", "--chunk", huge, "-o", &format!("{model}.npy")]);
    assert!(ok, "{stderr}");
}
