//! The library's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in neural-style. Messages are one line and name the culprit.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The weights file is missing.
    #[error("weights file {0} not found; fetch it with `bash scripts/fetch-weights.sh`")]
    WeightsMissing(PathBuf),
    /// The weights file exists but is not a usable VGG-19 npz (names the key at fault).
    #[error("weights {path}: {detail}")]
    Weights { path: PathBuf, detail: String },
    /// An image could not be decoded or encoded.
    #[error("image {path}: {detail}")]
    Image { path: PathBuf, detail: String },
    /// Two arrays that must agree in shape do not.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A configuration value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The optimisation produced a non-finite value.
    #[error("numerical failure: {0}")]
    NonFinite(String),
    /// A checkpoint cannot be read, or does not belong to this painting.
    #[error("checkpoint {path}: {detail}")]
    Checkpoint { path: PathBuf, detail: String },
    /// The run was stopped through its cancellation handle (or a signal) after a whole step;
    /// the current image was written, and the checkpoint when one was configured.
    #[error("interrupted at stage {stage}, step {step}")]
    Cancelled {
        stage: usize,
        step: usize,
        /// The checkpoint written, if any.
        checkpoint: Option<PathBuf>,
    },
    /// The run would need more memory than the machine allows.
    #[error("{0}")]
    Memory(String),
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An `Io` error naming `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
