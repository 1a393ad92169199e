//! Painting from a program: a two-stage (coarse-to-fine) painting that keeps the photograph's
//! colours, with progress, in about ten lines. Run from the repository root after
//! `bash scripts/fetch-weights.sh`: `cargo run --release --example embed`.

use neural_style::{Event, Job, OriginalColors, Painter, Vgg19};

fn main() -> Result<(), neural_style::Error> {
    let mut job = Job::new(
        "examples/astronaut.jpg",
        ["examples/starry-night.jpg"],
        "embedded.png",
    );
    job.original_colors = OriginalColors::Luminance; // or Histogram: the styles take its colours
    (job.size, job.scales, job.iterations) = (384, vec![192], 50);
    let vgg = Vgg19::load_for("weights/vgg19.npz", &job.loss_config())?;
    let painting = Painter::new(&vgg).paint(&job, &mut None, |event| {
        if let Event::Step { record: r, .. } = event {
            eprintln!(
                "stage {} step {:>3}  total {:.3e}",
                r.scale, r.iteration, r.total
            );
        }
        Ok(())
    })?;
    println!(
        "wrote {} ({} evaluations, {:.0} s)",
        job.output.display(),
        painting.evaluations,
        painting.seconds
    );
    Ok(())
}
