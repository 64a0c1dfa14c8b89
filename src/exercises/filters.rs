//! A measure of what the natural-image exercise should learn — "oriented, localized edge
//! detectors" — that random weights fail, for tests and for the exercise's report.
//!
//! For a filter `w` on an `s×s` patch (one row of `W1`):
//!
//! - **orientation**: the anisotropy of its power spectrum, `(λ1 − λ2) / (λ1 + λ2)` with
//!   `λ1 ≥ λ2` the eigenvalues of `Σ_f |ŵ(f)|² f fᵀ` over the nonzero frequencies `f` of the
//!   2-D DFT. 1 for a pure grating, near 0 for white noise, whose power is spread evenly over
//!   all directions;
//! - **localization**: the largest fraction of the filter's energy `Σ w²` inside any
//!   `s/2 × s/2` window of the patch (a quarter of its area): about 0.4 for white noise, near
//!   1 for a filter confined to a small region.

use std::f64::consts::PI;

/// The two measures of one filter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FilterShape {
    pub orientation: f64,
    pub localization: f64,
}

/// Measures the filter `w` (`side²` values, row-major).
pub fn filter_shape(w: &[f64], side: usize) -> FilterShape {
    assert_eq!(w.len(), side * side);
    let (mut xx, mut xy, mut yy) = (0.0, 0.0, 0.0);
    let signed = |k: usize| if k <= side / 2 { k as f64 } else { k as f64 - side as f64 };
    for u in 0..side {
        for v in 0..side {
            if u == 0 && v == 0 {
                continue;
            }
            let (mut re, mut im) = (0.0, 0.0);
            for r in 0..side {
                for c in 0..side {
                    let phase = -2.0 * PI * (u * r + v * c) as f64 / side as f64;
                    re += w[r * side + c] * phase.cos();
                    im += w[r * side + c] * phase.sin();
                }
            }
            let power = re * re + im * im;
            let (fy, fx) = (signed(u), signed(v));
            xx += power * fx * fx;
            xy += power * fx * fy;
            yy += power * fy * fy;
        }
    }
    let (trace, det) = (xx + yy, xx * yy - xy * xy);
    let gap = (trace * trace - 4.0 * det).max(0.0).sqrt();
    let orientation = if trace > 0.0 { gap / trace } else { 0.0 };

    let window = side / 2;
    let energy: f64 = w.iter().map(|v| v * v).sum();
    let mut best = 0.0f64;
    for top in 0..=side - window {
        for left in 0..=side - window {
            let inside: f64 = (top..top + window)
                .flat_map(|r| (left..left + window).map(move |c| (r, c)))
                .map(|(r, c)| w[r * side + c].powi(2))
                .sum();
            best = best.max(inside);
        }
    }
    let localization = if energy > 0.0 { best / energy } else { 0.0 };
    FilterShape { orientation, localization }
}
