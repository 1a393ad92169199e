//! neural-style: CPU-only neural style transfer (Gatys, Ecker & Bethge 2015) on a VGG-19 whose
//! forward and backward passes are written from scratch on im2col + SIMD GEMM.
//!
//! Arrays are `ndarray::Array3<f32>` in CHW layout and *net space*: RGB in 0..255 minus the
//! per-channel ImageNet mean ([`image::MEAN`]), the space the Caffe VGG-19 weights expect.
//!
//! ```no_run
//! use neural_style::{image, Adam, LossConfig, Objective, Vgg19};
//!
//! # fn main() -> Result<(), neural_style::Error> {
//! let config = LossConfig::default(); // the seed's configuration
//! let vgg = Vgg19::load_for("weights/vgg19.npz", &config)?;
//! let content = image::load_net("examples/astronaut.jpg", 256)?;
//! let style = image::load_net("examples/starry-night.jpg", 256)?;
//! let objective = Objective::new(&vgg, &content, &[(style, 1.0)], &config)?;
//!
//! let mut x = content.clone();
//! let mut adam = Adam::new(2.0, 0.9, 0.999, 1e-8)?;
//! for _ in 0..100 {
//!     let eval = objective.evaluate(&x)?;
//!     adam.step(x.as_slice_mut().unwrap(), eval.grad.as_slice().unwrap());
//! }
//! image::save_net(&x, "painted.png")?;
//! # Ok(())
//! # }
//! ```

pub mod batch;
pub mod checkpoint;
pub mod error;
pub mod gemm;
pub mod image;
pub mod job;
pub mod loss;
pub mod memory;
pub mod npz;
pub mod ops;
pub mod optim;
pub mod paint;
pub mod preset;
pub mod profile;
pub mod progress;
pub mod style_cache;
pub mod tiling;
pub mod transfer;
pub mod vgg;

pub use checkpoint::Checkpoint;
pub use error::{Error, Result};
pub use gemm::Real;
pub use job::{InitSpec, Job, Layers, Optimizer, OriginalColors, StyleMask};
pub use loss::{Evaluation, LossConfig, Masks, Objective, StyleGrams, StyleLoss};
pub use memory::KeepKernels;
pub use ops::Pool;
pub use optim::{Adam, Lbfgs};
pub use paint::{Cancel, CheckpointPolicy, Control, Event, Painter, Painting};
pub use preset::Preset;
pub use style_cache::StyleCache;
pub use vgg::{Vgg, Vgg19};

/// The README's Rust example, compiled as a doctest so that it cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
