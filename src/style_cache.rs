//! Style targets computed once: the Gram matrices of a style image at a size, kept in memory
//! for the life of a [`StyleCache`] and, with a directory, on disk between runs ("saved
//! styles"). An entry is keyed by a hash of the style file's bytes and of everything the
//! matrices depend on (side, style layers, pooling, the network's weights, this code's
//! version; for colour-matched styles also the photograph's hash), so a changed file or
//! setting is a new key; a damaged entry fails its checksum and is recomputed, never trusted.
//!
//! File format (little-endian): magic `NSGRAMS\0`, version u32, the 32-byte key, layer count
//! u32, then per layer its index u32, channel count c u32, c*c f32 (the Gram matrix) and c f32
//! (the channel means); last the BLAKE3 of all the preceding bytes.

use crate::error::{Error, Result};
use crate::loss::StyleGrams;
use crate::ops::Pool;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

const MAGIC: &[u8; 8] = b"NSGRAMS\0";
const VERSION: u32 = 2;
/// Bumped when decoding, resizing or the Gram formula change, so old entries stop matching.
const PIPELINE: &str =
    "neural-style style grams: decode, lanczos3 long side, F F^T / n and F 1 / n, v2";

/// Bumped when the colour matching of `--original-colors histogram` changes.
const MATCHING: &str = "neural-style colour matching: full-size mean/covariance, v1";

/// What a style's Gram matrices depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StyleKey(pub [u8; 32]);

impl StyleKey {
    /// The key of the style file whose bytes are `bytes`, resized to long side `side`, at the
    /// (sorted, distinct) style `layers` with `pool`, through the network `weights`
    /// ([`crate::Vgg::fingerprint`]).
    pub fn new(bytes: &[u8], side: u32, layers: &[usize], pool: Pool, weights: [u8; 32]) -> Self {
        let mut layers = layers.to_vec();
        layers.sort_unstable();
        layers.dedup();
        let mut h = blake3::Hasher::new();
        h.update(PIPELINE.as_bytes());
        h.update(blake3::hash(bytes).as_bytes());
        h.update(&side.to_le_bytes());
        h.update(&(layers.len() as u32).to_le_bytes());
        for l in layers {
            h.update(&(l as u32).to_le_bytes());
        }
        h.update(&[pool as u8]);
        h.update(&weights);
        StyleKey(*h.finalize().as_bytes())
    }

    /// The key of the same targets computed from the style colour-matched to a photograph
    /// whose file hashes to `content` (BLAKE3 of its bytes): such targets depend on the
    /// photograph too, so two photographs in one style must never share them.
    pub fn matched_to(self, content: &[u8; 32]) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(MATCHING.as_bytes());
        h.update(&self.0);
        h.update(content);
        StyleKey(*h.finalize().as_bytes())
    }

    /// Lower-case hex, the entry's file stem.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Where a cached lookup found its matrices.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// Already in memory (an earlier painting of this run).
    Memory,
    /// Read from the cache directory.
    Disk,
    /// Computed (not cached anywhere yet).
    Computed,
    /// The disk entry was unusable (the reason), so it was computed again and rewritten.
    Recomputed(String),
}

/// The outcome of [`StyleCache::get_or_compute`].
pub struct Lookup {
    pub grams: Arc<StyleGrams<f32>>,
    pub origin: Origin,
    /// A failed write of the disk entry (the painting goes on without it).
    pub write_error: Option<Error>,
}

type Slot = Arc<Mutex<Option<Arc<StyleGrams<f32>>>>>;

/// Style Gram matrices shared by every painting of a run (and every thread of it), optionally
/// persisted in a directory.
#[derive(Default)]
pub struct StyleCache {
    dir: Option<PathBuf>,
    slots: Mutex<HashMap<StyleKey, Slot>>,
}

impl StyleCache {
    /// A cache in memory only.
    pub fn in_memory() -> Self {
        StyleCache::default()
    }

    /// A cache that also keeps its entries in `dir` (created if missing).
    pub fn in_dir(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(StyleCache {
            dir: Some(dir),
            slots: Mutex::default(),
        })
    }

    /// The entry file of `key`, when the cache has a directory.
    pub fn entry_path(&self, key: &StyleKey) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{}.grams", key.hex())))
    }

    /// The matrices of `key`: from memory, else from disk, else from `compute` (then stored in
    /// both). Concurrent callers of one key wait for a single computation.
    pub fn get_or_compute(
        &self,
        key: StyleKey,
        compute: impl FnOnce() -> Result<StyleGrams<f32>>,
    ) -> Result<Lookup> {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots.entry(key).or_default().clone()
        };
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(grams) = &*slot {
            return Ok(Lookup {
                grams: grams.clone(),
                origin: Origin::Memory,
                write_error: None,
            });
        }
        let path = self.entry_path(&key);
        let mut origin = Origin::Computed;
        if let Some(path) = &path {
            match std::fs::read(path) {
                Ok(bytes) => match decode(&bytes, &key) {
                    Ok(grams) => {
                        let grams = Arc::new(grams);
                        *slot = Some(grams.clone());
                        return Ok(Lookup {
                            grams,
                            origin: Origin::Disk,
                            write_error: None,
                        });
                    }
                    Err(reason) => origin = Origin::Recomputed(reason),
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => origin = Origin::Recomputed(e.to_string()),
            }
        }
        let grams = Arc::new(compute()?);
        let write_error =
            path.and_then(|p| crate::image::write_atomic(&p, &encode(&grams, &key)).err());
        *slot = Some(grams.clone());
        Ok(Lookup {
            grams,
            origin,
            write_error,
        })
    }
}

/// The entry bytes of `grams` under `key`.
pub fn encode(grams: &StyleGrams<f32>, key: &StyleKey) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&key.0);
    out.extend_from_slice(&(grams.layers.len() as u32).to_le_bytes());
    for ((i, g), m) in grams.layers.iter().zip(&grams.means) {
        out.extend_from_slice(&(*i as u32).to_le_bytes());
        out.extend_from_slice(&(m.len() as u32).to_le_bytes());
        for v in g.iter().chain(m) {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    let sum = blake3::hash(&out);
    out.extend_from_slice(sum.as_bytes());
    out
}

/// Reads an entry back, checking everything; the error says why it cannot be used.
pub fn decode(bytes: &[u8], key: &StyleKey) -> std::result::Result<StyleGrams<f32>, String> {
    let body_len = bytes
        .len()
        .checked_sub(32)
        .ok_or("shorter than its checksum")?;
    let (body, sum) = bytes.split_at(body_len);
    if blake3::hash(body).as_bytes() != sum {
        return Err("checksum mismatch (damaged or truncated)".into());
    }
    let mut r = Reader(body);
    if r.take(8)? != MAGIC {
        return Err("not a style cache entry".into());
    }
    let version = r.u32()?;
    if version != VERSION {
        return Err(format!(
            "format version {version}, this build reads {VERSION}"
        ));
    }
    if r.take(32)? != key.0 {
        return Err("entry belongs to another key".into());
    }
    let count = r.u32()? as usize;
    let (mut layers, mut means) = (Vec::new(), Vec::new());
    for _ in 0..count {
        let index = r.u32()? as usize;
        let c = r.u32()? as usize;
        let n = c.checked_mul(c).ok_or("channel count overflows")?;
        layers.push((index, r.f32s(n)?));
        means.push(r.f32s(c)?);
    }
    if !r.0.is_empty() {
        return Err("trailing bytes".into());
    }
    Ok(StyleGrams { layers, means })
}

/// A cursor that refuses to read past the end (so a declared size can never allocate more
/// than the file holds).
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        if n > self.0.len() {
            return Err("truncated".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> std::result::Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn f32s(&mut self, n: usize) -> std::result::Result<Vec<f32>, String> {
        let raw = self.take(n.checked_mul(4).ok_or("channel count overflows")?)?;
        Ok(raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grams() -> StyleGrams<f32> {
        StyleGrams {
            layers: vec![(0, vec![1.0, 2.0, 2.0, 5.0]), (2, vec![0.5; 9])],
            means: vec![vec![0.25, -1.0], vec![3.0; 3]],
        }
    }

    fn key(bytes: &[u8]) -> StyleKey {
        StyleKey::new(bytes, 256, &[0, 2], Pool::Avg, [7; 32])
    }

    #[test]
    fn every_input_of_the_key_changes_it() {
        let base = key(b"style image bytes");
        assert_eq!(base, key(b"style image bytes"));
        assert_ne!(base, key(b"style image bytez"));
        let w = [7; 32];
        let b = b"style image bytes";
        assert_ne!(base, StyleKey::new(b, 257, &[0, 2], Pool::Avg, w));
        assert_ne!(base, StyleKey::new(b, 256, &[0, 3], Pool::Avg, w));
        assert_ne!(base, StyleKey::new(b, 256, &[0, 2], Pool::Max, w));
        assert_ne!(base, StyleKey::new(b, 256, &[0, 2], Pool::Avg, [8; 32]));
        // Order and repeats of the layers do not matter.
        assert_eq!(base, StyleKey::new(b, 256, &[2, 0, 2], Pool::Avg, w));
        // Colour-matched targets: their own key, one per photograph.
        let (p, q) = ([1; 32], [2; 32]);
        assert_ne!(base.matched_to(&p), base);
        assert_ne!(base.matched_to(&p), base.matched_to(&q));
        assert_eq!(base.matched_to(&p), key(b).matched_to(&p));
    }

    #[test]
    fn entries_round_trip_and_damage_is_detected() {
        let k = key(b"x");
        let bytes = encode(&grams(), &k);
        assert_eq!(decode(&bytes, &k).unwrap(), grams());
        assert!(decode(&bytes, &key(b"y"))
            .unwrap_err()
            .contains("another key"));
        for cut in [0, 10, bytes.len() - 1] {
            assert!(decode(&bytes[..cut], &k).is_err());
        }
        let mut flipped = bytes.clone();
        flipped[60] ^= 1;
        assert!(decode(&flipped, &k).unwrap_err().contains("checksum"));
    }

    #[test]
    fn a_damaged_disk_entry_is_recomputed_and_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let k = key(b"x");
        let computed = |n: &mut usize| {
            *n += 1;
            Ok(grams())
        };
        let mut n = 0;
        let first = StyleCache::in_dir(dir.path()).unwrap();
        let l = first.get_or_compute(k, || computed(&mut n)).unwrap();
        assert_eq!((l.origin, n), (Origin::Computed, 1));
        let l = first.get_or_compute(k, || computed(&mut n)).unwrap();
        assert_eq!((l.origin, n), (Origin::Memory, 1));
        // A new run reads the disk entry.
        let l = StyleCache::in_dir(dir.path())
            .unwrap()
            .get_or_compute(k, || computed(&mut n))
            .unwrap();
        assert_eq!((l.origin, n), (Origin::Disk, 1));
        // Damage it: the next run recomputes (with a reason) and repairs it.
        let path = first.entry_path(&k).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(bytes.len() - 5);
        std::fs::write(&path, bytes).unwrap();
        let l = StyleCache::in_dir(dir.path())
            .unwrap()
            .get_or_compute(k, || computed(&mut n))
            .unwrap();
        assert!(matches!(l.origin, Origin::Recomputed(_)), "{:?}", l.origin);
        assert_eq!(n, 2);
        assert_eq!(*l.grams, grams());
        let l = StyleCache::in_dir(dir.path())
            .unwrap()
            .get_or_compute(k, || computed(&mut n))
            .unwrap();
        assert_eq!((l.origin, n), (Origin::Disk, 2));
    }
}
