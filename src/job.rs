//! A `Job`: every setting of one painting, as one serialisable value. The CLI turns its flags
//! into a `Job`, a batch row is a `Job`, and a checkpoint header will be one; [`crate::Painter`]
//! runs it. Field names are the CLI's long options with `_` for `-`, so a manifest column, a
//! JSON key and a flag are one vocabulary; messages name the flag.

use crate::error::{Error, Result};
use crate::image::OutputFormat;
use crate::loss::{LossConfig, StyleLoss};
use crate::ops::Pool;
use crate::optim::{Adam, Lbfgs};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;

/// Smallest and largest long side of a painting or a style image.
pub const MIN_SIDE: u32 = 16;
pub const MAX_SIDE: u32 = 16384;

/// The optimiser that updates the pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Optimizer {
    /// The seed's: Adam with `learning_rate`, `beta1`, `beta2`, `epsilon`.
    Adam,
    /// L-BFGS with `history` pairs (as in jcjohnson/neural-style).
    #[default]
    Lbfgs,
}

/// How a painting keeps the photograph's colours (Gatys et al. 2016, "Preserving Color in
/// Neural Artistic Style Transfer"). Serialised as `off`, `luminance` or `histogram`; `true` and
/// `false` (what older versions wrote, e.g. in checkpoint headers), `yes`/`no` and `1`/`0` are
/// read too, so old jobs, manifests and checkpoints still load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OriginalColors {
    /// The painting takes the style's colours.
    #[default]
    Off,
    /// After painting: the painting's luminance with the photograph's chroma (a per-pixel swap,
    /// so the strokes keep their shading but none of the style's hues).
    Luminance,
    /// Before painting: every style image's colours are mapped to the photograph's mean and
    /// covariance ([`crate::image::match_colors`]), so the style's textures are painted in the
    /// photograph's palette; nothing is swapped afterwards.
    Histogram,
}

impl std::str::FromStr for OriginalColors {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" | "false" | "no" | "0" => Ok(OriginalColors::Off),
            "luminance" | "true" | "yes" | "1" => Ok(OriginalColors::Luminance),
            "histogram" => Ok(OriginalColors::Histogram),
            _ => Err(format!(
                "'{s}' is not a colour method (off, luminance or histogram)"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for OriginalColors {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = OriginalColors;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("off, luminance or histogram (or true / false)")
            }

            fn visit_bool<E: serde::de::Error>(
                self,
                v: bool,
            ) -> std::result::Result<Self::Value, E> {
                Ok(if v {
                    OriginalColors::Luminance
                } else {
                    OriginalColors::Off
                })
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<Self::Value, E> {
                match v {
                    0 => Ok(OriginalColors::Off),
                    1 => Ok(OriginalColors::Luminance),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Unsigned(v), &self)),
                }
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<Self::Value, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::invalid_value(serde::de::Unexpected::Signed(v), &self)),
                }
            }

            fn visit_str<E: serde::de::Error>(
                self,
                v: &str,
            ) -> std::result::Result<Self::Value, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Where the optimisation starts. Serialised as one string: `content`, `noise`, `random`,
/// `recolored`, or the path of an image file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(into = "String", from = "String")]
pub enum InitSpec {
    /// The content image itself.
    #[default]
    Content,
    /// `init_ratio` of uniform noise in [-20, 20] blended with the content (the seed's start).
    Noise,
    /// Uniform noise in [-20, 20] around the mean colour, no content.
    Random,
    /// The photograph with the styles' colour mean and covariance (their blend's mixture): the
    /// colour transfer is done before the first step, so the steps go to texture. With
    /// `original_colors: histogram` the styles take the photograph's colours instead, and this
    /// starts from the photograph.
    Recolored,
    /// An image file, resized to the first stage's size.
    File(PathBuf),
}

impl From<String> for InitSpec {
    fn from(s: String) -> Self {
        match s.as_str() {
            "content" => InitSpec::Content,
            "noise" => InitSpec::Noise,
            "random" => InitSpec::Random,
            "recolored" => InitSpec::Recolored,
            _ => InitSpec::File(s.into()),
        }
    }
}

impl From<InitSpec> for String {
    fn from(i: InitSpec) -> Self {
        match i {
            InitSpec::Content => "content".into(),
            InitSpec::Noise => "noise".into(),
            InitSpec::Random => "random".into(),
            InitSpec::Recolored => "recolored".into(),
            InitSpec::File(p) => p.to_string_lossy().into_owned(),
        }
    }
}

/// Where one style image paints (`--style-mask`): a greyscale file (white: this style here,
/// grey: blended with the others), or everywhere. Serialised as the path, or `none`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(into = "String", from = "String")]
pub enum StyleMask {
    /// The style paints the whole image.
    #[default]
    Everywhere,
    /// The style paints where this greyscale image is white.
    File(PathBuf),
}

impl From<String> for StyleMask {
    fn from(s: String) -> Self {
        match s.as_str() {
            "none" => StyleMask::Everywhere,
            _ => StyleMask::File(s.into()),
        }
    }
}

impl From<StyleMask> for String {
    fn from(m: StyleMask) -> Self {
        match m {
            StyleMask::Everywhere => "none".into(),
            StyleMask::File(p) => p.to_string_lossy().into_owned(),
        }
    }
}

impl StyleMask {
    /// The mask file, if any.
    pub fn file(&self) -> Option<&PathBuf> {
        match self {
            StyleMask::Everywhere => None,
            StyleMask::File(p) => Some(p),
        }
    }
}

/// One loss layer and its weight; `None` takes the default (1 for content layers, equal
/// shares summing to 1 for style layers).
#[derive(Debug, Clone, PartialEq)]
pub struct LayerSpec {
    pub name: String,
    pub weight: Option<f64>,
}

/// A list of loss layers, written `NAME[:WEIGHT],...` (e.g. `conv1_1:0.5,conv2_1`) wherever a
/// person types it: flags, manifests, JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Layers(pub Vec<LayerSpec>);

impl Layers {
    /// The layers with their weights resolved: an omitted weight is `default_weight(count)`.
    pub fn resolved(&self, default_weight: fn(usize) -> f64) -> Vec<(String, f64)> {
        let n = self.0.len();
        self.0
            .iter()
            .map(|l| {
                (
                    l.name.clone(),
                    l.weight.unwrap_or_else(|| default_weight(n)),
                )
            })
            .collect()
    }
}

impl std::str::FromStr for Layers {
    type Err = String;

    fn from_str(spec: &str) -> std::result::Result<Self, String> {
        let layers = spec
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|item| match item.split_once(':') {
                None => Ok(LayerSpec {
                    name: item.into(),
                    weight: None,
                }),
                Some((name, w)) => w
                    .trim()
                    .parse::<f64>()
                    .map(|w| LayerSpec {
                        name: name.trim().into(),
                        weight: Some(w),
                    })
                    .map_err(|_| format!("bad weight in '{item}'")),
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Layers(layers))
    }
}

impl TryFrom<String> for Layers {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        s.parse()
    }
}

impl fmt::Display for Layers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, l) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(&l.name)?;
            if let Some(w) = l.weight {
                write!(f, ":{w}")?;
            }
        }
        Ok(())
    }
}

impl From<Layers> for String {
    fn from(l: Layers) -> Self {
        l.to_string()
    }
}

fn layers(spec: &str) -> Layers {
    spec.parse().expect("a built-in layer list parses")
}

/// Every setting of one painting. `Job::default()` holds the defaults (the CLI's); a JSON
/// object may leave out any field but `content`, `styles` and `output`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Job {
    /// The photograph.
    pub content: PathBuf,
    /// One or more style images.
    pub styles: Vec<PathBuf>,
    /// Blend weights of `styles` (normalised to sum to 1); `None`: equal.
    pub style_blend: Option<Vec<f32>>,
    /// Where each style paints, one per style in order (empty: every style everywhere). A
    /// masked style's statistics are taken over its mask (Gatys et al. 2017).
    pub style_masks: Vec<StyleMask>,
    /// A greyscale image of where to keep the photograph closer (white: keep).
    pub content_mask: Option<PathBuf>,
    /// How many times the content loss counts where `content_mask` is white (1: no change).
    pub content_mask_weight: f64,
    /// The painting (`.png`, `.jpg`, `.jpeg`), written atomically.
    pub output: PathBuf,
    /// Bits per channel of the output: 8, or 16 (PNG only).
    pub output_depth: u8,
    /// Long side of the output in pixels.
    pub size: u32,
    /// Long sides of coarser stages run first, increasing, each below `size`.
    pub scales: Vec<u32>,
    /// Style images are resized to this fraction of each stage's long side.
    pub style_scale: f64,
    /// Optimiser steps of the last stage (and of every stage unless `scale_iterations`).
    pub iterations: usize,
    /// Optimiser steps of each coarser stage of `scales`, one per scale (empty: `iterations`
    /// each): many cheap coarse steps, few costly fine ones.
    pub scale_iterations: Vec<usize>,
    pub optimizer: Optimizer,
    /// L-BFGS correction pairs kept.
    pub history: usize,
    /// Adam settings, in net-space pixel units.
    pub learning_rate: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    /// alpha, beta, gamma of DESIGN.md.
    pub content_weight: f64,
    pub style_weight: f64,
    pub tv_weight: f64,
    pub content_layers: Layers,
    pub style_layers: Layers,
    pub pool: Pool,
    /// How the style statistics are compared: Gram matrices or mean + covariance (W2).
    pub style_loss: StyleLoss,
    pub init: InitSpec,
    /// Share of noise in the `noise` start image.
    pub init_ratio: f32,
    /// Keep the photograph's colours, and how.
    pub original_colors: OriginalColors,
    /// Seed of the start noise.
    pub seed: u64,
    /// Also write the image every N steps of the last stage as `OUTPUT_STEM-<step>.EXT`
    /// (0: never).
    pub save_every: usize,
    /// Evaluate in tiles owning this many pixels a side (a multiple of 16): the same
    /// objective up to rounding in memory bounded by the tile. `None`: tiles only when the
    /// whole image does not fit the memory budget, as large as fit.
    pub tile: Option<usize>,
}

/// The default style layers' weights. With these VGG weights and DESIGN.md's normalisation, a
/// photograph's style term is about 100 times larger at conv4_1 than at conv2_1 or conv3_1 and
/// 10^4 times larger than at conv1_1 or conv5_1, so equal weights optimise conv4_1 alone.
/// These make every layer start near conv4_1's share of 1/5 (the geometric mean over the
/// quality pairs, docs/quality-pairs.md), so fine and coarse texture are painted too; conv5_1
/// then gets a tenth of that share, since its full share painted the painting's objects (waves,
/// buildings) into the photograph, and the pairs score better on both numbers without it.
pub const DEFAULT_STYLE_LAYERS: &str = "conv1_1:450,conv2_1:9,conv3_1:14,conv4_1:0.2,conv5_1:950";

impl Default for Job {
    fn default() -> Self {
        Job {
            content: PathBuf::new(),
            styles: Vec::new(),
            style_blend: None,
            style_masks: Vec::new(),
            content_mask: None,
            content_mask_weight: 5.0,
            output: PathBuf::new(),
            output_depth: 8,
            size: 512,
            scales: Vec::new(),
            style_scale: 1.0,
            iterations: 100,
            scale_iterations: Vec::new(),
            optimizer: Optimizer::Lbfgs,
            history: 10,
            learning_rate: 2.0,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            content_weight: 30_000.0,
            style_weight: 40.0,
            tv_weight: 0.0,
            content_layers: layers("conv4_2"),
            style_layers: layers(DEFAULT_STYLE_LAYERS),
            pool: Pool::Avg,
            style_loss: StyleLoss::Gram,
            init: InitSpec::Recolored,
            init_ratio: 0.6,
            original_colors: OriginalColors::Off,
            seed: 0,
            save_every: 0,
            tile: None,
        }
    }
}

fn config_err(msg: impl Into<String>) -> Error {
    Error::Config(msg.into())
}

impl Job {
    /// A job with the defaults for one content, one or more styles and an output.
    pub fn new(
        content: impl Into<PathBuf>,
        styles: impl IntoIterator<Item = impl Into<PathBuf>>,
        output: impl Into<PathBuf>,
    ) -> Self {
        Job {
            content: content.into(),
            styles: styles.into_iter().map(Into::into).collect(),
            output: output.into(),
            ..Job::default()
        }
    }

    /// The loss configuration (layers resolved to weights).
    pub fn loss_config(&self) -> LossConfig {
        LossConfig {
            content_layers: self.content_layers.resolved(|_| 1.0),
            style_layers: self.style_layers.resolved(|n| 1.0 / n as f64),
            content_weight: self.content_weight,
            style_weight: self.style_weight,
            tv_weight: self.tv_weight,
            pool: self.pool,
            style_loss: self.style_loss,
        }
    }

    /// Optimiser steps of stage `stage` (0-based, coarse to fine).
    pub fn iterations_at(&self, stage: usize) -> usize {
        self.scale_iterations
            .get(stage)
            .copied()
            .unwrap_or(self.iterations)
    }

    /// The long sides of the stages, coarse to fine, ending at `size`.
    pub fn stage_sizes(&self) -> Vec<u32> {
        self.scales.iter().copied().chain([self.size]).collect()
    }

    /// The long side of the style images at a stage of long side `stage_size`.
    pub fn style_side(&self, stage_size: u32) -> Result<u32> {
        let side = (stage_size as f64 * self.style_scale).round();
        if !(self.style_scale.is_finite()
            && self.style_scale > 0.0
            && (MIN_SIDE as f64..=MAX_SIDE as f64).contains(&side))
        {
            return Err(config_err(format!(
                "--style-scale {} gives a {side}-pixel style image; it must be {MIN_SIDE}..{MAX_SIDE}",
                self.style_scale
            )));
        }
        Ok(side as u32)
    }

    /// The style blend weights, one per style image (equal when not given).
    pub fn blend(&self) -> Vec<f32> {
        self.style_blend
            .clone()
            .unwrap_or_else(|| vec![1.0; self.styles.len()])
    }

    /// Checks every setting without touching a file: ranges, counts, layer names, the output's
    /// extension against its depth. The first problem is returned, naming its flag.
    pub fn validate(&self) -> Result<()> {
        if self.content.as_os_str().is_empty() {
            return Err(config_err("no content image (--content)"));
        }
        if self.styles.is_empty() {
            return Err(config_err("no style image (--style)"));
        }
        if self.output.as_os_str().is_empty() {
            return Err(config_err("no output file (--output)"));
        }
        self.validate_paths()?;
        let format = OutputFormat::from_path(&self.output)?;
        match self.output_depth {
            8 => {}
            16 if format == OutputFormat::Png => {}
            16 => return Err(config_err("--output-depth 16 needs a .png output")),
            d => return Err(config_err(format!("--output-depth {d} must be 8 or 16"))),
        }
        if let Some(blend) = &self.style_blend {
            if blend.len() != self.styles.len() {
                return Err(config_err(format!(
                    "--style-blend has {} weights for {} style images",
                    blend.len(),
                    self.styles.len()
                )));
            }
            if blend.iter().any(|b| !b.is_finite() || *b < 0.0) || blend.iter().sum::<f32>() <= 0.0
            {
                return Err(config_err(
                    "--style-blend weights must be >= 0 with a positive sum",
                ));
            }
        }
        if !self.style_masks.is_empty() && self.style_masks.len() != self.styles.len() {
            return Err(config_err(format!(
                "--style-mask is given {} times for {} style images (one per --style, 'none' for everywhere)",
                self.style_masks.len(),
                self.styles.len()
            )));
        }
        if !(self.content_mask_weight.is_finite() && self.content_mask_weight >= 0.0) {
            return Err(config_err(format!(
                "--content-mask-weight {} must be finite and >= 0",
                self.content_mask_weight
            )));
        }
        if !(MIN_SIDE..=MAX_SIDE).contains(&self.size) {
            return Err(config_err(format!(
                "--size {} must be {MIN_SIDE}..{MAX_SIDE}",
                self.size
            )));
        }
        if !self.scale_iterations.is_empty() && self.scale_iterations.len() != self.scales.len() {
            return Err(config_err(format!(
                "--scale-iterations has {} counts for {} --scales",
                self.scale_iterations.len(),
                self.scales.len()
            )));
        }
        let mut previous = 0;
        for &s in &self.scales {
            if s < MIN_SIDE || s >= self.size || s <= previous {
                return Err(config_err(format!(
                    "--scales must increase, each between {MIN_SIDE} and --size ({}), got {s}",
                    self.size
                )));
            }
            previous = s;
        }
        for size in self.stage_sizes() {
            self.style_side(size)?;
        }
        match self.optimizer {
            Optimizer::Lbfgs => Lbfgs {
                history: self.history,
                ..Lbfgs::default()
            }
            .validate()?,
            Optimizer::Adam => {
                Adam::<f32>::new(self.learning_rate, self.beta1, self.beta2, self.epsilon)?;
            }
        }
        if self.content_layers.0.is_empty() {
            return Err(config_err("--content-layers is empty"));
        }
        if self.style_layers.0.is_empty() {
            return Err(config_err("--style-layers is empty"));
        }
        self.loss_config().validate()?;
        if !(0.0..=1.0).contains(&self.init_ratio) {
            return Err(config_err(format!(
                "--init-ratio {} must be in [0, 1]",
                self.init_ratio
            )));
        }
        if let Some(side) = self.tile {
            let align = crate::tiling::alignment(self.loss_config().depth()?);
            if side == 0 || !side.is_multiple_of(align) {
                return Err(config_err(format!(
                    "--tile {side} must be a positive multiple of {align}"
                )));
            }
        }
        Ok(())
    }

    /// The names of the settings in which `other` differs from this job, leaving out those
    /// that cannot change the painted pixels (`output`, `output_depth`, `save_every`), and `tile`,
    /// which changes them only by rounding (a resumed stage keeps the checkpoint's tiles), and
    /// `content_mask_weight` when neither job has a content mask (it weighs nothing then).
    pub fn differences(&self, other: &Job) -> Vec<String> {
        let unmasked = self.content_mask.is_none() && other.content_mask.is_none();
        let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
            (serde_json::to_value(self), serde_json::to_value(other))
        else {
            unreachable!("a job serialises to an object")
        };
        let ignored = |k: &str| {
            matches!(k, "output" | "output_depth" | "save_every" | "tile")
                || (unmasked && k == "content_mask_weight")
        };
        a.iter()
            .filter(|(k, v)| !ignored(k) && b.get(k.as_str()) != Some(v))
            .map(|(k, _)| k.replace('_', "-"))
            .collect()
    }

    /// Refuses file names that are not UTF-8: a job is written as JSON (results,
    /// checkpoints), which holds only text.
    pub fn validate_paths(&self) -> Result<()> {
        let init = match &self.init {
            InitSpec::File(p) => Some(p),
            _ => None,
        };
        let paths = [&self.content, &self.output]
            .into_iter()
            .chain(&self.styles)
            .chain(self.mask_files());
        match paths.chain(init).find(|p| p.to_str().is_none()) {
            Some(p) => Err(config_err(format!(
                "{}: file names must be valid UTF-8",
                p.display()
            ))),
            None => Ok(()),
        }
    }

    /// The mask files the job reads: the styles' in order, then the content's.
    pub fn mask_files(&self) -> impl Iterator<Item = &PathBuf> {
        self.style_masks
            .iter()
            .filter_map(StyleMask::file)
            .chain(&self.content_mask)
    }

    /// Parses a JSON object into a job (unknown keys are errors) and validates it.
    pub fn from_json(text: &str) -> Result<Self> {
        let job: Job = serde_json::from_str(text).map_err(|e| config_err(format!("job: {e}")))?;
        job.validate()?;
        Ok(job)
    }

    /// The job as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a job serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        Job::new("c.jpg", ["s.jpg"], "out.png")
    }

    #[test]
    fn defaults_validate_and_keep_the_seed_layers_anchored_at_conv4_1() {
        job().validate().unwrap();
        let (ours, seed) = (job().loss_config(), LossConfig::default());
        assert_eq!(ours.content_layers, seed.content_layers);
        let names = |c: &LossConfig| {
            c.style_layers
                .iter()
                .map(|l| l.0.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&ours), names(&seed));
        // The other layers' weights are relative to conv4_1's seed share.
        assert_eq!(ours.style_layers[3], seed.style_layers[3]);
        assert_eq!(job().init, InitSpec::Recolored);
        for spec in ["recolored", "content", "noise", "random", "start.png"] {
            assert_eq!(String::from(InitSpec::from(spec.to_string())), spec);
        }
    }

    #[test]
    fn json_round_trips_every_field() {
        let mut j = job();
        j.styles.push("t.png".into());
        j.style_blend = Some(vec![0.7, 0.3]);
        j.scales = vec![128, 256];
        j.optimizer = Optimizer::Adam;
        j.init = InitSpec::File("start.png".into());
        j.style_layers = "conv1_1:0.5,relu2_1".parse().unwrap();
        j.pool = Pool::Max;
        j.learning_rate = 0.1 + 0.2; // not a short decimal
        j.style_masks = vec![StyleMask::File("sky.png".into()), StyleMask::Everywhere];
        j.content_mask = Some("face.png".into());
        j.content_mask_weight = 3.0;
        let text = j.to_json();
        assert!(
            text.contains("\"style_masks\":[\"sky.png\",\"none\"]"),
            "{text}"
        );
        assert!(
            text.contains("\"style_layers\":\"conv1_1:0.5,relu2_1\""),
            "{text}"
        );
        assert!(text.contains("\"init\":\"start.png\""), "{text}");
        assert_eq!(Job::from_json(&text).unwrap(), j);
    }

    #[test]
    fn json_may_omit_defaults_but_not_invent_fields() {
        let j = Job::from_json(r#"{"content":"c.jpg","styles":["s.jpg"],"output":"out.png"}"#);
        assert_eq!(j.unwrap(), job());
        let e = Job::from_json(r#"{"content":"c","styles":["s"],"output":"o.png","sise":3}"#);
        assert!(matches!(e, Err(Error::Config(m)) if m.contains("sise")));
    }

    #[test]
    fn original_colors_read_the_old_booleans_and_the_new_names() {
        let with = |v: &str| {
            Job::from_json(&format!(
                r#"{{"content":"c.jpg","styles":["s.jpg"],"output":"out.png","original_colors":{v}}}"#
            ))
            .map(|j| j.original_colors)
        };
        // What older versions wrote (jobs, manifests, checkpoint headers).
        assert_eq!(with("true").unwrap(), OriginalColors::Luminance);
        assert_eq!(with("false").unwrap(), OriginalColors::Off);
        for (name, mode) in [
            ("off", OriginalColors::Off),
            ("luminance", OriginalColors::Luminance),
            ("histogram", OriginalColors::Histogram),
        ] {
            assert_eq!(with(&format!("\"{name}\"")).unwrap(), mode);
            let mut j = job();
            j.original_colors = mode;
            assert!(j
                .to_json()
                .contains(&format!("\"original_colors\":\"{name}\"")));
            assert_eq!(Job::from_json(&j.to_json()).unwrap(), j);
        }
        assert_eq!(with("1").unwrap(), OriginalColors::Luminance);
        for bad in ["\"sepia\"", "2", "-1", "null", "[]"] {
            let e = with(bad).unwrap_err().to_string();
            assert!(
                e.contains("original_colors") || e.contains("histogram"),
                "{bad}: {e}"
            );
        }
        assert!("sepia"
            .parse::<OriginalColors>()
            .unwrap_err()
            .contains("histogram"));
    }

    #[test]
    fn differences_name_a_changed_colour_method() {
        let mut a = job();
        a.original_colors = OriginalColors::Histogram;
        let mut b = a.clone();
        assert!(a.differences(&b).is_empty());
        b.original_colors = OriginalColors::Luminance;
        assert_eq!(a.differences(&b), ["original-colors"]);
        // An old job's `true` is luminance, not a difference from it.
        let old: Job = serde_json::from_str(
            r#"{"content":"c.jpg","styles":["s.jpg"],"output":"out.png","original_colors":true}"#,
        )
        .unwrap();
        assert!(b.differences(&old).is_empty());
    }

    #[test]
    fn a_content_mask_weight_without_a_mask_is_no_difference() {
        let a = job();
        let mut b = a.clone();
        b.content_mask_weight = 9.0;
        assert!(a.differences(&b).is_empty());
        b.content_mask = Some("m.png".into());
        assert_eq!(a.differences(&b), ["content-mask", "content-mask-weight"]);
        let mut c = b.clone();
        c.content_mask_weight = 2.0;
        assert_eq!(b.differences(&c), ["content-mask-weight"]);
    }

    #[test]
    fn paths_that_json_cannot_hold_are_refused() {
        use std::os::unix::ffi::OsStrExt;
        let mut j = job();
        j.styles
            .push(std::ffi::OsStr::from_bytes(b"bad\xff.jpg").into());
        assert!(j.validate().unwrap_err().to_string().contains("UTF-8"));
    }

    #[test]
    fn omitted_layer_weights_take_the_defaults() {
        let mut j = job();
        j.style_layers = "conv1_1,conv2_1:3,conv3_1".parse().unwrap();
        j.content_layers = "conv4_2,conv5_2".parse().unwrap();
        let c = j.loss_config();
        let w: Vec<f64> = c.style_layers.iter().map(|l| l.1).collect();
        assert_eq!(w, [1.0 / 3.0, 3.0, 1.0 / 3.0]);
        assert!(c.content_layers.iter().all(|l| l.1 == 1.0));
        assert!("conv1_1:x".parse::<Layers>().is_err());
    }

    #[test]
    fn validation_names_the_setting_at_fault() {
        type Change = Box<dyn Fn(&mut Job)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|j| j.styles.clear()), "--style"),
            (
                Box::new(|j| j.style_blend = Some(vec![1.0, 2.0])),
                "--style-blend",
            ),
            (
                Box::new(|j| j.style_blend = Some(vec![0.0])),
                "--style-blend",
            ),
            (Box::new(|j| j.size = 8), "--size"),
            (Box::new(|j| j.scales = vec![256, 128]), "--scales"),
            (Box::new(|j| j.scales = vec![512]), "--scales"),
            (Box::new(|j| j.style_scale = 0.0), "--style-scale"),
            (Box::new(|j| j.history = 0), "history"),
            (
                Box::new(|j| {
                    j.optimizer = Optimizer::Adam;
                    j.beta1 = 1.0
                }),
                "beta1",
            ),
            (Box::new(|j| j.output = "o.jpg".into()), ""),
            (
                Box::new(|j| {
                    j.output = "o.jpg".into();
                    j.output_depth = 16
                }),
                "--output-depth",
            ),
            (Box::new(|j| j.output = "o.gif".into()), "o.gif"),
            (
                Box::new(|j| j.style_layers = "conv9_9".parse().unwrap()),
                "conv9_9",
            ),
            (Box::new(|j| j.content_weight = -1.0), "content weight"),
            (Box::new(|j| j.init_ratio = 2.0), "--init-ratio"),
            (
                Box::new(|j| j.style_masks = vec![StyleMask::Everywhere; 2]),
                "--style-mask",
            ),
            (
                Box::new(|j| j.content_mask_weight = f64::NAN),
                "--content-mask-weight",
            ),
        ];
        for (change, culprit) in cases {
            let mut j = job();
            change(&mut j);
            match j.validate() {
                Ok(()) => assert!(culprit.is_empty(), "{j:?} should fail naming {culprit}"),
                Err(e) => assert!(
                    e.to_string().contains(culprit),
                    "{e} does not name {culprit}"
                ),
            }
        }
    }
}
