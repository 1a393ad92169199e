//! Spatial control (Gatys et al. 2017, "Controlling Perceptual Factors in Neural Style
//! Transfer"): a mask per style image restricts that style's statistics to a region, and a
//! content mask keeps a region closer to the photograph.
//!
//! A mask is a weight in [0, 1] per pixel of the content image, carried to each layer's
//! resolution by the same 2x2 floor averaging as the pooling. A masked style term compares
//! the weighted statistics `G = sum_p w_p F_p F_p^T / W`, `m = sum_p w_p F_p / W`
//! (`W = sum_p w_p`) with its style's, so a soft edge blends the two styles' pulls; its
//! gradient at position p is the unmasked one computed with these statistics, times `w_p`
//! and with `W` in place of n. The content term's squared error at a position is weighted by
//! `1 + (k - 1) m_p` (`k` the content mask weight), so unmasked regions keep the plain loss.

use super::meancov::MeanCovTarget;
use super::{add_style_grad, gram_scaled_into, LossScratch, StyleTerm};
use crate::error::{Error, Result};
use crate::gemm::Real;
use crate::vgg::block_of;
use ndarray::Array2;
use rayon::prelude::*;

/// Masks of one painting at the content image's size (`h x w`, values in [0, 1]).
#[derive(Debug, Clone, Default)]
pub struct Masks<T = f32> {
    /// One per style image, in the order of the styles; `None`: that style everywhere.
    pub style: Vec<Option<Array2<T>>>,
    /// Where to keep the photograph, and how much more its content loss counts there.
    pub content: Option<(Array2<T>, f64)>,
}

impl<T: Real> Masks<T> {
    /// Whether any style is masked (the styles are then separate terms, not a blend).
    pub fn any_style(&self) -> bool {
        self.style.iter().any(Option::is_some)
    }

    /// Checks sizes and values against a content image of `h x w` and `styles` style images.
    pub fn check(&self, (h, w): (usize, usize), styles: usize) -> Result<()> {
        if !self.style.is_empty() && self.style.len() != styles {
            return Err(Error::Config(format!(
                "{} style masks for {styles} style images",
                self.style.len()
            )));
        }
        let masks = self
            .style
            .iter()
            .flatten()
            .chain(self.content.iter().map(|c| &c.0));
        for m in masks {
            if m.dim() != (h, w) {
                return Err(Error::Shape(format!(
                    "a mask is {:?}, the content image {:?}",
                    m.dim(),
                    (h, w)
                )));
            }
            if m.iter().any(|v| !(v.as_f64() >= 0.0 && v.as_f64() <= 1.0)) {
                return Err(Error::Config("mask values must be in [0, 1]".into()));
            }
        }
        if let Some((_, k)) = &self.content {
            if !(k.is_finite() && *k >= 0.0) {
                return Err(Error::Config(format!(
                    "content mask weight {k} must be finite and >= 0"
                )));
            }
        }
        Ok(())
    }
}

/// A mask at one layer's resolution: the weights (`h_l * w_l`, row-major) and their sum.
#[derive(Debug, Clone)]
pub(crate) struct LayerMask<T> {
    pub weights: Vec<T>,
    pub sum: f64,
}

/// `mask` (`h x w`) at the resolution of layer `layer`: halved by 2x2 averages (dropping an
/// odd last row or column, as the pooling does) once per pooling before it.
pub(crate) fn at_layer<T: Real>(mask: &Array2<T>, layer: usize) -> LayerMask<T> {
    let (mut h, mut w) = mask.dim();
    let mut cur: Vec<T> = mask.iter().copied().collect();
    for _ in 0..block_of(layer) {
        let (nh, nw) = (h / 2, w / 2);
        let quarter = T::from_f64(0.25);
        cur = (0..nh * nw)
            .map(|at| {
                let (y, x) = (2 * (at / nw), 2 * (at % nw));
                let v = cur[y * w + x]
                    + cur[y * w + x + 1]
                    + cur[(y + 1) * w + x]
                    + cur[(y + 1) * w + x + 1];
                v * quarter
            })
            .collect();
        (h, w) = (nh, nw);
    }
    let sum = cur.iter().map(|v| v.as_f64()).sum();
    LayerMask { weights: cur, sum }
}

/// The content loss weights `1 + (k - 1) m` of a content mask at a layer.
pub(crate) fn content_weights<T: Real>(mask: &Array2<T>, k: f64, layer: usize) -> Vec<T> {
    at_layer(mask, layer)
        .weights
        .into_iter()
        .map(|m| T::from_f64(1.0 + (k - 1.0) * m.as_f64()))
        .collect()
}

/// Weighted statistics of features `f` (`c x n`) with position weights `w` (`n`), summed
/// into `gram` (`+= scale * sum_p w_p F_p F_p^T`) and `sums` (`+= sum_p w_p F_p`, f64):
/// what pass 1 of a tiled evaluation adds per tile. `buf` is scratch (`c x n`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn accumulate_weighted<T: Real>(
    f: &[T],
    c: usize,
    n: usize,
    w: &[T],
    scale: T,
    gram: &mut [T],
    sums: &mut [f64],
    buf: &mut Vec<T>,
    partials: &mut Vec<T>,
) {
    assert_eq!((f.len(), w.len(), sums.len()), (c * n, n, c));
    if n == 0 {
        return;
    }
    // F diag(sqrt w): its Gram product is the weighted one.
    buf.clear();
    buf.resize(c * n, T::zero());
    buf.par_chunks_mut(n)
        .zip(f.par_chunks(n))
        .for_each(|(b, f)| {
            for ((b, &f), &w) in b.iter_mut().zip(f).zip(w) {
                *b = f * w.sqrt();
            }
        });
    gram_scaled_into(buf, c, n, scale, true, gram, partials);
    let rows: Vec<f64> = f
        .par_chunks(n)
        .map(|row| {
            row.iter()
                .zip(w)
                .map(|(f, w)| f.as_f64() * w.as_f64())
                .sum()
        })
        .collect();
    sums.iter_mut().zip(rows).for_each(|(s, r)| *s += r);
}

/// The gradient pieces of a masked term from its weighted statistics: the matrix to multiply
/// `F diag(w)` by and, for the mean + covariance loss, the per-channel bias to multiply `w`
/// by; also the term's value. `gram` and `mean` are the painting's weighted statistics.
pub(crate) fn masked_term<T: Real>(
    term: &StyleTerm<T>,
    gram: &[T],
    mean: &[f64],
    diff: &mut Vec<T>,
    bias: &mut Vec<T>,
    pieces: &mut super::MeanCovGrad<T>,
) -> Result<f64> {
    match &term.meancov {
        None => {
            diff.clear();
            diff.extend(gram.iter().zip(&term.gram).map(|(&g, &t)| g - t));
            let c2 = diff.len() as f64;
            Ok(diff.iter().map(|d| d.as_f64().powi(2)).sum::<f64>() / (4.0 * c2))
        }
        Some(target) => {
            let value = MeanCovTarget::term(target, gram, mean, pieces)?;
            std::mem::swap(diff, &mut pieces.diff);
            std::mem::swap(bias, &mut pieces.bias);
            Ok(value)
        }
    }
}

/// Adds a masked term's gradient at features `f` (`c x n`, weights `w`) to `grad`:
/// `scale * (diff F diag(w) + bias w^T)`, accumulating onto what `grad` holds when
/// `accumulate`. `buf` is scratch.
#[allow(clippy::too_many_arguments)]
pub(crate) fn add_masked_grad<T: Real>(
    scale: T,
    diff: &[T],
    bias: Option<&[T]>,
    f: &[T],
    w: &[T],
    c: usize,
    n: usize,
    accumulate: bool,
    grad: &mut [T],
    buf: &mut Vec<T>,
) {
    buf.clear();
    buf.resize(c * n, T::zero());
    if n > 0 {
        buf.par_chunks_mut(n)
            .zip(f.par_chunks(n))
            .for_each(|(b, f)| {
                for ((b, &f), &w) in b.iter_mut().zip(f).zip(w) {
                    *b = f * w;
                }
            });
    }
    add_style_grad(scale, diff, None, buf, c, n, accumulate, grad);
    if let (Some(bias), true) = (bias, n > 0) {
        grad.par_chunks_mut(n).zip(bias).for_each(|(row, &b)| {
            let b = scale * b;
            row.iter_mut().zip(w).for_each(|(g, &w)| *g += b * w);
        });
    }
}

/// A masked style term of one layer, untiled: value, and its gradient (scaled by
/// `grad_scale`) added to `grad`. A mask that is empty at this layer gives 0.
pub(crate) fn masked_style_loss<T: Real>(
    f: &[T],
    c: usize,
    term: &StyleTerm<T>,
    mask: &LayerMask<T>,
    grad_scale: T,
    grad: &mut [T],
    scratch: &mut LossScratch<T>,
) -> Result<f64> {
    let n = mask.weights.len();
    assert_eq!(f.len(), c * n);
    if mask.sum <= 0.0 {
        return Ok(0.0);
    }
    let mut gram = std::mem::take(&mut scratch.masked_gram);
    gram.clear();
    gram.resize(c * c, T::zero());
    // Channel sums, then (in place) the weighted means.
    let mut moments = std::mem::take(&mut scratch.masked_moments);
    moments.clear();
    moments.resize(c, 0.0);
    let scale = T::from_f64(1.0 / mask.sum);
    accumulate_weighted(
        f,
        c,
        n,
        &mask.weights,
        scale,
        &mut gram,
        &mut moments,
        &mut scratch.weighted,
        &mut scratch.partials,
    );
    moments.iter_mut().for_each(|s| *s /= mask.sum);
    let mut diff = std::mem::take(&mut scratch.diff);
    let mut bias = std::mem::take(&mut scratch.masked_bias);
    let value = masked_term(
        term,
        &gram,
        &moments,
        &mut diff,
        &mut bias,
        &mut scratch.meancov,
    );
    let c64 = c as f64;
    let factor = match term.meancov {
        None => 1.0 / (c64 * c64 * mask.sum),
        Some(_) => 2.0 / (c64 * mask.sum),
    };
    if value.is_ok() {
        let bias = term.meancov.as_ref().map(|_| &bias[..]);
        let scale = grad_scale * T::from_f64(factor);
        add_masked_grad(
            scale,
            &diff,
            bias,
            f,
            &mask.weights,
            c,
            n,
            true,
            grad,
            &mut scratch.weighted,
        );
    }
    scratch.diff = diff;
    scratch.masked_gram = gram;
    scratch.masked_moments = moments;
    scratch.masked_bias = bias;
    value
}
