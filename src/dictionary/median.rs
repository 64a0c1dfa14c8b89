//! The geometric median of a set of points, where a TopK model's decoder bias `b_dec` starts
//! (OpenAI's and sparsify's practice): the point minimising the sum of Euclidean distances,
//! robust to the outliers that pull the mean.

/// The geometric median of the `rows.len() / n` points of `rows` (row-major, `n` values each),
/// by Weiszfeld's iteration from the mean: `y ← Σ w_i x_i / Σ w_i` with `w_i = 1/‖x_i − y‖`
/// (a point at `y` itself is skipped), until a step moves `y` by less than `tolerance` times
/// the points' spread, or `iterations` steps.
pub fn geometric_median<T: crate::Real>(rows: &[T], n: usize, iterations: usize, tolerance: f64) -> Vec<f64> {
    let alone = |_: &mut [f64]| Ok(());
    geometric_median_summed(rows, n, iterations, tolerance, alone).expect("a sum of one process does not fail")
}

/// [`geometric_median`] of points held in parts (by the processes of a distributed run, say):
/// `rows` are this part's, and `sum` replaces a vector of this part's sums by the sums over
/// all parts (every part calling it alike). Each step of Weiszfeld's iteration needs only the
/// sums `Σ w_i x_i` and `Σ w_i`, so every part ends with the same median, that of all the
/// points (to the rounding of the sums' order).
pub fn geometric_median_summed<T: crate::Real>(
    rows: &[T],
    n: usize,
    iterations: usize,
    tolerance: f64,
    mut sum: impl FnMut(&mut [f64]) -> crate::Result<()>,
) -> crate::Result<Vec<f64>> {
    assert!(n > 0 && rows.len().is_multiple_of(n), "geometric_median: {} values in rows of {n}", rows.len());
    let mut count = [(rows.len() / n) as f64];
    sum(&mut count)?;
    let count = count[0];
    let mut y = vec![0.0; n];
    if count == 0.0 {
        return Ok(y);
    }
    // The mean, `Σ (x_i / count)`.
    for row in rows.chunks_exact(n) {
        for (y, v) in y.iter_mut().zip(row) {
            *y += v.as_f64() / count;
        }
    }
    sum(&mut y)?;
    let mut spread = [rows.chunks_exact(n).map(|row| distance(row, &y)).sum::<f64>()];
    sum(&mut spread)?;
    let spread = spread[0] / count;
    // `[Σ w_i x_i; Σ w_i]`.
    let mut next = vec![0.0; n + 1];
    for _ in 0..iterations {
        next.fill(0.0);
        for row in rows.chunks_exact(n) {
            let d = distance(row, &y);
            if d > 0.0 {
                for (s, v) in next.iter_mut().zip(row) {
                    *s += v.as_f64() / d;
                }
                next[n] += 1.0 / d;
            }
        }
        sum(&mut next)?;
        let weights = next[n];
        if weights == 0.0 {
            break;
        }
        next[..n].iter_mut().for_each(|s| *s /= weights);
        let moved = distance_f64(&next[..n], &y);
        y.copy_from_slice(&next[..n]);
        if moved <= tolerance * spread {
            break;
        }
    }
    Ok(y)
}

fn distance<T: crate::Real>(row: &[T], y: &[f64]) -> f64 {
    row.iter().zip(y).map(|(v, y)| (v.as_f64() - y).powi(2)).sum::<f64>().sqrt()
}

fn distance_f64(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outlier_moves_the_median_by_a_bounded_amount_whatever_its_distance() {
        // Four points around (1, 2) and one far outlier: the mean moves by 200, the median
        // stays inside the cloud (the outlier pulls it with a unit force, whatever its distance).
        let rows = [0.0, 2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 3.0, 1000.0, 1000.0];
        let median = geometric_median(&rows, 2, 500, 1e-12);
        let far = geometric_median(&[&rows[..8], &[1e6, 1e6]].concat(), 2, 500, 1e-12);
        for m in [&median, &far] {
            assert!(((m[0] - 1.0).powi(2) + (m[1] - 2.0).powi(2)).sqrt() < 0.5, "{m:?}");
        }
        assert!((median[0] - far[0]).abs() < 1e-3, "the outlier's distance does not matter: {median:?} {far:?}");
    }

    #[test]
    fn the_median_minimises_the_sum_of_distances() {
        let rows: Vec<f32> = (0..60).map(|i| ((i * 37 % 23) as f32 - 11.0) / 3.0).collect();
        let median = geometric_median(&rows, 3, 1000, 1e-14);
        let total = |y: &[f64]| rows.chunks_exact(3).map(|r| distance(r, y)).sum::<f64>();
        let best = total(&median);
        for axis in 0..3 {
            for step in [1e-3, -1e-3] {
                let mut moved = median.clone();
                moved[axis] += step;
                assert!(total(&moved) >= best - 1e-9, "moving axis {axis} by {step} lowers the sum");
            }
        }
    }
}
