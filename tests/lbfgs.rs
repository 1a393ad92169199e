//! L-BFGS on the engine's objective (tiny random VGG-19, golden inputs): it must beat Adam at an
//! equal number of objective evaluations from the same start, and report consistent progress.

mod common;

use common::*;
use ndarray::Array3;
use neural_style::npz::Npz;
use neural_style::optim::Lbfgs;
use neural_style::optim::Stop;
use neural_style::transfer::{initial_image, run_adam, run_lbfgs, Init};
use neural_style::{Adam, Objective, Pool, Vgg};

/// Objective evaluations each optimiser gets.
const BUDGET: usize = 40;

struct Setup {
    vgg: Vgg<f32>,
    content: Array3<f32>,
    styles: Vec<(Array3<f32>, f32)>,
    config: neural_style::LossConfig,
}

fn setup() -> Setup {
    let mut g = Npz::open(&data("golden_tiny.npz")).unwrap();
    Setup {
        vgg: Vgg::<f32>::load_layers(data("tiny_vgg.npz"), None, 13).unwrap(),
        config: golden_config(&mut g, Pool::Avg),
        content: array3(&mut g, "content"),
        styles: vec![
            (array3(&mut g, "style0"), 0.3),
            (array3(&mut g, "style1"), 0.7),
        ],
    }
}

#[test]
fn lbfgs_beats_adam_at_equal_evaluations_on_the_tiny_vgg() {
    let s = setup();
    let objective = Objective::new(&s.vgg, &s.content, &s.styles, &s.config).unwrap();
    let x0 = initial_image(&Init::default(), &s.content, 1).unwrap();
    let start = objective.evaluate(&x0).unwrap().total;

    let mut adam_best = f64::INFINITY;
    for lr in [2.0, 10.0] {
        let mut adam = Adam::new(lr, 0.9, 0.999, 1e-8).unwrap();
        let mut evaluations = 0;
        let x = run_adam(&objective, x0.clone(), &mut adam, BUDGET, &mut None, |st| {
            evaluations = st.evaluations;
            Ok(())
        })
        .unwrap();
        assert_eq!(evaluations, BUDGET);
        let value = objective.evaluate(&x).unwrap().total;
        eprintln!("adam lr {lr}: {start:.4e} -> {value:.4e}");
        adam_best = adam_best.min(value);
    }

    let lbfgs = Lbfgs {
        max_evaluations: BUDGET,
        ..Lbfgs::default()
    };
    let mut last: Option<(usize, f64, Array3<f32>)> = None;
    let mut values = vec![start];
    let (x, report) = run_lbfgs(&objective, x0.clone(), &lbfgs, 1000, &mut None, |st| {
        assert!(st.evaluations <= BUDGET);
        assert!(st.evaluations > last.as_ref().map_or(1, |l| l.0));
        values.push(st.eval.total);
        last = Some((st.evaluations, st.eval.total, st.image.clone()));
        Ok(())
    })
    .unwrap();
    eprintln!(
        "lbfgs: {start:.4e} -> {:.4e} in {} iterations, {} evaluations, {:?}",
        report.value, report.iterations, report.evaluations, report.stop
    );
    let (evaluations, value, image) = last.expect("at least one iteration");
    assert_eq!(evaluations, report.evaluations);
    assert_eq!(value, report.value);
    assert_eq!(image, x);
    // The reported terms belong to the returned image.
    assert_eq!(objective.evaluate(&x).unwrap().total, report.value);
    assert!(values.windows(2).all(|w| w[1] < w[0]), "{values:?}");
    assert!(x.iter().all(|v| v.is_finite()));
    assert!(report.evaluations <= BUDGET);
    assert_eq!(report.stop, Stop::MaxEvaluations, "{report:?}");
    assert!(
        report.value < 0.5 * adam_best,
        "L-BFGS {:.4e} vs best Adam {adam_best:.4e} after {BUDGET} evaluations",
        report.value
    );
}

#[test]
fn run_lbfgs_rejects_a_wrongly_shaped_start() {
    let s = setup();
    let objective = Objective::new(&s.vgg, &s.content, &s.styles, &s.config).unwrap();
    let (c, h, w) = s.content.dim();
    let x = Array3::zeros((c, h + 1, w));
    let r = run_lbfgs(&objective, x, &Lbfgs::default(), 5, &mut None, |_| Ok(()));
    assert!(matches!(r, Err(neural_style::Error::Shape(_))));
}
