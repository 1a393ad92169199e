//! Property tests of the checkpoint reader on mutated real checkpoints: never a panic, never
//! an allocation beyond the file's size, always a typed error or a checkpoint that passes every
//! consistency check. Mutations are tried both as they are (the checksum must catch them) and
//! re-signed with a fresh checksum, so that the parser behind it is exercised too.

mod common;

use common::data;
use common::images::{gradient, stripes};
use neural_style::{Checkpoint, CheckpointPolicy, Control, Error, Job, Optimizer, Painter, Vgg19};
use proptest::prelude::*;
use std::path::Path;
use std::sync::OnceLock;

/// A real checkpoint file of each optimiser (tiny network, a few steps).
fn checkpoints() -> &'static [Vec<u8>; 2] {
    static FILES: OnceLock<[Vec<u8>; 2]> = OnceLock::new();
    FILES.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        gradient(40, 32).save(dir.path().join("c.png")).unwrap();
        stripes(32, 32).save(dir.path().join("s.png")).unwrap();
        [Optimizer::Adam, Optimizer::Lbfgs].map(|optimizer| {
            let mut job = Job::new(
                dir.path().join("c.png"),
                [dir.path().join("s.png")],
                dir.path().join("o.png"),
            );
            (job.size, job.iterations, job.optimizer, job.history) = (32, 4, optimizer, 2);
            let vgg = Vgg19::load_for(data("tiny_vgg.npz"), &job.loss_config()).unwrap();
            let ck = dir.path().join("ck.bin");
            let control = Control {
                checkpoint: Some(CheckpointPolicy::new(&ck)),
                ..Control::default()
            };
            Painter::new(&vgg)
                .paint_with(&job, control.clone(), &mut None, |_| Ok(()))
                .unwrap();
            std::fs::read(&ck).unwrap()
        })
    })
}

/// Replaces the trailing checksum with the right one for the (mutated) body.
fn resign(mut bytes: Vec<u8>) -> Vec<u8> {
    if bytes.len() >= 32 {
        let n = bytes.len() - 32;
        let sum = blake3::hash(&bytes[..n]);
        bytes[n..].copy_from_slice(sum.as_bytes());
    }
    bytes
}

fn check(bytes: &[u8]) {
    match Checkpoint::decode(Path::new("fuzz.ckpt"), bytes) {
        Ok(ck) => {
            // Whatever is accepted is consistent with itself.
            assert_eq!(ck.image.len(), ck.shape.iter().product::<usize>());
            assert!(ck.image.iter().all(|v| v.is_finite()));
            ck.job.validate().unwrap();
        }
        Err(Error::Checkpoint { path, .. }) => assert_eq!(path, Path::new("fuzz.ckpt")),
        Err(e) => panic!("not a checkpoint error: {e:?}"),
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Truncate(usize),
    Flip(usize, u8),
    Overwrite(usize, Vec<u8>),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 1u8..=255).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..12))
            .prop_map(|(i, v)| Mutation::Overwrite(i, v)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..12))
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        (any::<usize>(), 1usize..64).prop_map(|(i, n)| Mutation::Delete(i, n)),
    ]
}

/// Header offsets hold the lengths and the JSON: aim half the mutations there.
fn apply(bytes: &[u8], m: &Mutation, near_header: bool) -> Vec<u8> {
    let mut b = bytes.to_vec();
    let span = if near_header {
        b.len().min(2048)
    } else {
        b.len()
    };
    let at = |i: usize| i % span.max(1);
    match m {
        Mutation::Truncate(i) => b.truncate(at(*i)),
        Mutation::Flip(i, x) => {
            let k = at(*i);
            b[k] ^= x;
        }
        Mutation::Overwrite(i, v) => {
            let k = at(*i);
            for (j, x) in v.iter().enumerate() {
                if let Some(slot) = b.get_mut(k + j) {
                    *slot = *x;
                }
            }
        }
        Mutation::Insert(i, v) => {
            let k = at(*i);
            b.splice(k..k, v.iter().copied());
        }
        Mutation::Delete(i, n) => {
            let k = at(*i);
            b.drain(k..(k + n).min(b.len()));
        }
    }
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn mutated_checkpoints_never_panic(which in 0usize..2, m in mutation(), near_header: bool, signed: bool) {
        let original = &checkpoints()[which];
        let mutated = apply(original, &m, near_header);
        if mutated == *original {
            return Ok(());
        }
        let bytes = if signed { resign(mutated) } else { mutated };
        if !signed {
            // Unsigned damage never gets past the checksum.
            prop_assert!(Checkpoint::decode(Path::new("fuzz.ckpt"), &bytes).is_err());
        }
        check(&bytes);
    }
}

#[test]
fn the_real_checkpoints_decode() {
    for bytes in checkpoints() {
        Checkpoint::decode(Path::new("x"), bytes).unwrap();
    }
}

#[test]
fn a_signed_header_declaring_huge_arrays_allocates_nothing() {
    // Rewrite the JSON header so that the image array claims 2^40 values, keep it signed.
    let original = &checkpoints()[1];
    let header_len = u32::from_le_bytes(original[12..16].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&original[16..16 + header_len]).unwrap();
    let i = header.find("[\"image\",").unwrap();
    let j = header[i..].find(']').unwrap() + i;
    let forged = format!(
        "{}[\"image\",1099511627776]{}",
        &header[..i],
        &header[j + 1..]
    );
    let mut bytes = original[..12].to_vec();
    bytes.extend_from_slice(&(forged.len() as u32).to_le_bytes());
    bytes.extend_from_slice(forged.as_bytes());
    bytes.extend_from_slice(&original[16 + header_len..]);
    let e = Checkpoint::decode(Path::new("x"), &resign(bytes)).unwrap_err();
    assert!(e.to_string().contains("declares"), "{e}");
}
