//! One whole optimisation step of the seed's objective, with the real VGG-19 weights:
//! `Objective::evaluate` (forward to conv5_1, the content and Gram style losses, backward to the
//! pixels) followed by `Adam::step`, at 256 x 256 and 512 x 512.
//!
//! Run with `cargo bench --bench step` (needs `weights/vgg19.npz`: `bash scripts/fetch-weights.sh`).
//! Threads: rayon's global pool, all cores unless `RAYON_NUM_THREADS` is set. GEMM kernel: the
//! library's choice (`NEURAL_STYLE_GEMM=matrixmultiply` selects the portable baseline).
//!
//! Images: `examples/astronaut.jpg` (content, 512 x 512) and `examples/starry-night.jpg` (style),
//! resized so that the long side is the benchmark size, exactly as the CLI's `--size` does. If
//! they are missing, scikit-image's `astronaut.png` and `coffee.png` under
//! `/tmp/skimg/skimage/data/` are used instead (a message says so).
//!
//! Throughput: `Throughput::Elements(flops)`, so criterion's "elem/s" reads as FLOP/s. The count
//! is that of the convolutions only, computed from the layer table for the actual image shape:
//! forward through conv1_1..conv5_1 is about 94.7 G multiply-adds at 512 x 512, and the backward
//! pass runs one input-gradient convolution of the same size per layer, so a step is about
//! 2 x 94.7 GMAC = 2 x 2 x 94.7 GFLOP = 379 GFLOP at 512 (94.7 GFLOP at 256), counting a
//! multiply-add as 2 FLOP like the kernel benchmarks. It is the direct convolution's count
//! whatever algorithm runs, so with Winograd layers the rate is an *effective* one. The losses
//! (Gram products F F^T and style gradients (G - T) F, about 18 GFLOP at 512), pooling, ReLU and
//! Adam are extra work not counted, so the figure is directly comparable to `conv3x3_fwd` /
//! `conv3x3_bwd` in `benches/kernels.rs`.

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use neural_style::transfer::{initial_image, Init};
use neural_style::{image, Adam, Evaluation, LossConfig, Objective, Vgg19};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// (layer, cin, cout, pooling level) of conv1_1..conv5_1, the layers the seed objective runs.
const LAYERS: [(&str, usize, usize, u32); 13] = [
    ("conv1_1", 3, 64, 0),
    ("conv1_2", 64, 64, 0),
    ("conv2_1", 64, 128, 1),
    ("conv2_2", 128, 128, 1),
    ("conv3_1", 128, 256, 2),
    ("conv3_2", 256, 256, 2),
    ("conv3_3", 256, 256, 2),
    ("conv3_4", 256, 256, 2),
    ("conv4_1", 256, 512, 3),
    ("conv4_2", 512, 512, 3),
    ("conv4_3", 512, 512, 3),
    ("conv4_4", 512, 512, 3),
    ("conv5_1", 512, 512, 4),
];

/// FLOPs of the convolutions of one step (forward + input-gradient backward) on an h x w image.
fn step_flops(h: usize, w: usize) -> u64 {
    let fwd_macs: usize = LAYERS
        .iter()
        .map(|&(_, cin, cout, level)| cin * cout * 9 * (h >> level) * (w >> level))
        .sum();
    2 * 2 * fwd_macs as u64
}

fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// (content, style) image paths: the repository's examples, else scikit-image's sample images.
fn images() -> (PathBuf, PathBuf) {
    let content = repo_path("examples/astronaut.jpg");
    let style = repo_path("examples/starry-night.jpg");
    if content.exists() && style.exists() {
        return (content, style);
    }
    let dir = Path::new("/tmp/skimg/skimage/data");
    let (c, s) = (dir.join("astronaut.png"), dir.join("coffee.png"));
    assert!(
        c.exists() && s.exists(),
        "no benchmark images: neither examples/astronaut.jpg + examples/starry-night.jpg nor {}",
        dir.display()
    );
    eprintln!(
        "step bench: examples/ images missing, falling back to {} and {}",
        c.display(),
        s.display()
    );
    (c, s)
}

fn bench_step(c: &mut Criterion) {
    let weights = repo_path("weights/vgg19.npz");
    if !weights.exists() {
        panic!(
            "{} is missing: run bash scripts/fetch-weights.sh",
            weights.display()
        );
    }
    let config = LossConfig::default();
    let vgg = Vgg19::load_for(&weights, &config).expect("load weights");
    let (content_path, style_path) = images();

    let mut g = c.benchmark_group("step");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5))
        .sampling_mode(SamplingMode::Flat);
    for size in [256u32, 512] {
        let content = image::load_net(&content_path, size).expect("content image");
        let style = image::load_net(&style_path, size).expect("style image");
        let (h, w) = (content.dim().1, content.dim().2);
        let objective =
            Objective::new(&vgg, &content, &[(style, 1.0)], &config).expect("objective");
        let mut x = initial_image(&Init::default(), &content, 0).expect("initial image");
        let mut adam = Adam::new(2.0, 0.9, 0.999, 1e-8).expect("adam");
        let mut eval = Evaluation::zeros(objective.shape());
        let flops = step_flops(h, w);
        eprintln!(
            "step bench: {w}x{h}, {} threads, {:.1} GFLOP of convolutions per step (fwd + bwd to conv5_1)",
            rayon::current_num_threads(),
            flops as f64 / 1e9
        );
        g.throughput(Throughput::Elements(flops));
        g.bench_function(BenchmarkId::new("evaluate+adam", format!("{w}x{h}")), |b| {
            b.iter(|| {
                objective
                    .evaluate_into(&x, &mut eval, &mut None)
                    .expect("evaluate");
                adam.step(
                    x.as_slice_mut().expect("contiguous"),
                    eval.grad.as_slice().expect("contiguous"),
                );
                black_box(eval.total)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_step);
criterion_main!(benches);
