//! Where a step's time goes: wall-clock seconds accumulated per labelled phase (one label per
//! layer and direction, plus the losses), for deciding what to optimise.

use std::time::Instant;

/// Accumulated seconds and call counts per label, in first-seen order.
#[derive(Debug, Default, Clone)]
pub struct Timings {
    entries: Vec<(String, f64, u32)>,
}

impl Timings {
    /// Runs `f`, charging its wall-clock time to `label`.
    pub fn time<R>(&mut self, label: impl std::fmt::Display, f: impl FnOnce() -> R) -> R {
        let start = Instant::now();
        let r = f();
        let secs = start.elapsed().as_secs_f64();
        let label = label.to_string();
        match self.entries.iter_mut().find(|e| e.0 == label) {
            Some(e) => {
                e.1 += secs;
                e.2 += 1;
            }
            None => self.entries.push((label, secs, 1)),
        }
        r
    }

    /// (label, total seconds, calls) in first-seen order.
    pub fn entries(&self) -> &[(String, f64, u32)] {
        &self.entries
    }

    /// A table of mean milliseconds per call and share of the total.
    pub fn report(&self) -> String {
        let total: f64 = self.entries.iter().map(|e| e.1).sum();
        let mut s = format!("{:<22} {:>10} {:>7}\n", "phase", "ms/call", "share");
        for (label, secs, calls) in &self.entries {
            s += &format!(
                "{label:<22} {:>10.2} {:>6.1}%\n",
                secs * 1e3 / *calls as f64,
                100.0 * secs / total.max(1e-12)
            );
        }
        s
    }
}
