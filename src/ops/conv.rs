//! 3x3, stride 1, padding 1 convolution as tiled im2col + GEMM.
//!
//! Layout: input `cin x h x w`, weights `cout x cin x 3 x 3` (OIHW), output `cout x h x w`, all
//! row-major. The output is cut into a fixed grid of tiles (output-channel range x pixel range)
//! that depends only on the layer shape; each tile unrolls its own im2col block (at most about
//! `COL_TILE_ELEMS` elements, so no full-size im2col buffer ever exists) and runs one
//! single-threaded GEMM over the whole reduction. Every output element is therefore computed by
//! the same instructions whatever the thread count, which keeps results bitwise reproducible.
//!
//! The gradient with respect to the input is the same convolution applied to the output gradient
//! with the kernel rotated by 180 degrees and its channel axes swapped (`rotate_kernel`).

use super::SharedMut;
use crate::gemm::Real;
use rayon::prelude::*;

/// Target size of one tile's im2col block, in elements.
const COL_TILE_ELEMS: usize = 1 << 20;
/// Narrower tiles waste time re-packing the weights inside the GEMM.
const MIN_TILE_COLS: usize = 256;
/// Split output channels too when there are fewer pixel tiles than this.
const MIN_TILES: usize = 8;
/// Smallest output-channel chunk worth a separate GEMM.
const MIN_TILE_ROWS: usize = 16;

/// Fixed tiling of one convolution: `(pixels per tile, output channels per tile)`.
fn tiling(k: usize, cout: usize, hw: usize) -> (usize, usize) {
    let n_tile = (COL_TILE_ELEMS / k).max(MIN_TILE_COLS).min(hw).max(1);
    let n_tiles = hw.div_ceil(n_tile);
    let m_chunks = MIN_TILES
        .div_ceil(n_tiles)
        .clamp(1, (cout / MIN_TILE_ROWS).max(1));
    (n_tile, cout.div_ceil(m_chunks))
}

/// Unrolls pixels `p0..p1` of `input` into `col` (`cin*9` rows of `p1 - p0`), row
/// `ci*9 + kh*3 + kw` holding the input shifted by `(kh - 1, kw - 1)`, zero outside the image.
fn im2col<T: Real>(input: &[T], h: usize, w: usize, p0: usize, p1: usize, col: &mut [T]) {
    let n = p1 - p0;
    let cin = input.len() / (h * w);
    for ci in 0..cin {
        let plane = &input[ci * h * w..(ci + 1) * h * w];
        for kh in 0..3 {
            for kw in 0..3 {
                let row = &mut col[((ci * 3 + kh) * 3 + kw) * n..][..n];
                let mut p = p0;
                while p < p1 {
                    let (y, x0) = (p / w, p % w);
                    let x1 = w.min(x0 + (p1 - p));
                    let dst = &mut row[p - p0..p - p0 + (x1 - x0)];
                    p += x1 - x0;
                    let sy = y + kh;
                    if sy < 1 || sy > h {
                        dst.fill(T::zero());
                        continue;
                    }
                    let src = &plane[(sy - 1) * w..sy * w];
                    // Source column is x + kw - 1; valid x in [lo, hi).
                    let lo = x0.max(1 - kw.min(1));
                    let hi = x1.min(w + 1 - kw);
                    if lo >= hi {
                        dst.fill(T::zero());
                        continue;
                    }
                    dst[..lo - x0].fill(T::zero());
                    dst[lo - x0..hi - x0].copy_from_slice(&src[lo + kw - 1..hi + kw - 1]);
                    dst[hi - x0..].fill(T::zero());
                }
            }
        }
    }
}

/// `out = conv3x3(input, weights) + bias`, shapes as in the module docs.
#[allow(clippy::too_many_arguments)]
pub fn conv3x3<T: Real>(
    input: &[T],
    cin: usize,
    h: usize,
    w: usize,
    weights: &[T],
    cout: usize,
    bias: Option<&[T]>,
    out: &mut [T],
) {
    let (hw, k) = (h * w, cin * 9);
    assert_eq!(input.len(), cin * hw, "conv input");
    assert_eq!(weights.len(), cout * k, "conv weights");
    assert_eq!(out.len(), cout * hw, "conv output");
    if let Some(b) = bias {
        assert_eq!(b.len(), cout, "conv bias");
    }
    if hw == 0 || cout == 0 {
        return;
    }
    let (n_tile, m_tile) = tiling(k, cout, hw);
    let n_tiles = hw.div_ceil(n_tile);
    let m_chunks = cout.div_ceil(m_tile);
    let out_ptr = SharedMut(out.as_mut_ptr());
    (0..n_tiles * m_chunks).into_par_iter().for_each_init(
        || vec![T::zero(); k * n_tile],
        |col, t| {
            let (p0, m0) = ((t / m_chunks) * n_tile, (t % m_chunks) * m_tile);
            let (p1, m1) = ((p0 + n_tile).min(hw), (m0 + m_tile).min(cout));
            let n = p1 - p0;
            let col = &mut col[..k * n];
            im2col(input, h, w, p0, p1, col);
            let out_ptr = out_ptr;
            // SAFETY: the tiles (m0..m1) x (p0..p1) partition the cout x hw output, so each task
            // writes a region no other task touches; A and B are in-bounds slices of `weights`
            // and `col`, which do not alias `out`.
            unsafe {
                let c = out_ptr.0.add(m0 * hw + p0);
                T::gemm(
                    m1 - m0,
                    k,
                    n,
                    T::one(),
                    weights[m0 * k..].as_ptr(),
                    k as isize,
                    1,
                    col.as_ptr(),
                    n as isize,
                    1,
                    T::zero(),
                    c,
                    hw as isize,
                    1,
                );
                if let Some(b) = bias {
                    for (m, &bm) in b.iter().enumerate().take(m1).skip(m0) {
                        let row = std::slice::from_raw_parts_mut(out_ptr.0.add(m * hw + p0), n);
                        for v in row {
                            *v += bm;
                        }
                    }
                }
            }
        },
    );
}

/// The kernel of the input-gradient convolution: `[ci][co][kh][kw] = w[co][ci][2-kh][2-kw]`.
pub fn rotate_kernel<T: Real>(weights: &[T], cout: usize, cin: usize) -> Vec<T> {
    assert_eq!(weights.len(), cout * cin * 9);
    let mut r = vec![T::zero(); weights.len()];
    for co in 0..cout {
        for ci in 0..cin {
            for t in 0..9 {
                r[(ci * cout + co) * 9 + (8 - t)] = weights[(co * cin + ci) * 9 + t];
            }
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testutil::{max_rel_err, noise, numeric_grad};

    /// Direct definition of the convolution, the oracle for the tiled version.
    fn naive(x: &[f64], cin: usize, h: usize, w: usize, wt: &[f64], cout: usize) -> Vec<f64> {
        let mut o = vec![0.0; cout * h * w];
        for co in 0..cout {
            for y in 0..h {
                for xx in 0..w {
                    let mut s = 0.0;
                    for ci in 0..cin {
                        for kh in 0..3 {
                            for kw in 0..3 {
                                let (sy, sx) = (y as isize + kh - 1, xx as isize + kw - 1);
                                if sy >= 0 && sx >= 0 && (sy as usize) < h && (sx as usize) < w {
                                    s += wt[((co * cin + ci) * 3 + kh as usize) * 3 + kw as usize]
                                        * x[(ci * h + sy as usize) * w + sx as usize];
                                }
                            }
                        }
                    }
                    o[(co * h + y) * w + xx] = s;
                }
            }
        }
        o
    }

    #[test]
    fn forward_matches_direct_definition_on_odd_shapes() {
        for &(cin, cout, h, w) in &[(1, 1, 1, 1), (3, 5, 4, 7), (2, 40, 9, 1), (4, 3, 1, 6)] {
            let x = noise(cin * h * w, 1);
            let wt = noise(cout * cin * 9, 2);
            let b = noise(cout, 3);
            let mut o = vec![0.0; cout * h * w];
            conv3x3(&x, cin, h, w, &wt, cout, Some(&b), &mut o);
            let mut want = naive(&x, cin, h, w, &wt, cout);
            for (i, v) in want.iter_mut().enumerate() {
                *v += b[i / (h * w)];
            }
            assert!(max_rel_err(&o, &want) < 1e-13, "{cin} {cout} {h} {w}");
        }
    }

    #[test]
    fn tiled_path_matches_direct_definition() {
        // Enough pixels and channels for several pixel tiles and channel chunks.
        let (cin, cout, h, w) = (120, 48, 30, 37);
        assert!(hw_tiles(cin, cout, h * w) > 1);
        let x = noise(cin * h * w, 5);
        let wt = noise(cout * cin * 9, 6);
        let mut o = vec![0.0; cout * h * w];
        conv3x3(&x, cin, h, w, &wt, cout, None, &mut o);
        assert!(max_rel_err(&o, &naive(&x, cin, h, w, &wt, cout)) < 1e-12);
    }

    fn hw_tiles(cin: usize, cout: usize, hw: usize) -> usize {
        let (n, m) = tiling(cin * 9, cout, hw);
        hw.div_ceil(n) * cout.div_ceil(m)
    }

    #[test]
    fn input_gradient_matches_finite_differences() {
        let (cin, cout, h, w) = (3, 4, 5, 6);
        let x = noise(cin * h * w, 7);
        let wt = noise(cout * cin * 9, 8);
        let b = noise(cout, 9);
        let gout = noise(cout * h * w, 10);
        let loss = |x: &[f64]| {
            let mut o = vec![0.0; cout * h * w];
            conv3x3(x, cin, h, w, &wt, cout, Some(&b), &mut o);
            o.iter().zip(&gout).map(|(a, g)| a * g).sum::<f64>()
        };
        let mut gin = vec![0.0; cin * h * w];
        conv3x3(
            &gout,
            cout,
            h,
            w,
            &rotate_kernel(&wt, cout, cin),
            cin,
            None,
            &mut gin,
        );
        let num = numeric_grad(&x, 1e-5, loss);
        assert!(max_rel_err(&gin, &num) < 1e-9);
    }

    #[test]
    fn f32_result_is_independent_of_thread_count() {
        let (cin, cout, h, w) = (64, 64, 40, 40);
        let x: Vec<f32> = noise(cin * h * w, 1).iter().map(|&v| v as f32).collect();
        let wt: Vec<f32> = noise(cout * cin * 9, 2).iter().map(|&v| v as f32).collect();
        let run = |threads| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut o = vec![0.0f32; cout * h * w];
            pool.install(|| conv3x3(&x, cin, h, w, &wt, cout, None, &mut o));
            o
        };
        assert_eq!(run(1), run(3));
    }
}
