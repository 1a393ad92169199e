//! The products of every Winograd layer at one image size, with the code's task grid: the
//! `gemm` crate on a row-major kernel bank against `ops::panel` on the panel-laid bank,
//! alternating, min of runs (2 threads). Run:
//! `cargo run --release --example panel_vs_gemm -- 512 7 [32]` (size, runs, tiles per band
//! over 128 input channels for F(4x4), over 256 for F(2x2)).
mod common;

use common::noise;
use neural_style::gemm::{gemm_into, MatRef};
use neural_style::ops::conv::winograd_tile;
use neural_style::ops::panel::{panel_product, PANEL};
use neural_style::ops::{Scratch, Tile};
use rayon::prelude::*;
use std::hint::black_box;
use std::time::Instant;

fn time(f: &mut impl FnMut()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64() * 1e3
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let size: usize = args.get(1).map_or(512, |s| s.parse().unwrap());
    let runs: usize = args.get(2).map_or(7, |s| s.parse().unwrap());
    // Optional: tiles per band over 128 input channels for F(4x4), over 256 for F(2x2) (the
    // code's choice: 32).
    let wide_band: usize = args.get(3).map_or(32, |s| s.parse().unwrap());
    rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build_global()
        .unwrap();
    let layers = [
        ("conv1_2", 64, 64, 1),
        ("conv2_1", 64, 128, 2),
        ("conv2_2", 128, 128, 2),
        ("conv3_1", 128, 256, 3),
        ("conv3_2", 256, 256, 3),
        ("conv4_1", 256, 512, 4),
        ("conv4_2", 512, 512, 4),
        ("conv5_1", 512, 512, 5),
    ];
    println!("layer dir tile gemm_ms panel_ms panel/gemm");
    for &(name, cin0, cout0, block) in &layers {
        for dir in ["fwd", "bwd"] {
            let (cin, cout) = if dir == "fwd" {
                (cin0, cout0)
            } else {
                (cout0, cin0)
            };
            let s = size >> (block - 1);
            let Some(tile) = winograd_tile(cin, cout, s, s, false) else {
                continue;
            };
            let (m, a2) = (tile.side(), tile.positions());
            let ntiles = s.div_ceil(m).pow(2);
            let band_tiles = if cin <= if tile == Tile::F2x2 { 256 } else { 128 } {
                64
            } else {
                wide_band
            };
            let nbands = ntiles.div_ceil(band_tiles).max(1);
            let band = ntiles.div_ceil(nbands);
            let chunks = 8usize.div_ceil(nbands).clamp(1, (cout / 32).max(1));
            let chunk = cout.div_ceil(chunks).div_ceil(PANEL) * PANEL;
            let nchunks = cout.div_ceil(chunk);
            let prow = cout.div_ceil(PANEL) * PANEL;
            let u = noise(a2 * cout * cin, 3);
            let up = noise(a2 * prow * cin, 3);
            let v = noise(a2 * cin * band, 4);
            let scratch: Scratch<f32> = Scratch::new();
            let products = |panel: bool| {
                (0..nbands * nchunks).into_par_iter().for_each(|task| {
                    scratch.with(a2 * chunk * band, |out| {
                        let (t0, m0) = ((task / nchunks) * band, (task % nchunks) * chunk);
                        let (n, mn) = ((t0 + band).min(ntiles) - t0, (m0 + chunk).min(cout) - m0);
                        for xi in 0..a2 {
                            let vx = &v[xi * cin * band..][..cin * n];
                            let mx = &mut out[xi * chunk * band..][..mn * n];
                            if panel {
                                let a = &up[xi * prow * cin + m0 * cin..];
                                panel_product(
                                    &a[..mn.div_ceil(PANEL) * PANEL * cin],
                                    mn,
                                    cin,
                                    vx,
                                    n,
                                    n,
                                    mx,
                                    n,
                                );
                            } else {
                                let ux =
                                    MatRef::new(&u[xi * cout * cin..][..cout * cin], cout, cin);
                                gemm_into(
                                    1.0,
                                    ux.rows(m0, m0 + mn),
                                    MatRef::new(vx, cin, n),
                                    0.0,
                                    mx,
                                    n,
                                );
                            }
                        }
                        black_box(&out[0]);
                    })
                })
            };
            let (mut g, mut p) = (f64::INFINITY, f64::INFINITY);
            for _ in 0..runs {
                g = g.min(time(&mut || products(false)));
                p = p.min(time(&mut || products(true)));
            }
            println!("{name} {dir} {tile:?} {g:.2} {p:.2} {:.2}", p / g);
        }
    }
}
