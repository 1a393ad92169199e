//! The objective of DESIGN.md: content, Gram style and total-variation losses, each returning its
//! value and its explicit gradient, and `Objective`, which runs the network forward, gathers the
//! tap gradients and runs it backward to the pixels.
//!
//! Values are accumulated in f64 whatever the element type; every reduction runs over fixed
//! chunks summed in order, so results do not depend on the thread count.

use crate::error::{Error, Result};
use crate::gemm::{gemm_into, par_gemm, MatRef, Real};
use crate::ops::Pool;
use crate::profile::Timings;
use crate::tiling::{Owned, TileGrid};
use crate::vgg::{layer_index, timed, Keep, Vgg, Workspace};
use ndarray::{Array3, ArrayBase, Data, Ix3};
use rayon::prelude::*;
use std::cmp::Ordering;
use std::sync::Mutex;

mod gram_kernel;
mod masks;
pub mod meancov;
mod tiled;

use masks::LayerMask;
pub use masks::Masks;
use meancov::{channel_means, MeanCovGrad, MeanCovTarget};

/// Elements per chunk of the ordered parallel reductions.
const SUM_CHUNK: usize = 1 << 15;
/// Pixels per partial Gram product.
const GRAM_CHUNK: usize = 1 << 13;
/// Side of the square blocks of G computed by one product.
const GRAM_BLOCK: usize = 64;
/// Pixels per column tile of the style-gradient product.
const GRAD_TILE: usize = 1 << 11;

/// Buffers the losses reuse from call to call.
#[derive(Debug, Default)]
pub struct LossScratch<T> {
    /// Partial Gram products, one `c x c` block per pixel chunk.
    partials: Vec<T>,
    /// G - T.
    diff: Vec<T>,
    /// Partial sums of the ordered reductions.
    sums: Vec<f64>,
    /// Channel means and the gradient pieces of the mean + covariance loss.
    means: Vec<f64>,
    meancov: MeanCovGrad<T>,
    /// Masked terms: the weighted features, Gram matrix, channel means and the mean
    /// gradient's bias.
    weighted: Vec<T>,
    masked_gram: Vec<T>,
    masked_moments: Vec<f64>,
    masked_bias: Vec<T>,
}

/// Sums `parts` after `fill` wrote one partial per fixed chunk: the order is fixed, so the
/// result does not depend on the thread count.
fn ordered_total(sums: &mut Vec<f64>, parts: usize, fill: impl FnOnce(&mut [f64])) -> f64 {
    sums.clear();
    sums.resize(parts, 0.0);
    fill(sums);
    sums.iter().sum()
}

/// Gram matrix `F F^T / n` of `f` (`c x n`, row-major), `c x c`.
pub fn gram<T: Real>(f: &[T], c: usize, n: usize) -> Vec<T> {
    let mut g = vec![T::zero(); c * c];
    gram_into(f, c, n, &mut g, &mut Vec::new());
    g
}

/// `gram` into `g` (`c x c`), with `partials` as scratch. G is symmetric, so only its blocks on
/// and above the diagonal are multiplied (`GRAM_BLOCK` square; 56% of the work at 512
/// channels), one partial product per block and chunk of pixels; the chunks are summed in
/// order and each block mirrored below the diagonal.
pub fn gram_into<T: Real>(f: &[T], c: usize, n: usize, g: &mut [T], partials: &mut Vec<T>) {
    let inv_n = T::one() / T::from_f64(n as f64);
    gram_scaled_into(f, c, n, inv_n, false, g, partials);
}

/// `g = scale * F F^T`, or `g += scale * F F^T` when `accumulate` (a tiled evaluation sums
/// the tiles' products), computed as [`gram_into`] computes it.
pub fn gram_scaled_into<T: Real>(
    f: &[T],
    c: usize,
    n: usize,
    scale: T,
    accumulate: bool,
    g: &mut [T],
    partials: &mut Vec<T>,
) {
    assert_eq!(f.len(), c * n);
    assert_eq!(g.len(), c * c);
    if c == 0 {
        return;
    }
    let fm = MatRef::new(f, c, n);
    let ft = MatRef::t(f, n, c);
    let chunks = n.div_ceil(GRAM_CHUNK).max(1);
    let nb = c.div_ceil(GRAM_BLOCK);
    let pairs: usize = nb * (nb + 1) / 2;
    // Pair p is block (bi, bj), bi <= bj, row by row of the upper triangle.
    let pair = |p: usize| {
        let (mut bi, mut rest) = (0, p);
        while rest >= nb - bi {
            rest -= nb - bi;
            bi += 1;
        }
        (bi, bi + rest)
    };
    let span = |b: usize| (b * GRAM_BLOCK, ((b + 1) * GRAM_BLOCK).min(c));
    let slot = GRAM_BLOCK * GRAM_BLOCK;
    partials.clear();
    partials.resize(chunks * pairs * slot, T::zero());
    partials
        .par_chunks_mut(slot)
        .enumerate()
        .for_each(|(task, part)| {
            let (t, (bi, bj)) = (task / pairs, pair(task % pairs));
            let (p0, p1) = (t * GRAM_CHUNK, ((t + 1) * GRAM_CHUNK).min(n));
            let ((i0, i1), (j0, j1)) = (span(bi), span(bj));
            let ld = j1 - j0;
            if !gram_kernel::gram_block(f, n, (i0, i1), (j0, j1), (p0, p1), part, ld) {
                let a = fm.rows(i0, i1).cols(p0, p1);
                let b = ft.rows(p0, p1).cols(j0, j1);
                gemm_into(T::one(), a, b, T::zero(), part, ld);
            }
        });
    // Row block `bj` of G from the pairs' partial sums, each element from its pair's block
    // (read transposed below the diagonal); on a diagonal block the element on or above its
    // diagonal, so that G comes out symmetric whatever the product.
    let width = |b: usize| span(b).1 - span(b).0;
    let pair_index = |bi: usize, bj: usize| bi * nb - bi * bi.saturating_sub(1) / 2 + (bj - bi);
    g.par_chunks_mut(GRAM_BLOCK * c)
        .enumerate()
        .for_each(|(bj, rows)| {
            for (dj, row) in rows.chunks_exact_mut(c).enumerate() {
                for bi in 0..nb {
                    let i0 = span(bi).0;
                    let p = pair_index(bi.min(bj), bi.max(bj));
                    for (di, gi) in row[i0..i0 + width(bi)].iter_mut().enumerate() {
                        let at = match bi.cmp(&bj) {
                            Ordering::Less => di * width(bj) + dj,
                            Ordering::Greater => dj * width(bi) + di,
                            Ordering::Equal => di.min(dj) * width(bi) + di.max(dj),
                        };
                        let mut v = T::zero();
                        for t in 0..chunks {
                            v += partials[(t * pairs + p) * slot + at];
                        }
                        let v = v * scale;
                        if accumulate {
                            *gi += v;
                        } else {
                            *gi = v;
                        }
                    }
                }
            }
        });
}

/// Style loss of one layer, `1/(4 c^2) * sum (G(f) - target)^2`; adds its gradient with respect
/// to `f` (`c x n`), scaled by `grad_scale`, to `grad`: `grad_scale * (G - T) F / (c^2 n)`.
pub fn style_loss<T: Real>(
    f: &[T],
    c: usize,
    n: usize,
    target: &[T],
    grad_scale: T,
    grad: &mut [T],
    scratch: &mut LossScratch<T>,
) -> f64 {
    assert_eq!(target.len(), c * c);
    assert_eq!(grad.len(), c * n);
    let diff = &mut scratch.diff;
    diff.resize(c * c, T::zero());
    gram_into(f, c, n, diff, &mut scratch.partials);
    diff.iter_mut().zip(target).for_each(|(g, &t)| *g -= t);
    let value = diff.iter().map(|d| d.as_f64().powi(2)).sum::<f64>() / (4.0 * (c * c) as f64);
    let scale = grad_scale / T::from_f64((c * c) as f64 * n as f64);
    add_style_grad(scale, diff, None, f, c, n, true, grad);
    value
}

/// Adds `scale * (diff F + bias 1^T)` to `grad` (`c x n`, like `f`): the gradient of a style
/// term with respect to its layer's features.
#[allow(clippy::too_many_arguments)]
fn add_style_grad<T: Real>(
    scale: T,
    diff: &[T],
    bias: Option<&[T]>,
    f: &[T],
    c: usize,
    n: usize,
    accumulate: bool,
    grad: &mut [T],
) {
    let beta = if accumulate { T::one() } else { T::zero() };
    par_gemm(
        scale,
        MatRef::new(diff, c, c),
        MatRef::new(f, c, n),
        beta,
        grad,
        GRAD_TILE,
    );
    if let (Some(bias), true) = (bias, n > 0) {
        grad.par_chunks_mut(n).zip(bias).for_each(|(row, &b)| {
            let b = scale * b;
            row.iter_mut().for_each(|g| *g += b);
        });
    }
}

/// The mean + covariance style loss of one layer (see [`meancov`]); adds its gradient with
/// respect to `f` (`c x n`), scaled by `grad_scale`, to `grad`.
pub fn meancov_loss<T: Real>(
    f: &[T],
    c: usize,
    n: usize,
    target: &MeanCovTarget,
    grad_scale: T,
    grad: &mut [T],
    scratch: &mut LossScratch<T>,
) -> Result<f64> {
    assert_eq!(grad.len(), c * n);
    scratch.diff.resize(c * c, T::zero());
    gram_into(f, c, n, &mut scratch.diff, &mut scratch.partials);
    channel_means(f, c, n, &mut scratch.means);
    let value = target.term(&scratch.diff, &scratch.means, &mut scratch.meancov)?;
    let scale = grad_scale * T::from_f64(2.0 / (c * n) as f64);
    let pieces = &scratch.meancov;
    add_style_grad(scale, &pieces.diff, Some(&pieces.bias), f, c, n, true, grad);
    Ok(value)
}

/// Content loss of one layer, `1/(4 len) * sum (a - target)^2`; adds its gradient scaled by
/// `grad_scale`, `grad_scale * (a - target) / (2 len)`, to `grad`.
pub fn content_loss<T: Real>(
    a: &[T],
    target: &[T],
    grad_scale: T,
    grad: &mut [T],
    scratch: &mut LossScratch<T>,
) -> f64 {
    assert_eq!(a.len(), target.len());
    assert_eq!(a.len(), grad.len());
    let len = a.len() as f64;
    let k = grad_scale / T::from_f64(2.0 * len);
    let sum = ordered_total(&mut scratch.sums, a.len().div_ceil(SUM_CHUNK), |sums| {
        sums.par_iter_mut()
            .zip(grad.par_chunks_mut(SUM_CHUNK))
            .zip(a.par_chunks(SUM_CHUNK).zip(target.par_chunks(SUM_CHUNK)))
            .for_each(|((s, g), (a, t))| {
                for ((g, &x), &y) in g.iter_mut().zip(a).zip(t) {
                    *s += (x.as_f64() - y.as_f64()).powi(2);
                    *g += (x - y) * k;
                }
            })
    });
    sum / (4.0 * len)
}

/// [`content_loss`] over the positions a tile owns: `out` is the tile's layer output, `target`
/// the whole image's (`c x whole.0 x whole.1`); normalised by the whole layer's size, so the
/// tiles' values sum to the untiled one. Adds the owned positions' gradient to `grad`.
#[allow(clippy::too_many_arguments)]
fn content_owned<T: Real>(
    out: crate::vgg::LayerOutput<'_, T>,
    owned: &Owned,
    target: &[T],
    whole: (usize, usize),
    weights: Option<&[T]>,
    grad_scale: T,
    grad: &mut [T],
    sums: &mut Vec<f64>,
) -> f64 {
    let (lh, lw) = whole;
    assert_eq!(target.len(), out.c * lh * lw);
    assert_eq!(grad.len(), out.data.len());
    let len = target.len() as f64;
    let k = grad_scale / T::from_f64(2.0 * len);
    let plane = out.h * out.w;
    let sum = ordered_total(sums, out.c, |sums| {
        sums.par_iter_mut()
            .zip(grad.par_chunks_mut(plane))
            .zip(out.data.par_chunks(plane).zip(target.par_chunks(lh * lw)))
            .for_each(|((s, g), (a, t))| {
                for (dy, y) in (owned.local_y.start..owned.local_y.end).enumerate() {
                    let local = y * out.w + owned.local_x.start;
                    let global = (owned.global_y + dy) * lw + owned.global_x;
                    let n = owned.local_x.len();
                    let rows = g[local..local + n]
                        .iter_mut()
                        .zip(&a[local..local + n])
                        .zip(&t[global..global + n]);
                    match weights {
                        None => {
                            for ((g, &x), &y) in rows {
                                *s += (x.as_f64() - y.as_f64()).powi(2);
                                *g += (x - y) * k;
                            }
                        }
                        Some(u) => {
                            for (((g, &x), &y), &u) in rows.zip(&u[global..global + n]) {
                                *s += u.as_f64() * (x.as_f64() - y.as_f64()).powi(2);
                                *g += (x - y) * k * u;
                            }
                        }
                    }
                }
            })
    });
    sum / (4.0 * len)
}

/// Total variation of `x` (`c x h x w`), `1/(c h w) * sum of squared vertical and horizontal
/// neighbour differences`; adds its gradient scaled by `grad_scale` to `grad`.
pub fn tv_loss<T: Real>(
    x: &[T],
    (c, h, w): (usize, usize, usize),
    grad_scale: T,
    grad: &mut [T],
    scratch: &mut LossScratch<T>,
) -> f64 {
    assert_eq!(x.len(), c * h * w);
    assert_eq!(grad.len(), x.len());
    let norm = (c * h * w) as f64;
    let k = grad_scale * T::from_f64(2.0 / norm);
    if h * w == 0 {
        return 0.0;
    }
    // Fixed bands of rows in every channel: each band sums its own differences and writes its
    // own rows of the gradient, gathered from both neighbours of each pixel.
    let bands = h.div_ceil(TV_ROWS);
    let sum = ordered_total(&mut scratch.sums, c * bands, |sums| {
        sums.par_chunks_mut(bands)
            .zip(grad.par_chunks_mut(h * w).zip(x.par_chunks(h * w)))
            .for_each(|(sums, (g, plane))| {
                sums.par_iter_mut()
                    .zip(g.par_chunks_mut(TV_ROWS * w))
                    .enumerate()
                    .for_each(|(band, (s, g))| {
                        for (r, g) in g.chunks_exact_mut(w).enumerate() {
                            *s += tv_row(plane, band * TV_ROWS + r, h, w, k, g);
                        }
                    })
            })
    });
    sum / norm
}

/// Rows per task of the total variation.
const TV_ROWS: usize = 16;

/// Row `i` of a `h x w` `plane`: returns the squared differences to its right and lower
/// neighbours, and adds `k` times the row's gradient to `g`.
fn tv_row<T: Real>(plane: &[T], i: usize, h: usize, w: usize, k: T, g: &mut [T]) -> f64 {
    let row = &plane[i * w..][..w];
    let mut sum = 0.0;
    for (j, pair) in row.windows(2).enumerate() {
        let d = pair[1] - pair[0];
        sum += d.as_f64() * d.as_f64();
        g[j] -= d * k;
        g[j + 1] += d * k;
    }
    if i + 1 < h {
        for ((g, &p), &below) in g.iter_mut().zip(row).zip(&plane[(i + 1) * w..][..w]) {
            let d = below - p;
            sum += d.as_f64() * d.as_f64();
            *g -= d * k;
        }
    }
    if i > 0 {
        for ((g, &p), &above) in g.iter_mut().zip(row).zip(&plane[(i - 1) * w..][..w]) {
            *g += (p - above) * k;
        }
    }
    sum
}

/// Which layers the objective reads and how much each counts.
#[derive(Debug, Clone, PartialEq)]
pub struct LossConfig {
    /// Content layers (`convB_I` or `reluB_I`) and their weights w_l.
    pub content_layers: Vec<(String, f64)>,
    /// Style layers and their weights lambda_l.
    pub style_layers: Vec<(String, f64)>,
    /// alpha.
    pub content_weight: f64,
    /// beta.
    pub style_weight: f64,
    /// gamma.
    pub tv_weight: f64,
    /// Pooling between blocks.
    pub pool: Pool,
    /// How the style statistics are compared.
    pub style_loss: StyleLoss,
}

/// The style loss of every style layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StyleLoss {
    /// `1/(4 c^2) |G - T|^2` of the Gram matrices (Gatys et al.).
    #[default]
    Gram,
    /// The squared Wasserstein-2 distance between the Gaussians of the features' mean and
    /// covariance, per channel (see [`meancov`]).
    W2,
}

impl Default for LossConfig {
    /// The seed's configuration: content conv4_2; style conv1_1..conv5_1 at 0.2 each; alpha 10,
    /// beta 40, no total variation; average pooling.
    fn default() -> Self {
        let style = ["conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"];
        LossConfig {
            content_layers: vec![("conv4_2".into(), 1.0)],
            style_layers: style.iter().map(|l| (l.to_string(), 0.2)).collect(),
            content_weight: 10.0,
            style_weight: 40.0,
            tv_weight: 0.0,
            pool: Pool::Avg,
            style_loss: StyleLoss::Gram,
        }
    }
}

impl LossConfig {
    /// Resolves layer names to indices, rejecting unknown names and bad weights.
    fn resolve(layers: &[(String, f64)], what: &str) -> Result<Vec<(usize, f64)>> {
        layers
            .iter()
            .map(|(name, w)| {
                let i = layer_index(name).ok_or_else(|| {
                    Error::Config(format!("unknown {what} layer '{name}' (expected conv1_1..conv5_4 or relu1_1..relu5_4)"))
                })?;
                if !w.is_finite() || *w < 0.0 {
                    return Err(Error::Config(format!("{what} layer {name}: weight {w} must be finite and >= 0")));
                }
                Ok((i, *w))
            })
            .collect()
    }

    /// Checks layer names and every weight.
    pub fn validate(&self) -> Result<()> {
        self.depth()?;
        for (name, v) in [
            ("content weight", self.content_weight),
            ("style weight", self.style_weight),
            ("tv weight", self.tv_weight),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(Error::Config(format!("{name} {v} must be finite and >= 0")));
            }
        }
        Ok(())
    }

    /// Indices of the style layers, in the configuration's order.
    pub fn style_indices(&self) -> Result<Vec<usize>> {
        Ok(Self::resolve(&self.style_layers, "style")?
            .into_iter()
            .map(|(i, _)| i)
            .collect())
    }

    /// Number of layers the network must run for this objective.
    pub fn depth(&self) -> Result<usize> {
        let c = Self::resolve(&self.content_layers, "content")?;
        let s = Self::resolve(&self.style_layers, "style")?;
        c.iter()
            .chain(&s)
            .map(|&(i, _)| i + 1)
            .max()
            .ok_or_else(|| Error::Config("no content or style layers".into()))
    }
}

/// Value and gradient of the objective at one image.
#[derive(Debug, Clone)]
pub struct Evaluation<T = f32> {
    /// J_c (unweighted by alpha).
    pub content: f64,
    /// J_s (unweighted by beta).
    pub style: f64,
    /// J_tv (unweighted by gamma).
    pub tv: f64,
    /// J = alpha J_c + beta J_s + gamma J_tv.
    pub total: f64,
    /// dJ/dx, same shape as x.
    pub grad: Array3<T>,
}

impl<T: Real> Evaluation<T> {
    /// All zero, with a gradient of `shape`: a buffer for `Objective::evaluate_into`.
    pub fn zeros(shape: [usize; 3]) -> Self {
        Evaluation {
            content: 0.0,
            style: 0.0,
            tv: 0.0,
            total: 0.0,
            grad: Array3::zeros(shape),
        }
    }
}

/// The style-transfer objective for one content image and a blend of style images.
pub struct Objective<'a, T: Real = f32> {
    vgg: &'a Vgg<T>,
    config: LossConfig,
    depth: usize,
    /// The layers the losses read: the only outputs an evaluation keeps.
    taps: Keep,
    shape: [usize; 3],
    content: Vec<ContentTerm<T>>,
    style: Vec<StyleTerm<T>>,
    /// Buffers of an evaluation, kept between evaluations (locked by each: one evaluation
    /// already uses every core).
    buffers: Mutex<(Workspace<T>, LossScratch<T>, tiled::TileBuffers<T>)>,
    /// Evaluated tile by tile on this grid, when set.
    tiles: Option<TileGrid>,
}

/// One content layer of the objective: its weight w_l, the photograph's activations there and,
/// with a content mask, the loss weight of each position.
struct ContentTerm<T> {
    layer: usize,
    weight: f64,
    target: Vec<T>,
    mask: Option<Vec<T>>,
}

/// One style layer of the objective: its weight lambda_l and the (blended) style's statistics;
/// with a style mask, one style's term and its mask at the layer.
struct StyleTerm<T> {
    layer: usize,
    weight: f64,
    mask: Option<LayerMask<T>>,
    /// The blended Gram matrix `T`.
    gram: Vec<T>,
    /// The blended channel means.
    mean: Vec<T>,
    /// What the mean + covariance loss compares with, when it is the style loss.
    meancov: Option<MeanCovTarget>,
}

fn contiguous<T: Real, S: Data<Elem = T>>(a: &ArrayBase<S, Ix3>) -> std::borrow::Cow<'_, [T]> {
    match a.as_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(a.iter().copied().collect()),
    }
}

fn check_finite<T: Real, S: Data<Elem = T>>(what: &str, a: &ArrayBase<S, Ix3>) -> Result<()> {
    if a.iter().all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err(Error::NonFinite(format!("{what} contains NaN or infinity")))
    }
}

/// The Gram matrices of one style image at the style layers of a configuration: what an
/// objective needs of a style image, computed once and reused (or cached on disk) for every
/// painting in that style at that size.
#[derive(Debug, Clone, PartialEq)]
pub struct StyleGrams<T = f32> {
    /// (layer index, `c x c` Gram matrix), one per distinct style layer, in network order.
    pub layers: Vec<(usize, Vec<T>)>,
    /// The channel means at the same layers, in the same order (what the mean + covariance
    /// loss needs besides the Gram matrix).
    pub means: Vec<Vec<T>>,
}

impl<T: Real> StyleGrams<T> {
    /// Runs `image` (CHW, net space) through `vgg` to the deepest of `layers` with `pool`.
    pub fn compute(vgg: &Vgg<T>, image: &Array3<T>, layers: &[usize], pool: Pool) -> Result<Self> {
        Self::compute_tiled(vgg, image, layers, pool, None)
    }

    /// `compute`, tile by tile when `tile` gives an owned tile side (the same matrices up to
    /// rounding, in memory bounded by the tile).
    pub fn compute_tiled(
        vgg: &Vgg<T>,
        image: &Array3<T>,
        layers: &[usize],
        pool: Pool,
        tile: Option<usize>,
    ) -> Result<Self> {
        let mut layers = layers.to_vec();
        layers.sort_unstable();
        layers.dedup();
        let Some(depth) = layers.last().map(|&i| i + 1) else {
            return Ok(StyleGrams {
                layers: Vec::new(),
                means: Vec::new(),
            });
        };
        vgg.check_input(image.shape(), depth)?;
        check_finite("style image", image)?;
        let (h, w) = (image.shape()[1], image.shape()[2]);
        if let Some(side) = tile {
            let grid = TileGrid::new(h, w, side, depth)?;
            let mut bufs = tiled::TileBuffers::default();
            tiled::tiled_grams(
                vgg,
                &contiguous(image),
                &grid,
                &layers,
                &[],
                Keep::layers(layers.iter().copied()),
                pool,
                &mut Workspace::new(),
                &mut bufs,
                &mut LossScratch::default(),
                &mut None,
            );
            let (grams, means) = bufs.into_stats();
            return Ok(StyleGrams {
                layers: layers.into_iter().zip(grams).collect(),
                means: means
                    .into_iter()
                    .map(|m| m.into_iter().map(T::from_f64).collect())
                    .collect(),
            });
        }
        let mut acts = Workspace::new();
        let keep = Keep::layers(layers.iter().copied());
        vgg.forward_into(
            &contiguous(image),
            h,
            w,
            depth,
            pool,
            keep,
            &mut acts,
            &mut None,
        );
        let mut means = Vec::with_capacity(layers.len());
        let layers = layers
            .into_iter()
            .map(|i| {
                let out = acts.layer(i);
                let mut mean = Vec::new();
                channel_means(out.data, out.c, out.h * out.w, &mut mean);
                means.push(mean.into_iter().map(T::from_f64).collect());
                (i, gram(out.data, out.c, out.h * out.w))
            })
            .collect();
        Ok(StyleGrams { layers, means })
    }

    /// The Gram matrix at layer `i`, if computed.
    pub fn layer(&self, i: usize) -> Option<&[T]> {
        self.layers
            .iter()
            .find(|(l, _)| *l == i)
            .map(|(_, g)| g.as_slice())
    }

    /// The channel means at layer `i`, if computed.
    pub fn mean(&self, i: usize) -> Option<&[T]> {
        let k = self.layers.iter().position(|(l, _)| *l == i)?;
        self.means.get(k).map(|m| m.as_slice())
    }
}

impl<'a, T: Real> Objective<'a, T> {
    /// Precomputes the content targets and the blended Gram targets. Arrays are CHW in net space;
    /// `styles` pairs each style image with its blend weight (normalised to sum to 1).
    pub fn new(
        vgg: &'a Vgg<T>,
        content: &Array3<T>,
        styles: &[(Array3<T>, T)],
        config: &LossConfig,
    ) -> Result<Self> {
        let style_idx = config.style_indices()?;
        let grams = styles
            .iter()
            .enumerate()
            .map(|(k, (img, _))| {
                StyleGrams::compute(vgg, img, &style_idx, config.pool).map_err(|e| match e {
                    Error::NonFinite(_) => {
                        Error::NonFinite(format!("style image {} contains NaN or infinity", k + 1))
                    }
                    e => e,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let blended: Vec<(&StyleGrams<T>, T)> = grams
            .iter()
            .zip(styles)
            .map(|(g, (_, b))| (g, *b))
            .collect();
        Self::with_style_grams(vgg, content, &blended, config)
    }

    /// `new` with the style images' Gram matrices already computed ([`StyleGrams::compute`]
    /// with this configuration's style layers and pooling), each with its blend weight.
    pub fn with_style_grams(
        vgg: &'a Vgg<T>,
        content: &Array3<T>,
        styles: &[(&StyleGrams<T>, T)],
        config: &LossConfig,
    ) -> Result<Self> {
        Self::with_style_grams_tiled(vgg, content, styles, config, None)
    }

    /// `with_style_grams`, evaluated tile by tile when `tile` gives an owned tile side (a
    /// multiple of 16): the same objective and gradient up to rounding, in memory bounded by
    /// the tile rather than the image (see [`crate::tiling`]).
    pub fn with_style_grams_tiled(
        vgg: &'a Vgg<T>,
        content: &Array3<T>,
        styles: &[(&StyleGrams<T>, T)],
        config: &LossConfig,
        tile: Option<usize>,
    ) -> Result<Self> {
        Self::with_masks(vgg, content, styles, config, tile, &Masks::default())
    }

    /// `with_style_grams_tiled` with spatial control ([`Masks`], at the content image's size):
    /// each masked style is its own term, its statistics taken over its mask (its blend
    /// weight scales its term), and a content mask weights the content loss.
    pub fn with_masks(
        vgg: &'a Vgg<T>,
        content: &Array3<T>,
        styles: &[(&StyleGrams<T>, T)],
        config: &LossConfig,
        tile: Option<usize>,
        masks: &Masks<T>,
    ) -> Result<Self> {
        config.validate()?;
        masks.check((content.shape()[1], content.shape()[2]), styles.len())?;
        let content_idx = LossConfig::resolve(&config.content_layers, "content")?;
        let style_idx = LossConfig::resolve(&config.style_layers, "style")?;
        let depth = config.depth()?;
        let shape = content.shape();
        vgg.check_input(shape, depth)?;
        check_finite("content image", content)?;
        let shape = [shape[0], shape[1], shape[2]];

        let tiles = tile
            .map(|side| TileGrid::new(shape[1], shape[2], side, depth))
            .transpose()?;
        let content_targets = match &tiles {
            None => {
                let mut acts = Workspace::new();
                let keep = Keep::layers(content_idx.iter().map(|t| t.0));
                let (x, [_, h, w]) = (contiguous(content), shape);
                vgg.forward_into(&x, h, w, depth, config.pool, keep, &mut acts, &mut None);
                content_idx
                    .iter()
                    .map(|&(i, w)| (i, w, acts.layer(i).data.to_vec()))
                    .collect::<Vec<_>>()
            }
            Some(grid) => {
                let mut layers: Vec<usize> = content_idx.iter().map(|t| t.0).collect();
                layers.sort_unstable();
                layers.dedup();
                let mut outputs =
                    tiled::tiled_outputs(vgg, &contiguous(content), grid, &layers, config.pool);
                // Moved out, not copied (targets are image-sized at print sizes), unless a
                // later term reads the same layer.
                content_idx
                    .iter()
                    .enumerate()
                    .map(|(n, &(i, w))| {
                        let k = layers.binary_search(&i).expect("a content layer");
                        let again = content_idx[n + 1..].iter().any(|t| t.0 == i);
                        let target = if again {
                            outputs[k].clone()
                        } else {
                            std::mem::take(&mut outputs[k])
                        };
                        (i, w, target)
                    })
                    .collect()
            }
        };
        let content_targets = content_targets
            .into_iter()
            .map(|(layer, weight, target)| ContentTerm {
                layer,
                weight,
                target,
                mask: masks
                    .content
                    .as_ref()
                    .map(|(m, k)| masks::content_weights(m, *k, layer)),
            })
            .collect();

        if !style_idx.is_empty() && styles.is_empty() {
            return Err(Error::Config(
                "style layers are set but no style image was given".into(),
            ));
        }
        let blend_sum: f64 = styles.iter().map(|(_, b)| b.as_f64()).sum();
        if styles.iter().any(|(_, b)| !b.is_finite() || *b < T::zero())
            || (!styles.is_empty() && blend_sum <= 0.0)
        {
            return Err(Error::Config(
                "style blend weights must be >= 0 with a positive sum".into(),
            ));
        }
        let blank = |&(layer, weight): &(usize, f64)| StyleTerm {
            layer,
            weight,
            mask: None,
            gram: Vec::new(),
            mean: Vec::new(),
            meancov: None,
        };
        // Unmasked: one term per layer against the blend. Masked: one per style and layer,
        // weighted by its blend weight, against that style alone.
        let masked = masks.any_style();
        let mut style_targets: Vec<StyleTerm<T>> = Vec::new();
        if !masked {
            style_targets = style_idx.iter().map(blank).collect();
        }
        for (k, (grams, b)) in styles.iter().enumerate() {
            let b = T::from_f64(b.as_f64() / blend_sum);
            let own = if masked {
                let at = style_targets.len();
                for (layer, weight) in &style_idx {
                    let mask = masks.style[k].as_ref().map(|m| masks::at_layer(m, *layer));
                    style_targets.push(StyleTerm {
                        weight: weight * b.as_f64(),
                        mask,
                        ..blank(&(*layer, *weight))
                    });
                }
                at
            } else {
                0
            };
            let b = if masked { T::one() } else { b };
            for term in style_targets[own..].iter_mut() {
                let name = crate::vgg::LAYER_NAMES[term.layer];
                let lacks = || Error::Config(format!("style Gram matrices lack layer {name}"));
                let g = grams.layer(term.layer).ok_or_else(lacks)?;
                let m = grams.mean(term.layer).ok_or_else(lacks)?;
                if term.gram.is_empty() {
                    term.gram.resize(g.len(), T::zero());
                    term.mean.resize(m.len(), T::zero());
                }
                if term.gram.len() != g.len()
                    || term.mean.len() != m.len()
                    || m.len().pow(2) != g.len()
                {
                    return Err(Error::Shape(format!(
                        "style statistics at {name} have {} and {} entries, expected {} and {}",
                        g.len(),
                        m.len(),
                        term.gram.len(),
                        term.mean.len()
                    )));
                }
                term.gram.iter_mut().zip(g).for_each(|(t, &g)| *t += b * g);
                term.mean.iter_mut().zip(m).for_each(|(t, &m)| *t += b * m);
            }
        }
        if config.style_loss == StyleLoss::W2 {
            for term in style_targets.iter_mut() {
                term.meancov = Some(MeanCovTarget::new(&term.gram, &term.mean)?);
            }
        }
        Ok(Objective {
            vgg,
            config: config.clone(),
            depth,
            taps: Keep::layers(content_idx.iter().chain(&style_idx).map(|t| t.0)),
            shape,
            content: content_targets,
            style: style_targets,
            buffers: Mutex::new(Default::default()),
            tiles,
        })
    }

    /// Keeps up to `bytes` of the network's Winograd kernels between evaluations
    /// ([`Workspace::keep_kernels`]; same values, less time per evaluation, that much more
    /// memory). A tiled objective transforms them on every call: its tiles are small.
    pub fn keep_kernels(mut self, bytes: usize) -> Self {
        if let (None, Ok(buffers)) = (&self.tiles, self.buffers.get_mut()) {
            buffers.0.keep_kernels(bytes);
        }
        self
    }

    /// The tile grid of a tiled objective.
    pub fn tile_grid(&self) -> Option<&TileGrid> {
        self.tiles.as_ref()
    }

    /// The configuration this objective was built with.
    pub fn config(&self) -> &LossConfig {
        &self.config
    }

    /// The `[3, h, w]` shape every evaluated image must have (the content image's).
    pub fn shape(&self) -> [usize; 3] {
        self.shape
    }

    /// Value of every term and dJ/dx at `x` (CHW, net space, the content image's shape).
    pub fn evaluate(&self, x: &Array3<T>) -> Result<Evaluation<T>> {
        let mut eval = Evaluation::zeros(self.shape);
        self.evaluate_into(x, &mut eval, &mut None)?;
        Ok(eval)
    }

    /// `evaluate` into `eval`, charging each layer and loss to `timings` when given. Once the
    /// first call has sized the buffers (and `eval.grad` has the image's shape), an evaluation
    /// allocates nothing.
    pub fn evaluate_into<S: Data<Elem = T>>(
        &self,
        x: &ArrayBase<S, Ix3>,
        eval: &mut Evaluation<T>,
        timings: &mut Option<Timings>,
    ) -> Result<()> {
        if x.shape() != self.shape {
            return Err(Error::Shape(format!(
                "image has shape {:?}, the objective expects {:?}",
                x.shape(),
                self.shape
            )));
        }
        check_finite("image", x)?;
        let [c, h, w] = self.shape;
        if eval.grad.shape() != self.shape || !eval.grad.is_standard_layout() {
            eval.grad = Array3::zeros((c, h, w));
        }
        let grad = eval
            .grad
            .as_slice_mut()
            .expect("a standard-layout array is contiguous");
        let cfg = &self.config;
        let xs = contiguous(x);
        let mut buffers = self.buffers.lock().unwrap_or_else(|e| e.into_inner());
        let (net, scratch, tile_buffers) = &mut *buffers;
        let (content, style) = match &self.tiles {
            Some(grid) => self.evaluate_tiled(grid, &xs, grad, net, tile_buffers, scratch, timings),
            None => self.evaluate_whole(&xs, grad, net, scratch, timings),
        }?;
        let tv_scale = T::from_f64(cfg.tv_weight);
        let tv = timed(timings, "tv loss", || {
            tv_loss(&xs, (c, h, w), tv_scale, grad, scratch)
        });
        let total = cfg.content_weight * content + cfg.style_weight * style + cfg.tv_weight * tv;
        if !total.is_finite() {
            return Err(Error::NonFinite(format!("objective is {total}")));
        }
        (eval.content, eval.style, eval.tv, eval.total) = (content, style, tv, total);
        Ok(())
    }

    /// The untiled evaluation: content and style values, with their gradient written to
    /// `grad`.
    fn evaluate_whole(
        &self,
        xs: &[T],
        grad: &mut [T],
        net: &mut Workspace<T>,
        scratch: &mut LossScratch<T>,
        timings: &mut Option<Timings>,
    ) -> Result<(f64, f64)> {
        let cfg = &self.config;
        let [_, h, w] = self.shape;
        self.vgg
            .forward_into(xs, h, w, self.depth, cfg.pool, self.taps, net, timings);
        // Losses are evaluated inside the backward pass, layer by layer, adding their
        // gradients to the one flowing down.
        let (mut content, mut style) = (0.0, 0.0);
        let mut failed = None;
        self.vgg
            .backward_into(net, cfg.pool, grad, timings, |i, out, g, timings| {
                for term in self.content.iter().filter(|t| t.layer == i) {
                    let scale = T::from_f64(cfg.content_weight * term.weight);
                    content += term.weight
                        * timed(timings, "content loss", || match &term.mask {
                            None => content_loss(out.data, &term.target, scale, g, scratch),
                            Some(u) => {
                                let all = Owned::whole(out.h, out.w);
                                let dims = (out.h, out.w);
                                let sums = &mut scratch.sums;
                                content_owned(
                                    out,
                                    &all,
                                    &term.target,
                                    dims,
                                    Some(u),
                                    scale,
                                    g,
                                    sums,
                                )
                            }
                        });
                }
                for term in self.style.iter().filter(|t| t.layer == i) {
                    let scale = T::from_f64(cfg.style_weight * term.weight);
                    let n = out.h * out.w;
                    let value = timed(timings, "style loss", || {
                        match (&term.mask, &term.meancov) {
                            (Some(mask), _) => masks::masked_style_loss(
                                out.data, out.c, term, mask, scale, g, scratch,
                            ),
                            (None, None) => Ok(style_loss(
                                out.data, out.c, n, &term.gram, scale, g, scratch,
                            )),
                            (None, Some(t)) => {
                                meancov_loss(out.data, out.c, n, t, scale, g, scratch)
                            }
                        }
                    });
                    match value {
                        Ok(v) => style += term.weight * v,
                        Err(e) => {
                            failed.get_or_insert(e);
                        }
                    }
                }
            });
        failed.map_or(Ok((content, style)), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testutil::{max_rel_err, noise, numeric_grad};

    /// Runs a loss that adds its gradient to a buffer, starting from ones so the test also
    /// checks that it adds rather than overwrites; returns the value and the gradient alone.
    fn value_and_grad(
        len: usize,
        f: impl FnOnce(&mut [f64], &mut LossScratch<f64>) -> f64,
    ) -> (f64, Vec<f64>) {
        let mut grad = vec![1.0; len];
        let value = f(&mut grad, &mut LossScratch::default());
        (value, grad.iter().map(|g| g - 1.0).collect())
    }

    #[test]
    fn gram_matches_definition() {
        // One block over several pixel chunks; several blocks (the last partial) over one and two.
        for (c, n) in [(3, 20_000), (150, 9_000), (130, 100)] {
            let f = noise(c * n, 1);
            let g = gram(&f, c, n);
            for i in 0..c {
                for j in 0..c {
                    let want: f64 =
                        (0..n).map(|p| f[i * n + p] * f[j * n + p]).sum::<f64>() / n as f64;
                    assert!((g[i * c + j] - want).abs() < 1e-12, "{c} {n}");
                }
            }
        }
    }

    /// The f32 Gram (the row-dot kernel where the CPU has one) against the f64 definition:
    /// diagonal and off-diagonal blocks, channel counts that leave partial tiles and blocks,
    /// pixel counts that leave partial vectors, runs and chunks; and exactly symmetric.
    #[test]
    fn f32_gram_matches_f64_definition_and_is_symmetric() {
        for (c, n) in [
            (1, 5),
            (3, 20_000),
            (7, 1_037),
            (64, 9_000),
            (70, 2_049),
            (130, 100),
        ] {
            let f = noise(c * n, 4);
            let f32s: Vec<f32> = f.iter().map(|&x| x as f32).collect();
            let g = gram(&f32s, c, n);
            for i in 0..c {
                for j in 0..c {
                    let want: f64 = (0..n)
                        .map(|p| f64::from(f32s[i * n + p]) * f64::from(f32s[j * n + p]))
                        .sum::<f64>()
                        / n as f64;
                    let got = f64::from(g[i * c + j]);
                    assert!(
                        (got - want).abs() < 2e-6,
                        "{c} {n} ({i}, {j}): {got} vs {want}"
                    );
                    assert_eq!(g[i * c + j], g[j * c + i], "{c} {n} not symmetric");
                }
            }
        }
    }

    #[test]
    fn style_gradient_matches_finite_differences() {
        let (c, n) = (4, 15);
        let f = noise(c * n, 2);
        // Targets are blends of Gram matrices, hence symmetric, which the gradient relies on.
        let r = noise(c * c, 3);
        let target: Vec<f64> = (0..c * c)
            .map(|k| 0.05 * (r[k] + r[(k % c) * c + k / c]))
            .collect();
        let run = |f: &[f64], scale| {
            value_and_grad(c * n, |g, s| style_loss(f, c, n, &target, scale, g, s))
        };
        let (value, grad) = run(&f, 2.5);
        let loss = |f: &[f64]| run(f, 1.0).0;
        assert!((value - loss(&f)).abs() < 1e-15);
        let num: Vec<f64> = numeric_grad(&f, 1e-6, loss)
            .iter()
            .map(|g| g * 2.5)
            .collect();
        assert!(max_rel_err(&grad, &num) < 1e-8);
    }

    #[test]
    fn content_gradient_matches_finite_differences() {
        let a = noise(50, 4);
        let t = noise(50, 5);
        let run = |a: &[f64], scale| value_and_grad(50, |g, s| content_loss(a, &t, scale, g, s));
        let (_, grad) = run(&a, 3.0);
        let num: Vec<f64> = numeric_grad(&a, 1e-6, |a| run(a, 1.0).0)
            .iter()
            .map(|g| g * 3.0)
            .collect();
        assert!(max_rel_err(&grad, &num) < 1e-8);
    }

    #[test]
    fn tv_value_and_gradient() {
        // One channel [[0, 1], [3, 5]]: differences 3, 4 (vertical) and 1, 2 (horizontal).
        let (v, _) = value_and_grad(4, |g, s| {
            tv_loss(&[0.0, 1.0, 3.0, 5.0], (1, 2, 2), 1.0, g, s)
        });
        assert!((v - (9.0 + 16.0 + 1.0 + 4.0) / 4.0).abs() < 1e-15);
        // One band of rows; several, the last partial; one row; one column.
        for (c, h, w) in [
            (2, 5, 7),
            (2, 2 * TV_ROWS + 3, 4),
            (3, 1, 6),
            (1, TV_ROWS + 1, 1),
        ] {
            let x = noise(c * h * w, 6);
            let run = |x: &[f64], scale| {
                value_and_grad(c * h * w, |g, s| tv_loss(x, (c, h, w), scale, g, s))
            };
            let (_, grad) = run(&x, 0.5);
            let num: Vec<f64> = numeric_grad(&x, 1e-6, |x| run(x, 1.0).0)
                .iter()
                .map(|g| g * 0.5)
                .collect();
            assert!(max_rel_err(&grad, &num) < 1e-8, "{c} {h} {w}");
        }
    }

    #[test]
    fn config_rejects_unknown_layers_and_negative_weights() {
        let mut cfg = LossConfig::default();
        assert_eq!(cfg.depth().unwrap(), 13); // conv5_1
        cfg.style_layers = vec![("relu5_4".into(), 1.0)];
        assert_eq!(cfg.depth().unwrap(), 16);
        cfg.style_layers = vec![("conv6_1".into(), 1.0)];
        assert!(matches!(cfg.depth(), Err(Error::Config(m)) if m.contains("conv6_1")));
        cfg.style_layers = vec![("conv1_1".into(), -1.0)];
        assert!(cfg.depth().is_err());
    }
}
