//! Generated upload streams: many devices interleaved, real JPEG sizes, v1 and v2, every message
//! already laid out as Aliyun forwards it (topic, `messageId`, `generateTime`, JSON body), so
//! nothing is encoded while the clock runs.

use crate::wire::{self, Format};
use receiver_testkit::fake::FakeMessage;
use std::collections::VecDeque;
use std::io::Write;
use std::path::Path;

/// Product key of the benchmark's devices.
pub const BENCH_PRODUCT_KEY: &str = "a1BenchPK01";

/// Why a stream could not be made.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// Sample frames could not be made.
    #[error(transparent)]
    Sample(#[from] receiver_testkit::sample::SampleError),
    /// The encoder refused the options.
    #[error("cannot encode the frames: {0}")]
    Encode(#[from] wire::EncodeError),
    /// The forwarded body could not be built.
    #[error("cannot build a forwarded body: {0}")]
    Json(#[from] serde_json::Error),
    /// Writing the stream file failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// A pool of distinct real JPEG frames whose sizes spread over `min..=max` bytes (ESP32-CAM QVGA/
/// CIF/VGA frames are typically 10-25 KB).
#[derive(Debug, Clone)]
pub struct JpegPool {
    /// The frames.
    pub frames: Vec<Vec<u8>>,
}

impl JpegPool {
    /// Renders `n` frames of varying size and quality (deterministic).
    pub fn new(n: usize) -> Result<JpegPool, StreamError> {
        // (width, height, quality) steps that land between ~10 and ~25 KB with the sample scene.
        const SHAPES: [(u32, u32, u8); 8] = [
            (320, 240, 90),
            (320, 240, 95),
            (352, 288, 90),
            (400, 296, 90),
            (400, 296, 93),
            (480, 360, 85),
            (400, 296, 95),
            (640, 480, 90),
        ];
        let mut frames = Vec::with_capacity(n);
        for i in 0..n.max(1) {
            let (w, h, q) = SHAPES[i % SHAPES.len()];
            frames.push(receiver_testkit::sample::scene_jpeg(
                w,
                h,
                i as u32 * 7,
                &format!("BENCH {i}"),
                q,
            )?);
        }
        Ok(JpegPool { frames })
    }

    /// Smallest and largest frame, bytes.
    pub fn size_range(&self) -> (usize, usize) {
        let min = self.frames.iter().map(Vec::len).min().unwrap_or(0);
        let max = self.frames.iter().map(Vec::len).max().unwrap_or(0);
        (min, max)
    }

    fn mean_size(&self) -> usize {
        self.frames.iter().map(Vec::len).sum::<usize>() / self.frames.len().max(1)
    }
}

/// How devices pick their wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatMix {
    /// Even-numbered devices speak v2, odd-numbered v1 (a lone device alternates per picture).
    Mixed,
    /// Every picture is v1 (800 hex characters per message, then `END`): the seed's format.
    V1Only,
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    /// Devices uploading at once (interleaved message by message).
    pub devices: u32,
    /// Aim for at least this many messages (every device uploads at least one picture).
    pub target_messages: u64,
    /// Format choice.
    pub mix: FormatMix,
    /// v2 piece size, bytes (the firmware's default: 7 200).
    pub v2_piece: usize,
    /// v1 hex characters per message (the seed firmware: 800).
    pub v1_hex: usize,
}

impl StreamSpec {
    /// Mixed v1/v2 stream with the firmware defaults.
    pub fn mixed(devices: u32, target_messages: u64) -> Self {
        StreamSpec {
            devices,
            target_messages,
            mix: FormatMix::Mixed,
            v2_piece: wire::DEFAULT_V2_PIECE,
            v1_hex: wire::V1_HEX_CHARS,
        }
    }
}

/// A generated stream, in delivery order.
#[derive(Debug, Clone, Default)]
pub struct Stream {
    /// Messages in the order they are queued.
    pub messages: Vec<FakeMessage>,
    /// Devices.
    pub devices: u32,
    /// Pictures in the stream.
    pub images: u64,
    /// v1 pictures among them.
    pub v1_images: u64,
    /// JPEG bytes in the stream (sum of picture sizes).
    pub image_bytes: u64,
    /// Body bytes in the stream (what crosses AMQP, without framing).
    pub body_bytes: u64,
}

fn format_for(mix: FormatMix, devices: u32, device: u32, picture: u32) -> Format {
    match mix {
        FormatMix::V1Only => Format::V1,
        FormatMix::Mixed if devices == 1 => {
            if picture % 2 == 0 {
                Format::V2
            } else {
                Format::V1
            }
        }
        FormatMix::Mixed if device % 2 == 0 => Format::V2,
        FormatMix::Mixed => Format::V1,
    }
}

fn messages_per_picture(format: Format, bytes: usize, spec: &StreamSpec) -> usize {
    match format {
        Format::V1 => bytes.div_ceil(spec.v1_hex / 2) + 1,
        Format::V2 => bytes.div_ceil(spec.v2_piece),
    }
}

/// Generates the stream: each device's pictures in order, devices interleaved round robin (so
/// `devices` pictures are open at once), each message with a distinct `messageId` and, per device,
/// strictly increasing device times (v1 orders chunks by them).
pub fn generate(spec: &StreamSpec, pool: &JpegPool) -> Result<Stream, StreamError> {
    let devices = spec.devices.max(1);
    let per_picture = {
        let mean = pool.mean_size();
        let v1 = messages_per_picture(Format::V1, mean, spec);
        let v2 = messages_per_picture(Format::V2, mean, spec);
        match spec.mix {
            FormatMix::V1Only => v1,
            FormatMix::Mixed => (v1 + v2) / 2,
        }
    }
    .max(1) as u64;
    let pictures = spec
        .target_messages
        .div_ceil(u64::from(devices) * per_picture)
        .max(1) as u32;
    let base_ms = receiver_protocol::time::now_ms() as i64;
    let base_pid = (base_ms / 1000 % 1_000_000) as u32 * 1000;
    let mut next_id: u64 = 1_700_000_000_000_000_000 + (base_ms as u64 % 1_000_000) * 1_000_000;
    let mut stream = Stream {
        devices,
        ..Stream::default()
    };
    let mut queues: Vec<VecDeque<FakeMessage>> = Vec::with_capacity(devices as usize);
    for d in 0..devices {
        let name = format!("cam-{d:05}");
        let topic = wire::forwarded_topic(BENCH_PRODUCT_KEY, &name);
        let mut q = VecDeque::new();
        let mut t = base_ms;
        for p in 0..pictures {
            let format = format_for(spec.mix, devices, d, p);
            let jpeg = &pool.frames[(d as usize * 7 + p as usize) % pool.frames.len()];
            let chunk = match format {
                Format::V1 => spec.v1_hex,
                Format::V2 => spec.v2_piece,
            };
            let pid = base_pid + p;
            let values = match format {
                Format::V1 => wire::encode_v1(jpeg, chunk)?,
                Format::V2 => wire::encode_v2(jpeg, pid, chunk)?,
            };
            stream.images += 1;
            stream.v1_images += u64::from(format == Format::V1);
            stream.image_bytes += jpeg.len() as u64;
            for (seq, value) in values.iter().enumerate() {
                t += 1;
                let body = forwarded_body(&name, wire::alink_id(pid, seq as u32), value, t);
                stream.body_bytes += body.len() as u64;
                next_id += 1;
                q.push_back(FakeMessage {
                    topic: topic.clone(),
                    message_id: next_id.to_string(),
                    generate_time: t,
                    body,
                });
            }
        }
        queues.push(q);
    }
    let total: usize = queues.iter().map(VecDeque::len).sum();
    stream.messages.reserve_exact(total);
    while stream.messages.len() < total {
        for q in queues.iter_mut() {
            if let Some(m) = q.pop_front() {
                stream.messages.push(m);
            }
        }
    }
    Ok(stream)
}

/// The body Aliyun forwards for `device`'s property post of `img = value` (the camera's Alink
/// `id` is `request_id`), byte for byte what [`crate::message::forward_property_post`] makes of
/// the camera's payload, without its JSON round trip (a 10 000-device stream has 250 000 of
/// them). `value` is hex, `END` or `V2;...;<base64>`: nothing to escape.
fn forwarded_body(device: &str, request_id: u32, value: &str, t: i64) -> Vec<u8> {
    let iot_id: String = format!("{BENCH_PRODUCT_KEY}{device}")
        .chars()
        .take(26)
        .collect();
    format!(
        "{{\"checkFailedData\":{{}},\"deviceName\":\"{device}\",\"deviceType\":\"CustomCategory\",\
         \"gmtCreate\":{t},\"iotId\":\"{iot_id}\",\"items\":{{\"img\":{{\"time\":{t},\
         \"value\":\"{value}\"}}}},\"productKey\":\"{BENCH_PRODUCT_KEY}\",\"requestId\":\"{request_id}\"}}"
    )
    .into_bytes()
}

/// Writes the stream as JSON lines `{"topic","message_id","generate_time","body"}` for
/// `bench/seed/stream-server.js`.
pub fn write_jsonl(stream: &Stream, path: &Path) -> Result<(), StreamError> {
    let io = |source| StreamError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::create(path).map_err(io)?;
    let mut w = std::io::BufWriter::new(file);
    for m in &stream.messages {
        let line = serde_json::json!({
            "topic": m.topic,
            "message_id": m.message_id,
            "generate_time": m.generate_time,
            "body": String::from_utf8_lossy(&m.body),
        });
        serde_json::to_writer(&mut w, &line)?;
        w.write_all(b"\n").map_err(io)?;
    }
    w.flush().map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_match_the_forwarding_of_a_camera_payload() {
        for value in ["FFD8FF", "END", "V2;7;0;1;3;12345678;AAAA"] {
            let alink = wire::alink_payload(wire::alink_id(7, 0), value);
            let want = crate::message::forward_property_post(
                BENCH_PRODUCT_KEY,
                "cam-00001",
                alink.as_bytes(),
                1_700_000_000_123,
            )
            .unwrap();
            let got = forwarded_body("cam-00001", wire::alink_id(7, 0), value, 1_700_000_000_123);
            assert_eq!(
                String::from_utf8(got).unwrap(),
                String::from_utf8(want).unwrap()
            );
        }
    }

    #[test]
    fn interleaves_devices_and_counts() {
        let pool = JpegPool::new(2).unwrap();
        let s = generate(&StreamSpec::mixed(3, 10), &pool).unwrap();
        assert_eq!(s.devices, 3);
        assert!(s.images >= 3);
        assert!(s.v1_images >= 1);
        // The first three messages come from three different devices.
        let topics: std::collections::HashSet<_> =
            s.messages[..3].iter().map(|m| m.topic.clone()).collect();
        assert_eq!(topics.len(), 3);
        let ids: std::collections::HashSet<_> =
            s.messages.iter().map(|m| m.message_id.clone()).collect();
        assert_eq!(ids.len(), s.messages.len());
    }
}
