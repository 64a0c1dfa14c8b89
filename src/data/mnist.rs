//! MNIST in its original IDX format, gzipped or not: images (magic 2051, `count × rows × cols`
//! unsigned bytes, row-major) scaled to [0, 1], and labels (magic 2049, bytes 0–9).

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// The whole file, gunzipped when it starts with the gzip magic.
fn contents(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| Error::bad_file(path, format!("corrupted gzip stream: {e}")))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// The big-endian u32 header fields after checking the magic; the data that follows.
fn header<'a>(path: &Path, bytes: &'a [u8], magic: u32, fields: usize) -> Result<(Vec<usize>, &'a [u8])> {
    let needed = 4 * (1 + fields);
    if bytes.len() < needed {
        return Err(Error::bad_file(
            path,
            format!("truncated: {} bytes, the IDX header alone takes {needed}", bytes.len()),
        ));
    }
    let word = |i: usize| u32::from_be_bytes(bytes[4 * i..4 * i + 4].try_into().expect("4 bytes"));
    if word(0) != magic {
        return Err(Error::bad_file(
            path,
            format!("magic number {} where an IDX file of this kind has {magic}", word(0)),
        ));
    }
    Ok(((1..=fields).map(|i| word(i) as usize).collect(), &bytes[needed..]))
}

/// MNIST images: `(values, count, rows·cols)`, one image per row of `values`, each row-major
/// as in the file, pixels scaled to [0, 1].
pub fn read_images(path: &Path) -> Result<(Vec<f64>, usize, usize)> {
    let bytes = contents(path)?;
    let (dims, data) = header(path, &bytes, 2051, 3)?;
    let (count, pixels) = (dims[0], dims[1] * dims[2]);
    if data.len() != count * pixels {
        return Err(Error::bad_file(
            path,
            format!(
                "{} bytes of pixels for {count} images of {}×{} ({} expected)",
                data.len(),
                dims[1],
                dims[2],
                count * pixels
            ),
        ));
    }
    Ok((data.iter().map(|&b| b as f64 / 255.0).collect(), count, pixels))
}

/// MNIST labels, each 0–9.
pub fn read_labels(path: &Path) -> Result<Vec<u8>> {
    let bytes = contents(path)?;
    let (dims, data) = header(path, &bytes, 2049, 1)?;
    if data.len() != dims[0] {
        return Err(Error::bad_file(path, format!("{} labels for a header of {}", data.len(), dims[0])));
    }
    if let Some(i) = data.iter().position(|&l| l > 9) {
        return Err(Error::bad_file(path, format!("label {} at index {i} is not a digit", data[i])));
    }
    Ok(data.to_vec())
}
