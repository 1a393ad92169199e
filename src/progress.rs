//! Progress records of a run, and their renderings: a one-line JSON object per step for batch
//! jobs and CSV rows for the loss history.

use crate::transfer::Step;

/// One step's figures, detached from the image.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    /// 1-based stage of a multi-scale run.
    pub scale: usize,
    /// Long side of the image at this stage.
    pub size: u32,
    pub iteration: usize,
    pub iterations: usize,
    pub evaluations: usize,
    pub total: f64,
    pub content: f64,
    pub style: f64,
    pub tv: f64,
    /// Seconds since this stage started.
    pub seconds: f64,
}

impl Record {
    pub fn new(scale: usize, size: u32, s: &Step) -> Self {
        Record {
            scale,
            size,
            iteration: s.iteration,
            iterations: s.iterations,
            evaluations: s.evaluations,
            total: s.eval.total,
            content: s.eval.content,
            style: s.eval.style,
            tv: s.eval.tv,
            seconds: s.elapsed,
        }
    }

    /// A single-line JSON object (numbers only, so no escaping is needed; non-finite values,
    /// which the engine reports as errors anyway, become null).
    pub fn json(&self) -> String {
        let num = |v: f64| {
            if v.is_finite() {
                format!("{v:e}")
            } else {
                "null".into()
            }
        };
        format!(
            "{{\"scale\":{},\"size\":{},\"iteration\":{},\"iterations\":{},\"evaluations\":{},\"total\":{},\"content\":{},\"style\":{},\"tv\":{},\"seconds\":{:.3}}}",
            self.scale,
            self.size,
            self.iteration,
            self.iterations,
            self.evaluations,
            num(self.total),
            num(self.content),
            num(self.style),
            num(self.tv),
            self.seconds
        )
    }

    pub const CSV_HEADER: &'static str =
        "scale,size,iteration,evaluations,total,content,style,tv,seconds";

    pub fn csv_row(&self) -> String {
        format!(
            "{},{},{},{},{:e},{:e},{:e},{:e},{:.3}",
            self.scale,
            self.size,
            self.iteration,
            self.evaluations,
            self.total,
            self.content,
            self.style,
            self.tv,
            self.seconds
        )
    }
}

/// The loss history as CSV text, header included.
pub fn csv(records: &[Record]) -> String {
    let mut s = String::from(Record::CSV_HEADER);
    s.push('\n');
    for r in records {
        s += &r.csv_row();
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            scale: 1,
            size: 256,
            iteration: 30,
            iterations: 120,
            evaluations: 31,
            total: 1.5e8,
            content: 2.0e4,
            style: 3.0e6,
            tv: 12.5,
            seconds: 15.0,
        }
    }

    #[test]
    fn json_is_one_line_with_every_field() {
        let j = record().json();
        assert!(!j.contains('\n'));
        for key in [
            "scale",
            "size",
            "iteration",
            "iterations",
            "evaluations",
            "total",
            "content",
            "style",
            "tv",
            "seconds",
        ] {
            assert!(j.contains(&format!("\"{key}\":")), "{key} in {j}");
        }
        assert!(j.contains("\"total\":1.5e8"));
    }

    #[test]
    fn csv_rows_match_the_header() {
        let text = csv(&[record(), record()]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        let n = lines[0].split(',').count();
        assert!(lines[1..].iter().all(|l| l.split(',').count() == n));
    }
}
