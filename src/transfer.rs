//! The run loops: initial image, optimiser steps (Adam or L-BFGS), progress reports.

use crate::error::{Error, Result};
use crate::loss::{Evaluation, Objective};
use crate::optim::{Adam, Iterate, Lbfgs, LbfgsState, Report};
use crate::profile::Timings;
use ndarray::{Array3, ArrayView3};
use std::cell::RefCell;
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

/// What a progress callback sees after each step (an Adam step, or an L-BFGS iteration).
pub struct Step<'a> {
    /// 1-based step number.
    pub iteration: usize,
    pub iterations: usize,
    /// Adam: the objective at the image *before* this step's update (Adam evaluates, then
    /// steps). L-BFGS: the objective at the image *after* the update (its line search
    /// evaluated it).
    pub eval: &'a Evaluation<f32>,
    /// The image after the update.
    pub image: &'a Array3<f32>,
    /// Objective evaluations (forward + backward passes) so far: one per step for Adam;
    /// for L-BFGS, the first evaluation plus every line-search trial.
    pub evaluations: usize,
    /// Seconds since the run started.
    pub elapsed: f64,
    /// The optimiser's state after this step (with `image`, what a checkpoint keeps).
    pub optimizer: OptimizerState<'a>,
}

/// The optimiser's whole state between two steps.
#[derive(Clone, Copy)]
pub enum OptimizerState<'a> {
    Adam(&'a Adam<f32>),
    Lbfgs(&'a LbfgsState<f32>),
}

/// Runs `f` on a rayon worker. A run's parallel loops then start from inside the pool: called
/// from another thread, each would be queued on the pool's injector, whose queue allocates a
/// block every few dozen jobs, and a steady run would not be allocation-free.
fn on_worker<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        f()
    } else {
        rayon::scope(|_| f())
    }
}

/// Runs Adam from `x` until `adam` has taken `iterations` steps (all of them for a fresh one;
/// the rest for one put back with [`Adam::restore`]), calling `on_step` after each; returns the
/// final image. A callback error stops the run and is returned. With `timings`, every phase is
/// profiled. The run executes on a rayon worker thread (so does `on_step`); after the first
/// step it allocates nothing.
pub fn run_adam(
    objective: &Objective<f32>,
    x: Array3<f32>,
    adam: &mut Adam<f32>,
    iterations: usize,
    timings: &mut Option<Timings>,
    on_step: impl FnMut(&Step) -> Result<()> + Send,
) -> Result<Array3<f32>> {
    on_worker(|| adam_steps(objective, x, adam, iterations, timings, on_step))
}

fn adam_steps(
    objective: &Objective<f32>,
    mut x: Array3<f32>,
    adam: &mut Adam<f32>,
    iterations: usize,
    timings: &mut Option<Timings>,
    mut on_step: impl FnMut(&Step) -> Result<()>,
) -> Result<Array3<f32>> {
    let start = Instant::now();
    // Reused by every step: after the first, a step allocates nothing.
    let mut eval = Evaluation::zeros(objective.shape());
    for iteration in adam.steps() as usize + 1..=iterations {
        objective.evaluate_into(&x, &mut eval, timings)?;
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
            evaluations: iteration,
            elapsed: start.elapsed().as_secs_f64(),
            optimizer: OptimizerState::Adam(adam),
        })?;
    }
    Ok(x)
}

/// Runs at most `iterations` L-BFGS iterations from `x`, calling `on_step` after each (one
/// [`Step`] per iteration, whatever its line search cost; `Step::evaluations` counts the
/// objective evaluations). Returns the final image and the run's [`Report`]: the run may stop
/// early ([`crate::optim::Stop`]: converged, stalled, line search failed, evaluation budget
/// spent), with the best image found. A callback error stops the run and is returned. With
/// `timings`, every objective evaluation is profiled. Like `run_adam`, it runs on a rayon worker.
pub fn run_lbfgs(
    objective: &Objective<f32>,
    x: Array3<f32>,
    lbfgs: &Lbfgs,
    iterations: usize,
    timings: &mut Option<Timings>,
    on_step: impl FnMut(&Step) -> Result<()> + Send,
) -> Result<(Array3<f32>, Report)> {
    run_lbfgs_from(objective, x, None, lbfgs, iterations, timings, on_step)
}

/// `run_lbfgs`, continuing from `state` (a [`Step::optimizer`] of an earlier run at the image
/// `x`) when given: the remaining iterations are bitwise those of the uninterrupted run.
pub fn run_lbfgs_from(
    objective: &Objective<f32>,
    x: Array3<f32>,
    state: Option<LbfgsState<f32>>,
    lbfgs: &Lbfgs,
    iterations: usize,
    timings: &mut Option<Timings>,
    on_step: impl FnMut(&Step) -> Result<()> + Send,
) -> Result<(Array3<f32>, Report)> {
    on_worker(|| lbfgs_iterations(objective, x, state, lbfgs, iterations, timings, on_step))
}

fn lbfgs_iterations(
    objective: &Objective<f32>,
    x: Array3<f32>,
    state: Option<LbfgsState<f32>>,
    lbfgs: &Lbfgs,
    iterations: usize,
    timings: &mut Option<Timings>,
    mut on_step: impl FnMut(&Step) -> Result<()>,
) -> Result<(Array3<f32>, Report)> {
    let [c, h, w] = objective.shape();
    if x.shape() != [c, h, w] {
        return Err(Error::Shape(format!(
            "initial image has shape {:?}, the objective expects {:?}",
            x.shape(),
            [c, h, w]
        )));
    }
    let start = Instant::now();
    let mut x = x.as_standard_layout().into_owned();
    let mut image = x.clone();
    // (content, style, tv, total) of the evaluations since the last accepted iteration, and the
    // number of the first of them, so the callback can report the terms at whichever trial
    // point the line search accepted.
    let first = state.as_ref().map_or(0, |s| s.evaluations) + 1;
    let terms: RefCell<(usize, Vec<[f64; 4]>)> = RefCell::new((first, Vec::with_capacity(64)));
    let timings = RefCell::new(timings);
    // The evaluation's scalars and scratch, reused; the gradient is computed straight into the
    // buffer L-BFGS hands over (one it recycles), and the point is read in place: at print
    // sizes each image-sized copy or allocation is hundreds of megabytes.
    let buffers = RefCell::new(Evaluation::zeros([0, 0, 0]));
    let f = |xs: &[f32], grad: &mut Vec<f32>| -> Result<f64> {
        if !xs.iter().all(|v| v.is_finite()) {
            // A trial step overflowed f32: too far, the line search shortens it.
            terms.borrow_mut().1.push([f64::INFINITY; 4]);
            grad.clear();
            grad.resize(xs.len(), 0.0);
            return Ok(f64::INFINITY);
        }
        let eval = &mut *buffers.borrow_mut();
        let x = ArrayView3::from_shape((c, h, w), xs).map_err(|e| Error::Shape(e.to_string()))?;
        let mut buf = std::mem::take(grad);
        buf.resize(c * h * w, 0.0);
        eval.grad = Array3::from_shape_vec((c, h, w), buf).expect("sized just above");
        objective.evaluate_into(&x, eval, &mut timings.borrow_mut())?;
        terms
            .borrow_mut()
            .1
            .push([eval.content, eval.style, eval.tv, eval.total]);
        let (buf, offset) =
            std::mem::replace(&mut eval.grad, Array3::zeros((0, 0, 0))).into_raw_vec_and_offset();
        debug_assert_eq!(offset, Some(0), "the gradient starts its buffer");
        *grad = buf;
        Ok(eval.total)
    };
    // What the callback sees: the accepted point and its gradient, copied into buffers made
    // once.
    let mut report = Evaluation::zeros([c, h, w]);
    let on_iter = |it: &Iterate<'_, f32>| -> Result<()> {
        {
            let (first, terms) = &mut *terms.borrow_mut();
            [report.content, report.style, report.tv, report.total] = terms[it.evaluation - *first];
            *first = it.evaluations + 1;
            terms.clear();
        }
        image
            .as_slice_mut()
            .expect("a fresh array is contiguous")
            .copy_from_slice(it.x);
        report
            .grad
            .as_slice_mut()
            .expect("a fresh array is contiguous")
            .copy_from_slice(it.grad);
        let eval = &report;
        on_step(&Step {
            iteration: it.iteration,
            iterations,
            eval,
            image: &image,
            evaluations: it.evaluations,
            elapsed: start.elapsed().as_secs_f64(),
            optimizer: OptimizerState::Lbfgs(it.state),
        })
    };
    let xs = x
        .as_slice_mut()
        .expect("a standard-layout array is contiguous");
    let report = lbfgs.minimize_from(xs, state, f, iterations, on_iter)?;
    Ok((x, report))
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
