//! The exact tiled evaluation (DESIGN.md, "Exact tiling"; geometry in [`crate::tiling`]).
//!
//! Pass 1 runs each tile forward and sums, into every style layer's Gram matrix, the outer
//! products of the positions the tile owns. Pass 2 runs each tile forward again, forms the tap
//! gradients at its owned positions from the global Gram matrices (content is local), runs the
//! tile backward and adds the tile's input gradient into the image's. Pass 2 walks the tiles
//! backwards, so the last tile of pass 1 is still in the workspace and is not run again.
//! Memory: one tile's buffers, whatever the size of the image.

use super::masks::{accumulate_weighted, add_masked_grad, masked_term, LayerMask};
use super::{add_style_grad, content_owned, LossScratch, Objective};
use crate::error::Result;
use crate::gemm::Real;
use crate::ops::Pool;
use crate::profile::Timings;
use crate::tiling::{Span, Tile, TileGrid};
use crate::vgg::{block_of, timed, Keep, Vgg, Workspace};
use rayon::prelude::*;

/// Buffers of the tiled passes, reused from tile to tile and from evaluation to evaluation.
#[derive(Debug, Default)]
pub(crate) struct TileBuffers<T> {
    /// The tile's region of the image.
    input: Vec<T>,
    /// The gradient with respect to `input`.
    grad: Vec<T>,
    /// One layer's owned activations, `c x positions`, and their gradient.
    packed: Vec<T>,
    packed_grad: Vec<T>,
    /// Pass 1's Gram matrices and channel means (one per distinct style layer), and each
    /// style term's gradient pieces: G - T, or D and the bias of the mean + covariance loss.
    grams: Vec<Vec<T>>,
    means: Vec<Vec<f64>>,
    diffs: Vec<Vec<T>>,
    biases: Vec<Vec<T>>,
    /// Masked style terms: pass 1's weighted Gram matrices and sums, one per term, the
    /// tile's crop of a mask and the weighted features.
    masked_grams: Vec<Vec<T>>,
    masked_sums: Vec<Vec<f64>>,
    weights: Vec<T>,
    weighted: Vec<T>,
}

/// Copies the `ys x xs` window of `src` (`c x h x w`) into `dst` (`c x ys.len() x xs.len()`).
fn crop<T: Real>(
    src: &[T],
    (c, h, w): (usize, usize, usize),
    ys: Span,
    xs: Span,
    dst: &mut Vec<T>,
) {
    assert_eq!(src.len(), c * h * w);
    let plane = ys.len() * xs.len();
    dst.clear();
    dst.resize(c * plane, T::zero());
    if plane == 0 {
        return;
    }
    dst.par_chunks_mut(plane)
        .zip(src.par_chunks(h * w))
        .for_each(|(d, s)| {
            for (row, y) in d.chunks_mut(xs.len()).zip(ys.start..ys.end) {
                row.copy_from_slice(&s[y * w + xs.start..y * w + xs.end]);
            }
        });
}

/// Adds (or, without `add`, copies) `src` (`c x ys.len() x xs.len()`) into the `ys x xs`
/// window of `dst` (`c x h x w`).
fn paste<T: Real>(
    dst: &mut [T],
    (c, h, w): (usize, usize, usize),
    ys: Span,
    xs: Span,
    src: &[T],
    add: bool,
) {
    assert_eq!(dst.len(), c * h * w);
    let plane = ys.len() * xs.len();
    assert_eq!(src.len(), c * plane);
    if plane == 0 {
        return;
    }
    dst.par_chunks_mut(h * w)
        .zip(src.par_chunks(plane))
        .for_each(|(d, s)| {
            for (row, y) in s.chunks(xs.len()).zip(ys.start..ys.end) {
                let d = &mut d[y * w + xs.start..y * w + xs.end];
                if add {
                    d.iter_mut().zip(row).for_each(|(d, &s)| *d += s);
                } else {
                    d.copy_from_slice(row);
                }
            }
        });
}

/// Runs `tile`'s region of `x` (`3 x h x w`) through the first `depth` layers into `ws`.
#[allow(clippy::too_many_arguments)]
fn forward_tile<T: Real>(
    vgg: &Vgg<T>,
    x: &[T],
    (h, w): (usize, usize),
    tile: &Tile,
    depth: usize,
    (pool, keep): (Pool, Keep),
    input: &mut Vec<T>,
    ws: &mut Workspace<T>,
    timings: &mut Option<Timings>,
) {
    timed(timings, "tile crop", || {
        crop(x, (3, h, w), tile.region_y, tile.region_x, input)
    });
    let (rh, rw) = tile.region_dims();
    vgg.forward_into(input, rh, rw, depth, pool, keep, ws, timings);
}

/// Positions of layer `layer` in the whole image of `grid`.
fn layer_positions(grid: &TileGrid, layer: usize) -> usize {
    let b = block_of(layer);
    (grid.height >> b) * (grid.width >> b)
}

/// Pass 1: the Gram matrices `F F^T / n` and channel means of `x` at `layers` (distinct,
/// ascending) into `grams` and `means`, tile by tile, keeping `keep` (at least `layers`); for
/// each `masked` term (a layer among `layers` and a mask at it), the weighted statistics
/// into `masked_grams` and `masked_sums` (`F F^T w / W` and `F w`). The last tile's
/// activations stay in `ws`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn tiled_grams<T: Real>(
    vgg: &Vgg<T>,
    x: &[T],
    grid: &TileGrid,
    layers: &[usize],
    masked: &[(usize, &LayerMask<T>)],
    keep: Keep,
    pool: Pool,
    ws: &mut Workspace<T>,
    bufs: &mut TileBuffers<T>,
    scratch: &mut LossScratch<T>,
    timings: &mut Option<Timings>,
) {
    let Some(depth) = layers.last().map(|&i| i + 1) else {
        return;
    };
    let TileBuffers {
        input,
        packed,
        grams,
        means,
        masked_grams,
        masked_sums,
        weights,
        weighted,
        ..
    } = bufs;
    masked_grams.resize_with(masked.len(), Vec::new);
    masked_sums.resize_with(masked.len(), Vec::new);
    for (g, s) in masked_grams.iter_mut().zip(masked_sums.iter_mut()) {
        g.clear();
        s.clear();
    }
    grams.resize_with(layers.len(), Vec::new);
    means.resize_with(layers.len(), Vec::new);
    for g in grams.iter_mut() {
        g.clear();
    }
    for m in means.iter_mut() {
        m.clear();
    }
    for tile in &grid.tiles {
        forward_tile(
            vgg,
            x,
            (grid.height, grid.width),
            tile,
            depth,
            (pool, keep),
            input,
            ws,
            timings,
        );
        for ((&i, g), sums) in layers.iter().zip(grams.iter_mut()).zip(means.iter_mut()) {
            let out = ws.layer(i);
            let owned = tile.owned_at(i);
            if g.is_empty() {
                g.resize(out.c * out.c, T::zero());
                sums.resize(out.c, 0.0);
            }
            if owned.positions() == 0 {
                continue;
            }
            let scale = T::one() / T::from_f64(layer_positions(grid, i) as f64);
            timed(timings, "tile gram", || {
                crop(
                    out.data,
                    (out.c, out.h, out.w),
                    owned.local_y,
                    owned.local_x,
                    packed,
                );
                super::gram_scaled_into(
                    packed,
                    out.c,
                    owned.positions(),
                    scale,
                    true,
                    g,
                    &mut scratch.partials,
                );
                let n = owned.positions();
                for (sum, row) in sums.iter_mut().zip(packed.chunks(n)) {
                    *sum += row.iter().map(|v| v.as_f64()).sum::<f64>();
                }
            });
        }
        for ((&(i, mask), g), sums) in masked
            .iter()
            .zip(masked_grams.iter_mut())
            .zip(masked_sums.iter_mut())
        {
            let out = ws.layer(i);
            let owned = tile.owned_at(i);
            if g.is_empty() {
                g.resize(out.c * out.c, T::zero());
                sums.resize(out.c, 0.0);
            }
            if owned.positions() == 0 || mask.sum <= 0.0 {
                continue;
            }
            timed(timings, "tile gram", || {
                crop(
                    out.data,
                    (out.c, out.h, out.w),
                    owned.local_y,
                    owned.local_x,
                    packed,
                );
                crop_mask(mask, grid, i, &owned, weights);
                let scale = T::from_f64(1.0 / mask.sum);
                let n = owned.positions();
                accumulate_weighted(
                    packed,
                    out.c,
                    n,
                    weights,
                    scale,
                    g,
                    sums,
                    weighted,
                    &mut scratch.partials,
                );
            });
        }
    }
    for (&i, m) in layers.iter().zip(means.iter_mut()) {
        let n = layer_positions(grid, i) as f64;
        m.iter_mut().for_each(|v| *v /= n);
    }
}

/// The owned positions' weights of `mask` (at layer `layer` of `grid`'s image) into `dst`.
fn crop_mask<T: Real>(
    mask: &LayerMask<T>,
    grid: &TileGrid,
    layer: usize,
    owned: &crate::tiling::Owned,
    dst: &mut Vec<T>,
) {
    let b = block_of(layer);
    let (lh, lw) = (grid.height >> b, grid.width >> b);
    let (ys, xs) = owned.global_spans();
    crop(&mask.weights, (1, lh, lw), ys, xs, dst);
}

/// The outputs of `x` at `layers` (distinct, ascending), each `c x h_l x w_l` as the whole
/// image's forward pass gives it, assembled tile by tile.
pub(crate) fn tiled_outputs<T: Real>(
    vgg: &Vgg<T>,
    x: &[T],
    grid: &TileGrid,
    layers: &[usize],
    pool: Pool,
) -> Vec<Vec<T>> {
    let Some(depth) = layers.last().map(|&i| i + 1) else {
        return Vec::new();
    };
    let keep = Keep::layers(layers.iter().copied());
    let mut ws = Workspace::new();
    let mut bufs = TileBuffers::default();
    let mut outputs: Vec<Vec<T>> = vec![Vec::new(); layers.len()];
    for tile in &grid.tiles {
        let dims = (grid.height, grid.width);
        forward_tile(
            vgg,
            x,
            dims,
            tile,
            depth,
            (pool, keep),
            &mut bufs.input,
            &mut ws,
            &mut None,
        );
        for (&i, whole) in layers.iter().zip(outputs.iter_mut()) {
            let out = ws.layer(i);
            let b = block_of(i);
            let (lh, lw) = (grid.height >> b, grid.width >> b);
            if whole.is_empty() {
                whole.resize(out.c * lh * lw, T::zero());
            }
            let owned = tile.owned_at(i);
            crop(
                out.data,
                (out.c, out.h, out.w),
                owned.local_y,
                owned.local_x,
                &mut bufs.packed,
            );
            let (ys, xs) = owned.global_spans();
            paste(whole, (out.c, lh, lw), ys, xs, &bufs.packed, false);
        }
    }
    outputs
}

impl<T: Real> Objective<'_, T> {
    /// The objective's content and style values (unweighted) at `x`, with dJ/dx minus the
    /// total-variation term written to `grad`, evaluated tile by tile on `grid`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn evaluate_tiled(
        &self,
        grid: &TileGrid,
        x: &[T],
        grad: &mut [T],
        ws: &mut Workspace<T>,
        bufs: &mut TileBuffers<T>,
        scratch: &mut LossScratch<T>,
        timings: &mut Option<Timings>,
    ) -> Result<(f64, f64)> {
        let cfg = &self.config;
        let (h, w) = (grid.height, grid.width);
        // Pass 1: the global Gram matrices, then each style term's value and G - T.
        let mut layers: Vec<usize> = self.style.iter().map(|t| t.layer).collect();
        layers.sort_unstable();
        layers.dedup();
        let masked: Vec<(usize, &LayerMask<T>)> = self
            .style
            .iter()
            .filter_map(|t| t.mask.as_ref().map(|m| (t.layer, m)))
            .collect();
        tiled_grams(
            self.vgg, x, grid, &layers, &masked, self.taps, cfg.pool, ws, bufs, scratch, timings,
        );
        let mut style = 0.0;
        bufs.diffs.resize_with(self.style.len(), Vec::new);
        bufs.biases.resize_with(self.style.len(), Vec::new);
        let mut pieces = super::MeanCovGrad::default();
        let mut masked_at = 0;
        for (k, term) in self.style.iter().enumerate() {
            if let Some(mask) = &term.mask {
                let (g, sums) = (&bufs.masked_grams[masked_at], &bufs.masked_sums[masked_at]);
                masked_at += 1;
                if mask.sum > 0.0 {
                    let mean: Vec<f64> = sums.iter().map(|s| s / mask.sum).collect();
                    let (diff, bias) = (&mut bufs.diffs[k], &mut bufs.biases[k]);
                    style += term.weight * masked_term(term, g, &mean, diff, bias, &mut pieces)?;
                }
                continue;
            }
            let at = layers.binary_search(&term.layer).expect("a style layer");
            let (g, diff) = (&bufs.grams[at], &mut bufs.diffs[k]);
            match &term.meancov {
                None => {
                    diff.clear();
                    diff.extend(g.iter().zip(&term.gram).map(|(&g, &t)| g - t));
                    let c2 = diff.len() as f64;
                    let value = diff.iter().map(|d| d.as_f64().powi(2)).sum::<f64>() / (4.0 * c2);
                    style += term.weight * value;
                }
                Some(target) => {
                    style += term.weight * target.term(g, &bufs.means[at], &mut pieces)?;
                    std::mem::swap(diff, &mut pieces.diff);
                    std::mem::swap(&mut bufs.biases[k], &mut pieces.bias);
                }
            }
        }
        // Pass 2, last tile first: its forward pass is the one pass 1 left in `ws` when both
        // passes run the same layers.
        let mut content = 0.0;
        grad.fill(T::zero());
        let TileBuffers {
            input,
            grad: tile_grad,
            packed,
            packed_grad,
            diffs,
            biases,
            weights,
            weighted,
            ..
        } = bufs;
        let reuse = layers.last().map(|&i| i + 1) == Some(self.depth);
        for (k, tile) in grid.tiles.iter().enumerate().rev() {
            if !(reuse && k + 1 == grid.tiles.len()) {
                forward_tile(
                    self.vgg,
                    x,
                    (h, w),
                    tile,
                    self.depth,
                    (cfg.pool, self.taps),
                    input,
                    ws,
                    timings,
                );
            }
            let (rh, rw) = tile.region_dims();
            tile_grad.resize(3 * rh * rw, T::zero());
            self.vgg
                .backward_into(ws, cfg.pool, tile_grad, timings, |i, out, g, timings| {
                    let owned = tile.owned_at(i);
                    if owned.positions() == 0 {
                        return;
                    }
                    for term in self.content.iter().filter(|t| t.layer == i) {
                        let b = block_of(i);
                        let scale = T::from_f64(cfg.content_weight * term.weight);
                        let whole = (grid.height >> b, grid.width >> b);
                        content += term.weight
                            * timed(timings, "content loss", || {
                                content_owned(
                                    out,
                                    &owned,
                                    &term.target,
                                    whole,
                                    term.mask.as_deref(),
                                    scale,
                                    g,
                                    &mut scratch.sums,
                                )
                            });
                    }
                    timed(timings, "style loss", || {
                        let n = owned.positions();
                        let (ys, xs) = (owned.local_y, owned.local_x);
                        let whole = layer_positions(grid, i) as f64;
                        let mut first = true;
                        for (k, term) in self.style.iter().enumerate() {
                            if term.layer != i || term.mask.as_ref().is_some_and(|m| m.sum <= 0.0) {
                                continue;
                            }
                            if first {
                                crop(out.data, (out.c, out.h, out.w), ys, xs, packed);
                                packed_grad.resize(out.c * n, T::zero());
                            }
                            let c = out.c as f64;
                            // A masked term's statistics are over its mask's weight W.
                            let count = term.mask.as_ref().map_or(whole, |m| m.sum);
                            let (scale, bias) = match term.meancov {
                                None => (term.weight / (c * c * count), None),
                                Some(_) => (term.weight * 2.0 / (c * count), Some(&biases[k][..])),
                            };
                            let scale = T::from_f64(cfg.style_weight * scale);
                            match &term.mask {
                                None => add_style_grad(
                                    scale,
                                    &diffs[k],
                                    bias,
                                    packed,
                                    out.c,
                                    n,
                                    !first,
                                    packed_grad,
                                ),
                                Some(mask) => {
                                    crop_mask(mask, grid, i, &owned, weights);
                                    add_masked_grad(
                                        scale,
                                        &diffs[k],
                                        bias,
                                        packed,
                                        weights,
                                        out.c,
                                        n,
                                        !first,
                                        packed_grad,
                                        weighted,
                                    );
                                }
                            }
                            first = false;
                        }
                        if !first {
                            paste(g, (out.c, out.h, out.w), ys, xs, packed_grad, true);
                        }
                    });
                });
            timed(timings, "tile add", || {
                paste(
                    grad,
                    (3, h, w),
                    tile.region_y,
                    tile.region_x,
                    tile_grad,
                    true,
                )
            });
        }
        Ok((content, style))
    }
}

impl<T> TileBuffers<T> {
    /// Pass 1's Gram matrices and channel means.
    pub(crate) fn into_stats(self) -> (Vec<Vec<T>>, Vec<Vec<f64>>) {
        (self.grams, self.means)
    }
}
