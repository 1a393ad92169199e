//! The `neural-style` command line: flags become a [`Job`] (or a batch of them), which the
//! library paints.

mod args;
mod ui;

use args::{Batch, Cli, Command, Single};
use clap::Parser;
use indicatif::ProgressBar;
use neural_style::batch::{self, plan, shard::Shard, BatchEvent, ResultsFile, Status};
use neural_style::image as img;
use neural_style::profile::Timings;
use neural_style::progress;
use neural_style::{Error, Event, Job, Optimizer, Painter, Result, StyleCache, Vgg19};
use std::path::PathBuf;
use std::process::ExitCode;
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

fn single(s: Single) -> Result<ExitCode> {
    let content = s.content.expect("clap requires --content");
    let output = s.output.expect("clap requires --output");
    let job = s.paint.job(content, s.styles, output);
    // Everything that can be checked is checked before the weights load.
    job.validate()?;
    img::check_writable(&job.output)?;
    set_global_threads(s.run.threads)?;
    let t0 = Instant::now();
    let vgg = Vgg19::load_for(&s.run.weights, &job.loss_config())?;
    let painter = Painter::new(&vgg);
    let mode = Mode::new(s.run.json);
    let print_every = s.run.print_every;
    let mut timings = s.profile.then(Timings::default);
    let mut bar: Option<ProgressBar> = None;
    let painting = painter.paint(&job, &mut timings, |event| {
        match event {
            Event::Stage {
                stage,
                stages,
                width,
                height,
                iterations,
            } => {
                if mode != Mode::Json {
                    say!(
                        "neural-style: stage {stage}/{stages} at {width}x{height}, {} style image(s), {iterations} {}, {} threads; setup {:.2} s",
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
    })?;
    if let Some(bar) = bar {
        bar.finish();
    }
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

fn batch_cmd(b: Batch) -> Result<ExitCode> {
    let t0 = Instant::now();
    let base = b.paint.job(PathBuf::new(), Vec::new(), PathBuf::new());
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
            "{{\"painted\":{},\"skipped\":{},\"failed\":{},\"seconds\":{:.3}}}",
            summary.painted,
            summary.skipped,
            summary.failed,
            t0.elapsed().as_secs_f64()
        ));
    } else {
        say!("{summary} in {:.1} s", t0.elapsed().as_secs_f64());
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
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            say!("{}", usage_error(&e));
            return ExitCode::from(2);
        }
    };
    let outcome = match cli.command {
        Some(Command::Batch(b)) => batch_cmd(b),
        None => single(cli.single),
    };
    outcome.unwrap_or_else(|e| {
        say!("error: {e}");
        ExitCode::FAILURE
    })
}
