//! The memory guard: what a painting will need at its peak, computed from the layer table,
//! the sizes and the optimiser before anything big is allocated, and what the machine (or the
//! cgroup the process runs in) allows. A run that cannot fit fails at once with both numbers
//! and what to change, instead of being OOM-killed minutes later.

use crate::error::{Error, Result};
use crate::job::{Job, Optimizer};
use crate::ops::{kept_kernel_bytes, kept_kernel_tile, Tile};
use crate::vgg::{LAYER_NAMES, VGG19_WIDTHS};
use std::path::Path;

/// Resident memory of the process before a painting: code, runtime, allocator, thread stacks.
const BASE_BYTES: u64 = 32 << 20;
/// Per-worker convolution scratch (the im2col column tile, Winograd transform blocks) and the
/// loss buffers: the part of the measured peak that does not grow with the image.
const SCRATCH_BYTES_PER_THREAD: u64 = 8 << 20;

/// Output channels of layer `i` of VGG-19.
fn width(i: usize) -> u64 {
    VGG19_WIDTHS[[0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4][i]] as u64
}

fn block(i: usize) -> u32 {
    [0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4][i]
}

/// Bytes of one forward and backward pass on an `h x w` input: the outputs the losses read,
/// the other layers' ReLU masks (bits), and the two gradient buffers, laid out as the
/// workspace lays them out.
fn network_bytes(job: &Job, h: u64, w: u64, depth: usize) -> u64 {
    let shapes = (0..depth).map(|i| {
        (
            if i == 0 { 3 } else { width(i - 1) as usize },
            width(i) as usize,
        )
    });
    let config = job.loss_config();
    let taps = config
        .content_layers
        .iter()
        .chain(&config.style_layers)
        .filter_map(|(name, _)| crate::vgg::layer_index(name));
    let keep = crate::vgg::Keep::layers(taps);
    let (h, w) = (h as usize, w as usize);
    let layout = crate::vgg::Layout::new(shapes, h, w, keep, job.pool, &mut Vec::new());
    4 * (layout.arena + 2 * layout.buffer) as u64 + 8 * layout.mask_words as u64
}

/// Parameters of the first `depth` layers.
fn weight_bytes(depth: usize) -> u64 {
    let mut cin = 3;
    let mut total = 0;
    for i in 0..depth {
        total += width(i) * (cin * 9 + 1);
        cin = width(i);
    }
    // The largest Winograd F(4x4) kernel transform (6x6 per channel pair) is built per call.
    let transform = (0..depth)
        .map(|i| {
            width(i)
                * if i == 0 {
                    3
                } else {
                    width(i - 1).min(width(i))
                }
                * 36
        })
        .max()
        .unwrap_or(0);
    4 * (total + transform)
}

/// `(w, h)` of an image of `dims` resized to long side `long`, rounded as
/// [`crate::image::resize_long_side`] rounds it.
pub fn scaled(dims: (u32, u32), long: u32) -> (u64, u64) {
    let (w, h) = dims;
    let scale = long as f64 / w.max(h).max(1) as f64;
    let w = ((w as f64 * scale).round() as u64).max(1);
    let h = ((h as f64 * scale).round() as u64).max(1);
    (w, h)
}

/// Bytes of one tile's buffers, owned side `side`, on an `h x w` image: the region's
/// network pass, the region and its gradient, a layer's owned activations packed for the Gram
/// products and their gradient (conv1_1's 64 channels are the widest per pixel) and the Gram
/// partial products.
fn tile_bytes(job: &Job, h: u64, w: u64, side: u64, depth: usize) -> u64 {
    let halo = crate::tiling::halo(depth) as u64;
    let (rh, rw) = ((side + 2 * halo).min(h), (side + 2 * halo).min(w));
    let owned = side.min(h) * side.min(w);
    network_bytes(job, rh, rw, depth) + 4 * (2 * 3 * rh * rw + 2 * 64 * owned) + 2 * owned
}

/// Bytes of the content targets: every content layer's output on the whole image.
fn target_bytes(job: &Job, h: u64, w: u64) -> u64 {
    let config = job.loss_config();
    config
        .content_layers
        .iter()
        .filter_map(|(name, _)| crate::vgg::layer_index(name))
        .map(|i| 4 * width(i) * (h >> block(i)) * (w >> block(i)))
        .sum()
}

/// The estimated peak memory of one stage and how it is made up.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    /// Bytes at the peak.
    pub peak: u64,
    /// The parts: network activations (the whole image's, or one tile's), optimiser state and
    /// image-sized vectors, decoded inputs, weights, fixed overhead.
    pub network: u64,
    pub optimizer: u64,
    pub inputs: u64,
    pub weights: u64,
    pub overhead: u64,
    /// Width and height of the stage.
    pub width: u64,
    pub height: u64,
    /// Owned side of the tiles it is evaluated in; `None`: the whole image at once.
    pub tile: Option<usize>,
}

/// A painting's memory plan: one estimate per stage (`peak()`: the largest).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub stages: Vec<Estimate>,
    /// Bytes of transformed Winograd kernels to keep between steps (see [`KeepKernels`]),
    /// set aside from the limit the stages were planned in.
    pub kept_kernels: u64,
}

/// How much memory a painting spends on keeping the network's transformed Winograd kernels
/// between steps ([`crate::loss::Objective::keep_kernels`]): each kept kernel saves its
/// transform, a pass over the layer's weights, on every step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeepKernels {
    /// The kernels of the layers run by F(2x2, 3x3), on maps under 64 x 64 pixels (block 4
    /// and conv5_1 at 256 px, 151 MB; conv5_1 alone at 512 px, 34 MB; none from 1024 px):
    /// there the transform is the largest share of a layer's step, and an F(2x2) bank holds
    /// 16 values per 9 weights (F(4x4): 36). Only when the painting still runs untiled with
    /// them set aside; none otherwise (memory first).
    #[default]
    Auto,
    /// Up to this many bytes, deepest layers first (0: none), set aside even when that
    /// makes a stage tiled.
    Bytes(u64),
}

/// Bytes of the kernels [`KeepKernels::Auto`] keeps for `job` at the stage of long side
/// `size` on a `content` image.
fn auto_kept_bytes(job: &Job, content: (u32, u32), size: u32) -> u64 {
    let depth = job.loss_config().depth().unwrap_or(LAYER_NAMES.len());
    let (w, h) = scaled(content, size);
    let mut bytes = 0;
    for i in 1..depth {
        let (cin, cout) = (width(i - 1) as usize, width(i) as usize);
        let (h, w) = (
            (h >> block(i)).max(1) as usize,
            (w >> block(i)).max(1) as usize,
        );
        for backward in [false, true] {
            if kept_kernel_tile(cin, cout, h, w, backward) == Some(Tile::F2x2) {
                bytes += kept_kernel_bytes::<f32>(cin, cout, h, w, backward) as u64;
            }
        }
    }
    bytes
}

impl Plan {
    /// The stage with the largest peak.
    pub fn peak(&self) -> &Estimate {
        self.stages
            .iter()
            .max_by_key(|e| e.peak)
            .expect("a job has at least one stage")
    }
}

/// Estimates one stage of `job` at long side `size`, evaluated whole (`tile` `None`) or in
/// tiles of owned side `tile`.
fn stage_estimate(
    job: &Job,
    content: (u32, u32),
    styles: &[(u32, u32)],
    threads: usize,
    size: u32,
    tile: Option<usize>,
) -> Estimate {
    let depth = job.loss_config().depth().unwrap_or(LAYER_NAMES.len());
    let decoded: u64 = std::iter::once(content)
        .chain(styles.iter().copied())
        .map(|(w, h)| w as u64 * h as u64 * 3 * 4)
        .sum();
    let (w, h) = scaled(content, size);
    let pixels = 3 * w * h * 4;
    // Each mask: decoded at the photograph's size, resized to the stage, and carried to its
    // layers' resolutions (a quarter less at each pooling: at most 4/3 of the stage's).
    let masks = job.mask_files().count() as u64
        * 4
        * (content.0 as u64 * content.1 as u64 + w * h + (4 * w * h).div_ceil(3));
    let net = |h: u64, w: u64| match tile {
        None => network_bytes(job, h, w, depth),
        Some(side) => tile_bytes(job, h, w, side as u64, depth),
    };
    // The style images' forward passes run before the painting's, in buffers freed (and,
    // being large, handed back to the system) before it starts: the larger one counts.
    let side = job.style_side(size).unwrap_or(size);
    let style_net = styles
        .iter()
        .map(|&d| {
            let (sw, sh) = scaled(d, side);
            net(sh, sw)
        })
        .max()
        .unwrap_or(0);
    let vectors = match tile {
        // Image, content, gradient, the evaluated copy, the content targets, the decoded and
        // resized stage images, the callbacks' copies: ten image-sized vectors fit the peaks
        // measured at 256..2048 px (README, Reliability).
        None => 10 * pixels,
        // Counted one by one for print sizes, where each is large: image, gradient, content,
        // one transient copy (the stage's resized content, then the callbacks' copies), and
        // the content targets.
        Some(_) => 4 * pixels + target_bytes(job, h, w),
    };
    let optimizer = match job.optimizer {
        Optimizer::Adam => 2 * pixels,
        // The full history of pairs s and y (reached after `history` iterations), the
        // gradient, trial gradients and copies the line search passes around, the next
        // point, and the direction in f64.
        Optimizer::Lbfgs => (2 * job.history as u64 + 7) * pixels + 2 * pixels,
    };
    let mut e = Estimate {
        network: net(h, w).max(style_net),
        optimizer: optimizer + vectors,
        inputs: decoded + masks,
        weights: weight_bytes(depth),
        overhead: BASE_BYTES + SCRATCH_BYTES_PER_THREAD * threads as u64,
        width: w,
        height: h,
        tile,
        peak: 0,
    };
    e.peak = e.network + e.optimizer + e.inputs + e.weights + e.overhead;
    e
}

/// Estimates the peak memory of `job` on a content image of `content` (width, height) pixels
/// and style images of `styles`, with `threads` workers, every stage evaluated whole (or in
/// the job's forced `--tile`).
pub fn estimate(job: &Job, content: (u32, u32), styles: &[(u32, u32)], threads: usize) -> Estimate {
    let stages = job
        .stage_sizes()
        .into_iter()
        .map(|size| stage_estimate(job, content, styles, threads, size, job.tile))
        .collect();
    Plan {
        stages,
        kept_kernels: 0,
    }
    .peak()
    .clone()
}

/// Plans how each stage of `job` is evaluated within `limit` bytes (`None`: no limit): whole
/// when that fits (the fast path), else in the largest tiles that fit; a forced `job.tile` is
/// kept. Fails, with the figures and what to change, when even the smallest tile does not fit.
pub fn plan(
    job: &Job,
    content: (u32, u32),
    styles: &[(u32, u32)],
    threads: usize,
    limit: Option<u64>,
    limit_is_given: bool,
) -> Result<Plan> {
    let align = crate::tiling::alignment(job.loss_config().depth().unwrap_or(LAYER_NAMES.len()));
    let mut stages = Vec::new();
    for size in job.stage_sizes() {
        let at = |tile| stage_estimate(job, content, styles, threads, size, tile);
        let whole = at(job.tile);
        let fits = |e: &Estimate| limit.is_none_or(|l| e.peak <= l);
        let chosen = if fits(&whole) {
            whole
        } else if job.tile.is_some() {
            return Err(too_big(job, &whole, limit, limit_is_given));
        } else {
            // The tile workspace grows with the side: the largest side that fits.
            let long = whole.width.max(whole.height) as usize;
            let mut side = long.next_multiple_of(align);
            loop {
                let e = at(Some(side));
                if fits(&e) {
                    break e;
                }
                if side <= align {
                    return Err(too_big(job, &e, limit, limit_is_given));
                }
                side -= align;
            }
        };
        stages.push(chosen);
    }
    Ok(Plan {
        stages,
        kept_kernels: 0,
    })
}

/// The memory a run may use: `budget` when given, else what the machine (or cgroup) has
/// available less a margin for the rest of the system (5%, at least 256 MiB).
pub fn limit(budget: Option<u64>) -> Option<u64> {
    budget.or_else(|| available().map(|a| a.saturating_sub((a / 20).max(256 << 20))))
}

/// [`plan`] for the files a job names (their headers read, no pixels decoded), with the
/// current rayon pool's threads, within `budget` (`None`: what is available, see [`limit`])
/// less the kept Winograd kernels `keep` resolves to ([`plan_kept`]).
pub fn plan_job(job: &Job, budget: Option<u64>, keep: KeepKernels) -> Result<Plan> {
    let content = image_dimensions(&job.content)?;
    let styles = job
        .styles
        .iter()
        .map(|p| image_dimensions(p))
        .collect::<Result<Vec<_>>>()?;
    plan_kept(
        job,
        content,
        &styles,
        rayon::current_num_threads(),
        limit(budget),
        budget.is_some(),
        keep,
    )
}

/// [`plan`] within `limit` less the kept kernels: `Bytes(b)` sets `b` aside; `Auto` sets
/// aside its kernels (see [`KeepKernels::Auto`]) at the stage that needs the most when every
/// stage then still runs whole, and keeps none otherwise (the plan then as without them).
pub fn plan_kept(
    job: &Job,
    content: (u32, u32),
    styles: &[(u32, u32)],
    threads: usize,
    limit: Option<u64>,
    limit_is_given: bool,
    keep: KeepKernels,
) -> Result<Plan> {
    let within = |reserved: u64| {
        plan(
            job,
            content,
            styles,
            threads,
            limit.map(|l| l.saturating_sub(reserved)),
            limit_is_given,
        )
        .map(|p| Plan {
            kept_kernels: reserved,
            ..p
        })
    };
    match keep {
        KeepKernels::Bytes(b) => within(b),
        KeepKernels::Auto => {
            let wanted = job
                .stage_sizes()
                .into_iter()
                .map(|size| auto_kept_bytes(job, content, size))
                .max()
                .unwrap_or(0);
            match within(wanted) {
                Ok(p) if p.stages.iter().all(|s| s.tile.is_none()) => Ok(p),
                _ => within(0),
            }
        }
    }
}

/// Reads an image file's dimensions from its header alone (no pixels decoded).
pub fn image_dimensions(path: &Path) -> Result<(u32, u32)> {
    image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| Error::io(path, e))?
        .into_dimensions()
        .map_err(|e| Error::Image {
            path: path.into(),
            detail: e.to_string(),
        })
}

/// What the process may use: the smallest of the memory available on the machine and the
/// room left under the cgroup's limit (v2 or v1). `None` when neither can be read.
pub fn available() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| {
        t.lines()
            .find(|l| l.starts_with("MemAvailable:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    });
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    let cgroup = match (
        read("/sys/fs/cgroup/memory.max"),
        read("/sys/fs/cgroup/memory.current"),
    ) {
        (Some(max), Some(cur)) => Some(max.saturating_sub(cur)),
        _ => match (
            read("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
            read("/sys/fs/cgroup/memory/memory.usage_in_bytes"),
        ) {
            // v1 reports "no limit" as a huge number.
            (Some(max), Some(cur)) if max < 1 << 60 => Some(max.saturating_sub(cur)),
            _ => None,
        },
    };
    match (meminfo, cgroup) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `1.5 GiB`-style text.
pub fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.1} GiB", b / (1u64 << 30) as f64)
    } else {
        format!("{:.0} MiB", b / (1u64 << 20) as f64)
    }
}

/// Parses `512M`, `1.5G`, `2GiB`, `800MB` or a plain number of bytes.
pub fn parse_size(text: &str) -> Result<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(Error::Config(format!("memory size '{text}': unknown unit"))),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| Error::Config(format!("memory size '{text}' is not a number")))?;
    if !(n.is_finite() && n > 0.0) {
        return Err(Error::Config(format!(
            "memory size '{text}' must be positive"
        )));
    }
    Ok((n * factor as f64) as u64)
}

/// The error for a stage that does not fit `limit` even in its smallest tiles (or in the
/// forced ones), with the figures and the settings that would make it fit.
fn too_big(job: &Job, e: &Estimate, limit: Option<u64>, limit_is_given: bool) -> Error {
    let limit = limit.unwrap_or(0);
    let hint = match job.optimizer {
        Optimizer::Lbfgs => format!(
            "lower --size, --history {} -> {} or --optimizer adam",
            job.history,
            (job.history / 2).max(1)
        ),
        Optimizer::Adam => "lower --size".into(),
    };
    let tiles = match e.tile {
        Some(side) => format!(" in {side}-pixel tiles"),
        None => String::new(),
    };
    Error::Memory(format!(
        "a {}x{} painting needs about {}{tiles} (network {}, optimiser and images {}), but only {} {}; {hint}",
        e.width,
        e.height,
        human(e.peak),
        human(e.network),
        human(e.optimizer),
        human(limit),
        if limit_is_given {
            "is allowed by --max-memory"
        } else {
            "is available"
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        for bad in ["", "x", "-1G", "3Q", "0"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_estimate_grows_with_pixels_and_history() {
        let job = Job::new("c", ["s"], "o.png");
        let e512 = estimate(&job, (512, 512), &[(512, 413)], 2);
        let mut big = job.clone();
        big.size = 1024;
        let e1024 = estimate(&big, (512, 512), &[(512, 413)], 2);
        // Four times the pixels: the image-sized part four times larger.
        let fixed = e512.weights + e512.overhead;
        let ratio = (e1024.peak - fixed) as f64 / (e512.peak - fixed) as f64;
        assert!((3.5..4.2).contains(&ratio), "{ratio}");
        let mut adam = job.clone();
        adam.optimizer = Optimizer::Adam;
        assert!(estimate(&adam, (512, 512), &[(512, 413)], 2).peak < e512.peak);
        // The largest stage of a multi-scale run sets the peak.
        let mut multi = job.clone();
        multi.scales = vec![128, 256];
        assert_eq!(
            estimate(&multi, (512, 512), &[(512, 413)], 2).peak,
            e512.peak
        );
        // Masks are counted: two of a 512 x 512 photograph (decoded, resized, per layer).
        let mut masked = job.clone();
        masked.styles.push("t".into());
        masked.style_masks = vec![crate::job::StyleMask::File("m".into()); 2];
        let two_styles = Job {
            styles: masked.styles.clone(),
            ..job.clone()
        };
        let sizes = [(512, 413), (512, 413)];
        let more = estimate(&masked, (512, 512), &sizes, 2).inputs
            - estimate(&two_styles, (512, 512), &sizes, 2).inputs;
        assert_eq!(more, 2 * 4 * (2 * 512 * 512 + 349_526));
    }

    #[test]
    fn an_impossible_size_is_refused_with_the_figures() {
        let mut job = Job::new("c", ["s"], "o.png");
        job.size = 16384;
        let err = plan(&job, (4000, 3000), &[(800, 600)], 2, Some(2 << 30), true)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("16384x12288") && err.contains("tiles") && err.contains("--max-memory"),
            "{err}"
        );
        let e = estimate(&job, (4000, 3000), &[(800, 600)], 2);
        assert!(plan(&job, (4000, 3000), &[(800, 600)], 2, Some(e.peak), true).is_ok());
    }

    #[test]
    fn a_tight_budget_picks_tiles_and_the_largest_that_fit() {
        let mut job = Job::new("c", ["s"], "o.png");
        job.size = 2048;
        job.optimizer = Optimizer::Adam;
        let dims = ((2048, 1536), [(800, 600)]);
        let whole = estimate(&job, dims.0, &dims.1, 2);
        assert_eq!(whole.tile, None);
        let roomy = plan(&job, dims.0, &dims.1, 2, Some(whole.peak), true).unwrap();
        assert_eq!(roomy.peak().tile, None, "whole when it fits");
        let tight = plan(&job, dims.0, &dims.1, 2, Some(3 << 29), true).unwrap();
        let e = tight.peak();
        let side = e.tile.expect("tiled under 1.5 GiB");
        assert!(e.peak <= 3 << 29 && side.is_multiple_of(16), "{e:?}");
        let bigger = stage_estimate(&job, dims.0, &dims.1, 2, 2048, Some(side + 16));
        assert!(bigger.peak > 3 << 29, "the largest side that fits");
        // A forced tile is kept, and the stage's tile memory no longer grows with the image.
        job.tile = Some(256);
        let e4k = {
            job.size = 4096;
            estimate(&job, dims.0, &dims.1, 2)
        };
        job.size = 8192;
        let e8k = estimate(&job, dims.0, &dims.1, 2);
        assert_eq!((e4k.tile, e8k.tile), (Some(256), Some(256)));
        assert_eq!(e4k.network, e8k.network);
    }

    #[test]
    fn auto_keeps_the_small_maps_kernels_only_when_they_cost_no_tiling() {
        let mut job = Job::new("c", ["s"], "o.png");
        job.optimizer = Optimizer::Adam;
        let dims = ((512, 512), [(512, 413)]);
        let at = |job: &Job, limit, keep| {
            plan_kept(job, dims.0, &dims.1, 2, limit, limit.is_some(), keep).unwrap()
        };
        // One 512 x 512 F(2x2) bank, forward or input gradient (panel padding aside).
        let bank = 512 * 512 * 16 * 4;
        let kept = |size| {
            let mut j = job.clone();
            j.size = size;
            at(&j, None, KeepKernels::Auto).kept_kernels
        };
        // 256 px: block 4 (conv4_1 half the channels) and conv5_1, both directions.
        let k256 = kept(256);
        assert!(k256 >= 9 * bank && k256 < 9 * bank + (1 << 20), "{k256}");
        // 512 px: block 4 runs F(4x4) on 64 x 64, so conv5_1 alone; 1024 px: none.
        let k512 = kept(512);
        assert!(k512 >= 2 * bank && k512 < 2 * bank + (1 << 20), "{k512}");
        assert_eq!(kept(1024), 0);
        // A limit that holds the painting whole but not beside the kernels: none kept, untiled.
        job.size = 256;
        let whole = estimate(&job, dims.0, &dims.1, 2).peak;
        let snug_limit = whole + k256 - (20 << 20);
        let snug = at(&job, Some(snug_limit), KeepKernels::Auto);
        assert_eq!(snug.kept_kernels, 0);
        assert!(snug.stages.iter().all(|s| s.tile.is_none()));
        assert_eq!(
            at(&job, Some(whole + k256), KeepKernels::Auto).kept_kernels,
            k256
        );
        // An explicit size is set aside even when the painting then runs tiled.
        let forced = at(&job, Some(snug_limit), KeepKernels::Bytes(k256));
        assert_eq!(forced.kept_kernels, k256);
        assert!(forced.stages[0].tile.is_some());
        // A forced tile: tiled stages keep no kernels.
        job.tile = Some(128);
        assert_eq!(at(&job, None, KeepKernels::Auto).kept_kernels, 0);
    }
}
