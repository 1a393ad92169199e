//! Weight loading against damaged files: every defect of a `.npz` is a typed error naming the
//! file and the key at fault, never a panic nor a silently wrong network. The damaged files are
//! edited copies of the tiny test network, written with npyz.

mod common;

use common::{data, real_weights, TINY_WIDTHS};
use neural_style::{Error, LossConfig, Pool, Vgg, Vgg19};
use npyz::WriterBuilder;
use std::io::Write;
use std::path::{Path, PathBuf};

/// One array of an archive.
#[derive(Clone)]
struct Entry {
    name: String,
    shape: Vec<u64>,
    data: Data,
}

#[derive(Clone)]
enum Data {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I32(Vec<i32>),
    /// A whole `.npy` file, written as is.
    Raw(Vec<u8>),
}

/// The arrays of `tests/data/tiny_vgg.npz`, in file order.
fn tiny_entries() -> Vec<Entry> {
    let mut archive = npyz::npz::NpzArchive::open(data("tiny_vgg.npz")).unwrap();
    let names: Vec<String> = archive.array_names().map(str::to_string).collect();
    assert_eq!(
        names.len(),
        32,
        "tiny_vgg.npz holds 16 weights and 16 biases"
    );
    names
        .into_iter()
        .map(|name| {
            let npy = archive.by_name(&name).unwrap().unwrap();
            let shape = npy.shape().to_vec();
            let data = Data::F32(npy.into_vec::<f32>().unwrap());
            Entry { name, shape, data }
        })
        .collect()
}

fn entry<'a>(entries: &'a mut [Entry], name: &str) -> &'a mut Entry {
    entries
        .iter_mut()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("no {name} in the tiny network"))
}

fn f32s(e: &mut Entry) -> &mut Vec<f32> {
    match &mut e.data {
        Data::F32(v) => v,
        _ => panic!("{} is not f32", e.name),
    }
}

/// A `.npy` file in memory.
fn npy_bytes(shape: &[u64], values: &[f32]) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(&mut bytes)
        .begin_nd()
        .unwrap();
    w.extend(values.iter().copied()).unwrap();
    w.finish().unwrap();
    bytes
}

/// Appends one array to an archive being written.
fn write_array<T: npyz::AutoSerialize + Copy, W: Write + std::io::Seek>(
    npz: &mut npyz::npz::NpzWriter<W>,
    name: &str,
    shape: &[u64],
    values: &[T],
) {
    let builder = npz.array::<T>(name, Default::default()).unwrap();
    let mut w = builder.default_dtype().shape(shape).begin_nd().unwrap();
    w.extend(values.iter().copied()).unwrap();
    w.finish().unwrap();
}

/// Writes `entries` as an `.npz` archive at `path`.
fn write_npz(path: &Path, entries: &[Entry]) {
    let mut npz = npyz::npz::NpzWriter::create(path).unwrap();
    for e in entries {
        match &e.data {
            Data::F32(v) => write_array(&mut npz, &e.name, &e.shape, v),
            Data::F64(v) => write_array(&mut npz, &e.name, &e.shape, v),
            Data::I32(v) => write_array(&mut npz, &e.name, &e.shape, v),
            Data::Raw(bytes) => {
                let zip = npz.zip_writer();
                zip.start_file(format!("{}.npy", e.name), Default::default())
                    .unwrap();
                zip.write_all(bytes).unwrap();
            }
        }
    }
    let mut file = npz.zip_writer().finish().unwrap();
    file.flush().unwrap();
}

/// A temporary folder holding `name`, written from `entries`.
fn damaged(name: &str, entries: &[Entry]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    write_npz(&path, entries);
    (dir, path)
}

/// Both loaders (widths given; widths read from the file, only 13 layers kept) must reject
/// `path` with `Error::Weights` for this file whose message names every `needle`.
fn assert_weights_error(path: &Path, needles: &[&str]) {
    let given = Vgg::<f32>::load_layers(path, Some(&TINY_WIDTHS), 16).map(|v| v.depth());
    let inferred = Vgg19::load_for(path, &LossConfig::default()).map(|v| v.depth());
    for (how, result) in [("load_layers", given), ("load_for", inferred)] {
        match result {
            Err(e @ Error::Weights { .. }) => {
                let Error::Weights { path: p, .. } = &e else {
                    unreachable!()
                };
                assert_eq!(p, path, "{how}: {e}");
                let msg = e.to_string();
                assert!(!msg.contains('\n'), "{how}: message is not one line: {msg}");
                for n in needles {
                    assert!(msg.contains(n), "{how}: '{msg}' does not name '{n}'");
                }
            }
            Err(e) => panic!("{how}: expected Error::Weights, got {e:?}"),
            Ok(depth) => panic!("{how}: a damaged file loaded ({depth} layers)"),
        }
    }
}

#[test]
fn the_unmodified_copy_loads() {
    // The writer above is faithful, so the errors below come from the damage alone.
    let (_dir, path) = damaged("copy.npz", &tiny_entries());
    let vgg = Vgg::<f32>::load_layers(&path, Some(&TINY_WIDTHS), 16).unwrap();
    assert_eq!(vgg.depth(), 16);
    assert_eq!(
        Vgg19::load_for(&path, &LossConfig::default())
            .unwrap()
            .depth(),
        13
    );
}

#[test]
fn missing_key() {
    let mut entries = tiny_entries();
    entries.retain(|e| e.name != "conv3_2.bias");
    let (_dir, path) = damaged("missing-key.npz", &entries);
    assert_weights_error(&path, &["conv3_2.bias", "missing"]);
}

#[test]
fn wrong_shape() {
    // conv2_1.weight is 12 x 8 x 3 x 3 (OIHW): store it with O and I swapped, ...
    let mut entries = tiny_entries();
    let e = entry(&mut entries, "conv2_1.weight");
    assert_eq!(e.shape, [12, 8, 3, 3]);
    let w = f32s(e).clone();
    let mut t = vec![0.0; w.len()];
    for o in 0..12 {
        for i in 0..8 {
            for k in 0..9 {
                t[(i * 12 + o) * 9 + k] = w[(o * 8 + i) * 9 + k];
            }
        }
    }
    e.shape = vec![8, 12, 3, 3];
    e.data = Data::F32(t);
    let (_dir, path) = damaged("transposed.npz", &entries);
    assert_weights_error(&path, &["conv2_1.weight"]);

    // ... flattened to 2-d, ...
    let mut entries = tiny_entries();
    entry(&mut entries, "conv2_1.weight").shape = vec![12, 72];
    let (_dir, path) = damaged("flattened.npz", &entries);
    assert_weights_error(&path, &["conv2_1.weight"]);

    // ... and a bias one short, in a layer the default objective does not even run.
    let mut entries = tiny_entries();
    let e = entry(&mut entries, "conv5_4.bias");
    f32s(e).pop();
    e.shape = vec![15];
    let (_dir, path) = damaged("short-bias.npz", &entries);
    assert_weights_error(&path, &["conv5_4.bias"]);
}

#[test]
fn non_finite_values() {
    let mut entries = tiny_entries();
    let w = f32s(entry(&mut entries, "conv4_1.weight"));
    let mid = w.len() / 2;
    w[mid] = f32::NAN;
    let (_dir, path) = damaged("nan.npz", &entries);
    assert_weights_error(&path, &["conv4_1.weight", "NaN"]);

    // Beyond the 13 layers load_for keeps: validated all the same.
    let mut entries = tiny_entries();
    f32s(entry(&mut entries, "conv5_3.bias"))[3] = f32::INFINITY;
    let (_dir, path) = damaged("inf.npz", &entries);
    assert_weights_error(&path, &["conv5_3.bias", "inf"]);
}

#[test]
fn wrong_dtype() {
    let mut entries = tiny_entries();
    let e = entry(&mut entries, "conv3_1.bias");
    let ints = f32s(e).iter().map(|&v| (v * 100.0) as i32).collect();
    e.data = Data::I32(ints);
    let (_dir, path) = damaged("int32.npz", &entries);
    assert_weights_error(&path, &["conv3_1.bias", "<i4"]);
}

#[test]
fn f64_weights_load_as_the_same_network() {
    let entries: Vec<Entry> = tiny_entries()
        .into_iter()
        .map(|mut e| {
            e.data = Data::F64(f32s(&mut e).iter().map(|&v| v as f64).collect());
            e
        })
        .collect();
    let (_dir, path) = damaged("f64.npz", &entries);
    let a = Vgg::<f32>::load_layers(data("tiny_vgg.npz"), Some(&TINY_WIDTHS), 16).unwrap();
    let b = Vgg::<f32>::load_layers(&path, Some(&TINY_WIDTHS), 16).unwrap();
    let (h, w) = (20, 24);
    let x: Vec<f32> = (0..3 * h * w)
        .map(|i| ((i * 37) % 255) as f32 - 120.0)
        .collect();
    let (fa, fb) = (
        a.forward(&x, h, w, 16, Pool::Avg),
        b.forward(&x, h, w, 16, Pool::Avg),
    );
    assert_eq!((fa.depth(), fb.depth()), (16, 16));
    for i in 0..16 {
        assert!(
            fa.layer(i).data == fb.layer(i).data,
            "f64 copy gives another network"
        );
    }
}

#[test]
fn truncated_file() {
    let bytes = std::fs::read(data("tiny_vgg.npz")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for cut in [bytes.len() / 2, 100, bytes.len() * 9 / 10, bytes.len() - 1] {
        let path = dir.path().join(format!("cut-{cut}.npz"));
        std::fs::write(&path, &bytes[..cut]).unwrap();
        assert_weights_error(&path, &["cut-"]);
    }
    let empty = dir.path().join("empty.npz");
    std::fs::write(&empty, b"").unwrap();
    assert_weights_error(&empty, &["empty.npz"]);
}

#[test]
fn truncated_array_data() {
    // A valid archive whose conv3_1.weight entry ends 100 bytes early.
    let mut entries = tiny_entries();
    let e = entry(&mut entries, "conv3_1.weight");
    let shape = e.shape.clone();
    let mut npy = npy_bytes(&shape, f32s(e));
    npy.truncate(npy.len() - 100);
    e.data = Data::Raw(npy);
    let (_dir, path) = damaged("short-array.npz", &entries);
    assert_weights_error(&path, &["conv3_1.weight"]);
}

#[test]
fn trailing_bytes_after_an_array() {
    let mut entries = tiny_entries();
    let e = entry(&mut entries, "conv1_1.bias");
    let shape = e.shape.clone();
    let mut npy = npy_bytes(&shape, f32s(e));
    npy.extend_from_slice(&[0; 64]);
    e.data = Data::Raw(npy);
    let (_dir, path) = damaged("trailing.npz", &entries);
    assert_weights_error(&path, &["conv1_1.bias"]);
}

#[test]
fn header_shape_too_large_to_count() {
    // A hand-made .npy whose header claims 2^40 x 2^40 x 64 elements over 16 bytes of data:
    // counting them overflows, which must be a clean error, not an arithmetic panic.
    let dict =
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, 1099511627776, 64), }";
    let mut header = dict.to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    npy.extend_from_slice(&(header.len() as u16).to_le_bytes());
    npy.extend_from_slice(header.as_bytes());
    npy.extend_from_slice(&[0; 16]);
    let mut entries = tiny_entries();
    entry(&mut entries, "conv2_2.weight").data = Data::Raw(npy);
    let (_dir, path) = damaged("huge-shape.npz", &entries);
    assert_weights_error(&path, &["conv2_2.weight", "shape"]);
}

#[test]
fn flipped_bit_inside_an_array() {
    // tiny_vgg.npz stores its entries uncompressed: find conv4_1.weight's local header (the
    // first occurrence of its name) and flip the lowest mantissa bit of a value in its data.
    // The value stays finite and plausible; only the entry's CRC can tell.
    let mut bytes = std::fs::read(data("tiny_vgg.npz")).unwrap();
    let name = b"conv4_1.weight.npy";
    let at = bytes.windows(name.len()).position(|w| w == name).unwrap();
    let le16 = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]) as usize;
    assert_eq!(le16(at - 22), 0, "entry is compressed");
    assert_eq!(le16(at - 4), name.len());
    let data_start = at + name.len() + le16(at - 2);
    assert_eq!(&bytes[data_start..data_start + 6], b"\x93NUMPY");
    let value = data_start + 128 + 4 * 500;
    bytes[value] ^= 1;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flipped.npz");
    std::fs::write(&path, &bytes).unwrap();
    assert_weights_error(&path, &["conv4_1.weight"]);
}

#[test]
fn garbage_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.npz");
    let noise: Vec<u8> = (0..50_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    std::fs::write(&path, noise).unwrap();
    assert_weights_error(&path, &["garbage.npz"]);
}

#[test]
fn missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vgg19.npz");
    for result in [
        Vgg19::load(&path).map(|v| v.depth()),
        Vgg19::load_for(&path, &LossConfig::default()).map(|v| v.depth()),
    ] {
        match result {
            Err(Error::WeightsMissing(p)) => assert_eq!(p, path),
            Err(e) => panic!("expected Error::WeightsMissing, got {e:?}"),
            Ok(_) => panic!("loaded a missing file"),
        }
    }
    let msg = Vgg19::load(&path).err().unwrap().to_string();
    assert!(msg.contains("scripts/fetch-weights.sh"), "{msg}");
}

#[test]
fn real_weights_load() {
    let path = real_weights();
    assert_eq!(Vgg19::load(&path).unwrap().depth(), 16);
    assert_eq!(
        Vgg19::load_for(&path, &LossConfig::default())
            .unwrap()
            .depth(),
        13
    );
    // The real file against the tiny network's widths: a shape error naming the first layer.
    match Vgg::<f32>::load_layers(&path, Some(&TINY_WIDTHS), 16) {
        Err(e @ Error::Weights { .. }) => assert!(e.to_string().contains("conv1_1.weight")),
        Err(e) => panic!("expected Error::Weights, got {e:?}"),
        Ok(_) => panic!("the real weights loaded with the tiny widths"),
    }
}

/// A pass that keeps only some outputs (and the other layers' ReLU masks as bits) gives the
/// very gradient of one that keeps every output, for both poolings: the masks and the two
/// gradient buffers lose nothing the backward pass needs.
#[test]
fn keeping_only_the_taps_changes_no_gradient_bit() {
    use neural_style::vgg::{Keep, Workspace};
    let vgg = Vgg::<f64>::load_layers(data("tiny_vgg.npz"), Some(&TINY_WIDTHS), 13).unwrap();
    let (h, w) = (37, 42);
    let x: Vec<f64> = (0..3 * h * w)
        .map(|i| ((i * 7919) % 255) as f64 - 120.0)
        .collect();
    let taps = [0, 2, 4, 8, 9, 12];
    let gradient = |pool: Pool, keep: Keep| {
        let mut ws = Workspace::new();
        vgg.forward_into(&x, h, w, 13, pool, keep, &mut ws, &mut None);
        let mut grad = vec![0.0; x.len()];
        let mut seen = Vec::new();
        vgg.backward_into(&mut ws, pool, &mut grad, &mut None, |i, out, g, _| {
            if taps.contains(&i) {
                seen.push(i);
                // Any tap gradient will do: the output itself, scaled per layer.
                let s = 1.0 + i as f64;
                g.iter_mut().zip(out.data).for_each(|(g, &o)| *g += s * o);
            }
        });
        seen.sort_unstable();
        assert_eq!(seen, taps, "{pool:?}: every tap is visited once");
        grad
    };
    for pool in [Pool::Avg, Pool::Max, Pool::L2] {
        let all = gradient(pool, Keep::ALL);
        assert!(all.iter().any(|&g| g != 0.0));
        assert_eq!(gradient(pool, Keep::layers(taps)), all, "{pool:?}");
    }
}
