//! Running a [`Job`]: the whole painting (stages of a multi-scale run, the start image, style
//! resizing and cached style targets, the optimiser loop, intermediate and final images with
//! original colours and bit depth) in one call, so that the CLI, a batch and an embedding
//! program all paint the same way.

use crate::error::{Error, Result};
use crate::image as img;
use crate::job::{InitSpec, Job, Optimizer};
use crate::loss::{Objective, StyleGrams};
use crate::optim::{Adam, Lbfgs, Stop};
use crate::profile::Timings;
use crate::progress::Record;
use crate::style_cache::{Origin, StyleCache, StyleKey};
use crate::transfer::{initial_image, run_adam, run_lbfgs, Init, Step};
use crate::vgg::Vgg19;
use ndarray::Array3;
use std::path::{Path, PathBuf};
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
    /// The optimised image, net space, before original colours are applied.
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
    decoded: Option<image::Rgb32FImage>,
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
        let t0 = Instant::now();
        let content_image = img::decode(&job.content)?;
        let mut styles = job
            .styles
            .iter()
            .map(|p| {
                Ok(StyleSource {
                    path: p.clone(),
                    bytes: std::fs::read(p).map_err(|e| Error::io(p, e))?,
                    decoded: None,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let style_layers = config.style_indices()?;
        let blend = job.blend();
        let sizes = job.stage_sizes();
        let mut records = Vec::new();
        let mut evaluations = 0;
        let mut style_seconds = 0.0;
        let mut early_stop = None;
        let mut x: Option<Array3<f32>> = None;
        let mut content = Array3::zeros((3, 1, 1));

        for (stage, &size) in sizes.iter().enumerate() {
            content = img::rgb32f_to_net(&img::resize_long_side(&content_image, size));
            let (h, w) = (content.dim().1, content.dim().2);
            let side = job.style_side(size)?;
            let ts = Instant::now();
            let grams = styles
                .iter_mut()
                .map(|s| self.style_grams(s, side, &style_layers, job, &mut on_event))
                .collect::<Result<Vec<_>>>()?;
            style_seconds += ts.elapsed().as_secs_f64();
            let blended: Vec<(&StyleGrams<f32>, f32)> = grams
                .iter()
                .map(|g| &**g)
                .zip(blend.iter().copied())
                .collect();
            let objective = Objective::with_style_grams(self.vgg, &content, &blended, &config)?;
            let start = match x.take() {
                Some(prev) => img::resize_net(&prev, w as u32, h as u32),
                None => initial_image(&self.init(job, w, h)?, &content, job.seed)?,
            };
            on_event(&Event::Stage {
                stage: stage + 1,
                stages: sizes.len(),
                width: w,
                height: h,
                iterations: job.iterations,
            })?;
            let last_stage = stage + 1 == sizes.len();
            let stage_records = &mut records;
            let content_ref = &content;
            let on_step = |s: &Step| -> Result<()> {
                let record = Record::new(stage + 1, size, s);
                stage_records.push(record);
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
                Ok(())
            };
            let (image, stage_evaluations) = match job.optimizer {
                Optimizer::Adam => {
                    let mut adam = Adam::new(job.learning_rate, job.beta1, job.beta2, job.epsilon)?;
                    let x = run_adam(
                        &objective,
                        start,
                        &mut adam,
                        job.iterations,
                        timings,
                        on_step,
                    )?;
                    (x, job.iterations)
                }
                Optimizer::Lbfgs => {
                    let lbfgs = Lbfgs {
                        history: job.history,
                        ..Lbfgs::default()
                    };
                    let (x, report) =
                        run_lbfgs(&objective, start, &lbfgs, job.iterations, timings, on_step)?;
                    early_stop = (report.stop != Stop::MaxIterations).then_some(report.stop);
                    (x, report.evaluations)
                }
            };
            evaluations += stage_evaluations;
            x = Some(image);
        }
        let image = x.ok_or_else(|| Error::Config("no stage ran".into()))?;
        save(job, &image, &content, &job.output)?;
        Ok(Painting {
            image,
            records,
            evaluations,
            seconds: t0.elapsed().as_secs_f64(),
            style_seconds,
            early_stop,
        })
    }

    fn init(&self, job: &Job, w: usize, h: usize) -> Result<Init> {
        Ok(match &job.init {
            InitSpec::Noise => Init::Noise {
                ratio: job.init_ratio,
            },
            InitSpec::Content => Init::Content,
            InitSpec::Random => Init::Random,
            InitSpec::File(path) => Init::Image(img::load_net_exact(path, w as u32, h as u32)?),
        })
    }

    /// One style image's targets at `side`, through the cache.
    fn style_grams(
        &self,
        source: &mut StyleSource,
        side: u32,
        layers: &[usize],
        job: &Job,
        on_event: &mut impl FnMut(&Event) -> Result<()>,
    ) -> Result<std::sync::Arc<StyleGrams<f32>>> {
        let key = StyleKey::new(
            &source.bytes,
            side,
            layers,
            job.pool,
            self.vgg.fingerprint(),
        );
        let lookup = self.styles.get_or_compute(key, || {
            if source.decoded.is_none() {
                source.decoded = Some(img::decode_bytes(&source.path, &source.bytes)?);
            }
            let decoded = source.decoded.as_ref().expect("decoded just above");
            let net = img::rgb32f_to_net(&img::resize_long_side(decoded, side));
            StyleGrams::compute(self.vgg, &net, layers, job.pool).map_err(|e| match e {
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

/// Writes an image with the job's output options (original colours, bit depth).
fn save(job: &Job, x: &Array3<f32>, content: &Array3<f32>, path: &Path) -> Result<()> {
    let recoloured;
    let x = if job.original_colors {
        recoloured = img::original_colors(x, content)?;
        &recoloured
    } else {
        x
    };
    img::save_net_with_depth(x, path, job.output_depth == 16)
}
