//! CPU cost per picture of the JPEG checks ([`crate::jpeg::entropy_check`], the exact check;
//! [`crate::jpeg::structure_ok`], the structural walk) beside a full decode (`image` crate) of the
//! same sample frames, in this process: thread CPU time over repeated passes.

use super::BenchError;
use crate::jpeg::{entropy_check, structure_ok, EntropyVerdict};
use std::fmt::Write as _;
use std::hint::black_box;

/// The figures of one picture size.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JpegCheckRow {
    /// E.g. "QVGA".
    pub name: String,
    /// Pixels.
    pub width: u32,
    /// Pixels.
    pub height: u32,
    /// Distinct frames measured.
    pub frames: usize,
    /// Mean frame size, bytes.
    pub mean_bytes: usize,
    /// CPU per picture of the exact (entropy-decoding) check, µs.
    pub exact_us: f64,
    /// CPU per picture of the structural check, µs.
    pub structure_us: f64,
    /// CPU per picture of a full decode to pixels, µs.
    pub decode_us: f64,
}

impl JpegCheckRow {
    /// Exact check / full decode.
    pub fn ratio(&self) -> f64 {
        self.exact_us / self.decode_us
    }
}

/// CPU time of the calling thread, seconds.
fn thread_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant the kernel knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return f64::NAN;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// CPU µs per picture of `f` over `frames`: whole passes until `budget` CPU seconds are spent.
fn per_picture(frames: &[Vec<u8>], budget: f64, f: &dyn Fn(&[u8]) -> bool) -> f64 {
    let t0 = thread_cpu();
    let mut n = 0usize;
    loop {
        for img in frames {
            black_box(f(black_box(img)));
        }
        n += frames.len();
        let spent = thread_cpu() - t0;
        if spent >= budget || !spent.is_finite() {
            return spent * 1e6 / n as f64;
        }
    }
}

/// Measures QVGA and VGA sample frames; `quick` spends less time.
pub fn measure(quick: bool) -> Result<Vec<JpegCheckRow>, BenchError> {
    let budget = if quick { 0.05 } else { 0.4 };
    let mut rows = Vec::new();
    for (name, width, height) in [("QVGA", 320, 240), ("VGA", 640, 480)] {
        let frames = (0..8u32)
            .map(|i| {
                let q = [80, 90][i as usize % 2];
                receiver_testkit::sample::scene_jpeg(width, height, i * 7, "BENCH", q)
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| BenchError::Run(format!("sample frame: {e}")))?;
        for img in &frames {
            match entropy_check(img) {
                Ok(EntropyVerdict::Exact { .. }) => {}
                other => {
                    return Err(BenchError::Run(format!(
                        "jpeg check: a {name} sample frame is not exact: {other:?}"
                    )))
                }
            }
        }
        let exact_us = per_picture(&frames, budget, &|b| entropy_check(b).is_ok());
        let structure_us = per_picture(&frames, budget, &|b| structure_ok(b).is_ok());
        let decode_us = per_picture(&frames, budget, &|b| {
            image::load_from_memory_with_format(b, image::ImageFormat::Jpeg).is_ok()
        });
        rows.push(JpegCheckRow {
            name: name.into(),
            width,
            height,
            frames: frames.len(),
            mean_bytes: frames.iter().map(Vec::len).sum::<usize>() / frames.len(),
            exact_us,
            structure_us,
            decode_us,
        });
    }
    Ok(rows)
}

/// One line per size.
pub fn render(rows: &[JpegCheckRow]) -> String {
    let mut s = String::new();
    for r in rows {
        let _ = writeln!(
            s,
            "jpeg check  {:<4} ({}x{}, {:.1} KB): exact {:.1} µs, structure {:.1} µs, full decode {:.1} µs (exact/decode = {:.3})",
            r.name,
            r.width,
            r.height,
            r.mean_bytes as f64 / 1e3,
            r.exact_us,
            r.structure_us,
            r.decode_us,
            r.ratio()
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_names_the_three_costs_and_the_ratio() {
        let row = JpegCheckRow {
            name: "QVGA".into(),
            width: 320,
            height: 240,
            frames: 8,
            mean_bytes: 12_345,
            exact_us: 50.0,
            structure_us: 5.0,
            decode_us: 1000.0,
        };
        assert_eq!(
            render(&[row]),
            "jpeg check  QVGA (320x240, 12.3 KB): exact 50.0 µs, structure 5.0 µs, full decode 1000.0 µs (exact/decode = 0.050)\n"
        );
    }
}
