//! L-BFGS on the pixels: the limited-memory BFGS two-loop recursion (Nocedal & Wright 2006,
//! Algorithms 7.4 and 7.5) with a strong-Wolfe line search (Algorithms 3.5 and 3.6, cubic and
//! quadratic interpolation with safeguards).
//!
//! Conventions:
//! - Iterates, gradients and the stored correction pairs `(s, y)` have the caller's element type
//!   `T` (f32 for the engine, f64 in tests). The search direction and every dot product are kept
//!   in f64, whatever `T` is.
//! - Every tolerance is relative or in units of `x`, never an absolute threshold on the value:
//!   the style objective is of order 1e9..1e10 on real images.
//! - The objective is a closure `f(x) -> (value, gradient)`; its errors propagate unchanged. A
//!   non-finite value or gradient at the starting point is [`Error::NonFinite`]. At a trial point
//!   of the line search it only means "too far": the step is shortened, and the search fails with
//!   [`Error::NonFinite`] when no finite point with enough decrease turns up. A non-finite point is
//!   never accepted, so `x` never holds NaN.
//! - When the line search fails, the history is dropped and the iteration is retried once along
//!   steepest descent; when that fails too, [`Lbfgs::minimize`] stops cleanly with
//!   [`Stop::LineSearchFailed`], `x` holding the best point found.

use crate::error::{Error, Result};
use crate::gemm::Real;
use std::collections::VecDeque;

/// Limited-memory BFGS with a strong-Wolfe line search. The settings are public fields (set
/// them with `Lbfgs { history: 5, ..Lbfgs::default() }`), checked at the start of every
/// [`Lbfgs::minimize`], which is generic over the element type (f32 for the engine). Every run
/// starts with an empty history.
#[derive(Debug, Clone, PartialEq)]
pub struct Lbfgs {
    /// Correction pairs kept (m >= 1). Default 10.
    pub history: usize,
    /// Objective evaluations one line search may use (>= 1). Default 20.
    pub max_line_search: usize,
    /// Objective evaluations the whole run may use, the first included (>= 1). Default unlimited.
    pub max_evaluations: usize,
    /// On a steepest-descent iteration (the first, and after a reset), the first trial step moves
    /// the coordinate with the largest gradient by this much, in the units of `x` (net-space
    /// pixel values for the engine). The line search grows or shrinks it. Default 1.0.
    pub initial_step: f64,
    /// Sufficient-decrease constant of the Wolfe conditions. Default 1e-4.
    pub c1: f64,
    /// Curvature constant of the strong Wolfe conditions (c1 < c2 < 1). Default 0.9.
    pub c2: f64,
    /// Converged when `|g|_inf <= grad_tolerance * |g_0|_inf`. Default 1e-10.
    pub grad_tolerance: f64,
    /// Stalled when an iteration lowers the value by at most `value_tolerance * |f|`.
    /// Default 1e-12.
    pub value_tolerance: f64,
    /// A correction pair is skipped (H stays positive definite) unless
    /// `s'y > curvature_tolerance * |s|_2 |y|_2`. Default 1e-10.
    pub curvature_tolerance: f64,
}

/// One correction pair `s = x_{k+1} - x_k`, `y = g_{k+1} - g_k`, with `rho = 1 / s'y`.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair<T> {
    pub s: Vec<T>,
    pub y: Vec<T>,
    pub rho: f64,
}

/// Everything an L-BFGS run carries from one iteration to the next, besides the iterate
/// itself: a run continued from it with [`Lbfgs::minimize_from`] takes exactly the steps it
/// would have taken had it not stopped (the basis of exact checkpoints).
#[derive(Debug, Clone, PartialEq)]
pub struct LbfgsState<T> {
    /// Objective value and gradient at the iterate.
    pub value: f64,
    pub grad: Vec<T>,
    /// The correction pairs, oldest first.
    pub pairs: VecDeque<Pair<T>>,
    /// Scale of the initial inverse Hessian, `s'y / y'y` of the newest accepted pair.
    pub gamma: f64,
    /// `|g_0|_inf`, the reference of the convergence test.
    pub g0: f64,
    /// Iterations and objective evaluations so far, history resets.
    pub iterations: usize,
    pub evaluations: usize,
    pub resets: usize,
    /// Set once the run has stopped early: continuing it does nothing.
    pub stop: Option<Stop>,
}

impl<T> LbfgsState<T> {
    fn report(&self, stop: Stop) -> Report {
        Report {
            iterations: self.iterations,
            evaluations: self.evaluations,
            value: self.value,
            resets: self.resets,
            stop,
        }
    }
}

/// Why [`Lbfgs::minimize`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// `max_iterations` iterations were taken.
    MaxIterations,
    /// The evaluation budget ([`Lbfgs::max_evaluations`]) is spent.
    MaxEvaluations,
    /// The gradient fell below [`Lbfgs::grad_tolerance`] (relative to the first).
    Converged,
    /// An iteration lowered the value by less than [`Lbfgs::value_tolerance`] (relative).
    Stalled,
    /// No step with sufficient decrease was found, even along steepest descent: the value is
    /// at the noise floor of its arithmetic, or the gradient is wrong.
    LineSearchFailed,
}

/// The outcome of a [`Lbfgs::minimize`] run; `x` holds the point it describes.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Iterations taken (accepted steps).
    pub iterations: usize,
    /// Objective evaluations made, the first included.
    pub evaluations: usize,
    /// Objective value at the final `x`.
    pub value: f64,
    /// Times the history was dropped for a steepest-descent retry.
    pub resets: usize,
    pub stop: Stop,
}

/// What the per-iteration callback of [`Lbfgs::minimize`] sees, after each accepted step.
#[derive(Debug)]
pub struct Iterate<'a, T> {
    /// 1-based iteration number.
    pub iteration: usize,
    /// Objective evaluations so far, the first included.
    pub evaluations: usize,
    /// Evaluations this iteration's line search used (both attempts, after a reset).
    pub line_search_evaluations: usize,
    /// 1-based index of the evaluation that produced `x`, `value` and `grad` (the line search
    /// may accept a point other than its last).
    pub evaluation: usize,
    /// Objective value at `x`.
    pub value: f64,
    /// The new iterate.
    pub x: &'a [T],
    /// The gradient at `x`.
    pub grad: &'a [T],
    /// The accepted step length along the search direction.
    pub step: f64,
    /// The run's whole state after this iteration (with `x`, what a checkpoint keeps).
    pub state: &'a LbfgsState<T>,
}

impl Default for Lbfgs {
    fn default() -> Self {
        Lbfgs {
            history: 10,
            max_line_search: 20,
            max_evaluations: usize::MAX,
            initial_step: 1.0,
            c1: 1e-4,
            c2: 0.9,
            grad_tolerance: 1e-10,
            value_tolerance: 1e-12,
            curvature_tolerance: 1e-10,
        }
    }
}

/// sum a_i b_i in f64.
fn dot<T: Real>(a: &[T], b: &[T]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| x.as_f64() * y.as_f64())
        .sum()
}

/// sum a_i b_i in f64, `b` already in f64.
fn dot_f64<T: Real>(a: &[T], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x.as_f64() * y).sum()
}

fn norm_inf<T: Real>(a: &[T]) -> f64 {
    a.iter().fold(0.0, |m, &v| m.max(v.as_f64().abs()))
}

fn all_finite<T: Real>(a: &[T]) -> bool {
    a.iter().all(|v| v.is_finite())
}

/// Minimiser of the cubic matching `f` and `f'` at `a` and `b` (N&W eq. 3.59), if it exists.
fn cubic_min(a: f64, fa: f64, da: f64, b: f64, fb: f64, db: f64) -> Option<f64> {
    let d1 = da + db - 3.0 * (fa - fb) / (a - b);
    let disc = d1 * d1 - da * db;
    if disc.is_nan() || disc < 0.0 {
        return None;
    }
    let d2 = (b - a).signum() * disc.sqrt();
    let t = b - (b - a) * (db + d2 - d1) / (db - da + 2.0 * d2);
    t.is_finite().then_some(t)
}

/// Minimiser of the quadratic matching `f(a)`, `f'(a)` and `f(b)`, if it is convex.
fn quadratic_min(a: f64, fa: f64, da: f64, b: f64, fb: f64) -> Option<f64> {
    let h = b - a;
    let curv = fb - fa - da * h;
    if curv.is_nan() || curv <= 0.0 {
        return None;
    }
    let t = a - da * h * h / (2.0 * curv);
    t.is_finite().then_some(t)
}

/// One evaluated trial point `x0 + t d` of a line search. `f` is +inf and `dphi` NaN where the
/// objective was not finite.
struct Trial<T> {
    t: f64,
    f: f64,
    dphi: f64,
    grad: Vec<T>,
    evaluation: usize,
}

impl<T> Trial<T> {
    fn finite(&self) -> bool {
        self.f.is_finite()
    }
}

enum Search<T> {
    /// A point with sufficient decrease (and, unless the budget or the interval ran out, the
    /// strong curvature condition).
    Accepted(Trial<T>),
    /// No point with sufficient decrease; `nonfinite` when some trial was NaN or infinite.
    Failed { nonfinite: bool },
}

/// `(x, gradient buffer) -> value`, the gradient written into the buffer.
type ObjectiveFn<'f, T> = dyn FnMut(&[T], &mut Vec<T>) -> Result<f64> + 'f;

/// The objective with its evaluation count, a check of the gradient's length, and the
/// gradient buffers of finished trials, handed to the next evaluations so that an iteration
/// allocates nothing once the line search has seen its usual number of live trials.
struct Counted<'f, T> {
    f: &'f mut ObjectiveFn<'f, T>,
    evaluations: usize,
    spare: Vec<Vec<T>>,
}

impl<T: Real> Counted<'_, T> {
    fn eval(&mut self, x: &[T]) -> Result<(f64, Vec<T>)> {
        let mut grad = self.spare.pop().unwrap_or_default();
        let value = (self.f)(x, &mut grad)?;
        self.evaluations += 1;
        if grad.len() != x.len() {
            return Err(Error::Shape(format!(
                "objective returned a gradient of length {}, the point has {}",
                grad.len(),
                x.len()
            )));
        }
        Ok((value, grad))
    }

    /// Takes back a gradient buffer no longer needed.
    fn recycle(&mut self, grad: Vec<T>) {
        if grad.capacity() > 0 {
            self.spare.push(grad);
        }
    }

    /// `*slot = new`, recycling the gradient of the trial it held.
    fn replace(&mut self, slot: &mut Trial<T>, new: Trial<T>) {
        let old = std::mem::replace(slot, new);
        self.recycle(old.grad);
    }
}

/// `d = -H g` by the two-loop recursion, with `H_0 = gamma I`.
fn direction<T: Real>(
    pairs: &VecDeque<Pair<T>>,
    grad: &[T],
    gamma: f64,
    d: &mut [f64],
    alphas: &mut [f64],
) {
    for (d, &g) in d.iter_mut().zip(grad) {
        *d = g.as_f64();
    }
    for (k, p) in pairs.iter().enumerate().rev() {
        let a = p.rho * dot_f64(&p.s, d);
        alphas[k] = a;
        for (d, &y) in d.iter_mut().zip(&p.y) {
            *d -= a * y.as_f64();
        }
    }
    d.iter_mut().for_each(|d| *d *= gamma);
    for (k, p) in pairs.iter().enumerate() {
        let b = p.rho * dot_f64(&p.y, d);
        let c = alphas[k] - b;
        for (d, &s) in d.iter_mut().zip(&p.s) {
            *d += c * s.as_f64();
        }
    }
    d.iter_mut().for_each(|d| *d = -*d);
}

/// `x0 + t d`, rounded to `T`.
fn trial_point<T: Real>(out: &mut [T], x0: &[T], d: &[f64], t: f64) {
    for ((o, &x), &d) in out.iter_mut().zip(x0).zip(d) {
        *o = T::from_f64(x.as_f64() + t * d);
    }
}

impl Lbfgs {
    /// Default settings with `history` correction pairs.
    pub fn new(history: usize) -> Result<Self> {
        let l = Lbfgs {
            history,
            ..Lbfgs::default()
        };
        l.validate()?;
        Ok(l)
    }

    /// Rejects settings outside their meaningful ranges.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.history == 0 {
            return bad("L-BFGS history must be >= 1".into());
        }
        if self.max_line_search == 0 || self.max_evaluations == 0 {
            return bad("L-BFGS evaluation limits must be >= 1".into());
        }
        if !(self.initial_step.is_finite() && self.initial_step > 0.0) {
            return bad(format!(
                "L-BFGS initial step {} must be > 0",
                self.initial_step
            ));
        }
        if !(0.0 < self.c1 && self.c1 < self.c2 && self.c2 < 1.0) {
            return bad(format!(
                "L-BFGS line search needs 0 < c1 < c2 < 1, got c1 {} c2 {}",
                self.c1, self.c2
            ));
        }
        for (name, v) in [
            ("grad tolerance", self.grad_tolerance),
            ("value tolerance", self.value_tolerance),
            ("curvature tolerance", self.curvature_tolerance),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(format!("L-BFGS {name} {v} must be finite and >= 0"));
            }
        }
        Ok(())
    }

    /// Minimises `f` from `x`, in place, for at most `max_iterations` iterations (accepted
    /// steps), calling `on_iter` after each. `f(x, grad)` returns the value and writes the
    /// gradient into `grad` (a buffer of an earlier evaluation, or empty: `f` sets its length
    /// to that of `x`; reusing it keeps steady iterations free of allocation). Errors of `f`
    /// and `on_iter` stop the run and are returned; `x` then holds the last accepted point.
    /// See the module docs for non-finite values.
    pub fn minimize<T, F, C>(
        &self,
        x: &mut [T],
        f: F,
        max_iterations: usize,
        on_iter: C,
    ) -> Result<Report>
    where
        T: Real,
        F: FnMut(&[T], &mut Vec<T>) -> Result<f64>,
        C: FnMut(&Iterate<'_, T>) -> Result<()>,
    {
        self.minimize_from(x, None, f, max_iterations, on_iter)
    }

    /// `minimize`, continuing from `state` (taken from an [`Iterate`] at the point `x`) when
    /// given: iterations are numbered on from `state.iterations`, up to `max_iterations` in all,
    /// and the steps are bitwise those the uninterrupted run takes.
    pub fn minimize_from<T, F, C>(
        &self,
        x: &mut [T],
        state: Option<LbfgsState<T>>,
        mut f: F,
        max_iterations: usize,
        mut on_iter: C,
    ) -> Result<Report>
    where
        T: Real,
        F: FnMut(&[T], &mut Vec<T>) -> Result<f64>,
        C: FnMut(&Iterate<'_, T>) -> Result<()>,
    {
        self.validate()?;
        let n = x.len();
        let mut obj = Counted {
            f: &mut f,
            evaluations: 0,
            spare: Vec::new(),
        };
        let mut st = match state {
            Some(st) => {
                self.check_state(&st, n)?;
                st
            }
            None => {
                let (value, grad) = obj.eval(x)?;
                if !value.is_finite() || !all_finite(&grad) {
                    return Err(Error::NonFinite(format!(
                        "objective at the starting point: value {value}, gradient {}",
                        if all_finite(&grad) {
                            "finite"
                        } else {
                            "not finite"
                        }
                    )));
                }
                let g0 = norm_inf(&grad);
                LbfgsState {
                    value,
                    grad,
                    pairs: VecDeque::with_capacity(self.history),
                    gamma: 1.0,
                    g0,
                    iterations: 0,
                    evaluations: obj.evaluations,
                    resets: 0,
                    stop: (g0 == 0.0).then_some(Stop::Converged),
                }
            }
        };
        obj.evaluations = st.evaluations;
        if let Some(stop) = st.stop {
            return Ok(st.report(stop));
        }
        // Retired correction pairs whose memory is reused.
        let mut spare: Vec<Pair<T>> = Vec::new();
        let mut d = vec![0.0f64; n];
        let mut alphas = vec![0.0f64; self.history];
        let mut buf = vec![T::zero(); n];
        let mut x_new = vec![T::zero(); n];

        for iteration in st.iterations + 1..=max_iterations {
            if obj.evaluations >= self.max_evaluations {
                st.stop = Some(Stop::MaxEvaluations);
                return Ok(st.report(Stop::MaxEvaluations));
            }
            let before = obj.evaluations;
            let mut steepest = st.pairs.is_empty();
            let trial = loop {
                let dphi0 = if steepest {
                    for (d, &g) in d.iter_mut().zip(&st.grad) {
                        *d = -g.as_f64();
                    }
                    -dot(&st.grad, &st.grad)
                } else {
                    direction(&st.pairs, &st.grad, st.gamma, &mut d, &mut alphas);
                    dot_f64(&st.grad, &d)
                };
                if !steepest && (dphi0.is_nan() || dphi0 >= 0.0) {
                    // Rounding made H g useless: start over from steepest descent.
                    spare.extend(st.pairs.drain(..));
                    st.resets += 1;
                    steepest = true;
                    continue;
                }
                let t0 = if steepest {
                    self.initial_step / norm_inf(&d)
                } else {
                    1.0
                };
                let budget = self
                    .max_line_search
                    .min(self.max_evaluations - obj.evaluations);
                let search =
                    self.line_search(&mut obj, x, &d, st.value, dphi0, t0, budget, &mut buf)?;
                match search {
                    Search::Accepted(trial) => break trial,
                    Search::Failed { nonfinite } => {
                        st.evaluations = obj.evaluations;
                        let stop = if obj.evaluations >= self.max_evaluations {
                            Stop::MaxEvaluations
                        } else if !steepest {
                            spare.extend(st.pairs.drain(..));
                            st.resets += 1;
                            steepest = true;
                            continue;
                        } else if nonfinite {
                            return Err(Error::NonFinite(format!(
                                "objective is NaN or infinite at every trial step of \
                                 iteration {iteration} that lowered it (value {:e})",
                                st.value
                            )));
                        } else {
                            Stop::LineSearchFailed
                        };
                        st.stop = Some(stop);
                        return Ok(st.report(stop));
                    }
                }
            };

            // Accept x_new = x + t d and record the correction pair.
            trial_point(&mut x_new, x, &d, trial.t);
            let mut pair = spare.pop().unwrap_or(Pair {
                s: Vec::new(),
                y: Vec::new(),
                rho: 0.0,
            });
            pair.s.clear();
            pair.s
                .extend(x_new.iter().zip(x.iter()).map(|(&a, &b)| a - b));
            pair.y.clear();
            pair.y
                .extend(trial.grad.iter().zip(&st.grad).map(|(&a, &b)| a - b));
            let sy = dot(&pair.s, &pair.y);
            let yy = dot(&pair.y, &pair.y);
            let ss = dot(&pair.s, &pair.s);
            if sy > self.curvature_tolerance * (ss * yy).sqrt() && sy.is_finite() && yy > 0.0 {
                pair.rho = 1.0 / sy;
                st.gamma = sy / yy;
                if st.pairs.len() == self.history {
                    spare.extend(st.pairs.pop_front());
                }
                st.pairs.push_back(pair);
            } else {
                spare.push(pair);
            }
            x.copy_from_slice(&x_new);
            obj.recycle(std::mem::replace(&mut st.grad, trial.grad));
            let decrease = st.value - trial.f;
            let previous = st.value;
            st.value = trial.f;
            st.iterations = iteration;
            st.evaluations = obj.evaluations;
            // Decided before the callback sees the state, so a checkpoint taken there knows
            // that the run ends here.
            st.stop = if norm_inf(&st.grad) <= self.grad_tolerance * st.g0 {
                Some(Stop::Converged)
            } else if decrease <= self.value_tolerance * previous.abs() {
                Some(Stop::Stalled)
            } else {
                None
            };
            on_iter(&Iterate {
                iteration,
                evaluations: obj.evaluations,
                line_search_evaluations: obj.evaluations - before,
                evaluation: trial.evaluation,
                value: st.value,
                x,
                grad: &st.grad,
                step: trial.t,
                state: &st,
            })?;
            if let Some(stop) = st.stop {
                return Ok(st.report(stop));
            }
        }
        Ok(st.report(Stop::MaxIterations))
    }

    /// Rejects a state that cannot belong to a run of these settings on `n` unknowns.
    fn check_state<T: Real>(&self, st: &LbfgsState<T>, n: usize) -> Result<()> {
        let bad = |what: String| Err(Error::Shape(format!("L-BFGS state: {what}")));
        if st.grad.len() != n {
            return bad(format!(
                "gradient of length {}, the point has {n}",
                st.grad.len()
            ));
        }
        if st.pairs.len() > self.history {
            return bad(format!(
                "{} correction pairs, the history holds {}",
                st.pairs.len(),
                self.history
            ));
        }
        if st.pairs.iter().any(|p| p.s.len() != n || p.y.len() != n) {
            return bad("a correction pair of the wrong length".into());
        }
        if !(st.value.is_finite() && all_finite(&st.grad) && st.gamma.is_finite()) {
            return bad("non-finite values".into());
        }
        Ok(())
    }

    /// Evaluates the trial point `x0 + t d`.
    fn trial<T: Real>(
        &self,
        obj: &mut Counted<'_, T>,
        x0: &[T],
        d: &[f64],
        t: f64,
        buf: &mut [T],
    ) -> Result<Trial<T>> {
        trial_point(buf, x0, d, t);
        let (f, grad) = obj.eval(buf)?;
        let evaluation = obj.evaluations;
        if f.is_finite() && all_finite(&grad) {
            let dphi = dot_f64(&grad, d);
            Ok(Trial {
                t,
                f,
                dphi,
                grad,
                evaluation,
            })
        } else {
            Ok(Trial {
                t,
                f: f64::INFINITY,
                dphi: f64::NAN,
                grad,
                evaluation,
            })
        }
    }

    /// Strong-Wolfe line search along `d` from `x0` (value `f0`, slope `dphi0 < 0`), starting
    /// at step `t0`, with at most `budget` evaluations: bracketing (N&W Alg. 3.5), then zoom
    /// (Alg. 3.6). When the budget runs out, or the bracket shrinks below the resolution of `T`,
    /// it settles for the best point with sufficient decrease, if any.
    #[allow(clippy::too_many_arguments)]
    fn line_search<T: Real>(
        &self,
        obj: &mut Counted<'_, T>,
        x0: &[T],
        d: &[f64],
        f0: f64,
        dphi0: f64,
        t0: f64,
        budget: usize,
        buf: &mut [T],
    ) -> Result<Search<T>> {
        let armijo = |t: &Trial<T>| t.finite() && t.f <= f0 + self.c1 * t.t * dphi0;
        let curvature = |t: &Trial<T>| t.dphi.abs() <= -self.c2 * dphi0;
        // Steps shorter than this leave x0 unchanged in T.
        let dmax = d.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let resolution = T::epsilon().as_f64() * norm_inf(x0).max(1.0) / dmax;
        let mut used = 0;
        let mut nonfinite = false;
        let start = Trial {
            t: 0.0,
            f: f0,
            dphi: dphi0,
            grad: Vec::new(),
            evaluation: 0,
        };
        let settle = |lo: Trial<T>, nonfinite: bool| {
            if lo.t > 0.0 {
                Search::Accepted(lo)
            } else {
                Search::Failed { nonfinite }
            }
        };

        // Bracketing: grow the step until it brackets a Wolfe point.
        let mut prev = start;
        let mut t = t0;
        let (mut lo, mut hi) = loop {
            if used == budget {
                return Ok(settle(prev, nonfinite));
            }
            let cur = self.trial(obj, x0, d, t, buf)?;
            used += 1;
            if !cur.finite() {
                nonfinite = true;
                break (prev, cur);
            }
            if !armijo(&cur) || (prev.t > 0.0 && cur.f >= prev.f) {
                break (prev, cur);
            }
            if curvature(&cur) {
                obj.recycle(prev.grad);
                return Ok(Search::Accepted(cur));
            }
            if cur.dphi >= 0.0 {
                break (cur, prev);
            }
            // Still descending steeply: extrapolate, at least doubling and at most 10x the
            // distance from the previous trial.
            let (low, high) = (t + (t - prev.t), t + 10.0 * (t - prev.t));
            let next = cubic_min(prev.t, prev.f, prev.dphi, cur.t, cur.f, cur.dphi)
                .filter(|&c| c > t)
                .map_or(high, |c| c.clamp(low, high));
            obj.replace(&mut prev, cur);
            t = next;
        };

        // Zoom: lo has sufficient decrease and the lowest value so far; the minimiser lies
        // between lo and hi.
        loop {
            let width = (hi.t - lo.t).abs();
            if used == budget || width <= resolution {
                obj.recycle(hi.grad);
                return Ok(settle(lo, nonfinite));
            }
            let (a, b) = (lo.t.min(hi.t), lo.t.max(hi.t));
            let guess = if hi.finite() {
                cubic_min(lo.t, lo.f, lo.dphi, hi.t, hi.f, hi.dphi)
                    .or_else(|| quadratic_min(lo.t, lo.f, lo.dphi, hi.t, hi.f))
            } else {
                None
            };
            let t = guess
                .filter(|&g| g >= a + 0.1 * width && g <= b - 0.1 * width)
                .unwrap_or(0.5 * (a + b));
            let cur = self.trial(obj, x0, d, t, buf)?;
            used += 1;
            if !cur.finite() {
                nonfinite = true;
                obj.replace(&mut hi, cur);
            } else if !armijo(&cur) || cur.f >= lo.f {
                obj.replace(&mut hi, cur);
            } else {
                if curvature(&cur) {
                    obj.recycle(lo.grad);
                    obj.recycle(hi.grad);
                    return Ok(Search::Accepted(cur));
                }
                if cur.dphi * (hi.t - lo.t) >= 0.0 {
                    let old_lo = std::mem::replace(&mut lo, cur);
                    obj.replace(&mut hi, old_lo);
                } else {
                    obj.replace(&mut lo, cur);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Obj = fn(&[f64]) -> Result<(f64, Vec<f64>)>;

    fn rosenbrock(x: &[f64]) -> Result<(f64, Vec<f64>)> {
        let (a, b) = (x[0], x[1]);
        let f = (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2);
        let g = vec![
            -2.0 * (1.0 - a) - 400.0 * a * (b - a * a),
            200.0 * (b - a * a),
        ];
        Ok((f, g))
    }

    /// 0.5 sum l_i z_i^2 + 0.5 sum (z_{i+1} - z_i)^2 with z = x - c, l_i from 1e-2 to 1e2
    /// (condition number about 1e4, not diagonal); minimum 0 at c.
    fn chain_quadratic<T: Real>(x: &[T]) -> Result<(f64, Vec<T>)> {
        let n = x.len();
        let z: Vec<f64> = (0..n).map(|i| x[i].as_f64() - centre(i)).collect();
        let mut f = 0.0;
        let mut g = vec![0.0; n];
        for i in 0..n {
            let l = 10f64.powf(-2.0 + 4.0 * i as f64 / (n - 1) as f64);
            f += 0.5 * l * z[i] * z[i];
            g[i] += l * z[i];
            if i + 1 < n {
                let dz = z[i + 1] - z[i];
                f += 0.5 * dz * dz;
                g[i + 1] += dz;
                g[i] -= dz;
            }
        }
        Ok((f, g.into_iter().map(T::from_f64).collect()))
    }

    fn centre(i: usize) -> f64 {
        ((i * 37 % 23) as f64 - 11.0) * 0.5
    }

    /// An objective that returns a fresh gradient, as `minimize` takes objectives.
    fn fresh<T: Real>(
        mut f: impl FnMut(&[T]) -> Result<(f64, Vec<T>)>,
    ) -> impl FnMut(&[T], &mut Vec<T>) -> Result<f64> {
        move |x, grad| {
            let (value, g) = f(x)?;
            *grad = g;
            Ok(value)
        }
    }

    fn run<T: Real>(
        lbfgs: &Lbfgs,
        x: &mut [T],
        f: impl FnMut(&[T]) -> Result<(f64, Vec<T>)>,
        iterations: usize,
    ) -> Result<Report> {
        lbfgs.minimize(x, fresh(f), iterations, |_| Ok(()))
    }

    #[test]
    fn two_loop_satisfies_the_secant_condition() {
        // y = A s for a fixed SPD A (tridiagonal): H must map the newest y back to its s, and
        // stay positive definite.
        let n = 7;
        let a_times = |s: &[f64]| -> Vec<f64> {
            (0..n)
                .map(|i| {
                    let mut v = (3.0 + i as f64) * s[i];
                    if i > 0 {
                        v -= s[i - 1];
                    }
                    if i + 1 < n {
                        v -= s[i + 1];
                    }
                    v
                })
                .collect()
        };
        let history = 3;
        let mut pairs = VecDeque::new();
        let mut gamma = 1.0;
        for k in 0..5 {
            let s: Vec<f64> = (0..n).map(|i| ((i * 7 + k * 3) % 5) as f64 - 1.7).collect();
            let y = a_times(&s);
            let sy = dot(&s, &y);
            gamma = sy / dot(&y, &y);
            if pairs.len() == history {
                pairs.pop_front();
            }
            pairs.push_back(Pair {
                s,
                y,
                rho: 1.0 / sy,
            });
        }
        let mut d = vec![0.0; n];
        let mut alphas = vec![0.0; 3];
        let last: Pair<f64> = pairs.back().unwrap().clone();
        direction(&pairs, &last.y, gamma, &mut d, &mut alphas);
        for (d, s) in d.iter().zip(&last.s) {
            assert!((d + s).abs() < 1e-12, "{d} vs -{s}");
        }
        for k in 0..10 {
            let g: Vec<f64> = (0..n).map(|i| ((i * 5 + k) % 7) as f64 - 3.1).collect();
            direction(&pairs, &g, gamma, &mut d, &mut alphas);
            assert!(dot_f64(&g, &d) < 0.0);
        }
    }

    #[test]
    fn a_run_continued_from_any_iteration_takes_the_same_steps() {
        // f32 on the ill-conditioned chain, with a small history so pairs are retired, and
        // Rosenbrock in f64 to its convergence stop.
        let lbfgs = Lbfgs::new(3).unwrap();
        let mut whole = vec![0.0f32; 12];
        let mut states = Vec::new();
        let mut points = Vec::new();
        let full = lbfgs
            .minimize(&mut whole, fresh(chain_quadratic), 40, |it| {
                states.push(it.state.clone());
                points.push(it.x.to_vec());
                Ok(())
            })
            .unwrap();
        assert!(full.iterations > 10, "{full:?}");
        for (k, (state, point)) in states.into_iter().zip(points).enumerate() {
            let mut x = point;
            let r = lbfgs
                .minimize_from(&mut x, Some(state), fresh(chain_quadratic), 40, |it| {
                    assert!(it.iteration > k + 1);
                    Ok(())
                })
                .unwrap();
            assert_eq!(r, full, "continued after iteration {}", k + 1);
            assert!(x == whole, "continued after iteration {}", k + 1);
        }
        let mut whole = vec![-1.2, 1.0];
        let mut last = None;
        let full = run(&Lbfgs::default(), &mut whole, rosenbrock, 200).unwrap();
        let mut x = vec![-1.2, 1.0];
        Lbfgs::default()
            .minimize(&mut x, fresh(rosenbrock), 200, |it| {
                last = Some((it.state.clone(), it.x.to_vec()));
                Ok(())
            })
            .unwrap();
        let (state, mut x) = last.unwrap();
        // The last state knows the run converged: continuing evaluates nothing.
        assert_eq!(state.stop, Some(Stop::Converged));
        let r = Lbfgs::default()
            .minimize_from(
                &mut x,
                Some(state),
                |_: &[f64], _: &mut Vec<f64>| -> Result<f64> {
                    panic!("no evaluation after the stop")
                },
                200,
                |_| Ok(()),
            )
            .unwrap();
        assert_eq!((r, x), (full, whole));
    }

    #[test]
    fn a_state_of_another_shape_is_refused() {
        let mut states = Vec::new();
        let mut x = vec![0.0f64; 6];
        Lbfgs::new(4)
            .unwrap()
            .minimize(&mut x, fresh(chain_quadratic), 5, |it| {
                states.push(it.state.clone());
                Ok(())
            })
            .unwrap();
        let state = states.pop().unwrap();
        let mut short = vec![0.0f64; 5];
        let e = Lbfgs::new(4).unwrap().minimize_from(
            &mut short,
            Some(state.clone()),
            fresh(chain_quadratic),
            9,
            |_| Ok(()),
        );
        assert!(matches!(e, Err(Error::Shape(_))));
        let e = Lbfgs::new(2).unwrap().minimize_from(
            &mut x,
            Some(state),
            fresh(chain_quadratic),
            9,
            |_| Ok(()),
        );
        assert!(matches!(e, Err(Error::Shape(m)) if m.contains("pairs")));
    }

    #[test]
    fn rosenbrock_converges_to_the_optimum() {
        let mut x = vec![-1.2, 1.0];
        let r = run(&Lbfgs::default(), &mut x, rosenbrock, 200).unwrap();
        assert_eq!(r.stop, Stop::Converged, "{r:?}");
        assert!(
            (x[0] - 1.0).abs() < 1e-8 && (x[1] - 1.0).abs() < 1e-8,
            "{x:?} {r:?}"
        );
        assert!(r.iterations < 60 && r.evaluations < 100, "{r:?}");
    }

    #[test]
    fn ill_conditioned_quadratic_converges_in_f64() {
        let lbfgs = Lbfgs {
            grad_tolerance: 1e-13,
            ..Lbfgs::default()
        };
        let mut x = vec![0.0f64; 100];
        let r = run(&lbfgs, &mut x, chain_quadratic, 1000).unwrap();
        assert_eq!(r.stop, Stop::Converged, "{r:?}");
        let err = (0..100)
            .map(|i| (x[i] - centre(i)).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-9, "max error {err:e}, {r:?}");
        assert!(r.value < 1e-18, "{r:?}");
        assert!(
            (r.evaluations as f64) < 1.2 * r.iterations as f64 + 10.0,
            "{r:?}"
        );
    }

    #[test]
    fn history_of_one_still_converges() {
        let lbfgs = Lbfgs::new(1).unwrap();
        let mut x = vec![-1.2, 1.0];
        let r = run(&lbfgs, &mut x, rosenbrock, 500).unwrap();
        assert_eq!(r.stop, Stop::Converged, "{r:?}");
        assert!(
            (x[0] - 1.0).abs() < 1e-7 && (x[1] - 1.0).abs() < 1e-7,
            "{x:?} {r:?}"
        );
        let mut x = vec![0.0f64; 100];
        let r = run(&lbfgs, &mut x, chain_quadratic, 5000).unwrap();
        let err = (0..100)
            .map(|i| (x[i] - centre(i)).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-6, "max error {err:e}, {r:?}");
    }

    #[test]
    fn f32_quadratic_converges_and_stops_cleanly() {
        let mut x = vec![0.0f32; 100];
        let r = run(&Lbfgs::default(), &mut x, chain_quadratic, 1000).unwrap();
        let err = (0..100)
            .map(|i| (x[i] as f64 - centre(i)).abs())
            .fold(0.0, f64::max);
        // f32 resolution of the values (about 5) limits what is reachable.
        assert!(err < 1e-3, "max error {err:e}, {r:?}");
        assert!(x.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn objective_scale_does_not_matter() {
        // The same problem scaled by 1e10 (the order of the style objective) and shifted.
        let mut x = vec![0.0f64; 100];
        let scaled = |x: &[f64]| {
            let (f, g) = chain_quadratic(x)?;
            Ok((1e10 * f + 3e9, g.iter().map(|g| 1e10 * g).collect()))
        };
        let lbfgs = Lbfgs {
            initial_step: 5.0,
            ..Lbfgs::default()
        };
        let r = lbfgs
            .minimize(&mut x, fresh(scaled), 1000, |_| Ok(()))
            .unwrap();
        let err = (0..100)
            .map(|i| (x[i] - centre(i)).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-5, "max error {err:e}, {r:?}");
    }

    #[test]
    fn nan_at_the_start_is_an_error() {
        let nan: Obj = |x| Ok((f64::NAN, vec![0.0; x.len()]));
        let mut x = vec![1.0, 2.0];
        let e = run(&Lbfgs::default(), &mut x, nan, 10).unwrap_err();
        assert!(matches!(e, Error::NonFinite(_)), "{e}");
        let nan_grad: Obj = |x| Ok((1.0, vec![f64::NAN; x.len()]));
        let e = run(&Lbfgs::default(), &mut x, nan_grad, 10).unwrap_err();
        assert!(matches!(e, Error::NonFinite(_)), "{e}");
    }

    #[test]
    fn nan_everywhere_but_the_start_is_an_error() {
        let start = [1.0, 2.0];
        let f = |x: &[f64]| {
            if x == start {
                Ok((5.0, vec![1.0, 1.0]))
            } else {
                Ok((f64::NAN, vec![f64::NAN; 2]))
            }
        };
        let mut x = start.to_vec();
        let e = run(&Lbfgs::default(), &mut x, f, 10).unwrap_err();
        assert!(matches!(e, Error::NonFinite(_)), "{e}");
        assert_eq!(x, start);
    }

    #[test]
    fn nan_beyond_a_radius_only_shortens_the_step() {
        // A quadratic that is NaN outside |x|_inf < 8 (its minimum is inside, at |x|_inf 5.5);
        // the first trial steps land outside.
        let f = |x: &[f64]| {
            if x.iter().any(|v| v.abs() >= 8.0) {
                return Ok((f64::NAN, vec![f64::NAN; x.len()]));
            }
            chain_quadratic(x)
        };
        let lbfgs = Lbfgs {
            initial_step: 100.0,
            ..Lbfgs::default()
        };
        let mut x = vec![0.0f64; 10];
        let mut values = Vec::new();
        let r = lbfgs
            .minimize(&mut x, fresh(f), 500, |it| {
                values.push(it.value);
                Ok(())
            })
            .unwrap();
        assert!(values.iter().all(|v| v.is_finite()));
        let err = (0..10)
            .map(|i| (x[i] - centre(i)).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-6, "max error {err:e}, {r:?}");
    }

    #[test]
    fn a_wrong_gradient_stops_cleanly() {
        // The gradient points uphill: no step can decrease the value.
        let wrong: Obj = |x| {
            Ok((
                x.iter().map(|v| v * v).sum(),
                x.iter().map(|v| -2.0 * v).collect(),
            ))
        };
        let mut x = vec![1.0, -3.0, 2.0];
        let lbfgs = Lbfgs::default();
        let r = run(&lbfgs, &mut x, wrong, 100).unwrap();
        assert_eq!(r.stop, Stop::LineSearchFailed, "{r:?}");
        assert_eq!(r.iterations, 0);
        assert!(r.evaluations <= 1 + lbfgs.max_line_search, "{r:?}");
        assert_eq!(x, vec![1.0, -3.0, 2.0]);
    }

    #[test]
    fn evaluation_budget_is_respected() {
        let lbfgs = Lbfgs {
            max_evaluations: 15,
            ..Lbfgs::default()
        };
        let mut x = vec![-1.2, 1.0];
        let mut seen = 0;
        let r = lbfgs
            .minimize(&mut x, fresh(rosenbrock), 1000, |it| {
                seen = it.evaluations;
                assert!(it.evaluation <= it.evaluations);
                Ok(())
            })
            .unwrap();
        assert_eq!(r.stop, Stop::MaxEvaluations, "{r:?}");
        assert!(r.evaluations <= 15 && seen <= 15, "{r:?}");
        assert!(r.value < 24.2, "{r:?}");
    }

    #[test]
    fn callback_sees_decreasing_values_and_counts() {
        let mut x = vec![-1.2, 1.0];
        let mut last = (f64::INFINITY, 0, 0);
        let r = Lbfgs::default()
            .minimize(&mut x, fresh(rosenbrock), 100, |it| {
                assert!(it.value < last.0);
                assert_eq!(it.iteration, last.1 + 1);
                assert_eq!(it.evaluations, last.2.max(1) + it.line_search_evaluations);
                assert_eq!(it.value, rosenbrock(it.x).unwrap().0);
                last = (it.value, it.iteration, it.evaluations);
                Ok(())
            })
            .unwrap();
        assert_eq!((r.iterations, r.evaluations), (last.1, last.2));
    }

    #[test]
    fn errors_propagate_and_keep_the_last_accepted_point() {
        let mut calls = 0;
        let mut x = vec![-1.2, 1.0];
        let failing = |x: &[f64]| {
            calls += 1;
            if calls > 5 {
                Err(Error::Config("boom".into()))
            } else {
                rosenbrock(x)
            }
        };
        let mut accepted = x.clone();
        let e = Lbfgs::default()
            .minimize(&mut x, fresh(failing), 100, |it| {
                accepted = it.x.to_vec();
                Ok(())
            })
            .unwrap_err();
        assert!(matches!(e, Error::Config(ref m) if m == "boom"));
        assert_eq!(x, accepted);
        let mut x = vec![-1.2, 1.0];
        let e = Lbfgs::default()
            .minimize(&mut x, fresh(rosenbrock), 100, |it| {
                if it.iteration == 3 {
                    Err(Error::Config("stop".into()))
                } else {
                    Ok(())
                }
            })
            .unwrap_err();
        assert!(matches!(e, Error::Config(ref m) if m == "stop"));
    }

    #[test]
    fn rejects_bad_settings() {
        assert!(Lbfgs::new(0).is_err());
        for l in [
            Lbfgs {
                c1: 0.95,
                ..Lbfgs::default()
            },
            Lbfgs {
                initial_step: 0.0,
                ..Lbfgs::default()
            },
            Lbfgs {
                max_line_search: 0,
                ..Lbfgs::default()
            },
            Lbfgs {
                value_tolerance: f64::NAN,
                ..Lbfgs::default()
            },
        ] {
            assert!(l.validate().is_err());
            let mut x = vec![1.0f32];
            let r = l
                .clone()
                .minimize(&mut x, fresh(|x| Ok((x[0] as f64, vec![1.0]))), 5, |_| {
                    Ok(())
                });
            assert!(matches!(r, Err(Error::Config(_))));
        }
    }
}
