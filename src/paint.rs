//! Running a [`Job`]: the whole painting (stages of a multi-scale run, the start image, style
//! resizing and cached style targets, the optimiser loop, intermediate and final images with
//! original colours and bit depth) in one call, so that the CLI, a batch and an embedding
//! program all paint the same way.

use crate::checkpoint::{Checkpoint, CheckpointView, InputHash, OptimizerSnapshot, OptimizerView};
use crate::error::{Error, Result};
use crate::image as img;
use crate::job::{InitSpec, Job, Optimizer, OriginalColors};
use crate::loss::{Masks, Objective, StyleGrams};
use crate::memory::{self, KeepKernels};
use crate::optim::{Adam, Lbfgs, Stop};
use crate::profile::Timings;
use crate::progress::Record;
use crate::style_cache::{Origin, StyleCache, StyleKey};
use crate::transfer::{initial_image, run_adam, run_lbfgs_from, Init, OptimizerState, Step};
use crate::vgg::Vgg19;
use ndarray::Array3;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// What a painting reports while it runs.
pub enum Event<'a> {
    /// A stage begins (1-based), at `width x height`.
    Stage {
        stage: usize,
        stages: usize,
        width: usize,
        height: usize,
        iterations: usize,
        /// The stage's evaluation tiles: (owned side, count); `None`: the whole image at once.
        tiles: Option<(usize, usize)>,
    },
    /// A step finished: its figures, and the step itself (with the current image).
    Step { record: Record, step: &'a Step<'a> },
    /// Something went wrong that does not stop the painting (a style cache entry that had to
    /// be recomputed, an intermediate image or cache entry that could not be written).
    Warning(String),
}

/// What a finished painting hands back (the output file is already written).
#[derive(Debug, Clone)]
pub struct Painting {
    /// The optimised image, net space, before the luminance swap of original colours.
    pub image: Array3<f32>,
    /// Every step of every stage.
    pub records: Vec<Record>,
    /// Objective evaluations over all stages.
    pub evaluations: usize,
    /// Wall-clock seconds of the whole painting.
    pub seconds: f64,
    /// Seconds spent obtaining style targets (decoding, resizing, VGG forward, Grams; or a
    /// cache lookup).
    pub style_seconds: f64,
    /// Why the last L-BFGS stage stopped, if it stopped early.
    pub early_stop: Option<Stop>,
}

impl Painting {
    /// The last step's figures.
    pub fn last(&self) -> Option<&Record> {
        self.records.last()
    }
}

/// When a running painting saves its state.
#[derive(Debug, Clone)]
pub struct CheckpointPolicy {
    /// The checkpoint file (rewritten atomically each time).
    pub path: PathBuf,
    /// Every this many steps...
    pub every_steps: usize,
    /// ...or this many seconds, whichever comes first (so a slow, huge image still saves
    /// often). A checkpoint is also written at the end and when the run is cancelled.
    pub every_seconds: f64,
}

impl CheckpointPolicy {
    /// `path` with the defaults: every 25 steps or 5 minutes.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        CheckpointPolicy {
            path: path.into(),
            every_steps: 25,
            every_seconds: 300.0,
        }
    }
}

/// Tracks when the next checkpoint is due.
struct Saver<'p> {
    policy: &'p CheckpointPolicy,
    last_step: usize,
    last_time: Instant,
}

impl Saver<'_> {
    fn due(&self, step: usize) -> bool {
        (self.policy.every_steps > 0 && step >= self.last_step + self.policy.every_steps)
            || self.last_time.elapsed().as_secs_f64() >= self.policy.every_seconds
    }

    fn restart(&mut self, step: usize) {
        self.last_step = step;
        self.last_time = Instant::now();
    }
}

/// Stops a painting after its current step: from another thread, or from a signal handler
/// through [`Cancel::from_flag`].
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn new() -> Self {
        Cancel::default()
    }

    /// A handle on a flag someone else sets (e.g. `signal_hook::flag::register`).
    pub fn from_flag(flag: Arc<AtomicBool>) -> Self {
        Cancel(flag)
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What a painting may do besides painting: save checkpoints, stop when asked, resume.
#[derive(Debug, Clone, Default)]
pub struct Control {
    pub checkpoint: Option<CheckpointPolicy>,
    pub cancel: Cancel,
    /// A checkpoint of this very job to continue from ([`Checkpoint::load`]).
    pub resume: Option<Checkpoint>,
    /// The memory the painting may use ([`crate::memory::plan`]: stages that do not fit whole
    /// are tiled); `None`: what the machine or its cgroup has available, less a margin.
    pub max_memory: Option<u64>,
    /// Transformed Winograd kernels to keep between steps (see [`Objective::keep_kernels`]),
    /// set aside from the memory the plan may use; by default the deepest layers' when that
    /// costs no tiling ([`KeepKernels::Auto`]).
    pub keep_kernels: KeepKernels,
}

fn mismatch(optimizer: &str) -> Error {
    Error::Checkpoint {
        path: PathBuf::new(),
        detail: format!("it holds the state of another optimiser than {optimizer}"),
    }
}

/// A loaded network and the style targets it has computed: paints any number of jobs.
pub struct Painter<'v> {
    vgg: &'v Vgg19,
    styles: StyleCache,
}

/// `out.png` + 100 -> `out-100.png`: where `save_every` writes.
pub fn intermediate_path(output: &Path, step: usize) -> PathBuf {
    let stem = output.file_stem().unwrap_or_default().to_string_lossy();
    let ext = output.extension().unwrap_or_default().to_string_lossy();
    output.with_file_name(format!("{stem}-{step}.{ext}"))
}

/// A decoded style file and the hash-keyed targets derived from it.
struct StyleSource {
    path: PathBuf,
    bytes: Vec<u8>,
    /// Decoded at full size (and colour-matched, for `OriginalColors::Histogram`) on the first
    /// cache miss, then resized for each stage.
    decoded: Option<image::Rgb32FImage>,
}

impl StyleSource {
    /// The style at full size, decoded on first use and colour-matched to `matched` when
    /// given. A job's styles are matched to one photograph or never, so the first decode holds.
    fn decoded(&mut self, matched: Option<&img::ColorStats>) -> Result<&image::Rgb32FImage> {
        if self.decoded.is_none() {
            let mut decoded = img::decode_bytes(&self.path, &self.bytes)?;
            if let Some(stats) = matched {
                img::match_colors(&mut decoded, stats).map_err(|e| Error::Image {
                    path: self.path.clone(),
                    detail: e.to_string(),
                })?;
            }
            self.decoded = Some(decoded);
        }
        Ok(self.decoded.as_ref().expect("decoded just above"))
    }
}

/// The job's decoded masks at full size, resized for each stage.
struct MaskSources {
    style: Vec<Option<img::Mask>>,
    content: Option<(img::Mask, f64)>,
}

impl MaskSources {
    /// Decodes the masks of `job` from `bytes` (the files of [`Job::mask_files`], in order),
    /// checked against the photograph's `size`.
    fn decode(job: &Job, bytes: &[Vec<u8>], size: (u32, u32)) -> Result<Self> {
        let mut files = job.mask_files().zip(bytes);
        let mut next = || {
            let (path, bytes) = files.next().expect("one read per mask file");
            img::Mask::decode(path, bytes, size)
        };
        let style = job
            .style_masks
            .iter()
            .map(|m| m.file().map(|_| next()).transpose())
            .collect::<Result<Vec<_>>>()?;
        let content = match &job.content_mask {
            Some(_) => Some((next()?, job.content_mask_weight)),
            None => None,
        };
        Ok(MaskSources { style, content })
    }

    /// The masks at a stage of `h x w` pixels.
    fn at(&self, h: usize, w: usize) -> Masks<f32> {
        Masks {
            style: self
                .style
                .iter()
                .map(|m| m.as_ref().map(|m| m.at(h, w)))
                .collect(),
            content: self.content.as_ref().map(|(m, k)| (m.at(h, w), *k)),
        }
    }
}

/// What `--original-colors histogram` matches every style image to: the photograph's colour
/// statistics and the hash of its file (part of the targets' cache key).
struct ColorTarget {
    stats: img::ColorStats,
    content: [u8; 32],
}

impl<'v> Painter<'v> {
    /// A painter on `vgg` with a style cache in memory.
    pub fn new(vgg: &'v Vgg19) -> Self {
        Painter {
            vgg,
            styles: StyleCache::in_memory(),
        }
    }

    /// A painter that shares `cache` (e.g. [`StyleCache::in_dir`]) across its jobs.
    pub fn with_cache(vgg: &'v Vgg19, cache: StyleCache) -> Self {
        Painter { vgg, styles: cache }
    }

    /// The network.
    pub fn vgg(&self) -> &Vgg19 {
        self.vgg
    }

    /// Paints `job`: validates it, checks that its output can be written, runs every stage and
    /// writes the output (and the intermediate images `save_every` asks for). `on_event` sees
    /// every stage and step; an error it returns stops the painting and is returned.
    /// `timings`, when given, collects the per-layer profile.
    pub fn paint(
        &self,
        job: &Job,
        timings: &mut Option<Timings>,
        on_event: impl FnMut(&Event) -> Result<()> + Send,
    ) -> Result<Painting> {
        self.paint_with(job, Control::default(), timings, on_event)
    }

    /// `paint` with checkpoints, a cancellation handle and a checkpoint to resume from
    /// ([`Control`]). A cancelled painting writes its checkpoint (when configured) and its
    /// current image to the output, then returns [`Error::Cancelled`]; resuming it paints
    /// bitwise the picture the uninterrupted run paints. `control` is taken by value so that a
    /// checkpoint's image and optimiser state move into the run instead of being copied (at
    /// print sizes an L-BFGS history is gigabytes).
    pub fn paint_with(
        &self,
        job: &Job,
        mut control: Control,
        timings: &mut Option<Timings>,
        mut on_event: impl FnMut(&Event) -> Result<()> + Send,
    ) -> Result<Painting> {
        job.validate()?;
        let config = job.loss_config();
        let depth = config.depth()?;
        if depth > self.vgg.depth() {
            return Err(Error::Config(format!(
                "the job needs {} layers of the network, but only {} are loaded",
                depth,
                self.vgg.depth()
            )));
        }
        img::check_writable(&job.output)?;
        // Before anything image-sized is allocated: refuse what cannot fit, and tile the
        // stages whose whole image does not.
        let plan = memory::plan_job(job, control.max_memory, control.keep_kernels)?;
        let t0 = Instant::now();
        let read = |p: &Path| std::fs::read(p).map_err(|e| Error::io(p, e));
        let content_bytes = read(&job.content)?;
        // Names the photograph in the checkpoint and in colour-matched style targets' keys.
        let content_hash = blake3::hash(&content_bytes);
        let mut inputs = vec![InputHash::with_hash(&job.content, &content_hash)];
        let mut styles = Vec::new();
        for p in &job.styles {
            let bytes = read(p)?;
            inputs.push(InputHash::of(p, &bytes));
            styles.push(StyleSource {
                path: p.clone(),
                bytes,
                decoded: None,
            });
        }
        let mut mask_bytes = Vec::new();
        for p in job.mask_files() {
            let bytes = read(p)?;
            inputs.push(InputHash::of(p, &bytes));
            mask_bytes.push(bytes);
        }
        let init_bytes = match &job.init {
            InitSpec::File(p) => {
                let bytes = read(p)?;
                inputs.push(InputHash::of(p, &bytes));
                Some(bytes)
            }
            _ => None,
        };
        let mut resume = control.resume.take();
        if let Some(ck) = &resume {
            self.check_resume(ck, job, &inputs)?;
        }
        let content_image = img::decode_bytes(&job.content, &content_bytes)?;
        let masks = MaskSources::decode(job, &mask_bytes, content_image.dimensions())?;
        drop(mask_bytes);
        // Histogram matching is done once per style at full size, before the per-stage resize,
        // against the full-size photograph's statistics: every stage, style of a blend and
        // tile then sees the same matched style.
        let color_target = match job.original_colors {
            OriginalColors::Histogram => Some(ColorTarget {
                stats: img::ColorStats::of(&content_image)?,
                content: *content_hash.as_bytes(),
            }),
            OriginalColors::Off | OriginalColors::Luminance => None,
        };
        let style_layers = config.style_indices()?;
        let blend = job.blend();
        let sizes = job.stage_sizes();
        let (first_stage, mut records, mut evaluations, seconds_before) = match &mut resume {
            Some(ck) => (
                ck.stage,
                std::mem::take(&mut ck.records),
                ck.evaluations,
                ck.seconds,
            ),
            None => (0, Vec::new(), 0, 0.0),
        };
        let mut style_seconds = 0.0;
        let mut early_stop = None;
        let mut x: Option<Array3<f32>> = None;
        let mut content = Array3::zeros((3, 1, 1));
        let mut saver = control.checkpoint.as_ref().map(|p| Saver {
            policy: p,
            last_step: resume.as_ref().map_or(0, |ck| ck.step),
            last_time: Instant::now(),
        });
        let fingerprint = self.vgg.fingerprint();

        for (stage, &size) in sizes.iter().enumerate().skip(first_stage) {
            content = img::rgb32f_to_net(&img::resize_long_side(&content_image, size));
            let (h, w) = (content.dim().1, content.dim().2);
            let side = job.style_side(size)?;
            let resumed = match &resume {
                Some(ck) if ck.stage == stage => resume.take(),
                _ => None,
            };
            let tile = match (&resumed, plan.stages[stage].tile) {
                // The checkpoint's stage ran whole, but this budget does not allow it: tiles
                // it must be (the same objective up to rounding, so not bitwise the rest).
                (Some(ck), Some(side)) if ck.tile.is_none() => {
                    on_event(&Event::Warning(format!(
                        "the checkpoint's stage ran untiled, which does not fit here: going on in {side}-pixel tiles (equal up to rounding, not bitwise)"
                    )))?;
                    Some(side)
                }
                (Some(ck), _) => ck.tile,
                (None, planned) => planned,
            };
            let ts = Instant::now();
            let grams = styles
                .iter_mut()
                .map(|s| {
                    let target = color_target.as_ref();
                    self.style_grams(s, side, &style_layers, job, tile, target, &mut on_event)
                })
                .collect::<Result<Vec<_>>>()?;
            style_seconds += ts.elapsed().as_secs_f64();
            let blended: Vec<(&StyleGrams<f32>, f32)> = grams
                .iter()
                .map(|g| &**g)
                .zip(blend.iter().copied())
                .collect();
            let objective = Objective::with_masks(
                self.vgg,
                &content,
                &blended,
                &config,
                tile,
                &masks.at(h, w),
            )?
            .keep_kernels(usize::try_from(plan.kept_kernels).unwrap_or(usize::MAX));
            let (start, snapshot) = match (resumed, x.take()) {
                (Some(ck), _) => {
                    if ck.shape != [3, h, w] {
                        return Err(Error::Checkpoint {
                            path: PathBuf::new(),
                            detail: format!(
                                "image shape {:?}, the stage has {:?}",
                                ck.shape,
                                [3, h, w]
                            ),
                        });
                    }
                    let image = Array3::from_shape_vec((3, h, w), ck.image)
                        .map_err(|e| Error::Shape(e.to_string()))?;
                    (image, Some(ck.optimizer))
                }
                (None, Some(prev)) => (img::resize_net(&prev, w as u32, h as u32), None),
                (None, None) => {
                    let init = match (&job.init, &color_target) {
                        (InitSpec::Recolored, None) => {
                            Init::Image(recolored(&content_image, size, &mut styles, &blend)?)
                        }
                        _ => self.init(job, init_bytes.as_deref(), w, h)?,
                    };
                    (initial_image(&init, &content, job.seed)?, None)
                }
            };
            on_event(&Event::Stage {
                stage: stage + 1,
                stages: sizes.len(),
                width: w,
                height: h,
                iterations: job.iterations_at(stage),
                tiles: objective
                    .tile_grid()
                    .map(|grid| (grid.side, grid.tiles.len())),
            })?;
            let last_stage = stage + 1 == sizes.len();
            let all_records = &mut records;
            let content_ref = &content;
            let inputs_ref = &inputs;
            let saver_ref = &mut saver;
            let on_step = |s: &Step| -> Result<()> {
                let record = Record::new(stage + 1, size, s);
                all_records.push(record);
                on_event(&Event::Step { record, step: s })?;
                if last_stage
                    && job.save_every > 0
                    && s.iteration.is_multiple_of(job.save_every)
                    && s.iteration != s.iterations
                {
                    let path = intermediate_path(&job.output, s.iteration);
                    if let Err(e) = save(job, s.image, content_ref, &path) {
                        on_event(&Event::Warning(format!(
                            "intermediate image not written: {e}"
                        )))?;
                    }
                }
                let cancelled = control.cancel.is_cancelled();
                let mut written = None;
                if let Some(saver) = saver_ref.as_mut() {
                    let stopped =
                        matches!(s.optimizer, OptimizerState::Lbfgs(st) if st.stop.is_some());
                    let finished = last_stage && (s.iteration == s.iterations || stopped);
                    if cancelled || finished || saver.due(s.iteration) {
                        let view = CheckpointView {
                            job,
                            weights: fingerprint,
                            inputs: inputs_ref,
                            stage,
                            step: s.iteration,
                            evaluations,
                            seconds: seconds_before + t0.elapsed().as_secs_f64(),
                            records: all_records,
                            shape: [3, h, w],
                            image: s.image.as_slice().expect("the run's image is contiguous"),
                            optimizer: match s.optimizer {
                                OptimizerState::Adam(adam) => {
                                    let (m, v) = adam.moments();
                                    OptimizerView::Adam {
                                        steps: adam.steps(),
                                        m,
                                        v,
                                    }
                                }
                                OptimizerState::Lbfgs(st) => OptimizerView::Lbfgs(st),
                            },
                            tile,
                        };
                        saver.restart(s.iteration);
                        match view.save(&saver.policy.path) {
                            Ok(()) => written = Some(saver.policy.path.clone()),
                            Err(e) => on_event(&Event::Warning(format!(
                                "checkpoint not written (the run goes on): {e}"
                            )))?,
                        }
                    }
                }
                if cancelled {
                    save(job, s.image, content_ref, &job.output)?;
                    return Err(Error::Cancelled {
                        stage: stage + 1,
                        step: s.iteration,
                        checkpoint: written,
                    });
                }
                Ok(())
            };
            let (image, stage_evaluations) = match (job.optimizer, snapshot) {
                (Optimizer::Adam, snapshot) => {
                    let mut adam = Adam::new(job.learning_rate, job.beta1, job.beta2, job.epsilon)?;
                    match snapshot {
                        Some(OptimizerSnapshot::Adam { steps, m, v }) => {
                            adam.restore(steps, m, v)?
                        }
                        Some(_) => return Err(mismatch("Adam")),
                        None => {}
                    }
                    let x = run_adam(
                        &objective,
                        start,
                        &mut adam,
                        job.iterations_at(stage),
                        timings,
                        on_step,
                    )?;
                    (x, job.iterations_at(stage))
                }
                (Optimizer::Lbfgs, snapshot) => {
                    let lbfgs = Lbfgs {
                        history: job.history,
                        ..Lbfgs::default()
                    };
                    let state = match snapshot {
                        Some(OptimizerSnapshot::Lbfgs(st)) => Some(st),
                        Some(_) => return Err(mismatch("L-BFGS")),
                        None => None,
                    };
                    let (x, report) = run_lbfgs_from(
                        &objective,
                        start,
                        state,
                        &lbfgs,
                        job.iterations_at(stage),
                        timings,
                        on_step,
                    )?;
                    early_stop = (report.stop != Stop::MaxIterations).then_some(report.stop);
                    (x, report.evaluations)
                }
            };
            evaluations += stage_evaluations;
            if let Some(saver) = saver.as_mut() {
                saver.last_step = 0;
            }
            x = Some(image);
        }
        let image = x.ok_or_else(|| Error::Config("no stage ran".into()))?;
        save(job, &image, &content, &job.output)?;
        Ok(Painting {
            image,
            records,
            evaluations,
            seconds: seconds_before + t0.elapsed().as_secs_f64(),
            style_seconds,
            early_stop,
        })
    }

    /// Refuses a checkpoint of another painting: other settings (but for where the output
    /// goes), other inputs or another network. The message names what differs.
    fn check_resume(&self, ck: &Checkpoint, job: &Job, inputs: &[InputHash]) -> Result<()> {
        let differs = |detail: String| Error::Checkpoint {
            path: PathBuf::new(),
            detail,
        };
        let fields = job.differences(&ck.job);
        if !fields.is_empty() {
            return Err(differs(format!(
                "it was made with other settings: {}",
                fields.join(", ")
            )));
        }
        if ck.weights != self.vgg.fingerprint() {
            return Err(differs("it was made with other network weights".into()));
        }
        for (now, then) in inputs.iter().zip(&ck.inputs) {
            if now.blake3 != then.blake3 {
                return Err(differs(format!(
                    "{} changed since the checkpoint was written",
                    now.path.display()
                )));
            }
        }
        if inputs.len() != ck.inputs.len() {
            return Err(differs("it was made with other input files".into()));
        }
        Ok(())
    }

    fn init(&self, job: &Job, file: Option<&[u8]>, w: usize, h: usize) -> Result<Init> {
        Ok(match (&job.init, file) {
            (InitSpec::Noise, _) => Init::Noise {
                ratio: job.init_ratio,
            },
            (InitSpec::Content, _) => Init::Content,
            (InitSpec::Random, _) => Init::Random,
            // Reached with histogram-matched styles only (the recolouring is done by the
            // caller otherwise): they carry the photograph's colours, so it is the start.
            (InitSpec::Recolored, _) => Init::Content,
            (InitSpec::File(path), Some(bytes)) => {
                let decoded = img::decode_bytes(path, bytes)?;
                let net = img::resize_exact_to_net(decoded, w as u32, h as u32);
                if !net.iter().all(|v| v.is_finite()) {
                    return Err(Error::Image {
                        path: path.clone(),
                        detail: "holds NaN or infinity".into(),
                    });
                }
                Init::Image(net)
            }
            (InitSpec::File(path), None) => unreachable!("init file {} read above", path.display()),
        })
    }

    /// One style image's targets at `side`, through the cache; colour-matched to `colors`
    /// when given (keyed by the photograph too).
    #[allow(clippy::too_many_arguments)]
    fn style_grams(
        &self,
        source: &mut StyleSource,
        side: u32,
        layers: &[usize],
        job: &Job,
        tile: Option<usize>,
        colors: Option<&ColorTarget>,
        on_event: &mut impl FnMut(&Event) -> Result<()>,
    ) -> Result<std::sync::Arc<StyleGrams<f32>>> {
        let key = StyleKey::new(
            &source.bytes,
            side,
            layers,
            job.pool,
            self.vgg.fingerprint(),
        );
        let key = match colors {
            Some(target) => key.matched_to(&target.content),
            None => key,
        };
        let lookup = self.styles.get_or_compute(key, || {
            let decoded = source.decoded(colors.map(|target| &target.stats))?;
            let net = img::rgb32f_to_net(&img::resize_long_side(decoded, side));
            StyleGrams::compute_tiled(self.vgg, &net, layers, job.pool, tile).map_err(|e| match e {
                Error::NonFinite(_) | Error::Shape(_) => Error::Image {
                    path: source.path.clone(),
                    detail: e.to_string(),
                },
                e => e,
            })
        })?;
        if let Origin::Recomputed(reason) = &lookup.origin {
            on_event(&Event::Warning(format!(
                "style cache entry for {} was unusable ({reason}); recomputed",
                source.path.display()
            )))?;
        }
        if let Some(e) = &lookup.write_error {
            on_event(&Event::Warning(format!(
                "style cache entry not written: {e}"
            )))?;
        }
        Ok(lookup.grams)
    }
}

/// The photograph at the stage's `size` with the colour mean and covariance of the styles'
/// pixels, mixed in the blend's proportions. Decodes the styles at full size (kept for their
/// targets: without histogram matching, `decoded` is the file as it is).
fn recolored(
    content: &image::Rgb32FImage,
    size: u32,
    styles: &mut [StyleSource],
    blend: &[f32],
) -> Result<Array3<f32>> {
    let mut parts = Vec::with_capacity(styles.len());
    for (s, &weight) in styles.iter_mut().zip(blend) {
        let stats = img::ColorStats::of(s.decoded(None)?).map_err(|e| Error::Image {
            path: s.path.clone(),
            detail: e.to_string(),
        })?;
        parts.push((stats, weight as f64));
    }
    let mut start = img::resize_long_side(content, size);
    img::match_colors(&mut start, &img::ColorStats::mixture(&parts)?)?;
    Ok(img::rgb32f_to_net(&start))
}

/// Writes an image with the job's output options (the luminance swap of original colours, bit
/// depth). Histogram-matched colours were applied to the styles before the run: nothing here.
fn save(job: &Job, x: &Array3<f32>, content: &Array3<f32>, path: &Path) -> Result<()> {
    let recoloured;
    let x = if job.original_colors == OriginalColors::Luminance {
        recoloured = img::original_colors(x, content)?;
        &recoloured
    } else {
        x
    };
    img::save_net_with_depth(x, path, job.output_depth == 16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Rgb, Rgb32FImage};

    /// A smooth image of colours `spread` around `centre`, each channel its own pattern.
    fn pattern(w: u32, h: u32, centre: [f32; 3], spread: f32) -> Rgb32FImage {
        ImageBuffer::from_fn(w, h, |x, y| {
            let (u, v) = (x as f32 / w as f32, y as f32 / h as f32);
            let waves = [u - 0.5, v - 0.5, (6.0 * (u + v)).sin() / 2.0];
            Rgb(std::array::from_fn(|c| centre[c] + spread * waves[c]))
        })
    }

    fn source(name: &str, img: &Rgb32FImage) -> StyleSource {
        let rgb = image::DynamicImage::ImageRgb32F(img.clone()).into_rgb8();
        let mut bytes = Vec::new();
        rgb.write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .unwrap();
        StyleSource {
            path: name.into(),
            bytes,
            decoded: None,
        }
    }

    #[test]
    fn the_recoloured_start_has_the_blended_styles_colours() {
        let photo = pattern(48, 36, [0.5, 0.5, 0.5], 0.6);
        let (red, blue) = (
            pattern(40, 40, [0.6, 0.35, 0.3], 0.15),
            pattern(30, 50, [0.35, 0.4, 0.6], 0.15),
        );
        let mut styles = [source("red.png", &red), source("blue.png", &blue)];
        let start = recolored(&photo, 32, &mut styles, &[1.0, 3.0]).unwrap();
        assert_eq!(start.dim(), (3, 24, 32));
        assert!(
            styles.iter().all(|s| s.decoded.is_some()),
            "kept for the targets"
        );
        let stats = |img: &Rgb32FImage| img::ColorStats::of(img).unwrap();
        let decoded = |s: &StyleSource| s.decoded.clone().unwrap();
        let want = img::ColorStats::mixture(&[
            (stats(&decoded(&styles[0])), 1.0),
            (stats(&decoded(&styles[1])), 3.0),
        ])
        .unwrap();
        let rgb = image::DynamicImage::ImageRgb8(img::net_to_rgb(&start)).into_rgb32f();
        let got = stats(&rgb);
        for c in 0..3 {
            assert!(
                (got.mean[c] - want.mean[c]).abs() < 0.01,
                "{got:?} {want:?}"
            );
            assert!(
                (got.cov[c][c] - want.cov[c][c]).abs() < 0.05 * want.cov[c][c],
                "{got:?} {want:?}"
            );
        }
        // Still the photograph: its horizontal ramp is in every channel's pattern.
        let left: f32 = (0..24).map(|y| start[[1, y, 2]]).sum();
        let right: f32 = (0..24).map(|y| start[[1, y, 29]]).sum();
        assert!(left != right);
    }
}
