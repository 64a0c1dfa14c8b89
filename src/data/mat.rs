//! MATLAB level-5 `.mat` files: stacks of gray images such as UFLDL's `IMAGES.mat` (double,
//! 512×512×10) and `IMAGES_RAW.mat` (uint8, zlib-compressed).
//!
//! Read here rather than by a general MAT-file parser so that every size the file claims is
//! checked against the bytes it holds before anything is allocated: files, and their contents
//! once decompressed, of more than [`MAX_BYTES`] are refused, and so are images of more than
//! [`MAX_BYTES`] as f64. Numeric arrays of any class are listed; cells, structures, character
//! and sparse arrays are skipped.

use std::borrow::Cow;
use std::io::Read;
use std::path::Path;

use super::images::Image;
use super::input::InputFile;
use crate::error::{Error, Result};

/// The most bytes read from a file, decompressed from it, or produced as f64 pixels: 1 GiB,
/// 128 Mi pixels (UFLDL's `IMAGES.mat` has 2.6 Mi).
pub const MAX_BYTES: u64 = 1 << 30;

/// Data types of data elements (MAT-file format, table 1-1).
const MI_INT8: u32 = 1;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;
/// Array classes (MAT-file format, table 1-3) that are read as images.
const MX_DOUBLE: u32 = 6;
const MX_SINGLE: u32 = 7;
const MX_UINT8: u32 = 9;
/// The numeric array classes, `mxDOUBLE_CLASS` to `mxUINT64_CLASS`.
const NUMERIC_CLASSES: std::ops::RangeInclusive<u32> = 6..=15;
/// The array flags' complex bit.
const COMPLEX: u32 = 0x0800;

/// One numeric array of the file, its values not yet decoded.
struct Array<'a> {
    name: String,
    class: u32,
    complex: bool,
    dims: Vec<usize>,
    /// The real part's data type and bytes.
    kind: u32,
    data: &'a [u8],
}

/// Parses a file's data elements, naming it in every error.
#[derive(Clone, Copy)]
struct Reader<'p> {
    path: &'p Path,
    little_endian: bool,
}

impl Reader<'_> {
    fn bad(&self, reason: impl Into<String>) -> Error {
        Error::bad_file(self.path, reason)
    }

    fn u32(&self, bytes: &[u8]) -> u32 {
        let word: [u8; 4] = bytes[..4].try_into().expect("4 bytes");
        if self.little_endian {
            u32::from_le_bytes(word)
        } else {
            u32::from_be_bytes(word)
        }
    }

    /// The data element at the start of `bytes`: its type, its data, and what follows it
    /// (after the padding to 8 bytes that uncompressed elements carry).
    fn element<'b>(&self, bytes: &'b [u8]) -> Result<(u32, &'b [u8], &'b [u8])> {
        let truncated = || self.bad("truncated: a data element runs past the end of the file");
        let first = self.u32(bytes.get(..4).ok_or_else(truncated)?);
        if first >> 16 != 0 {
            // The small format: type and size (at most 4) in one word, the data in the next.
            let size = (first >> 16) as usize;
            if size > 4 {
                return Err(self.bad(format!("a small data element of {size} bytes (at most 4)")));
            }
            let data = bytes.get(4..4 + size).ok_or_else(truncated)?;
            return Ok((first & 0xffff, data, bytes.get(8..).unwrap_or_default()));
        }
        let size = self.u32(bytes.get(4..8).ok_or_else(truncated)?) as usize;
        let data = bytes.get(8..8 + size).ok_or_else(truncated)?;
        let padded = if first == MI_COMPRESSED { 8 + size } else { (8 + size).next_multiple_of(8) };
        Ok((first, data, bytes.get(padded..).unwrap_or_default()))
    }

    /// The element compressed in `data`, decompressed no further than the size its tag
    /// claims, which must fit in what remains of `budget`.
    fn inflate(&self, data: &[u8], budget: &mut u64) -> Result<Vec<u8>> {
        let corrupted = |e: std::io::Error| self.bad(format!("corrupted compressed data element: {e}"));
        let mut stream = flate2::read::ZlibDecoder::new(data);
        let mut tag = [0u8; 8];
        stream.read_exact(&mut tag).map_err(corrupted)?;
        let first = self.u32(&tag);
        let size = if first >> 16 != 0 { 0 } else { self.u32(&tag[4..]) as u64 };
        if 8 + size > *budget {
            return Err(self.bad(format!(
                "a compressed element of {} bytes: the file's contents would exceed the {MAX_BYTES} bytes read",
                8 + size
            )));
        }
        *budget -= 8 + size;
        let mut element = tag.to_vec();
        stream.take(size).read_to_end(&mut element).map_err(corrupted)?;
        if (element.len() as u64) < 8 + size {
            return Err(self.bad("truncated: a compressed data element holds less than its tag claims"));
        }
        Ok(element)
    }

    /// The numeric array of a matrix element (`None` for other classes).
    fn array<'b>(&self, element: &'b [u8]) -> Result<Option<Array<'b>>> {
        let (kind, body, _) = self.element(element)?;
        if kind != MI_MATRIX {
            return Ok(None);
        }
        let (kind, flags, rest) = self.element(body)?;
        if kind != MI_UINT32 || flags.len() != 8 {
            return Err(self.bad("an array without its array flags"));
        }
        let (class, complex) = (self.u32(flags) & 0xff, self.u32(flags) & COMPLEX != 0);
        if !NUMERIC_CLASSES.contains(&class) {
            return Ok(None);
        }
        let (kind, dims, rest) = self.element(rest)?;
        if kind != MI_INT32 || dims.len() % 4 != 0 || dims.len() < 8 {
            return Err(self.bad("an array without its dimensions"));
        }
        let dims: Vec<usize> = dims
            .chunks_exact(4)
            .map(|d| usize::try_from(self.u32(d) as i32))
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| self.bad("an array of negative dimensions"))?;
        let (kind, name, rest) = self.element(rest)?;
        if kind != MI_INT8 {
            return Err(self.bad("an array without its name"));
        }
        let (kind, data, _) = self.element(rest)?;
        let name = String::from_utf8_lossy(name).into_owned();
        Ok(Some(Array { name, class, complex, dims, kind, data }))
    }
}

/// The values of a numeric element of type `kind` as f64, `None` for a non-numeric type.
/// The bytes of one value of data type `kind`; `None` for a type that is not a number.
fn element_size(kind: u32) -> Option<usize> {
    match kind {
        1 | 2 => Some(1),
        3 | 4 => Some(2),
        5..=7 => Some(4),
        9 | 12 | 13 => Some(8),
        _ => None,
    }
}

fn decode(kind: u32, data: &[u8], little_endian: bool) -> Option<Vec<f64>> {
    fn word<const N: usize>(bytes: &[u8], little_endian: bool) -> [u8; N] {
        let mut word: [u8; N] = bytes.try_into().expect("N bytes");
        if !little_endian {
            word.reverse();
        }
        word
    }
    let size = element_size(kind)?;
    let value = |b: &[u8]| match kind {
        1 => b[0] as i8 as f64,
        2 => b[0] as f64,
        3 => i16::from_le_bytes(word(b, little_endian)) as f64,
        4 => u16::from_le_bytes(word(b, little_endian)) as f64,
        5 => i32::from_le_bytes(word(b, little_endian)) as f64,
        6 => u32::from_le_bytes(word(b, little_endian)) as f64,
        7 => f32::from_le_bytes(word(b, little_endian)) as f64,
        9 => f64::from_le_bytes(word(b, little_endian)),
        12 => i64::from_le_bytes(word(b, little_endian)) as f64,
        _ => u64::from_le_bytes(word(b, little_endian)) as f64,
    };
    data.len().is_multiple_of(size).then(|| data.chunks_exact(size).map(value).collect())
}

/// The images of the `side×side×count` array `variable` (the file's only numeric array when
/// `None`): doubles and singles as they are, unsigned bytes scaled by 1/255. MATLAB stores
/// arrays column-major, so image `k`'s pixel (row `r`, column `c`) is element
/// `r + side·c + side²·k`. An empty array is an error.
pub fn read_images(path: &Path, variable: Option<&str>) -> Result<Vec<Image>> {
    let input = InputFile::open(path)?;
    if input.size() > MAX_BYTES {
        return Err(Error::bad_file(path, format!("{} bytes, more than the {MAX_BYTES} read", input.size())));
    }
    let bytes = input.read_all()?;
    let not_mat = || Error::bad_file(path, "not a MATLAB level-5 file: no 128-byte header of version 0x0100");
    let little_endian = match bytes.get(126..128).ok_or_else(not_mat)? {
        b"IM" => true,
        b"MI" => false,
        _ => return Err(not_mat()),
    };
    let reader = Reader { path, little_endian };
    let version = bytes[124..126].try_into().expect("2 bytes");
    let version = if little_endian { u16::from_le_bytes(version) } else { u16::from_be_bytes(version) };
    if version != 0x0100 {
        return Err(not_mat());
    }

    let mut elements = Vec::new();
    let mut budget = MAX_BYTES - bytes.len() as u64;
    let mut rest = &bytes[128..];
    while !rest.is_empty() {
        let (kind, data, next) = reader.element(rest)?;
        match kind {
            MI_COMPRESSED => elements.push(Cow::Owned(reader.inflate(data, &mut budget)?)),
            MI_MATRIX => elements.push(Cow::Borrowed(&rest[..rest.len() - next.len()])),
            _ => {}
        }
        rest = next;
    }
    let mut arrays = Vec::new();
    for element in &elements {
        arrays.extend(reader.array(element)?);
    }

    let array = match variable {
        Some(name) => arrays
            .into_iter()
            .find(|a| a.name == name)
            .ok_or_else(|| Error::bad_file(path, format!("no array named {name:?}")))?,
        None if arrays.len() == 1 => arrays.remove(0),
        None => {
            let names: Vec<&str> = arrays.iter().map(|a| a.name.as_str()).collect();
            return Err(Error::bad_file(
                path,
                format!("{} numeric arrays ({names:?}): name the one to read", arrays.len()),
            ));
        }
    };
    let Array { name, class, complex, dims, kind, data } = array;
    let (side, count) = match dims[..] {
        [rows, cols] if rows == cols => (rows, 1),
        [rows, cols, count] if rows == cols => (rows, count),
        _ => return Err(Error::bad_file(path, format!("{name} has size {dims:?}: expected side×side×count images"))),
    };
    let divisor = match class {
        MX_DOUBLE | MX_SINGLE if !complex => 1.0,
        MX_UINT8 if !complex => 255.0,
        _ => return Err(Error::bad_file(path, format!("{name} is not a real double, single or uint8 array"))),
    };
    let pixels = side.checked_mul(side).and_then(|p| p.checked_mul(count)).filter(|&p| p as u64 <= MAX_BYTES / 8);
    let Some(pixels) = pixels.filter(|&p| p > 0) else {
        return Err(Error::bad_file(
            path,
            format!("{name} has size {dims:?}: between 1 and {} pixels are read", MAX_BYTES / 8),
        ));
    };
    let not_numbers = || Error::bad_file(path, format!("{name} holds data of type {kind}, not numbers"));
    // Checked before decoding, which makes 8 bytes of every value.
    let held = data.len() / element_size(kind).ok_or_else(not_numbers)?;
    if held != pixels {
        return Err(Error::bad_file(path, format!("{name} holds {held} values for size {dims:?}")));
    }
    let values = decode(kind, data, little_endian).ok_or_else(not_numbers)?;
    if let Some(index) = values.iter().position(|v| !v.is_finite()) {
        return Err(Error::bad_file(path, format!("{name} has a non-finite value at element {index}")));
    }
    Ok(values
        .chunks_exact(side * side)
        .map(|plane| {
            let pixels = (0..side * side).map(|i| plane[(i % side) * side + i / side] / divisor).collect();
            Image { side, pixels }
        })
        .collect())
}
