//! Matrix multiply: the only module that calls a GEMM library.
//!
//! Matrices are given as raw pointers plus a row stride and a column stride (in elements), the
//! convention of `matrixmultiply`: element (i, j) of A lives at `a + i * rsa + j * csa`. The kernels
//! are single-threaded; callers parallelise over disjoint output tiles with rayon, so the result of
//! every output element never depends on the thread count.
//!
//! Two kernels: the `gemm` crate (runtime-dispatched AVX-512/AVX2/NEON micro-kernels, faster on
//! this project's x86 servers) and `matrixmultiply` (the portable baseline). `NEURAL_STYLE_GEMM=
//! matrixmultiply` selects the baseline for comparison; both are tested against a naive product.

use num_traits::Float;
use rayon::prelude::*;
use std::cell::Cell;
use std::fmt::Debug;
use std::iter::Sum;
use std::ops::{AddAssign, MulAssign, SubAssign};
use std::sync::OnceLock;

/// A GEMM implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// The `gemm` crate, single-threaded.
    Gemm,
    /// `matrixmultiply`, the portable baseline.
    MatrixMultiply,
}

thread_local! {
    static IN_KERNEL: Cell<bool> = const { Cell::new(false) };
}

/// Whether the calling thread is inside a GEMM library call. Both libraries allocate their
/// packing buffers on every call (neither takes them from the caller); the allocation test
/// uses this to tell those allocations from the engine's own.
#[doc(hidden)]
pub fn in_kernel() -> bool {
    IN_KERNEL.get()
}

/// The kernel in use: `NEURAL_STYLE_GEMM=matrixmultiply` or `gemm` (the default), read once.
pub fn kernel() -> Kernel {
    static KERNEL: OnceLock<Kernel> = OnceLock::new();
    *KERNEL.get_or_init(|| match std::env::var("NEURAL_STYLE_GEMM").as_deref() {
        Ok("matrixmultiply") => Kernel::MatrixMultiply,
        _ => Kernel::Gemm,
    })
}

/// Element type of the engine: f32 for real runs, f64 for gradient checks.
pub trait Real:
    Float + Debug + Default + Send + Sync + Sum + AddAssign + SubAssign + MulAssign + 'static
{
    /// C = alpha * A B + beta * C, with A m x k, B k x n, C m x n, on the selected kernel.
    ///
    /// # Safety
    /// Every element addressed through the given pointers and strides must be valid for reads
    /// (A, B) or reads and writes (C), and C must not alias A or B.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    ) {
        // SAFETY: forwarded contract.
        unsafe {
            Self::gemm_with(
                kernel(),
                m,
                k,
                n,
                alpha,
                a,
                rsa,
                csa,
                b,
                rsb,
                csb,
                beta,
                c,
                rsc,
                csc,
            )
        }
    }

    /// `gemm` on a chosen kernel.
    ///
    /// # Safety
    /// As for `gemm`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm_with(
        kernel: Kernel,
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );

    /// Lossy conversion used for constants and reporting.
    fn from_f64(v: f64) -> Self;
    fn as_f64(self) -> f64;
}

macro_rules! impl_real {
    ($t:ty, $mm:path) => {
        impl Real for $t {
            unsafe fn gemm_with(
                kernel: Kernel,
                m: usize,
                k: usize,
                n: usize,
                alpha: $t,
                a: *const $t,
                rsa: isize,
                csa: isize,
                b: *const $t,
                rsb: isize,
                csb: isize,
                beta: $t,
                c: *mut $t,
                rsc: isize,
                csc: isize,
            ) {
                IN_KERNEL.set(true);
                match kernel {
                    // SAFETY: forwarded contract of `Real::gemm`. The `gemm` crate computes
                    // dst = alpha' dst + beta' lhs rhs, and skips reading dst when asked to,
                    // which matches beta == 0 ignoring C's old contents.
                    Kernel::Gemm => unsafe {
                        gemm::gemm(
                            m,
                            n,
                            k,
                            c,
                            csc,
                            rsc,
                            beta != 0.0,
                            a,
                            csa,
                            rsa,
                            b,
                            csb,
                            rsb,
                            beta,
                            alpha,
                            false,
                            false,
                            false,
                            gemm::Parallelism::None,
                        )
                    },
                    // SAFETY: forwarded contract of `Real::gemm`.
                    Kernel::MatrixMultiply => unsafe {
                        $mm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
                    },
                }
                IN_KERNEL.set(false);
            }
            fn from_f64(v: f64) -> $t {
                v as $t
            }
            fn as_f64(self) -> f64 {
                self as f64
            }
        }
    };
}

impl_real!(f32, matrixmultiply::sgemm);
impl_real!(f64, matrixmultiply::dgemm);

/// A read-only strided matrix view over a slice: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub struct MatRef<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a, T> MatRef<'a, T> {
    fn strided(data: &'a [T], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        let last = if rows * cols == 0 {
            0
        } else {
            (rows - 1) * rs + (cols - 1) * cs + 1
        };
        assert!(last <= data.len(), "matrix view out of bounds");
        MatRef {
            data,
            rows,
            cols,
            rs,
            cs,
        }
    }
    /// A row-major `rows x cols` slice.
    pub fn new(data: &'a [T], rows: usize, cols: usize) -> Self {
        assert_eq!(data.len(), rows * cols, "matrix slice length");
        Self::strided(data, rows, cols, cols, 1)
    }
    /// The transpose of a row-major `cols x rows` slice, seen as `rows x cols`.
    pub fn t(data: &'a [T], rows: usize, cols: usize) -> Self {
        assert_eq!(data.len(), rows * cols, "matrix slice length");
        Self::strided(data, rows, cols, 1, rows)
    }
    /// Columns `j0..j1` of this view.
    pub fn cols(&self, j0: usize, j1: usize) -> Self {
        assert!(j0 <= j1 && j1 <= self.cols, "column range");
        let offset = if j0 == j1 { 0 } else { j0 * self.cs };
        Self::strided(
            &self.data[offset.min(self.data.len())..],
            self.rows,
            j1 - j0,
            self.rs,
            self.cs,
        )
    }
    /// Rows `i0..i1` of this view.
    pub fn rows(&self, i0: usize, i1: usize) -> Self {
        assert!(i0 <= i1 && i1 <= self.rows, "row range");
        let offset = if i0 == i1 { 0 } else { i0 * self.rs };
        Self::strided(
            &self.data[offset.min(self.data.len())..],
            i1 - i0,
            self.cols,
            self.rs,
            self.cs,
        )
    }
}

/// Single-threaded `c = alpha * a b + beta * c`, `c` given as a row-major m x n slice with row
/// stride `ldc` (so it can be a column block of a wider matrix).
pub fn gemm_into<T: Real>(alpha: T, a: MatRef<T>, b: MatRef<T>, beta: T, c: &mut [T], ldc: usize) {
    assert_eq!(a.cols, b.rows, "inner dimensions");
    let (m, n) = (a.rows, b.cols);
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        n <= ldc && (m - 1) * ldc + n <= c.len(),
        "output view out of bounds"
    );
    // SAFETY: `MatRef` guarantees its elements lie inside its slice, the assert above does the same
    // for `c`, and `c` is a unique borrow so it aliases neither input.
    unsafe {
        T::gemm(
            m,
            a.cols,
            n,
            alpha,
            a.data.as_ptr(),
            a.rs as isize,
            a.cs as isize,
            b.data.as_ptr(),
            b.rs as isize,
            b.cs as isize,
            beta,
            c.as_mut_ptr(),
            ldc as isize,
            1,
        )
    }
}

/// `c = alpha * a b + beta * c`, `c` row-major m x n.
pub fn gemm<T: Real>(alpha: T, a: MatRef<T>, b: MatRef<T>, beta: T, c: &mut [T]) {
    assert_eq!(c.len(), a.rows * b.cols, "output length");
    gemm_into(alpha, a, b, beta, c, b.cols);
}

/// Fewest tasks the parallel products are cut into when their shape allows, so that small
/// products still keep every core busy (fixed, so the cut never depends on the thread count).
const MIN_TASKS: usize = 16;

/// Rows per task of a product of `m` rows already cut into `col_tasks` column tasks: enough row
/// chunks to reach `MIN_TASKS` tasks in all, none under `min_rows` rows.
fn row_chunk(m: usize, col_tasks: usize, min_rows: usize) -> usize {
    let chunks = MIN_TASKS
        .div_ceil(col_tasks.max(1))
        .clamp(1, (m / min_rows.max(1)).max(1));
    m.div_ceil(chunks).max(1)
}

/// `c = alpha * a b + beta * c` (`c` row-major m x n) with rayon over fixed column tiles of `tile_cols`, so
/// each element's arithmetic does not depend on the thread count.
pub fn par_gemm<T: Real>(
    alpha: T,
    a: MatRef<T>,
    b: MatRef<T>,
    beta: T,
    c: &mut [T],
    tile_cols: usize,
) {
    assert_eq!(a.cols, b.rows, "inner dimensions");
    assert_eq!(c.len(), a.rows * b.cols, "output length");
    let (m, n) = (a.rows, b.cols);
    let tile = tile_cols.max(1);
    let col_tasks = n.div_ceil(tile);
    let rows = row_chunk(m, col_tasks, 32);
    let row_tasks = m.div_ceil(rows);
    let c_ptr = crate::ops::SharedMut(c.as_mut_ptr());
    (0..col_tasks * row_tasks).into_par_iter().for_each(|t| {
        let (j0, i0) = ((t / row_tasks) * tile, (t % row_tasks) * rows);
        let (j1, i1) = ((j0 + tile).min(n), (i0 + rows).min(m));
        let (at, bt) = (a.rows(i0, i1), b.cols(j0, j1));
        // SAFETY: tasks write disjoint blocks i0..i1 x j0..j1 of the m x n matrix `c` (in bounds
        // by the asserts above); `MatRef` keeps the A and B elements inside their slices, and
        // `c` was uniquely borrowed, so it aliases neither.
        unsafe {
            T::gemm(
                i1 - i0,
                a.cols,
                j1 - j0,
                alpha,
                at.data.as_ptr(),
                at.rs as isize,
                at.cs as isize,
                bt.data.as_ptr(),
                bt.rs as isize,
                bt.cs as isize,
                beta,
                c_ptr.ptr().add(i0 * n + j0),
                n as isize,
                1,
            )
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn both_kernels_match_naive_product_with_alpha_beta_and_strides() {
        let (m, k, n) = (37, 19, 23);
        let a: Vec<f64> = (0..m * k).map(|i| ((i * 37 % 11) as f64) - 5.0).collect();
        let b: Vec<f64> = (0..k * n).map(|i| ((i * 17 % 7) as f64) * 0.5).collect();
        let ab = naive(&a, &b, m, k, n);
        for kern in [Kernel::Gemm, Kernel::MatrixMultiply] {
            for beta in [0.0, 0.5] {
                // C is a column block of a wider matrix (ldc = n + 3) holding old values.
                let ldc = n + 3;
                let mut c = vec![2.0; m * ldc];
                // SAFETY: all strides address inside `a`, `b` and `c`.
                unsafe {
                    f64::gemm_with(
                        kern,
                        m,
                        k,
                        n,
                        1.5,
                        a.as_ptr(),
                        k as isize,
                        1,
                        b.as_ptr(),
                        n as isize,
                        1,
                        beta,
                        c.as_mut_ptr(),
                        ldc as isize,
                        1,
                    );
                }
                for i in 0..m {
                    for j in 0..n {
                        assert_eq!(c[i * ldc + j], 1.5 * ab[i * n + j] + beta * 2.0, "{kern:?}");
                    }
                    assert_eq!(c[i * ldc + n], 2.0, "{kern:?} wrote outside its block");
                }
            }
        }
    }

    #[test]
    fn matches_naive_product_including_transposed_operands() {
        let (m, k, n) = (7, 13, 5);
        let a: Vec<f64> = (0..m * k).map(|i| ((i * 37 % 11) as f64) - 5.0).collect();
        let b: Vec<f64> = (0..k * n).map(|i| ((i * 17 % 7) as f64) * 0.5).collect();
        let want = naive(&a, &b, m, k, n);
        let mut c = vec![0.0; m * n];
        gemm(
            1.0,
            MatRef::new(&a, m, k),
            MatRef::new(&b, k, n),
            0.0,
            &mut c,
        );
        assert_eq!(c, want);
        // B^T stored as n x k, seen as k x n.
        let mut bt = vec![0.0; k * n];
        for p in 0..k {
            for j in 0..n {
                bt[j * k + p] = b[p * n + j];
            }
        }
        let mut c2 = vec![1.0; m * n];
        gemm(
            1.0,
            MatRef::new(&a, m, k),
            MatRef::t(&bt, k, n),
            0.0,
            &mut c2,
        );
        assert_eq!(c2, want);
    }
}
