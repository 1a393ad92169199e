//! Batches: many paintings with one network and one style cache. [`plan`] lists the items (a
//! folder pair or a manifest), [`shard`] picks this process's share, and [`run`] paints them,
//! several at once if asked, skipping finished outputs and recording every item's outcome.
//! One item's failure never stops the others.

pub mod plan;
pub mod shard;

use crate::checkpoint::{self, Checkpoint};
use crate::error::{Error, Result};
use crate::job::Job;
use crate::memory::KeepKernels;
use crate::paint::{Cancel, CheckpointPolicy, Control, Event, Painter};
use crate::progress::Record;
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// What happened to an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Skipped,
    Failed,
    /// Stopped by a signal or the cancellation handle; resumes from its checkpoint next time.
    Interrupted,
}

/// Final loss values of a painting.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Losses {
    pub total: f64,
    pub content: f64,
    pub style: f64,
    pub tv: f64,
}

/// One line of the results file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemResult {
    pub content: PathBuf,
    pub styles: Vec<PathBuf>,
    pub output: PathBuf,
    pub status: Status,
    pub error: Option<String>,
    pub seconds: f64,
    pub evaluations: usize,
    pub losses: Option<Losses>,
    /// Seconds spent on style targets (near zero when the style cache had them).
    pub style_seconds: f64,
}

impl ItemResult {
    fn new(job: &Job, status: Status) -> Self {
        ItemResult {
            content: job.content.clone(),
            styles: job.styles.clone(),
            output: job.output.clone(),
            status,
            error: None,
            seconds: 0.0,
            evaluations: 0,
            losses: None,
            style_seconds: 0.0,
        }
    }

    /// One line of JSON.
    pub fn json(&self) -> String {
        serde_json::to_string(self).expect("a result serialises")
    }
}

/// How a batch runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Repaint items whose output exists (otherwise they are skipped).
    pub overwrite: bool,
    /// Items painted at once; each gets its share of `threads`.
    pub jobs: usize,
    /// Worker threads in all.
    pub threads: usize,
    /// Checkpoint each item (beside its output, see [`checkpoint::beside`]) every so many
    /// steps and seconds; an interrupted item resumes from it on the next run.
    pub checkpoint: Option<(usize, f64)>,
    /// Stops the batch: the current items stop after their step (and checkpoint), no new
    /// item starts.
    pub cancel: Cancel,
    /// Memory all concurrent items may use together (`None`: what the machine has
    /// available); each item gets its share.
    pub max_memory: Option<u64>,
    /// Transformed kernels each item keeps between steps ([`Control::keep_kernels`]).
    pub keep_kernels: KeepKernels,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            overwrite: false,
            jobs: 1,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            checkpoint: None,
            cancel: Cancel::default(),
            max_memory: None,
            keep_kernels: KeepKernels::Auto,
        }
    }
}

/// What a batch reports while it runs; `worker` is 0..jobs.
pub enum BatchEvent<'a> {
    /// An item starts (`index` counts the pending items, from 0).
    Started {
        worker: usize,
        index: usize,
        job: &'a Job,
    },
    /// A stage of an item starts.
    Stage {
        worker: usize,
        stage: usize,
        stages: usize,
        iterations: usize,
    },
    /// A step of an item finished.
    Step { worker: usize, record: Record },
    /// An item ended (painted, skipped or failed).
    Finished {
        worker: usize,
        result: &'a ItemResult,
    },
    /// A problem that did not stop the item.
    Warning { worker: usize, message: String },
}

/// Counts of a finished batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub painted: usize,
    pub skipped: usize,
    pub failed: usize,
    pub interrupted: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "painted {}, skipped {}, failed {}",
            self.painted, self.skipped, self.failed
        )?;
        if self.interrupted > 0 {
            write!(f, ", interrupted {}", self.interrupted)?;
        }
        Ok(())
    }
}

/// Appends result lines to a JSON-lines file, one whole line per write, flushed, so that a
/// killed batch leaves every finished item recorded (and concurrent shards appending to one
/// file do not interleave within a line).
pub struct ResultsFile {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

impl ResultsFile {
    /// Opens `path` for appending (created if missing).
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(ResultsFile {
            path: path.into(),
            file: Mutex::new(file),
        })
    }

    /// Appends one result.
    pub fn append(&self, result: &ItemResult) -> Result<()> {
        let mut line = result.json();
        line.push('\n');
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        file.write_all(line.as_bytes())
            .and_then(|()| file.flush())
            .map_err(|e| Error::io(&self.path, e))
    }
}

/// The items still to paint (all of them with `overwrite`): those without an output, and
/// those with an unfinished checkpoint (an interrupted item leaves its current image as the
/// output); and the skipped rest. Decided before anything is loaded, so a re-run of a finished
/// batch costs nothing.
pub fn pending(items: Vec<Job>, overwrite: bool) -> (Vec<Job>, Vec<Job>) {
    items.into_iter().partition(|job| {
        overwrite || !job.output.exists() || checkpoint::beside(&job.output).exists()
    })
}

/// The worker threads of each of `jobs` concurrent items: `threads` split as evenly as
/// possible, at least one each.
pub fn split_threads(threads: usize, jobs: usize) -> Vec<usize> {
    let jobs = jobs.max(1);
    (0..jobs)
        .map(|k| (threads / jobs + usize::from(k < threads % jobs)).max(1))
        .collect()
}

/// Paints `items` with `painter`, `options.jobs` at a time, each in a thread pool of its own
/// share of the threads (so results are the same as one at a time). Every finished item is
/// reported to `on_event` and appended to `results`; a failed item is recorded and the rest go
/// on. Returns the counts (skipped items are the caller's: see [`pending`]).
pub fn run(
    painter: &Painter,
    items: &[Job],
    options: &Options,
    results: Option<&ResultsFile>,
    on_event: &(dyn Fn(BatchEvent) + Sync),
) -> Result<Summary> {
    let next = AtomicUsize::new(0);
    let summary = Mutex::new(Summary::default());
    let record_error: Mutex<Option<Error>> = Mutex::new(None);
    let pools = split_threads(options.threads, options.jobs.min(items.len()).max(1))
        .into_iter()
        .map(|n| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .map_err(|e| Error::Config(format!("thread pool: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    std::thread::scope(|scope| {
        for (worker, pool) in pools.iter().enumerate() {
            let (next, summary, record_error) = (&next, &summary, &record_error);
            scope.spawn(move || loop {
                if options.cancel.is_cancelled() {
                    break;
                }
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = items.get(index) else { break };
                on_event(BatchEvent::Started { worker, index, job });
                let result = pool.install(|| paint_one(painter, job, options, worker, on_event));
                {
                    let mut s = summary.lock().unwrap_or_else(|e| e.into_inner());
                    match result.status {
                        Status::Ok => s.painted += 1,
                        Status::Skipped => s.skipped += 1,
                        Status::Failed => s.failed += 1,
                        Status::Interrupted => s.interrupted += 1,
                    }
                }
                if let Some(file) = results {
                    if let Err(e) = file.append(&result) {
                        record_error
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .get_or_insert(e);
                    }
                }
                on_event(BatchEvent::Finished {
                    worker,
                    result: &result,
                });
            });
        }
    });
    if let Some(e) = record_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    Ok(summary.into_inner().unwrap_or_else(|e| e.into_inner()))
}

/// Paints one item, resuming it from its checkpoint when an earlier run left one, and turning
/// any failure (a panic included: an engine bug must not take the rest of the batch down) into
/// a failed result.
fn paint_one(
    painter: &Painter,
    job: &Job,
    options: &Options,
    worker: usize,
    on_event: &(dyn Fn(BatchEvent) + Sync),
) -> ItemResult {
    let start = Instant::now();
    let mut result = ItemResult::new(job, Status::Ok);
    let warn = |message: String| {
        on_event(BatchEvent::Warning {
            worker,
            message: format!("{}: {message}", job.output.display()),
        })
    };
    let ck_path = checkpoint::beside(&job.output);
    let mut control = Control {
        checkpoint: options
            .checkpoint
            .map(|(every_steps, every_seconds)| CheckpointPolicy {
                path: ck_path.clone(),
                every_steps,
                every_seconds,
            }),
        cancel: options.cancel.clone(),
        resume: None,
        max_memory: options
            .max_memory
            .or_else(|| crate::memory::limit(None))
            .map(|m| m / options.jobs.max(1) as u64),
        keep_kernels: options.keep_kernels,
    };
    if ck_path.exists() && !options.overwrite {
        match Checkpoint::load(&ck_path) {
            Ok(ck) => {
                let differs = ck.job.differences(job);
                if differs.is_empty() {
                    control.resume = Some(ck);
                } else {
                    warn(format!(
                        "its checkpoint was made with other settings ({}); starting over",
                        differs.join(", ")
                    ));
                }
            }
            Err(e) => warn(format!("{e}; starting over")),
        }
    }
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if let Some(dir) = job.output.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let attempt = |control: Control| {
            painter.paint_with(job, control, &mut None, |event| {
                match event {
                    Event::Stage {
                        stage,
                        stages,
                        iterations,
                        ..
                    } => on_event(BatchEvent::Stage {
                        worker,
                        stage: *stage,
                        stages: *stages,
                        iterations: *iterations,
                    }),
                    Event::Step { record, .. } => on_event(BatchEvent::Step {
                        worker,
                        record: *record,
                    }),
                    Event::Warning(message) => warn(message.clone()),
                }
                Ok(())
            })
        };
        let resuming = control.resume.is_some();
        let fresh = Control {
            resume: None,
            checkpoint: control.checkpoint.clone(),
            cancel: control.cancel.clone(),
            max_memory: control.max_memory,
            keep_kernels: control.keep_kernels,
        };
        match attempt(control) {
            // The inputs changed since the checkpoint: paint afresh.
            Err(e @ Error::Checkpoint { .. }) if resuming => {
                warn(format!("{e}; starting over"));
                attempt(fresh)
            }
            outcome => outcome,
        }
    }));
    match outcome {
        Ok(Ok(painting)) => {
            if ck_path.exists() {
                if let Err(e) = std::fs::remove_file(&ck_path) {
                    warn(format!(
                        "finished, but its checkpoint could not be removed: {e}"
                    ));
                }
            }
            result.evaluations = painting.evaluations;
            result.style_seconds = painting.style_seconds;
            result.losses = painting.last().map(|r| Losses {
                total: r.total,
                content: r.content,
                style: r.style,
                tv: r.tv,
            });
        }
        Ok(Err(e)) => {
            result.status = match e {
                Error::Cancelled { .. } => Status::Interrupted,
                _ => Status::Failed,
            };
            result.error = Some(e.to_string());
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            result.status = Status::Failed;
            result.error = Some(format!("internal error (please report): {what}"));
        }
    }
    result.seconds = start.elapsed().as_secs_f64();
    result
}

/// The result line of an item skipped because its output exists.
pub fn skipped(job: &Job) -> ItemResult {
    ItemResult::new(job, Status::Skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_are_split_evenly() {
        assert_eq!(split_threads(16, 3), [6, 5, 5]);
        assert_eq!(split_threads(2, 4), [1, 1, 1, 1]);
        assert_eq!(split_threads(8, 1), [8]);
        assert_eq!(split_threads(8, 0), [8]);
    }

    #[test]
    fn existing_outputs_are_skipped_unless_overwriting() {
        let dir = tempfile::tempdir().unwrap();
        let done = dir.path().join("done.png");
        std::fs::write(&done, b"x").unwrap();
        let jobs = vec![
            Job::new("c.jpg", ["s.jpg"], &done),
            Job::new("c.jpg", ["s.jpg"], dir.path().join("new.png")),
        ];
        let (todo, skip) = pending(jobs.clone(), false);
        assert_eq!((todo.len(), skip.len()), (1, 1));
        assert_eq!(skip[0].output, done);
        let (todo, skip) = pending(jobs, true);
        assert_eq!((todo.len(), skip.len()), (2, 0));
    }

    #[test]
    fn results_lines_are_whole_json_objects() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        let job = Job::new("c.jpg", ["s.jpg"], "o.png");
        let file = ResultsFile::open(&path).unwrap();
        file.append(&skipped(&job)).unwrap();
        let mut failed = ItemResult::new(&job, Status::Failed);
        failed.error = Some("bad \"quote\"\nnewline".into());
        file.append(&failed).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["status"], "skipped");
        assert_eq!(lines[1]["status"], "failed");
        assert_eq!(lines[1]["error"], "bad \"quote\"\nnewline");
    }
}
