//! `.npy` files and shard directories read a chunk at a time: every dtype and memory order
//! yields the file's values, the streaming objective over them equals the in-memory one, and
//! every malformed or changing file is an error naming it.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::common::*;
use ndarray::{Array2, ShapeBuilder};
use sae::data::npy::{self, NpyRowWriter};
use sae::data::npy_source::{NpyFileSource, ShardSource};
use sae::data::stream::{ExampleSource, SeekableSource, SliceSource};
use sae::objective::{StreamMode, StreamingObjective};
use sae::{Dataset, Error, Objective};

/// Writes `values` (`m×n`, rows are examples) as an `.npy` file of element type `F` in C or
/// Fortran order.
fn write_file<F: sae::Real>(path: &Path, values: &[f64], m: usize, n: usize, fortran: bool) {
    let converted: Vec<F> = values.iter().map(|&v| F::cast(v)).collect();
    let array = if fortran {
        let mut a = Array2::from_elem((m, n).f(), F::zero());
        a.assign(&Array2::from_shape_vec((m, n), converted).unwrap());
        a
    } else {
        Array2::from_shape_vec((m, n), converted).unwrap()
    };
    npy::write_matrix(path, &array).unwrap();
}

/// Every example of `source`, read `chunk` at a time.
fn read_all<T: sae::Real>(source: &mut impl ExampleSource<T>, chunk: usize) -> Vec<T> {
    let n = source.features();
    let mut buffer = vec![T::zero(); chunk * n];
    let mut all = Vec::new();
    source.rewind().unwrap();
    loop {
        let read = source.read_chunk(&mut buffer).unwrap();
        if read == 0 {
            return all;
        }
        all.extend_from_slice(&buffer[..read * n]);
    }
}

fn bad_file_reason(error: Error) -> (PathBuf, String) {
    match error {
        Error::BadFile { path, reason } => (path, reason),
        other => panic!("expected Error::BadFile, got {other:?}"),
    }
}

#[test]
fn a_file_yields_its_rows_in_every_dtype_order_and_chunking() {
    let dir = tempfile::tempdir().unwrap();
    let (m, n) = (53, 11);
    let values = uniform_data(m, n, 1);
    for (name, fortran, f32_file) in
        [("c64", false, false), ("f64", true, false), ("c32", false, true), ("f32", true, true)]
    {
        let path = dir.path().join(format!("{name}.npy"));
        if f32_file {
            write_file::<f32>(&path, &values, m, n, fortran);
        } else {
            write_file::<f64>(&path, &values, m, n, fortran);
        }
        let expected: Vec<f64> =
            if f32_file { values.iter().map(|&v| v as f32 as f64).collect() } else { values.clone() };
        let mut source = NpyFileSource::<f64>::open(&path).unwrap();
        assert_eq!((source.examples(), source.features()), (m, n));
        for chunk in [1, 7, m, 100] {
            assert_eq!(read_all(&mut source, chunk), expected, "{name}, chunk {chunk}");
        }
    }
}

#[test]
fn a_restricted_file_yields_only_its_rows_in_either_order() {
    let dir = tempfile::tempdir().unwrap();
    let (m, n) = (29, 5);
    let values = uniform_data(m, n, 3);
    for fortran in [false, true] {
        let path = dir.path().join(format!("{fortran}.npy"));
        write_file::<f64>(&path, &values, m, n, fortran);
        for rows in [0..29, 3..17, 28..29, 9..9] {
            let mut source = NpyFileSource::<f64>::open(&path).unwrap().restrict(rows.clone()).unwrap();
            assert_eq!(source.examples(), rows.len());
            for chunk in [1, 4, 40] {
                assert_eq!(
                    read_all(&mut source, chunk),
                    values[rows.start * n..rows.end * n],
                    "{rows:?}, chunk {chunk}"
                );
            }
        }
        let (at, reason) = bad_file_reason(NpyFileSource::<f64>::open(&path).unwrap().restrict(20..30).unwrap_err());
        assert_eq!(at, path);
        assert!(reason.contains("rows 20..30") && reason.contains("29 rows"), "{reason}");
    }
}

#[test]
fn a_float64_file_read_as_f32_is_rounded_once() {
    let dir = tempfile::tempdir().unwrap();
    let (m, n) = (9, 4);
    let values = uniform_data(m, n, 2);
    let path = dir.path().join("x.npy");
    write_file::<f64>(&path, &values, m, n, true);
    let mut source = NpyFileSource::<f32>::open(&path).unwrap();
    let expected: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    assert_eq!(read_all(&mut source, 4), expected);
}

#[test]
fn a_shard_directory_reads_as_the_concatenation_of_its_files_in_name_order() {
    let dir = tempfile::tempdir().unwrap();
    let n = 6;
    let values = uniform_data(10 + 1 + 25, n, 3);
    write_file::<f64>(&dir.path().join("part-0.npy"), &values[..10 * n], 10, n, false);
    write_file::<f32>(&dir.path().join("part-1.npy"), &values[10 * n..11 * n], 1, n, true);
    write_file::<f64>(&dir.path().join("part-2.npy"), &values[11 * n..], 25, n, true);
    std::fs::write(dir.path().join("README.txt"), "not a shard").unwrap();
    let mut source = ShardSource::<f64>::from_dir(dir.path()).unwrap();
    assert_eq!((source.examples(), source.features(), source.shards().len()), (36, n, 3));
    let mut expected = values.clone();
    expected[10 * n..11 * n].iter_mut().for_each(|v| *v = *v as f32 as f64);
    for chunk in [1, 4, 11, 36, 50] {
        assert_eq!(read_all(&mut source, chunk), expected, "chunk {chunk}");
    }
}

#[test]
fn restricted_shards_yield_only_their_rows_across_shard_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let n = 3;
    let values = uniform_data(10 + 1 + 25, n, 5);
    write_file::<f64>(&dir.path().join("part-0.npy"), &values[..10 * n], 10, n, false);
    write_file::<f64>(&dir.path().join("part-1.npy"), &values[10 * n..11 * n], 1, n, true);
    write_file::<f64>(&dir.path().join("part-2.npy"), &values[11 * n..], 25, n, false);
    for rows in [0..36, 0..10, 9..12, 10..11, 11..36, 4..30, 20..20] {
        let mut source = ShardSource::<f64>::from_dir(dir.path()).unwrap().restrict(rows.clone()).unwrap();
        assert_eq!(source.examples(), rows.len());
        for chunk in [1, 4, 50] {
            assert_eq!(read_all(&mut source, chunk), values[rows.start * n..rows.end * n], "{rows:?}, chunk {chunk}");
        }
    }
    let (_, reason) = bad_file_reason(ShardSource::<f64>::from_dir(dir.path()).unwrap().restrict(30..40).unwrap_err());
    assert!(reason.contains("rows 30..40") && reason.contains("36 rows"), "{reason}");
}

/// `source`'s examples `first..first + count`, read by seeking there, `chunk` at a time.
fn read_from<T: sae::Real>(source: &mut impl SeekableSource<T>, first: usize, count: usize, chunk: usize) -> Vec<T> {
    let n = source.features();
    let mut buffer = vec![T::zero(); chunk * n];
    let mut read = Vec::new();
    source.seek(first).unwrap();
    while read.len() < count * n {
        let got = source.read_chunk(&mut buffer[..chunk.min(count - read.len() / n) * n]).unwrap();
        assert!(got > 0, "the data ended at example {} of {first}..{}", first + read.len() / n, first + count);
        read.extend_from_slice(&buffer[..got * n]);
    }
    read
}

/// Every (first, count) of `m` examples read by seeking, in a scrambled order of seeks, is
/// those rows of `values`; and `read_exact_at` is the same.
fn check_seeks<S: SeekableSource<f64>>(source: &mut S, values: &[f64], m: usize, n: usize) {
    let mut spans: Vec<(usize, usize)> =
        (0..m).flat_map(|first| (1..=m - first).map(move |count| (first, count))).collect();
    // Far seeks, back and forth, rather than in order.
    spans.sort_by_key(|&(first, count)| (first * 7919 + count * 104_729) % 1009);
    for (first, count) in spans {
        for chunk in [1, 3, count] {
            assert_eq!(
                read_from(source, first, count, chunk),
                values[first * n..(first + count) * n],
                "{first}+{count}, chunk {chunk}"
            );
        }
        let mut exact = vec![0.0; count * n];
        source.read_exact_at(first, &mut exact).unwrap();
        assert_eq!(exact, values[first * n..(first + count) * n]);
    }
    // The end, and past it.
    source.seek(m).unwrap();
    assert_eq!(source.read_chunk(&mut vec![0.0; n]).unwrap(), 0);
    let err = source.seek(m + 1).unwrap_err().to_string();
    assert!(err.contains("example sought") && err.contains(&(m + 1).to_string()), "{err}");
    let err = source.read_exact_at(m - 1, &mut vec![0.0; 2 * n]).unwrap_err().to_string();
    assert!(err.contains(&format!("from example {m}")), "{err}");
}

#[test]
fn files_shards_and_slices_seek_to_any_example() {
    let dir = tempfile::tempdir().unwrap();
    let (m, n) = (23, 3);
    let values = uniform_data(m, n, 8);
    for fortran in [false, true] {
        let path = dir.path().join(format!("file-{fortran}.npy"));
        write_file::<f64>(&path, &values, m, n, fortran);
        check_seeks(&mut NpyFileSource::<f64>::open(&path).unwrap(), &values, m, n);
        let mut restricted = NpyFileSource::<f64>::open(&path).unwrap().restrict(5..17).unwrap();
        check_seeks(&mut restricted, &values[5 * n..17 * n], 12, n);
    }
    let shards = dir.path().join("shards");
    std::fs::create_dir(&shards).unwrap();
    for (i, rows) in [0..4, 4..5, 5..15, 15..23].into_iter().enumerate() {
        let path = shards.join(format!("{i}.npy"));
        write_file::<f64>(&path, &values[rows.start * n..rows.end * n], rows.len(), n, i % 2 == 1);
    }
    check_seeks(&mut ShardSource::<f64>::from_dir(&shards).unwrap(), &values, m, n);
    for rows in [3..20, 4..5, 6..23] {
        let mut restricted = ShardSource::<f64>::from_dir(&shards).unwrap().restrict(rows.clone()).unwrap();
        check_seeks(&mut restricted, &values[rows.start * n..rows.end * n], rows.len(), n);
    }
    check_seeks(&mut SliceSource::new(&values, n).unwrap(), &values, m, n);
}

#[test]
fn a_file_changed_after_it_was_opened_is_refused_at_the_next_seek() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.npy");
    let values = uniform_data(10, 2, 1);
    write_file::<f64>(&path, &values, 10, 2, false);
    let mut source = NpyFileSource::<f64>::open(&path).unwrap();
    source.seek(3).unwrap();
    std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(&[0; 16]).unwrap();
    let (bad, reason) = bad_file_reason(source.seek(4).unwrap_err());
    assert_eq!(bad, path);
    assert!(reason.contains("changed size"), "{reason}");
}

#[test]
fn a_shard_source_fills_whole_chunks_across_shard_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let values = uniform_data(9, 2, 4);
    for (i, rows) in [(0, 0..3), (1, 3..6), (2, 6..9)] {
        write_file::<f64>(&dir.path().join(format!("{i}.npy")), &values[rows.start * 2..rows.end * 2], 3, 2, false);
    }
    let mut source = ShardSource::<f64>::from_dir(dir.path()).unwrap();
    let mut buffer = vec![0.0; 4 * 2];
    source.rewind().unwrap();
    assert_eq!(source.read_chunk(&mut buffer).unwrap(), 4);
    assert_eq!(source.read_chunk(&mut buffer).unwrap(), 4);
    assert_eq!(source.read_chunk(&mut buffer).unwrap(), 1);
    assert_eq!(source.read_chunk(&mut buffer).unwrap(), 0);
}

fn streamed_from_file_equals_in_memory(mode: StreamMode) {
    let dir = tempfile::tempdir().unwrap();
    let (m, n, h) = (777, 29, 13);
    let values = uniform_data(m, n, 5);
    let theta = theta(n, h, 6);
    let path = dir.path().join("x.npy");
    write_file::<f64>(&path, &values, m, n, true);
    let mut grad = vec![0.0; theta.len()];
    let data = Dataset::examples_by_features(&values, m, n).unwrap();
    let cost = Objective::new(hyper(n, h), data).unwrap().evaluate(&theta, &mut grad).unwrap();
    let source = NpyFileSource::<f64>::open(&path).unwrap();
    let mut streaming = StreamingObjective::new(hyper(n, h), source, 100, mode).unwrap();
    let mut streamed_grad = vec![0.0; theta.len()];
    for _ in 0..2 {
        let streamed_cost = streaming.evaluate(&theta, &mut streamed_grad).unwrap();
        assert!((streamed_cost - cost).abs() <= 1e-10 * cost, "{mode:?}: {streamed_cost} vs {cost}");
        assert!(relative_error(&streamed_grad, &grad) <= 1e-10, "{mode:?}");
    }
}

#[test]
fn one_pass_streaming_from_a_fortran_order_file_equals_in_memory() {
    streamed_from_file_equals_in_memory(StreamMode::OnePass);
}

#[test]
fn two_pass_streaming_from_a_fortran_order_file_equals_in_memory() {
    streamed_from_file_equals_in_memory(StreamMode::TwoPass);
}

#[test]
fn an_integer_file_is_rejected_naming_its_dtype_and_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ints.npy");
    ndarray_npy::write_npy(&path, &Array2::<i32>::zeros((3, 2))).unwrap();
    let (at, reason) = bad_file_reason(NpyFileSource::<f64>::open(&path).unwrap_err());
    assert_eq!(at, path);
    assert!(reason.contains("<i4"), "{reason}");
}

#[test]
fn a_big_endian_file_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("be.npy");
    let header = ndarray_npy::npy::header::Header {
        type_descriptor: py_literal::Value::String(">f8".into()),
        layout: ndarray_npy::npy::header::Layout::Standard,
        shape: vec![1, 1],
    };
    let mut bytes = header.to_bytes().unwrap();
    bytes.extend_from_slice(&1.0f64.to_be_bytes());
    std::fs::write(&path, bytes).unwrap();
    let (_, reason) = bad_file_reason(NpyFileSource::<f64>::open(&path).unwrap_err());
    assert!(reason.contains(">f8"), "{reason}");
}

#[test]
fn a_file_that_is_not_two_dimensional_is_rejected_with_its_shape() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.npy");
    npy::write_vector(&path, &[1.0f64, 2.0, 3.0]).unwrap();
    let (_, reason) = bad_file_reason(NpyFileSource::<f64>::open(&path).unwrap_err());
    assert!(reason.contains("2-D") && reason.contains("[3]"), "{reason}");
}

#[test]
fn a_truncated_file_is_rejected_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.npy");
    write_file::<f64>(&path, &uniform_data(10, 3, 7), 10, 3, false);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 8).unwrap();
    let (_, reason) = bad_file_reason(NpyFileSource::<f64>::open(&path).unwrap_err());
    assert!(reason.contains("truncated"), "{reason}");
}

#[test]
fn a_file_with_bytes_after_its_data_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.npy");
    write_file::<f64>(&path, &uniform_data(10, 3, 7), 10, 3, false);
    std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(&[0; 5]).unwrap();
    let (_, reason) = bad_file_reason(NpyFileSource::<f64>::open(&path).unwrap_err());
    assert!(reason.contains("5 bytes after"), "{reason}");
}

#[test]
fn a_file_that_is_not_npy_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.npy");
    std::fs::write(&path, "x,y\n1,2\n").unwrap();
    let (at, reason) = bad_file_reason(NpyFileSource::<f64>::open(&path).unwrap_err());
    assert_eq!(at, path);
    assert!(reason.contains("not a valid .npy"), "{reason}");
}

#[test]
fn a_missing_file_is_an_io_error_naming_it() {
    let path = Path::new("/nonexistent/x.npy");
    match NpyFileSource::<f64>::open(path).unwrap_err() {
        Error::Io { path: at, .. } => assert_eq!(at, path),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_shard_of_another_width_is_rejected_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    write_file::<f64>(&dir.path().join("a.npy"), &uniform_data(4, 3, 8), 4, 3, false);
    write_file::<f64>(&dir.path().join("b.npy"), &uniform_data(4, 5, 8), 4, 5, false);
    let (at, reason) = bad_file_reason(ShardSource::<f64>::from_dir(dir.path()).unwrap_err());
    assert_eq!(at, dir.path().join("b.npy"));
    assert!(reason.contains("5 features") && reason.contains("has 3"), "{reason}");
}

#[test]
fn a_directory_without_shards_is_rejected_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (at, reason) = bad_file_reason(ShardSource::<f64>::from_dir(dir.path()).unwrap_err());
    assert_eq!(at, dir.path());
    assert!(reason.contains("no .npy"), "{reason}");
}

/// A streaming objective over `path`, evaluated once successfully.
fn evaluated_once(
    path: &Path,
    m: usize,
    n: usize,
    h: usize,
) -> (StreamingObjective<f64, NpyFileSource<f64>>, Vec<f64>) {
    write_file::<f64>(path, &uniform_data(m, n, 9), m, n, false);
    let source = NpyFileSource::<f64>::open(path).unwrap();
    let mut streaming = StreamingObjective::new(hyper(n, h), source, 16, StreamMode::OnePass).unwrap();
    let theta = theta(n, h, 10);
    let mut grad = vec![0.0; theta.len()];
    streaming.evaluate(&theta, &mut grad).unwrap();
    (streaming, theta)
}

#[test]
fn a_file_growing_between_passes_is_an_error_not_a_partial_result() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.npy");
    let (mut streaming, theta) = evaluated_once(&path, 40, 5, 3);
    std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(&[0; 40]).unwrap();
    let mut grad = vec![0.0; theta.len()];
    let (at, reason) = bad_file_reason(streaming.evaluate(&theta, &mut grad).unwrap_err());
    assert_eq!(at, path);
    assert!(reason.contains("changed size"), "{reason}");
}

#[test]
fn a_file_truncated_between_passes_is_an_error_not_a_partial_result() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.npy");
    let (mut streaming, theta) = evaluated_once(&path, 40, 5, 3);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len / 2).unwrap();
    let mut grad = vec![0.0; theta.len()];
    let (at, reason) = bad_file_reason(streaming.evaluate(&theta, &mut grad).unwrap_err());
    assert_eq!(at, path);
    assert!(reason.contains("changed size"), "{reason}");
}

#[test]
fn a_file_rewritten_in_place_between_passes_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.npy");
    let (mut streaming, theta) = evaluated_once(&path, 40, 5, 3);
    let bytes = std::fs::read(&path).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().write_all(&bytes).unwrap();
    let mut grad = vec![0.0; theta.len()];
    let (_, reason) = bad_file_reason(streaming.evaluate(&theta, &mut grad).unwrap_err());
    assert!(reason.contains("modified"), "{reason}");
}

#[test]
fn a_row_writer_produces_a_file_numpy_and_the_reader_agree_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rows.npy");
    let values = uniform_data(7, 3, 11);
    let mut writer = NpyRowWriter::<f64>::create(&path, 7, 3).unwrap();
    writer.write_rows(&values[..9]).unwrap();
    writer.write_rows(&values[9..]).unwrap();
    writer.finish().unwrap();
    let read: Array2<f64> = npy::read_matrix(&path).unwrap();
    assert_eq!(read.dim(), (7, 3));
    assert_eq!(read.as_slice().unwrap(), &values[..]);
}

#[test]
fn an_unfinished_row_writer_leaves_no_file_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rows.npy");
    let mut writer = NpyRowWriter::<f32>::create(&path, 5, 2).unwrap();
    writer.write_rows(&[1.0, 2.0]).unwrap();
    let error = writer.finish().unwrap_err();
    assert!(matches!(error, Error::ShapeMismatch { .. }), "{error:?}");
    assert!(!path.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "the temporary file is removed");
}

#[test]
fn a_row_writer_refuses_more_rows_than_its_shape() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = NpyRowWriter::<f64>::create(dir.path().join("rows.npy"), 1, 2).unwrap();
    assert!(writer.write_rows(&[1.0, 2.0, 3.0, 4.0]).is_err());
}
