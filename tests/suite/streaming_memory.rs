//! Streaming's memory is bounded by its chunk, not by the data set: the peak RSS of
//! `sae objective --stream` (its `VmHWM` from /proc/self/status, which it prints) on an S3-wide
//! float32 file of 2.2 GB stays under a chunk-derived bound, and is the same for 60 000 rows.

use std::path::Path;
use std::process::Command;

const FEATURES: usize = 784;
const HIDDEN: usize = 196;
const CHUNK: usize = 4096;

fn sae(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sae")).args(args).output().unwrap();
    assert!(out.status.success(), "sae {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into()
}

/// Peak RSS in MB of one streamed evaluation of the file at `path`.
fn streamed_peak_rss_mb(path: &Path) -> f64 {
    let chunk = CHUNK.to_string();
    let stdout = sae(&[
        "objective",
        "--shape",
        "S3",
        "--f32",
        "--stream",
        "--chunk",
        &chunk,
        "--repeat",
        "1",
        "--data",
        path.to_str().unwrap(),
    ]);
    let line = stdout.lines().find_map(|l| l.strip_prefix("peak RSS  = ")).expect("a peak RSS line");
    line.trim_end_matches(" MB").parse().unwrap()
}

fn generate(path: &Path, rows: usize) {
    sae(&["generate", "--shape", "S3", "--f32", "--examples", &rows.to_string(), "-o", path.to_str().unwrap()]);
}

#[test]
fn streaming_a_file_larger_than_2_gib_stays_within_a_chunk_sized_bound_independent_of_m() {
    let dir = tempfile::tempdir().unwrap();
    let (small, large) = (dir.path().join("small.npy"), dir.path().join("large.npy"));
    generate(&small, 60_000);
    generate(&large, 700_000);
    let large_bytes = std::fs::metadata(&large).unwrap().len();
    assert!(large_bytes >= 2 << 30, "the large file has {large_bytes} bytes");

    // Two chunk buffers, the raw bytes of one chunk, and the engine's scratch (a2, the
    // output layer of a block, [P; F]) are each at most chunk × (n + 2h) values; the rest
    // (binary, libraries, model, thread stacks) is a fixed 16 MB.
    let bound_mb = 16.0 + (4 * CHUNK * (FEATURES + 2 * HIDDEN) * 4) as f64 / 1e6;
    let small_rss = streamed_peak_rss_mb(&small);
    let large_rss = streamed_peak_rss_mb(&large);
    assert!(large_rss <= bound_mb, "peak RSS {large_rss} MB over the bound {bound_mb} MB");
    assert!(
        (large_rss - small_rss).abs() <= 4.0,
        "peak RSS depends on m: {small_rss} MB at 60 000 rows, {large_rss} MB at 700 000"
    );
}

/// Peak RSS in MB of one epoch of Adam streamed from the file at `path` (h = 16, f32).
fn streamed_adam_peak_rss_mb(path: &Path, dir: &Path) -> f64 {
    let stdout = sae(&[
        "train",
        "--optimizer",
        "adam",
        "--epochs",
        "1",
        "--hidden",
        "16",
        "--f32",
        "--stream",
        "--chunk",
        "1024",
        "--shuffle-block",
        &SHUFFLE_BLOCK.to_string(),
        "--shuffle-window",
        &SHUFFLE_WINDOW.to_string(),
        "--data",
        path.to_str().unwrap(),
        "--no-features",
        "-o",
        dir.join("model.safetensors").to_str().unwrap(),
    ]);
    let line = stdout.lines().find_map(|l| l.strip_prefix("peak RSS  = ")).expect("a peak RSS line");
    line.trim_end_matches(" MB").parse().unwrap()
}

const SHUFFLE_BLOCK: usize = 256;
const SHUFFLE_WINDOW: usize = 32;

#[test]
fn streamed_adam_on_a_file_of_a_gigabyte_stays_within_its_window_independent_of_m() {
    let dir = tempfile::tempdir().unwrap();
    let (small, large) = (dir.path().join("small.npy"), dir.path().join("large.npy"));
    generate(&small, 20_000);
    generate(&large, 350_000);
    let large_bytes = std::fs::metadata(&large).unwrap().len();
    assert!(large_bytes >= 1 << 30, "the large file has {large_bytes} bytes");

    // Two windows of examples (the one trained on and the next, being read: 8 192 × 784 f32 =
    // 26 MB each), or afterwards the final evaluation's chunks (as bounded above, with --chunk
    // 1024); the rest a fixed 16 MB.
    let window_mb = (SHUFFLE_BLOCK * SHUFFLE_WINDOW * FEATURES * 4) as f64 / 1e6;
    let evaluation_mb = (4 * 1024 * (FEATURES + 2 * 16) * 4) as f64 / 1e6;
    let bound_mb = 16.0 + (2.0 * window_mb).max(evaluation_mb) + 4.0;
    let small_rss = streamed_adam_peak_rss_mb(&small, dir.path());
    let large_rss = streamed_adam_peak_rss_mb(&large, dir.path());
    assert!(large_rss <= bound_mb, "peak RSS {large_rss} MB over the bound {bound_mb} MB");
    assert!(
        (large_rss - small_rss).abs() <= 4.0,
        "peak RSS depends on m: {small_rss} MB at 20 000 rows, {large_rss} MB at 350 000"
    );
}
