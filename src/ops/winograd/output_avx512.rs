//! The output transform for `f32` on AVX-512, [`GROUP`] tiles of one tile row of one output
//! channel at a time, from the products to the output rows in vector registers.
//!
//! The same passes as `transform_output` and in the same order, `A` along each row of a tile's
//! products, then `A^T` down the columns with the bias and the ReLU, so each value is computed
//! by the same operations as on the portable path: bitwise the same results. The tiles' `M`
//! results per row are interleaved into the output row by lane permutes (the portable path
//! wrote them one scalar at a time), and the image's right edge is the masked-off lanes of the
//! stores.

use super::Variant;
use crate::ops::lanes::{to_lanes, to_zmm, Lanes, Zmm};
use std::arch::x86_64::*;

/// Tiles per group: one vector lane each.
pub(super) const GROUP: usize = 16;

/// The first `n` lanes (clamped to 0..16).
#[inline(always)]
fn first(n: isize) -> __mmask16 {
    ((1u32 << n.clamp(0, 16)) - 1) as __mmask16
}

/// Writes output rows `M ty ..` (those inside the `h x w` image) of tiles `tx0 .. tx0 + count`
/// (`count <= GROUP`): `A^T P A + bias`, then `max(0, .)` when `relu`, where `P[xi]` of tile
/// `tx0 + l` is `m[xi * mstride + l]`.
///
/// # Safety
/// The CPU must support AVX-512F; `m` is valid for reads at `xi * mstride + l` for every
/// position `xi < A * A` and `l < count`, and `plane` for writes of the group's pixels of the
/// `h x w` plane it starts.
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn group<const M: usize, const A: usize, V: Variant<M, A>>(
    m: *const f32,
    mstride: usize,
    count: usize,
    (h, w): (usize, usize),
    (ty, tx0): (usize, usize),
    bias: f32,
    relu: bool,
    plane: *mut f32,
) {
    let lanes = first(count as isize);
    // A along each row k of the products: y[k][c], column c of the tiles' row k.
    let mut y = [[_mm512_setzero_ps(); 4]; A];
    for (k, yk) in y.iter_mut().enumerate() {
        // SAFETY: positions k A + j < A * A, lanes below `count` (the caller vouches).
        let row = std::array::from_fn(|j| {
            to_lanes(_mm512_maskz_loadu_ps(lanes, m.add((k * A + j) * mstride)))
        });
        for (c, v) in V::at::<f32, Zmm>(row).into_iter().enumerate() {
            yk[c] = to_zmm(v);
        }
    }
    // A^T down the columns, then the bias and ReLU as `transform_output` applies them.
    let mut o = [[_mm512_setzero_ps(); 4]; 4];
    for c in 0..M {
        let col = V::at::<f32, Zmm>(std::array::from_fn(|k| to_lanes(y[k][c])));
        for (r, v) in col.into_iter().enumerate() {
            let v = if relu {
                Lanes(v.0.map(|x| (x + bias).max(0.0)))
            } else {
                Lanes(v.0.map(|x| x + bias))
            };
            o[r][c] = to_zmm(v);
        }
    }
    // Columns of the group inside the image.
    let x0 = M * tx0;
    let cols = (M * count).min(w - x0) as isize;
    for (r, or) in o.iter().enumerate().take(M.min(h - M * ty)) {
        let dst = plane.add((M * ty + r) * w + x0);
        for (q, v) in interleave::<M>(or).into_iter().enumerate() {
            // SAFETY: columns x0 + 16 q + lane < x0 + cols <= w of row M ty + r < h.
            _mm512_mask_storeu_ps(dst.add(16 * q), first(cols - 16 * q as isize), v);
        }
    }
}

/// The `M * 16` values `row[c][l]` in the order `M l + c`, as `M` vectors.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn interleave<const M: usize>(row: &[__m512; 4]) -> [__m512; M] {
    // (a[l], b[l]) for the 8 tiles from `first`.
    let pairs = |a: __m512, b: __m512, first: i32| {
        let idx: [i32; 16] = std::array::from_fn(|k| first + k as i32 / 2 + 16 * (k as i32 % 2));
        _mm512_permutex2var_ps(a, _mm512_loadu_si512(idx.as_ptr().cast()), b)
    };
    // 64-bit pairs (p[l], q[l]) for the 4 tiles from `first` of two `pairs` vectors.
    let quads = |p: __m512, q: __m512, first: i64| {
        let idx: [i64; 8] = std::array::from_fn(|k| first + k as i64 / 2 + 8 * (k as i64 % 2));
        _mm512_castpd_ps(_mm512_permutex2var_pd(
            _mm512_castps_pd(p),
            _mm512_loadu_si512(idx.as_ptr().cast()),
            _mm512_castps_pd(q),
        ))
    };
    let mut out = [_mm512_setzero_ps(); M];
    if M == 2 {
        out[0] = pairs(row[0], row[1], 0);
        out[1] = pairs(row[0], row[1], 8);
    } else {
        for half in 0..2 {
            let first = 8 * half as i32;
            let (p01, p23) = (pairs(row[0], row[1], first), pairs(row[2], row[3], first));
            out[2 * half] = quads(p01, p23, 0);
            out[2 * half + 1] = quads(p01, p23, 4);
        }
    }
    out
}
