//! Writing safetensors files straight into the crate's atomic writer.
//!
//! The `safetensors` crate can only write through a temporary file of its own (a second layer
//! beside ours, with its own name and mode, left behind by a killed run) or into one buffer of
//! the whole file (a second copy of a checkpoint's history in memory). The format is small —
//! an 8-byte little-endian header length, a JSON header of every tensor's dtype, shape and
//! byte range plus string metadata, padded with spaces to 8 bytes, then the tensors' bytes —
//! so it is written here, a tensor at a time; the tests read every file back with the
//! `safetensors` crate.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;

use safetensors::Dtype;

use crate::error::Result;

/// Writes a tensor's little-endian bytes.
pub(crate) type WriteBytes<'a> = Box<dyn Fn(&mut dyn Write) -> io::Result<()> + 'a>;

/// One tensor to write: its name, dtype, shape, and how to write its little-endian bytes.
pub(crate) struct TensorOut<'a> {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub bytes: WriteBytes<'a>,
}

impl TensorOut<'_> {
    fn byte_len(&self) -> usize {
        self.shape.iter().product::<usize>() * self.dtype.bitsize() / 8
    }
}

/// Writes `tensors` and `metadata` to `path` atomically. Tensors are laid out by decreasing
/// element size, then by name, so every tensor is aligned to its element size.
pub(crate) fn save(path: &Path, mut tensors: Vec<TensorOut<'_>>, metadata: BTreeMap<String, String>) -> Result<()> {
    tensors.sort_by(|a, b| b.dtype.bitsize().cmp(&a.dtype.bitsize()).then_with(|| a.name.cmp(&b.name)));
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::to_value(&metadata).expect("strings serialise"));
    let mut offset = 0;
    for tensor in &tensors {
        let end = offset + tensor.byte_len();
        header.insert(
            tensor.name.clone(),
            serde_json::json!({ "dtype": tensor.dtype, "shape": tensor.shape, "data_offsets": [offset, end] }),
        );
        offset = end;
    }
    let mut header = serde_json::to_vec(&header).expect("a JSON map serialises");
    header.resize(header.len().next_multiple_of(8), b' ');
    crate::files::write_with(path, |out| {
        let mut write = || -> io::Result<()> {
            out.write_all(&(header.len() as u64).to_le_bytes())?;
            out.write_all(&header)?;
            for tensor in &tensors {
                let mut counted = Counted { inner: &mut *out, bytes: 0 };
                (tensor.bytes)(&mut counted)?;
                if counted.bytes != tensor.byte_len() {
                    return Err(io::Error::other(format!(
                        "tensor {} wrote {} bytes for shape {:?}",
                        tensor.name, counted.bytes, tensor.shape
                    )));
                }
            }
            Ok(())
        };
        write().map_err(|e| e.to_string())
    })
}

/// A writer that counts the bytes it passes on.
struct Counted<W> {
    inner: W,
    bytes: usize,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.bytes += written;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
