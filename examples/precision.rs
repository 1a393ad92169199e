//! How far the f32 engine's objective and pixel gradient are from the same engine in f64, at a
//! real size with the real weights and the bundled pair (the golden tests run at 128 x 160,
//! where the deep layers take other algorithms than at print sizes). Winograd F(4x4)'s f32
//! error grows with the channel count; this is the check that an algorithm choice keeps the
//! whole objective within the golden tests' tolerances (1e-4 values, 1e-3 gradient).
//! Run: `cargo run --release --example precision -- 512` (after scripts/fetch-weights.sh).
use ndarray::Array3;
use neural_style::image::load_net;
use neural_style::{Job, Objective, Vgg};

fn main() -> Result<(), neural_style::Error> {
    let size: u32 = std::env::args()
        .nth(1)
        .map_or(512, |s| s.parse().expect("a size"));
    let config = Job::default().loss_config();
    let content = load_net("examples/astronaut.jpg", size)?;
    let style = load_net("examples/starry-night.jpg", size)?;
    // A point away from the content image, so that every term and its gradient is non-zero.
    let x = Array3::from_shape_fn(content.raw_dim(), |(c, y, x)| {
        content[[c, y, x]] + 40.0 * ((c * 7 + y * 3 + x) as f32 * 0.37).sin()
    });
    let wide = |a: &Array3<f32>| a.mapv(|v| v as f64);

    let vgg32 = Vgg::<f32>::load_for("weights/vgg19.npz", &config)?;
    let e32 = Objective::new(&vgg32, &content, &[(style.clone(), 1.0)], &config)?.evaluate(&x)?;
    drop(vgg32);
    let vgg64 = Vgg::<f64>::load_for("weights/vgg19.npz", &config)?;
    let objective = Objective::new(&vgg64, &wide(&content), &[(wide(&style), 1.0)], &config)?;
    let e64 = objective.evaluate(&wide(&x))?;

    let (h, w) = (content.shape()[1], content.shape()[2]);
    println!("{w}x{h}, default objective, f32 against f64:");
    for (name, a, b) in [
        ("content", e32.content, e64.content),
        ("style", e32.style, e64.style),
        ("total", e32.total, e64.total),
    ] {
        println!(
            "  {name:8} {a:.9e} {b:.9e} rel err {:.2e}",
            (a - b).abs() / b.abs()
        );
    }
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (&g, &r) in e32.grad.iter().zip(e64.grad.iter()) {
        num += (g as f64 - r).powi(2);
        den += r * r;
    }
    println!("  gradient relative L2 error {:.2e}", (num / den).sqrt());
    Ok(())
}
