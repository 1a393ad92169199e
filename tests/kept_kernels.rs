//! Kept Winograd kernels (`Objective::keep_kernels`, the CLI's `--keep-kernels`) change the
//! time of an evaluation, never its result: with the real VGG-19, the objective's value and
//! gradient are bitwise those of transforming every kernel on every call, on the first
//! evaluation (which builds the kept kernels), the next one (which reuses them), and with a
//! budget that keeps only the deepest layers.

mod common;

use common::*;
use ndarray::Array3;
use neural_style::{LossConfig, Objective, Vgg};

fn image(h: usize, w: usize, seed: f32) -> Array3<f32> {
    Array3::from_shape_fn((3, h, w), |(c, y, x)| {
        ((c as f32 + 1.0) * seed * (y as f32 * 0.31 + x as f32 * 0.17)).sin() * 70.0
    })
}

#[test]
fn kept_kernels_give_bitwise_the_same_objective() {
    let vgg = Vgg::<f32>::load(real_weights()).unwrap();
    let config = LossConfig {
        tv_weight: 1e-3,
        ..LossConfig::default()
    };
    // 128 x 160: blocks 1-3 on F(4x4), block 4 (16 x 20) on F(2x2), conv5_1 on im2col.
    // 96 x 96: block 3 (24 x 24) drops to F(2x2) and block 4 to im2col.
    for (h, w) in [(128, 160), (96, 96)] {
        let content = image(h, w, 1.0);
        let style = image(h, w, 2.1);
        let x = image(h, w, 0.7);
        let build = || Objective::new(&vgg, &content, &[(style.clone(), 1.0)], &config).unwrap();
        let plain = build();
        let want = [plain.evaluate(&x).unwrap(), plain.evaluate(&x).unwrap()];
        // Everything, and a budget that keeps one kernel (conv4_1 forward, 8.4 MB).
        for budget in [usize::MAX, 9 << 20] {
            let kept = build().keep_kernels(budget);
            for (step, want) in want.iter().enumerate() {
                let got = kept.evaluate(&x).unwrap();
                let what = format!("{h}x{w}, budget {budget}, evaluation {step}");
                assert_eq!(got.total.to_bits(), want.total.to_bits(), "{what}: total");
                assert!(got.grad == want.grad, "{what}: gradient");
            }
        }
    }
}
