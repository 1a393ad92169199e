//! The `neural-style` command line: a thin layer over the library.

use clap::{Parser, ValueEnum};
use ndarray::Array3;
use neural_style::image::{self as img, OutputFormat};
use neural_style::optim::Stop;
use neural_style::profile::Timings;
use neural_style::progress::{self, Record};
use neural_style::transfer::{initial_image, run_adam, run_lbfgs, Init, Step};
use neural_style::{Adam, Error, Lbfgs, LossConfig, Objective, Pool, Result, Vgg19};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// `eprintln!` that ignores a closed stderr (say `2>&1 | head`): losing the log must not
/// abort the run with a panic.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Paint a photograph in the style of one or more paintings (Gatys et al. 2015), on the CPU.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Content photograph.
    #[arg(long)]
    content: PathBuf,
    /// Style image; repeat for a blend of several.
    #[arg(long = "style", required = true)]
    styles: Vec<PathBuf>,
    /// Output image (.png, .jpg or .jpeg), written atomically.
    #[arg(long)]
    output: PathBuf,
    /// Long side of the output in pixels (style images are resized to the same long side).
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(16..=16384))]
    size: u32,
    /// Optimiser steps (per scale, in a multi-scale run). The seed ran 300 Adam steps.
    #[arg(long, default_value_t = 100)]
    iterations: usize,
    /// Optimiser: lbfgs (best per step, as in jcjohnson/neural-style) or adam (the seed's).
    #[arg(long, value_enum, default_value_t = OptimizerArg::Lbfgs)]
    optimizer: OptimizerArg,
    /// L-BFGS history size (pairs kept).
    #[arg(long, default_value_t = 10)]
    history: usize,
    /// Coarser sizes to optimise first, comma-separated long sides (e.g. 256,384); each stage
    /// starts from the previous result upsampled, and the last stage is --size.
    #[arg(long)]
    scales: Option<String>,
    /// Style images are resized to this fraction of the output's long side (bigger: larger
    /// brush strokes).
    #[arg(long, default_value_t = 1.0)]
    style_scale: f64,
    /// Keep the content's colours: transfer only the luminance of the painting.
    #[arg(long)]
    original_colors: bool,
    /// Bits per channel of the output: 8, or 16 (PNG only) for print work.
    #[arg(long, default_value_t = 8, value_parser = parse_depth)]
    output_depth: u8,
    /// Print one JSON object per reported step on stdout (for batch jobs), instead of text.
    #[arg(long)]
    json: bool,
    /// Write every step's losses to this CSV file at the end.
    #[arg(long)]
    loss_csv: Option<PathBuf>,
    /// alpha: weight of the content loss.
    #[arg(long, default_value_t = 10.0)]
    content_weight: f64,
    /// beta: weight of the style loss.
    #[arg(long, default_value_t = 40.0)]
    style_weight: f64,
    /// gamma: weight of the total-variation loss (smoothness).
    #[arg(long, default_value_t = 0.0)]
    tv_weight: f64,
    /// Adam learning rate, in net-space pixel units (0..255 scale).
    #[arg(long, default_value_t = 2.0)]
    learning_rate: f64,
    /// Adam beta1.
    #[arg(long, default_value_t = 0.9)]
    beta1: f64,
    /// Adam beta2.
    #[arg(long, default_value_t = 0.999)]
    beta2: f64,
    /// Adam epsilon.
    #[arg(long, default_value_t = 1e-8)]
    epsilon: f64,
    /// Start image: content, noise (the seed's blend of noise and content), random, or an
    /// image file.
    #[arg(long, default_value = "content")]
    init: String,
    /// Share of noise in the `noise` start image.
    #[arg(long, default_value_t = 0.6)]
    init_ratio: f32,
    /// Pooling between VGG blocks.
    #[arg(long, value_enum, default_value_t = PoolArg::Avg)]
    pool: PoolArg,
    /// Content layers as NAME[:WEIGHT],... (weight 1 when omitted).
    #[arg(long, default_value = "conv4_2")]
    content_layers: String,
    /// Style layers as NAME[:WEIGHT],... (equal weights summing to 1 when omitted).
    #[arg(long, default_value = "conv1_1,conv2_1,conv3_1,conv4_1,conv5_1")]
    style_layers: String,
    /// Blend weights of the style images, comma-separated (normalised to sum to 1).
    #[arg(long)]
    style_blend: Option<String>,
    /// Seed of the noise in the start image.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Worker threads (default: all cores). Results do not depend on it.
    #[arg(long)]
    threads: Option<usize>,
    /// Print the losses every N steps (0: only at the end).
    #[arg(long, default_value_t = 50)]
    print_every: usize,
    /// Also write the image every N steps, as OUTPUT_STEM-<step>.EXT (0: never).
    #[arg(long, default_value_t = 0)]
    save_every: usize,
    /// Print where the time of a step goes (per layer and direction) at the end.
    #[arg(long)]
    profile: bool,
    /// VGG-19 weights in the project's .npz format.
    #[arg(long, default_value = "weights/vgg19.npz")]
    weights: PathBuf,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq)]
enum OptimizerArg {
    Adam,
    Lbfgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum PoolArg {
    Avg,
    Max,
}

fn parse_depth(s: &str) -> std::result::Result<u8, String> {
    match s {
        "8" => Ok(8),
        "16" => Ok(16),
        _ => Err("must be 8 or 16".into()),
    }
}

/// Parses `NAME[:WEIGHT],...`; a missing weight becomes `default_weight(count)`.
fn parse_layers(
    spec: &str,
    what: &str,
    default_weight: fn(usize) -> f64,
) -> Result<Vec<(String, f64)>> {
    let items: Vec<&str> = spec
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if items.is_empty() {
        return Err(Error::Config(format!("--{what}-layers is empty")));
    }
    let n = items.len();
    items
        .iter()
        .map(|item| match item.split_once(':') {
            None => Ok((item.to_string(), default_weight(n))),
            Some((name, w)) => w
                .trim()
                .parse::<f64>()
                .map(|w| (name.trim().to_string(), w))
                .map_err(|_| Error::Config(format!("--{what}-layers: bad weight in '{item}'"))),
        })
        .collect()
}

fn parse_blend(spec: Option<&str>, count: usize) -> Result<Vec<f32>> {
    let Some(spec) = spec else {
        return Ok(vec![1.0; count]);
    };
    let weights: Vec<f32> = spec
        .split(',')
        .map(|s| s.trim().parse::<f32>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| Error::Config(format!("--style-blend '{spec}' is not a list of numbers")))?;
    if weights.len() != count {
        return Err(Error::Config(format!(
            "--style-blend has {} weights for {count} style images",
            weights.len()
        )));
    }
    Ok(weights)
}

/// `out.png` + 100 -> `out-100.png`.
fn checkpoint_path(output: &Path, step: usize) -> PathBuf {
    let stem = output.file_stem().unwrap_or_default().to_string_lossy();
    let ext = output.extension().unwrap_or_default().to_string_lossy();
    output.with_file_name(format!("{stem}-{step}.{ext}"))
}

/// Fails early (before minutes of work) if the output cannot be written: an unsupported
/// extension, a directory in its place, or a folder that is missing or refuses new files. The
/// error names the output; the probe is a hidden file of our own, so no user file is touched.
fn check_output(output: &Path) -> Result<()> {
    OutputFormat::from_path(output)?;
    let unwritable = |e| Error::Io {
        path: output.into(),
        source: e,
    };
    if output.is_dir() {
        let e = std::io::Error::new(std::io::ErrorKind::IsADirectory, "is a directory");
        return Err(unwritable(e));
    }
    let name = output.file_name().unwrap_or_default().to_string_lossy();
    let probe = output.with_file_name(format!(".{name}.{}.probe", std::process::id()));
    std::fs::File::create(&probe).map_err(unwritable)?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// The long sides of the stages of a run, coarse to fine, ending at `size`.
fn stage_sizes(scales: Option<&str>, size: u32) -> Result<Vec<u32>> {
    let mut sizes = Vec::new();
    for item in scales
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let v: u32 = item
            .parse()
            .map_err(|_| Error::Config(format!("--scales: '{item}' is not a size in pixels")))?;
        if v < 16 || v >= size || sizes.last().is_some_and(|&p| v <= p) {
            return Err(Error::Config(format!(
                "--scales must increase, each between 16 and --size ({size}), got {item}"
            )));
        }
        sizes.push(v);
    }
    sizes.push(size);
    Ok(sizes)
}

/// Resizes a style image for a stage: its long side is `style_scale` times the stage's.
fn style_side(size: u32, style_scale: f64) -> Result<u32> {
    let side = (size as f64 * style_scale).round();
    if !(style_scale.is_finite() && style_scale > 0.0 && (16.0..=16384.0).contains(&side)) {
        return Err(Error::Config(format!(
            "--style-scale {style_scale} gives a {side}-pixel style image; it must be 16..16384"
        )));
    }
    Ok(side as u32)
}

fn run(args: Args) -> Result<()> {
    check_output(&args.output)?;
    if args.output_depth == 16 && OutputFormat::from_path(&args.output)? != OutputFormat::Png {
        return Err(Error::Config(
            "--output-depth 16 needs a .png output".into(),
        ));
    }
    if let Some(n) = args.threads {
        if n == 0 {
            return Err(Error::Config("--threads must be at least 1".into()));
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| Error::Config(format!("thread pool: {e}")))?;
    }
    let config = LossConfig {
        content_layers: parse_layers(&args.content_layers, "content", |_| 1.0)?,
        style_layers: parse_layers(&args.style_layers, "style", |n| 1.0 / n as f64)?,
        content_weight: args.content_weight,
        style_weight: args.style_weight,
        tv_weight: args.tv_weight,
        pool: match args.pool {
            PoolArg::Avg => Pool::Avg,
            PoolArg::Max => Pool::Max,
        },
    };
    config.depth()?;
    let blend = parse_blend(args.style_blend.as_deref(), args.styles.len())?;
    let sizes = stage_sizes(args.scales.as_deref(), args.size)?;
    for &size in &sizes {
        style_side(size, args.style_scale)?;
    }
    let lbfgs = Lbfgs {
        history: args.history,
        ..Lbfgs::default()
    };
    lbfgs.validate()?;
    Adam::<f32>::new(args.learning_rate, args.beta1, args.beta2, args.epsilon)?;

    let t0 = Instant::now();
    let vgg = Vgg19::load_for(&args.weights, &config)?;
    let content_image = img::decode(&args.content)?;
    let style_images = args
        .styles
        .iter()
        .map(img::decode)
        .collect::<Result<Vec<_>>>()?;
    let interactive = !args.json && std::io::stderr().is_terminal();
    let mut timings = args.profile.then(Timings::default);
    let mut records: Vec<Record> = Vec::new();
    let mut x: Option<Array3<f32>> = None;
    let mut content = Array3::zeros((3, 1, 1));

    for (stage, &size) in sizes.iter().enumerate() {
        content = img::rgb32f_to_net(&img::resize_long_side(&content_image, size));
        let (h, w) = (content.dim().1, content.dim().2);
        let side = style_side(size, args.style_scale)?;
        let styles: Vec<(Array3<f32>, f32)> = style_images
            .iter()
            .zip(&blend)
            .map(|(s, &b)| (img::rgb32f_to_net(&img::resize_long_side(s, side)), b))
            .collect();
        let objective = Objective::new(&vgg, &content, &styles, &config)?;
        let start = match x.take() {
            Some(prev) => img::resize_net(&prev, w as u32, h as u32),
            None => {
                let init = match args.init.as_str() {
                    "noise" => Init::Noise {
                        ratio: args.init_ratio,
                    },
                    "content" => Init::Content,
                    "random" => Init::Random,
                    file => Init::Image(img::load_net_exact(file, w as u32, h as u32)?),
                };
                initial_image(&init, &content, args.seed)?
            }
        };
        if !args.json {
            say!(
                "neural-style: stage {}/{} at {w}x{h}, {} style image(s), {} {}, {} threads; setup {:.2} s",
                stage + 1,
                sizes.len(),
                styles.len(),
                args.iterations,
                match args.optimizer {
                    OptimizerArg::Adam => "Adam steps",
                    OptimizerArg::Lbfgs => "L-BFGS iterations",
                },
                rayon::current_num_threads(),
                t0.elapsed().as_secs_f64()
            );
        }
        let last_stage = stage + 1 == sizes.len();
        let on_step = |s: &Step| -> Result<()> {
            let r = Record::new(stage + 1, size, s);
            records.push(r);
            let last = s.iteration == s.iterations;
            let report =
                (args.print_every > 0 && s.iteration.is_multiple_of(args.print_every)) || last;
            if args.json {
                if report {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{}", r.json());
                    let _ = out.flush();
                }
            } else if interactive {
                let _ = write!(std::io::stderr(), "\r{}", r.bar());
                if last {
                    say!("");
                }
            } else if report {
                say!(
                    "step {:>5}/{}  total {:.4e}  content {:.4e}  style {:.4e}  tv {:.4e}  {:.3} s/step",
                    s.iteration,
                    s.iterations,
                    r.total,
                    r.content,
                    r.style,
                    r.tv,
                    s.elapsed / s.iteration as f64
                );
            }
            if last_stage
                && args.save_every > 0
                && s.iteration.is_multiple_of(args.save_every)
                && !last
            {
                save(
                    &args,
                    s.image,
                    &content,
                    &checkpoint_path(&args.output, s.iteration),
                )?;
            }
            Ok(())
        };
        x = Some(match args.optimizer {
            OptimizerArg::Adam => {
                let mut adam = Adam::new(args.learning_rate, args.beta1, args.beta2, args.epsilon)?;
                run_adam(
                    &objective,
                    start,
                    &mut adam,
                    args.iterations,
                    &mut timings,
                    on_step,
                )?
            }
            OptimizerArg::Lbfgs => {
                let (x, report) = run_lbfgs(
                    &objective,
                    start,
                    &lbfgs,
                    args.iterations,
                    &mut timings,
                    on_step,
                )?;
                if report.stop != Stop::MaxIterations && !args.json {
                    say!(
                        "L-BFGS stopped after {} iterations: {:?}",
                        report.iterations,
                        report.stop
                    );
                }
                x
            }
        });
    }
    let x = x.ok_or_else(|| Error::Config("no stage ran".into()))?;
    save(&args, &x, &content, &args.output)?;
    if let Some(path) = &args.loss_csv {
        img::write_atomic(path, progress::csv(&records).as_bytes())?;
    }
    if let Some(t) = timings {
        let _ = std::io::stderr().write_all(t.report().as_bytes());
    }
    if !args.json {
        say!(
            "wrote {} in {:.1} s",
            args.output.display(),
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// Writes an image with the output options (original colours, bit depth).
fn save(args: &Args, x: &Array3<f32>, content: &Array3<f32>, path: &Path) -> Result<()> {
    let recoloured;
    let x = if args.original_colors {
        recoloured = img::original_colors(x, content)?;
        &recoloured
    } else {
        x
    };
    img::save_net_with_depth(x, path, args.output_depth == 16)
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            say!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
