//! The input transform for `f32` on AVX-512, [`GROUP`] tiles of one tile row of one channel at
//! a time, held in vector registers from the input rows to the transformed planes.
//!
//! The same two passes as `transform_input` and in the same order, `B^T` down the columns
//! (over the `A` input rows, lane by lane), then `B` along each resulting row at the tiles'
//! stride of `M` (the windows of 16 tiles gathered by lane permutes), so each value is
//! computed by the same operations as on the portable path: bitwise the same results. What
//! changes is where the values live: the portable path's row loops kept about a dozen row
//! pointers and spilled them to the stack on every step, and gathered the strided windows one
//! scalar at a time. The padding (rows above and below the image, columns left and right of
//! it) is the masked-off lanes of the loads.

use super::Variant;
use crate::ops::lanes::{to_lanes, to_zmm, Zmm};
use std::arch::x86_64::*;

/// Tiles per group: one vector lane each.
pub(super) const GROUP: usize = 16;

/// Vectors a row of a group spans at most: `M * GROUP + A - M` values (66 for F(4x4)).
const SPAN: usize = 5;

/// Lanes `l` with `lo <= l < hi` (clamped to 0..16).
#[inline(always)]
fn lanes(lo: isize, hi: isize) -> __mmask16 {
    let (lo, hi) = (lo.clamp(0, 16) as u32, hi.clamp(0, 16) as u32);
    if hi <= lo {
        0
    } else {
        (((1u32 << hi) - 1) & !((1u32 << lo) - 1)) as __mmask16
    }
}

/// Transforms tiles `tx0 .. tx0 + count` (`count <= GROUP`) of tile row `ty` of the `h x w`
/// `plane`: `v[xi * vstride + l] = (B^T d B)[xi]` of tile `tx0 + l`.
///
/// # Safety
/// The CPU must support AVX-512F; `plane` holds `h * w` values, and `v` is valid for writes
/// at `xi * vstride + l` for every position `xi < A * A` and `l < count`.
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn group<const M: usize, const A: usize, V: Variant<M, A>>(
    plane: &[f32],
    h: usize,
    w: usize,
    ty: usize,
    tx0: usize,
    count: usize,
    v: *mut f32,
    vstride: usize,
) {
    debug_assert!(plane.len() >= h * w && count <= GROUP);
    let span = (M * GROUP + A - M).div_ceil(16);
    // Image column of the first value of the windows (the padding column left of the image
    // for the first tile).
    let x0 = (M * tx0) as isize - 1;
    let base = plane.as_ptr();
    // Input rows of the tile row, masked to the image: d[i][c] holds columns x0 + 16 c ..
    let mut d = [[_mm512_setzero_ps(); SPAN]; A];
    for (i, row) in d.iter_mut().enumerate() {
        let sy = (M * ty + i) as isize - 1;
        if sy < 0 || sy >= h as isize {
            continue;
        }
        for (c, dc) in row.iter_mut().enumerate().take(span) {
            let x = x0 + 16 * c as isize;
            let mask = lanes(-x, w as isize - x);
            // SAFETY: only lanes of columns 0..w of row sy < h are read (the mask); the
            // address of the others is formed by wrapping arithmetic and never dereferenced.
            let p = base.wrapping_offset(sy * w as isize + x);
            *dc = _mm512_maskz_loadu_ps(mask, p);
        }
    }
    // B^T down the columns: e[k][c], row k of the column-transformed patch.
    let mut e = [[_mm512_setzero_ps(); SPAN]; A];
    for c in 0..span {
        let col = V::bt::<f32, Zmm>(std::array::from_fn(|i| to_lanes(d[i][c])));
        for (ek, r) in e.iter_mut().zip(col) {
            ek[c] = to_zmm(r);
        }
    }
    // B along each row: tile l's window is values M l .. M l + A of the row.
    let store = lanes(0, count as isize);
    for (k, ek) in e.iter().enumerate() {
        let win: [Zmm; A] = windows::<M, A>(ek).map(to_lanes);
        let r = V::bt::<f32, Zmm>(win);
        for (j, rj) in r.into_iter().enumerate() {
            // SAFETY: position k A + j < A * A, lanes l < count (the caller vouches).
            _mm512_mask_storeu_ps(v.add((k * A + j) * vstride), store, to_zmm(rj));
        }
    }
}

/// `out[j][l] = row[M l + j]` for the 16 windows `l` of a row held as `SPAN` vectors.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn windows<const M: usize, const A: usize>(row: &[__m512; SPAN]) -> [__m512; A] {
    let ramp = |base: i32, step: i32| {
        let idx: [i32; 16] = std::array::from_fn(|l| base + step * l as i32);
        _mm512_loadu_si512(idx.as_ptr().cast())
    };
    // [a[1..16], b[0]]: the vector one window to the right.
    let next = |a: __m512, b: __m512| {
        _mm512_castsi512_ps(_mm512_alignr_epi32::<1>(
            _mm512_castps_si512(b),
            _mm512_castps_si512(a),
        ))
    };
    let mut out = [_mm512_setzero_ps(); A];
    // The values past the 16 M of whole windows (A - M = 2 of them), as lane 0 of a vector.
    let tail = row[M];
    let tails = [tail, next(tail, tail)];
    if M == 2 {
        // Even and odd values of row[0..2].
        for (j, o) in out.iter_mut().take(2).enumerate() {
            *o = _mm512_permutex2var_ps(row[0], ramp(j as i32, 2), row[1]);
        }
    } else {
        // Position j of windows 0..8 from row[0..2], of 8..16 from row[2..4] (each in the low
        // half of its permute), joined by 256-bit halves.
        for (j, o) in out.iter_mut().take(4).enumerate() {
            let idx = ramp(j as i32, 4);
            let lo = _mm512_permutex2var_ps(row[0], idx, row[1]);
            let hi = _mm512_permutex2var_ps(row[2], idx, row[3]);
            *o = _mm512_shuffle_f32x4::<0x44>(lo, hi);
        }
    }
    // Positions M.. of window l are positions 0.. of window l + 1.
    for j in M..A {
        out[j] = next(out[j - M], tails[j - M]);
    }
    out
}
