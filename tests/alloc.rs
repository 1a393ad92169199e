//! No allocation in the steady state of a step: a counting global allocator watches whole Adam
//! steps (objective evaluation, forward and backward through every convolution algorithm, the
//! losses, the update) after the first has sized the buffers, and whole L-BFGS iterations
//! (line search included) once its history is full. One test function, because the counter
//! sees every thread of the process.

mod common;

use common::*;
use ndarray::Array3;
use neural_style::npz::Npz;
use neural_style::transfer::{run_adam, run_lbfgs};
use neural_style::{Adam, Lbfgs, LossConfig, Objective, Pool, Real, Vgg};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

struct Counting;

/// Allocations by the engine, and inside the GEMM libraries (their packing buffers, which
/// neither library lets the caller provide).
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
static IN_GEMM: AtomicUsize = AtomicUsize::new(0);

fn count() {
    if neural_style::gemm::in_kernel() {
        IN_GEMM.fetch_add(1, Relaxed);
    } else {
        ALLOCATIONS.fetch_add(1, Relaxed);
    }
}

// SAFETY: forwards every call unchanged to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations (by the engine, inside the GEMM libraries) between consecutive calls of the
/// callback `run` hands to the optimiser: one entry per step or iteration.
fn allocations_between_callbacks(
    n: usize,
    run: impl FnOnce(&mut (dyn FnMut() + Send)),
) -> Vec<(usize, usize)> {
    let mut counts = Vec::with_capacity(n);
    let read = || (ALLOCATIONS.load(Relaxed), IN_GEMM.load(Relaxed));
    let mut last = read();
    run(&mut || {
        let now = read();
        counts.push((now.0 - last.0, now.1 - last.1));
        // Read again: pushing may itself have allocated, which is not the step's.
        last = read();
    });
    counts
}

/// Allocations in each of `steps` Adam steps on `objective` from `x`.
fn allocations_per_step(
    objective: &Objective<f32>,
    x: Array3<f32>,
    steps: usize,
) -> Vec<(usize, usize)> {
    let mut adam = Adam::new(2.0, 0.9, 0.999, 1e-8).unwrap();
    allocations_between_callbacks(steps, |tick| {
        run_adam(objective, x, &mut adam, steps, &mut None, |_| {
            tick();
            Ok(())
        })
        .unwrap();
    })
}

/// Allocations in each of `iterations` L-BFGS iterations with `history` pairs (each iteration
/// one or more evaluations, as its line search needs).
fn allocations_per_iteration(
    objective: &Objective<f32>,
    x: Array3<f32>,
    history: usize,
    iterations: usize,
) -> Vec<(usize, usize)> {
    let lbfgs = Lbfgs::new(history).unwrap();
    allocations_between_callbacks(iterations, |tick| {
        run_lbfgs(objective, x, &lbfgs, iterations, &mut None, |_| {
            tick();
            Ok(())
        })
        .unwrap();
    })
}

fn check(what: &str, counts: &[(usize, usize)]) {
    eprintln!("{what}: allocations per step (engine, inside GEMM calls): {counts:?}");
    assert!(counts[0].0 > 0, "{what}: the first step sizes the buffers");
    assert!(
        counts[1..].iter().all(|&(n, _)| n == 0),
        "{what}: steps after the first allocated: {counts:?}"
    );
}

fn content_and_style(h: usize, w: usize) -> (Array3<f32>, Array3<f32>) {
    let f = |seed: f32| {
        Array3::from_shape_fn((3, h, w), |(c, y, x)| {
            ((c as f32 + 1.0) * seed * (y as f32 * 0.37 + x as f32 * 0.11)).sin() * 60.0
        })
    };
    (f(1.0), f(2.3))
}

#[test]
fn steps_after_the_first_allocate_nothing() {
    // Real VGG-19 at 128 x 160: im2col (conv1_1), col2im (its gradient), Winograd F(4x4) and
    // F(2x2), both poolings, the content, style and tv losses.
    let vgg = Vgg::<f32>::load(real_weights()).unwrap();
    let (content, style) = content_and_style(128, 160);
    for pool in [Pool::Avg, Pool::Max] {
        let config = LossConfig {
            tv_weight: 1e-3,
            pool,
            ..LossConfig::default()
        };
        let objective = Objective::new(&vgg, &content, &[(style.clone(), 1.0)], &config).unwrap();
        check(
            &format!("real VGG-19, {pool:?} pooling"),
            &allocations_per_step(&objective, content.clone(), 3),
        );
    }

    // Kept Winograd kernels: built in the first step, reused after.
    let objective = Objective::new(&vgg, &content, &[(style, 1.0)], &LossConfig::default())
        .unwrap()
        .keep_kernels(usize::MAX);
    check(
        "real VGG-19, kept kernels",
        &allocations_per_step(&objective, content.clone(), 3),
    );

    // The tiny VGG with the golden inputs and two blended styles.
    let mut g = Npz::open(&data("golden_tiny.npz")).unwrap();
    let tiny = Vgg::<f32>::load_layers(data("tiny_vgg.npz"), None, 13).unwrap();
    let styles = [
        (array3::<f32>(&mut g, "style0"), 0.3),
        (array3::<f32>(&mut g, "style1"), 0.7),
    ];
    let config = golden_config(&mut g, Pool::Avg);
    let content: Array3<f32> = array3(&mut g, "content");
    let objective = Objective::new(&tiny, &content, &styles, &config).unwrap();
    let x = content.mapv(|v| v.as_f64() as f32 * 0.5);
    check("tiny VGG", &allocations_per_step(&objective, x.clone(), 3));

    // L-BFGS: its pairs are allocated while the history fills (3 here), then recycled.
    let counts = allocations_per_iteration(&objective, x, 3, 9);
    eprintln!("tiny VGG, L-BFGS: allocations per iteration (engine, inside GEMM): {counts:?}");
    assert_eq!(counts.len(), 9, "no early stop");
    assert!(counts[0].0 > 0, "the first iteration sizes the buffers");
    assert!(
        counts[4..].iter().all(|&(n, _)| n == 0),
        "L-BFGS iterations with a full history allocated: {counts:?}"
    );
}
