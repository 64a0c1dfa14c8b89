//! Small input files of every format the readers take, written byte by byte as their formats
//! specify, for tests of the readers and for the fuzzers' seed corpus.
#![allow(dead_code)]

use std::io::Write;

/// `bytes` gzipped.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// An IDX images file (magic 2051) of `count` images of `rows×cols` pixels `0, 1, 2, …`.
pub fn idx_images(count: u32, rows: u32, cols: u32) -> Vec<u8> {
    let mut bytes: Vec<u8> = [2051, count, rows, cols].iter().flat_map(|v: &u32| v.to_be_bytes()).collect();
    bytes.extend((0..count * rows * cols).map(|i| (i % 256) as u8));
    bytes
}

/// An IDX labels file (magic 2049) of `count` labels `0, 1, …, 9, 0, …`.
pub fn idx_labels(count: u32) -> Vec<u8> {
    let mut bytes: Vec<u8> = [2049, count].iter().flat_map(|v: &u32| v.to_be_bytes()).collect();
    bytes.extend((0..count).map(|i| (i % 10) as u8));
    bytes
}

/// The values a MAT file's array holds.
pub enum MatValues {
    Double(Vec<f64>),
    UInt8(Vec<u8>),
}

/// A data element: its tag and data, padded to 8 bytes.
fn element(kind: u32, data: &[u8]) -> Vec<u8> {
    let mut bytes = [kind, data.len() as u32].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>();
    bytes.extend_from_slice(data);
    bytes.resize(bytes.len().next_multiple_of(8), 0);
    bytes
}

/// A little-endian MATLAB level-5 file holding the array `name` of size `dims` (column-major
/// `values`), compressed with zlib as MATLAB saves by default when `compressed`.
pub fn mat_file(name: &str, dims: &[i32], values: MatValues, compressed: bool) -> Vec<u8> {
    let (class, data) = match &values {
        MatValues::Double(v) => (6u32, element(9, &v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>())),
        MatValues::UInt8(v) => (9u32, element(2, v)),
    };
    let mut body = element(6, &[class.to_le_bytes(), 0u32.to_le_bytes()].concat());
    body.extend(element(5, &dims.iter().flat_map(|d| d.to_le_bytes()).collect::<Vec<u8>>()));
    body.extend(element(1, name.as_bytes()));
    body.extend(data);
    let mut matrix = element(14, &body);
    if compressed {
        let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&matrix).unwrap();
        let zlib = encoder.finish().unwrap();
        matrix = [15u32.to_le_bytes(), (zlib.len() as u32).to_le_bytes()].concat();
        matrix.extend(zlib);
    }
    let mut header = format!("MATLAB 5.0 MAT-file, written by the sae tests{:116}", "").into_bytes();
    header.truncate(116);
    header.extend([0u8; 8]);
    header.extend(0x0100u16.to_le_bytes());
    header.extend(b"IM");
    header.extend(matrix);
    header
}
