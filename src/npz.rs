//! Reading float arrays out of an uncompressed or deflated `.npz` archive (via npyz).

use crate::error::{Error, Result};
use crate::gemm::Real;
use npyz::npz::NpzArchive;
use npyz::zip::result::ZipError;
use npyz::{NpyFile, NpyHeader};
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
            detail: one_line(format!("not a readable .npz archive ({e})")),
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
        if let Some(shape) = header_shape(&bytes) {
            if shape
                .iter()
                .try_fold(8u64, |n, &d| n.checked_mul(d))
                .is_none()
            {
                return Err(err(format!("shape {shape:?} has too many elements")));
            }
        }
        let mut rest = bytes.as_slice();
        let header =
            NpyHeader::from_reader(&mut rest).map_err(|e| err(format!("unreadable ({e})")))?;
        let data_bytes = rest.len();
        let npy = NpyFile::with_header(header, &mut rest);
        if npy.order() != npyz::Order::C {
            return Err(err("Fortran-order arrays are not supported".into()));
        }
        let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
        let descr = npy.dtype().descr();
        let width = if descr.contains("<f4") {
            4
        } else if descr.contains("<f8") {
            8
        } else {
            return Err(err(format!("dtype {descr} is not little-endian f4 or f8")));
        };
        let bytes_needed = shape
            .iter()
            .try_fold(width, |n: usize, &d| n.checked_mul(d));
        if bytes_needed != Some(data_bytes) {
            return Err(err(format!(
                "shape {shape:?} disagrees with the {data_bytes} data bytes"
            )));
        }
        let data: std::io::Result<Vec<T>> = if descr.contains("<f4") {
            npy.into_vec::<f32>()
                .map(|v| v.into_iter().map(|x| T::from_f64(x as f64)).collect())
        } else {
            npy.into_vec::<f64>()
                .map(|v| v.into_iter().map(T::from_f64).collect())
        };
        let data = data.map_err(|e| err(format!("truncated or corrupt data ({e})")))?;
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

/// The shape written in a `.npy` header, read without npyz, which multiplies it out unchecked
/// (a crafted huge shape overflows there); `None` when the header is not in the usual form,
/// which npyz then reports.
fn header_shape(npy: &[u8]) -> Option<Vec<u64>> {
    let (len, start): (usize, usize) = match npy.get(..6)? {
        b"\x93NUMPY" if *npy.get(6)? == 1 => (
            u16::from_le_bytes(npy.get(8..10)?.try_into().ok()?) as usize,
            10,
        ),
        b"\x93NUMPY" => (
            u32::from_le_bytes(npy.get(8..12)?.try_into().ok()?) as usize,
            12,
        ),
        _ => return None,
    };
    let dict = std::str::from_utf8(npy.get(start..start.checked_add(len)?)?).ok()?;
    let after = &dict[dict.find("'shape'")? + 7..];
    let tuple = &after[after.find('(')? + 1..];
    tuple[..tuple.find(')')?]
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.parse().ok())
        .collect()
}

fn key_err(path: &Path, key: &str, detail: impl std::fmt::Display) -> Error {
    Error::Weights {
        path: path.into(),
        detail: one_line(format!("{key}: {detail}")),
    }
}

/// `s` on one line: npyz's parse errors draw the header over several.
fn one_line(s: String) -> String {
    if s.contains(['\n', '\r']) {
        s.split_whitespace().collect::<Vec<_>>().join(" ")
    } else {
        s
    }
}
