//! Optimisers that update the pixels in place from the objective's gradient: [`Adam`], a
//! first-order method with a fixed learning rate, and [`Lbfgs`], a limited-memory quasi-Newton
//! method with a strong-Wolfe line search (the better result per objective evaluation).

mod adam;
mod lbfgs;

pub use adam::Adam;
pub use lbfgs::{Iterate, Lbfgs, LbfgsState, Pair, Report, Stop};
