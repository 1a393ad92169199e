//! Checkpoints and exact resume: a painting stopped after any step (by the library's
//! cancellation handle, a real SIGTERM or SIGINT of the CLI, or a SIGKILL at an arbitrary
//! moment) and resumed paints bitwise the picture of the uninterrupted run, for Adam and L-BFGS,
//! single- and multi-scale, with any thread count; damaged or foreign checkpoints and changed
//! settings or inputs are refused with one clear line.

mod common;

use common::images::{checker, gradient, stripes};
use common::{data, real_weights};
use neural_style::{
    Cancel, Checkpoint, CheckpointPolicy, Control, Error, Event, Job, Optimizer, OriginalColors,
    Painter, Vgg19,
};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_neural-style");

struct Files {
    dir: TempDir,
}

impl Files {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        gradient(96, 80)
            .save(dir.path().join("content.png"))
            .unwrap();
        stripes(72, 72).save(dir.path().join("style.png")).unwrap();
        checker(60, 52).save(dir.path().join("style2.png")).unwrap();
        Files { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn job(&self, output: &str) -> Job {
        let mut job = Job::new(
            self.path("content.png"),
            [self.path("style.png"), self.path("style2.png")],
            self.path(output),
        );
        job.style_blend = Some(vec![0.6, 0.4]);
        job.size = 40;
        job.iterations = 8;
        job
    }
}

fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

/// Paints `job` cancelling after global step `stop_after` (counting every stage's steps), then
/// resumes from the checkpoint in a pool of `threads`; returns the final output's bytes.
fn interrupted_and_resumed(vgg: &Vgg19, job: &Job, stop_after: usize, threads: usize) -> Vec<u8> {
    let ck_path = job.output.with_extension("ckpt");
    let _ = std::fs::remove_file(&ck_path);
    let painter = Painter::new(vgg);
    let cancel = Cancel::new();
    let control = Control {
        checkpoint: Some(CheckpointPolicy {
            every_steps: 1000, // only the cancellation writes it
            ..CheckpointPolicy::new(&ck_path)
        }),
        cancel: cancel.clone(),
        ..Control::default()
    };
    let mut steps = 0;
    let first = in_pool(2, || {
        painter.paint_with(job, control.clone(), &mut None, |e| {
            if let Event::Step { .. } = e {
                steps += 1;
                if steps == stop_after {
                    cancel.cancel();
                }
            }
            Ok(())
        })
    });
    match first {
        Err(Error::Cancelled {
            checkpoint: Some(p),
            ..
        }) => assert_eq!(p, ck_path),
        other => panic!("expected a cancellation after step {stop_after}, got {other:?}"),
    }
    assert!(
        job.output.exists(),
        "the current image is written on cancel"
    );
    let ck = Checkpoint::load(&ck_path).unwrap();
    let resumed = Control {
        checkpoint: control.checkpoint.clone(),
        resume: Some(ck),
        ..Control::default()
    };
    in_pool(threads, || {
        Painter::new(vgg).paint_with(job, resumed, &mut None, |_| Ok(()))
    })
    .unwrap();
    std::fs::read(&job.output).unwrap()
}

#[test]
fn a_cancelled_painting_resumes_bitwise_for_every_optimiser_and_schedule() {
    let f = Files::new();
    let tiny = data("tiny_vgg.npz");
    for (optimizer, scales, tile) in [
        (Optimizer::Adam, vec![], None),
        (Optimizer::Lbfgs, vec![], None),
        (Optimizer::Adam, vec![24], None),
        (Optimizer::Lbfgs, vec![24, 32], None),
        // Tiled stages resume bitwise too.
        (Optimizer::Lbfgs, vec![24], Some(16)),
    ] {
        let mut job = f.job("full.png");
        job.tile = tile;
        job.optimizer = optimizer;
        job.history = 3; // pairs retired before the stop
        job.scales = scales.clone();
        let vgg = Vgg19::load_for(&tiny, &job.loss_config()).unwrap();
        let full = in_pool(2, || Painter::new(&vgg).paint(&job, &mut None, |_| Ok(())));
        let full_steps = full.unwrap().records.len();
        let want = std::fs::read(&job.output).unwrap();
        let mut part = job.clone();
        part.output = f.path("part.png");
        // First step, inside the first stage, the last step of a stage, the very last step.
        let stage_end = job.iterations;
        for (stop_after, threads) in [(1, 1), (3, 3), (stage_end, 2), (full_steps, 1)] {
            let got = interrupted_and_resumed(&vgg, &part, stop_after, threads);
            assert!(
                got == want,
                "{optimizer:?} scales {scales:?} tile {tile:?}: stopped after step {stop_after}, resumed on {threads} threads, differs"
            );
        }
    }
}

#[test]
fn a_checkpoint_of_other_settings_or_inputs_is_refused() {
    let f = Files::new();
    let tiny = data("tiny_vgg.npz");
    let job = f.job("out.png");
    let vgg = Vgg19::load_for(&tiny, &job.loss_config()).unwrap();
    let ck_path = f.path("ck.bin");
    let control = Control {
        checkpoint: Some(CheckpointPolicy::new(&ck_path)),
        ..Control::default()
    };
    Painter::new(&vgg)
        .paint_with(&job, control.clone(), &mut None, |_| Ok(()))
        .unwrap();
    let ck = Checkpoint::load(&ck_path).unwrap();
    let resume = |job: &Job| {
        let control = Control {
            resume: Some(ck.clone()),
            ..Control::default()
        };
        Painter::new(&vgg)
            .paint_with(job, control.clone(), &mut None, |_| Ok(()))
            .unwrap_err()
            .to_string()
    };
    let mut other = job.clone();
    other.style_weight = 41.0;
    other.seed = 3;
    let e = resume(&other);
    assert!(e.contains("style-weight") && e.contains("seed"), "{e}");
    // Changing only where the painting goes is allowed.
    let mut moved = job.clone();
    moved.output = f.path("elsewhere.png");
    let control = Control {
        resume: Some(ck.clone()),
        ..Control::default()
    };
    Painter::new(&vgg)
        .paint_with(&moved, control.clone(), &mut None, |_| Ok(()))
        .unwrap();
    assert!(std::fs::read(f.path("elsewhere.png")).unwrap() == std::fs::read(&job.output).unwrap());
    // A changed style file.
    stripes(70, 72).save(f.path("style.png")).unwrap();
    let e = resume(&job);
    assert!(e.contains("style.png changed"), "{e}");
}

#[test]
fn a_histogram_checkpoint_resumes_only_with_histogram_colors() {
    let f = Files::new();
    let mut job = f.job("out.png");
    job.original_colors = OriginalColors::Histogram;
    job.optimizer = Optimizer::Adam;
    let vgg = Vgg19::load_for(data("tiny_vgg.npz"), &job.loss_config()).unwrap();
    in_pool(2, || Painter::new(&vgg).paint(&job, &mut None, |_| Ok(()))).unwrap();
    let full = std::fs::read(&job.output).unwrap();
    assert!(
        interrupted_and_resumed(&vgg, &job, 3, 1) == full,
        "resume is not bitwise"
    );
    // The checkpoint of that run, refused for another colour method.
    let ck_path = f.path("ck.bin");
    let control = Control {
        checkpoint: Some(CheckpointPolicy::new(&ck_path)),
        ..Control::default()
    };
    Painter::new(&vgg)
        .paint_with(&job, control, &mut None, |_| Ok(()))
        .unwrap();
    for other in [OriginalColors::Luminance, OriginalColors::Off] {
        let mut changed = job.clone();
        changed.original_colors = other;
        let control = Control {
            resume: Some(Checkpoint::load(&ck_path).unwrap()),
            ..Control::default()
        };
        let e = Painter::new(&vgg)
            .paint_with(&changed, control, &mut None, |_| Ok(()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("other settings: original-colors"), "{e}");
    }
}

/// The real network at a small size, so a run lasts a few seconds: long enough to signal it
/// mid-run.
fn cli_args(f: &Files, output: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--content".into(),
        f.path("content.png").to_string_lossy().into(),
        "--style".into(),
        f.path("style.png").to_string_lossy().into(),
        "--output".into(),
        f.path(output).to_string_lossy().into(),
        "--size".into(),
        "48".into(),
        "--iterations".into(),
        "24".into(),
        "--weights".into(),
        real_weights().to_string_lossy().into(),
        "--print-every".into(),
        "0".into(),
    ];
    // A flag in `extra` replaces the default above.
    for pair in extra.chunks(2) {
        match args.iter().position(|a| a == pair[0]) {
            Some(i) if pair.len() == 2 && pair[1].starts_with(|c: char| c != '-') => {
                args[i + 1] = pair[1].to_string()
            }
            _ => args.extend(pair.iter().map(|s| s.to_string())),
        }
    }
    args
}

/// Waits until the checkpoint at `path` is past `previous` (stage, step), at most 60 s.
fn wait_past(path: &Path, previous: (usize, usize)) -> (usize, usize) {
    let t = Instant::now();
    loop {
        if let Ok(ck) = Checkpoint::load(path) {
            if (ck.stage, ck.step) > previous {
                return (ck.stage, ck.step);
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "{} did not advance",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn spawn(args: &[String]) -> Child {
    Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn run(args: &[String]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

/// Waits until `path` exists (the run got going), at most 60 s.
fn wait_for(path: &Path) {
    let t = Instant::now();
    while !path.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn sigterm_then_resume_paints_the_uninterrupted_picture() {
    let f = Files::new();
    for optimizer in ["adam", "lbfgs"] {
        let full = run(&cli_args(&f, "full.png", &["--optimizer", optimizer]));
        assert!(full.status.success(), "{}", stderr(&full));
        let ck = f.path("ck.bin");
        let _ = std::fs::remove_file(&ck);
        let ck_s = ck.to_string_lossy().to_string();
        let args = cli_args(
            &f,
            "part.png",
            &[
                "--optimizer",
                optimizer,
                "--checkpoint",
                &ck_s,
                "--checkpoint-every",
                "3",
            ],
        );
        let child = spawn(&args);
        wait_for(&ck);
        signal(&child, "-TERM");
        let out = child.wait_with_output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(143), "{err}");
        assert!(
            err.contains("stopped by SIGTERM") && err.contains("--resume"),
            "{err}"
        );
        assert!(
            f.path("part.png").exists(),
            "the unfinished image is written"
        );
        // Resume on one thread, giving the flags again (they agree).
        let mut resume = args.clone();
        resume.extend([
            "--resume".into(),
            ck_s.clone(),
            "--threads".into(),
            "1".into(),
        ]);
        let out = run(&resume);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("resuming at stage 1"),
            "{}",
            stderr(&out)
        );
        assert!(
            std::fs::read(f.path("part.png")).unwrap()
                == std::fs::read(f.path("full.png")).unwrap(),
            "{optimizer}: resumed painting differs"
        );
    }
}

#[test]
fn sigkill_at_any_moment_leaves_files_that_load_and_resume_exactly() {
    let f = Files::new();
    let full = run(&cli_args(&f, "full.png", &[]));
    assert!(full.status.success(), "{}", stderr(&full));
    let ck = f.path("ck.bin");
    let ck_s = ck.to_string_lossy().to_string();
    let first = cli_args(
        &f,
        "part.png",
        &["--checkpoint", &ck_s, "--checkpoint-every", "1"],
    );
    let resume: Vec<String> = vec![
        "--resume".into(),
        ck_s.clone(),
        "--weights".into(),
        real_weights().to_string_lossy().into(),
        "--checkpoint-every".into(),
        "1".into(),
    ];
    // Killed at staggered moments, each run resuming the last once it has made progress:
    // every file left loads.
    let mut at = (0, 0);
    for (round, delay_ms) in [0u64, 130, 370, 50].into_iter().enumerate() {
        let mut child = spawn(if round == 0 { &first } else { &resume });
        wait_past(&ck, at);
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let loaded = Checkpoint::load(&ck);
        assert!(loaded.is_ok(), "round {round}: {:?}", loaded.err());
        let loaded = loaded.unwrap();
        at = (loaded.stage, loaded.step);
        if f.path("part.png").exists() {
            image::open(f.path("part.png")).expect("a whole image or none");
        }
        let stray: Vec<String> = std::fs::read_dir(f.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        eprintln!(
            "round {round}: killed at step {}; stray temporaries {stray:?}",
            at.1
        );
    }
    let out = run(&resume);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        std::fs::read(f.path("part.png")).unwrap() == std::fs::read(f.path("full.png")).unwrap(),
        "the run killed four times differs from the uninterrupted one"
    );
}

#[test]
fn a_second_signal_exits_at_once() {
    let f = Files::new();
    let ck = f.path("ck.bin");
    let ck_s = ck.to_string_lossy().to_string();
    let child = spawn(&cli_args(
        &f,
        "out.png",
        &["--checkpoint", &ck_s, "--iterations", "500"],
    ));
    wait_for(&ck);
    signal(&child, "-INT");
    signal(&child, "-INT");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    Checkpoint::load(&ck).expect("the previous checkpoint is intact");
}

#[test]
fn bad_checkpoints_and_mismatched_flags_are_one_line_errors() {
    let f = Files::new();
    let ck = f.path("ck.bin");
    let ck_s = ck.to_string_lossy().to_string();
    let tiny = data("tiny_vgg.npz").to_string_lossy().to_string();
    let base = |output: &str, extra: &[&str]| -> Vec<String> {
        let mut a = cli_args(&f, output, extra);
        let w = a.iter().position(|x| x == "--weights").unwrap();
        a[w + 1] = tiny.clone();
        a
    };
    let out = run(&base(
        "out.png",
        &["--checkpoint", &ck_s, "--iterations", "3"],
    ));
    assert!(out.status.success(), "{}", stderr(&out));
    let resume = |extra: &[&str]| -> Output {
        let mut a = vec!["--resume".to_string(), ck_s.clone()];
        if !extra.contains(&"--weights") {
            a.extend(["--weights".to_string(), tiny.clone()]);
        }
        a.extend(extra.iter().map(|s| s.to_string()));
        run(&a)
    };
    let one_line = |out: &Output, culprits: &[&str]| {
        let err = stderr(out);
        assert!(!out.status.success(), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("error: "), "{err}");
        for c in culprits {
            assert!(err.contains(c), "{c} not in {err}");
        }
    };
    one_line(
        &resume(&["--size", "64"]),
        &["ck.bin", "--size", "48", "64"],
    );
    one_line(
        &resume(&["--weights", &real_weights().to_string_lossy()]),
        &["other network weights"],
    );
    let good = std::fs::read(&ck).unwrap();
    for (what, bytes) in [
        ("truncated", good[..good.len() / 3].to_vec()),
        ("empty", Vec::new()),
        ("foreign", b"PK\x03\x04 a zip file, not ours".to_vec()),
        ("flipped", {
            let mut b = good.clone();
            let k = b.len() - 100;
            b[k] ^= 1;
            b
        }),
    ] {
        std::fs::write(&ck, &bytes).unwrap();
        let out = resume(&[]);
        one_line(&out, &["ck.bin"]);
        eprintln!("{what}: {}", stderr(&out).trim());
    }
    std::fs::remove_file(&ck).unwrap();
    one_line(&resume(&[]), &["ck.bin"]);
}

#[test]
fn an_interrupted_batch_item_resumes_from_its_checkpoint() {
    let f = Files::new();
    for sub in ["photos", "paintings", "out"] {
        std::fs::create_dir(f.path(sub)).unwrap();
    }
    std::fs::copy(f.path("content.png"), f.path("photos/content.png")).unwrap();
    std::fs::copy(f.path("style.png"), f.path("paintings/style.png")).unwrap();
    let single = run(&cli_args(&f, "single.png", &[]));
    assert!(single.status.success(), "{}", stderr(&single));
    let args: Vec<String> = [
        "batch",
        "--contents",
        &f.path("photos").to_string_lossy(),
        "--styles",
        &f.path("paintings").to_string_lossy(),
        "--output-dir",
        &f.path("out").to_string_lossy(),
        "--size",
        "48",
        "--iterations",
        "24",
        "--weights",
        &real_weights().to_string_lossy(),
        "--checkpoints",
        "--checkpoint-every",
        "2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let ck = f.path("out/.content__style.png.ckpt");
    let child = spawn(&args);
    wait_for(&ck);
    signal(&child, "-TERM");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
    assert!(stderr(&out).contains("interrupted 1"), "{}", stderr(&out));
    // The unfinished image is there, but the checkpoint marks the item as not done.
    assert!(f.path("out/content__style.png").exists());
    let out = run(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("1 to paint, 0 already done"),
        "{}",
        stderr(&out)
    );
    assert!(!ck.exists(), "a finished item's checkpoint is removed");
    assert!(
        std::fs::read(f.path("out/content__style.png")).unwrap()
            == std::fs::read(f.path("single.png")).unwrap()
    );
}
