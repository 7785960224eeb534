//! Real-looking sample JPEG frames for the demo, the simulator, benchmarks and the golden vectors.
//!
//! A frame is a sky-and-ground scene with a sun whose position depends on the frame number, plus the
//! frame number and a label drawn with a built-in 5x7 pixel font, so every frame differs and is
//! pleasant to open.

use image::codecs::jpeg::JpegEncoder;
use image::{Rgb, RgbImage};

/// Why a frame could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    /// The JPEG encoder failed.
    #[error("JPEG encoding failed: {0}")]
    Encode(#[from] image::ImageError),
    /// Zero width or height.
    #[error("frame size {0}x{1} is empty")]
    Empty(u32, u32),
}

/// Renders frame `frame` of a `width` x `height` scene labelled `label` as a JPEG of `quality`
/// (1..=100). Deterministic for the same arguments and `image` version.
pub fn scene_jpeg(
    width: u32,
    height: u32,
    frame: u32,
    label: &str,
    quality: u8,
) -> Result<Vec<u8>, SampleError> {
    if width == 0 || height == 0 {
        return Err(SampleError::Empty(width, height));
    }
    let horizon = height * 2 / 3;
    let phase = (frame % 64) as f32 / 64.0;
    let sun_x = (phase * width as f32) as i64;
    let sun_y = (horizon as f32 * (0.25 + 0.5 * (phase * std::f32::consts::PI).cos().abs())) as i64;
    let sun_r = (height / 10).max(2) as i64;
    let mut img = RgbImage::from_fn(width, height, |x, y| {
        let (dx, dy) = (x as i64 - sun_x, y as i64 - sun_y);
        if dx * dx + dy * dy <= sun_r * sun_r {
            return Rgb([255, 214, 90]);
        }
        if y < horizon {
            let t = y as f32 / horizon as f32;
            Rgb([
                (70.0 + 110.0 * t) as u8,
                (130.0 + 80.0 * t) as u8,
                (220.0 - 20.0 * t) as u8,
            ])
        } else {
            let stripe = ((x / 8 + y / 8 + frame) % 2) as u8 * 18;
            let t = (y - horizon) as f32 / (height - horizon).max(1) as f32;
            Rgb([
                (60.0 + 40.0 * t) as u8 + stripe,
                (140.0 - 30.0 * t) as u8,
                60 + stripe,
            ])
        }
    });
    let scale = (height / 60).max(1);
    let text = format!("#{frame} {label}");
    draw_text(&mut img, 2 * scale, 2 * scale, scale, &text);
    let mut out = Vec::with_capacity((width * height / 4) as usize);
    JpegEncoder::new_with_quality(&mut out, quality.clamp(1, 100)).encode_image(&img)?;
    Ok(out)
}

fn draw_text(img: &mut RgbImage, x0: u32, y0: u32, scale: u32, text: &str) {
    let mut x = x0;
    for ch in text.chars() {
        let rows = glyph(ch);
        for (row, bits) in rows.iter().enumerate() {
            for col in 0..5u32 {
                if bits & (0x10 >> col) == 0 {
                    continue;
                }
                for sy in 0..scale {
                    for sx in 0..scale {
                        let (px, py) = (x + col * scale + sx, y0 + row as u32 * scale + sy);
                        if px < img.width() && py < img.height() {
                            img.put_pixel(px, py, Rgb([20, 20, 20]));
                        }
                    }
                }
            }
        }
        x += 6 * scale;
    }
}

/// A 5x7 glyph, one byte a row, bit 4 leftmost. Digits, upper-case letters and a few signs; other
/// characters draw as a box.
fn glyph(ch: char) -> [u8; 7] {
    match ch.to_ascii_uppercase() {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        'A' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        ' ' => [0; 7],
        '-' => [0, 0, 0, 0x1F, 0, 0, 0],
        ':' => [0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0],
        '.' => [0, 0, 0, 0, 0, 0x0C, 0x0C],
        '#' => [0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A],
        '_' => [0, 0, 0, 0, 0, 0, 0x1F],
        '/' => [0x01, 0x01, 0x02, 0x04, 0x08, 0x10, 0x10],
        _ => [0x1F, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1F],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_jpegs_and_differ() {
        let a = scene_jpeg(64, 48, 1, "cam-01", 80).unwrap();
        let b = scene_jpeg(64, 48, 2, "cam-01", 80).unwrap();
        assert!(receiver_protocol::wire::has_jpeg_markers(&a));
        assert_ne!(a, b);
        let decoded = image::load_from_memory(&a).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (64, 48));
        assert!(scene_jpeg(0, 1, 0, "", 80).is_err());
    }
}
