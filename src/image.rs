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

mod mask;
mod strict;

pub use mask::Mask;

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

/// Mean and covariance of an image's RGB pixels (0..1 scale), in f64: what colour matching
/// ([`match_colors`]) moves a style image to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColorStats {
    pub mean: [f64; 3],
    /// Population covariance (divided by the pixel count), symmetric.
    pub cov: [[f64; 3]; 3],
}

impl ColorStats {
    /// The statistics of `img` (two passes, in f64, serial: the same bits on any thread count).
    pub fn of(img: &Rgb32FImage) -> Result<Self> {
        let n = img.pixels().len();
        if n == 0 {
            return Err(Error::Shape("colour statistics of an empty image".into()));
        }
        let mut mean = [0.0f64; 3];
        for p in img.pixels() {
            for (m, &v) in mean.iter_mut().zip(&p.0) {
                *m += v as f64;
            }
        }
        mean = mean.map(|m| m / n as f64);
        let mut cov = [[0.0f64; 3]; 3];
        for p in img.pixels() {
            let d: [f64; 3] = std::array::from_fn(|c| p.0[c] as f64 - mean[c]);
            for i in 0..3 {
                for j in i..3 {
                    cov[i][j] += d[i] * d[j];
                }
            }
        }
        let cov: [[f64; 3]; 3] =
            std::array::from_fn(|i| std::array::from_fn(|j| cov[i.min(j)][i.max(j)] / n as f64));
        let stats = ColorStats { mean, cov };
        if !stats
            .mean
            .iter()
            .chain(stats.cov.iter().flatten())
            .all(|v| v.is_finite())
        {
            return Err(Error::NonFinite("colour statistics of an image".into()));
        }
        Ok(stats)
    }

    /// The statistics of a mixture of images' pixels, each part's weight its proportion
    /// (normalised here): the mean is the weighted mean, the covariance the weighted second
    /// moment about it.
    pub fn mixture(parts: &[(ColorStats, f64)]) -> Result<Self> {
        let total: f64 = parts.iter().map(|(_, w)| w).sum();
        if parts.is_empty() || total.is_nan() || total <= 0.0 || total.is_infinite() {
            return Err(Error::Config(
                "colour statistics of a mixture need a positive total weight".into(),
            ));
        }
        let share = |f: &dyn Fn(&ColorStats) -> f64| -> f64 {
            parts.iter().map(|(s, w)| w / total * f(s)).sum()
        };
        let mean: [f64; 3] = std::array::from_fn(|i| share(&|s| s.mean[i]));
        let cov = std::array::from_fn(|i| {
            std::array::from_fn(|j| {
                share(&|s| s.cov[i][j] + s.mean[i] * s.mean[j]) - mean[i] * mean[j]
            })
        });
        Ok(ColorStats { mean, cov })
    }
}

type Mat3 = [[f64; 3]; 3];

fn mat_mul(a: &Mat3, b: &Mat3) -> Mat3 {
    std::array::from_fn(|i| std::array::from_fn(|j| (0..3).map(|k| a[i][k] * b[k][j]).sum()))
}

/// Eigenvalues and eigenvectors (the columns of the matrix) of a symmetric 3x3 matrix, by
/// cyclic Jacobi rotations: exact to rounding for such a small matrix, and no dependency.
fn symmetric_eigen(m: &Mat3) -> ([f64; 3], Mat3) {
    let mut a = *m;
    let mut v: Mat3 = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    let scale = a.iter().flatten().map(|x| x.abs()).fold(0.0, f64::max);
    for _sweep in 0..64 {
        let off = a[0][1].abs() + a[0][2].abs() + a[1][2].abs();
        if off <= 1e-30 * scale || off == 0.0 {
            break;
        }
        for (p, q) in [(0, 1), (0, 2), (1, 2)] {
            if a[p][q] == 0.0 {
                continue;
            }
            // The rotation that zeroes a[p][q] (Numerical Recipes' stable form).
            let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
            let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
            let t = if theta == 0.0 { 1.0 } else { t };
            let c = 1.0 / (t * t + 1.0).sqrt();
            let s = t * c;
            let mut r: Mat3 = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
            r[p][p] = c;
            r[q][q] = c;
            r[p][q] = s;
            r[q][p] = -s;
            // a <- R^T a R, v <- v R
            let rt: Mat3 = std::array::from_fn(|i| std::array::from_fn(|j| r[j][i]));
            a = mat_mul(&rt, &mat_mul(&a, &r));
            a[p][q] = 0.0;
            a[q][p] = 0.0;
            v = mat_mul(&v, &r);
        }
    }
    ([a[0][0], a[1][1], a[2][2]], v)
}

/// `V f(L) V^T` for the eigen-decomposition `V L V^T` of the symmetric `m`.
fn symmetric_fn(m: &Mat3, f: impl Fn(f64) -> f64) -> Mat3 {
    let (l, v) = symmetric_eigen(m);
    let fl = l.map(f);
    std::array::from_fn(|i| {
        std::array::from_fn(|j| (0..3).map(|k| v[i][k] * fl[k] * v[j][k]).sum())
    })
}

/// Colour matching of a style image to a photograph, the "colour histogram matching" of Gatys
/// et al. 2016 (Preserving Color in Neural Artistic Style Transfer): every pixel p becomes
/// `A (p - mu_s) + mu_c` with `A = Sigma_c^(1/2) Sigma_s^(-1/2)` (symmetric roots), so the
/// style gets the photograph's colour mean and covariance while its texture (what the Gram
/// matrices see) is kept; then it is clamped to 0..1. A flat or constant-colour style (a
/// singular covariance) is regularised by `1e-5` of its trace, at least `1e-10`, so it maps to
/// the photograph's mean instead of infinity.
pub fn match_colors(style: &mut Rgb32FImage, target: &ColorStats) -> Result<()> {
    let source = ColorStats::of(style)?;
    let trace = source.cov[0][0] + source.cov[1][1] + source.cov[2][2];
    let eps = (1e-5 * trace).max(1e-10);
    let mut reg = source.cov;
    for (i, row) in reg.iter_mut().enumerate() {
        row[i] += eps;
    }
    let inv_sqrt_s = symmetric_fn(&reg, |l| 1.0 / l.max(eps).sqrt());
    let sqrt_c = symmetric_fn(&target.cov, |l| l.max(0.0).sqrt());
    let a = mat_mul(&sqrt_c, &inv_sqrt_s);
    if !a
        .iter()
        .flatten()
        .chain(&target.mean)
        .all(|v| v.is_finite())
    {
        return Err(Error::NonFinite("colour matching transform".into()));
    }
    for p in style.pixels_mut() {
        let d: [f64; 3] = std::array::from_fn(|c| p.0[c] as f64 - source.mean[c]);
        p.0 = std::array::from_fn(|i| {
            let v = target.mean[i] + a[i][0] * d[0] + a[i][1] * d[1] + a[i][2] * d[2];
            v.clamp(0.0, 1.0) as f32
        });
    }
    Ok(())
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

    /// A pseudo-random image whose channels are correlated (by `mix`, which differs by seed
    /// parity): `spread` around `centre`.
    fn random_image(w: u32, h: u32, seed: u64, centre: [f32; 3], spread: f32) -> Rgb32FImage {
        let mix: [[f32; 3]; 3] = if seed % 2 == 1 {
            [[1.0, 0.0, 0.0], [0.6, 0.4, 0.0], [0.0, 0.3, -0.5]]
        } else {
            [[0.5, 0.0, -0.3], [0.0, 0.8, 0.0], [0.4, 0.2, 0.6]]
        };
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        ImageBuffer::from_fn(w, h, |_, _| {
            let u = [next(), next(), next()];
            Rgb(std::array::from_fn(|i| {
                centre[i] + spread * (0..3).map(|k| mix[i][k] * u[k]).sum::<f32>()
            }))
        })
    }

    fn max_rel_gap(a: &ColorStats, b: &ColorStats) -> (f64, f64) {
        let norm = |m: &[[f64; 3]; 3]| m.iter().flatten().map(|v| v * v).sum::<f64>().sqrt();
        let dcov: [[f64; 3]; 3] =
            std::array::from_fn(|i| std::array::from_fn(|j| a.cov[i][j] - b.cov[i][j]));
        let dmean = (0..3)
            .map(|i| (a.mean[i] - b.mean[i]).abs())
            .fold(0.0, f64::max);
        let mean_norm = b.mean.iter().map(|v| v * v).sum::<f64>().sqrt();
        (dmean / mean_norm, norm(&dcov) / norm(&b.cov))
    }

    #[test]
    fn jacobi_decomposes_symmetric_matrices() {
        let m = [[4.0, 1.0, -2.0], [1.0, 3.0, 0.5], [-2.0, 0.5, 6.0]];
        let (l, v) = symmetric_eigen(&m);
        for k in 0..3 {
            for i in 0..3 {
                let mv: f64 = (0..3).map(|j| m[i][j] * v[j][k]).sum();
                assert!((mv - l[k] * v[i][k]).abs() < 1e-12, "{l:?}");
            }
        }
        let root = symmetric_fn(&m, f64::sqrt);
        let back = mat_mul(&root, &root);
        assert!((0..9).all(|k| (back[k / 3][k % 3] - m[k / 3][k % 3]).abs() < 1e-12));
    }

    #[test]
    fn matched_style_has_the_content_colour_mean_and_covariance() {
        let content = random_image(90, 70, 1, [0.55, 0.45, 0.35], 0.3);
        let mut style = random_image(64, 80, 2, [0.5, 0.5, 0.5], 0.8);
        let target = ColorStats::of(&content).unwrap();
        let before = max_rel_gap(&ColorStats::of(&style).unwrap(), &target);
        assert!(before.0 > 0.1 && before.1 > 0.5, "{before:?}");
        match_colors(&mut style, &target).unwrap();
        assert!(
            style.pixels().flat_map(|p| p.0).all(|v| v > 0.0 && v < 1.0),
            "clamped"
        );
        let after = max_rel_gap(&ColorStats::of(&style).unwrap(), &target);
        assert!(after.0 < 1e-5 && after.1 < 1e-3, "{after:?}");
    }

    #[test]
    fn a_mixture_has_the_statistics_of_the_pooled_pixels() {
        let (a, b) = (
            random_image(40, 30, 5, [0.7, 0.3, 0.2], 0.4),
            random_image(40, 10, 6, [0.2, 0.4, 0.8], 0.3),
        );
        let pooled = ImageBuffer::from_fn(40, 40, |x, y| {
            if y < 30 {
                *a.get_pixel(x, y)
            } else {
                *b.get_pixel(x, y - 30)
            }
        });
        let parts = [
            (ColorStats::of(&a).unwrap(), 3.0),
            (ColorStats::of(&b).unwrap(), 1.0),
        ];
        let gap = max_rel_gap(
            &ColorStats::mixture(&parts).unwrap(),
            &ColorStats::of(&pooled).unwrap(),
        );
        assert!(gap.0 < 1e-9 && gap.1 < 1e-9, "{gap:?}");
        assert!(ColorStats::mixture(&[]).is_err());
        assert!(ColorStats::mixture(&[(parts[0].0, 0.0)]).is_err());
    }

    #[test]
    fn matching_an_image_to_itself_changes_nothing() {
        let img = random_image(40, 30, 3, [0.5, 0.5, 0.5], 0.5);
        let mut same = img.clone();
        match_colors(&mut same, &ColorStats::of(&img).unwrap()).unwrap();
        let worst = img
            .pixels()
            .zip(same.pixels())
            .flat_map(|(a, b)| (0..3).map(move |c| (a.0[c] - b.0[c]).abs()))
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-4, "{worst}");
    }

    #[test]
    fn flat_images_match_without_nan() {
        let content = random_image(20, 20, 4, [0.5, 0.4, 0.3], 0.4);
        let target = ColorStats::of(&content).unwrap();
        // A constant style takes the photograph's mean colour.
        let mut flat = Rgb32FImage::from_pixel(8, 6, Rgb([0.9, 0.1, 0.2]));
        match_colors(&mut flat, &target).unwrap();
        for p in flat.pixels() {
            assert!(
                (0..3).all(|c| (p.0[c] as f64 - target.mean[c]).abs() < 1e-5),
                "{p:?}"
            );
        }
        // A grey style (rank-1 covariance) and a constant photograph stay finite.
        let mut grey = ImageBuffer::from_fn(9, 9, |x, _| Rgb([x as f32 / 8.0; 3]));
        match_colors(&mut grey, &target).unwrap();
        assert!(grey.pixels().flat_map(|p| p.0).all(|v| v.is_finite()));
        let flat_target = ColorStats::of(&Rgb32FImage::from_pixel(3, 3, Rgb([0.2; 3]))).unwrap();
        let mut style = content.clone();
        match_colors(&mut style, &flat_target).unwrap();
        assert!(style
            .pixels()
            .all(|p| p.0.iter().all(|&v| (v - 0.2).abs() < 1e-6)));
        // No pixels: an error, not a panic.
        assert!(ColorStats::of(&Rgb32FImage::new(0, 5)).is_err());
        assert!(match_colors(&mut Rgb32FImage::new(0, 0), &target).is_err());
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
