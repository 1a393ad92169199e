//! The tiled evaluation equals the untiled one: the tiny random VGG-19 in f64 to 1e-10, the
//! real weights in f32 to 1e-5 (relative L2), at tile sides smaller and larger than the halo.

mod common;

use common::*;
use ndarray::Array3;
use neural_style::{Evaluation, LossConfig, Objective, Pool, Real, StyleGrams, StyleLoss, Vgg};

/// Deterministic values in [-r, r] around `mean` (xorshift; the tests need no rand crate).
fn noisy<T: Real>((c, h, w): (usize, usize, usize), seed: u64, mean: f64, r: f64) -> Array3<T> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    Array3::from_shape_fn((c, h, w), |_| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        T::from_f64(mean + r * ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0))
    })
}

fn max_rel(a: &Array3<f64>, b: &Array3<f64>) -> f64 {
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b.iter())
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

/// The untiled and the tiled evaluations of one objective at `x`.
fn both<T: Real>(
    vgg: &Vgg<T>,
    content: &Array3<T>,
    styles: &[(Array3<T>, T)],
    config: &LossConfig,
    x: &Array3<T>,
    tile: usize,
) -> (Evaluation<T>, Evaluation<T>) {
    let style_layers = config.style_indices().unwrap();
    let grams = |tile| {
        styles
            .iter()
            .map(|(s, _)| StyleGrams::compute_tiled(vgg, s, &style_layers, config.pool, tile))
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
    };
    let (whole_grams, tiled_grams) = (grams(None), grams(Some(tile)));
    fn blend<'g, T: Real>(
        g: &'g [StyleGrams<T>],
        styles: &[(Array3<T>, T)],
    ) -> Vec<(&'g StyleGrams<T>, T)> {
        g.iter().zip(styles).map(|(g, (_, b))| (g, *b)).collect()
    }
    let whole =
        Objective::with_style_grams(vgg, content, &blend(&whole_grams, styles), config).unwrap();
    let tiled = Objective::with_style_grams_tiled(
        vgg,
        content,
        &blend(&tiled_grams, styles),
        config,
        Some(tile),
    )
    .unwrap();
    assert!(tiled.tile_grid().unwrap().tiles.len() > 1 || tile >= 64);
    (whole.evaluate(x).unwrap(), tiled.evaluate(x).unwrap())
}

fn tiny_configs() -> Vec<LossConfig> {
    let seed = LossConfig {
        tv_weight: 0.5,
        ..LossConfig::default()
    };
    // Shallow content layers, a style layer used twice, max pooling: every kind of tap.
    let shallow = LossConfig {
        content_layers: vec![("conv1_2".into(), 0.5), ("conv3_1".into(), 2.0)],
        style_layers: vec![
            ("conv1_1".into(), 0.5),
            ("conv2_2".into(), 0.3),
            ("conv2_2".into(), 0.2),
            ("conv4_4".into(), 1.0),
        ],
        pool: Pool::Max,
        ..LossConfig::default()
    };
    // The mean + covariance loss, on a layer used twice too.
    let w2 = LossConfig {
        style_loss: StyleLoss::W2,
        style_layers: vec![
            ("conv1_1".into(), 0.5),
            ("conv3_1".into(), 0.3),
            ("conv3_1".into(), 0.2),
            ("conv5_1".into(), 1.0),
        ],
        ..seed.clone()
    };
    vec![seed, shallow, w2]
}

#[test]
fn tiny_vgg_f64_tiled_equals_untiled_to_1e10() {
    let vgg = Vgg::<f64>::load_layers(data("tiny_vgg.npz"), Some(&TINY_WIDTHS), 16).unwrap();
    // Odd sides, so the poolings drop rows and columns, as they do untiled.
    let dims = (3, 75, 101);
    let content = noisy::<f64>(dims, 1, 10.0, 60.0);
    let styles = vec![
        (noisy::<f64>((3, 50, 61), 2, -5.0, 80.0), 0.3),
        (noisy::<f64>((3, 83, 70), 3, 0.0, 40.0), 0.7),
    ];
    let x = noisy::<f64>(dims, 4, 0.0, 50.0);
    for config in tiny_configs() {
        for pool in [Pool::Avg, Pool::Max, Pool::L2] {
            let config = LossConfig {
                pool,
                ..config.clone()
            };
            // Tiles smaller than the halo (80), about its size, and one over the whole image.
            for tile in [16, 32, 48, 96, 112] {
                let (whole, tiled) = both(&vgg, &content, &styles, &config, &x, tile);
                for (name, a, b) in [
                    ("content", tiled.content, whole.content),
                    ("style", tiled.style, whole.style),
                    ("tv", tiled.tv, whole.tv),
                    ("total", tiled.total, whole.total),
                ] {
                    assert!(
                        rel(a, b) < 1e-10 || (a == 0.0 && b == 0.0),
                        "{pool:?} tile {tile} {name}: {a} vs {b}"
                    );
                }
                let err = max_rel(&tiled.grad, &whole.grad);
                assert!(err < 1e-10, "{pool:?} tile {tile}: gradient error {err:e}");
            }
        }
    }
}

#[test]
fn tiled_gradient_matches_finite_differences_f64() {
    // The tiled gradient on its own terms: a directional derivative of the tiled objective.
    let vgg = Vgg::<f64>::load_layers(data("tiny_vgg.npz"), Some(&TINY_WIDTHS), 13).unwrap();
    let dims = (3, 40, 36);
    let content = noisy::<f64>(dims, 5, 0.0, 60.0);
    let style = noisy::<f64>((3, 32, 32), 6, 0.0, 60.0);
    let config = LossConfig::default();
    let layers = config.style_indices().unwrap();
    let grams = StyleGrams::compute_tiled(&vgg, &style, &layers, config.pool, Some(16)).unwrap();
    let obj =
        Objective::with_style_grams_tiled(&vgg, &content, &[(&grams, 1.0)], &config, Some(16))
            .unwrap();
    let x = noisy::<f64>(dims, 7, 0.0, 40.0);
    let grad = obj.evaluate(&x).unwrap().grad;
    let dir = noisy::<f64>(dims, 8, 0.0, 1.0);
    let h = 1e-3;
    let f = |x: &Array3<f64>| obj.evaluate(x).unwrap().total;
    let num = (f(&(&x + &(&dir * h))) - f(&(&x - &(&dir * h)))) / (2.0 * h);
    let ana = (&grad * &dir).sum();
    assert!(rel(ana, num) < 1e-6, "{ana} vs {num}");
}

#[test]
fn real_vgg_f32_tiled_equals_untiled_to_1e5() {
    let vgg = Vgg::<f32>::load(real_weights()).unwrap();
    let content = neural_style::image::rgb_to_net(&images::gradient(150, 112));
    let style = neural_style::image::rgb_to_net(&images::stripes(120, 96));
    let x = &content + &noisy::<f32>(content.dim(), 9, 0.0, 20.0);
    let config = LossConfig::default();
    for tile in [32, 64] {
        let (whole, tiled) = both(&vgg, &content, &[(style.clone(), 1.0)], &config, &x, tile);
        let err = rel_l2(&tiled.grad, &whole.grad);
        assert!(err < 1e-5, "tile {tile}: gradient error {err:e}");
        assert!(
            rel(tiled.total, whole.total) < 1e-5,
            "{} vs {}",
            tiled.total,
            whole.total
        );
    }
}
