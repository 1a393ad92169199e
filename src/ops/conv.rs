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
//! with the kernel rotated by 180 degrees and its channel axes swapped (`rotate_kernel`);
//! `conv3x3_input_grad` computes it without storing that kernel.
//!
//! Buffers that a call needs (im2col blocks, Winograd transforms, the transformed kernel) come
//! from a `ConvScratch` / `Scratch` the caller keeps, so repeated calls allocate nothing.
//!
//! `conv3x3` and `Conv3x3` (which keeps the transformed kernels between calls) dispatch between
//! this im2col path (`conv3x3_im2col`, kept as the general fallback and the tests' oracle) and
//! Winograd F(2x2, 3x3) or F(4x4, 3x3) (`ops::winograd`) by layer shape, see `winograd_tile`.

use super::col2im::conv3x3_input_grad_col2im;
use super::scratch::{ConvScratch, Scratch};
use super::simd::widest;
use super::winograd::{conv3x3_winograd, conv3x3_winograd_then, Tile, WinogradKernel};
use super::SharedMut;
use crate::gemm::Real;
use rayon::prelude::*;
use std::sync::OnceLock;

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

/// Smallest input channel count for which `winograd_tile` picks Winograd.
const WINOGRAD_MIN_CIN: usize = 16;

/// Which algorithm is fastest for a 3x3 convolution of `cin -> cout` channels on an `h x w`
/// image: a Winograd variant (`ops::winograd`), or `None` for tiled im2col. `kernel_cached`: the
/// transformed kernel is kept between calls (`Conv3x3`) rather than built on each (`conv3x3`).
///
/// The rule comes from timing every path (f32, min of 5-7 runs, 2 threads of a Xeon with
/// AVX-512, `gemm` crate kernel); "ms im2col / F2 / F4" below, cached kernels unless said:
/// - im2col when `cin < 16`: with K = cin the GEMMs are tiny and the transforms dominate.
///   conv1_1 forward, 3 -> 64 at 256 x 256: 4.5 / 6.8 / 5.5. (8 -> 8 at 64 x 64 is 0.15 /
///   0.15 / 0.09, 16 -> 16 0.51 / 0.29 / 0.19.) Few *output* channels do not hurt: 64 -> 3 at
///   256 x 256 is 9.6 / 6.3 / 4.7.
/// - im2col below 64 pixels, or 256 when the kernel is transformed on the call. With few
///   pixels all paths are bound by reading the weights, which Winograd makes 16/9 or 4 times
///   larger: 512 -> 512 at 4 x 4 is 1.7 / 2.8 / 2.4, at 8 x 8 3.4 / 3.2 / 6.1, at 16 x 16 11.4
///   / 6.0 / 7.2. The transform on the call (into `ConvScratch`'s reused buffer; a fresh one
///   costs its page faults) writes each plane's panels as contiguous runs: F(2x2) of 512 x 512
///   channels in under a millisecond, F(4x4) 2.3 ms (session 13, AMD EPYC with AVX-512); with
///   it conv5_1 at 16 x 16 (a 256 px image) takes 3.1 ms forward and 3.5 backward on F(2x2)
///   against 4.5 and 5.2 on im2col (whole-step `--profile`, 20 steps, two runs each).
/// - im2col when F(2x2)'s tiles are mostly padding (it would not save a third of the
///   multiplies): images 1 pixel high or wide.
/// - F(4x4) from 1024 pixels when neither channel count exceeds 256 and the kernel is kept, from
///   4096 otherwise, unless its tiles waste so much padding that it would not save a fifth of
///   F(2x2)'s multiplies; F(2x2) otherwise. From 4096 pixels an F(4x4) kernel transformed on
///   every call pays for its transform even over 512 channels, into a reused buffer (session 11,
///   2-core AMD EPYC, AVX2, min of 7, ms F2 / F4 both transformed on the call: conv4_2 at
///   64 x 64 forward 92.1 / 70.9, input gradient 89.2 / 68.9; conv4_1 49.2 / 44.6 and 45.9 /
///   39.1; at 32 x 32 conv5_1 is even, 28.1 / 24.5 and 29.5 / 27.5). On VGG-19 at 256 x 256
///   F(4x4) wins 1.2-1.6x on blocks 1-3 (conv1_2 forward 33.3 / 24.0 / 15.4, conv2_2 26.7 /
///   14.7 / 9.9, conv3_2 22.3 / 12.7 / 11.4); with kept kernels on the 512-channel layers it is
///   even at 32 x 32 (conv4_2 25.7 / 14.0 / 14.1), loses at 16 x 16 (conv5_1 11.1 / 5.8 / 6.9)
///   and wins from 64 x 64 (conv4_2 at 512 x 512: 88.3 / 49.7 / 44.4). With 256 channels it
///   loses at 16 x 16 (3.7 / 2.3 / 2.6).
pub fn winograd_tile(
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    kernel_cached: bool,
) -> Option<Tile> {
    let pixels = h * w;
    let min_pixels = if kernel_cached { 64 } else { 256 };
    let f2 = Tile::F2x2.multiplies(h, w);
    if cin < WINOGRAD_MIN_CIN || pixels < min_pixels || 3 * f2 > 2 * 9 * pixels {
        return None;
    }
    let f4_pixels = if kernel_cached && cin.max(cout) <= 256 {
        1024
    } else {
        4096
    };
    let f4 = Tile::F4x4.multiplies(h, w);
    if pixels >= f4_pixels && 5 * f4 <= 4 * f2 {
        Some(Tile::F4x4)
    } else {
        Some(Tile::F2x2)
    }
}

/// `out = conv3x3(input, weights) + bias`, shapes as in the module docs, by the algorithm
/// `winograd_tile` picks. A Winograd kernel is transformed on every call, into `ws.kernel`
/// (keeping every layer's transforms would double a network's memory; see `Conv3x3`).
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
    ws: &mut ConvScratch<T>,
) {
    conv3x3_then(input, cin, h, w, weights, cout, bias, false, out, ws);
}

/// `conv3x3`, then `max(0, .)` when `relu`, applied as the outputs are written (one pass over
/// the layer's output fewer than `conv3x3` then `ops::relu`, bitwise the same values).
#[allow(clippy::too_many_arguments)]
pub fn conv3x3_then<T: Real>(
    input: &[T],
    cin: usize,
    h: usize,
    w: usize,
    weights: &[T],
    cout: usize,
    bias: Option<&[T]>,
    relu: bool,
    out: &mut [T],
    ws: &mut ConvScratch<T>,
) {
    let mut kernel = ws.kernel.take();
    forward(
        input,
        cin,
        h,
        w,
        weights,
        cout,
        bias,
        relu,
        out,
        ws,
        (&mut kernel, false),
    );
    ws.kernel = kernel;
}

/// `conv3x3_then` with the Winograd kernel kept in `kept` from call to call (built on the first
/// call, and again whenever the shape changes the algorithm), for a caller that can spend its
/// memory (4 times the weights for F(4x4), 16/9 for F(2x2)) on skipping the transform. `kept`
/// must only ever have seen these `weights`. Bitwise the same results as `conv3x3_then`.
#[allow(clippy::too_many_arguments)]
pub fn conv3x3_then_kept<T: Real>(
    input: &[T],
    cin: usize,
    h: usize,
    w: usize,
    weights: &[T],
    cout: usize,
    bias: Option<&[T]>,
    relu: bool,
    out: &mut [T],
    ws: &mut ConvScratch<T>,
    kept: &mut Option<WinogradKernel<T>>,
) {
    forward(
        input,
        cin,
        h,
        w,
        weights,
        cout,
        bias,
        relu,
        out,
        ws,
        (kept, true),
    );
}

/// Below this many input channels the input gradient skips the rotated-kernel convolution
/// (`ops::col2im`): at 256px that halves conv1_1's backward time relative to conv1_2's
/// (--profile: 0.44 -> 0.22 of conv1_2 bwd).
const FEW_INPUT_CHANNELS: usize = 16;

/// The input gradient of `conv3x3` with OIHW `weights` (`cout x cin x 3 x 3`): `grad_in`
/// (`cin x h x w`) from `grad_out` (`cout x h x w`). That is the convolution of `grad_out` with
/// `rotate_kernel(weights)`; its Winograd transform is read straight from `weights`, so no
/// rotated copy is kept (im2col rotates into `ws.rotated`), and with few input channels
/// `ops::col2im` computes it without the convolution.
#[allow(clippy::too_many_arguments)]
pub fn conv3x3_input_grad<T: Real>(
    grad_out: &[T],
    cout: usize,
    h: usize,
    w: usize,
    weights: &[T],
    cin: usize,
    grad_in: &mut [T],
    ws: &mut ConvScratch<T>,
) {
    let mut kernel = ws.kernel.take();
    input_grad(
        grad_out,
        cout,
        h,
        w,
        weights,
        cin,
        grad_in,
        ws,
        (&mut kernel, false),
    );
    ws.kernel = kernel;
}

/// `conv3x3_input_grad` with the Winograd kernel kept in `kept`, as `conv3x3_then_kept` keeps
/// the forward's. Bitwise the same results as `conv3x3_input_grad`.
#[allow(clippy::too_many_arguments)]
pub fn conv3x3_input_grad_kept<T: Real>(
    grad_out: &[T],
    cout: usize,
    h: usize,
    w: usize,
    weights: &[T],
    cin: usize,
    grad_in: &mut [T],
    ws: &mut ConvScratch<T>,
    kept: &mut Option<WinogradKernel<T>>,
) {
    input_grad(
        grad_out,
        cout,
        h,
        w,
        weights,
        cin,
        grad_in,
        ws,
        (kept, true),
    );
}

/// The Winograd variant of the kernel `conv3x3_then_kept` (or, `backward`,
/// `conv3x3_input_grad_kept`) keeps for a `cin -> cout` layer on an `h x w` image; `None`
/// where that path has no Winograd kernel.
pub fn kept_kernel_tile(
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    backward: bool,
) -> Option<Tile> {
    if backward {
        input_grad_tile(cin, cout, h, w)
    } else {
        winograd_tile(cin, cout, h, w, false)
    }
}

/// Bytes of that kernel; 0 where there is none.
pub fn kept_kernel_bytes<T: Real>(
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    backward: bool,
) -> usize {
    let (rows, cols) = if backward { (cin, cout) } else { (cout, cin) };
    kept_kernel_tile(cin, cout, h, w, backward).map_or(0, |t| {
        WinogradKernel::<T>::transform_len(t, rows, cols) * std::mem::size_of::<T>()
    })
}

/// The Winograd variant of the input gradient of a `cin -> cout` layer, if any (`None`: col2im
/// with few input channels, im2col otherwise).
fn input_grad_tile(cin: usize, cout: usize, h: usize, w: usize) -> Option<Tile> {
    if cin < FEW_INPUT_CHANNELS {
        return None;
    }
    winograd_tile(cout, cin, h, w, false)
}

/// Where a call gets its Winograd kernel: the slot that holds it, and whether a kernel already
/// there for the same variant and shape is reused (a kept one) or rebuilt from the weights into
/// its buffer (the scratch kernel, which another layer's call left).
type KernelSlot<'a, T> = (&'a mut Option<WinogradKernel<T>>, bool);

/// The kernel in `slot` when it may be reused and is a `cout x cin` one for `tile`, else
/// `build`'s (handed the old one's buffer), left in the slot.
fn slot_kernel<'a, T: Real>(
    (slot, reuse): KernelSlot<'a, T>,
    tile: Tile,
    cout: usize,
    cin: usize,
    build: impl FnOnce(Vec<T>) -> WinogradKernel<T>,
) -> &'a WinogradKernel<T> {
    let fits = reuse
        && slot
            .as_ref()
            .is_some_and(|k| k.tile() == tile && k.cout() == cout && k.cin() == cin);
    if !fits {
        let buf = slot
            .take()
            .map(WinogradKernel::into_buffer)
            .unwrap_or_default();
        *slot = Some(build(buf));
    }
    slot.as_ref().expect("filled just above")
}

/// `conv3x3_then` with the Winograd kernel from `kernel`.
#[allow(clippy::too_many_arguments)]
fn forward<T: Real>(
    input: &[T],
    cin: usize,
    h: usize,
    w: usize,
    weights: &[T],
    cout: usize,
    bias: Option<&[T]>,
    relu: bool,
    out: &mut [T],
    ws: &mut ConvScratch<T>,
    kernel: KernelSlot<'_, T>,
) {
    assert_eq!(weights.len(), cout * cin * 9, "conv weights");
    match winograd_tile(cin, cout, h, w, false) {
        Some(tile) => {
            let kernel = slot_kernel(kernel, tile, cout, cin, |buf| {
                WinogradKernel::with_tile_in(weights, cout, cin, tile, buf)
            });
            conv3x3_winograd_then(input, cin, h, w, kernel, bias, relu, out, &ws.tasks);
        }
        None => im2col_conv(input, cin, h, w, weights, cout, bias, relu, out, &ws.tasks),
    }
}

/// `conv3x3_input_grad` with the Winograd kernel from `kernel`.
#[allow(clippy::too_many_arguments)]
fn input_grad<T: Real>(
    grad_out: &[T],
    cout: usize,
    h: usize,
    w: usize,
    weights: &[T],
    cin: usize,
    grad_in: &mut [T],
    ws: &mut ConvScratch<T>,
    kernel: KernelSlot<'_, T>,
) {
    assert_eq!(weights.len(), cout * cin * 9, "conv weights");
    match input_grad_tile(cin, cout, h, w) {
        Some(tile) => {
            let kernel = slot_kernel(kernel, tile, cin, cout, |buf| {
                WinogradKernel::input_grad_in(weights, cout, cin, tile, buf)
            });
            conv3x3_winograd(grad_out, cout, h, w, kernel, None, grad_in, &ws.tasks);
        }
        None if cin < FEW_INPUT_CHANNELS => {
            conv3x3_input_grad_col2im(grad_out, cout, h, w, weights, cin, grad_in, &ws.tasks)
        }
        None => {
            rotate_kernel_into(weights, cout, cin, &mut ws.rotated);
            conv3x3_im2col(
                grad_out,
                cout,
                h,
                w,
                &ws.rotated,
                cin,
                None,
                grad_in,
                &ws.tasks,
            );
        }
    }
}

/// The weights of a 3x3 convolution together with their Winograd transforms, each built on
/// first use and then kept: the way to run the same weights many times (a network layer) at
/// full speed. Holds at most the raw weights plus 16/9 (F(2x2)) and 4 (F(4x4)) times their size,
/// and only the transforms that `winograd_tile` has asked for.
#[derive(Debug)]
pub struct Conv3x3<T> {
    cout: usize,
    cin: usize,
    weights: Vec<T>,
    f2: OnceLock<WinogradKernel<T>>,
    f4: OnceLock<WinogradKernel<T>>,
}

impl<T: Real> Conv3x3<T> {
    /// OIHW `weights`, `cout x cin x 3 x 3`.
    pub fn new(weights: Vec<T>, cout: usize, cin: usize) -> Self {
        assert_eq!(weights.len(), cout * cin * 9, "conv weights");
        Conv3x3 {
            cout,
            cin,
            weights,
            f2: OnceLock::new(),
            f4: OnceLock::new(),
        }
    }

    /// Output channels.
    pub fn cout(&self) -> usize {
        self.cout
    }

    /// Input channels.
    pub fn cin(&self) -> usize {
        self.cin
    }

    /// The raw OIHW weights.
    pub fn weights(&self) -> &[T] {
        &self.weights
    }

    /// The Winograd transform of the weights for `tile`, built on the first call.
    pub fn kernel(&self, tile: Tile) -> &WinogradKernel<T> {
        let cell = match tile {
            Tile::F2x2 => &self.f2,
            Tile::F4x4 => &self.f4,
        };
        cell.get_or_init(|| WinogradKernel::with_tile(&self.weights, self.cout, self.cin, tile))
    }

    /// `out = conv3x3(input, weights) + bias` (`input` `cin x h x w`, `out` `cout x h x w`).
    pub fn run(
        &self,
        input: &[T],
        h: usize,
        w: usize,
        bias: Option<&[T]>,
        out: &mut [T],
        scratch: &Scratch<T>,
    ) {
        let (cin, cout) = (self.cin, self.cout);
        let kernel = winograd_tile(cin, cout, h, w, true).map(|tile| self.kernel(tile));
        match kernel {
            Some(k) => conv3x3_winograd(input, cin, h, w, k, bias, out, scratch),
            None => conv3x3_im2col(input, cin, h, w, &self.weights, cout, bias, out, scratch),
        }
    }
}

/// `out = conv3x3(input, weights) + bias` by tiled im2col + GEMM (the general path, and the
/// oracle of the Winograd tests).
#[allow(clippy::too_many_arguments)]
pub fn conv3x3_im2col<T: Real>(
    input: &[T],
    cin: usize,
    h: usize,
    w: usize,
    weights: &[T],
    cout: usize,
    bias: Option<&[T]>,
    out: &mut [T],
    scratch: &Scratch<T>,
) {
    im2col_conv(input, cin, h, w, weights, cout, bias, false, out, scratch);
}

/// `conv3x3_im2col`, then a ReLU when `relu` (on each tile while it is in cache).
#[allow(clippy::too_many_arguments)]
fn im2col_conv<T: Real>(
    input: &[T],
    cin: usize,
    h: usize,
    w: usize,
    weights: &[T],
    cout: usize,
    bias: Option<&[T]>,
    relu: bool,
    out: &mut [T],
    scratch: &Scratch<T>,
) {
    let (hw, k) = (h * w, cin * 9);
    assert_eq!(weights.len(), cout * k, "conv weights");
    if !check_io(input, out, bias, cin, cout, hw) {
        return;
    }
    let (n_tile, m_tile) = tiling(k, cout, hw);
    let n_tiles = hw.div_ceil(n_tile);
    let m_chunks = cout.div_ceil(m_tile);
    let out_ptr = SharedMut(out.as_mut_ptr());
    (0..n_tiles * m_chunks).into_par_iter().for_each(|t| {
        scratch.with(k * n_tile, |col| {
            let (p0, m0) = ((t / m_chunks) * n_tile, (t % m_chunks) * m_tile);
            let (p1, m1) = ((p0 + n_tile).min(hw), (m0 + m_tile).min(cout));
            let n = p1 - p0;
            let col = &mut col[..k * n];
            im2col(input, h, w, p0, p1, col);
            // SAFETY: the tiles (m0..m1) x (p0..p1) partition the cout x hw output, so each task
            // writes a region no other task touches; A and B are in-bounds slices of `weights`
            // and `col`, which do not alias `out`.
            unsafe {
                let c = out_ptr.ptr().add(m0 * hw + p0);
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
                if bias.is_some() || relu {
                    for m in m0..m1 {
                        let bm = bias.map_or(T::zero(), |b| b[m]);
                        let row = std::slice::from_raw_parts_mut(out_ptr.ptr().add(m * hw + p0), n);
                        if relu {
                            widest(
                                #[inline(always)]
                                || row.iter_mut().for_each(|v| *v = (*v + bm).max(T::zero())),
                            );
                        } else {
                            row.iter_mut().for_each(|v| *v += bm);
                        }
                    }
                }
            }
        })
    });
}

/// Checks the input, output and bias lengths of a convolution shared by every algorithm;
/// `false` when there is nothing to compute.
pub(crate) fn check_io<T>(
    input: &[T],
    out: &[T],
    bias: Option<&[T]>,
    cin: usize,
    cout: usize,
    hw: usize,
) -> bool {
    assert_eq!(input.len(), cin * hw, "conv input");
    assert_eq!(out.len(), cout * hw, "conv output");
    if let Some(b) = bias {
        assert_eq!(b.len(), cout, "conv bias");
    }
    hw != 0 && cout != 0
}

/// The kernel of the input-gradient convolution: `[ci][co][kh][kw] = w[co][ci][2-kh][2-kw]`.
pub fn rotate_kernel<T: Real>(weights: &[T], cout: usize, cin: usize) -> Vec<T> {
    let mut r = Vec::new();
    rotate_kernel_into(weights, cout, cin, &mut r);
    r
}

/// `rotate_kernel` into `r` (resized to fit). Parallel over the rotated bank's rows, each
/// written contiguously (serial, with its writes a row apart, it took 2.5-4.8 ms per call for
/// 512 x 512 channels: conv5_1's input gradient at 256 px).
pub fn rotate_kernel_into<T: Real>(weights: &[T], cout: usize, cin: usize, r: &mut Vec<T>) {
    assert_eq!(weights.len(), cout * cin * 9);
    r.resize(weights.len(), T::zero());
    if cout == 0 {
        return;
    }
    r.par_chunks_mut(cout * 9)
        .enumerate()
        .for_each(|(ci, row)| {
            for (co, k) in row.chunks_exact_mut(9).enumerate() {
                let src = &weights[(co * cin + ci) * 9..][..9];
                for t in 0..9 {
                    k[8 - t] = src[t];
                }
            }
        });
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
            conv3x3(
                &x,
                cin,
                h,
                w,
                &wt,
                cout,
                Some(&b),
                &mut o,
                &mut ConvScratch::default(),
            );
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
        conv3x3_im2col(&x, cin, h, w, &wt, cout, None, &mut o, &Scratch::new());
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
            conv3x3(
                x,
                cin,
                h,
                w,
                &wt,
                cout,
                Some(&b),
                &mut o,
                &mut ConvScratch::default(),
            );
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
            &mut ConvScratch::default(),
        );
        let num = numeric_grad(&x, 1e-5, loss);
        assert!(max_rel_err(&gin, &num) < 1e-9);
    }

    #[test]
    fn input_grad_equals_rotated_kernel_convolution_on_every_path() {
        // (cin, cout, h, w): col2im (few input channels), im2col (too few pixels for
        // Winograd), Winograd F(2x2), Winograd F(4x4); the scratch is reused across shapes.
        let shapes = [
            (3, 20, 9, 7),
            (24, 20, 6, 5),
            (20, 24, 24, 25),
            (16, 18, 70, 66),
        ];
        let mut ws = ConvScratch::default();
        for (cin, cout, h, w) in shapes {
            let gout = noise(cout * h * w, 11);
            let wt = noise(cout * cin * 9, 12);
            let rot = rotate_kernel(&wt, cout, cin);
            let mut want = vec![0.0; cin * h * w];
            conv3x3_im2col(
                &gout,
                cout,
                h,
                w,
                &rot,
                cin,
                None,
                &mut want,
                &Scratch::new(),
            );
            let mut got = vec![f64::NAN; cin * h * w];
            conv3x3_input_grad(&gout, cout, h, w, &wt, cin, &mut got, &mut ws);
            assert!(max_rel_err(&got, &want) < 1e-12, "{cin} {cout} {h} {w}");
        }
    }

    /// A kept kernel gives bitwise the results of one transformed on the call, when built,
    /// when reused, and when a new shape needs another algorithm (F(4x4), F(2x2), im2col,
    /// col2im for the gradient of few channels); its size is what `kept_kernel_bytes` says.
    #[test]
    fn kept_kernels_are_bitwise_the_transformed_ones() {
        let mut ws = ConvScratch::<f32>::default();
        let (mut fwd, mut bwd) = (None, None);
        // (cin, cout, h, w): F(4x4) both ways, F(2x2) both ways, im2col both ways, then a
        // 3-channel input (im2col forward, col2im backward) and F(4x4) again.
        for (cin, cout, h, w) in [
            (16, 20, 70, 66),
            (16, 20, 17, 16),
            (16, 20, 9, 9),
            (3, 20, 70, 66),
            (16, 20, 70, 66),
        ] {
            let f32s = |v: Vec<f64>| v.into_iter().map(|v| v as f32).collect::<Vec<f32>>();
            let x = f32s(noise(cin * h * w, 31));
            let g = f32s(noise(cout * h * w, 32));
            let wt = f32s(noise(cout * cin * 9, 33));
            let b = f32s(noise(cout, 34));
            for _ in 0..2 {
                let mut want = vec![f32::NAN; cout * h * w];
                conv3x3_then(&x, cin, h, w, &wt, cout, Some(&b), true, &mut want, &mut ws);
                let mut got = vec![f32::NAN; cout * h * w];
                let bias = Some(b.as_slice());
                conv3x3_then_kept(
                    &x, cin, h, w, &wt, cout, bias, true, &mut got, &mut ws, &mut fwd,
                );
                assert!(got == want, "forward {cin} {cout} {h} {w}");
                let mut want = vec![f32::NAN; cin * h * w];
                conv3x3_input_grad(&g, cout, h, w, &wt, cin, &mut want, &mut ws);
                let mut got = vec![f32::NAN; cin * h * w];
                conv3x3_input_grad_kept(&g, cout, h, w, &wt, cin, &mut got, &mut ws, &mut bwd);
                assert!(got == want, "input gradient {cin} {cout} {h} {w}");
            }
            for (kept, backward) in [(&fwd, false), (&bwd, true)] {
                let bytes = kept_kernel_bytes::<f32>(cin, cout, h, w, backward);
                if bytes > 0 {
                    let k = kept.as_ref().expect("a Winograd path keeps its kernel");
                    let len = WinogradKernel::<f32>::transform_len(k.tile(), k.cout(), k.cin());
                    assert_eq!(bytes, 4 * len, "{cin} {cout} {h} {w} {backward}");
                }
            }
        }
    }

    #[test]
    fn dispatch_picks_each_path_and_each_matches_direct_definition() {
        // (cin, cout, h, w, cached, expected path)
        let cases = [
            (3, 8, 20, 20, true, None),
            (16, 8, 7, 7, true, None),
            (16, 8, 1, 80, true, None),
            (16, 8, 9, 9, true, Some(Tile::F2x2)),
            (16, 8, 9, 9, false, None),
            (16, 8, 17, 16, true, Some(Tile::F2x2)),
            (16, 8, 33, 32, true, Some(Tile::F4x4)),
            (32, 33, 15, 16, false, None),
            (32, 33, 17, 16, false, Some(Tile::F2x2)),
            (16, 8, 23, 23, false, Some(Tile::F2x2)),
            (32, 32, 2, 300, true, Some(Tile::F2x2)),
        ];
        for (cin, cout, h, w, cached, path) in cases {
            assert_eq!(
                winograd_tile(cin, cout, h, w, cached),
                path,
                "{cin} {cout} {h} {w}"
            );
            let x = noise(cin * h * w, 1);
            let wt = noise(cout * cin * 9, 2);
            let b = noise(cout, 3);
            let mut want = naive(&x, cin, h, w, &wt, cout);
            for (i, v) in want.iter_mut().enumerate() {
                *v += b[i / (h * w)];
            }
            let mut o = vec![0.0; cout * h * w];
            if cached {
                Conv3x3::new(wt.clone(), cout, cin).run(
                    &x,
                    h,
                    w,
                    Some(&b),
                    &mut o,
                    &Scratch::new(),
                );
            } else {
                conv3x3(
                    &x,
                    cin,
                    h,
                    w,
                    &wt,
                    cout,
                    Some(&b),
                    &mut o,
                    &mut ConvScratch::default(),
                );
            }
            assert!(max_rel_err(&o, &want) < 1e-12, "{cin} {cout} {h} {w}");
        }
        // The big-image rules.
        assert_eq!(winograd_tile(512, 512, 32, 32, true), Some(Tile::F2x2));
        assert_eq!(winograd_tile(512, 512, 64, 64, true), Some(Tile::F4x4));
        assert_eq!(winograd_tile(512, 512, 64, 64, false), Some(Tile::F4x4));
        assert_eq!(winograd_tile(512, 512, 32, 32, false), Some(Tile::F2x2));
        assert_eq!(winograd_tile(256, 256, 32, 32, false), Some(Tile::F2x2));
        assert_eq!(winograd_tile(256, 256, 64, 64, false), Some(Tile::F4x4));
        assert_eq!(winograd_tile(64, 3, 256, 256, true), Some(Tile::F4x4));
    }

    #[test]
    fn winograd_input_gradient_matches_finite_differences() {
        // Shapes where both directions take Winograd: F(2x2) through `conv3x3` (kernel
        // transformed on the call) and F(4x4) through `Conv3x3`; odd sides.
        for (cin, cout, h, w, cached) in [(16, 24, 23, 23, false), (16, 16, 33, 32, true)] {
            let tile = if cached { Tile::F4x4 } else { Tile::F2x2 };
            assert_eq!(winograd_tile(cin, cout, h, w, cached), Some(tile));
            assert_eq!(winograd_tile(cout, cin, h, w, cached), Some(tile));
            let x = noise(cin * h * w, 51);
            let wt = noise(cout * cin * 9, 52);
            let b = noise(cout, 53);
            let gout = noise(cout * h * w, 54);
            let (fwd, bwd) = (
                Conv3x3::new(wt.clone(), cout, cin),
                Conv3x3::new(rotate_kernel(&wt, cout, cin), cin, cout),
            );
            let conv = |x: &[f64], o: &mut [f64]| {
                if cached {
                    fwd.run(x, h, w, Some(&b), o, &Scratch::new())
                } else {
                    conv3x3(
                        x,
                        cin,
                        h,
                        w,
                        &wt,
                        cout,
                        Some(&b),
                        o,
                        &mut ConvScratch::default(),
                    )
                }
            };
            let loss = |x: &[f64]| {
                let mut o = vec![0.0; cout * h * w];
                conv(x, &mut o);
                o.iter().zip(&gout).map(|(a, g)| a * g).sum::<f64>()
            };
            let mut gin = vec![0.0; cin * h * w];
            if cached {
                bwd.run(&gout, h, w, None, &mut gin, &Scratch::new());
            } else {
                conv3x3(
                    &gout,
                    cout,
                    h,
                    w,
                    bwd.weights(),
                    cin,
                    None,
                    &mut gin,
                    &mut ConvScratch::default(),
                );
            }
            // Central differences on every 61st input (a prime stride, so all rows, columns
            // and channels are hit). The loss is linear in x, so they are exact up to rounding.
            let (step, mut xp) = (1e-5, x.clone());
            let (mut err, mut scale) = (0.0f64, 0.0f64);
            for i in (0..x.len()).step_by(61) {
                xp[i] = x[i] + step;
                let fp = loss(&xp);
                xp[i] = x[i] - step;
                let fm = loss(&xp);
                xp[i] = x[i];
                let num = (fp - fm) / (2.0 * step);
                err = err.max((gin[i] - num).abs());
                scale = scale.max(num.abs());
            }
            assert!(err / scale < 1e-8, "{tile:?}: {:e}", err / scale);
        }
    }

    #[test]
    fn fused_relu_is_bitwise_conv_then_relu_on_every_path() {
        // (cin, cout, h, w): im2col, Winograd F(2x2), Winograd F(4x4) through `conv3x3`.
        let cases = [
            (3, 8, 20, 21, None),
            (16, 8, 23, 23, Some(Tile::F2x2)),
            (64, 16, 70, 67, Some(Tile::F4x4)),
        ];
        for (cin, cout, h, w, path) in cases {
            assert_eq!(winograd_tile(cin, cout, h, w, false), path);
            let x: Vec<f32> = noise(cin * h * w, 4).iter().map(|&v| v as f32).collect();
            let wt: Vec<f32> = noise(cout * cin * 9, 5).iter().map(|&v| v as f32).collect();
            let b: Vec<f32> = noise(cout, 6).iter().map(|&v| v as f32).collect();
            let mut ws = ConvScratch::default();
            let mut want = vec![0.0f32; cout * h * w];
            conv3x3(&x, cin, h, w, &wt, cout, Some(&b), &mut want, &mut ws);
            assert!(want.iter().any(|&v| v < 0.0), "the ReLU has work");
            crate::ops::relu(&mut want);
            let mut got = vec![f32::NAN; cout * h * w];
            conv3x3_then(&x, cin, h, w, &wt, cout, Some(&b), true, &mut got, &mut ws);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert!(bits(&got) == bits(&want), "{cin} {cout} {h} {w}");
        }
    }

    #[test]
    fn f32_result_is_independent_of_thread_count() {
        let (cin, cout, h, w) = (64, 64, 40, 40);
        let x: Vec<f32> = noise(cin * h * w, 1).iter().map(|&v| v as f32).collect();
        let wt: Vec<f32> = noise(cout * cin * 9, 2).iter().map(|&v| v as f32).collect();
        // Both paths: this shape takes Winograd through `conv3x3`.
        assert!(winograd_tile(cin, cout, h, w, false).is_some());
        let run = |threads, winograd| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut o = vec![0.0f32; cout * h * w];
            pool.install(|| {
                if winograd {
                    conv3x3(
                        &x,
                        cin,
                        h,
                        w,
                        &wt,
                        cout,
                        None,
                        &mut o,
                        &mut ConvScratch::default(),
                    )
                } else {
                    conv3x3_im2col(&x, cin, h, w, &wt, cout, None, &mut o, &Scratch::new())
                }
            });
            o
        };
        assert_eq!(run(1, false), run(3, false));
        assert_eq!(run(1, true), run(3, true));
    }
}
