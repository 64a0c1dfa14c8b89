//! The geometric median of a set of points, where a TopK model's decoder bias `b_dec` starts
//! (OpenAI's and sparsify's practice): the point minimising the sum of Euclidean distances,
//! robust to the outliers that pull the mean.

/// The geometric median of the `rows.len() / n` points of `rows` (row-major, `n` values each),
/// by Weiszfeld's iteration from the mean: `y ← Σ w_i x_i / Σ w_i` with `w_i = 1/‖x_i − y‖`
/// (a point at `y` itself is skipped), until a step moves `y` by less than `tolerance` times
/// the points' spread, or `iterations` steps.
pub fn geometric_median<T: crate::Real>(rows: &[T], n: usize, iterations: usize, tolerance: f64) -> Vec<f64> {
    assert!(n > 0 && rows.len().is_multiple_of(n), "geometric_median: {} values in rows of {n}", rows.len());
    let count = rows.len() / n;
    let mut y = vec![0.0; n];
    if count == 0 {
        return y;
    }
    for row in rows.chunks_exact(n) {
        for (y, v) in y.iter_mut().zip(row) {
            *y += v.as_f64() / count as f64;
        }
    }
    let spread = rows.chunks_exact(n).map(|row| distance(row, &y)).sum::<f64>() / count as f64;
    let mut next = vec![0.0; n];
    for _ in 0..iterations {
        next.fill(0.0);
        let mut weights = 0.0;
        for row in rows.chunks_exact(n) {
            let d = distance(row, &y);
            if d > 0.0 {
                for (s, v) in next.iter_mut().zip(row) {
                    *s += v.as_f64() / d;
                }
                weights += 1.0 / d;
            }
        }
        if weights == 0.0 {
            break;
        }
        next.iter_mut().for_each(|s| *s /= weights);
        let moved = distance_f64(&next, &y);
        std::mem::swap(&mut y, &mut next);
        if moved <= tolerance * spread {
            break;
        }
    }
    y
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
