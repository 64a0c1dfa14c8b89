//! Natural-image preparation: patches are windows of the images, normalisation maps to
//! [0.1, 0.9] as UFLDL's normalizeData, whitening has UFLDL's variance, and the generator is
//! seeded.

use sae::data::images::{dead_leaves, normalize_for_sigmoid, sample_patches, whiten, Image};

#[test]
fn every_patch_is_a_window_of_one_image() {
    // Pixel (r, c) of image k holds k·10⁶ + r·10³ + c.
    let images: Vec<Image> = (0..3)
        .map(|k| Image {
            side: 20,
            pixels: (0..400).map(|i| (k * 1_000_000 + (i / 20) * 1000 + i % 20) as f64).collect(),
        })
        .collect();
    let patches = sample_patches(&images, 50, 5, 7).unwrap();
    assert_eq!(patches.len(), 50 * 25);
    for patch in patches.chunks_exact(25) {
        let origin = patch[0];
        for r in 0..5 {
            for c in 0..5 {
                assert_eq!(patch[r * 5 + c], origin + (r * 1000 + c) as f64);
            }
        }
        let (row, column) = ((origin as usize % 1_000_000) / 1000, origin as usize % 1000);
        assert!(row + 5 <= 20 && column + 5 <= 20);
    }
    assert_eq!(sample_patches(&images, 50, 5, 7).unwrap(), patches, "seeded");
}

#[test]
fn normalisation_centres_each_patch_and_maps_three_sigma_to_the_sigmoid_range() {
    let mut patches: Vec<f64> = (0..400).map(|i| ((i * 7919) % 101) as f64 / 10.0 + (i / 4) as f64).collect();
    patches[5] = 1e6; // an outlier, truncated at 3σ
    normalize_for_sigmoid(&mut patches, 4);
    assert!(patches.iter().all(|&v| (0.1..=0.9).contains(&v)));
    assert_eq!(patches[5], 0.9);
    // A patch untouched by the truncation keeps mean 0 → 0.5.
    let mean = patches[8..12].iter().sum::<f64>() / 4.0;
    assert!((mean - 0.5).abs() < 1e-12, "{mean}");
}

#[test]
fn whitening_has_zero_mean_and_variance_one_tenth() {
    let white = whiten(&dead_leaves(64, 3));
    let n = white.pixels.len() as f64;
    let mean = white.pixels.iter().sum::<f64>() / n;
    let variance = white.pixels.iter().map(|p| (p - mean).powi(2)).sum::<f64>() / n;
    assert!(mean.abs() < 1e-12 && (variance - 0.1).abs() < 1e-12, "{mean} {variance}");
}

#[test]
fn dead_leaves_pictures_are_seeded_gray_levels() {
    let (a, b) = (dead_leaves(32, 1), dead_leaves(32, 1));
    assert_eq!(a, b);
    assert_ne!(a, dead_leaves(32, 2));
    assert!(a.pixels.iter().all(|p| (0.0..=1.0).contains(p)));
}
