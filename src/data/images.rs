//! Natural images and the UFLDL patch preparation (SPEC §5): gray images, their whitening
//! (Olshausen & Field's filter, as the UFLDL `IMAGES` were made), random patches, and
//! `normalizeData`.
//!
//! Also a generator of natural-image-like pictures that needs no file: the dead-leaves model
//! (occluding shapes of random gray levels with a power-law size distribution, which makes
//! its statistics scale-invariant as those of photographs are), whitened the same way. A
//! sparse autoencoder learns oriented, localized edge detectors from its patches as it does
//! from photographs.

use std::f64::consts::PI;

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rustfft::num_complex::Complex;
use rustfft::FftPlanner;

use crate::error::{Error, Result};

/// A square gray image, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub side: usize,
    pub pixels: Vec<f64>,
}

impl Image {
    pub fn at(&self, row: usize, column: usize) -> f64 {
        self.pixels[row * self.side + column]
    }
}

/// A dead-leaves picture: shapes (disks and rotated rectangles) of uniform random gray level
/// in [0, 1], radii `r ∈ [1.5, side/5]` with density `∝ r⁻³`, painted back to front until
/// the picture is covered many times over.
pub fn dead_leaves(side: usize, seed: u64) -> Image {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut pixels = vec![rng.gen::<f64>(); side * side];
    let (r_min, r_max) = (4.0f64, (side as f64 / 3.0).max(5.0));
    let (a, b) = (r_min.powi(-2), r_max.powi(-2));
    for _ in 0..side * side / 8 {
        // Inverse CDF of the density ∝ r⁻³ on [r_min, r_max].
        let r = (a - rng.gen::<f64>() * (a - b)).powf(-0.5);
        let (cy, cx) = (rng.gen::<f64>() * side as f64, rng.gen::<f64>() * side as f64);
        let gray = rng.gen::<f64>();
        let rectangle = rng.gen::<bool>();
        let angle = rng.gen::<f64>() * PI;
        let aspect = 1.0 + 5.0 * rng.gen::<f64>();
        let (cos, sin) = (angle.cos(), angle.sin());
        let inside = |dy: f64, dx: f64| {
            if rectangle {
                let (u, v) = (dx * cos + dy * sin, -dx * sin + dy * cos);
                u.abs() <= r && v.abs() * aspect <= r
            } else {
                dy * dy + dx * dx <= r * r
            }
        };
        let clip = |v: f64| (v.max(0.0) as usize).min(side);
        for y in clip(cy - r)..clip(cy + r + 1.0) {
            for x in clip(cx - r)..clip(cx + r + 1.0) {
                if inside(y as f64 + 0.5 - cy, x as f64 + 0.5 - cx) {
                    pixels[y * side + x] = gray;
                }
            }
        }
    }
    Image { side, pixels }
}

/// The whitened image: mean removed, spectrum multiplied by `f e^{−(f/f0)⁴}` (`f` the radial
/// frequency in cycles per image, `f0 = 0.4 · side`), scaled to variance 0.1 — the filter and
/// scale of Olshausen & Field's and UFLDL's `IMAGES`.
pub fn whiten(image: &Image) -> Image {
    let side = image.side;
    let mean = image.pixels.iter().sum::<f64>() / image.pixels.len() as f64;
    let mut spectrum: Vec<Complex<f64>> = image.pixels.iter().map(|&p| Complex::new(p - mean, 0.0)).collect();
    let mut planner = FftPlanner::new();
    fft_2d(&mut spectrum, side, &*planner.plan_fft_forward(side));
    let f0 = 0.4 * side as f64;
    let frequency = |k: usize| if k <= side / 2 { k as f64 } else { k as f64 - side as f64 };
    for (index, value) in spectrum.iter_mut().enumerate() {
        let f = frequency(index / side).hypot(frequency(index % side));
        *value *= f * (-(f / f0).powi(4)).exp();
    }
    fft_2d(&mut spectrum, side, &*planner.plan_fft_inverse(side));
    let mut pixels: Vec<f64> = spectrum.iter().map(|c| c.re).collect();
    let mean = pixels.iter().sum::<f64>() / pixels.len() as f64;
    let std = (pixels.iter().map(|p| (p - mean).powi(2)).sum::<f64>() / pixels.len() as f64).sqrt();
    let scale = if std > 0.0 { 0.1f64.sqrt() / std } else { 0.0 };
    pixels.iter_mut().for_each(|p| *p *= scale);
    Image { side, pixels }
}

/// The 2-D transform of a `side×side` row-major array by `fft` along rows, then columns
/// (unnormalised; the scale is irrelevant to whitening, which rescales).
fn fft_2d(values: &mut [Complex<f64>], side: usize, fft: &dyn rustfft::Fft<f64>) {
    fft.process(values);
    transpose(values, side);
    fft.process(values);
    transpose(values, side);
}

fn transpose(values: &mut [Complex<f64>], side: usize) {
    for i in 0..side {
        for j in i + 1..side {
            values.swap(i * side + j, j * side + i);
        }
    }
}

/// `image` convolved with a Gaussian of standard deviation `sigma` pixels (separable,
/// truncated at 3σ, edges clamped): the optical blur of a camera, without which the
/// aliased edges of painted shapes would dominate the whitened spectrum.
pub fn blur(image: &Image, sigma: f64) -> Image {
    let side = image.side;
    let radius = (3.0 * sigma).ceil() as isize;
    let weights: Vec<f64> = (-radius..=radius).map(|k| (-(k * k) as f64 / (2.0 * sigma * sigma)).exp()).collect();
    let total: f64 = weights.iter().sum();
    let clamp = |v: isize| v.clamp(0, side as isize - 1) as usize;
    let mut rows = vec![0.0; side * side];
    for y in 0..side {
        for x in 0..side {
            rows[y * side + x] = (-radius..=radius)
                .zip(&weights)
                .map(|(k, w)| w * image.pixels[y * side + clamp(x as isize + k)])
                .sum::<f64>()
                / total;
        }
    }
    let mut pixels = vec![0.0; side * side];
    for y in 0..side {
        for x in 0..side {
            pixels[y * side + x] =
                (-radius..=radius).zip(&weights).map(|(k, w)| w * rows[clamp(y as isize + k) * side + x]).sum::<f64>()
                    / total;
        }
    }
    Image { side, pixels }
}

/// `count` whitened dead-leaves pictures of `side×side` pixels, blurred by σ = 1 pixel
/// before whitening.
pub fn generated_natural_images(count: usize, side: usize, seed: u64) -> Vec<Image> {
    (0..count as u64).map(|i| whiten(&blur(&dead_leaves(side, seed.wrapping_add(i)), 1.0))).collect()
}

/// UFLDL's `sampleIMAGES`: `count` patches of `patch×patch` pixels, each from a random image
/// at a random position, one patch per row of the result (`count × patch²`, each patch
/// row-major). Fails when there are no images, or when one is smaller than the patch or does
/// not hold `side²` pixels.
pub fn sample_patches(images: &[Image], count: usize, patch: usize, seed: u64) -> Result<Vec<f64>> {
    if images.is_empty() {
        return Err(Error::EmptyData { what: "no images to sample patches from" });
    }
    if let Some(image) = images.iter().find(|i| i.side < patch || i.pixels.len() != i.side * i.side) {
        return Err(Error::shape_mismatch(
            "image",
            format!("side × side pixels, side at least {patch} (the patch's)"),
            format!("{} pixels for side {}", image.pixels.len(), image.side),
        ));
    }
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut patches = Vec::with_capacity(count * patch * patch);
    for _ in 0..count {
        let image = &images[rng.gen_range(0..images.len())];
        let (top, left) = (rng.gen_range(0..=image.side - patch), rng.gen_range(0..=image.side - patch));
        for r in 0..patch {
            patches.extend_from_slice(&image.pixels[(top + r) * image.side + left..][..patch]);
        }
    }
    Ok(patches)
}

/// UFLDL's `normalizeData` for a sigmoid output layer, on `m` patches of `n` values (one per
/// row): subtract each patch's mean, truncate to ±3 standard deviations of all values, and
/// map [−1, 1] to [0.1, 0.9].
pub fn normalize_for_sigmoid(patches: &mut [f64], n: usize) {
    for patch in patches.chunks_exact_mut(n) {
        let mean = patch.iter().sum::<f64>() / n as f64;
        patch.iter_mut().for_each(|v| *v -= mean);
    }
    let count = patches.len() as f64;
    let mean = patches.iter().sum::<f64>() / count;
    // MATLAB's std: the n − 1 normalisation.
    let std = (patches.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (count - 1.0)).sqrt();
    let bound = 3.0 * std;
    for v in patches.iter_mut() {
        let truncated = if bound > 0.0 { v.clamp(-bound, bound) / bound } else { 0.0 };
        *v = (truncated + 1.0) * 0.4 + 0.1;
    }
}

/// The embedded default data set: 10 000 8×8 patches of 10 whitened dead-leaves pictures of
/// 256×256 pixels, normalised as UFLDL's `sampleIMAGES` does.
pub fn embedded_patches(seed: u64) -> (Vec<f64>, usize, usize) {
    const PATCHES: usize = 10_000;
    const SIDE: usize = 8;
    let images = generated_natural_images(10, 256, seed);
    let mut patches = sample_patches(&images, PATCHES, SIDE, seed).expect("the generated images exceed the patch");
    normalize_for_sigmoid(&mut patches, SIDE * SIDE);
    (patches, PATCHES, SIDE * SIDE)
}
