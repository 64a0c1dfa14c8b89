//! `sae objective` end to end: npy in, cost printed, gradient npy out matching the reference;
//! bad files named in the error.

use std::path::Path;
use std::process::Command;

use crate::common::*;
use sae::data::npy;
use sae::objective::reference;
use sae::Dataset;

fn sae(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sae")).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn write_problem(dir: &Path, m: usize, n: usize, h: usize) -> (Vec<f64>, Vec<f64>) {
    let values = uniform_data(m, n, 21);
    let theta = theta(n, h, 22);
    npy::write_matrix(&dir.join("x.npy"), &ndarray::Array2::from_shape_vec((m, n), values.clone()).unwrap()).unwrap();
    npy::write_vector(&dir.join("theta.npy"), &theta).unwrap();
    (values, theta)
}

#[test]
fn objective_writes_the_reference_gradient_and_prints_the_cost() {
    let dir = tempfile::tempdir().unwrap();
    let (m, n, h) = (123, 10, 7);
    let (values, theta) = write_problem(dir.path(), m, n, h);
    let p = |f: &str| dir.path().join(f).to_str().unwrap().to_string();
    let (ok, stdout, stderr) = sae(&[
        "objective",
        "--data",
        &p("x.npy"),
        "--theta",
        &p("theta.npy"),
        "--hidden",
        "7",
        "--lambda",
        "3e-3",
        "--beta",
        "3",
        "--rho",
        "0.1",
        "--grad-out",
        &p("grad.npy"),
        "--repeat",
        "1",
    ]);
    assert!(ok, "{stderr}");
    let data = Dataset::examples_by_features(&values, m, n).unwrap();
    let (cost, grad) = reference::cost_and_gradient(&hyper(n, h), &data, &theta).unwrap();
    let printed: f64 = stdout.lines().find_map(|l| l.strip_prefix("cost      = ")).unwrap().parse().unwrap();
    assert!((printed - cost).abs() <= 1e-12 * cost, "printed {printed}, reference {cost}");
    let written: Vec<f64> = npy::read_vector(&dir.path().join("grad.npy")).unwrap();
    assert!(relative_error(&written, &grad) <= 1e-12);
}

#[test]
fn objective_runs_on_generated_data_without_arguments() {
    let (ok, stdout, stderr) = sae(&["objective", "--repeat", "1"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("n = 64, h = 25, m = 10000"), "{stdout}");
}

#[test]
fn theta_of_the_wrong_length_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_problem(dir.path(), 20, 10, 7);
    let p = |f: &str| dir.path().join(f).to_str().unwrap().to_string();
    let (ok, _, stderr) = sae(&["objective", "--data", &p("x.npy"), "--theta", &p("theta.npy"), "--hidden", "6"]);
    assert!(!ok);
    assert!(stderr.contains("theta.npy") && stderr.contains("expected 2hn + h + n = 136"), "{stderr}");
}

#[test]
fn a_missing_data_file_is_named() {
    let (ok, _, stderr) = sae(&["objective", "--data", "/no/such/x.npy"]);
    assert!(!ok);
    assert!(stderr.contains("/no/such/x.npy"), "{stderr}");
}

#[test]
fn a_truncated_npy_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    write_problem(dir.path(), 20, 10, 7);
    let path = dir.path().join("x.npy");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 9]).unwrap();
    let (ok, _, stderr) = sae(&["objective", "--data", path.to_str().unwrap(), "--hidden", "7"]);
    assert!(!ok);
    assert!(stderr.contains("x.npy") && stderr.contains("truncated"), "{stderr}");
}

#[test]
fn an_integer_npy_file_is_rejected_by_dtype() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ints.npy");
    ndarray_npy::write_npy(&path, &ndarray::Array2::<i32>::zeros((3, 4))).unwrap();
    let (ok, _, stderr) = sae(&["objective", "--data", path.to_str().unwrap(), "--hidden", "2"]);
    assert!(!ok);
    assert!(stderr.contains("ints.npy") && stderr.contains("dtype"), "{stderr}");
}

#[test]
fn nan_in_the_data_file_names_row_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let mut values = uniform_data(5, 3, 1);
    values[2 * 3 + 1] = f64::NAN;
    let path = dir.path().join("x.npy");
    npy::write_matrix(&path, &ndarray::Array2::from_shape_vec((5, 3), values).unwrap()).unwrap();
    let (ok, _, stderr) = sae(&["objective", "--data", path.to_str().unwrap(), "--hidden", "2"]);
    assert!(!ok);
    assert!(stderr.contains("row 2, column 1"), "{stderr}");
}

fn printed_cost(stdout: &str) -> f64 {
    stdout.lines().find_map(|l| l.strip_prefix("cost      = ")).expect("a cost line").parse().unwrap()
}

#[test]
fn objective_streamed_from_a_file_or_shards_prints_the_in_memory_cost() {
    let dir = tempfile::tempdir().unwrap();
    let (m, n) = (300, 10);
    write_problem(dir.path(), m, n, 7);
    let values = uniform_data(m, n, 21);
    let shards = dir.path().join("shards");
    std::fs::create_dir(&shards).unwrap();
    for (i, rows) in [(0, 0..120), (1, 120..300)] {
        let part = ndarray::Array2::from_shape_vec((rows.len(), n), values[rows.start * n..rows.end * n].to_vec());
        npy::write_matrix(&shards.join(format!("{i}.npy")), &part.unwrap()).unwrap();
    }
    let p = |f: &str| dir.path().join(f).to_str().unwrap().to_string();
    let common = ["objective", "--theta", &p("theta.npy"), "--hidden", "7", "--repeat", "1"];
    let run = |extra: &[&str]| {
        let (ok, stdout, stderr) = sae(&[&common[..], extra].concat());
        assert!(ok, "{extra:?}: {stderr}");
        assert!(stdout.contains("m = 300"), "{stdout}");
        printed_cost(&stdout)
    };
    let in_memory = run(&["--data", &p("x.npy")]);
    for streamed in [
        run(&["--data", &p("x.npy"), "--stream", "--chunk", "64"]),
        run(&["--data", &p("x.npy"), "--stream", "--chunk", "7", "--stream-mode", "two-pass"]),
        run(&["--data", &p("shards"), "--stream", "--chunk", "100"]),
    ] {
        assert!((streamed - in_memory).abs() <= 1e-12 * in_memory, "{streamed} vs {in_memory}");
    }
}

#[test]
fn objective_refuses_check_with_stream() {
    let (ok, _, stderr) = sae(&["objective", "--stream", "--check"]);
    assert!(!ok);
    assert!(stderr.contains("--check") && stderr.contains("--stream"), "{stderr}");
}

#[test]
fn generate_writes_the_rows_objective_generates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s1.npy");
    let (ok, _, stderr) =
        sae(&["generate", "--shape", "S1", "--examples", "5000", "--seed", "3", "-o", path.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let written: ndarray::Array2<f64> = npy::read_matrix(&path).unwrap();
    assert_eq!(written.dim(), (5000, 64));
    let generated: Vec<f64> = sae::data::generated::ProblemShape::named("S1").unwrap().uniform_data(3);
    assert_eq!(written.as_slice().unwrap(), &generated[..5000 * 64]);
}

#[test]
fn generate_planted_writes_the_library_s_examples_and_their_dictionary() {
    use sae::data::planted::{recovery, PlantedDictionary};
    let dir = tempfile::tempdir().unwrap();
    let (data, dictionary) = (dir.path().join("planted.npy"), dir.path().join("dictionary.npy"));
    let args = ["generate", "--planted", "--features", "32", "--atoms", "40", "--examples", "5000", "--seed", "7"];
    let paths = ["-o", data.to_str().unwrap(), "--dictionary", dictionary.to_str().unwrap()];
    let (ok, stdout, stderr) = sae(&[&args[..], &paths].concat());
    assert!(ok, "{stderr}");
    assert!(stdout.contains("each the sum of 4 of 40 planted unit directions"), "{stdout}");
    let planted = PlantedDictionary { features: 32, atoms: 40, ..PlantedDictionary::default() };
    let written: ndarray::Array2<f64> = npy::read_matrix(&data).unwrap();
    assert_eq!(written.as_slice().unwrap(), planted.examples::<f64>(5000, 7).unwrap());
    let directions: ndarray::Array2<f64> = npy::read_matrix(&dictionary).unwrap();
    assert_eq!(directions.dim(), (40, 32));
    let expected = planted.directions(7).unwrap();
    assert_eq!(recovery(&expected, directions.as_slice().unwrap(), 32, 0.999).unwrap().recovered, 1.0);

    let (ok, _, stderr) =
        sae(&["generate", "--planted", "--active", "41", "--atoms", "40", "-o", data.to_str().unwrap()]);
    assert!(!ok && stderr.contains("active"), "{stderr}");
}
