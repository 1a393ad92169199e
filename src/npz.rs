//! Reading float arrays out of an uncompressed or deflated `.npz` archive (via npyz).

use crate::error::{Error, Result};
use crate::gemm::Real;
use npyz::npz::NpzArchive;
use npyz::zip::result::ZipError;
use npyz::NpyFile;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// An open `.npz` archive; every failure is reported as `Error::Weights` naming file and key.
pub struct Npz {
    archive: NpzArchive<BufReader<File>>,
    path: PathBuf,
}

/// A dense C-order array read from an archive.
pub struct Array<T> {
    pub shape: Vec<usize>,
    pub data: Vec<T>,
}

impl Npz {
    /// Opens `path`; a missing file is `Error::Io` with `NotFound`.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let archive = NpzArchive::new(BufReader::new(file)).map_err(|e| Error::Weights {
            path: path.into(),
            detail: format!("not a readable .npz archive ({e})"),
        })?;
        Ok(Npz {
            archive,
            path: path.into(),
        })
    }

    /// The shape of array `key`, from its header alone.
    pub fn shape(&mut self, key: &str) -> Result<Vec<usize>> {
        let path = &self.path;
        match self.archive.by_name(key) {
            Ok(Some(npy)) => Ok(npy.shape().iter().map(|&d| d as usize).collect()),
            Ok(None) => Err(key_err(path, key, "missing")),
            Err(e) => Err(key_err(path, key, format!("unreadable ({e})"))),
        }
    }

    /// Reads array `key` (stored as f32 or f64) converted to `T`; a missing key is an error.
    /// The entry is read whole first, so that its CRC is checked (a damaged file is an error,
    /// not a subtly different network) and no bytes may follow the array's data.
    pub fn array<T: Real>(&mut self, key: &str) -> Result<Array<T>> {
        let path = &self.path;
        let err = |detail: String| key_err(path, key, detail);
        let mut bytes = Vec::new();
        match self
            .archive
            .zip_archive()
            .by_name(&npyz::npz::file_name_from_array_name(key))
        {
            Ok(mut file) => file
                .read_to_end(&mut bytes)
                .map_err(|e| err(format!("truncated or corrupt data ({e})")))?,
            Err(ZipError::FileNotFound) => return Err(err("missing".into())),
            Err(e) => return Err(err(format!("unreadable ({e})"))),
        };
        let mut rest = bytes.as_slice();
        let npy = NpyFile::new(&mut rest).map_err(|e| err(format!("unreadable ({e})")))?;
        if npy.order() != npyz::Order::C {
            return Err(err("Fortran-order arrays are not supported".into()));
        }
        let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
        let descr = npy.dtype().descr();
        let data: std::io::Result<Vec<T>> = if descr.contains("<f4") {
            npy.into_vec::<f32>()
                .map(|v| v.into_iter().map(|x| T::from_f64(x as f64)).collect())
        } else if descr.contains("<f8") {
            npy.into_vec::<f64>()
                .map(|v| v.into_iter().map(T::from_f64).collect())
        } else {
            return Err(err(format!("dtype {descr} is not little-endian f4 or f8")));
        };
        let data = data.map_err(|e| err(format!("truncated or corrupt data ({e})")))?;
        if !rest.is_empty() {
            return Err(err(format!("{} bytes after the data", rest.len())));
        }
        if data.len() != shape.iter().product::<usize>() {
            return Err(err("data length disagrees with its shape".into()));
        }
        Ok(Array { shape, data })
    }

    /// Reads a scalar (any shape with one element) as f64.
    pub fn scalar(&mut self, key: &str) -> Result<f64> {
        let a = self.array::<f64>(key)?;
        match a.data.as_slice() {
            [v] => Ok(*v),
            _ => Err(key_err(&self.path, key, "expected a single value")),
        }
    }
}

fn key_err(path: &Path, key: &str, detail: impl std::fmt::Display) -> Error {
    Error::Weights {
        path: path.into(),
        detail: format!("{key}: {detail}"),
    }
}
