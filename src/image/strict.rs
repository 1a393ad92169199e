//! Strict decoding: a file that ends early or holds a decoder error is an error, never a picture
//! painted grey (or black) below the damage.
//!
//! - JPEG is decoded here with zune-jpeg, the decoder the `image` crate wraps, with the very
//!   options the crate uses (so good files give the same pixels, bit for bit) except strict
//!   mode, which turns every entropy-decoding error into an error instead of a warning. Strict
//!   mode alone still accepts a file cut inside its last MCU row or just before its end-of-image
//!   marker, so the marker structure is walked first, from SOI to the first EOI: segments by
//!   their lengths (an EXIF thumbnail, with its own EOI, lies inside an APP1 segment and is
//!   skipped whole), entropy-coded data up to the first marker that is not a restart. Bytes
//!   after the EOI are allowed, as everywhere.
//! - PNG: the chunks are walked to IEND, each CRC checked (the `png` crate stops reading after
//!   the image data, so a cut IEND or a damaged trailing chunk went unseen).
//! - GIF: the blocks are walked to the trailer (the `image` crate reads the first frame only).
//! - WebP: the file must hold the size its RIFF header declares (a cut pad byte went unseen).
//! - The other formats the crate enables (BMP, TIFF, PNM, TGA) already fail on every
//!   truncation of their image data (checked by `tests/fuzz_inputs.rs`).
//!
//! Size plausibility: a declared size is checked against the bytes that could encode it
//! before any pixel buffer is allocated, where the codec bounds the compression ratio: a
//! Huffman-coded JPEG spends at least one bit per 8x8 block of its full-resolution component,
//! deflate expands at most 1032 times. A few bytes claiming 20000 x 20000 pixels are then an
//! error, not a gigabyte buffer filled with grey.

use super::{MAX_DECODE_BYTES, MAX_INPUT_SIDE};
use image::{DynamicImage, ImageBuffer};
use zune_jpeg::errors::DecodeErrors;
use zune_jpeg::zune_core::bytestream::ZCursor;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;

const JPEG_TRUNCATED: &str = "truncated JPEG data (ends before the end-of-image marker)";
const PNG_TRUNCATED: &str = "truncated PNG data (ends before the IEND chunk)";
const WEBP_TRUNCATED: &str = "truncated WebP data (shorter than its RIFF header declares)";
const GIF_TRUNCATED: &str = "truncated GIF data (ends before the trailer)";

/// A decoder's message on one line (some end in a newline, some are quoted).
pub(super) fn one_line(detail: impl std::fmt::Display) -> String {
    let s = detail.to_string();
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    s.trim_matches('"').to_string()
}

fn too_large(w: u64, h: u64) -> String {
    format!("{w}x{h} pixels exceed the limit of {MAX_INPUT_SIDE} pixels per side")
}

/// Checks a declared size against the limits, before anything is allocated: each side at most
/// `MAX_INPUT_SIDE`, and both the decoder's buffer (`decoder_bytes`) and the 32-bit float RGB
/// image made of it at most `MAX_DECODE_BYTES` (2 GiB: 178,956,970 pixels, the threshold of
/// Pillow's `DecompressionBombError`). A few bytes of GIF may declare a 20000 x 20000 canvas.
pub(super) fn check_size(w: u64, h: u64, decoder_bytes: u64) -> Result<(), String> {
    if w > MAX_INPUT_SIDE as u64 || h > MAX_INPUT_SIDE as u64 {
        return Err(too_large(w, h));
    }
    let float_bytes = w * h * 12;
    if decoder_bytes.max(float_bytes) > MAX_DECODE_BYTES {
        return Err(format!(
            "{w}x{h} pixels need {} bytes to decode, over the limit of {MAX_DECODE_BYTES}",
            decoder_bytes.max(float_bytes)
        ));
    }
    Ok(())
}

/// The offset just past the first EOI marker, walking the marker segments from SOI.
pub(super) fn jpeg_end(b: &[u8]) -> Result<usize, String> {
    if !b.starts_with(&[0xFF, 0xD8]) {
        return Err("not a JPEG file (no start-of-image marker)".into());
    }
    let mut i = 2;
    loop {
        // The next marker: 0xFF and a code other than 0x00 (stuffing) or 0xFF (fill). Stray
        // bytes before it are left to the decoder's judgement.
        let code = loop {
            match b.get(i..i + 2) {
                None => return Err(JPEG_TRUNCATED.into()),
                Some([0xFF, 0x00 | 0xFF]) => i += 1,
                Some([0xFF, code]) => break *code,
                Some(_) => i += 1,
            }
        };
        i += 2;
        match code {
            0xD9 => return Ok(i),
            // Standalone markers: TEM, RSTn, SOI.
            0x01 | 0xD0..=0xD8 => {}
            _ => {
                let len = match b.get(i..i + 2) {
                    Some(&[hi, lo]) => u16::from_be_bytes([hi, lo]) as usize,
                    _ => return Err(JPEG_TRUNCATED.into()),
                };
                if len < 2 {
                    return Err(format!(
                        "invalid JPEG segment length {len} of marker 0xFF{code:02X} at offset {}",
                        i - 2
                    ));
                }
                i += len;
                if i > b.len() {
                    return Err(JPEG_TRUNCATED.into());
                }
                if code == 0xDA {
                    i = entropy_coded_end(b, i)?;
                }
            }
        }
    }
}

/// The offset of the marker that ends the entropy-coded data starting at `i`.
fn entropy_coded_end(b: &[u8], mut i: usize) -> Result<usize, String> {
    loop {
        i += b
            .get(i..)
            .and_then(|rest| rest.iter().position(|&x| x == 0xFF))
            .ok_or(JPEG_TRUNCATED)?;
        match b.get(i + 1) {
            None => return Err(JPEG_TRUNCATED.into()),
            // Stuffed 0xFF, restart markers: still data. 0xFF 0xFF: fill before a marker.
            Some(0x00 | 0xD0..=0xD7) => i += 2,
            Some(0xFF) => i += 1,
            Some(_) => return Ok(i),
        }
    }
}

fn jpeg_err(e: DecodeErrors) -> String {
    match e {
        DecodeErrors::LargeDimensions(_) => {
            format!("dimensions exceed the limit of {MAX_INPUT_SIDE} pixels per side")
        }
        e => format!("invalid JPEG data ({})", one_line(e)),
    }
}

/// The `image` crate's output colour for a JPEG's input colour space (`to_supported_color_space`
/// in its JPEG decoder): kept when the crate has a buffer type for it, else converted to RGB.
fn jpeg_out_colorspace(input: ColorSpace) -> ColorSpace {
    match input {
        ColorSpace::RGB | ColorSpace::RGBA | ColorSpace::Luma | ColorSpace::LumaA => input,
        _ => ColorSpace::RGB,
    }
}

fn jpeg_options(out: ColorSpace) -> DecoderOptions {
    DecoderOptions::default()
        .jpeg_set_out_colorspace(out)
        .set_strict_mode(true)
        .set_max_width(MAX_INPUT_SIDE as usize)
        .set_max_height(MAX_INPUT_SIDE as usize)
}

/// Decodes a JPEG strictly (see the module notes) into what `image::load_from_memory` gives
/// for a good file.
pub(super) fn decode_jpeg(bytes: &[u8]) -> Result<DynamicImage, String> {
    jpeg_end(bytes)?;
    let mut headers = zune_jpeg::JpegDecoder::new_with_options(
        ZCursor::new(bytes),
        jpeg_options(ColorSpace::RGB),
    );
    headers.decode_headers().map_err(jpeg_err)?;
    let (w, h) = headers.dimensions().ok_or("JPEG headers not decoded")?;
    let input = headers
        .input_colorspace()
        .ok_or("JPEG headers not decoded")?;
    let out = jpeg_out_colorspace(input);
    let (w64, h64) = (w as u64, h as u64);
    check_size(w64, h64, w64 * h64 * out.num_components() as u64)?;
    let blocks = w64.div_ceil(8) * h64.div_ceil(8);
    if blocks > 8 * bytes.len() as u64 {
        return Err(format!(
            "JPEG data of {} bytes is too short for {w}x{h} pixels (at least {} bytes needed)",
            bytes.len(),
            blocks.div_ceil(8)
        ));
    }
    let mut decoder =
        zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), jpeg_options(out));
    let pixels = decoder.decode().map_err(jpeg_err)?;
    let (w, h) = (w as u32, h as u32);
    let img = match out {
        ColorSpace::RGB => ImageBuffer::from_raw(w, h, pixels).map(DynamicImage::ImageRgb8),
        ColorSpace::RGBA => ImageBuffer::from_raw(w, h, pixels).map(DynamicImage::ImageRgba8),
        ColorSpace::Luma => ImageBuffer::from_raw(w, h, pixels).map(DynamicImage::ImageLuma8),
        ColorSpace::LumaA => ImageBuffer::from_raw(w, h, pixels).map(DynamicImage::ImageLumaA8),
        _ => None,
    };
    img.ok_or_else(|| format!("JPEG decoder returned a buffer of the wrong size for {w}x{h}"))
}

/// Walks a PNG's chunks to IEND, checking each CRC and that the image data could hold the size
/// the header declares.
pub(super) fn check_png(b: &[u8]) -> Result<(), String> {
    const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1A, b'\n'];
    if !b.starts_with(&SIGNATURE) {
        return Err("not a PNG file (no signature)".into());
    }
    let be32 = |s: &[u8]| u32::from_be_bytes([s[0], s[1], s[2], s[3]]);
    let mut i = SIGNATURE.len();
    let mut header = None;
    let mut idat = 0u64;
    loop {
        let head = b.get(i..i + 8).ok_or(PNG_TRUNCATED)?;
        let len = be32(head);
        let kind = &head[4..8];
        let name = String::from_utf8_lossy(kind);
        if len > i32::MAX as u32 {
            return Err(format!(
                "invalid PNG chunk length {len} ({name} at offset {i})"
            ));
        }
        let end = i + 12 + len as usize;
        let chunk = b.get(i + 4..end).ok_or(PNG_TRUNCATED)?;
        let (body, crc) = chunk.split_at(chunk.len() - 4);
        if crc32fast::hash(body) != be32(crc) {
            return Err(format!(
                "PNG chunk {name} at offset {i} fails its CRC check (damaged file)"
            ));
        }
        let data = &body[4..];
        match kind {
            b"IHDR" if data.len() >= 13 && header.is_none() => header = Some(data[..13].to_vec()),
            b"IDAT" => idat += len as u64,
            b"IEND" => break,
            _ => {}
        }
        i = end;
    }
    if let Some(h) = header {
        let (width, height) = (be32(&h[0..4]) as u64, be32(&h[4..8]) as u64);
        if !matches!(h[8], 1 | 2 | 4 | 8 | 16) {
            return Ok(()); // the decoder names the bad bit depth
        }
        let channels = match h[9] {
            0 | 3 => 1,
            4 => 2,
            2 => 3,
            6 => 4,
            _ => return Ok(()), // the decoder names the bad colour type
        };
        if width > MAX_INPUT_SIDE as u64 || height > MAX_INPUT_SIDE as u64 {
            return Err(too_large(width, height));
        }
        let pixel_bytes = (width * height * channels * h[8] as u64).div_ceil(8);
        // Deflate expands at most 1032 times; twice that leaves room for the zlib framing.
        if pixel_bytes > 2064 * (idat + 16) {
            return Err(format!(
                "PNG image data of {idat} bytes is too short for {width}x{height} pixels"
            ));
        }
    }
    Ok(())
}

/// Walks a GIF's blocks (extensions and images, each a chain of sub-blocks) to the trailer.
pub(super) fn check_gif(b: &[u8]) -> Result<(), String> {
    if !(b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a")) {
        return Err("not a GIF file (no signature)".into());
    }
    let table = |packed: u8| {
        if packed & 0x80 != 0 {
            3 << ((packed & 7) + 1)
        } else {
            0
        }
    };
    let byte = |i: usize| b.get(i).copied().ok_or(GIF_TRUNCATED);
    let mut i = 13 + table(byte(10)?);
    loop {
        match byte(i)? {
            0x3B => return Ok(()),
            0x21 => i += 2,
            0x2C => i += 10 + table(byte(i + 9)?) + 1,
            other => {
                return Err(format!(
                    "invalid GIF data (byte 0x{other:02X} at offset {i} starts no block)"
                ))
            }
        }
        // The sub-blocks: a length byte, that many bytes, ..., a zero length.
        loop {
            let n = byte(i)? as usize;
            i += 1 + n;
            if n == 0 {
                break;
            }
        }
    }
}

/// Checks that a WebP file holds the RIFF chunk its header declares.
pub(super) fn check_webp(b: &[u8]) -> Result<(), String> {
    match b.get(..12) {
        Some([b'R', b'I', b'F', b'F', s0, s1, s2, s3, b'W', b'E', b'B', b'P']) => {
            let size = u32::from_le_bytes([*s0, *s1, *s2, *s3]) as u64;
            if b.len() as u64 >= size + 8 {
                Ok(())
            } else {
                Err(WEBP_TRUNCATED.into())
            }
        }
        Some(_) => Err("not a WebP file (no RIFF WEBP header)".into()),
        None => Err(WEBP_TRUNCATED.into()),
    }
}
