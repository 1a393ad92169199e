//! Image files in and out: decoding with limits, colour handling, resizing, conversion to and
//! from net space, and atomic encoding.

use crate::error::{Error, Result};
use image::imageops::FilterType;
use image::{
    DynamicImage, GenericImageView, ImageBuffer, ImageDecoder, ImageFormat, ImageReader, Limits,
    Rgb, Rgb32FImage, RgbImage,
};
use ndarray::Array3;
use std::io::Write;
use std::path::{Path, PathBuf};

mod strict;

/// Per-channel mean (R, G, B) subtracted from 0..255 pixels to reach net space.
pub const MEAN: [f32; 3] = [123.68, 116.779, 103.939];

/// Largest accepted input side, and largest decoder buffer or 32-bit float RGB image (12 bytes a
/// pixel, so at most 178,956,970 pixels): a decompression bomb is an error, not an out-of-memory
/// kill.
pub const MAX_INPUT_SIDE: u32 = 20_000;
pub const MAX_DECODE_BYTES: u64 = 2 << 30;

fn image_err(path: &Path, detail: impl std::fmt::Display) -> Error {
    Error::Image {
        path: path.into(),
        detail: detail.to_string(),
    }
}

/// Decodes any format the `image` crate knows into linear-in-file-values RGB in 0..1. Grayscale
/// is replicated to three channels, 16-bit precision is kept, and transparency is composited
/// over white (transparent pixels often hold arbitrary colours).
///
/// Decoding is strict: a file that ends before its format's end (a truncated download or copy),
/// or in which the decoder finds an error, is `Error::Image` naming the file, never a picture
/// with a grey or black band (see `strict` for how each format is checked). Bytes after the
/// format's end are allowed. Sides over `MAX_INPUT_SIDE`, or a decoder buffer or float result
/// over `MAX_DECODE_BYTES`, are errors before any pixel buffer is allocated. The result
/// has at least one pixel and only finite values: floating-point files (TIFF) with NaN or an
/// infinity are an error, and their finite samples are clamped to 0..1 like integer ones.
pub fn decode(path: impl AsRef<Path>) -> Result<Rgb32FImage> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_bytes(path, &bytes)
}

/// `decode` of a file's bytes already read (`path` names it in errors), so that what is
/// hashed, e.g. for a cache key, is exactly what is decoded.
pub fn decode_bytes(path: &Path, bytes: &[u8]) -> Result<Rgb32FImage> {
    let err = |detail: String| image_err(path, detail);
    let mut reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?;
    if reader.format().is_none() {
        // TGA has no signature: trust the extension where the content tells nothing.
        if let Ok(format) = ImageFormat::from_path(path) {
            reader.set_format(format);
        }
    }
    let img = match reader.format() {
        Some(ImageFormat::Jpeg) => strict::decode_jpeg(bytes).map_err(err)?,
        format => {
            match format {
                Some(ImageFormat::Png) => strict::check_png(bytes).map_err(err)?,
                Some(ImageFormat::Gif) => strict::check_gif(bytes).map_err(err)?,
                Some(ImageFormat::WebP) => strict::check_webp(bytes).map_err(err)?,
                _ => {}
            }
            let mut limits = Limits::default();
            limits.max_image_width = Some(MAX_INPUT_SIDE);
            limits.max_image_height = Some(MAX_INPUT_SIDE);
            limits.max_alloc = Some(MAX_DECODE_BYTES);
            reader.limits(limits);
            let image_err = |e: image::ImageError| err(strict::one_line(e));
            let decoder = reader.into_decoder().map_err(image_err)?;
            let (w, h) = decoder.dimensions();
            strict::check_size(w as u64, h as u64, decoder.total_bytes()).map_err(err)?;
            DynamicImage::from_decoder(decoder).map_err(image_err)?
        }
    };
    let (w, h) = (img.width(), img.height());
    if w == 0 || h == 0 {
        return Err(err(format!("image has no pixels ({w}x{h})")));
    }
    let img = clamp_float_samples(img).map_err(err)?;
    let rgb = flatten_alpha(img);
    if rgb.iter().any(|v| !v.is_finite()) {
        return Err(err("decoded to non-finite values".into()));
    }
    Ok(rgb)
}

/// Floating-point images (the crate's TIFF decoder gives them) may hold anything: NaN or an
/// infinity is an error, finite values are clamped to 0..1, the range of integer formats.
/// Integer images are returned unchanged.
fn clamp_float_samples(mut img: DynamicImage) -> std::result::Result<DynamicImage, String> {
    let samples: &mut [f32] = match &mut img {
        DynamicImage::ImageRgb32F(b) => b,
        DynamicImage::ImageRgba32F(b) => b,
        _ => return Ok(img),
    };
    if let Some(i) = samples.iter().position(|v| !v.is_finite()) {
        let channels = img.color().channel_count() as usize;
        let (x, y) = (
            (i / channels) as u32 % img.width(),
            (i / channels) as u32 / img.width(),
        );
        return Err(format!(
            "non-finite sample (NaN or infinity) at pixel ({x}, {y}) of a floating-point image"
        ));
    }
    for v in samples.iter_mut() {
        *v = v.clamp(0.0, 1.0);
    }
    Ok(img)
}

fn flatten_alpha(img: DynamicImage) -> Rgb32FImage {
    if !img.color().has_alpha() {
        return img.into_rgb32f();
    }
    // In strips of rows, so that no float RGBA copy of the whole image (16 bytes a pixel, more
    // than the result) is ever held.
    const STRIP: u32 = 64;
    let (w, h) = img.dimensions();
    let mut out = Rgb32FImage::new(w, h);
    for y0 in (0..h).step_by(STRIP as usize) {
        let strip = img.crop_imm(0, y0, w, STRIP.min(h - y0)).into_rgba32f();
        for (x, y, p) in strip.enumerate_pixels() {
            let [r, g, b, a] = p.0;
            let a = a.clamp(0.0, 1.0);
            out.put_pixel(
                x,
                y0 + y,
                Rgb([r * a + 1.0 - a, g * a + 1.0 - a, b * a + 1.0 - a]),
            );
        }
    }
    out
}

/// Scales so that the longer side is `long_side` pixels (up or down), keeping the aspect ratio;
/// the shorter side is at least 1 pixel. An empty image (which `decode` never returns) is
/// returned as is.
pub fn resize_long_side(img: &Rgb32FImage, long_side: u32) -> Rgb32FImage {
    let (w, h) = img.dimensions();
    if w.max(h) == long_side || w == 0 || h == 0 {
        return img.clone();
    }
    let scale = long_side as f64 / w.max(h) as f64;
    let nw = ((w as f64 * scale).round() as u32).max(1);
    let nh = ((h as f64 * scale).round() as u32).max(1);
    image::imageops::resize(img, nw, nh, FilterType::Lanczos3)
}

/// RGB in 0..1 to a net-space CHW array.
pub fn rgb32f_to_net(img: &Rgb32FImage) -> Array3<f32> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    Array3::from_shape_fn((3, h, w), |(c, y, x)| {
        img.get_pixel(x as u32, y as u32).0[c] * 255.0 - MEAN[c]
    })
}

/// 8-bit RGB image to a net-space CHW array.
pub fn rgb_to_net(img: &RgbImage) -> Array3<f32> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    Array3::from_shape_fn((3, h, w), |(c, y, x)| {
        img.get_pixel(x as u32, y as u32).0[c] as f32 - MEAN[c]
    })
}

/// Net-space CHW array to an 8-bit RGB image (clamped and rounded). Panics unless 3 channels.
pub fn net_to_rgb(x: &Array3<f32>) -> RgbImage {
    let (c, h, w) = x.dim();
    assert_eq!(c, 3, "net-space arrays have 3 channels");
    ImageBuffer::from_fn(w as u32, h as u32, |px, py| {
        Rgb(std::array::from_fn(|ch| {
            (x[[ch, py as usize, px as usize]] + MEAN[ch])
                .round()
                .clamp(0.0, 255.0) as u8
        }))
    })
}

/// Decodes `path` and resizes it so the long side is `long_side`, in net space.
pub fn load_net(path: impl AsRef<Path>, long_side: u32) -> Result<Array3<f32>> {
    Ok(rgb32f_to_net(&resize_long_side(&decode(path)?, long_side)))
}

/// Decodes `path` and resizes it to exactly `width x height`, in net space.
pub fn load_net_exact(path: impl AsRef<Path>, width: u32, height: u32) -> Result<Array3<f32>> {
    Ok(resize_exact_to_net(decode(path)?, width, height))
}

/// A decoded image resized to exactly `width x height` (Lanczos3), in net space.
pub fn resize_exact_to_net(img: Rgb32FImage, width: u32, height: u32) -> Array3<f32> {
    let img = if img.dimensions() == (width, height) {
        img
    } else {
        image::imageops::resize(&img, width, height, FilterType::Lanczos3)
    };
    rgb32f_to_net(&img)
}

/// Resamples a net-space array to `width x height` (Lanczos3), e.g. to carry a coarse result
/// to the next scale. Values are not clamped.
pub fn resize_net(x: &Array3<f32>, width: u32, height: u32) -> Array3<f32> {
    let (_, h, w) = x.dim();
    let img: Rgb32FImage = ImageBuffer::from_fn(w as u32, h as u32, |px, py| {
        Rgb(std::array::from_fn(|c| {
            (x[[c, py as usize, px as usize]] + MEAN[c]) / 255.0
        }))
    });
    rgb32f_to_net(&image::imageops::resize(
        &img,
        width,
        height,
        FilterType::Lanczos3,
    ))
}

/// Output encodings, chosen by file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Png,
    Jpeg,
}

impl OutputFormat {
    /// The format a path's extension asks for.
    pub fn from_path(path: &Path) -> Result<Self> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("png") => Ok(OutputFormat::Png),
            Some("jpg" | "jpeg") => Ok(OutputFormat::Jpeg),
            _ => Err(image_err(path, "output must end in .png, .jpg or .jpeg")),
        }
    }
}

/// Encodes a net-space array to `path` (PNG or JPEG by extension, 8 bits per channel). The
/// bytes go to a temporary file beside the target, which is renamed over it only when complete,
/// so a failure never leaves a partial file nor destroys an existing one.
pub fn save_net(x: &Array3<f32>, path: impl AsRef<Path>) -> Result<()> {
    save_net_with_depth(x, path, false)
}

/// `save_net`, with 16 bits per channel when `sixteen_bit` (PNG only), for print work.
pub fn save_net_with_depth(
    x: &Array3<f32>,
    path: impl AsRef<Path>,
    sixteen_bit: bool,
) -> Result<()> {
    let path = path.as_ref();
    let format = OutputFormat::from_path(path)?;
    if x.dim().0 != 3 {
        return Err(Error::Shape(format!(
            "expected 3 channels, got {}",
            x.dim().0
        )));
    }
    let mut bytes = Vec::new();
    let encoded = match (format, sixteen_bit) {
        (OutputFormat::Png, false) => {
            net_to_rgb(x).write_with_encoder(image::codecs::png::PngEncoder::new(&mut bytes))
        }
        (OutputFormat::Png, true) => {
            net_to_rgb16(x).write_with_encoder(image::codecs::png::PngEncoder::new(&mut bytes))
        }
        (OutputFormat::Jpeg, false) => net_to_rgb(x).write_with_encoder(
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 95),
        ),
        (OutputFormat::Jpeg, true) => {
            return Err(image_err(path, "16-bit output needs a .png file"));
        }
    };
    encoded.map_err(|e| image_err(path, e))?;
    write_atomic(path, &bytes)
}

/// Net-space CHW array to a 16-bit RGB image (0..255 mapped onto 0..65535, clamped).
pub fn net_to_rgb16(x: &Array3<f32>) -> ImageBuffer<Rgb<u16>, Vec<u16>> {
    let (c, h, w) = x.dim();
    assert_eq!(c, 3, "net-space arrays have 3 channels");
    ImageBuffer::from_fn(w as u32, h as u32, |px, py| {
        Rgb(std::array::from_fn(|ch| {
            let v = (x[[ch, py as usize, px as usize]] + MEAN[ch]) / 255.0;
            (v * 65535.0).round().clamp(0.0, 65535.0) as u16
        }))
    })
}

/// BT.601 luma weights of R, G, B.
const LUMA: [f32; 3] = [0.299, 0.587, 0.114];

/// Keeps the luminance of `painted` and the colours (chroma `R - Y`, `B - Y`) of `content`,
/// both net-space arrays of one shape: a style transfer that leaves the photograph's colours.
pub fn original_colors(painted: &Array3<f32>, content: &Array3<f32>) -> Result<Array3<f32>> {
    if painted.dim() != content.dim() || painted.dim().0 != 3 {
        return Err(Error::Shape(format!(
            "original colours need two 3-channel images of one size, got {:?} and {:?}",
            painted.shape(),
            content.shape()
        )));
    }
    let (_, h, w) = painted.dim();
    let mut out = Array3::zeros((3, h, w));
    for y in 0..h {
        for x in 0..w {
            let rgb =
                |a: &Array3<f32>| -> [f32; 3] { std::array::from_fn(|c| a[[c, y, x]] + MEAN[c]) };
            let luma = |p: [f32; 3]| LUMA[0] * p[0] + LUMA[1] * p[1] + LUMA[2] * p[2];
            let (p, c) = (rgb(painted), rgb(content));
            let y_new = luma(p);
            let (v, u) = (c[0] - luma(c), c[2] - luma(c));
            let (r, b) = (y_new + v, y_new + u);
            let g = (y_new - LUMA[0] * r - LUMA[2] * b) / LUMA[1];
            for (ch, val) in [r, g, b].into_iter().enumerate() {
                out[[ch, y, x]] = val - MEAN[ch];
            }
        }
    }
    Ok(out)
}

/// Fails early (before minutes of work) if `output` cannot be written: an unsupported
/// extension, a directory in its place, or a folder that is missing or refuses new files. The
/// probe is a hidden file of our own, so no user file is touched.
pub fn check_writable(output: &Path) -> Result<()> {
    OutputFormat::from_path(output)?;
    if output.is_dir() {
        let e = std::io::Error::new(std::io::ErrorKind::IsADirectory, "is a directory");
        return Err(Error::io(output, e));
    }
    let probe = temp_sibling(output, "probe")?;
    std::fs::File::create(&probe).map_err(|e| Error::io(output, e))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// A hidden name beside `path`, unique to this process and thread (several threads of a
/// batch may write at once): `.NAME.PID-THREAD.SUFFIX`.
fn temp_sibling(path: &Path, suffix: &str) -> Result<PathBuf> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| image_err(path, "output path has no file name"))?;
    let thread = format!("{:?}", std::thread::current().id());
    let thread: String = thread.chars().filter(char::is_ascii_digit).collect();
    Ok(dir.join(format!(
        ".{}.{}-{thread}.{suffix}",
        name.to_string_lossy(),
        std::process::id()
    )))
}

/// Writes `bytes` to `path` through a temporary sibling and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// Writes what `fill` writes to `path` atomically: into a temporary sibling, synced, renamed
/// over `path`, and the folder synced, so that `path` is at any moment (a power cut included)
/// either its previous complete version or the new one. On failure the temporary file is
/// removed and `path` is untouched.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let tmp = temp_sibling(path, "tmp")?;
    let result = (|| {
        let f = std::fs::File::create(&tmp)?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
        fill(&mut w)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename itself must survive a power cut: sync the folder's entry too (best
        // effort: some filesystems refuse to sync a directory).
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_space_round_trips_8_bit_pixels() {
        let img = RgbImage::from_fn(5, 3, |x, y| Rgb([(x * 50) as u8, (y * 100) as u8, 255]));
        let net = rgb_to_net(&img);
        assert_eq!(net.dim(), (3, 3, 5));
        assert!((net[[0, 0, 0]] + 123.68).abs() < 1e-4);
        assert_eq!(net_to_rgb(&net), img);
    }

    #[test]
    fn resize_sets_the_long_side() {
        let img = Rgb32FImage::new(300, 200);
        let r = resize_long_side(&img, 96);
        assert_eq!(r.dimensions(), (96, 64));
        let r = resize_long_side(&Rgb32FImage::new(10, 40), 80);
        assert_eq!(r.dimensions(), (20, 80));
    }

    #[test]
    fn transparency_is_composited_over_white() {
        let img = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
            1,
            1,
            image::Rgba([0, 0, 0, 0]),
        ));
        assert_eq!(flatten_alpha(img).get_pixel(0, 0).0, [1.0, 1.0, 1.0]);
    }

    #[test]
    fn original_colors_keep_painted_luma_and_content_chroma() {
        let painted = Array3::from_shape_fn((3, 2, 3), |(c, y, x)| {
            (c * 40 + y * 7 + x * 13) as f32 - 60.0
        });
        let content = Array3::from_shape_fn((3, 2, 3), |(c, y, x)| {
            (x * 30 + y * 5) as f32 - (c * 20) as f32
        });
        let out = original_colors(&painted, &content).unwrap();
        let px =
            |a: &Array3<f32>, y, x| -> [f32; 3] { std::array::from_fn(|c| a[[c, y, x]] + MEAN[c]) };
        let luma = |p: [f32; 3]| LUMA[0] * p[0] + LUMA[1] * p[1] + LUMA[2] * p[2];
        for y in 0..2 {
            for x in 0..3 {
                let (o, p, c) = (px(&out, y, x), px(&painted, y, x), px(&content, y, x));
                assert!((luma(o) - luma(p)).abs() < 1e-3);
                assert!(((o[0] - luma(o)) - (c[0] - luma(c))).abs() < 1e-3);
                assert!(((o[2] - luma(o)) - (c[2] - luma(c))).abs() < 1e-3);
            }
        }
        assert!(original_colors(&painted, &Array3::zeros((3, 2, 2))).is_err());
    }

    #[test]
    fn sixteen_bit_png_round_trips_finer_than_8_bits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.png");
        let x = Array3::from_shape_fn((3, 2, 2), |(c, y, x)| 100.25 + (c + y + x) as f32 - MEAN[c]);
        save_net_with_depth(&x, &path, true).unwrap();
        let back = image::open(&path).unwrap();
        assert_eq!(back.color(), image::ColorType::Rgb16);
        let net = rgb32f_to_net(&back.into_rgb32f());
        assert!(net.iter().zip(x.iter()).all(|(a, b)| (a - b).abs() < 0.01));
        assert!(save_net_with_depth(&x, dir.path().join("x.jpg"), true).is_err());
    }

    #[test]
    fn resize_net_keeps_a_constant_image_constant() {
        let x = Array3::from_shape_fn((3, 4, 6), |(c, _, _)| c as f32 * 10.0 - 5.0);
        let r = resize_net(&x, 12, 8);
        assert_eq!(r.dim(), (3, 8, 12));
        assert!(r
            .indexed_iter()
            .all(|((c, _, _), v)| (v - (c as f32 * 10.0 - 5.0)).abs() < 1e-3));
    }

    #[test]
    fn unknown_output_extension_is_an_error() {
        assert!(OutputFormat::from_path(Path::new("a.gif")).is_err());
        assert_eq!(
            OutputFormat::from_path(Path::new("a.JPG")).unwrap(),
            OutputFormat::Jpeg
        );
    }
}
