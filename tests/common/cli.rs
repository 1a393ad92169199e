//! Running the `neural-style` binary in tests: a fixture of small inputs, the run's outcome,
//! and the checks every CLI test makes (success, clean one-line failures, progress lines).

use super::data;
use super::images::{checker, gradient, stripes};
use image::{ImageFormat, RgbImage};
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_neural-style");

/// What a finished run of the binary left behind.
pub struct Outcome {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

pub fn neural_style<I, S>(args: I) -> Outcome
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let out = Command::new(BIN)
        .args(&args)
        .output()
        .expect("the neural-style binary runs");
    Outcome {
        success: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Test inputs in one temporary folder and an empty output folder beside it.
pub struct Fixture {
    _inputs: TempDir,
    pub outputs: TempDir,
    /// 96x80 content (resized to 48x40 by `--size 48`).
    pub content: PathBuf,
    /// 72x72 style (PNG).
    pub style: PathBuf,
    /// 60x52 second style (JPEG).
    pub style2: PathBuf,
}

impl Fixture {
    pub fn new() -> Self {
        let inputs = tempfile::tempdir().unwrap();
        let content = inputs.path().join("content.png");
        let style = inputs.path().join("style.png");
        let style2 = inputs.path().join("style2.jpg");
        gradient(96, 80).save(&content).unwrap();
        stripes(72, 72).save(&style).unwrap();
        checker(60, 52).save(&style2).unwrap();
        Fixture {
            _inputs: inputs,
            outputs: tempfile::tempdir().unwrap(),
            content,
            style,
            style2,
        }
    }

    pub fn input_dir(&self) -> &Path {
        self.content.parent().unwrap()
    }

    pub fn out_dir(&self) -> &Path {
        self.outputs.path()
    }

    pub fn out(&self, name: &str) -> PathBuf {
        self.out_dir().join(name)
    }

    /// Arguments of a short run: the styles, output and step count, then `extra`; `--content`
    /// (the fixture's), `--size 48` and `--weights` (the tiny network) unless `extra` sets them.
    pub fn args(
        &self,
        styles: &[&Path],
        output: &Path,
        iterations: usize,
        extra: &[&str],
    ) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        for (key, value) in [
            ("--content", self.content.clone()),
            ("--size", "48".into()),
            ("--weights", data("tiny_vgg.npz")),
        ] {
            if !extra.contains(&key) {
                args.push(key.into());
                args.push(value.into());
            }
        }
        for style in styles {
            args.push("--style".into());
            args.push(style.into());
        }
        args.push("--output".into());
        args.push(output.into());
        args.push("--iterations".into());
        args.push(iterations.to_string().into());
        args.extend(extra.iter().map(OsString::from));
        args
    }
}

pub fn assert_success(run: &Outcome) {
    assert!(
        run.success,
        "neural-style failed (exit {:?}):\n{}",
        run.code, run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
}

/// `(step, total)` of every progress line `step N/M  total X ...` on stderr.
pub fn totals(stderr: &str) -> Vec<(usize, f64)> {
    stderr
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            if words.next()? != "step" {
                return None;
            }
            let step = words.next()?.split('/').next()?.parse().ok()?;
            if words.next()? != "total" {
                return None;
            }
            Some((step, words.next()?.parse().ok()?))
        })
        .collect()
}

/// Asserts one progress line per step 1..=steps, all finite, and that the total loss fell.
pub fn assert_loss_fell(stderr: &str, steps: usize) {
    let t = totals(stderr);
    let numbers: Vec<usize> = t.iter().map(|&(s, _)| s).collect();
    assert_eq!(
        numbers,
        (1..=steps).collect::<Vec<_>>(),
        "progress lines:\n{stderr}"
    );
    assert!(t.iter().all(|&(_, v)| v.is_finite()), "{stderr}");
    let (first, last) = (t[0].1, t[t.len() - 1].1);
    assert!(last < first, "total loss did not fall: {first} -> {last}");
}

/// Decodes an output file, checking its encoding too.
pub fn decode(path: &Path, format: ImageFormat) -> RgbImage {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        image::guess_format(&bytes).unwrap(),
        format,
        "{}",
        path.display()
    );
    image::load_from_memory(&bytes).unwrap().to_rgb8()
}

pub fn names_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

pub fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// A failed run: non-zero exit (not a signal), stderr exactly one `error:` line containing every
/// `culprit`, no panic, and `out_dir` holding exactly `left` afterwards (no output, no
/// `.*.tmp`, no probe).
pub fn assert_clean_failure(run: &Outcome, culprits: &[&str], out_dir: &Path, left: &[&str]) {
    assert!(!run.success, "expected a failure, got:\n{}", run.stderr);
    assert!(
        matches!(run.code, Some(c) if c != 0),
        "exit {:?} (killed by a signal?):\n{}",
        run.code,
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "panic:\n{}", run.stderr);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "stderr must be one line:\n{}", run.stderr);
    assert!(lines[0].starts_with("error: "), "{}", lines[0]);
    for c in culprits {
        assert!(lines[0].contains(c), "'{}' does not name '{c}'", lines[0]);
    }
    assert_eq!(names_in(out_dir), set(left), "files left in the output dir");
}

pub fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Every channel value of a 16-bit PNG, as 0..1.
pub fn decode16(path: &Path) -> Vec<f64> {
    let img = image::open(path).unwrap().into_rgb16();
    img.as_raw().iter().map(|&v| v as f64 / 65535.0).collect()
}

/// Mean RGB (0..255) of an image.
pub fn mean_rgb(img: &image::Rgb32FImage) -> [f64; 3] {
    let mut sum = [0.0f64; 3];
    for p in img.pixels() {
        for (s, &v) in sum.iter_mut().zip(&p.0) {
            *s += v as f64;
        }
    }
    sum.map(|s| 255.0 * s / img.pixels().len() as f64)
}
