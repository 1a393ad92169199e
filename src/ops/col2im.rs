//! Input gradient of a 3x3 stride-1 pad-1 convolution with few input channels (conv1_1: 3).
//!
//! The rotated-kernel convolution (`conv::rotate_kernel`) would unroll all `cout` gradient
//! channels into an im2col block only to produce 3 output rows, which wastes most of the time on
//! memory traffic. Here the GEMM reads the output gradient directly,
//! `dcol = W^T dY` (`cin*9 x pixels`), and each input-gradient pixel then gathers its nine
//! shifted contributions. Work is cut into fixed bands of image rows (each band recomputes the
//! one-row halo it needs), so results do not depend on the thread count.

use super::scratch::Scratch;
use super::SharedMut;
use crate::gemm::{gemm, MatRef, Real};
use rayon::prelude::*;

/// Target size of one band's `dcol` block, in elements.
const BAND_ELEMS: usize = 1 << 18;

/// `grad_in` (`cin x h x w`) = d/d input of `sum(conv3x3(input, weights) * grad_out)`, with
/// `weights` in OIHW (`cout x cin x 3 x 3`) and `grad_out` `cout x h x w`.
#[allow(clippy::too_many_arguments)]
pub fn conv3x3_input_grad_col2im<T: Real>(
    grad_out: &[T],
    cout: usize,
    h: usize,
    w: usize,
    weights: &[T],
    cin: usize,
    grad_in: &mut [T],
    scratch: &Scratch<T>,
) {
    let (hw, k) = (h * w, cin * 9);
    assert_eq!(grad_out.len(), cout * hw);
    assert_eq!(weights.len(), cout * k);
    assert_eq!(grad_in.len(), cin * hw);
    if hw == 0 {
        return;
    }
    let band = (BAND_ELEMS / (k * w)).clamp(1, h);
    let wt = MatRef::t(weights, k, cout);
    let dy = MatRef::new(grad_out, cout, hw);
    let gin = SharedMut(grad_in.as_mut_ptr());
    (0..h.div_ceil(band)).into_par_iter().for_each(|b| {
        scratch.with(k * (band + 2) * w, |dcol| {
            let (y0, y1) = (b * band, ((b + 1) * band).min(h));
            // Rows of dcol needed: the band plus one row of halo each side.
            let (r0, r1) = (y0.saturating_sub(1), (y1 + 1).min(h));
            let n = (r1 - r0) * w;
            let dcol = &mut dcol[..k * n];
            gemm(T::one(), wt, dy.cols(r0 * w, r1 * w), T::zero(), dcol);
            for ci in 0..cin {
                for y in y0..y1 {
                    // SAFETY: each band writes only rows y0..y1 of every channel, and bands are
                    // disjoint, so no other task touches this row; it lies inside `grad_in`.
                    let row = unsafe {
                        std::slice::from_raw_parts_mut(gin.ptr().add((ci * h + y) * w), w)
                    };
                    row.fill(T::zero());
                    for kh in 0..3 {
                        // Output row y' = y + 1 - kh must exist.
                        let Some(yo) = (y + 1).checked_sub(kh).filter(|&v| v < h) else {
                            continue;
                        };
                        for kw in 0..3 {
                            let src = &dcol[((ci * 3 + kh) * 3 + kw) * n + (yo - r0) * w..][..w];
                            // x' = x + 1 - kw must lie in 0..w.
                            let (lo, hi) =
                                (kw.saturating_sub(1), (w + kw).saturating_sub(1).min(w));
                            for x in lo..hi {
                                row[x] += src[x + 1 - kw];
                            }
                        }
                    }
                }
            }
        })
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::conv::{conv3x3, rotate_kernel};
    use crate::ops::scratch::ConvScratch;
    use crate::ops::testutil::{max_rel_err, noise};

    #[test]
    fn equals_rotated_kernel_convolution() {
        for &(cin, cout, h, w) in &[
            (3, 64, 37, 29),
            (1, 5, 1, 1),
            (2, 7, 1, 9),
            (3, 4, 8, 1),
            (3, 16, 300, 5),
        ] {
            let gout = noise(cout * h * w, 1);
            let wt = noise(cout * cin * 9, 2);
            let mut want = vec![0.0; cin * h * w];
            conv3x3(
                &gout,
                cout,
                h,
                w,
                &rotate_kernel(&wt, cout, cin),
                cin,
                None,
                &mut want,
                &mut ConvScratch::default(),
            );
            let mut got = vec![1.0; cin * h * w];
            conv3x3_input_grad_col2im(&gout, cout, h, w, &wt, cin, &mut got, &Scratch::new());
            assert!(max_rel_err(&got, &want) < 1e-13, "{cin} {cout} {h} {w}");
        }
    }
}
