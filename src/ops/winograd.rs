//! 3x3, stride 1, padding 1 convolution by Winograd's minimal filtering algorithms F(2x2, 3x3)
//! and F(4x4, 3x3) (Lavin & Gray 2016, "Fast Algorithms for Convolutional Neural Networks").
//!
//! Layout as in `ops::conv`: input `cin x h x w`, weights `cout x cin x 3 x 3` (OIHW), output
//! `cout x h x w`, all row-major, any `h, w >= 1`.
//!
//! The output is cut into `m x m` tiles (`m` = 2 or 4; `ceil(h/m) x ceil(w/m)` of them, numbered
//! row-major). Each tile needs an `a x a` input patch, `a = m + 2`, whose top-left corner is one
//! pixel up and left of the tile's; reads outside the image are the padding zeros, and outputs
//! of the last tile row and column that fall outside the image are dropped. With the constant
//! matrices `B^T` (`a x a`), `G` (`a x 3`) and `A^T` (`m x a`) of the variant (see `F2` and `F4`
//! below), one tile of one output channel is
//!
//! ```text
//! Y = A^T [ sum_ci (G g G^T) .* (B^T d B) ] A
//! ```
//!
//! Numbering the `a * a` positions of a transformed tile by `xi`, the sum over input channels is,
//! for each `xi`, a matrix product `M[xi] (cout x tiles) = U[xi] (cout x cin) * V[xi] (cin x
//! tiles)`, with `U = G g G^T` the transformed kernel ([`WinogradKernel`], computed once per
//! weight bank) and `V = B^T d B` the transformed input. Per output pixel and (cin, cout) pair
//! the GEMMs do `a^2 / m^2` multiplies: 4 for F(2x2, 3x3), 2.25 for F(4x4, 3x3), against 9 for
//! the direct or im2col convolution. The products run on `ops::panel`'s micro-kernels: the
//! kernel transform writes `U` in their panel layout and the input transform writes `V` in the
//! row-major layout they read, so nothing is packed per product.
//!
//! Parallelism and reproducibility: the work is split into a fixed grid of tasks, bands of
//! consecutive tiles x chunks of output channels, that depends only on the layer shape. Each task
//! transforms its band of the input into its own scratch (`a^2 x cin x band`), runs its GEMMs
//! into its own scratch (`a^2 x chunk x band`), and writes the outputs of its tiles and channels,
//! which no other task touches. No full-size buffer is ever allocated, and each output element is
//! computed by the same instructions whatever the thread count (bitwise reproducible results).
//!
//! The input gradient (the same convolution with the kernel rotated by 180 degrees and its
//! channel axes swapped) takes its own kernel, transformed straight from the forward weights
//! read in rotated order (`WinogradKernel::input_grad_in`).
//!
//! The transforms are separable passes over rows (`B^T` down the columns of a tile row's input
//! rows, then `B` along the rows at a stride of `m`; `A` along rows, then `A^T` down columns),
//! written as plain loops over contiguous data that the compiler vectorises, and for `f32` on
//! AVX-512 as kernels that hold 16 tiles of a tile row in vector registers (`input_avx512`,
//! `output_avx512`: the same operations in the same order, so bitwise the same values). Each channel's
//! rows of a band are short runs in a plane of their own, so the transforms prefetch the next
//! channel's rows while they work on this one (`simd::prefetch`).
//!
//! Accuracy: F(2x2, 3x3) only adds, subtracts and halves, and is about as accurate as im2col:
//! f32 max error 2.8e-7 of the largest output on a VGG-like layer (im2col 2.4e-7, see
//! `f32_accuracy_on_a_vgg_shape`). F(4x4, 3x3) multiplies by up to 8 and divides by 6 and 24:
//! 4.5e-6 there; on the real conv1_2 weights and activations 1.8e-6 max, 4e-7 relative L2
//! (F(2x2) 3.4e-7 and 1.2e-7), and through the whole f32 network the PyTorch golden losses move
//! from about 1e-7 to 2e-6 relative (the test allows 1e-4). `ops::conv::winograd_tile` says
//! which layers use which.

use super::lanes::{Arith, Lanes, LANES};
use super::panel::{panel_product, PANEL};
use super::scratch::{split, split_len, Scratch};
use super::simd::{prefetch, widest};
use super::SharedMut;
use crate::gemm::Real;
use rayon::prelude::*;
use std::array::from_fn;

#[cfg(target_arch = "x86_64")]
mod input_avx512;
#[cfg(target_arch = "x86_64")]
mod output_avx512;

/// Output tile size of a Winograd convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tile {
    /// F(2x2, 3x3): 4x4 transformed tiles, 16 GEMMs, 2.25x fewer multiplies than direct.
    F2x2,
    /// F(4x4, 3x3): 6x6 transformed tiles, 36 GEMMs, 4x fewer multiplies than direct, and a
    /// transformed kernel 36/9 = 4 times the size of the weights (16/9 for F(2x2, 3x3)).
    F4x4,
}

impl Tile {
    /// Side of the output tile.
    pub fn side(self) -> usize {
        match self {
            Tile::F2x2 => 2,
            Tile::F4x4 => 4,
        }
    }

    /// Transformed positions per tile, i.e. GEMMs per convolution.
    pub fn positions(self) -> usize {
        (self.side() + 2).pow(2)
    }

    /// GEMM multiplies per (cin, cout) pair for an `h x w` image, padding tiles included.
    pub fn multiplies(self, h: usize, w: usize) -> usize {
        let m = self.side();
        self.positions() * h.div_ceil(m) * w.div_ceil(m)
    }
}

/// Split output channels too when there are fewer bands than this (small images, deep layers),
/// so that all cores have work.
const MIN_TASKS: usize = 8;
/// Smallest output-channel chunk worth its own GEMMs (each chunk transforms the input again).
const MIN_CHUNK_ROWS: usize = 32;

/// One Winograd variant F(M x M, 3x3), `A = M + 2`: its 1-D transforms, applied along rows and
/// columns, and its band size.
trait Variant<const M: usize, const A: usize>: Sync {
    /// `G g` for one column (or row) `g` of a 3x3 kernel.
    fn g<T: Real>(g: [T; 3]) -> [T; A];
    /// `B^T d` for one column (or row) of an input patch (or a group of them).
    fn bt<T: Real, X: Arith<T>>(d: [X; A]) -> [X; A];
    /// `A^T m` for one column (or row) of a tile's products (or a group of them).
    fn at<T: Real, X: Arith<T>>(m: [X; A]) -> [X; M];
    /// Tiles per band (the GEMMs' N) for `cin` input channels.
    fn band_tiles(cin: usize) -> usize;
}

/// F(2x2, 3x3), interpolation points 0, 1, -1 and infinity:
///
/// ```text
///       | 1  0 -1  0 |        | 1    0    0  |
/// B^T = | 0  1  1  0 |    G = | 1/2  1/2  1/2 |    A^T = | 1  1  1  0 |
///       | 0 -1  1  0 |        | 1/2 -1/2  1/2 |          | 0  1 -1 -1 |
///       | 0  1  0 -1 |        | 0    0    1  |
/// ```
struct F2;

impl Variant<2, 4> for F2 {
    #[inline(always)]
    fn g<T: Real>([g0, g1, g2]: [T; 3]) -> [T; 4] {
        let half = T::from_f64(0.5);
        [g0, (g0 + g1 + g2) * half, (g0 - g1 + g2) * half, g2]
    }
    #[inline(always)]
    fn bt<T: Real, X: Arith<T>>([d0, d1, d2, d3]: [X; 4]) -> [X; 4] {
        [d0 - d2, d1 + d2, d2 - d1, d1 - d3]
    }
    #[inline(always)]
    fn at<T: Real, X: Arith<T>>([m0, m1, m2, m3]: [X; 4]) -> [X; 2] {
        [m0 + m1 + m2, m1 - m2 - m3]
    }
    /// 64, and 32 over 256 input channels: the band's transformed input is 16 x cin x band
    /// values, 2 MiB at 512 channels and 64 tiles, twice a 1 MiB L2. Measured with the panel
    /// kernels (session 13, AMD EPYC, 1 MiB L2, 2 threads, min of 15, alternating in one
    /// process, two runs): 512 -> 512 at 32 x 32 forward 9.10 / 7.80 ms with 64 tiles against
    /// 7.52 / 7.66 with 32, input gradient 8.84 / 8.38 against 8.15 / 7.93; at 16 x 16 4.96 /
    /// 4.32 against 3.80 / 3.59 and 5.02 / 4.71 against 3.62 / 3.75; 256 channels even (2.2 ms
    /// both at 32 x 32). (Session 2, `gemm` crate, 2 MiB L2: 64 best or even everywhere.)
    fn band_tiles(cin: usize) -> usize {
        if cin <= 256 {
            64
        } else {
            32
        }
    }
}

/// F(4x4, 3x3), interpolation points 0, 1, -1, 2, -2 and infinity:
///
/// ```text
///       | 4  0 -5  0  1  0 |        |  1/4     0     0  |
///       | 0 -4 -4  1  1  0 |        | -1/6  -1/6  -1/6  |          | 1  1  1  1  1  0 |
/// B^T = | 0  4 -4 -1  1  0 |    G = | -1/6   1/6  -1/6  |    A^T = | 0  1 -1  2 -2  0 |
///       | 0 -2 -1  2  1  0 |        |  1/24  1/12  1/6  |          | 0  1  1  4  4  0 |
///       | 0  2 -1 -2  1  0 |        |  1/24 -1/12  1/6  |          | 0  1 -1  8 -8  1 |
///       | 0  4  0 -5  0  1 |        |  0     0     1    |
/// ```
struct F4;

impl Variant<4, 6> for F4 {
    #[inline(always)]
    fn g<T: Real>([g0, g1, g2]: [T; 3]) -> [T; 6] {
        let (q, s) = (T::from_f64(0.25), T::from_f64(1.0 / 6.0));
        let (e, t) = (T::from_f64(1.0 / 24.0), T::from_f64(1.0 / 12.0));
        [
            g0 * q,
            -(g0 + g1 + g2) * s,
            -(g0 - g1 + g2) * s,
            g0 * e + g1 * t + g2 * s,
            g0 * e - g1 * t + g2 * s,
            g2,
        ]
    }
    #[inline(always)]
    fn bt<T: Real, X: Arith<T>>([d0, d1, d2, d3, d4, d5]: [X; 6]) -> [X; 6] {
        let (two, four, five) = (T::from_f64(2.0), T::from_f64(4.0), T::from_f64(5.0));
        let (p, q) = (d4 - d2 * four, d3 - d1 * four);
        let (r, s) = (d4 - d2, (d3 - d1) * two);
        [
            d0 * four - d2 * five + d4,
            q + p,
            p - q,
            r + s,
            r - s,
            d1 * four - d3 * five + d5,
        ]
    }
    #[inline(always)]
    fn at<T: Real, X: Arith<T>>([m0, m1, m2, m3, m4, m5]: [X; 6]) -> [X; 4] {
        let (two, four, eight) = (T::from_f64(2.0), T::from_f64(4.0), T::from_f64(8.0));
        let (a, b, c, d) = (m1 + m2, m1 - m2, m3 + m4, m3 - m4);
        [m0 + a + c, b + d * two, a + c * four, b + d * eight + m5]
    }
    /// Measured (2 threads, min of 8): up to 128 input channels 64 is best (64 -> 64 at
    /// 256 x 256 11.8 ms vs 12.9 at 32 and 12.1 at 128), above that 32 (256 -> 256 at 64 x 64
    /// 6.7 vs 7.2 at 64 and 9.3 at 128; 512 -> 512 at 32 x 32 12.9 vs 13.7 at 64): the band's
    /// transformed input is 36 x cin x band values.
    fn band_tiles(cin: usize) -> usize {
        if cin <= 128 {
            64
        } else {
            32
        }
    }
}

/// A 3x3 kernel bank transformed for one Winograd variant: `U[xi] = (G g G^T)[xi]` for every
/// (output channel, input channel) pair, stored as `tile.positions()` row-major `cout x cin`
/// matrices (the left-hand operands of the GEMMs) a padded `stride` apart.
///
/// Build it once per weight bank and reuse it (`ops::conv::Conv3x3` does): transforming writes
/// `cout * cin * positions` values, about 1 ms for 256 x 256 channels with F(2x2, 3x3).
#[derive(Clone, Debug)]
pub struct WinogradKernel<T> {
    tile: Tile,
    cout: usize,
    cin: usize,
    u: Vec<T>,
}

impl<T: Real> WinogradKernel<T> {
    /// Transforms OIHW `weights` (`cout x cin x 3 x 3`) for F(2x2, 3x3), the variant for any
    /// image size (F(4x4, 3x3) only pays on large ones; `with_tile` chooses).
    pub fn new(weights: &[T], cout: usize, cin: usize) -> Self {
        Self::with_tile(weights, cout, cin, Tile::F2x2)
    }

    /// Transforms OIHW `weights` (`cout x cin x 3 x 3`) for `tile`, in parallel over output
    /// channels.
    pub fn with_tile(weights: &[T], cout: usize, cin: usize, tile: Tile) -> Self {
        Self::with_tile_in(weights, cout, cin, tile, Vec::new())
    }

    /// `with_tile`, storing the transform in `buf` (grown if too small; `into_buffer` gives it
    /// back): a network transforming its kernels on every pass reuses one buffer and allocates
    /// nothing.
    pub fn with_tile_in(weights: &[T], cout: usize, cin: usize, tile: Tile, buf: Vec<T>) -> Self {
        Self::transform(weights, cout, cin, tile, false, buf)
    }

    /// The kernel of the input-gradient convolution of the OIHW bank `weights` (`cout x cin x
    /// 3 x 3`): the transform of `conv::rotate_kernel(weights)` (`cin` outputs from `cout`
    /// inputs), read straight from `weights`, so no rotated copy is ever stored. Buffers as in
    /// `with_tile_in`.
    pub fn input_grad_in(weights: &[T], cout: usize, cin: usize, tile: Tile, buf: Vec<T>) -> Self {
        Self::transform(weights, cin, cout, tile, true, buf)
    }

    /// The transform of a `cout x cin` bank: `weights` itself, or (`rotated`) the rotated,
    /// channel-swapped view of a `cin x cout` bank.
    fn transform(
        weights: &[T],
        cout: usize,
        cin: usize,
        tile: Tile,
        rotated: bool,
        mut buf: Vec<T>,
    ) -> Self {
        assert_eq!(weights.len(), cout * cin * 9, "winograd weights");
        let src = Source {
            weights,
            cout,
            cin,
            rotated,
        };
        match tile {
            Tile::F2x2 => transform_kernel::<T, 2, 4, F2>(src, &mut buf),
            Tile::F4x4 => transform_kernel::<T, 4, 6, F4>(src, &mut buf),
        }
        WinogradKernel {
            tile,
            cout,
            cin,
            u: buf,
        }
    }

    /// Elements of the transform of a `cout x cin` bank for `tile` (what `with_tile_in` and,
    /// with the channel counts swapped, `input_grad_in` hold).
    pub fn transform_len(tile: Tile, cout: usize, cin: usize) -> usize {
        tile.positions() * padded(panel_rows(cout) * cin)
    }

    /// The buffer holding the transform, for reuse.
    pub fn into_buffer(self) -> Vec<T> {
        self.u
    }

    /// The variant this kernel was transformed for.
    pub fn tile(&self) -> Tile {
        self.tile
    }

    /// Output channels.
    pub fn cout(&self) -> usize {
        self.cout
    }

    /// Input channels.
    pub fn cin(&self) -> usize {
        self.cin
    }
}

/// Distance between consecutive `xi` planes of the transformed kernel, input and product, in
/// elements: one `size`-element matrix plus a pad that shifts each plane by 16 elements. The
/// transforms touch all planes at once; without the shift, plane sizes that are multiples of
/// 4 KiB (most VGG shapes) put all the streams in the same L1 cache set, and the transforms ran
/// several times slower.
fn padded(size: usize) -> usize {
    size + 16
}

/// The `cout x cin` bank of 3x3 kernels a transform reads: OIHW `weights`, or (`rotated`) the
/// kernels of `conv::rotate_kernel` of a `cin x cout` OIHW bank, gathered on the fly.
#[derive(Clone, Copy)]
struct Source<'a, T> {
    weights: &'a [T],
    cout: usize,
    cin: usize,
    rotated: bool,
}

impl<T: Copy> Source<'_, T> {
    /// Element `k` (row-major 3x3) of kernel (co, ci).
    #[inline(always)]
    fn at(&self, co: usize, ci: usize, k: usize) -> T {
        if self.rotated {
            self.weights[(ci * self.cout + co) * 9 + 8 - k]
        } else {
            self.weights[(co * self.cin + ci) * 9 + k]
        }
    }
}

/// `U = G g G^T` for every kernel of the bank, into `u` as `A * A` padded planes of `cout x
/// cin` matrices in the panel layout of `ops::panel` (rows past `cout` in the last panel are
/// zeros; the pads between planes are never read). One task per panel; the kernels of its
/// `PANEL` output channels are transformed side by side for one input channel at a time, which
/// gives each plane its `PANEL` values of that channel as one contiguous run.
fn transform_kernel<T: Real, const M: usize, const A: usize, V: Variant<M, A>>(
    src: Source<'_, T>,
    u: &mut Vec<T>,
) {
    let (cout, cin) = (src.cout, src.cin);
    let stride = padded(panel_rows(cout) * cin);
    u.resize(A * A * stride, T::zero());
    let u_ptr = SharedMut(u.as_mut_ptr());
    (0..cout.div_ceil(PANEL)).into_par_iter().for_each(|q| {
        widest(
            #[inline(always)]
            || transform_panel::<T, M, A, V>(src, q, u_ptr, stride),
        )
    });
}

/// The panel `q` of every plane of `transform_kernel`'s `u` (at `u_ptr`, planes `stride`
/// apart), which the caller lets this call alone write.
#[inline(always)]
fn transform_panel<T: Real, const M: usize, const A: usize, V: Variant<M, A>>(
    src: Source<'_, T>,
    q: usize,
    u_ptr: SharedMut<T>,
    stride: usize,
) {
    let (cout, cin) = (src.cout, src.cin);
    let rows = PANEL.min(cout - q * PANEL);
    for ci in 0..cin {
        let mut g = [[T::zero(); PANEL]; 9];
        for (r, co) in (q * PANEL..q * PANEL + rows).enumerate() {
            for (k, gk) in g.iter_mut().enumerate() {
                gk[r] = src.at(co, ci, k);
            }
        }
        // t = G g (A x 3, by columns of g), then U = t G^T (by rows of t).
        let mut t = [[[T::zero(); PANEL]; 3]; A];
        for j in 0..3 {
            for r in 0..PANEL {
                let col = V::g([g[j][r], g[3 + j][r], g[6 + j][r]]);
                for (ti, &v) in t.iter_mut().zip(&col) {
                    ti[j][r] = v;
                }
            }
        }
        for (i, ti) in t.iter().enumerate() {
            let mut out = [[T::zero(); PANEL]; A];
            for r in 0..PANEL {
                let row = V::g([ti[0][r], ti[1][r], ti[2][r]]);
                for (o, &v) in out.iter_mut().zip(&row) {
                    o[r] = v;
                }
            }
            for (j, o) in out.iter().enumerate() {
                // SAFETY: elements `(i A + j) stride + (q cin + ci) PANEL ..+ PANEL` lie in
                // `u` (`i A + j < A * A`, `(q + 1) PANEL <= panel_rows(cout)`, `ci <
                // cin`); only the task for panel `q` writes its panels, so writes never
                // overlap, and `u` is exclusively borrowed and otherwise unused until
                // `transform_kernel` ends.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        o.as_ptr(),
                        u_ptr
                            .ptr()
                            .add((i * A + j) * stride + (q * cin + ci) * PANEL),
                        PANEL,
                    )
                };
            }
        }
    }
}

/// Rows of a `rows`-row matrix in the panel layout, the last panel's padding included.
fn panel_rows(rows: usize) -> usize {
    rows.div_ceil(PANEL) * PANEL
}

/// The tile rows met by tiles `t0..t1` (row-major over a grid `tw` tiles wide), each as
/// `(ty, first tx, end tx, index of its first tile relative to t0)`.
fn tile_rows(
    t0: usize,
    t1: usize,
    tw: usize,
) -> impl Iterator<Item = (usize, usize, usize, usize)> {
    let rows = if t1 > t0 {
        t0 / tw..(t1 - 1) / tw + 1
    } else {
        0..0
    };
    rows.map(move |ty| {
        let txa = if ty == t0 / tw { t0 % tw } else { 0 };
        let txb = if ty == (t1 - 1) / tw {
            (t1 - 1) % tw + 1
        } else {
            tw
        };
        (ty, txa, txb, ty * tw + txa - t0)
    })
}

/// `dst[.][x] = f(src[.][x])` for `x` in `0..n`: a 1-D transform applied down the columns of
/// `I` rows into `O` rows (every row at least `n` long).
#[inline(always)]
fn map_columns<T: Real, const I: usize, const O: usize>(
    src: &[&[T]; I],
    dst: &mut [&mut [T]; O],
    n: usize,
    f: impl Fn([T; I]) -> [T; O],
) {
    let mut x = 0;
    while x + LANES <= n {
        let a: [&[T; LANES]; I] = from_fn(|k| src[k][x..x + LANES].try_into().unwrap());
        let mut out = [[T::zero(); LANES]; O];
        for l in 0..LANES {
            let r = f(from_fn(|k| a[k][l]));
            for (o, &v) in out.iter_mut().zip(&r) {
                o[l] = v;
            }
        }
        for (d, o) in dst.iter_mut().zip(&out) {
            d[x..x + LANES].copy_from_slice(o);
        }
        x += LANES;
    }
    for x in x..n {
        let r = f(from_fn(|k| src[k][x]));
        for (d, &v) in dst.iter_mut().zip(&r) {
            d[x] = v;
        }
    }
}

/// `dst[.][i] = B^T src[M i..M i + A]` for `i` in `0..n`: the 1-D transform applied along a
/// row to overlapping windows at a stride of `M`, one output row per transformed position
/// (`src` at least `M n + A - M` long).
#[inline(always)]
fn map_windows<T: Real, const M: usize, const A: usize, V: Variant<M, A>>(
    src: &[T],
    dst: &mut [&mut [T]; A],
    n: usize,
) {
    let mut i = 0;
    while i + LANES <= n {
        let win = &src[M * i..M * (i + LANES) + A - M];
        let mut out = [[T::zero(); LANES]; A];
        for l in 0..LANES {
            let r = V::bt::<T, T>(from_fn(|j| win[M * l + j]));
            for (o, &v) in out.iter_mut().zip(&r) {
                o[l] = v;
            }
        }
        for (d, o) in dst.iter_mut().zip(&out) {
            d[i..i + LANES].copy_from_slice(o);
        }
        i += LANES;
    }
    for i in i..n {
        let r = V::bt::<T, T>(from_fn(|j| src[M * i + j]));
        for (d, &v) in dst.iter_mut().zip(&r) {
            d[i] = v;
        }
    }
}

/// `dst[M i..M i + M] = A^T src[.][i]` for `i` in `0..n`: the 1-D transform applied across
/// `A` rows, its `M` results written side by side (`dst` at least `M n` long). Computed on
/// groups of `LANES` columns and then interleaved: per column, the compiler left the
/// arithmetic scalar (about 1.3x the time of the whole output transform of conv1_2 at 512 px).
#[inline(always)]
fn map_gather<T: Real, const M: usize, const A: usize, V: Variant<M, A>>(
    src: &[&[T]; A],
    dst: &mut [T],
    n: usize,
) {
    let mut i = 0;
    while i + LANES <= n {
        let r = V::at::<T, _>(from_fn(|j| Lanes::<T, LANES>::load(&src[j][i..])));
        let win = &mut dst[M * i..M * (i + LANES)];
        for l in 0..LANES {
            for (c, o) in r.iter().enumerate() {
                win[M * l + c] = o.0[l];
            }
        }
        i += LANES;
    }
    for i in i..n {
        let r = V::at::<T, T>(from_fn(|j| src[j][i]));
        dst[M * i..M * i + M].copy_from_slice(&r);
    }
}

/// Transforms the input patches of tiles `t0..t1` of all `cin` channels:
/// `v[xi * vstride + ci * n + (t - t0)] = (B^T d B)[xi]` for tile `t` of channel `ci`,
/// `n = t1 - t0`. Scratch: `e`, `A` rows of `M * (ceil(w/M) + 1)`; `zeros`, `w` zeros.
///
/// One tile row at a time: `B^T` down the columns of its `A` input rows (zero rows above and
/// below the image) into the rows of `e`, indexed by padded column `x' = x + 1` (zero columns
/// left and right of the image), then `B` along each row of `e`, tile `tx` reading columns
/// `M tx .. M tx + A`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn transform_input<T: Real, const M: usize, const A: usize, V: Variant<M, A>>(
    input: &[T],
    cin: usize,
    h: usize,
    w: usize,
    t0: usize,
    t1: usize,
    v: &mut [T],
    vstride: usize,
    e: &mut [T],
    zeros: &[T],
) {
    let (hw, tw, n) = (h * w, w.div_ceil(M), t1 - t0);
    #[cfg(target_arch = "x86_64")]
    let vector_input = super::simd::avx512_f32::<T>();
    for ci in 0..cin {
        let plane = &input[ci * hw..][..hw];
        if ci + 1 < cin {
            // The rows the next channel will read (see `prefetch`).
            let next = input[(ci + 1) * hw..].as_ptr();
            for (ty, txa, txb, _) in tile_rows(t0, t1, tw) {
                let (va, vb) = ((M * txa).max(1), (M * (txb + 1)).min(w + 1));
                for sy in (M * ty).max(1)..(M * ty + A).min(h + 1) {
                    prefetch(next.wrapping_add((sy - 1) * w + va - 1), vb - va);
                }
            }
        }
        for (ty, txa, txb, rel) in tile_rows(t0, t1, tw) {
            let at = ci * n + rel;
            #[cfg(target_arch = "x86_64")]
            if vector_input {
                // SAFETY: `T` is `f32`, and the CPU has AVX-512F (`vector_input`).
                unsafe {
                    input_row_avx512::<M, A, V>(
                        &*(plane as *const [T] as *const [f32]),
                        (h, w),
                        (ty, txa, txb),
                        &mut *(v as *mut [T] as *mut [f32]),
                        at,
                        vstride,
                    )
                };
                continue;
            }
            input_row::<T, M, A, V>(plane, (h, w), (ty, txa, txb), v, at, vstride, e, zeros);
        }
    }
}

/// Transforms tiles `txa..txb` of tile row `ty` of the `h x w` `plane`: `v[xi * vstride + at +
/// (tx - txa)] = (B^T d B)[xi]` of tile `tx`. Scratch as in `transform_input`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn input_row<T: Real, const M: usize, const A: usize, V: Variant<M, A>>(
    plane: &[T],
    (h, w): (usize, usize),
    (ty, txa, txb): (usize, usize, usize),
    v: &mut [T],
    at: usize,
    vstride: usize,
    e: &mut [T],
    zeros: &[T],
) {
    let (len, pw) = (txb - txa, M * (w.div_ceil(M) + 1));
    // Padded columns read by the tiles (rounded up to whole chunks of M), and the part of
    // them backed by the image.
    let (xa, xb) = (M * txa, M * (txb + 1));
    let (va, vb) = (xa.max(1), xb.min(w + 1));
    let src: [&[T]; A] = from_fn(|i| {
        let sy = M * ty + i;
        if sy >= 1 && sy <= h {
            &plane[(sy - 1) * w + va - 1..(sy - 1) * w + vb - 1]
        } else {
            &zeros[..vb - va]
        }
    });
    let mut erows = e.chunks_exact_mut(pw);
    let mut erows: [&mut [T]; A] = from_fn(|_| erows.next().unwrap());
    for ek in erows.iter_mut() {
        ek[xa..va].fill(T::zero());
        ek[vb..xb].fill(T::zero());
    }
    let mut cols = erows.iter_mut().map(|ek| &mut ek[va..vb]);
    let mut cols: [&mut [T]; A] = from_fn(|_| cols.next().unwrap());
    map_columns(&src, &mut cols, vb - va, V::bt);
    let mut planes = v.chunks_mut(vstride);
    for ek in &erows {
        let mut outs = planes.by_ref().take(A).map(|p| &mut p[at..at + len]);
        let mut outs: [&mut [T]; A] = from_fn(|_| outs.next().unwrap());
        map_windows::<T, M, A, V>(&ek[xa..xb], &mut outs, len);
    }
}

/// `input_row` on AVX-512, in groups of 16 tiles (`input_avx512`): bitwise the same values.
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn input_row_avx512<const M: usize, const A: usize, V: Variant<M, A>>(
    plane: &[f32],
    (h, w): (usize, usize),
    (ty, txa, txb): (usize, usize, usize),
    v: &mut [f32],
    at: usize,
    vstride: usize,
) {
    let len = txb - txa;
    assert!((M, A) == (2, 4) || (M, A) == (4, 6), "Winograd variant");
    assert!(plane.len() >= h * w, "input plane");
    assert!(
        len == 0 || (A * A - 1) * vstride + at + len <= v.len(),
        "transformed input"
    );
    let out = v.as_mut_ptr();
    for g0 in (0..len).step_by(input_avx512::GROUP) {
        // SAFETY: AVX-512F (the caller vouches); the plane holds h * w values, and the group
        // writes positions xi < A * A at tiles below `len`, inside `v` (asserted above).
        unsafe {
            input_avx512::group::<M, A, V>(
                plane,
                h,
                w,
                ty,
                txa + g0,
                input_avx512::GROUP.min(len - g0),
                out.add(at + g0),
                vstride,
            )
        };
    }
}

/// Writes `Y = A^T M A + bias`, then `max(0, Y)` when `relu`, for tiles `t0..t1` of `mn`
/// output channels: `m[xi * mstride + co * n + (t - t0)]` is position `xi` of tile `t` in
/// channel `co`, and channel `co`'s `h x w` plane starts at `out + co * h * w`. Outputs of the
/// last tile row and column that fall outside the image are dropped. Scratch: `s`, `A + M` rows of `M * ceil(w/M)`.
///
/// One tile row at a time: `A` along each of the `A` rows of its tiles' products (into the
/// first `A` rows of `s`), then `A^T` down the columns into the `M` output rows (rows below the
/// image go to the last `M` rows of `s`, which are discarded).
///
/// # Safety
/// `out` must be valid for writes of `mn * h * w` elements, and no one else may access the
/// pixels of tiles `t0..t1` in those `mn` planes during the call.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn transform_output<T: Real, const M: usize, const A: usize, V: Variant<M, A>>(
    m: &[T],
    mstride: usize,
    mn: usize,
    h: usize,
    w: usize,
    t0: usize,
    t1: usize,
    bias: Option<&[T]>,
    relu: bool,
    out: *mut T,
    s: &mut [T],
) {
    let (hw, tw, n) = (h * w, w.div_ceil(M), t1 - t0);
    #[cfg(target_arch = "x86_64")]
    let vector_output = super::simd::avx512_f32::<T>();
    for co in 0..mn {
        let b = bias.map_or(T::zero(), |b| b[co]);
        if co + 1 < mn {
            // The next channel's output rows, so that its stores find their lines in cache.
            let next = out.wrapping_add((co + 1) * hw);
            for (ty, txa, txb, _) in tile_rows(t0, t1, tw) {
                let x0 = M * txa;
                for r in 0..M.min(h - M * ty) {
                    prefetch(
                        next.wrapping_add((M * ty + r) * w + x0),
                        (M * txb).min(w) - x0,
                    );
                }
            }
        }
        for (ty, txa, txb, rel) in tile_rows(t0, t1, tw) {
            let at = co * n + rel;
            // SAFETY: channel `co < mn` of `out`, whose pixels of tiles `t0..t1` the caller
            // lets this call write.
            let plane = unsafe { out.add(co * hw) };
            #[cfg(target_arch = "x86_64")]
            if vector_output {
                // SAFETY: `T` is `f32`, and the CPU has AVX-512F (`vector_output`); the
                // plane as above.
                unsafe {
                    output_row_avx512::<M, A, V>(
                        &*(m as *const [T] as *const [f32]),
                        mstride,
                        at,
                        (h, w),
                        (ty, txa, txb),
                        *(&b as *const T as *const f32),
                        relu,
                        plane as *mut f32,
                    )
                };
                continue;
            }
            // SAFETY: the plane as above.
            unsafe {
                output_row::<T, M, A, V>(m, mstride, at, (h, w), (ty, txa, txb), b, relu, plane, s)
            };
        }
    }
}

/// Writes the output rows of tiles `txa..txb` of tile row `ty` of the `h x w` `plane` (those
/// inside the image), the tile `tx`'s products at `m[xi * mstride + at + (tx - txa)]`. Scratch
/// as in `transform_output`.
///
/// # Safety
/// `plane` must be valid for writes of those pixels, which no one else accesses meanwhile.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn output_row<T: Real, const M: usize, const A: usize, V: Variant<M, A>>(
    m: &[T],
    mstride: usize,
    at: usize,
    (h, w): (usize, usize),
    (ty, txa, txb): (usize, usize, usize),
    b: T,
    relu: bool,
    plane: *mut T,
    s: &mut [T],
) {
    let len = txb - txa;
    let mut srows = s.chunks_exact_mut(M * w.div_ceil(M));
    let mut rows: [&mut [T]; A] = from_fn(|_| srows.next().unwrap());
    let mut planes = m.chunks(mstride);
    for sk in rows.iter_mut() {
        let mut ins = planes.by_ref().take(A).map(|p| &p[at..at + len]);
        let ins: [&[T]; A] = from_fn(|_| ins.next().unwrap());
        map_gather::<T, M, A, V>(&ins, sk, len);
    }
    let (x0, x1) = (M * txa, (M * txb).min(w));
    let cols = x1 - x0;
    let valid = M.min(h - M * ty);
    let mut dst: [&mut [T]; M] = from_fn(|r| {
        if r < valid {
            // SAFETY: row `M ty + r < h`, columns `x0..x1` (`x1 <= w`) of the plane: pixels
            // of this call's tiles, which the caller vouches for; rows differ, so the slices
            // are disjoint.
            unsafe { std::slice::from_raw_parts_mut(plane.add((M * ty + r) * w + x0), cols) }
        } else {
            &mut srows.next().unwrap()[..cols]
        }
    });
    let src: [&[T]; A] = from_fn(|k| &rows[k][..cols]);
    // The ReLU fused here saves a pass over the layer's output; `max` is the one `ops::relu`
    // takes, so the values are bitwise the same.
    if relu {
        map_columns(&src, &mut dst, cols, |col| {
            V::at(col).map(|y| (y + b).max(T::zero()))
        });
    } else {
        map_columns(&src, &mut dst, cols, |col| V::at(col).map(|y| y + b));
    }
}

/// `output_row` on AVX-512, in groups of 16 tiles (`output_avx512`): bitwise the same values.
///
/// # Safety
/// The CPU must support AVX-512F; `plane` as for `output_row`.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn output_row_avx512<const M: usize, const A: usize, V: Variant<M, A>>(
    m: &[f32],
    mstride: usize,
    at: usize,
    (h, w): (usize, usize),
    (ty, txa, txb): (usize, usize, usize),
    b: f32,
    relu: bool,
    plane: *mut f32,
) {
    let len = txb - txa;
    assert!((M, A) == (2, 4) || (M, A) == (4, 6), "Winograd variant");
    assert!(
        len == 0 || (A * A - 1) * mstride + at + len <= m.len(),
        "products"
    );
    assert!(
        M * ty < h && M * txb.max(1) < w + M,
        "tile row inside the image"
    );
    for g0 in (0..len).step_by(output_avx512::GROUP) {
        // SAFETY: AVX-512F and the plane (the caller vouches); positions xi < A * A at tiles
        // below `len` lie inside `m` (asserted above).
        unsafe {
            output_avx512::group::<M, A, V>(
                m.as_ptr().add(at + g0),
                mstride,
                output_avx512::GROUP.min(len - g0),
                (h, w),
                (ty, txa + g0),
                b,
                relu,
                plane,
            )
        };
    }
}

/// Fixed task grid of one convolution: `(tiles per band, output channels per chunk)`.
fn tiling(band_tiles: usize, cout: usize, ntiles: usize) -> (usize, usize) {
    let nbands = ntiles.div_ceil(band_tiles).max(1);
    let band = ntiles.div_ceil(nbands);
    let chunks = MIN_TASKS
        .div_ceil(nbands)
        .clamp(1, (cout / MIN_CHUNK_ROWS).max(1));
    // Whole panels of the kernel per chunk (see `ops::panel`).
    (band, panel_rows(cout.div_ceil(chunks)))
}

/// `out = conv3x3(input, g) + bias` with `kernel` the Winograd transform of `g`; shapes as in
/// the module docs (`cout` and `cin` are the kernel's).
#[allow(clippy::too_many_arguments)]
pub fn conv3x3_winograd<T: Real>(
    input: &[T],
    cin: usize,
    h: usize,
    w: usize,
    kernel: &WinogradKernel<T>,
    bias: Option<&[T]>,
    out: &mut [T],
    scratch: &Scratch<T>,
) {
    conv3x3_winograd_then(input, cin, h, w, kernel, bias, false, out, scratch);
}

/// `conv3x3_winograd`, followed by a ReLU when `relu` (fused into the output transform).
#[allow(clippy::too_many_arguments)]
pub fn conv3x3_winograd_then<T: Real>(
    input: &[T],
    cin: usize,
    h: usize,
    w: usize,
    kernel: &WinogradKernel<T>,
    bias: Option<&[T]>,
    relu: bool,
    out: &mut [T],
    scratch: &Scratch<T>,
) {
    assert_eq!(kernel.cin, cin, "winograd kernel input channels");
    let bank = kernel.bank();
    match kernel.tile {
        Tile::F2x2 => run::<T, 2, 4, F2>(input, h, w, bank, bias, relu, out, scratch),
        Tile::F4x4 => run::<T, 4, 6, F4>(input, h, w, bank, bias, relu, out, scratch),
    }
}

impl<T> WinogradKernel<T> {
    /// The kernel as the products read it.
    fn bank(&self) -> Bank<'_, T> {
        Bank {
            u: &self.u,
            stride: padded(panel_rows(self.cout) * self.cin),
            cout: self.cout,
            cin: self.cin,
        }
    }
}

/// A transformed kernel as the left-hand operands of the products: `A * A` matrices of `cout
/// x cin` in the panel layout of `ops::panel`.
struct Bank<'a, T> {
    u: &'a [T],
    stride: usize,
    cout: usize,
    cin: usize,
}

impl<'a, T: Real> Bank<'a, T> {
    /// Rows `m0..m1` of the matrix of position `xi` (`m0` a multiple of `PANEL`), as panels.
    fn panels(&self, xi: usize, m0: usize, m1: usize) -> &'a [T] {
        debug_assert!(m0.is_multiple_of(PANEL) && m1 <= self.cout);
        &self.u[xi * self.stride + m0 * self.cin..][..panel_rows(m1 - m0) * self.cin]
    }
}

/// `out = conv3x3(input) + bias` (then ReLU'd when `relu`) by F(M x M, 3x3) with the kernel
/// `bank` (input `bank.cin x h x w`, output `bank.cout x h x w`).
#[allow(clippy::too_many_arguments)]
fn run<T: Real, const M: usize, const A: usize, V: Variant<M, A>>(
    input: &[T],
    h: usize,
    w: usize,
    bank: Bank<'_, T>,
    bias: Option<&[T]>,
    relu: bool,
    out: &mut [T],
    scratch: &Scratch<T>,
) {
    let (cin, cout, hw, nxi) = (bank.cin, bank.cout, h * w, A * A);
    if !super::conv::check_io(input, out, bias, cin, cout, hw) {
        return;
    }
    let tw = w.div_ceil(M);
    let ntiles = h.div_ceil(M) * tw;
    let (band, chunk) = tiling(V::band_tiles(cin), cout, ntiles);
    let (nbands, nchunks) = (ntiles.div_ceil(band), cout.div_ceil(chunk));
    let out_ptr = SharedMut(out.as_mut_ptr());
    // Transformed input and products of a task, row scratch of the transforms, and a row of
    // zeros (the padding).
    let lens = [
        nxi * padded(cin * band),
        nxi * padded(chunk * band),
        (A + M) * M * (tw + 1),
        w,
    ];
    (0..nbands * nchunks).into_par_iter().for_each(|task| {
        scratch.with(split_len(&lens), |buf| {
            let [v, m, rows, zeros] = split(buf, lens);
            zeros.fill(T::zero());
            let (t0, m0) = ((task / nchunks) * band, (task % nchunks) * chunk);
            let (t1, m1) = ((t0 + band).min(ntiles), (m0 + chunk).min(cout));
            let (n, mn) = (t1 - t0, m1 - m0);
            let (vstride, mstride) = (padded(cin * n), padded(mn * n));

            let v = &mut v[..nxi * vstride];
            widest(
                #[inline(always)]
                || transform_input::<T, M, A, V>(input, cin, h, w, t0, t1, v, vstride, rows, zeros),
            );

            // M[xi] = U[xi] (rows m0..m1) V[xi], mn x n.
            for xi in 0..nxi {
                let vx = &v[xi * vstride..][..cin * n];
                let mx = &mut m[xi * mstride..][..mn * n];
                panel_product(bank.panels(xi, m0, m1), mn, cin, vx, n, n, mx, n);
            }

            let (m, bias) = (&m[..nxi * mstride], bias.map(|b| &b[m0..m1]));
            // SAFETY: `out` is the exclusively borrowed `cout x h x w` output, which nothing
            // reads while the tasks run; `dst` is channel m0's plane, this task writes only the
            // pixels of tiles `t0..t1` in channels `m0..m1`, and the bands and chunks of the
            // task grid partition the tiles and the channels, so no two tasks write the same
            // element.
            widest(
                #[inline(always)]
                || unsafe {
                    let dst = out_ptr.ptr().add(m0 * hw);
                    transform_output::<T, M, A, V>(
                        m, mstride, mn, h, w, t0, t1, bias, relu, dst, rows,
                    )
                },
            );
        })
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::conv::{conv3x3_im2col, rotate_kernel};
    use crate::ops::testutil::{max_rel_err, noise};

    const TILES: [Tile; 2] = [Tile::F2x2, Tile::F4x4];

    /// Direct definition of the convolution (with bias), in f64.
    pub(crate) fn naive(
        x: &[f64],
        cin: usize,
        h: usize,
        w: usize,
        wt: &[f64],
        cout: usize,
        bias: Option<&[f64]>,
    ) -> Vec<f64> {
        let mut o = vec![0.0; cout * h * w];
        for co in 0..cout {
            for y in 0..h {
                for xx in 0..w {
                    let mut s = bias.map_or(0.0, |b| b[co]);
                    for ci in 0..cin {
                        for kh in 0..3 {
                            for kw in 0..3 {
                                let (sy, sx) = (y + kh, xx + kw);
                                if sy >= 1 && sx >= 1 && sy <= h && sx <= w {
                                    s += wt[((co * cin + ci) * 3 + kh) * 3 + kw]
                                        * x[(ci * h + sy - 1) * w + sx - 1];
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

    fn to_f32(v: &[f64]) -> Vec<f32> {
        v.iter().map(|&x| x as f32).collect()
    }

    #[test]
    fn kernel_transform_matches_matrix_definition() {
        let g2 = [
            [1.0, 0.0, 0.0],
            [0.5, 0.5, 0.5],
            [0.5, -0.5, 0.5],
            [0.0, 0.0, 1.0],
        ];
        let g4 = [
            [1.0 / 4.0, 0.0, 0.0],
            [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
            [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
            [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
            [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
            [0.0, 0.0, 1.0],
        ];
        let (cout, cin) = (3, 11);
        let wt = noise(cout * cin * 9, 11);
        for (tile, gm) in [(Tile::F2x2, &g2[..]), (Tile::F4x4, &g4[..])] {
            let k = WinogradKernel::with_tile(&wt, cout, cin, tile);
            let (a, stride) = (gm.len(), padded(panel_rows(cout) * cin));
            assert_eq!(k.u.len(), a * a * stride);
            for (co, ci) in (0..cout).flat_map(|co| (0..cin).map(move |ci| (co, ci))) {
                let g = &wt[(co * cin + ci) * 9..][..9];
                for i in 0..a {
                    for j in 0..a {
                        let mut want = 0.0;
                        for p in 0..3 {
                            for q in 0..3 {
                                want += gm[i][p] * g[p * 3 + q] * gm[j][q];
                            }
                        }
                        let got = k.bank().panels(i * a + j, 0, cout)
                            [(co / PANEL) * PANEL * cin + ci * PANEL + co % PANEL];
                        assert!((got - want).abs() < 1e-15, "{tile:?} {i} {j}");
                    }
                }
            }
        }
    }

    #[test]
    fn f64_matches_direct_definition_on_odd_shapes() {
        // (cin, cout, h, w): single pixels, odd and even sides, sides not multiples of 2 or 4,
        // non-square, rows and columns of one pixel, channel counts of no pattern.
        let shapes = [
            (1, 1, 1, 1),
            (1, 1, 3, 5),
            (2, 3, 7, 9),
            (3, 5, 4, 7),
            (5, 2, 1, 13),
            (4, 3, 11, 1),
            (7, 11, 2, 2),
            (3, 2, 6, 10),
            (6, 13, 19, 35),
            (13, 7, 33, 18),
        ];
        for tile in TILES {
            for (s, &(cin, cout, h, w)) in shapes.iter().enumerate() {
                let seed = 10 * s as u64;
                let x = noise(cin * h * w, seed + 1);
                let wt = noise(cout * cin * 9, seed + 2);
                let b = noise(cout, seed + 3);
                let k = WinogradKernel::with_tile(&wt, cout, cin, tile);
                for bias in [None, Some(b.as_slice())] {
                    let mut o = vec![f64::NAN; cout * h * w];
                    conv3x3_winograd(&x, cin, h, w, &k, bias, &mut o, &Scratch::new());
                    let want = naive(&x, cin, h, w, &wt, cout, bias);
                    let err = max_rel_err(&o, &want);
                    assert!(err < 1e-12, "{tile:?} {cin} {cout} {h} {w}: {err:e}");
                }
                // The input-gradient convolution, its kernel read from the forward weights.
                let gout = noise(cout * h * w, seed + 4);
                let mut gin = vec![f64::NAN; cin * h * w];
                let kg = WinogradKernel::input_grad_in(&wt, cout, cin, tile, Vec::new());
                conv3x3_winograd(&gout, cout, h, w, &kg, None, &mut gin, &Scratch::new());
                let rot = rotate_kernel(&wt, cout, cin);
                let err = max_rel_err(&gin, &naive(&gout, cout, h, w, &rot, cin, None));
                assert!(
                    err < 1e-12,
                    "{tile:?} backward {cin} {cout} {h} {w}: {err:e}"
                );
            }
        }
    }

    #[test]
    fn several_bands_and_channel_chunks_match_direct_definition() {
        // F(2x2): 41 x 45 -> 21 x 23 = 483 tiles; F(4x4): 81 x 90 -> 21 x 23 as well. Several
        // bands, band boundaries inside tile rows, a shorter last band.
        let (cin, cout) = (9, 70);
        for (tile, h, w) in [(Tile::F2x2, 41, 45), (Tile::F4x4, 81, 90)] {
            let band_tiles = match tile {
                Tile::F2x2 => F2::band_tiles(cin),
                Tile::F4x4 => F4::band_tiles(cin),
            };
            let (band, _) = tiling(band_tiles, cout, 21 * 23);
            assert!(band < 483 && band % 23 != 0 && 483 % band != 0);
            // And 3 x 3 (one tile, one band): the channels are split into chunks.
            assert!(tiling(band_tiles, cout, 1).1 < cout);
            for (h, w) in [(h, w), (3, 3)] {
                let x = noise(cin * h * w, 21);
                let wt = noise(cout * cin * 9, 22);
                let b = noise(cout, 23);
                let mut o = vec![0.0; cout * h * w];
                let k = WinogradKernel::with_tile(&wt, cout, cin, tile);
                conv3x3_winograd(&x, cin, h, w, &k, Some(&b), &mut o, &Scratch::new());
                let want = naive(&x, cin, h, w, &wt, cout, Some(&b));
                assert!(max_rel_err(&o, &want) < 1e-12, "{tile:?} {h} {w}");
            }
        }
    }

    /// Image sizes that cut groups of 16 tiles and the padding every way.
    #[cfg(target_arch = "x86_64")]
    const ROW_SIZES: [(usize, usize); 6] = [(1, 1), (5, 7), (9, 64), (13, 70), (33, 129), (6, 250)];

    /// For each tile row of an `h x w` image with `m x m` tiles, tile ranges from the edges and
    /// from the middle, and an offset to write them at: `(ty, txa, txb, at)`.
    #[cfg(target_arch = "x86_64")]
    fn row_cases(h: usize, w: usize, m: usize) -> Vec<(usize, usize, usize, usize)> {
        let tw = w.div_ceil(m);
        (0..h.div_ceil(m))
            .flat_map(|ty| {
                [(0, tw), (tw / 3, tw), (1, tw.min(19))]
                    .into_iter()
                    .filter(|(a, b)| a < b)
                    .map(move |(a, b)| (ty, a, b, 2 + a % 3))
            })
            .collect()
    }

    #[cfg(target_arch = "x86_64")]
    fn assert_bitwise(got: &[f32], want: &[f32], what: String) {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(got), bits(want), "{what}");
    }

    /// The AVX-512 input transform against the portable one, tile row by tile row: bitwise
    /// equal.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vector_input_transform_is_bitwise_the_portable_one() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            eprintln!("no AVX-512F here: the vector input transform is not exercised");
            return;
        }
        fn check<const M: usize, const A: usize, V: Variant<M, A>>(h: usize, w: usize) {
            let plane = to_f32(&noise(h * w, (h * 131 + w) as u64));
            let tw = w.div_ceil(M);
            let vstride = 3 * tw + 5;
            let zeros = vec![0f32; w];
            let mut e = vec![0f32; A * M * (tw + 1)];
            for (ty, txa, txb, at) in row_cases(h, w, M) {
                let tiles = (ty, txa, txb);
                let mut want = vec![f32::NAN; A * A * vstride];
                let mut got = want.clone();
                input_row::<f32, M, A, V>(
                    &plane,
                    (h, w),
                    tiles,
                    &mut want,
                    at,
                    vstride,
                    &mut e,
                    &zeros,
                );
                // SAFETY: the CPU has AVX-512F (checked above).
                unsafe {
                    input_row_avx512::<M, A, V>(&plane, (h, w), tiles, &mut got, at, vstride)
                };
                assert_bitwise(&got, &want, format!("F({M}) {h}x{w} row {ty} {txa}..{txb}"));
            }
        }
        for (h, w) in ROW_SIZES {
            check::<2, 4, F2>(h, w);
            check::<4, 6, F4>(h, w);
        }
    }

    /// The AVX-512 output transform against the portable one, with and without the ReLU.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vector_output_transform_is_bitwise_the_portable_one() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            eprintln!("no AVX-512F here: the vector output transform is not exercised");
            return;
        }
        fn check<const M: usize, const A: usize, V: Variant<M, A>>(h: usize, w: usize) {
            let tw = w.div_ceil(M);
            let mstride = 3 * tw + 5;
            let m = to_f32(&noise(A * A * mstride, (h * 71 + w) as u64));
            let mut s = vec![0f32; (A + M) * M * tw];
            for (ty, txa, txb, at) in row_cases(h, w, M) {
                for relu in [false, true] {
                    let (b, hw, tiles) = (0.25f32, (h, w), (ty, txa, txb));
                    let mut want = vec![f32::NAN; h * w];
                    let mut got = want.clone();
                    // SAFETY: both planes are h x w and exclusively borrowed; the CPU has
                    // AVX-512F (checked above).
                    unsafe {
                        let (want, got) = (want.as_mut_ptr(), got.as_mut_ptr());
                        output_row::<f32, M, A, V>(
                            &m, mstride, at, hw, tiles, b, relu, want, &mut s,
                        );
                        output_row_avx512::<M, A, V>(&m, mstride, at, hw, tiles, b, relu, got);
                    }
                    let what = format!("F({M}) {h}x{w} row {ty} {txa}..{txb} relu {relu}");
                    assert_bitwise(&got, &want, what);
                }
            }
        }
        for (h, w) in ROW_SIZES {
            check::<2, 4, F2>(h, w);
            check::<4, 6, F4>(h, w);
        }
    }

    #[test]
    fn f32_accuracy_on_a_vgg_shape() {
        // conv3_2 at a 128 x 128 input (32 x 32 here) and a 512-channel layer (conv4_2's
        // sums, fewer outputs) with VGG-like magnitudes: post-ReLU activations, weights of
        // about 1/sqrt(9 cin). Errors relative to the largest output.
        for (cin, cout, h, w) in [(256, 256, 32, 32), (512, 96, 24, 24)] {
            let x: Vec<f64> = noise(cin * h * w, 41).iter().map(|v| v.max(0.0)).collect();
            let scale = 1.0 / (9.0 * cin as f64).sqrt();
            let wt: Vec<f64> = noise(cout * cin * 9, 42)
                .iter()
                .map(|v| v * scale)
                .collect();
            let b = noise(cout, 43);
            let mut exact = vec![0.0; cout * h * w];
            conv3x3_im2col(
                &x,
                cin,
                h,
                w,
                &wt,
                cout,
                Some(&b),
                &mut exact,
                &Scratch::new(),
            );
            let (x32, wt32, b32) = (to_f32(&x), to_f32(&wt), to_f32(&b));
            let widen = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
            let mut im = vec![0.0f32; cout * h * w];
            conv3x3_im2col(
                &x32,
                cin,
                h,
                w,
                &wt32,
                cout,
                Some(&b32),
                &mut im,
                &Scratch::new(),
            );
            let err_im = max_rel_err(&widen(&im), &exact);
            // The rounding error of a sum grows with its length: bounds per 256 channels.
            let per = cin as f64 / 256.0;
            for (tile, bound) in [(Tile::F2x2, 1e-6 * per), (Tile::F4x4, 1e-5 * per)] {
                let mut wi = vec![0.0f32; cout * h * w];
                let k = WinogradKernel::with_tile(&wt32, cout, cin, tile);
                conv3x3_winograd(&x32, cin, h, w, &k, Some(&b32), &mut wi, &Scratch::new());
                let err = max_rel_err(&widen(&wi), &exact);
                let what = format!("f32 {cin}->{cout} {tile:?}");
                println!("{what}: max error {err:.2e} of max |out| (im2col {err_im:.2e})");
                assert!(err < bound, "{tile:?} {err:e}");
            }
        }
    }

    #[test]
    fn f32_result_is_independent_of_thread_count() {
        // 46 x 38: several bands for both tile sizes; 6 x 6: channel chunks.
        for tile in TILES {
            for (cin, cout, h, w) in [(64, 64, 46, 38), (64, 128, 6, 6)] {
                let x = to_f32(&noise(cin * h * w, 61));
                let wt = to_f32(&noise(cout * cin * 9, 62));
                let b = to_f32(&noise(cout, 63));
                let run = |threads| {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .unwrap();
                    let mut o = vec![0.0f32; cout * h * w];
                    pool.install(|| {
                        let k = WinogradKernel::with_tile(&wt, cout, cin, tile);
                        conv3x3_winograd(&x, cin, h, w, &k, Some(&b), &mut o, &Scratch::new())
                    });
                    o
                };
                assert_eq!(run(1), run(3), "{tile:?}");
            }
        }
    }
}
