//! Named configurations (`--preset`): a preset fills the settings of a [`Job`] before any
//! explicit flag, manifest column or JSON key, which always win.
//!
//! `jcjohnson` maps jcjohnson/neural-style's objective onto ours (DESIGN.md's formulas) so
//! that its users get the look they know. Its losses, in Caffe net space like ours, are
//! `w_c * mean((a - c)^2)` for content, `w_s * mean((F F^T / (C H W) - T)^2)` per style layer,
//! and a TV gradient of `w_tv * (1/2) * sum(dx^2 + dy^2)`; ours are `alpha / (4 C H W) * sum`,
//! `beta * lambda_l / (4 C^2) * sum((F F^T / (H W) - T)^2)` and `gamma / (C H W) * sum`. Hence
//! alpha = 4 w_c, beta lambda_l = 4 w_s / C_l^2, gamma = w_tv C H W / 2.

use crate::error::{Error, Result};
use crate::job::{InitSpec, Job, Optimizer};
use crate::loss::StyleLoss;
use crate::ops::Pool;
use crate::vgg::{layer_index, VGG19_WIDTHS};
use serde::{Deserialize, Serialize};

/// jcjohnson/neural-style's defaults (its `neural_style.lua` options).
const JCJ_CONTENT_WEIGHT: f64 = 5.0;
const JCJ_STYLE_WEIGHT: f64 = 100.0;
const JCJ_TV_WEIGHT: f64 = 1e-3;
const JCJ_SIZE: u32 = 512;
const JCJ_STYLE_LAYERS: [&str; 5] = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"];

/// The seed's loss layers (DESIGN.md): its style layers share the weight equally.
const SEED_CONTENT_LAYERS: &str = "conv4_2";
const SEED_STYLE_LAYERS: &str = "conv1_1,conv2_1,conv3_1,conv4_1,conv5_1";

/// A named starting point for a job's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// The seed's configuration (DESIGN.md): Adam, learning rate 2, 300 steps from a 60 %
    /// noise blend, alpha 10, beta 40, average pooling.
    Seed,
    /// jcjohnson/neural-style's defaults: 1000 L-BFGS iterations with 100 pairs from noise,
    /// max pooling, its content, style and TV weights mapped onto our normalisation.
    Jcjohnson,
    /// This engine's defaults (`Job::default()`).
    Default,
}

/// The settings a preset decides: every key of [`Job`] but the inputs, the output and how the
/// run is carried out (tiles, checkpoints, saving, seed).
pub const SETTINGS: [&str; 20] = [
    "size",
    "scales",
    "scale_iterations",
    "style_scale",
    "iterations",
    "optimizer",
    "history",
    "learning_rate",
    "beta1",
    "beta2",
    "epsilon",
    "content_weight",
    "style_weight",
    "tv_weight",
    "content_layers",
    "style_layers",
    "pool",
    "style_loss",
    "init",
    "init_ratio",
];

impl Preset {
    /// A job with this preset's settings (and no inputs).
    pub fn job(self) -> Job {
        let defaults = Job::default();
        match self {
            Preset::Default => defaults,
            Preset::Seed => Job {
                optimizer: Optimizer::Adam,
                iterations: 300,
                learning_rate: 2.0,
                init: InitSpec::Noise,
                init_ratio: 0.6,
                history: 10,
                content_weight: 10.0,
                style_weight: 40.0,
                tv_weight: 0.0,
                content_layers: SEED_CONTENT_LAYERS.parse().expect("a built-in layer list"),
                style_layers: SEED_STYLE_LAYERS.parse().expect("a built-in layer list"),
                pool: Pool::Avg,
                style_loss: StyleLoss::Gram,
                ..defaults
            },
            Preset::Jcjohnson => {
                let style_layers = JCJ_STYLE_LAYERS
                    .iter()
                    .map(|name| {
                        let block = layer_index(name).map_or(0, crate::vgg::block_of);
                        let c = VGG19_WIDTHS[block] as f64;
                        format!("{name}:{}", 4.0 / (c * c))
                    })
                    .collect::<Vec<_>>()
                    .join(",");
                // Its TV term is not normalised by the image's size; ours is: matched at its
                // default 512 x 512 (a 4:3 picture gets 3/4 of its smoothing).
                let pixels = 3.0 * (JCJ_SIZE as f64).powi(2);
                Job {
                    size: JCJ_SIZE,
                    scales: Vec::new(),
                    scale_iterations: Vec::new(),
                    style_scale: 1.0,
                    optimizer: Optimizer::Lbfgs,
                    iterations: 1000,
                    // optim.lbfgs's default nCorrection (jcjohnson's 0 keeps it).
                    history: 100,
                    learning_rate: 10.0,
                    content_weight: 4.0 * JCJ_CONTENT_WEIGHT,
                    style_weight: JCJ_STYLE_WEIGHT,
                    tv_weight: JCJ_TV_WEIGHT * pixels / 2.0,
                    content_layers: "relu4_2".parse().expect("a built-in layer list"),
                    style_layers: style_layers.parse().expect("a built-in layer list"),
                    pool: Pool::Max,
                    style_loss: StyleLoss::Gram,
                    // Its `random` start is N(0, 0.001^2) in net space: the mean colour.
                    // Ours adds uniform noise of +-20 around it.
                    init: InitSpec::Random,
                    ..defaults
                }
            }
        }
    }

    /// The preset named `name`.
    pub fn named(name: &str) -> Result<Preset> {
        <Preset as clap::ValueEnum>::from_str(name.trim(), true).map_err(|_| {
            Error::Config(format!(
                "unknown preset '{name}' (seed, jcjohnson or default)"
            ))
        })
    }

    /// `job` with this preset's value for every setting not in `given` (the keys set
    /// explicitly: flags, manifest columns, JSON keys).
    pub fn under(self, job: &Job, given: &[&str]) -> Result<Job> {
        let preset = serde_json::to_value(self.job()).map_err(json_err)?;
        let mut merged = serde_json::to_value(job).map_err(json_err)?;
        for key in SETTINGS.iter().filter(|k| !given.contains(k)) {
            merged[*key] = preset[*key].clone();
        }
        serde_json::from_value(merged).map_err(json_err)
    }
}

fn json_err(e: serde_json::Error) -> Error {
    Error::Config(format!("preset: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_is_a_job_key() {
        let keys = serde_json::to_value(Job::default()).unwrap();
        for key in SETTINGS {
            assert!(keys.get(key).is_some(), "{key}");
        }
    }

    #[test]
    fn given_settings_win_and_the_others_come_from_the_preset() {
        let job = Job {
            iterations: 7,
            style_weight: 3.0,
            ..Job::new("c.jpg", ["s.jpg"], "o.png")
        };
        let seed = Preset::Seed.under(&job, &["iterations"]).unwrap();
        assert_eq!(seed.iterations, 7);
        assert_eq!(seed.style_weight, 40.0);
        assert_eq!(seed.optimizer, Optimizer::Adam);
        assert_eq!(seed.init, InitSpec::Noise);
        // Inputs and outputs are never a preset's.
        assert_eq!(seed.content, job.content);
        assert_eq!(seed.output, job.output);
    }

    #[test]
    fn the_seed_preset_optimises_the_seed_objective() {
        let job = Preset::Seed.job();
        assert_eq!(job.loss_config(), crate::loss::LossConfig::default());
        assert_eq!((job.optimizer, job.iterations), (Optimizer::Adam, 300));
    }

    #[test]
    fn jcjohnson_weights_match_its_losses() {
        let job = Preset::Jcjohnson.job();
        let config = job.loss_config();
        assert_eq!(job.pool, Pool::Max);
        assert_eq!((job.iterations, job.history), (1000, 100));
        // Its content loss 5 * mean over C H W is our alpha / (4 C H W) * sum.
        assert_eq!(config.content_weight / 4.0, JCJ_CONTENT_WEIGHT);
        // Its style loss at a layer of C channels, 100 * mean over C^2 of (G/C - T/C)^2, is
        // our beta lambda / (4 C^2) * sum of (G - T)^2.
        for ((name, lambda), c) in config.style_layers.iter().zip([64, 128, 256, 512, 512]) {
            let ours = config.style_weight * lambda / (4.0 * (c * c) as f64);
            let theirs = JCJ_STYLE_WEIGHT / (c as f64).powi(4);
            assert!((ours / theirs - 1.0).abs() < 1e-12, "{name}");
        }
        assert_eq!(
            config.tv_weight / (3.0 * 512.0 * 512.0),
            JCJ_TV_WEIGHT / 2.0
        );
    }

    #[test]
    fn names_parse_and_unknown_ones_are_one_line_errors() {
        assert_eq!(Preset::named("JCJohnson").unwrap(), Preset::Jcjohnson);
        let err = Preset::named("picasso").unwrap_err().to_string();
        assert!(err.contains("picasso") && !err.contains('\n'), "{err}");
    }
}
