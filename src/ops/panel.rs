//! The matrix products of a Winograd band on our own micro-kernels, with no packing at call
//! time: `C (rows x n) = A (rows x k) B (k x n)`, where
//!
//! - `A` is stored in panels of [`PANEL`] rows, each panel `k` columns of `PANEL` consecutive
//!   values (element (r, p) at `(r / PANEL) * PANEL * k + p * PANEL + r % PANEL`); rows past
//!   `rows` in the last panel are read (they must be present, zeros in a kernel bank) but never
//!   written to `C`. The Winograd kernel transform writes its banks in this layout directly, so
//!   the panels cost nothing per product;
//! - `B` and `C` are row-major with row strides `ldb >= n` and `ldc >= n`: the transformed
//!   input and the products, exactly as the transforms write and read them.
//!
//! A library GEMM packs both operands on every call (the bank's 36 matrices once per band, and
//! allocates its packing buffers each time); here the micro-kernel reads `A`'s panel as it lies
//! (`PANEL` broadcasts a step) and `B`'s rows straight from the band (one or two vectors a
//! step), with `PANEL x 32` (AVX-512) or `4 x 16` (AVX2) accumulators held in registers over
//! the whole `k`. Each element of `C` is `sum_p a[r][p] * b[p][j]`, accumulated in order of `p`
//! by fused multiply-adds on both x86 kernels, so AVX-512 and AVX2 give bitwise the same
//! values, whatever the thread count. The portable kernel (f64, other CPUs) multiplies and adds.

use crate::gemm::Real;
use std::any::TypeId;

/// Rows of `A` per panel.
pub const PANEL: usize = 8;

/// `c = a b` (see the module docs for the layouts): `a` holds `rows.div_ceil(PANEL)` panels of
/// `k` columns, `b` is `k x n` with row stride `ldb`, `c` is `rows x n` with row stride `ldc`.
#[allow(clippy::too_many_arguments)]
pub fn panel_product<T: Real>(
    a: &[T],
    rows: usize,
    k: usize,
    b: &[T],
    n: usize,
    ldb: usize,
    c: &mut [T],
    ldc: usize,
) {
    let panels = rows.div_ceil(PANEL);
    assert!(a.len() >= panels * PANEL * k, "panel operand too short");
    assert!(ldb >= n && ldc >= n, "row strides");
    assert!(
        k == 0 || b.len() >= (k - 1) * ldb + n,
        "right operand too short"
    );
    assert!(
        rows == 0 || c.len() >= (rows - 1) * ldc + n,
        "product too short"
    );
    if rows == 0 || n == 0 {
        return;
    }
    if TypeId::of::<T>() == TypeId::of::<f32>() {
        // SAFETY: `T` is `f32` (checked just above), so the slices are reinterpreted as
        // themselves.
        let (a, b, c) = unsafe {
            (
                &*(a as *const [T] as *const [f32]),
                &*(b as *const [T] as *const [f32]),
                &mut *(c as *mut [T] as *mut [f32]),
            )
        };
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has AVX-512F; the lengths were checked above.
                unsafe { x86::product_avx512(a, rows, k, b, n, ldb, c, ldc) };
                return;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: the CPU has AVX2 and FMA; the lengths were checked above.
                unsafe { x86::product_avx2(a, rows, k, b, n, ldb, c, ldc) };
                return;
            }
        }
        return product_portable(a, rows, k, b, n, ldb, c, ldc);
    }
    product_portable(a, rows, k, b, n, ldb, c, ldc)
}

/// Columns of `C` the portable kernel keeps in its accumulators at a time.
const PORTABLE_COLS: usize = 16;

/// Any `T`, any CPU: a `PANEL x PORTABLE_COLS` block of accumulators per step, in plain loops
/// the compiler vectorises.
#[allow(clippy::too_many_arguments)]
fn product_portable<T: Real>(
    a: &[T],
    rows: usize,
    k: usize,
    b: &[T],
    n: usize,
    ldb: usize,
    c: &mut [T],
    ldc: usize,
) {
    for q in 0..rows.div_ceil(PANEL) {
        let ap = &a[q * PANEL * k..][..PANEL * k];
        let valid = PANEL.min(rows - q * PANEL);
        for j0 in (0..n).step_by(PORTABLE_COLS) {
            let cols = PORTABLE_COLS.min(n - j0);
            let mut acc = [[T::zero(); PORTABLE_COLS]; PANEL];
            for p in 0..k {
                let bp = &b[p * ldb + j0..][..cols];
                for (row, &av) in acc.iter_mut().zip(&ap[p * PANEL..][..PANEL]) {
                    for (s, &bv) in row.iter_mut().zip(bp) {
                        *s += av * bv;
                    }
                }
            }
            for (r, row) in acc.iter().enumerate().take(valid) {
                c[(q * PANEL + r) * ldc + j0..][..cols].copy_from_slice(&row[..cols]);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::PANEL;
    use std::arch::x86_64::*;

    /// Elements of `A` between a step's panel column and the one prefetched (64 steps).
    const PREFETCH_AHEAD: usize = 64 * PANEL;

    /// Mask of the first `n` of 16 lanes (`n <= 16`).
    #[inline(always)]
    fn lanes16(n: usize) -> __mmask16 {
        ((1u32 << n.min(16)) - 1) as __mmask16
    }

    /// AVX-512: per panel, blocks of 32 columns (two vectors, masked at the right edge) with
    /// `PANEL x 2` accumulators.
    ///
    /// # Safety
    /// The CPU must support AVX-512F; the slices must be as `panel_product` checks them.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn product_avx512(
        a: &[f32],
        rows: usize,
        k: usize,
        b: &[f32],
        n: usize,
        ldb: usize,
        c: &mut [f32],
        ldc: usize,
    ) {
        let (a, b, cp) = (a.as_ptr(), b.as_ptr(), c.as_mut_ptr());
        // Panels outside: a panel streamed from memory is read once, and stays in L1 for the
        // column blocks after the first. (Runs of 256 steps, to keep a 512-row block of `b`
        // in L1, measured 1.4x slower at conv4_2: the panels then stream in broken runs.)
        for q in 0..rows.div_ceil(PANEL) {
            let ap = a.add(q * PANEL * k);
            let valid = PANEL.min(rows - q * PANEL);
            for j0 in (0..n).step_by(32) {
                let cols = (n - j0).min(32);
                let (m0, m1) = (lanes16(cols), lanes16(cols.saturating_sub(16)));
                let mut acc = [[_mm512_setzero_ps(); 2]; PANEL];
                for p in 0..k {
                    // SAFETY: row `p` of `b`, columns `j0..j0 + cols` (`k x n` checked by the
                    // caller); masked-off lanes are never read, and `wrapping_add` keeps the
                    // address of a fully masked second vector defined.
                    let bp = b.add(p * ldb + j0);
                    let b0 = _mm512_maskz_loadu_ps(m0, bp);
                    let b1 = _mm512_maskz_loadu_ps(m1, bp.wrapping_add(16));
                    let ar = ap.add(p * PANEL);
                    // The panels stream from memory once per band (a deep layer's bank is
                    // larger than the caches); ask for them well ahead of use.
                    _mm_prefetch::<_MM_HINT_T0>(ar.wrapping_add(PREFETCH_AHEAD) as *const i8);
                    for (r, acc) in acc.iter_mut().enumerate() {
                        // SAFETY: column `p` of panel `q`, inside `a` (checked by the caller).
                        let av = _mm512_set1_ps(*ar.add(r));
                        acc[0] = _mm512_fmadd_ps(av, b0, acc[0]);
                        acc[1] = _mm512_fmadd_ps(av, b1, acc[1]);
                    }
                }
                for (r, acc) in acc.iter().enumerate().take(valid) {
                    // SAFETY: row `q PANEL + r < rows` of `c`, columns `j0..j0 + cols`, and
                    // only unmasked lanes are written.
                    let cr = cp.add((q * PANEL + r) * ldc + j0);
                    _mm512_mask_storeu_ps(cr, m0, acc[0]);
                    _mm512_mask_storeu_ps(cr.wrapping_add(16), m1, acc[1]);
                }
            }
        }
    }

    /// AVX2 (16 vector registers): per half panel, blocks of 16 columns (two vectors) with `4 x
    /// 2` accumulators; the right edge goes through a zero-padded copy of the rows.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA; the slices must be as `panel_product` checks them.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn product_avx2(
        a: &[f32],
        rows: usize,
        k: usize,
        b: &[f32],
        n: usize,
        ldb: usize,
        c: &mut [f32],
        ldc: usize,
    ) {
        const HALF: usize = PANEL / 2;
        let (a, bp0, cp) = (a.as_ptr(), b.as_ptr(), c.as_mut_ptr());
        for j0 in (0..n).step_by(16) {
            let cols = (n - j0).min(16);
            for h in 0..rows.div_ceil(HALF) {
                let (q, half) = (h / 2, (h % 2) * HALF);
                let ap = a.add(q * PANEL * k + half);
                let mut acc = [[_mm256_setzero_ps(); 2]; HALF];
                if cols == 16 {
                    for p in 0..k {
                        // SAFETY: row `p` of `b`, columns `j0..j0 + 16 <= n`.
                        let bp = bp0.add(p * ldb + j0);
                        let (b0, b1) = (_mm256_loadu_ps(bp), _mm256_loadu_ps(bp.add(8)));
                        let ar = ap.add(p * PANEL);
                        for (r, acc) in acc.iter_mut().enumerate() {
                            // SAFETY: column `p` of panel `q`, inside `a`.
                            let av = _mm256_set1_ps(*ar.add(r));
                            acc[0] = _mm256_fmadd_ps(av, b0, acc[0]);
                            acc[1] = _mm256_fmadd_ps(av, b1, acc[1]);
                        }
                    }
                } else {
                    for p in 0..k {
                        let mut edge = [0.0f32; 16];
                        // SAFETY: row `p` of `b`, columns `j0..j0 + cols <= n`.
                        edge[..cols].copy_from_slice(std::slice::from_raw_parts(
                            bp0.add(p * ldb + j0),
                            cols,
                        ));
                        let b0 = _mm256_loadu_ps(edge.as_ptr());
                        let b1 = _mm256_loadu_ps(edge.as_ptr().add(8));
                        let ar = ap.add(p * PANEL);
                        for (r, acc) in acc.iter_mut().enumerate() {
                            // SAFETY: column `p` of panel `q`, inside `a`.
                            let av = _mm256_set1_ps(*ar.add(r));
                            acc[0] = _mm256_fmadd_ps(av, b0, acc[0]);
                            acc[1] = _mm256_fmadd_ps(av, b1, acc[1]);
                        }
                    }
                }
                let valid = HALF.min(rows.saturating_sub(h * HALF));
                for (r, acc) in acc.iter().enumerate().take(valid) {
                    let mut out = [0.0f32; 16];
                    _mm256_storeu_ps(out.as_mut_ptr(), acc[0]);
                    _mm256_storeu_ps(out.as_mut_ptr().add(8), acc[1]);
                    // SAFETY: row `h HALF + r < rows` of `c`, columns `j0..j0 + cols <= n`.
                    std::ptr::copy_nonoverlapping(
                        out.as_ptr(),
                        cp.add((h * HALF + r) * ldc + j0),
                        cols,
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testutil::noise;

    /// Lays out the row-major `rows x k` matrix `m` in panels, zero rows padding the last.
    pub(crate) fn to_panels<T: Real>(m: &[T], rows: usize, k: usize) -> Vec<T> {
        let mut out = vec![T::zero(); rows.div_ceil(PANEL) * PANEL * k];
        for r in 0..rows {
            for p in 0..k {
                out[(r / PANEL) * PANEL * k + p * PANEL + r % PANEL] = m[r * k + p];
            }
        }
        out
    }

    const SHAPES: [(usize, usize, usize); 9] = [
        (1, 1, 1),
        (8, 3, 32),
        (5, 7, 17),
        (13, 64, 33),
        (16, 128, 64),
        (27, 19, 48),
        (40, 256, 31),
        (9, 5, 1),
        (64, 512, 16),
    ];

    #[test]
    fn f64_matches_naive_product_on_odd_shapes() {
        for (s, &(rows, k, n)) in SHAPES.iter().enumerate() {
            let a = noise(rows * k, 3 * s as u64 + 1);
            let b = noise(k * n, 3 * s as u64 + 2);
            let mut c = vec![f64::NAN; rows * n + 3];
            c[rows * n..].fill(7.0);
            panel_product(&to_panels(&a, rows, k), rows, k, &b, n, n, &mut c, n);
            for i in 0..rows {
                for j in 0..n {
                    let want: f64 = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
                    let got = c[i * n + j];
                    assert!(
                        (got - want).abs() <= 1e-12 * (1.0 + want.abs()),
                        "{rows} {k} {n}"
                    );
                }
            }
            assert_eq!(&c[rows * n..], &[7.0; 3], "wrote past the product");
        }
    }

    /// Every x86 kernel the host has against the f64 product, and against each other
    /// (bitwise: both accumulate by fused multiply-adds in the same order).
    #[test]
    fn f32_kernels_match_f64_and_each_other() {
        for (s, &(rows, k, n)) in SHAPES.iter().enumerate() {
            let a = noise(rows * k, 3 * s as u64 + 1);
            let b = noise(k * n, 3 * s as u64 + 2);
            let a32: Vec<f32> = to_panels(&a, rows, k).iter().map(|&x| x as f32).collect();
            // B as the first `n` columns of a wider matrix whose other columns must not count.
            let ldb = n + 5;
            let mut b32 = vec![f32::NAN; k * ldb];
            for p in 0..k {
                for j in 0..n {
                    b32[p * ldb + j] = b[p * n + j] as f32;
                }
            }
            // C as the first `n` columns of a wider matrix whose other columns must stay.
            let ldc = n + 2;
            let mut results: Vec<(&str, Vec<f32>)> = Vec::new();
            let mut portable = vec![-3.0; rows * ldc];
            product_portable(&a32, rows, k, &b32, n, ldb, &mut portable, ldc);
            results.push(("portable", portable));
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx512f") {
                    let mut c = vec![-3.0; rows * ldc];
                    // SAFETY: AVX-512F checked; lengths as panel_product requires.
                    unsafe { x86::product_avx512(&a32, rows, k, &b32, n, ldb, &mut c, ldc) };
                    results.push(("avx512", c));
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    let mut c = vec![-3.0; rows * ldc];
                    // SAFETY: AVX2 and FMA checked; lengths as panel_product requires.
                    unsafe { x86::product_avx2(&a32, rows, k, &b32, n, ldb, &mut c, ldc) };
                    results.push(("avx2", c));
                }
            }
            for (name, c) in &results {
                for i in 0..rows {
                    for j in 0..n {
                        let want: f64 = (0..k)
                            .map(|p| {
                                let at = (i / PANEL) * PANEL * k + p * PANEL + i % PANEL;
                                f64::from(a32[at]) * f64::from(b32[p * ldb + j])
                            })
                            .sum();
                        let got = f64::from(c[i * ldc + j]);
                        assert!(
                            (got - want).abs() <= 1e-5 * (1.0 + want.abs()) * (k as f64).sqrt(),
                            "{name} {rows} {k} {n}: {got} vs {want}"
                        );
                    }
                    assert_eq!(
                        &c[i * ldc + n..][..2],
                        &[-3.0; 2],
                        "{name} wrote past row {i}"
                    );
                }
            }
            let fused: Vec<_> = results.iter().filter(|(n, _)| *n != "portable").collect();
            for pair in fused.windows(2) {
                assert_eq!(pair[0].1, pair[1].1, "{} vs {}", pair[0].0, pair[1].0);
            }
        }
    }
}
