//! Readers are safe with the user's files: every size a header claims is checked against the
//! bytes the file holds before anything is allocated, decompression stops where the header
//! says the data ends, only regular files are read, and input of the wrong size for an exercise
//! is an error naming the file, never a panic. A global allocator records each test thread's
//! largest allocation, so "before allocating" is measured, not assumed.

mod input_files;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use input_files::{gzip, idx_images, idx_labels, mat_file, MatValues};
use sae::data::npy::{self, NpyDtype};
use sae::data::npy_source::NpyFileSource;
use sae::data::{mat, mnist};
use sae::exercises::{self, MnistFiles};
use sae::model::stack::StackModel;
use sae::model::vae::VaeModel;
use sae::model::ModelFile;
use sae::Error;

/// The system allocator, recording the largest allocation of each thread (each test runs on
/// its own).
struct Largest;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.with(|largest| largest.set(largest.get().max(layout.size())));
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Largest = Largest;

/// The largest allocation `run` makes on this thread.
fn largest_allocation<R>(run: impl FnOnce() -> R) -> (R, usize) {
    LARGEST.with(|largest| largest.set(0));
    let result = run();
    (result, LARGEST.with(Cell::get))
}

/// The reason of an [`Error::BadFile`] about `path`.
fn bad_file_reason<T: std::fmt::Debug>(result: sae::Result<T>, path: &Path) -> String {
    match result {
        Err(Error::BadFile { path: at, reason }) => {
            assert_eq!(at, path, "the error names the file");
            reason
        }
        other => panic!("expected Error::BadFile about {}, got {other:?}", path.display()),
    }
}

/// A `.npy` file of version 1 whose header is `dict`, padded as numpy pads it, and `data`.
fn npy_bytes(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut header = format!("{dict}{:1$}", "", 117 - dict.len()).into_bytes();
    header.push(b'\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header);
    bytes.extend(data);
    bytes
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn npy_header_claiming_more_than_the_file_holds_is_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    // 10¹² × 784 float64 values: 6.3 PB claimed by a 192-byte file.
    let dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000, 784), }";
    let bytes = npy_bytes(dict, &[0; 64]);
    assert_eq!(bytes.len(), 192);
    let path = write(dir.path(), "claims.npy", &bytes);
    let start = Instant::now();
    let (reasons, largest) = largest_allocation(|| {
        [
            bad_file_reason(npy::read_matrix::<f64>(&path), &path),
            bad_file_reason(npy::read_matrix::<f32>(&path), &path),
            bad_file_reason(npy::inspect(&path), &path),
            bad_file_reason(NpyFileSource::<f64>::open(&path), &path),
        ]
    });
    assert!(largest < 1 << 16, "an allocation of {largest} bytes");
    for reason in reasons {
        assert!(reason.contains("truncated") && reason.contains("1000000000000, 784"), "{reason}");
        assert!(reason.contains("6272000000000128 bytes") && reason.contains("the file has 192"), "{reason}");
    }
    let elapsed = start.elapsed();
    assert!(elapsed < Duration::from_secs(1), "refused in {elapsed:?}");

    let vector = write(
        dir.path(),
        "vector.npy",
        &npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (4000000000000,), }", &[0; 8]),
    );
    assert!(bad_file_reason(npy::read_vector::<f64>(&vector), &vector).contains("truncated"));
}

#[test]
fn npy_header_length_beyond_the_file_is_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    // Version 2: a 4-byte header length, here 4 GB.
    let mut bytes = b"\x93NUMPY\x02\x00".to_vec();
    bytes.extend(u32::MAX.to_le_bytes());
    bytes.extend(b"{'descr': '<f8'}\n");
    let path = write(dir.path(), "long-header.npy", &bytes);
    let (reason, largest) = largest_allocation(|| bad_file_reason(npy::read_matrix::<f64>(&path), &path));
    assert!(largest < 1 << 16, "an allocation of {largest} bytes");
    assert!(reason.contains("4294967295"), "{reason}");
}

#[test]
fn npy_header_nested_beyond_any_array_header_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let dict =
        format!("{{'descr': {}'<f8'{}, 'fortran_order': False, 'shape': (1,), }}", "[".repeat(30), "]".repeat(30));
    let mut header = format!("{dict}{:1$}", "", 200 - dict.len()).into_bytes();
    header.push(b'\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header);
    let path = write(dir.path(), "nested.npy", &bytes);
    assert!(bad_file_reason(npy::inspect(&path), &path).contains("nested"));
}

#[test]
fn inspect_reads_the_dtype_shape_and_order_without_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let dict = "{'descr': '<f4', 'fortran_order': True, 'shape': (3, 2), }";
    let path = write(dir.path(), "f32.npy", &npy_bytes(dict, &[0; 24]));
    let info = npy::inspect(&path).unwrap();
    assert_eq!(
        (info.dtype, info.dtype.name(), info.shape.clone(), info.fortran_order),
        (NpyDtype::F32, "f32", vec![3, 2], true)
    );
    assert_eq!((info.data_offset, info.values()), (128, 6));
    // The same header over fewer bytes than it describes.
    let short = write(dir.path(), "short.npy", &npy_bytes(dict, &[0; 20]));
    assert!(bad_file_reason(npy::inspect(&short), &short).contains("truncated"));
}

#[test]
fn one_dimensional_float32_files_are_read_as_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let values = [0.5f32, -2.0, 8.25];
    let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let path =
        write(dir.path(), "theta.npy", &npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", &data));
    assert_eq!(npy::read_vector::<f64>(&path).unwrap(), vec![0.5, -2.0, 8.25]);
    assert_eq!(npy::read_vector::<f32>(&path).unwrap(), values.to_vec());
}

#[test]
fn dev_zero_is_refused_by_every_reader() {
    let path = Path::new("/dev/zero");
    let reasons = [
        bad_file_reason(npy::read_matrix::<f64>(path), path),
        bad_file_reason(npy::read_vector::<f64>(path), path),
        bad_file_reason(npy::inspect(path), path),
        bad_file_reason(NpyFileSource::<f64>::open(path), path),
        bad_file_reason(mnist::read_images(path), path),
        bad_file_reason(mnist::read_labels(path), path),
        bad_file_reason(mat::read_images(path, None), path),
        bad_file_reason(ModelFile::<f64>::load(path), path),
        bad_file_reason(VaeModel::<f64>::load(path), path),
        bad_file_reason(StackModel::<f64>::load(path), path),
    ];
    for reason in reasons {
        assert!(reason.contains("character device, not a regular file"), "{reason}");
    }
}

#[test]
fn a_fifo_is_refused_without_waiting_for_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("x.npy");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    assert!(bad_file_reason(npy::read_matrix::<f64>(&fifo), &fifo).contains("a FIFO, not a regular file"));
    assert!(bad_file_reason(ModelFile::<f64>::load(&fifo), &fifo).contains("a FIFO"));
}

#[test]
fn a_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    assert!(bad_file_reason(mnist::read_images(path), path).contains("a directory, not a regular file"));
    assert!(bad_file_reason(npy::inspect(path), path).contains("a directory"));
}

#[test]
fn gzip_bomb_is_refused_at_the_size_the_header_implies() {
    let dir = tempfile::tempdir().unwrap();
    // A header of 10 images of 28×28 and their pixels, then 4 GiB of zeros in 4096 gzip
    // members of 1 MiB each: a 4-MB file.
    let mut bytes = gzip(&idx_images(10, 28, 28));
    let zeros = gzip(&vec![0; 1 << 20]);
    for _ in 0..4096 {
        bytes.extend_from_slice(&zeros);
    }
    let path = write(dir.path(), "bomb.gz", &bytes);
    let start = Instant::now();
    let (reason, largest) = largest_allocation(|| bad_file_reason(mnist::read_images(&path), &path));
    let elapsed = start.elapsed();
    assert!(largest < 1 << 20, "an allocation of {largest} bytes");
    assert!(reason.contains("more pixel bytes than its header of 10×28×28 describes (7840)"), "{reason}");
    assert!(elapsed < Duration::from_secs(1), "stopped after {elapsed:?}");
}

#[test]
fn idx_header_claiming_more_than_the_file_holds_or_than_a_gibibyte_is_refused_not_allocated() {
    let dir = tempfile::tempdir().unwrap();
    let mut claims = idx_images(2, 28, 28);
    claims[4..8].copy_from_slice(&4_000_000_000u32.to_be_bytes());
    let start = Instant::now();
    for (name, bytes) in [("claims.idx", claims.clone()), ("claims.idx.gz", gzip(&claims))] {
        let path = write(dir.path(), name, &bytes);
        let (reason, largest) = largest_allocation(|| bad_file_reason(mnist::read_images(&path), &path));
        assert!(largest < 1 << 20, "an allocation of {largest} bytes");
        assert!(reason.contains("4000000000×28×28 describes") && reason.contains("at most 1073741824"), "{reason}");
    }
    let mut claims = idx_images(2, 28, 28);
    claims[4..8].copy_from_slice(&1000u32.to_be_bytes());
    let path = write(dir.path(), "more.idx.gz", &gzip(&claims));
    let (reason, largest) = largest_allocation(|| bad_file_reason(mnist::read_images(&path), &path));
    assert!(largest < 1 << 20, "an allocation of {largest} bytes");
    assert!(reason.contains("truncated: 1568 pixel bytes for a header of 1000×28×28"), "{reason}");
    assert!(start.elapsed() < Duration::from_secs(1));
    let none = write(dir.path(), "none.idx", &idx_images(0, 28, 28));
    assert!(bad_file_reason(mnist::read_images(&none), &none).contains("0 images"));
}

#[test]
fn mat_element_claiming_more_than_the_file_holds_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = mat_file("IMAGES", &[4, 4, 1], MatValues::Double(vec![0.5; 16]), false);
    bytes[132..136].copy_from_slice(&u32::MAX.to_le_bytes());
    let path = write(dir.path(), "claims.mat", &bytes);
    assert!(bad_file_reason(mat::read_images(&path, None), &path).contains("truncated"));
}

#[test]
fn compressed_mat_element_claiming_more_than_the_limit_is_refused_before_decompressing() {
    let dir = tempfile::tempdir().unwrap();
    let mut tag = 14u32.to_le_bytes().to_vec();
    tag.extend(u32::MAX.to_le_bytes());
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut encoder, &tag).unwrap();
    let zlib = encoder.finish().unwrap();
    let mut bytes = mat_file("IMAGES", &[4, 4, 1], MatValues::Double(vec![0.5; 16]), false)[..128].to_vec();
    bytes.extend(15u32.to_le_bytes());
    bytes.extend((zlib.len() as u32).to_le_bytes());
    bytes.extend(zlib);
    let path = write(dir.path(), "bomb.mat", &bytes);
    let (reason, largest) = largest_allocation(|| bad_file_reason(mat::read_images(&path, None), &path));
    assert!(largest < 1 << 20, "an allocation of {largest} bytes");
    assert!(reason.contains("exceed the 1073741824 bytes read"), "{reason}");
}

#[test]
fn mat_arrays_of_no_pixels_or_too_many_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (name, dims) in [("empty.mat", [8, 8, 0]), ("huge.mat", [65536, 65536, 65536]), ("negative.mat", [-1, -1, 1])] {
        let path = write(dir.path(), name, &mat_file("IMAGES", &dims, MatValues::Double(vec![]), false));
        let _ = bad_file_reason(mat::read_images(&path, None), &path);
    }
}

#[test]
fn model_files_whose_metadata_claims_more_parameters_than_they_hold_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let write_st = |name: &str, metadata: &[(&str, &str)]| {
        let path = dir.path().join(name);
        let metadata = metadata.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let tensors: Vec<(&str, safetensors::tensor::TensorView<'_>)> = Vec::new();
        safetensors::serialize_to_file(tensors, Some(metadata), &path).unwrap();
        path
    };
    let stack = write_st(
        "stack.safetensors",
        &[
            ("format", "sae"),
            ("format_version", "1"),
            ("objective", "stacked-autoencoder"),
            ("sizes", "4294967296,4294967296"),
            ("classes", "10"),
        ],
    );
    assert!(bad_file_reason(StackModel::<f64>::load(&stack), &stack).contains("more parameters than the file holds"));
    let vae = write_st(
        "vae.safetensors",
        &[
            ("format", "sae"),
            ("format_version", "1"),
            ("objective", "variational-autoencoder"),
            ("visible", "18446744073709551615"),
            ("hidden", "3"),
            ("latent", "9223372036854775807"),
            ("activation", "sigmoid"),
            ("decoder", "bernoulli"),
        ],
    );
    assert!(bad_file_reason(VaeModel::<f64>::load(&vae), &vae).contains("more parameters than the file holds"));
}

/// MNIST files in `dir` of `train` and `test` digits of `side×side` pixels, with
/// `train_labels` training labels.
fn mnist_files(dir: &Path, train: u32, train_labels: u32, test: u32, side: u32) -> MnistFiles {
    let files = MnistFiles::in_dir(dir);
    std::fs::write(&files.train_images, gzip(&idx_images(train, side, side))).unwrap();
    std::fs::write(&files.train_labels, gzip(&idx_labels(train_labels))).unwrap();
    std::fs::write(&files.test_images, gzip(&idx_images(test, 28, 28))).unwrap();
    std::fs::write(&files.test_labels, gzip(&idx_labels(test))).unwrap();
    files
}

#[test]
fn exercise_natural_on_images_smaller_than_the_patch_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "small.mat", &mat_file("IMAGES", &[4, 4, 2], MatValues::Double(vec![0.5; 32]), false));
    let reason = bad_file_reason(exercises::natural_image_features(&path, 1, 1), &path);
    assert!(reason.contains("at least 8") && reason.contains("side 4"), "{reason}");
}

#[test]
fn exercise_natural_on_no_images_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "none.mat", &mat_file("IMAGES", &[8, 8, 0], MatValues::UInt8(vec![]), true));
    let _ = bad_file_reason(exercises::natural_image_features(&path, 1, 1), &path);
}

#[test]
fn vectorization_with_fewer_than_ten_thousand_digits_names_the_images_file() {
    let dir = tempfile::tempdir().unwrap();
    let files = mnist_files(dir.path(), 100, 100, 10, 28);
    let reason = bad_file_reason(exercises::mnist_vectorization::<f32>(&files, 1), &files.train_images);
    assert!(reason.contains("100 images") && reason.contains("10000"), "{reason}");
}

#[test]
fn self_taught_with_more_or_fewer_labels_than_images_names_the_labels_file() {
    let dir = tempfile::tempdir().unwrap();
    for labels in [30, 10] {
        let files = mnist_files(dir.path(), 20, labels, 10, 28);
        let reason = bad_file_reason(exercises::self_taught_learning::<f32>(&files, 1), &files.train_labels);
        assert!(reason.contains(&format!("{labels} labels for the 20 images")), "{reason}");
    }
}

#[test]
fn softmax_with_test_digits_of_another_size_names_the_test_images() {
    let dir = tempfile::tempdir().unwrap();
    let files = mnist_files(dir.path(), 20, 20, 10, 27);
    let reason = bad_file_reason(exercises::softmax_on_digits(&files, 1), &files.test_images);
    assert!(reason.contains("784 pixels") && reason.contains("729"), "{reason}");
    let files = mnist_files(dir.path(), 20, 20, 10, 28);
    std::fs::write(&files.test_labels, idx_labels(11)).unwrap();
    assert!(bad_file_reason(exercises::stacked_autoencoder::<f32>(&files, &[4], 1), &files.test_labels)
        .contains("11 labels"));
}
