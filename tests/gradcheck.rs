//! Finite-difference check of the whole objective (forward, losses, backward) on the tiny random
//! VGG-19, in f64, for every pooling and both style losses.

mod common;

use common::*;
use ndarray::Array3;
use neural_style::npz::Npz;
use neural_style::{LossConfig, Objective, Pool, StyleLoss, Vgg};

fn check(pool: Pool) {
    check_with(pool, StyleLoss::Gram);
}

fn check_with(pool: Pool, style_loss: StyleLoss) {
    let mut g = Npz::open(&data("golden_tiny.npz")).unwrap();
    let vgg = Vgg::<f64>::load_layers(data("tiny_vgg.npz"), Some(&TINY_WIDTHS), 13).unwrap();
    let mut config = LossConfig {
        style_loss,
        ..golden_config(&mut g, pool)
    };
    if style_loss == StyleLoss::W2 {
        // At conv5_1 this 36 x 44 image has 4 positions for 16 channels: a covariance of rank
        // 3 whose near-zero eigenvalues put rounding noise far above what a difference
        // quotient resolves (rank-deficient layers are checked in the unit tests).
        config.style_layers.retain(|(name, _)| name != "conv5_1");
    }
    let content: Array3<f64> = array3(&mut g, "content");
    let styles = vec![
        (array3(&mut g, "style0"), 0.3),
        (array3(&mut g, "style1"), 0.7),
    ];
    let x: Array3<f64> = array3(&mut g, "x");
    let obj = Objective::new(&vgg, &content, &styles, &config).unwrap();
    let grad = obj.evaluate(&x).unwrap().grad;
    let f = |x: &Array3<f64>| obj.evaluate(x).unwrap().total;
    let h = 1e-3;

    // Single coordinates spread over channels, corners and edges (where padding matters).
    let (_, hh, ww) = x.dim();
    let mut worst: f64 = 0.0;
    let scale = grad.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for k in 0..60 {
        let idx = (k % 3, (k * 7) % hh, (k * 13) % ww);
        let idx = if k < 4 {
            (k % 3, (k / 2) * (hh - 1), (k % 2) * (ww - 1))
        } else {
            idx
        };
        let (mut xp, mut xm) = (x.clone(), x.clone());
        xp[idx] += h;
        xm[idx] -= h;
        let num = (f(&xp) - f(&xm)) / (2.0 * h);
        worst = worst.max((num - grad[idx]).abs() / scale);
    }
    assert!(
        worst < 1e-6,
        "{pool:?} {style_loss:?}: coordinate check error {worst:e}"
    );

    // Directional derivatives along dense random directions test every coordinate at once.
    for seed in 0..3u64 {
        let mut s = seed * 2654435761 + 1;
        let dir = x.mapv(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % 2001) as f64 / 1000.0 - 1.0
        });
        let num = (f(&(&x + &(&dir * h))) - f(&(&x - &(&dir * h)))) / (2.0 * h);
        let ana: f64 = (&grad * &dir).sum();
        let err = (num - ana).abs() / ana.abs();
        assert!(
            err < 1e-6,
            "{pool:?} {style_loss:?}: directional error {err:e}"
        );
    }
}

#[test]
fn objective_gradient_matches_finite_differences_avg_pool() {
    check(Pool::Avg);
}

#[test]
fn objective_gradient_matches_finite_differences_max_pool() {
    check(Pool::Max);
}

#[test]
fn objective_gradient_matches_finite_differences_l2_pool() {
    check(Pool::L2);
}

#[test]
fn objective_gradient_matches_finite_differences_w2_style_loss() {
    check_with(Pool::Avg, StyleLoss::W2);
    check_with(Pool::Max, StyleLoss::W2);
}
