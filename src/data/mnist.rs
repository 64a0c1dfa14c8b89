//! MNIST in its original IDX format, gzipped or not: images (magic 2051, `count × rows × cols`
//! unsigned bytes, row-major) scaled to [0, 1], and labels (magic 2049, bytes 0–9).
//!
//! The header is read first, then exactly the bytes it describes and one more to detect
//! anything after them: a gzip stream is never decompressed beyond what its header implies,
//! and no buffer is sized by the header before the data is seen.

use std::io::Read;
use std::path::Path;

use super::input::InputFile;
use crate::error::{Error, Result};

/// The most data bytes an IDX file may describe: 1 GiB (MNIST's training images take 47 MB),
/// so that a small gzip bomb with a consistent header is refused before it is inflated.
pub const MAX_BYTES: u64 = 1 << 30;

/// The big-endian u32 header fields of the IDX file at `path`, after checking its magic, and
/// the data they describe (`fields` multiplied, one byte each, `what` in messages).
fn read_idx(path: &Path, magic: u32, fields: usize, what: &str) -> Result<(Vec<usize>, Vec<u8>)> {
    let input = InputFile::open(path)?;
    let mut start = [0u8; 2];
    let peeked = (start.len() as u64).min(input.size()) as usize;
    input.read_exact_at(&mut start[..peeked], 0)?;
    // A bounded reader of the file: it is read no further than its size when opened.
    let file = input.file().take(input.size());
    if start == [0x1f, 0x8b] {
        // Concatenated gzip members are one stream, as `gunzip` reads them.
        let stream = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(file));
        read_stream(path, stream, magic, fields, what).map_err(|e| match e {
            Error::Io { source, .. } => Error::bad_file(path, format!("corrupted gzip stream: {source}")),
            other => other,
        })
    } else {
        read_stream(path, std::io::BufReader::new(file), magic, fields, what)
    }
}

fn read_stream(
    path: &Path,
    mut stream: impl Read,
    magic: u32,
    fields: usize,
    what: &str,
) -> Result<(Vec<usize>, Vec<u8>)> {
    let io = |source| Error::Io { path: path.to_path_buf(), source };
    let needed = 4 * (1 + fields);
    let mut header = Vec::with_capacity(needed);
    (&mut stream).take(needed as u64).read_to_end(&mut header).map_err(io)?;
    if header.len() < needed {
        return Err(Error::bad_file(
            path,
            format!("truncated: {} bytes, the IDX header alone takes {needed}", header.len()),
        ));
    }
    let word = |i: usize| u32::from_be_bytes(header[4 * i..4 * i + 4].try_into().expect("4 bytes"));
    if word(0) != magic {
        return Err(Error::bad_file(
            path,
            format!("magic number {} where an IDX file of this kind has {magic}", word(0)),
        ));
    }
    let dims: Vec<usize> = (1..=fields).map(|i| word(i) as usize).collect();
    let shape = dims.iter().map(usize::to_string).collect::<Vec<_>>().join("×");
    let expected = dims
        .iter()
        .try_fold(1usize, |bytes, &d| bytes.checked_mul(d))
        .and_then(|bytes| u64::try_from(bytes).ok())
        .ok_or_else(|| Error::bad_file(path, format!("a header of {shape} overflows")))?;
    if expected > MAX_BYTES {
        return Err(Error::bad_file(
            path,
            format!("a header of {shape} describes {expected} bytes; at most {MAX_BYTES} are read"),
        ));
    }
    // Grown as the data arrives, never sized by the header alone.
    let mut data = Vec::new();
    stream.take(expected + 1).read_to_end(&mut data).map_err(io)?;
    let held = data.len() as u64;
    if held > expected {
        return Err(Error::bad_file(path, format!("more {what} than its header of {shape} describes ({expected})")));
    }
    if held < expected {
        return Err(Error::bad_file(
            path,
            format!("truncated: {held} {what} for a header of {shape} ({expected} expected)"),
        ));
    }
    Ok((dims, data))
}

/// MNIST images: `(values, count, rows·cols)`, one image per row of `values`, each row-major
/// as in the file, pixels scaled to [0, 1]. A file without images, or of images without
/// pixels, is an error.
pub fn read_images(path: &Path) -> Result<(Vec<f64>, usize, usize)> {
    let (dims, data) = read_idx(path, 2051, 3, "pixel bytes")?;
    let (count, rows, cols) = (dims[0], dims[1], dims[2]);
    if count == 0 || rows == 0 || cols == 0 {
        return Err(Error::bad_file(path, format!("{count} images of {rows}×{cols} pixels: nothing to read")));
    }
    Ok((data.iter().map(|&b| b as f64 / 255.0).collect(), count, rows * cols))
}

/// MNIST labels, each 0–9.
pub fn read_labels(path: &Path) -> Result<Vec<u8>> {
    let (_, data) = read_idx(path, 2049, 1, "labels")?;
    if let Some(i) = data.iter().position(|&l| l > 9) {
        return Err(Error::bad_file(path, format!("label {} at index {i} is not a digit", data[i])));
    }
    Ok(data)
}
