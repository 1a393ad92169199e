//! The run loop: initial image, optimiser steps, progress reports.

use crate::error::{Error, Result};
use crate::loss::{Evaluation, Objective};
use crate::optim::Adam;
use crate::profile::Timings;
use ndarray::Array3;
use std::time::Instant;

/// Where the optimisation starts.
#[derive(Debug, Clone)]
pub enum Init {
    /// The seed's start: `ratio * uniform(-20, 20) noise + (1 - ratio) * content`.
    Noise { ratio: f32 },
    /// The content image itself.
    Content,
    /// Uniform noise in [-20, 20] around the mean colour, no content.
    Random,
    /// A given net-space image (must have the content's shape).
    Image(Array3<f32>),
}

impl Default for Init {
    fn default() -> Self {
        Init::Noise { ratio: 0.6 }
    }
}

/// SplitMix64: a tiny seeded generator, so a seed gives the same start on every platform.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_unit(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// The starting image for `init`, given the content image and a seed.
pub fn initial_image(init: &Init, content: &Array3<f32>, seed: u64) -> Result<Array3<f32>> {
    let mut rng = SplitMix64(seed);
    let mut noise = || rng.next_unit() * 40.0 - 20.0;
    Ok(match init {
        Init::Noise { ratio } => {
            if !(0.0..=1.0).contains(ratio) {
                return Err(Error::Config(format!(
                    "noise ratio {ratio} must be in [0, 1]"
                )));
            }
            content.mapv(|c| ratio * noise() + (1.0 - ratio) * c)
        }
        Init::Content => content.clone(),
        Init::Random => content.mapv(|_| noise()),
        Init::Image(img) => {
            if img.shape() != content.shape() {
                return Err(Error::Shape(format!(
                    "initial image has shape {:?}, the content {:?}",
                    img.shape(),
                    content.shape()
                )));
            }
            img.clone()
        }
    })
}

/// What a progress callback sees after each step.
pub struct Step<'a> {
    /// 1-based step number.
    pub iteration: usize,
    pub iterations: usize,
    /// The objective at the image *before* this step's update.
    pub eval: &'a Evaluation<f32>,
    /// The image after the update.
    pub image: &'a Array3<f32>,
    /// Seconds since the run started.
    pub elapsed: f64,
}

/// Runs `iterations` Adam steps from `x`, calling `on_step` after each; returns the final image.
/// A callback error stops the run and is returned. With `timings`, every phase is profiled.
pub fn run_adam(
    objective: &Objective<f32>,
    mut x: Array3<f32>,
    adam: &mut Adam<f32>,
    iterations: usize,
    timings: &mut Option<Timings>,
    mut on_step: impl FnMut(&Step) -> Result<()>,
) -> Result<Array3<f32>> {
    let start = Instant::now();
    for iteration in 1..=iterations {
        let eval = objective.evaluate_timed(&x, timings)?;
        let xs = x
            .as_slice_mut()
            .ok_or_else(|| Error::Shape("image is not contiguous".into()))?;
        let gs = eval
            .grad
            .as_slice()
            .ok_or_else(|| Error::Shape("gradient is not contiguous".into()))?;
        crate::vgg::timed(timings, "adam", || adam.step(xs, gs));
        on_step(&Step {
            iteration,
            iterations,
            eval: &eval,
            image: &x,
            elapsed: start.elapsed().as_secs_f64(),
        })?;
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_init_is_seeded_and_blends_with_the_content() {
        let content = Array3::from_elem((3, 4, 5), 100.0f32);
        let a = initial_image(&Init::default(), &content, 7).unwrap();
        let b = initial_image(&Init::default(), &content, 7).unwrap();
        let c = initial_image(&Init::default(), &content, 8).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        // 0.4 * 100 + 0.6 * [-20, 20] lies in [28, 52].
        assert!(a.iter().all(|&v| (28.0..=52.0).contains(&v)));
        assert!(initial_image(&Init::Noise { ratio: 1.5 }, &content, 0).is_err());
    }
}
