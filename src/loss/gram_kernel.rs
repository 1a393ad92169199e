//! One block of a Gram matrix's partial product, `part[i][j] = sum_p f[i][p] f[j][p]` over a
//! chunk of pixels, as dot products of the feature rows themselves.
//!
//! A library GEMM sees `F F^T` as `A B` with `B = F^T` a column-strided view, and packs that
//! transpose on every call (64 rows a megabyte apart at conv1_1 at 512 px); it also multiplies
//! the whole of a diagonal block. Here each `4 x 4` tile of the block keeps 16 vector
//! accumulators over the pixels and reads eight rows of `F` as they lie, and a diagonal block
//! multiplies only the tiles on and above its diagonal and mirrors them (for conv1_1, whose 64
//! channels are one diagonal block, 136 of 256 tiles). The pixels are taken in runs of `KC`, so
//! the tile's rows stay in L1 while its partial sums are added into `part`.
//!
//! Every value is computed in a fixed order (lanes, then a fixed reduction, then runs in order),
//! so results do not depend on the thread count.

/// Rows per side of a tile of the block.
const TILE: usize = 4;
/// Pixels per run (4 KiB of each row).
const KC: usize = 1024;

/// `part[(i - i0) * ld + (j - j0)] = sum over p0..p1 of f[i * n + p] f[j * n + p]` for the
/// rows `i0..i1` and `j0..j1` of the `c x n` row-major `f`, on the AVX-512 kernel. A block with
/// `i0 == j0` (on the diagonal) comes out symmetric. Returns false, touching nothing, when this
/// CPU or element type has no such kernel (the caller then uses a GEMM).
#[allow(clippy::too_many_arguments)]
pub(super) fn gram_block<T: 'static>(
    f: &[T],
    n: usize,
    (i0, i1): (usize, usize),
    (j0, j1): (usize, usize),
    (p0, p1): (usize, usize),
    part: &mut [T],
    ld: usize,
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if crate::ops::simd::avx512_f32::<T>() {
        assert!(
            i0 < i1 && j0 < j1 && p0 < p1 && p1 <= n,
            "gram block ranges"
        );
        assert!(i1.max(j1) * n <= f.len(), "gram block rows");
        assert!((i1 - i0 - 1) * ld + (j1 - j0) <= part.len() && j1 - j0 <= ld);
        assert!(i0 != j0 || i1 == j1, "a diagonal block is square");
        // SAFETY: `T` is `f32` (checked above), so the slices are reinterpreted as themselves.
        let (f, part) = unsafe {
            (
                &*(f as *const [T] as *const [f32]),
                &mut *(part as *mut [T] as *mut [f32]),
            )
        };
        // SAFETY: AVX-512F is present (checked above); the asserts bound every access.
        unsafe { x86::block_avx512(f, n, (i0, i1), (j0, j1), (p0, p1), part, ld) };
        return true;
    }
    let _ = (f, n, i0, i1, j0, j1, p0, p1, part, ld);
    false
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{KC, TILE};
    use std::arch::x86_64::*;

    /// See `gram_block`.
    ///
    /// # Safety
    /// The CPU must support AVX-512F and the ranges must be as `gram_block` asserts them.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn block_avx512(
        f: &[f32],
        n: usize,
        (i0, i1): (usize, usize),
        (j0, j1): (usize, usize),
        (p0, p1): (usize, usize),
        part: &mut [f32],
        ld: usize,
    ) {
        let diagonal = i0 == j0;
        let fp = f.as_ptr();
        // Rows of a tile past the block's end repeat its last row (never stored).
        let row = |r: usize, end: usize| fp.add(r.min(end - 1) * n);
        for i in 0..i1 - i0 {
            part[i * ld..][..j1 - j0].fill(0.0);
        }
        for k0 in (p0..p1).step_by(KC) {
            let k1 = (k0 + KC).min(p1);
            for ti in (i0..i1).step_by(TILE) {
                let a: [*const f32; TILE] = std::array::from_fn(|r| row(ti + r, i1));
                for tj in (j0..j1).step_by(TILE) {
                    if diagonal && tj < ti {
                        continue;
                    }
                    let b: [*const f32; TILE] = std::array::from_fn(|r| row(tj + r, j1));
                    let mut acc = [[_mm512_setzero_ps(); TILE]; TILE];
                    let mut p = k0;
                    while p < k1 {
                        let mask = if k1 - p >= 16 {
                            0xffff
                        } else {
                            ((1u32 << (k1 - p)) - 1) as __mmask16
                        };
                        // SAFETY: pixels p..p + 16 of rows inside `f` (masked past `k1 <=
                        // n`; masked-off lanes are never read).
                        let av: [__m512; TILE] =
                            std::array::from_fn(|r| _mm512_maskz_loadu_ps(mask, a[r].add(p)));
                        let bv: [__m512; TILE] =
                            std::array::from_fn(|r| _mm512_maskz_loadu_ps(mask, b[r].add(p)));
                        for (acc, &av) in acc.iter_mut().zip(&av) {
                            for (acc, &bv) in acc.iter_mut().zip(&bv) {
                                *acc = _mm512_fmadd_ps(av, bv, *acc);
                            }
                        }
                        p += 16;
                    }
                    for (r, acc) in acc.iter().enumerate() {
                        for (s, acc) in acc.iter().enumerate() {
                            let (i, j) = (ti + r, tj + s);
                            if i >= i1 || j >= j1 {
                                continue;
                            }
                            let v = _mm512_reduce_add_ps(*acc);
                            part[(i - i0) * ld + (j - j0)] += v;
                            if diagonal && tj > ti {
                                part[(j - j0) * ld + (i - i0)] += v;
                            }
                        }
                    }
                }
            }
        }
    }
}
