//! Small synthetic test images with distinct content and texture.

use image::{Rgb, RgbImage};

/// A smooth colour gradient with a bright disc, so content layers have something to hold.
pub fn gradient(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
        let disc = (fx - 0.4).powi(2) + (fy - 0.5).powi(2) < 0.06;
        let r = if disc { 250.0 } else { 40.0 + 180.0 * fx };
        Rgb([
            r as u8,
            (30.0 + 200.0 * fy) as u8,
            (200.0 - 150.0 * fx * fy) as u8,
        ])
    })
}

/// Diagonal colour stripes: a texture with a distinct Gram matrix.
pub fn stripes(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| match ((x + y) / 4) % 3 {
        0 => Rgb([220, 40, 30]),
        1 => Rgb([20, 60, 200]),
        _ => Rgb([240, 220, 60]),
    })
}

/// A checkerboard with a vertical ramp: a second, different style.
pub fn checker(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let v = (40 + 200 * y / h) as u8;
        if (x / 6 + y / 6) % 2 == 0 {
            Rgb([v, 255 - v, 90])
        } else {
            Rgb([10, v / 2, 255 - v / 3])
        }
    })
}
