//! The command line's flags, and how they become a [`Job`].

use clap::{Args, Parser, Subcommand, ValueEnum};
use neural_style::{
    InitSpec, Job, KeepKernels, Layers, Optimizer, OriginalColors, Pool, Preset, StyleLoss,
    StyleMask,
};
use std::path::PathBuf;

/// Paint a photograph in the style of one or more paintings (Gatys et al. 2015), on the CPU.
#[derive(Parser, Debug)]
#[command(
    version,
    about,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub single: Single,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Paint many pictures: every pair of two folders, or the rows of a manifest.
    Batch(Batch),
}

/// One painting.
#[derive(Args, Debug)]
pub struct Single {
    /// Content photograph.
    #[arg(long, required_unless_present = "resume")]
    pub content: Option<PathBuf>,
    /// Style image; repeat for a blend of several.
    #[arg(long = "style", required_unless_present = "resume")]
    pub styles: Vec<PathBuf>,
    /// Output image (.png, .jpg or .jpeg), written atomically.
    #[arg(long, required_unless_present = "resume")]
    pub output: Option<PathBuf>,
    /// Save the run's whole state to this file as it goes (atomically), so that an interrupted
    /// run continues with --resume exactly where it stopped.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Continue the run saved in this checkpoint (its settings; flags given must agree).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    #[command(flatten)]
    pub checkpoints: CheckpointOptions,
    /// Write every step's losses to this CSV file at the end.
    #[arg(long)]
    pub loss_csv: Option<PathBuf>,
    /// Print where the time of a step goes (per layer and direction) at the end.
    #[arg(long)]
    pub profile: bool,
    /// Print the estimated peak memory and seconds per step (measured on this machine at a
    /// small size), then exit without painting.
    #[arg(long)]
    pub estimate: bool,
    #[command(flatten)]
    pub paint: PaintOptions,
    #[command(flatten)]
    pub run: RunOptions,
}

/// Many paintings.
#[derive(Args, Debug)]
pub struct Batch {
    /// Folder of content photographs (every image in it).
    #[arg(long, requires = "styles_dir", conflicts_with = "manifest")]
    pub contents: Option<PathBuf>,
    /// Folder of style images: each content is painted in each style.
    #[arg(long = "styles", requires = "contents")]
    pub styles_dir: Option<PathBuf>,
    /// CSV (header row) or JSON-lines manifest: one painting per row, columns `content`,
    /// `style` (several separated by `;`), optional `output`, and any painting option (e.g.
    /// `size`, `style_weight`) overriding the flags. Paths are relative to the manifest.
    #[arg(long, required_unless_present = "contents")]
    pub manifest: Option<PathBuf>,
    /// Folder of the outputs (created if missing).
    #[arg(long)]
    pub output_dir: PathBuf,
    /// Output name template: {content}, {style}, {size}; the extension picks the format.
    #[arg(long, default_value = neural_style::batch::plan::DEFAULT_NAME)]
    pub name: String,
    /// Repaint items whose output already exists (otherwise they are skipped).
    #[arg(long)]
    pub overwrite: bool,
    /// Append one JSON object per item (status, error, seconds, losses) to this file.
    #[arg(long)]
    pub results: Option<PathBuf>,
    /// Keep style targets in this folder between runs (keyed by the style file's hash and
    /// the settings they depend on).
    #[arg(long)]
    pub style_cache: Option<PathBuf>,
    /// Paint K items at once, the threads split between them.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub jobs: u64,
    /// Take shard I of N (0-based): every N-th item of the sorted list, from I. Default: from
    /// SLURM_ARRAY_TASK_ID/COUNT, or JOB_COMPLETION_INDEX with --shards.
    #[arg(long, conflicts_with = "shards")]
    pub shard: Option<String>,
    /// Number of shards of a Kubernetes Indexed Job (the index is JOB_COMPLETION_INDEX).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub shards: Option<u64>,
    /// Checkpoint every item (a hidden file beside its output, removed when it is done), so
    /// that an interrupted item resumes on the next run of the batch.
    #[arg(long)]
    pub checkpoints: bool,
    #[command(flatten)]
    pub checkpoint_timing: CheckpointOptions,
    #[command(flatten)]
    pub paint: PaintOptions,
    #[command(flatten)]
    pub run: RunOptions,
}

/// Where the weights are by default (what `scripts/fetch-weights.sh` writes).
pub const DEFAULT_WEIGHTS: &str = "weights/vgg19.npz";

/// How often checkpoints are written.
#[derive(Args, Debug)]
pub struct CheckpointOptions {
    /// Checkpoint every N steps...
    #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u64).range(1..))]
    pub checkpoint_every: u64,
    /// ...or every S seconds, whichever comes first.
    #[arg(long, default_value_t = 300.0)]
    pub checkpoint_seconds: f64,
}

/// Settings of the process, not of a painting: they never change a result.
#[derive(Args, Debug)]
pub struct RunOptions {
    /// Worker threads (default: all cores). Results do not depend on it.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print one JSON object per reported step (batch: per item) on stdout, instead of text.
    #[arg(long)]
    pub json: bool,
    /// Print the losses every N steps (0: only at the end).
    #[arg(long, default_value_t = 50)]
    pub print_every: usize,
    /// Memory the run may use (e.g. 1.5G, 800M): a painting whose whole image does not fit is
    /// evaluated in tiles that do (the same objective, exactly), and one that cannot fit even
    /// so is refused at once. Default: what the machine (or its cgroup) has available, less 5%.
    #[arg(long, value_parser = parse_memory)]
    pub max_memory: Option<u64>,
    /// Memory to spend on keeping the network's transformed Winograd kernels between steps,
    /// deepest layers first, set aside from --max-memory's: each kept kernel saves its
    /// transform on every step (about 1 ms for a 512-channel layer). The same results. auto:
    /// the F(2x2) kernels of the maps under 64 x 64 (151 MB at 256 px, 34 MB at 512, none
    /// from 1024) when the painting still runs untiled with them, else none; a size (e.g.
    /// 300M) keeps up to that much; 0 keeps none.
    #[arg(long, value_parser = parse_keep, default_value = "auto")]
    pub keep_kernels: KeepKernels,
    /// VGG-19 weights in the project's .npz format.
    #[arg(long, default_value = DEFAULT_WEIGHTS)]
    pub weights: PathBuf,
}

/// Every setting of a painting; the defaults are `Job::default()`'s (a test checks).
#[derive(Args, Debug)]
pub struct PaintOptions {
    /// Start from a named configuration: seed (the seed's Adam run), jcjohnson
    /// (jcjohnson/neural-style's defaults mapped onto this engine) or default. Flags given
    /// explicitly override it.
    #[arg(long, value_enum, value_name = "NAME")]
    pub preset: Option<Preset>,
    /// Long side of the output in pixels (style images are resized to the same long side).
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(16..=16384))]
    pub size: u32,
    /// Optimiser steps (per scale, in a multi-scale run). The seed ran 300 Adam steps.
    #[arg(long, default_value_t = 100)]
    pub iterations: usize,
    /// Optimiser: lbfgs (best per step, as in jcjohnson/neural-style) or adam (the seed's).
    #[arg(long, value_enum, default_value_t = OptimizerArg::Lbfgs)]
    pub optimizer: OptimizerArg,
    /// L-BFGS history size (pairs kept).
    #[arg(long, default_value_t = 10)]
    pub history: usize,
    /// Coarser sizes to optimise first, comma-separated long sides (e.g. 256,384); each stage
    /// starts from the previous result upsampled, and the last stage is --size.
    #[arg(long, value_delimiter = ',')]
    pub scales: Vec<u32>,
    /// Optimiser steps of each --scales stage, comma-separated, one per scale (default:
    /// --iterations each); --iterations is then the last stage's.
    #[arg(long, value_delimiter = ',')]
    pub scale_iterations: Vec<usize>,
    /// Style images are resized to this fraction of the output's long side (bigger: larger
    /// brush strokes).
    #[arg(long, default_value_t = 1.0)]
    pub style_scale: f64,
    /// Keep the photograph's colours: luminance (the flag alone) transfers only the
    /// painting's luminance after the run; histogram matches each style image's colour mean
    /// and covariance to the photograph's before it; off paints in the style's colours.
    #[arg(
        long,
        value_enum,
        value_name = "METHOD",
        num_args = 0..=1,
        default_value_t = ColorsArg::Off,
        default_missing_value = "luminance"
    )]
    pub original_colors: ColorsArg,
    /// Bits per channel of the output: 8, or 16 (PNG only) for print work.
    #[arg(long, default_value_t = 8, value_parser = parse_depth)]
    pub output_depth: u8,
    /// alpha: weight of the content loss.
    #[arg(long, default_value_t = 30_000.0)]
    pub content_weight: f64,
    /// beta: weight of the style loss.
    #[arg(long, default_value_t = 40.0)]
    pub style_weight: f64,
    /// gamma: weight of the total-variation loss (smoothness).
    #[arg(long, default_value_t = 0.0)]
    pub tv_weight: f64,
    /// Adam learning rate, in net-space pixel units (0..255 scale).
    #[arg(long, default_value_t = 2.0)]
    pub learning_rate: f64,
    /// Adam beta1.
    #[arg(long, default_value_t = 0.9)]
    pub beta1: f64,
    /// Adam beta2.
    #[arg(long, default_value_t = 0.999)]
    pub beta2: f64,
    /// Adam epsilon.
    #[arg(long, default_value_t = 1e-8)]
    pub epsilon: f64,
    /// Start image: recolored (the photograph in the styles' colour mean and covariance),
    /// content, noise (the seed's blend of noise and content), random, or an image file.
    #[arg(long, default_value = "recolored")]
    pub init: String,
    /// Share of noise in the `noise` start image.
    #[arg(long, default_value_t = 0.6)]
    pub init_ratio: f32,
    /// Pooling between VGG blocks: avg, max, or l2 (root mean square of each window).
    #[arg(long, value_enum, default_value_t = PoolArg::Avg)]
    pub pool: PoolArg,
    /// Style loss: gram (Gram matrices, Gatys et al.) or w2 (Wasserstein-2 distance between
    /// the Gaussians of the features' mean and covariance).
    #[arg(long, value_enum, default_value_t = StyleLossArg::Gram)]
    pub style_loss: StyleLossArg,
    /// Content layers as NAME[:WEIGHT],... (weight 1 when omitted).
    #[arg(long, default_value = "conv4_2")]
    pub content_layers: Layers,
    /// Style layers as NAME[:WEIGHT],... (equal weights summing to 1 when omitted). The
    /// default's weights even out the layers' very different loss scales.
    #[arg(long, default_value = neural_style::job::DEFAULT_STYLE_LAYERS)]
    pub style_layers: Layers,
    /// Blend weights of the style images, comma-separated (normalised to sum to 1).
    #[arg(long, value_delimiter = ',')]
    pub style_blend: Option<Vec<f32>>,
    /// Where each style paints: a greyscale image per --style, in order (white: this style
    /// here; soft edges blend), or `none` for everywhere.
    #[arg(long = "style-mask", value_name = "FILE")]
    pub style_masks: Vec<String>,
    /// A greyscale image of where to keep the photograph closer (white: keep).
    #[arg(long, value_name = "FILE")]
    pub content_mask: Option<PathBuf>,
    /// How many times the content loss counts where the content mask is white.
    #[arg(long, default_value_t = 5.0, value_name = "K")]
    pub content_mask_weight: f64,
    /// Seed of the noise in the start image.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also write the image every N steps, as OUTPUT_STEM-<step>.EXT (0: never).
    #[arg(long, default_value_t = 0)]
    pub save_every: usize,
    /// Evaluate in tiles owning N x N pixels (a multiple of 16), whatever the memory allows.
    /// Default: tiles only when the whole image does not fit, as large as fit.
    #[arg(long, value_name = "N")]
    pub tile: Option<usize>,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq)]
pub enum OptimizerArg {
    Adam,
    Lbfgs,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq)]
pub enum ColorsArg {
    Off,
    Luminance,
    Histogram,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StyleLossArg {
    Gram,
    W2,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PoolArg {
    Avg,
    Max,
    L2,
}

fn parse_memory(s: &str) -> std::result::Result<u64, String> {
    neural_style::memory::parse_size(s).map_err(|e| e.to_string())
}

/// `auto`, a memory size, or 0 for none.
fn parse_keep(s: &str) -> std::result::Result<KeepKernels, String> {
    match s.trim() {
        "auto" => Ok(KeepKernels::Auto),
        "0" => Ok(KeepKernels::Bytes(0)),
        _ => parse_memory(s)
            .map(KeepKernels::Bytes)
            .map_err(|e| format!("{e} (or auto, or 0 for none)")),
    }
}

fn parse_depth(s: &str) -> std::result::Result<u8, String> {
    match s {
        "8" => Ok(8),
        "16" => Ok(16),
        _ => Err("must be 8 or 16".into()),
    }
}

impl PaintOptions {
    /// `job` with the preset's settings (when one is given) wherever `matches` says the
    /// flag was not given on the command line.
    pub fn with_preset(&self, job: Job, matches: &clap::ArgMatches) -> neural_style::Result<Job> {
        let Some(preset) = self.preset else {
            return Ok(job);
        };
        let given: Vec<&str> = neural_style::preset::SETTINGS
            .into_iter()
            .filter(|id| matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine))
            .collect();
        preset.under(&job, &given)
    }

    /// The job these settings describe, for `content`, `styles` and `output`.
    pub fn job(&self, content: PathBuf, styles: Vec<PathBuf>, output: PathBuf) -> Job {
        Job {
            content,
            styles,
            style_blend: self.style_blend.clone(),
            style_masks: self
                .style_masks
                .iter()
                .map(|m| StyleMask::from(m.clone()))
                .collect(),
            content_mask: self.content_mask.clone(),
            content_mask_weight: self.content_mask_weight,
            output,
            output_depth: self.output_depth,
            size: self.size,
            scales: self.scales.clone(),
            scale_iterations: self.scale_iterations.clone(),
            style_scale: self.style_scale,
            iterations: self.iterations,
            optimizer: match self.optimizer {
                OptimizerArg::Adam => Optimizer::Adam,
                OptimizerArg::Lbfgs => Optimizer::Lbfgs,
            },
            history: self.history,
            learning_rate: self.learning_rate,
            beta1: self.beta1,
            beta2: self.beta2,
            epsilon: self.epsilon,
            content_weight: self.content_weight,
            style_weight: self.style_weight,
            tv_weight: self.tv_weight,
            content_layers: self.content_layers.clone(),
            style_layers: self.style_layers.clone(),
            pool: match self.pool {
                PoolArg::Avg => Pool::Avg,
                PoolArg::Max => Pool::Max,
                PoolArg::L2 => Pool::L2,
            },
            style_loss: match self.style_loss {
                StyleLossArg::Gram => StyleLoss::Gram,
                StyleLossArg::W2 => StyleLoss::W2,
            },
            init: InitSpec::from(self.init.clone()),
            init_ratio: self.init_ratio,
            original_colors: match self.original_colors {
                ColorsArg::Off => OriginalColors::Off,
                ColorsArg::Luminance => OriginalColors::Luminance,
                ColorsArg::Histogram => OriginalColors::Histogram,
            },
            seed: self.seed,
            save_every: self.save_every,
            tile: self.tile,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches};

    #[test]
    fn a_preset_fills_the_flags_not_given() {
        let argv = [
            "neural-style",
            "--content",
            "c",
            "--style",
            "s",
            "--output",
            "o.png",
            "--preset",
            "seed",
            "--iterations",
            "7",
            "--style-loss",
            "w2",
        ];
        let matches = Cli::command().try_get_matches_from(argv).unwrap();
        let cli = Cli::from_arg_matches(&matches).unwrap();
        let paint = &cli.single.paint;
        let job = paint
            .with_preset(
                paint.job("c".into(), vec!["s".into()], "o.png".into()),
                &matches,
            )
            .unwrap();
        let seed = Preset::Seed.job();
        assert_eq!(job.iterations, 7);
        // A flag the preset also sets (seed: Gram) wins.
        assert_eq!(job.loss_config().style_loss, StyleLoss::W2);
        assert_eq!((job.optimizer, job.init), (seed.optimizer, seed.init));
        assert_eq!(job.content, PathBuf::from("c"));
    }

    #[test]
    fn flag_defaults_are_the_job_defaults() {
        let cli = Cli::try_parse_from([
            "neural-style",
            "--content",
            "c",
            "--style",
            "s",
            "--output",
            "o.png",
        ])
        .unwrap();
        let job = cli
            .single
            .paint
            .job("c".into(), vec!["s".into()], "o.png".into());
        assert_eq!(job, Job::new("c", ["s"], "o.png"));
        let cli = Cli::try_parse_from([
            "neural-style",
            "batch",
            "--manifest",
            "m.csv",
            "--output-dir",
            "o",
        ])
        .unwrap();
        let Some(Command::Batch(b)) = cli.command else {
            panic!("batch")
        };
        assert_eq!(
            b.paint.job("c".into(), vec!["s".into()], "o.png".into()),
            job
        );
    }

    #[test]
    fn original_colors_takes_an_optional_method() {
        let colors = |extra: &[&str]| {
            let mut argv = vec!["neural-style", "--content", "c", "--style", "s"];
            argv.extend_from_slice(extra);
            argv.extend_from_slice(&["--output", "o.png"]);
            Cli::try_parse_from(argv).map(|cli| {
                cli.single
                    .paint
                    .job("c".into(), vec!["s".into()], "o.png".into())
                    .original_colors
            })
        };
        assert_eq!(colors(&[]).unwrap(), OriginalColors::Off);
        // The bare flag keeps its old meaning, and the next flag is not taken as its value.
        assert_eq!(
            colors(&["--original-colors"]).unwrap(),
            OriginalColors::Luminance
        );
        assert_eq!(
            colors(&["--original-colors", "--size", "64"]).unwrap(),
            OriginalColors::Luminance
        );
        assert_eq!(
            colors(&["--original-colors", "histogram"]).unwrap(),
            OriginalColors::Histogram
        );
        assert_eq!(
            colors(&["--original-colors=luminance"]).unwrap(),
            OriginalColors::Luminance
        );
        assert_eq!(
            colors(&["--original-colors", "off"]).unwrap(),
            OriginalColors::Off
        );
        assert!(colors(&["--original-colors", "sepia"]).is_err());
    }
}
