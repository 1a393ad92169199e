//! Checkpoints: a painting's [`Job`] and its whole run state between two steps (stage, step,
//! image, optimiser state, loss history), with fingerprints of the network and of every input
//! file, so that a stopped run continues bitwise as if it had never stopped, and refuses to
//! continue when anything it depends on changed.
//!
//! File format, little-endian: magic `NSCKPT\r\n` (the CR LF catches text-mode mangling),
//! version u32, header length u32, the header (JSON: job, fingerprints, counters, exact f64
//! values as bit patterns, and the name and length of every array), the arrays as f32 one
//! after the other, and the BLAKE3 of all preceding bytes. Written atomically (temporary file,
//! fsync, rename, fsync of the folder).

use crate::error::{Error, Result};
use crate::job::Job;
use crate::optim::{LbfgsState, Pair, Stop};
use crate::progress::Record;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"NSCKPT\r\n";
/// The format version this build writes and reads.
pub const VERSION: u32 = 1;

/// The optimiser's state in a checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub enum OptimizerSnapshot {
    Adam {
        steps: u32,
        m: Vec<f32>,
        v: Vec<f32>,
    },
    Lbfgs(LbfgsState<f32>),
}

/// A fingerprint of an input file: its path as the job names it and the BLAKE3 of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputHash {
    pub path: PathBuf,
    pub blake3: String,
}

impl InputHash {
    /// Hashes `bytes` as the content of `path`.
    pub fn of(path: &Path, bytes: &[u8]) -> Self {
        Self::with_hash(path, &blake3::hash(bytes))
    }

    /// The input `path` whose bytes hash to `hash`.
    pub fn with_hash(path: &Path, hash: &blake3::Hash) -> Self {
        InputHash {
            path: path.into(),
            blake3: hash.to_hex().to_string(),
        }
    }
}

/// Everything needed to continue a painting exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub job: Job,
    /// [`crate::Vgg::fingerprint`] of the network it ran on.
    pub weights: [u8; 32],
    /// Content, styles and (if any) the init image, in that order.
    pub inputs: Vec<InputHash>,
    /// 0-based stage, and steps done in it.
    pub stage: usize,
    pub step: usize,
    /// Objective evaluations of the finished stages.
    pub evaluations: usize,
    /// Seconds spent painting so far (all sessions).
    pub seconds: f64,
    /// Every step so far.
    pub records: Vec<Record>,
    /// The image after `step` steps of `stage`, CHW net space.
    pub shape: [usize; 3],
    pub image: Vec<f32>,
    pub optimizer: OptimizerSnapshot,
    /// Owned tile side the stage is evaluated with (`None`: whole), kept on resume so that
    /// the rest of the stage is bitwise the uninterrupted run's.
    pub tile: Option<usize>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    job: Job,
    weights: String,
    inputs: Vec<InputHash>,
    stage: usize,
    step: usize,
    evaluations: usize,
    seconds: f64,
    records: Vec<Record>,
    shape: [usize; 3],
    optimizer: OptimizerHeader,
    /// Absent in checkpoints of untiled versions.
    #[serde(default)]
    tile: Option<usize>,
    /// Arrays in file order: name and element count.
    arrays: Vec<(String, usize)>,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum OptimizerHeader {
    Adam {
        steps: u32,
    },
    Lbfgs {
        /// f64 values as bit patterns: exact whatever the JSON number parser does.
        value_bits: u64,
        gamma_bits: u64,
        g0_bits: u64,
        rho_bits: Vec<u64>,
        iterations: usize,
        evaluations: usize,
        resets: usize,
        stop: Option<String>,
    },
}

fn stop_name(s: Stop) -> &'static str {
    match s {
        Stop::MaxIterations => "max_iterations",
        Stop::MaxEvaluations => "max_evaluations",
        Stop::Converged => "converged",
        Stop::Stalled => "stalled",
        Stop::LineSearchFailed => "line_search_failed",
    }
}

fn stop_from(name: &str) -> Option<Stop> {
    [
        Stop::MaxIterations,
        Stop::MaxEvaluations,
        Stop::Converged,
        Stop::Stalled,
        Stop::LineSearchFailed,
    ]
    .into_iter()
    .find(|&s| stop_name(s) == name)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// The optimiser's state, borrowed, for writing.
#[derive(Clone, Copy)]
pub enum OptimizerView<'a> {
    Adam {
        steps: u32,
        m: &'a [f32],
        v: &'a [f32],
    },
    Lbfgs(&'a LbfgsState<f32>),
}

/// A checkpoint's contents, borrowed from a running painting: written without copying the
/// image or the optimiser's vectors (an L-BFGS history is gigabytes at print sizes).
#[derive(Clone, Copy)]
pub struct CheckpointView<'a> {
    pub job: &'a Job,
    pub weights: [u8; 32],
    pub inputs: &'a [InputHash],
    pub stage: usize,
    pub step: usize,
    pub evaluations: usize,
    pub seconds: f64,
    pub records: &'a [Record],
    pub shape: [usize; 3],
    pub image: &'a [f32],
    pub optimizer: OptimizerView<'a>,
    pub tile: Option<usize>,
}

/// Passes bytes on to a writer and into a hash.
struct Hashing<'w> {
    out: &'w mut dyn Write,
    hash: blake3::Hasher,
}

impl Hashing<'_> {
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.hash.update(bytes);
        self.out.write_all(bytes)
    }
}

impl CheckpointView<'_> {
    /// Writes the file's bytes to `out`.
    pub fn write_to(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let mut arrays: Vec<(String, &[f32])> = vec![("image".into(), self.image)];
        let optimizer = match self.optimizer {
            OptimizerView::Adam { steps, m, v } => {
                arrays.push(("adam.m".into(), m));
                arrays.push(("adam.v".into(), v));
                OptimizerHeader::Adam { steps }
            }
            OptimizerView::Lbfgs(st) => {
                arrays.push(("lbfgs.grad".into(), &st.grad));
                for (k, p) in st.pairs.iter().enumerate() {
                    arrays.push((format!("lbfgs.s{k}"), &p.s));
                    arrays.push((format!("lbfgs.y{k}"), &p.y));
                }
                OptimizerHeader::Lbfgs {
                    value_bits: st.value.to_bits(),
                    gamma_bits: st.gamma.to_bits(),
                    g0_bits: st.g0.to_bits(),
                    rho_bits: st.pairs.iter().map(|p| p.rho.to_bits()).collect(),
                    iterations: st.iterations,
                    evaluations: st.evaluations,
                    resets: st.resets,
                    stop: st.stop.map(|s| stop_name(s).to_string()),
                }
            }
        };
        let header = Header {
            job: self.job.clone(),
            weights: hex(&self.weights),
            inputs: self.inputs.to_vec(),
            stage: self.stage,
            step: self.step,
            evaluations: self.evaluations,
            seconds: self.seconds,
            records: self.records.to_vec(),
            shape: self.shape,
            optimizer,
            tile: self.tile,
            arrays: arrays.iter().map(|(n, a)| (n.clone(), a.len())).collect(),
        };
        let header = serde_json::to_vec(&header).expect("a checkpoint header serialises");
        let mut w = Hashing {
            out,
            hash: blake3::Hasher::new(),
        };
        w.put(MAGIC)?;
        w.put(&VERSION.to_le_bytes())?;
        w.put(&(header.len() as u32).to_le_bytes())?;
        w.put(&header)?;
        let mut block = Vec::with_capacity(1 << 16);
        for (_, a) in &arrays {
            for chunk in a.chunks(1 << 14) {
                block.clear();
                for v in chunk {
                    block.extend_from_slice(&v.to_le_bytes());
                }
                w.put(&block)?;
            }
        }
        let sum = w.hash.finalize();
        w.out.write_all(sum.as_bytes())
    }

    /// Writes the checkpoint atomically: the previous file stays whole until the new one is.
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::image::write_atomic_with(path, |w| self.write_to(w))
    }
}

impl Checkpoint {
    /// A borrowed view, for writing.
    pub fn view(&self) -> CheckpointView<'_> {
        CheckpointView {
            job: &self.job,
            weights: self.weights,
            inputs: &self.inputs,
            stage: self.stage,
            step: self.step,
            evaluations: self.evaluations,
            seconds: self.seconds,
            records: &self.records,
            shape: self.shape,
            image: &self.image,
            optimizer: match &self.optimizer {
                OptimizerSnapshot::Adam { steps, m, v } => OptimizerView::Adam {
                    steps: *steps,
                    m,
                    v,
                },
                OptimizerSnapshot::Lbfgs(st) => OptimizerView::Lbfgs(st),
            },
            tile: self.tile,
        }
    }

    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.view()
            .write_to(&mut out)
            .expect("writing to memory succeeds");
        out
    }

    /// Parses a checkpoint file's bytes; `path` names it in errors. Corrupt, truncated,
    /// foreign and future-version files are each a clear [`Error::Checkpoint`].
    pub fn decode(path: &Path, bytes: &[u8]) -> Result<Self> {
        let bad = |detail: String| Error::Checkpoint {
            path: path.into(),
            detail,
        };
        if bytes.len() < 16 || &bytes[..8] != MAGIC {
            return Err(bad("not a neural-style checkpoint".into()));
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version != VERSION {
            return Err(bad(format!(
                "format version {version}; this build reads version {VERSION}{}",
                if version > VERSION {
                    " (written by a newer neural-style)"
                } else {
                    ""
                }
            )));
        }
        let body_len = bytes
            .len()
            .checked_sub(32)
            .filter(|&n| n >= 16)
            .ok_or_else(|| bad("truncated".into()))?;
        let (body, sum) = bytes.split_at(body_len);
        if blake3::hash(body).as_bytes() != sum {
            return Err(bad(
                "checksum mismatch: the file is damaged or truncated".into()
            ));
        }
        let header_len = u32::from_le_bytes(body[12..16].try_into().expect("4 bytes")) as usize;
        let header_bytes = body
            .get(16..16usize.saturating_add(header_len))
            .ok_or_else(|| bad("truncated header".into()))?;
        let header: Header = serde_json::from_slice(header_bytes)
            .map_err(|e| bad(format!("unreadable header ({e})")))?;
        let mut data = &body[16 + header_len..];
        let declared: usize = header
            .arrays
            .iter()
            .try_fold(0usize, |acc, (_, n)| acc.checked_add(n.checked_mul(4)?))
            .ok_or_else(|| bad("array sizes overflow".into()))?;
        if declared != data.len() {
            return Err(bad(format!(
                "the header declares {declared} bytes of arrays, the file holds {}",
                data.len()
            )));
        }
        let mut arrays = std::collections::HashMap::new();
        for (name, n) in &header.arrays {
            let (head, rest) = data.split_at(n * 4);
            data = rest;
            let values: Vec<f32> = head
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            arrays.insert(name.clone(), values);
        }
        let mut take = |name: &str| {
            arrays
                .remove(name)
                .ok_or_else(|| bad(format!("array {name} missing")))
        };
        let image = take("image")?;
        let [c, h, w] = header.shape;
        if c.checked_mul(h).and_then(|ch| ch.checked_mul(w)) != Some(image.len()) || c != 3 {
            return Err(bad(format!(
                "image of {} values for shape {:?}",
                image.len(),
                header.shape
            )));
        }
        let same_len = |a: &[f32], what: &str| {
            if a.len() == image.len() {
                Ok(())
            } else {
                Err(bad(format!(
                    "{what} has {} values, the image {}",
                    a.len(),
                    image.len()
                )))
            }
        };
        let optimizer = match header.optimizer {
            OptimizerHeader::Adam { steps } => {
                let (m, v) = (take("adam.m")?, take("adam.v")?);
                if steps > 0 {
                    same_len(&m, "adam.m")?;
                    same_len(&v, "adam.v")?;
                }
                OptimizerSnapshot::Adam { steps, m, v }
            }
            OptimizerHeader::Lbfgs {
                value_bits,
                gamma_bits,
                g0_bits,
                rho_bits,
                iterations,
                evaluations,
                resets,
                stop,
            } => {
                let grad = take("lbfgs.grad")?;
                same_len(&grad, "lbfgs.grad")?;
                let mut pairs = VecDeque::new();
                for (k, rho) in rho_bits.iter().enumerate() {
                    let (s, y) = (take(&format!("lbfgs.s{k}"))?, take(&format!("lbfgs.y{k}"))?);
                    same_len(&s, "an L-BFGS pair")?;
                    same_len(&y, "an L-BFGS pair")?;
                    pairs.push_back(Pair {
                        s,
                        y,
                        rho: f64::from_bits(*rho),
                    });
                }
                let stop = match stop {
                    None => None,
                    Some(name) => Some(
                        stop_from(&name).ok_or_else(|| bad(format!("unknown stop '{name}'")))?,
                    ),
                };
                OptimizerSnapshot::Lbfgs(LbfgsState {
                    value: f64::from_bits(value_bits),
                    grad,
                    pairs,
                    gamma: f64::from_bits(gamma_bits),
                    g0: f64::from_bits(g0_bits),
                    iterations,
                    evaluations,
                    resets,
                    stop,
                })
            }
        };
        if !arrays.is_empty() {
            return Err(bad("arrays the optimiser does not use".into()));
        }
        if !image.iter().all(|v| v.is_finite()) {
            return Err(bad("the image holds NaN or infinity".into()));
        }
        let weights =
            unhex32(&header.weights).ok_or_else(|| bad("bad weights fingerprint".into()))?;
        let stages = header.job.scales.len() + 1;
        if header.stage >= stages || header.step > header.job.iterations {
            return Err(bad(format!(
                "stage {} step {} lies outside the job ({stages} stages of {} steps)",
                header.stage + 1,
                header.step,
                header.job.iterations
            )));
        }
        header
            .job
            .validate()
            .map_err(|e| bad(format!("job: {e}")))?;
        Ok(Checkpoint {
            job: header.job,
            weights,
            inputs: header.inputs,
            stage: header.stage,
            step: header.step,
            evaluations: header.evaluations,
            seconds: header.seconds,
            records: header.records,
            shape: header.shape,
            image,
            optimizer,
            tile: header.tile,
        })
    }

    /// Reads and checks a checkpoint file.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::decode(path, &bytes)
    }

    /// Writes the checkpoint atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.view().save(path)
    }
}

/// Where a batch item keeps its checkpoint: a hidden file beside its output.
pub fn beside(output: &Path) -> PathBuf {
    let name = output.file_name().unwrap_or_default().to_string_lossy();
    output.with_file_name(format!(".{name}.ckpt"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(lbfgs: bool) -> Checkpoint {
        let image: Vec<f32> = (0..3 * 4 * 5).map(|i| i as f32 * 0.5 - 7.0).collect();
        let optimizer = if lbfgs {
            OptimizerSnapshot::Lbfgs(LbfgsState {
                value: 0.1 + 0.2,
                grad: image.iter().map(|v| v * 1e-3).collect(),
                pairs: (0..2)
                    .map(|k| Pair {
                        s: image.iter().map(|v| v + k as f32).collect(),
                        y: image.iter().map(|v| v - k as f32).collect(),
                        rho: 1.0 / 3.0 + k as f64,
                    })
                    .collect(),
                gamma: std::f64::consts::PI,
                g0: 1e-300,
                iterations: 7,
                evaluations: 9,
                resets: 1,
                stop: Some(Stop::Stalled),
            })
        } else {
            OptimizerSnapshot::Adam {
                steps: 3,
                m: image.clone(),
                v: image.iter().map(|v| v * v).collect(),
            }
        };
        let mut job = Job::new("c.jpg", ["s.jpg"], "o.png");
        job.scales = vec![64];
        job.learning_rate = 0.1 + 0.7;
        Checkpoint {
            job,
            weights: [9; 32],
            inputs: vec![InputHash::of(Path::new("c.jpg"), b"abc")],
            stage: 1,
            step: 7,
            evaluations: 12,
            seconds: 1.25,
            records: Vec::new(),
            shape: [3, 4, 5],
            image,
            optimizer,
            tile: Some(32),
        }
    }

    #[test]
    fn round_trips_exactly() {
        for lbfgs in [false, true] {
            let c = sample(lbfgs);
            assert_eq!(Checkpoint::decode(Path::new("x"), &c.encode()).unwrap(), c);
        }
    }

    /// `c`'s file as an older version wrote it: the header's `"original_colors":"NAME"` as the
    /// boolean `old`, the header length and the checksum fixed.
    fn with_old_colors(c: &Checkpoint, name: &str, old: &str) -> Vec<u8> {
        let bytes = c.encode();
        let len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
        let header = std::str::from_utf8(&bytes[16..16 + len]).unwrap();
        let new = format!("\"original_colors\":\"{name}\"");
        assert!(header.contains(&new), "{header}");
        let header = header.replace(&new, &format!("\"original_colors\":{old}"));
        let mut out = bytes[..12].to_vec();
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(&bytes[16 + len..bytes.len() - 32]);
        let sum = blake3::hash(&out);
        out.extend_from_slice(sum.as_bytes());
        out
    }

    #[test]
    fn checkpoints_of_older_versions_keep_their_colour_setting() {
        use crate::job::OriginalColors;
        for (mode, name, old) in [
            (OriginalColors::Luminance, "luminance", "true"),
            (OriginalColors::Off, "off", "false"),
        ] {
            let mut c = sample(false);
            c.job.original_colors = mode;
            let back = Checkpoint::decode(Path::new("x"), &with_old_colors(&c, name, old)).unwrap();
            assert_eq!(back, c);
            assert!(back.job.differences(&c.job).is_empty());
        }
        let mut c = sample(true);
        c.job.original_colors = OriginalColors::Histogram;
        assert_eq!(Checkpoint::decode(Path::new("x"), &c.encode()).unwrap(), c);
    }

    #[test]
    fn damage_of_any_kind_is_a_clear_error() {
        let bytes = sample(true).encode();
        let p = Path::new("ck.bin");
        let err = |b: &[u8]| Checkpoint::decode(p, b).unwrap_err().to_string();
        assert!(err(b"hello").contains("not a neural-style checkpoint"));
        for cut in [16, 100, bytes.len() / 2, bytes.len() - 1] {
            assert!(err(&bytes[..cut]).contains("ck.bin"), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        flipped[bytes.len() / 2] ^= 0x40;
        assert!(err(&flipped).contains("checksum"));
        let mut future = bytes.clone();
        future[8..12].copy_from_slice(&2u32.to_le_bytes());
        assert!(err(&future).contains("newer neural-style"));
    }
}
