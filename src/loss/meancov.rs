//! The mean + covariance style loss (`--style-loss w2`): per style layer, the squared
//! Wasserstein-2 distance between the Gaussians that match the mean and covariance of the
//! painting's and the style image's features, per channel:
//!
//! ```text
//! L = ( |m - m_s|^2 + tr K + tr K_s - 2 tr (A K A)^(1/2) ) / c,   A = K_s^(1/2)
//! ```
//!
//! with `m = F 1 / n`, `K = F F^T / n - m m^T + eps I` (F the layer's `c x n` features) and
//! `K_s` the style's, regularised by the same `eps`, so that both are positive definite and
//! every matrix root exists. Only the first two moments enter, so a blend of style images is
//! the blend of their means and Gram matrices (the moments of the mixture).
//!
//! Gradient: with `D = I - A (A K A)^(-1/2) A` (symmetric), `dL/dK = D / c` and
//! `dL/dm = 2 (m - m_s - D m) / c`, hence
//! `dL/dF = (2 / (c n)) (D F + (m - m_s - D m) 1^T)`: the Gram loss's product with `D` in
//! place of `G - T`, plus a constant per channel. The small dense algebra (`c x c`, f64) runs
//! on faer, sequentially, so results do not depend on the thread count.

use crate::error::{Error, Result};
use crate::gemm::Real;
use faer::{Mat, Side};
use rayon::prelude::*;

/// `eps` of the covariances, relative to the style covariance's mean variance: large enough
/// that the roots stay well conditioned in f64 when channels are dead (ReLU), small enough
/// not to change the painting.
const RELATIVE_EPS: f64 = 1e-3;

/// What the loss needs of the style at one layer, computed once per objective.
#[derive(Debug, Clone)]
pub struct MeanCovTarget {
    c: usize,
    mean: Vec<f64>,
    /// `A = K_s^(1/2)`.
    root: Mat<f64>,
    trace: f64,
    eps: f64,
}

/// The gradient pieces of one term: `dL/dF = (2 / (c n)) (diff F + bias 1^T)`.
#[derive(Debug, Default)]
pub struct MeanCovGrad<T> {
    /// `D`, `c x c` row-major.
    pub diff: Vec<T>,
    /// `m - m_s - D m`.
    pub bias: Vec<T>,
}

/// `K = G - m m^T + eps I` as an f64 matrix.
fn covariance<T: Real>(gram: &[T], mean: &[f64], eps: f64) -> Mat<f64> {
    let c = mean.len();
    Mat::from_fn(c, c, |i, j| {
        let k = gram[i * c + j].as_f64() - mean[i] * mean[j];
        if i == j {
            k + eps
        } else {
            k
        }
    })
}

/// Eigenvalues and vectors of a symmetric matrix, eigenvalues clamped at `floor` (rounding
/// can push the smallest of a positive definite matrix a hair below it).
fn eigen(m: &Mat<f64>, floor: f64, what: &str) -> Result<(Vec<f64>, Mat<f64>)> {
    let e = m
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| Error::NonFinite(format!("{what}: eigendecomposition failed ({e:?})")))?;
    let s = e.S().column_vector();
    let values = (0..m.nrows()).map(|i| s[i].max(floor)).collect();
    Ok((values, e.U().to_owned()))
}

impl MeanCovTarget {
    /// The target of a style whose features at this layer have Gram matrix `gram`
    /// (`F F^T / n`, `c x c`) and channel means `mean`.
    pub fn new<T: Real>(gram: &[T], mean: &[T]) -> Result<Self> {
        let c = mean.len();
        assert_eq!(gram.len(), c * c);
        let mean: Vec<f64> = mean.iter().map(|m| m.as_f64()).collect();
        let raw = covariance(gram, &mean, 0.0);
        let variance = (0..c).map(|i| raw[(i, i)]).sum::<f64>() / c.max(1) as f64;
        // A flat style image (no variance at all) still gets a positive eps.
        let eps = RELATIVE_EPS * variance.max(1e-6);
        let k = covariance(gram, &mean, eps);
        let (values, vectors) = eigen(&k, eps * 1e-3, "style covariance")?;
        let scaled = Mat::from_fn(c, c, |i, j| vectors[(i, j)] * values[j].sqrt());
        let root = &scaled * vectors.transpose();
        let trace = (0..c).map(|i| k[(i, i)]).sum();
        Ok(MeanCovTarget {
            c,
            mean,
            root,
            trace,
            eps,
        })
    }

    /// Channel count.
    pub fn channels(&self) -> usize {
        self.c
    }

    /// The loss at features whose Gram matrix is `gram` and channel means `mean`; writes the
    /// gradient pieces to `out`.
    pub fn term<T: Real>(&self, gram: &[T], mean: &[f64], out: &mut MeanCovGrad<T>) -> Result<f64> {
        let c = self.c;
        assert_eq!((gram.len(), mean.len()), (c * c, c));
        let k = covariance(gram, mean, self.eps);
        let a = &self.root;
        let m = a * &k * a;
        let (values, vectors) = eigen(&m, self.eps * self.eps * 1e-6, "covariance product")?;
        let root_trace: f64 = values.iter().map(|v| v.sqrt()).sum();
        // A (A K A)^(-1/2) A = B diag(1/sqrt(lambda)) B^T with B = A V.
        let b = a * &vectors;
        let b_scaled = Mat::from_fn(c, c, |i, j| b[(i, j)] / values[j].sqrt());
        let t = &b_scaled * b.transpose();
        let mean_gap: f64 = mean
            .iter()
            .zip(&self.mean)
            .map(|(x, s)| (x - s).powi(2))
            .sum();
        let trace: f64 = (0..c).map(|i| k[(i, i)]).sum();
        let value = (mean_gap + trace + self.trace - 2.0 * root_trace) / c as f64;
        out.diff.clear();
        out.diff.extend((0..c * c).map(|at| {
            let (i, j) = (at / c, at % c);
            let identity = if i == j { 1.0 } else { 0.0 };
            // Symmetrised: T is symmetric up to rounding.
            T::from_f64(identity - 0.5 * (t[(i, j)] + t[(j, i)]))
        }));
        out.bias.clear();
        out.bias.extend((0..c).map(|i| {
            let dm: f64 = (0..c).map(|j| out.diff[i * c + j].as_f64() * mean[j]).sum();
            T::from_f64(mean[i] - self.mean[i] - dm)
        }));
        Ok(value)
    }
}

/// Channel means of `f` (`c x n`), each summed in order in f64.
pub fn channel_means<T: Real>(f: &[T], c: usize, n: usize, out: &mut Vec<f64>) {
    assert_eq!(f.len(), c * n);
    if n == 0 {
        out.clear();
        out.resize(c, 0.0);
        return;
    }
    f.par_chunks(n)
        .map(|row| row.iter().map(|v| v.as_f64()).sum::<f64>() / n as f64)
        .collect_into_vec(out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::{gram, meancov_loss, LossScratch};
    use crate::ops::testutil::{max_rel_err, noise, numeric_grad};

    /// Value and dL/dF of the loss at `f` (`c x n`) against the target `t`, through
    /// [`meancov_loss`] (which adds its gradient: it starts from ones here).
    fn value_and_grad(f: &[f64], c: usize, n: usize, t: &MeanCovTarget) -> (f64, Vec<f64>) {
        let mut grad = vec![1.0; c * n];
        let value = meancov_loss(f, c, n, t, 1.0, &mut grad, &mut LossScratch::default()).unwrap();
        (value, grad.iter().map(|g| g - 1.0).collect())
    }

    fn target(c: usize, n: usize, seed: u64) -> MeanCovTarget {
        // Offset so that the means differ from the painting's.
        let s: Vec<f64> = noise(c * n, seed).iter().map(|v| 2.0 * v + 0.5).collect();
        let mut mean = Vec::new();
        channel_means(&s, c, n, &mut mean);
        MeanCovTarget::new(&gram(&s, c, n), &mean).unwrap()
    }

    #[test]
    fn gradient_matches_finite_differences() {
        for (c, n) in [(4, 15), (6, 40)] {
            let t = target(c, n + 3, 7);
            let f = noise(c * n, 8);
            let (_, grad) = value_and_grad(&f, c, n, &t);
            let num = numeric_grad(&f, 1e-6, |f| value_and_grad(f, c, n, &t).0);
            let err = max_rel_err(&grad, &num);
            assert!(err < 1e-6, "c {c} n {n}: {err}");
        }
    }

    #[test]
    fn distance_to_the_style_itself_is_zero_and_grows_with_a_shift() {
        let (c, n) = (5, 50);
        let s = noise(c * n, 9);
        let mut mean = Vec::new();
        channel_means(&s, c, n, &mut mean);
        let t = MeanCovTarget::new(&gram(&s, c, n), &mean).unwrap();
        let (same, grad) = value_and_grad(&s, c, n, &t);
        assert!(same.abs() < 1e-9, "{same}");
        assert!(grad.iter().all(|g| g.abs() < 1e-6));
        // A shift of every feature by d moves only the mean: L = c d^2 / c.
        let shifted: Vec<f64> = s.iter().map(|v| v + 0.3).collect();
        let (moved, _) = value_and_grad(&shifted, c, n, &t);
        assert!((moved - 0.09).abs() < 1e-9, "{moved}");
    }

    #[test]
    fn dead_channels_stay_finite() {
        // Two of four channels never fire, in the style and in the painting.
        let (c, n) = (4, 30);
        let mut s = noise(c * n, 10);
        s[2 * n..].iter_mut().for_each(|v| *v = 0.0);
        let mut mean = Vec::new();
        channel_means(&s, c, n, &mut mean);
        let t = MeanCovTarget::new(&gram(&s, c, n), &mean).unwrap();
        let mut f = noise(c * n, 11);
        f[3 * n..].iter_mut().for_each(|v| *v = 0.0);
        let (value, grad) = value_and_grad(&f, c, n, &t);
        assert!(value.is_finite() && value > 0.0);
        assert!(grad.iter().all(|g| g.is_finite()));
        let num = numeric_grad(&f, 1e-6, |f| value_and_grad(f, c, n, &t).0);
        assert!(max_rel_err(&grad, &num) < 1e-5);
    }
}
