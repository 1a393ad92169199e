//! Helpers shared by the integration tests: reading the golden data written by
//! `scripts/golden.py`.
#![allow(dead_code)]

pub mod cli;
pub mod images;

use ndarray::Array3;
use neural_style::npz::Npz;
use neural_style::{LossConfig, Pool, Real};
use std::path::{Path, PathBuf};

pub const TINY_WIDTHS: [usize; 5] = [8, 12, 16, 16, 16];

pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// The real weights; a missing file fails the test with the command that fetches it.
pub fn real_weights() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/vgg19.npz");
    assert!(
        p.exists(),
        "{} is missing: run `bash scripts/fetch-weights.sh` first",
        p.display()
    );
    p
}

pub fn array3<T: Real>(npz: &mut Npz, key: &str) -> Array3<T> {
    let a = npz.array::<T>(key).unwrap();
    let [c, h, w] = a.shape[..] else {
        panic!("{key}: shape {:?}", a.shape)
    };
    Array3::from_shape_vec((c, h, w), a.data).unwrap()
}

/// The configuration the golden files were made with (seed layers, given weights).
pub fn golden_config(npz: &mut Npz, pool: Pool) -> LossConfig {
    LossConfig {
        content_weight: npz.scalar("config.alpha").unwrap(),
        style_weight: npz.scalar("config.beta").unwrap(),
        tv_weight: npz.scalar("config.gamma").unwrap(),
        pool,
        ..LossConfig::default()
    }
}

/// |a - b| / |b|.
pub fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs()
}

/// ||a - b||_2 / ||b||_2.
pub fn rel_l2<A: Real, B: Real>(a: &Array3<A>, b: &Array3<B>) -> f64 {
    assert_eq!(a.shape(), b.shape());
    let (mut num, mut den) = (0.0, 0.0);
    for (x, y) in a.iter().zip(b.iter()) {
        num += (x.as_f64() - y.as_f64()).powi(2);
        den += y.as_f64().powi(2);
    }
    (num / den).sqrt()
}
