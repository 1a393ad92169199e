//! Property tests of the input loaders against damaged files: images (the bundled JPEG
//! examples and small files of every format the crate enables, encoded here) and `.npz`
//! weights (copies of the tiny test network). Whatever the damage: no panic, no allocation
//! beyond the decoding limits, and either a valid result (at least one pixel, finite values)
//! or a typed error naming the file. Decoding is strict: a file cut anywhere before its real
//! end is an error.
//!
//! The runs are bounded (a few dozen to 128 cases a property) and deterministic: the seed is
//! fixed unless `PROPTEST_RNG_SEED` is set (`PROPTEST_RNG_SEED=$RANDOM` explores further).
//! Failures proptest found are kept below as named tests.

mod common;

use common::{data, TINY_WIDTHS};
use image::{DynamicImage, ImageFormat, Rgb32FImage};
use neural_style::image::{
    decode, decode_bytes, load_net_exact, resize_exact_to_net, resize_long_side, rgb32f_to_net,
    MAX_DECODE_BYTES, MAX_INPUT_SIDE,
};
use neural_style::npz::Npz;
use neural_style::{Error, LossConfig, Vgg, Vgg19};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::RngSeed;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

// ---------------------------------------------------------------------------------------------
// The largest single allocation made by the current thread (the decoders run on the caller's
// thread), so that each case sees its own, whatever the other tests do meanwhile.

struct Tracking;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: never fails for a const-initialised cell without destructor, but an
    // allocator must not panic.
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

// SAFETY: forwards every call unchanged to the system allocator; only records sizes.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Tracking = Tracking;

/// `f()` and the largest single allocation it made on this thread.
fn largest_allocation<R>(f: impl FnOnce() -> R) -> (R, usize) {
    LARGEST.with(|l| l.set(0));
    let r = f();
    (r, LARGEST.with(Cell::get))
}

/// `cases` cases (unless `PROPTEST_CASES` is set), at a fixed seed unless `PROPTEST_RNG_SEED`
/// is set.
fn config(cases: u32) -> ProptestConfig {
    let mut c = ProptestConfig {
        max_shrink_iters: 2048,
        ..ProptestConfig::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = cases;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        c.rng_seed = RngSeed::Fixed(0x6e65_7572_616c);
    }
    c
}

// ---------------------------------------------------------------------------------------------
// Image samples.

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

/// A good file: its name (with the extension of its format) and bytes, which end where the
/// format ends (no trailing bytes).
struct Sample {
    name: &'static str,
    bytes: Vec<u8>,
}

fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Vec::new();
    img.write_to(&mut Cursor::new(&mut bytes), format).unwrap();
    bytes
}

/// The two bundled JPEG examples, then small files of each format encoded from the first.
fn samples() -> &'static [Sample] {
    static SAMPLES: OnceLock<Vec<Sample>> = OnceLock::new();
    SAMPLES.get_or_init(|| {
        let read = |n| std::fs::read(example(n)).unwrap();
        let astronaut = read("astronaut.jpg");
        let small = image::load_from_memory(&astronaut).unwrap().resize_exact(
            24,
            20,
            image::imageops::FilterType::Triangle,
        );
        let rgb = DynamicImage::ImageRgb8(small.to_rgb8());
        let mut rgba = small.to_rgba8();
        for (x, _, p) in rgba.enumerate_pixels_mut() {
            p.0[3] = (x * 10) as u8;
        }
        let rgba = DynamicImage::ImageRgba8(rgba);
        let rgb16 = DynamicImage::ImageRgb16(small.to_rgb16());
        let rgb32f = DynamicImage::ImageRgb32F(small.to_rgb32f());
        vec![
            Sample {
                name: "astronaut.jpg",
                bytes: astronaut,
            },
            Sample {
                name: "starry-night.jpg",
                bytes: read("starry-night.jpg"),
            },
            Sample {
                name: "small.jpg",
                bytes: encode(&rgb, ImageFormat::Jpeg),
            },
            Sample {
                name: "rgb.png",
                bytes: encode(&rgb, ImageFormat::Png),
            },
            Sample {
                name: "rgba.png",
                bytes: encode(&rgba, ImageFormat::Png),
            },
            Sample {
                name: "rgb16.png",
                bytes: encode(&rgb16, ImageFormat::Png),
            },
            Sample {
                name: "rgba.gif",
                bytes: encode(&rgba, ImageFormat::Gif),
            },
            Sample {
                name: "rgb.bmp",
                bytes: encode(&rgb, ImageFormat::Bmp),
            },
            Sample {
                name: "rgb.tif",
                bytes: encode(&rgb, ImageFormat::Tiff),
            },
            Sample {
                name: "float.tif",
                bytes: encode(&rgb32f, ImageFormat::Tiff),
            },
            Sample {
                name: "rgba.webp",
                bytes: encode(&rgba, ImageFormat::WebP),
            },
            Sample {
                name: "rgb.ppm",
                bytes: encode(&rgb, ImageFormat::Pnm),
            },
            Sample {
                name: "rgb.tga",
                bytes: encode(&rgb, ImageFormat::Tga),
            },
        ]
    })
}

fn sample(name: &str) -> &'static Sample {
    samples().iter().find(|s| s.name == name).unwrap()
}

fn fuzz_path(name: &str) -> PathBuf {
    Path::new("/fuzz").join(name)
}

/// The outcome of decoding damaged bytes, checked: a valid image (which also survives the
/// way to net space), or `Error::Image` naming `path` on one line; never more allocated than
/// the limits allow. Returns whether it decoded.
fn check_decoded(
    path: &Path,
    result: neural_style::Result<Rgb32FImage>,
) -> Result<bool, TestCaseError> {
    match result {
        Ok(img) => {
            let (w, h) = img.dimensions();
            prop_assert!(w > 0 && h > 0, "decoded an empty {w}x{h} image");
            prop_assert!(w <= MAX_INPUT_SIDE && h <= MAX_INPUT_SIDE);
            prop_assert!(
                img.iter()
                    .all(|v| v.is_finite() && (0.0..=1.0 + 1e-6).contains(v)),
                "values outside 0..1"
            );
            let small = resize_long_side(&img, 64);
            prop_assert_eq!(small.width().max(small.height()), 64);
            prop_assert!(small.width().min(small.height()) >= 1);
            let net = rgb32f_to_net(&small);
            prop_assert!(net.iter().all(|v| v.is_finite()));
            Ok(true)
        }
        Err(Error::Image { path: p, detail }) => {
            prop_assert_eq!(&p, path);
            prop_assert!(
                !detail.is_empty() && !detail.contains('\n'),
                "bad message {:?}",
                detail
            );
            Ok(false)
        }
        Err(e) => Err(TestCaseError::fail(format!(
            "expected Error::Image, got {e:?}"
        ))),
    }
}

/// `decode_bytes` of `bytes` as a file named `name`, checked (see `check_decoded`).
fn check_bytes(name: &str, bytes: &[u8]) -> Result<bool, TestCaseError> {
    let path = fuzz_path(name);
    let (result, largest) = largest_allocation(|| decode_bytes(&path, bytes));
    prop_assert!(
        largest as u64 <= MAX_DECODE_BYTES,
        "allocated {largest} bytes at once"
    );
    check_decoded(&path, result)
}

// ---------------------------------------------------------------------------------------------
// Mutations.

#[derive(Debug, Clone)]
enum Mutation {
    Truncate(Index),
    Flip(Index, u8),
    Insert(Index, Vec<u8>),
    Delete(Index, usize),
    Overwrite(Index, Vec<u8>),
    /// The declared width and height in the format's header (fields too narrow are cut).
    Dims(u32, u32),
    Append(Vec<u8>),
}

fn dimension() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        Just(1),
        1..100u32,
        Just(MAX_INPUT_SIDE),
        Just(MAX_INPUT_SIDE + 1),
        0..=u16::MAX as u32,
        any::<u32>(),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let run = || prop::collection::vec(any::<u8>(), 1..48);
    prop_oneof![
        1 => any::<Index>().prop_map(Mutation::Truncate),
        3 => (any::<Index>(), 1..=255u8).prop_map(|(i, x)| Mutation::Flip(i, x)),
        1 => (any::<Index>(), run()).prop_map(|(i, r)| Mutation::Insert(i, r)),
        1 => (any::<Index>(), 1..64usize).prop_map(|(i, n)| Mutation::Delete(i, n)),
        1 => (any::<Index>(), run()).prop_map(|(i, r)| Mutation::Overwrite(i, r)),
        2 => (dimension(), dimension()).prop_map(|(w, h)| Mutation::Dims(w, h)),
        1 => run().prop_map(Mutation::Append),
    ]
}

/// Sets the declared size of the image in `bytes` (of format `name`); a no-op for formats
/// whose size field is not at a fixed place (TIFF, WebP) or cannot be found.
fn set_dims(name: &str, bytes: &mut [u8], w: u32, h: u32) {
    let put_be16 = |b: &mut [u8], at: usize, v: u32| {
        if let Some(s) = b.get_mut(at..at + 2) {
            s.copy_from_slice(&(v as u16).to_be_bytes());
        }
    };
    let put_le16 = |b: &mut [u8], at: usize, v: u32| {
        if let Some(s) = b.get_mut(at..at + 2) {
            s.copy_from_slice(&(v as u16).to_le_bytes());
        }
    };
    let ext = name.rsplit('.').next().unwrap();
    match ext {
        "jpg" => {
            // The first baseline or progressive frame header: FF C0/C2, length, precision,
            // height, width.
            if let Some(at) = bytes
                .windows(2)
                .position(|p| p[0] == 0xFF && matches!(p[1], 0xC0..=0xC2))
            {
                put_be16(bytes, at + 5, h);
                put_be16(bytes, at + 7, w);
            }
        }
        "png" if bytes.len() >= 33 => {
            bytes[16..20].copy_from_slice(&w.to_be_bytes());
            bytes[20..24].copy_from_slice(&h.to_be_bytes());
            let crc = crc32fast::hash(&bytes[12..29]);
            bytes[29..33].copy_from_slice(&crc.to_be_bytes());
        }
        "gif" => {
            put_le16(bytes, 6, w);
            put_le16(bytes, 8, h);
        }
        "bmp" if bytes.len() >= 26 => {
            bytes[18..22].copy_from_slice(&w.to_le_bytes());
            bytes[22..26].copy_from_slice(&h.to_le_bytes());
        }
        "tga" => {
            put_le16(bytes, 12, w);
            put_le16(bytes, 14, h);
        }
        _ => {}
    }
}

/// `bytes` with `mutations` applied in turn. `name` tells the format, for `Dims`; `ppm`
/// headers are text and are rewritten whole.
fn mutate(name: &str, bytes: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    for m in mutations {
        let at = |i: &Index, b: &Vec<u8>| i.index(b.len() + 1);
        match m {
            Mutation::Truncate(i) => b.truncate(at(i, &b)),
            Mutation::Flip(i, x) => {
                if !b.is_empty() {
                    let k = i.index(b.len());
                    b[k] ^= x;
                }
            }
            Mutation::Insert(i, run) => {
                let k = at(i, &b);
                b.splice(k..k, run.iter().copied());
            }
            Mutation::Delete(i, n) => {
                let k = at(i, &b);
                let end = (k + n).min(b.len());
                b.drain(k..end);
            }
            Mutation::Overwrite(i, run) => {
                let k = at(i, &b);
                for (j, v) in run.iter().enumerate() {
                    if let Some(slot) = b.get_mut(k + j) {
                        *slot = *v;
                    }
                }
            }
            Mutation::Dims(w, h) if name.ends_with(".ppm") => {
                // "P6\n24 20\n255\n": replace the two numbers.
                let text = String::from_utf8_lossy(&b[..b.len().min(20)]).to_string();
                let mut fields = text.splitn(4, char::is_whitespace);
                let (Some(magic), Some(_), Some(_), Some(rest)) =
                    (fields.next(), fields.next(), fields.next(), fields.next())
                else {
                    continue;
                };
                let head = format!("{magic}\n{w} {h}\n");
                let skip = text.len() - rest.len();
                if skip <= b.len() && text.is_char_boundary(skip) {
                    b.splice(..skip, head.bytes());
                }
            }
            Mutation::Dims(w, h) => set_dims(name, &mut b, *w, *h),
            Mutation::Append(run) => b.extend_from_slice(run),
        }
    }
    b
}

proptest! {
    #![proptest_config(config(128))]

    /// Strictness: every file cut before its end is an error.
    #[test]
    fn truncated_images_are_errors(s in 0..samples().len(), cut in any::<Index>()) {
        let sample = &samples()[s];
        let bytes = &sample.bytes[..cut.index(sample.bytes.len())];
        let decoded = check_bytes(sample.name, bytes)?;
        prop_assert!(!decoded, "{} cut to {} of {} bytes decoded", sample.name, bytes.len(),
            sample.bytes.len());
    }

    /// Any damage: no panic, no allocation beyond the limits, a valid image or a typed error;
    /// reading the file from disk gives the same outcome as its bytes.
    #[test]
    fn damaged_images_decode_or_fail_cleanly(
        s in 0..samples().len(),
        mutations in prop::collection::vec(mutation(), 1..5),
    ) {
        let sample = &samples()[s];
        let bytes = mutate(sample.name, &sample.bytes, &mutations);
        let decoded = check_bytes(sample.name, &bytes)?;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(sample.name);
        std::fs::write(&path, &bytes).unwrap();
        let (result, largest) = largest_allocation(|| decode(&path));
        prop_assert!(largest as u64 <= MAX_DECODE_BYTES);
        prop_assert_eq!(check_decoded(&path, result)?, decoded);
    }

    /// Bytes after a format's end change nothing.
    #[test]
    fn trailing_bytes_are_ignored(s in 0..samples().len(), tail in prop::collection::vec(any::<u8>(), 1..64)) {
        let sample = &samples()[s];
        let mut bytes = sample.bytes.clone();
        bytes.extend_from_slice(&tail);
        let path = fuzz_path(sample.name);
        let good = decode_bytes(&path, &sample.bytes).unwrap();
        match decode_bytes(&path, &bytes) {
            Ok(img) => prop_assert!(img == good, "{}: trailing bytes changed the pixels", sample.name),
            // TIFF, BMP, PNM and TGA have no end marker; the decoders read what the headers
            // point at and ignore the rest, so they too must accept a tail.
            Err(e) => prop_assert!(false, "{}: trailing bytes rejected: {e}", sample.name),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Plain image tests.

#[test]
fn every_sample_decodes() {
    for s in samples() {
        let img = decode_bytes(&fuzz_path(s.name), &s.bytes)
            .unwrap_or_else(|e| panic!("{}: {e}", s.name));
        assert!(img.width() > 0, "{}", s.name);
    }
}

#[test]
fn good_jpegs_decode_to_the_pixels_of_the_image_crate() {
    // The JPEG path decodes with zune-jpeg directly (strict mode); the pixels must be those
    // `image::open` gives, which uses zune-jpeg in lenient mode.
    for name in ["astronaut.jpg", "starry-night.jpg"] {
        let ours = decode(example(name)).unwrap();
        let theirs = image::open(example(name)).unwrap().into_rgb32f();
        assert_eq!(ours.dimensions(), theirs.dimensions(), "{name}");
        assert!(ours.as_raw() == theirs.as_raw(), "{name}: pixels differ");
    }
    let grey =
        image::DynamicImage::ImageLuma8(image::open(example("astronaut.jpg")).unwrap().to_luma8());
    let bytes = encode(&grey, ImageFormat::Jpeg);
    let ours = decode_bytes(&fuzz_path("grey.jpg"), &bytes).unwrap();
    let theirs = image::load_from_memory(&bytes).unwrap().into_rgb32f();
    assert!(
        ours.as_raw() == theirs.as_raw(),
        "greyscale JPEG pixels differ"
    );
}

#[test]
fn other_formats_decode_to_the_pixels_of_the_image_crate() {
    for s in &samples()[2..] {
        if s.name == "float.tif" {
            continue; // clamped, see below
        }
        let ours = decode_bytes(&fuzz_path(s.name), &s.bytes).unwrap();
        let format = ImageFormat::from_path(s.name).unwrap();
        let img = image::load_from_memory_with_format(&s.bytes, format).unwrap();
        if img.color().has_alpha() {
            continue; // composited over white
        }
        assert!(ours.as_raw() == img.into_rgb32f().as_raw(), "{}", s.name);
    }
}

#[test]
fn truncated_jpeg_names_the_file_and_the_cause() {
    // The case from the issue: `head -c 20000 examples/astronaut.jpg` was painted grey below
    // the cut.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.jpg");
    std::fs::write(&path, &sample("astronaut.jpg").bytes[..20000]).unwrap();
    let msg = decode(&path).unwrap_err().to_string();
    assert_eq!(
        msg,
        format!(
            "image {}: truncated JPEG data (ends before the end-of-image marker)",
            path.display()
        )
    );
}

#[test]
fn jpeg_cut_in_its_last_bytes_is_an_error() {
    // zune-jpeg's strict mode alone accepts these: the cut falls in the last MCU row, or takes
    // the end-of-image marker only.
    for name in ["astronaut.jpg", "starry-night.jpg", "small.jpg"] {
        let b = &sample(name).bytes;
        assert_eq!(&b[b.len() - 2..], [0xFF, 0xD9]);
        for cut in b.len() - 64..b.len() {
            assert!(
                decode_bytes(&fuzz_path(name), &b[..cut]).is_err(),
                "{name} cut to {cut} of {} bytes decoded",
                b.len()
            );
        }
    }
}

#[test]
fn every_truncation_of_the_small_samples_is_an_error() {
    for s in &samples()[2..] {
        for cut in 0..s.bytes.len() {
            assert!(
                decode_bytes(&fuzz_path(s.name), &s.bytes[..cut]).is_err(),
                "{} cut to {cut} of {} bytes decoded",
                s.name,
                s.bytes.len()
            );
        }
    }
}

/// `jpeg` with an APP1 (EXIF) segment holding a complete JPEG thumbnail, whose own EOI marker
/// comes long before the file's end.
fn with_thumbnail(jpeg: &[u8]) -> (Vec<u8>, usize) {
    let thumb = encode(
        &DynamicImage::ImageRgb8(image::RgbImage::from_pixel(8, 8, image::Rgb([9, 99, 199]))),
        ImageFormat::Jpeg,
    );
    let mut app1 = b"Exif\0\0II*\0".to_vec();
    app1.extend_from_slice(&thumb);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    let thumb_end = out.len();
    out.extend_from_slice(&jpeg[2..]);
    (out, thumb_end)
}

#[test]
fn exif_thumbnail_eoi_does_not_end_the_file() {
    let base = &sample("astronaut.jpg").bytes;
    let (bytes, thumb_end) = with_thumbnail(base);
    assert_eq!(&bytes[thumb_end - 2..thumb_end], [0xFF, 0xD9]);
    let path = fuzz_path("exif.jpg");
    let good = decode_bytes(&path, base).unwrap();
    assert!(decode_bytes(&path, &bytes).unwrap() == good);
    // Cut just after the thumbnail's EOI (the file "ends in FFD9"), in the main image, and
    // just before the real EOI: all errors.
    for cut in [
        thumb_end,
        thumb_end + 1000,
        bytes.len() / 2,
        bytes.len() - 2,
    ] {
        assert!(
            decode_bytes(&path, &bytes[..cut]).is_err(),
            "cut at {cut} decoded"
        );
    }
}

#[test]
fn png_without_iend_or_with_a_bad_crc_is_an_error() {
    let b = &sample("rgb.png").bytes;
    assert_eq!(&b[b.len() - 8..b.len() - 4], b"IEND");
    let path = fuzz_path("rgb.png");
    let msg = decode_bytes(&path, &b[..b.len() - 12])
        .unwrap_err()
        .to_string();
    assert!(msg.contains("truncated PNG data"), "{msg}");
    let mut bad = b.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1; // IEND's CRC, which the png crate does not read
    let msg = decode_bytes(&path, &bad).unwrap_err().to_string();
    assert!(msg.contains("IEND") && msg.contains("CRC"), "{msg}");
}

#[test]
fn gif_without_trailer_is_an_error() {
    let b = &sample("rgba.gif").bytes;
    assert_eq!(b.last(), Some(&0x3B));
    let msg = decode_bytes(&fuzz_path("rgba.gif"), &b[..b.len() - 1])
        .unwrap_err()
        .to_string();
    assert!(msg.contains("truncated GIF data"), "{msg}");
}

#[test]
fn huge_declared_sizes_are_errors_before_any_big_allocation() {
    // Within MAX_INPUT_SIDE, but far more pixels than the bytes can encode (JPEG: one bit per
    // 8x8 block at least; PNG: deflate expands at most 1032 times); and over MAX_INPUT_SIDE.
    for name in ["astronaut.jpg", "small.jpg", "rgb.png", "rgba.png"] {
        for (w, h) in [
            (MAX_INPUT_SIDE, MAX_INPUT_SIDE),
            (MAX_INPUT_SIDE + 1, 100),
            (65535, 65535),
        ] {
            let bytes = mutate(name, &sample(name).bytes, &[Mutation::Dims(w, h)]);
            let path = fuzz_path(name);
            let (result, largest) = largest_allocation(|| decode_bytes(&path, &bytes));
            let msg = result.unwrap_err().to_string();
            assert!(msg.contains(name), "{msg}");
            assert!(
                largest < 16 << 20,
                "{name} {w}x{h}: allocated {largest} bytes ({msg})"
            );
        }
    }
    // Every format: over the side limit, or within it but over MAX_DECODE_BYTES as a float
    // image, is an error before the decoder allocates.
    for s in samples() {
        for side in [30_000, MAX_INPUT_SIDE] {
            let bytes = mutate(s.name, &s.bytes, &[Mutation::Dims(side, side)]);
            if bytes != s.bytes {
                let (result, largest) =
                    largest_allocation(|| decode_bytes(&fuzz_path(s.name), &bytes));
                assert!(result.is_err(), "{} {side}x{side}", s.name);
                assert!(largest < 16 << 20, "{}: allocated {largest} bytes", s.name);
            }
        }
    }
}

#[test]
fn huge_gif_canvas_is_an_error_not_gigabytes() {
    // Found by `damaged_images_decode_or_fail_cleanly`: a GIF's logical screen may be far
    // larger than its frames, so 4 kB declaring a 20000 x 20000 canvas are a valid GIF that
    // decoded to 1.6 GB of RGBA and 6.4 GB of float RGBA. The float image now counts against
    // MAX_DECODE_BYTES.
    let s = sample("rgba.gif");
    let bytes = mutate(s.name, &s.bytes, &[Mutation::Dims(20_000, 20_000)]);
    let (result, largest) = largest_allocation(|| decode_bytes(&fuzz_path(s.name), &bytes));
    let msg = result.unwrap_err().to_string();
    assert!(msg.contains("over the limit"), "{msg}");
    assert!(largest < 1 << 20, "allocated {largest} bytes");
    // A canvas within the limit still decodes: the frame in a corner, the rest transparent,
    // so white.
    let bytes = mutate(s.name, &s.bytes, &[Mutation::Dims(300, 200)]);
    let img = decode_bytes(&fuzz_path(s.name), &bytes).unwrap();
    assert_eq!(img.dimensions(), (300, 200));
    assert_eq!(img.get_pixel(299, 199).0, [1.0; 3]);
}

#[test]
fn transparency_is_composited_over_white_as_before() {
    // The strip-wise compositing gives what compositing the whole image did.
    for name in ["rgba.png", "rgba.gif", "rgba.webp"] {
        let s = sample(name);
        let ours = decode_bytes(&fuzz_path(name), &s.bytes).unwrap();
        let format = ImageFormat::from_path(name).unwrap();
        let rgba = image::load_from_memory_with_format(&s.bytes, format)
            .unwrap()
            .into_rgba32f();
        let want = Rgb32FImage::from_fn(rgba.width(), rgba.height(), |x, y| {
            let [r, g, b, a] = rgba.get_pixel(x, y).0;
            let a = a.clamp(0.0, 1.0);
            image::Rgb([r * a + 1.0 - a, g * a + 1.0 - a, b * a + 1.0 - a])
        });
        assert!(ours == want, "{name}");
    }
    // Taller than one strip.
    let tall = image::RgbaImage::from_fn(3, 150, |x, y| {
        image::Rgba([x as u8 * 80, y as u8, 7, y as u8])
    });
    let bytes = encode(&DynamicImage::ImageRgba8(tall.clone()), ImageFormat::Png);
    let ours = decode_bytes(&fuzz_path("tall.png"), &bytes).unwrap();
    let rgba = DynamicImage::ImageRgba8(tall).into_rgba32f();
    for (x, y, p) in ours.enumerate_pixels() {
        let [r, _, _, a] = rgba.get_pixel(x, y).0;
        assert_eq!(p.0[0], r * a + 1.0 - a);
    }
}

#[test]
fn zero_sizes_are_errors() {
    for s in samples() {
        for (w, h) in [(0, 0), (0, 20), (24, 0)] {
            let bytes = mutate(s.name, &s.bytes, &[Mutation::Dims(w, h)]);
            if bytes != s.bytes {
                assert!(
                    decode_bytes(&fuzz_path(s.name), &bytes).is_err(),
                    "{} declared {w}x{h} decoded",
                    s.name
                );
            }
        }
    }
}

fn float_tiff(value: f32) -> Vec<u8> {
    let mut img = Rgb32FImage::from_pixel(4, 3, image::Rgb([0.25, 0.5, 0.75]));
    img.get_pixel_mut(2, 1).0[1] = value;
    encode(&DynamicImage::ImageRgb32F(img), ImageFormat::Tiff)
}

#[test]
fn non_finite_float_samples_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    for (name, v) in [
        ("nan.tif", f32::NAN),
        ("inf.tif", f32::INFINITY),
        ("-inf.tif", f32::NEG_INFINITY),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, float_tiff(v)).unwrap();
        match decode(&path) {
            Err(e @ Error::Image { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains(name) && msg.contains("non-finite"), "{msg}");
                assert!(msg.contains("(2, 1)"), "{msg}");
            }
            other => panic!("{name}: expected Error::Image, got {other:?}"),
        }
    }
}

#[test]
fn finite_float_samples_are_clamped_to_0_1() {
    for (v, want) in [(7.5, 1.0), (-3.0, 0.0), (1e38, 1.0), (0.125, 0.125)] {
        let img = decode_bytes(&fuzz_path("f.tif"), &float_tiff(v)).unwrap();
        assert_eq!(img.get_pixel(2, 1).0[1], want, "{v}");
        assert_eq!(img.get_pixel(0, 0).0, [0.25, 0.5, 0.75]);
    }
}

#[test]
fn extreme_aspect_ratios_reach_net_space() {
    let vgg = Vgg::<f32>::load_layers(data("tiny_vgg.npz"), Some(&TINY_WIDTHS), 5).unwrap();
    for (w, h) in [(1, 5000), (5000, 1), (1, 1), (3, 20_000)] {
        let img = Rgb32FImage::from_pixel(w, h, image::Rgb([0.5, 0.25, 1.0]));
        for long in [64, 1, 7] {
            let r = resize_long_side(&img, long);
            assert_eq!(r.width().max(r.height()), long, "{w}x{h} to {long}");
            assert!(r.width().min(r.height()) >= 1);
            let net = rgb32f_to_net(&r);
            assert!(net.iter().all(|v| v.is_finite()));
            let (_, nh, nw) = net.dim();
            // A 1-pixel side is too small for the network: a Shape error, not a panic.
            let checked = vgg.check_input(&[3, nh, nw], 5);
            assert_eq!(checked.is_ok(), nh >= 4 && nw >= 4, "{nw}x{nh}");
        }
    }
    // Resizing to an empty size, or from one: empty results, not panics.
    let img = Rgb32FImage::from_pixel(5, 4, image::Rgb([0.5; 3]));
    for (w, h) in [(0, 0), (0, 3), (3, 0)] {
        assert_eq!(
            resize_exact_to_net(img.clone(), w, h).dim(),
            (3, h as usize, w as usize)
        );
        assert_eq!(
            resize_exact_to_net(Rgb32FImage::new(w, h), 2, 2).dim(),
            (3, 2, 2)
        );
    }
    // Nothing to resample: returned as is, not a panic.
    for (w, h) in [(0, 0), (0, 7), (7, 0)] {
        let r = resize_long_side(&Rgb32FImage::new(w, h), 64);
        assert_eq!(r.dimensions(), (w, h));
        assert_eq!(rgb32f_to_net(&r).len(), 0);
    }
}

#[test]
fn truncated_init_image_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["astronaut.jpg", "rgb.png", "rgba.gif", "rgb.tif"] {
        let b = &sample(name).bytes;
        let path = dir.path().join(format!("init-{name}"));
        std::fs::write(&path, &b[..b.len() * 3 / 4]).unwrap();
        match load_net_exact(&path, 32, 24) {
            Err(e @ Error::Image { .. }) => {
                assert!(e.to_string().contains(&*path.to_string_lossy()), "{e}")
            }
            other => panic!(
                "{name}: expected Error::Image, got {:?}",
                other.map(|a| a.dim())
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Weights.

fn tiny_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| std::fs::read(data("tiny_vgg.npz")).unwrap())
}

/// Every way in: the archive reader (each key's shape and data), both network loaders. Each
/// must succeed or fail with a weights or I/O error naming `path`, and allocate little.
fn check_weights(path: &Path) -> Result<(), TestCaseError> {
    let expect = |what: &str, r: Result<(), Error>| -> Result<(), TestCaseError> {
        match r {
            Ok(()) => Ok(()),
            Err(Error::Weights { path: p, detail }) => {
                prop_assert_eq!(&p, path, "{}", what);
                prop_assert!(!detail.contains('\n'), "{}: {}", what, detail);
                Ok(())
            }
            Err(Error::Io { path: p, .. }) | Err(Error::WeightsMissing(p)) => {
                prop_assert_eq!(&p, path, "{}", what);
                Ok(())
            }
            Err(e) => Err(TestCaseError::fail(format!("{what}: unexpected {e:?}"))),
        }
    };
    let keys: Vec<String> = neural_style::vgg::LAYER_NAMES
        .iter()
        .flat_map(|n| [format!("{n}.weight"), format!("{n}.bias")])
        .collect();
    let (r, largest) = largest_allocation(|| -> Result<(), TestCaseError> {
        let opened = Npz::open(path);
        match opened {
            Ok(mut npz) => {
                for key in &keys {
                    expect("shape", npz.shape(key).map(drop))?;
                    expect("array", npz.array::<f32>(key).map(drop))?;
                }
            }
            Err(e) => expect("open", Err(e))?,
        }
        expect(
            "load_layers",
            Vgg::<f32>::load_layers(path, Some(&TINY_WIDTHS), 16).map(drop),
        )?;
        expect(
            "load_for",
            Vgg19::load_for(path, &LossConfig::default()).map(drop),
        )?;
        Ok(())
    });
    r?;
    prop_assert!(largest < 64 << 20, "allocated {} bytes at once", largest);
    Ok(())
}

/// The archive's entries (name, bytes), in order.
fn tiny_entries() -> Vec<(String, Vec<u8>)> {
    let mut zip = npyz::zip::ZipArchive::new(Cursor::new(tiny_bytes())).unwrap();
    (0..zip.len())
        .map(|i| {
            let mut f = zip.by_index(i).unwrap();
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes).unwrap();
            (f.name().to_string(), bytes)
        })
        .collect()
}

/// A stored (uncompressed) zip of `entries`, with correct CRCs.
fn zip_of(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    {
        let mut zip = npyz::zip::ZipWriter::new(&mut out);
        let options = npyz::zip::write::FileOptions::default()
            .compression_method(npyz::zip::CompressionMethod::Stored);
        for (name, bytes) in entries {
            zip.start_file(name, options).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap();
    }
    out.into_inner()
}

/// A replacement for an `.npy` header's shape tuple.
fn shape_text() -> impl Strategy<Value = String> {
    let dim = prop_oneof![
        0..20u64,
        Just(u32::MAX as u64),
        Just(1 << 40),
        Just(u64::MAX),
        any::<u64>(),
    ];
    prop::collection::vec(dim, 0..5).prop_map(|d| {
        let list: Vec<String> = d.iter().map(u64::to_string).collect();
        format!("({},)", list.join(", "))
    })
}

#[derive(Debug, Clone)]
enum NpyDamage {
    /// Raw mutations of the entry's bytes.
    Bytes(Vec<Mutation>),
    /// Bytes of the header (the first 128) xored.
    Header(Vec<(usize, u8)>),
    /// The shape tuple replaced.
    Shape(String),
    /// The dtype replaced.
    Descr(&'static str),
}

fn npy_damage() -> impl Strategy<Value = NpyDamage> {
    prop_oneof![
        prop::collection::vec(mutation(), 1..4).prop_map(NpyDamage::Bytes),
        prop::collection::vec((0..128usize, 1..=255u8), 1..4).prop_map(NpyDamage::Header),
        shape_text().prop_map(NpyDamage::Shape),
        prop_oneof![
            Just("'<f4'"),
            Just("'>f4'"),
            Just("'<f2'"),
            Just("'<i8'"),
            Just("'|u1'"),
            Just("'<c8'"),
            Just("'U8'"),
            Just("[('a', '<f4')]"),
            Just("'<f4', 'fortran_order': True"),
        ]
        .prop_map(NpyDamage::Descr),
    ]
}

fn damage_npy(npy: &[u8], damage: &NpyDamage) -> Vec<u8> {
    match damage {
        NpyDamage::Bytes(m) => mutate("x.npy", npy, m),
        NpyDamage::Header(flips) => {
            let mut b = npy.to_vec();
            for &(i, x) in flips {
                if let Some(v) = b.get_mut(i) {
                    *v ^= x;
                }
            }
            b
        }
        NpyDamage::Shape(shape) => replace_field(npy, "'shape': ", shape),
        NpyDamage::Descr(descr) => replace_field(npy, "'descr': ", descr),
    }
}

/// `npy` with the header value after `key` (up to its closing `)` or `,`) replaced by `value`,
/// the header length field fixed.
fn replace_field(npy: &[u8], key: &str, value: &str) -> Vec<u8> {
    let header_len = u16::from_le_bytes([npy[8], npy[9]]) as usize;
    let header = String::from_utf8_lossy(&npy[10..10 + header_len]).to_string();
    let Some(start) = header.find(key).map(|i| i + key.len()) else {
        return npy.to_vec();
    };
    let rest = &header[start..];
    let end = if rest.starts_with('(') {
        rest.find(')').map(|i| i + 1)
    } else {
        rest.find(',')
    };
    let Some(end) = end else {
        return npy.to_vec();
    };
    let new_header = format!("{}{value}{}", &header[..start], &rest[end..]);
    let mut out = npy[..8].to_vec();
    out.extend_from_slice(&(new_header.len() as u16).to_le_bytes());
    out.extend_from_slice(new_header.as_bytes());
    out.extend_from_slice(&npy[10 + header_len..]);
    out
}

proptest! {
    #![proptest_config(config(96))]

    /// Raw damage to the archive file.
    #[test]
    fn damaged_npz_files_load_or_fail_cleanly(mutations in prop::collection::vec(mutation(), 1..5)) {
        let bytes = mutate("tiny.npz", tiny_bytes(), &mutations);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("damaged.npz");
        std::fs::write(&path, &bytes).unwrap();
        check_weights(&path)?;
    }

    /// Damage inside one array, in an archive with correct CRCs (so that the `.npy` parser,
    /// not the zip checksum, meets it).
    #[test]
    fn damaged_arrays_load_or_fail_cleanly(entry in 0..32usize, damage in npy_damage()) {
        let mut entries = tiny_entries();
        entries[entry].1 = damage_npy(&entries[entry].1, &damage);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("damaged-array.npz");
        std::fs::write(&path, zip_of(&entries)).unwrap();
        check_weights(&path)?;
    }
}

#[test]
fn rezipped_tiny_network_loads() {
    // The writer above is faithful: the errors come from the damage alone.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("copy.npz");
    std::fs::write(&path, zip_of(&tiny_entries())).unwrap();
    let a = Vgg::<f32>::load_layers(&path, Some(&TINY_WIDTHS), 16).unwrap();
    let b = Vgg::<f32>::load_layers(data("tiny_vgg.npz"), Some(&TINY_WIDTHS), 16).unwrap();
    assert_eq!(a.fingerprint(), b.fingerprint());
}

#[test]
fn unparsable_npy_header_is_a_one_line_error() {
    // Found by `damaged_arrays_load_or_fail_cleanly`: npyz reports a header it cannot parse
    // with a drawing of it over several lines, which went into the message as it was.
    let mut entries = tiny_entries();
    let e = entries
        .iter_mut()
        .find(|(name, _)| name == "conv1_1.weight.npy")
        .unwrap();
    e.1 = replace_field(&e.1, "'shape': ", "(,)");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad-header.npz");
    std::fs::write(&path, zip_of(&entries)).unwrap();
    let mut npz = Npz::open(&path).unwrap();
    for result in [
        npz.shape("conv1_1.weight").map(drop),
        npz.array::<f32>("conv1_1.weight").map(drop),
        Vgg19::load_for(&path, &LossConfig::default()).map(drop),
    ] {
        match result {
            Err(e @ Error::Weights { .. }) => {
                let msg = e.to_string();
                assert!(!msg.contains('\n'), "{msg}");
                assert!(
                    msg.contains("conv1_1.weight") && msg.contains("bad-header.npz"),
                    "{msg}"
                );
            }
            other => panic!("expected Error::Weights, got {other:?}"),
        }
    }
}
