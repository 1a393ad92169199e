//! Spatial control (`Masks`): finite-difference checks of masked objectives in f64 on the tiny
//! random VGG-19, tiled equal to untiled, and exact relations that would fail if a mask were
//! ignored or misapplied.

mod common;

use common::*;
use ndarray::{Array2, Array3};
use neural_style::loss::Masks;
use neural_style::{Evaluation, LossConfig, Objective, Pool, StyleGrams, StyleLoss, Vgg};

fn noisy((c, h, w): (usize, usize, usize), seed: u64, mean: f64, r: f64) -> Array3<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    Array3::from_shape_fn((c, h, w), |_| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        mean + r * ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0)
    })
}

/// A soft left/right split: 1 on the left, 0 on the right, a linear ramp between.
fn split(h: usize, w: usize, left: bool) -> Array2<f64> {
    Array2::from_shape_fn((h, w), |(_, x)| {
        let t = ((x as f64 - 0.4 * w as f64) / (0.2 * w as f64)).clamp(0.0, 1.0);
        if left {
            1.0 - t
        } else {
            t
        }
    })
}

struct Setup {
    vgg: Vgg<f64>,
    content: Array3<f64>,
    grams: Vec<StyleGrams<f64>>,
    x: Array3<f64>,
}

fn setup() -> Setup {
    let vgg = Vgg::<f64>::load_layers(data("tiny_vgg.npz"), Some(&TINY_WIDTHS), 13).unwrap();
    let dims = (3, 40, 52);
    let content = noisy(dims, 1, 10.0, 60.0);
    let layers = LossConfig::default().style_indices().unwrap();
    let grams = [
        noisy((3, 44, 40), 2, -5.0, 80.0),
        noisy((3, 36, 48), 3, 0.0, 40.0),
    ]
    .iter()
    .map(|s| StyleGrams::compute(&vgg, s, &layers, Pool::Avg).unwrap())
    .collect();
    let x = noisy(dims, 4, 0.0, 50.0);
    Setup {
        vgg,
        content,
        grams,
        x,
    }
}

fn config(style_loss: StyleLoss) -> LossConfig {
    let mut c = LossConfig {
        style_loss,
        tv_weight: 0.5,
        ..LossConfig::default()
    };
    if style_loss == StyleLoss::W2 {
        // conv5_1 of a 40 x 52 image has 6 positions for 16 channels (see tests/gradcheck.rs).
        c.style_layers.retain(|(n, _)| n != "conv5_1");
    }
    c
}

fn masks(s: &Setup, style: [bool; 2], content: Option<f64>) -> Masks<f64> {
    let (h, w) = (s.content.dim().1, s.content.dim().2);
    Masks {
        style: style.iter().map(|&l| Some(split(h, w, l))).collect(),
        content: content.map(|k| (split(h, w, false), k)),
    }
}

fn objective<'a>(
    s: &'a Setup,
    cfg: &LossConfig,
    masks: &Masks<f64>,
    tile: Option<usize>,
    blend: [f64; 2],
) -> Objective<'a, f64> {
    let styles: Vec<(&StyleGrams<f64>, f64)> = s.grams.iter().zip(blend).collect();
    Objective::with_masks(&s.vgg, &s.content, &styles, cfg, tile, masks).unwrap()
}

fn directional_error(obj: &Objective<'_, f64>, x: &Array3<f64>) -> f64 {
    let grad = obj.evaluate(x).unwrap().grad;
    // Small: these inputs are rough, so the truncation error of 1e-3 is already ~1e-3.
    let h = 1e-4;
    let f = |x: &Array3<f64>| obj.evaluate(x).unwrap().total;
    let mut worst: f64 = 0.0;
    for seed in 10..13 {
        let dir = noisy(x.dim(), seed, 0.0, 1.0);
        let num = (f(&(x + &(&dir * h))) - f(&(x - &(&dir * h)))) / (2.0 * h);
        let ana = (&grad * &dir).sum();
        worst = worst.max(rel(ana, num));
    }
    worst
}

#[test]
fn masked_objectives_match_finite_differences_f64() {
    let s = setup();
    for loss in [StyleLoss::Gram, StyleLoss::W2] {
        let m = masks(&s, [true, false], Some(4.0));
        for tile in [None, Some(16)] {
            let err = directional_error(&objective(&s, &config(loss), &m, tile, [0.3, 0.7]), &s.x);
            assert!(err < 1e-6, "{loss:?} tile {tile:?}: {err:e}");
        }
    }
}

fn assert_close(a: &Evaluation<f64>, b: &Evaluation<f64>, tol: f64, what: &str) {
    for (name, x, y) in [
        ("content", a.content, b.content),
        ("style", a.style, b.style),
        ("total", a.total, b.total),
    ] {
        assert!(rel(x, y) < tol, "{what} {name}: {x} vs {y}");
    }
    let err = rel_l2(&a.grad, &b.grad);
    assert!(err < tol, "{what}: gradient {err:e}");
}

#[test]
fn tiled_masked_objectives_equal_untiled() {
    let s = setup();
    for loss in [StyleLoss::Gram, StyleLoss::W2] {
        let m = masks(&s, [true, false], Some(3.0));
        let whole = objective(&s, &config(loss), &m, None, [0.5, 0.5])
            .evaluate(&s.x)
            .unwrap();
        for tile in [16, 32] {
            let tiled = objective(&s, &config(loss), &m, Some(tile), [0.5, 0.5])
                .evaluate(&s.x)
                .unwrap();
            assert_close(&tiled, &whole, 1e-10, &format!("{loss:?} tile {tile}"));
        }
    }
}

#[test]
fn a_full_mask_is_the_style_alone_and_an_empty_one_removes_it() {
    // Style 1 everywhere, style 2 nowhere: style 1's unmasked objective, its term weighted by
    // its blend share (1/2).
    let s = setup();
    let (h, w) = (s.content.dim().1, s.content.dim().2);
    for loss in [StyleLoss::Gram, StyleLoss::W2] {
        let cfg = LossConfig {
            content_weight: 0.0,
            tv_weight: 0.0,
            ..config(loss)
        };
        let m = Masks {
            style: vec![Some(Array2::ones((h, w))), Some(Array2::zeros((h, w)))],
            content: None,
        };
        let masked = objective(&s, &cfg, &m, None, [0.5, 0.5])
            .evaluate(&s.x)
            .unwrap();
        let alone = Objective::with_style_grams(&s.vgg, &s.content, &[(&s.grams[0], 1.0)], &cfg)
            .unwrap()
            .evaluate(&s.x)
            .unwrap();
        assert!(rel(masked.style, 0.5 * alone.style) < 1e-10, "{loss:?}");
        let err = rel_l2(&masked.grad, &(&alone.grad * 0.5));
        assert!(err < 1e-10, "{loss:?}: {err:e}");
    }
}

#[test]
fn a_content_mask_weights_the_content_loss_where_it_is_white() {
    let s = setup();
    let (h, w) = (s.content.dim().1, s.content.dim().2);
    let cfg = LossConfig {
        style_weight: 0.0,
        tv_weight: 0.0,
        ..LossConfig::default()
    };
    let eval = |mask: Option<(Array2<f64>, f64)>| {
        let m = Masks {
            style: Vec::new(),
            content: mask,
        };
        objective(&s, &cfg, &m, None, [0.5, 0.5])
            .evaluate(&s.x)
            .unwrap()
    };
    let plain = eval(None);
    // White everywhere at weight 3: three times the loss; black everywhere: the plain loss.
    let white = eval(Some((Array2::ones((h, w)), 3.0)));
    assert!(rel(white.content, 3.0 * plain.content) < 1e-12);
    assert!(rel_l2(&white.grad, &(&plain.grad * 3.0)) < 1e-12);
    let black = eval(Some((Array2::zeros((h, w)), 3.0)));
    assert!(rel(black.content, plain.content) < 1e-12);
    // Half white: in between, and closer to the photograph's gradient pull on that side.
    let half = eval(Some((split(h, w, true), 3.0)));
    assert!(half.content > plain.content && half.content < white.content);
}

#[test]
fn bad_masks_are_refused() {
    let s = setup();
    let cfg = LossConfig::default();
    let styles: Vec<(&StyleGrams<f64>, f64)> = s.grams.iter().zip([0.5, 0.5]).collect();
    let try_masks = |m: Masks<f64>| {
        Objective::with_masks(&s.vgg, &s.content, &styles, &cfg, None, &m)
            .err()
            .map(|e| e.to_string())
    };
    let wrong_size = Masks {
        style: vec![Some(Array2::ones((5, 5))), None],
        content: None,
    };
    assert!(try_masks(wrong_size).unwrap().contains("mask"));
    let one_for_two = Masks {
        style: vec![Some(Array2::ones((40, 52)))],
        content: None,
    };
    assert!(try_masks(one_for_two)
        .unwrap()
        .contains("1 style masks for 2"));
    let out_of_range = Masks {
        style: Vec::new(),
        content: Some((Array2::from_elem((40, 52), 1.5), 2.0)),
    };
    assert!(try_masks(out_of_range).unwrap().contains("[0, 1]"));
}
