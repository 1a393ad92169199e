//! The engine against PyTorch golden values (`scripts/golden.py`): a tiny random VGG-19 in f64
//! and f32, single ops, and the real weights at 128x160 in f32.

mod common;

use common::*;
use ndarray::Array3;
use neural_style::npz::Npz;
use neural_style::ops::{conv3x3, pool2x2, pool2x2_backward, rotate_kernel, ConvScratch};
use neural_style::{LossConfig, Objective, Pool, Real, StyleLoss, Vgg};

fn tiny_objective_check<T: Real>(pool: Pool, value_tol: f64, grad_tol: f64) {
    tiny_check::<T>(pool, StyleLoss::Gram, value_tol, grad_tol);
}

fn tiny_check<T: Real>(pool: Pool, style_loss: StyleLoss, value_tol: f64, grad_tol: f64) {
    let mut g = Npz::open(&data("golden_tiny.npz")).unwrap();
    let vgg = Vgg::<T>::load_layers(data("tiny_vgg.npz"), Some(&TINY_WIDTHS), 13).unwrap();
    let mut config = LossConfig {
        style_loss,
        ..golden_config(&mut g, pool)
    };
    if style_loss == StyleLoss::W2 {
        // As scripts/golden.py: without conv5_1 (4 positions for 16 channels here).
        config.style_layers.retain(|(name, _)| name != "conv5_1");
    }
    let content = array3::<T>(&mut g, "content");
    let styles = vec![
        (array3::<T>(&mut g, "style0"), T::from_f64(0.3)),
        (array3::<T>(&mut g, "style1"), T::from_f64(0.7)),
    ];
    let x = array3::<T>(&mut g, "x");
    let pool_name = match pool {
        Pool::Avg => "avg",
        Pool::Max => "max",
        Pool::L2 => "l2",
    };
    let p = match style_loss {
        StyleLoss::Gram => pool_name.to_string(),
        StyleLoss::W2 => format!("w2.{pool_name}"),
    };
    let eval = Objective::new(&vgg, &content, &styles, &config)
        .unwrap()
        .evaluate(&x)
        .unwrap();
    for (name, got) in [
        ("content", eval.content),
        ("style", eval.style),
        ("tv", eval.tv),
        ("total", eval.total),
    ] {
        let want = g.scalar(&format!("{p}.{name}")).unwrap();
        assert!(rel(got, want) < value_tol, "{p}.{name}: {got} vs {want}");
    }
    let want = array3::<f64>(&mut g, &format!("{p}.grad"));
    let err = rel_l2(&eval.grad, &want);
    assert!(err < grad_tol, "{p}.grad: relative L2 error {err:e}");

    // Each term's gradient on its own: the style term dominates the total, so this is what
    // would catch a mistake in the content or TV gradient.
    for (term, weights) in [
        ("content", (1.0, 0.0, 0.0)),
        ("style", (0.0, 1.0, 0.0)),
        ("tv", (0.0, 0.0, 1.0)),
    ] {
        let cfg = LossConfig {
            content_weight: weights.0,
            style_weight: weights.1,
            tv_weight: weights.2,
            ..config.clone()
        };
        let eval = Objective::new(&vgg, &content, &styles, &cfg)
            .unwrap()
            .evaluate(&x)
            .unwrap();
        let want = array3::<f64>(&mut g, &format!("{p}.grad_{term}"));
        let err = rel_l2(&eval.grad, &want);
        assert!(err < grad_tol, "{p}.grad_{term}: relative L2 error {err:e}");
    }
}

#[test]
fn tiny_vgg_avg_pool_matches_pytorch_f64() {
    tiny_objective_check::<f64>(Pool::Avg, 1e-11, 1e-10);
}

#[test]
fn tiny_vgg_max_pool_matches_pytorch_f64() {
    tiny_objective_check::<f64>(Pool::Max, 1e-11, 1e-10);
}

#[test]
fn tiny_vgg_avg_pool_matches_pytorch_f32() {
    tiny_objective_check::<f32>(Pool::Avg, 1e-5, 1e-4);
}

#[test]
fn tiny_vgg_max_pool_matches_pytorch_f32() {
    tiny_objective_check::<f32>(Pool::Max, 1e-5, 1e-4);
}

#[test]
fn tiny_vgg_l2_pool_matches_pytorch_f64() {
    tiny_objective_check::<f64>(Pool::L2, 1e-11, 1e-10);
}

#[test]
fn tiny_vgg_l2_pool_matches_pytorch_f32() {
    tiny_objective_check::<f32>(Pool::L2, 1e-5, 1e-4);
}

#[test]
fn tiny_vgg_w2_style_loss_matches_pytorch_f64() {
    tiny_check::<f64>(Pool::Avg, StyleLoss::W2, 1e-10, 1e-8);
    tiny_check::<f64>(Pool::Max, StyleLoss::W2, 1e-10, 1e-8);
}

#[test]
fn tiny_vgg_w2_style_loss_matches_pytorch_f32() {
    // PyTorch's own f32 evaluation is 4e-5 (avg) and 1e-4 (max) from its f64 one here.
    tiny_check::<f32>(Pool::Avg, StyleLoss::W2, 1e-4, 1e-3);
    tiny_check::<f32>(Pool::Max, StyleLoss::W2, 1e-4, 1e-3);
}

#[test]
fn conv_forward_and_input_gradient_match_pytorch() {
    let mut g = Npz::open(&data("golden_tiny.npz")).unwrap();
    let x = g.array::<f64>("op.conv_in").unwrap();
    let w = g.array::<f64>("op.conv_w").unwrap();
    let b = g.array::<f64>("op.conv_b").unwrap();
    let [cin, h, wd] = x.shape[..] else { panic!() };
    let cout = w.shape[0];
    let mut out = vec![0.0; cout * h * wd];
    let ws = &mut ConvScratch::default();
    conv3x3(
        &x.data,
        cin,
        h,
        wd,
        &w.data,
        cout,
        Some(&b.data),
        &mut out,
        ws,
    );
    let want = g.array::<f64>("op.conv_out").unwrap().data;
    assert!(max_abs_diff(&out, &want) < 1e-12);
    let gout = g.array::<f64>("op.conv_gout").unwrap().data;
    let mut gin = vec![0.0; cin * h * wd];
    conv3x3(
        &gout,
        cout,
        h,
        wd,
        &rotate_kernel(&w.data, cout, cin),
        cin,
        None,
        &mut gin,
        ws,
    );
    let want = g.array::<f64>("op.conv_gin").unwrap().data;
    assert!(max_abs_diff(&gin, &want) < 1e-12);
}

#[test]
fn pooling_forward_and_backward_match_pytorch() {
    let mut g = Npz::open(&data("golden_tiny.npz")).unwrap();
    let x = g.array::<f64>("op.avgpool_in").unwrap();
    let [c, h, w] = x.shape[..] else { panic!() };
    let gout = g.array::<f64>("op.pool_gout").unwrap().data;
    for (kind, name) in [(Pool::Avg, "avgpool"), (Pool::Max, "maxpool")] {
        let mut out = vec![0.0; c * (h / 2) * (w / 2)];
        pool2x2(kind, &x.data, c, h, w, &mut out);
        assert!(
            max_abs_diff(
                &out,
                &g.array::<f64>(&format!("op.{name}_out")).unwrap().data
            ) < 1e-14
        );
        let mut gin = vec![0.0; c * h * w];
        pool2x2_backward(kind, &x.data, c, h, w, &gout, &mut gin);
        assert!(
            max_abs_diff(
                &gin,
                &g.array::<f64>(&format!("op.{name}_gin")).unwrap().data
            ) < 1e-14
        );
    }
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// Real VGG-19 weights at 128x160, f32 engine against PyTorch f32 autograd (and f64 for scale).
#[test]
fn real_weights_match_pytorch() {
    let mut g = Npz::open(&data("golden_real.npz")).unwrap();
    let config = golden_config(&mut g, Pool::Avg);
    let vgg = Vgg::<f32>::load_for(real_weights(), &config).unwrap();
    let content: Array3<f32> = array3(&mut g, "content");
    let style: Array3<f32> = array3(&mut g, "style");
    let x: Array3<f32> = array3(&mut g, "x");
    let eval = Objective::new(&vgg, &content, &[(style, 1.0)], &config)
        .unwrap()
        .evaluate(&x)
        .unwrap();
    for prec in ["f32", "f64"] {
        for (name, got) in [
            ("content", eval.content),
            ("style", eval.style),
            ("tv", eval.tv),
            ("total", eval.total),
        ] {
            let want = g.scalar(&format!("{prec}.{name}")).unwrap();
            let err = rel(got, want);
            println!("{prec}.{name}: ours {got:.9e} torch {want:.9e} rel err {err:.2e}");
            assert!(err <= 1e-4, "{prec}.{name}");
        }
        let want = array3::<f64>(&mut g, &format!("{prec}.grad"));
        let err = rel_l2(&eval.grad, &want);
        println!("{prec}.grad: relative L2 error {err:.2e}");
        assert!(err <= 1e-3, "{prec}.grad");
    }
}
