//! What the command line shows while it paints: progress bars on a terminal (indicatif), plain
//! lines in a log, or JSON lines on stdout for machines.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use neural_style::progress::Record;
use std::io::{IsTerminal, Write};

/// `eprintln!` that ignores a closed stderr (say `2>&1 | head`): losing the log must not
/// abort the run with a panic.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// JSON lines on stdout, nothing on stderr but errors.
    Json,
    /// Bars on a terminal.
    Bars,
    /// Text lines (a log file, a pipe).
    Lines,
}

impl Mode {
    pub fn new(json: bool) -> Self {
        if json {
            Mode::Json
        } else if std::io::stderr().is_terminal() {
            Mode::Bars
        } else {
            Mode::Lines
        }
    }
}

/// Writes one line to stdout, ignoring a closed pipe.
pub fn stdout_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The text line of a step.
pub fn step_line(r: &Record) -> String {
    format!(
        "step {:>5}/{}  total {:.4e}  content {:.4e}  style {:.4e}  tv {:.4e}  {:.3} s/step",
        r.iteration,
        r.iterations,
        r.total,
        r.content,
        r.style,
        r.tv,
        r.seconds / r.iteration.max(1) as f64
    )
}

/// Whether step `r` is reported under `--print-every n` (the last step always is).
pub fn reported(r: &Record, print_every: usize) -> bool {
    (print_every > 0 && r.iteration.is_multiple_of(print_every)) || r.iteration == r.iterations
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("a valid progress template")
        .progress_chars("#>.")
}

/// The bar of one painting's steps.
pub fn steps_bar(iterations: usize) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(iterations as u64), ProgressDrawTarget::stderr());
    bar.set_style(style("{prefix}[{bar:24}] {pos:>5}/{len}  {msg}  ETA {eta}"));
    bar
}

/// The message of a step bar: the loss and the pace.
pub fn bar_message(r: &Record) -> String {
    format!(
        "total {:.3e}  {:.2} s/step",
        r.total,
        r.seconds / r.iteration.max(1) as f64
    )
}

/// The bars of a batch: items overall, and each worker's current item.
pub struct BatchBars {
    pub multi: MultiProgress,
    pub overall: ProgressBar,
    pub workers: Vec<ProgressBar>,
}

impl BatchBars {
    pub fn new(items: usize, workers: usize) -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let overall = multi.add(ProgressBar::new(items as u64));
        overall.set_style(style(
            "items [{bar:24}] {pos}/{len}  {msg}  elapsed {elapsed}  ETA {eta}",
        ));
        let workers = (0..workers)
            .map(|_| {
                let bar = multi.add(steps_bar(1));
                bar.set_prefix("  ");
                bar
            })
            .collect();
        BatchBars {
            multi,
            overall,
            workers,
        }
    }
}
