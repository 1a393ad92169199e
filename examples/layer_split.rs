//! Split of each VGG layer's time at one size (2 threads): full call as vgg.rs makes it,
//! kernel transform, Winograd conv with a ready kernel, GEMM-only at the same task grid, ReLU;
//! Gram and style-gradient products separately.
//! Run: `cargo run --release --example layer_split` (see docs/performance-limit.md).
mod common;

use common::noise;
use neural_style::gemm::{gemm_into, par_gemm, MatRef};
use neural_style::loss::gram_into;
use neural_style::ops::conv::winograd_tile;
use neural_style::ops::{
    conv3x3, conv3x3_input_grad, conv3x3_winograd, relu, relu_backward, relu_mask, ConvScratch,
    Scratch, Tile, WinogradKernel,
};
use rayon::prelude::*;
use std::hint::black_box;
use std::time::Instant;

fn best(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .fold(f64::INFINITY, f64::min)
}

fn cdiv(a: usize, b: usize) -> usize {
    a.div_ceil(b)
}

/// GEMM-only time of a Winograd conv with the code's task grid (src/ops/winograd.rs `tiling`).
fn wino_gemm_only(m: usize, cin: usize, cout: usize, h: usize, w: usize, reps: usize) -> f64 {
    let a2 = (m + 2) * (m + 2);
    let ntiles = cdiv(h, m) * cdiv(w, m);
    let band_tiles = if cin <= if m == 2 { 256 } else { 128 } {
        64
    } else {
        32
    };
    let nbands = cdiv(ntiles, band_tiles).max(1);
    let band = cdiv(ntiles, nbands);
    let chunks = cdiv(8, nbands).clamp(1, (cout / 32).max(1));
    let chunk = cdiv(cout, chunks);
    let nchunks = cdiv(cout, chunk);
    let u = noise(a2 * cout * cin, 3);
    let vsrc = noise(a2 * cin * band, 4);
    let scratch: Scratch<f32> = Scratch::new();
    let vs = a2 * (cin * band + 16);
    let ms = a2 * (chunk * band + 16);
    best(reps, || {
        (0..nbands * nchunks).into_par_iter().for_each(|task| {
            scratch.with(vs + ms, |buf| {
                let (v, mm) = buf.split_at_mut(vs);
                let (t0, m0) = ((task / nchunks) * band, (task % nchunks) * chunk);
                let (t1, m1) = ((t0 + band).min(ntiles), (m0 + chunk).min(cout));
                let (n, mn) = (t1 - t0, m1 - m0);
                // stand-in for the input transform: copy (so V is in cache as after a transform)
                for xi in 0..a2 {
                    v[xi * (cin * n + 16)..][..cin * n]
                        .copy_from_slice(&vsrc[xi * cin * band..][..cin * n]);
                }
                for xi in 0..a2 {
                    let vx = MatRef::new(&v[xi * (cin * n + 16)..][..cin * n], cin, n);
                    let mx = &mut mm[xi * (mn * n + 16)..][..mn * n];
                    let ux = MatRef::new(&u[xi * cout * cin..][..cout * cin], cout, cin);
                    gemm_into(1.0, ux.rows(m0, m1), vx, 0.0, mx, n);
                }
                black_box(&mm[0]);
            })
        })
    })
}

/// Time of the copies alone in `wino_gemm_only` (subtracted from it).
fn wino_copy_only(m: usize, cin: usize, cout: usize, h: usize, w: usize, reps: usize) -> f64 {
    let a2 = (m + 2) * (m + 2);
    let ntiles = cdiv(h, m) * cdiv(w, m);
    let band_tiles = if cin <= if m == 2 { 256 } else { 128 } {
        64
    } else {
        32
    };
    let nbands = cdiv(ntiles, band_tiles).max(1);
    let band = cdiv(ntiles, nbands);
    let chunks = cdiv(8, nbands).clamp(1, (cout / 32).max(1));
    let chunk = cdiv(cout, chunks);
    let nchunks = cdiv(cout, chunk);
    let vsrc = noise(a2 * cin * band, 4);
    let scratch: Scratch<f32> = Scratch::new();
    let vs = a2 * (cin * band + 16);
    best(reps, || {
        (0..nbands * nchunks).into_par_iter().for_each(|task| {
            scratch.with(vs, |v| {
                let t0 = (task / nchunks) * band;
                let n = (t0 + band).min(ntiles) - t0;
                for xi in 0..a2 {
                    v[xi * (cin * n + 16)..][..cin * n]
                        .copy_from_slice(&vsrc[xi * cin * band..][..cin * n]);
                }
                black_box(&v[0]);
            })
        })
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let size: usize = args.get(1).map_or(512, |s| s.parse().unwrap());
    let reps: usize = args.get(2).map_or(5, |s| s.parse().unwrap());
    rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build_global()
        .unwrap();
    let layers = [
        ("conv1_1", 3, 64, 1),
        ("conv1_2", 64, 64, 1),
        ("conv2_1", 64, 128, 2),
        ("conv2_2", 128, 128, 2),
        ("conv3_1", 128, 256, 3),
        ("conv3_2", 256, 256, 3),
        ("conv3_3", 256, 256, 3),
        ("conv3_4", 256, 256, 3),
        ("conv4_1", 256, 512, 4),
        ("conv4_2", 512, 512, 4),
        ("conv4_3", 512, 512, 4),
        ("conv4_4", 512, 512, 4),
        ("conv5_1", 512, 512, 5),
    ];
    println!("layer dir algo full_ms ktrans_ms conv_ready_ms gemm_only_ms relu_ms");
    let mut ws: ConvScratch<f32> = ConvScratch::default();
    for dir in ["fwd", "bwd"] {
        for &(name, cin, cout, block) in &layers {
            let s = size >> (block - 1);
            let (h, w) = (s, s);
            let wt = noise(cout * cin * 9, 1);
            let bias = noise(cout, 2);
            let (xin, xout) = if dir == "fwd" {
                (cin, cout)
            } else {
                (cout, cin)
            };
            let x = noise(xin * h * w, 5);
            let mut out = vec![0f32; xout * h * w];
            let full = if dir == "fwd" {
                best(reps, || {
                    conv3x3(&x, cin, h, w, &wt, cout, Some(&bias), &mut out, &mut ws)
                })
            } else {
                best(reps, || {
                    conv3x3_input_grad(&x, cout, h, w, &wt, cin, &mut out, &mut ws)
                })
            };
            // ReLU as vgg.rs does around the conv: fwd relu (+ mask for layers not kept), bwd relu_backward.
            let y = noise(cout * h * w, 7);
            let mut yy = y.clone();
            let mut mask = vec![0u64; (cout * h * w).div_ceil(64)];
            let kept = matches!(
                name,
                "conv1_1" | "conv2_1" | "conv3_1" | "conv4_1" | "conv5_1" | "conv4_2"
            );
            let relu_ms = if dir == "fwd" {
                let r = best(reps, || relu(&mut yy));
                r + if kept {
                    0.0
                } else {
                    best(reps, || relu_mask(&yy, &mut mask))
                }
            } else {
                let mut g = noise(cout * h * w, 8);
                best(reps, || relu_backward(&y, &mut g))
            };
            let few = dir == "bwd" && cin < 16;
            let tile = if few {
                None
            } else {
                winograd_tile(xin, xout, h, w, false)
            };
            match tile {
                Some(t) => {
                    let m = t.side();
                    let mut buf = Vec::new();
                    let sc: Scratch<f32> = Scratch::new();
                    let kt = best(reps, || {
                        let b = std::mem::take(&mut buf);
                        let k = if dir == "fwd" {
                            WinogradKernel::with_tile_in(&wt, cout, cin, t, b)
                        } else {
                            WinogradKernel::input_grad_in(&wt, cout, cin, t, b)
                        };
                        buf = k.into_buffer();
                    });
                    let k = if dir == "fwd" {
                        WinogradKernel::with_tile_in(&wt, cout, cin, t, Vec::new())
                    } else {
                        WinogradKernel::input_grad_in(&wt, cout, cin, t, Vec::new())
                    };
                    let b = if dir == "fwd" {
                        Some(bias.as_slice())
                    } else {
                        None
                    };
                    let ready = best(reps, || {
                        conv3x3_winograd(&x, xin, h, w, &k, b, &mut out, &sc)
                    });
                    let g = wino_gemm_only(m, xin, xout, h, w, reps)
                        - wino_copy_only(m, xin, xout, h, w, reps);
                    let alg = if t == Tile::F4x4 { "F4" } else { "F2" };
                    println!("{name} {dir} {alg} {full:.2} {kt:.2} {ready:.2} {g:.2} {relu_ms:.2}");
                }
                None => {
                    // im2col (fwd conv1_1) or col2im (bwd conv1_1): GEMM-only of the same shape.
                    let hw = h * w;
                    let g = if !few {
                        let k = xin * 9;
                        let col = noise(k * hw, 9);
                        let sc: Scratch<f32> = Scratch::new();
                        let n_tile = (1usize << 20) / k;
                        let n_tile = n_tile.max(256).min(hw);
                        let nt = hw.div_ceil(n_tile);
                        best(reps, || {
                            (0..nt).into_par_iter().for_each(|t| {
                                sc.with(xout * n_tile, |c| {
                                    let (p0, p1) = (t * n_tile, ((t + 1) * n_tile).min(hw));
                                    let b = MatRef::new(&col, k, hw).cols(p0, p1);
                                    gemm_into(
                                        1.0,
                                        MatRef::new(&wt, xout, k),
                                        b,
                                        0.0,
                                        &mut c[..xout * (p1 - p0)],
                                        p1 - p0,
                                    );
                                })
                            })
                        })
                    } else {
                        let k = cin * 9;
                        let band = ((1usize << 18) / (k * w)).clamp(1, h);
                        let sc: Scratch<f32> = Scratch::new();
                        best(reps, || {
                            (0..h.div_ceil(band)).into_par_iter().for_each(|b| {
                                sc.with(k * (band + 2) * w, |dcol| {
                                    let (y0, y1) = (b * band, ((b + 1) * band).min(h));
                                    let (r0, r1) = (y0.saturating_sub(1), (y1 + 1).min(h));
                                    let n = (r1 - r0) * w;
                                    gemm_into(
                                        1.0,
                                        MatRef::t(&wt, k, cout),
                                        MatRef::new(&x, cout, hw).cols(r0 * w, r1 * w),
                                        0.0,
                                        &mut dcol[..k * n],
                                        n,
                                    );
                                })
                            })
                        })
                    };
                    let alg = if few { "col2im" } else { "im2col" };
                    println!("{name} {dir} {alg} {full:.2} 0 {full:.2} {g:.2} {relu_ms:.2}");
                }
            }
        }
    }
    println!("style layer c n gram_ms grad_ms");
    for &(name, c, block) in &[
        ("conv1_1", 64, 1),
        ("conv2_1", 128, 2),
        ("conv3_1", 256, 3),
        ("conv4_1", 512, 4),
        ("conv5_1", 512, 5),
    ] {
        let s = size >> (block - 1);
        let n = s * s;
        let f = noise(c * n, 11);
        let mut g = vec![0f32; c * c];
        let mut partials = Vec::new();
        let gm = best(reps, || gram_into(&f, c, n, &mut g, &mut partials));
        let mut grad = vec![0f32; c * n];
        let gr = best(reps, || {
            par_gemm(
                1e-6,
                MatRef::new(&g, c, c),
                MatRef::new(&f, c, n),
                1.0,
                &mut grad,
                1 << 11,
            )
        });
        println!("style {name} {c} {n} {gm:.2} {gr:.2}");
    }
}
