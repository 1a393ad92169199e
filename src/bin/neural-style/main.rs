//! The `neural-style` command line: flags become a [`Job`] (or a batch of them), which the
//! library paints.

mod args;
mod ui;

use args::{Batch, Cli, Command, Single};
use clap::{CommandFactory, FromArgMatches};
use indicatif::ProgressBar;
use neural_style::batch::{self, plan, shard::Shard, BatchEvent, ResultsFile, Status};
use neural_style::image as img;
use neural_style::memory;
use neural_style::profile::Timings;
use neural_style::progress;
use neural_style::{
    Cancel, Checkpoint, CheckpointPolicy, Control, Error, Event, Job, Optimizer, Painter, Result,
    StyleCache, Vgg19,
};
use signal_hook::consts::{SIGINT, SIGTERM};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Instant;
use ui::Mode;

fn set_global_threads(threads: Option<usize>) -> Result<()> {
    if let Some(n) = threads {
        if n == 0 {
            return Err(Error::Config("--threads must be at least 1".into()));
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| Error::Config(format!("thread pool: {e}")))?;
    }
    Ok(())
}

/// SIGINT and SIGTERM: the first asks the run to stop after its current step (the returned
/// handle, and which signal it was); a second exits at once with 128 + its number, leaving
/// every file as it was (all writes are atomic).
fn install_signals() -> Result<(Cancel, Arc<AtomicUsize>)> {
    let flag = Arc::new(AtomicBool::new(false));
    let which = Arc::new(AtomicUsize::new(0));
    let failed = |e: std::io::Error| Error::Config(format!("signal handlers: {e}"));
    for sig in [SIGINT, SIGTERM] {
        // Registered first, so it sees the flag as the previous signal left it.
        signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, flag.clone())
            .map_err(failed)?;
        signal_hook::flag::register(sig, flag.clone()).map_err(failed)?;
        signal_hook::flag::register_usize(sig, which.clone(), sig as usize).map_err(failed)?;
    }
    Ok((Cancel::from_flag(flag), which))
}

/// The exit code of a run stopped by signal `sig` (130 for SIGINT, 143 for SIGTERM).
fn signal_exit(which: &AtomicUsize) -> ExitCode {
    let sig = which.load(Ordering::SeqCst);
    ExitCode::from(if sig == 0 { 1 } else { 128 + sig as u8 })
}

fn signal_name(which: &AtomicUsize) -> &'static str {
    match which.load(Ordering::SeqCst) as i32 {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        _ => "a cancellation",
    }
}

/// The job of `--resume`: the checkpoint's, where every painting flag given on the command
/// line must agree with it (only `--output` may move the result elsewhere).
fn resumed_job(ck: &Checkpoint, flags: &Job, given: impl Fn(&str) -> bool) -> Result<Job> {
    flags.validate_paths()?;
    let (serde_json::Value::Object(want), serde_json::Value::Object(have)) = (
        serde_json::to_value(flags).expect("a job of UTF-8 paths serialises"),
        serde_json::to_value(&ck.job).expect("a job of UTF-8 paths serialises"),
    ) else {
        unreachable!("a job serialises to an object")
    };
    let mut job = ck.job.clone();
    for (key, value) in &want {
        if !given(key) {
            continue;
        }
        if key == "output" {
            job.output = flags.output.clone();
        } else if have.get(key) != Some(value) {
            return Err(Error::Checkpoint {
                path: PathBuf::new(),
                detail: format!(
                    "it was made with --{} {}, the command line says {}; resume with the same settings",
                    key.replace('_', "-"),
                    have.get(key).map_or("(none)".into(), |v| v.to_string()),
                    value
                ),
            });
        }
    }
    Ok(job)
}

fn single(s: Single, matches: &clap::ArgMatches) -> Result<ExitCode> {
    let given = |id: &str| matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
    let flags = s.paint.with_preset(
        s.paint.job(
            s.content.clone().unwrap_or_default(),
            s.styles.clone(),
            s.output.clone().unwrap_or_default(),
        ),
        matches,
    )?;
    // A preset's settings count as given: a resumed run must agree with them too.
    let preset_given = s.paint.preset.is_some();
    let given =
        |id: &str| given(id) || (preset_given && neural_style::preset::SETTINGS.contains(&id));
    let resume = match &s.resume {
        Some(path) => {
            let ck = Checkpoint::load(path)?;
            Some(resumed_job(&ck, &flags, given).map_err(|e| with_path(e, path))?)
                .map(|job| (job, ck, path.clone()))
        }
        None => None,
    };
    let job = resume.as_ref().map_or(flags, |(job, _, _)| job.clone());
    // Everything that can be checked is checked before the weights load.
    job.validate()?;
    img::check_writable(&job.output)?;
    set_global_threads(s.run.threads)?;
    let (cancel, which) = install_signals()?;
    // A resumed run goes on saving into its checkpoint unless told otherwise.
    let checkpoint_path = s
        .checkpoint
        .clone()
        .or_else(|| resume.as_ref().map(|(_, _, p)| p.clone()));
    let control = Control {
        checkpoint: checkpoint_path.map(|path| CheckpointPolicy {
            path,
            every_steps: s.checkpoints.checkpoint_every as usize,
            every_seconds: s.checkpoints.checkpoint_seconds,
        }),
        cancel,
        resume: resume.map(|(_, ck, _)| ck),
        max_memory: s.run.max_memory,
        keep_kernels: s.run.keep_kernels,
    };
    if s.estimate {
        return estimate(&job, &s.run);
    }
    let t0 = Instant::now();
    let vgg = Vgg19::load_for(&s.run.weights, &job.loss_config())?;
    let painter = Painter::new(&vgg);
    let mode = Mode::new(s.run.json);
    let print_every = s.run.print_every;
    let mut timings = s.profile.then(Timings::default);
    let mut bar: Option<ProgressBar> = None;
    let resumed_at = control.resume.as_ref().map(|ck| (ck.stage + 1, ck.step));
    let outcome = painter.paint_with(&job, control, &mut timings, |event| {
        match event {
            Event::Stage {
                stage,
                stages,
                width,
                height,
                iterations,
                tiles,
            } => {
                if let (Some((at, step)), true) = (resumed_at, mode != Mode::Json) {
                    if at == *stage {
                        say!("neural-style: resuming at stage {at}, step {step}");
                    }
                }
                if mode != Mode::Json {
                    let tiled = match tiles {
                        Some((side, n)) => format!(" in {n} tiles of {side} px"),
                        None => String::new(),
                    };
                    say!(
                        "neural-style: stage {stage}/{stages} at {width}x{height}{tiled}, {} style image(s), {iterations} {}, {} threads; setup {:.2} s",
                        job.styles.len(),
                        match job.optimizer {
                            Optimizer::Adam => "Adam steps",
                            Optimizer::Lbfgs => "L-BFGS iterations",
                        },
                        rayon::current_num_threads(),
                        t0.elapsed().as_secs_f64()
                    );
                }
                if mode == Mode::Bars {
                    bar = Some(ui::steps_bar(*iterations));
                }
            }
            Event::Step { record, .. } => match mode {
                Mode::Json if ui::reported(record, print_every) => ui::stdout_line(&record.json()),
                Mode::Json => {}
                Mode::Bars => {
                    if let Some(bar) = &bar {
                        bar.set_position(record.iteration as u64);
                        bar.set_message(ui::bar_message(record));
                        if record.iteration == record.iterations {
                            bar.finish();
                        }
                    }
                }
                Mode::Lines if ui::reported(record, print_every) => say!("{}", ui::step_line(record)),
                Mode::Lines => {}
            },
            Event::Warning(message) => say!("warning: {message}"),
        }
        Ok(())
    });
    if let Some(bar) = &bar {
        bar.abandon();
    }
    let painting = match outcome {
        Err(Error::Cancelled {
            stage,
            step,
            checkpoint,
        }) => {
            let weights = if s.run.weights == std::path::Path::new(args::DEFAULT_WEIGHTS) {
                String::new()
            } else {
                format!(" --weights {}", s.run.weights.display())
            };
            let saved = match checkpoint {
                Some(ck) => format!(
                    "and checkpoint {}; resume with: neural-style --resume {}{weights}",
                    ck.display(),
                    ck.display()
                ),
                None => {
                    "but no checkpoint (run with --checkpoint FILE to be able to resume)".into()
                }
            };
            say!(
                "neural-style: stopped by {} at stage {stage}, step {step}: wrote {} (unfinished) {saved}",
                signal_name(&which),
                job.output.display()
            );
            return Ok(signal_exit(&which));
        }
        outcome => outcome?,
    };
    if let (Some(stop), true) = (painting.early_stop, mode != Mode::Json) {
        say!("L-BFGS stopped early: {stop:?}");
    }
    if let Some(path) = &s.loss_csv {
        img::write_atomic(path, progress::csv(&painting.records).as_bytes())?;
    }
    if let Some(t) = timings {
        say!("{}", t.report().trim_end());
    }
    if mode != Mode::Json {
        say!(
            "wrote {} in {:.1} s",
            job.output.display(),
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `--estimate`: the memory estimate, and seconds per step timed at a small size on this
/// machine and scaled by pixels (a step's work is proportional to them).
fn estimate(job: &Job, run: &args::RunOptions) -> Result<ExitCode> {
    const PROBE_SIDE: u32 = 160;
    let plan = memory::plan_job(job, run.max_memory, run.keep_kernels)?;
    let e = plan.peak();
    let limit = memory::limit(run.max_memory);
    say!(
        "peak memory about {} at {}x{}{} (network {}, optimiser and images {}, inputs {}, weights and runtime {}){}",
        memory::human(e.peak),
        e.width,
        e.height,
        match e.tile {
            Some(side) => format!(" in {side}-pixel tiles"),
            None => String::new(),
        },
        memory::human(e.network),
        memory::human(e.optimizer),
        memory::human(e.inputs),
        memory::human(e.weights + e.overhead),
        match plan.kept_kernels {
            0 => String::new(),
            k => format!(", and up to {} of kept kernels", memory::human(k)),
        } + &match limit {
            Some(l) => format!("; {} allowed", memory::human(l)),
            None => String::new(),
        }
    );
    let config = job.loss_config();
    let vgg = Vgg19::load_for(&run.weights, &config)?;
    let probe = |p: &std::path::Path| -> Result<ndarray::Array3<f32>> {
        Ok(img::rgb32f_to_net(&img::resize_long_side(
            &img::decode(p)?,
            PROBE_SIDE,
        )))
    };
    let content = probe(&job.content)?;
    let styles = job
        .styles
        .iter()
        .map(|p| probe(p).map(|s| (s, 1.0)))
        .collect::<Result<Vec<_>>>()?;
    let objective = neural_style::Objective::new(&vgg, &content, &styles, &config)?;
    let mut eval = neural_style::Evaluation::zeros(objective.shape());
    objective.evaluate_into(&content, &mut eval, &mut None)?; // warm-up: buffers sized
    let t = Instant::now();
    const PROBES: u32 = 3;
    for _ in 0..PROBES {
        objective.evaluate_into(&content, &mut eval, &mut None)?;
    }
    let per_pixel = t.elapsed().as_secs_f64() / PROBES as f64 / (content.len() / 3) as f64;
    // L-BFGS evaluates about 1.05 times per iteration on this objective (line searches).
    let evals_per_step = match job.optimizer {
        Optimizer::Adam => 1.0,
        Optimizer::Lbfgs => 1.05,
    };
    let mut total = 0.0;
    for (index, stage) in plan.stages.iter().enumerate() {
        let (w, h) = (stage.width, stage.height);
        // A tiled step evaluates every tile's region (halo included) and runs each forward
        // twice: measured 1.27 times the untiled work per evaluated pixel at 2048 px (README).
        let tiled = match stage.tile {
            Some(side) => {
                let depth = config.depth()?;
                let grid =
                    neural_style::tiling::TileGrid::new(h as usize, w as usize, side, depth)?;
                grid.overhead() * TILED_WORK
            }
            None => 1.0,
        };
        let step = per_pixel * (w * h) as f64 * evals_per_step * tiled;
        total += step * job.iterations_at(index) as f64;
        say!(
            "stage at {w}x{h}: about {step:.2} s per step on {} threads",
            rayon::current_num_threads()
        );
    }
    let steps: Vec<String> = (0..plan.stages.len())
        .map(|i| job.iterations_at(i).to_string())
        .collect();
    say!(
        "whole painting: about {:.0} s ({} steps per stage)",
        total,
        steps.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}

/// Work of a tiled evaluation per evaluated pixel relative to an untiled one's: a forward
/// pass is about a third of an evaluation, and a tiled one runs it twice (less the last tile).
const TILED_WORK: f64 = 1.3;

fn batch_cmd(b: Batch, matches: &clap::ArgMatches) -> Result<ExitCode> {
    let t0 = Instant::now();
    let base = b.paint.job(PathBuf::new(), Vec::new(), PathBuf::new());
    let base = b.paint.with_preset(base, matches)?;
    let items = match (&b.manifest, &b.contents, &b.styles_dir) {
        (Some(m), _, _) => plan::manifest(m, &b.output_dir, &b.name, &base)?,
        (None, Some(c), Some(s)) => plan::pairs(c, s, &b.output_dir, &b.name, &base)?,
        _ => unreachable!("clap requires --manifest or --contents with --styles"),
    };
    let total = items.len();
    let shard = match &b.shard {
        Some(spec) => Shard::parse(spec)?,
        None => Shard::from_env(|k| std::env::var(k).ok(), b.shards.map(|n| n as usize))?,
    };
    let (todo, done) = batch::pending(shard.select(items), b.overwrite);
    let mode = Mode::new(b.run.json);
    std::fs::create_dir_all(&b.output_dir).map_err(|e| Error::io(&b.output_dir, e))?;
    let results = b.results.as_deref().map(ResultsFile::open).transpose()?;
    for job in &done {
        let result = batch::skipped(job);
        if let Some(file) = &results {
            file.append(&result)?;
        }
        if mode == Mode::Json {
            ui::stdout_line(&result.json());
        }
    }
    if mode != Mode::Json {
        say!(
            "neural-style batch: {total} item(s), shard {shard}: {} to paint, {} already done",
            todo.len(),
            done.len()
        );
    }
    let mut summary = batch::Summary::default();
    let (cancel, which) = install_signals()?;
    if !todo.is_empty() {
        let depth = todo
            .iter()
            .map(|j| j.loss_config().depth())
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .max()
            .unwrap_or(1);
        let vgg = Vgg19::load_layers(&b.run.weights, None, depth)?;
        let cache = match &b.style_cache {
            Some(dir) => StyleCache::in_dir(dir)?,
            None => StyleCache::in_memory(),
        };
        let painter = Painter::with_cache(&vgg, cache);
        let options = batch::Options {
            overwrite: b.overwrite,
            jobs: b.jobs as usize,
            threads: match b.run.threads {
                Some(0) => return Err(Error::Config("--threads must be at least 1".into())),
                Some(n) => n,
                None => batch::Options::default().threads,
            },
            checkpoint: b.checkpoints.then_some((
                b.checkpoint_timing.checkpoint_every as usize,
                b.checkpoint_timing.checkpoint_seconds,
            )),
            cancel: cancel.clone(),
            max_memory: b.run.max_memory,
            keep_kernels: b.run.keep_kernels,
        };
        let reporter = Reporter::new(
            mode,
            todo.len(),
            options.jobs.min(todo.len()),
            b.run.print_every,
        );
        summary = batch::run(&painter, &todo, &options, results.as_ref(), &|e| {
            reporter.show(e)
        })?;
        reporter.finish();
    }
    summary.skipped += done.len();
    if mode == Mode::Json {
        ui::stdout_line(&format!(
            "{{\"painted\":{},\"skipped\":{},\"failed\":{},\"interrupted\":{},\"seconds\":{:.3}}}",
            summary.painted,
            summary.skipped,
            summary.failed,
            summary.interrupted,
            t0.elapsed().as_secs_f64()
        ));
    } else {
        say!("{summary} in {:.1} s", t0.elapsed().as_secs_f64());
    }
    if cancel.is_cancelled() {
        if mode != Mode::Json {
            say!(
                "neural-style batch: stopped by {}; run the same command again to finish{}",
                signal_name(&which),
                if b.checkpoints {
                    " (interrupted items resume from their checkpoints)"
                } else {
                    ""
                }
            );
        }
        return Ok(signal_exit(&which));
    }
    Ok(if summary.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Shows a batch's progress in the chosen mode (called from every worker).
struct Reporter {
    mode: Mode,
    items: usize,
    print_every: usize,
    bars: Option<ui::BatchBars>,
    /// Each worker's current item (its output's file name).
    current: Mutex<Vec<String>>,
}

impl Reporter {
    fn new(mode: Mode, items: usize, workers: usize, print_every: usize) -> Self {
        Reporter {
            mode,
            items,
            print_every,
            bars: (mode == Mode::Bars).then(|| ui::BatchBars::new(items, workers)),
            current: Mutex::new(vec![String::new(); workers]),
        }
    }

    fn name(job: &Job) -> String {
        job.output
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned()
    }

    fn line(&self, text: String) {
        match &self.bars {
            Some(bars) => {
                let _ = bars.multi.println(text);
            }
            None => say!("{text}"),
        }
    }

    fn show(&self, event: BatchEvent) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            BatchEvent::Started { worker, index, job } => {
                current[worker] = Self::name(job);
                if self.mode == Mode::Lines {
                    say!(
                        "[{}/{}] painting {} ({} + {})",
                        index + 1,
                        self.items,
                        current[worker],
                        job.content.display(),
                        job.styles
                            .iter()
                            .map(|s| s.display().to_string())
                            .collect::<Vec<_>>()
                            .join(" + ")
                    );
                }
            }
            BatchEvent::Stage {
                worker,
                stage,
                stages,
                iterations,
            } => {
                if let Some(bars) = &self.bars {
                    let bar = &bars.workers[worker];
                    bar.reset();
                    bar.set_length(iterations as u64);
                    bar.set_prefix(format!("  {} {stage}/{stages} ", current[worker]));
                }
            }
            BatchEvent::Step { worker, record } => match &self.bars {
                Some(bars) => {
                    let bar = &bars.workers[worker];
                    bar.set_position(record.iteration as u64);
                    bar.set_message(ui::bar_message(&record));
                }
                None if self.mode == Mode::Lines && ui::reported(&record, self.print_every) => {
                    say!("  {}  {}", current[worker], ui::step_line(&record));
                }
                None => {}
            },
            BatchEvent::Finished { worker, result } => {
                if let Some(bars) = &self.bars {
                    bars.overall.inc(1);
                    bars.workers[worker].reset();
                    bars.workers[worker].set_prefix("  ");
                }
                match self.mode {
                    Mode::Json => ui::stdout_line(&result.json()),
                    _ => match result.status {
                        Status::Failed => self.line(format!(
                            "failed {}: {}",
                            current[worker],
                            result.error.as_deref().unwrap_or("")
                        )),
                        Status::Interrupted => {
                            self.line(format!("interrupted {}", current[worker]))
                        }
                        _ if self.mode == Mode::Lines => self.line(format!(
                            "done {} in {:.1} s ({} evaluations)",
                            current[worker], result.seconds, result.evaluations
                        )),
                        _ => {}
                    },
                }
            }
            BatchEvent::Warning { message, .. } => self.line(format!("warning: {message}")),
        }
    }

    fn finish(&self) {
        if let Some(bars) = &self.bars {
            bars.overall.finish();
            for bar in &bars.workers {
                bar.finish_and_clear();
            }
        }
    }
}

/// Names the checkpoint file in a checkpoint error that does not yet.
fn with_path(e: Error, path: &std::path::Path) -> Error {
    match e {
        Error::Checkpoint { path: p, detail } if p.as_os_str().is_empty() => Error::Checkpoint {
            path: path.into(),
            detail,
        },
        e => e,
    }
}

/// A flag error as one line (clap's own spans several: the problem, the usage, a hint).
fn usage_error(e: &clap::Error) -> String {
    let text = e.to_string();
    let problem: Vec<&str> = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty())
        .collect();
    let problem = problem.join(" ");
    let problem = problem.strip_prefix("error: ").unwrap_or(&problem);
    format!("error: {problem} (see --help)")
}

fn main() -> ExitCode {
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m).map(|cli| (cli, m)));
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            say!("{}", usage_error(&e));
            return ExitCode::from(2);
        }
    };
    let outcome = match cli.command {
        Some(Command::Batch(b)) => {
            let sub = matches.subcommand_matches("batch").unwrap_or(&matches);
            batch_cmd(b, sub)
        }
        None => single(cli.single, &matches).map_err(|e| {
            match (&e, matches.get_one::<PathBuf>("resume")) {
                (Error::Checkpoint { .. }, Some(path)) => with_path(e, path),
                _ => e,
            }
        }),
    };
    outcome.unwrap_or_else(|e| {
        say!("error: {e}");
        ExitCode::FAILURE
    })
}
