//! Kernel benchmarks on the shapes VGG-19 actually runs at 512 x 512.
//!
//! Run with `cargo bench --bench kernels` (optionally a filter: `cargo bench --bench kernels --
//! conv3x3_fwd`). Threads: rayon's global pool, i.e. all cores unless `RAYON_NUM_THREADS` is set.
//!
//! Groups:
//! - `sgemm_1t/<layer>`: one single-threaded `gemm::gemm` (f32) with the GEMM shape of a conv
//!   layer, M = cout, K = cin*9, but only the first `N = min(4096, H*W)` output pixels: a full
//!   conv1_2 GEMM at 512 (N = 262144) would need a 600 MB im2col matrix, which the engine never
//!   builds (it works on column tiles). This is the raw kernel speed on that layer's M and K.
//! - `sgemm_par/<layer>`: `gemm::par_gemm` on the same M and K over `N = min(16384, H*W)`
//!   columns, cut into column tiles of `max(256, 2^20 / K)` pixels, the pixel-tile width rule of
//!   `ops::conv` (its im2col block holds about 2^20 elements). This is GEMM plus rayon, without
//!   im2col.
//! - `conv3x3_fwd/<layer>/<path>`: one 3x3 convolution with bias on the full layer at 512 (input
//!   H x W as the network sees it after the poolings), all threads, by each strategy:
//!   `conv3x3` (`ops::conv3x3`: the library's choice of algorithm, transforming a Winograd
//!   kernel on every call), `layer` (`ops::Conv3x3::run`: the same choice with the transform
//!   cached, built before the timing), `im2col` (`ops::conv::conv3x3_im2col`, tiled im2col +
//!   GEMM), `winograd_f2` / `winograd_f4` (`ops::conv3x3_winograd` with a cached F(2x2, 3x3) /
//!   F(4x4, 3x3) `WinogradKernel`).
//! - `conv3x3_bwd/<layer>/<path>`: the input gradient of that convolution (a `cout x H x W` output
//!   gradient in, `cin x H x W` out, no bias): `conv3x3`, `layer` and `im2col` on the
//!   `rotate_kernel` weights with cin and cout swapped and, for
//!   conv1_1 (3 input channels), `col2im` (`ops::col2im::conv3x3_input_grad_col2im`, GEMM + gather). Same FLOPs
//!   as forward; for the rotated-kernel paths M is the layer's cin (3 for conv1_1).
//! - `gram/<tap>`: `loss::gram` (F F^T / HW) on each style tap at 512 (the row-dot kernel of
//!   `loss::gram_kernel` on AVX-512 CPUs).
//! - `winograd_product_1t/<layer>/<shape>/{panel,gemm}`: one product of a Winograd band (cout x
//!   cin times cin x tiles-per-band), single-threaded, by `ops::panel::panel_product` on a
//!   panel-laid bank and by the `gemm` crate on a row-major one.
//! - `style_loss/<tap>`: `loss::style_loss`, i.e. the Gram matrix plus the gradient product
//!   (G - T) F.
//!
//! Throughput: criterion only knows "bytes" and "elements", so every benchmark declares
//! `Throughput::Elements(flops)` with its floating-point operation count, and the "elem/s" (e.g.
//! "Gelem/s") that criterion prints reads directly as FLOP/s (GFLOP/s). One multiply-add counts
//! as 2 FLOP: 2*M*K*N for a GEMM, 2*cout*cin*9*H*W for a 3x3 conv (forward or input-gradient,
//! ignoring the padding zeros it multiplies) whatever the algorithm, so Winograd F(2x2, 3x3),
//! which does 4 multiplies per output instead of 9, shows an *effective* (direct-equivalent)
//! rate that can exceed the machine's peak; 2*C*C*HW for a Gram matrix (the full C x C
//! product, which is what the kernel computes), 4*C*C*HW for the style loss.
//!
//! GEMM kernel: whatever `neural_style::gemm` selects. At the time of writing that is the `gemm`
//! crate, and `NEURAL_STYLE_GEMM=matrixmultiply cargo bench --bench kernels` measures the
//! portable `matrixmultiply` baseline instead (criterion then reports the change against the
//! previous run of the same benchmark ids). The setting is printed at start.
//!
//! Data are pseudo-random (xorshift), not the real weights: the kernels' speed does not depend
//! on the values. Run times are kept short (10 samples) so the whole file takes about 4 minutes
//! on two cores. On a machine shared with other jobs, a benchmark that overlaps someone else's
//! build can read 2x slow: compare paths of the same layer (measured back to back) rather than
//! distant rows, and rerun a group with a filter when a figure looks off.

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use neural_style::gemm::{gemm, par_gemm, MatRef};
use neural_style::loss::{gram_into, style_loss, LossScratch};
use neural_style::ops::col2im::conv3x3_input_grad_col2im;
use neural_style::ops::conv::conv3x3_im2col;
use neural_style::ops::panel::{panel_product, PANEL};
use neural_style::ops::{
    conv3x3, conv3x3_input_grad, conv3x3_then, conv3x3_winograd, relu, rotate_kernel, Conv3x3,
    ConvScratch, Scratch, Tile, WinogradKernel,
};
use std::hint::black_box;
use std::time::Duration;

/// Image side the shapes are taken at.
const SIDE: usize = 512;

/// The distinct conv shapes of VGG-19 up to conv5_1 at 512: (name, cin, cout, side). The
/// remaining layers (conv3_3, conv3_4, conv4_3, conv4_4) repeat conv3_2 and conv4_2.
const CONVS: [(&str, usize, usize, usize); 9] = [
    ("conv1_1", 3, 64, SIDE),
    ("conv1_2", 64, 64, SIDE),
    ("conv2_1", 64, 128, SIDE / 2),
    ("conv2_2", 128, 128, SIDE / 2),
    ("conv3_1", 128, 256, SIDE / 4),
    ("conv3_2", 256, 256, SIDE / 4),
    ("conv4_1", 256, 512, SIDE / 8),
    ("conv4_2", 512, 512, SIDE / 8),
    ("conv5_1", 512, 512, SIDE / 16),
];

/// Layers whose GEMM shapes are benchmarked on their own.
const GEMM_LAYERS: [&str; 5] = ["conv1_2", "conv2_2", "conv3_2", "conv4_2", "conv5_1"];

/// Style taps at 512: (name, channels, side).
const TAPS: [(&str, usize, usize); 5] = [
    ("conv1_1", 64, SIDE),
    ("conv2_1", 128, SIDE / 2),
    ("conv3_1", 256, SIDE / 4),
    ("conv4_1", 512, SIDE / 8),
    ("conv5_1", 512, SIDE / 16),
];

/// Deterministic pseudo-random values in [-1, 1) (xorshift64*).
fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            let r = s.wrapping_mul(0x2545_F491_4F6C_DD1D);
            ((r >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Non-negative noise, like post-ReLU activations.
fn activations(n: usize, seed: u64) -> Vec<f32> {
    noise(n, seed).into_iter().map(f32::abs).collect()
}

fn conv_shape(name: &str) -> (usize, usize, usize) {
    let &(_, cin, cout, side) = CONVS.iter().find(|c| c.0 == name).expect("layer");
    (cin, cout, side)
}

fn configure<M: criterion::measurement::Measurement>(g: &mut criterion::BenchmarkGroup<'_, M>) {
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_millis(1500))
        // One long iteration per sample is fine for kernels this size.
        .sampling_mode(SamplingMode::Flat);
}

fn bench_sgemm(c: &mut Criterion) {
    eprintln!(
        "kernels bench: NEURAL_STYLE_GEMM={}, {} rayon threads",
        std::env::var("NEURAL_STYLE_GEMM").unwrap_or_else(|_| "(unset: library default)".into()),
        rayon::current_num_threads()
    );
    let mut g = c.benchmark_group("sgemm_1t");
    configure(&mut g);
    for name in GEMM_LAYERS {
        let (cin, cout, side) = conv_shape(name);
        let (m, k, n) = (cout, cin * 9, (side * side).min(4096));
        let a = noise(m * k, 1);
        let b = noise(k * n, 2);
        let mut out = vec![0.0f32; m * n];
        g.throughput(Throughput::Elements((2 * m * k * n) as u64));
        g.bench_function(BenchmarkId::new(name, format!("{m}x{k}x{n}")), |bch| {
            bch.iter(|| {
                gemm(
                    1.0,
                    MatRef::new(&a, m, k),
                    MatRef::new(&b, k, n),
                    0.0,
                    &mut out,
                );
                black_box(&out);
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("sgemm_par");
    configure(&mut g);
    for name in GEMM_LAYERS {
        let (cin, cout, side) = conv_shape(name);
        let (m, k, n) = (cout, cin * 9, (side * side).min(16384));
        let tile = ((1usize << 20) / k).max(256).min(n);
        let a = noise(m * k, 3);
        let b = noise(k * n, 4);
        let mut out = vec![0.0f32; m * n];
        g.throughput(Throughput::Elements((2 * m * k * n) as u64));
        g.bench_function(
            BenchmarkId::new(name, format!("{m}x{k}x{n}/tile{tile}")),
            |bch| {
                bch.iter(|| {
                    par_gemm(
                        1.0,
                        MatRef::new(&a, m, k),
                        MatRef::new(&b, k, n),
                        0.0,
                        &mut out,
                        tile,
                    );
                    black_box(&out);
                })
            },
        );
    }
    g.finish();
}

fn bench_conv(c: &mut Criterion) {
    let mut g = c.benchmark_group("conv3x3_fwd");
    configure(&mut g);
    for &(name, cin, cout, side) in &CONVS {
        let (h, w) = (side, side);
        let x = activations(cin * h * w, 5);
        let wt: Vec<f32> = noise(cout * cin * 9, 6).iter().map(|v| v * 0.05).collect();
        let bias = noise(cout, 7);
        let layer = Conv3x3::new(wt.clone(), cout, cin);
        let f2 = WinogradKernel::with_tile(&wt, cout, cin, Tile::F2x2);
        let f4 = WinogradKernel::with_tile(&wt, cout, cin, Tile::F4x4);
        let mut out = vec![0.0f32; cout * h * w];
        // Buffers reused between calls, as the engine does; the first calls size them and
        // build the layer's cached transform (if it uses one) outside the timing.
        let mut ws = ConvScratch::default();
        let tasks = Scratch::new();
        layer.run(&x, h, w, Some(&bias), &mut out, &tasks);
        conv3x3(&x, cin, h, w, &wt, cout, Some(&bias), &mut out, &mut ws);
        g.throughput(Throughput::Elements((2 * cout * cin * 9 * h * w) as u64));
        g.bench_function(BenchmarkId::new(name, "conv3x3"), |bch| {
            bch.iter(|| {
                conv3x3(
                    &x,
                    cin,
                    h,
                    w,
                    &wt,
                    cout,
                    Some(&bias),
                    black_box(&mut out),
                    &mut ws,
                )
            })
        });
        // What the forward pass runs per layer: the ReLU as its own pass, or fused into the
        // convolution's output writes.
        g.bench_function(BenchmarkId::new(name, "conv3x3+relu"), |bch| {
            bch.iter(|| {
                conv3x3(&x, cin, h, w, &wt, cout, Some(&bias), &mut out, &mut ws);
                relu(black_box(&mut out))
            })
        });
        g.bench_function(BenchmarkId::new(name, "conv3x3_then_relu"), |bch| {
            bch.iter(|| {
                let out = black_box(&mut out);
                conv3x3_then(&x, cin, h, w, &wt, cout, Some(&bias), true, out, &mut ws)
            })
        });
        g.bench_function(BenchmarkId::new(name, "layer"), |bch| {
            bch.iter(|| layer.run(&x, h, w, Some(&bias), black_box(&mut out), &tasks))
        });
        g.bench_function(BenchmarkId::new(name, "im2col"), |bch| {
            bch.iter(|| {
                conv3x3_im2col(
                    &x,
                    cin,
                    h,
                    w,
                    &wt,
                    cout,
                    Some(&bias),
                    black_box(&mut out),
                    &tasks,
                )
            })
        });
        g.bench_function(BenchmarkId::new(name, "winograd_f2"), |bch| {
            bch.iter(|| {
                conv3x3_winograd(&x, cin, h, w, &f2, Some(&bias), black_box(&mut out), &tasks)
            })
        });
        g.bench_function(BenchmarkId::new(name, "winograd_f4"), |bch| {
            bch.iter(|| {
                conv3x3_winograd(&x, cin, h, w, &f4, Some(&bias), black_box(&mut out), &tasks)
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("conv3x3_bwd");
    configure(&mut g);
    for &(name, cin, cout, side) in &CONVS {
        let (h, w) = (side, side);
        let gout = noise(cout * h * w, 8);
        let wt: Vec<f32> = noise(cout * cin * 9, 9).iter().map(|v| v * 0.05).collect();
        let rot = rotate_kernel(&wt, cout, cin);
        // The input gradient as a layer of its own: the rotated kernel, channels swapped.
        let layer = Conv3x3::new(rot.clone(), cin, cout);
        let mut gin = vec![0.0f32; cin * h * w];
        let mut ws = ConvScratch::default();
        let tasks = Scratch::new();
        layer.run(&gout, h, w, None, &mut gin, &tasks);
        conv3x3_input_grad(&gout, cout, h, w, &wt, cin, &mut gin, &mut ws);
        g.throughput(Throughput::Elements((2 * cout * cin * 9 * h * w) as u64));
        g.bench_function(BenchmarkId::new(name, "conv3x3"), |bch| {
            bch.iter(|| {
                conv3x3(
                    &gout,
                    cout,
                    h,
                    w,
                    &rot,
                    cin,
                    None,
                    black_box(&mut gin),
                    &mut ws,
                )
            })
        });
        g.bench_function(BenchmarkId::new(name, "layer"), |bch| {
            bch.iter(|| layer.run(&gout, h, w, None, black_box(&mut gin), &tasks))
        });
        g.bench_function(BenchmarkId::new(name, "im2col"), |bch| {
            bch.iter(|| {
                conv3x3_im2col(
                    &gout,
                    cout,
                    h,
                    w,
                    &rot,
                    cin,
                    None,
                    black_box(&mut gin),
                    &tasks,
                )
            })
        });
        if cin < 16 {
            g.bench_function(BenchmarkId::new(name, "col2im"), |bch| {
                bch.iter(|| {
                    conv3x3_input_grad_col2im(
                        &gout,
                        cout,
                        h,
                        w,
                        &wt,
                        cin,
                        black_box(&mut gin),
                        &tasks,
                    )
                })
            });
        }
    }
    g.finish();
}

fn bench_gram(c: &mut Criterion) {
    let mut g = c.benchmark_group("gram");
    configure(&mut g);
    for &(name, ch, side) in &TAPS {
        let n = side * side;
        let f = activations(ch * n, 10);
        g.throughput(Throughput::Elements((2 * ch * ch * n) as u64));
        let (mut out, mut partials) = (vec![0.0f32; ch * ch], Vec::new());
        g.bench_function(BenchmarkId::new(name, format!("{ch}x{n}")), |bch| {
            bch.iter(|| gram_into(&f, ch, n, black_box(&mut out), &mut partials))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("style_loss");
    configure(&mut g);
    for &(name, ch, side) in &TAPS {
        let n = side * side;
        let f = activations(ch * n, 11);
        let target = activations(ch * ch, 12);
        g.throughput(Throughput::Elements((4 * ch * ch * n) as u64));
        let (mut grad, mut scratch) = (vec![0.0f32; ch * n], LossScratch::default());
        g.bench_function(BenchmarkId::new(name, format!("{ch}x{n}")), |bch| {
            bch.iter(|| {
                let value = style_loss(&f, ch, n, &target, 8.0f32, &mut grad, &mut scratch);
                black_box(value);
                black_box(grad.first().copied())
            })
        });
    }
    g.finish();
}

/// One Winograd band's product at each layer's shape, single-threaded: `ops::panel` (the
/// engine's) against the `gemm` crate on a row-major bank.
fn bench_panel(c: &mut Criterion) {
    let mut g = c.benchmark_group("winograd_product_1t");
    configure(&mut g);
    for name in GEMM_LAYERS {
        let (cin, cout, _) = conv_shape(name);
        // Tiles per band as `ops::winograd` takes them for F(4x4).
        let n = if cin <= 128 { 64 } else { 32 };
        let a = noise(cout * cin, 13);
        let panels = noise(cout.div_ceil(PANEL) * PANEL * cin, 13);
        let b = noise(cin * n, 14);
        let mut out = vec![0.0f32; cout * n];
        g.throughput(Throughput::Elements((2 * cout * cin * n) as u64));
        let shape = format!("{cout}x{cin}x{n}");
        g.bench_function(BenchmarkId::new(name, format!("{shape}/panel")), |bch| {
            bch.iter(|| panel_product(&panels, cout, cin, &b, n, n, black_box(&mut out), n))
        });
        g.bench_function(BenchmarkId::new(name, format!("{shape}/gemm")), |bch| {
            bch.iter(|| {
                gemm(
                    1.0,
                    MatRef::new(&a, cout, cin),
                    MatRef::new(&b, cin, n),
                    0.0,
                    black_box(&mut out),
                )
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_sgemm, bench_conv, bench_gram, bench_panel);
criterion_main!(benches);
