//! 2x2 stride-2 pooling (average, max or L2), floor mode: an odd last row or column is dropped,
//! and gets zero gradient, as in PyTorch.

use super::simd::widest;
use crate::gemm::Real;
use rayon::prelude::*;

/// Pooling kind between VGG blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pool {
    /// Average pooling: smoother gradients, what Gatys et al. recommend.
    #[default]
    Avg,
    /// Max pooling, as in the original VGG.
    Max,
    /// L2 pooling, the root mean square of the window: between average and max, and, like
    /// average pooling, the identity on a constant window, so activation magnitudes keep the
    /// scale the next layer's weights were trained on (PyTorch's `lp_pool2d(x, 2, 2) / 2`).
    L2,
}

/// Index (0..4) of the max of a 2x2 window; the first wins ties.
fn argmax4<T: Real>(v: [T; 4]) -> usize {
    let mut best = 0;
    for i in 1..4 {
        if v[i] > v[best] {
            best = i;
        }
    }
    best
}

/// sqrt((a^2 + b^2 + c^2 + d^2) / 4).
fn root_mean_square<T: Real>(v: [T; 4]) -> T {
    ((v[0] * v[0] + v[1] * v[1] + v[2] * v[2] + v[3] * v[3]) * T::from_f64(0.25)).sqrt()
}

fn window<T: Real>(plane: &[T], w: usize, oy: usize, ox: usize) -> [T; 4] {
    let i = 2 * oy * w + 2 * ox;
    [plane[i], plane[i + 1], plane[i + w], plane[i + w + 1]]
}

/// Pools `input` (c x h x w) into `out` (c x h/2 x w/2).
pub fn pool2x2<T: Real>(kind: Pool, input: &[T], c: usize, h: usize, w: usize, out: &mut [T]) {
    let (oh, ow) = (h / 2, w / 2);
    assert_eq!(input.len(), c * h * w);
    assert_eq!(out.len(), c * oh * ow);
    if oh * ow == 0 {
        return;
    }
    out.par_chunks_mut(oh * ow)
        .zip(input.par_chunks(h * w))
        .for_each(|(o, plane)| {
            widest(
                #[inline(always)]
                || pool_plane(kind, plane, w, o, ow),
            )
        });
}

/// One channel of `pool2x2`.
#[inline(always)]
fn pool_plane<T: Real>(kind: Pool, plane: &[T], w: usize, o: &mut [T], ow: usize) {
    let quarter = T::from_f64(0.25);
    for oy in 0..o.len() / ow {
        for ox in 0..ow {
            let v = window(plane, w, oy, ox);
            o[oy * ow + ox] = match kind {
                Pool::Avg => (v[0] + v[1] + v[2] + v[3]) * quarter,
                Pool::Max => v[argmax4(v)],
                Pool::L2 => root_mean_square(v),
            };
        }
    }
}

/// Gradient with respect to the input: `grad_in` (c x h x w) from `grad_out` (c x h/2 x w/2).
/// Max pooling routes each gradient to its window's argmax and L2 pooling scales it by
/// `x_i / (4 y)`, both recomputed from `input`; average pooling does not read `input` (it may
/// be empty). A window of zeros gets zero gradient under L2 pooling (its subgradient at 0).
pub fn pool2x2_backward<T: Real>(
    kind: Pool,
    input: &[T],
    c: usize,
    h: usize,
    w: usize,
    grad_out: &[T],
    grad_in: &mut [T],
) {
    let (oh, ow) = (h / 2, w / 2);
    assert_eq!(grad_in.len(), c * h * w);
    assert_eq!(grad_out.len(), c * oh * ow);
    if oh * ow == 0 {
        // No window: every input pixel is dropped (and `par_chunks` takes no empty chunks).
        grad_in.fill(T::zero());
        return;
    }
    grad_in
        .par_chunks_mut(h * w)
        .zip(grad_out.par_chunks(oh * ow))
        .enumerate()
        .for_each(|(ch, (gi, go))| {
            let plane = match kind {
                Pool::Max | Pool::L2 => &input[ch * h * w..(ch + 1) * h * w],
                Pool::Avg => &[],
            };
            widest(
                #[inline(always)]
                || pool_plane_backward(kind, plane, w, go, ow, gi),
            )
        });
}

/// One channel of `pool2x2_backward`: `gi` (`h x w`) from `go` (`h/2 x w/2`, `ow` wide).
#[inline(always)]
fn pool_plane_backward<T: Real>(
    kind: Pool,
    plane: &[T],
    w: usize,
    go: &[T],
    ow: usize,
    gi: &mut [T],
) {
    let quarter = T::from_f64(0.25);
    gi.fill(T::zero());
    let offsets = [0, 1, w, w + 1];
    for oy in 0..go.len() / ow {
        for ox in 0..ow {
            let g = go[oy * ow + ox];
            let base = 2 * oy * w + 2 * ox;
            match kind {
                Pool::Avg => {
                    for off in offsets {
                        gi[base + off] = g * quarter;
                    }
                }
                Pool::Max => {
                    let k = argmax4(window(plane, w, oy, ox));
                    gi[base + offsets[k]] = g;
                }
                Pool::L2 => {
                    let v = window(plane, w, oy, ox);
                    let y = root_mean_square(v);
                    if y > T::zero() {
                        let scale = g * quarter / y;
                        for (off, x) in offsets.into_iter().zip(v) {
                            gi[base + off] = scale * x;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testutil::{max_rel_err, noise, numeric_grad};

    fn check(kind: Pool) {
        // Odd height and width exercise the dropped row and column.
        let (c, h, w) = (3, 7, 9);
        let x = noise(c * h * w, 11);
        let wts = noise(c * (h / 2) * (w / 2), 12);
        let loss = |x: &[f64]| {
            let mut o = vec![0.0; c * (h / 2) * (w / 2)];
            pool2x2(kind, x, c, h, w, &mut o);
            o.iter().zip(&wts).map(|(a, b)| a * b).sum::<f64>()
        };
        let mut g = vec![0.0; c * h * w];
        pool2x2_backward(kind, &x, c, h, w, &wts, &mut g);
        let num = numeric_grad(&x, 1e-6, loss);
        assert!(max_rel_err(&g, &num) < 1e-8, "{kind:?}");
        if kind == Pool::Avg {
            // The forward output's place may hold no values (only ReLU masks are kept).
            let mut without_input = vec![0.0; c * h * w];
            pool2x2_backward(kind, &[], c, h, w, &wts, &mut without_input);
            assert_eq!(without_input, g);
        }
        // The dropped last row and column receive no gradient.
        for ch in 0..c {
            for x in 0..w {
                assert_eq!(g[ch * h * w + (h - 1) * w + x], 0.0);
            }
        }
    }

    #[test]
    fn avg_gradient_matches_finite_differences() {
        check(Pool::Avg);
    }

    #[test]
    fn max_gradient_matches_finite_differences() {
        check(Pool::Max);
    }

    #[test]
    fn l2_gradient_matches_finite_differences() {
        check(Pool::L2);
    }

    #[test]
    fn l2_keeps_a_constant_window_and_lies_between_average_and_max() {
        let x = [3.0, 3.0, 3.0, 3.0, 1.0, 2.0, 0.0, 4.0];
        let mut o = [0.0; 2];
        pool2x2(Pool::L2, &x, 2, 2, 2, &mut o);
        assert_eq!(o[0], 3.0);
        assert!((o[1] - 5.25f64.sqrt()).abs() < 1e-15 && o[1] > 1.75 && o[1] < 4.0);
        // All zeros (a dead ReLU window): zero gradient, not NaN.
        let mut g = [1.0; 4];
        pool2x2_backward(Pool::L2, &[0.0; 4], 1, 2, 2, &[1.0], &mut g);
        assert_eq!(g, [0.0; 4]);
    }

    #[test]
    fn forward_values() {
        let x: Vec<f64> = (0..16).map(|v| v as f64).collect();
        let mut o = vec![0.0; 4];
        pool2x2(Pool::Avg, &x, 1, 4, 4, &mut o);
        assert_eq!(o, vec![2.5, 4.5, 10.5, 12.5]);
        pool2x2(Pool::Max, &x, 1, 4, 4, &mut o);
        assert_eq!(o, vec![5.0, 7.0, 13.0, 15.0]);
    }
}
