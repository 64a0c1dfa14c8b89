//! The parameter vector `theta = [W1(:); W2(:); b1; b2]` (SPEC §1): `W1: h×n` and `W2: n×h`
//! flattened column-major, then `b1: h`, `b2: n`. Length `2hn + h + n`.

use rand::distributions::{Distribution, Uniform};
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::error::{Error, Result};
use crate::gemm::{MatMut, MatRef};
use crate::real::Real;

/// Where each block of `theta` lives, for `n` visible and `h` hidden units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThetaLayout {
    visible: usize,
    hidden: usize,
}

impl ThetaLayout {
    pub fn new(visible: usize, hidden: usize) -> Self {
        ThetaLayout { visible, hidden }
    }

    /// `2hn + h + n`.
    pub fn len(&self) -> usize {
        2 * self.hidden * self.visible + self.hidden + self.visible
    }

    /// Never true for a model with at least one unit of each kind.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `hn`: the length of `W1(:)`, and of `W2(:)`.
    pub fn weights_len(&self) -> usize {
        self.hidden * self.visible
    }

    /// `W1: h×n`, column-major.
    pub fn w1<'a, T>(&self, theta: &'a [T]) -> MatRef<'a, T> {
        MatRef::col_major(&theta[..self.weights_len()], self.hidden, self.visible)
    }

    /// `W2: n×h`, column-major.
    pub fn w2<'a, T>(&self, theta: &'a [T]) -> MatRef<'a, T> {
        let hn = self.weights_len();
        MatRef::col_major(&theta[hn..2 * hn], self.visible, self.hidden)
    }

    /// `b1: h`.
    pub fn b1<'a, T>(&self, theta: &'a [T]) -> &'a [T] {
        let start = 2 * self.weights_len();
        &theta[start..start + self.hidden]
    }

    /// `b2: n`.
    pub fn b2<'a, T>(&self, theta: &'a [T]) -> &'a [T] {
        &theta[2 * self.weights_len() + self.hidden..self.len()]
    }

    /// Splits a gradient (or any theta-shaped buffer) into `(∇W1: h×n, ∇W2: n×h, ∇b1, ∇b2)`.
    pub fn split_mut<'a, T>(&self, grad: &'a mut [T]) -> (MatMut<'a, T>, MatMut<'a, T>, &'a mut [T], &'a mut [T]) {
        let hn = self.weights_len();
        let (w1, rest) = grad.split_at_mut(hn);
        let (w2, rest) = rest.split_at_mut(hn);
        let (b1, b2) = rest.split_at_mut(self.hidden);
        (
            MatMut::col_major(w1, self.hidden, self.visible),
            MatMut::col_major(w2, self.visible, self.hidden),
            b1,
            &mut b2[..self.visible],
        )
    }

    /// Checks that `theta` has this layout's length and only finite values; the error names
    /// the offending index and the block, row and column it belongs to.
    /// `W1 ← (W1 + W2ᵀ)/2` and `W2 ← W1ᵀ` in a vector of this layout: tying weights, and
    /// folding a gradient of `J(W1, W2)` onto `W1 = W2ᵀ` (up to its factor 2).
    pub(crate) fn average_w1_with_w2_transposed<T: Real>(&self, values: &mut [T]) {
        let (n, h) = (self.visible, self.hidden);
        let (w1, w2) = values.split_at_mut(self.weights_len());
        let half = T::cast(0.5);
        for k in 0..n {
            for j in 0..h {
                let w = (w1[j + k * h] + w2[k + j * n]) * half;
                w1[j + k * h] = w;
                w2[k + j * n] = w;
            }
        }
    }

    pub fn check<T: Real>(&self, theta: &[T], what: &'static str) -> Result<()> {
        if theta.len() != self.len() {
            let expected = format!("2hn + h + n = {} (n = {}, h = {})", self.len(), self.visible, self.hidden);
            return Err(Error::shape_mismatch(what, expected, theta.len()));
        }
        match theta.iter().position(|v| !v.is_finite()) {
            None => Ok(()),
            Some(index) => {
                let (block, row, column) = self.locate(index);
                Err(Error::NonFiniteTheta { index, block, row, column, value: theta[index].as_f64() })
            }
        }
    }

    /// The block (`W1`, `W2`, `b1`, `b2`), row and column of `theta[index]`.
    pub fn locate(&self, index: usize) -> (&'static str, usize, usize) {
        let (n, h, hn) = (self.visible, self.hidden, self.weights_len());
        if index < hn {
            ("W1", index % h, index / h)
        } else if index < 2 * hn {
            ("W2", (index - hn) % n, (index - hn) / n)
        } else if index < 2 * hn + h {
            ("b1", index - 2 * hn, 0)
        } else {
            ("b2", index - 2 * hn - h, 0)
        }
    }
}

/// An owned, validated `theta` with its layout.
#[derive(Debug, Clone, PartialEq)]
pub struct Parameters<T> {
    layout: ThetaLayout,
    theta: Vec<T>,
}

impl<T: Real> Parameters<T> {
    /// The UFLDL initialisation: weights uniform in `[−r, r]`, `r = √(6 / (n + h + 1))`,
    /// biases zero. Drawn in f64 from Xoshiro256++ seeded with `seed`, in `theta` order, so
    /// f32 and f64 models from one seed agree to rounding.
    pub fn init(visible: usize, hidden: usize, seed: u64) -> Self {
        let layout = ThetaLayout::new(visible, hidden);
        let r = (6.0 / (visible + hidden + 1) as f64).sqrt();
        let uniform = Uniform::new_inclusive(-r, r);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut theta = vec![T::zero(); layout.len()];
        for w in &mut theta[..2 * layout.weights_len()] {
            *w = T::cast(uniform.sample(&mut rng));
        }
        Parameters { layout, theta }
    }

    /// Wraps an existing `theta`, checking its length and that every value is finite.
    pub fn from_theta(visible: usize, hidden: usize, theta: Vec<T>) -> Result<Self> {
        let layout = ThetaLayout::new(visible, hidden);
        layout.check(&theta, "theta")?;
        Ok(Parameters { layout, theta })
    }

    pub fn layout(&self) -> ThetaLayout {
        self.layout
    }

    /// The flat vector in the UFLDL layout.
    pub fn theta(&self) -> &[T] {
        &self.theta
    }

    pub fn into_theta(self) -> Vec<T> {
        self.theta
    }

    /// Ties the weights: `W1 ← W`, `W2 ← Wᵀ` with `W = (W1 + W2ᵀ)/2`, the point at which a
    /// tied-weights objective evaluates `theta` (so its value does not change).
    pub fn tie(&mut self) {
        self.layout.average_w1_with_w2_transposed(&mut self.theta);
    }

    /// `W1: h×n`.
    pub fn w1(&self) -> MatRef<'_, T> {
        self.layout.w1(&self.theta)
    }

    /// `W2: n×h`.
    pub fn w2(&self) -> MatRef<'_, T> {
        self.layout.w2(&self.theta)
    }

    /// `b1: h`.
    pub fn b1(&self) -> &[T] {
        self.layout.b1(&self.theta)
    }

    /// `b2: n`.
    pub fn b2(&self) -> &[T] {
        self.layout.b2(&self.theta)
    }
}
