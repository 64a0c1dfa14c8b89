//! Pictures of what a model learned: every hidden unit's input image as one tile of a grid,
//! as UFLDL's `display_network`, written as a PNG.
//!
//! The input that maximally activates hidden unit `i` under a norm bound is
//! `x_j = W1_ij / ‖W1_i‖` (UFLDL's notes); each tile shows it scaled so that its largest
//! magnitude is full contrast, mid-gray at 0. Inputs of `n = s²` values are `s×s` gray tiles,
//! `n = 3s²` are RGB tiles (the red plane first, then green, then blue); pixel `j` of a plane
//! is at row `j / s`, column `j % s` (numpy's row-major flattening), or at row `j % s`,
//! column `j / s` with [`PixelOrder::ColumnMajor`] (MATLAB's).

use std::io::Write;
use std::path::Path;

use super::Parameters;
use crate::error::{Error, Result};
use crate::gemm::MatRef;
use crate::real::Real;

/// How an example's values map to the pixels of its image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PixelOrder {
    /// Value `j` is pixel `(j / s, j % s)`.
    #[default]
    RowMajor,
    /// Value `j` is pixel `(j % s, j / s)`.
    ColumnMajor,
}

impl PixelOrder {
    pub const ALL: [PixelOrder; 2] = [PixelOrder::RowMajor, PixelOrder::ColumnMajor];

    /// `"row-major"` or `"column-major"`, as the command line spells it.
    pub fn name(self) -> &'static str {
        match self {
            PixelOrder::RowMajor => "row-major",
            PixelOrder::ColumnMajor => "column-major",
        }
    }

    /// The order in a line, for help texts.
    pub fn summary(self) -> &'static str {
        match self {
            PixelOrder::RowMajor => "value j is pixel (j / s, j % s): numpy's and C's order",
            PixelOrder::ColumnMajor => "value j is pixel (j % s, j / s): MATLAB's order",
        }
    }
}

/// An 8-bit image, gray or RGB.
#[derive(Debug, Clone, PartialEq)]
pub struct Picture {
    pub width: usize,
    pub height: usize,
    /// 1 (gray) or 3 (RGB).
    pub channels: usize,
    /// Row after row, `channels` bytes per pixel.
    pub pixels: Vec<u8>,
}

/// How tiles are laid out: side `s` pixels, `channels` planes, `scale` screen pixels per
/// image pixel, one image pixel of black border around each tile.
#[derive(Debug, Clone, Copy)]
pub struct TileGrid {
    pub side: usize,
    pub channels: usize,
    pub scale: usize,
    pub order: PixelOrder,
}

impl TileGrid {
    /// The grid for images of `n` values: `s×s` gray when `n = s²`, RGB when `n = 3s²`.
    pub fn for_inputs(n: usize, order: PixelOrder) -> Result<Self> {
        let square = |v: usize| {
            let s = (v as f64).sqrt().round() as usize;
            (s * s == v && s > 0).then_some(s)
        };
        let rgb_side = if n.is_multiple_of(3) { square(n / 3) } else { None };
        let (side, channels) = match (square(n), rgb_side) {
            (Some(s), _) => (s, 1),
            (None, Some(s)) => (s, 3),
            (None, None) => {
                return Err(Error::shape_mismatch(
                    "input size for a picture of the features",
                    "a square (s² gray pixels) or three squares (3s² RGB pixels)",
                    n,
                ))
            }
        };
        // Small tiles are magnified so that each is about 48 screen pixels wide.
        let scale = 48usize.div_ceil(side).max(1);
        Ok(TileGrid { side, channels, scale, order })
    }

    /// Draws `tiles` (each `channels · s²` values in [−1, 1]) in a grid of `⌈√count⌉`
    /// columns.
    pub fn draw(&self, tiles: &[Vec<f64>]) -> Picture {
        let TileGrid { side, channels, scale, order } = *self;
        let columns = (tiles.len() as f64).sqrt().ceil().max(1.0) as usize;
        let rows = tiles.len().div_ceil(columns).max(1);
        let cell = side + 1;
        let (width, height) = ((columns * cell + 1) * scale, (rows * cell + 1) * scale);
        let mut pixels = vec![0u8; width * height * channels];
        for (t, tile) in tiles.iter().enumerate() {
            let (top, left) = ((t / columns) * cell + 1, (t % columns) * cell + 1);
            for j in 0..side * side {
                let (r, c) = match order {
                    PixelOrder::RowMajor => (j / side, j % side),
                    PixelOrder::ColumnMajor => (j % side, j / side),
                };
                for channel in 0..channels {
                    let value = tile[channel * side * side + j];
                    let byte = (127.5 * (value.clamp(-1.0, 1.0) + 1.0)).round() as u8;
                    for dy in 0..scale {
                        let y = (top + r) * scale + dy;
                        let row = (y * width + (left + c) * scale) * channels;
                        for dx in 0..scale {
                            pixels[row + dx * channels + channel] = byte;
                        }
                    }
                }
            }
        }
        Picture { width, height, channels, pixels }
    }
}

/// Tile `i`: `x_j = W1_ij / ‖W1_i‖`, then divided by `max_j |x_j|` to fill [−1, 1].
pub fn feature_tiles<T: Real>(parameters: &Parameters<T>) -> Vec<Vec<f64>> {
    weight_tiles(parameters.w1())
}

/// [`feature_tiles`] of any first-layer weight matrix `W` (`h×n`): a tile per row.
pub fn weight_tiles<T: Real>(w1: MatRef<'_, T>) -> Vec<Vec<f64>> {
    (0..w1.rows())
        .map(|i| {
            let row: Vec<f64> = (0..w1.cols()).map(|j| w1.get(i, j).as_f64()).collect();
            let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
            let bounded: Vec<f64> = row.iter().map(|v| if norm > 0.0 { v / norm } else { 0.0 }).collect();
            let peak = bounded.iter().fold(0.0f64, |p, v| p.max(v.abs()));
            bounded.iter().map(|v| if peak > 0.0 { v / peak } else { 0.0 }).collect()
        })
        .collect()
}

/// The features of a model as a picture (see the module documentation).
pub fn features_picture<T: Real>(parameters: &Parameters<T>, order: PixelOrder) -> Result<Picture> {
    let grid = TileGrid::for_inputs(parameters.w1().cols(), order)?;
    Ok(grid.draw(&feature_tiles(parameters)))
}

impl Picture {
    /// Writes the picture as a PNG file, atomically.
    pub fn save_png(&self, path: &Path) -> Result<()> {
        crate::files::write_with(path, |out| {
            let mut encoder = png::Encoder::new(out.by_ref(), self.width as u32, self.height as u32);
            encoder.set_color(if self.channels == 3 { png::ColorType::Rgb } else { png::ColorType::Grayscale });
            encoder.set_depth(png::BitDepth::Eight);
            let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
            writer.write_image_data(&self.pixels).map_err(|e| e.to_string())?;
            writer.finish().map_err(|e| e.to_string())
        })
    }
}
