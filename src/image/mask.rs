//! Masks for spatial control (`--style-mask`, `--content-mask`): a greyscale image read as a
//! weight in [0, 1] per pixel, resized with the painting at every stage.

use super::{decode_bytes, image_err};
use crate::error::Result;
use image::imageops::FilterType;
use image::{ImageBuffer, Luma};
use ndarray::Array2;
use std::path::Path;

/// Largest relative difference of aspect ratio between a mask and the photograph: a mask is
/// stretched to the painting, so a mask of another shape would paint the wrong places.
const ASPECT_TOLERANCE: f64 = 0.02;

/// A decoded mask at its file's size.
#[derive(Debug, Clone)]
pub struct Mask(ImageBuffer<Luma<f32>, Vec<f32>>);

impl Mask {
    /// Decodes a mask file's bytes (any format [`decode_bytes`] reads; a colour image counts by
    /// its luminance, transparency as white) for a photograph of `photo` (width, height):
    /// a mask of another aspect ratio is an error naming both sizes.
    pub fn decode(path: &Path, bytes: &[u8], photo: (u32, u32)) -> Result<Mask> {
        let rgb = decode_bytes(path, bytes)?;
        let (w, h) = rgb.dimensions();
        let (pw, ph) = photo;
        let ratio = (w as f64 / h as f64) / (pw as f64 / ph as f64);
        if (ratio - 1.0).abs() > ASPECT_TOLERANCE {
            return Err(image_err(
                path,
                format!("the mask is {w}x{h}, the photograph {pw}x{ph}: a mask must have the photograph's shape"),
            ));
        }
        let luma = rgb
            .pixels()
            .map(|p| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2])
            .collect();
        Ok(Mask(
            ImageBuffer::from_raw(w, h, luma).expect("one value per pixel"),
        ))
    }

    /// The mask resized to `h x w` (bilinear, so soft edges stay soft), values in [0, 1].
    pub fn at(&self, h: usize, w: usize) -> Array2<f32> {
        let resized;
        let m = if self.0.dimensions() == (w as u32, h as u32) {
            &self.0
        } else {
            resized = image::imageops::resize(&self.0, w as u32, h as u32, FilterType::Triangle);
            &resized
        };
        Array2::from_shape_fn((h, w), |(y, x)| {
            m.get_pixel(x as u32, y as u32)[0].clamp(0.0, 1.0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32, f: impl Fn(u32, u32) -> u8) -> Vec<u8> {
        let img = image::GrayImage::from_fn(w, h, |x, y| Luma([f(x, y)]));
        let mut bytes = Vec::new();
        img.write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .unwrap();
        bytes
    }

    #[test]
    fn a_mask_reads_white_as_one_and_keeps_its_halves_when_resized() {
        let bytes = png(40, 20, |x, _| if x < 20 { 255 } else { 0 });
        let mask = Mask::decode(Path::new("m.png"), &bytes, (80, 40)).unwrap();
        let m = mask.at(10, 20);
        assert_eq!(m.dim(), (10, 20));
        assert!(m.iter().all(|v| (0.0..=1.0).contains(v)));
        assert_eq!(m[[5, 2]], 1.0);
        assert_eq!(m[[5, 17]], 0.0);
        // The edge is soft after resizing, not moved.
        let row: f32 = m.row(5).sum();
        assert!((row - 10.0).abs() < 0.5, "{row}");
    }

    #[test]
    fn a_mask_of_another_shape_is_refused_naming_both_sizes() {
        let bytes = png(40, 40, |_, _| 255);
        let e = Mask::decode(Path::new("m.png"), &bytes, (80, 40))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("m.png") && e.contains("40x40") && e.contains("80x40"),
            "{e}"
        );
    }
}
