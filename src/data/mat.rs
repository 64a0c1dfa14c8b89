//! MATLAB level-5 `.mat` files (through the `matfile` crate, which reads compressed and
//! uncompressed numeric arrays): stacks of gray images such as UFLDL's `IMAGES.mat` (double,
//! 512×512×10) and `IMAGES_RAW.mat` (uint8, zlib-compressed).

use std::path::Path;

use matfile::{MatFile, NumericData};

use super::images::Image;
use crate::error::{Error, Result};

/// The images of the `side×side×count` array `variable` (the file's only array when `None`):
/// doubles as they are, unsigned bytes scaled by 1/255. MATLAB stores arrays column-major,
/// so image `k`'s pixel (row `r`, column `c`) is element `r + side·c + side²·k`.
pub fn read_images(path: &Path, variable: Option<&str>) -> Result<Vec<Image>> {
    let file = std::fs::File::open(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    let mat = MatFile::parse(std::io::BufReader::new(file))
        .map_err(|e| Error::bad_file(path, format!("not a readable MATLAB level-5 file: {e}")))?;
    let array = match variable {
        Some(name) => {
            mat.find_by_name(name).ok_or_else(|| Error::bad_file(path, format!("no array named {name:?}")))?
        }
        None => match &mat.arrays()[..] {
            [only] => only,
            arrays => {
                let names: Vec<&str> = arrays.iter().map(|a| a.name()).collect();
                return Err(Error::bad_file(
                    path,
                    format!("{} numeric arrays ({names:?}): name the one to read", arrays.len()),
                ));
            }
        },
    };
    let size = array.size();
    let (side, count) = match size[..] {
        [rows, cols] if rows == cols => (rows, 1),
        [rows, cols, count] if rows == cols => (rows, count),
        _ => {
            return Err(Error::bad_file(
                path,
                format!("{} has size {size:?}: expected side×side×count images", array.name()),
            ))
        }
    };
    let values: Vec<f64> = match array.data() {
        NumericData::Double { real, imag: None } => real.clone(),
        NumericData::Single { real, imag: None } => real.iter().map(|&v| v as f64).collect(),
        NumericData::UInt8 { real, imag: None } => real.iter().map(|&v| v as f64 / 255.0).collect(),
        _ => {
            return Err(Error::bad_file(path, format!("{} is not a real double, single or uint8 array", array.name())))
        }
    };
    if values.len() != side * side * count {
        return Err(Error::bad_file(path, format!("{} holds {} values for size {size:?}", array.name(), values.len())));
    }
    if let Some(index) = values.iter().position(|v| !v.is_finite()) {
        return Err(Error::bad_file(path, format!("{} has a non-finite value at element {index}", array.name())));
    }
    Ok((0..count)
        .map(|k| {
            let plane = &values[k * side * side..(k + 1) * side * side];
            let pixels = (0..side * side).map(|i| plane[(i % side) * side + i / side]).collect();
            Image { side, pixels }
        })
        .collect())
}
